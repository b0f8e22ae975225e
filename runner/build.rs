//! Builds the built-in plugins (the `plugins/` workspace) for `wasm32-wasip2` and
//! leaves them in `OUT_DIR`, where `src/builtins.rs` embeds them: one `cargo
//! build` on a fresh machine makes a runner binary that carries its plugins.
//!
//! The nested build (see `guest_build.rs`) uses a target directory next to the
//! outer one, shared by every profile, so each plugin is compiled once.

use std::env;
use std::path::{Path, PathBuf};

include!("guest_build.rs");

const PLUGINS: &[&str] = &[
    "echo",
    "exec",
    "fs",
    "git",
    "http-check",
    "kubectl",
    "load-test",
    "notify",
    "prometheus",
    "report",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("runner/ is inside the repository");
    for watched in ["plugins", "sdk"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = wasm_target_dir(&out);
    let mut cmd = guest_build(&root.join("plugins/Cargo.toml"), &target_dir);
    // Only the plugins embedded here: a workspace member still being written
    // does not break the runner's build.
    for name in PLUGINS {
        cmd.args(["-p", name]);
    }
    let status = cmd.status().expect("run cargo for the plugins");
    if !status.success() {
        panic!(
            "building the built-in plugins for wasm32-wasip2 failed (see above). \
             If the target is missing: rustup target add wasm32-wasip2"
        );
    }
    for name in PLUGINS {
        let file = name.replace('-', "_");
        let built = target_dir.join(format!("wasm32-wasip2/release/{file}.wasm"));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
}

/// `<outer target dir>/wasm-plugins`: OUT_DIR is `<target>/<profile>/build/<pkg>/out`.
fn wasm_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .nth(4)
        .map(|target| target.join("wasm-plugins"))
        .unwrap_or_else(|| out.join("wasm-plugins"))
}
