//! Running a stage: the scheduling loop that starts steps as the steps they wait
//! for finish, the timers and the interrupt it listens to, and the handler lists
//! that run when a stage (or the run) fails, ends or passes its budget.
//!
//! Apart from `step`: this file decides *when* steps run and what stops them;
//! `step` decides what running one step means.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value};

use super::gate::condition;
use super::step::{Work, kind_of};
use super::vars::{duration_of, seconds, set_clock, set_run_status, stage_vars, step_vars, until};
use super::{Event, Executor, Interrupt, RunState, RunStatus, StepRecord};
use crate::plan::{Plan, PlanStage, PlanStep, Runs};

type StepFuture<'f> = Pin<Box<dyn Future<Output = (usize, StepRecord)> + Send + 'f>>;
type Escalation<'f> = Pin<Box<dyn Future<Output = (Vec<StepRecord>, bool)> + Send + 'f>>;

impl Executor<'_> {
    pub(super) async fn stage(
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
    pub(super) fn interrupted_between_steps(&self, st: &mut RunState) {
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
    pub(super) async fn handlers(
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
