//! What expressions see of a run: the `steps`, `stages` and `run` variables,
//! kept up to date as the run goes, and the small duration helpers the events and
//! the stage loop share. Plain functions over the context, so that the
//! scheduling code reads as scheduling.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{RunState, StepRecord};
use crate::playbook::scalars::parse_duration;

pub(super) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(super) fn duration_of(text: Option<&String>) -> Option<Duration> {
    text.and_then(|t| parse_duration(t).ok())
}

/// Sleeps until `at`, or forever when there is no deadline.
pub(super) async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

pub(super) fn step_vars(vars: &mut Map<String, Value>, r: &StepRecord) {
    if let Some(Value::Object(steps)) = vars.get_mut("steps") {
        steps.insert(
            r.step.clone(),
            json!({
                "status": r.status,
                "outputs": r.outputs,
                "summary": r.summary,
                "duration": r.duration_ms as f64 / 1000.0,
                "attempts": r.attempts,
            }),
        );
    }
}

pub(super) fn stage_vars(vars: &mut Map<String, Value>, id: &str, status: &str, d: Duration) {
    if let Some(Value::Object(stages)) = vars.get_mut("stages") {
        stages.insert(
            id.to_owned(),
            json!({ "status": status, "duration": d.as_secs_f64() }),
        );
    }
}

pub(super) fn set_run_status(vars: &mut Map<String, Value>, status: &str) {
    if let Some(Value::Object(run)) = vars.get_mut("run") {
        run.insert("status".into(), status.into());
    }
}

/// `run.elapsed` and `run.budget_left` (seconds; negative once over budget).
pub(super) fn set_clock(vars: &mut Map<String, Value>, st: &RunState) {
    if let Some(Value::Object(run)) = vars.get_mut("run") {
        let elapsed = st.started.elapsed().as_secs_f64();
        run.insert("elapsed".into(), json!(elapsed));
        if let Some((_, budget)) = st.budget {
            run.insert("budget_left".into(), json!(budget.as_secs_f64() - elapsed));
        }
    }
}
