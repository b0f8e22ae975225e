//! Hostile: writes 100 MiB to stdout and stderr in 1 KiB lines. Whatever the
//! host does with them (drop, cap, log), it must not buffer them without bound.

use std::io::Write;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

const LINE: usize = 1024;
const TOTAL: usize = 100 << 20;

struct StdoutFlood;

impl Plugin for StdoutFlood {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "stdout-flood",
            env!("CARGO_PKG_VERSION"),
            "writes 100 MiB to stdout",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let mut line = "y".repeat(LINE - 1);
        line.push('\n');
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr().lock();
        for i in 0..TOTAL / LINE {
            // A closed stream is the host's right: ignore errors and go on.
            let _ = if i % 2 == 0 {
                stdout.write_all(line.as_bytes())
            } else {
                stderr.write_all(line.as_bytes())
            };
        }
        Ok(Output::new().summary("wrote 100 MiB to stdout and stderr"))
    }
}

runner_sdk::export_plugin!(StdoutFlood);
