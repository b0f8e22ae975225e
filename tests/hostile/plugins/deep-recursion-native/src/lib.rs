//! Hostile: recurses without bound using only wasm locals (nothing on Rust's
//! shadow stack in linear memory), so each call is a frame on the host's native
//! stack. The runner's `max_wasm_stack` must trap it ("call stack exhausted")
//! rather than let the host process overflow its own stack.

use std::hint::black_box;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

/// Not an accumulator pattern (rotate by a varying amount, then xor), so LLVM
/// cannot turn the recursion into a loop.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    recurse(depth + 1, limit).rotate_left((depth % 63) as u32) ^ depth
}

struct DeepRecursionNative;

impl Plugin for DeepRecursionNative {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "deep-recursion-native",
            env!("CARGO_PKG_VERSION"),
            "recurses forever on the wasm stack",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        // Opaque to the optimizer, and never reached.
        let limit = black_box(u64::MAX);
        Ok(Output::new().set("result", recurse(0, limit)))
    }
}

runner_sdk::export_plugin!(DeepRecursionNative);
