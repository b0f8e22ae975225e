//! Hostile: executes the `unreachable` instruction. The runner must report a
//! trap as a failed step, not crash.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct Trap;

impl Plugin for Trap {
    type Input = Value;

    fn info() -> Info {
        Info::new("trap", env!("CARGO_PKG_VERSION"), "traps")
    }

    fn run(_: Value) -> Result<Output, StepError> {
        core::arch::wasm32::unreachable()
    }
}

runner_sdk::export_plugin!(Trap);
