//! What the reports read: a run's state ([`crate::run_state`], the one fold
//! of its events that the live tree reads too) beside the stamped events it
//! points into, and what a gate's conditions referred to when it was judged.

use std::ops::Deref;

use serde_json::{Map, Value};

use super::{RunInfo, Stamped};
use crate::engine::{Event, StepRecord};
use crate::run_state::RunState;

/// A run: its events and their fold.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub events: &'a [Stamped],
    pub state: RunState,
}

/// The fold of `events`.
pub(crate) fn analyse(events: &[Stamped]) -> Run<'_> {
    Run {
        events,
        state: RunState::from_events(events.iter().map(|e| &e.event)),
    }
}

/// The reports read the state's steps, stages and lists as they are.
impl Deref for Run<'_> {
    type Target = RunState;

    fn deref(&self) -> &RunState {
        &self.state
    }
}

impl<'a> Run<'a> {
    /// A step's record: the `step_finished` or `step_restored` at its
    /// `finished` index.
    pub fn record(&self, step: usize) -> Option<&'a StepRecord> {
        let at = self.state.steps().get(step)?.finished?;
        match &self.events.get(at)?.event {
            Event::StepFinished(r) | Event::StepRestored(r) => Some(r),
            _ => None,
        }
    }

    /// The run's duration in seconds: from `run_finished`, else up to its last event.
    pub fn duration(&self) -> f64 {
        self.state.duration_s().unwrap_or_else(|| {
            self.events
                .last()
                .map_or(0.0, |e| e.offset_ms as f64 / 1000.0)
        })
    }

    /// The last `gate` event of a step.
    pub fn gate_of(&self, step: usize) -> Option<usize> {
        self.state.steps()[step]
            .details
            .iter()
            .rev()
            .copied()
            .find(|&i| matches!(self.events[i].event, Event::Gate { .. }))
    }

    /// The `measurement` events of a step.
    pub fn measurements_of(&self, step: usize) -> Vec<usize> {
        self.state.steps()[step]
            .details
            .iter()
            .copied()
            .filter(|&i| matches!(self.events[i].event, Event::Measurement { .. }))
            .collect()
    }
}

/// A gate's conditions with their values, and the values they refer to.
#[derive(Debug)]
pub(crate) struct GateView<'a> {
    pub outcome: &'static str,
    /// (`pass` or `fail`, the expression, its value).
    pub conditions: Vec<(&'static str, &'a str, &'a Value)>,
    /// Each `steps.…`, `stages.…` and `inputs.…` path the conditions name, with
    /// its value when the gate was judged (`None`: not in the events).
    pub refers_to: Vec<(String, Option<Value>)>,
}

/// The gate event at `index`, explained.
pub(crate) fn gate_view<'a>(run: &Run<'a>, info: &RunInfo, index: usize) -> Option<GateView<'a>> {
    let Event::Gate {
        outcome,
        pass,
        pass_value,
        fail,
        fail_value,
        ..
    } = &run.events.get(index)?.event
    else {
        return None;
    };
    let mut conditions = Vec::new();
    if let (Some(f), Some(v)) = (fail, fail_value) {
        conditions.push(("fail", f.as_str(), v));
    }
    conditions.push(("pass", pass.as_str(), pass_value));
    let mut paths = Vec::new();
    for (_, expr, _) in &conditions {
        for p in references(expr) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    let refers_to = paths
        .into_iter()
        .map(|p| {
            let v = resolve(run, info, &p, index);
            (p, v)
        })
        .collect();
    Some(GateView {
        outcome,
        conditions,
        refers_to,
    })
}

/// The dotted paths under `steps`, `stages` and `inputs` that a CEL expression
/// names, in order, without method calls (`x.startsWith(…)` gives `x`) and
/// ignoring string literals.
pub(crate) fn references(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == '\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        let starts_word = ident(c) && (i == 0 || !(ident(chars[i - 1]) || chars[i - 1] == '.'));
        if !starts_word {
            i += 1;
            continue;
        }
        // A dotted path: ident(.ident)*
        let mut segments: Vec<String> = Vec::new();
        let mut j = i;
        loop {
            let begin = j;
            while j < chars.len() && ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[begin..j].iter().collect());
            if j + 1 < chars.len() && chars[j] == '.' && ident(chars[j + 1]) {
                j += 1;
            } else {
                break;
            }
        }
        if j < chars.len() && chars[j] == '(' {
            segments.pop();
        }
        let wanted = match segments.first().map(String::as_str) {
            Some("steps" | "stages") => 3,
            Some("inputs") => 2,
            _ => usize::MAX,
        };
        if segments.len() >= wanted {
            let path = segments.join(".");
            if !found.contains(&path) {
                found.push(path);
            }
        }
        i = j.max(i + 1);
    }
    found
}

/// The value of a path as the expressions saw it just before event `before`.
fn resolve(run: &Run<'_>, info: &RunInfo, path: &str, before: usize) -> Option<Value> {
    let segments: Vec<&str> = path.split('.').collect();
    let (root, rest) = match segments[0] {
        "inputs" => (Value::Object(info.inputs.clone()), &segments[1..]),
        "steps" => {
            let (step, _) = run
                .steps()
                .iter()
                .enumerate()
                .filter(|(_, s)| s.id == segments[1] && s.finished.is_some_and(|f| f < before))
                .max_by_key(|(_, s)| s.finished)?;
            let r = run.record(step)?;
            let mut fields = Map::new();
            fields.insert("status".into(), r.status.into());
            fields.insert("outputs".into(), Value::Object(r.outputs.clone()));
            fields.insert("summary".into(), r.summary.clone().into());
            fields.insert("duration".into(), (r.duration_ms as f64 / 1000.0).into());
            fields.insert("attempts".into(), r.attempts.into());
            (Value::Object(fields), &segments[2..])
        }
        "stages" => {
            // A stage's variables are set when its steps are over, so only a
            // stage that finished before the gate has them.
            let finished_at = |id: &str| {
                run.events[..before].iter().rposition(
                    |e| matches!(&e.event, Event::StageFinished { stage, .. } if stage == id),
                )
            };
            let stage = run.stages().iter().rev().find(|s| s.id == segments[1])?;
            let mut fields = Map::new();
            if stage.skipped {
                fields.insert("status".into(), "skipped".into());
                fields.insert("duration".into(), 0.0.into());
            } else {
                finished_at(segments[1])?;
                fields.insert("status".into(), stage.status?.into());
                fields.insert("duration".into(), stage.duration_s?.into());
            }
            (Value::Object(fields), &segments[2..])
        }
        _ => return None,
    };
    let mut value = &root;
    for s in rest {
        value = value.get(*s)?;
    }
    Some(value.clone())
}
