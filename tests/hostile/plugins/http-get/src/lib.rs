//! Hostile: fetches whatever URL it is given through `wasi:http` (with the SDK's
//! client), e.g. a host the playbook did not grant, or a granted name that
//! resolves to loopback or the cloud metadata address. `Ok` with the status and
//! body means the request went through; a refusal is the SDK's `denied` error.

use runner_sdk::http::Request;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, capability};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    url: String,
}

struct HttpGet;

impl Plugin for HttpGet {
    type Input = Input;

    fn info() -> Info {
        Info::new("http-get", env!("CARGO_PKG_VERSION"), "fetches any URL")
            .input_schema(json!({
                "type": "object",
                "properties": { "url": { "type": "string" } },
                "required": ["url"],
                "additionalProperties": false
            }))
            .capabilities(&[capability::HTTP])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let response = Request::get(&input.url).send()?;
        Ok(Output::new()
            .set("status", response.status)
            .set("body", response.text())
            .summary(format!("{} answered {}", input.url, response.status)))
    }
}

runner_sdk::export_plugin!(HttpGet);
