//! `runner approve` end to end: a request opened through the library (as a waiting
//! run opens it) is answered by the binary, from another process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use runner::engine::approval::{Mailbox, Request};

/// A fresh state directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(name: &str) -> StateDir {
        let dir =
            std::env::temp_dir().join(format!("runner-approve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        StateDir(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn approve(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("approve")
        .args(args)
        .env("RUNNER_STATE_DIR", state)
        .env("RUNNER_USER", "alice")
        .output()
        .expect("run runner")
}

#[test]
fn an_approval_from_the_command_line_is_recorded() {
    let state = StateDir::new("ok");
    let mailbox = Mailbox::new(&state.0, "r1");
    let request = Request::new(
        "r1",
        "confirm",
        "roll back api?",
        &[],
        Duration::from_secs(60),
    );
    mailbox.open(&request).unwrap();

    let out = approve(&state.0, &["r1", "confirm", "--comment", "ok"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "step `confirm` of run `r1`: approved by alice (RUNNER_USER) (\"ok\")\n"
    );
    let decisions = mailbox.decisions("confirm").unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let d = &decisions[0];
    assert!(d.approved);
    assert_eq!(
        (
            d.by.as_str(),
            d.role.as_deref(),
            d.comment.as_deref(),
            d.via.as_str()
        ),
        ("alice", None, Some("ok"), "command")
    );
}

#[test]
fn a_step_that_does_not_wait_is_refused() {
    let state = StateDir::new("refused");
    let mailbox = Mailbox::new(&state.0, "r1");
    let request = Request::new(
        "r1",
        "confirm",
        "roll back api?",
        &[],
        Duration::from_secs(60),
    );
    mailbox.open(&request).unwrap();

    let out = approve(&state.0, &["r1", "deploy"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "run `r1` is not waiting for an approval of step `deploy`; it waits for: `confirm`. For example: runner approve r1 confirm\n"
    );
    assert_eq!(out.stdout, b"");
    assert_eq!(mailbox.decisions("deploy").unwrap(), vec![]);
    assert_eq!(mailbox.decisions("confirm").unwrap(), vec![]);
}

/// `prevent_self_approval`: the person who started the run cannot approve it
/// from the command line; another person can, and the run goes on.
#[test]
fn the_runs_starter_cannot_approve_it_when_the_step_says_so() {
    let state = StateDir::new("self");
    let playbook = state.0.join("ask.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: ask\nstages:\n  - id: s\n    steps:\n      - id: go\n        approval: { prompt: \"go?\", timeout: 2m, on_timeout: fail, prevent_self_approval: true }\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["exec", playbook.to_str().unwrap(), "--output", "json"])
        .env("RUNNER_STATE_DIR", &state.0)
        .env("RUNNER_USER", "alice")
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run's id, from its mailbox once it waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        let waiting = std::fs::read_dir(state.0.join("approvals"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .filter(|e| e.path().join("go.request.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        if let Some(id) = waiting {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "the run never waited");
        std::thread::sleep(Duration::from_millis(50));
    };
    let own = approve(&state.0, &[&run_id, "go"]);
    let err = String::from_utf8_lossy(&own.stderr);
    assert_eq!(own.status.code(), Some(2), "{err}");
    assert!(
        err.contains("may not be approved by `alice`, who started the run"),
        "{err}"
    );
    let other = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["approve", &run_id, "go"])
        .env("RUNNER_STATE_DIR", &state.0)
        .env("RUNNER_USER", "bob")
        .output()
        .unwrap();
    assert_eq!(
        other.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let done = run.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("approved by bob"), "{out}");
}
