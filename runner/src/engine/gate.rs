//! Gates and conditions: judging a gate's `pass` and `fail` (a comparison with
//! NaN proves nothing), what an inconclusive gate or watch does, and the `if` of
//! a step or a stage. Apart because these are the engine's judgements, not its
//! scheduling: each reads the run's context and decides, nothing more.

use serde_json::{Map, Value};

use super::ask::Asked;
use super::{Event, Executor, INCONCLUSIVE_APPROVAL_TIMEOUT, StepRecord};
use crate::expr;
use crate::plan::PlanStep;
use crate::playbook::model::OnInconclusive;

pub(super) enum GateOutcome {
    Pass,
    Fail(String),
    Inconclusive(OnInconclusive),
}

impl Executor<'_> {
    pub(super) fn gate(
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

    /// An inconclusive gate or watch: ask, fail or go on, as the playbook says.
    pub(super) async fn inconclusive(
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
                        super::ask::Answerers {
                            roles: &[],
                            not: None,
                        },
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
}

pub(super) fn condition(cond: Option<&str>, scope: expr::Scope<'_>) -> Result<bool, String> {
    let Some(c) = cond else { return Ok(true) };
    match expr::evaluate(expr::unwrap_condition(c), scope)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "the condition `{c}` gives {other}, not true or false"
        )),
    }
}
