//! `runner exec`, `resume` and `rerun` as a front end of the run service, and
//! `runner plugins list|describe`.
//!
//! The service does the run; this module turns arguments into a request, shows
//! the run as it goes (the live tree, JSON Lines or text lines), asks approval
//! questions on the terminal, listens for Ctrl-C, and turns the outcome into
//! lines and an exit code.

use std::io::Write;

use super::{EXIT_INVALID, EXIT_OK, Output, invalid, print};
use crate::engine::{self, StepRecord};
use crate::host;
use crate::playbook;
use crate::report::Stamped;
use crate::service::{
    Interrupter, Notice, Observer, PrepareError, RunError, RunOptions, RunOutcome, Service,
};
use crate::settings::Settings;

/// Exit code: the run failed or timed out (a step or gate failed; handlers ran).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the concurrency group is held by another run (`on_conflict: fail`).
pub const EXIT_BUSY: u8 = 3;
/// The run was taken over by another runner (a shared journal's lease was lost).
pub const EXIT_TAKEN_OVER: u8 = 4;
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

/// The service of this process: its settings from the environment, the
/// journal from `--journal` or `--database` when given.
pub(crate) fn service(journal: Option<&super::JournalArg>) -> Service {
    let mut settings = Settings::from_env();
    if let Some(arg) = journal {
        if let Some(j) = &arg.journal {
            // A file named on the command line is meant over the database of
            // the environment.
            settings.journal = Some(j.clone());
            settings.database = None;
        }
        if let Some(url) = &arg.database {
            settings.database = Some(crate::settings::DatabaseUrl(url.clone()));
        }
    }
    Service::new(settings)
}

pub fn exec(args: &super::ExecArgs) -> u8 {
    let service = service(Some(&args.journal));
    let request = super::plan_request(&args.run);
    drive(
        &service,
        Drive::Start(&request),
        args.run.output,
        &args.access,
        &args.record,
    )
}

/// Which of the service's ways to run a playbook.
pub(crate) enum Drive<'a> {
    Start(&'a crate::service::PlanRequest),
    /// A run taken from the queue: its id and who submitted it come with it.
    Submitted {
        run_id: &'a str,
        request: &'a crate::service::PlanRequest,
        by: crate::identity::Principal,
        /// What started it when not a person (an alert through `runner serve`).
        trigger: Option<(String, String)>,
    },
    Resume {
        run_id: &'a str,
    },
    Rerun {
        run_id: &'a str,
        from: &'a str,
    },
}

/// Runs `what` with this terminal as its front end; the exit code.
pub(crate) fn drive(
    service: &Service,
    what: Drive<'_>,
    output: Output,
    access: &super::AccessArgs,
    record: &super::RecordArgs,
) -> u8 {
    let options = RunOptions {
        secrets: access.secrets.clone(),
        kube_context: access.kube_context.clone(),
        actor: match &what {
            Drive::Submitted { by, .. } => by.clone(),
            _ => crate::identity::current(record.actor.as_deref()),
        },
        on_journal_error: match record.on_journal_error {
            super::OnJournalError::Stop => crate::service::OnJournalError::Stop,
            super::OnJournalError::Continue => crate::service::OnJournalError::Continue,
        },
        trigger: match &what {
            Drive::Submitted { trigger, .. } => trigger.clone(),
            _ => None,
        },
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let json = output == Output::Json || (output == Output::Auto && !terminal);
    let progress = (output == Output::Auto && terminal).then(|| {
        let color = std::env::var_os("NO_COLOR").is_none()
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        super::progress::Progress::new(color)
    });
    let interactive = !json && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let prompter = match service.approvals() {
        Some(approvals) if interactive => Some(super::prompt::Prompter::new(
            approvals,
            options.actor.clone(),
            progress.is_some(),
        )),
        _ => None,
    };
    let mut console = Console {
        progress,
        json,
        prompter,
    };
    let (interrupt, _) = tokio::sync::watch::channel(None);
    let outcome = tokio().block_on(async {
        watch_signals(interrupt.clone());
        if let Drive::Submitted { run_id, .. } | Drive::Resume { run_id } = &what {
            watch_cancel(service, run_id, interrupt.clone());
        }
        let observer: &mut dyn Observer = &mut console;
        match what {
            Drive::Start(request) => service.start(request, &options, observer, &interrupt).await,
            Drive::Submitted {
                run_id, request, ..
            } => {
                service
                    .start_as(run_id, request, &options, observer, &interrupt)
                    .await
            }
            Drive::Resume { run_id } => {
                service.resume(run_id, &options, observer, &interrupt).await
            }
            Drive::Rerun { run_id, from } => {
                service
                    .rerun(run_id, from, &options, observer, &interrupt)
                    .await
            }
        }
    });
    if let Some(p) = console.progress.as_mut() {
        p.finish();
    }
    drop(console.prompter.take());
    match outcome {
        Ok(outcome) => finished(&outcome, json),
        Err(e) => refused(&e),
    }
}

/// What the terminal shows of a run.
pub(crate) struct Console {
    /// The live tree, on a terminal.
    progress: Option<super::progress::Progress>,
    /// JSON Lines on stdout (else text lines).
    json: bool,
    /// Approval questions on this terminal.
    prompter: Option<super::prompt::Prompter>,
}

impl Console {
    /// A console that only shows (no approval questions): for a run that
    /// goes on elsewhere and is followed through the journal.
    pub(crate) fn watching(output: Output) -> Console {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let json = output == Output::Json || (output == Output::Auto && !terminal);
        let progress = (output == Output::Auto && terminal).then(|| {
            let color = std::env::var_os("NO_COLOR").is_none()
                && std::env::var("TERM").map_or(true, |t| t != "dumb");
            super::progress::Progress::new(color)
        });
        Console {
            progress,
            json,
            prompter: None,
        }
    }

    /// Ends the live display.
    pub(crate) fn finish(&mut self) {
        if let Some(p) = self.progress.as_mut() {
            p.finish();
        }
    }
}

impl Observer for Console {
    fn event(&mut self, run_id: &str, stamped: &Stamped) {
        let event = &stamped.event;
        // A question on the screen is moot once the step is decided.
        if let (
            engine::Event::ApprovalDecided {
                step,
                outcome,
                decisions,
                ..
            },
            Some(p),
        ) = (event, self.prompter.as_mut())
            && let Some(note) = p.decided(step, outcome, decisions)
        {
            eprintln!("{note}");
        }
        if let Some(p) = self.progress.as_mut() {
            p.event(event);
        } else {
            let line = if self.json {
                let mut v = serde_json::to_value(event).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("run".into(), run_id.into());
                }
                Some(v.to_string())
            } else {
                human(event)
            };
            if let Some(line) = line {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
        if let (engine::Event::ApprovalRequested { step, .. }, Some(p)) =
            (event, self.prompter.as_mut())
        {
            p.requested(run_id, step);
        }
    }

    fn notice(&mut self, run_id: &str, notice: &Notice) {
        match notice {
            Notice::Reaped { programs } => eprintln!(
                "resume: stopped {programs} program{} the previous runner of run {run_id} left running",
                if *programs == 1 { "" } else { "s" }
            ),
            Notice::Waiting { group, holder } => match holder {
                Some(h) => eprintln!(
                    "waiting: concurrency group `{group}` is held by run {} (pid {}, since {})",
                    h.run_id, h.pid, h.since
                ),
                None => eprintln!("waiting: concurrency group `{group}` is held by another run"),
            },
            Notice::PruneFailed(e) => eprintln!("warning: pruning the journal: {e}"),
            Notice::JournalRefused { error, stopping } => {
                let what = if *stopping {
                    "stopping the run (--on-journal-error stop): no further step starts, the failure and finally handlers run"
                } else {
                    "the run carries on without a record (--on-journal-error continue)"
                };
                eprintln!(
                    "error: the journal stopped taking this run's events: {error}\n  {what}; the events are kept and written when the journal takes writes again, and until then `runner resume {run_id}` refuses the run"
                );
            }
            Notice::JournalCaughtUp { events } => eprintln!(
                "journal: taking writes again; the {events} event{} it had refused are in it now",
                if *events == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The lines after a run, and its exit code.
fn finished(outcome: &RunOutcome, json: bool) -> u8 {
    let RunOutcome {
        run_id,
        report,
        reports,
        journal_lacks,
        validated,
    } = outcome;
    match reports {
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
    super::annotate_failures(validated, report);
    if let Some(missing) = journal_lacks {
        let full_record = match reports {
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
    exit_code(report)
}

/// Says why a run did not start; the exit code (2, or 3 for a busy group).
pub(crate) fn refused(e: &RunError) -> u8 {
    match e {
        RunError::Prepare(p) => prepare_failed(p),
        RunError::Runtime(_) => {
            eprintln!("{e}");
            EXIT_INVALID
        }
        RunError::GroupBusy(_) => {
            eprintln!("error: {e}");
            EXIT_BUSY
        }
        RunError::TakenOver { .. } => {
            eprintln!("error: {e}");
            EXIT_TAKEN_OVER
        }
        _ => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

/// Says why a playbook could not be planned; exit code 2.
pub(crate) fn prepare_failed(e: &PrepareError) -> u8 {
    match e {
        PrepareError::Load(e) => {
            super::report(e);
            EXIT_INVALID
        }
        PrepareError::Invalid { file, lines } => invalid(file, lines),
        PrepareError::Environment(lines) => {
            for l in lines {
                eprintln!("error: {l}");
            }
            EXIT_INVALID
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
/// With a shared journal: stops run `run_id` as SIGTERM would when someone
/// asks the queue to cancel it (`runner serve`'s cancel of a run a worker
/// carries); looks every second.
fn watch_cancel(service: &Service, run_id: &str, tx: Interrupter) {
    let Some(url) = service.settings().database.as_ref() else {
        return;
    };
    let (url, run_id) = (url.expose().to_owned(), run_id.to_owned());
    tokio::spawn(async move {
        let queue = match tokio::task::spawn_blocking(move || {
            crate::record::postgres::queue::PgQueue::open(&url)
        })
        .await
        {
            Ok(Ok(q)) => std::sync::Arc::new(q),
            _ => return,
        };
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let (q, id) = (queue.clone(), run_id.clone());
            if let Ok(Ok(Some(by))) =
                tokio::task::spawn_blocking(move || q.cancel_requested(&id)).await
            {
                eprintln!(
                    "run {run_id}: cancelled by {by}; running the failure and finally handlers"
                );
                let _ = tx.send(Some(engine::Interrupt::Term));
                return;
            }
        }
    });
}

fn watch_signals(tx: Interrupter) {
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

/// The plugin checks of `runner validate`: load each plugin, check `with:`
/// against its input schema and its capabilities against its grants.
pub fn check_plugins(v: playbook::Validated) -> Result<playbook::Validated, playbook::LoadError> {
    service(None).check_plugins(v)
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
    let runtime = match service(None).runtime() {
        Ok(r) => r,
        Err(e) => return refused(&e),
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
