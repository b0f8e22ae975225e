//! `runner exec` end to end with the embedded `echo` plugin: outputs flow into
//! later steps, gates, retries of retryable errors, handlers, exit codes, JSON Lines.

use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        // A private compile cache, so the test does not depend on the user's.
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env(
            "RUNNER_STATE_DIR",
            // Of this test process alone: a journal another runner build left
            // in a shared folder may have a newer schema, which this one refuses.
            std::env::temp_dir().join(format!("runner-test-state-{}", std::process::id())),
        )
        .args(args)
        .output()
        .expect("run runner")
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn step<'a>(events: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == id)
        .unwrap_or_else(|| panic!("no event for step {id}: {events:?}"))
}

#[test]
fn a_run_that_succeeds() {
    let out = runner(&[
        "exec",
        "examples/hello.yaml",
        "-i",
        "name=team",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    assert_eq!(step(&ev, "hello")["outputs"]["greeting"], "hello, team");
    assert_eq!(step(&ev, "check")["status"], "succeeded");
    // The second step read the first one's output through `${{ }}`.
    assert_eq!(step(&ev, "again")["summary"], "hello, team, again");
    assert_eq!(step(&ev, "broken")["status"], "skipped");
    assert_eq!(step(&ev, "bye")["status"], "succeeded");
    assert!(
        ev.iter().all(|e| e["step"] != "undo"),
        "on_failure ran on success"
    );
    assert_eq!(ev.last().unwrap()["status"], "succeeded");
}

#[test]
fn a_failed_step_is_retried_then_rolled_back() {
    let out = runner(&[
        "exec",
        "examples/hello.yaml",
        "-i",
        "fail=true",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    let broken = step(&ev, "broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(
        broken["attempts"], 3,
        "retryable errors are retried up to max_attempts"
    );
    assert_eq!(broken["error_kind"], "retryable");
    assert_eq!(
        step(&ev, "undo")["summary"],
        "rolling back after failed run"
    );
    assert_eq!(step(&ev, "bye")["status"], "succeeded");
    assert_eq!(ev.last().unwrap()["status"], "failed");
}

#[test]
fn plugins_describe_shows_the_contract() {
    let out = runner(&["plugins", "describe", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["name"], "echo");
    assert_eq!(d["capabilities"], serde_json::json!([]));
    assert_eq!(d["input_schema"]["additionalProperties"], false);
    assert_eq!(d["sha256"].as_str().map(str::len), Some(64));
    let missing = runner(&["plugins", "describe", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no built-in plugin `nope`"));
}

#[test]
fn playbooks_whose_plugins_cannot_be_resolved_are_refused_before_running() {
    let out = runner(&[
        "exec",
        "playbooks/rollback.yaml",
        "-i",
        "service=api",
        "-i",
        "reason=test",
        "-i",
        "production_url=http://127.0.0.1:8080",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // Every problem at once, before anything runs.
    assert!(
        err.contains("secret `SLACK_WEBHOOK` granted to plugin `notify` has no value")
            && err.contains("secret `SMTP_URL` granted to plugin `notify` has no value"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "something ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_exec_plugin_runs_granted_programs_only() {
    let dir = std::env::temp_dir().join(format!("runner-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exec.yaml");
    std::fs::write(
        &file,
        r#"version: 1
name: exec-test
plugins:
  sh: { uses: exec, grants: { process: [{ run: sh, env: [A] }] } }
  only_true: { uses: exec, grants: { process: ["true"] } }
stages:
  - id: s
    steps:
      - id: shell
        uses: sh
        with: { program: sh, args: ["-c", "echo hi-$A-$HOME; echo warn >&2; exit 3"], env: { A: b }, allow_failure: true }
      - id: denied
        uses: only_true
        with: { program: sh, args: ["-c", "id"] }
"#,
    )
    .unwrap();
    let out = runner(&["exec", file.to_str().unwrap(), "--output", "json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    let shell = step(&ev, "shell");
    assert_eq!(shell["status"], "succeeded", "{shell}");
    // Only the environment the step gave: no HOME from the runner.
    assert_eq!(shell["outputs"]["stdout_tail"], "hi-b-\n");
    assert_eq!(shell["outputs"]["stderr_tail"], "warn\n");
    assert_eq!(shell["outputs"]["exit_code"], 3);
    let denied = step(&ev, "denied");
    assert_eq!(denied["error_kind"], "denied");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("program `sh` is not granted to plugin `only_true`"),
        "{denied}"
    );
}

#[test]
fn granted_secrets_need_a_value_from_a_private_file_or_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("runner-secrets-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let playbook = dir.join("s.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: s\nplugins:\n  e: { uses: echo, grants: { secrets: [RUNNER_TEST_TOKEN] } }\nstages:\n  - id: a\n    steps:\n      - { id: b, uses: e, with: { message: ok } }\n",
    )
    .unwrap();
    let pb = playbook.to_str().unwrap();

    let missing = runner(&["exec", pb]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("secret `RUNNER_TEST_TOKEN` granted to plugin `e` has no value")
    );

    let secrets = dir.join("secrets.env");
    std::fs::write(&secrets, "RUNNER_TEST_TOKEN=t0ken\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = runner(&["exec", pb, "--secrets", secrets.to_str().unwrap()]);
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("can be read by other users"));

    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = runner(&["exec", pb, "--secrets", secrets.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn artifacts_outlive_the_working_directory() {
    let dir = std::env::temp_dir().join(format!("runner-artifacts-e2e-{}", std::process::id()));
    let state = dir.join("state");
    std::fs::create_dir_all(&dir).unwrap();
    let playbook = dir.join("a.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: a\nplugins:\n  echo: { uses: echo }\nstages:\n  - id: s\n    steps:\n      - id: report\n        uses: echo\n        with: { artifact: { path: report.md, content: \"# evidence\" } }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", &state)
        .args(["exec", playbook.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    let artifact = &step(&ev, "report")["artifacts"][0];
    assert_eq!(artifact["path"], "report.md");
    let stored = std::path::PathBuf::from(artifact["stored"].as_str().unwrap());
    assert!(stored.starts_with(state.join("artifacts")), "{stored:?}");
    assert!(stored.ends_with("report/report.md"), "{stored:?}");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "# evidence");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secret_never_reaches_the_output_the_journal_or_the_reports() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("runner-leak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let value = "s3cr3t-v4lue-7f1e0c";
    let secrets = dir.join("secrets");
    std::fs::write(&secrets, format!("DEPLOY_TOKEN={value}\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let playbook = dir.join("leak.yaml");
    std::fs::write(
        &playbook,
        r#"version: 1
name: leak
plugins:
  sh: { uses: exec, grants: { process: [{ run: sh, env: [T] }], secrets: [DEPLOY_TOKEN] } }
stages:
  - id: s
    steps:
      - id: careless
        uses: sh
        with: { program: sh, args: ["-c", "echo token=$T; echo $T >&2"], secret_env: { T: DEPLOY_TOKEN } }
      - id: failing
        uses: sh
        with: { program: sh, args: ["-c", "echo the token was $T >&2; exit 3"], secret_env: { T: DEPLOY_TOKEN } }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", &state)
        .args([
            "exec",
            playbook.to_str().unwrap(),
            "--output",
            "json",
            "--secrets",
        ])
        .arg(&secrets)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ev = events(&out);
    assert_eq!(
        step(&ev, "careless")["outputs"]["stdout_tail"],
        "token=[redacted]\n"
    );
    assert!(stdout.contains("[redacted]"));
    // Everything the run left behind, byte for byte.
    let mut files = vec![];
    let mut todo = vec![state.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p)
            } else {
                files.push(p)
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("journal.sqlite")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "md"))
            .count()
            == 1,
        "{files:?}"
    );
    let needle = value.as_bytes();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the secret is in {}",
            f.display()
        );
    }
    for text in [&stdout, &String::from_utf8_lossy(&out.stderr)] {
        assert!(!text.contains(value), "the secret is in the output: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
