//! The shared journal on a real PostgreSQL server (tests/common/postgres.rs):
//! the journal's contract as the SQLite journal keeps it, its schema versions,
//! and the commands of two "machines" (two state directories) sharing one
//! history through `RUNNER_DATABASE_URL` and `--database`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::postgres::Postgres;
use runner::engine::{Event, StepRecord};
use runner::record::{
    Filter, Journal, Outcome, PgJournal, Recorder, RunRow, SourceFile, SourceKind,
};

fn row(id: &str, playbook: &str, started_ms: i64) -> RunRow {
    RunRow {
        id: id.into(),
        playbook: playbook.into(),
        file: "p.yaml".into(),
        file_sha256: "00".into(),
        input_args: vec!["service=api".into()],
        inputs: serde_json::json!({ "service": "api", "n": 2 }),
        started_at: runner::record::stamp(started_ms),
        started_ms,
        finished_ms: None,
        duration_ms: None,
        status: "running".into(),
        rolled_back: false,
        parent: None,
        pid: 1,
        env_file: None,
        guarded: false,
        started_by: Some("alice (--as)".into()),
    }
}

fn started(step: &str) -> Event {
    Event::StepStarted {
        stage: Some("deploy".into()),
        step: step.into(),
        kind: "plugin",
        handler: None,
    }
}

fn finished(step: &str, status: &str) -> Event {
    let r: StepRecord = serde_json::from_value(serde_json::json!({
        "stage": "deploy", "step": step, "status": status, "attempts": 2, "duration_ms": 5,
        // Key order is kept as written (not as jsonb would sort it).
        "outputs": { "zeta": 1, "alpha": "a", "sha": "abc" }
    }))
    .unwrap();
    Event::StepFinished(r)
}

#[test]
fn the_journal_keeps_what_sqlite_keeps() {
    let pg = Postgres::start();
    let url = pg.create_db("contract");
    let mut j = PgJournal::open(&url).unwrap();
    assert_eq!(
        j.location(),
        format!("postgres://runner@{}:5432/contract", pg.host),
        "the password is not part of where the journal is"
    );
    assert!(j.shared());

    let sources = [
        SourceFile {
            kind: SourceKind::Playbook,
            path: "/a/p.yaml".into(),
            text: "name: p\n# ünïcode\n".into(),
        },
        SourceFile {
            kind: SourceKind::Environment,
            path: "/a/prod.yaml".into(),
            text: "secrets: {}\n".into(),
        },
    ];
    j.begin_with(&row("r1", "p", 1_000), &sources).unwrap();
    j.begin(&row("r2", "q", 2_000)).unwrap();
    assert_eq!(j.sources("r1").unwrap(), sources);
    assert!(j.sources("r2").unwrap().is_empty());
    // A second run of the same id is refused, not merged.
    assert!(j.begin(&row("r1", "p", 1_000)).is_err());

    assert_eq!(j.next_seq("r1").unwrap(), 0);
    let events = [
        Event::RunStarted {
            playbook: "p".into(),
            timeout_s: Some(60.0),
            budget_s: None,
            by: Some("alice".into()),
            by_source: Some("--as".into()),
        },
        started("migrate"),
        finished("migrate", "succeeded"),
        started("smoke"),
        Event::Retry {
            stage: Some("deploy".into()),
            step: "smoke".into(),
            attempt: 1,
            delay_ms: 10,
            error: "boom".into(),
        },
        started("rollout"),
        Event::Handlers {
            stage: Some("deploy".into()),
            kind: "on_failure",
        },
    ];
    for (seq, e) in events.iter().enumerate() {
        j.record("r1", seq as i64, 1_000 + seq as i64, seq as i64, e)
            .unwrap();
    }
    // The same event number twice is refused: nothing is overwritten.
    assert!(j.record("r1", 3, 5_000, 0, &started("x")).is_err());
    assert!(j.has_event("r1", 6).unwrap());
    assert!(!j.has_event("r1", 7).unwrap());
    assert_eq!(j.next_seq("r1").unwrap(), 7);

    let stored = j.events("r1").unwrap();
    assert_eq!(stored.len(), 7);
    // Reading on from an event, and the first event alone.
    let after: Vec<i64> = j
        .events_after("r1", 4)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(after, [5, 6]);
    let firsts = j
        .first_events(&["r1".into(), "r2".into(), "nope".into()])
        .unwrap();
    assert_eq!(firsts.len(), 1, "r2 has no event, nope is no run");
    assert_eq!(firsts["r1"].seq, 0);
    assert!(matches!(firsts["r1"].event, Event::RunStarted { .. }));
    assert_eq!(stored[2].at, runner::record::stamp(1_002));
    assert_eq!(
        serde_json::to_string(&stored[2].event).unwrap(),
        serde_json::to_string(&events[2]).unwrap(),
        "an event reads back as it was written, byte for byte"
    );

    let steps = j.steps("r1").unwrap();
    assert_eq!(steps.finished.len(), 1);
    assert_eq!(steps.finished["migrate"].attempts, 2);
    let outputs: Vec<&String> = steps.finished["migrate"].outputs.keys().collect();
    assert_eq!(outputs, ["zeta", "alpha", "sha"]);
    let mut in_flight: Vec<(&String, &u32)> = steps.in_flight.iter().collect();
    in_flight.sort();
    assert_eq!(
        in_flight,
        [(&"rollout".to_owned(), &1), (&"smoke".to_owned(), &2)],
        "a retry counts the attempt that starts next"
    );

    let r1 = j.run("r1").unwrap().unwrap();
    assert!(
        r1.rolled_back,
        "on_failure handlers mark the run rolled back"
    );
    assert_eq!(r1.status, "running");
    assert_eq!(r1.inputs, serde_json::json!({ "service": "api", "n": 2 }));
    assert_eq!(r1.input_args, ["service=api"]);
    assert_eq!(r1.started_by.as_deref(), Some("alice (--as)"));
    j.record(
        "r1",
        7,
        9_000,
        8_000,
        &Event::RunFinished {
            status: "failed",
            duration_s: 8.0,
            budget_s: None,
            handler_failures: 0,
        },
    )
    .unwrap();
    let r1 = j.run("r1").unwrap().unwrap();
    assert_eq!(
        (r1.status.as_str(), r1.finished_ms, r1.duration_ms),
        ("failed", Some(9_000), Some(8_000))
    );
    j.reopen("r1").unwrap();
    let r1 = j.run("r1").unwrap().unwrap();
    assert_eq!((r1.status.as_str(), r1.finished_ms), ("running", None));
    assert!(!r1.guarded, "runs in a shared journal have no intact mark");
    assert!(j.run("nope").unwrap().is_none());

    // Newest first, filtered as asked.
    let ids = |rows: Vec<RunRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(j.list(&Filter::default()).unwrap()), ["r2", "r1"]);
    let only_p = Filter {
        playbook: Some("p"),
        ..Filter::default()
    };
    assert_eq!(ids(j.list(&only_p).unwrap()), ["r1"]);
    let since = Filter {
        since_ms: Some(1_500),
        ..Filter::default()
    };
    assert_eq!(ids(j.list(&since).unwrap()), ["r2"]);
    let one = Filter {
        limit: Some(1),
        ..Filter::default()
    };
    assert_eq!(ids(j.list(&one).unwrap()), ["r2"]);

    // Prune takes finished runs only, with everything of theirs.
    j.record(
        "r2",
        0,
        2_500,
        500,
        &Event::RunFinished {
            status: "succeeded",
            duration_s: 0.5,
            budget_s: None,
            handler_failures: 0,
        },
    )
    .unwrap();
    let pruned = j.prune(10_000).unwrap();
    assert_eq!(ids(pruned), ["r2"], "r1 runs again: it stays");
    assert!(j.run("r2").unwrap().is_none());
    assert_eq!(
        pg.sql(
            "contract",
            "SELECT count(*) FROM runner.events WHERE run_id = 'r2'"
        ),
        "0"
    );
    assert_eq!(j.events("r1").unwrap().len(), 8);
}

#[test]
fn damaged_rows_are_refused_not_skipped() {
    let pg = Postgres::start();
    let url = pg.create_db("damaged");
    let mut j = PgJournal::open(&url).unwrap();
    j.begin(&row("r1", "p", 1_000)).unwrap();
    j.record("r1", 0, 1_000, 0, &finished("deploy", "succeeded"))
        .unwrap();
    pg.sql(
        "damaged",
        "UPDATE runner.steps SET record = '{\"step\": 1' WHERE run_id = 'r1'",
    );
    let e = j.steps("r1").unwrap_err();
    assert!(
        e.contains("the record of step `deploy` of run r1 (succeeded) cannot be read"),
        "{e}"
    );
    pg.sql(
        "damaged",
        "UPDATE runner.events SET body = 'not json' WHERE run_id = 'r1'",
    );
    let e = j.events("r1").unwrap_err();
    assert!(e.contains("event 0 of run r1 cannot be read"), "{e}");
}

#[test]
fn runners_opening_a_new_database_at_once_create_its_schema_once() {
    let pg = Postgres::start();
    let url = pg.create_db("fresh");
    let opened: Vec<Result<i64, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| PgJournal::open(&url).and_then(|j| j.schema_version())))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for o in &opened {
        assert_eq!(
            o.as_ref().unwrap(),
            &runner::record::postgres::PG_SCHEMA_VERSION
        );
    }
    assert_eq!(
        pg.sql("fresh", "SELECT count(*) FROM runner.schema_version"),
        runner::record::postgres::PG_SCHEMA_VERSION.to_string()
    );
    // It lives in its own schema: the database's `public` is left alone.
    assert_eq!(
        pg.sql(
            "fresh",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}

#[test]
fn a_database_from_a_newer_runner_is_refused() {
    let pg = Postgres::start();
    let url = pg.create_db("newer");
    drop(PgJournal::open(&url).unwrap());
    pg.sql(
        "newer",
        "INSERT INTO runner.schema_version (version) VALUES (99)",
    );
    let e = PgJournal::open(&url).err().unwrap();
    assert!(
        e.contains("has schema version 99, written by a newer runner")
            && e.contains("upgrade the runner"),
        "{e}"
    );
    assert!(!e.contains("secret-pw"), "{e}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The runner on a "machine": its own state directory, the test compile cache,
/// nothing from this process's journal settings; the database `url` if given.
fn command(state: &Path, url: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.current_dir(root())
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .env_remove("RUNNER_JOURNAL")
        .env_remove("RUNNER_DATABASE_URL")
        .env_remove("GITHUB_STEP_SUMMARY");
    if let Some(url) = url {
        c.env("RUNNER_DATABASE_URL", url);
    }
    c
}

/// [`command`] with a lease of `lease` (as `RUNNER_LEASE` writes it), in a
/// process group of its own so that a test can kill it with its children.
fn leased(state: &Path, url: &str, lease: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = command(state, Some(url));
    c.env("RUNNER_LEASE", lease).process_group(0);
    c
}

/// Runs the runner to its end.
fn runner(state: &Path, url: Option<&str>, args: &[&str]) -> Output {
    command(state, url).args(args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A run started on machine A is listed, shown, counted and re-run on
/// machine B, which has neither A's state directory nor the playbook file.
#[test]
fn two_machines_share_one_history_through_the_database() {
    let pg = Postgres::start();
    let url = pg.create_db("shared");
    let base = common::scratch("pg-machines");
    let (a, b, data) = (base.join("a"), base.join("b"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    // The playbook is somewhere only machine A has.
    let playbook = base.join("only-on-a").join("fixable.yaml");
    std::fs::create_dir_all(playbook.parent().unwrap()).unwrap();
    std::fs::copy(root().join("tests/runs/fixable.yaml"), &playbook).unwrap();
    let input = format!("dir={}", data.display());

    let first = runner(
        &a,
        Some(&url),
        &[
            "exec",
            playbook.to_str().unwrap(),
            "-i",
            &input,
            "--output",
            "json",
        ],
    );
    assert_eq!(
        first.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(log(&data), ["compile", "migrate", "smoke", "rollback"]);
    assert!(
        !a.join("journal.sqlite").exists(),
        "nothing went to a local journal"
    );

    // Machine B: `--database` on the command line this time.
    let list = json(&runner(
        &b,
        None,
        &["runs", "list", "--database", &url, "--output", "json"],
    ));
    let failed = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["rolled_back"], true);
    let md = runner(
        &b,
        Some(&url),
        &["runs", "show", &failed, "--output", "markdown"],
    );
    let md = String::from_utf8_lossy(&md.stdout);
    let why = md.find("## Why it failed").expect("a why section");
    assert!(md[why..].contains("`smoke`"), "{md}");
    assert!(
        !md.contains("journal stopped taking"),
        "a run from another machine is not taken for one whose journal failed: {md}"
    );

    // The file is gone; B re-runs from the failed step with the text the
    // journal kept.
    std::fs::remove_dir_all(playbook.parent().unwrap()).unwrap();
    std::fs::write(data.join("fixed"), "").unwrap();
    std::fs::remove_file(data.join("log")).unwrap();
    let again = runner(
        &b,
        Some(&url),
        &["rerun", &failed, "--from", "smoke", "--output", "json"],
    );
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(log(&data), ["smoke", "announce"]);

    // A sees B's run, and the statistics count both.
    let list = json(&runner(
        &a,
        Some(&url),
        &["runs", "list", "--output", "json"],
    ));
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["status"], "succeeded");
    assert_eq!(list[0]["parent"], failed.as_str());
    let stats = json(&runner(&a, Some(&url), &["stats", "--output", "json"]));
    assert_eq!(stats[0]["playbook"], "fixable");
    assert_eq!(stats[0]["runs"], 2);
    assert_eq!(stats[0]["success_rate"], 0.5);

    // `--journal FILE` on the command line means that file, not the database.
    let local = base.join("local.sqlite");
    let list = json(&runner(
        &b,
        Some(&url),
        &[
            "runs",
            "list",
            "--journal",
            local.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let pg = Postgres::start();
    let base = common::scratch("pg-unreachable");
    // A wrong password, then a port nothing listens on.
    let wrong = format!(
        "postgres://runner:not-the-pw@{}:{}/postgres",
        pg.host, pg.port
    );
    let nobody = format!("postgres://runner:secret-pw@{}:1/postgres", pg.host);
    for url in [&wrong, &nobody] {
        let out = runner(
            &base,
            Some(url),
            &["exec", "examples/hello.yaml", "-i", "name=x"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("cannot connect to the journal database postgres://runner@")
                && err.contains("RUNNER_DATABASE_URL"),
            "{err}"
        );
        assert!(
            !err.contains("secret-pw") && !err.contains("not-the-pw"),
            "{err}"
        );
        let list = runner(&base, Some(url), &["runs", "list"]);
        assert_eq!(list.status.code(), Some(2));
        assert!(!String::from_utf8_lossy(&list.stderr).contains("-pw"));
    }
    // A URL that is not one says how to write it, without repeating it.
    let out = runner(
        &base,
        Some("postgres://runner:pw-in-a-bad-url@[::1"),
        &["runs", "list"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{err}"
    );
    assert!(!err.contains("pw-in-a-bad-url"), "{err}");
    // `--on-journal-error continue` needs a local journal.
    let url = pg.create_db("cont");
    let out = runner(
        &base,
        Some(&url),
        &[
            "exec",
            "examples/hello.yaml",
            "-i",
            "name=x",
            "--on-journal-error",
            "continue",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs a journal on this machine"), "{err}");
}

/// A playbook of one concurrency group: `quick` leaves a line, `slow` leaves
/// one when it starts and one when it ends (it is idempotent: a runner that
/// takes the run over runs it again).
fn slow_playbook(dir: &Path, on_conflict: &str) -> PathBuf {
    let file = dir.join(format!("slow-{on_conflict}.yaml"));
    std::fs::write(
        &file,
        format!(
            r#"version: 1
name: slow
inputs:
  dir: {{ type: string, required: true }}
  secs: {{ type: string, default: "4" }}
  tag: {{ type: string, default: "run" }}
concurrency: {{ group: deploy-api, on_conflict: {on_conflict} }}
plugins:
  sh: {{ uses: exec, grants: {{ process: [sh] }} }}
stages:
  - id: deploy
    steps:
      - {{ id: quick, uses: sh, with: {{ program: sh, args: ["-c", "echo quick-${{{{ inputs.tag }}}} >> ${{{{ inputs.dir }}}}/log"] }} }}
      - id: slow
        uses: sh
        idempotent: true
        with: {{ program: sh, args: ["-c", "echo slow-start-${{{{ inputs.tag }}}} >> ${{{{ inputs.dir }}}}/log; sleep ${{{{ inputs.secs }}}}; echo slow-end-${{{{ inputs.tag }}}} >> ${{{{ inputs.dir }}}}/log"] }}
"#
        ),
    )
    .unwrap();
    file
}

/// Starts the runner in the background with a 2 s lease, its output kept.
fn spawn(state: &Path, url: &str, args: &[&str]) -> std::process::Child {
    leased(state, url, "2s")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `dir/log` has `line`.
fn wait_for_line(dir: &Path, line: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !log(dir).iter().any(|l| l == line) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{line}` in {:?}",
            log(dir)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The runner with a 2 s lease.
fn runner_leased(state: &Path, url: &str, args: &[&str]) -> Output {
    spawn(state, url, args).wait_with_output().unwrap()
}

fn events_of(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The run's events as the journal has them.
fn journal_events(pg: &Postgres, db: &str, run: &str) -> Vec<serde_json::Value> {
    pg.sql(
        db,
        &format!("SELECT body FROM runner.events WHERE run_id = '{run}' ORDER BY seq"),
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// The newest run in database `db`.
fn newest_run(pg: &Postgres, db: &str) -> String {
    pg.sql(
        db,
        "SELECT id FROM runner.runs ORDER BY started_ms DESC LIMIT 1",
    )
}

/// A runner killed with SIGKILL mid-run: its run keeps its concurrency group
/// (another run of the group is refused), cannot be resumed while its lease
/// may still be renewed, and is then taken over on another machine: the
/// finished step is not run again, the one in flight is (it is idempotent),
/// and the group is free once the run ends.
#[test]
fn a_dead_runners_run_keeps_its_group_and_is_taken_over_elsewhere() {
    let pg = Postgres::start();
    let url = pg.create_db("takeover");
    let base = common::scratch("pg-takeover");
    let (a, b, c, data) = (
        base.join("a"),
        base.join("b"),
        base.join("c"),
        base.join("data"),
    );
    std::fs::create_dir_all(&data).unwrap();
    let fail = slow_playbook(&base, "fail");
    let input = format!("dir={}", data.display());

    let mut first = spawn(
        &a,
        &url,
        &[
            "exec",
            fail.to_str().unwrap(),
            "-i",
            &input,
            "-i",
            "secs=30",
            "-i",
            "tag=a",
        ],
    );
    wait_for_line(&data, "slow-start-a");
    let run = newest_run(&pg, "takeover");

    // The group is taken, from another machine too.
    let busy = runner_leased(
        &c,
        &url,
        &["exec", fail.to_str().unwrap(), "-i", &input, "-i", "tag=c"],
    );
    let err = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("held by run {run}")), "{err}");

    // The run goes on on A: B may not take it.
    let early = runner_leased(&b, &url, &["resume", &run]);
    let err = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(2), "{err}");
    assert!(err.contains("still running"), "{err}");

    first.kill().unwrap();
    let _ = first.wait();
    // Dead, but its run still holds the group.
    let still = runner_leased(
        &c,
        &url,
        &["exec", fail.to_str().unwrap(), "-i", &input, "-i", "tag=c"],
    );
    assert_eq!(
        still.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&still.stderr)
    );

    // Once the lease ran out (2 s), B takes the run over.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let resumed = runner_leased(&b, &url, &["resume", &run, "--output", "json"]);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let lines = log(&data);
    assert_eq!(
        lines.iter().filter(|l| *l == "quick-a").count(),
        1,
        "the finished step did not run again: {lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "slow-start-a").count(),
        2,
        "the step in flight ran again: {lines:?}"
    );
    assert_eq!(
        pg.sql(
            "takeover",
            &format!("SELECT epoch, takeovers FROM runner.leases WHERE run_id = '{run}'")
        ),
        "2|1"
    );

    // The run ended: its group is free.
    let after = runner_leased(
        &c,
        &url,
        &[
            "exec",
            fail.to_str().unwrap(),
            "-i",
            &input,
            "-i",
            "secs=0",
            "-i",
            "tag=c",
        ],
    );
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}

/// A runner paused (SIGSTOP) past its lease loses its run to another one;
/// woken up (SIGCONT), it finds out, stops with exit code 4, and the journal
/// holds nothing it wrote after the takeover.
#[test]
fn a_paused_runner_is_fenced_and_writes_nothing_after_the_takeover() {
    let pg = Postgres::start();
    let url = pg.create_db("fenced");
    let base = common::scratch("pg-fenced");
    let (a, b, data) = (base.join("a"), base.join("b"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let wait = slow_playbook(&base, "wait");
    let input = format!("dir={}", data.display());

    let paused = spawn(
        &a,
        &url,
        &[
            "exec",
            wait.to_str().unwrap(),
            "-i",
            &input,
            "-i",
            "secs=3",
            "-i",
            "tag=a",
            "--output",
            "json",
        ],
    );
    wait_for_line(&data, "slow-start-a");
    let run = newest_run(&pg, "fenced");
    let pid = paused.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let taken = runner_leased(&b, &url, &["resume", &run, "--output", "json"]);
    assert_eq!(
        taken.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let woken = paused.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&woken.stderr);
    assert_eq!(woken.status.code(), Some(4), "{err}");
    assert!(err.contains("taken over by another runner"), "{err}");

    // Everything from B's `run_resumed` on is what B wrote, and nothing else.
    let journal = journal_events(&pg, "fenced", &run);
    // (The command line adds the run's id to each event it prints.)
    let written_by_b: Vec<serde_json::Value> = events_of(&taken)
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("run");
            e
        })
        .collect();
    let k = journal
        .iter()
        .position(|e| e["event"] == "run_resumed")
        .expect("B resumed the run");
    let from_b = written_by_b
        .iter()
        .position(|e| e["event"] == "run_resumed")
        .unwrap();
    assert_eq!(&journal[k..], &written_by_b[from_b..]);
    assert_eq!(journal.last().unwrap()["event"], "run_finished");
    // Before it, what A wrote before the pause. After waking, A may have
    // seen its step end (and printed it) before its heartbeat told it the
    // lease was gone, or not: either way that end is not in the journal.
    let said_by_a: Vec<serde_json::Value> = events_of(&woken)
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("run");
            e
        })
        .collect();
    assert_eq!(&journal[..k], &said_by_a[..k]);
}

/// Runs of one group from two machines wait for each other, first come
/// first served; none overlaps another (the journal's times say so).
#[test]
fn runs_of_one_group_from_two_machines_never_overlap_and_wait_in_order() {
    let pg = Postgres::start();
    let url = pg.create_db("groups");
    let base = common::scratch("pg-groups");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let wait = slow_playbook(&base, "wait");
    let input = format!("dir={}", data.display());
    let mut children = Vec::new();
    for (n, tag) in ["r1", "r2", "r3"].iter().enumerate() {
        let state = base.join(format!("machine-{}", n % 2));
        children.push(spawn(
            &state,
            &url,
            &[
                "exec",
                wait.to_str().unwrap(),
                "-i",
                &input,
                "-i",
                "secs=5",
                "-i",
                &format!("tag={tag}"),
            ],
        ));
        // Each one holds the group or queues before the next starts.
        if n == 0 {
            wait_for_line(&data, "slow-start-r1");
        } else {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while pg.sql("groups", "SELECT count(*) FROM runner.group_queue") != n.to_string() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "run {tag} never queued"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // In the order they came, one after the other.
    let lines: Vec<String> = log(&data)
        .into_iter()
        .filter(|l| l.starts_with("slow-"))
        .collect();
    assert_eq!(
        lines,
        [
            "slow-start-r1",
            "slow-end-r1",
            "slow-start-r2",
            "slow-end-r2",
            "slow-start-r3",
            "slow-end-r3"
        ]
    );
    // And by the journal's clock: each run's first event after the previous
    // run's end.
    let spans = pg.sql(
        "groups",
        "SELECT started_ms, finished_ms FROM runner.runs ORDER BY started_ms",
    );
    let spans: Vec<(i64, i64)> = spans
        .lines()
        .map(|l| {
            let (s, f) = l.split_once('|').unwrap();
            (s.parse().unwrap(), f.parse().unwrap())
        })
        .collect();
    assert_eq!(spans.len(), 3);
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {spans:?}");
    }
    assert_eq!(pg.sql("groups", "SELECT count(*) FROM runner.groups"), "0");
    assert_eq!(
        pg.sql("groups", "SELECT count(*) FROM runner.group_queue"),
        "0"
    );
}

/// A run on machine A waits for two roles; they answer from machine B with
/// `runner approve`, and the run goes on. The second answer comes after the
/// connection the run listens on was cut (`pg_terminate_backend`).
#[test]
fn approvers_on_another_machine_answer_through_the_database() {
    let pg = Postgres::start();
    let url = pg.create_db("approvals");
    let base = common::scratch("pg-approvals");
    let (a, b) = (base.join("a"), base.join("b"));
    let playbook = base.join("ask.yaml");
    std::fs::write(
        &playbook,
        r#"version: 1
name: ask
stages:
  - id: deploy
    steps:
      - id: go
        approval:
          prompt: "Roll out?"
          approvers: [tech-lead, on-call]
          timeout: 2m
          on_timeout: fail
"#,
    )
    .unwrap();
    let waiting = spawn(
        &a,
        &url,
        &["exec", playbook.to_str().unwrap(), "--output", "json"],
    );
    let run = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // (The table comes with the schema the runner creates.)
            let open = pg
                .try_sql(
                    "approvals",
                    "SELECT run_id FROM runner.approval_requests WHERE open",
                )
                .unwrap_or_default();
            if !open.is_empty() {
                break open;
            }
            assert!(std::time::Instant::now() < deadline, "no request opened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let approve = |role: &str, with_flag: bool| {
        let mut c = command(&b, (!with_flag).then_some(url.as_str()));
        c.env("RUNNER_USER", format!("{role}-person"))
            .args(["approve", &run, "go", "--role", role]);
        if with_flag {
            c.args(["--database", &url]);
        }
        c.output().unwrap()
    };
    // A role the step does not list is refused, as with the file mailbox.
    let wrong = approve("intern", true);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("takes no answer as `intern`"));
    let first = approve("tech-lead", true);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Cut the connection the run listens on.
    let cut = pg.sql(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'runner-approvals-listen'",
    );
    assert_ne!(cut, "0", "the run listens on a connection of its own");
    let second = approve("on-call", false);
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let done = waiting.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let decided = events_of(&done)
        .into_iter()
        .find(|e| e["event"] == "approval_decided")
        .unwrap();
    assert_eq!(decided["outcome"], "approved");
    let who: Vec<(&str, &str)> = decided["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["by"].as_str().unwrap(), d["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("tech-lead-person", "tech-lead"),
            ("on-call-person", "on-call")
        ]
    );
    // The request is closed; the answers stay as the record.
    assert_eq!(
        pg.sql(
            "approvals",
            "SELECT count(*) FROM runner.approval_requests WHERE open"
        ),
        "0"
    );
    assert_eq!(
        pg.sql(
            "approvals",
            "SELECT count(*) FROM runner.approval_decisions"
        ),
        "2"
    );
    // Nothing went into either machine's state directory.
    assert!(!a.join("approvals").exists() && !b.join("approvals").exists());
}

/// An answer whose notification never comes (written without one, as if the
/// listening connection had missed it) is still seen: the waiting run looks
/// again on its own every two seconds.
#[test]
fn an_answer_without_a_notification_is_seen_all_the_same() {
    use runner::engine::approval::{self, Approvals, Outcome, Request};
    let pg = Postgres::start();
    let url = pg.create_db("fallback");
    let approvals = runner::record::PgApprovals::open(&url).unwrap();
    let request = Request::new("r1", "go", "go?", &[], std::time::Duration::from_secs(60));
    approvals.open(&request).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            pg.sql(
                "fallback",
                r#"INSERT INTO runner.approval_decisions (run_id, step, decision)
                   VALUES ('r1', 'go', '{"approved": true, "by": "bob", "at": "2026-12-06T00:00:00Z", "via": "command"}')"#,
            );
        });
        rt.block_on(approval::wait(
            &approvals,
            &request,
            std::time::Duration::from_secs(30),
        ))
    });
    match outcome {
        Outcome::Approved(by) => assert_eq!(by[0].by, "bob"),
        other => panic!("{other:?}"),
    }
}

/// A worker (or `submit`) with a 2 s lease, its output dropped.
fn spawn_group(state: &Path, url: &str, args: &[&str]) -> std::process::Child {
    leased(state, url, "2s")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Stops a worker and its children at once (SIGKILL to its process group).
fn kill_group(child: &mut std::process::Child) {
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// A worker (or any process group) stopped with its children when dropped,
/// so a failing assertion leaves nothing running.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Submits `playbook` with `inputs` (`NAME=VALUE`) from the machine `base/submitter`;
/// the run's id.
fn submit(base: &Path, url: &str, playbook: &Path, inputs: &[&str]) -> String {
    let mut args = vec!["submit", playbook.to_str().unwrap()];
    for i in inputs {
        args.extend(["-i", i]);
    }
    let out = runner(&base.join("submitter"), Some(url), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits (up to two minutes) until `sql` answers `want`.
fn wait_for_sql(pg: &Postgres, db: &str, sql: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let got = pg.try_sql(db, sql).unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got}, not {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Twenty runs of one concurrency group submitted, three workers on two
/// "machines": each run ran exactly once, none overlapped another.
#[test]
fn three_workers_run_twenty_submitted_runs_once_each_without_overlap() {
    let pg = Postgres::start();
    let url = pg.create_db("workers");
    let base = common::scratch("pg-workers");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = slow_playbook(&base, "wait");
    let input = format!("dir={}", data.display());
    let mut ids = Vec::new();
    for n in 0..20 {
        let out = runner(
            &base.join("submitter"),
            Some(&url),
            &[
                "submit",
                playbook.to_str().unwrap(),
                "-i",
                &input,
                "-i",
                "secs=0",
                "-i",
                &format!("tag=t{n}"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    let mut workers: Vec<_> = (0..3)
        .map(|w| {
            spawn_group(
                &base.join(format!("machine-{}", w % 2)),
                &url,
                &["worker", "--concurrency", "2"],
            )
        })
        .collect();
    wait_for_sql(
        &pg,
        "workers",
        "SELECT count(*) FROM runner.queue WHERE state = 'done' AND exit_code = 0",
        "20",
    );
    for w in &mut workers {
        kill_group(w);
    }
    let lines = log(&data);
    for n in 0..20 {
        let ran = lines
            .iter()
            .filter(|l| **l == format!("quick-t{n}"))
            .count();
        assert_eq!(ran, 1, "run t{n} ran {ran} times: {lines:?}");
    }
    assert_eq!(
        pg.sql(
            "workers",
            "SELECT count(*) FROM runner.runs WHERE status = 'succeeded'"
        ),
        "20"
    );
    // Every submitted id is a run, and the work was shared.
    let workers_used = pg.sql("workers", "SELECT count(DISTINCT worker) FROM runner.queue");
    assert_ne!(workers_used, "1", "one worker did everything");
    for id in &ids {
        assert_eq!(
            pg.sql(
                "workers",
                &format!("SELECT status FROM runner.runs WHERE id = '{id}'")
            ),
            "succeeded"
        );
    }
    let spans = pg.sql(
        "workers",
        "SELECT started_ms, finished_ms FROM runner.runs ORDER BY started_ms",
    );
    let spans: Vec<(i64, i64)> = spans
        .lines()
        .map(|l| {
            let (s, f) = l.split_once('|').unwrap();
            (s.parse().unwrap(), f.parse().unwrap())
        })
        .collect();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two runs of the group overlapped: {spans:?}"
        );
    }
}

/// A worker killed with SIGKILL in the middle of a run (with the child that
/// ran it): another worker takes the run over once the lease ran out; the
/// finished step is not run again, the step in flight is not either (it is
/// not idempotent): it fails as interrupted, and the rollback runs. `submit
/// --wait` follows it all and exits 1.
#[test]
fn a_killed_workers_run_is_finished_by_another_with_its_rollback() {
    let pg = Postgres::start();
    let url = pg.create_db("killed");
    let base = common::scratch("pg-killed");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = base.join("risky.yaml");
    std::fs::write(
        &playbook,
        r#"version: 1
name: risky
inputs:
  dir: { type: string, required: true }
plugins:
  sh: { uses: exec, grants: { process: [sh] } }
stages:
  - id: deploy
    steps:
      - { id: quick, uses: sh, with: { program: sh, args: ["-c", "echo quick >> ${{ inputs.dir }}/log"] } }
      - { id: migrate, uses: sh, with: { program: sh, args: ["-c", "echo migrate-start >> ${{ inputs.dir }}/log; sleep 30; echo migrate-end >> ${{ inputs.dir }}/log"] } }
    handlers:
      on_failure:
        - { id: rollback, uses: sh, with: { program: sh, args: ["-c", "echo rollback >> ${{ inputs.dir }}/log"] } }
"#,
    )
    .unwrap();
    let input = format!("dir={}", data.display());
    let mut doomed = spawn_group(&base.join("a"), &url, &["worker"]);
    let waiting = spawn(
        &base.join("submitter"),
        &url,
        &[
            "submit",
            playbook.to_str().unwrap(),
            "-i",
            &input,
            "--wait",
            "--output",
            "json",
        ],
    );
    wait_for_line(&data, "migrate-start");
    kill_group(&mut doomed);
    let rescuer = Stopped(spawn_group(&base.join("b"), &url, &["worker"]));
    let followed = waiting.wait_with_output().unwrap();
    drop(rescuer);
    assert_eq!(
        followed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(log(&data), ["quick", "migrate-start", "rollback"]);
    let events = events_of(&followed);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"run_resumed"), "{names:?}");
    let migrate = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "migrate")
        .unwrap();
    assert_eq!(migrate["status"], "failed");
    assert_eq!(migrate["error_kind"], "interrupted");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert_eq!(events.last().unwrap()["status"], "failed");
}

/// `submit` checks the playbook first: an invalid one is refused with its
/// location and nothing is queued; without a database it says what to set.
#[test]
fn submit_refuses_what_exec_would_refuse() {
    let pg = Postgres::start();
    let url = pg.create_db("refused");
    let base = common::scratch("pg-refused");
    let bad = base.join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: bad\nstages: []\nnonsense: 1\n").unwrap();
    let out = runner(&base, Some(&url), &["submit", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.yaml:"), "{err}");
    assert_eq!(
        pg.try_sql("refused", "SELECT count(*) FROM runner.queue")
            .unwrap_or_else(|_| "0".into()),
        "0"
    );
    let out = runner(&base, None, &["submit", "examples/hello.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RUNNER_DATABASE_URL"), "{err}");
}

/// A run whose runners keep dying is not carried on forever: past
/// RUNNER_TAKEOVER_LIMIT takeovers the runner that takes it fails what was in
/// flight (idempotent or not) and runs the failure path. `runs show` tells the
/// owner, the lease and the takeovers.
#[test]
fn a_run_taken_over_too_often_fails_with_the_reason() {
    let pg = Postgres::start();
    let url = pg.create_db("limit");
    let base = common::scratch("pg-limit");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = base.join("doomed.yaml");
    std::fs::write(
        &playbook,
        r#"version: 1
name: doomed
inputs:
  dir: { type: string, required: true }
plugins:
  sh: { uses: exec, grants: { process: [sh] } }
stages:
  - id: deploy
    steps:
      - id: rollout
        uses: sh
        idempotent: true
        with: { program: sh, args: ["-c", "echo rollout >> ${{ inputs.dir }}/log; sleep 30"] }
    handlers:
      on_failure:
        - { id: rollback, uses: sh, with: { program: sh, args: ["-c", "echo rollback >> ${{ inputs.dir }}/log"] } }
"#,
    )
    .unwrap();
    let input = format!("dir={}", data.display());
    let limited = |state: &str, args: &[&str]| {
        leased(&base.join(state), &url, "1s")
            .env("RUNNER_TAKEOVER_LIMIT", "1")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rollouts = || log(&data).iter().filter(|l| *l == "rollout").count();
    let wait_rollouts = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while rollouts() < n {
            assert!(std::time::Instant::now() < deadline, "{:?}", log(&data));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let mut first = limited("a", &["exec", playbook.to_str().unwrap(), "-i", &input]);
    wait_rollouts(1);
    let run = newest_run(&pg, "limit");
    kill_group(&mut first);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut second = limited("b", &["resume", &run]);
    wait_rollouts(2);
    kill_group(&mut second);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let shown = runner(&base.join("c"), Some(&url), &["runs", "show", &run]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("lease ran out") && shown.contains("taken over once"),
        "{shown}"
    );
    let third = limited("c", &["resume", &run, "--output", "json"])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        third.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(log(&data), ["rollout", "rollout", "rollback"]);
    let rollout = events_of(&third)
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "rollout")
        .unwrap();
    assert_eq!(rollout["error_kind"], "interrupted");
    assert!(
        rollout["error"]
            .as_str()
            .unwrap()
            .contains("taken over 2 times, more than RUNNER_TAKEOVER_LIMIT (1)"),
        "{rollout}"
    );
    let shown = runner(&base.join("c"), Some(&url), &["runs", "show", &run]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("(failed)") && shown.contains("lease given back, taken over 2 times"),
        "{shown}"
    );
}

/// A runner that lost its run writes its next event under the number the new
/// owner has already used: the fence refuses it, and the recorder does not
/// mistake the new owner's event for its own write having landed. (It did:
/// a refused write was retried, found its number taken and counted as
/// written, and the old owner went on running steps until its heartbeat said
/// the lease was lost; a paused worker's run once ended with exit 0 that way.)
#[test]
fn a_fenced_write_is_refused_where_the_new_owner_used_its_number() {
    let pg = Postgres::start();
    let url = pg.create_db("fencedseq");
    let mut old = PgJournal::open(&url).unwrap();
    old.begin(&row("r", "p", 1_000)).unwrap();
    pg.sql(
        "fencedseq",
        "INSERT INTO runner.leases (run_id, epoch, until, holder)
           VALUES ('r', 1, now() + interval '1 hour', '{}')",
    );
    old.fence("r", 1);
    let mut recorder = Recorder::new(&old, "r", None).unwrap();
    assert_eq!(
        recorder.record(&mut old, 1_000, 0, &started("a")),
        Outcome::Written
    );
    // Taken over: the lease moves to epoch 2 and the new owner writes #1.
    pg.sql(
        "fencedseq",
        "UPDATE runner.leases SET epoch = 2 WHERE run_id = 'r'",
    );
    let mut new = PgJournal::open(&url).unwrap();
    new.fence("r", 2);
    new.record("r", 1, 2_000, 1_000, &started("b")).unwrap();

    assert!(!old.taken_over());
    match recorder.record(&mut old, 3_000, 2_000, &finished("a", "succeeded")) {
        Outcome::Refused(e) => assert!(e.contains("taken over"), "{e}"),
        other => panic!("the old owner's write passed for written: {other:?}"),
    }
    assert!(old.taken_over());
    assert_eq!(
        recorder.record(&mut old, 4_000, 3_000, &started("c")),
        Outcome::StillRefused
    );
    // Retried at the end, the refused events are refused again: the look
    // for an event already there is behind the fence too.
    let lacks = recorder
        .finish(&mut old)
        .expect("the events are not written");
    assert!(lacks.contains("taken over"), "{lacks}");
    let looked = old.has_event("r", 1).unwrap_err();
    assert!(looked.contains("taken over"), "{looked}");
    let steps: Vec<String> = journal_events(&pg, "fencedseq", "r")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["step"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(steps, ["step_started a", "step_started b"]);
}

/// A worker paused with its run (SIGSTOP to its process group) past the
/// lease: another worker takes the run over and finishes it; woken up
/// (SIGCONT), the paused run's process stops with exit code 4, its worker
/// does not mark the run done, and the journal holds only what the new owner
/// wrote after its `run_resumed`.
#[test]
fn a_paused_worker_is_fenced_and_its_run_finished_by_another() {
    let pg = Postgres::start();
    let url = pg.create_db("pausedworker");
    let base = common::scratch("pg-paused-worker");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = slow_playbook(&base, "wait");
    let input = format!("dir={}", data.display());
    let run = submit(&base, &url, &playbook, &[&input, "secs=3", "tag=a"]);
    let said = base.join("worker-a.log");
    // Stopped (SIGKILL, which ends a paused process too) even when an
    // assertion fails: a worker left behind would go on taking runs.
    let paused = Stopped(
        leased(&base.join("a"), &url, "2s")
            .args(["worker"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&said).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_line(&data, "slow-start-a");
    let group = -(paused.0.id() as i32);
    unsafe { libc::kill(group, libc::SIGSTOP) };
    // Written by A before the pause.
    let before = journal_events(&pg, "pausedworker", &run).len();
    let rescuer = Stopped(spawn_group(&base.join("b"), &url, &["worker"]));
    // B's process for the run has ended and told the queue (stopping B
    // sooner could cut it between the run's end and that word).
    wait_for_sql(
        &pg,
        "pausedworker",
        &format!(
            "SELECT r.status, q.state, q.exit_code FROM runner.runs r
               JOIN runner.queue q ON q.run_id = r.id WHERE r.id = '{run}'"
        ),
        "succeeded|done|0",
    );
    drop(rescuer);
    let finished = journal_events(&pg, "pausedworker", &run);
    unsafe { libc::kill(group, libc::SIGCONT) };
    // A's process for the run finds it was taken over and ends with 4.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ended = format!("run {run} ended (exit status: 4)");
    while !std::fs::read_to_string(&said)
        .unwrap_or_default()
        .contains(&ended)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&said).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(paused);
    let after = journal_events(&pg, "pausedworker", &run);
    assert_eq!(
        after, finished,
        "nothing was written after the takeover's end"
    );
    let k = after
        .iter()
        .position(|e| e["event"] == "run_resumed")
        .expect("B resumed the run");
    assert_eq!(k, before, "B's record follows A's directly");
    assert_eq!(
        after
            .iter()
            .filter(|e| e["event"] == "run_finished")
            .count(),
        1
    );
    // The queue says what B's process said: done, 0 (A's taken-over process
    // did not mark it).
    assert_eq!(
        pg.sql(
            "pausedworker",
            &format!("SELECT state, exit_code FROM runner.queue WHERE run_id = '{run}'")
        ),
        "done|0"
    );
}

/// A run whose worker's child died after the run ended but before it told
/// the queue is marked done by the next worker that looks (its exit code
/// unknown), not left claimed for ever.
#[test]
fn a_run_that_ended_without_its_word_to_the_queue_is_marked_done() {
    let pg = Postgres::start();
    let url = pg.create_db("settle");
    let base = common::scratch("pg-settle");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = slow_playbook(&base, "wait");
    let input = format!("dir={}", data.display());
    let run = submit(&base, &url, &playbook, &[&input, "secs=0"]);
    let row = format!("SELECT state, exit_code FROM runner.queue WHERE run_id = '{run}'");
    let worker = Stopped(spawn_group(&base.join("a"), &url, &["worker"]));
    wait_for_sql(&pg, "settle", &row, "done|0");
    drop(worker);
    // As if the child had died just before its word to the queue.
    pg.sql(
        "settle",
        &format!(
            "UPDATE runner.queue SET state = 'claimed', exit_code = NULL, done_at = NULL WHERE run_id = '{run}'"
        ),
    );
    assert_eq!(pg.sql("settle", &row), "claimed|");
    let worker = Stopped(spawn_group(&base.join("b"), &url, &["worker"]));
    wait_for_sql(&pg, "settle", &row, "done|");
    drop(worker);
    // It was not run again.
    assert_eq!(
        log(&data)
            .iter()
            .filter(|l| l.starts_with("slow-start"))
            .count(),
        1,
        "{:?}",
        log(&data)
    );
}

/// A worker does not take a run that could only wait for its busy group: with
/// two slots, one run of service `a` going and another queued behind it, the
/// worker runs service `b`'s run meanwhile; the second `a` starts when the
/// first has ended.
#[test]
fn a_worker_runs_another_group_while_a_busy_groups_runs_wait_in_the_queue() {
    let pg = Postgres::start();
    let url = pg.create_db("busygroup");
    let base = common::scratch("pg-busy-group");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let playbook = base.join("service.yaml");
    std::fs::write(
        &playbook,
        r#"version: 1
name: service
inputs:
  dir: { type: string, required: true }
  service: { type: string, required: true }
  tag: { type: string, required: true }
  secs: { type: string, required: true }
concurrency: { group: "deploy-${{ inputs.service }}", on_conflict: wait }
plugins:
  sh: { uses: exec, grants: { process: [sh] } }
stages:
  - id: deploy
    steps:
      - { id: go, uses: sh, with: { program: sh, args: ["-c", "echo start-${{ inputs.tag }} >> ${{ inputs.dir }}/log; sleep ${{ inputs.secs }}; echo end-${{ inputs.tag }} >> ${{ inputs.dir }}/log"] } }
"#,
    )
    .unwrap();
    let input = format!("dir={}", data.display());
    for (service, tag, secs) in [("a", "a1", "4"), ("a", "a2", "0"), ("b", "b", "0")] {
        let out = runner(
            &base.join("submitter"),
            Some(&url),
            &[
                "submit",
                playbook.to_str().unwrap(),
                "-i",
                &input,
                "-i",
                &format!("service={service}"),
                "-i",
                &format!("tag={tag}"),
                "-i",
                &format!("secs={secs}"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut worker = spawn_group(&base.join("w"), &url, &["worker", "--concurrency", "2"]);
    wait_for_sql(
        &pg,
        "busygroup",
        "SELECT count(*) FROM runner.queue WHERE state = 'done' AND exit_code = 0",
        "3",
    );
    kill_group(&mut worker);
    let lines = log(&data);
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("no {l} in {lines:?}"))
    };
    assert!(at("end-b") < at("end-a1"), "b waited for a1: {lines:?}");
    assert!(at("end-a1") < at("start-a2"), "a2 overlapped a1: {lines:?}");
}

/// TLS to the database: the server's certificate is always checked (against
/// `sslrootcert` when the URL names one), also under the default `prefer`; a
/// certificate that does not check out is refused, never talked past.
#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let pg = Postgres::start_tls();
    pg.sql("postgres", "CREATE DATABASE tls");
    let ca = pg.ca();
    let base = pg.url("tls");
    let ssl_of_runner = || {
        pg.sql(
            "tls",
            "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'runner'",
        )
    };
    for mode in ["require", "verify-full", "verify-ca"] {
        let url = format!("{base}?sslmode={mode}&sslrootcert={}", ca.display());
        let j = PgJournal::open(&url).unwrap_or_else(|e| panic!("{mode}: {e}"));
        j.begin(&row(&format!("r-{mode}"), "p", 1_000)).unwrap();
        assert_eq!(ssl_of_runner(), "true", "{mode}");
        drop(j);
    }
    // The default, `prefer`, with the CA: TLS.
    let j = PgJournal::open(&format!("{base}?sslrootcert={}", ca.display())).unwrap();
    assert_eq!(ssl_of_runner(), "true");
    drop(j);
    // Without the CA the certificate does not check out: refused, whether
    // TLS is required or only preferred; the message names the database, not
    // its password.
    for url in [format!("{base}?sslmode=require"), base.clone()] {
        let e = PgJournal::open(&url).err().expect("refused");
        assert!(
            e.contains("cannot connect to the journal database postgres://runner@")
                && e.contains("certificate")
                && !e.contains("secret-pw"),
            "{e}"
        );
    }
    // `disable`: plain.
    let j = PgJournal::open(&format!("{base}?sslmode=disable")).unwrap();
    assert_eq!(ssl_of_runner(), "false");
    drop(j);
    // A root file that is missing or not PEM is said so.
    let e = PgJournal::open(&format!(
        "{base}?sslmode=require&sslrootcert=/nonexistent/ca.pem"
    ))
    .err()
    .unwrap();
    assert!(
        e.contains("`/nonexistent/ca.pem` (sslrootcert) cannot be read"),
        "{e}"
    );
    let e = PgJournal::open(&format!(
        "{base}?sslrootcert={}",
        pg.dir().join("pw").display()
    ))
    .err()
    .unwrap();
    assert!(e.contains("holds no certificate"), "{e}");
}
