//! Hostile: calls `std::process::exit(code)` (`wasi:cli/exit`) in the middle of
//! `run`, default code 0. The runner must not exit itself, and must not count a
//! step that never returned a result as a success.

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    code: i32,
}

struct ProcessExit;

impl Plugin for ProcessExit {
    type Input = Input;

    fn info() -> Info {
        Info::new("process-exit", env!("CARGO_PKG_VERSION"), "exits mid-run").input_schema(json!({
            "type": "object",
            "properties": { "code": { "type": "integer" } },
            "additionalProperties": false
        }))
    }

    fn run(input: Input) -> Result<Output, StepError> {
        std::process::exit(input.code)
    }
}

runner_sdk::export_plugin!(ProcessExit);
