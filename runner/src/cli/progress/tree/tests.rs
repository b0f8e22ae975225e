use super::super::line::*;
use super::super::*;
use super::view::*;
use super::*;
use serde_json::Map;
use unicode_width::UnicodeWidthStr;

fn rec(
    stage: Option<&str>,
    step: &str,
    status: &'static str,
    attempts: u32,
    ms: u64,
    summary: &str,
    error: Option<&str>,
) -> StepRecord {
    StepRecord {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        status,
        attempts,
        duration_ms: ms,
        summary: summary.to_owned(),
        error: error.map(str::to_owned),
        error_kind: error.map(|_| "failed"),
        outputs: Map::new(),
        log: Vec::new(),
        artifacts: Vec::new(),
        handler: None,
        rollback: false,
    }
}

fn started(stage: Option<&str>, step: &str, kind: &'static str) -> Event {
    Event::StepStarted {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        kind,
        handler: None,
    }
}

fn stage_started(stage: &str, budget_s: Option<f64>, timeout_s: Option<f64>) -> Event {
    Event::StageStarted {
        stage: stage.to_owned(),
        timeout_s,
        budget_s,
    }
}

fn handlers(stage: Option<&str>, kind: &'static str) -> Event {
    Event::Handlers {
        stage: stage.map(str::to_owned),
        kind,
    }
}

/// A clock for the tests: `at(t)` is `t` seconds after the start.
struct Clock0(Instant);

impl Clock0 {
    fn at(&self, t: f64) -> Instant {
        self.0 + Duration::from_secs_f64(t)
    }
}

fn live(tree: &Tree, now: Instant) -> Vec<String> {
    tree.live().iter().map(|l| l.text(now, false)).collect()
}

/// A rollback that fails: parallel steps, a retry, a watch, a failed step,
/// a stage budget passed with its handler, on_failure handlers at both
/// levels, a failing handler, and the verdict; every line checked.
/// A watch's line says its count once: the engine's summary starts with
/// it ("5 measurements: …"), a failure's error does not.
#[test]
fn a_watch_says_how_many_measurements_once() {
    let end = |status, summary: &str, error: Option<&str>| End {
        status,
        attempts: 5,
        took: Duration::from_secs(50),
        summary: summary.to_owned(),
        error: error.map(str::to_owned),
        restored: false,
    };
    let ok = end(
        "succeeded",
        "5 measurements: 5 ok, 0 failed, 0 inconclusive, 0 errors",
        None,
    );
    assert_eq!(
        end_words(&ok, Some("watch")),
        "5 measurements: 5 ok, 0 failed, 0 inconclusive, 0 errors"
    );
    let failed = end("failed", "", Some("error rate 7% above the 5% limit"));
    assert_eq!(
        end_words(&failed, Some("watch")),
        "5 measurements: error rate 7% above the 5% limit"
    );
}

#[test]
fn tree_tells_a_failed_rollback_line_by_line() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    let s = Some;

    let above = tree.apply(
        &Event::RunStarted {
            by: None,
            by_source: None,
            playbook: "rollback".into(),
            timeout_s: Some(3600.0),
            budget_s: Some(900.0),
        },
        t.at(0.0),
    );
    assert_eq!(above, ["run rollback  budget 15m · timeout 1h"]);
    assert!(
        tree.apply(&stage_started("precheck", Some(60.0), None), t.at(0.0))
            .is_empty()
    );
    tree.apply(&started(s("precheck"), "check_health", "plugin"), t.at(0.0));
    tree.apply(&started(s("precheck"), "snapshot", "plugin"), t.at(0.0));
    tree.apply(
        &Event::Retry {
            stage: Some("precheck".into()),
            step: "snapshot".into(),
            attempt: 1,
            delay_ms: 2500,
            error: "connection refused\n(os error 111)".into(),
        },
        t.at(0.0),
    );
    // Two steps at once, each with its spinner; the retry counts down.
    assert_eq!(
        live(&tree, t.at(1.0)),
        [
            "⠋ run rollback  1s of 15m budget · timeout 1h",
            "  ⠋ precheck  1s of 1m budget",
            "    ⠋ check_health  1s",
            "    ⠋ snapshot  1s  retry in 2s, after attempt 1 failed: connection refused (os error 111)",
        ]
    );
    // The spinner turns with time alone.
    assert!(live(&tree, t.at(1.1))[2].starts_with("    ⠙ check_health"));
    let finished = Event::StepFinished(rec(
        s("precheck"),
        "check_health",
        "succeeded",
        1,
        1234,
        "healthy: 200 OK",
        None,
    ));
    assert!(tree.apply(&finished, t.at(2.0)).is_empty());
    assert_eq!(
        live(&tree, t.at(3.0))[2..],
        [
            "    ✓ check_health  1.2s  healthy: 200 OK",
            "    ⠋ snapshot  3s  attempt 2, after attempt 1 failed: connection refused (os error 111)",
        ]
    );
    let finished = Event::StepFinished(rec(
        s("precheck"),
        "snapshot",
        "succeeded",
        2,
        3400,
        "snapshot s-123",
        None,
    ));
    tree.apply(&finished, t.at(3.4));
    let above = tree.apply(
        &Event::StageFinished {
            stage: "precheck".into(),
            status: "succeeded",
            duration_s: 3.52,
            budget_s: Some(60.0),
        },
        t.at(3.5),
    );
    assert_eq!(
        above,
        [
            "  ✓ precheck  3.5s of 1m budget",
            "    ✓ check_health  1.2s  healthy: 200 OK",
            "    ✓ snapshot  3.4s  after 2 attempts: snapshot s-123",
        ]
    );
    // A finished stage leaves the live part.
    assert_eq!(live(&tree, t.at(3.5)).len(), 1);

    let above = tree.apply(
        &Event::StageSkipped {
            stage: "announce".into(),
        },
        t.at(3.6),
    );
    assert_eq!(above, ["  ⊘ announce  skipped: its `if` is false"]);

    tree.apply(
        &stage_started("rollback", Some(120.0), Some(600.0)),
        t.at(4.0),
    );
    tree.apply(
        &started(s("rollback"), "rollback_traffic", "plugin"),
        t.at(4.0),
    );
    tree.apply(&started(s("rollback"), "watch_errors", "watch"), t.at(4.0));
    tree.apply(
        &Event::Measurement {
            stage: Some("rollback".into()),
            step: "watch_errors".into(),
            n: 3,
            verdict: Verdict::Success,
            outputs: Map::new(),
            error: None,
            nan: None,
        },
        t.at(10.0),
    );
    let failed = Event::StepFinished(rec(
        s("rollback"),
        "rollback_traffic",
        "failed",
        1,
        16_500,
        "",
        Some("deploy API answered 503"),
    ));
    tree.apply(&failed, t.at(20.5));
    let above = tree.apply(
        &Event::BudgetExceeded {
            stage: Some("rollback".into()),
            budget_s: 120.0,
            elapsed_s: 120.0,
        },
        t.at(124.0),
    );
    assert_eq!(
        above,
        ["budget exceeded: stage rollback has run 2m00s, over its 2m budget"]
    );
    tree.apply(&handlers(s("rollback"), "on_budget_exceeded"), t.at(124.0));
    tree.apply(&started(s("rollback"), "alert_slow", "plugin"), t.at(124.0));
    assert_eq!(
        live(&tree, t.at(125.0)),
        [
            "⠋ run rollback  2m05s of 15m budget · timeout 1h",
            "  ⠋ rollback  2m01s, over its 2m budget · timeout 10m",
            "    ✗ rollback_traffic  16.5s  deploy API answered 503",
            "    ⠋ watch_errors  2m01s  measurement 3: success",
            "    on_budget_exceeded",
            "      ⠋ alert_slow  1s",
        ]
    );
    let finished = Event::StepFinished(rec(
        s("rollback"),
        "alert_slow",
        "succeeded",
        1,
        500,
        "posted to #incidents",
        None,
    ));
    tree.apply(&finished, t.at(124.5));
    let failed = Event::StepFinished(rec(
        s("rollback"),
        "watch_errors",
        "failed",
        12,
        126_000,
        "",
        Some("error rate 7% above the 5% limit"),
    ));
    tree.apply(&failed, t.at(130.0));
    tree.apply(&handlers(s("rollback"), "on_failure"), t.at(130.0));
    tree.apply(
        &started(s("rollback"), "restore_traffic", "plugin"),
        t.at(130.0),
    );
    let finished = Event::StepFinished(rec(
        s("rollback"),
        "restore_traffic",
        "succeeded",
        1,
        2000,
        "traffic back on v41",
        None,
    ));
    tree.apply(&finished, t.at(132.0));
    let above = tree.apply(
        &Event::StageFinished {
            stage: "rollback".into(),
            status: "failed",
            duration_s: 128.2,
            budget_s: Some(120.0),
        },
        t.at(132.2),
    );
    assert_eq!(
        above,
        [
            "  ✗ rollback  2m08s, over its 2m budget  failed",
            "    ✗ rollback_traffic  16.5s  deploy API answered 503",
            "    ✗ watch_errors  2m06s  12 measurements: error rate 7% above the 5% limit",
            "    on_budget_exceeded",
            "      ✓ alert_slow  500ms  posted to #incidents",
            "    on_failure",
            "      ✓ restore_traffic  2.0s  traffic back on v41",
        ]
    );

    tree.apply(&handlers(None, "on_failure"), t.at(132.2));
    tree.apply(&started(None, "page", "plugin"), t.at(132.2));
    assert_eq!(
        live(&tree, t.at(133.2))[1..],
        ["  on_failure", "    ⠋ page  1s"]
    );
    let failed = Event::StepFinished(rec(
        None,
        "page",
        "failed",
        3,
        1300,
        "",
        Some("the secret SLACK_WEBHOOK is not set"),
    ));
    tree.apply(&failed, t.at(133.5));
    tree.apply(&handlers(None, "finally"), t.at(133.5));
    tree.apply(&started(None, "write_report", "plugin"), t.at(133.5));
    let finished = Event::StepFinished(rec(
        None,
        "write_report",
        "succeeded",
        1,
        700,
        "report written",
        None,
    ));
    tree.apply(&finished, t.at(134.2));
    let above = tree.apply(
        &Event::RunFinished {
            status: "failed",
            duration_s: 134.25,
            budget_s: Some(900.0),
            handler_failures: 1,
        },
        t.at(134.3),
    );
    assert_eq!(
        above,
        [
            "  on_failure",
            "    ✗ page  1.3s  after 3 attempts: the secret SLACK_WEBHOOK is not set",
            "  finally",
            "    ✓ write_report  700ms  report written",
            "✗ run rollback failed after 2m14s of 15m budget; 1 handler failed",
        ]
    );
    assert!(tree.live().is_empty());
    assert!(tree.finish(t.at(135.0)).is_empty());
}

#[test]
fn approvals_are_announced_above_and_counted_down_on_the_step() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(
        &Event::RunStarted {
            by: None,
            by_source: None,
            playbook: "hotfix".into(),
            timeout_s: None,
            budget_s: None,
        },
        t.at(0.0),
    );
    tree.apply(&stage_started("fix", None, None), t.at(0.0));
    tree.apply(&started(Some("fix"), "confirm", "approval"), t.at(0.0));
    let above = tree.apply(
        &Event::ApprovalRequested {
            stage: Some("fix".into()),
            step: "confirm".into(),
            prompt: "Deploy the hotfix\nto production?".into(),
            approvers: vec!["tech-lead".into()],
            timeout_s: 600.0,
            answer_with: "runner approve 17-42 confirm --role ROLE [--reject] [--comment TEXT]"
                .into(),
        },
        t.at(0.0),
    );
    assert_eq!(
        above,
        [
            "approval needed for step confirm (stage fix): Deploy the hotfix to production?",
            "  approvers: tech-lead",
            "  answer within 10m with:",
            "    runner approve 17-42 confirm --role ROLE [--reject] [--comment TEXT]",
        ]
    );
    assert!(tree.awaiting_approval());
    assert_eq!(
        live(&tree, t.at(47.5))[2],
        "    ⠴ confirm  47s  waiting for approval, 9m13s left"
    );
    let above = tree.apply(
        &Event::ApprovalDecided {
            stage: Some("fix".into()),
            step: "confirm".into(),
            outcome: "approved",
            decisions: vec![Decision {
                by_source: None,
                approved: true,
                by: "alice".into(),
                role: Some("tech-lead".into()),
                at: "2025-01-31T09:05:00Z".into(),
                comment: None,
                via: "command".into(),
            }],
        },
        t.at(50.0),
    );
    assert_eq!(
        above,
        ["approval for step confirm: approved by alice as tech-lead"]
    );
    assert!(!tree.awaiting_approval());
    assert_eq!(live(&tree, t.at(50.0))[2], "    ⠋ confirm  50s  approved");
}

#[test]
fn a_long_stage_folds_its_older_successes_while_live_and_prints_them_all() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(&stage_started("build", None, None), t.at(0.0));
    for n in 0..9 {
        let step = format!("s{n}");
        tree.apply(&started(Some("build"), &step, "plugin"), t.at(0.0));
        let status = if n == 1 { "skipped" } else { "succeeded" };
        let r = rec(Some("build"), &step, status, 1, 100, "", None);
        tree.apply(&Event::StepFinished(r), t.at(0.0));
    }
    tree.apply(&started(Some("build"), "last", "plugin"), t.at(0.0));
    assert_eq!(
        live(&tree, t.at(2.0)),
        [
            "  ⠋ build  2s",
            "    ⋯ 4 earlier steps: 3 succeeded, 1 skipped",
            "    ✓ s4  100ms",
            "    ✓ s5  100ms",
            "    ✓ s6  100ms",
            "    ✓ s7  100ms",
            "    ✓ s8  100ms",
            "    ⠋ last  2s",
        ]
    );
    let done = rec(Some("build"), "last", "succeeded", 1, 2000, "", None);
    tree.apply(&Event::StepFinished(done), t.at(2.0));
    let above = tree.apply(
        &Event::StageFinished {
            stage: "build".into(),
            status: "succeeded",
            duration_s: 2.0,
            budget_s: None,
        },
        t.at(2.0),
    );
    assert_eq!(above.len(), 11);
    assert_eq!(above[2], "    ⊘ s1  skipped");
}

#[test]
fn over_budget_turns_yellow_only_with_colour() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(true);
    tree.apply(&stage_started("deploy", Some(60.0), None), t.at(0.0));
    let line = &tree.live()[0];
    assert_eq!(line.text(t.at(30.0), true), "  ⠋ deploy  30s of 1m budget");
    assert_eq!(
        line.text(t.at(61.0), true),
        "  ⠋ deploy  \x1b[33m1m01s, over its 1m budget\x1b[0m"
    );
    assert_eq!(
        line.text(t.at(61.0), false),
        "  ⠋ deploy  1m01s, over its 1m budget"
    );
    let above = tree.apply(
        &Event::StageFinished {
            stage: "deploy".into(),
            status: "succeeded",
            duration_s: 42.0,
            budget_s: Some(60.0),
        },
        t.at(42.0),
    );
    assert_eq!(above, ["  \x1b[32m✓\x1b[0m deploy  42.0s of 1m budget"]);
}

#[test]
fn notices_for_timeouts_signals_and_cancelled_steps() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(
        &Event::RunStarted {
            by: None,
            by_source: None,
            playbook: "canary".into(),
            timeout_s: None,
            budget_s: None,
        },
        t.at(0.0),
    );
    tree.apply(&stage_started("watch", None, Some(300.0)), t.at(0.0));
    tree.apply(&started(Some("watch"), "errors", "watch"), t.at(0.0));
    let above = tree.apply(
        &Event::TimedOut {
            stage: Some("watch".into()),
            timeout_s: 300.0,
        },
        t.at(300.0),
    );
    assert_eq!(
        above,
        ["timed out: stage watch reached its 5m timeout; its running steps are cancelled"]
    );
    let cancelled = rec(
        Some("watch"),
        "errors",
        "cancelled",
        0,
        0,
        "",
        Some("the stage timed out"),
    );
    tree.apply(&Event::StepFinished(cancelled), t.at(300.0));
    let above = tree.apply(
        &Event::StageFinished {
            stage: "watch".into(),
            status: "timed_out",
            duration_s: 300.01,
            budget_s: None,
        },
        t.at(300.0),
    );
    assert_eq!(
        above,
        [
            "  ⏱ watch  5m00s  timed out",
            "    ⊘ errors  cancelled: the stage timed out",
        ]
    );
    let above = tree.apply(&Event::Interrupted { signal: "SIGINT" }, t.at(301.0));
    assert_eq!(
        above,
        [
            "interrupted by SIGINT: running steps are cancelled; the on_failure and finally handlers run next"
        ]
    );
    let above = tree.apply(
        &Event::RunFinished {
            status: "interrupted",
            duration_s: 301.5,
            budget_s: None,
            handler_failures: 0,
        },
        t.at(301.5),
    );
    assert_eq!(
        above,
        ["⊘ run canary was interrupted by SIGINT after 5m01s"]
    );
}

#[test]
fn plugin_text_stays_on_one_line_and_is_capped() {
    assert_eq!(
        one_line("\x1b[31mred\x1b[0m\r\nnext\tline  "),
        "\\u{1b}[31mred\\u{1b}[0m next line"
    );
    assert_eq!(one_line("a\0b\u{202e}c\u{2028}d"), "a\\0b\\u{202e}c d");
    let long = capped(&"x".repeat(300), DETAIL_MAX);
    assert_eq!(long.width(), DETAIL_MAX);
    assert!(long.ends_with("x…"));
    assert_eq!(capped("short", 10), "short");
    let line = Line::new(2, Mark::Failed, "a\nb").with_detail(&"é".repeat(500));
    assert_eq!(line.name, "a b");
    assert_eq!(line.detail.width(), DETAIL_MAX);
}

#[test]
fn durations_read_the_same_everywhere() {
    assert_eq!(clock(Duration::ZERO), "0s");
    assert_eq!(clock(Duration::from_millis(59_900)), "59s");
    assert_eq!(clock(Duration::from_secs(65)), "1m05s");
    assert_eq!(clock(Duration::from_secs(7380)), "2h03m00s");
    assert_eq!(took(Duration::from_millis(340)), "340ms");
    assert_eq!(took(Duration::from_millis(2399)), "2.3s");
    assert_eq!(took(Duration::from_secs(65)), "1m05s");
    assert_eq!(countdown(Duration::from_millis(1200)), "2s");
    assert_eq!(countdown(Duration::ZERO), "0s");
    assert_eq!(seconds(f64::NAN), Duration::ZERO);
    assert_eq!(seconds(-1.0), Duration::ZERO);
    assert_eq!(span(Duration::from_secs(90)), "1m30s");
}

/// A stage's `on_budget_exceeded` takes the new steps while no stage step
/// that was running has ended; run-level lists take every step without stage.
#[test]
fn handler_steps_are_placed_under_their_list() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    let finish = |tree: &mut Tree, stage: Option<&str>, step: &str| {
        let r = rec(stage, step, "succeeded", 1, 10, "", None);
        tree.apply(&Event::StepFinished(r), t.at(1.0));
    };
    tree.apply(&stage_started("a", Some(1.0), None), t.at(0.0));
    tree.apply(&started(Some("a"), "rollout", "plugin"), t.at(0.0));
    tree.apply(&handlers(Some("a"), "on_budget_exceeded"), t.at(1.0));
    tree.apply(&started(Some("a"), "tell", "plugin"), t.at(1.0));
    finish(&mut tree, Some("a"), "tell");
    // A skipped handler has no start.
    let skipped = rec(Some("a"), "page", "skipped", 0, 0, "", None);
    tree.apply(&Event::StepFinished(skipped), t.at(1.0));
    tree.apply(&started(Some("a"), "ask", "approval"), t.at(1.0));
    // The stage step ends while the approval waits: what starts next after
    // the approval is the stage's.
    finish(&mut tree, Some("a"), "rollout");
    finish(&mut tree, Some("a"), "ask");
    tree.apply(&started(Some("a"), "verify", "plugin"), t.at(1.0));
    tree.apply(&handlers(None, "on_budget_exceeded"), t.at(1.0));
    tree.apply(&started(None, "page_run", "plugin"), t.at(1.0));
    tree.apply(&started(None, "ask_run", "approval"), t.at(1.0));
    assert_eq!(
        live(&tree, t.at(2.0)),
        [
            "  ⠋ a  2s, over its 1s budget",
            "    ✓ rollout  10ms",
            "    ⠋ verify  1s",
            "    on_budget_exceeded",
            "      ✓ tell  10ms",
            "      ⊘ page  skipped",
            "      ✓ ask  10ms",
            "  on_budget_exceeded",
            "    ⠋ page_run  1s",
            "    ⠋ ask_run  1s",
        ]
    );
}

/// A timeout drops a budget handler that waits for an approval: the
/// display stops waiting too, and says the step has no end.
#[test]
fn a_timeout_drops_the_budget_handlers_that_were_running() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(&stage_started("fix", Some(1.0), Some(5.0)), t.at(0.0));
    tree.apply(&started(Some("fix"), "build", "plugin"), t.at(0.0));
    tree.apply(&handlers(Some("fix"), "on_budget_exceeded"), t.at(1.0));
    tree.apply(&started(Some("fix"), "go_on", "approval"), t.at(1.0));
    tree.apply(
        &Event::ApprovalRequested {
            stage: Some("fix".into()),
            step: "go_on".into(),
            prompt: "Continue?".into(),
            approvers: Vec::new(),
            timeout_s: 600.0,
            answer_with: "runner approve 1-2 go_on".into(),
        },
        t.at(1.0),
    );
    assert!(tree.awaiting_approval());
    tree.apply(
        &Event::TimedOut {
            stage: Some("fix".into()),
            timeout_s: 5.0,
        },
        t.at(5.0),
    );
    assert!(!tree.awaiting_approval());
    let cancelled = rec(
        Some("fix"),
        "build",
        "cancelled",
        0,
        0,
        "",
        Some("the stage timed out"),
    );
    tree.apply(&Event::StepFinished(cancelled), t.at(5.0));
    tree.apply(&handlers(Some("fix"), "on_failure"), t.at(5.0));
    tree.apply(&started(Some("fix"), "undo", "plugin"), t.at(5.0));
    let done = rec(Some("fix"), "undo", "succeeded", 1, 400, "", None);
    tree.apply(&Event::StepFinished(done), t.at(5.4));
    let above = tree.apply(
        &Event::StageFinished {
            stage: "fix".into(),
            status: "timed_out",
            duration_s: 5.4,
            budget_s: Some(1.0),
        },
        t.at(5.4),
    );
    assert_eq!(
        above,
        [
            "  ⏱ fix  5.4s, over its 1s budget  timed out",
            "    ⊘ build  cancelled: the stage timed out",
            "    on_budget_exceeded",
            "      ? go_on  dropped by the timeout or signal; no end was reported",
            "    on_failure",
            "      ✓ undo  400ms",
        ]
    );
}

fn every_kind_of_event() -> Vec<Event> {
    let s = |x: &str| Some(x.to_owned());
    vec![
        Event::RunStarted {
            by: None,
            by_source: None,
            playbook: "p".into(),
            timeout_s: Some(f64::NAN),
            budget_s: Some(-3.0),
        },
        Event::RunResumed {
            by: None,
            by_source: None,
            restored: 2,
            in_flight: vec!["x".into()],
        },
        stage_started("a", Some(1e300), Some(f64::INFINITY)),
        Event::StageSkipped { stage: "b".into() },
        started(s("a").as_deref(), "x", "plugin"),
        Event::StepRestored(rec(s("a").as_deref(), "r", "succeeded", 1, 5, "kept", None)),
        Event::Retry {
            stage: s("a"),
            step: "x".into(),
            attempt: u32::MAX,
            delay_ms: u64::MAX,
            error: "\x1b[2J".into(),
        },
        Event::Measurement {
            stage: s("ghost"),
            step: "w".into(),
            n: 1,
            verdict: Verdict::Error,
            outputs: Map::new(),
            error: Some("down".into()),
            nan: None,
        },
        Event::Gate {
            stage: None,
            step: "g".into(),
            outcome: "inconclusive",
            pass: "true".into(),
            pass_value: serde_json::Value::Bool(true),
            fail: None,
            fail_value: None,
        },
        Event::ApprovalRequested {
            stage: s("a"),
            step: "ok".into(),
            prompt: "go?".into(),
            approvers: Vec::new(),
            timeout_s: 1e18,
            answer_with: "runner approve 1 ok".into(),
        },
        Event::ApprovalDecided {
            stage: s("nowhere"),
            step: "ok".into(),
            outcome: "rejected",
            decisions: Vec::new(),
        },
        Event::StepFinished(rec(s("a").as_deref(), "x", "failed", 0, u64::MAX, "", None)),
        Event::StepFinished(rec(None, "lost", "weird", 0, 0, "", None)),
        Event::BudgetExceeded {
            stage: None,
            budget_s: 1.0,
            elapsed_s: f64::NAN,
        },
        Event::TimedOut {
            stage: s("zzz"),
            timeout_s: 1.0,
        },
        Event::Interrupted { signal: "SIGTERM" },
        handlers(s("a").as_deref(), "on_failure"),
        handlers(None, "finally"),
        started(None, "fin", "plugin"),
        Event::StageFinished {
            stage: "never_started".into(),
            status: "succeeded",
            duration_s: 1.0,
            budget_s: None,
        },
        Event::StageFinished {
            stage: "a".into(),
            status: "failed",
            duration_s: -1.0,
            budget_s: Some(f64::NAN),
        },
        Event::StepFinished(rec(s("a").as_deref(), "late", "succeeded", 1, 1, "", None)),
        Event::RunFinished {
            status: "timed_out",
            duration_s: 2.0,
            budget_s: None,
            handler_failures: 7,
        },
        Event::StepFinished(rec(None, "after_the_end", "succeeded", 1, 1, "", None)),
    ]
}

fn hidden(pause: bool) -> Progress {
    Progress::with_target(ProgressDrawTarget::hidden(), false, true, pause)
}

/// Whatever comes, in whatever order, the display neither panics nor
/// hangs: steps and stages it never saw start, a run that ends with no
/// stage, events after the end, absurd numbers.
#[test]
fn progress_takes_any_sequence_of_events() {
    let mut p = hidden(true);
    p.event(&Event::RunFinished {
        status: "succeeded",
        duration_s: 0.0,
        budget_s: None,
        handler_failures: 0,
    });
    p.finish();
    p.finish();
    p.event(&started(None, "x", "plugin"));
    p.println("after the end");

    let events = every_kind_of_event();
    for pause in [false, true] {
        let mut p = hidden(pause);
        for e in &events {
            p.event(e);
            p.println("a line above");
        }
        p.finish();
    }
    // Every prefix, then finish; and shuffled orders.
    for n in 0..=events.len() {
        let mut p = hidden(n % 2 == 0);
        for e in &events[..n] {
            p.event(e);
        }
        p.finish();
    }
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200 {
        let mut order: Vec<&Event> = events.iter().collect();
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut tree = Tree::new(true);
        let now = Instant::now();
        for e in &order {
            tree.apply(e, now);
            for line in tree.live() {
                line.text(now + Duration::from_secs(5), true);
            }
        }
        tree.finish(now);
    }
    // Dropped without finish: finishes itself.
    let mut p = hidden(true);
    for e in &events[..10] {
        p.event(e);
    }
    drop(p);
}

/// A run that never says it ended still gets a last line that says so.
#[test]
fn finish_without_run_finished_says_no_end_was_reported() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(
        &Event::RunStarted {
            by: None,
            by_source: None,
            playbook: "p".into(),
            timeout_s: None,
            budget_s: None,
        },
        t.at(0.0),
    );
    tree.apply(&stage_started("a", None, None), t.at(0.0));
    tree.apply(&started(Some("a"), "x", "plugin"), t.at(0.0));
    let above = tree.finish(t.at(3.0));
    assert_eq!(
        above,
        [
            "  ? a  no end was reported",
            "    ? x  no end was reported",
            "? run p  3.0s  no end was reported",
        ]
    );
    assert!(tree.live().is_empty());
    assert!(Tree::new(false).finish(t.at(0.0)).is_empty());
}

/// A damaged record: steps of a stage no event announced get a block of
/// their own, and a second `run_finished` prints the run's lists only once.
#[test]
fn a_damaged_record_still_shows_each_step_once() {
    let t = Clock0(Instant::now());
    let mut tree = Tree::new(false);
    tree.apply(&started(Some("ghost"), "x", "plugin"), t.at(0.0));
    tree.apply(&handlers(None, "finally"), t.at(0.0));
    tree.apply(&started(None, "report", "plugin"), t.at(0.0));
    let done = rec(None, "report", "succeeded", 1, 100, "", None);
    tree.apply(&Event::StepFinished(done), t.at(0.1));
    assert_eq!(
        live(&tree, t.at(1.0)),
        [
            "  ⠋ ghost",
            "    ⠋ x  1s",
            "  finally",
            "    ✓ report  100ms"
        ]
    );
    let end = Event::RunFinished {
        status: "succeeded",
        duration_s: 1.0,
        budget_s: None,
        handler_failures: 0,
    };
    assert_eq!(
        tree.apply(&end, t.at(1.0)),
        [
            "  ? ghost  no end was reported",
            "    ? x  no end was reported",
            "  finally",
            "    ✓ report  100ms",
            "✓ run succeeded in 1.0s",
        ]
    );
    assert_eq!(tree.apply(&end, t.at(1.0)), ["✓ run succeeded in 1.0s"]);
}
