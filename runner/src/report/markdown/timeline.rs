//! The timeline: every event, one row each, in words; it comes last, being
//! the longest part.

use std::fmt::Write;

use serde_json::Value;

use super::words::{
    against, cell_code, cell_text, cell_value, decisions_text, in_stage, list_name, name, offset,
    outcome_text, secs, verdict_name,
};
use super::{INLINE_CHARS, OUTPUT_CHARS};
use crate::engine::Event;
use crate::report::analysis::Run;
use crate::report::compact;

pub(super) fn timeline(out: &mut String, run: &Run<'_>) {
    let _ = writeln!(out, "## Timeline\n");
    if run.events.is_empty() {
        let _ = writeln!(out, "No events were recorded.\n");
        return;
    }
    let _ = writeln!(out, "| Offset | Time | Event | What happened |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for (i, e) in run.events.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            offset(e.offset_ms),
            cell_text(&e.at),
            cell_code(&name(&e.event)),
            detail(run, i)
        );
    }
    out.push('\n');
}

/// One line of the timeline: the event in words, a table cell.
pub(super) fn detail(run: &Run<'_>, i: usize) -> String {
    let role = || {
        run.step_of(i)
            .and_then(|s| run.list_of(s))
            .map_or(String::new(), |l| format!(" (handler in {})", list_name(l)))
    };
    let limits = |timeout: &Option<f64>, budget: &Option<f64>| {
        let mut t = String::new();
        if let Some(x) = timeout {
            let _ = write!(t, "; timeout {}", secs(*x));
        }
        if let Some(x) = budget {
            let _ = write!(t, "; budget {}", secs(*x));
        }
        t
    };
    match &run.events[i].event {
        Event::RunStarted {
            playbook,
            timeout_s,
            budget_s,
            by,
            by_source,
        } => format!(
            "run of {} started{}{}",
            cell_code(playbook),
            crate::identity::recorded(by.as_deref(), by_source.as_deref())
                .map(|w| format!(" by {}", cell_text(&w)))
                .unwrap_or_default(),
            limits(timeout_s, budget_s)
        ),
        Event::RunResumed {
            restored,
            in_flight,
            by,
            by_source,
        } => {
            let mut t = format!(
                "run resumed after the runner died{}: {restored} finished step{} restored from the journal",
                crate::identity::recorded(by.as_deref(), by_source.as_deref())
                    .map(|w| format!(" by {}", cell_text(&w)))
                    .unwrap_or_default(),
                if *restored == 1 { "" } else { "s" }
            );
            if !in_flight.is_empty() {
                let names: Vec<String> = in_flight.iter().map(|s| cell_code(s)).collect();
                let _ = write!(t, "; in flight when it died: {}", names.join(", "));
            }
            t
        }
        Event::StepRestored(r) => format!(
            "{}{} **{}**{}, restored from the journal (it does not run again): {}",
            cell_code(&r.step),
            in_stage(&r.stage),
            cell_text(r.status),
            role(),
            outcome_text(r)
        ),
        Event::StageStarted {
            stage,
            timeout_s,
            budget_s,
        } => format!(
            "stage {} started{}",
            cell_code(stage),
            limits(timeout_s, budget_s)
        ),
        Event::StageSkipped { stage } => {
            format!("stage {} skipped: its `if` is false", cell_code(stage))
        }
        Event::StepStarted {
            stage, step, kind, ..
        } => format!(
            "{} {} started{}{}",
            cell_text(kind),
            cell_code(step),
            in_stage(stage),
            role()
        ),
        Event::Retry {
            stage,
            step,
            attempt,
            delay_ms,
            error,
        } => format!(
            "{}{}: attempt {attempt} failed ({}); next attempt in {}",
            cell_code(step),
            in_stage(stage),
            cell_text(error),
            secs(*delay_ms as f64 / 1000.0)
        ),
        Event::Measurement {
            stage,
            step,
            n,
            verdict,
            outputs,
            error,
            nan,
        } => {
            let mut t = format!(
                "{}{} measurement {n}: {}",
                cell_code(step),
                in_stage(stage),
                cell_text(&verdict_name(verdict))
            );
            if !outputs.is_empty() {
                let _ = write!(
                    t,
                    "; {}",
                    cell_value(&Value::Object(outputs.clone()), INLINE_CHARS)
                );
            }
            if let Some(e) = error {
                let _ = write!(t, "; error: {}", cell_text(e));
            }
            if let Some(why) = nan {
                let _ = write!(t, "; {}", cell_text(why));
            }
            t
        }
        Event::Gate {
            stage,
            step,
            outcome,
            pass,
            pass_value,
            fail,
            fail_value,
        } => {
            let mut t = format!(
                "gate {}{}: **{}**",
                cell_code(step),
                in_stage(stage),
                cell_text(outcome)
            );
            if let (Some(f), Some(v)) = (fail, fail_value) {
                let _ = write!(t, "; fail {} = {}", cell_code(f), cell_code(&compact(v)));
            }
            let _ = write!(
                t,
                "; pass {} = {}",
                cell_code(pass),
                cell_code(&compact(pass_value))
            );
            t
        }
        Event::ApprovalRequested {
            stage,
            step,
            prompt,
            approvers,
            timeout_s,
            ..
        } => format!(
            "{}{} asks {}: {} (times out after {})",
            cell_code(step),
            in_stage(stage),
            if approvers.is_empty() {
                "anyone".to_owned()
            } else {
                cell_text(&approvers.join(", "))
            },
            cell_text(prompt),
            secs(*timeout_s)
        ),
        Event::ApprovalDecided {
            stage,
            step,
            outcome,
            decisions,
        } => {
            let mut t = format!(
                "{}{}: {}",
                cell_code(step),
                in_stage(stage),
                cell_text(outcome)
            );
            if !decisions.is_empty() {
                let _ = write!(t, "; {}", cell_text(&decisions_text(decisions)));
            }
            t
        }
        Event::StepFinished(r) => {
            let attempts = match r.attempts {
                0 | 1 => String::new(),
                n => format!(", {n} attempts"),
            };
            let took = if r.status == "skipped" {
                String::new()
            } else {
                format!(" in {}{attempts}", secs(r.duration_ms as f64 / 1000.0))
            };
            format!(
                "{}{} **{}**{took}{}: {}",
                cell_code(&r.step),
                in_stage(&r.stage),
                cell_text(r.status),
                role(),
                outcome_text(r)
            )
        }
        Event::BudgetExceeded {
            stage,
            budget_s,
            elapsed_s,
        } => format!(
            "budget of {} ({}) passed: {} elapsed",
            stage
                .as_deref()
                .map_or("the run".to_owned(), |s| format!("stage {}", cell_code(s))),
            secs(*budget_s),
            secs(*elapsed_s)
        ),
        Event::TimedOut { stage, timeout_s } => format!(
            "{} reached its timeout of {}: running steps are cancelled",
            stage
                .as_deref()
                .map_or("the run".to_owned(), |s| format!("stage {}", cell_code(s))),
            secs(*timeout_s)
        ),
        Event::Interrupted { signal } => format!(
            "{}: running steps are cancelled, handlers run",
            cell_code(signal)
        ),
        Event::Handlers { stage, kind } => format!(
            "{} handlers of {} start",
            cell_code(kind),
            stage
                .as_deref()
                .map_or("the run".to_owned(), |s| format!("stage {}", cell_code(s)))
        ),
        Event::StageFinished {
            stage,
            status,
            duration_s,
            budget_s,
        } => format!(
            "stage {} **{}** after {}{}",
            cell_code(stage),
            cell_text(status),
            secs(*duration_s),
            budget_s.map_or(String::new(), |b| format!(
                " (budget {}: {})",
                secs(b),
                against(*duration_s, b)
            ))
        ),
        Event::RunFinished {
            status,
            duration_s,
            handler_failures,
            ..
        } => format!(
            "run **{}** after {}; {handler_failures} handler failure{}",
            cell_text(status),
            secs(*duration_s),
            if *handler_failures == 1 { "" } else { "s" }
        ),
        // An event this module does not know yet: its fields, as they are.
        #[allow(unreachable_patterns)]
        other => serde_json::to_value(other)
            .map(|mut v| {
                if let Some(fields) = v.as_object_mut() {
                    fields.remove("event");
                }
                cell_value(&v, OUTPUT_CHARS)
            })
            .unwrap_or_default(),
    }
}
