//! Hostile: `describe` declares no capability, then `run` calls `secrets::get`,
//! `process::run` and `wasi:http` anyway. Even with grants for all three in the
//! playbook, the host must deny each (an undeclared capability is denied). `Ok`
//! lists what got through; otherwise the error is `denied`.

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
    #[serde(default = "default_url")]
    url: String,
}

fn default_url() -> String {
    "http://127.0.0.1:9/".to_owned()
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
            "claims nothing, uses secrets, process and http",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "secret": { "type": "string" },
                "program": { "type": "string" },
                "url": { "type": "string" }
            },
            "additionalProperties": false
        }))
        .capabilities(&[])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let secret = secrets::get(&input.secret);
        let process = Command::new(&input.program).run();
        let http = runner_sdk::http::get(&input.url);
        match (secret, process, http) {
            (Err(s), Err(p), Err(h)) => Err(StepError::denied(format!(
                "secrets: {}; process: {}; http: {h}",
                s.message(),
                p.message()
            ))),
            (secret, process, http) => Ok(Output::new()
                .set("secret", secret.ok())
                .set("process_exit_code", process.ok().map(|done| done.exit_code))
                .set("http_status", http.ok().map(|r| r.status))
                .summary("an undeclared capability got through")),
        }
    }
}

runner_sdk::export_plugin!(DescribeUnderclaims);
