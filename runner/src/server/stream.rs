//! `GET /api/v1/runs/{id}/stream`: a run's events as Server-Sent Events.
//!
//! A stream reads the events from the journal, never from memory, so what a
//! watcher sees is what the record holds: each wake-up reads only the events
//! after the last one sent (`Journal::events_after`). A run this server
//! executes wakes its streams at each event; one executed elsewhere (a
//! worker, another runner) is looked at every 250 ms. A run still queued is
//! waited for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Caller;
use super::runs::{AfterQuery, find};
use super::{ApiError, App};
use crate::engine::Event;
use crate::record::Stored;

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
                // The run's row first: its status and its `run_finished` are
                // written in one transaction, so a run seen ended here has all
                // its events in the read that follows.
                .read(move |j| {
                    let run = j.run(&id)?;
                    Ok((j.events_after(&id, after)?, run))
                })
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
                // Sent before the stream looks again (and ends, when nothing
                // came after the end).
                self.buffer.extend(events);
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
