//! Hostile: recurses without bound, with a 4 KiB buffer in every frame so that
//! the compiler can neither drop the frames nor turn the recursion into a loop.
//!
//! The buffer lives on Rust's shadow stack in linear memory (1 MiB by default),
//! so that stack runs out first and the instance traps with "out of bounds
//! memory access". `deep-recursion-native` exhausts wasmtime's own stack instead.

use std::hint::black_box;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth as u8;
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[(depth % 4096) as usize]))
}

struct DeepRecursion;

impl Plugin for DeepRecursion {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "deep-recursion",
            env!("CARGO_PKG_VERSION"),
            "recurses forever",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let depth = recurse(0);
        Ok(Output::new().set("depth", depth))
    }
}

runner_sdk::export_plugin!(DeepRecursion);
