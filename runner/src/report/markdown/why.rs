//! The section that comes first when a run did not succeed: what stopped it,
//! with the evidence.

use std::fmt::Write;

use super::LAST_MEASUREMENTS;
use super::evidence::measurement_table;
use super::words::{
    cell_code, code, decisions_text, list_name, name, offset, place, secs, shown, step_name, text,
};
use crate::engine::Event;
use crate::report::analysis::{self, Run};
use crate::report::{RunInfo, compact};
use crate::run_state::Cause;

/// The section that explains a run that did not succeed: what stopped it, with
/// the evidence (a gate's conditions and values, a watch's last measurements).
pub(super) fn why(out: &mut String, info: &RunInfo, run: &Run<'_>) {
    let Some(cause) = run.cause() else { return };
    let heading = match run.status() {
        "failed" => "Why it failed",
        "timed_out" => "Why it timed out",
        "interrupted" => "Why it stopped",
        _ => "Why it is incomplete",
    };
    let _ = writeln!(out, "## {heading}\n");
    if run.finished().is_none() {
        let last = run.events.last();
        let _ = writeln!(
            out,
            "The events end without `run_finished`: the runner stopped before the run \
             ended (it crashed or was killed), or the record is cut short. Last event: {}.\n",
            last.map_or("none".to_owned(), |e| format!(
                "`{}` at {} ({})",
                name(&e.event),
                offset(e.offset_ms),
                text(&e.at)
            ))
        );
        let unfinished = run.unfinished();
        if !unfinished.is_empty() {
            let names: Vec<String> = unfinished.iter().map(|&s| step_name(run, s)).collect();
            let _ = writeln!(out, "Started and never finished: {}.\n", names.join(", "));
        }
    }
    match cause {
        Cause::Step(s) => failed_step(out, info, run, s),
        Cause::Stopped(i) => stopped(out, run, i),
        Cause::Unknown if run.finished().is_some() => {
            let _ = writeln!(out, "No failed step or stop is recorded in the events.\n");
        }
        Cause::Unknown => {}
    }
    let others: Vec<String> = run
        .failures()
        .into_iter()
        .filter(|&f| cause != Cause::Step(f))
        .filter(|&f| run.record(f).is_some_and(|r| r.status == "failed"))
        .map(|f| {
            let step = &run.steps()[f];
            let mut notes: Vec<String> = step
                .stage
                .as_deref()
                .map(|st| format!("stage {}", code(st)))
                .into_iter()
                .collect();
            if run.tolerated(f) {
                notes.push("allowed to fail".to_owned());
            }
            if let Some(l) = run.list_of(f) {
                notes.push(format!("handler in {}", list_name(l)));
            }
            if notes.is_empty() {
                code(&step.id)
            } else {
                format!("{} ({})", code(&step.id), notes.join(", "))
            }
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "Also failed: {} (see [Failures](#failures)).\n",
            others.join(", ")
        );
    }
}

pub(super) fn failed_step(out: &mut String, info: &RunInfo, run: &Run<'_>, s: usize) {
    let step = &run.steps()[s];
    let Some(record) = run.record(s) else { return };
    let what = match step.kind {
        Some("gate") => "Gate",
        Some("watch") => "Watch",
        Some("approval") => "Approval",
        _ => "Step",
    };
    let at = step.finished.map(|f| &run.events[f]);
    let _ = writeln!(
        out,
        "**{what} {}**{} failed{}{} after {}{}:\n",
        code(&step.id),
        place(run, s),
        record
            .error_kind
            .map_or(String::new(), |k| format!(" ({})", code(k))),
        at.map_or(String::new(), |e| format!(
            " at {} ({})",
            offset(e.offset_ms),
            text(&e.at)
        )),
        secs(record.duration_ms as f64 / 1000.0),
        match record.attempts {
            0 | 1 => String::new(),
            n => format!(", {n} attempts"),
        }
    );
    let _ = writeln!(
        out,
        "> {}\n",
        text(record.error.as_deref().unwrap_or("(no message)"))
    );
    if record.rollback {
        let _ = writeln!(
            out,
            "Nobody answered in time and the step says `on_timeout: rollback`: the run fails whatever `continue_on_error` says.\n"
        );
    }
    if let Some(g) = run
        .gate_of(s)
        .and_then(|g| analysis::gate_view(run, info, g))
    {
        let _ = writeln!(out, "| Condition | Expression | Measured value |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for (which, expr, value) in &g.conditions {
            let _ = writeln!(
                out,
                "| {which} | {} | {} |",
                cell_code(expr),
                cell_code(&compact(value))
            );
        }
        out.push('\n');
        if !g.refers_to.is_empty() {
            let _ = writeln!(
                out,
                "The values the conditions refer to, when the gate was judged:\n"
            );
            for (path, value) in &g.refers_to {
                let _ = writeln!(out, "- {} = {}", code(path), shown(value.as_ref()));
            }
            out.push('\n');
        }
    }
    let measured = run.measurements_of(s);
    if !measured.is_empty() {
        let skip = measured.len().saturating_sub(LAST_MEASUREMENTS);
        let _ = writeln!(
            out,
            "Its last {} of {} measurements:\n",
            measured.len() - skip,
            measured.len()
        );
        measurement_table(out, run, &measured[skip..]);
    }
    for &d in &step.details {
        if let Event::ApprovalDecided {
            outcome, decisions, ..
        } = &run.events[d].event
        {
            let _ = writeln!(
                out,
                "The approval was {}{}.\n",
                text(outcome),
                if decisions.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text(&decisions_text(decisions)))
                }
            );
        }
    }
}

pub(super) fn stopped(out: &mut String, run: &Run<'_>, i: usize) {
    let e = &run.events[i];
    let when = format!("at {} ({})", offset(e.offset_ms), text(&e.at));
    match &e.event {
        Event::TimedOut { stage, timeout_s } => {
            let whose = match stage {
                Some(s) => format!("Stage {}", code(s)),
                None => "The run".to_owned(),
            };
            let _ = writeln!(
                out,
                "{whose} reached its timeout of {} {when}.\n",
                secs(*timeout_s)
            );
        }
        Event::Interrupted { signal } => {
            let _ = writeln!(out, "The runner got {} {when}.\n", code(signal));
        }
        _ => {}
    }
    let cancelled: Vec<String> = (0..run.steps().len())
        .filter(|&s| run.steps()[s].status() == "cancelled")
        .map(|s| step_name(run, s))
        .collect();
    if cancelled.is_empty() {
        let _ = writeln!(out, "No step was running: none was cancelled.\n");
    } else {
        let _ = writeln!(out, "Cancelled: {}.\n", cancelled.join(", "));
    }
}
