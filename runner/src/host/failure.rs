//! Why a step attempt failed, as the engine, the journal and the reports tell
//! it apart. A file of its own so that `artifacts` (which fails an attempt
//! whose files are bad) and `runtime` (which runs it) both use it without using
//! each other; `host::runtime::StepFailure` names it too.

use std::time::Duration;

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("failed: {0}")]
    Failed(String),
    #[error("failed (retryable): {0}")]
    Retryable(String),
    #[error("timed out after {}", crate::playbook::scalars::format_duration(*.0))]
    TimedOut(Duration),
    #[error("exceeded its memory limit of {} MiB", .0 >> 20)]
    OutOfMemory(usize),
    #[error("crashed: {0}")]
    Crashed(String),
    #[error("returned bad output: {0}")]
    BadOutput(String),
}

impl StepFailure {
    /// A short machine-readable kind, for JSON events and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            StepFailure::InvalidInput(_) => "invalid-input",
            StepFailure::Denied(_) => "denied",
            StepFailure::Failed(_) => "failed",
            StepFailure::Retryable(_) => "retryable",
            StepFailure::TimedOut(_) => "timeout",
            StepFailure::OutOfMemory(_) => "out-of-memory",
            StepFailure::Crashed(_) => "crashed",
            StepFailure::BadOutput(_) => "bad-output",
        }
    }

    /// Whether a retry policy may try again.
    pub fn retryable(&self) -> bool {
        matches!(self, StepFailure::Retryable(_))
    }
}
