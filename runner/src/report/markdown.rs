//! The markdown report: for the people on call, the post-mortem, and GitHub's
//! step summary (GitHub-flavoured markdown: tables, `<br>` in cells).
//!
//! Order: what happened and why first (title, why it did not succeed, summary,
//! stages), then the detail (gates, watches, approvals, handlers, failures,
//! outputs), and the timeline last: it is the longest part, and when a summary
//! has to be cut to fit GitHub's limit, what comes before it survives.

use std::fmt::Write;

use serde_json::Value;

use super::analysis::{self, Cause, Run};
use super::{RunInfo, Stamped, compact, cut};
use crate::engine::Event;

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
    let mark = match run.status {
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
        text(run.status)
    );
    if let Some(missing) = &info.journal {
        let _ = writeln!(
            out,
            "> **Incomplete record.** {}. `runner resume` refuses this run.\n",
            text(missing)
        );
    }
}

/// The section that explains a run that did not succeed: what stopped it, with
/// the evidence (a gate's conditions and values, a watch's last measurements).
fn why(out: &mut String, info: &RunInfo, run: &Run<'_>) {
    let Some(cause) = run.cause() else { return };
    let heading = match run.status {
        "failed" => "Why it failed",
        "timed_out" => "Why it timed out",
        "interrupted" => "Why it stopped",
        _ => "Why it is incomplete",
    };
    let _ = writeln!(out, "## {heading}\n");
    if run.finished.is_none() {
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
        Cause::Unknown if run.finished.is_some() => {
            let _ = writeln!(out, "No failed step or stop is recorded in the events.\n");
        }
        Cause::Unknown => {}
    }
    let others: Vec<String> = run
        .failures()
        .into_iter()
        .filter(|&f| cause != Cause::Step(f))
        .filter(|&f| run.steps[f].record.is_some_and(|r| r.status == "failed"))
        .map(|f| {
            let step = &run.steps[f];
            let mut notes: Vec<String> = step
                .stage
                .map(|st| format!("stage {}", code(st)))
                .into_iter()
                .collect();
            if step.tolerated {
                notes.push("allowed to fail".to_owned());
            }
            if let Some(l) = run.list_of(f) {
                notes.push(format!("handler in {}", list_name(l)));
            }
            if notes.is_empty() {
                code(step.id)
            } else {
                format!("{} ({})", code(step.id), notes.join(", "))
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

fn failed_step(out: &mut String, info: &RunInfo, run: &Run<'_>, s: usize) {
    let step = &run.steps[s];
    let Some(record) = step.record else { return };
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
        code(step.id),
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

fn stopped(out: &mut String, run: &Run<'_>, i: usize) {
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
    let cancelled: Vec<String> = (0..run.steps.len())
        .filter(|&s| run.steps[s].status() == "cancelled")
        .map(|s| step_name(run, s))
        .collect();
    if cancelled.is_empty() {
        let _ = writeln!(out, "No step was running: none was cancelled.\n");
    } else {
        let _ = writeln!(out, "Cancelled: {}.\n", cancelled.join(", "));
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
    row(out, "Status", cell_text(run.status));
    row(out, "Started", cell_text(&info.started_at));
    match run.finished.map(|f| &run.events[f]) {
        Some(e) => row(out, "Finished", cell_text(&e.at)),
        None => row(out, "Finished", "never (incomplete)".to_owned()),
    }
    let duration = run.duration();
    row(
        out,
        "Duration",
        if run.finished.is_some() {
            secs(duration)
        } else {
            format!("at least {} (up to the last event)", secs(duration))
        },
    );
    if let Some(b) = run.budget_s {
        let exceeded = run.budget_exceeded.is_some() || duration > b;
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
    if let Some(t) = run.timeout_s {
        row(out, "Timeout", secs(t));
    }
    if let Some(n) = run.handler_failures {
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
    if run.stages.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Stages\n");
    let _ = writeln!(
        out,
        "| Stage | Status | Duration | Budget | Against budget |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for s in &run.stages {
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
            cell_code(s.id),
            cell_text(status)
        );
    }
    out.push('\n');
}

fn gates(out: &mut String, info: &RunInfo, run: &Run<'_>) {
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

fn watches(out: &mut String, run: &Run<'_>) {
    let watched: Vec<usize> = (0..run.steps.len())
        .filter(|&s| !run.measurements_of(s).is_empty())
        .collect();
    if watched.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Watches\n");
    for s in watched {
        let step = &run.steps[s];
        let _ = writeln!(
            out,
            "### {}{}: {}\n",
            code(step.id),
            place(run, s),
            text(step.status())
        );
        if let Some(r) = step.record.filter(|r| !r.summary.is_empty()) {
            let _ = writeln!(out, "{}\n", text(&r.summary));
        }
        measurement_table(out, run, &run.measurements_of(s));
    }
}

fn measurement_table(out: &mut String, run: &Run<'_>, events: &[usize]) {
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

fn approvals(out: &mut String, run: &Run<'_>) {
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

fn decisions_text(decisions: &[crate::engine::approval::Decision]) -> String {
    decisions
        .iter()
        .map(|d| {
            let mut t = format!(
                "{} by {}",
                if d.approved { "approved" } else { "rejected" },
                d.who()
            );
            if let Some(role) = &d.role {
                let _ = write!(t, " as {role}");
            }
            let _ = write!(t, " at {} via {}", d.at, d.via);
            if let Some(c) = &d.comment {
                let _ = write!(t, ": \"{c}\"");
            }
            t
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn handlers(out: &mut String, run: &Run<'_>) {
    if run.lists.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Handlers that ran\n");
    for list in &run.lists {
        let whose = match list.scope {
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
            let step = &run.steps[s];
            let (duration, what) = match step.record {
                Some(r) => (secs(r.duration_ms as f64 / 1000.0), outcome_text(r)),
                None => ("—".to_owned(), "never finished".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {duration} | {what} |",
                cell_code(step.id),
                cell_text(step.status())
            );
        }
        out.push('\n');
    }
}

fn failures(out: &mut String, run: &Run<'_>) {
    let failed = run.failures();
    let mut unfinished = run.unfinished();
    unfinished.extend((0..run.steps.len()).filter(|&s| run.steps[s].cut));
    unfinished.sort_by_key(|&s| run.steps[s].started);
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
        let step = &run.steps[s];
        let role = match run.list_of(s) {
            Some(l) => format!("{} handler", l.kind),
            None if step.tolerated => "step, allowed to fail".to_owned(),
            None => "step".to_owned(),
        };
        let at = step
            .finished
            .or(step.started)
            .map_or("—".to_owned(), |i| offset(run.events[i].offset_ms));
        let (kind, error) = match step.record {
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
            cell_code(step.id),
            step.stage.map_or("—".to_owned(), cell_code),
            cell_text(step.status()),
        );
    }
    out.push('\n');
}

fn outputs(out: &mut String, run: &Run<'_>) {
    let with: Vec<usize> = (0..run.steps.len())
        .filter(|&s| run.steps[s].record.is_some_and(|r| !r.outputs.is_empty()))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Outputs\n");
    let _ = writeln!(out, "| Step | Stage | Output | Value |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for s in with {
        let step = &run.steps[s];
        let Some(r) = step.record else { continue };
        for (k, v) in &r.outputs {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell_code(step.id),
                step.stage.map_or("—".to_owned(), cell_code),
                cell_code(k),
                cell_value(v, OUTPUT_CHARS)
            );
        }
    }
    out.push('\n');
}

fn timeline(out: &mut String, run: &Run<'_>) {
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
fn detail(run: &Run<'_>, i: usize) -> String {
    let role = || {
        run.step_of[i]
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

/// A finished step's summary, or its error (with its kind), as a table cell.
fn outcome_text(r: &crate::engine::StepRecord) -> String {
    match (&r.error, r.status) {
        (Some(e), _) => format!(
            "{}{}",
            cell_text(e),
            r.error_kind
                .map_or(String::new(), |k| format!(" ({})", cell_code(k)))
        ),
        (None, "skipped") => "its `if` is false".to_owned(),
        (None, _) if r.summary.is_empty() => "—".to_owned(),
        (None, _) => cell_text(&r.summary),
    }
}

/// ` in stage `x``, for a table cell.
fn in_stage(stage: &Option<String>) -> String {
    stage
        .as_deref()
        .map_or(String::new(), |s| format!(" in stage {}", cell_code(s)))
}

/// ` in stage `x`` and the handler list, for prose.
fn place(run: &Run<'_>, s: usize) -> String {
    let step = &run.steps[s];
    let mut t = step
        .stage
        .map_or(String::new(), |st| format!(" in stage {}", code(st)));
    if let Some(l) = run.list_of(s) {
        let _ = write!(t, " (handler in {})", list_name(l));
    }
    t
}

/// `` `on_failure` of stage `deploy` ``, `` `finally` of the run ``.
fn list_name(l: &analysis::List<'_>) -> String {
    match l.scope {
        Some(s) => format!("{} of stage {}", cell_code(l.kind), cell_code(s)),
        None => format!("{} of the run", cell_code(l.kind)),
    }
}

/// `` `deploy` (stage `x`) ``, for prose.
fn step_name(run: &Run<'_>, s: usize) -> String {
    let step = &run.steps[s];
    match step.stage {
        Some(st) => format!("{} (stage {})", code(step.id), code(st)),
        None => code(step.id),
    }
}

/// The event's name in the JSON schema (`step_finished`, ...), as serde writes it.
fn name(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn verdict_name(v: &crate::engine::watch::Verdict) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{v:?}"))
}

/// A value as compact JSON in a code span, cut to `max` characters with a note.
fn cell_value(v: &Value, max: usize) -> String {
    let json = compact(v);
    match cut(&json, max) {
        (shown, None) => cell_code(&shown),
        (shown, Some(total)) => format!(
            "{} … *(cut: {total} characters; the JSON report has all of it)*",
            cell_code(&shown)
        ),
    }
}

/// A value for prose: compact JSON in a code span, or a note when it is not known.
fn shown(v: Option<&Value>) -> String {
    match v {
        Some(v) => match cut(&compact(v), OUTPUT_CHARS) {
            (s, None) => code(&s),
            (s, Some(total)) => format!("{} … *(cut: {total} characters)*", code(&s)),
        },
        None => "*(not in the events)*".to_owned(),
    }
}

fn cell_shown(v: Option<&Value>) -> String {
    match v {
        Some(v) => cell_value(v, INLINE_CHARS),
        None => "*(not in the events)*".to_owned(),
    }
}

/// `12.345 s`, `2 min 05.345 s`, `1 h 02 min 05 s`.
pub(super) fn secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return format!("{s} s");
    }
    let ms = (s * 1000.0).round() as u64;
    if ms < 60_000 {
        format!("{}.{:03} s", ms / 1000, ms % 1000)
    } else if ms < 3_600_000 {
        format!(
            "{} min {:02}.{:03} s",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )
    } else {
        format!(
            "{} h {:02} min {:02} s",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60
        )
    }
}

/// A duration against its budget: `over by 1.200 s (+12%)` or `0.800 s under`.
fn against(duration: f64, budget: f64) -> String {
    if duration > budget {
        let pct = if budget > 0.0 {
            format!(" (+{:.0}%)", (duration - budget) / budget * 100.0)
        } else {
            String::new()
        };
        format!("over by {}{pct}", secs(duration - budget))
    } else {
        format!("{} under", secs(budget - duration))
    }
}

/// An offset from the run's start: `+01:02.345`, `+1:02:03.456`.
fn offset(ms: u64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("+{h}:{m:02}:{s:02}.{milli:03}")
    } else {
        format!("+{m:02}:{s:02}.{milli:03}")
    }
}

/// Text for prose: markdown's active characters escaped with a backslash, so
/// the text shows as it is (`|`, `#`, backticks, `<` of HTML and comments
/// included, so no table row, heading, code or markup can be forged); line
/// breaks become `<br>`; every other character that `host::text::hidden`
/// names (escape sequences' ESC, NUL, bidi overrides, U+2028) is written as its
/// visible escape (`\u{1b}`), since the report is also read on a terminal.
pub(super) fn text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\r' if chars.get(i + 1) == Some(&'\n') => {}
            '\r' | '\n' => out.push_str("<br>"),
            // An underscore inside a word never emphasises: `error_rate` stays as it is.
            '_' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) =>
            {
                out.push('_')
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '#' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if crate::host::text::hidden(c) => crate::host::text::escape(&mut out, c),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// [`text`] for a table cell (the same: its escapes cover `|`).
pub(super) fn cell_text(s: &str) -> String {
    text(s)
}

/// A code span that shows `s` exactly: a fence longer than any run of
/// backticks inside; line breaks become spaces (a span cannot hold them); the
/// other characters `host::text::hidden` names become visible escapes.
pub(super) fn code(s: &str) -> String {
    if s.is_empty() {
        return "*(empty)*".to_owned();
    }
    let s = crate::host::text::printable(&s.replace("\r\n", " ").replace(['\n', '\r'], " "));
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || (s.starts_with(' ') && s.ends_with(' '))
    {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// [`code`] for a table cell: `|` is escaped, as GitHub's tables need even in code.
pub(super) fn cell_code(s: &str) -> String {
    code(s).replace('|', "\\|")
}
