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
