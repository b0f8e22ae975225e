//! The commands over the journal: `resume`, `rerun`, `runs list|show|prune`,
//! `stats`.

use super::exec::{Drive, drive, human, refused, service};
use super::{EXIT_INVALID, EXIT_OK, JournalArg, Output, print};
use crate::playbook::scalars::parse_duration;
use crate::record::{self, Journal, RunRow};
use crate::service::Service;

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

/// Opens the journal of `arg` to read; the exit code when it cannot be.
fn reading(arg: &JournalArg) -> Result<(Service, Box<dyn Journal>), u8> {
    let service = service(Some(arg));
    let journal = service.journal_to_read().map_err(|e| refused(&e))?;
    Ok((service, journal))
}

fn find(j: &dyn Journal, id: &str) -> Result<RunRow, u8> {
    crate::service::find(j, id).map_err(|e| refused(&e))
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

/// `runner resume RUN_ID`.
pub fn resume(args: &ResumeArgs) -> u8 {
    let service = service(Some(&args.journal));
    drive(
        &service,
        Drive::Resume {
            run_id: &args.run_id,
        },
        args.output,
        &args.access,
        &args.record,
    )
}

/// `runner rerun RUN_ID --from STEP`.
pub fn rerun(args: &RerunArgs) -> u8 {
    let service = service(Some(&args.journal));
    drive(
        &service,
        Drive::Rerun {
            run_id: &args.run_id,
            from: &args.from,
        },
        args.output,
        &args.access,
        &args.record,
    )
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
            let (service, j) = match reading(journal) {
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
                    && service
                        .settings()
                        .state_dir
                        .as_deref()
                        .is_some_and(|s| record::recorder::mark_gone(s, &r.id))
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
            let (service, j) = match reading(journal) {
                Ok(j) => j,
                Err(code) => return code,
            };
            let state = service.settings().state_dir.clone();
            let run = match find(j.as_ref(), run_id) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let events = match j.events(run_id) {
                Ok(e) => e,
                Err(e) => return refuse(e),
            };
            let lacks = crate::service::lacking(state.as_deref(), &run, &events);
            let lease = j.lease(run_id).ok().flatten();
            match output {
                ShowFormat::Json => {
                    let mut shown = serde_json::json!({ "run": run, "events": events });
                    if let Some(l) = &lacks {
                        shown["journal"] = l.as_str().into();
                    }
                    if let Some(l) = &lease {
                        shown["lease"] = serde_json::to_value(l).unwrap_or_default();
                    }
                    print(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&shown).unwrap_or_default()
                    ))
                }
                ShowFormat::Markdown => print(&crate::service::markdown_report(
                    state.as_deref(),
                    &run,
                    events,
                )),
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
                    if let Some(l) = &lease {
                        out.push_str(&format!("  {}\n\n", lease_line(l, &run.status)));
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
            let service = service(Some(journal));
            let mut j = match service.journal() {
                Ok(j) => j,
                Err(e) => return refused(&e),
            };
            let age = match older_than.as_deref() {
                None => service.settings().retention,
                Some(t) => match parse_duration(t) {
                    Ok(d) => d,
                    Err(e) => {
                        return refuse(format!("`{t}` is not a duration ({e}); write e.g. 90d"));
                    }
                },
            };
            match service.prune(j.as_mut(), record::now_ms() - age.as_millis() as i64) {
                Ok(ids) => {
                    print(&format!(
                        "pruned {} finished runs older than {}\n",
                        ids.len(),
                        crate::playbook::scalars::format_duration(age)
                    ));
                    EXIT_OK
                }
                Err(e) => refused(&e),
            }
        }
    }
}

/// `runner stats`.
/// Who carries a run on in a shared journal, and how fresh that is.
fn lease_line(l: &record::Lease, status: &str) -> String {
    let who = format!(
        "{}pid {}",
        l.holder
            .host
            .as_ref()
            .map(|h| format!("{} ", crate::host::text::printable(h)))
            .unwrap_or_default(),
        l.holder.pid
    );
    let state = match l.left_s {
        None => "lease given back".to_owned(),
        Some(left) if left >= 0.0 => format!("lease runs {left:.0}s more (renewed)"),
        Some(left) if status == "running" => format!(
            "lease ran out {:.0}s ago: its runner is gone; a worker or `runner resume` takes it over",
            -left
        ),
        Some(left) => format!("lease ran out {:.0}s ago", -left),
    };
    let taken = match l.takeovers {
        0 => String::new(),
        1 => ", taken over once".to_owned(),
        n => format!(", taken over {n} times"),
    };
    format!("owner {who}: {state}{taken}")
}

pub fn stats(args: &StatsArgs) -> u8 {
    let (_, j) = match reading(&args.journal) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let since = match since_ms(&args.since) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let figures = match record::stats::stats(j.as_ref(), Some(since), args.playbook.as_deref()) {
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
