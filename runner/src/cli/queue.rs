//! `runner submit` and `runner worker`: runs queued in a shared journal and run
//! by whichever worker claims them (see `record::postgres::queue`).
//!
//! A worker runs each run in a child process of its own (`runner worker --run
//! ID`), so that a run that crashes takes no other run with it and the process
//! that holds a run's lease is the one that runs it. The child starts a queued
//! run, or takes over a run whose runner is gone (the resume rules), and marks
//! the queue's row done with its exit code.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use super::exec::{Console, Drive, drive, prepare_failed, service};
use super::{EXIT_INVALID, JournalArg, Output, print};
use crate::record::postgres::queue::{PgQueue, Submitted};
use crate::service::{Observer, PlanRequest, Service};

/// How often an idle worker looks for work, and a follower for events.
const POLL: Duration = Duration::from_millis(250);

/// How often a busy worker looks whether one of its runs ended; it looks for
/// work at once when one did.
const BUSY_POLL: Duration = Duration::from_millis(20);

/// The service of a command that needs the shared journal; the message when
/// none is set.
fn shared(database: &Option<String>) -> Result<(Service, String), u8> {
    let service = service(Some(&JournalArg {
        journal: None,
        database: database.clone(),
    }));
    match &service.settings().database {
        Some(url) => {
            let url = url.expose().to_owned();
            Ok((service, url))
        }
        None => {
            eprintln!(
                "error: a queue lives in a shared journal: set RUNNER_DATABASE_URL (or --database postgres://USER:PASSWORD@HOST:PORT/DB)"
            );
            Err(EXIT_INVALID)
        }
    }
}

fn queue(url: &str) -> Result<PgQueue, u8> {
    PgQueue::open(url).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })
}

/// Checks the playbook as `exec` would, queues it, prints its run id; with
/// `--wait`, follows the run and exits as `exec` would have.
pub fn submit(args: &super::SubmitArgs) -> u8 {
    let (service, url) = match shared(&args.database) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let request = super::plan_request(&args.run);
    let prepared = match service.prepare(&request) {
        Ok(p) => p,
        Err(e) => return prepare_failed(&e),
    };
    let queue = match queue(&url) {
        Ok(q) => q,
        Err(code) => return code,
    };
    let by = crate::identity::current(args.actor.as_deref());
    let run = Submitted {
        file: request.file.display().to_string(),
        playbook_text: prepared.validated.source.text.clone(),
        inputs: request.inputs.clone(),
        env: request.env.as_ref().map(|e| e.display().to_string()),
        env_text: prepared.env_text.clone(),
        by: by.name.clone(),
        by_source: by.source.as_str().to_owned(),
        trigger: None,
    };
    let run_id = crate::service::new_run_id();
    // A run that waits for its group waits in the queue, not in a worker; one
    // that fails on a busy group is taken at once, and fails (exit 3).
    let group = prepared
        .plan
        .concurrency
        .as_ref()
        .filter(|c| c.on_conflict == crate::engine::lock::OnConflict::Wait)
        .map(|c| c.group.as_str());
    if let Err(e) = queue.submit(&run_id, &run, group) {
        eprintln!("error: cannot queue the run: {e}");
        return EXIT_INVALID;
    }
    if !args.wait {
        print(&format!("{run_id}\n"));
        return super::EXIT_OK;
    }
    if args.run.output != Output::Json {
        eprintln!("queued run {run_id}; waiting for a worker");
    }
    follow(&service, &queue, &run_id, args.run.output)
}

/// Shows the run's events as the journal gets them, until the run ends; its
/// exit code.
fn follow(service: &Service, queue: &PgQueue, run_id: &str, output: Output) -> u8 {
    let mut console = Console::watching(output);
    let mut next = 0;
    // Opened once, and again after a read that failed (the database may have
    // restarted under it).
    let mut journal: Option<Box<dyn crate::record::Journal>> = None;
    loop {
        // Read the queue's row first: events written before it said `done`
        // are all in the journal by then.
        let entry = match queue.entry(run_id) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        };
        let reader = match journal.take().map_or_else(|| service.journal_to_read(), Ok) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        };
        // The run's row before its events: a run that ended wrote its
        // `run_finished` in the transaction that set its status, so once the
        // status says ended the read below has every event. (Read the other
        // way round, the run could end between the two reads and its last
        // events would never be shown.) A failed read decides nothing: the
        // next look reads again.
        let read = reader.run(run_id).and_then(|run| {
            Ok((
                run.map(|r| r.status),
                reader.events_after(run_id, next - 1)?,
            ))
        });
        let (status, events) = match read {
            Ok(r) => {
                journal = Some(reader);
                r
            }
            Err(e) => {
                eprintln!("warning: {e}; reading the run again");
                std::thread::sleep(POLL);
                continue;
            }
        };
        for stored in events {
            next = stored.seq + 1;
            let stamped = crate::report::Stamped {
                at: stored.at,
                offset_ms: stored.offset_ms.max(0) as u64,
                event: stored.event,
            };
            console.event(run_id, &stamped);
        }
        let done = entry
            .as_ref()
            .filter(|e| e.state == "done")
            .and_then(|e| e.exit_code);
        match (done, status.as_deref()) {
            (Some(code), _) => {
                console.finish();
                if output != Output::Json {
                    print(&format!(
                        "run {run_id} {}\n",
                        status.as_deref().unwrap_or("did not start")
                    ));
                }
                return u8::try_from(code).unwrap_or(1);
            }
            // Ended, whoever ran it (a worker that died after its run ended
            // never said so in the queue).
            (None, Some(s)) if s != "running" => {
                console.finish();
                if output != Output::Json {
                    print(&format!("run {run_id} {s}\n"));
                }
                return if s == "succeeded" { 0 } else { 1 };
            }
            _ => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Claims queued runs and runs whose runner is gone, up to `--concurrency` at
/// once, each in a child process; with `--run ID`, is that child.
pub fn worker(args: &super::WorkerArgs) -> u8 {
    let (service, url) = match shared(&args.database) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let queue = match queue(&url) {
        Ok(q) => q,
        Err(code) => return code,
    };
    if let Some(run_id) = &args.run {
        return run_one(&service, &queue, run_id, args);
    }
    let me = format!(
        "{}:{}",
        crate::engine::lock::Holder::me("").host.unwrap_or_default(),
        std::process::id()
    );
    let stop = stop_on_term();
    let lease = service.settings().lease;
    let mut children: HashMap<String, Child> = HashMap::new();
    eprintln!(
        "worker {me}: taking runs from {} ({} at a time)",
        crate::record::postgres::describe(&url).unwrap_or_default(),
        args.concurrency
    );
    let mut looked = std::time::Instant::now() - POLL;
    loop {
        let running = children.len();
        children.retain(|run, child| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                eprintln!("worker {me}: run {run} ended ({status})");
                false
            }
            Err(_) => false,
        });
        let freed = children.len() < running;
        if !freed && looked.elapsed() < POLL {
            std::thread::sleep(BUSY_POLL);
            continue;
        }
        looked = std::time::Instant::now();
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            if children.is_empty() {
                eprintln!("worker {me}: stopped");
                return super::EXIT_OK;
            }
        } else {
            if let Err(e) = queue.requeue_stranded(lease * 2) {
                eprintln!("worker {me}: {e}");
            }
            if let Err(e) = queue.settle_ended() {
                eprintln!("worker {me}: {e}");
            }
            while children.len() < args.concurrency.max(1) {
                let busy: Vec<String> = children.keys().cloned().collect();
                let next = match queue.orphan(&busy) {
                    Ok(Some(run)) => Some(run),
                    Ok(None) => match queue.claim(&me) {
                        Ok(claimed) => claimed.map(|(run, _)| run),
                        Err(e) => {
                            eprintln!("worker {me}: {e}");
                            None
                        }
                    },
                    Err(e) => {
                        eprintln!("worker {me}: {e}");
                        None
                    }
                };
                let Some(run) = next else { break };
                match spawn_child(&run, args) {
                    Ok(child) => {
                        eprintln!("worker {me}: running {run} (pid {})", child.id());
                        children.insert(run, child);
                    }
                    Err(e) => {
                        eprintln!("worker {me}: cannot start a process for run {run}: {e}");
                        break;
                    }
                }
            }
        }
        std::thread::sleep(BUSY_POLL);
    }
}

/// A child process that runs (or takes over) `run`.
fn spawn_child(run: &str, args: &super::WorkerArgs) -> std::io::Result<Child> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["worker", "--run", run, "--output"]);
    c.arg(match args.output {
        Output::Text => "text",
        _ => "json",
    });
    if let Some(db) = &args.database {
        c.args(["--database", db]);
    }
    c.spawn()
}

/// SIGTERM or SIGINT: stop taking runs, let the running ones end (a second
/// signal ends the worker at once, as the default action does).
fn stop_on_term() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let listening = std::thread::Builder::new()
        .name("worker-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                eprintln!("worker: stopping: no new runs; waiting for the running ones to end");
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                std::process::exit(143);
            });
        });
    if listening.is_err() {
        eprintln!("warning: cannot listen for SIGTERM; the worker stops at once when told to");
    }
    stop
}

/// The child: starts the queued run, or takes over the run if it began
/// already (its runner is gone); marks the queue's row done.
fn run_one(service: &Service, queue: &PgQueue, run_id: &str, args: &super::WorkerArgs) -> u8 {
    let begun = match service.journal_to_read() {
        Ok(j) => j.run(run_id).ok().flatten().is_some(),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let access = super::AccessArgs::default();
    let record = super::RecordArgs {
        actor: None,
        on_journal_error: super::OnJournalError::Stop,
    };
    let code = if begun {
        drive(
            service,
            Drive::Resume { run_id },
            args.output,
            &access,
            &record,
        )
    } else {
        let submitted = match queue.submission(run_id) {
            Ok(Some(s)) => s,
            Ok(None) => {
                eprintln!("error: no run `{run_id}` in the queue or the journal");
                return EXIT_INVALID;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        };
        let request = PlanRequest {
            file: submitted.file.clone().into(),
            inputs: submitted.inputs.clone(),
            env: submitted.env.clone().map(Into::into),
            playbook_text: Some(submitted.playbook_text.clone()),
            env_text: submitted.env_text.clone(),
        };
        let by = crate::identity::Principal {
            name: submitted.by.clone(),
            source: crate::identity::Source::parse(&submitted.by_source)
                .unwrap_or(crate::identity::Source::Flag),
        };
        drive(
            service,
            Drive::Submitted {
                run_id,
                request: &request,
                by,
                trigger: submitted.trigger.clone(),
            },
            args.output,
            &access,
            &record,
        )
    };
    // A run that this child lost to another runner is not done.
    if code != super::exec::EXIT_TAKEN_OVER
        && let Err(e) = queue.done(run_id, i32::from(code))
    {
        eprintln!("warning: the queue could not be told that run {run_id} ended: {e}");
    }
    code
}
