//! What a run reports as it goes: one event per transition, in order.
//!
//! Why events and not a final report only: the on-call engineer watches the run
//! live, CI logs need a line per transition, the journal makes each one durable,
//! and tests assert the exact sequence. With `--output json` each event is one
//! JSON line, `{"event": "<name>", "run": "<id>", ...fields}`; the names and
//! fields below are that schema.

use serde::{Deserialize, Deserializer, Serialize};

use super::StepRecord;
use super::approval::Decision;

/// Receives a run's events, in order, as they happen: the service's fan-out
/// to the journal, the report collector and the front end's views.
///
/// `Send + Sync` so that a run's future can move between the threads of a
/// multi-threaded runtime (a server runs many runs at once). `emit` is called
/// while the engine waits for nothing; it must not block for long (a
/// subscriber that writes to a database commits there, which is the point).
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        playbook: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_s: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
        /// Who started it, and where that name came from (see
        /// [`crate::identity`]); absent in runs of older runners.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_source: Option<String>,
    },
    /// `runner resume` picked the run up again: finished steps are restored
    /// from the journal; steps that were in flight are run again or failed.
    RunResumed {
        restored: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        in_flight: Vec<String>,
        /// Who resumed it, and where that name came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_source: Option<String>,
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
        #[serde(deserialize_with = "word")]
        kind: Word,
        /// The handler list the step runs in (`on_failure`, `on_budget_exceeded`,
        /// `finally`); absent for a stage's own steps.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "maybe_word"
        )]
        handler: Option<Word>,
    },
    /// A step that had finished before the runner died (or, for a re-run, in
    /// the earlier run): its record comes from the journal, it does not run.
    StepRestored(StepRecord),
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
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        outputs: serde_json::Map<String, serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Set when a condition compared a NaN, which decided the verdict:
        /// which values were NaN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nan: Option<String>,
    },
    /// A gate's outcome, with the value of each condition.
    Gate {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        step: String,
        /// `pass`, `fail` or `inconclusive`.
        #[serde(deserialize_with = "word")]
        outcome: Word,
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
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
        #[serde(deserialize_with = "word")]
        outcome: Word,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    Interrupted {
        #[serde(deserialize_with = "word")]
        signal: Word,
    },
    /// A list of handlers starts: `on_failure`, `on_budget_exceeded`, `finally`.
    Handlers {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        #[serde(deserialize_with = "word")]
        kind: Word,
    },
    StageFinished {
        stage: String,
        /// `succeeded`, `failed`, `timed_out` or `interrupted`.
        #[serde(deserialize_with = "word")]
        status: Word,
        duration_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
    },
    RunFinished {
        /// `succeeded`, `failed`, `timed_out` or `interrupted`.
        #[serde(deserialize_with = "word")]
        status: Word,
        duration_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        budget_s: Option<f64>,
        /// Handlers that failed (reported; they never change `status`).
        handler_failures: u32,
    },
}

/// A word of the engine's vocabulary (a status, a kind, an outcome). An alias,
/// not `&'static str` written out, so that serde's derive does not take the
/// field for a borrow of the input: these are read with [`word`].
pub type Word = &'static str;

/// The vocabulary of statuses, kinds and outcomes, read back from the journal.
/// Events hold these as `&'static str`; each distinct word read is kept once for
/// the life of the process (the set is small and fixed by the engine).
pub fn word<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    String::deserialize(d).map(intern)
}

/// [`word`] for an optional field.
pub fn maybe_word<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    Option::<String>::deserialize(d).map(|w| w.map(intern))
}

fn intern(text: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static WORDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut words = WORDS
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(w) = words.get(text.as_str()) {
        return w;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    words.insert(leaked);
    leaked
}
