//! `echo`: returns what it is given, and misbehaves on request.
//!
//! Why it exists: it needs no grant, so it is the plugin for dry runs, examples
//! and the runner's own tests of timeouts (`sleep_ms`, `busy_ms`), retries and handlers
//! (`fail`), log handling (`log_lines`) and artifacts (`artifact`).

use std::time::Duration;

use runner_sdk::serde_json::{Map, Value, json};
use runner_sdk::{Artifact, Info, Output, Plugin, StepError, log};
use serde::{Deserialize, Serialize};

/// The `with:` object. Serializing it back gives the input object, which is the
/// default output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Returned as the step's outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Map<String, Value>>,
    /// The summary, and the message of the error when `fail` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// Sleep this long before returning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sleep_ms: Option<u64>,
    /// Keep the CPU busy this long before returning (a plugin stuck computing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    busy_ms: Option<u64>,
    /// Fail with this error kind instead of succeeding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail: Option<Fail>,
    /// Log this many info lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_lines: Option<u64>,
    /// Write this file in the working directory and return it as an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact: Option<FileArtifact>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArtifact {
    /// File name, relative to the working directory.
    path: String,
    content: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Fail {
    Failed,
    Retryable,
    InvalidInput,
    Denied,
}

struct Echo;

impl Plugin for Echo {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "echo",
            env!("CARGO_PKG_VERSION"),
            "return the input as outputs; sleep, log or fail on request (tests, dry runs)",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "outputs": {
                    "type": "object",
                    "description": "Returned as the step's outputs (default: the whole `with:` object)."
                },
                "message": {
                    "type": "string",
                    "description": "The step's summary, or the error message with `fail`."
                },
                "sleep_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Sleep this many milliseconds before returning."
                },
                "busy_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Keep the CPU busy this many milliseconds before returning (a plugin stuck computing)."
                },
                "fail": {
                    "enum": ["failed", "retryable", "invalid-input", "denied"],
                    "description": "Fail with this error kind instead of succeeding."
                },
                "log_lines": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Log this many info lines."
                },
                "artifact": {
                    "type": "object",
                    "description": "Write `content` to `path` in the step's working directory and return it as an artifact.",
                    "properties": {
                        "path": { "type": "string", "minLength": 1 },
                        "content": { "type": "string" }
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false
                }
            },
            "additionalProperties": false
        }))
        .capabilities(&[])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let lines = input.log_lines.unwrap_or(0);
        for i in 1..=lines {
            log::info(format!("echo: line {i} of {lines}"));
        }
        if let Some(ms) = input.sleep_ms {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Some(ms) = input.busy_ms {
            let until = std::time::Instant::now() + Duration::from_millis(ms);
            let mut spins = 0u64;
            while std::time::Instant::now() < until {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        if let Some(kind) = input.fail {
            let message = input
                .message
                .unwrap_or_else(|| "echo was asked to fail".to_owned());
            return Err(match kind {
                Fail::Failed => StepError::Failed(message),
                Fail::Retryable => StepError::Retryable(message),
                Fail::InvalidInput => StepError::InvalidInput(message),
                Fail::Denied => StepError::Denied(message),
            });
        }
        let summary = input.message.clone();
        let mut outputs = match &input.outputs {
            Some(outputs) => Output::new().extend(outputs),
            None => Output::new().extend(&input),
        };
        if let Some(file) = &input.artifact {
            std::fs::write(&file.path, &file.content)
                .map_err(|e| StepError::failed(format!("writing {}: {e}", file.path)))?;
            outputs = outputs.artifact(Artifact::new(&file.path, &file.path, "text/plain"));
        }
        let count = outputs.fields().len();
        Ok(outputs.summary(summary.unwrap_or_else(|| match count {
            1 => "echoed 1 output".to_owned(),
            n => format!("echoed {n} outputs"),
        })))
    }
}

runner_sdk::export_plugin!(Echo);
