//! The unit tests of the guest crates (the Rust SDK and the built-in plugins),
//! run natively: they live in their own workspaces, which the README's test
//! command does not reach, and their pure logic (kubectl's rollout rules, git's
//! argument checks, percentile maths) must be tested like the runner's.

use std::path::Path;
use std::process::Command;

fn cargo_test(manifest: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-native");
    let out = Command::new(env!("CARGO"))
        .args(["test", "--locked", "--workspace", "--manifest-path"])
        .arg(root.join(manifest))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo test on a guest workspace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "unit tests of {manifest} failed:\n{stdout}\n{stderr}"
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed > 0, "no unit test ran in {manifest}:\n{stdout}");
    eprintln!("{manifest}: {passed} unit tests passed");
}

#[test]
fn sdk_unit_tests_pass() {
    cargo_test("sdk/rust/Cargo.toml");
}

#[test]
fn plugin_unit_tests_pass() {
    cargo_test("plugins/Cargo.toml");
}
