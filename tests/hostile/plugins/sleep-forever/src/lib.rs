//! Hostile: sleeps forever, blocked in a host call (`wasi:clocks` poll) rather
//! than in wasm code, so epoch interruption alone cannot stop it: the runner's
//! async timeout must.

use std::time::Duration;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct SleepForever;

impl Plugin for SleepForever {
    type Input = Value;

    fn info() -> Info {
        Info::new("sleep-forever", env!("CARGO_PKG_VERSION"), "sleeps forever")
    }

    fn run(_: Value) -> Result<Output, StepError> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

runner_sdk::export_plugin!(SleepForever);
