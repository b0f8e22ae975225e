//! `playbooks/rollback.yaml` run end to end by the real binary against the
//! sandbox (real Kubernetes control plane, the demo service, Prometheus, the
//! notification sinks), pointed at it by the sandbox's environment file.
//!
//! The incident: a bad release reached production (a quarter of its answers
//! are 500s). The on-call engineer runs the rollback playbook; it must record
//! the state before, undo to the previous revision, wait for the rollout,
//! prove the service healthy, tell people and leave a report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use runner_sandbox::{BAD_IMAGE, IMAGE, PRODUCTION, SERVICE, Sandbox, SandboxOptions};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl` against the sandbox; its standard output.
fn kubectl(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb
        .control_plane()
        .kubectl()
        .args(["--context", "sandbox", "-n", PRODUCTION])
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Files the run left in playbooks/artifacts, removed when dropped.
struct Artifacts(Vec<PathBuf>);

impl Drop for Artifacts {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn a_bad_release_is_undone_proven_healthy_announced_and_reported() {
    let sb = Sandbox::start(SandboxOptions {
        progress: false,
        print_notifications: false,
        ..SandboxOptions::default()
    })
    .expect("start the sandbox");
    // The bad release: revision 2, every pod on the bad image.
    let deployment = format!("deployment/{SERVICE}");
    kubectl(
        &sb,
        &[
            "set",
            "image",
            &deployment,
            &format!("{SERVICE}={BAD_IMAGE}"),
        ],
    );
    kubectl(&sb, &["rollout", "status", &deployment, "--timeout=60s"]);
    // The old pods leave the front once they are gone (a minute is a hang guard).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sb.serving(PRODUCTION).iter().all(|p| p.bad) {
        assert!(
            std::time::Instant::now() < deadline,
            "production never served only the bad release: {:?}",
            sb.serving(PRODUCTION)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let state = common::scratch("e2e-rollback");
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(repo())
        .env("RUNNER_STATE_DIR", &state)
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .args(["exec", "playbooks/rollback.yaml", "--env"])
        .arg(sb.env_file())
        .args([
            "-i",
            "reason=1.4.3 answers 500 to a quarter of checkouts",
            "-i",
            "verify_window=10s",
            "--output",
            "json",
        ])
        .output()
        .expect("run runner");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let run_id = events
        .iter()
        .find(|e| e["event"] == "run_started")
        .and_then(|e| e["run"].as_str())
        .expect("a run id")
        .to_owned();
    let artifacts_dir = repo().join("playbooks/artifacts");
    let _cleanup = Artifacts(vec![
        artifacts_dir.join(format!("rollback-before-{run_id}.json")),
        artifacts_dir.join(format!("rollback-report-{run_id}.md")),
    ]);
    let status = |id: &str| -> String {
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "step_finished" && e["step"] == id)
            .map(|e| e["status"].as_str().unwrap_or("").to_owned())
            .unwrap_or_else(|| "not run".to_owned())
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:#?}\n{}",
        events,
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "before",
        "history",
        "save_before",
        "undo",
        "rollout_status",
        "rolled_out",
        "health",
        "error_rate_normal",
        "announce_done",
        "write_report",
    ] {
        assert_eq!(status(step), "succeeded", "{step}: {events:#?}");
    }
    // Undone, not re-imaged; no scale-down fallback was needed.
    assert_eq!(status("set_image"), "skipped");
    assert_eq!(status("scale_down"), "skipped");
    assert_eq!(status("alert_failed"), "not run");

    // What the cluster says: back on the good image, as revision 3.
    assert!(
        sb.serving(PRODUCTION)
            .iter()
            .all(|p| !p.bad && p.image == IMAGE),
        "production serves the previous release: {:?}",
        sb.serving(PRODUCTION)
    );
    let image = kubectl(
        &sb,
        &[
            "get",
            &deployment,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, IMAGE);
    let revision = kubectl(
        &sb,
        &[
            "get",
            &deployment,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
    );
    assert_eq!(revision, "3");

    // The state before the rollback was saved: the bad release and its history.
    let before: Value = serde_json::from_str(
        &std::fs::read_to_string(&_cleanup.0[0]).expect("the saved state before"),
    )
    .unwrap();
    assert_eq!(
        before["deployment"]["spec"]["template"]["spec"]["containers"][0]["image"],
        BAD_IMAGE
    );
    assert!(
        before["history"].as_array().is_some_and(|h| h.len() == 2),
        "{before}"
    );
    let report = std::fs::read_to_string(&_cleanup.0[1]).expect("the report");
    assert!(report.contains("Rollback of shop: succeeded"), "{report}");
    assert!(report.contains("1.4.3 answers 500"), "{report}");

    // People were told it started and that it is done, in that order.
    let titles: Vec<String> = sb
        .notifications()
        .iter()
        .filter_map(|n| n["title"].as_str().map(str::to_owned))
        .collect();
    let started = titles.iter().position(|t| t == "Rollback of shop started");
    let done = titles.iter().position(|t| t == "Rollback of shop complete");
    assert!(
        started.is_some() && done.is_some() && started < done,
        "{titles:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
