//! The journal from the command line: a failed run, its re-run from the failed
//! step, history, stats, a rebuilt report, pruning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runner(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(root())
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .env_remove("RUNNER_JOURNAL")
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failed_run_is_fixed_by_a_rerun_from_its_failed_step() {
    let base = std::env::temp_dir().join(format!("runner-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data) = (base.join("state"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let input = format!("dir={}", data.display());

    let first = runner(
        &state,
        &[
            "exec",
            "tests/runs/fixable.yaml",
            "-i",
            &input,
            "--output",
            "json",
        ],
    );
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(log(&data), ["compile", "migrate", "smoke", "rollback"]);
    let list = json(&runner(&state, &["runs", "list", "--output", "json"]));
    let failed = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["rolled_back"], true);

    // The rebuilt report says why, first.
    let md = runner(&state, &["runs", "show", &failed, "--output", "markdown"]);
    let md = String::from_utf8_lossy(&md.stdout);
    let why = md.find("## Why it failed").expect("a why section");
    assert!(md[why..].contains("`smoke`"), "{md}");
    // And the run left its three report files.
    let reports: Vec<String> = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for ext in ["md", "xml", "json"] {
        assert!(
            reports
                .iter()
                .any(|r| r.starts_with("fixable-") && r.contains(&failed) && r.ends_with(ext)),
            "{reports:?}"
        );
    }

    // Someone fixes things; the run goes again from `smoke`.
    std::fs::write(data.join("fixed"), "").unwrap();
    std::fs::remove_file(data.join("log")).unwrap();
    let again = runner(
        &state,
        &["rerun", &failed, "--from", "smoke", "--output", "json"],
    );
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        log(&data),
        ["smoke", "announce"],
        "compile and migrate kept their results"
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let restored: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_restored")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(restored, ["compile", "migrate"]);

    let list = json(&runner(&state, &["runs", "list", "--output", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["status"], "succeeded");
    assert_eq!(list[0]["parent"], failed.as_str());

    let stats = json(&runner(&state, &["stats", "--output", "json"]));
    assert_eq!(stats[0]["playbook"], "fixable");
    assert_eq!(stats[0]["runs"], 2);
    assert_eq!(stats[0]["success_rate"], 0.5);
    assert_eq!(stats[0]["rollback_rate"], 0.5);
    // From the failed run's end to the re-run's end: after it, so positive.
    let mttr = stats[0]["mean_time_to_restore_s"].as_f64().unwrap();
    assert!(mttr > 0.0, "{mttr}");
    assert_eq!(stats[0]["unrestored"], 0);

    let text = runner(&state, &["runs", "show", &failed]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("FAIL deploy/smoke"), "{text}");

    let left = |dir: &str| -> Vec<String> {
        std::fs::read_dir(state.join(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        left("locks")
            .iter()
            .filter(|l| l.starts_with("run-"))
            .count(),
        2,
        "{:?}",
        left("locks")
    );
    assert_eq!(left("reports").len(), 6, "{:?}", left("reports"));
    // Nothing is old enough to prune; then everything is.
    let kept = runner(&state, &["runs", "prune", "--older-than", "1d"]);
    assert!(String::from_utf8_lossy(&kept.stdout).contains("pruned 0 finished runs"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pruned = runner(&state, &["runs", "prune", "--older-than", "1ms"]);
    assert!(String::from_utf8_lossy(&pruned.stdout).contains("pruned 2 finished runs"));
    let list = json(&runner(&state, &["runs", "list", "--output", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 0);
    // Nothing of the pruned runs is left in the state directory: no report,
    // no run lock, no intact mark.
    assert_eq!(left("reports"), Vec::<String>::new());
    assert_eq!(left("intact"), Vec::<String>::new());
    assert!(
        !left("locks").iter().any(|l| l.starts_with("run-")),
        "{:?}",
        left("locks")
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn resume_refuses_what_it_cannot_continue() {
    let state = std::env::temp_dir().join(format!("runner-runs-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let unknown = runner(&state, &["resume", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no run `nope` in the journal"));
    let done = runner(
        &state,
        &[
            "exec",
            "examples/hello.yaml",
            "-i",
            "name=x",
            "--output",
            "json",
        ],
    );
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let list = json(&runner(&state, &["runs", "list", "--output", "json"]));
    let id = list[0]["id"].as_str().unwrap();
    let again = runner(&state, &["resume", id]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already ended (succeeded)") && err.contains("runner rerun"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Exit 2 means nothing ran: a `with:` that the plugin's input schema refuses, in
/// the last stage, stops `runner exec` before the first step, with the same located
/// message as `runner validate`, and the journal holds no run.
#[test]
fn a_bad_input_in_the_last_stage_stops_exec_before_anything_runs() {
    let base = std::env::temp_dir().join(format!("runner-runs-late-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let (state, marker, file) = (base.join("state"), base.join("ran"), base.join("late.yaml"));
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: late\nplugins:\n  sh: {{ uses: exec, grants: {{ process: [sh] }} }}\nstages:\n  - id: change_production\n    steps:\n      - {{ id: change, uses: sh, with: {{ program: sh, args: [\"-c\", \"touch {}\"] }} }}\n  - id: verify\n    steps:\n      - {{ id: check, uses: sh, with: {{ program: sh, timeout: soon }} }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let validate = runner(&state, &["validate", path]);
    assert_eq!(validate.status.code(), Some(2));
    let exec = runner(&state, &["exec", path, "--output", "json"]);
    assert_eq!(
        exec.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert!(!marker.exists(), "the first stage ran");
    assert!(
        exec.stdout.is_empty(),
        "events were emitted: {}",
        String::from_utf8_lossy(&exec.stdout)
    );
    let (v, e) = (
        String::from_utf8_lossy(&validate.stderr),
        String::from_utf8_lossy(&exec.stderr),
    );
    assert!(e.contains("late.yaml:11:"), "{e}");
    assert!(e.contains("(input schema of plugin `exec`)"), "{e}");
    assert_eq!(e, v, "exec and validate report the same problem");
    let list = json(&runner(&state, &["runs", "list", "--output", "json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let _ = std::fs::remove_dir_all(&base);
}

/// Small seams found by crash trials: a status that does not exist, a FIFO
/// given as the playbook or the environment file (named as such), and a state
/// directory that is empty or relative are refused with a clear message (exit
/// 2) instead of being accepted, hanging, or putting the journal in the
/// current folder.
#[test]
fn bad_statuses_fifos_and_relative_state_directories_are_refused() {
    let state = std::env::temp_dir().join(format!("runner-seams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();

    let out = runner(&state, &["runs", "list", "--status", "bogus"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'bogus'") && err.contains("timed_out"),
        "{err}"
    );

    let fifo = state.join("playbook.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_str().unwrap();
    for args in [
        vec!["validate", fifo],
        vec!["plan", "examples/hello.yaml", "--env", fifo, "-i", "name=x"],
    ] {
        // Without the check, opening the FIFO waits for a writer for ever.
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .current_dir(root())
            .env("RUNNER_STATE_DIR", &state)
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let since = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if since.elapsed().as_secs() > 30 {
                let _ = child.kill();
                panic!("{args:?} hangs on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("it is not a regular file"), "{args:?}: {err}");
        // Named for what it is.
        let what = if args.contains(&"--env") {
            "environment file"
        } else {
            "playbook"
        };
        assert!(
            err.contains(&format!("cannot read the {what}")),
            "{args:?}: {err}"
        );
    }

    let cwd = state.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let hello = root().join("examples/hello.yaml");
    for value in ["", "relative/state"] {
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .current_dir(&cwd)
            .env("RUNNER_STATE_DIR", value)
            .env_remove("RUNNER_JOURNAL")
            .args([
                "exec",
                hello.to_str().unwrap(),
                "-i",
                "name=x",
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "RUNNER_STATE_DIR={value:?}: {err}"
        );
        assert!(
            err.contains("absolute path"),
            "RUNNER_STATE_DIR={value:?}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(&cwd).unwrap().count(),
            0,
            "RUNNER_STATE_DIR={value:?} left files in the current folder"
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}
