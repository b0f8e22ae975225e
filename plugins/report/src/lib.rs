//! `report`: writes a rendered report (markdown) into a granted folder.
//!
//! Why a plugin: the seeds end with an analysis or a post-mortem document. Its
//! template is the step's `template:`, which the runner renders with `${{ }}`
//! (inputs, step outputs, run facts) before the plugin sees it; the plugin
//! writes it where the playbook granted, and returns its sha256. The run's own
//! report (timeline, gates, measured values) is written by the runner itself
//! to `$RUNNER_STATE_DIR/reports/` and shown by `runner runs show RUN --format markdown`.

#[path = "../../fs/src/files.rs"]
mod files;

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, capability};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    path: String,
    template: String,
}

struct Report;

impl Plugin for Report {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "report",
            env!("CARGO_PKG_VERSION"),
            "write a rendered markdown report into a granted folder",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "minLength": 1, "description": "The file, inside a folder granted with `access: rw`, e.g. `artifacts/report-${{ run.id }}.md`." },
                "template": { "type": "string", "description": "The report; `${{ }}` in it is rendered by the runner." }
            },
            "required": ["path", "template"],
            "additionalProperties": false
        }))
        .capabilities(&[capability::FS])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let folders = runner_sdk::fs::granted();
        let mut text = input.template;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let sha256 = files::write(&folders, &input.path, text.as_bytes(), false)?;
        Ok(Output::new()
            .set("path", &input.path)
            .set("bytes", text.len())
            .set("sha256", &sha256)
            .summary(format!("report written to {}", input.path)))
    }
}

runner_sdk::export_plugin!(Report);
