//! Hostile: fetches whatever URL it is given through `wasi:http` (with the SDK's
//! client), e.g. a host the playbook did not grant, or a granted name that
//! resolves to loopback or the cloud metadata address. `Ok` with the status and
//! body means the request went through; a refusal is the SDK's `denied` error.
//! With `times`, sends the request that many times and says how each ended
//! (a refusal must reach the plugin as a refusal every time, not as a broken
//! request body that a plugin would take for a network error).

use runner_sdk::http::Request;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, capability};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    url: String,
    #[serde(default)]
    times: Option<u32>,
}

struct HttpGet;

impl Plugin for HttpGet {
    type Input = Input;

    fn info() -> Info {
        Info::new("http-get", env!("CARGO_PKG_VERSION"), "fetches any URL")
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "url": { "type": "string" },
                    "times": { "type": "integer", "minimum": 1 }
                },
                "required": ["url"],
                "additionalProperties": false
            }))
            .capabilities(&[capability::HTTP])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        if let Some(times) = input.times {
            let (mut denied, mut answered, mut other) = (0u32, 0u32, Vec::new());
            for _ in 0..times {
                match Request::get(&input.url).send() {
                    Ok(_) => answered += 1,
                    Err(runner_sdk::http::HttpError::Denied(_)) => denied += 1,
                    Err(e) => other.push(format!("{e:?}")),
                }
            }
            return Ok(Output::new()
                .set("denied", denied)
                .set("answered", answered)
                .set("other", other));
        }
        let response = Request::get(&input.url).send()?;
        Ok(Output::new()
            .set("status", response.status)
            .set("body", response.text())
            .summary(format!("{} answered {}", input.url, response.status)))
    }
}

runner_sdk::export_plugin!(HttpGet);
