//! Runs over HTTP: start one from the catalog, read and follow it, answer
//! its approvals, cancel it, re-run it; the history and its figures.
//!
//! A run started here is executed by this process ([`Live`]): its future is a
//! tokio task holding one of `limits.concurrent_runs` slots, its interrupt is
//! kept so `cancel` (and the server's shutdown) stops it as SIGTERM stops
//! `runner exec`, and each of its events wakes the streams that follow it.
//! A stream reads the events from the journal, never from memory, so what a
//! watcher sees is what the record holds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, App, JsonBody};
use crate::engine::approval::{self, Approvals, Decision};
use crate::engine::{Event, Interrupt};
use crate::record::{self, Stored};
use crate::report::{RunInfo, Stamped};
use crate::service::{Interrupter, Notice, Observer, PlanRequest, RunOptions};

/// The runs this process executes.
pub struct Live {
    slots: Arc<tokio::sync::Semaphore>,
    runs: Mutex<HashMap<String, LiveRun>>,
    /// How many run tasks have not ended.
    active: tokio::sync::watch::Sender<usize>,
    stopping: std::sync::atomic::AtomicBool,
}

struct LiveRun {
    interrupt: Interrupter,
    /// Bumped at each event of the run, and when it ends.
    changed: tokio::sync::watch::Sender<u64>,
    /// Queued for a slot, not begun yet.
    queued: bool,
}

impl Live {
    pub fn new(slots: usize) -> Live {
        Live {
            slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
            runs: Mutex::new(HashMap::new()),
            active: tokio::sync::watch::channel(0).0,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveRun>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows run `id` if this process executes it.
    fn follow(&self, id: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.lock().get(id).map(|r| r.changed.subscribe())
    }

    pub fn queued(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|r| r.queued)
    }

    /// Stops run `id` as SIGTERM would; false when this process does not run it.
    fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(r) => {
                r.interrupt.send_replace(Some(Interrupt::Term));
                true
            }
            None => false,
        }
    }

    /// Stops every run (SIGTERM to the server); no run starts after this.
    pub fn stop_all_signal(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.slots.close();
        for r in self.lock().values() {
            r.interrupt.send_replace(Some(Interrupt::Term));
        }
    }

    /// [`Live::stop_all_signal`], then waits for every run's task to end.
    pub async fn stop_all(&self) {
        self.stop_all_signal();
        let mut active = self.active.subscribe();
        let _ = active.wait_for(|n| *n == 0).await;
    }

    pub fn running(&self) -> (usize, usize) {
        let runs = self.lock();
        let queued = runs.values().filter(|r| r.queued).count();
        (runs.len() - queued, queued)
    }
}

/// How a start went, as the run's task tells the request.
enum Begun {
    /// The run's first event is in the journal.
    Started(String),
    /// It waits for its concurrency group, before its first event.
    Waiting(String, String),
    /// It did not start.
    Failed(ApiError),
}

/// The observer of a run this server executes.
struct Follow {
    app: Arc<App>,
    begun: Option<tokio::sync::oneshot::Sender<Begun>>,
    interrupt: Interrupter,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Observer for Follow {
    fn event(&mut self, run_id: &str, event: &Stamped) {
        if let Some(tx) = self.begun.take() {
            // A re-run's id is known from its first event: followed from then on.
            self.app
                .runs
                .lock()
                .entry(run_id.to_owned())
                .or_insert_with(|| LiveRun {
                    interrupt: self.interrupt.clone(),
                    changed: self.changed.clone(),
                    queued: false,
                })
                .queued = false;
            let _ = tx.send(Begun::Started(run_id.to_owned()));
        }
        if let Event::StepFinished(step) = &event.event {
            self.app
                .metrics
                .step_finished(Duration::from_millis(step.duration_ms));
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn notice(&mut self, run_id: &str, notice: &Notice) {
        if let Notice::Waiting { group, .. } = notice
            && let Some(tx) = self.begun.take()
        {
            let _ = tx.send(Begun::Waiting(run_id.to_owned(), group.clone()));
        }
    }
}

/// What the run's task does: start, resume or re-run.
enum Work {
    Start {
        run_id: String,
        request: PlanRequest,
    },
    Rerun {
        of: String,
        from: String,
    },
}

/// Executes `work` in a task of its own; answers when the run has begun (or
/// waits for its group, or a slot), or why it did not start.
async fn launch(
    app: &Arc<App>,
    work: Work,
    options: RunOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let live = &app.runs;
    if live.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable(
            "the server is stopping; start the run elsewhere",
        ));
    }
    let (interrupt, _) = tokio::sync::watch::channel(None);
    let changed = tokio::sync::watch::channel(0u64).0;
    let known_id = match &work {
        Work::Start { run_id, .. } => Some(run_id.clone()),
        Work::Rerun { .. } => None,
    };
    let slot = live.slots.clone().try_acquire_owned().ok();
    let queued = slot.is_none();
    if let Some(id) = &known_id {
        live.lock().insert(
            id.clone(),
            LiveRun {
                interrupt: interrupt.clone(),
                changed: changed.clone(),
                queued,
            },
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut follow = Follow {
        app: app.clone(),
        begun: Some(tx),
        interrupt: interrupt.clone(),
        changed: changed.clone(),
    };
    live.active.send_modify(|n| *n += 1);
    let task_app = app.clone();
    tokio::spawn(async move {
        let app = task_app;
        let slot = match slot {
            Some(s) => Some(s),
            None => app.runs.slots.clone().acquire_owned().await.ok(),
        };
        let outcome = match slot {
            None => Err(ApiError::unavailable(
                "the server stopped before the run could start",
            )),
            Some(_slot) => {
                let service = app.service.clone();
                let result = match &work {
                    Work::Start { run_id, request } => {
                        service
                            .start_as(run_id, request, &options, &mut follow, &interrupt)
                            .await
                    }
                    Work::Rerun { of, from } => {
                        service
                            .rerun(of, from, &options, &mut follow, &interrupt)
                            .await
                    }
                };
                result.map_err(ApiError::from)
            }
        };
        if let Err(e) = outcome
            && let Some(tx) = follow.begun.take()
        {
            let _ = tx.send(Begun::Failed(e));
        }
        let mut runs = app.runs.lock();
        runs.retain(|_, r| !r.changed.same_channel(&changed));
        drop(runs);
        changed.send_modify(|n| *n += 1);
        app.runs.active.send_modify(|n| *n -= 1);
    });
    if queued && let Some(id) = known_id {
        return Ok((
            StatusCode::ACCEPTED,
            json!({ "id": id, "status": "queued", "reason": format!("all {} run slots of the server are busy (limits.concurrent_runs); it starts when one is free", app.config.limits.concurrent_runs) }),
        ));
    }
    match rx.await {
        Ok(Begun::Started(id)) => Ok((
            StatusCode::CREATED,
            json!({ "id": id, "status": "running", "url": app.link(&format!("/api/v1/runs/{id}")) }),
        )),
        Ok(Begun::Waiting(id, group)) => Ok((
            StatusCode::ACCEPTED,
            json!({ "id": id, "status": "waiting", "reason": format!("waits for concurrency group `{group}`") }),
        )),
        Ok(Begun::Failed(e)) => Err(e),
        Err(_) => Err(ApiError::unavailable("the run's task ended without a word")),
    }
}

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
fn operator(app: &App, caller: &Caller, what: &str) -> Result<(), ApiError> {
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

fn quoted(items: &[String]) -> String {
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

fn check_run(id: &str) -> Result<(), ApiError> {
    approval::check_run_id(id).map_err(ApiError::bad_request)
}

async fn find(app: &App, id: &str) -> Result<record::RunRow, ApiError> {
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
    after: Option<i64>,
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

/// `GET /api/v1/runs/{id}/stream`: the run's events as Server-Sent Events
/// (`id:` is the event's number; a client that reconnects with
/// `Last-Event-ID` gets what it missed), then an `end` event with the run's
/// status.
pub async fn stream(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !app.is_queued(&id).await {
        find(&app, &id).await?;
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after)
        .unwrap_or(-1);
    let follow = app.runs.follow(&id);
    let state = Following {
        app,
        id,
        last: after,
        buffer: std::collections::VecDeque::new(),
        follow,
        done: false,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        st.next().await.map(|e| (Ok::<_, Infallible>(e), st))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Following {
    app: Arc<App>,
    id: String,
    last: i64,
    buffer: std::collections::VecDeque<Stored>,
    follow: Option<tokio::sync::watch::Receiver<u64>>,
    done: bool,
}

impl Following {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(stored) = self.buffer.pop_front() {
                self.last = stored.seq;
                let data = serde_json::to_string(&stored).unwrap_or_default();
                return Some(
                    SseEvent::default()
                        .id(stored.seq.to_string())
                        .event("event")
                        .data(data),
                );
            }
            if self.done {
                return None;
            }
            let (id, after) = (self.id.clone(), self.last);
            let read = self
                .app
                .read(move |j| Ok((j.events_after(&id, after)?, j.run(&id)?)))
                .await;
            let (events, run) = match read {
                Ok(r) => r,
                Err(e) => {
                    self.done = true;
                    return Some(SseEvent::default().event("error").data(e.message));
                }
            };
            let ended = match &run {
                Some(r) => r.status != "running",
                // Not begun: it waits for a slot or a worker, or never will.
                None => !self.app.is_queued(&self.id).await,
            } || events
                .iter()
                .any(|s| matches!(s.event, Event::RunFinished { .. }));
            if !events.is_empty() {
                self.buffer.extend(events);
                if ended {
                    // One more read after the buffer: nothing comes after the end.
                    continue;
                }
                continue;
            }
            if ended && self.app.runs.follow(&self.id).is_none() {
                self.done = true;
                let status = run.map(|r| r.status).unwrap_or_default();
                return Some(
                    SseEvent::default()
                        .event("end")
                        .data(json!({ "status": status }).to_string()),
                );
            }
            // Wait for the run's next event: at once when this process runs
            // it, else (another process writes the journal) at the next look.
            match &mut self.follow {
                Some(rx) => {
                    if tokio::time::timeout(Duration::from_secs(1), rx.changed())
                        .await
                        .is_ok_and(|r| r.is_err())
                    {
                        self.follow = None;
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
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
            let info = RunInfo {
                journal: crate::service::lacking(state.as_deref(), &run, &events),
                run_id: run.id.clone(),
                playbook: run.playbook.clone(),
                file: run.file.clone(),
                started_at: run.started_at.clone(),
                inputs: run.inputs.as_object().cloned().unwrap_or_default(),
            };
            let stamped: Vec<Stamped> = events
                .into_iter()
                .map(|s| Stamped {
                    at: s.at,
                    offset_ms: s.offset_ms.max(0) as u64,
                    event: s.event,
                })
                .collect();
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
    from: String,
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
pub struct DecideBody {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    comment: Option<String>,
    /// The role to answer as; by default the first role of the step's that
    /// the caller holds and that has not approved yet.
    #[serde(default)]
    role: Option<String>,
}

/// Records `approved` by `caller` for `step` of `run_id`, after the checks:
/// the caller holds the role (or, for a step without roles, an operator's
/// role), is not the run's starter when the step forbids self-approval.
/// An answer to an approval step, before it is checked.
pub struct Answer {
    pub approved: bool,
    /// The role to answer as (else chosen from the caller's).
    pub role: Option<String>,
    pub comment: Option<String>,
    /// How it came: `api`, `slack`, `link`.
    pub via: &'static str,
}

pub fn decide_as(
    app: &App,
    caller: &Caller,
    run_id: &str,
    step: &str,
    answer: Answer,
) -> Result<Decision, ApiError> {
    let Answer {
        approved,
        role,
        comment,
        via,
    } = answer;
    check_run(run_id)?;
    approval::check_step_id(step).map_err(ApiError::bad_request)?;
    let Some(request) = app.approvals.request(run_id, step) else {
        let pending = app.approvals.pending(run_id);
        return Err(if pending.is_empty() {
            ApiError::not_found(format!(
                "run `{run_id}` is not waiting for any approval (it was decided, timed out, or the run ended)"
            ))
        } else {
            ApiError::not_found(format!(
                "run `{run_id}` is not waiting for an approval of step `{step}`; it waits for: {}",
                quoted(&pending)
            ))
        });
    };
    let role = if request.approvers.is_empty() {
        if !caller.has_any(&app.config.access.operate) {
            return Err(ApiError::forbidden(format!(
                "step `{step}` names no approver roles, so it takes an answer from an operator: `{}` needs one of the roles {} (access.operate)",
                caller.name,
                quoted(&app.config.access.operate)
            )));
        }
        None
    } else {
        match role {
            Some(r) if !request.approvers.contains(&r) => {
                return Err(ApiError::forbidden(format!(
                    "step `{step}` takes no answer as `{r}`; it needs: {}",
                    quoted(&request.approvers)
                )));
            }
            Some(r) if !caller.has(&r) => {
                return Err(ApiError::forbidden(format!(
                    "`{}` does not hold the role `{r}`; step `{step}` needs: {}",
                    caller.name,
                    quoted(&request.approvers)
                )));
            }
            Some(r) => Some(r),
            None => {
                let decided: Vec<String> = app
                    .approvals
                    .decisions(run_id, step)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| request.counts(d))
                    .filter_map(|d| d.role)
                    .collect();
                let mine: Vec<&String> =
                    request.approvers.iter().filter(|r| caller.has(r)).collect();
                let Some(first) = mine.iter().find(|r| !decided.contains(r)).or(mine.first())
                else {
                    return Err(ApiError::forbidden(format!(
                        "`{}` holds none of the roles step `{step}` of run `{run_id}` needs: {}",
                        caller.name,
                        quoted(&request.approvers)
                    )));
                };
                Some((*first).clone())
            }
        }
    };
    let decision = Decision::now(
        approved,
        &caller.principal(),
        role,
        comment.filter(|c| !c.trim().is_empty()),
        via,
    );
    if !request.counts(&decision) {
        return Err(ApiError::forbidden(format!(
            "step `{step}` of run `{run_id}` may not be approved by `{}`, who started the run (the step says `prevent_self_approval`); another person must approve it (a rejection is taken)",
            caller.name
        )));
    }
    approval::submit(app.approvals.as_ref(), run_id, step, decision.clone())
        .map_err(ApiError::conflict)?;
    Ok(decision)
}

/// `POST /api/v1/runs/{id}/approvals/{step}`.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let approved = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "decision `{other}` is not `approve` or `reject`"
            )));
        }
    };
    let decision = tokio::task::block_in_place(|| {
        decide_as(
            &app,
            &caller,
            &id,
            &step,
            Answer {
                approved,
                role: body.role,
                comment: body.comment,
                via: "api",
            },
        )
    })?;
    Ok(axum::Json(
        json!({ "run": id, "step": step, "decision": decision }),
    ))
}

/// `GET /api/v1/approvals`: what waits for the caller: every pending request
/// of a running run that one of their roles can answer and that they have not
/// answered, oldest first.
pub async fn pending(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let running = app
        .read(|j| {
            j.list(&record::Filter {
                status: Some("running"),
                ..Default::default()
            })
        })
        .await?;
    let mut mine = Vec::new();
    for run in running.iter().rev() {
        for step in app.approvals.pending(&run.id) {
            let Some(request) = app.approvals.request(&run.id, &step) else {
                continue;
            };
            let can = if request.approvers.is_empty() {
                caller.has_any(&app.config.access.operate)
            } else {
                caller.has_any(&request.approvers)
            };
            let answered = app
                .approvals
                .decisions(&run.id, &step)
                .unwrap_or_default()
                .iter()
                .any(|d| d.by == caller.name);
            let own = request.not_approved_by.as_deref() == Some(caller.name.as_str());
            if can && !answered {
                mine.push(json!({
                    "run": run.id,
                    "playbook": run.playbook,
                    "request": request,
                    "started_by": run.started_by,
                    "self_approval_refused": own,
                    "url": app.link(&format!("/api/v1/runs/{}", run.id)),
                }));
            }
        }
    }
    Ok(axum::Json(json!({ "approvals": mine })))
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
