//! The detail after the summary: gates with their measured values, watches,
//! approvals, the handlers that ran, failures and outputs.

use std::fmt::Write;

use serde_json::Value;

use super::words::{
    cell_code, cell_shown, cell_text, cell_value, code, decisions_text, offset, outcome_text,
    place, secs, text, verdict_name,
};
use super::{INLINE_CHARS, OUTPUT_CHARS};
use crate::engine::Event;
use crate::report::analysis::{self, Run};
use crate::report::{RunInfo, compact};

pub(super) fn gates(out: &mut String, info: &RunInfo, run: &Run<'_>) {
    let gates: Vec<usize> = (0..run.events.len())
        .filter(|&i| matches!(run.events[i].event, Event::Gate { .. }))
        .collect();
    if gates.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Gates\n");
    let _ = writeln!(
        out,
        "| Gate | Stage | At | Outcome | Condition | Expression | Measured value | Refers to |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for i in gates {
        let Event::Gate { stage, step, .. } = &run.events[i].event else {
            continue;
        };
        let Some(view) = analysis::gate_view(run, info, i) else {
            continue;
        };
        let refs = view
            .refers_to
            .iter()
            .map(|(p, v)| format!("{} = {}", cell_code(p), cell_shown(v.as_ref())))
            .collect::<Vec<_>>()
            .join("<br>");
        for (which, expr, value) in &view.conditions {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {which} | {} | {} | {} |",
                cell_code(step),
                stage.as_deref().map_or("—".to_owned(), cell_code),
                offset(run.events[i].offset_ms),
                cell_text(view.outcome),
                cell_code(expr),
                cell_code(&compact(value)),
                if refs.is_empty() { "—" } else { &refs }
            );
        }
    }
    out.push('\n');
}

pub(super) fn watches(out: &mut String, run: &Run<'_>) {
    let watched: Vec<usize> = (0..run.steps().len())
        .filter(|&s| !run.measurements_of(s).is_empty())
        .collect();
    if watched.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Watches\n");
    for s in watched {
        let step = &run.steps()[s];
        let _ = writeln!(
            out,
            "### {}{}: {}\n",
            code(&step.id),
            place(run, s),
            text(step.status())
        );
        if let Some(r) = run.record(s).filter(|r| !r.summary.is_empty()) {
            let _ = writeln!(out, "{}\n", text(&r.summary));
        }
        measurement_table(out, run, &run.measurements_of(s));
    }
}

pub(super) fn measurement_table(out: &mut String, run: &Run<'_>, events: &[usize]) {
    let _ = writeln!(out, "| # | At | Verdict | Outputs | Error |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for &i in events {
        if let Event::Measurement {
            n,
            verdict,
            outputs,
            error,
            ..
        } = &run.events[i].event
        {
            let outputs = if outputs.is_empty() {
                "—".to_owned()
            } else {
                cell_value(&Value::Object(outputs.clone()), INLINE_CHARS)
            };
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {outputs} | {} |",
                offset(run.events[i].offset_ms),
                cell_text(&verdict_name(verdict)),
                error.as_deref().map_or("—".to_owned(), cell_text)
            );
        }
    }
    out.push('\n');
}

pub(super) fn approvals(out: &mut String, run: &Run<'_>) {
    let asked: Vec<usize> = (0..run.events.len())
        .filter(|&i| matches!(run.events[i].event, Event::ApprovalRequested { .. }))
        .collect();
    if asked.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Approvals\n");
    let _ = writeln!(
        out,
        "| Step | Stage | Asked at | Prompt | Approvers | Outcome | Waited | Decisions |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for i in asked {
        let Event::ApprovalRequested {
            stage,
            step,
            prompt,
            approvers,
            ..
        } = &run.events[i].event
        else {
            continue;
        };
        // Its answer: the next `approval_decided` of the same step.
        let decided = run.events[i + 1..].iter().find(|e| {
            matches!(&e.event, Event::ApprovalDecided { stage: s, step: t, .. } if s == stage && t == step)
        });
        let (outcome, waited, decisions) = match decided {
            Some(d) => match &d.event {
                Event::ApprovalDecided {
                    outcome, decisions, ..
                } => (
                    cell_text(outcome),
                    secs(d.offset_ms.saturating_sub(run.events[i].offset_ms) as f64 / 1000.0),
                    if decisions.is_empty() {
                        "—".to_owned()
                    } else {
                        cell_text(&decisions_text(decisions))
                    },
                ),
                _ => unreachable!("matched above"),
            },
            None => (
                "no answer recorded".to_owned(),
                "—".to_owned(),
                "—".to_owned(),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {} | {outcome} | {waited} | {decisions} |",
            cell_code(step),
            stage.as_deref().map_or("—".to_owned(), cell_code),
            offset(run.events[i].offset_ms),
            cell_text(&run.events[i].at),
            cell_text(prompt),
            if approvers.is_empty() {
                "anyone".to_owned()
            } else {
                cell_text(&approvers.join(", "))
            }
        );
    }
    out.push('\n');
}

pub(super) fn handlers(out: &mut String, run: &Run<'_>) {
    if run.lists().is_empty() {
        return;
    }
    let _ = writeln!(out, "## Handlers that ran\n");
    for list in run.lists() {
        let whose = match &list.scope {
            Some(s) => format!("of stage {}", code(s)),
            None => "of the run".to_owned(),
        };
        let _ = writeln!(
            out,
            "### {} {whose}, from {}\n",
            code(list.kind),
            offset(run.events[list.at].offset_ms)
        );
        if list.steps.is_empty() {
            let _ = writeln!(out, "No step of it is recorded.\n");
            continue;
        }
        let _ = writeln!(out, "| Step | Status | Duration | Summary or error |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for &s in &list.steps {
            let step = &run.steps()[s];
            let (duration, what) = match run.record(s) {
                Some(r) => (secs(r.duration_ms as f64 / 1000.0), outcome_text(r)),
                None => ("—".to_owned(), "never finished".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {duration} | {what} |",
                cell_code(&step.id),
                cell_text(step.status())
            );
        }
        out.push('\n');
    }
}

pub(super) fn failures(out: &mut String, run: &Run<'_>) {
    let failed = run.failures();
    let mut unfinished = run.unfinished();
    unfinished.extend((0..run.steps().len()).filter(|&s| run.steps()[s].cut));
    unfinished.sort_by_key(|&s| run.steps()[s].started);
    if failed.is_empty() && unfinished.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Failures\n");
    let _ = writeln!(
        out,
        "| Step | Stage | Role | At | Status | Error kind | Error |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    for s in failed.into_iter().chain(unfinished) {
        let step = &run.steps()[s];
        let role = match run.list_of(s) {
            Some(l) => format!("{} handler", l.kind),
            None if run.tolerated(s) => "step, allowed to fail".to_owned(),
            None => "step".to_owned(),
        };
        let at = step
            .finished
            .or(step.started)
            .map_or("—".to_owned(), |i| offset(run.events[i].offset_ms));
        let (kind, error) = match run.record(s) {
            Some(r) => (
                r.error_kind.map_or("—".to_owned(), cell_code),
                r.error.as_deref().map_or("—".to_owned(), cell_text),
            ),
            None if step.cut => (
                "—".to_owned(),
                if run.taken_up(s) {
                    "the runner died while it ran; after `runner resume` it ran again or was failed (below)".to_owned()
                } else {
                    "the runner died while it ran; the run was resumed".to_owned()
                },
            ),
            None => ("—".to_owned(), "started, never finished".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {role} | {at} | {} | {kind} | {error} |",
            cell_code(&step.id),
            step.stage.as_deref().map_or("—".to_owned(), cell_code),
            cell_text(step.status()),
        );
    }
    out.push('\n');
}

pub(super) fn outputs(out: &mut String, run: &Run<'_>) {
    let with: Vec<usize> = (0..run.steps().len())
        .filter(|&s| run.record(s).is_some_and(|r| !r.outputs.is_empty()))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Outputs\n");
    let _ = writeln!(out, "| Step | Stage | Output | Value |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for s in with {
        let step = &run.steps()[s];
        let Some(r) = run.record(s) else { continue };
        for (k, v) in &r.outputs {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell_code(&step.id),
                step.stage.as_deref().map_or("—".to_owned(), cell_code),
                cell_code(k),
                cell_value(v, OUTPUT_CHARS)
            );
        }
    }
    out.push('\n');
}
