//! Hostile: returns a 16 MiB summary of many lines with terminal escape
//! sequences. A summary is one line for progress and reports: the host must cap
//! it and strip control characters.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

const SIZE: usize = 16 << 20;

struct HugeSummary;

impl Plugin for HugeSummary {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "huge-summary",
            env!("CARGO_PKG_VERSION"),
            "returns a 16 MiB summary",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let line = "\u{1b}[2J\u{1b}[31mall good\u{1b}[0m\r\n";
        let summary = line.repeat(SIZE / line.len());
        Ok(Output::new().summary(summary))
    }
}

runner_sdk::export_plugin!(HugeSummary);
