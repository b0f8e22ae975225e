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

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde_json::{Map, Value, json};

pub mod approval;
pub mod events;
pub mod lock;
pub mod watch;

pub use events::{Event, EventSink};

use crate::expr;
use crate::host::runtime::{Limits, LoadedPlugin, Runtime, StepFailure};
use crate::host::state::Granted;
use crate::plan::{Plan, PlanStage, PlanStep, Runs};
use crate::playbook::model::{OnInconclusive, OnTimeout, Watch};
use crate::playbook::scalars::parse_duration;

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

/// A step, prepared against the run's context: nothing left to evaluate but
/// what the step does over time.
enum Work {
    Skip,
    /// The step cannot start (its `if` or `with:` does not evaluate).
    Broken(&'static str, String),
    Plugin(Attempts),
    Watch(Attempts, Watch, Box<Map<String, Value>>),
    /// The outcome, and its event (sent when the step starts).
    Gate(GateOutcome, Box<Event>),
    Approval(ApprovalWork),
}

struct Attempts {
    plugin: String,
    input: Value,
    limits: Limits,
    max_attempts: u32,
    delay: Duration,
    factor: f64,
    max_delay: Duration,
}

enum GateOutcome {
    Pass,
    Fail(String),
    Inconclusive(OnInconclusive),
}

struct ApprovalWork {
    prompt: String,
    approvers: Vec<String>,
    timeout: Duration,
    on_timeout: OnTimeout,
}

/// Which event reports a step record: `StepFinished` or `StepRestored`.
type Reporter = fn(StepRecord) -> Event;

type StepFuture<'f> = Pin<Box<dyn Future<Output = (usize, StepRecord)> + Send + 'f>>;
type Escalation<'f> = Pin<Box<dyn Future<Output = (Vec<StepRecord>, bool)> + Send + 'f>>;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn duration_of(text: Option<&String>) -> Option<Duration> {
    text.and_then(|t| parse_duration(t).ok())
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
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

    async fn stage(
        &self,
        plan: &Plan,
        stage: &PlanStage,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        let begin = Instant::now();
        set_clock(vars, st);
        let runs = match stage.runs {
            Runs::Depends => condition(stage.condition.as_deref(), self.scope(vars)),
            r => Ok(r == Runs::Yes),
        };
        let runs = match runs {
            Ok(r) => r,
            Err(e) => {
                // A stage whose `if` cannot be evaluated fails: guessing either way
                // could skip a rollback or deploy when it should not.
                self.emit(Event::StageStarted {
                    stage: stage.id.clone(),
                    timeout_s: None,
                    budget_s: None,
                });
                let mut record = StepRecord::new(Some(&stage.id), "if");
                record.fail("invalid-input", format!("the stage's `if`: {e}"));
                self.finish(record, vars, st);
                st.status = RunStatus::Failed;
                false
            }
        };
        if !runs && st.status == RunStatus::Succeeded {
            self.emit(Event::StageSkipped {
                stage: stage.id.clone(),
            });
            stage_vars(vars, &stage.id, "skipped", Duration::ZERO);
            return;
        }
        let timeout = duration_of(stage.timeout.as_ref());
        let budget = duration_of(stage.budget.as_ref());
        if runs {
            self.emit(Event::StageStarted {
                stage: stage.id.clone(),
                timeout_s: timeout.map(seconds),
                budget_s: budget.map(seconds),
            });
            let limits = StageClock {
                deadline: timeout.map(|t| (begin + t, t)),
                budget: budget.map(|b| (begin + b, b)),
            };
            self.stage_steps(plan, stage, limits, vars, st).await;
        }
        let status = match st.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
        };
        stage_vars(vars, &stage.id, status, begin.elapsed());
        if st.status != RunStatus::Succeeded {
            set_run_status(vars, st.status.as_str());
            self.handlers(
                Some(&stage.id),
                "on_failure",
                &stage.handlers.on_failure,
                vars,
                st,
            )
            .await;
        }
        self.handlers(
            Some(&stage.id),
            "finally",
            &stage.handlers.finally,
            vars,
            st,
        )
        .await;
        self.emit(Event::StageFinished {
            stage: stage.id.clone(),
            status,
            duration_s: seconds(begin.elapsed()),
            budget_s: budget.map(seconds),
        });
    }

    /// A signal that came while no stage loop was listening (during a stage's
    /// handlers, say) still stops the run before anything else starts.
    fn interrupted_between_steps(&self, st: &mut RunState) {
        if st.interrupted_by.is_some() {
            return;
        }
        // Copied out: the borrow must not be held while the event is
        // recorded (recording it may set the interrupt, see cli/exec.rs).
        let pending = *self.interrupt.borrow();
        if let Some(signal) = pending {
            self.emit(Event::Interrupted {
                signal: signal.name(),
            });
            st.interrupted_by = Some(signal);
            if st.status == RunStatus::Succeeded {
                st.status = RunStatus::Interrupted;
            }
        }
    }

    /// The scheduling loop of one stage.
    async fn stage_steps(
        &self,
        plan: &Plan,
        stage: &PlanStage,
        clock: StageClock,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        let steps = &stage.steps;
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.step.id.as_str(), i))
            .collect();
        // Kahn's scheme: each step counts the steps it still waits for; a step
        // whose count reaches zero is ready. Ready steps start in list order.
        let mut waiting_for = vec![0usize; steps.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        for (i, p) in steps.iter().enumerate() {
            for j in p.after.iter().filter_map(|a| index.get(a.as_str())) {
                waiting_for[i] += 1;
                dependents[*j].push(i);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..steps.len()).filter(|&i| waiting_for[i] == 0).collect();
        let mut done = |i: usize, ready: &mut std::collections::BTreeSet<usize>| {
            for &k in &dependents[i] {
                waiting_for[k] -= 1;
                if waiting_for[k] == 0 {
                    ready.insert(k);
                }
            }
        };
        let run_id = st.run_id.clone();
        let mut state = vec![Slot::Waiting; steps.len()];
        let max_parallel = plan.max_parallel.max(1) as usize;
        let mut running: FuturesUnordered<StepFuture<'_>> = FuturesUnordered::new();
        let mut escalation: Option<Escalation<'_>> = None;
        let mut stage_budget_fired = false;
        let mut failed = false;
        let mut interrupt = self.interrupt.clone();
        let mut interrupt_open = true;
        let sid = stage.id.as_str();
        if let Some(stopping) = self
            .resume
            .stopping
            .as_ref()
            .filter(|s| s.stage.as_deref() == Some(sid))
        {
            // The run was on its failure path in this stage when its runner
            // died: what finished is restored, nothing else starts, and the
            // stage's handlers run next.
            for p in steps {
                if let Some(record) = self.resume.restored.get(p.step.id.as_str()) {
                    self.record_step(record.clone(), Event::StepRestored, vars, st);
                }
            }
            st.status = stopping.status;
            return;
        }
        loop {
            // An interrupt set while this loop was busy (the journal failing
            // as a step finished) stops the stage before anything starts.
            let pending = *interrupt.borrow_and_update();
            if let Some(signal) = pending {
                drop(escalation.take());
                self.stop_stage(signal, sid, steps, &state, &mut running, vars, st);
                return;
            }
            // Start what can start.
            while !failed && escalation.is_none() && running.len() < max_parallel {
                let Some(i) = ready.pop_first() else { break };
                set_clock(vars, st);
                let p = &steps[i];
                if let Some((record, event)) = self.taken_over(Some(sid), p) {
                    state[i] = Slot::Done;
                    done(i, &mut ready);
                    // A step restored as cancelled or timed out was stopped
                    // with its stage: it stops the stage as a failure does.
                    if record.rollback
                        || matches!(record.status, "cancelled" | "timed_out")
                        || (record.status == "failed" && !p.step.continue_on_error)
                    {
                        failed = true;
                    }
                    self.record_step(record, event, vars, st);
                    continue;
                }
                match self.prepare(Some(sid), p, vars) {
                    Work::Skip => {
                        state[i] = Slot::Done;
                        done(i, &mut ready);
                        let record = StepRecord::new(Some(sid), p.step.id.as_str());
                        self.finish(record, vars, st);
                    }
                    work => {
                        state[i] = Slot::Running;
                        self.emit(Event::StepStarted {
                            stage: Some(stage.id.clone()),
                            step: p.step.id.to_string(),
                            kind: kind_of(p),
                            handler: None,
                        });
                        let fut = self.execute(Some(sid), p, work, &run_id);
                        running.push(Box::pin(async move { (i, fut.await) }));
                    }
                }
            }
            if running.is_empty() && escalation.is_none() {
                break;
            }
            let stage_budget = clock.budget.filter(|_| !stage_budget_fired);
            let run_budget = st.budget.filter(|_| !st.budget_escalated);
            tokio::select! {
                Some((i, record)) = running.next(), if !running.is_empty() => {
                    state[i] = Slot::Done;
                    done(i, &mut ready);
                    let stops = record.rollback
                        || (record.status == "failed" && !steps[i].step.continue_on_error);
                    self.finish(record, vars, st);
                    if stops {
                        failed = true;
                    }
                }
                (records, ok) = async { escalation.as_mut().expect("guarded").await }, if escalation.is_some() => {
                    escalation = None;
                    for r in records {
                        step_vars(vars, &r);
                        st.records.push(r);
                    }
                    if !ok {
                        failed = true;
                    }
                }
                _ = until(clock.deadline.map(|d| d.0)) => {
                    let (_, limit) = clock.deadline.expect("a deadline fired");
                    self.emit(Event::TimedOut { stage: Some(stage.id.clone()), timeout_s: seconds(limit) });
                    self.cancel(sid, steps, &state, &mut running, "the stage timed out", vars, st);
                    st.status = RunStatus::TimedOut;
                    return;
                }
                _ = until(st.deadline.map(|d| d.0)) => {
                    let (_, limit) = st.deadline.expect("a deadline fired");
                    self.emit(Event::TimedOut { stage: None, timeout_s: seconds(limit) });
                    self.cancel(sid, steps, &state, &mut running, "the run timed out", vars, st);
                    st.status = RunStatus::TimedOut;
                    return;
                }
                _ = until(stage_budget.map(|b| b.0)), if escalation.is_none() => {
                    stage_budget_fired = true;
                    let (_, budget) = clock.budget.expect("a budget fired");
                    // A stage without its own escalation uses the run's.
                    let handlers = if stage.handlers.on_budget_exceeded.is_empty() {
                        &plan.handlers.on_budget_exceeded
                    } else {
                        &stage.handlers.on_budget_exceeded
                    };
                    escalation = self.escalate(Some(sid), budget, clock_start(clock.budget), handlers, vars, st);
                }
                _ = until(run_budget.map(|b| b.0)), if escalation.is_none() => {
                    st.budget_escalated = true;
                    let (_, budget) = st.budget.expect("a budget fired");
                    escalation = self.escalate(None, budget, st.started, &plan.handlers.on_budget_exceeded, vars, st);
                }
                changed = interrupt.changed(), if interrupt_open => {
                    match changed {
                        Err(_) => interrupt_open = false,
                        Ok(()) => {
                            let pending = *interrupt.borrow_and_update();
                            if let Some(signal) = pending {
                                drop(escalation.take());
                                self.stop_stage(signal, sid, steps, &state, &mut running, vars, st);
                                return;
                            }
                        }
                    }
                }
            }
        }
        if failed {
            st.status = RunStatus::Failed;
        }
    }

    /// Stops the stage for an interrupt: what runs is cancelled, the run is
    /// `interrupted`.
    #[allow(clippy::too_many_arguments)]
    fn stop_stage(
        &self,
        signal: Interrupt,
        stage: &str,
        steps: &[PlanStep],
        state: &[Slot],
        running: &mut FuturesUnordered<StepFuture<'_>>,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        self.emit(Event::Interrupted {
            signal: signal.name(),
        });
        let why = format!("the run was interrupted ({})", signal.name());
        self.cancel(stage, steps, state, running, &why, vars, st);
        st.status = RunStatus::Interrupted;
        st.interrupted_by = Some(signal);
    }

    /// Cancels the running steps of a stage (dropping them stops their plugins)
    /// and records each as cancelled.
    #[allow(clippy::too_many_arguments)]
    fn cancel(
        &self,
        stage: &str,
        steps: &[PlanStep],
        state: &[Slot],
        running: &mut FuturesUnordered<StepFuture<'_>>,
        why: &str,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        running.clear();
        for i in (0..steps.len()).filter(|&i| state[i] == Slot::Running) {
            let mut record = StepRecord::new(Some(stage), steps[i].step.id.as_str());
            record.status = "cancelled";
            record.error = Some(why.to_owned());
            record.error_kind = Some("cancelled");
            self.finish(record, vars, st);
        }
    }

    /// Starts the `on_budget_exceeded` handlers of a stage (or of the run): they
    /// run beside the steps already running, on a copy of the context.
    fn escalate<'f>(
        &'f self,
        stage: Option<&'f str>,
        budget: Duration,
        since: Instant,
        handlers: &'f [PlanStep],
        vars: &Map<String, Value>,
        st: &RunState,
    ) -> Option<Escalation<'f>> {
        self.emit(Event::BudgetExceeded {
            stage: stage.map(str::to_owned),
            budget_s: seconds(budget),
            elapsed_s: seconds(since.elapsed()),
        });
        if handlers.is_empty() {
            return None;
        }
        self.emit(Event::Handlers {
            stage: stage.map(str::to_owned),
            kind: "on_budget_exceeded",
        });
        let mut scope = vars.clone();
        let run_id = st.run_id.clone();
        Some(Box::pin(async move {
            let mut records = Vec::new();
            let mut ok = true;
            for p in handlers {
                if let Some((record, event)) = self.taken_over(stage, p) {
                    if record.status == "failed" {
                        ok = false;
                    }
                    step_vars(&mut scope, &record);
                    self.emit(event(record.clone()));
                    records.push(record);
                    continue;
                }
                let record = match self.prepare(stage, p, &scope) {
                    Work::Skip => StepRecord::new(stage, p.step.id.as_str()),
                    work => {
                        self.emit(Event::StepStarted {
                            stage: stage.map(str::to_owned),
                            step: p.step.id.to_string(),
                            kind: kind_of(p),
                            handler: Some("on_budget_exceeded"),
                        });
                        self.execute(stage, p, work, &run_id).await
                    }
                };
                let mut record = record;
                record.handler = Some("on_budget_exceeded");
                if record.status == "failed" {
                    ok = false;
                }
                step_vars(&mut scope, &record);
                self.emit(Event::StepFinished(record.clone()));
                records.push(record);
            }
            (records, ok)
        }))
    }

    /// Runs a list of handlers in order, all of them, whatever each does.
    async fn handlers(
        &self,
        stage: Option<&str>,
        kind: &'static str,
        steps: &[PlanStep],
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        if steps.is_empty() {
            return;
        }
        self.emit(Event::Handlers {
            stage: stage.map(str::to_owned),
            kind,
        });
        for p in steps {
            set_clock(vars, st);
            if let Some((record, event)) = self.taken_over(stage, p) {
                self.record_step(record, event, vars, st);
                continue;
            }
            let record = match self.prepare(stage, p, vars) {
                Work::Skip => StepRecord::new(stage, p.step.id.as_str()),
                work => {
                    self.emit(Event::StepStarted {
                        stage: stage.map(str::to_owned),
                        step: p.step.id.to_string(),
                        kind: kind_of(p),
                        handler: Some(kind),
                    });
                    self.execute(stage, p, work, &st.run_id).await
                }
            };
            let mut record = record;
            record.handler = Some(kind);
            if record.status == "failed" {
                st.handler_failures += 1;
            }
            self.finish(record, vars, st);
        }
    }

    /// The record of a step this run does not execute, with the event that
    /// reports it: restored from the journal (`step_restored`), or failed now
    /// (`step_finished`) because it was in flight when the runner died and may
    /// not run twice.
    fn taken_over(&self, stage: Option<&str>, p: &PlanStep) -> Option<(StepRecord, Reporter)> {
        let id = p.step.id.as_str();
        if let Some(r) = self.resume.restored.get(id) {
            return Some((r.clone(), Event::StepRestored));
        }
        let started = *self.resume.in_flight.get(id)?;
        let plugin = p.step.uses.is_some();
        let attempts = p.step.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
        if !plugin || p.step.idempotent || started < attempts {
            return None;
        }
        let mut record = StepRecord::new(stage, id);
        record.attempts = started;
        record.fail(
            "interrupted",
            "the runner died while this step was running; it is not `idempotent` and has no retry attempts left, so it is not run again",
        );
        Some((record, Event::StepFinished))
    }

    /// Reports a step with `event` and makes it visible to later expressions.
    fn record_step(
        &self,
        record: StepRecord,
        event: Reporter,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        step_vars(vars, &record);
        self.emit(event(record.clone()));
        st.records.push(record);
    }

    /// Reports a finished step and makes it visible to later expressions.
    fn finish(&self, record: StepRecord, vars: &mut Map<String, Value>, st: &mut RunState) {
        self.record_step(record, Event::StepFinished, vars, st);
    }

    /// Evaluates what a step needs from the context: its `if`, its `with:`, a
    /// gate's conditions, an approval's prompt.
    fn prepare(&self, stage: Option<&str>, p: &PlanStep, vars: &Map<String, Value>) -> Work {
        let step = &p.step;
        let runs = match p.runs {
            Runs::Depends => condition(
                step.condition.as_ref().map(|c| c.as_str()),
                self.scope(vars),
            ),
            r => Ok(r == Runs::Yes),
        };
        match runs {
            Ok(true) => {}
            Ok(false) => return Work::Skip,
            Err(e) => return Work::Broken("invalid-input", format!("the step's `if`: {e}")),
        }
        if let Some(gate) = &step.gate {
            let (outcome, event) = self.gate(stage, p, gate, vars);
            return Work::Gate(outcome, Box::new(event));
        }
        if let Some(a) = &step.approval {
            let prompt = match expr::render(&p.written.prompt, self.scope(vars)) {
                Ok(Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(e) => {
                    return Work::Broken("invalid-input", format!("the approval's prompt: {e}"));
                }
            };
            return Work::Approval(ApprovalWork {
                prompt,
                approvers: a.approvers.clone(),
                timeout: parse_duration(a.timeout.as_str())
                    .unwrap_or(INCONCLUSIVE_APPROVAL_TIMEOUT),
                on_timeout: a.on_timeout,
            });
        }
        let Some(local) = &step.uses else {
            return Work::Broken(
                "invalid-input",
                "the step has no `uses`, `gate` or `approval`".into(),
            );
        };
        let with = Value::Object(
            p.written
                .with
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let input = match expr::render_json(&with, self.scope(vars)) {
            Ok(v) => v,
            Err(e) => return Work::Broken("invalid-input", format!("`with:` {e}")),
        };
        let timeout = step
            .timeout
            .as_ref()
            .and_then(|t| parse_duration(t.as_str()).ok())
            .unwrap_or(DEFAULT_STEP_TIMEOUT);
        let retry = step.retry.as_ref();
        let attempts = Attempts {
            plugin: local.to_string(),
            input,
            limits: Limits {
                timeout,
                memory: self
                    .memory
                    .get(local.as_str())
                    .copied()
                    .unwrap_or(crate::host::runtime::DEFAULT_MEMORY),
            },
            max_attempts: retry.map_or(1, |r| r.max_attempts.max(1)),
            delay: retry
                .and_then(|r| r.delay.as_ref())
                .and_then(|d| parse_duration(d.as_str()).ok())
                .unwrap_or(DEFAULT_RETRY_DELAY),
            factor: retry.and_then(|r| r.factor).unwrap_or(2.0),
            max_delay: retry
                .and_then(|r| r.max_delay.as_ref())
                .and_then(|d| parse_duration(d.as_str()).ok())
                .unwrap_or(DEFAULT_MAX_RETRY_DELAY),
        };
        match &step.watch {
            Some(w) => Work::Watch(attempts, w.clone(), Box::new(vars.clone())),
            None => Work::Plugin(attempts),
        }
    }

    fn gate(
        &self,
        stage: Option<&str>,
        p: &PlanStep,
        gate: &crate::playbook::model::Gate,
        vars: &Map<String, Value>,
    ) -> (GateOutcome, Event) {
        let eval = |c: &str| expr::evaluate_traced(expr::unwrap_condition(c), self.scope(vars));
        let fail_value = gate.fail.as_ref().map(|f| eval(f.as_str()));
        let pass_value = eval(gate.pass.as_str());
        let show = |v: &Result<expr::Evaluated, String>| match v {
            Ok(v) => v.value.clone(),
            Err(e) => Value::String(format!("error: {e}")),
        };
        // (holds, compared a NaN)
        let as_bool = |v: &Result<expr::Evaluated, String>| match v {
            Ok(expr::Evaluated {
                value: Value::Bool(b),
                compared_nan,
            }) => Ok((*b, *compared_nan)),
            Ok(other) => Err(format!(
                "a condition gives {}, not true or false",
                expr::nonfinite::readable(&other.value)
            )),
            Err(e) => Err(e.clone()),
        };
        // Which values were NaN, for a message: `steps.q.outputs.value` is NaN.
        let nan_names = || {
            let mut names: Vec<String> = Vec::new();
            let conds =
                std::iter::once(gate.pass.as_str()).chain(gate.fail.as_ref().map(|f| f.as_str()));
            for c in conds {
                for n in expr::nan_readings(expr::unwrap_condition(c), vars) {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            match names.as_slice() {
                [] => "a value it compares is NaN".to_owned(),
                [one] => format!("`{one}` is NaN"),
                _ => format!("`{}` are NaN", names.join("`, `")),
            }
        };
        let judged = (|| -> Result<GateOutcome, String> {
            let failed = fail_value.as_ref().map(as_bool).transpose()?;
            let (passed, pass_nan) = as_bool(&pass_value)?;
            // A comparison with NaN is false and proves nothing (see
            // `watch::judge`): a gate with only `pass` fails, saying so; a
            // gate with both conditions is inconclusive, unless `fail` holds
            // without a NaN.
            Ok(match (failed, passed) {
                (Some((true, false)), _) => GateOutcome::Fail(format!(
                    "gate `{}` failed: `{}` holds",
                    p.step.id,
                    gate.fail.as_ref().map_or("", |f| f.as_str())
                )),
                (None, _) if pass_nan => GateOutcome::Fail(format!(
                    "gate `{}` failed: `{}` compares NaN, which is neither more nor less than any number ({})",
                    p.step.id,
                    gate.pass.as_str(),
                    nan_names()
                )),
                (Some((_, fail_nan)), _) if fail_nan || pass_nan => {
                    GateOutcome::Inconclusive(gate.on_inconclusive)
                }
                (_, true) => GateOutcome::Pass,
                (Some(_), false) => GateOutcome::Inconclusive(gate.on_inconclusive),
                (None, false) => GateOutcome::Fail(format!(
                    "gate `{}` failed: `{}` does not hold",
                    p.step.id,
                    gate.pass.as_str()
                )),
            })
        })();
        let outcome = judged
            .unwrap_or_else(|e| GateOutcome::Fail(format!("the gate cannot be evaluated: {e}")));
        let event = Event::Gate {
            stage: stage.map(str::to_owned),
            step: p.step.id.to_string(),
            outcome: match outcome {
                GateOutcome::Pass => "pass",
                GateOutcome::Fail(_) => "fail",
                GateOutcome::Inconclusive(_) => "inconclusive",
            },
            pass: gate.pass.as_str().to_owned(),
            pass_value: show(&pass_value),
            fail: gate.fail.as_ref().map(|f| f.as_str().to_owned()),
            fail_value: fail_value.as_ref().map(show),
        };
        (outcome, event)
    }

    /// What a prepared step does over time: plugin attempts, measurements,
    /// waiting for a human.
    async fn execute(
        &self,
        stage: Option<&str>,
        p: &PlanStep,
        work: Work,
        run_id: &str,
    ) -> StepRecord {
        let begin = Instant::now();
        let mut record = StepRecord::new(stage, p.step.id.as_str());
        match work {
            Work::Skip => {}
            Work::Broken(kind, e) => record.fail(kind, e),
            Work::Plugin(a) => self.attempts(&a, &mut record).await,
            Work::Watch(a, w, vars) => self.watch(&a, &w, &vars, run_id, &mut record).await,
            Work::Gate(outcome, event) => {
                record.attempts = 1;
                self.emit(*event);
                match outcome {
                    GateOutcome::Pass => record.succeed("passed"),
                    GateOutcome::Fail(e) => record.fail("gate", e),
                    GateOutcome::Inconclusive(then) => {
                        let why = format!("gate `{}` is inconclusive", p.step.id);
                        self.inconclusive(then, &why, run_id, &mut record).await;
                    }
                }
            }
            Work::Approval(a) => {
                record.attempts = 1;
                let outcome = self
                    .ask(
                        stage,
                        p.step.id.as_str(),
                        &a.prompt,
                        &a.approvers,
                        a.timeout,
                        run_id,
                    )
                    .await;
                match outcome {
                    Asked::Approved(by) => record.succeed(format!("approved by {by}")),
                    Asked::Rejected(e) => record.fail("rejected", e),
                    Asked::Unavailable(e) => record.fail("failed", e),
                    Asked::TimedOut => match a.on_timeout {
                        OnTimeout::Continue => record.succeed(
                            "nobody answered in time; continuing as `on_timeout: continue` says",
                        ),
                        OnTimeout::Fail => {
                            record.fail("timeout", "nobody answered in time (`on_timeout: fail`)")
                        }
                        OnTimeout::Rollback => {
                            record.fail(
                                "timeout",
                                "nobody answered in time; rolling back (`on_timeout: rollback`)",
                            );
                            record.rollback = true;
                        }
                    },
                }
            }
        }
        record.duration_ms = begin.elapsed().as_millis() as u64;
        record
    }

    /// An inconclusive gate or watch: ask, fail or go on, as the playbook says.
    async fn inconclusive(
        &self,
        then: OnInconclusive,
        why: &str,
        run_id: &str,
        record: &mut StepRecord,
    ) {
        match then {
            OnInconclusive::Continue => record.succeed(format!(
                "{why}; continuing as `on_inconclusive: continue` says"
            )),
            OnInconclusive::Fail => {
                record.fail("inconclusive", format!("{why} (`on_inconclusive: fail`)"))
            }
            OnInconclusive::Approve => {
                let prompt = format!("{why}: continue the run?");
                match self
                    .ask(
                        record.stage.as_deref(),
                        &record.step.clone(),
                        &prompt,
                        &[],
                        INCONCLUSIVE_APPROVAL_TIMEOUT,
                        run_id,
                    )
                    .await
                {
                    Asked::Approved(by) => record.succeed(format!("{why}; approved by {by}")),
                    Asked::Rejected(e) => record.fail("rejected", format!("{why}; {e}")),
                    Asked::Unavailable(e) => record.fail("inconclusive", format!("{why}; {e}")),
                    Asked::TimedOut => {
                        record.fail("inconclusive", format!("{why}; nobody answered in time"))
                    }
                }
            }
        }
    }

    /// Asks for an approval through [`approval::Approvals`]; whoever answers
    /// (a terminal, `runner approve`) answers there.
    async fn ask(
        &self,
        stage: Option<&str>,
        step: &str,
        prompt: &str,
        approvers: &[String],
        timeout: Duration,
        run_id: &str,
    ) -> Asked {
        let Some(approvals) = self.approvals else {
            return Asked::Unavailable(
                "approvals need a state directory (set RUNNER_STATE_DIR or HOME)".into(),
            );
        };
        let request = approval::Request {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            prompt: prompt.to_owned(),
            approvers: approvers.to_vec(),
            deadline: approval::rfc3339(std::time::SystemTime::now() + timeout),
        };
        if let Err(e) = approvals.open(&request) {
            return Asked::Unavailable(format!("cannot open the approval request: {e}"));
        }
        self.emit(Event::ApprovalRequested {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            prompt: prompt.to_owned(),
            approvers: approvers.to_vec(),
            timeout_s: seconds(timeout),
            answer_with: if approvers.is_empty() {
                format!("runner approve {run_id} {step} [--reject] [--comment TEXT]")
            } else {
                format!("runner approve {run_id} {step} --role ROLE [--reject] [--comment TEXT]")
            },
        });
        let outcome = approval::wait(approvals, &request, timeout).await;
        approvals.close(run_id, step);
        let (name, decisions, asked) = match outcome {
            approval::Outcome::Approved(d) => {
                let by = d
                    .iter()
                    .map(|d| match &d.role {
                        Some(r) => format!("{} as {r}", d.who()),
                        None => d.who(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                ("approved", d, Asked::Approved(by))
            }
            approval::Outcome::Rejected(d) => {
                let why = match &d.comment {
                    Some(c) => format!("rejected by {}: {c}", d.who()),
                    None => format!("rejected by {}", d.who()),
                };
                ("rejected", vec![d], Asked::Rejected(why))
            }
            approval::Outcome::TimedOut => ("timed_out", Vec::new(), Asked::TimedOut),
        };
        self.emit(Event::ApprovalDecided {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            outcome: name,
            decisions,
        });
        asked
    }

    /// Plugin attempts with retries: retryable errors and timeouts are tried again
    /// after an exponential, jittered, capped delay; nothing else is.
    async fn attempts(&self, a: &Attempts, record: &mut StepRecord) {
        let Some(plugin) = self.plugins.get(&a.plugin) else {
            return record.fail(
                "invalid-input",
                format!("plugin `{}` is not loaded", a.plugin),
            );
        };
        let mut delay = a.delay;
        loop {
            record.attempts += 1;
            let result = self.attempt(plugin, a, record).await;
            match result {
                Ok(success) => {
                    record.outputs = success.outputs;
                    record.artifacts = success.artifacts;
                    record.succeed(success.summary);
                    return;
                }
                Err(failure) => {
                    let retry = matches!(
                        failure,
                        StepFailure::Retryable(_) | StepFailure::TimedOut(_)
                    ) && record.attempts < a.max_attempts;
                    record.fail(failure.kind(), failure.to_string());
                    if !retry {
                        return;
                    }
                    let wait = jitter(delay.min(a.max_delay));
                    self.emit(Event::Retry {
                        stage: record.stage.clone(),
                        step: record.step.clone(),
                        attempt: record.attempts,
                        delay_ms: wait.as_millis() as u64,
                        error: failure.to_string(),
                    });
                    tokio::time::sleep(wait).await;
                    delay = delay.mul_f64(a.factor).min(a.max_delay);
                }
            }
        }
    }

    async fn attempt(
        &self,
        plugin: &LoadedPlugin,
        a: &Attempts,
        record: &mut StepRecord,
    ) -> Result<crate::host::runtime::StepSuccess, StepFailure> {
        let mut granted = self.grants.get(&a.plugin).cloned().unwrap_or_default();
        granted.artifacts = self.artifacts.as_ref().map(|d| d.join(&record.step));
        granted.artifact_budget = self.artifact_budget.clone();
        let result = self.runtime.run(plugin, &a.input, &a.limits, granted).await;
        record.log.extend(result.log.lines);
        result.outcome
    }

    /// A watch: measure every `interval`, judge each measurement, stop on a
    /// passed limit or when `count` or `duration` is reached.
    async fn watch(
        &self,
        a: &Attempts,
        w: &Watch,
        vars: &Map<String, Value>,
        run_id: &str,
        record: &mut StepRecord,
    ) {
        let Some(plugin) = self.plugins.get(&a.plugin) else {
            return record.fail(
                "invalid-input",
                format!("plugin `{}` is not loaded", a.plugin),
            );
        };
        let interval = parse_duration(w.interval.as_str()).unwrap_or(Duration::from_secs(10));
        let start = Instant::now();
        let end = w
            .duration
            .as_ref()
            .and_then(|d| parse_duration(d.as_str()).ok())
            .map(|d| start + d);
        let mut tally = watch::Tally::default();
        let mut last = Map::new();
        let mut inconclusive_waived = w.on_inconclusive == OnInconclusive::Continue;
        loop {
            let n = tally.measurements + 1;
            // Errors are not measurements toward `count` (see `watch`).
            if w.count.is_some_and(|c| tally.counted() >= c)
                || end.is_some_and(|e| Instant::now() >= e)
            {
                break;
            }
            let t0 = Instant::now();
            record.attempts += 1;
            let (verdict, outputs, error, nan) = match self.attempt(plugin, a, record).await {
                Err(f) => (watch::Verdict::Error, Map::new(), Some(f.to_string()), None),
                Ok(s) => match watch::judge(w, &s.outputs, self.scope(vars)) {
                    Ok(j) => (j.verdict, s.outputs, None, j.nan),
                    Err(e) => (watch::Verdict::Error, s.outputs, Some(e), None),
                },
            };
            self.emit(Event::Measurement {
                stage: record.stage.clone(),
                step: record.step.clone(),
                n,
                verdict,
                outputs: outputs.clone(),
                error: error.clone(),
                nan: nan.clone(),
            });
            if verdict != watch::Verdict::Error {
                last = outputs;
            }
            match tally.add(w, verdict) {
                watch::Next::Go => {}
                watch::Next::Fail(why) => {
                    record.outputs = watch_outputs(last, &tally);
                    let detail = match (error, &nan) {
                        (Some(e), _) => format!("; last error: {e}"),
                        (None, Some(n)) => format!("; the last measurement compared NaN: {n}"),
                        (None, None) => String::new(),
                    };
                    return record.fail("watch", format!("the watch failed: {why}{detail}"));
                }
                watch::Next::Inconclusive(why) => {
                    let why = match &nan {
                        Some(n) => format!("{why}; the last compared NaN: {n}"),
                        None => why,
                    };
                    if inconclusive_waived {
                        tally.waive_inconclusive();
                    } else {
                        let mut asked = record.clone();
                        self.inconclusive(
                            w.on_inconclusive,
                            &format!("watch `{}`: {why}", record.step),
                            run_id,
                            &mut asked,
                        )
                        .await;
                        if asked.status != "succeeded" {
                            record.outputs = watch_outputs(last, &tally);
                            return record.fail(
                                asked.error_kind.unwrap_or("inconclusive"),
                                asked.error.unwrap_or_default(),
                            );
                        }
                        tally.waive_inconclusive();
                        inconclusive_waived = w.on_inconclusive == OnInconclusive::Continue;
                    }
                }
            }
            let next = t0 + interval;
            let next = end.map_or(next, |e| next.min(e));
            if w.count.is_some_and(|c| tally.counted() >= c) {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        let summary = format!(
            "{} measurements: {} ok, {} failed, {} inconclusive, {} errors",
            tally.measurements, tally.successes, tally.failures, tally.inconclusive, tally.errors
        );
        record.outputs = watch_outputs(last, &tally);
        if let Some(why) = tally.unproven() {
            return record.fail("watch", format!("the watch failed: {why}"));
        }
        record.succeed(summary);
    }
}

/// The answer to an approval request.
enum Asked {
    Approved(String),
    Rejected(String),
    TimedOut,
    Unavailable(String),
}

/// Where a step of a stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Done,
}

#[derive(Clone, Copy)]
struct StageClock {
    deadline: Option<(Instant, Duration)>,
    budget: Option<(Instant, Duration)>,
}

fn clock_start(budget: Option<(Instant, Duration)>) -> Instant {
    budget.map_or_else(Instant::now, |(at, b)| at - b)
}

/// A watch's outputs: the last measurement's outputs, and the counts under `watch`.
fn watch_outputs(mut last: Map<String, Value>, tally: &watch::Tally) -> Map<String, Value> {
    last.insert(
        "watch".into(),
        serde_json::to_value(tally).unwrap_or(Value::Null),
    );
    last
}

fn kind_of(p: &PlanStep) -> &'static str {
    if p.step.watch.is_some() {
        "watch"
    } else {
        p.kind
    }
}

/// `d` with equal jitter: between half of it and all of it, so that retries of
/// many runs do not arrive together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos() as u64);
    // splitmix64 of the clock: spread, not secret.
    let mut z = nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let fraction = 0.5 + (z as f64 / u64::MAX as f64) / 2.0;
    d.mul_f64(fraction)
}

fn condition(cond: Option<&str>, scope: expr::Scope<'_>) -> Result<bool, String> {
    let Some(c) = cond else { return Ok(true) };
    match expr::evaluate(expr::unwrap_condition(c), scope)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "the condition `{c}` gives {other}, not true or false"
        )),
    }
}

fn step_vars(vars: &mut Map<String, Value>, r: &StepRecord) {
    if let Some(Value::Object(steps)) = vars.get_mut("steps") {
        steps.insert(
            r.step.clone(),
            json!({
                "status": r.status,
                "outputs": r.outputs,
                "summary": r.summary,
                "duration": r.duration_ms as f64 / 1000.0,
                "attempts": r.attempts,
            }),
        );
    }
}

fn stage_vars(vars: &mut Map<String, Value>, id: &str, status: &str, d: Duration) {
    if let Some(Value::Object(stages)) = vars.get_mut("stages") {
        stages.insert(
            id.to_owned(),
            json!({ "status": status, "duration": d.as_secs_f64() }),
        );
    }
}

fn set_run_status(vars: &mut Map<String, Value>, status: &str) {
    if let Some(Value::Object(run)) = vars.get_mut("run") {
        run.insert("status".into(), status.into());
    }
}

/// `run.elapsed` and `run.budget_left` (seconds; negative once over budget).
fn set_clock(vars: &mut Map<String, Value>, st: &RunState) {
    if let Some(Value::Object(run)) = vars.get_mut("run") {
        let elapsed = st.started.elapsed().as_secs_f64();
        run.insert("elapsed".into(), json!(elapsed));
        if let Some((_, budget)) = st.budget {
            run.insert("budget_left".into(), json!(budget.as_secs_f64() - elapsed));
        }
    }
}

/// The current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    approval::rfc3339(std::time::SystemTime::now())
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

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(1000));
            assert!(
                j >= Duration::from_millis(500) && j <= Duration::from_millis(1000),
                "{j:?}"
            );
        }
    }
}
