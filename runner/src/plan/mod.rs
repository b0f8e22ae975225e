//! The plan: a validated playbook with its inputs resolved, printed by `runner plan`
//! before anything runs, and walked by the engine.
//!
//! Everything that is known before the run starts is settled here: input values,
//! durations given as `${{ inputs.… }}`, `with:` values and conditions that read only
//! inputs. What depends on earlier steps stays an expression, shown as written, so
//! the on-call engineer sees exactly which decisions are made now and which later.

pub mod inputs;
pub mod rbac;
mod render;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::expr::{self, Piece};
use crate::playbook::Validated;
use crate::playbook::model::{Grants, Handlers, OnConflict, Step, StepKind};
use crate::playbook::scalars::{DurationSpec, format_duration, parse_duration};
use crate::{builtins, oci_ref};
pub use render::render_text;

/// What `runner plan` shows and the engine runs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub playbook: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub inputs: Vec<inputs::Resolved>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    pub max_parallel: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<PlanConcurrency>,
    pub plugins: Vec<PlanPlugin>,
    pub stages: Vec<PlanStage>,
    pub handlers: PlanHandlers,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanConcurrency {
    pub group: String,
    pub on_conflict: OnConflict,
}

/// A declared plugin and what it is allowed to do.
#[derive(Debug, Clone, Serialize)]
pub struct PlanPlugin {
    pub name: String,
    pub uses: String,
    /// `builtin`, `file` or `oci`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For `oci`: the manifest digest the reference is pinned to (`sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub memory: String,
    pub grants: Grants,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanStage {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub runs: Runs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    pub steps: Vec<PlanStep>,
    pub handlers: PlanHandlers,
}

/// Whether a stage or step will run, as far as the plan can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runs {
    /// No condition, or one that is true with these inputs.
    Yes,
    /// Its condition is false with these inputs.
    No,
    /// Its condition depends on results of earlier steps.
    Depends,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    /// The step as people see it: durations and inputs-only values resolved.
    /// Its `with:` and prompt are for showing only; the engine renders
    /// [`PlanStep::written`], so a value is never parsed as a template twice.
    #[serde(flatten)]
    pub step: Step,
    /// The step's templates as the playbook wrote them, rendered exactly once, by
    /// the engine, over the real values: an input whose text looks like `${{ }}`
    /// stays that text.
    #[serde(skip)]
    pub written: Written,
    /// `plugin`, `gate` or `approval`.
    pub kind: &'static str,
    pub runs: Runs,
    /// Steps of the same stage it waits for.
    pub after: Vec<String>,
}

/// The templates of a step as written in the playbook.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// `with:` before any rendering.
    pub with: indexmap::IndexMap<String, Value>,
    /// An approval's prompt before any rendering (empty for other steps).
    pub prompt: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanHandlers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<PlanStep>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_budget_exceeded: Vec<PlanStep>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<PlanStep>,
}

/// Default memory cap of a plugin instance.
pub const DEFAULT_MEMORY: &str = "256MiB";

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Inputs(Vec<inputs::InputError>),
    #[error("{0}")]
    Evaluation(String),
}

/// Resolves `validated` with the given `KEY=VALUE` inputs.
pub fn build(validated: &Validated, given: &[(String, String)]) -> Result<Plan, PlanError> {
    build_reading(validated, given, None)
}

/// [`build`], with a static `run_report(ID)` reading the reports of `reports`.
pub fn build_reading(
    validated: &Validated,
    given: &[(String, String)],
    reports: Option<&std::sync::Arc<dyn expr::RunReports>>,
) -> Result<Plan, PlanError> {
    let pb = &validated.playbook;
    let resolved = inputs::resolve(&pb.inputs, given).map_err(PlanError::Inputs)?;
    let statics = Statics::new(&pb.name, &resolved, reports.cloned());
    let plugins = pb
        .plugins
        .iter()
        .map(|(name, d)| PlanPlugin {
            name: name.to_string(),
            uses: d.uses.clone(),
            source: if builtins::builtin(&d.uses).is_some() {
                "builtin"
            } else if d.uses.starts_with(oci_ref::SCHEME) {
                "oci"
            } else {
                "file"
            },
            sha256: d.sha256.clone(),
            digest: oci_ref::OciRef::parse(&d.uses)
                .ok()
                .filter(|_| d.uses.starts_with(oci_ref::SCHEME))
                .and_then(|r| r.digest)
                .map(|d| d.to_string()),
            memory: d
                .memory
                .as_ref()
                .map_or_else(|| DEFAULT_MEMORY.to_owned(), |m| m.to_string()),
            grants: d.grants.clone(),
        })
        .collect();
    let mut stages = Vec::new();
    for stage in &pb.stages {
        let runs = statics.runs(stage.condition.as_ref().map(|c| c.as_str()))?;
        let mut steps = Vec::new();
        for (i, step) in stage.steps.iter().enumerate() {
            let after: Vec<String> = match &step.needs {
                Some(needs) => needs.iter().map(ToString::to_string).collect(),
                None if i > 0 => vec![stage.steps[i - 1].id.to_string()],
                None => vec![],
            };
            let mut planned = statics.step(step)?;
            planned.after = after;
            if runs == Runs::No {
                planned.runs = Runs::No;
            }
            steps.push(planned);
        }
        stages.push(PlanStage {
            id: stage.id.to_string(),
            name: stage.name.clone(),
            runs,
            condition: stage
                .condition
                .as_ref()
                .map(|c| expr::unwrap_condition(c.as_str()).to_owned()),
            timeout: statics.duration(stage.timeout.as_ref())?,
            budget: statics.duration(stage.budget.as_ref())?,
            steps,
            handlers: statics.handlers(&stage.handlers)?,
        });
    }
    Ok(Plan {
        playbook: pb.name.clone(),
        file: validated.source.name.clone(),
        description: pb.description.clone(),
        timeout: statics.duration(pb.timeout.as_ref())?,
        budget: statics.duration(pb.budget.as_ref())?,
        max_parallel: pb.max_parallel,
        concurrency: match &pb.concurrency {
            Some(c) => Some(PlanConcurrency {
                group: statics.text(c.group.as_str())?,
                on_conflict: c.on_conflict,
            }),
            None => None,
        },
        plugins,
        stages,
        handlers: statics.handlers(&pb.handlers)?,
        inputs: resolved,
    })
}

/// Evaluates expressions that read only inputs (and `run.playbook`).
struct Statics {
    inputs: Value,
    run: Value,
    reports: Option<std::sync::Arc<dyn expr::RunReports>>,
}

impl Statics {
    fn new(
        playbook: &str,
        resolved: &[inputs::Resolved],
        reports: Option<std::sync::Arc<dyn expr::RunReports>>,
    ) -> Statics {
        let inputs = resolved
            .iter()
            .map(|r| (r.name.clone(), r.value.clone()))
            .collect::<Map<_, _>>();
        Statics {
            inputs: Value::Object(inputs),
            run: serde_json::json!({ "playbook": playbook }),
            reports,
        }
    }

    /// Whether `source` reads only what is known before the run.
    fn is_static(source: &str) -> bool {
        expr::compile(source).is_ok_and(|c| {
            c.references().iter().all(|r| {
                r.root == "inputs"
                    || (r.root == "run" && r.fields.first().is_some_and(|f| f == "playbook"))
            })
        })
    }

    fn eval(&self, source: &str) -> Result<Value, PlanError> {
        let mut vars = Map::new();
        vars.insert("inputs".into(), self.inputs.clone());
        vars.insert("run".into(), self.run.clone());
        let scope = expr::Scope {
            vars: &vars,
            reports: self.reports.as_ref(),
        };
        expr::evaluate(source, scope).map_err(PlanError::Evaluation)
    }

    /// Renders a template whose expressions are all static; anything else is kept as
    /// written. A template that is one whole expression keeps the value's type.
    fn value(&self, text: &str) -> Result<Value, PlanError> {
        if let Some(source) = expr::whole_expression(text) {
            return if Self::is_static(source) {
                self.eval(source)
            } else {
                Ok(Value::String(text.to_owned()))
            };
        }
        Ok(Value::String(self.text(text)?))
    }

    fn text(&self, text: &str) -> Result<String, PlanError> {
        let Ok(pieces) = expr::parse_template(text) else {
            return Ok(text.to_owned());
        };
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr { source, .. } if Self::is_static(source) => match self.eval(source)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
                Piece::Expr { source, .. } => {
                    out.push_str("${{");
                    out.push_str(source);
                    out.push_str("}}");
                }
            }
        }
        Ok(out)
    }

    fn resolve_json(&self, v: &Value) -> Result<Value, PlanError> {
        Ok(match v {
            Value::String(s) => self.value(s)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.resolve_json(i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, i)| Ok((k.clone(), self.resolve_json(i)?)))
                    .collect::<Result<_, PlanError>>()?,
            ),
            other => other.clone(),
        })
    }

    /// A duration as a normalised literal (`90s` → `1m30s`).
    fn duration(&self, d: Option<&DurationSpec>) -> Result<Option<String>, PlanError> {
        let Some(d) = d else { return Ok(None) };
        let text = match expr::whole_expression(d.as_str()) {
            Some(source) => match self.eval(source)? {
                Value::String(s) => s,
                other => {
                    return Err(PlanError::Evaluation(format!(
                        "`{}` gives {other}, not a duration such as `5m`",
                        d.as_str()
                    )));
                }
            },
            None => d.as_str().to_owned(),
        };
        let parsed = parse_duration(&text)
            .map_err(|e| PlanError::Evaluation(format!("`{}`: {e}", d.as_str())))?;
        Ok(Some(format_duration(parsed)))
    }

    fn resolve_duration(&self, d: &mut DurationSpec) -> Result<(), PlanError> {
        if let Some(text) = self.duration(Some(d))? {
            d.0 = text;
        }
        Ok(())
    }

    fn runs(&self, condition: Option<&str>) -> Result<Runs, PlanError> {
        let Some(c) = condition else {
            return Ok(Runs::Yes);
        };
        let source = expr::unwrap_condition(c);
        if !Self::is_static(source) {
            return Ok(Runs::Depends);
        }
        match self.eval(source)? {
            Value::Bool(true) => Ok(Runs::Yes),
            Value::Bool(false) => Ok(Runs::No),
            other => Err(PlanError::Evaluation(format!(
                "the condition `{source}` gives {other}, not `true` or `false`"
            ))),
        }
    }

    fn step(&self, step: &Step) -> Result<PlanStep, PlanError> {
        let mut s = step.clone();
        for v in s.with.values_mut() {
            *v = self.resolve_json(v)?;
        }
        for d in [&mut s.timeout].into_iter().flatten() {
            self.resolve_duration(d)?;
        }
        if let Some(r) = &mut s.retry {
            for d in [&mut r.delay, &mut r.max_delay].into_iter().flatten() {
                self.resolve_duration(d)?;
            }
        }
        if let Some(w) = &mut s.watch {
            self.resolve_duration(&mut w.interval)?;
            if let Some(d) = &mut w.duration {
                self.resolve_duration(d)?;
            }
        }
        if let Some(a) = &mut s.approval {
            self.resolve_duration(&mut a.timeout)?;
            a.prompt.0 = self.text(a.prompt.as_str())?;
        }
        let kind = match step.kind() {
            Some(StepKind::Plugin(_)) => "plugin",
            Some(StepKind::Gate(_)) => "gate",
            Some(StepKind::Approval(_)) => "approval",
            None => "invalid",
        };
        let runs = self.runs(step.condition.as_ref().map(|c| c.as_str()))?;
        Ok(PlanStep {
            step: s,
            written: Written {
                with: step.with.clone(),
                prompt: step
                    .approval
                    .as_ref()
                    .map(|a| a.prompt.as_str().to_owned())
                    .unwrap_or_default(),
            },
            kind,
            runs,
            after: Vec::new(),
        })
    }

    fn handlers(&self, h: &Handlers) -> Result<PlanHandlers, PlanError> {
        let list = |steps: &[Step]| {
            steps
                .iter()
                .map(|s| self.step(s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(PlanHandlers {
            on_failure: list(&h.on_failure)?,
            on_budget_exceeded: list(&h.on_budget_exceeded)?,
            finally: list(&h.finally)?,
        })
    }
}
