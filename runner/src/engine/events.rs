//! What a run reports as it goes: one event per transition, in order.
//!
//! Why events and not a final report only: the on-call engineer watches the run
//! live, CI logs need a line per transition, the journal makes each one durable,
//! and tests assert the exact sequence. With `--output json` each event is one
//! JSON line, `{"event": "<name>", "run": "<id>", ...fields}`; the names and
//! fields below are that schema.

use serde::Serialize;

use super::StepRecord;
use super::approval::Decision;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        playbook: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_s: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
    },
    StageStarted {
        stage: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_s: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
    },
    /// The stage's `if` is false.
    StageSkipped { stage: String },
    StepStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        /// `plugin`, `watch`, `gate` or `approval`.
        kind: &'static str,
    },
    /// An attempt failed and will be tried again after `delay_ms`.
    Retry {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// One measurement of a watch.
    Measurement {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        n: u32,
        verdict: super::watch::Verdict,
        #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
        outputs: serde_json::Map<String, serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A gate's outcome, with the value of each condition.
    Gate {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        /// `pass`, `fail` or `inconclusive`.
        outcome: &'static str,
        pass: String,
        pass_value: serde_json::Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        fail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fail_value: Option<serde_json::Value>,
    },
    ApprovalRequested {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        prompt: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        timeout_s: f64,
        /// How to answer from another shell.
        answer_with: String,
    },
    ApprovalDecided {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        /// `approved`, `rejected` or `timed_out`.
        outcome: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        decisions: Vec<Decision>,
    },
    /// A step ended (succeeded, failed, skipped or cancelled).
    StepFinished(StepRecord),
    /// A soft budget was passed; its `on_budget_exceeded` handlers run next.
    BudgetExceeded {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        budget_s: f64,
        elapsed_s: f64,
    },
    /// A hard timeout of a stage or of the run: running steps are cancelled.
    TimedOut {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        timeout_s: f64,
    },
    /// The run got SIGINT or SIGTERM: running steps are cancelled, handlers run.
    Interrupted { signal: &'static str },
    /// A list of handlers starts: `on_failure`, `on_budget_exceeded`, `finally`.
    Handlers {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        kind: &'static str,
    },
    StageFinished {
        stage: String,
        /// `succeeded`, `failed`, `timed_out` or `interrupted`.
        status: &'static str,
        duration_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
    },
    RunFinished {
        /// `succeeded`, `failed`, `timed_out` or `interrupted`.
        status: &'static str,
        duration_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
        /// Handlers that failed (reported; they never change `status`).
        handler_failures: u32,
    },
}
