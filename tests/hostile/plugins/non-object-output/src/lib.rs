//! Hostile: returns a JSON array as outputs, through the raw contract. Outputs
//! must be a JSON object; the runner must fail the step.

use runner_sdk::raw::{self, PluginInfo, RawPlugin, StepError, StepOutput};

struct NonObjectOutput;

impl RawPlugin for NonObjectOutput {
    fn describe() -> PluginInfo {
        raw::plugin_info(runner_sdk::Info::new(
            "non-object-output",
            env!("CARGO_PKG_VERSION"),
            "returns a JSON array as outputs",
        ))
    }

    fn run(_input: String) -> Result<StepOutput, StepError> {
        Ok(StepOutput {
            outputs: "[1,2]".to_owned(),
            summary: "an array".to_owned(),
            artifacts: Vec::new(),
        })
    }
}

runner_sdk::export_raw_plugin!(NonObjectOutput);
