//! `runner exec` and `runner plugins`: the commands that load WebAssembly.

use std::io::Write;

use super::{EXIT_INVALID, EXIT_OK, ExecArgs, Output, invalid, load_and_plan, print};
use crate::caps::secrets::SecretSource;
use crate::engine::{self, Executor, StepRecord};
use crate::host::cache::ComponentCache;
use crate::host::runtime::Runtime;
use crate::host::{self, resolve};
use crate::playbook;
use crate::record::Journal;

/// Exit code: the run failed or timed out (a step or gate failed; handlers ran).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the concurrency group is held by another run (`on_conflict: fail`).
pub const EXIT_BUSY: u8 = 3;
/// Exit code: stopped by SIGINT (Ctrl-C); handlers ran.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code: stopped by SIGTERM; handlers ran.
pub const EXIT_TERMINATED: u8 = 143;

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime can always be built")
}

fn runtime() -> Result<Runtime, u8> {
    Runtime::new(ComponentCache::default_dir()).map_err(|e| {
        eprintln!("cannot start the WebAssembly runtime: {e:#}");
        EXIT_INVALID
    })
}

pub fn exec(args: &ExecArgs) -> u8 {
    let journal = match open_journal(args.journal.as_deref()) {
        Ok(j) => j,
        Err(code) => return code,
    };
    launch(Launch {
        run: &args.run,
        access: &args.access,
        journal,
        run_id: new_run_id(),
        resume: engine::Resume::default(),
        parent: None,
        alive: None,
        record: args.record.clone(),
    })
}

/// Opens the journal named by `--journal` / `RUNNER_JOURNAL`, else the default.
pub(crate) fn open_journal(path: Option<&std::path::Path>) -> Result<Journal, u8> {
    open_journal_with(path, Journal::open)
}

/// [`open_journal`] for commands that only read it: a journal this user
/// cannot write is opened read-only.
pub(crate) fn open_journal_to_read(path: Option<&std::path::Path>) -> Result<Journal, u8> {
    open_journal_with(path, Journal::open_read)
}

fn open_journal_with(
    path: Option<&std::path::Path>,
    open: fn(&std::path::Path) -> Result<Journal, String>,
) -> Result<Journal, u8> {
    let Some(path) = path.map(ToOwned::to_owned).or_else(Journal::default_path) else {
        eprintln!(
            "error: no place for the run journal: set RUNNER_STATE_DIR (an absolute path), RUNNER_JOURNAL or --journal"
        );
        return Err(EXIT_INVALID);
    };
    open(&path).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })
}

/// A run to start: a new one, a resumed one or a re-run.
pub(crate) struct Launch<'a> {
    pub run: &'a super::RunArgs,
    pub access: &'a super::AccessArgs,
    pub journal: Journal,
    pub run_id: String,
    pub resume: engine::Resume,
    /// The run this one re-runs.
    pub parent: Option<String>,
    /// The run's own lock, when the caller took it already (`resume` takes it
    /// before it reads the run's state, so two resumes cannot both start).
    pub alive: Option<engine::lock::GroupLock>,
    /// What to do when the journal stops taking the run's events.
    pub record: super::RecordArgs,
}

/// Takes the lock that says run `run_id` is alive; while a runner holds it,
/// nobody else resumes the run. Refuses with the holder when it is taken.
pub(crate) fn hold_run(run_id: &str) -> Result<engine::lock::GroupLock, u8> {
    let Some(state) = super::state_dir() else {
        eprintln!("error: no state directory: set RUNNER_STATE_DIR to an absolute path (or HOME)");
        return Err(EXIT_INVALID);
    };
    let me = engine::lock::Holder::me(run_id);
    engine::lock::try_acquire(&state, &format!("run-{run_id}"), &me).map_err(|e| {
        match e {
            engine::lock::LockError::Busy { holder, .. } => {
                let who = holder.map_or_else(String::new, |h| {
                    let host = h.host.map(|h| format!(" on {h}")).unwrap_or_default();
                    format!(" (pid {}{host}, since {})", h.pid, h.since)
                });
                eprintln!(
                    "error: run {run_id} is still running{who}; only one runner may carry a run on: wait for it to end, or stop it (Ctrl-C or `kill` of that process) and resume it then"
                );
            }
            other => eprintln!("error: {other}"),
        }
        EXIT_INVALID
    })
}

/// Loads, plans, journals and runs; the exit code.
pub(crate) fn launch(l: Launch) -> u8 {
    let Launch {
        run: args,
        access,
        mut journal,
        run_id,
        resume,
        parent,
        alive,
        record,
    } = l;
    let (file, output) = (args.file.as_path(), args.output);
    let journal_path = journal.path.clone();
    crate::expr::provide_run_reports(Box::new(move |id| {
        super::runs::run_report(&journal_path, id)
    }));
    let super::Loaded {
        validated,
        plan,
        env,
    } = match load_and_plan(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let secrets_file = access
        .secrets
        .clone()
        .or_else(|| env.as_ref().and_then(|e| e.secrets_file.clone()));
    let secrets = match secrets_file.as_deref() {
        None => Ok(SecretSource::environment()),
        Some(path) => SecretSource::with_file(path),
    };
    let secrets = secrets.and_then(|s| match &env {
        Some(e) => s.with_references(&e.path, &e.secrets),
        None => Ok(s),
    });
    let secrets = match secrets {
        Ok(s) => s,
        Err(e) => return invalid(file, &[e]),
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rt = tokio();
    let cluster = crate::caps::kube::Cluster::new(
        access
            .kube_context
            .clone()
            .or_else(|| env.as_ref().and_then(|e| e.kube_context.clone())),
        env.as_ref().and_then(|e| e.kubeconfig.clone()),
    );
    let mut resolved = match rt.block_on(resolve::resolve(&runtime, &validated, &secrets, &cluster))
    {
        Ok(r) => r,
        Err(problems) => return invalid(file, &problems),
    };
    // Every check `runner validate` makes, before the first step: a bad `with:`
    // in a late stage must not be found after earlier stages changed production.
    let problems = resolve::with_problems(&validated, &resolved.plugins);
    if !problems.is_empty() {
        super::report(&playbook::LoadError::Invalid {
            file: Box::new(validated.source.clone()),
            problems,
        });
        return EXIT_INVALID;
    }
    // A wrong kube context must stop the run before its first step, not in
    // the middle of a rollout.
    let uses_kube = validated
        .playbook
        .plugins
        .values()
        .any(|d| !d.grants.kube.is_empty());
    if uses_kube && let Err(e) = rt.block_on(cluster.prepare()) {
        return invalid(file, &[e]);
    }
    let state_dir = super::state_dir();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let json = output == Output::Json || (output == Output::Auto && !terminal);
    let mut progress = (output == Output::Auto && terminal).then(|| {
        let color = std::env::var_os("NO_COLOR").is_none()
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        super::progress::Progress::new(color)
    });
    let Some(state) = state_dir.clone() else {
        eprintln!("error: no state directory: set RUNNER_STATE_DIR to an absolute path (or HOME)");
        return EXIT_INVALID;
    };
    // While this lock is held, the run is alive: `runner resume` refuses it.
    let me = engine::lock::Holder::me(&run_id);
    let _alive = match alive {
        Some(lock) => lock,
        None => match hold_run(&run_id) {
            Ok(lock) => lock,
            Err(code) => return code,
        },
    };
    // Programs the steps start are registered here while they run. A runner
    // killed with SIGKILL cannot stop what they started; the one that resumes
    // the run stops it before any step starts again, so an attempt never
    // overlaps the previous one.
    let programs = state.join("programs").join(&run_id);
    if resume.resumed {
        let stopped = crate::caps::process::reap(&programs);
        if stopped > 0 {
            eprintln!(
                "resume: stopped {stopped} program{} the previous runner of run {run_id} left running",
                if stopped == 1 { "" } else { "s" }
            );
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
            let acquired = rt.block_on(engine::lock::acquire(
                &state,
                &group,
                &me,
                c.on_conflict,
                |holder| match holder {
                    Some(h) => eprintln!(
                        "waiting: concurrency group `{group}` is held by run {} (pid {}, since {})",
                        h.run_id, h.pid, h.since
                    ),
                    None => {
                        eprintln!("waiting: concurrency group `{group}` is held by another run")
                    }
                },
            ));
            match acquired {
                Ok(lock) => Some(lock),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_BUSY;
                }
            }
        }
    };
    let started_ms = crate::record::now_ms();
    let retention = retention();
    match journal.prune(started_ms - retention.as_millis() as i64) {
        Ok(pruned) => forget(&state, &pruned),
        Err(e) => eprintln!("warning: pruning the journal: {e}"),
    }
    let actor = crate::identity::current(record.actor.as_deref());
    // The intact mark before the run's row: a row without its mark would be
    // taken for a run whose journal failed (see record::recorder).
    if let Err(e) = crate::record::recorder::create_mark(&state, &run_id) {
        eprintln!("error: cannot start run {run_id}: {e}");
        return EXIT_INVALID;
    }
    let begun = if resume.resumed {
        journal.reopen(&run_id)
    } else {
        let bytes = std::fs::read(file).unwrap_or_default();
        journal.begin(&crate::record::RunRow {
            id: run_id.clone(),
            playbook: plan.playbook.clone(),
            file: std::fs::canonicalize(file)
                .unwrap_or_else(|_| file.to_owned())
                .display()
                .to_string(),
            file_sha256: {
                use sha2::Digest;
                crate::host::cache::hex(&sha2::Sha256::digest(&bytes))
            },
            input_args: args.inputs.clone(),
            inputs: serde_json::Value::Object(
                plan.inputs
                    .iter()
                    .map(|i| (i.name.clone(), i.value.clone()))
                    .collect(),
            ),
            started_at: crate::record::stamp(started_ms),
            started_ms,
            finished_ms: None,
            duration_ms: None,
            status: "running".into(),
            rolled_back: false,
            parent: parent.clone(),
            pid: i64::from(std::process::id()),
            env_file: env.as_ref().map(|e| e.path.display().to_string()),
            guarded: true,
            started_by: Some(actor.to_string()),
        })
    };
    let recorder = begun.and_then(|()| {
        crate::record::Recorder::new(
            &journal,
            &run_id,
            crate::record::recorder::mark_path(&state, &run_id),
        )
    });
    let mut recorder = match recorder {
        Ok(r) => r,
        Err(e) => {
            if !resume.resumed {
                let _ = std::fs::remove_file(crate::record::recorder::mark_path(&state, &run_id));
            }
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let first_seq = recorder.seq();
    let process_start = std::time::Instant::now();
    let offset_base = journal
        .run(&run_id)
        .ok()
        .flatten()
        .map_or(started_ms, |r| r.started_ms);
    let mut stamped: Vec<crate::report::Stamped> = Vec::new();
    let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(None);
    let journal_stop = interrupt_tx.clone();
    let announced = progress.is_some();
    let mut on_event = |event: &engine::Event| {
        // Durable first: the event is committed before anything else happens.
        let at = started_ms + process_start.elapsed().as_millis() as i64;
        match recorder.record(&mut journal, at, at - offset_base, event) {
            crate::record::Outcome::Written | crate::record::Outcome::StillRefused => {}
            crate::record::Outcome::Refused(e) => {
                let what = match &record.on_journal_error {
                    super::OnJournalError::Stop => {
                        // As a SIGTERM would, unless a signal came first.
                        journal_stop.send_if_modified(|i| {
                            i.is_none() && {
                                *i = Some(engine::Interrupt::Journal);
                                true
                            }
                        });
                        "stopping the run (--on-journal-error stop): no further step starts, the failure and finally handlers run"
                    }
                    super::OnJournalError::Continue => {
                        "the run carries on without a record (--on-journal-error continue)"
                    }
                };
                eprintln!(
                    "error: the journal stopped taking this run's events: {e}\n  {what}; the events are kept and written when the journal takes writes again, and until then `runner resume {run_id}` refuses the run"
                );
            }
            crate::record::Outcome::CaughtUp(n) => eprintln!(
                "journal: taking writes again; the {n} event{} it had refused are in it now",
                if n == 1 { "" } else { "s" }
            ),
        }
        stamped.push(crate::report::Stamped {
            at: crate::record::stamp(at),
            offset_ms: (at - offset_base).max(0) as u64,
            event: event.clone(),
        });
        if let Some(p) = progress.as_mut() {
            return p.event(event);
        }
        let line = if json {
            let mut v = serde_json::to_value(event).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("run".into(), run_id.clone().into());
            }
            Some(v.to_string())
        } else {
            human(event)
        };
        if let Some(line) = line {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    };
    let interactive = !json && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let resumed = resume.resumed;
    let executor = Executor {
        runtime: &runtime,
        plugins: &resolved.plugins,
        grants: &resolved.grants,
        memory: &resolved.memory,
        artifacts: Some(state.join("artifacts").join(&run_id)),
        artifact_budget: Default::default(),
        state_dir: Some(state.clone()),
        interactive,
        announced,
        actor,
        interrupt: interrupt_rx,
        on_event: std::cell::RefCell::new(&mut on_event),
        resume,
    };
    let report = rt.block_on(async {
        watch_signals(interrupt_tx);
        executor.run(&plan, &run_id).await
    });
    drop(executor);
    // Every program was stopped with its step: the folder is empty.
    let _ = std::fs::remove_dir(&programs);
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    // One last try, then what the journal lacks is said in the reports.
    let missing = recorder.finish(&mut journal);
    let info = crate::report::RunInfo {
        journal: missing,
        run_id: run_id.clone(),
        playbook: plan.playbook.clone(),
        file: file.display().to_string(),
        started_at: crate::record::stamp(offset_base),
        inputs: plan
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect(),
    };
    // A resumed run's report covers the whole run: only the journal has the
    // events from before the resume; this process saw (and kept) the rest,
    // including any the journal refused.
    let mut events: Vec<crate::report::Stamped> = if resumed {
        journal
            .events(&run_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.seq < first_seq)
            .map(|s| crate::report::Stamped {
                at: s.at,
                offset_ms: s.offset_ms.max(0) as u64,
                event: s.event,
            })
            .collect()
    } else {
        Vec::new()
    };
    events.append(&mut stamped);
    let reported = crate::report::write_all(&state.join("reports"), &info, &events);
    match &reported {
        Ok(paths) if !json => {
            for p in paths {
                print(&format!("report: {}\n", p.display()));
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: writing the reports: {e}"),
    }
    if !json {
        print(&format!("run {run_id} {}\n", report.status.as_str()));
    }
    super::annotate_failures(&validated, &report);
    if let Some(missing) = &info.journal {
        let full_record = match &reported {
            Ok(_) => "the reports have every event",
            Err(_) if json => {
                "the reports could not be written: the events printed above are the only full record"
            }
            Err(_) => {
                "the reports could not be written: the lines printed above are the only record of what happened"
            }
        };
        eprintln!(
            "error: {missing}; the journal still says the run is running, and `runner resume {run_id}` refuses it; {full_record}"
        );
    }
    recorder.close();
    exit_code(&report)
}

/// How long finished runs are kept: `RUNNER_RETENTION` (a duration such as
/// `30d`), else 90 days.
pub(crate) fn retention() -> std::time::Duration {
    std::env::var("RUNNER_RETENTION")
        .ok()
        .and_then(|t| crate::playbook::scalars::parse_duration(&t).ok())
        .unwrap_or(crate::record::DEFAULT_RETENTION)
}

/// Removes what pruned runs left in the state directory: artifacts, approval
/// mailboxes, program registries, intact marks, their run locks and reports.
pub(crate) fn forget(state: &std::path::Path, runs: &[crate::record::RunRow]) {
    for run in runs {
        let id = run.id.as_str();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            continue;
        }
        let _ = std::fs::remove_dir_all(state.join("artifacts").join(id));
        let _ = std::fs::remove_dir_all(state.join("approvals").join(id));
        let _ = std::fs::remove_dir_all(state.join("programs").join(id));
        let _ = std::fs::remove_file(crate::record::recorder::mark_path(state, id));
        // Nobody takes the lock of a finished run again (resume refuses it).
        let _ = std::fs::remove_file(engine::lock::lock_path(state, &format!("run-{id}")));
        for report in
            crate::report::files(&state.join("reports"), &run.playbook, id, &run.started_at)
        {
            let _ = std::fs::remove_file(report);
        }
    }
}

/// The exit code of a finished run. A run that this process resumed after an
/// earlier process was interrupted keeps the status `interrupted` but exits 1:
/// this process got no signal.
pub fn exit_code(report: &engine::RunReport) -> u8 {
    match (report.status, report.interrupted_by) {
        (engine::RunStatus::Succeeded, _) => EXIT_OK,
        (engine::RunStatus::Interrupted, Some(engine::Interrupt::Term)) => EXIT_TERMINATED,
        (engine::RunStatus::Interrupted, Some(engine::Interrupt::Int)) => EXIT_INTERRUPTED,
        _ => EXIT_FAILED,
    }
}

/// The first SIGINT or SIGTERM stops the run (its handlers still run); a second
/// one exits at once.
fn watch_signals(tx: tokio::sync::watch::Sender<Option<engine::Interrupt>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!(
            "warning: cannot listen for SIGINT/SIGTERM; Ctrl-C will stop the runner without its handlers"
        );
        return;
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => engine::Interrupt::Int,
            _ = term.recv() => engine::Interrupt::Term,
        };
        eprintln!(
            "{}: stopping; running the failure and finally handlers (press Ctrl-C again to exit at once)",
            first.name()
        );
        let _ = tx.send(Some(first));
        let (second, code) = tokio::select! {
            _ = int.recv() => ("SIGINT", EXIT_INTERRUPTED),
            _ = term.recv() => ("SIGTERM", EXIT_TERMINATED),
        };
        eprintln!("{second}: exiting without waiting for the handlers");
        std::process::exit(i32::from(code));
    });
}

/// One line per event for people; `None` for events that only JSON shows.
///
/// Every text in it that a plugin or a playbook wrote (summaries, errors,
/// prompts, names) goes through [`printable`](crate::host::text::printable): the host cleaned what it
/// recorded, but the journal may hold text from an older runner, and a
/// newline or an escape sequence here would forge or hide a line of the
/// `runs show` timeline or of `--output text`.
pub(crate) fn human(e: &engine::Event) -> Option<String> {
    use crate::host::text::printable as p;
    use engine::Event as E;
    let secs = |s: f64| {
        crate::playbook::scalars::format_duration(std::time::Duration::from_secs_f64(s.max(0.0)))
    };
    Some(match e {
        E::RunStarted {
            playbook,
            budget_s,
            timeout_s,
            by,
            by_source,
        } => {
            let mut l = format!("run {}", p(playbook));
            if let Some(who) = crate::identity::recorded(by.as_deref(), by_source.as_deref()) {
                l.push_str(&format!(" by {}", p(&who)));
            }
            if let Some(b) = budget_s {
                l.push_str(&format!(" (budget {})", secs(*b)));
            }
            if let Some(t) = timeout_s {
                l.push_str(&format!(" (timeout {})", secs(*t)));
            }
            l
        }
        E::StageStarted {
            stage, budget_s, ..
        } => match budget_s {
            Some(b) => format!("stage {} (budget {})", p(stage), secs(*b)),
            None => format!("stage {}", p(stage)),
        },
        E::StageSkipped { stage } => format!("stage {}: skipped", p(stage)),
        E::StepStarted { .. } | E::Gate { .. } => return None,
        E::Retry {
            step,
            attempt,
            delay_ms,
            error,
            ..
        } => {
            format!(
                "  retry {}: attempt {attempt} {}; again in {delay_ms} ms",
                p(step),
                p(error)
            )
        }
        E::Measurement {
            step,
            n,
            verdict,
            error,
            nan,
            ..
        } => match (error, nan) {
            (Some(err), _) => format!("  watch {} #{n}: {verdict:?} ({})", p(step), p(err)),
            (None, Some(why)) => format!("  watch {} #{n}: {verdict:?} ({})", p(step), p(why)),
            (None, None) => format!("  watch {} #{n}: {verdict:?}", p(step)),
        },
        E::ApprovalRequested {
            step,
            prompt,
            answer_with,
            approvers,
            ..
        } => {
            let who = if approvers.is_empty() {
                String::new()
            } else {
                format!(" (approvers: {})", p(&approvers.join(", ")))
            };
            format!(
                "  APPROVAL {}: {}{who}\n    answer with: {}",
                p(step),
                p(prompt),
                p(answer_with)
            )
        }
        E::ApprovalDecided { step, outcome, .. } => {
            format!("  approval {}: {}", p(step), p(outcome))
        }
        E::StepFinished(r) => step_line(r),
        E::BudgetExceeded {
            stage,
            budget_s,
            elapsed_s,
        } => format!(
            "BUDGET EXCEEDED {}: {} used of {}",
            p(stage.as_deref().unwrap_or("run")),
            secs(*elapsed_s),
            secs(*budget_s)
        ),
        E::TimedOut { stage, timeout_s } => format!(
            "TIMED OUT {} after {}",
            p(stage.as_deref().unwrap_or("run")),
            secs(*timeout_s)
        ),
        E::Interrupted { signal } => format!("INTERRUPTED by {}", p(signal)),
        E::Handlers { stage, kind } => match stage {
            Some(s) => format!("  handlers {} of stage {}", p(kind), p(s)),
            None => format!("handlers {} of the run", p(kind)),
        },
        E::StageFinished {
            stage,
            status,
            duration_s,
            budget_s,
        } => match budget_s {
            Some(b) => format!(
                "stage {} {} in {} (budget {})",
                p(stage),
                p(status),
                secs(*duration_s),
                secs(*b)
            ),
            None => format!("stage {} {} in {}", p(stage), p(status), secs(*duration_s)),
        },
        E::RunFinished { .. } => return None,
        E::RunResumed {
            restored,
            in_flight,
            by,
            by_source,
        } => {
            let who = crate::identity::recorded(by.as_deref(), by_source.as_deref())
                .map(|w| format!(" by {}", p(&w)))
                .unwrap_or_default();
            if in_flight.is_empty() {
                format!("resumed{who}: {restored} finished steps restored from the journal")
            } else {
                format!(
                    "resumed{who}: {restored} finished steps restored; in flight when the runner died: {}",
                    p(&in_flight.join(", "))
                )
            }
        }
        E::StepRestored(r) => format!("  (restored) {}: {}", p(&r.step), p(r.status)),
    })
}

/// A finished step for people; its texts through [`printable`](crate::host::text::printable) (see [`human`]).
fn step_line(r: &StepRecord) -> String {
    use crate::host::text::printable as p;
    let mark = match r.status {
        "succeeded" => "ok  ",
        "skipped" => "skip",
        "cancelled" => "STOP",
        _ => "FAIL",
    };
    let place = r
        .stage
        .as_deref()
        .map_or_else(|| p(&r.step), |s| format!("{}/{}", p(s), p(&r.step)));
    let mut line = format!("  {mark} {place} ({} ms)", r.duration_ms);
    if !r.summary.is_empty() {
        line.push_str(&format!(": {}", p(&r.summary)));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!(": {}", p(e)));
    }
    for a in &r.artifacts {
        if let Some(stored) = &a.stored {
            line.push_str(&format!(
                "\n     artifact {}: {}",
                p(&a.name),
                p(&stored.display().to_string())
            ));
        }
    }
    line
}

/// A run id: the start time and the process id, unique enough without a journal.
pub(crate) fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
}

/// The plugin checks of `runner validate`: load each plugin, check `with:`
/// against its input schema and its capabilities against its grants.
pub fn check_plugins(
    mut v: playbook::Validated,
) -> Result<playbook::Validated, playbook::LoadError> {
    let runtime = match Runtime::new(ComponentCache::default_dir()) {
        Ok(r) => r,
        Err(e) => {
            let problem = playbook::Problem {
                pos: v.tree.pos,
                message: format!("cannot start the WebAssembly runtime to check plugins: {e:#}"),
            };
            return Err(playbook::LoadError::Invalid {
                file: Box::new(v.source),
                problems: vec![problem],
            });
        }
    };
    let problems = tokio().block_on(resolve::check(&runtime, &mut v));
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(playbook::LoadError::Invalid {
            file: Box::new(v.source),
            problems,
        })
    }
}

pub fn plugins_list() -> u8 {
    let mut out = String::new();
    for b in host::BUILTINS {
        let state = if b.wasm.is_some() {
            ""
        } else {
            "  (not in this build yet)"
        };
        out.push_str(&format!("{:<12} {}{state}\n", b.name, b.summary));
    }
    print(&out);
    EXIT_OK
}

pub fn plugins_describe(name: &str) -> u8 {
    let wasm = match host::builtin(name) {
        Some(b) => match b.wasm {
            Some(w) => w.to_vec(),
            None => {
                eprintln!("the built-in plugin `{name}` is not part of this runner build yet");
                return EXIT_INVALID;
            }
        },
        None if name.ends_with(".wasm") => match std::fs::read(name) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("cannot read `{name}`: {e}");
                return EXIT_INVALID;
            }
        },
        None => {
            eprintln!(
                "no built-in plugin `{name}`; `runner plugins list` shows them, or give a path to a .wasm file"
            );
            return EXIT_INVALID;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match tokio().block_on(runtime.load(&wasm)) {
        Ok(p) => {
            let mut v = serde_json::to_value(&p.description).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("sha256".into(), p.sha256.clone().into());
            }
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("plugin `{name}` {e}");
            EXIT_INVALID
        }
    }
}
