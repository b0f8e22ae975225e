//! Hostile: reads `/etc/passwd`. Without an `fs` grant nothing is preopened, so
//! the read must fail; `Ok` means the sandbox leaked.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct ReadPasswd;

impl Plugin for ReadPasswd {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "read-passwd",
            env!("CARGO_PKG_VERSION"),
            "reads /etc/passwd",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        match std::fs::read("/etc/passwd") {
            Ok(bytes) => Ok(Output::new()
                .set("passwd", String::from_utf8_lossy(&bytes))
                .summary("read /etc/passwd")),
            Err(e) => Err(StepError::failed(format!("reading /etc/passwd: {e}"))),
        }
    }
}

runner_sdk::export_plugin!(ReadPasswd);
