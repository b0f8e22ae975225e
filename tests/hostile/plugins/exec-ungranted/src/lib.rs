//! Hostile: runs `program` (with `args`) through the `process` import. Used with
//! a program the playbook did not grant; the host must refuse (`denied`).

use runner_sdk::process::Command;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, tail_lossy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    program: String,
    #[serde(default)]
    args: Vec<String>,
}

struct ExecUngranted;

impl Plugin for ExecUngranted {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "exec-ungranted",
            env!("CARGO_PKG_VERSION"),
            "runs an ungranted program",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "program": { "type": "string" },
                "args": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["program"],
            "additionalProperties": false
        }))
        .capabilities(&["process"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let done = Command::new(&input.program).args(&input.args).run()?;
        Ok(Output::new()
            .set("exit_code", done.exit_code)
            .set("stdout", tail_lossy(&done.stdout, 4096))
            .summary(format!("ran {}", input.program)))
    }
}

runner_sdk::export_plugin!(ExecUngranted);
