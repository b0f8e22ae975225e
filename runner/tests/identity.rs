//! Who acts is recorded with where the name came from: `--as`, then
//! `RUNNER_USER`, then `git config user.email`, then the OS user from the
//! password database (never "unknown"). Against the real binary: a run is
//! started, its approval answered from another process, and the journal read.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The runner, outside any git repository, with a git configuration of the
/// test's own (`email`: its user.email, if any) and no RUNNER_USER.
fn runner(base: &Path, email: Option<&str>) -> Command {
    let home = base.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let gitconfig = home.join("gitconfig");
    match email {
        Some(e) => std::fs::write(&gitconfig, format!("[user]\n\temail = {e}\n")).unwrap(),
        None => std::fs::write(&gitconfig, "").unwrap(),
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(&home)
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", base.join("state"))
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", &gitconfig)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("RUNNER_USER")
        // Anyone can set $USER: it is never taken for who acts.
        .env("USER", "mallory")
        .env_remove("RUNNER_JOURNAL")
        .env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

/// Starts the playbook with `start` (extra args, git email), answers its
/// approval with `answer`, and returns the run's journal as `runs show` gives
/// it, and the approve command's output line.
fn started_and_answered(
    name: &str,
    start: (&[&str], Option<&str>, Option<&str>),
    answer: (&[&str], Option<&str>, Option<&str>),
) -> (serde_json::Value, String) {
    let base = std::env::temp_dir().join(format!("runner-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let playbook = root().join("tests/identity/approve.yaml");
    let (args, email, user) = start;
    let mut exec = runner(&base, email);
    if let Some(u) = user {
        exec.env("RUNNER_USER", u);
    }
    let mut child = exec
        .arg("exec")
        .arg(&playbook)
        .args(["--output", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let run_id = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let e: serde_json::Value = serde_json::from_str(&l).ok()?;
            (e["event"] == "approval_requested").then(|| e["run"].as_str().unwrap().to_owned())
        })
        .expect("the run asks for its approval");
    let (args, email, user) = answer;
    let mut approve = runner(&base, email);
    if let Some(u) = user {
        approve.env("RUNNER_USER", u);
    }
    let approved = approve
        .args(["approve", &run_id, "sign_off", "--role", "tech-lead"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    drop(lines);
    let status = child.wait().unwrap();
    assert!(status.success(), "the run ends once approved");
    let shown = runner(&base, None)
        .args(["runs", "show", &run_id, "--output", "json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&base);
    (
        serde_json::from_slice(&shown.stdout).unwrap(),
        String::from_utf8_lossy(&approved.stdout).into_owned(),
    )
}

fn event<'a>(shown: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"])
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

#[test]
fn an_explicit_name_wins_then_runner_user() {
    let (shown, said) = started_and_answered(
        "flag",
        (
            &["--as", "Alice Example"],
            Some("dev@example.com"),
            Some("bot"),
        ),
        (&[], Some("dev@example.com"), Some("oncall-bot")),
    );
    let started = event(&shown, "run_started");
    assert_eq!(started["by"], "Alice Example");
    assert_eq!(started["by_source"], "--as");
    assert_eq!(shown["run"]["started_by"], "Alice Example (--as)");
    let decision = &event(&shown, "approval_decided")["decisions"][0];
    assert_eq!(decision["by"], "oncall-bot");
    assert_eq!(decision["by_source"], "RUNNER_USER");
    assert_eq!(decision["role"], "tech-lead");
    assert!(
        said.contains("approved by oncall-bot (RUNNER_USER) as tech-lead"),
        "{said}"
    );
}

#[test]
fn without_a_name_git_then_the_os_user_from_the_password_database() {
    let (shown, _) = started_and_answered(
        "fallback",
        (&[], Some("dev@example.com"), None),
        (&[], None, None),
    );
    let started = event(&shown, "run_started");
    assert_eq!(started["by"], "dev@example.com");
    assert_eq!(started["by_source"], "git user.email");
    // The password database's name for this uid, not $USER (set to a lie).
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    let decision = &event(&shown, "approval_decided")["decisions"][0];
    assert_eq!(decision["by"], me.as_str());
    assert_eq!(decision["by_source"], "os user");
}
