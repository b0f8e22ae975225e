//! The shared journal (docs/scale-out.md), against a real PostgreSQL started
//! here on loopback, beside baselines measured in the same run:
//!
//! 1. one event journaled (its own transaction, committed before the next):
//!    SQLite against PostgreSQL (goal: PostgreSQL ≤ 1 ms on loopback);
//! 2. runs per minute of a 20-step playbook through three workers, against
//!    `runner exec` of the same runs one after the other on SQLite;
//! 3. from a worker's death (SIGKILL, with its run's process) to the first
//!    event another worker writes for that run, with the default lease (25 s;
//!    goal ≤ 30 s).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/mod.rs"]
mod servers;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runner::engine::{Event, StepRecord};
use runner::record::{Journal, PgJournal, RunRow, SqliteJournal, stamp};

const EVENTS: i64 = 2_000;
const RUNS: usize = 30;

fn row(id: &str) -> RunRow {
    RunRow {
        id: id.into(),
        playbook: "bench".into(),
        file: "bench.yaml".into(),
        file_sha256: "00".into(),
        input_args: Vec::new(),
        inputs: serde_json::json!({}),
        started_at: stamp(0),
        started_ms: 0,
        finished_ms: None,
        duration_ms: None,
        status: "running".into(),
        rolled_back: false,
        parent: None,
        pid: 1,
        env_file: None,
        guarded: false,
        started_by: None,
    }
}

/// Journals `EVENTS` events of one run, each committed before the next.
fn per_event(j: &mut dyn Journal) -> Duration {
    j.begin(&row("r")).expect("begin");
    let start = Instant::now();
    for seq in 0..EVENTS {
        let event = if seq % 2 == 0 {
            Event::StepStarted {
                stage: Some("deploy".into()),
                step: format!("s{seq}"),
                kind: "plugin",
                handler: None,
            }
        } else {
            let r: StepRecord = serde_json::from_value(serde_json::json!({
                "stage": "deploy", "step": format!("s{}", seq - 1), "status": "succeeded",
                "attempts": 1, "duration_ms": 12, "summary": "done",
                "outputs": { "sha": "4f2a9c1", "replicas": 3 }
            }))
            .expect("a record");
            Event::StepFinished(r)
        };
        j.record("r", seq, seq, seq, &event).expect("record");
    }
    start.elapsed() / EVENTS as u32
}

fn runner(state: &Path, url: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env(
        "RUNNER_CACHE_DIR",
        std::env::temp_dir().join("runner-bench-cache"),
    )
    .env("RUNNER_STATE_DIR", state)
    .env_remove("RUNNER_JOURNAL")
    .env_remove("RUNNER_DATABASE_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(url) = url {
        c.env("RUNNER_DATABASE_URL", url);
    }
    c
}

fn worker(state: &Path, url: &str) -> Child {
    runner(state, Some(url))
        .args(["worker"])
        .process_group(0)
        .spawn()
        .expect("a worker")
}

fn kill_group(child: &mut Child) {
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

fn wait_for(pg: &servers::postgres::Postgres, db: &str, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while pg.try_sql(db, sql).unwrap_or_default() != want {
        assert!(Instant::now() < deadline, "{sql} never gave {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let base = servers::scratch("scale-out-bench");
    let pg = servers::postgres::Postgres::start();

    // 1. One event, committed: PostgreSQL as a production server runs it (its
    // log flushed at each commit), and as the tests run it (no fsync).
    let mut sqlite = SqliteJournal::open(&base.join("journal.sqlite")).expect("sqlite");
    let durable_pg = servers::postgres::Postgres::start_durable();
    let mut durable = PgJournal::open(&durable_pg.create_db("events")).expect("postgres");
    let mut quick = PgJournal::open(&pg.create_db("events")).expect("postgres");
    let _ = per_event(&mut SqliteJournal::open(&base.join("warm.sqlite")).expect("warm"));
    let lite = per_event(&mut sqlite);
    let flushed = per_event(&mut durable);
    let unflushed = per_event(&mut quick);
    drop(durable);
    drop(durable_pg);
    let met = |d: Duration| {
        if d <= Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    };
    println!("one event journaled, its own transaction, mean of {EVENTS}:");
    println!(
        "  SQLite (WAL, synchronous=NORMAL)                  {:>8.1} µs",
        lite.as_secs_f64() * 1e6
    );
    println!(
        "  PostgreSQL 15 on loopback, log flushed at commit  {:>8.1} µs  ({:.1}x SQLite; goal ≤ 1 ms: {})",
        flushed.as_secs_f64() * 1e6,
        common::ratio(flushed, lite),
        met(flushed)
    );
    println!(
        "  PostgreSQL 15 on loopback, no fsync (the tests')  {:>8.1} µs  ({:.1}x SQLite)",
        unflushed.as_secs_f64() * 1e6,
        common::ratio(unflushed, lite)
    );

    // 2. Runs per minute.
    let playbook = base.join("twenty.yaml");
    let mut text = String::from(
        "version: 1\nname: twenty\nplugins:\n  sh: { uses: exec, grants: { process: [\"true\"] } }\nstages:\n  - id: s\n    steps:\n",
    );
    for n in 0..20 {
        text.push_str(&format!(
            "      - {{ id: step{n}, uses: sh, with: {{ program: \"true\" }} }}\n"
        ));
    }
    std::fs::write(&playbook, text).expect("playbook");
    let file = playbook.to_str().expect("a path");
    // Warm the component cache.
    runner(&base.join("warm"), None)
        .args(["exec", file])
        .status()
        .expect("warm");
    let start = Instant::now();
    for _ in 0..RUNS {
        let ok = runner(&base.join("alone"), None)
            .args(["exec", file])
            .status()
            .expect("exec")
            .success();
        assert!(ok, "exec failed");
    }
    let alone = start.elapsed();
    let url = pg.create_db("workers");
    for _ in 0..RUNS {
        let ok = runner(&base.join("submitter"), Some(&url))
            .args(["submit", file])
            .status()
            .expect("submit")
            .success();
        assert!(ok, "submit failed");
    }
    let start = Instant::now();
    let mut workers: Vec<Child> = (0..3)
        .map(|w| worker(&base.join(format!("w{w}")), &url))
        .collect();
    wait_for(
        &pg,
        "workers",
        "SELECT count(*) FROM runner.queue WHERE state = 'done' AND exit_code = 0",
        &RUNS.to_string(),
    );
    let shared = start.elapsed();
    for w in &mut workers {
        kill_group(w);
    }
    let per_min = |d: Duration| RUNS as f64 * 60.0 / d.as_secs_f64();
    println!("{RUNS} runs of a 20-step playbook, 2 cores:");
    println!(
        "  runner exec, one after the other, SQLite   {:>6.1} runs/min ({:.1} s)",
        per_min(alone),
        alone.as_secs_f64()
    );
    println!(
        "  3 workers on the shared journal            {:>6.1} runs/min ({:.1} s; {:.2}x)",
        per_min(shared),
        shared.as_secs_f64(),
        per_min(shared) / per_min(alone)
    );

    // 3. From a worker's death to another worker's first event for its run.
    let url = pg.create_db("takeover");
    let slow = base.join("slow.yaml");
    std::fs::write(
        &slow,
        "version: 1\nname: slow\nplugins:\n  sh: { uses: exec, grants: { process: [sleep] } }\nstages:\n  - id: s\n    steps:\n      - { id: wait, uses: sh, idempotent: true, with: { program: sleep, args: [\"120\"] } }\n",
    )
    .expect("playbook");
    let ok = runner(&base.join("submitter"), Some(&url))
        .args(["submit", slow.to_str().expect("a path")])
        .status()
        .expect("submit")
        .success();
    assert!(ok, "submit failed");
    let mut doomed = worker(&base.join("doomed"), &url);
    wait_for(
        &pg,
        "takeover",
        "SELECT count(*) FROM runner.events WHERE kind = 'step_started'",
        "1",
    );
    let mut rescuer = worker(&base.join("rescuer"), &url);
    // The lease was renewed at most 10 s ago; the worst case is a death right
    // after a renewal: wait for one before the kill.
    let renewed = pg.sql("takeover", "SELECT until FROM runner.leases");
    while pg.sql("takeover", "SELECT until FROM runner.leases") == renewed {
        std::thread::sleep(Duration::from_millis(20));
    }
    let died = Instant::now();
    kill_group(&mut doomed);
    wait_for(
        &pg,
        "takeover",
        "SELECT count(*) FROM runner.events WHERE kind = 'run_resumed'",
        "1",
    );
    let gap = died.elapsed();
    kill_group(&mut rescuer);
    println!(
        "a worker killed right after renewing its lease (default 25 s): another worker's first event for its run {:.1} s later (goal ≤ 30 s: {})",
        gap.as_secs_f64(),
        if gap <= Duration::from_secs(30) {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = std::fs::remove_dir_all(&base);
}
