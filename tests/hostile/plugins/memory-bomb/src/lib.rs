//! Hostile: keeps 1 MiB chunks forever, touching every page. The runner's memory
//! cap must end it (a failed `memory.grow` aborts the instance).

use std::hint::black_box;

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

const CHUNK: usize = 1 << 20;
const PAGE: usize = 64 << 10;

struct MemoryBomb;

impl Plugin for MemoryBomb {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "memory-bomb",
            env!("CARGO_PKG_VERSION"),
            "allocates forever",
        )
    }

    fn run(_: Value) -> Result<Output, StepError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            for page in (0..CHUNK).step_by(PAGE) {
                chunk[page] = 1;
            }
            chunks.push(black_box(chunk));
        }
    }
}

runner_sdk::export_plugin!(MemoryBomb);
