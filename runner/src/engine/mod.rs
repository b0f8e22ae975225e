//! A minimal executor: runs a plan's steps one at a time, in dependency order, so
//! plugins can be used end to end before the full engine exists.
//!
//! What it does: evaluates `if`, renders `with:` from inputs and earlier outputs,
//! runs plugin steps in the sandbox with their timeout, memory cap and grants,
//! retries errors the plugin marks retryable, checks gates, and on failure runs the
//! stage's and then the run's `on_failure` handlers; `finally` handlers always run.
//!
//! What it does not do yet (the engine issue): parallel steps, watches, approvals,
//! budgets, stage and run timeouts, concurrency groups. A playbook that uses
//! watches or approvals is refused before anything runs, rather than run wrongly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::expr;
use crate::host::runtime::{Limits, LoadedPlugin, Runtime};
use crate::host::state::Granted;
use crate::plan::{Plan, PlanStep, Runs};
use crate::playbook::scalars::parse_duration;

/// Default timeout of a step attempt without its own `timeout`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub stage: Option<String>,
    pub step: String,
    /// `succeeded`, `failed`, `skipped`.
    pub status: &'static str,
    pub attempts: u32,
    pub duration_ms: u128,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
    /// Log lines the plugin wrote (redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<crate::caps::log::LogLine>,
    /// Files the step produced, as kept by the runner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<crate::host::runtime::Artifact>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub succeeded: bool,
    pub steps: Vec<StepRecord>,
}

/// Features this executor cannot run yet, found in a plan.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |step: &PlanStep| {
        if step.step.watch.is_some() {
            found.push(format!("step `{}` uses `watch`", step.step.id));
        }
        if step.step.approval.is_some() && step.runs != Runs::No {
            found.push(format!("step `{}` is an approval", step.step.id));
        }
    };
    for stage in &plan.stages {
        stage.steps.iter().for_each(&mut check);
        let h = &stage.handlers;
        h.on_failure
            .iter()
            .chain(&h.on_budget_exceeded)
            .chain(&h.finally)
            .for_each(&mut check);
    }
    let h = &plan.handlers;
    h.on_failure
        .iter()
        .chain(&h.on_budget_exceeded)
        .chain(&h.finally)
        .for_each(&mut check);
    found
}

/// Runs `plan` with the loaded plugins (by local name) and their grants.
pub struct Executor<'a> {
    pub runtime: &'a Runtime,
    pub plugins: &'a HashMap<String, LoadedPlugin>,
    pub grants: &'a HashMap<String, Granted>,
    pub memory: &'a HashMap<String, usize>,
    /// Where artifacts are kept, one folder per step; `None`: not kept.
    pub artifacts: Option<std::path::PathBuf>,
    /// Called after each step, for progress output.
    pub on_step: &'a mut dyn FnMut(&StepRecord),
}

impl Executor<'_> {
    pub async fn run(&mut self, plan: &Plan, run_id: &str) -> RunReport {
        let mut vars = Map::new();
        let inputs: Map<String, Value> = plan
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect();
        vars.insert("inputs".into(), Value::Object(inputs));
        vars.insert("steps".into(), json!({}));
        vars.insert("stages".into(), json!({}));
        vars.insert(
            "run".into(),
            json!({ "id": run_id, "playbook": plan.playbook, "started_at": now_rfc3339(), "status": "running" }),
        );
        let started = Instant::now();
        let mut records = Vec::new();
        let mut failed = false;
        for stage in &plan.stages {
            if failed {
                break;
            }
            let stage_start = Instant::now();
            let runs = match stage.runs {
                Runs::Depends => condition(stage.condition.as_deref(), &vars).unwrap_or(false),
                r => r == Runs::Yes,
            };
            if runs {
                for step in order(&stage.steps) {
                    let record = self.step(Some(&stage.id), step, &mut vars, started).await;
                    let step_failed = record.status == "failed" && !step.step.continue_on_error;
                    (self.on_step)(&record);
                    records.push(record);
                    if step_failed {
                        failed = true;
                        break;
                    }
                }
            }
            let status = if !runs {
                "skipped"
            } else if failed {
                "failed"
            } else {
                "succeeded"
            };
            stage_vars(&mut vars, &stage.id, status, stage_start.elapsed());
            if failed {
                set_run_status(&mut vars, "failed");
                self.handlers(
                    Some(&stage.id),
                    &stage.handlers.on_failure,
                    &mut vars,
                    started,
                    &mut records,
                )
                .await;
            }
            self.handlers(
                Some(&stage.id),
                &stage.handlers.finally,
                &mut vars,
                started,
                &mut records,
            )
            .await;
        }
        if failed {
            self.handlers(
                None,
                &plan.handlers.on_failure,
                &mut vars,
                started,
                &mut records,
            )
            .await;
        } else {
            set_run_status(&mut vars, "succeeded");
        }
        self.handlers(
            None,
            &plan.handlers.finally,
            &mut vars,
            started,
            &mut records,
        )
        .await;
        RunReport {
            succeeded: !failed,
            steps: records,
        }
    }

    async fn handlers(
        &mut self,
        stage: Option<&str>,
        steps: &[PlanStep],
        vars: &mut Map<String, Value>,
        started: Instant,
        records: &mut Vec<StepRecord>,
    ) {
        // Handlers run in order and all of them run: a failed notification must
        // not stop the rollback after it.
        for step in steps {
            let record = self.step(stage, step, vars, started).await;
            (self.on_step)(&record);
            records.push(record);
        }
    }

    async fn step(
        &mut self,
        stage: Option<&str>,
        p: &PlanStep,
        vars: &mut Map<String, Value>,
        started: Instant,
    ) -> StepRecord {
        let step = &p.step;
        let begin = Instant::now();
        set_elapsed(vars, started);
        let mut record = StepRecord {
            stage: stage.map(str::to_owned),
            step: step.id.to_string(),
            status: "skipped",
            attempts: 0,
            duration_ms: 0,
            summary: String::new(),
            error: None,
            error_kind: None,
            outputs: Map::new(),
            log: Vec::new(),
            artifacts: Vec::new(),
        };
        let runs = match p.runs {
            Runs::Depends => condition(step.condition.as_ref().map(|c| c.as_str()), vars),
            r => Ok(r == Runs::Yes),
        };
        match runs {
            Ok(false) => {}
            Err(e) => fail(&mut record, "invalid-input", e),
            Ok(true) => {
                if let Some(gate) = &step.gate {
                    record.attempts = 1;
                    match gate_outcome(gate, vars) {
                        Ok(true) => record.status = "succeeded",
                        Ok(false) => fail(
                            &mut record,
                            "gate",
                            format!("gate `{}` did not pass", step.id),
                        ),
                        Err(e) => fail(&mut record, "gate", e),
                    }
                } else if let Some(local) = &step.uses {
                    self.plugin_step(local.as_str(), p, vars, &mut record).await;
                }
            }
        }
        record.duration_ms = begin.elapsed().as_millis();
        step_vars(vars, &record);
        record
    }

    async fn plugin_step(
        &mut self,
        local: &str,
        p: &PlanStep,
        vars: &Map<String, Value>,
        record: &mut StepRecord,
    ) {
        let step = &p.step;
        let Some(plugin) = self.plugins.get(local) else {
            return fail(
                record,
                "invalid-input",
                format!("plugin `{local}` is not loaded"),
            );
        };
        let input = match expr::render_json(
            &Value::Object(
                step.with
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            vars,
        ) {
            Ok(v) => v,
            Err(e) => return fail(record, "invalid-input", e),
        };
        let timeout = step
            .timeout
            .as_ref()
            .and_then(|t| parse_duration(t.as_str()).ok())
            .unwrap_or(DEFAULT_STEP_TIMEOUT);
        let limits = Limits {
            timeout,
            memory: self
                .memory
                .get(local)
                .copied()
                .unwrap_or(crate::host::runtime::DEFAULT_MEMORY),
        };
        let max_attempts = step.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
        let mut delay = step
            .retry
            .as_ref()
            .and_then(|r| r.delay.as_ref())
            .and_then(|d| parse_duration(d.as_str()).ok())
            .unwrap_or(Duration::from_secs(1));
        let factor = step.retry.as_ref().and_then(|r| r.factor).unwrap_or(2.0);
        let max_delay = step
            .retry
            .as_ref()
            .and_then(|r| r.max_delay.as_ref())
            .and_then(|d| parse_duration(d.as_str()).ok());
        loop {
            record.attempts += 1;
            let mut granted = self.grants.get(local).cloned().unwrap_or_default();
            granted.artifacts = self.artifacts.as_ref().map(|d| d.join(&record.step));
            let result = self.runtime.run(plugin, &input, &limits, granted).await;
            record.log.extend(result.log.lines);
            match result.outcome {
                Ok(success) => {
                    record.status = "succeeded";
                    record.summary = success.summary;
                    record.outputs = success.outputs;
                    record.artifacts = success.artifacts;
                    record.error = None;
                    record.error_kind = None;
                    return;
                }
                Err(failure) => {
                    let retry = failure.retryable() && record.attempts < max_attempts;
                    fail(record, failure.kind(), failure.to_string());
                    if !retry {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = delay.mul_f64(factor);
                    if let Some(max) = max_delay {
                        delay = delay.min(max);
                    }
                }
            }
        }
    }
}

fn fail(record: &mut StepRecord, kind: &'static str, message: String) {
    record.status = "failed";
    record.error = Some(message);
    record.error_kind = Some(kind);
}

/// Steps in an order that respects `needs` (list order where it is free).
fn order(steps: &[PlanStep]) -> Vec<&PlanStep> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.step.id.as_str(), i))
        .collect();
    let mut done = vec![false; steps.len()];
    let mut out = Vec::with_capacity(steps.len());
    while out.len() < steps.len() {
        let next = (0..steps.len()).find(|&i| {
            !done[i]
                && steps[i]
                    .after
                    .iter()
                    .all(|a| index.get(a.as_str()).is_none_or(|&j| done[j]))
        });
        // Validation rejects cycles; should one slip through, run the rest in list order.
        let i = next.unwrap_or_else(|| (0..steps.len()).find(|&i| !done[i]).unwrap_or(0));
        done[i] = true;
        out.push(&steps[i]);
    }
    out
}

fn condition(cond: Option<&str>, vars: &Map<String, Value>) -> Result<bool, String> {
    let Some(c) = cond else { return Ok(true) };
    match expr::evaluate(expr::unwrap_condition(c), vars)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "the condition `{c}` gives {other}, not true or false"
        )),
    }
}

/// A gate passes, fails, or is inconclusive; this executor has no approvals, so an
/// inconclusive gate fails with a message saying so.
fn gate_outcome(
    gate: &crate::playbook::model::Gate,
    vars: &Map<String, Value>,
) -> Result<bool, String> {
    if let Some(f) = &gate.fail
        && condition(Some(f.as_str()), vars)?
    {
        return Ok(false);
    }
    if condition(Some(gate.pass.as_str()), vars)? {
        return Ok(true);
    }
    if gate.fail.is_some() {
        return Err("the gate is inconclusive (neither `pass` nor `fail` holds); pausing for approval needs the full engine, so this run fails".into());
    }
    Ok(false)
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

fn set_elapsed(vars: &mut Map<String, Value>, started: Instant) {
    if let Some(Value::Object(run)) = vars.get_mut("run") {
        run.insert("elapsed".into(), json!(started.elapsed().as_secs_f64()));
    }
}

/// The current time as RFC 3339 (UTC), without a date library.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}
