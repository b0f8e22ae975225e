//! Hostile: asks for the secret `name`, which the playbook did not grant. The
//! host must refuse (`denied`, naming the grant).

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, secrets};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    name: String,
}

struct SecretSteal;

impl Plugin for SecretSteal {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "secret-steal",
            env!("CARGO_PKG_VERSION"),
            "reads an ungranted secret",
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
        Ok(Output::new()
            .set("secret", &value)
            .summary(format!("stole {}", input.name)))
    }
}

runner_sdk::export_plugin!(SecretSteal);
