//! Hostile: logs 100 MiB in 1 KiB lines (102,400 lines). The runner's log rate
//! and size caps must hold, and the run must neither stall nor run out of memory.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError, log};

const LINE: usize = 1024;
const TOTAL: usize = 100 << 20;

struct LogFlood;

impl Plugin for LogFlood {
    type Input = Value;

    fn info() -> Info {
        Info::new("log-flood", env!("CARGO_PKG_VERSION"), "logs 100 MiB")
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let line = "x".repeat(LINE);
        for _ in 0..TOTAL / LINE {
            log::info(&line);
        }
        Ok(Output::new()
            .set("lines", TOTAL / LINE)
            .summary("logged 100 MiB"))
    }
}

runner_sdk::export_plugin!(LogFlood);
