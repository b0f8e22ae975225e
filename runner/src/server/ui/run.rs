//! The run page: where the run is, what each step did, what the gates and
//! watches decided and on which values, the budgets, the timeline, the
//! artifacts, and the buttons of whoever may act on it.
//!
//! It reads the run as the reports do: the journal's events folded once
//! ([`crate::run_state`] through [`crate::report::analysis`]), so the page and
//! the markdown report cannot tell the same run two ways. The playbook kept
//! with the run adds the steps that have not started yet and the watches'
//! conditions (drawn as thresholds).
//!
//! `GET /ui/runs/{id}/live` is the same page without its frame: the page's
//! script fetches it when the run's stream says something happened.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::approvals::{can_answer, decision_forms};
use super::chart::{self, Point, Rule};
use super::html::{budget, counted, duration, inert, status, step_anchor, time, value};
use super::{Page, Viewer, error_page, layout, respond};
use crate::engine::approval::{Approvals, Request as ApprovalRequest};
use crate::engine::watch::Verdict;
use crate::engine::{Event, StepRecord};
use crate::record::{RunRow, SourceKind};
use crate::report::analysis::{Run, analyse, gate_view};
use crate::report::{RunInfo, Stamped};
use crate::server::{ApiError, App};

/// A run read for its page.
pub struct Loaded {
    pub run: RunRow,
    pub info: RunInfo,
    pub events: Vec<Stamped>,
    /// The number of its last event (the stream's `id`).
    pub last_seq: i64,
    /// The alert or webhook that started it: (via, body).
    pub trigger: Option<(String, Value)>,
    /// The playbook kept with the run, as JSON.
    pub playbook: Option<Value>,
    /// The approvals it waits for now.
    pub waiting: Vec<ApprovalRequest>,
}

pub async fn load(app: &App, id: &str) -> Result<Loaded, ApiError> {
    let run = crate::server::runs::find(app, id).await?;
    let key = id.to_owned();
    let (events, sources) = app
        .read(move |j| Ok((j.events(&key)?, j.sources(&key)?)))
        .await?;
    let last_seq = events.last().map_or(-1, |e| e.seq);
    let state_dir = app.service.settings().state_dir.clone();
    let (info, events) = crate::service::report_input(state_dir.as_deref(), &run, events);
    let mut trigger = None;
    let mut playbook = None;
    for s in sources {
        match s.kind {
            SourceKind::Trigger => {
                trigger = Some((s.path, serde_json::from_str(&s.text).unwrap_or(Value::Null)));
            }
            SourceKind::Playbook => {
                playbook = crate::playbook::yaml::parse(&s.text)
                    .ok()
                    .map(|t| t.to_json());
            }
            SourceKind::Environment => {}
        }
    }
    let waiting = if run.status == "running" {
        app.approvals
            .pending(id)
            .into_iter()
            .filter_map(|step| app.approvals.request(id, &step))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Loaded {
        run,
        info,
        events,
        last_seq,
        trigger,
        playbook,
        waiting,
    })
}

/// `GET /ui/runs/{id}`.
pub async fn page(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path(id): Path<String>,
) -> Response {
    match load(&app, &id).await {
        Ok(l) => {
            let title = format!("{} · {}", l.run.playbook, l.run.id);
            respond(
                StatusCode::OK,
                layout(&title, Some(&viewer), body(&app, &viewer, &l)),
            )
        }
        Err(e) => error_page(Some(&viewer), &e),
    }
}

/// `GET /ui/runs/{id}/live`: the page's content alone, for its script.
pub async fn live(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path(id): Path<String>,
) -> Response {
    match load(&app, &id).await {
        Ok(l) => respond(StatusCode::OK, body(&app, &viewer, &l)),
        Err(e) => error_page(Some(&viewer), &e),
    }
}

/// Everything under the navigation; the live part is all of it.
pub fn body(app: &App, viewer: &Viewer, l: &Loaded) -> Markup {
    let run = analyse(&l.events);
    let running = l.run.status == "running";
    let operator = viewer.caller.has_any(&app.config.access.operate);
    html! {
        div #run data-run=(l.run.id) data-status=(l.run.status) data-seq=(l.last_seq) {
            (head(l, &run))
            @if !l.waiting.is_empty() {
                section.waiting aria-label="waiting for approval" {
                    h2 { "Waiting for approval" }
                    @for r in &l.waiting {
                        (approval_box(app, viewer, l, r))
                    }
                }
            }
            @if operator { (actions(viewer, l, &run, running)) }
            @if let Some(j) = &l.info.journal { p.problem role="alert" { "Incomplete record: " (j) } }
            section.tree aria-label="stages and steps" {
                h2 { "Stages and steps" }
                (tree(l, &run))
            }
            (artifacts(l, &run))
            (timeline(&run))
        }
    }
}

fn head(l: &Loaded, run: &Run<'_>) -> Markup {
    let r = &l.run;
    let budget_s = run.budget_s();
    let used = super::runs::elapsed_s(r);
    html! {
        h1 { (inert(&r.playbook)) " " code.id { (r.id) } }
        dl.facts {
            dt { "Status" } dd { (status(&r.status)) @if r.rolled_back { " " span.tag { "rolled back" } } }
            dt { "Started" } dd { (time(&r.started_at)) " by " (inert(r.started_by.as_deref().unwrap_or("—"))) }
            @if let Some((via, body)) = &l.trigger { dt { "Trigger" } dd { (trigger(via, body)) } }
            dt { "Duration" } dd { (budget(used, budget_s)) }
            @if let Some(t) = run.timeout_s() { dt { "Timeout" } dd { (duration(t)) } }
            @if let Some(p) = &r.parent { dt { "Re-run of" } dd { a href={ "/ui/runs/" (p) } { code { (p) } } } }
            @if !l.info.inputs.is_empty() {
                dt { "Inputs" }
                dd { details { summary { (counted(l.info.inputs.len(), "input")) }
                    table.kv { @for (k, v) in &l.info.inputs { tr { th scope="row" { (k) } td { (value(v)) } } } }
                } }
            }
        }
    }
}

/// What started a run, from its trigger's body: an Alertmanager alert's name
/// and fingerprint, or the webhook's name.
fn trigger(via: &str, body: &Value) -> Markup {
    let alert = body
        .pointer("/alert/labels/alertname")
        .or_else(|| body.pointer("/labels/alertname"))
        .or_else(|| body.pointer("/alerts/0/labels/alertname"))
        .and_then(Value::as_str);
    let starts = body
        .pointer("/alert/startsAt")
        .or_else(|| body.pointer("/startsAt"))
        .or_else(|| body.pointer("/alerts/0/startsAt"))
        .and_then(Value::as_str);
    html! {
        (inert(via))
        @if let Some(a) = alert { " — alert " strong { (inert(a)) } }
        @if let Some(s) = starts { ", firing since " (time(s)) }
    }
}

fn approval_box(app: &App, viewer: &Viewer, l: &Loaded, r: &ApprovalRequest) -> Markup {
    let can = can_answer(app, &viewer.caller, r);
    html! {
        div.approval id={ "approval-" (r.step) } {
            p.prompt { (inert(&r.prompt)) }
            p {
                "Step " a href={ "#" (step_anchor(step_stage(l, &r.step).as_deref(), &r.step)) } { code { (r.step) } }
                @if r.approvers.is_empty() { " · any operator may answer" }
                @else { " · needs: " (r.approvers.join(", ")) }
                " · answer before " (time(&r.deadline))
                " · " a href={ "/ui/runs/" (l.run.id) "/approvals/" (r.step) } { "link to this approval" }
            }
            (decision_forms(viewer, &l.run.id, &r.step, can))
        }
    }
}

/// The stage of the latest run of step `id`.
fn step_stage(l: &Loaded, id: &str) -> Option<String> {
    l.events.iter().rev().find_map(|e| match &e.event {
        Event::StepStarted { stage, step, .. } if step == id => Some(stage.clone()),
        _ => None,
    })?
}

fn actions(viewer: &Viewer, l: &Loaded, run: &Run<'_>, running: bool) -> Markup {
    let mut steps: Vec<&str> = Vec::new();
    for s in run.steps() {
        if s.list.is_none() && !steps.contains(&s.id.as_str()) {
            steps.push(&s.id);
        }
    }
    html! {
        section.actions aria-label="actions" {
            @if running {
                form method="post" action={ "/ui/runs/" (l.run.id) "/cancel" } {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button.danger type="submit" { "Cancel the run" }
                    span.hint { " its failure and finally handlers run, as for SIGTERM" }
                }
            } @else if !steps.is_empty() {
                form method="post" action={ "/ui/runs/" (l.run.id) "/rerun" } {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    label { "Re-run from step "
                        select name="from" { @for s in &steps { option value=(s) { (s) } } }
                    }
                    " "
                    button type="submit" { "Re-run" }
                    span.hint { " the steps before it keep their results" }
                }
            }
        }
    }
}

/// The stages in order, each with its steps and handler lists, then the
/// run's own handlers, then the stages the playbook has that have not begun.
fn tree(l: &Loaded, run: &Run<'_>) -> Markup {
    let planned = planned_stages(l.playbook.as_ref());
    let started: Vec<&str> = run.stages().iter().map(|s| s.id.as_str()).collect();
    let run_lists: Vec<usize> = (0..run.lists().len())
        .filter(|&i| run.lists()[i].scope.is_none())
        .collect();
    let loose: Vec<usize> = (0..run.steps().len())
        .filter(|&s| run.steps()[s].in_stage.is_none() && run.steps()[s].list.is_none())
        .collect();
    html! {
        @if run.stages().is_empty() && loose.is_empty() && planned.is_empty() { p { "Nothing has started yet." } }
        @for stage in run.stages() {
            @let seen: Vec<&str> = stage.steps.iter().map(|&s| run.steps()[s].id.as_str()).collect();
            section.stage id={ "stage-" (stage.id) } {
                h3 {
                    (status(stage_status(run, stage.status)))
                    " " code { (stage.id) }
                    @if let Some(d) = stage.duration_s { " " span.budget-line { (budget(d, stage.budget_s)) } }
                    @else if let Some(b) = stage.budget_s { " " span.hint { "budget " (duration(b)) } }
                }
                ol.steps {
                    @for &s in &stage.steps { (step(l, run, s)) }
                    @if stage.status.is_none() {
                        @for p in planned.iter().filter(|p| p.0 == stage.id).flat_map(|p| p.1.iter()).filter(|id| !seen.contains(&id.as_str())) {
                            (pending(Some(&stage.id), p))
                        }
                    }
                }
                @for &li in &stage.lists { (list(l, run, li)) }
            }
        }
        @if !loose.is_empty() {
            section.stage { h3 { "Outside the stages" } ol.steps { @for &s in &loose { (step(l, run, s)) } } }
        }
        @for &li in &run_lists { section.stage { (list(l, run, li)) } }
        @if l.run.status == "running" {
            @for (id, steps) in planned.iter().filter(|p| !started.contains(&p.0.as_str())) {
                section.stage.pending id={ "stage-" (id) } {
                    h3 { (status("pending")) " " code { (id) } }
                    ol.steps { @for p in steps { (pending(Some(id), p)) } }
                }
            }
        }
    }
}

fn stage_status(run: &Run<'_>, s: Option<&'static str>) -> &'static str {
    match s {
        Some(s) => s,
        None if run.finished().is_none() => "running",
        None => "unfinished",
    }
}

fn list(l: &Loaded, run: &Run<'_>, li: usize) -> Markup {
    let list = &run.lists()[li];
    html! {
        div.handlers {
            h4 { "Handlers: " code { (list.kind) } @if list.scope.is_none() { " of the run" } }
            ol.steps { @for &s in &list.steps { (step(l, run, s)) } }
        }
    }
}

fn pending(stage: Option<&str>, id: &str) -> Markup {
    html! {
        li.step.pending id=(step_anchor(stage, id)) {
            div.line { (status("pending")) " " code { (id) } }
        }
    }
}

/// One run of a step: its line, then what it did.
fn step(l: &Loaded, run: &Run<'_>, s: usize) -> Markup {
    let st = &run.steps()[s];
    let record = run.record(s);
    let waiting = record.is_none()
        && st.finished.is_none()
        && l.waiting.iter().any(|w| w.step == st.id)
        && st.kind == Some("approval");
    let word = if waiting {
        "waiting"
    } else if record.is_none() && st.started.is_some() && run.finished().is_none() && !st.cut {
        "running"
    } else {
        st.status()
    };
    let anchor = step_anchor(st.stage.as_deref(), &st.id);
    let gate = run.gate_of(s);
    let measured = run.measurements_of(s);
    html! {
        li.step id=(anchor) {
            div.line {
                (status(word)) " "
                a.name href={ "#" (anchor) } { code { (st.id) } }
                @if let Some(k) = st.kind { " " span.kind { (k) } }
                @if let Some(r) = record {
                    " " span.dur { (duration(r.duration_ms as f64 / 1000.0)) }
                    @if r.attempts > 1 { " " span.tag { (counted(r.attempts as usize, "attempt")) } }
                    @if !r.summary.is_empty() { " " span.summary { (inert(&r.summary)) } }
                } @else if let Some(at) = st.started {
                    " " span.hint { "since " (time(&l.events[at].at)) }
                }
            }
            @if let Some(g) = gate { (gate_table(l, run, g)) }
            @if !measured.is_empty() { (watch(l, run, s, &measured)) }
            (retries(run, s))
            (approval_decisions(run, s))
            @if let Some(r) = record { (details(r)) }
        }
    }
}

fn gate_table(l: &Loaded, run: &Run<'_>, index: usize) -> Markup {
    let Some(view) = gate_view(run, &l.info, index) else {
        return html! {};
    };
    html! {
        div.gate {
            p { "Gate " (status(view.outcome)) }
            table.kv {
                thead { tr { th scope="col" { "Condition" } th scope="col" { "Expression" } th scope="col" { "Value" } } }
                tbody {
                    @for (kind, expr, v) in &view.conditions {
                        tr { td { (kind) } td { code { (inert(expr)) } } td { (value(v)) } }
                    }
                    @for (path, v) in &view.refers_to {
                        tr.ref { td { "where" } td { code { (path) } } td { @match v { Some(v) => (value(v)), None => "not in the record" } } }
                    }
                }
            }
        }
    }
}

/// A watch: its measurements drawn against the thresholds its conditions
/// name, and the table of them.
fn watch(l: &Loaded, run: &Run<'_>, s: usize, measured: &[usize]) -> Markup {
    let st = &run.steps()[s];
    let conditions = watch_conditions(l.playbook.as_ref(), st.stage.as_deref(), &st.id);
    let mut keys: Vec<String> = Vec::new();
    for &i in measured {
        if let Event::Measurement { outputs, .. } = &run.events[i].event {
            for (k, v) in outputs {
                if v.as_f64().is_some() && !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    // The output the conditions compare, else the first number.
    let key = conditions
        .iter()
        .find_map(|(_, c)| threshold(c, &l.info.inputs).map(|t| t.0))
        .filter(|k| keys.contains(k))
        .or_else(|| keys.first().cloned());
    let mut points = Vec::new();
    let mut rows = Vec::new();
    for &i in measured {
        if let Event::Measurement {
            n,
            verdict,
            outputs,
            error,
            ..
        } = &run.events[i].event
        {
            let (mark, word) = match verdict {
                Verdict::Success => ("ok", "success"),
                Verdict::Failure => ("bad", "failure"),
                Verdict::Inconclusive => ("wait", "inconclusive"),
                Verdict::Error => ("err", "error"),
            };
            if let Some(y) = key
                .as_ref()
                .and_then(|k| outputs.get(k))
                .and_then(Value::as_f64)
            {
                points.push(Point {
                    x: f64::from(*n),
                    y,
                    mark,
                    label: format!(
                        "#{n}: {} = {} ({word})",
                        key.as_deref().unwrap_or(""),
                        chart::number(y)
                    ),
                });
            }
            rows.push((i, *n, word, outputs, error));
        }
    }
    let rules: Vec<Rule> = conditions
        .iter()
        .filter_map(|(kind, c)| {
            let (k, op, y) = threshold(c, &l.info.inputs)?;
            (Some(&k) == key.as_ref()).then(|| Rule {
                y,
                label: format!("{kind}: {k} {op} {}", chart::number(y)),
            })
        })
        .collect();
    html! {
        div.watch {
            @if !points.is_empty() {
                (chart::line(&format!("{} of {}", key.as_deref().unwrap_or("value"), st.id), "#", &points, &rules))
            }
            p.hint {
                @if let Some(k) = &key { "Drawn: output " code { (k) } " of each measurement. " }
                @for (kind, c) in &conditions { (kind) " when " code { (inert(c)) } ". " }
            }
            details {
                summary { (counted(rows.len(), "measurement")) ": "
                    (rows.iter().filter(|r| r.2 == "success").count()) " ok, "
                    (rows.iter().filter(|r| r.2 == "failure").count()) " failed, "
                    (rows.iter().filter(|r| r.2 == "inconclusive").count()) " inconclusive, "
                    (counted(rows.iter().filter(|r| r.2 == "error").count(), "error")) }
                table.kv {
                    thead { tr { th scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Verdict" } th scope="col" { "Outputs" } th scope="col" { "Error" } } }
                    tbody { @for (i, n, word, outputs, error) in &rows {
                        tr { td { (n) } td { (time(&run.events[*i].at)) } td { (status(word)) }
                             td { (value(&Value::Object((*outputs).clone()))) }
                             td { (inert(error.as_deref().unwrap_or("—"))) } }
                    } }
                }
            }
        }
    }
}

fn retries(run: &Run<'_>, s: usize) -> Markup {
    let retries: Vec<(u32, &str)> = run.steps()[s]
        .details
        .iter()
        .filter_map(|&i| match &run.events[i].event {
            Event::Retry { attempt, error, .. } => Some((*attempt, error.as_str())),
            _ => None,
        })
        .collect();
    html! {
        @if !retries.is_empty() {
            ul.retries { @for (a, e) in &retries { li { "attempt " (a) " failed: " (inert(e)) } } }
        }
    }
}

fn approval_decisions(run: &Run<'_>, s: usize) -> Markup {
    let decided = run.steps()[s]
        .details
        .iter()
        .find_map(|&i| match &run.events[i].event {
            Event::ApprovalDecided {
                outcome, decisions, ..
            } => Some((*outcome, decisions)),
            _ => None,
        });
    html! {
        @if let Some((outcome, decisions)) = decided {
            div.decided {
                (status(outcome))
                ul { @for d in decisions {
                    li { (if d.approved { "approved" } else { "rejected" }) " by " (inert(&d.by))
                        @if let Some(src) = &d.by_source { " (" (src) ")" }
                        @if let Some(r) = &d.role { " as " (inert(r)) }
                        " at " (time(&d.at))
                        @if let Some(c) = &d.comment { ": “" (inert(c)) "”" } }
                } }
            }
        }
    }
}

/// A finished step's error, outputs and log.
fn details(r: &StepRecord) -> Markup {
    html! {
        @if let Some(e) = &r.error { p.problem { (inert(e)) } }
        @if !r.outputs.is_empty() || !r.log.is_empty() {
            details {
                summary { "Outputs and log (" (counted(r.log.len(), "line")) ")" }
                @if !r.outputs.is_empty() {
                    table.kv { @for (k, v) in &r.outputs { tr { th scope="row" { (k) } td { (value(v)) } } } }
                }
                @if !r.log.is_empty() {
                    pre.log { @for line in &r.log {
                        (line.level) " " (inert(&line.message)) @if !line.fields.is_empty() { " " (inert(&line.fields)) } "\n"
                    } }
                }
            }
        }
    }
}

/// Every artifact the run's steps returned, in order: (step, artifact).
fn all_artifacts<'a>(run: &Run<'a>) -> Vec<(&'a StepRecord, &'a crate::host::artifacts::Artifact)> {
    (0..run.steps().len())
        .filter_map(|s| run.record(s))
        .flat_map(|r| r.artifacts.iter().map(move |a| (r, a)))
        .collect()
}

fn artifacts(l: &Loaded, run: &Run<'_>) -> Markup {
    let all = all_artifacts(run);
    html! {
        @if !all.is_empty() {
            section aria-label="artifacts" {
                h2 { "Artifacts" }
                ul.artifacts { @for (i, (r, a)) in all.iter().enumerate() {
                    li {
                        @if a.stored.is_some() {
                            a href={ "/ui/runs/" (l.run.id) "/artifacts/" (i) } download { (inert(&a.name)) }
                        } @else { (inert(&a.name)) " (not kept)" }
                        " from " code { (r.step) } " · " (inert(&a.media_type))
                    }
                } }
            }
        }
    }
}

fn timeline(run: &Run<'_>) -> Markup {
    html! {
        section aria-label="timeline" {
            details.timeline {
                summary { h2 { "Timeline (" (counted(run.events.len(), "event")) ")" } }
                table.kv {
                    thead { tr { th scope="col" { "Offset" } th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "What" } } }
                    tbody { @for e in run.events {
                        tr { td { (duration(e.offset_ms as f64 / 1000.0)) } td { (time(&e.at)) }
                             td { code { (event_name(&e.event)) } } td { (what(&e.event)) } }
                    } }
                }
            }
        }
    }
}

fn event_name(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "event".to_owned())
}

/// One event in a few words.
fn what(e: &Event) -> Markup {
    let place = |stage: &Option<String>, step: &str| match stage {
        Some(s) => format!("{s}.{step}"),
        None => step.to_owned(),
    };
    match e {
        Event::RunStarted { playbook, by, .. } => {
            html! { (inert(playbook)) @if let Some(b) = by { " by " (inert(b)) } }
        }
        Event::StageStarted { stage, .. } | Event::StageSkipped { stage } => {
            html! { code { (stage) } }
        }
        Event::StageFinished {
            stage,
            status: s,
            duration_s,
            ..
        } => {
            html! { code { (stage) } " " (status(s)) " in " (duration(*duration_s)) }
        }
        Event::StepStarted {
            stage, step, kind, ..
        } => html! { code { (place(stage, step)) } " (" (kind) ")" },
        Event::StepFinished(r) | Event::StepRestored(r) => html! {
            code { (place(&r.stage, &r.step)) } " " (status(r.status))
            @if !r.summary.is_empty() { " — " (inert(&r.summary)) }
        },
        Event::Retry {
            stage,
            step,
            attempt,
            error,
            ..
        } => {
            html! { code { (place(stage, step)) } " attempt " (attempt) ": " (inert(error)) }
        }
        Event::Measurement {
            stage,
            step,
            n,
            verdict,
            ..
        } => {
            html! { code { (place(stage, step)) } " #" (n) " " (format!("{verdict:?}").to_lowercase()) }
        }
        Event::Gate {
            stage,
            step,
            outcome,
            ..
        } => html! { code { (place(stage, step)) } " " (status(outcome)) },
        Event::ApprovalRequested {
            stage,
            step,
            approvers,
            ..
        } => {
            html! { code { (place(stage, step)) } " asks " (if approvers.is_empty() { "an operator".to_owned() } else { approvers.join(", ") }) }
        }
        Event::ApprovalDecided {
            stage,
            step,
            outcome,
            ..
        } => {
            html! { code { (place(stage, step)) } " " (status(outcome)) }
        }
        Event::BudgetExceeded {
            stage,
            budget_s,
            elapsed_s,
        } => {
            html! { (stage.as_deref().unwrap_or("run")) ": " (duration(*elapsed_s)) " of " (duration(*budget_s)) }
        }
        Event::TimedOut { stage, timeout_s } => {
            html! { (stage.as_deref().unwrap_or("run")) " after " (duration(*timeout_s)) }
        }
        Event::Interrupted { signal } => html! { (signal) },
        Event::Handlers { stage, kind } => {
            html! { (kind) " of " (stage.as_deref().unwrap_or("the run")) }
        }
        Event::RunFinished { status: s, .. } => html! { (status(s)) },
        _ => html! {},
    }
}

/// The stages of the playbook kept with the run, with their steps' ids.
fn planned_stages(playbook: Option<&Value>) -> Vec<(String, Vec<String>)> {
    let Some(stages) = playbook
        .and_then(|p| p.get("stages"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    stages
        .iter()
        .filter_map(|s| {
            let id = s.get("id")?.as_str()?.to_owned();
            let steps = s
                .get("steps")
                .and_then(Value::as_array)
                .map(|steps| {
                    steps
                        .iter()
                        .filter_map(|st| st.get("id")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Some((id, steps))
        })
        .collect()
}

/// A watch step's conditions in the playbook: (`success`/`failure`, CEL).
fn watch_conditions(
    playbook: Option<&Value>,
    stage: Option<&str>,
    step: &str,
) -> Vec<(&'static str, String)> {
    let Some(p) = playbook else {
        return Vec::new();
    };
    let in_list = |steps: Option<&Value>| {
        steps?
            .as_array()?
            .iter()
            .find(|s| s.get("id").and_then(Value::as_str) == Some(step))
            .and_then(|s| s.get("watch"))
            .cloned()
    };
    let found = match stage {
        Some(stage) => p
            .get("stages")
            .and_then(Value::as_array)
            .and_then(|st| {
                st.iter()
                    .find(|s| s.get("id").and_then(Value::as_str) == Some(stage))
            })
            .and_then(|s| in_list(s.get("steps"))),
        None => None,
    };
    let Some(watch) = found else {
        return Vec::new();
    };
    ["failure", "success"]
        .iter()
        .filter_map(|k| Some((*k, watch.get(*k)?.as_str()?.to_owned())))
        .collect()
}

/// A threshold in a condition of the form `result.KEY OP LIMIT`, where LIMIT
/// is a number or `inputs.NAME` holding one: (KEY, OP, LIMIT).
fn threshold(
    condition: &str,
    inputs: &serde_json::Map<String, Value>,
) -> Option<(String, String, f64)> {
    static RE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
        r"^\s*result\.([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>|==)\s*(inputs\.[A-Za-z_][A-Za-z0-9_]*|-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?)\s*$",
    )
    .ok()
    });
    let c = RE.as_ref()?.captures(condition)?;
    let limit = &c[3];
    let y = match limit.strip_prefix("inputs.") {
        Some(name) => match inputs.get(name)? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        },
        None => limit.parse().ok()?,
    };
    Some((c[1].to_owned(), c[2].to_owned(), y))
}

/// `GET /ui/runs/{id}/artifacts/{index}`: an artifact the run kept, as a
/// download (never shown in the page's origin: a plugin chose its bytes and
/// its media type).
pub async fn artifact(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path((id, index)): Path<(String, usize)>,
) -> Response {
    let l = match load(&app, &id).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    let run = analyse(&l.events);
    let all = all_artifacts(&run);
    let Some((_, a)) = all.get(index) else {
        return error_page(
            Some(&viewer),
            &ApiError::not_found(format!("run `{id}` has no artifact {index}")),
        );
    };
    let Some(state) = app.service.settings().state_dir.clone() else {
        return error_page(
            Some(&viewer),
            &ApiError::not_found("this server keeps no artifacts (no state folder)"),
        );
    };
    let kept = state.join("artifacts").join(&id);
    let Some(stored) = a.stored.clone().filter(|p| {
        p.starts_with(&kept)
            && p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::RootDir
                )
            })
    }) else {
        return error_page(
            Some(&viewer),
            &ApiError::not_found(format!(
                "artifact `{}` is not kept on this server (it stays on the machine that ran the step)",
                a.name
            )),
        );
    };
    let name: String = a
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let read = tokio::task::spawn_blocking(move || read_nofollow(&stored)).await;
    match read {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        _ => error_page(
            Some(&viewer),
            &ApiError::not_found(format!("artifact `{}` is no longer on this server", a.name)),
        ),
    }
}

/// A regular file's bytes, refusing a link at its last component.
fn read_nofollow(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_read_from_simple_comparisons() {
        let mut inputs = serde_json::Map::new();
        inputs.insert("max_error_rate".into(), Value::String("0.01".into()));
        assert_eq!(
            threshold("result.value <= inputs.max_error_rate", &inputs),
            Some(("value".into(), "<=".into(), 0.01))
        );
        assert_eq!(
            threshold("result.p95 > 250", &inputs),
            Some(("p95".into(), ">".into(), 250.0))
        );
        assert_eq!(threshold("result.ok", &inputs), None);
        assert_eq!(threshold("result.value <= inputs.nothing", &inputs), None);
        assert_eq!(threshold("result.a < 1 || result.b > 2", &inputs), None);
    }
}
