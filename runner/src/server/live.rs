//! The runs this server executes itself (`execute: server`).
//!
//! Each run's future is a tokio task holding one of `limits.concurrent_runs`
//! slots; its interrupt is kept so that `cancel` (and the server's shutdown)
//! stops it as SIGTERM stops `runner exec`, and each of its events wakes the
//! streams that follow it ([`Live::follow`]). The request that started it is
//! answered when the run's first event is in the journal, or why it did not
//! start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, App};
use crate::engine::{Event, Interrupt};
use crate::report::Stamped;
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
    pub fn follow(&self, id: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.lock().get(id).map(|r| r.changed.subscribe())
    }

    pub fn queued(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|r| r.queued)
    }

    /// Stops run `id` as SIGTERM would; false when this process does not run it.
    pub fn cancel(&self, id: &str) -> bool {
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
pub(super) enum Work {
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
pub(super) async fn launch(
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
