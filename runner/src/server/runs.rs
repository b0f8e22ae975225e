//! Runs over HTTP: start one from the catalog (executed by this server,
//! [`super::live`], or queued for the workers), read it, its events and
//! reports, cancel it, re-run it; the history and its figures. Following a
//! run live is [`super::stream`]; answering its approvals [`super::approvals`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::live::{Work, launch};
use super::{ApiError, App, JsonBody};
use crate::engine::approval::{self, Approvals};
use crate::record;
use crate::service::{PlanRequest, RunOptions};

/// `POST /api/v1/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    pub playbook: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
}

/// Checks that `caller` may start, cancel and re-run runs.
pub(super) fn operator(app: &App, caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.has_any(&app.config.access.operate) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "`{}` may not {what}: that needs one of the roles {} (access.operate)",
            caller.name,
            quoted(&app.config.access.operate)
        )))
    }
}

pub(super) fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request for playbook `name` of the catalog with environment `env`.
pub fn catalog_request(
    app: &App,
    name: &str,
    env: Option<&str>,
    inputs: &serde_json::Map<String, Value>,
) -> Result<PlanRequest, ApiError> {
    let file = super::catalog::find(&app.config.playbooks, name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no playbook `{name}` in the catalog; GET /api/v1/playbooks lists them"
        ))
    })?;
    let env = match env {
        None => None,
        Some(e) => Some(
            app.config
                .environments
                .as_deref()
                .and_then(|dir| super::catalog::find(dir, e))
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no environment `{e}` in the catalog (catalog.environments)"
                    ))
                })?,
        ),
    };
    let mut args = Vec::new();
    for (k, v) in inputs {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => v.to_string(),
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("input `{k}` must be a string, number or boolean"),
                ));
            }
        };
        args.push(format!("{k}={text}"));
    }
    Ok(PlanRequest {
        file,
        inputs: args,
        env,
        playbook_text: None,
        env_text: None,
    })
}

/// Starts `request` for `caller`, after the checks `runner exec` makes.
pub async fn start_request(
    app: &Arc<App>,
    request: PlanRequest,
    actor: crate::identity::Principal,
    trigger: Option<(String, String)>,
) -> Result<(StatusCode, Value), ApiError> {
    let service = app.service.clone();
    let checked = request.clone();
    // The same checks as `runner exec` before the run is begun: its inputs,
    // the playbook and its plugins; refusals are 422 with their places.
    tokio::task::spawn_blocking(move || {
        let prepared = service.prepare(&checked)?;
        service
            .check_plugins(prepared.validated)
            .map_err(crate::service::PrepareError::from)?;
        Ok::<_, crate::service::PrepareError>(())
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("the checks stopped: {e}")))??;
    let run_id = crate::service::new_run_id();
    if let Some(queue) = app.queue.clone() {
        return submit(app, queue, run_id, request, actor, trigger).await;
    }
    let options = RunOptions {
        secrets: None,
        kube_context: None,
        actor,
        on_journal_error: crate::service::OnJournalError::Stop,
        trigger,
    };
    launch(app, Work::Start { run_id, request }, options).await
}

/// Queues `request` for the workers, as `runner submit` does: 202 with its id.
async fn submit(
    app: &Arc<App>,
    queue: Arc<crate::record::postgres::queue::PgQueue>,
    run_id: String,
    request: PlanRequest,
    actor: crate::identity::Principal,
    trigger: Option<(String, String)>,
) -> Result<(StatusCode, Value), ApiError> {
    let service = app.service.clone();
    let id = run_id.clone();
    tokio::task::spawn_blocking(move || {
        let prepared = service.prepare(&request)?;
        let submitted = crate::record::postgres::queue::Submitted {
            file: request.file.display().to_string(),
            playbook_text: prepared.validated.source.text.clone(),
            inputs: request.inputs.clone(),
            env: request.env.as_ref().map(|e| e.display().to_string()),
            env_text: prepared.env_text.clone(),
            by: actor.name.clone(),
            by_source: actor.source.as_str().to_owned(),
            trigger,
        };
        // A run that would wait for its group waits in the queue.
        let group = prepared
            .plan
            .concurrency
            .as_ref()
            .filter(|c| c.on_conflict == crate::engine::lock::OnConflict::Wait)
            .map(|c| c.group.clone());
        queue
            .submit(&id, &submitted, group.as_deref())
            .map_err(ApiError::journal)
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("the submission stopped: {e}")))??;
    Ok((
        StatusCode::ACCEPTED,
        json!({ "id": run_id, "status": "queued", "reason": "queued for the workers (runner worker) of the shared journal", "url": app.link(&format!("/api/v1/runs/{run_id}")) }),
    ))
}

pub async fn start(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    operator(&app, &caller, "start runs")?;
    let request = catalog_request(
        &app,
        &body.playbook,
        body.environment.as_deref(),
        &body.inputs,
    )?;
    let (status, value) = start_request(&app, request, caller.principal(), None).await?;
    Ok((status, axum::Json(value)).into_response())
}

pub async fn playbooks(
    State(app): State<Arc<App>>,
    _caller: Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let folder = app.config.playbooks.clone();
    let envs = app.config.environments.clone();
    let (entries, environments) = tokio::task::spawn_blocking(move || {
        (
            super::catalog::entries(&folder),
            envs.as_deref()
                .map(super::catalog::names)
                .unwrap_or_default(),
        )
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(axum::Json(
        json!({ "playbooks": entries, "environments": environments }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    playbook: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// A duration back from now (`7d`).
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn since_ms(text: &str) -> Result<i64, ApiError> {
    crate::playbook::scalars::parse_duration(text)
        .map(|d| record::now_ms() - d.as_millis() as i64)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`{text}` is not a duration ({e}); write e.g. 7d, 12h, 30m"
            ))
        })
}

async fn list_runs(app: &App, q: ListQuery) -> Result<Vec<record::RunRow>, ApiError> {
    const STATUSES: &[&str] = &["running", "succeeded", "failed", "timed_out", "interrupted"];
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status `{s}` is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let since = q.since.as_deref().map(since_ms).transpose()?;
    let limit = q.limit.unwrap_or(50).min(1000);
    app.read(move |j| {
        j.list(&record::Filter {
            playbook: q.playbook.as_deref(),
            status: q.status.as_deref(),
            since_ms: since,
            limit: Some(limit),
        })
    })
    .await
}

pub async fn list(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let runs = list_runs(&app, q).await?;
    Ok(axum::Json(json!({ "runs": runs })))
}

/// `GET /api/v1/history`: seed 004's deployment history, newest first.
pub async fn history(
    State(app): State<Arc<App>>,
    caller: Caller,
    q: Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    list(State(app), caller, q).await
}

pub(super) fn check_run(id: &str) -> Result<(), ApiError> {
    approval::check_run_id(id).map_err(ApiError::bad_request)
}

pub(super) async fn find(app: &App, id: &str) -> Result<record::RunRow, ApiError> {
    check_run(id)?;
    let key = id.to_owned();
    let row = app.read(move |j| j.run(&key)).await?;
    match row {
        Some(r) => Ok(r),
        None if app.is_queued(id).await => Err(ApiError::not_found(format!(
            "run `{id}` is queued and has not begun; its stream (/api/v1/runs/{id}/stream) waits for it"
        ))),
        None => Err(ApiError::not_found(format!(
            "no run `{id}`; GET /api/v1/runs lists them"
        ))),
    }
}

/// `GET /api/v1/runs/{id}`: the run, its steps with their outputs, what it
/// waits for, what started it.
pub async fn show(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let run = find(&app, &id).await?;
    let key = id.clone();
    let state_dir = app.service.settings().state_dir.clone();
    let (steps, sources, lease, lacks) = app
        .read(move |j| {
            let steps = j.steps(&key)?;
            let sources = j.sources(&key)?;
            let lease = j.lease(&key).ok().flatten();
            let lacks = if run_is_running(j, &key) {
                crate::service::lacking(
                    state_dir.as_deref(),
                    &j.run(&key)?.ok_or("gone")?,
                    &j.events(&key)?,
                )
            } else {
                None
            };
            Ok((steps, sources, lease, lacks))
        })
        .await?;
    let mut finished: Vec<_> = steps.finished.into_values().collect();
    finished.sort_by(|a, b| a.step.cmp(&b.step));
    let waiting: Vec<Value> = app
        .approvals
        .pending(&id)
        .into_iter()
        .filter_map(|step| app.approvals.request(&id, &step))
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let trigger = sources
        .iter()
        .find(|s| s.kind == record::SourceKind::Trigger)
        .map(|s| {
            json!({
                "via": s.path,
                "body": serde_json::from_str::<Value>(&s.text).unwrap_or(Value::Null),
            })
        });
    let mut shown = json!({
        "run": run,
        "steps": finished,
        "in_flight": steps.in_flight,
        "waiting_for": waiting,
        "trigger": trigger,
        "executed_here": app.runs.follow(&id).is_some(),
    });
    if let Some(l) = lease {
        shown["lease"] = serde_json::to_value(l).unwrap_or_default();
    }
    if let Some(l) = lacks {
        shown["journal"] = l.into();
    }
    Ok(axum::Json(shown))
}

fn run_is_running(j: &dyn crate::record::Journal, id: &str) -> bool {
    matches!(j.run(id), Ok(Some(r)) if r.status == "running")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    #[serde(default)]
    pub(super) after: Option<i64>,
}

/// `GET /api/v1/runs/{id}/events?after=SEQ`.
pub async fn events(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    find(&app, &id).await?;
    let after = q.after.unwrap_or(-1);
    let events = app.read(move |j| j.events_after(&id, after)).await?;
    Ok(axum::Json(json!({ "events": events })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/v1/runs/{id}/report?format=markdown|junit|json`: the reports
/// `runner runs show` and the report files hold, rebuilt from the journal.
pub async fn report(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "markdown".to_owned());
    if !matches!(format.as_str(), "markdown" | "junit" | "json") {
        return Err(ApiError::bad_request(format!(
            "report format `{format}` is not one of markdown, junit, json"
        )));
    }
    let run = find(&app, &id).await?;
    let key = id.clone();
    let events = app.read(move |j| j.events(&key)).await?;
    let state = app.service.settings().state_dir.clone();
    let (body, kind) = match format.as_str() {
        "markdown" => (
            crate::service::markdown_report(state.as_deref(), &run, events),
            "text/markdown; charset=utf-8",
        ),
        other => {
            let (info, stamped) = crate::service::report_input(state.as_deref(), &run, events);
            if other == "junit" {
                (
                    crate::report::junit(&info, &stamped),
                    "application/xml; charset=utf-8",
                )
            } else {
                (crate::report::json(&info, &stamped), "application/json")
            }
        }
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// `POST /api/v1/runs/{id}/cancel`: stops the run as SIGTERM stops
/// `runner exec`: no further step starts, its failure and finally handlers run.
pub async fn cancel(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    operator(&app, &caller, "cancel runs")?;
    check_run(&id)?;
    let key = id.clone();
    let row = app.read(move |j| j.run(&key)).await?;
    if let Some(run) = &row
        && run.status != "running"
    {
        return Err(ApiError::conflict(format!(
            "run `{id}` already ended ({}); there is nothing to cancel",
            run.status
        )));
    }
    if !app.runs.cancel(&id) {
        // A run of the workers: its worker's child stops it within a second;
        // one still queued never starts.
        if let Some(queue) = app.queue.clone() {
            let (key, by) = (id.clone(), caller.name.clone());
            let was = tokio::task::spawn_blocking(move || queue.cancel(&key, &by))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?
                .map_err(ApiError::journal)?;
            if let Some(state) = was {
                let status = if state == "queued" {
                    "cancelled"
                } else {
                    "cancelling"
                };
                return Ok((
                    StatusCode::ACCEPTED,
                    axum::Json(json!({ "id": id, "status": status, "by": caller.name })),
                )
                    .into_response());
            }
        }
        return Err(match row {
            None => ApiError::not_found(format!("no run `{id}`; GET /api/v1/runs lists them")),
            Some(run) => ApiError::conflict(format!(
                "run `{id}` is executed by another process (pid {}), not this server or its workers' queue: stop it there (SIGTERM runs its handlers)",
                run.pid
            )),
        });
    }
    tracing::info!(run = %id, by = %caller.name, "run cancelled through the API");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "id": id, "status": "cancelling", "by": caller.name })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    pub from: String,
}

/// `POST /api/v1/runs/{id}/rerun`: a new run with the same inputs from step
/// `from` (steps before it keep their results).
pub async fn rerun(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RerunBody>,
) -> Result<Response, ApiError> {
    operator(&app, &caller, "re-run runs")?;
    approval::check_step_id(&body.from).map_err(ApiError::bad_request)?;
    find(&app, &id).await?;
    let options = RunOptions {
        secrets: None,
        kube_context: None,
        actor: caller.principal(),
        on_journal_error: crate::service::OnJournalError::Stop,
        trigger: None,
    };
    let (status, value) = launch(
        &app,
        Work::Rerun {
            of: id,
            from: body.from,
        },
        options,
    )
    .await?;
    Ok((status, axum::Json(value)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Days back from now (seed 004's `period=30`), or a duration (`12h`).
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    playbook: Option<String>,
}

/// `GET /api/v1/stats?period=30`: per playbook, success and rollback rates,
/// durations, mean time to restore (see `runner stats --help`).
pub async fn stats(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Query(q): Query<StatsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let since = match q.period.as_deref() {
        None => None,
        Some(p) => Some(match p.parse::<u32>() {
            Ok(days) => record::now_ms() - i64::from(days) * 86_400_000,
            Err(_) => since_ms(p)?,
        }),
    };
    let playbook = q.playbook;
    let figures = app
        .read(move |j| record::stats::stats(j, since, playbook.as_deref()))
        .await?;
    Ok(axum::Json(
        json!({ "period": q.period, "playbooks": figures }),
    ))
}
