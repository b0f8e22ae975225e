//! Hostile: `describe` returns an input schema that is not JSON (raw contract).
//! The runner must reject the plugin when it loads it, naming it.

use runner_sdk::raw::{self, PluginInfo, RawPlugin, StepError, StepOutput};

struct BadSchema;

impl RawPlugin for BadSchema {
    fn describe() -> PluginInfo {
        let mut info = raw::plugin_info(runner_sdk::Info::new(
            "bad-schema",
            env!("CARGO_PKG_VERSION"),
            "its input schema is not JSON",
        ));
        info.input_schema = "{ \"type\": \"object\", ".to_owned();
        info
    }

    fn run(_input: String) -> Result<StepOutput, StepError> {
        Ok(StepOutput {
            outputs: "{}".to_owned(),
            summary: "should not have run".to_owned(),
            artifacts: Vec::new(),
        })
    }
}

runner_sdk::export_raw_plugin!(BadSchema);
