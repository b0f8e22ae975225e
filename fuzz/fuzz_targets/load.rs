//! Fuzzes the whole loading path the CLI runs: bytes → UTF-8 → YAML → schema →
//! semantic checks → plan. Any panic, abort or timeout is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::playbook::{self, Source};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = Source::from_bytes("fuzz.yaml".into(), ".".into(), data.to_vec()) else { return };
    if let Ok(validated) = playbook::validate(source) {
        let _ = runner::plan::build(&validated, &[]);
    }
});
