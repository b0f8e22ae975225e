//! Hostile: returns an artifact whose path leaves the step's working directory
//! (`path`, default `../../../etc/passwd`). The runner must refuse to collect
//! it, or fail the step.

use runner_sdk::serde_json::json;
use runner_sdk::{Artifact, Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "../../../etc/passwd".to_owned()
}

struct ArtifactEscape;

impl Plugin for ArtifactEscape {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "artifact-escape",
            env!("CARGO_PKG_VERSION"),
            "returns an artifact outside",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "additionalProperties": false
        }))
    }

    fn run(input: Input) -> Result<Output, StepError> {
        Ok(Output::new()
            .artifact(Artifact::new("passwd", &input.path, "text/plain"))
            .summary(format!("artifact at {}", input.path)))
    }
}

runner_sdk::export_plugin!(ArtifactEscape);
