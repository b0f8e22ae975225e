//! Hostile: `describe` never returns (a busy loop). Loading the plugin (`runner
//! plan`, `validate`) must time out instead of hanging.

use std::hint::black_box;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct SlowDescribe;

impl Plugin for SlowDescribe {
    type Input = Value;

    fn info() -> Info {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }

    fn run(_: Value) -> Result<Output, StepError> {
        Ok(Output::new().summary("never reached: describe does not return"))
    }
}

runner_sdk::export_plugin!(SlowDescribe);
