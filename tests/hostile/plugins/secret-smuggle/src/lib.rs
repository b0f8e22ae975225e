//! Hostile: reads the granted secret `name` and smuggles it out the way `how`
//! says, each a way the host must still redact:
//!
//! - `number`: outputs `n` (the secret as a bare JSON number) and `around` (a
//!   number whose digits contain it); the secret must be digits.
//! - `key`: an output key that contains the secret.
//! - `artifact`: an artifact whose name and media type contain it.
//! - `artifact-path`: an artifact whose path contains it.
//! - `lines`: a log line, its fields, the progress message and the summary
//!   with the secret as it is (a multi-line secret stays multi-line).
//! - `cut`: summary, log line, progress message (or, with a `kind`, the error)
//!   padded with `pad` bytes of `x` before the secret and some text after it,
//!   so that the secret straddles the host's length cap.
//! - `fail`: fails with the secret in the message, as error kind `kind`
//!   (`invalid-input`, `denied`, `failed`, `retryable`).
//! - `ask`: asks for a secret *named* like the value, so the host's refusal
//!   quotes it.

use runner_sdk::serde_json::{Value, json};
use runner_sdk::{Artifact, Info, Output, Plugin, StepError, log, secrets};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: String,
    how: String,
    #[serde(default)]
    pad: usize,
    #[serde(default)]
    kind: String,
}

struct SecretSmuggle;

impl Plugin for SecretSmuggle {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "secret-smuggle",
            env!("CARGO_PKG_VERSION"),
            "smuggles a granted secret out",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "how": { "type": "string" },
                "pad": { "type": "integer", "minimum": 0 },
                "kind": { "type": "string" }
            },
            "required": ["name", "how"],
            "additionalProperties": false
        }))
        .capabilities(&["secrets"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let value = secrets::get(&input.name)?;
        let padded = format!(
            "{}{value} and text after the secret, to be cut",
            "x".repeat(input.pad)
        );
        match input.how.as_str() {
            "number" => {
                let n: Value = runner_sdk::serde_json::from_str(&value)
                    .map_err(|e| StepError::invalid_input(format!("not a number: {e}")))?;
                let around: Value = runner_sdk::serde_json::from_str(&format!("9{value}7"))
                    .map_err(|e| StepError::invalid_input(format!("not a number: {e}")))?;
                Ok(Output::new()
                    .set("n", n)
                    .set("around", around)
                    .set(
                        "list",
                        json!([[1, 2], { "deep": format!("9{value}7").parse::<u64>().ok() }]),
                    )
                    .summary("numbers"))
            }
            "key" => Ok(Output::new()
                .set(format!("key-{value}"), "v")
                .set("nested", json!({ format!("inner-{value}"): 1 }))
                .summary("keys")),
            "artifact" => Ok(Output::new()
                .artifact(Artifact::new(
                    format!("report {value}"),
                    "report.txt",
                    format!("text/plain; token={value}"),
                ))
                .summary("artifact")),
            "artifact-path" => Ok(Output::new()
                .artifact(Artifact::new(
                    "report",
                    format!("dir-{value}.txt"),
                    "text/plain",
                ))
                .summary("artifact")),
            "lines" => {
                log::info(format!("the secret is {value} (end)"));
                log::log_with(log::Level::Warn, "in fields", json!({ "secret": value }));
                log::progress(1, Some(2), format!("progress {value}"));
                Ok(Output::new().summary(format!("summary {value} (end)")))
            }
            "cut" => {
                log::info(&padded);
                log::progress(1, None, &padded);
                if input.kind.is_empty() {
                    Ok(Output::new().summary(padded))
                } else {
                    Err(StepError::failed(padded))
                }
            }
            "fail" => {
                let message = format!("could not use {value} (end)");
                Err(match input.kind.as_str() {
                    "invalid-input" => StepError::invalid_input(message),
                    "denied" => StepError::denied(message),
                    "retryable" => StepError::retryable(message),
                    _ => StepError::failed(message),
                })
            }
            "ask" => {
                let other = secrets::get(&value)?;
                Ok(Output::new().summary(format!("got {} bytes", other.len())))
            }
            other => Err(StepError::invalid_input(format!("unknown how `{other}`"))),
        }
    }
}

runner_sdk::export_plugin!(SecretSmuggle);
