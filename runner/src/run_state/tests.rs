use serde_json::Map;

use super::*;
use crate::engine::StepRecord;
use crate::engine::watch::Verdict;

fn record(stage: Option<&str>, step: &str, status: &'static str) -> StepRecord {
    StepRecord {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        status,
        attempts: 1,
        duration_ms: 10,
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

fn started(stage: Option<&str>, step: &str) -> Event {
    Event::StepStarted {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        kind: "plugin",
        handler: None,
    }
}

/// A handler's start, as the engine writes it: it names its list.
fn started_in(stage: Option<&str>, step: &str, list: &'static str) -> Event {
    Event::StepStarted {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        kind: "plugin",
        handler: Some(list),
    }
}

fn ended(stage: Option<&str>, step: &str, status: &'static str) -> Event {
    Event::StepFinished(record(stage, step, status))
}

fn ok(stage: Option<&str>, step: &str) -> Event {
    ended(stage, step, "succeeded")
}

fn ended_in(stage: Option<&str>, step: &str, status: &'static str, list: &'static str) -> Event {
    let mut r = record(stage, step, status);
    r.handler = Some(list);
    Event::StepFinished(r)
}

fn stage_started(stage: &str) -> Event {
    Event::StageStarted {
        stage: stage.to_owned(),
        timeout_s: None,
        budget_s: None,
    }
}

fn stage_finished(stage: &str, status: &'static str) -> Event {
    Event::StageFinished {
        stage: stage.to_owned(),
        status,
        duration_s: 1.0,
        budget_s: None,
    }
}

fn handlers(stage: Option<&str>, kind: &'static str) -> Event {
    Event::Handlers {
        stage: stage.map(str::to_owned),
        kind,
    }
}

fn run_finished(status: &'static str) -> Event {
    Event::RunFinished {
        status,
        duration_s: 1.0,
        budget_s: None,
        handler_failures: 0,
    }
}

fn measurement(stage: Option<&str>, step: &str) -> Event {
    Event::Measurement {
        stage: stage.map(str::to_owned),
        step: step.to_owned(),
        n: 1,
        verdict: Verdict::Success,
        outputs: Map::new(),
        error: None,
        nan: None,
    }
}

/// Each step as `stage/id`, then `: list kind` for a handler.
fn placed(state: &RunState) -> Vec<String> {
    state
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut t = format!("{}/{}", s.stage.as_deref().unwrap_or("-"), s.id);
            if let Some(l) = state.list_of(i) {
                t.push_str(&format!(
                    ": {} of {}",
                    l.kind,
                    l.scope.as_deref().unwrap_or("the run")
                ));
            }
            t
        })
        .collect()
}

const A: Option<&str> = Some("a");

#[test]
fn on_failure_and_finally_take_every_step_until_the_next_stage_event() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "deploy"),
        ended(A, "deploy", "failed"),
        handlers(A, "on_failure"),
        started(A, "undo"),
        ok(A, "undo"),
        handlers(A, "finally"),
        ended(A, "tell", "skipped"),
        stage_finished("a", "failed"),
        // After its stage ended, a step of it is not a handler (a damaged record).
        ok(A, "late"),
        handlers(None, "on_failure"),
        started(None, "page"),
        ok(None, "page"),
        run_finished("failed"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/deploy",
            "a/undo: on_failure of a",
            "a/tell: finally of a",
            "a/late",
            "-/page: on_failure of the run",
        ]
    );
    let a = &state.stages()[0];
    assert_eq!((a.steps.clone(), a.lists.clone()), (vec![0, 3], vec![0, 1]));
    assert_eq!(state.lists()[2].in_stage, None);
}

/// The engine's sequence for a stage budget (`tests/engine/budget.yaml`): the
/// escalation runs beside `rollout`; `after` starts once both are done.
#[test]
fn a_stages_budget_handlers_run_beside_its_steps() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "rollout"),
        handlers(A, "on_budget_exceeded"),
        started(A, "escalate"),
        ok(A, "escalate"),
        ok(A, "rollout"),
        started(A, "after"),
        ok(A, "after"),
        stage_finished("a", "succeeded"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/rollout",
            "a/escalate: on_budget_exceeded of a",
            "a/after"
        ]
    );
}

/// Handlers in a row (one skipped), and the case the events cannot settle: a
/// stage step ended while the last handler ran, and a step starts as it ends.
#[test]
fn budget_handlers_in_a_row_then_a_released_step_is_the_stages() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "rollout"),
        handlers(A, "on_budget_exceeded"),
        started(A, "tell"),
        ok(A, "tell"),
        ended(A, "page", "skipped"),
        started(A, "ask"),
        ok(A, "rollout"),
        ok(A, "ask"),
        started(A, "verify"),
        handlers(None, "on_budget_exceeded"),
        started(None, "page_run"),
        started(A, "beside"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/rollout",
            "a/tell: on_budget_exceeded of a",
            "a/page: on_budget_exceeded of a",
            "a/ask: on_budget_exceeded of a",
            "a/verify",
            "-/page_run: on_budget_exceeded of the run",
            "a/beside",
        ]
    );
}

/// While a handler runs, a second new step cannot be one; and a handler that
/// ends with no step starting at once ends its list.
#[test]
fn one_budget_handler_at_a_time_and_the_list_ends_with_a_pause() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "watch"),
        handlers(A, "on_budget_exceeded"),
        started(A, "tell"),
        started(A, "other"),
        ok(A, "tell"),
        measurement(A, "watch"),
        started(A, "next"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/watch",
            "a/tell: on_budget_exceeded of a",
            "a/other",
            "a/next"
        ]
    );
    assert_eq!(state.steps()[0].details, [6]);
}

/// Once the events name a list's handlers, a step they do not name is the
/// stage's, with no guess; a named step with no list open is a stage step.
#[test]
fn named_handlers_leave_no_guess() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "rollout"),
        handlers(A, "on_budget_exceeded"),
        started_in(A, "tell", "on_budget_exceeded"),
        ended_in(A, "tell", "succeeded", "on_budget_exceeded"),
        ended_in(A, "page", "skipped", "on_budget_exceeded"),
        started(A, "verify"),
        handlers(A, "on_failure"),
        started_in(A, "undo", "on_failure"),
        started(A, "stray"),
        stage_finished("a", "failed"),
        started_in(A, "orphan", "on_failure"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/rollout",
            "a/tell: on_budget_exceeded of a",
            "a/page: on_budget_exceeded of a",
            "a/verify",
            "a/undo: on_failure of a",
            "a/stray",
            "a/orphan",
        ]
    );
}

/// A timeout drops the budget handlers that run (the engine stops them with
/// no record); the list takes no more steps.
#[test]
fn a_timeout_drops_the_running_budget_handlers() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "build"),
        handlers(A, "on_budget_exceeded"),
        ok(A, "tell"),
        started(A, "go_on"),
        Event::TimedOut {
            stage: Some("a".into()),
            timeout_s: 5.0,
        },
        ended(A, "build", "cancelled"),
        started(A, "after"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/build",
            "a/tell: on_budget_exceeded of a",
            "a/go_on: on_budget_exceeded of a",
            "a/after",
        ]
    );
    let dropped: Vec<bool> = state.steps().iter().map(|s| s.dropped).collect();
    assert_eq!(dropped, [false, false, true, false]);
    assert_eq!(state.steps()[2].status(), "unfinished");
}

#[test]
fn the_runs_budget_handlers_are_the_steps_without_a_stage() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "rollout"),
        handlers(None, "on_budget_exceeded"),
        started(None, "notify"),
        started(A, "beside"),
        ok(None, "notify"),
        started(None, "ask"),
    ]);
    assert_eq!(
        placed(&state),
        [
            "a/rollout",
            "-/notify: on_budget_exceeded of the run",
            "a/beside",
            "-/ask: on_budget_exceeded of the run",
        ]
    );
}

/// Damaged records: a finish without a start, a second finish, details of a
/// step that does not run, a second start, a stage that finishes twice.
#[test]
fn a_damaged_record_is_told_as_it_is() {
    let events = [
        ended(A, "ghost", "succeeded"),
        stage_started("a"),
        measurement(A, "x"),
        started(A, "x"),
        ok(A, "x"),
        ok(A, "x"),
        started(A, "y"),
        started(A, "y"),
        stage_finished("a", "failed"),
        stage_finished("a", "succeeded"),
        Event::BudgetExceeded {
            stage: Some("nowhere".into()),
            budget_s: 1.0,
            elapsed_s: 2.0,
        },
        run_finished("failed"),
        ok(None, "after_the_end"),
    ];
    let mut state = RunState::new();
    let about: Vec<About> = events.iter().map(|e| state.apply(e)).collect();
    assert_eq!(
        about,
        [
            About::Step(0),
            About::Stage(0),
            About::Nothing,
            About::Step(1),
            About::Step(1),
            About::Step(2),
            About::Step(3),
            About::Step(4),
            About::Stage(0),
            About::Stage(1),
            About::Nothing,
            About::Run,
            About::Step(5),
        ]
    );
    let steps = state.steps();
    // Seen before its stage started: it is that stage's.
    assert_eq!(steps[0].in_stage, Some(0));
    assert_eq!(
        (steps[0].kind, steps[0].started, steps[0].finished),
        (None, None, Some(0))
    );
    assert_eq!((steps[1].started, steps[1].finished), (Some(3), Some(4)));
    assert!(steps[1].details.is_empty());
    assert_eq!((steps[2].started, steps[2].finished), (None, Some(5)));
    assert_eq!(state.latest(A, "x"), Some(2));
    assert_eq!(state.latest(A, "y"), Some(4));
    assert_eq!(state.unfinished(), [3, 4]);
    assert_eq!(state.stages()[0].steps, [0, 1, 2, 3, 4]);
    assert_eq!(state.stages().len(), 2);
    assert_eq!(state.stages()[1].status, Some("succeeded"));
    assert_eq!(state.status(), "failed");
    assert_eq!(state.step_of(12), Some(5));
    assert_eq!(state.about(99), About::Nothing);
}

/// A run the runner died in, resumed: what ran is cut short, a restored step
/// that finished earlier in the events is that run of it, the re-run is new.
#[test]
fn a_resumed_run_cuts_what_ran_and_restores_what_finished() {
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "build"),
        ok(A, "build"),
        started(A, "push"),
        Event::RunResumed {
            restored: 1,
            in_flight: vec!["push".into()],
            by: None,
            by_source: None,
        },
        stage_started("a"),
        Event::StepRestored(record(A, "build", "succeeded")),
        Event::StepRestored(record(A, "lint", "succeeded")),
        Event::StepRestored(record(A, "lint", "succeeded")),
        started(A, "push"),
        ok(A, "push"),
        stage_finished("a", "succeeded"),
        run_finished("succeeded"),
    ]);
    let steps = state.steps();
    assert_eq!(
        placed(&state),
        ["a/build", "a/push", "a/lint", "a/lint", "a/push"]
    );
    assert_eq!(state.step_of(6), Some(0));
    assert!(steps[1].cut && !state.unfinished().contains(&1));
    assert_eq!(steps[1].status(), "cut short");
    assert!(state.taken_up(1));
    assert!(steps[2].restored && steps[3].restored);
    assert_eq!((steps[0].in_stage, steps[4].in_stage), (Some(0), Some(1)));
    assert_eq!(state.stages()[0].status, None);
    assert_eq!(state.cause(), None);
}

#[test]
fn what_made_the_run_fail() {
    let mut allowed = record(A, "lint", "failed");
    allowed.error = Some("style".into());
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "lint"),
        Event::StepFinished(allowed),
        started(A, "deploy"),
        ended(A, "deploy", "failed"),
        handlers(A, "on_failure"),
        ended(A, "undo", "failed"),
        stage_finished("a", "failed"),
        run_finished("failed"),
    ]);
    assert!(state.tolerated(0) && !state.tolerated(1) && !state.tolerated(2));
    assert_eq!(state.cause(), Some(Cause::Step(1)));
    assert_eq!(state.failures(), [0, 1, 2]);

    // A budget handler that fails fails the stage: it is the cause.
    let state = RunState::from_events(&[
        stage_started("a"),
        started(A, "rollout"),
        handlers(A, "on_budget_exceeded"),
        started(A, "ask"),
        ended(A, "ask", "failed"),
        ok(A, "rollout"),
        run_finished("failed"),
    ]);
    assert_eq!(state.cause(), Some(Cause::Step(1)));

    // A step that asked for a rollback fails the run even when allowed to fail.
    let mut rollback = record(A, "confirm", "failed");
    rollback.rollback = true;
    let state = RunState::from_events(&[
        stage_started("a"),
        Event::StepFinished(rollback),
        ok(A, "next"),
        run_finished("failed"),
    ]);
    assert!(!state.tolerated(0));
    assert_eq!(state.cause(), Some(Cause::Step(0)));

    // Timeouts and signals, the first of each; nothing at all.
    let timed_out = |stage: Option<&str>| Event::TimedOut {
        stage: stage.map(str::to_owned),
        timeout_s: 1.0,
    };
    let state = RunState::from_events(&[
        Event::Interrupted { signal: "SIGINT" },
        timed_out(A),
        timed_out(None),
        run_finished("timed_out"),
    ]);
    assert_eq!(state.cause(), Some(Cause::Stopped(1)));
    let state = RunState::from_events(&[
        Event::Interrupted { signal: "SIGINT" },
        run_finished("failed"),
    ]);
    assert_eq!(state.cause(), Some(Cause::Stopped(0)));
    assert_eq!(
        RunState::from_events(&[run_finished("failed")]).cause(),
        Some(Cause::Unknown)
    );
    assert_eq!(RunState::new().cause(), Some(Cause::Unknown));
    assert_eq!(RunState::new().status(), "incomplete");
}

/// Whatever comes, in whatever order, the fold neither panics nor points
/// outside what it holds, and it is the same taken whole or one at a time.
#[test]
fn any_sequence_of_events_folds() {
    let b = Some("b");
    let mut named = record(None, "h", "failed");
    named.handler = Some("on_failure");
    let events = vec![
        Event::RunStarted {
            playbook: "p".into(),
            timeout_s: Some(1.0),
            budget_s: Some(1.0),
            by: None,
            by_source: None,
        },
        stage_started("a"),
        stage_started("b"),
        Event::StageSkipped { stage: "a".into() },
        started(A, "x"),
        started(b, "x"),
        started(None, "x"),
        started_in(A, "h", "on_budget_exceeded"),
        started_in(None, "h", "on_failure"),
        ok(A, "x"),
        ok(A, "x"),
        ended(b, "y", "skipped"),
        Event::StepFinished(named.clone()),
        Event::StepRestored(named),
        Event::StepRestored(record(A, "x", "failed")),
        measurement(A, "x"),
        measurement(b, "x"),
        Event::BudgetExceeded {
            stage: Some("a".into()),
            budget_s: 1.0,
            elapsed_s: 1.0,
        },
        Event::BudgetExceeded {
            stage: None,
            budget_s: 1.0,
            elapsed_s: 1.0,
        },
        handlers(A, "on_budget_exceeded"),
        handlers(b, "on_budget_exceeded"),
        handlers(None, "on_budget_exceeded"),
        handlers(A, "finally"),
        Event::TimedOut {
            stage: None,
            timeout_s: 1.0,
        },
        Event::Interrupted { signal: "SIGTERM" },
        Event::RunResumed {
            restored: 0,
            in_flight: Vec::new(),
            by: None,
            by_source: None,
        },
        stage_finished("a", "failed"),
        stage_finished("c", "failed"),
        run_finished("failed"),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..500 {
        let mut order: Vec<&Event> = events.iter().collect();
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        // Some rounds repeat events, as a journal written twice would.
        if round % 3 == 0 {
            let again = order[..order.len() / 2].to_vec();
            order.extend(again);
        }
        let whole = RunState::from_events(order.iter().copied());
        let mut one_by_one = RunState::new();
        for (i, e) in order.iter().enumerate() {
            let about = one_by_one.apply(e);
            assert_eq!(about, whole.about(i));
        }
        assert_eq!(whole.events(), order.len());
        check(&whole);
        let _ = (whole.cause(), whole.failures(), whole.unfinished());
        for s in 0..whole.steps().len() {
            let _ = (whole.tolerated(s), whole.taken_up(s), whole.list_of(s));
        }
    }
}

/// Every index the state holds points at something it holds, and both ways
/// agree (a list's steps name the list, a stage's steps name the stage).
fn check(state: &RunState) {
    let (stages, steps, lists) = (state.stages(), state.steps(), state.lists());
    for (i, step) in steps.iter().enumerate() {
        for at in [step.started, step.finished]
            .into_iter()
            .flatten()
            .chain(step.details.iter().copied())
        {
            assert!(at < state.events());
        }
        match step.list {
            Some(l) => assert!(lists[l].steps.contains(&i)),
            None => {
                if let Some(s) = step.in_stage {
                    assert!(stages[s].steps.contains(&i));
                }
            }
        }
    }
    for (l, list) in lists.iter().enumerate() {
        assert!(list.steps.iter().all(|&s| steps[s].list == Some(l)));
        if let Some(s) = list.in_stage {
            assert!(stages[s].lists.contains(&l));
        }
    }
    for stage in stages {
        assert!(stage.steps.iter().all(|&s| steps[s].list.is_none()));
    }
    for i in 0..state.events() {
        match state.about(i) {
            About::Step(s) => assert!(s < steps.len()),
            About::Stage(s) => assert!(s < stages.len()),
            About::List(l) => assert!(l < lists.len()),
            About::Run | About::Nothing => {}
        }
    }
}
