//! Starting a run: everything between a request and the engine, in the order
//! that keeps the promise "exit 2 means nothing ran", and the record around it.
//!
//! The events of a run go through one [`Fanout`]: the journal first (an event
//! is committed before anything else happens), then the collection the
//! reports are written from, then the front end's [`Observer`].

use std::path::Path;
use std::sync::Mutex;

use super::{Interrupter, Notice, Observer, OnJournalError, PlanRequest, RunError, RunOptions};
use super::{PrepareError, RunOutcome, Service};
use crate::caps::secrets::SecretSource;
use crate::engine::{self, Event, EventSink, Executor};
use crate::host::resolve;
use crate::record::{self, Journal, Recorder, RunRow};
use crate::report::Stamped;

/// A run to start: a new one, a resumed one or a re-run.
pub(super) struct Launch<'a> {
    pub request: PlanRequest,
    pub options: &'a RunOptions,
    pub journal: Box<dyn Journal>,
    pub run_id: String,
    pub resume: engine::Resume,
    /// The run this one re-runs.
    pub parent: Option<String>,
    /// The run's own lock, when the caller took it already (`resume` takes it
    /// before it reads the run's state, so two resumes cannot both start).
    pub alive: Option<engine::lock::Held>,
}

/// A run id: the start time, the process id, a counter and a random tag,
/// unique without a journal (two runs started in one second by one process
/// differ by the counter; by two machines, by the tag).
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    // Runners on several machines share one journal: the same second and the
    // same pid (pid 1 in every container) must not give the same id. The
    // standard library's hasher keys are random per process.
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u64(n);
    random.write_u128(now.as_nanos());
    let tag = random.finish() & 0xff_ffff;
    if n == 0 {
        format!("{}-{}-{tag:06x}", now.as_secs(), std::process::id())
    } else {
        format!("{}-{}-{n}-{tag:06x}", now.as_secs(), std::process::id())
    }
}

/// Takes the lock that says run `run_id` is alive; while a runner holds it,
/// nobody else resumes the run. Refuses with the holder when it is taken.
pub(super) fn hold_run(service: &Service, run_id: &str) -> Result<engine::lock::Held, RunError> {
    let me = engine::lock::Holder::me(run_id);
    let locks = service.locks()?;
    locks.hold_run(run_id, &me).map_err(|e| match e {
        engine::lock::LockError::Busy { holder, .. } => RunError::StillRunning {
            run_id: run_id.to_owned(),
            holder,
        },
        other => RunError::Lock(other.to_string()),
    })
}

/// Removes what pruned runs left in the state directory: artifacts, approval
/// mailboxes, program registries, intact marks, their run locks and reports.
pub(super) fn forget(state: &Path, locks: &dyn engine::lock::Locks, runs: &[RunRow]) {
    for run in runs {
        let id = run.id.as_str();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            continue;
        }
        let _ = std::fs::remove_dir_all(state.join("artifacts").join(id));
        let _ = std::fs::remove_dir_all(state.join("approvals").join(id));
        let _ = std::fs::remove_dir_all(state.join("programs").join(id));
        let _ = std::fs::remove_file(record::recorder::mark_path(state, id));
        // Nobody takes the lock of a finished run again (resume refuses it).
        locks.forget_run(id);
        for report in
            crate::report::files(&state.join("reports"), &run.playbook, id, &run.started_at)
        {
            let _ = std::fs::remove_file(report);
        }
    }
}

/// Loads, plans, journals and runs.
pub(super) async fn launch(
    service: &Service,
    l: Launch<'_>,
    observer: &mut dyn Observer,
    interrupt: &Interrupter,
) -> Result<RunOutcome, RunError> {
    let Launch {
        request,
        options,
        mut journal,
        run_id,
        resume,
        parent,
        alive,
    } = l;
    let settings = service.settings();
    let file = request.file.as_path();
    let super::Prepared {
        validated,
        plan,
        env,
        env_text,
    } = service.prepare(&request)?;
    let invalid = |lines: Vec<String>| {
        RunError::Prepare(PrepareError::Invalid {
            file: file.to_owned(),
            lines,
        })
    };
    let secrets_file = options
        .secrets
        .clone()
        .or_else(|| env.as_ref().and_then(|e| e.secrets_file.clone()));
    let secrets = match secrets_file.as_deref() {
        None => Ok(SecretSource::environment()),
        Some(path) => SecretSource::with_file(path),
    };
    let secrets = secrets
        .and_then(|s| match &env {
            Some(e) => s.with_references(&e.path, &e.secrets),
            None => Ok(s),
        })
        .map_err(|e| invalid(vec![e]))?;
    let runtime = service.runtime()?;
    let cluster = crate::caps::kube::Cluster::new(
        options
            .kube_context
            .clone()
            .or_else(|| env.as_ref().and_then(|e| e.kube_context.clone())),
        env.as_ref().and_then(|e| e.kubeconfig.clone()),
    );
    let mut resolved = resolve::resolve(&runtime, &validated, &secrets, &cluster)
        .await
        .map_err(invalid)?;
    // Every check `runner validate` makes, before the first step: a bad `with:`
    // in a late stage must not be found after earlier stages changed production.
    let problems = resolve::with_problems(&validated, &resolved.plugins);
    if !problems.is_empty() {
        return Err(PrepareError::Load(crate::playbook::LoadError::Invalid {
            file: Box::new(validated.source.clone()),
            problems,
        })
        .into());
    }
    // A wrong kube context must stop the run before its first step, not in
    // the middle of a rollout.
    let uses_kube = validated
        .playbook
        .plugins
        .values()
        .any(|d| !d.grants.kube.is_empty());
    if uses_kube {
        cluster.prepare().await.map_err(|e| invalid(vec![e]))?;
    }
    let state = settings.state_dir.clone().ok_or(RunError::NoStateDir)?;
    // While this lock is held, the run is alive: `runner resume` refuses it.
    let me = engine::lock::Holder::me(&run_id);
    let alive = match alive {
        Some(lock) => lock,
        None => hold_run(service, &run_id)?,
    };
    // A lease (shared journal): the run's writes are fenced by its epoch, and
    // the run stops where it is if another runner takes it over.
    if let Some(epoch) = alive.epoch() {
        journal.fence(&run_id, epoch);
    }
    let lost = alive.lost();
    // Programs the steps start are registered here while they run. A runner
    // killed with SIGKILL cannot stop what they started; the one that resumes
    // the run stops it before any step starts again, so an attempt never
    // overlaps the previous one.
    let programs = state.join("programs").join(&run_id);
    if resume.resumed {
        let stopped = crate::caps::process::reap(&programs);
        if stopped > 0 {
            observer.notice(&run_id, &Notice::Reaped { programs: stopped });
        }
    }
    for granted in resolved.grants.values_mut() {
        granted.process.register_in(programs.clone());
    }
    // Hold the concurrency group for the whole run; the OS frees it if we die.
    let _group = match &plan.concurrency {
        None => None,
        Some(c) => {
            let group = c.group.clone();
            let mut on_wait = |holder: &Option<engine::lock::Holder>| {
                observer.notice(
                    &run_id,
                    &Notice::Waiting {
                        group: group.clone(),
                        holder: holder.clone(),
                    },
                )
            };
            let acquired = service
                .locks()?
                .acquire(&group, &me, c.on_conflict, &mut on_wait)
                .await;
            match acquired {
                Ok(lock) => Some(lock),
                Err(e @ engine::lock::LockError::Busy { .. }) => {
                    return Err(RunError::GroupBusy(e.to_string()));
                }
                Err(e) => return Err(RunError::Lock(e.to_string())),
            }
        }
    };
    let started_ms = record::now_ms();
    match service.prune(
        journal.as_mut(),
        started_ms - settings.retention.as_millis() as i64,
    ) {
        Ok(_) => {}
        Err(e) => observer.notice(&run_id, &Notice::PruneFailed(e.to_string())),
    }
    // A shared journal has no intact marks (other machines cannot see this
    // one's files), so nothing would stop a resume elsewhere from a journal
    // that lacks what this run did: such a run stops when its journal does.
    let shared = journal.shared();
    if shared && options.on_journal_error == OnJournalError::Continue {
        return Err(RunError::Refused(format!(
            "--on-journal-error continue needs a journal on this machine; with the shared journal {} a run stops when its events cannot be written (drop the option, or use a local journal)",
            journal.location()
        )));
    }
    // The intact mark before the run's row: a row without its mark would be
    // taken for a run whose journal failed (see record::recorder).
    if !shared {
        record::recorder::create_mark(&state, &run_id).map_err(|error| RunError::Start {
            run_id: run_id.clone(),
            error,
        })?;
    }
    let begun = if resume.resumed {
        journal.reopen(&run_id)
    } else {
        let mut row = first_row(
            &run_id, &request, &validated, &plan, &env, started_ms, parent, options,
        );
        row.guarded = !shared;
        // The texts the run starts from, so that it can be resumed or re-run
        // where the files are not.
        let mut sources = vec![record::SourceFile {
            kind: record::SourceKind::Playbook,
            path: row.file.clone(),
            text: validated.source.text.clone(),
        }];
        if let (Some(env), Some(text)) = (&env, env_text) {
            sources.push(record::SourceFile {
                kind: record::SourceKind::Environment,
                path: env.path.display().to_string(),
                text,
            });
        }
        if let Some((via, body)) = &options.trigger {
            sources.push(record::SourceFile {
                kind: record::SourceKind::Trigger,
                path: via.clone(),
                text: body.clone(),
            });
        }
        journal.begin_with(&row, &sources)
    };
    let recorder = begun.and_then(|()| {
        Recorder::new(
            journal.as_ref(),
            &run_id,
            (!shared).then(|| record::recorder::mark_path(&state, &run_id)),
        )
    });
    let recorder = match recorder {
        Ok(r) => r,
        Err(e) => {
            if !resume.resumed {
                let _ = std::fs::remove_file(record::recorder::mark_path(&state, &run_id));
            }
            return Err(RunError::Journal(e));
        }
    };
    let first_seq = recorder.seq();
    let offset_base = journal
        .run(&run_id)
        .ok()
        .flatten()
        .map_or(started_ms, |r| r.started_ms);
    let resumed = resume.resumed;
    let approvals = service.approvals();
    let (fenced, mut fenced_seen) = tokio::sync::watch::channel(false);
    let fanout = Fanout {
        run_id: run_id.clone(),
        on_journal_error: options.on_journal_error,
        fenced,
        interrupt: interrupt.clone(),
        started_ms,
        process_start: std::time::Instant::now(),
        offset_base,
        inner: Mutex::new(Inner {
            journal,
            recorder,
            stamped: Vec::new(),
            observer,
        }),
    };
    let executor = Executor {
        runtime: &runtime,
        plugins: &resolved.plugins,
        grants: &resolved.grants,
        memory: &resolved.memory,
        artifacts: Some(state.join("artifacts").join(&run_id)),
        artifact_budget: Default::default(),
        approvals: approvals.as_deref(),
        reports: service.reports(),
        actor: options.actor.clone(),
        run_url: service
            .settings()
            .public_url
            .as_ref()
            .map(|u| format!("{u}/ui/runs/{run_id}")),
        interrupt: interrupt.subscribe(),
        events: &fanout,
        resume,
    };
    // The lease lost (its heartbeat says so, or it stopped beating), or a
    // write refused by its fence.
    let taken_over = async {
        match lost {
            Some(mut lost) => drop(lost.wait_for(|lost| *lost).await),
            None => std::future::pending().await,
        }
    };
    let report = tokio::select! {
        // Looked at first each time the run waits.
        biased;
        // The run is another runner's now: it stops here, without its
        // handlers and without a word more in the journal (the new owner runs
        // them and writes the rest).
        _ = taken_over => return Err(RunError::TakenOver { run_id }),
        _ = fenced_seen.wait_for(|fenced| *fenced) => {
            return Err(RunError::TakenOver { run_id });
        }
        report = executor.run(&plan, &run_id) => report,
    };
    drop(executor);
    // The run may have reached its end without waiting once after a fenced
    // write: its end was not written either, and it is not this runner's.
    if *fenced_seen.borrow() || alive.lost().is_some_and(|l| *l.borrow()) {
        return Err(RunError::TakenOver { run_id });
    }
    // Every program was stopped with its step: the folder is empty.
    let _ = std::fs::remove_dir(&programs);
    let Inner {
        mut journal,
        mut recorder,
        stamped: mut seen,
        ..
    } = fanout
        .inner
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // One last try, then what the journal lacks is said in the reports.
    let missing = recorder.finish(journal.as_mut());
    let info = crate::report::RunInfo {
        journal: missing,
        run_id: run_id.clone(),
        playbook: plan.playbook.clone(),
        file: file.display().to_string(),
        started_at: record::stamp(offset_base),
        inputs: plan
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect(),
    };
    // A resumed run's report covers the whole run: only the journal has the
    // events from before the resume; this process saw (and kept) the rest,
    // including any the journal refused.
    let mut events: Vec<Stamped> = if resumed {
        journal
            .events(&run_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.seq < first_seq)
            .map(|s| Stamped {
                at: s.at,
                offset_ms: s.offset_ms.max(0) as u64,
                event: s.event,
            })
            .collect()
    } else {
        Vec::new()
    };
    events.append(&mut seen);
    let reports = crate::report::write_all_to(
        &state.join("reports"),
        settings.step_summary.as_deref(),
        &info,
        &events,
    );
    recorder.close();
    Ok(RunOutcome {
        run_id,
        report,
        reports,
        journal_lacks: info.journal,
        validated,
    })
}

/// The journal's row for a run that starts now.
#[allow(clippy::too_many_arguments)]
fn first_row(
    run_id: &str,
    request: &PlanRequest,
    validated: &crate::playbook::Validated,
    plan: &crate::plan::Plan,
    env: &Option<crate::playbook::environment::Environment>,
    started_ms: i64,
    parent: Option<String>,
    options: &RunOptions,
) -> RunRow {
    use sha2::Digest;
    let file = request.file.as_path();
    // The hash of the text the run was planned from, not of the file read
    // again: it may have changed in between.
    let bytes = validated.source.text.as_bytes();
    RunRow {
        id: run_id.to_owned(),
        playbook: plan.playbook.clone(),
        file: std::fs::canonicalize(file)
            .unwrap_or_else(|_| file.to_owned())
            .display()
            .to_string(),
        file_sha256: crate::host::cache::hex(&sha2::Sha256::digest(bytes)),
        input_args: request.inputs.clone(),
        inputs: serde_json::Value::Object(
            plan.inputs
                .iter()
                .map(|i| (i.name.clone(), i.value.clone()))
                .collect(),
        ),
        started_at: record::stamp(started_ms),
        started_ms,
        finished_ms: None,
        duration_ms: None,
        status: "running".into(),
        rolled_back: false,
        parent,
        pid: i64::from(std::process::id()),
        env_file: env.as_ref().map(|e| e.path.display().to_string()),
        guarded: true,
        started_by: Some(options.actor.to_string()),
    }
}

/// Where a run's events go, in this order: the journal, the report
/// collection, the front end.
struct Fanout<'o> {
    run_id: String,
    on_journal_error: OnJournalError,
    /// Turns true when the journal refused a write because another runner
    /// took the run over.
    fenced: tokio::sync::watch::Sender<bool>,
    interrupt: Interrupter,
    started_ms: i64,
    process_start: std::time::Instant,
    offset_base: i64,
    inner: Mutex<Inner<'o>>,
}

struct Inner<'o> {
    journal: Box<dyn Journal>,
    recorder: Recorder,
    stamped: Vec<Stamped>,
    observer: &'o mut dyn Observer,
}

impl EventSink for Fanout<'_> {
    fn emit(&self, event: &Event) {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = &mut *guard;
        // Durable first: the event is committed before anything else happens.
        let at = self.started_ms + self.process_start.elapsed().as_millis() as i64;
        let offset = at - self.offset_base;
        match inner
            .recorder
            .record(inner.journal.as_mut(), at, offset, event)
        {
            // Not a journal that failed: the run is another runner's now
            // (whether this write or a retry of an earlier one met the fence).
            _ if inner.journal.taken_over() => {
                let _ = self.fenced.send(true);
            }
            record::Outcome::Written | record::Outcome::StillRefused => {}
            record::Outcome::Refused(error) => {
                let stopping = self.on_journal_error == OnJournalError::Stop;
                if stopping {
                    // As a SIGTERM would, unless a signal came first.
                    self.interrupt.send_if_modified(|i| {
                        i.is_none() && {
                            *i = Some(engine::Interrupt::Journal);
                            true
                        }
                    });
                }
                inner
                    .observer
                    .notice(&self.run_id, &Notice::JournalRefused { error, stopping });
            }
            record::Outcome::CaughtUp(n) => inner
                .observer
                .notice(&self.run_id, &Notice::JournalCaughtUp { events: n }),
        }
        let stamped = Stamped {
            at: record::stamp(at),
            offset_ms: offset.max(0) as u64,
            event: event.clone(),
        };
        inner.observer.event(&self.run_id, &stamped);
        inner.stamped.push(stamped);
    }
}

// The engine's future must be `Send` for a server to run it on a
// multi-threaded runtime; so must everything the sink holds.
const _: () = {
    fn sink_is_send_and_sync<T: Send + Sync>() {}
    fn check() {
        sink_is_send_and_sync::<Fanout<'static>>();
    }
    let _ = check;
};
