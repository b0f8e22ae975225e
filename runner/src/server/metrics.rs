//! `GET /metrics`: the Prometheus text format (version 0.0.4).
//!
//! Runs by status and pending approvals are read from the journal and the
//! approvals store at each scrape (so they count every runner writing the
//! journal); step durations and requests are counted by this server for the
//! runs it executes and the requests it answers, since it started.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};
use crate::engine::approval::Approvals;

/// Upper bounds of the step duration buckets, in seconds.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

#[derive(Default)]
pub struct Metrics {
    /// Steps finished with a duration up to each bucket (not cumulative).
    steps: [AtomicU64; BUCKETS.len() + 1],
    steps_ms: AtomicU64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    responses: [AtomicU64; 4],
}

impl Metrics {
    pub fn step_finished(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.steps[i].fetch_add(1, Ordering::Relaxed);
        self.steps_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn request(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(2, 5) - 2;
        self.responses[class as usize].fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn render(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let runs = app
        .read(|j| j.list(&crate::record::Filter::default()))
        .await?;
    let mut by_status = std::collections::BTreeMap::<&str, u64>::new();
    for s in ["running", "succeeded", "failed", "timed_out", "interrupted"] {
        by_status.insert(s, 0);
    }
    let mut pending = 0usize;
    for r in &runs {
        *by_status.entry(r.status.as_str()).or_default() += 1;
        if r.status == "running" {
            pending += app.approvals.pending(&r.id).len();
        }
    }
    let (executing, mut queued) = app.runs.running();
    if let Some(queue) = app.queue.clone() {
        queued += tokio::task::spawn_blocking(move || queue.depth())
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .map_err(ApiError::journal)? as usize;
    }
    let mut out = String::new();
    let _ = writeln!(out, "# HELP runner_runs Runs in the journal by status.");
    let _ = writeln!(out, "# TYPE runner_runs gauge");
    for (status, n) in &by_status {
        let _ = writeln!(out, "runner_runs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP runner_queue_depth Runs waiting to start: for a run slot of this server, or in the workers' queue."
    );
    let _ = writeln!(out, "# TYPE runner_queue_depth gauge");
    let _ = writeln!(out, "runner_queue_depth {queued}");
    let _ = writeln!(
        out,
        "# HELP runner_runs_executing Runs this server executes now."
    );
    let _ = writeln!(out, "# TYPE runner_runs_executing gauge");
    let _ = writeln!(out, "runner_runs_executing {executing}");
    let _ = writeln!(
        out,
        "# HELP runner_approvals_pending Approval steps waiting for an answer."
    );
    let _ = writeln!(out, "# TYPE runner_approvals_pending gauge");
    let _ = writeln!(out, "runner_approvals_pending {pending}");
    let _ = writeln!(
        out,
        "# HELP runner_step_duration_seconds Durations of the steps of the runs this server executed."
    );
    let _ = writeln!(out, "# TYPE runner_step_duration_seconds histogram");
    let mut total = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        total += app.metrics.steps[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "runner_step_duration_seconds_bucket{{le=\"{bound}\"}} {total}"
        );
    }
    total += app.metrics.steps[BUCKETS.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "runner_step_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let sum = app.metrics.steps_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let _ = writeln!(out, "runner_step_duration_seconds_sum {sum}");
    let _ = writeln!(out, "runner_step_duration_seconds_count {total}");
    let _ = writeln!(
        out,
        "# HELP runner_http_responses_total Responses of this server by status class."
    );
    let _ = writeln!(out, "# TYPE runner_http_responses_total counter");
    for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        let n = app.metrics.responses[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "runner_http_responses_total{{class=\"{class}\"}} {n}");
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
