//! `playbooks/rollback.yaml` run end to end by the real binary against the
//! sandbox (real Kubernetes control plane, the demo service, Prometheus, the
//! notification sinks), pointed at it by the sandbox's environment file.
//!
//! The incident: a bad release reached production (a quarter of its answers
//! are 500s). The on-call engineer runs the rollback playbook; it must record
//! the state before, undo to the previous revision, wait for the rollout,
//! prove the service healthy, tell people and leave a report.

mod common;

use runner_sandbox::{BAD_IMAGE, IMAGE, PRODUCTION, SERVICE, Sandbox};
use serde_json::Value;

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

#[test]
fn a_bad_release_is_undone_proven_healthy_announced_and_reported() {
    let guard = common::sandbox();
    let sb = guard.as_ref().unwrap();
    // The bad release: revision 2, every pod on the bad image.
    let deployment = format!("deployment/{SERVICE}");
    kubectl(
        sb,
        &[
            "set",
            "image",
            &deployment,
            &format!("{SERVICE}={BAD_IMAGE}"),
        ],
    );
    kubectl(sb, &["rollout", "status", &deployment, "--timeout=60s"]);
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
    let run = common::Shipped::run(
        "rollback",
        sb.env_file(),
        &state,
        &[
            "reason=1.4.3 answers 500 to a quarter of checkouts",
            "verify_window=10s",
        ],
    );
    let before = run.artifact(&format!("rollback-before-{}.json", run.run_id));
    let report = run.artifact(&format!("rollback-report-{}.md", run.run_id));
    assert_eq!(run.code, 0, "{:#?}\n{}", run.events, run.stderr);
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
        assert_eq!(run.status(step), "succeeded", "{step}: {:#?}", run.events);
    }
    // Undone, not re-imaged; no scale-down fallback was needed.
    assert_eq!(run.status("set_image"), "skipped");
    assert_eq!(run.status("scale_down"), "skipped");
    assert_eq!(run.status("alert_failed"), "not run");

    // What the cluster says: back on the good image, as revision 3.
    assert!(
        sb.serving(PRODUCTION)
            .iter()
            .all(|p| !p.bad && p.image == IMAGE),
        "production serves the previous release: {:?}",
        sb.serving(PRODUCTION)
    );
    let image = kubectl(
        sb,
        &[
            "get",
            &deployment,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, IMAGE);
    let revision = kubectl(
        sb,
        &[
            "get",
            &deployment,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
    );
    assert_eq!(revision, "3");

    // The state before the rollback was saved: the bad release and its history.
    let before: Value = serde_json::from_str(&before.read()).unwrap();
    assert_eq!(
        before["deployment"]["spec"]["template"]["spec"]["containers"][0]["image"],
        BAD_IMAGE
    );
    assert!(
        before["history"].as_array().is_some_and(|h| h.len() == 2),
        "{before}"
    );
    let report = report.read();
    assert!(report.contains("Rollback of shop: succeeded"), "{report}");
    assert!(report.contains("1.4.3 answers 500"), "{report}");

    // People were told it started and that it is done, in that order.
    let titles = sb.notification_titles();
    let started = titles.iter().position(|t| t == "Rollback of shop started");
    let done = titles.iter().position(|t| t == "Rollback of shop complete");
    assert!(
        started.is_some() && done.is_some() && started < done,
        "{titles:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
