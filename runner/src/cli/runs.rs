//! The commands over the journal: `resume`, `rerun`, `runs list|show|prune`,
//! `stats`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::exec::{Launch, forget, human, launch, open_journal, open_journal_to_read, retention};
use super::{EXIT_INVALID, EXIT_OK, Output, RunArgs, print};
use crate::engine;
use crate::playbook::scalars::parse_duration;
use crate::record::{self, Journal, RunRow};

/// Where a command finds the journal and the secrets.
#[derive(Debug, clap::Args)]
pub struct JournalArg {
    /// The run journal (SQLite); default: journal.sqlite in the state directory.
    #[arg(long, value_name = "FILE", env = "RUNNER_JOURNAL")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run to continue.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub access: super::AccessArgs,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Output: auto (a live tree on a terminal, else JSON Lines), text, json.
    #[arg(long, value_enum, default_value_t = Output::Auto)]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// The finished run to start again.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The step to start from: it and what comes after it run again.
    #[arg(long, value_name = "STEP")]
    pub from: String,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub access: super::AccessArgs,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Output: auto (a live tree on a terminal, else JSON Lines), text, json.
    #[arg(long, value_enum, default_value_t = Output::Auto)]
    pub output: Output,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Past runs, newest first.
    List {
        /// Only runs of this playbook (its `name`).
        #[arg(long)]
        playbook: Option<String>,
        /// Only runs with this status.
        #[arg(long, value_parser = ["running", "succeeded", "failed", "timed_out", "interrupted"])]
        status: Option<String>,
        /// Only runs started within this long, e.g. `7d`, `12h`.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        journal: JournalArg,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One run: its details and timeline.
    Show {
        #[arg(value_name = "RUN_ID")]
        run_id: String,
        #[command(flatten)]
        journal: JournalArg,
        /// text (timeline), json (every event), markdown (the run's report).
        #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
        output: ShowFormat,
    },
    /// Delete finished runs older than a duration, with their artifacts.
    Prune {
        /// E.g. `90d`; default: RUNNER_RETENTION, else 90 days.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        #[command(flatten)]
        journal: JournalArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Runs started within this long; default 30d.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub since: String,
    /// Only this playbook.
    #[arg(long)]
    pub playbook: Option<String>,
    #[command(flatten)]
    pub journal: JournalArg,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn refuse(message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    EXIT_INVALID
}

/// What the journal lacks of `run`: a run started with an intact mark (see
/// `record::recorder`) that the journal says is running but whose mark is
/// gone stopped being recorded at some point. `None`: nothing known missing.
fn lacking(run: &RunRow, events: &[crate::record::Stored]) -> Option<String> {
    if run.status != "running" || !run.guarded {
        return None;
    }
    let state = super::state_dir()?;
    let mark = record::recorder::mark_path(&state, &run.id);
    if mark.symlink_metadata().is_ok() {
        return None;
    }
    Some(match events.last() {
        Some(last) => format!(
            "the journal stopped taking this run's events: it has them up to event #{} ({}), not what came after",
            last.seq, last.at
        ),
        None => "the journal stopped taking this run's events before the first one".to_owned(),
    })
}

/// A run's markdown report, rebuilt from the journal.
fn markdown(run: &RunRow, events: Vec<crate::record::Stored>) -> String {
    let info = crate::report::RunInfo {
        journal: lacking(run, &events),
        run_id: run.id.clone(),
        playbook: run.playbook.clone(),
        file: run.file.clone(),
        started_at: run.started_at.clone(),
        inputs: run.inputs.as_object().cloned().unwrap_or_default(),
    };
    let stamped: Vec<crate::report::Stamped> = events
        .into_iter()
        .map(|s| crate::report::Stamped {
            at: s.at,
            offset_ms: s.offset_ms.max(0) as u64,
            event: s.event,
        })
        .collect();
    crate::report::markdown(&info, &stamped)
}

/// The markdown report of run `id` in the journal at `path` (for the
/// `run_report(ID)` expression function).
pub(crate) fn run_report(path: &std::path::Path, id: &str) -> Result<String, String> {
    let j = Journal::open_read(path)?;
    let run = j
        .run(id)?
        .ok_or_else(|| format!("no run `{id}` in the journal `{}`", path.display()))?;
    Ok(markdown(&run, j.events(id)?))
}

fn find(j: &Journal, id: &str) -> Result<RunRow, u8> {
    match j.run(id) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(refuse(format!(
            "no run `{id}` in the journal `{}`; `runner runs list` shows the runs",
            j.path.display()
        ))),
        Err(e) => Err(refuse(e)),
    }
}

fn since_ms(text: &str) -> Result<i64, u8> {
    parse_duration(text)
        .map(|d| record::now_ms() - d.as_millis() as i64)
        .map_err(|e| {
            refuse(format!(
                "`{text}` is not a duration ({e}); write e.g. 7d, 12h, 30m"
            ))
        })
}

fn same_playbook(run: &RunRow) -> Result<(), u8> {
    use sha2::Digest;
    let bytes = std::fs::read(&run.file).map_err(|e| {
        refuse(format!(
            "cannot read the playbook `{}` of run {}: {e}",
            run.file, run.id
        ))
    })?;
    let now = crate::host::cache::hex(&sha2::Sha256::digest(&bytes));
    if now != run.file_sha256 {
        return Err(refuse(format!(
            "the playbook `{}` changed since run {} started; a run is not continued with another version of its playbook: start a new run",
            run.file, run.id
        )));
    }
    Ok(())
}

/// `runner resume RUN_ID`.
pub fn resume(args: &ResumeArgs) -> u8 {
    let journal = match open_journal(args.journal.journal.as_deref()) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let run = match find(&journal, &args.run_id) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The run's lock first, then its state: read before the lock, a second
    // `resume` started at the same moment would see the same unfinished steps
    // and run them again.
    let alive = match super::exec::hold_run(&run.id) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let run = match find(&journal, &run.id) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if run.status != "running" {
        return refuse(format!(
            "run {} already ended ({}); there is nothing to resume. To run it again from a step: runner rerun {} --from STEP",
            run.id, run.status, run.id
        ));
    }
    let events = match journal.events(&run.id) {
        Ok(events) => events,
        Err(e) => return refuse(e),
    };
    // A journal that missed events cannot say which steps finished: resuming
    // from it could run a finished deployment step, or a rollback, again.
    if let Some(lack) = lacking(&run, &events) {
        let reports = super::state_dir()
            .map(|s| format!(" ({})", s.join("reports").display()))
            .unwrap_or_default();
        return refuse(format!(
            "run {id} cannot be resumed: {lack}, so which of its steps finished is not known, and resuming could run a finished step (a deployment, a rollback) again.\n  What was recorded: runner runs show {id}. The reports the run wrote when it ended{reports} have every event, if they could be written.\n  Check by hand what the run changed; start a new run if one is needed.",
            id = run.id
        ));
    }
    if let Err(code) = same_playbook(&run) {
        return code;
    }
    let steps = match journal.steps(&run.id) {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    // A run that had started its failure path finishes that path only.
    let stopping = engine::stopping(events.iter().map(|s| &s.event));
    let run_args = RunArgs {
        file: PathBuf::from(&run.file),
        inputs: run.input_args.clone(),
        env: run.env_file.as_ref().map(PathBuf::from),
        output: args.output,
    };
    launch(Launch {
        run: &run_args,
        access: &args.access,
        journal,
        run_id: run.id.clone(),
        resume: engine::Resume {
            resumed: true,
            restored: steps.finished,
            in_flight: steps.in_flight,
            stopping,
        },
        parent: None,
        alive: Some(alive),
        record: args.record.clone(),
    })
}

/// `runner rerun RUN_ID --from STEP`.
pub fn rerun(args: &RerunArgs) -> u8 {
    let journal = match open_journal(args.journal.journal.as_deref()) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let run = match find(&journal, &args.run_id) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if run.status == "running" {
        return refuse(format!(
            "run {} has not ended; if its runner died, continue it with: runner resume {}",
            run.id, run.id
        ));
    }
    if let Err(code) = same_playbook(&run) {
        return code;
    }
    let run_args = RunArgs {
        file: PathBuf::from(&run.file),
        inputs: run.input_args.clone(),
        env: run.env_file.as_ref().map(PathBuf::from),
        output: args.output,
    };
    let plan = match super::load_and_plan(&run_args) {
        Ok(l) => l.plan,
        Err(code) => return code,
    };
    let steps = match journal.steps(&run.id) {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    let keep = match kept_before(&plan, &args.from) {
        Ok(k) => k,
        Err(e) => return refuse(e),
    };
    let restored: HashMap<String, engine::StepRecord> = steps
        .finished
        .into_iter()
        .filter(|(id, r)| keep.contains(id.as_str()) && matches!(r.status, "succeeded" | "skipped"))
        .collect();
    launch(Launch {
        run: &run_args,
        access: &args.access,
        journal,
        run_id: super::exec::new_run_id(),
        resume: engine::Resume {
            resumed: false,
            restored,
            in_flight: HashMap::new(),
            stopping: None,
        },
        parent: Some(run.id.clone()),
        alive: None,
        record: args.record.clone(),
    })
}

/// The steps whose results a re-run from `from` keeps: every step of earlier
/// stages, and the steps of `from`'s stage that do not wait on it (directly or
/// not). Handlers always run again.
fn kept_before<'p>(plan: &'p crate::plan::Plan, from: &str) -> Result<HashSet<&'p str>, String> {
    let Some(at) = plan
        .stages
        .iter()
        .position(|s| s.steps.iter().any(|p| p.step.id.as_str() == from))
    else {
        let ids: Vec<&str> = plan
            .stages
            .iter()
            .flat_map(|s| s.steps.iter().map(|p| p.step.id.as_str()))
            .collect();
        return Err(format!(
            "the playbook has no step `{from}` to start from (handlers cannot be chosen); its steps: {}",
            ids.join(", ")
        ));
    };
    let mut keep: HashSet<&str> = plan.stages[..at]
        .iter()
        .flat_map(|s| s.steps.iter().map(|p| p.step.id.as_str()))
        .collect();
    let stage = &plan.stages[at];
    // Steps that wait on `from`, transitively.
    let mut tainted: HashSet<&str> = HashSet::from([from]);
    let mut grew = true;
    while grew {
        grew = false;
        for p in &stage.steps {
            let id = p.step.id.as_str();
            if !tainted.contains(id) && p.after.iter().any(|a| tainted.contains(a.as_str())) {
                tainted.insert(id);
                grew = true;
            }
        }
    }
    keep.extend(
        stage
            .steps
            .iter()
            .map(|p| p.step.id.as_str())
            .filter(|id| !tainted.contains(id)),
    );
    Ok(keep)
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| {
            crate::playbook::scalars::format_duration(std::time::Duration::from_millis(
                ms.max(0) as u64
            ))
        },
    )
}

/// `runner runs …`.
pub fn runs(cmd: &RunsCommand) -> u8 {
    match cmd {
        RunsCommand::List {
            playbook,
            status,
            since,
            limit,
            journal,
            output,
        } => {
            let j = match open_journal_to_read(journal.journal.as_deref()) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let since_ms = match since.as_deref().map(since_ms).transpose() {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rows = match j.list(&record::Filter {
                playbook: playbook.as_deref(),
                status: status.as_deref(),
                since_ms,
                limit: Some(*limit),
            }) {
                Ok(r) => r,
                Err(e) => return refuse(e),
            };
            if *output == Output::Json {
                print(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                ));
                return EXIT_OK;
            }
            let mut out = format!(
                "{:<24} {:<20} {:<12} {:<24} {:>10}  {}\n",
                "RUN", "PLAYBOOK", "STATUS", "STARTED", "DURATION", "NOTES"
            );
            for r in &rows {
                let mut notes = Vec::new();
                if r.rolled_back {
                    notes.push("rolled back".to_owned());
                }
                if let Some(p) = &r.parent {
                    notes.push(format!("re-runs {p}"));
                }
                if let Some(by) = &r.started_by {
                    notes.push(format!("by {}", crate::host::text::printable(by)));
                }
                if r.status == "running"
                    && r.guarded
                    && super::state_dir().is_some_and(|s| {
                        record::recorder::mark_path(&s, &r.id)
                            .symlink_metadata()
                            .is_err()
                    })
                {
                    notes.push("journal incomplete".to_owned());
                }
                out.push_str(&format!(
                    "{:<24} {:<20} {:<12} {:<24} {:>10}  {}\n",
                    r.id,
                    r.playbook,
                    r.status,
                    r.started_at,
                    secs(r.duration_ms),
                    notes.join(", ")
                ));
            }
            if rows.is_empty() {
                out.push_str("(no runs)\n");
            }
            print(&out);
            EXIT_OK
        }
        RunsCommand::Show {
            run_id,
            journal,
            output,
        } => {
            let j = match open_journal_to_read(journal.journal.as_deref()) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let run = match find(&j, run_id) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let events = match j.events(run_id) {
                Ok(e) => e,
                Err(e) => return refuse(e),
            };
            let lacks = lacking(&run, &events);
            match output {
                ShowFormat::Json => {
                    let mut shown = serde_json::json!({ "run": run, "events": events });
                    if let Some(l) = &lacks {
                        shown["journal"] = l.as_str().into();
                    }
                    print(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&shown).unwrap_or_default()
                    ))
                }
                ShowFormat::Markdown => print(&markdown(&run, events)),
                ShowFormat::Text => {
                    let mut out = format!(
                        "run {} — {} ({})\n  file {}\n  started {}{}, duration {}{}\n  inputs {}\n\n",
                        run.id,
                        run.playbook,
                        run.status,
                        run.file,
                        run.started_at,
                        run.started_by
                            .as_ref()
                            .map(|b| format!(" by {}", crate::host::text::printable(b)))
                            .unwrap_or_default(),
                        secs(run.duration_ms),
                        run.parent
                            .as_ref()
                            .map(|p| format!(", re-runs {p}"))
                            .unwrap_or_default(),
                        run.inputs
                    );
                    if let Some(l) = &lacks {
                        out.push_str(&format!(
                            "  INCOMPLETE RECORD: {l}; `runner resume` refuses this run\n\n"
                        ));
                    }
                    for e in &events {
                        if let Some(line) = human(&e.event) {
                            let offset = secs(Some(e.offset_ms));
                            for (i, l) in line.lines().enumerate() {
                                let stamp = if i == 0 { offset.as_str() } else { "" };
                                out.push_str(&format!("{stamp:>10}  {}\n", l.trim_start()));
                            }
                        }
                    }
                    print(&out);
                }
            }
            EXIT_OK
        }
        RunsCommand::Prune {
            older_than,
            journal,
        } => {
            let mut j = match open_journal(journal.journal.as_deref()) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let age = match older_than.as_deref() {
                None => retention(),
                Some(t) => match parse_duration(t) {
                    Ok(d) => d,
                    Err(e) => {
                        return refuse(format!("`{t}` is not a duration ({e}); write e.g. 90d"));
                    }
                },
            };
            match j.prune(record::now_ms() - age.as_millis() as i64) {
                Ok(ids) => {
                    if let Some(state) = super::state_dir() {
                        forget(&state, &ids);
                    }
                    print(&format!(
                        "pruned {} finished runs older than {}\n",
                        ids.len(),
                        crate::playbook::scalars::format_duration(age)
                    ));
                    EXIT_OK
                }
                Err(e) => refuse(e),
            }
        }
    }
}

/// `runner stats`.
pub fn stats(args: &StatsArgs) -> u8 {
    let j = match open_journal_to_read(args.journal.journal.as_deref()) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let since = match since_ms(&args.since) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let figures = match record::stats::stats(&j, Some(since), args.playbook.as_deref()) {
        Ok(f) => f,
        Err(e) => return refuse(e),
    };
    if args.output == Output::Json {
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&figures).unwrap_or_default()
        ));
        return EXIT_OK;
    }
    let pct = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let dur = |s: Option<f64>| secs(s.map(|s| (s * 1000.0) as i64));
    let mut out = format!(
        "runs started in the last {}\n{:<20} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10}\n",
        args.since, "PLAYBOOK", "RUNS", "SUCCESS", "ROLLBACK", "MEAN", "P95", "MTTR"
    );
    for f in &figures {
        out.push_str(&format!(
            "{:<20} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10}{}\n",
            f.playbook,
            f.runs,
            pct(f.success_rate),
            pct(f.rollback_rate),
            dur(f.mean_duration_s),
            dur(f.p95_duration_s),
            dur(f.mean_time_to_restore_s),
            if f.unrestored > 0 {
                format!(
                    "  ({} failed runs not yet followed by a success)",
                    f.unrestored
                )
            } else {
                String::new()
            }
        ));
    }
    if figures.is_empty() {
        out.push_str("(no runs)\n");
    }
    print(&out);
    EXIT_OK
}
