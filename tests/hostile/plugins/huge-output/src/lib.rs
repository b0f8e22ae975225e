//! Hostile: returns 64 MiB of outputs (a valid JSON object), through the raw
//! contract so that only one copy is built. The runner must cap outputs.

use runner_sdk::raw::{self, PluginInfo, RawPlugin, StepError, StepOutput};

const SIZE: usize = 64 << 20;

struct HugeOutput;

impl RawPlugin for HugeOutput {
    fn describe() -> PluginInfo {
        raw::plugin_info(runner_sdk::Info::new(
            "huge-output",
            env!("CARGO_PKG_VERSION"),
            "returns 64 MiB of outputs",
        ))
    }

    fn run(_input: String) -> Result<StepOutput, StepError> {
        let head = r#"{"blob":""#;
        let tail = r#""}"#;
        let mut outputs = String::with_capacity(SIZE);
        outputs.push_str(head);
        outputs.extend(std::iter::repeat_n('x', SIZE - head.len() - tail.len()));
        outputs.push_str(tail);
        Ok(StepOutput {
            outputs,
            summary: "64 MiB of outputs".to_owned(),
            artifacts: Vec::new(),
        })
    }
}

runner_sdk::export_raw_plugin!(HugeOutput);
