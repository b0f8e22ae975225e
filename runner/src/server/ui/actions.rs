//! What the pages' forms do: decide an approval, cancel, re-run, start. Each
//! checks the form's CSRF token, then goes through the API's own handler
//! (the same role checks, the same record), and answers with a redirect to
//! the page that shows the result, or an error page that says why not.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::html::inert;
use super::{Page, check_csrf, error_page, layout, respond};
use crate::server::approvals::{Answer, decide_as};
use crate::server::{ApiError, App, JsonBody, runs};

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /ui/runs/{id}/approvals/{step}`.
pub async fn decide(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Response {
    if let Err(e) = check_csrf(&viewer, &f.csrf) {
        return error_page(Some(&viewer), &e);
    }
    let approved = match f.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return error_page(
                Some(&viewer),
                &ApiError::bad_request(format!("`{other}` is not approve or reject")),
            );
        }
    };
    let decided = tokio::task::block_in_place(|| {
        decide_as(
            &app,
            &viewer.caller,
            &id,
            &step,
            Answer {
                approved,
                role: None,
                comment: f.comment,
                via: "web",
            },
        )
    });
    match decided {
        Ok(_) => Redirect::to(&format!("/ui/runs/{id}")).into_response(),
        Err(e) => error_page(Some(&viewer), &e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /ui/runs/{id}/cancel`.
pub async fn cancel(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&viewer, &f.csrf) {
        return error_page(Some(&viewer), &e);
    }
    match runs::cancel(State(app), viewer.caller.clone(), Path(id.clone())).await {
        Ok(_) => Redirect::to(&format!("/ui/runs/{id}")).into_response(),
        Err(e) => error_page(Some(&viewer), &e),
    }
}

#[derive(Deserialize)]
pub struct RerunForm {
    csrf: String,
    from: String,
}

/// `POST /ui/runs/{id}/rerun`: to the new run's page.
pub async fn rerun(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Path(id): Path<String>,
    Form(f): Form<RerunForm>,
) -> Response {
    if let Err(e) = check_csrf(&viewer, &f.csrf) {
        return error_page(Some(&viewer), &e);
    }
    let body = runs::RerunBody { from: f.from };
    match runs::rerun(State(app), viewer.caller.clone(), Path(id), JsonBody(body)).await {
        Ok(response) => to_new_run(response).await,
        Err(e) => error_page(Some(&viewer), &e),
    }
}

/// The page of the run an API answer names (`{"id": …}`).
async fn to_new_run(response: Response) -> Response {
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let id = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
    match id {
        Some(id) => Redirect::to(&format!("/ui/runs/{id}")).into_response(),
        None => Redirect::to("/ui/runs").into_response(),
    }
}

#[derive(Deserialize)]
pub struct Chosen {
    #[serde(default)]
    playbook: Option<String>,
}

/// `GET /ui/start`: the catalog, then the chosen playbook's inputs.
pub async fn start_form(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Query(q): Query<Chosen>,
) -> Response {
    if let Err(e) = runs::operator(&app, &viewer.caller, "start runs") {
        return error_page(Some(&viewer), &e);
    }
    let folder = app.config.playbooks.clone();
    let envs = app.config.environments.clone();
    let Ok((entries, environments)) = tokio::task::spawn_blocking(move || {
        (
            crate::server::catalog::entries(&folder),
            envs.as_deref()
                .map(crate::server::catalog::names)
                .unwrap_or_default(),
        )
    })
    .await
    else {
        return error_page(
            Some(&viewer),
            &ApiError::unavailable("the catalog could not be read"),
        );
    };
    let chosen = q
        .playbook
        .as_deref()
        .and_then(|p| entries.iter().find(|e| e.name == p));
    let body = match chosen {
        None => html! {
            h1 { "Start a run" }
            ul.catalog { @for e in &entries {
                li {
                    a href={ "/ui/start?playbook=" (e.name) } { (e.name) }
                    @if let Some(d) = &e.description { " — " (inert(d)) }
                    @if let Some(i) = &e.invalid { " " span.problem { "invalid: " (inert(i)) } }
                }
            } }
        },
        Some(e) => {
            let inputs = e.inputs.as_object().cloned().unwrap_or_default();
            html! {
                h1 { "Start " (e.name) }
                @if let Some(d) = &e.description { p { (inert(d)) } }
                form.start method="post" action="/ui/start" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    input type="hidden" name="playbook" value=(e.name);
                    @if !environments.is_empty() {
                        label { "Environment "
                            select name="environment" {
                                option value="" { "none" }
                                @for env in &environments { option value=(env) { (env) } }
                            }
                        }
                    }
                    @for (name, spec) in &inputs {
                        @let required = spec.get("required").and_then(Value::as_bool).unwrap_or(false);
                        @let default = spec.get("default").map(super::html::value);
                        label.input {
                            span { code { (name) } @if required { " (required)" } }
                            input type="text" name={ "input." (name) } required[required] placeholder=(default.as_deref().unwrap_or(""));
                            @if let Some(d) = spec.get("description").and_then(Value::as_str) { small { (inert(d)) } }
                        }
                    }
                    button type="submit" { "Start" }
                    p.hint { "Empty fields take their defaults. The run is checked as `runner exec` checks it before it begins." }
                }
            }
        }
    };
    respond(StatusCode::OK, layout("Start a run", Some(&viewer), body))
}

/// `POST /ui/start`: to the new run's page.
pub async fn start(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Err(e) = check_csrf(&viewer, field("csrf").unwrap_or("")) {
        return error_page(Some(&viewer), &e);
    }
    if let Err(e) = runs::operator(&app, &viewer.caller, "start runs") {
        return error_page(Some(&viewer), &e);
    }
    let Some(playbook) = field("playbook") else {
        return error_page(Some(&viewer), &ApiError::bad_request("no playbook chosen"));
    };
    let env = field("environment").filter(|e| !e.is_empty());
    let inputs: serde_json::Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("input.")?, v)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), Value::String(v.clone())))
        .collect();
    let request = match runs::catalog_request(&app, playbook, env, &inputs) {
        Ok(r) => r,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    match runs::start_request(&app, request, viewer.caller.principal(), None).await {
        Ok((StatusCode::ACCEPTED, _)) => Redirect::to("/ui/runs?status=running").into_response(),
        Ok((_, v)) => match v.get("id").and_then(Value::as_str) {
            Some(id) => Redirect::to(&format!("/ui/runs/{id}")).into_response(),
            None => Redirect::to("/ui/runs").into_response(),
        },
        Err(e) => error_page(Some(&viewer), &e),
    }
}
