//! CI integration: GitHub Actions workflow commands on the playbook's lines,
//! and the composite action that runs a playbook in a workflow.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runner(state: &Path, github: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(root())
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .env_remove("RUNNER_JOURNAL")
        .env_remove("GITHUB_STEP_SUMMARY");
    if github {
        cmd.env("GITHUB_ACTIONS", "true");
    } else {
        cmd.env_remove("GITHUB_ACTIONS");
    }
    cmd.args(args).output().unwrap()
}

/// The 1-based line of `needle` in a file of the repository.
fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    1 + text.lines().position(|l| l.contains(needle)).unwrap()
}

#[test]
fn validate_output_github_puts_each_problem_on_its_line() {
    let state = std::env::temp_dir().join(format!("runner-ci-validate-{}", std::process::id()));
    let out = runner(
        &state,
        false,
        &[
            "validate",
            "--output",
            "github",
            "tests/broken/04-duplicate-key.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = line_of("tests/broken/04-duplicate-key.yaml", "timeout: 10m");
    assert!(
        stdout.contains(&format!(
            "::error file=tests/broken/04-duplicate-key.yaml,line={line},col=9,title=runner::duplicate key `timeout`"
        )),
        "{stdout}"
    );
    // The human form is still on stderr.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("04-duplicate-key.yaml:{line}:9:"))
    );
    // Notes are notices; without --output github, no workflow command.
    let noted = runner(
        &state,
        false,
        &["validate", "--output", "github", "playbooks/hotfix.yaml"],
    );
    assert_eq!(noted.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&noted.stdout)
            .contains("::notice file=playbooks/hotfix.yaml,line=")
    );
    let plain = runner(
        &state,
        false,
        &["validate", "tests/broken/04-duplicate-key.yaml"],
    );
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("::error"));
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("::error"));
}

#[test]
fn exec_in_github_actions_annotates_the_step_that_failed() {
    let state = std::env::temp_dir().join(format!("runner-ci-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let out = runner(
        &state,
        true,
        &["exec", "tests/ci/fails.yaml", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = line_of("tests/ci/fails.yaml", "- id: broken");
    let annotation = stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no annotation: {stderr}"));
    assert!(
        annotation.starts_with(&format!("::error file=tests/ci/fails.yaml,line={line},"))
            && annotation.contains("title=runner exec::step `broken` failed: ")
            && annotation.contains("exited with code 3"),
        "{annotation}"
    );
    assert_eq!(
        stderr.matches("::error ").count(),
        1,
        "only the failed step: {stderr}"
    );
    // stdout stays JSON Lines.
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    // A playbook exec refuses is annotated too; outside GitHub Actions, nothing.
    let refused = runner(
        &state,
        true,
        &["exec", "tests/broken/04-duplicate-key.yaml"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("::error file=tests/broken/04-duplicate-key.yaml,line=")
    );
    let quiet = runner(
        &state,
        false,
        &["exec", "tests/ci/fails.yaml", "--output", "json"],
    );
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("::error"));
    let _ = std::fs::remove_dir_all(&state);
}

/// The composite action: valid YAML, a composite of shell steps that bash
/// accepts, whose runner commands exist, and whose inputs reach the shell only
/// through the environment (a `${{ }}` inside a script would be evaluated into
/// it: script injection).
#[test]
fn the_composite_action_is_well_formed() {
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let action = runner::playbook::yaml::parse(&text)
        .unwrap_or_else(|e| panic!("action.yml: {e:?}"))
        .to_json();
    assert_eq!(action["runs"]["using"], "composite");
    for input in [
        "playbook",
        "inputs",
        "env-file",
        "binary-url",
        "binary-sha256",
        "as",
    ] {
        assert!(
            action["inputs"][input]["description"].is_string(),
            "{input}"
        );
    }
    let steps = action["runs"]["steps"].as_array().unwrap();
    let mut scripts = 0;
    for step in steps {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        scripts += 1;
        assert_eq!(step["shell"], "bash", "{step}");
        assert!(
            !script.contains("${{"),
            "an expression inside a script: {script}"
        );
        let mut bash = Command::new("bash")
            .arg("-n")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut bash.stdin.take().unwrap(), script.as_bytes()).unwrap();
        let checked = bash.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "{}: {script}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    assert_eq!(scripts, 3);
    // The flags it uses are the runner's.
    let state = std::env::temp_dir().join(format!("runner-ci-action-{}", std::process::id()));
    for (command, flag) in [
        ("validate", "--output"),
        ("exec", "--env"),
        ("exec", "--output"),
    ] {
        let help = runner(&state, false, &[command, "--help"]);
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(flag),
            "{command} {flag}"
        );
        assert!(text.contains(flag));
    }
}
