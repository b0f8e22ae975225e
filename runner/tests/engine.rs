//! The engine's semantics, end to end: each test runs a playbook from
//! `tests/engine/` with the real binary and asserts the exact sequence of events
//! it reports (`--output json`), and the exit code.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A private state directory per call (approvals, locks, artifacts): two tests
/// running the same playbook at once must not share one.
fn state(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("runner-engine-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn command(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(root())
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .args(args);
    cmd
}

/// Runs `tests/engine/NAME.yaml` to the end: exit code and events.
fn run(name: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let state = state(name);
    let file = format!("tests/engine/{name}.yaml");
    let mut args = vec!["exec", file.as_str(), "--output", "json"];
    args.extend(extra);
    let out = command(&state, &args).output().unwrap();
    let events = parse(&String::from_utf8_lossy(&out.stdout));
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code != 2,
        "{name} is invalid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&state);
    (code, events)
}

fn parse(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The events as short strings: `stage_started deploy`, `step_finished a succeeded`, ...
fn seq(events: &[Value]) -> Vec<String> {
    events.iter().map(short).collect()
}

fn short(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    let name = s("event");
    match name.as_str() {
        "run_started" => name,
        "stage_started" | "stage_skipped" => format!("{name} {}", s("stage")),
        "stage_finished" => format!("{name} {} {}", s("stage"), s("status")),
        "step_started" => format!("{name} {}", s("step")),
        "step_finished" => format!("{name} {} {}", s("step"), s("status")),
        "retry" => format!("{name} {} {}", s("step"), e["attempt"]),
        "measurement" => format!("{name} {} {} {}", s("step"), e["n"], s("verdict")),
        "gate" => format!("{name} {} {}", s("step"), s("outcome")),
        "approval_requested" => format!("{name} {}", s("step")),
        "approval_decided" => format!("{name} {} {}", s("step"), s("outcome")),
        "budget_exceeded" | "timed_out" => {
            format!("{name} {}", e["stage"].as_str().unwrap_or("run"))
        }
        "interrupted" => format!("{name} {}", s("signal")),
        "handlers" => format!(
            "{name} {} {}",
            e["stage"].as_str().unwrap_or("run"),
            s("kind")
        ),
        "run_finished" => format!("{name} {}", s("status")),
        _ => format!("unknown {name}"),
    }
}

fn find<'a>(events: &'a [Value], event: &str, step: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == event && e["step"] == step)
        .unwrap_or_else(|| panic!("no {event} for {step}: {events:#?}"))
}

/// A run in the background whose events can be awaited one by one.
struct Live {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    state: PathBuf,
}

impl Live {
    fn start(name: &str, extra: &[&str]) -> Live {
        let state = state(name);
        let file = format!("tests/engine/{name}.yaml");
        let mut args = vec!["exec", file.as_str(), "--output", "json"];
        args.extend(extra);
        let mut child = command(&state, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
            state,
        }
    }

    /// Waits for the first event (after those seen) that `pred` accepts. The
    /// minute is a guard against a hang, not a timing assertion.
    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the event never came; seen: {:#?}", self.seen));
            let v: Value = serde_json::from_str(&line).unwrap();
            self.seen.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }

    fn finish(mut self) -> (i32, Vec<Value>, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(60)) {
            self.seen.push(serde_json::from_str(&line).unwrap());
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let _ = std::fs::remove_dir_all(&self.state);
        (status.code().unwrap_or(-1), self.seen, err)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: `kill` with the pid of a child we own.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }
}

#[test]
fn steps_without_needs_run_in_order() {
    let (code, ev) = run("sequential", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        seq(&ev),
        [
            "run_started",
            "stage_started s",
            "step_started a",
            "step_finished a succeeded",
            "step_started b",
            "step_finished b succeeded",
            "step_started c",
            "step_finished c succeeded",
            "stage_finished s succeeded",
            "run_finished succeeded",
        ]
    );
}

#[test]
fn independent_steps_run_together_and_needs_waits_for_all() {
    let (code, ev) = run("parallel", &[]);
    assert_eq!(code, 0);
    let s = seq(&ev);
    assert_eq!(s[2..4], ["step_started a", "step_started b"], "{s:#?}");
    let finished: Vec<&String> = s[4..6].iter().collect();
    assert!(
        finished.contains(&&"step_finished a succeeded".to_owned()),
        "{s:#?}"
    );
    assert!(
        finished.contains(&&"step_finished b succeeded".to_owned()),
        "{s:#?}"
    );
    assert_eq!(s[6..8], ["step_started c", "step_finished c succeeded"]);
}

#[test]
fn max_parallel_bounds_independent_steps() {
    let (code, ev) = run("limited", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        seq(&ev)[2..8],
        [
            "step_started a",
            "step_finished a succeeded",
            "step_started b",
            "step_finished b succeeded",
            "step_started c",
            "step_finished c succeeded",
        ]
    );
}

#[test]
fn a_failure_halfway_runs_every_handler_in_order_and_keeps_the_original_error() {
    let (code, ev) = run("handlers", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev),
        [
            "run_started",
            "stage_started deploy",
            "step_started shift_25",
            "step_finished shift_25 succeeded",
            "step_started shift_50",
            "step_finished shift_50 failed",
            "handlers deploy on_failure",
            "step_started notify_broken",
            "step_finished notify_broken failed",
            "step_started rollback",
            "step_finished rollback succeeded",
            "handlers deploy finally",
            "step_started stage_cleanup",
            "step_finished stage_cleanup succeeded",
            "stage_finished deploy failed",
            "handlers run on_failure",
            "step_started page",
            "step_finished page succeeded",
            "handlers run finally",
            "step_started report",
            "step_finished report succeeded",
            "run_finished failed",
        ]
    );
    let last = ev.last().unwrap();
    assert_eq!(last["handler_failures"], 1);
    assert_eq!(
        find(&ev, "step_finished", "shift_50")["error"],
        "failed: pods crash-looping"
    );
}

#[test]
fn outputs_keep_their_types_and_a_failing_gate_rolls_back() {
    let (code, ev) = run("gates", &[]);
    assert_eq!(code, 1);
    let typed = find(&ev, "step_finished", "typed");
    assert_eq!(typed["outputs"]["next"], 1001, "a number stays a number");
    assert_eq!(typed["outputs"]["label"], "n=1000");
    let gate = find(&ev, "gate", "healthy");
    assert_eq!(gate["outcome"], "fail");
    assert_eq!(gate["pass_value"], false);
    assert_eq!(
        seq(&ev)[6..],
        [
            "step_started healthy",
            "gate healthy fail",
            "step_finished healthy failed",
            "handlers canary on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "stage_finished canary failed",
            "run_finished failed",
        ]
    );
}

/// Runs `inconclusive.yaml`, answers its approval with `runner approve ARGS`.
fn inconclusive_answered(answer: &[&str]) -> (i32, Vec<Value>) {
    let mut live = Live::start("inconclusive", &[]);
    let asked = live.wait_for(|e| e["event"] == "approval_requested");
    assert_eq!(asked["step"], "judge");
    assert_eq!(
        asked["prompt"],
        "gate `judge` is inconclusive: continue the run?"
    );
    let run_id = asked["run"].as_str().unwrap().to_owned();
    let mut args = vec!["approve", run_id.as_str(), "judge"];
    args.extend(answer);
    let out = command(&live.state, &args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, ev, _) = live.finish();
    (code, ev)
}

#[test]
fn an_inconclusive_gate_pauses_until_a_human_approves() {
    let (code, ev) = inconclusive_answered(&["--comment", "error rate flat for 10 min"]);
    assert_eq!(code, 0);
    let s = seq(&ev);
    assert_eq!(
        s[4..],
        [
            "step_started judge",
            "gate judge inconclusive",
            "approval_requested judge",
            "approval_decided judge approved",
            "step_finished judge succeeded",
            "step_started promote",
            "step_finished promote succeeded",
            "stage_finished canary succeeded",
            "run_finished succeeded",
        ]
    );
    let decided = find(&ev, "approval_decided", "judge");
    assert_eq!(
        decided["decisions"][0]["comment"],
        "error rate flat for 10 min"
    );
    assert_eq!(decided["decisions"][0]["via"], "command");
}

#[test]
fn a_rejected_approval_fails_the_run_and_rolls_back() {
    let (code, ev) = inconclusive_answered(&["--reject", "--comment", "latency rising"]);
    assert_eq!(code, 1);
    let judge = find(&ev, "step_finished", "judge");
    assert_eq!(judge["error_kind"], "rejected");
    assert!(
        judge["error"].as_str().unwrap().contains("latency rising"),
        "{judge}"
    );
    assert!(seq(&ev).contains(&"step_finished rollback succeeded".to_owned()));
    assert!(!seq(&ev).iter().any(|e| e.contains("promote")));
}

#[test]
fn an_unanswered_approval_with_rollback_fails_even_with_continue_on_error() {
    let (code, ev) = run("approval-timeout", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started sign_off",
            "approval_requested sign_off",
            "approval_decided sign_off timed_out",
            "step_finished sign_off failed",
            "handlers release on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "stage_finished release failed",
            "run_finished failed",
        ]
    );
}

#[test]
fn an_unanswered_approval_with_continue_goes_on() {
    let (code, ev) = run("approval-continue", &[]);
    assert_eq!(code, 0);
    assert!(seq(&ev).contains(&"step_finished ship succeeded".to_owned()));
}

#[test]
fn a_watch_stops_at_the_first_failed_measurement_and_rolls_back() {
    let (code, ev) = run("watch-fail", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started monitor",
            "measurement monitor 1 failure",
            "step_finished monitor failed",
            "handlers canary on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "stage_finished canary failed",
            "run_finished failed",
        ]
    );
    let monitor = find(&ev, "step_finished", "monitor");
    assert_eq!(monitor["error_kind"], "watch");
    assert_eq!(
        monitor["error"],
        "the watch failed: 1 failed measurement (failure_limit: 0)"
    );
}

/// A canary watch whose Prometheus does not answer: the errors do not make up
/// the measurements `count` asks for; the watch fails at the error limit and the
/// rollback runs (before, "3 measurements: 0 ok, 3 errors" passed).
#[test]
fn a_watch_whose_metrics_source_is_down_fails_and_rolls_back() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("prometheus=http://127.0.0.1:{port}");
    let (code, ev) = run("watch-source-down", &["-i", &url]);
    assert_eq!(code, 1);
    let measurements: Vec<String> = seq(&ev)
        .into_iter()
        .filter(|s| s.starts_with("measurement monitor"))
        .collect();
    assert_eq!(
        measurements,
        (1..=5)
            .map(|n| format!("measurement monitor {n} error"))
            .collect::<Vec<_>>()
    );
    let monitor = find(&ev, "step_finished", "monitor");
    assert_eq!(monitor["status"], "failed");
    assert_eq!(monitor["error_kind"], "watch");
    let error = monitor["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "the watch failed: 5 plugin errors in a row (consecutive_error_limit: 4); last error:"
        ),
        "{error}"
    );
    assert_eq!(
        find(&ev, "step_finished", "rollback")["status"],
        "succeeded",
        "the rollback did not run"
    );
}

/// A watch whose measurements all failed or were inconclusive, within limits
/// that tolerate them, still does not pass: nothing showed the canary healthy.
#[test]
fn a_watch_without_a_successful_measurement_does_not_pass() {
    let (code, ev) = run("watch-never-healthy", &[]);
    assert_eq!(code, 1);
    let monitor = find(&ev, "step_finished", "monitor");
    assert_eq!(monitor["error_kind"], "watch");
    assert_eq!(
        monitor["error"],
        "the watch failed: the watch ended without a successful measurement (3 measurements: 0 failed, 3 inconclusive, 0 errors); a watch passes only when at least one measurement succeeds"
    );
    assert_eq!(
        find(&ev, "step_finished", "rollback")["status"],
        "succeeded"
    );
}

#[test]
fn a_healthy_watch_measures_count_times() {
    let (code, ev) = run("watch-pass", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        seq(&ev)[2..7],
        [
            "step_started monitor",
            "measurement monitor 1 success",
            "measurement monitor 2 success",
            "measurement monitor 3 success",
            "step_finished monitor succeeded",
        ]
    );
    let monitor = find(&ev, "step_finished", "monitor");
    assert_eq!(monitor["outputs"]["watch"]["measurements"], 3);
    assert_eq!(monitor["outputs"]["error_rate"], 0.001);
}

#[test]
fn health_checks_failing_twice_in_a_row_roll_back() {
    let dir = state("watch-twice-data");
    std::fs::write(dir.join("script"), "up\ndown\nup\ndown\ndown\nup\nup\nup\n").unwrap();
    let input = format!("dir={}", dir.display());
    let (code, ev) = run("watch-twice", &["-i", &input]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[2..9],
        [
            "step_started health",
            "measurement health 1 success",
            "measurement health 2 failure",
            "measurement health 3 success",
            "measurement health 4 failure",
            "measurement health 5 failure",
            "step_finished health failed",
        ]
    );
    assert_eq!(
        find(&ev, "step_finished", "health")["error"],
        "the watch failed: 2 failed measurements in a row (consecutive_failure_limit: 1)"
    );
    assert!(seq(&ev).contains(&"step_finished rollback succeeded".to_owned()));
}

#[test]
fn retryable_errors_and_timeouts_are_retried_and_denied_is_not() {
    let (code, ev) = run("retry", &[]);
    assert_eq!(code, 0, "every step continues on error");
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started flaky",
            "retry flaky 1",
            "retry flaky 2",
            "step_finished flaky failed",
            "step_started busy",
            "retry busy 1",
            "step_finished busy failed",
            "step_started refused",
            "step_finished refused failed",
            "stage_finished s succeeded",
            "run_finished succeeded",
        ]
    );
    assert_eq!(find(&ev, "step_finished", "flaky")["attempts"], 3);
    let busy = find(&ev, "step_finished", "busy");
    assert_eq!(busy["attempts"], 2);
    assert_eq!(busy["error_kind"], "timeout", "the busy plugin was stopped");
    assert_eq!(find(&ev, "step_finished", "refused")["attempts"], 1);
    let delays: Vec<u64> = ev
        .iter()
        .filter(|e| e["event"] == "retry" && e["step"] == "flaky")
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    // 10 ms then 20 ms, each with equal jitter (half to all of it).
    assert!(
        (5..=10).contains(&delays[0]) && (10..=20).contains(&delays[1]),
        "{delays:?}"
    );
}

#[test]
fn a_stage_timeout_cancels_the_running_step_and_rolls_back() {
    let (code, ev) = run("stage-timeout", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started rollout",
            "timed_out deploy",
            "step_finished rollout cancelled",
            "handlers deploy on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "stage_finished deploy timed_out",
            "run_finished timed_out",
        ]
    );
}

#[test]
fn the_run_timeout_spans_stages() {
    let (code, ev) = run("run-timeout", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[1..],
        [
            "stage_started one",
            "step_started first",
            "step_finished first succeeded",
            "stage_finished one succeeded",
            "stage_started two",
            "step_started second",
            "timed_out run",
            "step_finished second cancelled",
            "stage_finished two timed_out",
            "handlers run on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "run_finished timed_out",
        ]
    );
}

#[test]
fn a_blown_budget_runs_the_escalation_and_the_run_goes_on() {
    let (code, ev) = run("budget", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started rollout",
            "budget_exceeded deploy",
            "handlers deploy on_budget_exceeded",
            "step_started escalate",
            "step_finished escalate succeeded",
            "step_finished rollout succeeded",
            "step_started after",
            "step_finished after succeeded",
            "stage_finished deploy succeeded",
            "run_finished succeeded",
        ]
    );
    // Every step names the handler list it ran in, if any.
    assert_eq!(
        find(&ev, "step_started", "escalate")["handler"],
        "on_budget_exceeded"
    );
    assert_eq!(
        find(&ev, "step_finished", "escalate")["handler"],
        "on_budget_exceeded"
    );
    assert!(find(&ev, "step_started", "after").get("handler").is_none());
    let finished = ev.iter().find(|e| e["event"] == "stage_finished").unwrap();
    assert_eq!(finished["budget_s"], 0.2);
    assert!(finished["duration_s"].as_f64().unwrap() > 0.2, "{finished}");
}

#[test]
fn a_blown_budget_whose_approval_fails_stops_the_run() {
    let (code, ev) = run("budget-stop", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        seq(&ev)[2..],
        [
            "step_started rollout",
            "budget_exceeded run",
            "handlers run on_budget_exceeded",
            "step_started notify",
            "step_finished notify succeeded",
            "step_started go_on",
            "approval_requested go_on",
            "approval_decided go_on timed_out",
            "step_finished go_on failed",
            "step_finished rollout succeeded",
            "stage_finished deploy failed",
            "handlers run on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "run_finished failed",
        ]
    );
}

fn stopped_by(sig: i32, name: &str, code: i32) {
    let mut live = Live::start("canary-signal", &[]);
    live.wait_for(|e| e["event"] == "step_started" && e["step"] == "monitor");
    live.signal(sig);
    let (exit, ev, err) = live.finish();
    assert_eq!(exit, code, "{err}");
    assert_eq!(
        seq(&ev)[4..],
        [
            "step_started monitor",
            &format!("interrupted {name}"),
            "step_finished monitor cancelled",
            "handlers canary on_failure",
            "step_started rollback",
            "step_finished rollback succeeded",
            "stage_finished canary interrupted",
            "handlers run finally",
            "step_started report",
            "step_finished report succeeded",
            "run_finished interrupted",
        ]
    );
}

#[test]
fn sigterm_halfway_through_a_canary_still_rolls_back() {
    stopped_by(libc::SIGTERM, "SIGTERM", 143);
}

#[test]
fn ctrl_c_halfway_through_a_canary_still_rolls_back() {
    stopped_by(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn a_second_run_in_a_busy_group_fails_fast_or_waits() {
    let mut holder = Live::start("group-hold", &[]);
    holder.wait_for(|e| e["event"] == "step_started");
    let state = holder.state.clone();
    let out = command(
        &state,
        &["exec", "tests/engine/group-fail.yaml", "--output", "json"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deploy-api"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "it ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // `wait` waits for the holder, then runs.
    let waiter = command(
        &state,
        &["exec", "tests/engine/group-wait.yaml", "--output", "json"],
    )
    .output()
    .unwrap();
    let (code, _, _) = holder.finish();
    assert_eq!(code, 0);
    assert_eq!(waiter.status.code(), Some(0));
    let err = String::from_utf8_lossy(&waiter.stderr);
    assert!(
        err.contains("waiting: concurrency group `deploy-api`"),
        "{err}"
    );
    assert_eq!(
        parse(&String::from_utf8_lossy(&waiter.stdout))
            .last()
            .unwrap()["status"],
        "succeeded"
    );
}

/// Input values that would be code if a template were rendered twice: an error,
/// another run's report, a step's outputs, a literal that renders to a real name,
/// and unbalanced braces.
const CODE_LOOKING_INPUTS: [&str; 6] = [
    "${{ 1/0 }}",
    "${{ run_report('00000000') }}",
    "${{ steps.whole.outputs }}",
    "${{ \"shop\" }}",
    "}} ${{",
    "${{",
];

#[test]
fn an_input_that_looks_like_an_expression_reaches_every_step_as_text() {
    for value in CODE_LOOKING_INPUTS {
        let (code, events) = run("inputs-are-data", &["--input", &format!("service={value}")]);
        assert_eq!(code, 1, "{value}: {events:#?}");
        assert_eq!(
            find(&events, "approval_requested", "ask")["prompt"],
            format!("Deploy {value}?"),
            "{value}"
        );
        let outputs = |step: &str| find(&events, "step_finished", step)["outputs"].clone();
        assert_eq!(outputs("whole")["service"], value);
        assert_eq!(outputs("mixed")["service"], format!("svc={value}!"));
        assert_eq!(outputs("mixed")["list"][0], value);
        assert_eq!(
            outputs("alert")["reason"],
            format!("rollback of {value} after failed"),
            "the rollback alert must not be suppressed or altered by {value}"
        );
    }
}

#[test]
fn the_concurrency_group_uses_the_same_text_as_the_steps() {
    let lookalike = "service=${{ \"shop\" }}";
    let mut holder = Live::start(
        "inputs-are-data",
        &["--input", lookalike, "--input", "hold_ms=3000"],
    );
    holder.wait_for(|e| e["event"] == "step_started" && e["step"] == "whole");
    let state = holder.state.clone();
    let again = command(
        &state,
        &[
            "exec",
            "tests/engine/inputs-are-data.yaml",
            "--output",
            "json",
            "--input",
            lookalike,
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(3), "{err}");
    assert!(err.contains("deploy-${{ \"shop\" }}"), "{err}");
    // `shop` itself is another group, and the held one's steps never saw `shop`.
    let other = command(
        &state,
        &[
            "exec",
            "tests/engine/inputs-are-data.yaml",
            "--output",
            "json",
            "--input",
            "service=shop",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        other.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let (code, events, _) = holder.finish();
    assert_eq!(code, 1);
    assert_eq!(
        find(&events, "step_finished", "whole")["outputs"]["service"],
        "${{ \"shop\" }}"
    );
}

/// NaN and +Inf in outputs (Prometheus's `0/0` and `1/0`), through gates and
/// watches: the table in docs/playbook.md, one step per row.
#[test]
fn nan_and_infinities_follow_the_documented_table() {
    let (code, ev) = run("nonfinite", &[]);
    assert_eq!(code, 0, "every failure below is continue_on_error");
    let status = |step: &str| find(&ev, "step_finished", step)["status"].clone();
    let error = |step: &str| {
        find(&ev, "step_finished", step)["error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // The marker reaches the outputs as it was written.
    assert_eq!(
        find(&ev, "step_finished", "nan")["outputs"]["value"],
        serde_json::json!({ "$nonfinite": "NaN" })
    );
    // A gate with only `pass` fails on NaN, naming it.
    assert_eq!(status("gate_nan"), "failed");
    assert_eq!(
        error("gate_nan"),
        "gate `gate_nan` failed: `steps.nan.outputs.value <= 0.005` compares NaN, which is neither more nor less than any number (`steps.nan.outputs.value` is NaN)"
    );
    // +Inf is above every number.
    assert_eq!(status("gate_inf"), "succeeded");
    // With both conditions, NaN is inconclusive (`on_inconclusive: fail` here).
    assert_eq!(find(&ev, "gate", "gate_both")["outcome"], "inconclusive");
    assert_eq!(status("gate_both"), "failed");
    // Watches: success only → failed; both, or failure only → inconclusive.
    let measured = |step: &str| find(&ev, "measurement", step).clone();
    assert_eq!(measured("success_only")["verdict"], "failure");
    assert_eq!(
        measured("success_only")["nan"],
        "`result.error_rate` is NaN"
    );
    assert_eq!(
        error("success_only"),
        "the watch failed: 1 failed measurement (failure_limit: 0); the last measurement compared NaN: `result.error_rate` is NaN"
    );
    assert_eq!(measured("both")["verdict"], "inconclusive");
    assert_eq!(status("both"), "failed");
    assert_eq!(measured("failure_only")["verdict"], "inconclusive");
    assert_eq!(status("failure_only"), "failed");
    // A condition that tests for NaN first decides for itself.
    assert_eq!(measured("nan_accepted")["verdict"], "success");
    assert_eq!(status("nan_accepted"), "succeeded");
    // +Inf ms is above 500 ms.
    assert_eq!(measured("infinite_latency")["verdict"], "failure");
    assert_eq!(measured("infinite_latency").get("nan"), None);
    // In text, the words.
    assert_eq!(
        find(&ev, "step_finished", "text")["summary"],
        "rate NaN, p95 +Inf"
    );
}
