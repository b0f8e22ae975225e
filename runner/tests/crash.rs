//! The crash harness: `runner exec` is SIGKILLed at a pseudo-random point of a
//! canary run (right after its k-th event, k spread over the whole run), then
//! `runner resume` finishes it. Fifty trials, half of them with a
//! step that fails (so the rollback is due). Each trial checks, from the journal
//! and from the steps' own side effects (one line per execution in a log file):
//!
//! - every step that had to complete completed exactly once in the journal
//!   (one `step_finished`, whichever process wrote it);
//! - no step that had finished before the kill ran again (its side effect
//!   appears once);
//! - the rollback ran where it was due, and only there;
//! - the run ended with the right status.
//!
//! Steps that were in flight at the kill are `idempotent`, so they run again:
//! their side effect may appear twice, which is what idempotent allows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use runner::engine::Event;
use runner::record::{Journal, SqliteJournal};

const TRIALS: u64 = 50;
const MAIN_STEPS: [&str; 5] = ["build", "push", "shift_25", "shift_50", "shift_100"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runner(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.current_dir(root())
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .env_remove("RUNNER_JOURNAL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A reproducible spread of kill points over a run's ~17 events (no randomness
/// crate needed).
fn kill_after(trial: u64) -> u64 {
    let mut z = trial
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x1234_5678);
    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 29;
    1 + z % 17
}

/// One trial; `Ok(true)` when the run was killed before it ended and resumed.
fn trial(n: u64) -> Result<bool, String> {
    let base = std::env::temp_dir().join(format!("runner-crash-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data) = (base.join("state"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let fail_at = if n % 2 == 1 { "shift_50" } else { "none" };
    let dir_input = format!("dir={}", data.display());
    let fail_input = format!("fail_at={fail_at}");
    let mut child = runner(&state)
        .args([
            "exec",
            "tests/crash/canary.yaml",
            "-i",
            &dir_input,
            "-i",
            &fail_input,
        ])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let k = kill_after(n);
    let stdout = child.stdout.take().unwrap();
    let seen = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .take(k as usize)
        .count();
    let _ = child.kill(); // SIGKILL
    let first = child.wait().unwrap();
    let ctx = format!(
        "trial {n} (killed after event {seen} of the {k} awaited, fail_at {fail_at}, first exit {first:?})"
    );

    let log = || -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for line in std::fs::read_to_string(data.join("log"))
            .unwrap_or_default()
            .lines()
        {
            *counts.entry(line.to_owned()).or_insert(0) += 1;
        }
        counts
    };
    let journal_path = state.join("journal.sqlite");
    if !journal_path.exists() {
        // Killed before the journal existed: nothing may have run.
        let _ = std::fs::remove_dir_all(&base);
        return if log().is_empty() {
            Ok(false)
        } else {
            Err(format!("{ctx}: steps ran without a journal"))
        };
    }
    let journal = SqliteJournal::open(&journal_path).map_err(|e| format!("{ctx}: {e}"))?;
    let runs = journal
        .list(&runner::record::Filter::default())
        .map_err(|e| format!("{ctx}: {e}"))?;
    let Some(run) = runs.first().cloned() else {
        let _ = std::fs::remove_dir_all(&base);
        return if log().is_empty() {
            Ok(false)
        } else {
            Err(format!("{ctx}: steps ran without a run in the journal"))
        };
    };
    let before_kill = journal.events(&run.id).map_err(|e| format!("{ctx}: {e}"))?;
    let finished_before: Vec<String> = before_kill
        .iter()
        .filter_map(|s| match &s.event {
            Event::StepFinished(r) => Some(r.step.clone()),
            _ => None,
        })
        .collect();
    drop(journal);

    let resumed = run.status == "running";
    if resumed {
        let out = runner(&state).args(["resume", &run.id]).output().unwrap();
        let code = out.status.code();
        let expected = if fail_at == "none" { Some(0) } else { Some(1) };
        if code != expected {
            return Err(format!(
                "{ctx}: resume exited {code:?}, expected {expected:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    let journal = SqliteJournal::open(&journal_path).map_err(|e| format!("{ctx}: {e}"))?;
    let run = journal.run(&run.id).unwrap().unwrap();
    let events = journal.events(&run.id).unwrap();
    let expected_status = if fail_at == "none" {
        "succeeded"
    } else {
        "failed"
    };
    if run.status != expected_status {
        return Err(format!("{ctx}: the run ended {}", run.status));
    }
    let mut completions: HashMap<String, usize> = HashMap::new();
    for s in &events {
        if let Event::StepFinished(r) = &s.event {
            *completions.entry(r.step.clone()).or_insert(0) += 1;
        }
    }
    let due: Vec<&str> = match fail_at {
        "none" => MAIN_STEPS.to_vec(),
        _ => vec!["build", "push", "shift_25", "shift_50", "rollback"],
    };
    for step in &due {
        if completions.get(*step) != Some(&1) {
            return Err(format!(
                "{ctx}: `{step}` completed {:?} times in the journal",
                completions.get(*step)
            ));
        }
    }
    let counts = log();
    // Steps with a side effect (the gate has none).
    for step in finished_before
        .iter()
        .filter(|s| MAIN_STEPS.contains(&s.as_str()) || s.as_str() == "rollback")
    {
        if counts.get(step.as_str()) != Some(&1) {
            return Err(format!(
                "{ctx}: `{step}` had finished before the kill but ran {:?} times",
                counts.get(step.as_str())
            ));
        }
    }
    for step in &due {
        if counts.get(*step).is_none_or(|c| *c == 0) {
            return Err(format!("{ctx}: `{step}` never ran"));
        }
    }
    if fail_at == "none" && counts.contains_key("rollback") {
        return Err(format!("{ctx}: a rollback ran in a run that succeeded"));
    }
    if fail_at != "none" && counts.contains_key("shift_100") {
        return Err(format!("{ctx}: shift_100 ran after the failure"));
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(resumed)
}

/// Runs `trial` for each of the [`TRIALS`], four at a time (the machine has two
/// cores and each trial mostly waits), and fails with every failed trial's
/// message; returns the results (`Ok(true)`: resumed).
fn all_trials(trial: fn(u64) -> Result<bool, String>) -> Vec<Result<bool, String>> {
    let results: Vec<Result<bool, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|lane| {
                scope.spawn(move || {
                    (0..TRIALS)
                        .filter(|n| n % 4 == lane)
                        .map(trial)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {TRIALS} trials failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    results
}

#[test]
fn fifty_killed_runs_resume_without_running_a_finished_step_again() {
    let results = all_trials(trial);
    // The kill points are events, not times: nearly every run is cut short. A
    // harness whose runs all finished before the kill would prove nothing.
    let resumed = results.iter().filter(|r| matches!(r, Ok(true))).count();
    eprintln!("{resumed} of {TRIALS} runs were killed before they ended, then resumed");
    assert!(
        resumed as u64 >= TRIALS * 4 / 5,
        "only {resumed} of {TRIALS} runs were killed before they ended"
    );
}

/// Two `runner resume` of one killed run, the second started 0 to 275 ms after
/// the first: the run's lock is taken before its state is read, so exactly one
/// carries it on (exit 0) and the other is refused (exit 2: still running, or
/// already ended when it came late); the journal holds one `run_resumed` and one
/// `run_finished`, and no step that had finished ran again. Little is left to
/// do after the kill, so the first resume ends while the second is still
/// loading its plugins: the window in which a resume that read the state
/// before taking the lock ran the run a second time.
#[test]
fn two_resumes_at_once_carry_the_run_on_once() {
    for n in 0..12u64 {
        let base =
            std::env::temp_dir().join(format!("runner-crash-twice-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (state, data) = (base.join("state"), base.join("data"));
        std::fs::create_dir_all(&data).unwrap();
        let dir_input = format!("dir={}", data.display());
        let mut child = runner(&state)
            .args(["exec", "tests/crash/canary.yaml", "-i", &dir_input])
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Killed once `shift_50` finished: the gate and `shift_100` are left.
        let stdout = child.stdout.take().unwrap();
        let seen: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
            .map_while(Result::ok)
            .take_while(|l| !(l.contains("\"step_finished\"") && l.contains("\"shift_50\"")))
            .collect();
        let _ = child.kill();
        child.wait().unwrap();
        assert!(!seen.is_empty(), "trial {n}: the run printed nothing");

        let journal_path = state.join("journal.sqlite");
        let run = SqliteJournal::open(&journal_path)
            .unwrap()
            .list(&runner::record::Filter::default())
            .unwrap()[0]
            .clone();
        assert_eq!(run.status, "running", "trial {n}");
        let finished_before: Vec<String> = SqliteJournal::open(&journal_path)
            .unwrap()
            .events(&run.id)
            .unwrap()
            .into_iter()
            .filter_map(|s| match s.event {
                Event::StepFinished(r) => Some(r.step),
                _ => None,
            })
            .collect();
        assert!(
            !finished_before.is_empty(),
            "trial {n}: nothing had finished"
        );

        let first = runner(&state).args(["resume", &run.id]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(25 * n));
        let second = runner(&state).args(["resume", &run.id]).spawn().unwrap();
        let resumes = [first, second];
        let outs: Vec<_> = resumes
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        codes.sort();
        let stderr: Vec<String> = outs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        assert_eq!(codes, [Some(0), Some(2)], "trial {n}: {stderr:?}");
        let refused = &stderr[outs
            .iter()
            .position(|o| o.status.code() == Some(2))
            .unwrap()];
        assert!(
            refused.contains(&format!("run {} is still running", run.id))
                || refused.contains("already ended"),
            "trial {n}: {refused}"
        );

        let events = SqliteJournal::open(&journal_path)
            .unwrap()
            .events(&run.id)
            .unwrap();
        let count = |f: fn(&Event) -> bool| events.iter().filter(|s| f(&s.event)).count();
        assert_eq!(
            count(|e| matches!(e, Event::RunResumed { .. })),
            1,
            "trial {n}"
        );
        assert_eq!(
            count(|e| matches!(e, Event::RunFinished { .. })),
            1,
            "trial {n}"
        );
        let log = std::fs::read_to_string(data.join("log")).unwrap();
        for line in finished_before
            .iter()
            .filter(|s| MAIN_STEPS.contains(&s.as_str()))
        {
            assert_eq!(
                log.lines().filter(|l| *l == line.as_str()).count(),
                1,
                "trial {n}: `{line}` ran again:\n{log}"
            );
        }
        for step in MAIN_STEPS {
            assert!(
                log.lines().any(|l| l == step),
                "trial {n}: `{step}` never ran:\n{log}"
            );
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}

/// How a run on its failure path loses its runner.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM during `shift_50`, SIGKILL during the rollback.
    TermThenKill,
    /// The stage times out during `shift_50`, SIGKILL during the rollback.
    TimeoutThenKill,
    /// SIGINT during `shift_50`, a second SIGINT during the rollback (the
    /// runner exits at once).
    IntTwice,
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// A run stopped during a canary shift whose runner then dies during the
/// rollback: `resume` finishes the rollback (once), runs the `finally`
/// handlers, starts no main step (`shift_100`, the `promote` stage) and exits
/// 1, the run keeping the status it was ending with.
fn resume_finishes_the_failure_path(stop: Stop) {
    let base =
        std::env::temp_dir().join(format!("runner-crash-stop-{}-{stop:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data) = (base.join("state"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let dir_input = format!("dir={}", data.display());
    let mut cmd = runner(&state);
    cmd.args(["exec", "tests/crash/stopping.yaml", "-i", &dir_input])
        .args(["--output", "json"])
        .stdout(Stdio::piped());
    if let Stop::TimeoutThenKill = stop {
        cmd.args(["-i", "stage_timeout=1s"]);
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()))
        .map_while(Result::ok);
    let started = |l: &str, step: &str| {
        l.contains("\"step_started\"") && l.contains(&format!("\"step\":\"{step}\""))
    };
    assert!(
        lines.by_ref().any(|l| started(&l, "shift_50")),
        "{stop:?}: shift_50 never started"
    );
    match stop {
        Stop::TermThenKill => signal(pid, "TERM"),
        Stop::IntTwice => signal(pid, "INT"),
        Stop::TimeoutThenKill => {}
    }
    assert!(
        lines.by_ref().any(|l| started(&l, "rollback")),
        "{stop:?}: the rollback never started"
    );
    // The rollback's program is under way (it sleeps 2 s before it is done).
    std::thread::sleep(std::time::Duration::from_millis(500));
    match stop {
        Stop::IntTwice => signal(pid, "INT"),
        _ => {
            let _ = child.kill();
        }
    }
    drop(lines);
    child.wait().unwrap();
    let log = || std::fs::read_to_string(data.join("log")).unwrap_or_default();
    let count = |log: &str, what: &str| log.lines().filter(|l| *l == what).count();
    assert_eq!(count(&log(), "rollback_started"), 1, "{stop:?}: {}", log());
    assert_eq!(count(&log(), "rollback"), 0, "{stop:?}: {}", log());

    let journal_path = state.join("journal.sqlite");
    let run = SqliteJournal::open(&journal_path)
        .unwrap()
        .list(&runner::record::Filter::default())
        .unwrap()[0]
        .clone();
    assert_eq!(run.status, "running", "{stop:?}");
    let out = runner(&state).args(["resume", &run.id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stop:?}: {stderr}");

    let log = log();
    assert_eq!(
        count(&log, "rollback"),
        1,
        "{stop:?}: the rollback completed once:\n{log}"
    );
    assert_eq!(
        count(&log, "shift_100"),
        0,
        "{stop:?}: a main step ran after the stop:\n{log}"
    );
    assert_eq!(
        count(&log, "promote"),
        0,
        "{stop:?}: a main stage ran after the stop:\n{log}"
    );
    assert!(
        count(&log, "tell") >= 1,
        "{stop:?}: finally did not run:\n{log}"
    );
    let journal = SqliteJournal::open(&journal_path).unwrap();
    let expected = match stop {
        Stop::TimeoutThenKill => "timed_out",
        _ => "interrupted",
    };
    assert_eq!(
        journal.run(&run.id).unwrap().unwrap().status,
        expected,
        "{stop:?}"
    );
    let events = journal.events(&run.id).unwrap();
    let finished = |step: &str, status: &str| {
        events
            .iter()
            .filter(|s| matches!(&s.event, Event::StepFinished(r) if r.step == step && r.status == status))
            .count()
    };
    assert_eq!(finished("rollback", "succeeded"), 1, "{stop:?}");
    assert!(
        !events.iter().any(|s| matches!(&s.event, Event::StepStarted { step, .. } if step == "shift_100" || step == "promote")),
        "{stop:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_run_terminated_then_killed_during_its_rollback_resumes_into_the_rollback() {
    resume_finishes_the_failure_path(Stop::TermThenKill);
}

#[test]
fn a_run_timed_out_then_killed_during_its_rollback_resumes_into_the_rollback() {
    resume_finishes_the_failure_path(Stop::TimeoutThenKill);
}

#[test]
fn a_run_interrupted_twice_resumes_into_the_rollback() {
    resume_finishes_the_failure_path(Stop::IntTwice);
}

/// The runner is SIGKILLed while a step's program has a child holding a lock
/// (the parent-death signal reaches the program, not its child): `resume` stops
/// what the killed runner left before it runs the step again, so the second
/// copy never finds the first one still running (the program checks it itself
/// with `flock -n`), and the step completes.
#[test]
fn a_resumed_step_never_overlaps_the_programs_of_the_killed_attempt() {
    let base = std::env::temp_dir().join(format!("runner-crash-overlap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data) = (base.join("state"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let dir_input = format!("dir={}", data.display());
    let mut child = runner(&state)
        .args(["exec", "tests/crash/overlap.yaml", "-i", &dir_input])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(data.join("log")).unwrap_or_default();
    // Killed once the lock is held.
    let since = std::time::Instant::now();
    while !log().contains("start") {
        assert!(since.elapsed().as_secs() < 60, "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap();

    let run = SqliteJournal::open(&state.join("journal.sqlite"))
        .unwrap()
        .list(&runner::record::Filter::default())
        .unwrap()[0]
        .clone();
    let out = runner(&state).args(["resume", &run.id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let log = log();
    assert!(!log.contains("overlap"), "two copies ran at once:\n{log}");
    assert!(
        stderr.contains("left running"),
        "resume says what it stopped: {stderr}"
    );
    assert_eq!(log.matches("start").count(), 2, "{log}");
    assert_eq!(
        log.matches("end").count(),
        1,
        "the killed copy's child was stopped:\n{log}"
    );
    assert!(
        !state.join("programs").join(&run.id).exists(),
        "the registry is emptied"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// Interrupted trials whose journal shows the interrupt, so that the checks ran.
static CHECKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One trial of an interrupted run: SIGTERM right after the k-th event, SIGKILL
/// 0 to 2 events after the runner reports the interrupt (during the rollback,
/// often), then `resume` if the run had not ended. Checked from the journal and from the steps' own side effects: no
/// main step started after the interrupt, no step that had finished ran again,
/// the rollback completed exactly once when the interrupt (or the failure) came
/// in the canary stage and never otherwise, and the run ended `interrupted`
/// (`failed` when a step had failed first). `Ok(true)` when it was resumed.
fn interrupted_trial(n: u64) -> Result<bool, String> {
    let base = std::env::temp_dir().join(format!("runner-crash-int-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data) = (base.join("state"), base.join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let fail_at = if n % 2 == 1 { "shift_50" } else { "none" };
    let dir_input = format!("dir={}", data.display());
    let fail_input = format!("fail_at={fail_at}");
    let mut child = runner(&state)
        .args([
            "exec",
            "tests/crash/canary.yaml",
            "-i",
            &dir_input,
            "-i",
            &fail_input,
        ])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let k = kill_after(n + 1000);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()))
        .map_while(Result::ok);
    let before_term = lines.by_ref().take(k as usize).count();
    signal(child.id(), "TERM");
    // Killed on the failure path: 0 to 2 events after the runner says it was
    // interrupted (often while the rollback runs).
    let before_kill = lines
        .by_ref()
        .position(|l| l.contains("\"interrupted\""))
        .map_or(0, |p| p + 1)
        + lines.by_ref().take((n % 3) as usize).count();
    let _ = child.kill();
    drop(lines);
    let first = child.wait().unwrap();
    let ctx = format!(
        "interrupted trial {n} (SIGTERM after event {before_term}, SIGKILL {before_kill} events later, fail_at {fail_at}, first exit {first:?})"
    );
    let journal_path = state.join("journal.sqlite");
    let Some(run) = SqliteJournal::open(&journal_path)
        .ok()
        .and_then(|j| j.list(&runner::record::Filter::default()).ok())
        .and_then(|runs| runs.first().cloned())
    else {
        let _ = std::fs::remove_dir_all(&base);
        return Ok(false);
    };
    let finished_before: Vec<String> = SqliteJournal::open(&journal_path)
        .unwrap()
        .events(&run.id)
        .unwrap()
        .into_iter()
        .filter_map(|s| match s.event {
            // A step cancelled by the interrupt may never have run its program.
            Event::StepFinished(r) if matches!(r.status, "succeeded" | "failed") => Some(r.step),
            _ => None,
        })
        .collect();
    let resumed = run.status == "running";
    let mut resume_code = None;
    if resumed {
        let out = runner(&state).args(["resume", &run.id]).output().unwrap();
        resume_code = Some(out.status.code());
    }
    let journal = SqliteJournal::open(&journal_path).unwrap();
    let run = journal.run(&run.id).unwrap().unwrap();
    let events: Vec<Event> = journal
        .events(&run.id)
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .collect();
    let Some(stop) = events
        .iter()
        .position(|e| matches!(e, Event::Interrupted { .. }))
    else {
        // The signal came before the runner listened or after the run ended:
        // the plain crash trial's checks apply, and that harness runs them.
        let _ = std::fs::remove_dir_all(&base);
        return Ok(resumed);
    };
    CHECKED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let failed_first = events[..stop]
        .iter()
        .any(|e| matches!(e, Event::StepFinished(r) if r.status == "failed"));
    let expected = if failed_first {
        "failed"
    } else {
        "interrupted"
    };
    if run.status != expected {
        return Err(format!(
            "{ctx}: the run ended {}, expected {expected}",
            run.status
        ));
    }
    if resumed && resume_code != Some(Some(1)) {
        return Err(format!("{ctx}: resume exited {resume_code:?}, expected 1"));
    }
    if let Some(late) = events[stop..].iter().find_map(|e| match e {
        Event::StepStarted {
            step,
            handler: None,
            ..
        } => Some(step.clone()),
        _ => None,
    }) {
        return Err(format!(
            "{ctx}: main step `{late}` started after the interrupt"
        ));
    }
    // Where the run was when it started stopping.
    let first_stop = events
        .iter()
        .position(|e| matches!(e, Event::Interrupted { .. }))
        .into_iter()
        .chain(
            events
                .iter()
                .position(|e| matches!(e, Event::StepFinished(r) if r.status == "failed")),
        )
        .min()
        .unwrap();
    let in_canary = events[..first_stop]
        .iter()
        .any(|e| matches!(e, Event::StageStarted { stage, .. } if stage == "canary"))
        && !events[..first_stop]
            .iter()
            .any(|e| matches!(e, Event::StageFinished { stage, .. } if stage == "canary"));
    let rollbacks = events
        .iter()
        .filter(|e| matches!(e, Event::StepFinished(r) if r.step == "rollback" && r.status == "succeeded"))
        .count();
    let due = usize::from(in_canary);
    if rollbacks != due {
        return Err(format!(
            "{ctx}: the rollback completed {rollbacks} times, expected {due}"
        ));
    }
    let log = std::fs::read_to_string(data.join("log")).unwrap_or_default();
    for step in finished_before
        .iter()
        .filter(|s| MAIN_STEPS.contains(&s.as_str()))
    {
        let runs = log.lines().filter(|l| *l == step.as_str()).count();
        if runs != 1 {
            return Err(format!(
                "{ctx}: `{step}` had finished before the kill but ran {runs} times"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(resumed)
}

#[test]
fn fifty_interrupted_then_killed_runs_finish_their_failure_path_only() {
    let results = all_trials(interrupted_trial);
    let resumed = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let checked = CHECKED.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{checked} of {TRIALS} runs took the interrupt; {resumed} were killed before they ended, then resumed"
    );
    // Signals are sent at event counts, not times: most runs take the
    // interrupt and are killed on their failure path. A harness where few did
    // would prove little.
    assert!(
        checked >= TRIALS as usize / 2,
        "only {checked} of {TRIALS} runs took the interrupt"
    );
    assert!(
        resumed >= TRIALS as usize / 2,
        "only {resumed} of {TRIALS} runs were resumed"
    );
}

/// Mounts of the test's own, in a mount namespace that a `sleep` keeps alive:
/// a small tmpfs that a run can fill up and the test can empty again, or a
/// folder made read-only. Commands run inside with `nsenter`; the test reaches
/// the files through `/proc/PID/root`. Needs root (CAP_SYS_ADMIN), as CI has.
struct MountNs {
    holder: std::process::Child,
}

impl MountNs {
    /// A tmpfs of `size` at `at`.
    fn small_disk(at: &Path, size: &str) -> MountNs {
        std::fs::create_dir_all(at).unwrap();
        MountNs::with(&format!(
            "mount -t tmpfs -o size={size} runner-test {}",
            at.display()
        ))
    }

    /// `at`, as it is, read-only.
    fn read_only(at: &Path) -> MountNs {
        MountNs::with(&format!(
            "mount --bind {at} {at} && mount -o remount,bind,ro {at}",
            at = at.display()
        ))
    }

    fn with(mount: &str) -> MountNs {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("{mount} && echo mounted && exec sleep 600"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "cannot mount in a mount namespace of its own (this test needs root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        MountNs { holder }
    }

    /// `runner` inside the namespace, as [`runner`] sets it up.
    fn runner(&self, state: &Path) -> Command {
        let plain = runner(state);
        let mut cmd = Command::new("nsenter");
        cmd.args(["--target", &self.holder.id().to_string(), "--mount"])
            .arg(format!("--wd={}", root().canonicalize().unwrap().display()))
            .arg("--")
            .arg(plain.get_program())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in plain.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// `runner runs show ID --output json` (SQLite cannot open a journal
    /// through `/proc/PID/root`: it resolves the link).
    fn show(&self, state: &Path, id: &str) -> serde_json::Value {
        let out = self
            .runner(state)
            .args(["runs", "show", id, "--output", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `path` (inside the namespace) as the test sees it.
    fn outside(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(path.strip_prefix("/").unwrap())
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// What a journal that stopped taking writes leaves: `(base, disk, state,
/// data, stdout, stderr, exit code)` of a run of tests/crash/journal-full.yaml
/// whose `fill` step fills the state directory's file system.
fn run_on_a_disk_that_fills(
    name: &str,
    extra: &[&str],
) -> (
    PathBuf,
    MountNs,
    PathBuf,
    PathBuf,
    String,
    String,
    Option<i32>,
) {
    let base = std::env::temp_dir().join(format!("runner-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let disk = MountNs::small_disk(&base.join("disk"), "16m");
    let state = base.join("disk").join("state");
    let out = disk
        .runner(&state)
        .args(["exec", "tests/crash/journal-full.yaml", "--output", "json"])
        .args(["-i", &format!("dir={}", data.display())])
        .args(["-i", &format!("state={}", state.display())])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (base, disk, state, data, stdout, stderr, out.status.code())
}

/// The run id in `runner exec --output json`'s lines.
fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get("run")?
                .as_str()
                .map(str::to_owned)
        })
        .expect("the run printed its id")
}

/// The disk holding the journal fills up during a run. By default the run
/// stops there: no further main step, the rollback and `finally` run, exit 1,
/// and the runner says the disk is full. Once space is back, the journal still
/// lacks what happened after it filled up, so `resume` refuses the run with
/// the reason instead of running `shift`, `free` and `last` (and the rollback)
/// again; `runs list` and `runs show` say the record is incomplete.
#[test]
fn a_full_disk_stops_the_run_and_resume_refuses_it_with_the_reason() {
    let (base, disk, state, data, stdout, stderr, code) =
        run_on_a_disk_that_fills("journal-full", &[]);
    let log = || std::fs::read_to_string(data.join("log")).unwrap_or_default();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        log(),
        "first\nfill\nrollback\ntell\n",
        "only the rollback and finally run after the journal failed:\n{stderr}"
    );
    assert!(
        stderr.contains("the journal stopped taking this run's events")
            && stderr.contains("is full")
            && stderr.contains("--on-journal-error stop"),
        "{stderr}"
    );
    let id = run_id_of(&stdout);

    // Space comes back; the journal still says the run is running.
    std::fs::remove_file(disk.outside(&state.join("fill"))).unwrap();
    assert_eq!(disk.show(&state, &id)["run"]["status"], "running");
    let out = disk.runner(&state).args(["resume", &id]).output().unwrap();
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{refusal}");
    assert!(
        refusal.contains(&format!("run {id} cannot be resumed"))
            && refusal.contains("the journal stopped taking this run's events")
            && refusal.contains("which of its steps finished is not known"),
        "{refusal}"
    );
    assert_eq!(log(), "first\nfill\nrollback\ntell\n", "resume ran nothing");

    let list = disk.runner(&state).args(["runs", "list"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("journal incomplete"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    let show = disk
        .runner(&state)
        .args(["runs", "show", &id, "--output", "markdown"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("**Incomplete record.**"),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );
    drop(disk);
    let _ = std::fs::remove_dir_all(&base);
}

/// With `--on-journal-error continue` the run carries on when the disk fills
/// up; when a later step frees the space, the journal takes the events it had
/// refused, in order: every event the run printed is in the journal, with no
/// hole in the sequence, and the run ended there as it did.
#[test]
fn a_run_told_to_continue_fills_in_the_journal_when_space_comes_back() {
    let (base, disk, state, data, stdout, stderr, code) = run_on_a_disk_that_fills(
        "journal-back",
        &["-i", "free=yes", "--on-journal-error", "continue"],
    );
    let log = std::fs::read_to_string(data.join("log")).unwrap_or_default();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(log, "first\nfill\nshift\nfree\nlast\ntell\n", "{stderr}");
    assert!(
        stderr.contains("--on-journal-error continue")
            && stderr.contains("the journal stopped taking this run's events"),
        "{stderr}"
    );
    assert!(stderr.contains("taking writes again"), "{stderr}");
    let id = run_id_of(&stdout);
    let printed: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let shown = disk.show(&state, &id);
    assert_eq!(shown["run"]["status"], "succeeded");
    let events = shown["events"].as_array().unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (0..printed.len() as i64).collect::<Vec<_>>(),
        "every printed event is in the journal, in order"
    );
    for (stored, printed) in events.iter().zip(&printed) {
        assert_eq!(stored["event"]["event"], printed["event"]);
    }
    assert!(
        !disk.outside(&state.join("intact").join(&id)).exists(),
        "the intact mark of a run recorded to its end is removed"
    );
    drop(disk);
    let _ = std::fs::remove_dir_all(&base);
}

/// A journal on a read-only file system can still be read: `runs list`,
/// `runs show` and `stats` open it read-only, while `runner exec` says it
/// cannot write it and starts nothing.
#[test]
fn a_read_only_journal_can_be_listed_and_shown_but_not_run_on() {
    let base = std::env::temp_dir().join(format!("runner-crash-ro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let state = base.join("state");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut journal = SqliteJournal::open(&state.join("journal.sqlite")).unwrap();
    let row = runner::record::RunRow {
        id: "1-1".into(),
        playbook: "kept".into(),
        file: "p.yaml".into(),
        file_sha256: "00".into(),
        input_args: Vec::new(),
        inputs: serde_json::json!({}),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        started_ms: runner::record::now_ms(),
        finished_ms: None,
        duration_ms: None,
        status: "running".into(),
        rolled_back: false,
        parent: None,
        pid: 1,
        env_file: None,
        guarded: true,
        started_by: None,
    };
    journal.begin(&row).unwrap();
    let ended = Event::RunFinished {
        status: "succeeded",
        duration_s: 0.1,
        budget_s: None,
        handler_failures: 0,
    };
    journal
        .record("1-1", 0, row.started_ms + 100, 100, &ended)
        .unwrap();
    drop(journal);

    let ns = MountNs::read_only(&state);
    let list = ns.runner(&state).args(["runs", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        listed.contains("1-1") && listed.contains("succeeded"),
        "{listed}"
    );
    let show = ns
        .runner(&state)
        .args(["runs", "show", "1-1"])
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let stats = ns.runner(&state).args(["stats"]).output().unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(String::from_utf8_lossy(&stats.stdout).contains("kept"));

    let exec = ns
        .runner(&state)
        .args(["exec", "tests/crash/journal-full.yaml", "--output", "json"])
        .args(["-i", &format!("dir={}", data.display())])
        .args(["-i", "state=/nonexistent"])
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&exec.stderr);
    assert_eq!(exec.status.code(), Some(2), "{refused}");
    assert!(
        refused.contains("cannot be written") && refused.contains("Read-only file system"),
        "{refused}"
    );
    assert!(!data.join("log").exists(), "nothing ran");
    drop(ns);
    let _ = std::fs::remove_dir_all(&base);
}

/// The journal keeps the texts a run started from. A run killed half-way
/// resumes on a machine that lacks its playbook and environment file (here:
/// both deleted) from those copies; a file still at its place that changed
/// since is refused, for the playbook and for the environment file alike.
#[test]
fn a_killed_run_resumes_from_the_journals_copy_of_its_files() {
    let base = std::env::temp_dir().join(format!("runner-crash-copies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (state, data, files) = (base.join("state"), base.join("data"), base.join("files"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    let playbook = files.join("canary.yaml");
    let original = std::fs::read_to_string(root().join("tests/crash/canary.yaml")).unwrap();
    std::fs::write(&playbook, &original).unwrap();
    // The input comes from the environment file only: without its text the
    // resumed run could not be planned.
    let env = files.join("env.yaml");
    let env_text = format!("inputs:\n  dir: {}\n", data.display());
    std::fs::write(&env, &env_text).unwrap();
    let mut child = runner(&state)
        .args([
            "exec",
            playbook.to_str().unwrap(),
            "--env",
            env.to_str().unwrap(),
        ])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .take_while(|l| !(l.contains("\"step_finished\"") && l.contains("\"shift_25\"")))
        .collect();
    let _ = child.kill();
    child.wait().unwrap();
    assert!(!seen.is_empty(), "the run printed nothing");
    let journal_path = state.join("journal.sqlite");
    let run = SqliteJournal::open(&journal_path)
        .unwrap()
        .list(&runner::record::Filter::default())
        .unwrap()[0]
        .clone();
    assert_eq!(run.status, "running");
    let resume = || runner(&state).args(["resume", &run.id]).output().unwrap();

    // Changed where they are: refused, each naming its file; nothing ran.
    let log_before = std::fs::read_to_string(data.join("log")).unwrap();
    std::fs::write(&playbook, original.replace("sleep 0.03", "sleep 0.04")).unwrap();
    let out = resume();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the playbook `") && err.contains("changed since run"),
        "{err}"
    );
    std::fs::write(&playbook, &original).unwrap();
    std::fs::write(&env, format!("{env_text}# edited\n")).unwrap();
    let out = resume();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the environment file `") && err.contains("changed since run"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("log")).unwrap(),
        log_before
    );

    // Gone: the copies in the journal carry the run on to its end.
    std::fs::remove_dir_all(&files).unwrap();
    let out = resume();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = SqliteJournal::open(&journal_path)
        .unwrap()
        .run(&run.id)
        .unwrap()
        .unwrap();
    assert_eq!(run.status, "succeeded");
    let log = std::fs::read_to_string(data.join("log")).unwrap();
    for step in MAIN_STEPS {
        assert!(log.lines().any(|l| l == step), "{step} never ran: {log}");
    }
    // A re-run of it works from the copies too, and keeps them for itself.
    let out = runner(&state)
        .args(["rerun", &run.id, "--from", "shift_100"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = SqliteJournal::open(&journal_path).unwrap();
    let rerun = &journal.list(&runner::record::Filter::default()).unwrap()[0];
    assert_eq!(rerun.parent.as_deref(), Some(run.id.as_str()));
    let kept: Vec<String> = journal
        .sources(&rerun.id)
        .unwrap()
        .into_iter()
        .map(|s| format!("{} {}", s.kind.as_str(), s.text.len()))
        .collect();
    assert_eq!(
        kept,
        [
            format!("playbook {}", original.len()),
            format!("environment {}", env_text.len())
        ]
    );
    let _ = std::fs::remove_dir_all(&base);
}
