//! The reports, checked against event sequences built by hand in the shapes the
//! engine emits (see `runner/tests/engine.rs` for the real sequences).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::*;
use crate::engine::approval::Decision;
use crate::engine::watch::Verdict;
use crate::engine::{Event, StepRecord};

/// The pass condition of the failing gate: `<`, `&&` and `"` all need escaping.
const PASS: &str = "steps.check.outputs.error_rate < inputs.max_error_rate && steps.check.outputs.source != \"none\"";

fn info() -> RunInfo {
    let mut inputs = Map::new();
    inputs.insert("max_error_rate".into(), json!(0.01));
    inputs.insert("service".into(), json!("checkout"));
    RunInfo {
        run_id: "r-20250314-0926-a1b2".into(),
        playbook: "hotfix".into(),
        file: "playbooks/hotfix.yaml".into(),
        started_at: "2025-03-14T09:26:00.000Z".into(),
        inputs,
        journal: None,
    }
}

/// `2025-03-14T09:26:00.000Z` plus `ms`.
fn at(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "2025-03-14T{:02}:{:02}:{:02}.{:03}Z",
        9 + (26 + s / 60) / 60,
        (26 + s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn e(ms: u64, event: Event) -> Stamped {
    Stamped {
        at: at(ms),
        offset_ms: ms,
        event,
    }
}

fn started(ms: u64, stage: Option<&str>, step: &str, kind: &'static str) -> Stamped {
    e(
        ms,
        Event::StepStarted {
            stage: stage.map(str::to_owned),
            step: step.into(),
            kind,
            handler: None,
        },
    )
}

fn record(stage: Option<&str>, step: &str, status: &'static str, duration_ms: u64) -> StepRecord {
    StepRecord {
        stage: stage.map(str::to_owned),
        step: step.into(),
        status,
        attempts: if status == "skipped" { 0 } else { 1 },
        duration_ms,
        summary: String::new(),
        error: None,
        error_kind: None,
        outputs: Map::new(),
        log: Vec::new(),
        artifacts: Vec::new(),
        handler: None,
        rollback: false,
    }
}

fn finished(ms: u64, r: StepRecord) -> Stamped {
    e(ms, Event::StepFinished(r))
}

fn ok(ms: u64, stage: Option<&str>, step: &str, took: u64, summary: &str) -> Stamped {
    let mut r = record(stage, step, "succeeded", took);
    r.summary = summary.into();
    finished(ms, r)
}

fn handlers(ms: u64, stage: Option<&str>, kind: &'static str) -> Stamped {
    e(
        ms,
        Event::Handlers {
            stage: stage.map(str::to_owned),
            kind,
        },
    )
}

/// A hotfix whose deploy stage fails at its error-rate gate: a step allowed to
/// fail before it, the stage's `on_failure` rollback, the run's `on_failure`
/// and `finally`.
fn failed_run() -> Vec<Stamped> {
    let d = Some("deploy");
    let mut warm = record(d, "warm_cache", "failed", 1_200);
    warm.error = Some("cache warmer returned 503".into());
    warm.error_kind = Some("failed");
    let mut check = record(d, "check", "succeeded", 2_345);
    check.summary = "error rate measured".into();
    check.outputs.insert("error_rate".into(), json!(0.034));
    check.outputs.insert("source".into(), json!("prometheus"));
    check.outputs.insert("raw".into(), json!("x".repeat(500)));
    let mut gate = record(d, "error_rate_ok", "failed", 3);
    gate.error = Some(format!(
        "gate `error_rate_ok` failed: `{PASS}` does not hold"
    ));
    gate.error_kind = Some("gate");
    let mut notify = record(None, "notify", "succeeded", 410);
    notify.summary = "posted to #incidents | on-call paged".into();
    vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: Some(600.0),
                budget_s: Some(120.0),
            },
        ),
        e(
            5,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: Some(300.0),
                budget_s: Some(60.0),
            },
        ),
        started(6, d, "warm_cache", "plugin"),
        finished(1_206, warm),
        started(1_207, d, "canary", "plugin"),
        e(
            21_000,
            Event::Retry {
                stage: d.map(str::to_owned),
                step: "canary".into(),
                attempt: 1,
                delay_ms: 1_000,
                error: "connection reset".into(),
            },
        ),
        ok(70_000, d, "canary", 68_793, "canary at 5%"),
        started(70_001, d, "check", "plugin"),
        finished(72_346, check),
        started(72_347, d, "error_rate_ok", "gate"),
        e(
            72_348,
            Event::Gate {
                stage: d.map(str::to_owned),
                step: "error_rate_ok".into(),
                outcome: "fail",
                pass: PASS.into(),
                pass_value: json!(false),
                fail: None,
                fail_value: None,
            },
        ),
        finished(72_350, gate),
        handlers(72_351, d, "on_failure"),
        started(72_352, d, "rollback", "plugin"),
        ok(75_500, d, "rollback", 3_148, "rolled back to v1.2.3"),
        e(
            75_501,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "failed",
                duration_s: 75.5,
                budget_s: Some(60.0),
            },
        ),
        e(
            75_502,
            Event::StageSkipped {
                stage: "promote".into(),
            },
        ),
        handlers(75_503, None, "on_failure"),
        started(75_504, None, "notify", "plugin"),
        finished(75_914, notify),
        handlers(75_915, None, "finally"),
        started(75_916, None, "cleanup", "plugin"),
        ok(76_000, None, "cleanup", 84, "temp files removed"),
        e(
            76_001,
            Event::RunFinished {
                status: "failed",
                duration_s: 76.001,
                budget_s: Some(120.0),
                handler_failures: 0,
            },
        ),
    ]
}

fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}:\n{md}"));
    let rest = &md[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

#[test]
fn markdown_says_first_why_it_failed_naming_the_gate_its_condition_and_value() {
    let md = markdown(&info(), &failed_run());
    assert!(md.starts_with("# ❌ hotfix: failed\n"), "{md}");
    let why = section(&md, "Why it failed");
    // It comes before everything else.
    assert!(md.find("## Why it failed") < md.find("## Summary"), "{md}");
    assert!(
        why.contains("**Gate `error_rate_ok`** in stage `deploy` failed (`gate`) at +01:12.350 (2025-03-14T09:27:12.350Z) after 0.003 s:"),
        "{why}"
    );
    // The condition and its measured value, in a table (so `|`-safe code spans).
    assert!(
        why.contains(&format!("| pass | `{PASS}` | `false` |")),
        "{why}"
    );
    // The values the condition refers to, as they were when the gate was judged.
    assert!(
        why.contains("- `steps.check.outputs.error_rate` = `0.034`"),
        "{why}"
    );
    assert!(why.contains("- `inputs.max_error_rate` = `0.01`"), "{why}");
    assert!(
        why.contains("- `steps.check.outputs.source` = `\"prometheus\"`"),
        "{why}"
    );
    // The step allowed to fail is not the cause, but is mentioned.
    assert!(
        why.contains("Also failed: `warm_cache` (stage `deploy`, allowed to fail) (see [Failures](#failures))."),
        "{why}"
    );
}

#[test]
fn markdown_stage_table_shows_duration_against_budget() {
    let md = markdown(&info(), &failed_run());
    let stages = section(&md, "Stages");
    assert!(
        stages.contains(
            "| `deploy` | failed | 1 min 15.500 s | 1 min 00.000 s | over by 15.500 s (+26%) |"
        ),
        "{stages}"
    );
    assert!(
        stages.contains("| `promote` | skipped | — | — | — |"),
        "{stages}"
    );
    let summary = section(&md, "Summary");
    assert!(
        summary.contains("| Duration | 1 min 16.001 s |"),
        "{summary}"
    );
    assert!(
        summary.contains("| Budget | 2 min 00.000 s: kept, 43.999 s under |"),
        "{summary}"
    );
    assert!(
        summary.contains("| Input `max_error_rate` | `0.01` |"),
        "{summary}"
    );
    assert!(
        summary.contains("| Run | `r-20250314-0926-a1b2` |"),
        "{summary}"
    );
}

#[test]
fn markdown_lists_gates_handlers_failures_outputs_and_every_event() {
    let events = failed_run();
    let md = markdown(&info(), &events);
    let gates = section(&md, "Gates");
    assert!(
        gates.contains("| `error_rate_ok` | `deploy` | +01:12.348 | fail | pass |"),
        "{gates}"
    );
    assert!(
        gates.contains("`steps.check.outputs.error_rate` = `0.034`<br>"),
        "{gates}"
    );

    let handlers = section(&md, "Handlers that ran");
    let stage_list = handlers
        .find("### `on_failure` of stage `deploy`, from +01:12.351")
        .unwrap();
    let run_list = handlers
        .find("### `on_failure` of the run, from +01:15.503")
        .unwrap();
    let finally = handlers
        .find("### `finally` of the run, from +01:15.915")
        .unwrap();
    assert!(stage_list < run_list && run_list < finally, "{handlers}");
    assert!(
        handlers.contains("| `rollback` | succeeded | 3.148 s | rolled back to v1.2.3 |"),
        "{handlers}"
    );
    // A `|` in a summary does not break the table.
    assert!(
        handlers.contains(
            "| `notify` | succeeded | 0.410 s | posted to \\#incidents \\| on-call paged |"
        ),
        "{handlers}"
    );

    let failures = section(&md, "Failures");
    assert!(
        failures.contains("| `warm_cache` | `deploy` | step, allowed to fail | +00:01.206 | failed | `failed` | cache warmer returned 503 |"),
        "{failures}"
    );
    assert!(
        failures.contains("| `error_rate_ok` | `deploy` | step | +01:12.350 | failed | `gate` |"),
        "{failures}"
    );

    let outputs = section(&md, "Outputs");
    assert!(
        outputs.contains("| `check` | `deploy` | `error_rate` | `0.034` |"),
        "{outputs}"
    );
    // A long value is cut at 200 characters, with a note.
    let cut_row = outputs.lines().find(|l| l.contains("`raw`")).unwrap();
    assert!(
        cut_row.contains(&format!("`\"{}` … *(cut: 502 characters", "x".repeat(199))),
        "{cut_row}"
    );

    let timeline = section(&md, "Timeline");
    let rows = timeline.lines().filter(|l| l.starts_with("| +")).count();
    assert_eq!(rows, events.len(), "{timeline}");
    assert!(
        timeline.contains("| +00:21.000 | 2025-03-14T09:26:21.000Z | `retry` | `canary` in stage `deploy`: attempt 1 failed (connection reset); next attempt in 1.000 s |"),
        "{timeline}"
    );
    assert!(
        timeline.contains("`rollback` in stage `deploy` **succeeded** in 3.148 s (handler in `on_failure` of stage `deploy`): rolled back to v1.2.3"),
        "{timeline}"
    );
    assert!(timeline.contains("| +01:16.001 | 2025-03-14T09:27:16.001Z | `run_finished` | run **failed** after 1 min 16.001 s; 0 handler failures |"), "{timeline}");
}

#[test]
fn junit_has_a_testcase_per_step_with_escaped_failures_and_is_well_formed() {
    let xml = junit(&info(), &failed_run());
    let cases = parse_junit(&xml);
    let names: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| (c.class.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("hotfix.deploy", "warm_cache"),
            ("hotfix.deploy", "canary"),
            ("hotfix.deploy", "check"),
            ("hotfix.deploy", "error_rate_ok"),
            ("hotfix.deploy.on_failure", "rollback"),
            ("hotfix.on_failure", "notify"),
            ("hotfix.finally", "cleanup"),
        ]
    );
    let gate = &cases[3];
    assert_eq!(gate.failure_type.as_deref(), Some("gate"));
    // The message reads back exactly as the engine wrote it.
    assert_eq!(
        gate.failure_message.as_deref(),
        Some(format!("gate `error_rate_ok` failed: `{PASS}` does not hold").as_str())
    );
    let text = gate.failure_text.as_deref().unwrap();
    assert!(
        text.contains(&format!("pass: {PASS}\n  measured: false")),
        "{text}"
    );
    assert!(
        text.contains("steps.check.outputs.error_rate = 0.034"),
        "{text}"
    );
    assert_eq!(cases[1].time, "68.793");
    assert_eq!(cases[1].out.as_deref(), Some("canary at 5%"));
    // The raw text escapes `<`, `&` and `"`.
    assert!(xml.contains("error_rate &lt; inputs.max_error_rate &amp;&amp; steps.check.outputs.source != &quot;none&quot;"), "{xml}");
    assert!(
        xml.contains("<testsuites name=\"hotfix\" tests=\"7\" failures=\"2\" errors=\"0\" skipped=\"0\" time=\"76.001\">"),
        "{xml}"
    );
}

#[test]
fn junit_marks_skipped_cancelled_and_unfinished_steps_and_survives_control_characters() {
    let d = Some("canary");
    let mut cancelled = record(d, "monitor", "cancelled", 0);
    cancelled.error = Some("the run was interrupted (SIGTERM)".into());
    cancelled.error_kind = Some("cancelled");
    let mut weird = record(d, "probe", "failed", 10);
    weird.error = Some("tty said \u{1b}[31mred\u{1b}[0m\r\nand\tthen \u{0}".into());
    weird.error_kind = Some("failed");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "canary".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "canary".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        finished(2, record(d, "optional", "skipped", 0)),
        started(3, d, "probe", "plugin"),
        finished(13, weird),
        started(14, d, "monitor", "watch"),
        e(500, Event::Interrupted { signal: "SIGTERM" }),
        finished(501, cancelled),
        handlers(502, d, "on_failure"),
        started(503, d, "undo", "plugin"),
        // The runner died here: `undo` never finished.
    ];
    let xml = junit(&info(), &events);
    let cases = parse_junit(&xml);
    assert_eq!(cases.len(), 4, "{xml}");
    assert!(cases[0].skipped, "{xml}");
    assert_eq!(
        cases[1].failure_message.as_deref(),
        Some("tty said \\u{1b}[31mred\\u{1b}[0m\r\nand\tthen \\u{0}")
    );
    assert_eq!(cases[2].failure_type.as_deref(), Some("cancelled"));
    assert_eq!(cases[3].class, "hotfix.canary.on_failure");
    assert_eq!(cases[3].error_type.as_deref(), Some("unfinished"));
    assert!(
        xml.contains("<property name=\"status\" value=\"incomplete\"/>"),
        "{xml}"
    );
}

#[test]
fn junit_fails_a_run_that_stopped_while_no_step_failed() {
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "a".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        started(2, Some("a"), "one", "plugin"),
        ok(10, Some("a"), "one", 8, ""),
        e(
            11,
            Event::StageFinished {
                stage: "a".into(),
                status: "succeeded",
                duration_s: 0.01,
                budget_s: None,
            },
        ),
        e(12, Event::Interrupted { signal: "SIGINT" }),
        e(
            13,
            Event::RunFinished {
                status: "interrupted",
                duration_s: 0.013,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let cases = parse_junit(&junit(&info(), &events));
    assert_eq!(cases.len(), 2);
    assert_eq!(
        (cases[1].class.as_str(), cases[1].name.as_str()),
        ("hotfix", "run")
    );
    assert_eq!(cases[1].failure_type.as_deref(), Some("interrupted"));
    assert_eq!(
        cases[1].failure_message.as_deref(),
        Some("the runner got SIGINT")
    );
    let md = markdown(&info(), &events);
    let why = section(&md, "Why it stopped");
    assert!(
        why.contains("The runner got `SIGINT` at +00:00.012"),
        "{why}"
    );
    assert!(
        why.contains("No step was running: none was cancelled."),
        "{why}"
    );
}

#[test]
fn json_parses_back_with_the_run_the_status_the_cause_and_every_event() {
    let events = failed_run();
    let text = json(&info(), &events);
    assert!(text.contains("\n  \"run\": {"), "not pretty: {text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["run"]["run_id"], "r-20250314-0926-a1b2");
    assert_eq!(doc["run"]["inputs"]["service"], "checkout");
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["duration_s"], 76.001);
    let listed = doc["events"].as_array().unwrap();
    assert_eq!(listed.len(), events.len());
    assert_eq!(listed[0]["event"], "run_started");
    assert_eq!(listed[0]["at"], "2025-03-14T09:26:00.000Z");
    let gate = &listed[10];
    assert_eq!(gate["event"], "gate");
    assert_eq!(gate["offset_ms"], 72_348);
    assert_eq!(gate["pass_value"], false);
    let step = &listed[8];
    assert_eq!(step["event"], "step_finished");
    assert_eq!(step["outputs"]["error_rate"], 0.034);
    let failure = &doc["failure"];
    assert_eq!(failure["step"], "error_rate_ok");
    assert_eq!(failure["kind"], "gate");
    assert_eq!(failure["conditions"][0]["expression"], PASS);
    assert_eq!(failure["conditions"][0]["value"], false);
    assert_eq!(
        failure["refers_to"]["steps.check.outputs.error_rate"],
        0.034
    );
}

#[test]
fn write_all_to_writes_three_sanitised_files_and_appends_to_the_step_summary() {
    let dir = scratch("write");
    let summary = dir.join("step_summary.md");
    std::fs::write(&summary, "earlier step's summary\n").unwrap();
    let mut info = info();
    info.playbook = "../hot fix".into();
    info.run_id = "r/1:2".into();
    info.started_at = "2025-03-14T10:26:00.5+01:00".into();
    let reports = dir.join("reports");
    let written = write_all_to(&reports, Some(&summary), &info, &failed_run()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "_._hot_fix-r_1_2-20250314T092600Z.md",
            "_._hot_fix-r_1_2-20250314T092600Z.xml",
            "_._hot_fix-r_1_2-20250314T092600Z.json",
        ]
    );
    for p in &written {
        assert_eq!(p.parent(), Some(reports.as_path()));
    }
    let md = std::fs::read_to_string(&written[0]).unwrap();
    assert_eq!(md, markdown(&info, &failed_run()));
    let once = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(once, format!("earlier step's summary\n\n{md}"));
    // A second run in the same step adds its own, and keeps what was there.
    write_all_to(&reports, Some(&summary), &info, &failed_run()).unwrap();
    let twice = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(twice, format!("{once}\n{md}"));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&reports).unwrap().count(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn write_all_to_says_which_file_it_could_not_write() {
    let dir = scratch("unwritable");
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let err = write_all_to(&not_a_dir, None, &info(), &failed_run()).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "cannot create the report directory {}:",
            not_a_dir.display()
        )),
        "{err}"
    );
    let err = write_all_to(&dir, Some(&not_a_dir.join("x")), &info(), &failed_run()).unwrap_err();
    assert!(err.contains("cannot append to the step summary"), "{err}");
    assert!(err.contains("(written: "), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_step_summary_is_cut_at_a_line_to_stay_within_githubs_limit() {
    let dir = scratch("limit");
    let summary = dir.join("summary.md");
    let earlier = "e".repeat(STEP_SUMMARY_LIMIT as usize - 3000) + "\n";
    std::fs::write(&summary, &earlier).unwrap();
    let md = markdown(&info(), &failed_run());
    assert!(md.len() > 3000);
    append_summary(&summary, &md, Some(std::path::Path::new("out/r.md"))).unwrap();
    let all = std::fs::read_to_string(&summary).unwrap();
    assert!(all.len() as u64 <= STEP_SUMMARY_LIMIT, "{}", all.len());
    let added = &all[earlier.len() + 1..];
    assert!(added.starts_with("# ❌ hotfix: failed\n"));
    assert!(
        added.ends_with("the full report is `out/r.md`.*\n"),
        "{added}"
    );
    let kept = &added[..added.find("\n*The report is cut here").unwrap()];
    assert!(md.starts_with(kept) && kept.ends_with('\n'));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_without_run_finished_is_incomplete_and_says_what_was_running() {
    let mut events = failed_run();
    events.truncate(7); // ... canary finished, check started
    events.push(started(70_001, Some("deploy"), "check", "plugin"));
    let md = markdown(&info(), &events);
    assert!(md.starts_with("# ⚠️ hotfix: incomplete\n"), "{md}");
    let why = section(&md, "Why it is incomplete");
    assert!(
        why.contains("Last event: `step_started` at +01:10.001"),
        "{why}"
    );
    assert!(
        why.contains("Started and never finished: `check` (stage `deploy`)."),
        "{why}"
    );
    assert!(md.contains("| Finished | never (incomplete) |"), "{md}");
    assert!(
        md.contains("| `deploy` | unfinished | — | 1 min 00.000 s | — |"),
        "{md}"
    );
    let doc: Value = serde_json::from_str(&json(&info(), &events)).unwrap();
    assert_eq!(doc["status"], "incomplete");
}

#[test]
fn a_timed_out_run_names_the_timeout_and_the_cancelled_steps() {
    let s = Some("rollout");
    let mut cancelled = record(s, "wait_ready", "cancelled", 0);
    cancelled.error = Some("the stage timed out".into());
    cancelled.error_kind = Some("cancelled");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "rollout".into(),
                timeout_s: Some(0.5),
                budget_s: None,
            },
        ),
        started(2, s, "wait_ready", "plugin"),
        e(
            502,
            Event::TimedOut {
                stage: s.map(str::to_owned),
                timeout_s: 0.5,
            },
        ),
        finished(502, cancelled),
        e(
            503,
            Event::StageFinished {
                stage: "rollout".into(),
                status: "timed_out",
                duration_s: 0.502,
                budget_s: None,
            },
        ),
        e(
            504,
            Event::RunFinished {
                status: "timed_out",
                duration_s: 0.504,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let md = markdown(&info(), &events);
    let why = section(&md, "Why it timed out");
    assert!(
        why.contains("Stage `rollout` reached its timeout of 0.500 s at +00:00.502 (2025-03-14T09:26:00.502Z)."),
        "{why}"
    );
    assert!(
        why.contains("Cancelled: `wait_ready` (stage `rollout`)."),
        "{why}"
    );
}

#[test]
fn a_failed_watch_shows_its_last_measurements() {
    let s = Some("canary");
    let measurement = |ms, n, verdict, rate: f64| {
        let mut outputs = Map::new();
        outputs.insert("p95_ms".into(), json!(rate));
        e(
            ms,
            Event::Measurement {
                stage: s.map(str::to_owned),
                step: "latency".into(),
                n,
                verdict,
                outputs,
                error: None,
                nan: None,
            },
        )
    };
    let mut watch = record(s, "latency", "failed", 70_000);
    watch.attempts = 7;
    watch.error = Some("the watch failed: 3 failures in a row".into());
    watch.error_kind = Some("watch");
    let mut events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "canary".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "canary".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        started(2, s, "latency", "watch"),
    ];
    for n in 1..=7u32 {
        let verdict = if n <= 4 {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        events.push(measurement(
            u64::from(n) * 10_000,
            n,
            verdict,
            100.0 * f64::from(n),
        ));
    }
    events.push(finished(70_002, watch));
    events.push(e(
        70_003,
        Event::StageFinished {
            stage: "canary".into(),
            status: "failed",
            duration_s: 70.002,
            budget_s: None,
        },
    ));
    events.push(e(
        70_004,
        Event::RunFinished {
            status: "failed",
            duration_s: 70.004,
            budget_s: None,
            handler_failures: 0,
        },
    ));
    let md = markdown(&info(), &events);
    let why = section(&md, "Why it failed");
    assert!(
        why.contains("**Watch `latency`** in stage `canary` failed (`watch`)"),
        "{why}"
    );
    assert!(why.contains("after 1 min 10.000 s, 7 attempts"), "{why}");
    assert!(why.contains("Its last 5 of 7 measurements:"), "{why}");
    assert!(
        why.contains("| 7 | +01:10.000 | failure | `{\"p95_ms\":700.0}` | — |"),
        "{why}"
    );
    assert!(!why.contains("| 2 | "), "{why}");
    let watches = section(&md, "Watches");
    assert_eq!(
        watches
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| ---"))
            .count(),
        7,
        "{watches}"
    );
}

#[test]
fn approvals_show_prompt_decision_who_when_and_comment() {
    let s = Some("deploy");
    let decision = Decision {
        by_source: None,
        approved: false,
        by: "alice".into(),
        role: Some("tech-lead".into()),
        at: "2025-03-14T09:29:10Z".into(),
        comment: Some("error rate | too high".into()),
        via: "command".into(),
    };
    let mut step = record(s, "go_live", "failed", 190_000);
    step.error = Some("rejected by alice: error rate | too high".into());
    step.error_kind = Some("rejected");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        started(2, s, "go_live", "approval"),
        e(
            3,
            Event::ApprovalRequested {
                stage: s.map(str::to_owned),
                step: "go_live".into(),
                prompt: "Go live with 1.2.4?".into(),
                approvers: vec!["tech-lead".into()],
                timeout_s: 900.0,
                answer_with: "runner approve r go_live --role ROLE".into(),
            },
        ),
        e(
            190_003,
            Event::ApprovalDecided {
                stage: s.map(str::to_owned),
                step: "go_live".into(),
                outcome: "rejected",
                decisions: vec![decision],
            },
        ),
        finished(190_004, step),
        e(
            190_005,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "failed",
                duration_s: 190.004,
                budget_s: None,
            },
        ),
        e(
            190_006,
            Event::RunFinished {
                status: "failed",
                duration_s: 190.006,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let md = markdown(&info(), &events);
    let approvals = section(&md, "Approvals");
    assert!(
        approvals.contains("| `go_live` | `deploy` | +00:00.003 (2025-03-14T09:26:00.003Z) | Go live with 1.2.4? | tech-lead | rejected | 3 min 10.000 s | rejected by alice as tech-lead at 2025-03-14T09:29:10Z via command: \"error rate \\| too high\" |"),
        "{approvals}"
    );

    // A comment is whatever the approver typed: a line break, a heading and an
    // escape sequence stay text in every place the report shows it.
    let mut forged = events.clone();
    for event in &mut forged {
        if let Event::ApprovalDecided { decisions, .. } = &mut event.event {
            decisions[0].comment = Some("fine\n# Forged heading\u{1b}[31m".into());
        }
    }
    let md = markdown(&info(), &forged);
    assert!(!md.contains('\u{1b}'), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("# Forged")), "{md}");
    assert!(
        section(&md, "Why it failed").contains("fine<br>\\# Forged heading\\u{1b}\\[31m"),
        "{md}"
    );
    let why = section(&md, "Why it failed");
    assert!(
        why.contains("**Approval `go_live`** in stage `deploy` failed (`rejected`)"),
        "{why}"
    );
    assert!(
        why.contains("The approval was rejected: rejected by alice as tech-lead"),
        "{why}"
    );
}

/// The engine's own sequence for a stage budget (`tests/engine/budget.yaml`):
/// the escalation runs beside `rollout`, and `after` starts once both are done.
#[test]
fn a_stages_budget_handlers_are_told_from_its_steps() {
    let d = Some("deploy");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "budget".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: Some(0.2),
            },
        ),
        started(2, d, "rollout", "plugin"),
        e(
            202,
            Event::BudgetExceeded {
                stage: d.map(str::to_owned),
                budget_s: 0.2,
                elapsed_s: 0.201,
            },
        ),
        handlers(202, d, "on_budget_exceeded"),
        started(203, d, "escalate", "plugin"),
        ok(250, d, "escalate", 47, ""),
        ok(400, d, "rollout", 398, ""),
        started(401, d, "after", "plugin"),
        ok(450, d, "after", 49, ""),
        e(
            451,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "succeeded",
                duration_s: 0.45,
                budget_s: Some(0.2),
            },
        ),
        e(
            452,
            Event::RunFinished {
                status: "succeeded",
                duration_s: 0.452,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let classes: Vec<(String, String)> = parse_junit(&junit(&info(), &events))
        .into_iter()
        .map(|c| (c.class, c.name))
        .collect();
    assert_eq!(
        classes,
        [
            ("hotfix.deploy".to_owned(), "rollout".to_owned()),
            (
                "hotfix.deploy.on_budget_exceeded".to_owned(),
                "escalate".to_owned()
            ),
            ("hotfix.deploy".to_owned(), "after".to_owned()),
        ]
    );
    let md = markdown(&info(), &events);
    assert!(!md.contains("## Why"), "{md}");
    assert!(md.starts_with("# ✅ hotfix: succeeded\n"), "{md}");
    assert!(
        md.contains("| `deploy` | succeeded | 0.450 s | 0.200 s | over by 0.250 s (+125%) |"),
        "{md}"
    );
}

/// Two budget handlers in a row, then the stage goes on; and the run's budget
/// handlers (no stage) beside a stage step, as in `tests/engine/budget-stop.yaml`.
#[test]
fn budget_handlers_in_a_row_and_the_runs_own_are_told_from_stage_steps() {
    let d = Some("deploy");
    let mut refused = record(None, "go_on", "failed", 300);
    refused.error = Some("nobody answered in time (`on_timeout: fail`)".into());
    refused.error_kind = Some("timeout");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "budget".into(),
                timeout_s: None,
                budget_s: Some(0.1),
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        started(2, d, "rollout", "plugin"),
        e(
            101,
            Event::BudgetExceeded {
                stage: None,
                budget_s: 0.1,
                elapsed_s: 0.1,
            },
        ),
        handlers(101, None, "on_budget_exceeded"),
        started(102, None, "notify", "plugin"),
        ok(110, None, "notify", 8, ""),
        started(110, None, "go_on", "approval"),
        finished(410, refused),
        ok(500, d, "rollout", 498, ""),
        e(
            501,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "failed",
                duration_s: 0.5,
                budget_s: None,
            },
        ),
        handlers(502, None, "on_failure"),
        started(503, None, "rollback", "plugin"),
        ok(600, None, "rollback", 97, ""),
        e(
            601,
            Event::RunFinished {
                status: "failed",
                duration_s: 0.601,
                budget_s: Some(0.1),
                handler_failures: 0,
            },
        ),
    ];
    let classes: Vec<(String, String)> = parse_junit(&junit(&info(), &events))
        .into_iter()
        .map(|c| (c.class, c.name))
        .collect();
    assert_eq!(
        classes,
        [
            ("hotfix.deploy".to_owned(), "rollout".to_owned()),
            ("hotfix.on_budget_exceeded".to_owned(), "notify".to_owned()),
            ("hotfix.on_budget_exceeded".to_owned(), "go_on".to_owned()),
            ("hotfix.on_failure".to_owned(), "rollback".to_owned()),
        ]
    );
    // A failed budget handler fails the stage: it is the cause.
    let md = markdown(&info(), &events);
    let why = section(&md, "Why it failed");
    assert!(
        why.contains("**Approval `go_on`** (handler in `on_budget_exceeded` of the run) failed (`timeout`) at +00:00.410"),
        "{why}"
    );
    assert!(
        md.contains("| Budget | 0.100 s: **exceeded**, over by 0.501 s (+501%) |"),
        "{md}"
    );

    // The same with a stage's own list of two: both are handlers, then the stage goes on.
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "budget".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: Some(0.1),
            },
        ),
        started(2, d, "rollout", "plugin"),
        e(
            101,
            Event::BudgetExceeded {
                stage: d.map(str::to_owned),
                budget_s: 0.1,
                elapsed_s: 0.1,
            },
        ),
        handlers(101, d, "on_budget_exceeded"),
        started(102, d, "notify", "plugin"),
        ok(110, d, "notify", 8, ""),
        finished(110, record(d, "page_more", "skipped", 0)),
        started(110, d, "ask", "approval"),
        ok(300, d, "rollout", 298, ""),
        ok(410, d, "ask", 300, "approved by bob"),
        started(410, d, "verify", "plugin"),
        ok(500, d, "verify", 90, ""),
        e(
            501,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "succeeded",
                duration_s: 0.5,
                budget_s: Some(0.1),
            },
        ),
        e(
            502,
            Event::RunFinished {
                status: "succeeded",
                duration_s: 0.502,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let classes: Vec<String> = parse_junit(&junit(&info(), &events))
        .into_iter()
        .map(|c| format!("{} {}", c.class, c.name))
        .collect();
    assert_eq!(
        classes,
        [
            "hotfix.deploy rollout",
            "hotfix.deploy.on_budget_exceeded notify",
            "hotfix.deploy.on_budget_exceeded page_more",
            "hotfix.deploy.on_budget_exceeded ask",
            "hotfix.deploy verify",
        ]
    );
}

#[test]
fn conditions_name_the_paths_they_read() {
    assert_eq!(
        analysis::references(
            "steps.hello.outputs.greeting.startsWith('hello') && steps.hello.outputs.length == 3"
        ),
        ["steps.hello.outputs.greeting", "steps.hello.outputs.length"]
    );
    assert_eq!(
        analysis::references(
            "double(steps.load_test.outputs.p95_ms) > double(inputs.max_p95) * 1.25 || 'steps.a.b' == stages.build.status"
        ),
        [
            "steps.load_test.outputs.p95_ms",
            "inputs.max_p95",
            "stages.build.status"
        ]
    );
    assert!(analysis::references("run.elapsed > 3 && steps.x").is_empty());
}

#[test]
fn markdown_text_and_code_show_what_they_are_given() {
    assert_eq!(
        markdown::text("a|b\nc *d* [e](f) <g> error_rate _x_"),
        "a\\|b<br>c \\*d\\* \\[e\\](f) \\<g\\> error_rate \\_x\\_"
    );
    assert_eq!(markdown::code("a `b` c"), "``a `b` c``");
    assert_eq!(markdown::code("`x"), "`` `x ``");
    assert_eq!(markdown::cell_code("a || b"), "`a \\|\\| b`");
    assert_eq!(markdown::secs(3725.5), "1 h 02 min 05 s");
    assert_eq!(markdown::secs(0.0004), "0.000 s");
}

#[test]
fn file_names_use_the_start_in_utc() {
    assert_eq!(compact_time("2025-03-14T09:26:00Z"), "20250314T092600Z");
    assert_eq!(compact_time("2025-03-14T09:26:00.123Z"), "20250314T092600Z");
    assert_eq!(
        compact_time("2025-03-01T00:30:00+01:00"),
        "20250228T233000Z"
    );
    assert_eq!(
        compact_time("2024-02-29T23:59:59-00:30"),
        "20240301T002959Z"
    );
    assert!(parse_rfc3339("yesterday").is_none());
    assert!(parse_rfc3339("2025-13-01T00:00:00Z").is_none());
    assert_eq!(sanitise("", "run"), "run");
    assert_eq!(sanitise(".hidden", "run"), "_hidden");
    assert_eq!(sanitise("smörgås/..", "run"), "sm_rg_s_..");
}

/// A run the runner died in, resumed: what was running is cut short, restored
/// steps are not counted twice, and the re-run is a step of its own.
#[test]
fn a_resumed_run_keeps_the_step_the_runner_died_in_apart_from_its_rerun() {
    let d = Some("deploy");
    let events = vec![
        e(
            0,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            1,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        started(2, d, "build", "plugin"),
        ok(100, d, "build", 98, "built"),
        started(101, d, "push", "plugin"),
        // The runner died here; `runner resume` goes on.
        e(
            60_000,
            Event::RunResumed {
                by: None,
                by_source: None,
                restored: 1,
                in_flight: vec!["push".into()],
            },
        ),
        e(
            60_001,
            Event::StageStarted {
                stage: "deploy".into(),
                timeout_s: None,
                budget_s: None,
            },
        ),
        e(
            60_002,
            Event::StepRestored(record(d, "build", "succeeded", 98)),
        ),
        started(60_003, d, "push", "plugin"),
        ok(61_000, d, "push", 997, "pushed"),
        e(
            61_001,
            Event::StageFinished {
                stage: "deploy".into(),
                status: "succeeded",
                duration_s: 1.0,
                budget_s: None,
            },
        ),
        e(
            61_002,
            Event::RunFinished {
                status: "succeeded",
                duration_s: 1.002,
                budget_s: None,
                handler_failures: 0,
            },
        ),
    ];
    let cases = parse_junit(&junit(&info(), &events));
    let summary: Vec<String> = cases
        .iter()
        .map(|c| format!("{} skipped={} error={:?}", c.name, c.skipped, c.error_type))
        .collect();
    assert_eq!(
        summary,
        [
            "build skipped=false error=None",
            "push skipped=true error=None",
            "push skipped=false error=None"
        ]
    );
    let md = markdown(&info(), &events);
    assert!(md.starts_with("# ✅ hotfix: succeeded\n"), "{md}");
    assert!(
        md.contains("| `run_resumed` | run resumed after the runner died: 1 finished step restored from the journal; in flight when it died: `push` |"),
        "{md}"
    );
    assert!(
        md.contains("| `step_restored` | `build` in stage `deploy` **succeeded**, restored from the journal (it does not run again): — |"),
        "{md}"
    );
    let failures = section(&md, "Failures");
    assert!(failures.contains("| `push` | `deploy` | step | +00:00.101 | cut short | — | the runner died while it ran; after `runner resume` it ran again or was failed (below) |"), "{failures}");
}

/// A per-test directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `<testcase>`, read back.
#[derive(Debug, Default)]
struct Case {
    class: String,
    name: String,
    time: String,
    failure_type: Option<String>,
    failure_message: Option<String>,
    failure_text: Option<String>,
    error_type: Option<String>,
    skipped: bool,
    out: Option<String>,
}

/// Parses the JUnit report with a real XML parser (which rejects what is not
/// well-formed: unbalanced tags, bad references) and returns its test cases,
/// with attribute values normalised as the XML spec says (so a line break
/// survives only if it was written as a reference).
fn parse_junit(xml: &str) -> Vec<Case> {
    use quick_xml::XmlVersion;
    use quick_xml::events::{BytesStart, Event as X};
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let attr = |e: &BytesStart<'_>, name: &str| -> Option<String> {
        e.attributes()
            .map(|a| a.expect("a well-formed attribute"))
            .find(|a| a.key.as_ref() == name)
            .map(|a| {
                a.normalized_value(XmlVersion::Implicit1_0)
                    .expect("a value with valid references")
                    .into_owned()
            })
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let text_of = |cases: &mut Vec<Case>, open: &[String], text: &str| {
        if let Some(c) = cases.last_mut() {
            match open.last().map(String::as_str) {
                Some("failure") => c.failure_text.get_or_insert_default().push_str(text),
                Some("system-out") => c.out.get_or_insert_default().push_str(text),
                _ => {}
            }
        }
    };
    loop {
        let event = reader.read_event().expect("well-formed XML");
        match &event {
            X::Start(e) | X::Empty(e) => {
                match e.name().as_ref() {
                    "testcase" => cases.push(Case {
                        class: attr(e, "classname").unwrap(),
                        name: attr(e, "name").unwrap(),
                        time: attr(e, "time").unwrap(),
                        ..Case::default()
                    }),
                    "failure" => {
                        let c = cases.last_mut().expect("failure inside a testcase");
                        c.failure_type = attr(e, "type");
                        c.failure_message = attr(e, "message");
                    }
                    "error" => cases.last_mut().unwrap().error_type = attr(e, "type"),
                    "skipped" => cases.last_mut().unwrap().skipped = true,
                    _ => {}
                }
                if let X::Start(_) = event {
                    open.push(e.name().as_ref().to_owned());
                }
            }
            X::Text(t) => text_of(&mut cases, &open, &t.xml10_content()),
            X::GeneralRef(r) => {
                let decoded = match r.resolve_char_ref().expect("a valid character reference") {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .expect("a predefined entity")
                        .to_owned(),
                };
                text_of(&mut cases, &open, &decoded);
            }
            X::End(_) => {
                open.pop().expect("balanced tags");
            }
            X::Eof => break,
            _ => {}
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
    cases
}
