// How to build a workspace of guest plugins for wasm32-wasip2 from inside
// another cargo invocation. Shared by `build.rs` (the built-in plugins) and
// `tests/hostile.rs` (the hostile plugins) through `include!`, because a build
// script cannot depend on the crate it builds.
//
// The nested cargo gets its own target directory (the outer one is locked by the
// outer cargo) and none of the outer build's wrappers or flags: those are for host
// code (clippy's driver, coverage flags), not for the wasm guests.

/// A `cargo build` of the guest workspace at `manifest` into `target_dir`.
fn guest_build(manifest: &std::path::Path, target_dir: &std::path::Path) -> std::process::Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
