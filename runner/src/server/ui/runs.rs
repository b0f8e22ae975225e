//! The runs page: every run, newest first, filtered by playbook, status and
//! period.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::html::{budget, inert, status, time};
use super::{Page, error_page, layout, respond};
use crate::engine::Event;
use crate::record::{self, RunRow};
use crate::server::{ApiError, App};

const STATUSES: &[&str] = &["running", "succeeded", "failed", "timed_out", "interrupted"];
const PERIODS: &[(&str, &str)] = &[
    ("", "any time"),
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    playbook: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

/// A run in the list: its row and the budget its first event gave it.
pub struct Listed {
    pub run: RunRow,
    pub budget_s: Option<f64>,
}

/// The runs `filter` selects, at most 200, with their budgets.
pub async fn select(
    app: &App,
    playbook: Option<String>,
    status: Option<String>,
    since: Option<String>,
    limit: usize,
) -> Result<Vec<Listed>, ApiError> {
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status `{s}` is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let since_ms = match since.as_deref() {
        None => None,
        Some(p) => Some(
            crate::playbook::scalars::parse_duration(p)
                .map(|d| record::now_ms() - d.as_millis() as i64)
                .map_err(|e| {
                    ApiError::bad_request(format!("`{p}` is not a period ({e}); e.g. 7d, 24h"))
                })?,
        ),
    };
    app.read(move |j| {
        let runs = j.list(&record::Filter {
            playbook: playbook.as_deref(),
            status: status.as_deref(),
            since_ms,
            limit: Some(limit),
        })?;
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        let mut firsts = j.first_events(&ids)?;
        Ok(runs
            .into_iter()
            .map(|run| {
                let budget_s = firsts.remove(&run.id).and_then(|e| match e.event {
                    Event::RunStarted { budget_s, .. } => budget_s,
                    _ => None,
                });
                Listed { run, budget_s }
            })
            .collect())
    })
    .await
}

/// How long the run took, or has been running.
pub fn elapsed_s(run: &RunRow) -> f64 {
    let ms = run
        .duration_ms
        .unwrap_or_else(|| record::now_ms() - run.started_ms);
    ms.max(0) as f64 / 1000.0
}

/// `GET /ui/runs`.
pub async fn list(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Query(f): Query<Filter>,
) -> Response {
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let (playbook, status_f, since) = (nonempty(f.playbook), nonempty(f.status), nonempty(f.since));
    let runs = match select(&app, playbook.clone(), status_f.clone(), since.clone(), 200).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    let names = crate::server::catalog::names(&app.config.playbooks);
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/ui/runs" {
            label { "Playbook "
                input type="text" name="playbook" list="playbooks" value=(playbook.as_deref().unwrap_or(""));
            }
            datalist #playbooks { @for n in &names { option value=(n) {} } }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[status_f.as_deref() == Some(*s)] { (s.replace('_', " ")) }
                    }
                }
            }
            label { "Period "
                select name="since" {
                    @for (v, label) in PERIODS {
                        option value=(v) selected[since.as_deref().unwrap_or("") == *v] { (label) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        (table(&runs))
    };
    respond(StatusCode::OK, layout("Runs", Some(&viewer), body))
}

/// The runs as a table.
pub fn table(runs: &[Listed]) -> Markup {
    html! {
        @if runs.is_empty() {
            p { "No run matches." }
        } @else {
            table.runs {
                thead { tr {
                    th scope="col" { "Run" } th scope="col" { "Playbook" } th scope="col" { "Status" }
                    th scope="col" { "Started" } th scope="col" { "Duration against budget" } th scope="col" { "Started by" }
                } }
                tbody {
                    @for l in runs {
                        @let r = &l.run;
                        tr {
                            td { a href={ "/ui/runs/" (r.id) } { code { (r.id) } } }
                            td { (inert(&r.playbook)) }
                            td { (status(&r.status)) @if r.rolled_back { " " span.tag { "rolled back" } } }
                            td { (time(&r.started_at)) }
                            td { (budget(elapsed_s(r), l.budget_s)) }
                            td { (inert(r.started_by.as_deref().unwrap_or("—"))) }
                        }
                    }
                }
            }
        }
    }
}
