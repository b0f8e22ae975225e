//! The markdown report: for the people on call, the post-mortem, and GitHub's
//! step summary (GitHub-flavoured markdown: tables, `<br>` in cells).
//!
//! Order: what happened and why first (title, why it did not succeed, summary,
//! stages), then the detail (gates, watches, approvals, handlers, failures,
//! outputs), and the timeline last: it is the longest part, and when a summary
//! has to be cut to fit GitHub's limit, what comes before it survives.
//!
//! Files follow that order: this one holds the head (title, summary, stages),
//! `why.rs` the reason a run did not succeed, `evidence.rs` the detail
//! sections, `timeline.rs` the timeline, and `words.rs` how text, code,
//! durations and names are written.

use std::fmt::Write;

use super::analysis::{self, Run};
use super::{RunInfo, Stamped};

mod evidence;
mod timeline;
mod why;
mod words;

use evidence::{approvals, failures, gates, handlers, outputs, watches};
use timeline::timeline;
use why::why;
#[cfg(test)]
pub(super) use words::code;
use words::{against, cell_text, cell_value};
pub(super) use words::{cell_code, secs, text};

/// Longest value shown in the outputs section, in characters.
const OUTPUT_CHARS: usize = 200;
/// Longest outputs shown in one line of the timeline or a measurement row.
const INLINE_CHARS: usize = 120;
/// Measurements shown for a watch that made the run fail.
const LAST_MEASUREMENTS: usize = 5;

pub(super) fn render(info: &RunInfo, events: &[Stamped]) -> String {
    let run = analysis::analyse(events);
    let mut out = String::new();
    title(&mut out, info, &run);
    why(&mut out, info, &run);
    summary(&mut out, info, &run);
    stages(&mut out, &run);
    gates(&mut out, info, &run);
    watches(&mut out, &run);
    approvals(&mut out, &run);
    handlers(&mut out, &run);
    failures(&mut out, &run);
    outputs(&mut out, &run);
    timeline(&mut out, &run);
    out
}

fn title(out: &mut String, info: &RunInfo, run: &Run<'_>) {
    let mark = match run.status() {
        "succeeded" => "✅",
        "failed" => "❌",
        "timed_out" => "⏱️",
        "interrupted" => "⛔",
        _ => "⚠️",
    };
    let _ = writeln!(
        out,
        "# {mark} {}: {}\n",
        text(&info.playbook),
        text(run.status())
    );
    if let Some(missing) = &info.journal {
        let _ = writeln!(
            out,
            "> **Incomplete record.** {}. `runner resume` refuses this run.\n",
            text(missing)
        );
    }
}

fn summary(out: &mut String, info: &RunInfo, run: &Run<'_>) {
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| | |\n| --- | --- |");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(out, "Run", cell_code(&info.run_id));
    row(out, "Playbook", cell_code(&info.playbook));
    row(out, "File", cell_code(&info.file));
    row(out, "Status", cell_text(run.status()));
    row(out, "Started", cell_text(&info.started_at));
    match run.finished().map(|f| &run.events[f]) {
        Some(e) => row(out, "Finished", cell_text(&e.at)),
        None => row(out, "Finished", "never (incomplete)".to_owned()),
    }
    let duration = run.duration();
    row(
        out,
        "Duration",
        if run.finished().is_some() {
            secs(duration)
        } else {
            format!("at least {} (up to the last event)", secs(duration))
        },
    );
    if let Some(b) = run.budget_s() {
        let exceeded = run.budget_exceeded().is_some() || duration > b;
        row(
            out,
            "Budget",
            format!(
                "{}: {}",
                secs(b),
                if exceeded {
                    format!("**exceeded**, {}", against(duration, b))
                } else {
                    format!("kept, {}", against(duration, b))
                }
            ),
        );
    }
    if let Some(t) = run.timeout_s() {
        row(out, "Timeout", secs(t));
    }
    if let Some(n) = run.handler_failures() {
        row(out, "Handler failures", n.to_string());
    }
    if info.inputs.is_empty() {
        row(out, "Inputs", "none".to_owned());
    }
    for (k, v) in &info.inputs {
        row(
            out,
            &format!("Input {}", cell_code(k)),
            cell_value(v, OUTPUT_CHARS),
        );
    }
    out.push('\n');
}

fn stages(out: &mut String, run: &Run<'_>) {
    if run.stages().is_empty() {
        return;
    }
    let _ = writeln!(out, "## Stages\n");
    let _ = writeln!(
        out,
        "| Stage | Status | Duration | Budget | Against budget |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for s in run.stages() {
        let status = s.status.unwrap_or("unfinished");
        let duration = s.duration_s.map_or("—".to_owned(), secs);
        let budget = s.budget_s.map_or("—".to_owned(), secs);
        let vs = match (s.duration_s, s.budget_s) {
            (Some(d), Some(b)) => against(d, b),
            (None, Some(_)) if s.budget_exceeded.is_some() => "over (never finished)".to_owned(),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {duration} | {budget} | {vs} |",
            cell_code(&s.id),
            cell_text(status)
        );
    }
    out.push('\n');
}
