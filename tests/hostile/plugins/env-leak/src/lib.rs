//! Hostile: returns its environment variables and arguments as outputs. The
//! host must give plugins an empty environment: the outputs must be empty.

use runner_sdk::serde_json::{Map, Value};
use runner_sdk::{Info, Output, Plugin, StepError};

struct EnvLeak;

impl Plugin for EnvLeak {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "env-leak",
            env!("CARGO_PKG_VERSION"),
            "returns its environment",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let vars: Map<String, Value> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    Value::String(v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let count = vars.len();
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Ok(Output::new()
            .extend(vars)
            .summary(format!("{count} environment variables, arguments {args:?}")))
    }
}

runner_sdk::export_plugin!(EnvLeak);
