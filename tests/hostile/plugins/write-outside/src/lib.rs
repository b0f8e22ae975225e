//! Hostile: writes `/tmp/runner-escape-test`, then `../escape` (relative to the
//! first preopened directory). Both must fail; `Ok` lists what was written.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

const TARGETS: [&str; 2] = ["/tmp/runner-escape-test", "../escape"];

struct WriteOutside;

impl Plugin for WriteOutside {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "write-outside",
            env!("CARGO_PKG_VERSION"),
            "writes outside the sandbox",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let mut written = Vec::new();
        let mut refused = Vec::new();
        for path in TARGETS {
            match std::fs::write(path, b"escaped from the runner sandbox\n") {
                Ok(()) => written.push(path),
                Err(e) => refused.push(format!("{path}: {e}")),
            }
        }
        if written.is_empty() {
            Err(StepError::failed(format!(
                "all writes refused: {}",
                refused.join("; ")
            )))
        } else {
            Ok(Output::new()
                .set("written", &written)
                .set("refused", &refused)
                .summary(format!("wrote {}", written.join(", "))))
        }
    }
}

runner_sdk::export_plugin!(WriteOutside);
