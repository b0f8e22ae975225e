//! Hostile: logs one 64 MiB line. The host must cap the line, not copy it into
//! every report and journal entry.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError, log};

const SIZE: usize = 64 << 20;

struct HugeLogLine;

impl Plugin for HugeLogLine {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "huge-log-line",
            env!("CARGO_PKG_VERSION"),
            "logs one 64 MiB line",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        log::warn("z".repeat(SIZE));
        Ok(Output::new().summary("logged one 64 MiB line"))
    }
}

runner_sdk::export_plugin!(HugeLogLine);
