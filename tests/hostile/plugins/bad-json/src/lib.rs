//! Hostile: returns outputs that are not JSON, through the raw contract (the SDK
//! cannot produce them). The runner must fail the step, naming the plugin.

use runner_sdk::raw::{self, PluginInfo, RawPlugin, StepError, StepOutput};

struct BadJson;

impl RawPlugin for BadJson {
    fn describe() -> PluginInfo {
        raw::plugin_info(runner_sdk::Info::new(
            "bad-json",
            env!("CARGO_PKG_VERSION"),
            "returns outputs that are not JSON",
        ))
    }

    fn run(_input: String) -> Result<StepOutput, StepError> {
        Ok(StepOutput {
            outputs: "not json".to_owned(),
            summary: "bad json".to_owned(),
            artifacts: Vec::new(),
        })
    }
}

runner_sdk::export_raw_plugin!(BadJson);
