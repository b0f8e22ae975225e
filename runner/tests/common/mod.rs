//! Shared by the plugin tests: run a playbook with the real `runner` binary and
//! read the events it reports (`--output json`).

#![allow(dead_code)] // each test file uses a subset

pub mod kube;
pub mod postgres;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A fresh, empty folder under the system's temp dir, unique in this process.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("runner-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `playbook` into `dir` and runs it with `extra` arguments, a private
/// state directory in `dir` and the shared test compile cache. The exit code
/// (never 2: the playbook must be valid) and the events.
pub fn exec(dir: &Path, playbook: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    exec_env(dir, playbook, extra, &[])
}

/// [`exec`] with environment variables set for the runner.
pub fn exec_env(
    dir: &Path,
    playbook: &str,
    extra: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> (i32, Vec<Value>) {
    let file = dir.join(format!("playbook-{}.yaml", scratch_id()));
    std::fs::write(&file, playbook).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .envs(env.iter().copied())
        .args(["exec", file.to_str().unwrap(), "--output", "json"])
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 2, "invalid: {}", String::from_utf8_lossy(&out.stderr));
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (code, events)
}

/// An address of 127.0.0.0/8 for this test alone (Linux routes all of it to the
/// loopback interface): a listener on it hears only whom the test sends there.
/// On 127.0.0.1 a program left on the machine (a Prometheus scraping, a
/// Kubernetes controller retrying its API server) may knock on a reused port,
/// and once did, failing a "nothing connected" check for nothing the runner did.
pub fn own_loopback() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .wrapping_add(n.wrapping_mul(7919));
    format!(
        "127.{}.{}.{}",
        100 + std::process::id() % 100,
        nanos % 250 + 1,
        nanos / 250 % 250 + 1
    )
}

include!("../../guest_build.rs");

/// The component of hostile plugin `name` (`_` for `-`), built once per test
/// binary from tests/hostile into the test target's temporary folder.
pub fn hostile_plugin(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-hostile");
        let status = guest_build(&root.join("tests/hostile/Cargo.toml"), &target)
            .status()
            .expect("run cargo to build the hostile plugins");
        assert!(
            status.success(),
            "building tests/hostile for wasm32-wasip2 failed"
        );
        target.join("wasm32-wasip2/release")
    });
    dir.join(format!("{name}.wasm"))
}

fn scratch_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The `step_finished` event of step `id`.
pub fn finished<'e>(events: &'e [Value], id: &str) -> &'e Value {
    events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == id)
        .unwrap_or_else(|| panic!("no step_finished for {id}: {events:#?}"))
}

/// A one-step playbook: plugin `uses` as local name `p` with `grants`, the
/// step `id` with `with`.
pub fn one_step(uses: &str, grants: &str, id: &str, with: &str) -> String {
    format!(
        "version: 1\nname: plugin-test\nplugins:\n  p: {{ uses: {uses}, grants: {grants} }}\nstages:\n  - id: s\n    steps:\n      - id: {id}\n        uses: p\n        with: {with}\n"
    )
}

/// A TCP server on loopback that accepts connections and never answers: the
/// counterpart of a hung service, for timeout tests. Counts the connections.
#[allow(dead_code)]
pub struct Silent {
    pub port: u16,
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[allow(dead_code)]
impl Silent {
    pub fn start() -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            // Held open, unread, until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Silent { port, accepted }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A shipped playbook (`playbooks/NAME.yaml`) run by the real binary from the
/// repository's root with an environment file, as an on-call engineer would.
pub struct Shipped {
    pub code: i32,
    pub events: Vec<Value>,
    pub run_id: String,
    pub stderr: String,
}

impl Shipped {
    /// Runs it to its end; `inputs` are `name=value` pairs.
    pub fn run(name: &str, env_file: &Path, state: &Path, inputs: &[&str]) -> Shipped {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.current_dir(&root)
            .env("RUNNER_STATE_DIR", state)
            .env(
                "RUNNER_CACHE_DIR",
                std::env::temp_dir().join("runner-test-cache"),
            )
            .arg("exec")
            .arg(format!("playbooks/{name}.yaml"))
            .arg("--env")
            .arg(env_file)
            .args(["--output", "json"]);
        for i in inputs {
            c.args(["-i", i]);
        }
        let out = c.output().expect("run runner");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        assert_ne!(code, 2, "invalid: {stderr}");
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        let run_id = events
            .iter()
            .find(|e| e["event"] == "run_started")
            .and_then(|e| e["run"].as_str())
            .unwrap_or_default()
            .to_owned();
        Shipped {
            code,
            events,
            run_id,
            stderr,
        }
    }

    /// How step `id` ended last ([`status`]).
    pub fn status(&self, id: &str) -> String {
        status(&self.events, id)
    }

    /// The finished event of step `id`.
    pub fn step(&self, id: &str) -> &Value {
        finished(&self.events, id)
    }

    /// A file the run wrote into playbooks/artifacts, removed when the
    /// returned guard is dropped.
    pub fn artifact(&self, name: &str) -> Artifact {
        Artifact(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../playbooks/artifacts")
                .join(name),
        )
    }
}

/// A file in playbooks/artifacts, removed when dropped.
pub struct Artifact(pub PathBuf);

impl Artifact {
    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_else(|e| panic!("{}: {e}", self.0.display()))
    }
}

impl Drop for Artifact {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How step `id` ended last in `events`: `succeeded`, `failed`, `skipped`, ...
/// or `not run`.
pub fn status(events: &[Value], id: &str) -> String {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "step_finished" && e["step"] == id)
        .map(|e| e["status"].as_str().unwrap_or("").to_owned())
        .unwrap_or_else(|| "not run".to_owned())
}

/// The sandbox of this test binary, for its scenarios one at a time: started
/// on first use, reset before each later one.
pub fn sandbox() -> std::sync::MutexGuard<'static, Option<runner_sandbox::Sandbox>> {
    static SANDBOX: std::sync::Mutex<Option<runner_sandbox::Sandbox>> = std::sync::Mutex::new(None);
    let mut guard = SANDBOX.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(sb) => sb.reset().expect("reset the sandbox"),
        None => {
            let sb = runner_sandbox::Sandbox::start(runner_sandbox::SandboxOptions {
                progress: false,
                print_notifications: false,
                ..runner_sandbox::SandboxOptions::default()
            })
            .expect("start the sandbox");
            *guard = Some(sb);
        }
    }
    guard
}
