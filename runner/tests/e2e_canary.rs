//! `playbooks/canary.yaml` run end to end by the real binary against the
//! sandbox (real Kubernetes control plane, the demo service, Prometheus, the
//! notification sinks), pointed at it by the sandbox's environment file, with
//! the rehearsal's short windows.
//!
//! Two releases go through the canary: a good one is promoted to 100 %; a bad
//! one (a quarter of its answers are 500s) trips seed 004's triggers at 10 %
//! and is rolled back automatically, people told. Both share one sandbox,
//! reset between them.

mod common;

use runner_sandbox::{BAD_IMAGE, FIXED_IMAGE, IMAGE, PRODUCTION, Sandbox};

/// Runs the canary of `image` with the runner state in `state`.
fn canary(sb: &Sandbox, state: &std::path::Path, image: &str) -> common::Shipped {
    let image = format!("image={image}");
    common::Shipped::run(
        "canary",
        sb.env_file(),
        state,
        &[&image, "require_approval=false"],
    )
}

#[test]
fn a_good_release_goes_10_50_100_and_is_promoted() {
    let guard = common::sandbox();
    let sb = guard.as_ref().unwrap();
    let state = common::scratch("e2e-canary-good");
    let run = canary(sb, &state, FIXED_IMAGE);
    let report = run.artifact(&format!("deployment-summary-shop-{}.md", run.run_id));
    assert_eq!(run.code, 0, "{:#?}\n{}", run.events, run.stderr);
    for step in [
        "current",
        "canary_image",
        "canary_ready",
        "weight_10",
        "health_10",
        "errors_10",
        "http5xx_10",
        "weight_50",
        "health_50",
        "errors_50",
        "http5xx_50",
        "promote_image",
        "promote_ready",
        "weight_0",
        "health_100",
        "errors_100",
        "http5xx_100",
        "announce_done",
    ] {
        assert_eq!(run.status(step), "succeeded", "{step}: {:#?}", run.events);
    }
    assert_eq!(run.status("rollback_traffic"), "not run");
    // The split the 50 % step asked for, on the sandbox's 4 replicas.
    let w50 = &run.step("weight_50")["outputs"];
    assert_eq!(
        (
            w50["stable_replicas"].as_i64(),
            w50["canary_replicas"].as_i64()
        ),
        (Some(2), Some(2)),
        "{w50}"
    );
    // Production: every pod on the new release, on the stable track.
    let serving = sb.serving(PRODUCTION);
    assert!(
        !serving.is_empty()
            && serving
                .iter()
                .all(|p| p.image == FIXED_IMAGE && p.track == "stable"),
        "{serving:?}"
    );
    let t = sb.notification_titles();
    assert!(t.iter().any(|t| t == "Canary of shop promoted"), "{t:?}");
    assert!(report.read().contains("succeeded"), "{}", report.read());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_bad_release_trips_the_10_percent_watch_is_rolled_back_and_post_mortemed() {
    let guard = common::sandbox();
    let sb = guard.as_ref().unwrap();
    let state = common::scratch("e2e-canary-bad");
    let run = canary(sb, &state, BAD_IMAGE);
    let _report = run.artifact(&format!("deployment-summary-shop-{}.md", run.run_id));
    assert_eq!(run.code, 1, "{:#?}\n{}", run.events, run.stderr);
    assert_eq!(run.status("weight_10"), "succeeded");
    // Seed 004's triggers at 10 %: the 5xx ratio (a quarter of the canary's
    // answers) or the application error rate; the health check may pass (the
    // front answers from the stable pods too).
    let tripped: Vec<&str> = ["http5xx_10", "errors_10", "health_10"]
        .into_iter()
        .filter(|s| run.status(s) == "failed")
        .collect();
    assert!(
        !tripped.is_empty(),
        "a 10 % watch failed: {:#?}",
        run.events
    );
    assert_eq!(run.status("weight_50"), "not run");
    assert_eq!(run.status("promote_image"), "not run");
    // The automatic rollback: traffic back on stable, health proven after it.
    assert_eq!(run.status("rollback_traffic"), "succeeded");
    assert_eq!(run.status("rollback_stable"), "skipped");
    assert_eq!(run.status("rollback_health"), "succeeded");
    let serving = sb.serving(PRODUCTION);
    assert!(
        !serving.is_empty()
            && serving
                .iter()
                .all(|p| !p.bad && p.image == IMAGE && p.track == "stable"),
        "all traffic back on the stable release: {serving:?}"
    );
    let t = sb.notification_titles();
    assert!(
        t.iter().any(|t| t == "Canary of shop failed: rolled back"),
        "{t:?}"
    );

    // The post-mortem of that run (seed 003 Phase 1): the rollback holds, the
    // evidence is saved, the team told, the report embeds the run's timeline.
    // It starts a little after the rollback and looks back no further (the
    // recovery checks would otherwise see the canary still serving).
    std::thread::sleep(std::time::Duration::from_secs(16));
    let pm = common::Shipped::run(
        "postmortem",
        sb.env_file(),
        &state,
        &[
            "incident_id=INCIDENT-E2E-1",
            "incident_title=canary of 1.4.3-bad failed at 10 %",
            &format!("failed_run={}", run.run_id),
            "recovery_window=15s",
        ],
    );
    let pm_report = pm.artifact(&format!("postmortem-INCIDENT-E2E-1-{}.md", pm.run_id));
    let evidence: Vec<common::Artifact> = ["errors", "metrics", "canary_config"]
        .iter()
        .map(|what| {
            pm.artifact(&format!(
                "evidence/evidence_{what}_{}.{}",
                pm.run_id,
                if *what == "errors" { "txt" } else { "json" }
            ))
        })
        .collect();
    assert_eq!(pm.code, 0, "{:#?}\n{}", pm.events, pm.stderr);
    for step in [
        "health",
        "rollback_confirmed",
        "save_logs",
        "save_metrics",
        "save_config",
        "team_notice",
        "write_report",
        "report_ready",
    ] {
        assert_eq!(pm.status(step), "succeeded", "{step}: {:#?}", pm.events);
    }
    // The saved canary config is the rolled-back canary: no replicas left.
    let config = evidence[2].read();
    assert!(config.contains("shop-canary"), "{config}");
    // The report: the incident, and the failed run's timeline from the
    // journal naming the watch that tripped.
    let text = pm_report.read();
    assert!(text.contains("INCIDENT-E2E-1"), "{text}");
    assert!(text.contains(&run.run_id), "{text}");
    assert!(
        text.contains(tripped[0]),
        "the timeline names {}: {text}",
        tripped[0]
    );
    assert!(
        sb.notification_titles()
            .iter()
            .any(|t| t == "INCIDENT-E2E-1: post-mortem draft ready"),
        "{:?}",
        sb.notification_titles()
    );
    let _ = std::fs::remove_dir_all(&state);
}
