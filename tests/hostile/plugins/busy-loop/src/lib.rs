//! Hostile: spins forever in `run`, never calling the host. The runner must stop
//! it with epoch interruption at the step's timeout.

use std::hint::black_box;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct BusyLoop;

impl Plugin for BusyLoop {
    type Input = Value;

    fn info() -> Info {
        Info::new("busy-loop", env!("CARGO_PKG_VERSION"), "spins forever")
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

runner_sdk::export_plugin!(BusyLoop);
