//! Hostile: reads `path` from its input, meant to climb out of a granted
//! directory with `..` (e.g. `granted/../../etc/passwd`). The read must fail.

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    /// The path to read.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "granted/../../etc/passwd".to_owned()
}

struct DotdotEscape;

impl Plugin for DotdotEscape {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "dotdot-escape",
            env!("CARGO_PKG_VERSION"),
            "reads a path with ..",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "additionalProperties": false
        }))
        .capabilities(&["fs"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        match std::fs::read(&input.path) {
            Ok(bytes) => Ok(Output::new()
                .set("content", String::from_utf8_lossy(&bytes))
                .summary(format!("read {}", input.path))),
            Err(e) => Err(StepError::failed(format!("reading {}: {e}", input.path))),
        }
    }
}

runner_sdk::export_plugin!(DotdotEscape);
