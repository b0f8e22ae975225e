//! One step, from the plan to its record: whether a resumed run takes it over,
//! what it needs from the run's context (`prepare`), what it does over time
//! (`execute`: plugin attempts with retries, a gate, a watch or an approval), and
//! how its record is reported. The stage loop (`stage`) only schedules these.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::ask::Asked;
use super::gate::{GateOutcome, condition};
use super::vars::step_vars;
use super::{
    DEFAULT_MAX_RETRY_DELAY, DEFAULT_RETRY_DELAY, DEFAULT_STEP_TIMEOUT, Event, Executor,
    INCONCLUSIVE_APPROVAL_TIMEOUT, RunState, StepRecord,
};
use crate::expr;
use crate::host::runtime::{Limits, LoadedPlugin, StepFailure};
use crate::plan::{PlanStep, Runs};
use crate::playbook::model::{OnTimeout, Watch};
use crate::playbook::scalars::parse_duration;

/// A step, prepared against the run's context: nothing left to evaluate but
/// what the step does over time.
pub(super) enum Work {
    Skip,
    /// The step cannot start (its `if` or `with:` does not evaluate).
    Broken(&'static str, String),
    Plugin(Attempts),
    Watch(Attempts, Watch, Box<Map<String, Value>>),
    /// The outcome, and its event (sent when the step starts).
    Gate(GateOutcome, Box<Event>),
    Approval(ApprovalWork),
}

pub(super) struct Attempts {
    pub(super) plugin: String,
    input: Value,
    limits: Limits,
    max_attempts: u32,
    delay: Duration,
    factor: f64,
    max_delay: Duration,
}

pub(super) struct ApprovalWork {
    prompt: String,
    approvers: Vec<String>,
    timeout: Duration,
    on_timeout: OnTimeout,
    /// `prevent_self_approval`: the run's starter may not approve.
    prevent_self_approval: bool,
}

/// Which event reports a step record: `StepFinished` or `StepRestored`.
pub(super) type Reporter = fn(StepRecord) -> Event;

impl Executor<'_> {
    /// The record of a step this run does not execute, with the event that
    /// reports it: restored from the journal (`step_restored`), or failed now
    /// (`step_finished`) because it was in flight when the runner died and may
    /// not run twice.
    pub(super) fn taken_over(
        &self,
        stage: Option<&str>,
        p: &PlanStep,
    ) -> Option<(StepRecord, Reporter)> {
        let id = p.step.id.as_str();
        if let Some(r) = self.resume.restored.get(id) {
            return Some((r.clone(), Event::StepRestored));
        }
        let started = *self.resume.in_flight.get(id)?;
        let plugin = p.step.uses.is_some();
        let attempts = p.step.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
        let give_up = self.resume.give_up.as_deref();
        if give_up.is_none() && (!plugin || p.step.idempotent || started < attempts) {
            return None;
        }
        let mut record = StepRecord::new(stage, id);
        record.attempts = started;
        record.fail(
            "interrupted",
            give_up.unwrap_or("the runner died while this step was running; it is not `idempotent` and has no retry attempts left, so it is not run again"),
        );
        Some((record, Event::StepFinished))
    }

    /// Reports a step with `event` and makes it visible to later expressions.
    pub(super) fn record_step(
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
    pub(super) fn finish(
        &self,
        record: StepRecord,
        vars: &mut Map<String, Value>,
        st: &mut RunState,
    ) {
        self.record_step(record, Event::StepFinished, vars, st);
    }

    /// Evaluates what a step needs from the context: its `if`, its `with:`, a
    /// gate's conditions, an approval's prompt.
    pub(super) fn prepare(
        &self,
        stage: Option<&str>,
        p: &PlanStep,
        vars: &Map<String, Value>,
    ) -> Work {
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
                prevent_self_approval: a.prevent_self_approval,
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

    /// What a prepared step does over time: plugin attempts, measurements,
    /// waiting for a human.
    pub(super) async fn execute(
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
                        super::ask::Answerers {
                            roles: &a.approvers,
                            not: a.prevent_self_approval.then(|| self.actor.name.clone()),
                        },
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

    pub(super) async fn attempt(
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
}

pub(super) fn kind_of(p: &PlanStep) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
