//! The execution engine: runs a plan's stages and steps, and whatever happens,
//! runs the handlers it promised.
//!
//! Shape of a run: stages one after another; within a stage, steps start as soon
//! as the steps they wait for (`needs:`, else the step before) have finished, up
//! to `max_parallel` at once. Everything runs on one task: plugin attempts are
//! async (wasm yields to the scheduler every epoch tick), so a stage's running
//! steps, its timers (timeouts, budgets) and the interrupt signal are all polled
//! together by one `select!` loop, and cancelling a step is dropping its future.
//!
//! The rules an on-call engineer relies on, each with a test in
//! `runner/tests/engine.rs`:
//! - a failed step (without `continue_on_error`) stops the stage: no new step
//!   starts, steps already running finish, then the stage's `on_failure`
//!   handlers, the stage's `finally`, the run's `on_failure` and `finally` run;
//! - a hard timeout (stage or run) and SIGINT/SIGTERM cancel the running steps at
//!   once and then run the same handlers; handlers are never cut by the timeout or
//!   signal that triggered them (a second Ctrl-C, handled by the CLI, is the way
//!   out);
//! - a soft budget that is passed runs `on_budget_exceeded` (stage budget: the
//!   stage's; run budget: the run's) while no new step starts; if every handler
//!   succeeds the run goes on, if one fails (a rejected approval, say) the stage
//!   fails;
//! - a failing handler is reported and counted but never changes the run's status
//!   or hides the original failure; all handlers of a list run.
//!
//! The engine prints nothing and asks nobody directly: every transition is an
//! [`Event`] sent to the [`EventSink`], and a human is asked through the
//! [`approval::Approvals`] store, so any front end can drive it. The run is a
//! tree, and the files follow it: this one holds the public types and `run`
//! (the run's own handlers around its stages); `stage` schedules a stage's
//! steps and handlers; `step` prepares and executes one step; `gate`, `ask` and
//! `watch_loop` are what a step can be besides a plugin call (`watch` judges a
//! measurement, `approval` keeps the requests); `vars` is what expressions see.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

pub mod approval;
mod ask;
pub mod events;
mod gate;
pub mod lock;
mod stage;
mod step;
mod vars;
pub mod watch;
mod watch_loop;

pub use crate::clock::now_rfc3339;
pub use events::{Event, EventSink};

use self::vars::{duration_of, seconds, set_run_status, step_vars};
use crate::expr;
use crate::host::runtime::{LoadedPlugin, Runtime};
use crate::host::state::Granted;
use crate::plan::Plan;

/// Timeout of a step attempt (or of one watch measurement) without its own.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an inconclusive gate or watch waits for a human.
pub const INCONCLUSIVE_APPROVAL_TIMEOUT: Duration = Duration::from_secs(3600);
/// First retry delay when `retry.delay` is not set.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay when `retry.max_delay` is not set.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// What happened to one step.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub step: String,
    /// `succeeded`, `failed`, `skipped` or `cancelled`.
    #[serde(deserialize_with = "events::word")]
    pub status: events::Word,
    pub attempts: u32,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "events::maybe_word"
    )]
    pub error_kind: Option<events::Word>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
    /// Log lines the plugin wrote (redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<crate::caps::log::LogLine>,
    /// Files the step produced, as kept by the runner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<crate::host::runtime::Artifact>,
    /// The handler list the step ran in (`on_failure`, `on_budget_exceeded`,
    /// `finally`); `None` for a stage's own steps.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "events::maybe_word"
    )]
    pub handler: Option<events::Word>,
    /// An approval that timed out with `on_timeout: rollback`: the run fails
    /// whatever `continue_on_error` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

impl StepRecord {
    fn new(stage: Option<&str>, step: &str) -> StepRecord {
        StepRecord {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            status: "skipped",
            attempts: 0,
            duration_ms: 0,
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

    fn fail(&mut self, kind: &'static str, message: impl Into<String>) {
        self.status = "failed";
        self.error = Some(message.into());
        self.error_kind = Some(kind);
    }

    fn succeed(&mut self, summary: impl Into<String>) {
        self.status = "succeeded";
        self.summary = summary.into();
        self.error = None;
        self.error_kind = None;
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub status: RunStatus,
    pub interrupted_by: Option<Interrupt>,
    pub handler_failures: u32,
    pub steps: Vec<StepRecord>,
}

/// What stops a run from outside its playbook: a signal, or the journal
/// failing when the run was told to stop then (`--on-journal-error stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Interrupt {
    Int,
    Term,
    /// The journal stopped taking the run's events.
    Journal,
}

impl Interrupt {
    /// As the `interrupted` event's `signal` says it.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
            Interrupt::Journal => "journal failure",
        }
    }
}

/// Runs `plan` with the loaded plugins (by local name) and their grants.
pub struct Executor<'a> {
    pub runtime: &'a Runtime,
    pub plugins: &'a HashMap<String, LoadedPlugin>,
    pub grants: &'a HashMap<String, Granted>,
    pub memory: &'a HashMap<String, usize>,
    /// Where artifacts are kept, one folder per step; `None`: not kept.
    pub artifacts: Option<PathBuf>,
    /// What the run may still keep as artifacts: one budget for all its steps
    /// (an `Executor` runs one run).
    pub artifact_budget: std::sync::Arc<crate::host::artifacts::RunBudget>,
    /// Where approval requests wait for their answers; `None`: approvals fail.
    pub approvals: Option<&'a dyn approval::Approvals>,
    /// Where `run_report(ID)` reads other runs' reports; `None`: it fails.
    pub reports: Option<std::sync::Arc<dyn expr::RunReports>>,
    /// Who runs it: recorded with the run's start.
    pub actor: crate::identity::Principal,
    /// The run's page in the web UI (`run.url`), when its address is known.
    pub run_url: Option<String>,
    /// Set once when the process gets SIGINT or SIGTERM.
    pub interrupt: tokio::sync::watch::Receiver<Option<Interrupt>>,
    /// Receives every event, in order.
    pub events: &'a dyn EventSink,
    /// What a resumed (or re-run) run takes over from the journal.
    pub resume: Resume,
}

/// What a run takes over from an earlier process (`runner resume`) or an
/// earlier run (`runner rerun`).
#[derive(Debug, Default)]
pub struct Resume {
    /// This run continues one whose process died (`run_resumed`, not `run_started`).
    pub resumed: bool,
    /// Steps that finished: their records are used, they do not run.
    pub restored: HashMap<String, StepRecord>,
    /// Steps that were running when the process died, with the attempts started.
    /// Each runs again if it is `idempotent` or has retry attempts left, and
    /// fails (kind `interrupted`) otherwise. Gates and approvals are evaluated or
    /// asked again.
    pub in_flight: HashMap<String, u32>,
    /// Set when the run had started its failure path before its runner died
    /// (see [`stopping`]): the resumed run finishes that path and starts no
    /// main step.
    pub stopping: Option<Stopping>,
    /// Set when the run is not to be carried on (taken over too many times):
    /// every step in flight fails with this reason, idempotent or not.
    pub give_up: Option<String>,
}

/// Where a run stood on its failure path when its runner died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopping {
    /// How the run is ending: failed, timed out or interrupted.
    pub status: RunStatus,
    /// The stage whose handlers had started or were due, or `None` when only
    /// the run's own handlers are left.
    pub stage: Option<String>,
}

/// Reads from a run's events whether it had started its failure path: an
/// interrupt (SIGINT, SIGTERM), a timeout, a failure handler list that started,
/// or a stage that ended other than `succeeded`. `None` when it had not (a
/// failed step restored on resume then stops its stage as it would have).
pub fn stopping<'e>(events: impl IntoIterator<Item = &'e Event>) -> Option<Stopping> {
    let mut open: Option<String> = None;
    let mut found: Option<Stopping> = None;
    for event in events {
        match event {
            Event::StageStarted { stage, .. } => open = Some(stage.clone()),
            Event::StageFinished { stage, status, .. } => {
                if open.as_deref() == Some(stage.as_str()) {
                    open = None;
                }
                if let Some(f) = found.as_mut().filter(|f| f.stage.as_deref() == Some(stage)) {
                    f.stage = None;
                } else if found.is_none() && *status != "succeeded" {
                    found = Some(Stopping {
                        status: status_of(status),
                        stage: None,
                    });
                }
            }
            Event::Interrupted { .. } if found.is_none() => {
                found = Some(Stopping {
                    status: RunStatus::Interrupted,
                    stage: open.clone(),
                });
            }
            Event::TimedOut { .. } if found.is_none() => {
                found = Some(Stopping {
                    status: RunStatus::TimedOut,
                    stage: open.clone(),
                });
            }
            Event::Handlers { stage, kind, .. } if found.is_none() && *kind == "on_failure" => {
                found = Some(Stopping {
                    status: RunStatus::Failed,
                    stage: stage.clone(),
                });
            }
            _ => {}
        }
    }
    found
}

fn status_of(word: &str) -> RunStatus {
    match word {
        "timed_out" => RunStatus::TimedOut,
        "interrupted" => RunStatus::Interrupted,
        _ => RunStatus::Failed,
    }
}

/// What a run carries from stage to stage.
struct RunState {
    run_id: String,
    started: Instant,
    deadline: Option<(Instant, Duration)>,
    budget: Option<(Instant, Duration)>,
    budget_escalated: bool,
    status: RunStatus,
    interrupted_by: Option<Interrupt>,
    handler_failures: u32,
    records: Vec<StepRecord>,
}

impl Executor<'_> {
    fn emit(&self, event: Event) {
        self.events.emit(&event);
    }

    /// What expressions of this run are evaluated in.
    fn scope<'s>(&'s self, vars: &'s Map<String, Value>) -> expr::Scope<'s> {
        expr::Scope {
            vars,
            reports: self.reports.as_ref(),
        }
    }

    pub async fn run(&self, plan: &Plan, run_id: &str) -> RunReport {
        let started = Instant::now();
        let timeout = duration_of(plan.timeout.as_ref());
        let budget = duration_of(plan.budget.as_ref());
        let mut st = RunState {
            run_id: run_id.to_owned(),
            started,
            deadline: timeout.map(|t| (started + t, t)),
            budget: budget.map(|b| (started + b, b)),
            budget_escalated: false,
            status: RunStatus::Succeeded,
            interrupted_by: None,
            handler_failures: 0,
            records: Vec::new(),
        };
        if self.resume.resumed {
            let mut in_flight: Vec<String> = self.resume.in_flight.keys().cloned().collect();
            in_flight.sort();
            self.emit(Event::RunResumed {
                restored: self.resume.restored.len(),
                in_flight,
                by: Some(self.actor.name.clone()),
                by_source: Some(self.actor.source.as_str().to_owned()),
            });
        } else {
            self.emit(Event::RunStarted {
                by: Some(self.actor.name.clone()),
                by_source: Some(self.actor.source.as_str().to_owned()),
                playbook: plan.playbook.clone(),
                timeout_s: timeout.map(seconds),
                budget_s: budget.map(seconds),
            });
        }
        let mut vars = Map::new();
        let inputs: Map<String, Value> = plan
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect();
        vars.insert("inputs".into(), Value::Object(inputs));
        // Every step is known from the start, as `pending` until it ends, so
        // `has(steps.x.outputs.y)` and `steps.x.status` work for a step that did
        // not run (a rollback handler asking whether production was touched).
        let pending = |s: &crate::plan::PlanStep| {
            (
                s.step.id.to_string(),
                json!({ "status": "pending", "outputs": {}, "summary": "", "duration": 0.0, "attempts": 0 }),
            )
        };
        let handlers = |h: &crate::plan::PlanHandlers| {
            h.on_failure
                .iter()
                .chain(&h.on_budget_exceeded)
                .chain(&h.finally)
                .map(pending)
                .collect::<Vec<_>>()
        };
        let mut all_steps: Map<String, Value> = Map::new();
        for stage in &plan.stages {
            all_steps.extend(stage.steps.iter().map(pending));
            all_steps.extend(handlers(&stage.handlers));
        }
        all_steps.extend(handlers(&plan.handlers));
        vars.insert("steps".into(), Value::Object(all_steps));
        vars.insert("stages".into(), json!({}));
        vars.insert(
            "run".into(),
            json!({
                "id": run_id,
                "playbook": plan.playbook,
                "started_at": now_rfc3339(),
                "status": "running",
                "elapsed": 0.0,
                "budget_left": budget.map(seconds),
                "url": self.run_url.clone().unwrap_or_default(),
            }),
        );
        if let Some(stopping) = &self.resume.stopping {
            // The handlers about to run see every step that had finished.
            for record in self.resume.restored.values() {
                step_vars(&mut vars, record);
            }
            if stopping.stage.is_none() {
                st.status = stopping.status;
            }
        }
        for stage in &plan.stages {
            self.interrupted_between_steps(&mut st);
            if st.status != RunStatus::Succeeded {
                break;
            }
            self.stage(plan, stage, &mut vars, &mut st).await;
        }
        self.interrupted_between_steps(&mut st);
        set_run_status(&mut vars, st.status.as_str());
        if st.status != RunStatus::Succeeded {
            self.handlers(
                None,
                "on_failure",
                &plan.handlers.on_failure,
                &mut vars,
                &mut st,
            )
            .await;
        }
        self.handlers(None, "finally", &plan.handlers.finally, &mut vars, &mut st)
            .await;
        self.emit(Event::RunFinished {
            status: st.status.as_str(),
            duration_s: seconds(started.elapsed()),
            budget_s: budget.map(seconds),
            handler_failures: st.handler_failures,
        });
        RunReport {
            status: st.status,
            interrupted_by: st.interrupted_by,
            handler_failures: st.handler_failures,
            steps: st.records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_path_is_read_back_from_the_events() {
        let started = |stage: &str| Event::StageStarted {
            stage: stage.into(),
            timeout_s: None,
            budget_s: None,
        };
        let finished = |stage: &str, status: &'static str| Event::StageFinished {
            stage: stage.into(),
            status,
            duration_s: 1.0,
            budget_s: None,
        };
        let handlers = |stage: Option<&str>| Event::Handlers {
            stage: stage.map(str::to_owned),
            kind: "on_failure",
        };
        let at = |status, stage: Option<&str>| {
            Some(Stopping {
                status,
                stage: stage.map(str::to_owned),
            })
        };
        // Nothing went wrong yet.
        assert_eq!(
            stopping(&[started("a"), finished("a", "succeeded"), started("b")]),
            None
        );
        // Interrupted in `b`: `b`'s handlers are due, then the run's.
        let interrupted = [
            started("a"),
            finished("a", "succeeded"),
            started("b"),
            Event::Interrupted { signal: "SIGTERM" },
        ];
        assert_eq!(
            stopping(&interrupted),
            at(RunStatus::Interrupted, Some("b"))
        );
        // `b`'s handlers ran to the end: only the run's are left.
        let mut done = interrupted.to_vec();
        done.extend([handlers(Some("b")), finished("b", "interrupted")]);
        assert_eq!(stopping(&done), at(RunStatus::Interrupted, None));
        // A timeout of the run between stages.
        assert_eq!(
            stopping(&[
                started("a"),
                finished("a", "succeeded"),
                Event::TimedOut {
                    stage: None,
                    timeout_s: 5.0
                }
            ]),
            at(RunStatus::TimedOut, None)
        );
        // A failed step whose stage's rollback had started.
        assert_eq!(
            stopping(&[started("a"), handlers(Some("a"))]),
            at(RunStatus::Failed, Some("a"))
        );
        // A stage that failed without handlers: the run's handlers are left.
        assert_eq!(
            stopping(&[started("a"), finished("a", "failed")]),
            at(RunStatus::Failed, None)
        );
    }
}
