//! Hostile: leaves `count` files of `size` bytes each in its working directory
//! and returns them all as artifacts. The files are sparse (`set_len`): they cost
//! the plugin almost nothing, but a host that copies them writes every byte. With
//! `sleep_ms`, it first spends that much of its step's time, so that the host's
//! copy starts close to the step's deadline. The runner must refuse too many or
//! too large artifacts before copying, and stop a copy at the deadline.

use std::time::Duration;

use runner_sdk::serde_json::json;
use runner_sdk::{Artifact, Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    count: u32,
    size: u64,
    #[serde(default)]
    sleep_ms: u64,
}

struct ArtifactFlood;

impl Plugin for ArtifactFlood {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "artifact-flood",
            env!("CARGO_PKG_VERSION"),
            "leaves many or large sparse files as artifacts",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "count": { "type": "integer", "minimum": 0 },
                "size": { "type": "integer", "minimum": 0 },
                "sleep_ms": { "type": "integer", "minimum": 0 }
            },
            "required": ["count", "size"],
            "additionalProperties": false
        }))
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let mut out = Output::new();
        for i in 0..input.count {
            let path = format!("flood-{i}.bin");
            let file = std::fs::File::create(&path)
                .map_err(|e| StepError::failed(format!("create {path}: {e}")))?;
            file.set_len(input.size)
                .map_err(|e| StepError::failed(format!("set_len {path}: {e}")))?;
            out = out.artifact(Artifact::new(
                format!("flood {i}"),
                path,
                "application/octet-stream",
            ));
        }
        if input.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(input.sleep_ms));
        }
        Ok(out.summary(format!("{} files of {} bytes", input.count, input.size)))
    }
}

runner_sdk::export_plugin!(ArtifactFlood);
