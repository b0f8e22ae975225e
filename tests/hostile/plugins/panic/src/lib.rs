//! Hostile: panics. With `panic = "abort"` this traps; the SDK's panic hook logs
//! "plugin panicked at ...: boom" first, which the runner should show.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct Panic;

impl Plugin for Panic {
    type Input = Value;

    fn info() -> Info {
        Info::new("panic", env!("CARGO_PKG_VERSION"), "panics")
    }

    fn run(_: Value) -> Result<Output, StepError> {
        panic!("boom")
    }
}

runner_sdk::export_plugin!(Panic);
