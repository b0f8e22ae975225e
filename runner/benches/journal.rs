//! `runner stats` over a journal of 1,000 runs (goal: < 200 ms), against the
//! cost of starting the runner and opening the same journal (`runner runs list
//! --limit 1`) measured in the same run; and the cost of journaling one event.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use runner::engine::{Event, StepRecord};
use runner::record::{Journal, RunRow, SqliteJournal, stamp};

const RUNS: usize = 1_000;
const STEPS_PER_RUN: usize = 8;

fn record(step: &str, status: &'static str) -> StepRecord {
    let mut r: StepRecord = serde_json::from_value(serde_json::json!({
        "stage": "deploy", "step": step, "status": "succeeded", "attempts": 1,
        "duration_ms": 1200, "summary": "done", "outputs": { "sha": "4f2a9c1", "replicas": 3 }
    }))
    .expect("a step record");
    r.status = status;
    r
}

/// A journal shaped like a busy team's: four playbooks, a run every 40 minutes
/// or so, a tenth of them failing and rolled back.
fn fill(j: &mut SqliteJournal) -> usize {
    let now = runner::record::now_ms();
    let playbooks = ["hotfix", "rollback", "canary", "postmortem"];
    let mut events = 0;
    for i in 0..RUNS {
        let id = format!("run-{i:05}");
        let started = now - ((RUNS - i) as i64) * 40 * 60_000;
        let failed = i % 10 == 3;
        j.begin(&RunRow {
            id: id.clone(),
            playbook: playbooks[i % 4].into(),
            file: "playbooks/hotfix.yaml".into(),
            file_sha256: "00".into(),
            input_args: vec!["service=api".into()],
            inputs: serde_json::json!({ "service": "api" }),
            started_at: stamp(started),
            started_ms: started,
            finished_ms: None,
            duration_ms: None,
            status: "running".into(),
            rolled_back: false,
            parent: None,
            pid: 1,
            env_file: None,
            guarded: false,
            started_by: None,
        })
        .expect("begin");
        let mut seq = 0;
        let mut push = |j: &mut SqliteJournal, e: Event| {
            j.record(&id, seq, started + seq * 1000, seq * 1000, &e)
                .expect("record");
            seq += 1;
        };
        push(
            j,
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: playbooks[i % 4].into(),
                timeout_s: None,
                budget_s: Some(3600.0),
            },
        );
        for s in 0..STEPS_PER_RUN {
            let step = format!("step_{s}");
            push(
                j,
                Event::StepStarted {
                    stage: Some("deploy".into()),
                    step: step.clone(),
                    kind: "plugin",
                    handler: None,
                },
            );
            let status = if failed && s == STEPS_PER_RUN - 1 {
                "failed"
            } else {
                "succeeded"
            };
            push(j, Event::StepFinished(record(&step, status)));
        }
        if failed {
            push(
                j,
                Event::Handlers {
                    stage: None,
                    kind: "on_failure",
                },
            );
        }
        push(
            j,
            Event::RunFinished {
                status: if failed { "failed" } else { "succeeded" },
                duration_s: 20.0,
                budget_s: Some(3600.0),
                handler_failures: 0,
            },
        );
        events += seq as usize;
    }
    events
}

fn main() {
    let dir = std::env::temp_dir().join(format!("runner-journal-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.sqlite");
    let mut j = SqliteJournal::open(&path).expect("open");
    let start = Instant::now();
    let events = fill(&mut j);
    let fill_time = start.elapsed();
    drop(j);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.join("journal.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "journal: {RUNS} runs, {events} events written one transaction each in {:.1} ms ({:.1} µs per event), {:.1} MiB",
        common::ms(fill_time),
        fill_time.as_secs_f64() * 1e6 / events as f64,
        common::mib(size)
    );

    let exe = Path::new(env!("CARGO_BIN_EXE_runner"));
    let env: [(&str, &Path); 2] = [("RUNNER_JOURNAL", &path), ("RUNNER_STATE_DIR", &dir)];
    // Warm the page cache and the binary.
    common::child(exe, &["stats", "--since", "365d"], &env, 0, 1);
    let (base, base_rss) = common::child(exe, &["runs", "list", "--limit", "1"], &env, 0, 10);
    let (stats, stats_rss) = common::child(exe, &["stats", "--since", "365d"], &env, 0, 10);
    let (list, _) = common::child(exe, &["runs", "list", "--limit", "1000"], &env, 0, 10);
    println!("best of 10, child process, release build:");
    println!(
        "  runs list --limit 1 (baseline: start + open)  {:>7.1} ms  peak RSS {:>5.1} MiB",
        common::ms(base),
        common::mib(base_rss)
    );
    println!(
        "  stats over {RUNS} runs                         {:>7.1} ms  peak RSS {:>5.1} MiB  ({:.1}x the baseline; goal < 200 ms: {})",
        common::ms(stats),
        common::mib(stats_rss),
        common::ratio(stats, base),
        if common::ms(stats) < 200.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  runs list --limit 1000                        {:>7.1} ms  ({:.1}x the baseline)",
        common::ms(list),
        common::ratio(list, base)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
