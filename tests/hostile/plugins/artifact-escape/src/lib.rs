//! Hostile: returns an artifact whose path leaves the step's working directory
//! (`path`, default `../../../etc/passwd`), or, with `link`, first has a granted
//! `ln` plant `path` as a symbolic link to `link` (e.g. `/etc/passwd`) and returns
//! that. The runner must refuse to collect it, and fail the step.

use runner_sdk::process::Command;
use runner_sdk::serde_json::json;
use runner_sdk::{Artifact, Info, Output, Plugin, StepError, capability};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default = "default_path")]
    path: String,
    link: Option<String>,
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
            "properties": {
                "path": { "type": "string" },
                "link": { "type": "string" }
            },
            "additionalProperties": false
        }))
        .capabilities(&[capability::PROCESS])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        if let Some(target) = &input.link {
            let done = Command::new("ln")
                .args(["-s", target.as_str(), input.path.as_str()])
                .run()?;
            if done.exit_code != Some(0) {
                return Err(StepError::failed(format!("ln failed: {done:?}")));
            }
        }
        Ok(Output::new()
            .artifact(Artifact::new("passwd", &input.path, "text/plain"))
            .summary(format!("artifact at {}", input.path)))
    }
}

runner_sdk::export_plugin!(ArtifactEscape);
