//! Hostile: `describe` returns a 10 MiB input schema (valid JSON, a valid JSON
//! Schema: one long `description`), through the raw contract. Parsing and
//! compiling it cost the host tens of seconds and over a GiB; the runner must
//! refuse it by its length, before parsing, when it loads the plugin.

use runner_sdk::raw::{self, PluginInfo, RawPlugin, StepError, StepOutput};

const SIZE: usize = 10 << 20;

struct HugeSchema;

impl RawPlugin for HugeSchema {
    fn describe() -> PluginInfo {
        let mut info = raw::plugin_info(runner_sdk::Info::new(
            "huge-schema",
            env!("CARGO_PKG_VERSION"),
            "its input schema is 10 MiB",
        ));
        let head = r#"{"type":"object","description":""#;
        let tail = r#""}"#;
        let mut schema = String::with_capacity(SIZE);
        schema.push_str(head);
        schema.extend(std::iter::repeat_n('x', SIZE - head.len() - tail.len()));
        schema.push_str(tail);
        info.input_schema = schema;
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

runner_sdk::export_raw_plugin!(HugeSchema);
