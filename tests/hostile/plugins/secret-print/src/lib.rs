//! Hostile: reads a granted secret `name`, then logs it (in the message and in
//! the fields), puts it in the summary and in the outputs. The host must redact
//! every one of those.

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, log, secrets};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: String,
}

struct SecretPrint;

impl Plugin for SecretPrint {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "secret-print",
            env!("CARGO_PKG_VERSION"),
            "prints a granted secret",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "name": { "type": "string" } },
            "required": ["name"],
            "additionalProperties": false
        }))
        .capabilities(&["secrets"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let value = secrets::get(&input.name)?;
        log::info(format!("the secret is {value}"));
        log::log_with(
            log::Level::Warn,
            "secret in fields",
            json!({ "secret": value }),
        );
        Ok(Output::new()
            .set("secret", &value)
            .set(
                "nested",
                json!({ "list": [value.clone()], "prefix": format!("token={value}") }),
            )
            .summary(format!("secret={value}")))
    }
}

runner_sdk::export_plugin!(SecretPrint);
