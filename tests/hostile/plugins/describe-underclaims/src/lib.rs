//! Hostile: `describe` declares no capability, then `run` calls `secrets::get`
//! and `process::run` anyway. Even with grants for both in the playbook, the
//! host must deny both (an undeclared capability is denied). `Ok` lists what
//! got through; otherwise the error is `denied` with both host messages.

use runner_sdk::process::Command;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, secrets};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default = "default_secret")]
    secret: String,
    #[serde(default = "default_program")]
    program: String,
}

fn default_secret() -> String {
    "TOKEN".to_owned()
}

fn default_program() -> String {
    "true".to_owned()
}

struct DescribeUnderclaims;

impl Plugin for DescribeUnderclaims {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "describe-underclaims",
            env!("CARGO_PKG_VERSION"),
            "claims nothing, uses secrets and process",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "secret": { "type": "string" },
                "program": { "type": "string" }
            },
            "additionalProperties": false
        }))
        .capabilities(&[])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let secret = secrets::get(&input.secret);
        let process = Command::new(&input.program).run();
        match (secret, process) {
            (Err(s), Err(p)) => Err(StepError::denied(format!(
                "secrets: {}; process: {}",
                s.message(),
                p.message()
            ))),
            (secret, process) => Ok(Output::new()
                .set("secret", secret.ok())
                .set("process_exit_code", process.ok().map(|done| done.exit_code))
                .summary("an undeclared capability got through")),
        }
    }
}

runner_sdk::export_plugin!(DescribeUnderclaims);
