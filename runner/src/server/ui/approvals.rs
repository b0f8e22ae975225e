//! Approvals in the UI: what waits for the viewer, oldest first, with what
//! is needed to decide (the gates' values and the latest measurements of
//! the run), and the page of one approval a link can point at.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::html::{counted, inert, status, step_anchor, time, value};
use super::run::{Loaded, load};
use super::{Page, Viewer, error_page, layout, respond};
use crate::engine::Event;
use crate::engine::approval::{Approvals, Request as ApprovalRequest};
use crate::record;
use crate::report::analysis::{analyse, gate_view};
use crate::server::App;
use crate::server::auth::Caller;

/// What the viewer may do with an approval.
pub enum Can {
    /// Answer it; `approve` is false when the step refuses its run's starter.
    Answer { approve: bool },
    /// Already answered by them.
    Answered,
    /// Nothing: why.
    Not(String),
}

/// The rule of [`crate::server::approvals::decide_as`], asked before a
/// button is shown (the decision itself is checked again there).
pub fn can_answer(app: &App, caller: &Caller, r: &ApprovalRequest) -> Can {
    let allowed = if r.approvers.is_empty() {
        caller.has_any(&app.config.access.operate)
    } else {
        caller.has_any(&r.approvers)
    };
    if !allowed {
        let needed = if r.approvers.is_empty() {
            &app.config.access.operate
        } else {
            &r.approvers
        };
        return Can::Not(format!(
            "Answering needs one of the roles {}; you hold {}.",
            needed.join(", "),
            if caller.roles.is_empty() {
                "none".to_owned()
            } else {
                caller.roles.join(", ")
            }
        ));
    }
    let answered = app
        .approvals
        .decisions(&r.run_id, &r.step)
        .unwrap_or_default()
        .iter()
        .any(|d| d.by == caller.name);
    if answered {
        return Can::Answered;
    }
    Can::Answer {
        approve: r.not_approved_by.as_deref() != Some(caller.name.as_str()),
    }
}

/// The Approve / Reject form with its comment, or why there is none.
pub fn decision_forms(viewer: &Viewer, run: &str, step: &str, can: Can) -> Markup {
    match can {
        Can::Not(why) => html! { p.hint { (why) } },
        Can::Answered => html! { p.hint { "You have answered; it waits for the others." } },
        Can::Answer { approve } => html! {
            form.decide method="post" action={ "/ui/runs/" (run) "/approvals/" (step) } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label { "Comment " input type="text" name="comment" maxlength="2000" placeholder="why (kept in the record)"; }
                @if approve {
                    button.approve type="submit" name="decision" value="approve" { "Approve" }
                } @else {
                    span.hint { "You started this run and the step refuses self-approval: someone else must approve. " }
                }
                button.danger type="submit" name="decision" value="reject" { "Reject" }
            }
        },
    }
}

/// What is needed to decide: the run's gates with their values, and the
/// last measurements of each of its watches.
fn context(l: &Loaded) -> Markup {
    let run = analyse(&l.events);
    let gates: Vec<(usize, usize)> = (0..run.steps().len())
        .filter_map(|s| run.gate_of(s).map(|g| (s, g)))
        .collect();
    let watched: Vec<usize> = (0..run.steps().len())
        .filter(|&s| !run.measurements_of(s).is_empty())
        .collect();
    html! {
        @if !gates.is_empty() {
            h3 { "Gates so far" }
            ul.context { @for (s, g) in &gates {
                @if let Some(view) = gate_view(&run, &l.info, *g) {
                    li { code { (run.steps()[*s].id) } " " (status(view.outcome)) ": "
                        @for (kind, expr, v) in &view.conditions { (kind) " " code { (inert(expr)) } " = " (value(v)) "; " }
                        @for (path, v) in &view.refers_to { code { (path) } " = " @match v { Some(v) => (value(v)), None => "?" } "; " }
                    }
                }
            } }
        }
        @if !watched.is_empty() {
            h3 { "Latest measurements" }
            ul.context { @for s in &watched {
                @let m = run.measurements_of(*s);
                @if let Some(&last) = m.last() {
                    @if let Event::Measurement { n, verdict, outputs, .. } = &run.events[last].event {
                        li { code { (run.steps()[*s].id) } " #" (n) " " (status(&format!("{verdict:?}").to_lowercase()))
                            " " (value(&serde_json::Value::Object(outputs.clone())))
                            " at " (time(&run.events[last].at)) }
                    }
                }
            } }
        }
    }
}

/// One waiting approval with its context.
fn waiting(app: &App, viewer: &Viewer, l: &Loaded, r: &ApprovalRequest) -> Markup {
    let stage = l.events.iter().rev().find_map(|e| match &e.event {
        Event::ApprovalRequested { stage, step, .. } if *step == r.step => Some(stage.clone()),
        _ => None,
    });
    let asked = l.events.iter().rev().find_map(|e| match &e.event {
        Event::ApprovalRequested { step, .. } if *step == r.step => Some(e.at.clone()),
        _ => None,
    });
    html! {
        article.approval id={ "approval-" (l.run.id) "-" (r.step) } {
            h2 {
                a href={ "/ui/runs/" (l.run.id) "/approvals/" (r.step) } { (inert(&l.run.playbook)) " · " code { (r.step) } }
            }
            p.prompt { (inert(&r.prompt)) }
            p {
                "Run " a href={ "/ui/runs/" (l.run.id) "#" (step_anchor(stage.flatten().as_deref(), &r.step)) } { code { (l.run.id) } }
                " started by " (inert(l.run.started_by.as_deref().unwrap_or("—")))
                @if let Some(a) = &asked { " · asked " (time(a)) }
                " · answer before " (time(&r.deadline))
                @if !r.approvers.is_empty() { " · needs: " (r.approvers.join(", ")) }
            }
            (context(l))
            (decision_forms(viewer, &l.run.id, &r.step, super::approvals::can_answer(app, &viewer.caller, r)))
        }
    }
}

/// `GET /ui/runs/{id}/approvals/{step}`: one approval, a link for the
/// incident channel.
pub async fn one(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let l = match load(&app, &id).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    let body = match l.waiting.iter().find(|r| r.step == step) {
        Some(r) => waiting(&app, &viewer, &l, r),
        None => html! {
            h1 { "Approval of " code { (step) } }
            p { "Run " a href={ "/ui/runs/" (l.run.id) } { code { (l.run.id) } } " is not waiting for this approval now ("
                (status(&l.run.status)) "). Its decision, if any, is on the run's page." }
        },
    };
    respond(
        StatusCode::OK,
        layout(&format!("Approval {step}"), Some(&viewer), body),
    )
}

/// `GET /ui/approvals`: what waits for the viewer, oldest first.
pub async fn mine(State(app): State<Arc<App>>, Page(viewer): Page) -> Response {
    let running = match app
        .read(|j| {
            j.list(&record::Filter {
                status: Some("running"),
                ..Default::default()
            })
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    let mut items: Vec<(String, Markup)> = Vec::new();
    let mut others = 0;
    for run in running.iter().rev() {
        let pending = app.approvals.pending(&run.id);
        if pending.is_empty() {
            continue;
        }
        let Ok(l) = load(&app, &run.id).await else {
            continue;
        };
        for r in &l.waiting {
            match can_answer(&app, &viewer.caller, r) {
                Can::Answer { .. } => {
                    let asked = l
                        .events
                        .iter()
                        .rev()
                        .find_map(|e| match &e.event {
                            Event::ApprovalRequested { step, .. } if *step == r.step => {
                                Some(e.at.clone())
                            }
                            _ => None,
                        })
                        .unwrap_or_default();
                    items.push((asked, waiting(&app, &viewer, &l, r)));
                }
                _ => others += 1,
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let body = html! {
        h1 { "Waiting for you" }
        @if items.is_empty() { p { "Nothing waits for an answer of yours." } }
        @for (_, item) in &items { (item) }
        @if others > 0 { p.hint { (counted(others, "other approval")) " " (if others == 1 { "waits" } else { "wait" }) " for people with other roles, or for others than you." } }
    };
    respond(StatusCode::OK, layout("Approvals", Some(&viewer), body))
}
