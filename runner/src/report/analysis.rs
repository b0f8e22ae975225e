//! One pass over a run's events that works out what every report needs: which
//! step each event belongs to, which handler list each step ran in, how each
//! stage ended, and what made the run fail.
//!
//! Handler lists. A `handlers` event opens a list; the steps that follow belong
//! to it. For `on_failure` and `finally` that is exact: the engine runs those
//! lists alone, after the stage's (or the run's) steps are over, until the next
//! `handlers`, `stage_*` or `run_finished` event. `on_budget_exceeded` is harder,
//! because its handlers run beside the stage steps that were already running:
//! - the run's list runs with no stage (`stage` is absent in its steps' events),
//!   which tells its steps from the stage's exactly;
//! - a stage's list runs under the stage's id, like the stage's own steps. While
//!   it runs no new stage step starts, so every step that starts (or is skipped)
//!   and was not already running is a handler; the handlers run one after the
//!   other, each starting in the same instant the one before it finished. The
//!   only case the events cannot settle: when a handler finishes, one of the
//!   steps that were already running has finished meanwhile, and a step starts at
//!   once. It is the next handler or a stage step that the finished one released;
//!   the analysis takes it for a stage step (the usual shape: the rollout step
//!   ends while a human is asked whether to go on, then the next step starts).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{RunInfo, Stamped};
use crate::engine::{Event, StepRecord};

/// A step is known by its stage (none for the run's handlers) and its id.
type Key<'a> = (Option<&'a str>, &'a str);

/// One step run: from its `step_started` (if any) to its `step_finished` (if any).
#[derive(Debug)]
pub(super) struct Step<'a> {
    pub stage: Option<&'a str>,
    pub id: &'a str,
    /// `plugin`, `watch`, `gate` or `approval`, from `step_started`; skipped steps
    /// never start, so they have none.
    pub kind: Option<&'static str>,
    /// The handler list it ran in (index into [`Run::lists`]); `None`: a stage step.
    pub list: Option<usize>,
    /// Index of its `step_started` event.
    pub started: Option<usize>,
    /// Index of its `step_finished` event.
    pub finished: Option<usize>,
    pub record: Option<&'a StepRecord>,
    /// Its other events (retries, measurements, gate, approval), in order.
    pub details: Vec<usize>,
    /// It failed, and the stage went on (`continue_on_error`).
    pub tolerated: bool,
    /// Its record comes from the journal (`step_restored`): it finished before
    /// the runner died, in events these do not hold.
    pub restored: bool,
    /// It was running when the runner died; the run was resumed (`run_resumed`)
    /// and the step was not finished by this record of it.
    pub cut: bool,
}

impl<'a> Step<'a> {
    /// The record's status; `unfinished` when it never finished, `cut short`
    /// when the runner died while it ran and the run was resumed.
    pub fn status(&self) -> &'static str {
        match self.record {
            Some(r) => r.status,
            None if self.cut => "cut short",
            None => "unfinished",
        }
    }

    /// A step first seen now.
    fn new(key: Key<'a>, kind: Option<&'static str>, list: Option<usize>) -> Step<'a> {
        Step {
            stage: key.0,
            id: key.1,
            kind,
            list,
            started: None,
            finished: None,
            record: None,
            details: Vec::new(),
            tolerated: false,
            restored: false,
            cut: false,
        }
    }

    /// The index of its first event.
    fn first(&self) -> usize {
        self.started.or(self.finished).unwrap_or(0)
    }
}

/// A handler list that started.
#[derive(Debug)]
pub(super) struct List<'a> {
    /// The stage whose list it is; `None`: the run's.
    pub scope: Option<&'a str>,
    /// `on_failure`, `on_budget_exceeded` or `finally`.
    pub kind: &'static str,
    /// Index of its `handlers` event.
    pub at: usize,
    /// Its steps (indexes into [`Run::steps`]).
    pub steps: Vec<usize>,
}

/// A stage that started or was skipped.
#[derive(Debug)]
pub(super) struct Stage<'a> {
    pub id: &'a str,
    pub skipped: bool,
    pub budget_s: Option<f64>,
    /// `succeeded`, `failed`, `timed_out`, `interrupted`; `None`: never finished.
    pub status: Option<&'static str>,
    pub duration_s: Option<f64>,
    /// Index of its `budget_exceeded` event.
    pub budget_exceeded: Option<usize>,
}

/// What made a run end as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// A step (index into [`Run::steps`]) failed.
    Step(usize),
    /// A `timed_out` or `interrupted` event (index into the events).
    Stopped(usize),
    /// Nothing in the events says.
    Unknown,
}

/// A run, worked out from its events.
#[derive(Debug)]
pub(super) struct Run<'a> {
    pub events: &'a [Stamped],
    /// From `run_finished`; `incomplete` when there is none.
    pub status: &'static str,
    /// Index of `run_finished`.
    pub finished: Option<usize>,
    pub timeout_s: Option<f64>,
    pub budget_s: Option<f64>,
    /// From `run_finished`.
    pub duration_s: Option<f64>,
    pub handler_failures: Option<u32>,
    /// Index of the run's `budget_exceeded`.
    pub budget_exceeded: Option<usize>,
    pub stages: Vec<Stage<'a>>,
    pub steps: Vec<Step<'a>>,
    pub lists: Vec<List<'a>>,
    /// For each event, the step it is about.
    pub step_of: Vec<Option<usize>>,
}

/// Where the walk stands in a handler list.
struct Open<'a> {
    list: usize,
    scope: Option<&'a str>,
    kind: &'static str,
    /// `on_budget_exceeded` of a stage: the stage steps running when it began.
    running: HashSet<Key<'a>>,
    /// One of those finished while the list ran.
    running_finished: bool,
    phase: Phase,
    /// The events name this list's handlers (`handler`): a step they do not
    /// name is a stage step, no guessing needed.
    explicit: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No handler has started yet.
    First,
    /// A handler (index into the steps) is running.
    In(usize),
    /// A handler just finished: the next one starts now, or the list is over.
    After,
}

impl Open<'_> {
    /// A stage's `on_budget_exceeded`: the one list whose steps share their
    /// stage with steps that are not handlers.
    fn shared(&self) -> bool {
        self.kind == "on_budget_exceeded" && self.scope.is_some()
    }
}

/// Walks the events once.
pub(super) fn analyse(events: &[Stamped]) -> Run<'_> {
    let mut run = Run {
        events,
        status: "incomplete",
        finished: None,
        timeout_s: None,
        budget_s: None,
        duration_s: None,
        handler_failures: None,
        budget_exceeded: None,
        stages: Vec::new(),
        steps: Vec::new(),
        lists: Vec::new(),
        step_of: vec![None; events.len()],
    };
    let mut running: HashMap<Key<'_>, usize> = HashMap::new();
    let mut open: Option<Open<'_>> = None;
    for (i, stamped) in events.iter().enumerate() {
        let event = &stamped.event;
        // A stage's budget handlers end when a handler finishes and no other
        // step starts at once.
        if let Some(o) = &open
            && o.shared()
            && o.phase == Phase::After
            && !is_new_step(event, &running, &o.running)
        {
            open = None;
        }
        match event {
            Event::RunStarted {
                timeout_s,
                budget_s,
                ..
            } => {
                run.timeout_s = *timeout_s;
                run.budget_s = *budget_s;
            }
            Event::StageStarted {
                stage, budget_s, ..
            } => {
                open = None;
                run.stages.push(Stage {
                    id: stage,
                    skipped: false,
                    budget_s: *budget_s,
                    status: None,
                    duration_s: None,
                    budget_exceeded: None,
                });
            }
            Event::StageSkipped { stage } => {
                open = None;
                run.stages.push(Stage {
                    id: stage,
                    skipped: true,
                    budget_s: None,
                    status: Some("skipped"),
                    duration_s: None,
                    budget_exceeded: None,
                });
            }
            Event::StepStarted {
                stage,
                step,
                kind,
                handler,
            } => {
                let key = (stage.as_deref(), step.as_str());
                let list = handler_list(&mut open, key, true, run.steps.len(), *handler);
                let index = run.steps.len();
                let mut step = Step::new(key, Some(kind), list);
                step.started = Some(i);
                run.steps.push(step);
                running.insert(key, index);
                run.step_of[i] = Some(index);
            }
            Event::StepFinished(record) => {
                let key = (record.stage.as_deref(), record.step.as_str());
                let index = match running.remove(&key) {
                    Some(index) => index,
                    None => {
                        // Skipped (or never able to start): no `step_started`.
                        let list =
                            handler_list(&mut open, key, false, run.steps.len(), record.handler);
                        run.steps.push(Step::new(key, None, list));
                        run.steps.len() - 1
                    }
                };
                let step = &mut run.steps[index];
                step.finished = Some(i);
                step.record = Some(record);
                run.step_of[i] = Some(index);
                if let Some(o) = &mut open {
                    if o.running.remove(&key) {
                        o.running_finished = true;
                    }
                    if o.phase == Phase::In(index) {
                        o.phase = Phase::After;
                    }
                }
            }
            Event::RunResumed { .. } => {
                // What was running died with the runner.
                open = None;
                for (_, index) in running.drain() {
                    run.steps[index].cut = true;
                }
            }
            Event::StepRestored(record) => {
                let key = (record.stage.as_deref(), record.step.as_str());
                // The same step finishing earlier in these events is the same run
                // of it; otherwise this is the only record of it here.
                let earlier = run
                    .steps
                    .iter()
                    .rposition(|s| (s.stage, s.id) == key && s.record.is_some() && !s.restored);
                let index = match earlier {
                    Some(index) => index,
                    None => {
                        let list =
                            handler_list(&mut open, key, false, run.steps.len(), record.handler);
                        let mut step = Step::new(key, None, list);
                        step.finished = Some(i);
                        step.record = Some(record);
                        step.restored = true;
                        run.steps.push(step);
                        run.steps.len() - 1
                    }
                };
                run.step_of[i] = Some(index);
            }
            Event::Retry { stage, step, .. }
            | Event::Measurement { stage, step, .. }
            | Event::Gate { stage, step, .. }
            | Event::ApprovalRequested { stage, step, .. }
            | Event::ApprovalDecided { stage, step, .. } => {
                if let Some(&index) = running.get(&(stage.as_deref(), step.as_str())) {
                    run.steps[index].details.push(i);
                    run.step_of[i] = Some(index);
                }
            }
            Event::BudgetExceeded { stage, .. } => match stage {
                Some(id) => {
                    if let Some(s) = run.stages.iter_mut().rev().find(|s| s.id == id) {
                        s.budget_exceeded = Some(i);
                    }
                }
                None => run.budget_exceeded = Some(i),
            },
            // Budget handlers still running are dropped with the stage.
            Event::TimedOut { .. } | Event::Interrupted { .. }
                if open
                    .as_ref()
                    .is_some_and(|o| o.kind == "on_budget_exceeded") =>
            {
                open = None;
            }
            Event::Handlers { stage, kind } => {
                let scope = stage.as_deref();
                run.lists.push(List {
                    scope,
                    kind,
                    at: i,
                    steps: Vec::new(),
                });
                let already: HashSet<Key<'_>> = if *kind == "on_budget_exceeded" {
                    running.keys().copied().collect()
                } else {
                    HashSet::new()
                };
                open = Some(Open {
                    list: run.lists.len() - 1,
                    scope,
                    kind,
                    running: already,
                    running_finished: false,
                    phase: Phase::First,
                    explicit: false,
                });
            }
            Event::StageFinished {
                stage,
                status,
                duration_s,
                budget_s,
            } => {
                open = None;
                match run
                    .stages
                    .iter_mut()
                    .rev()
                    .find(|s| s.id == stage && s.status.is_none())
                {
                    Some(s) => {
                        s.status = Some(status);
                        s.duration_s = Some(*duration_s);
                        s.budget_s = s.budget_s.or(*budget_s);
                    }
                    None => run.stages.push(Stage {
                        id: stage,
                        skipped: false,
                        budget_s: *budget_s,
                        status: Some(status),
                        duration_s: Some(*duration_s),
                        budget_exceeded: None,
                    }),
                }
            }
            Event::RunFinished {
                status,
                duration_s,
                budget_s,
                handler_failures,
            } => {
                open = None;
                run.status = status;
                run.finished = Some(i);
                run.duration_s = Some(*duration_s);
                run.budget_s = run.budget_s.or(*budget_s);
                run.handler_failures = Some(*handler_failures);
            }
            // Other stops, and events this module does not know yet (the
            // timeline still shows those).
            _ => {}
        }
    }
    for (index, step) in run.steps.iter().enumerate() {
        if let Some(list) = step.list {
            run.lists[list].steps.push(index);
        }
    }
    mark_tolerated(&mut run.steps);
    run
}

/// Whether `event` starts a step that is neither running nor among `already`
/// (or finishes one that never started: a skipped step).
fn is_new_step(
    event: &Event,
    running: &HashMap<Key<'_>, usize>,
    already: &HashSet<Key<'_>>,
) -> bool {
    let key = match event {
        Event::StepStarted { stage, step, .. } => (stage.as_deref(), step.as_str()),
        Event::StepFinished(r) => (r.stage.as_deref(), r.step.as_str()),
        _ => return false,
    };
    !running.contains_key(&key) && !already.contains(&key)
}

/// The handler list a new step belongs to, given where the walk stands; moves
/// the walk on. `index` is the step's index; `starts`: it has a `step_started`.
///
/// `named`: the handler list the event names (`handler` of `step_started` and
/// of step records). The engine names every handler; events that name none
/// (written by hand, or by an older runner) are placed by their order.
fn handler_list(
    open: &mut Option<Open<'_>>,
    key: Key<'_>,
    starts: bool,
    index: usize,
    named: Option<&str>,
) -> Option<usize> {
    if named.is_some() {
        let o = open.as_mut()?;
        o.explicit = true;
        if o.kind == "on_budget_exceeded" && o.scope.is_some() {
            o.phase = if starts {
                Phase::In(index)
            } else {
                Phase::After
            };
        }
        return Some(o.list);
    }
    if open.as_ref().is_some_and(|o| o.explicit) {
        return None;
    }
    let o = open.as_mut()?;
    if o.kind != "on_budget_exceeded" {
        return Some(o.list);
    }
    if o.scope.is_none() {
        // The run's budget handlers run with no stage; stage steps always have one.
        return key.0.is_none().then_some(o.list);
    }
    if o.running.contains(&key) {
        return None;
    }
    match o.phase {
        // Handlers run one at a time: a second step cannot be one.
        Phase::In(_) => None,
        Phase::After if o.running_finished => {
            *open = None;
            None
        }
        Phase::First | Phase::After => {
            o.phase = if starts {
                Phase::In(index)
            } else {
                Phase::After
            };
            Some(o.list)
        }
    }
}

/// A stage step that failed and after which the same stage started (or
/// skipped) another stage step was allowed to fail: after a failure that stops
/// the stage, no step starts.
fn mark_tolerated(steps: &mut [Step<'_>]) {
    let mut later_start: HashMap<Option<&str>, usize> = HashMap::new();
    for step in steps.iter().filter(|s| s.list.is_none()) {
        let first = step.first();
        later_start
            .entry(step.stage)
            .and_modify(|f| *f = (*f).max(first))
            .or_insert(first);
    }
    for step in steps.iter_mut().filter(|s| s.list.is_none()) {
        if let (Some(r), Some(done)) = (step.record, step.finished) {
            step.tolerated = r.status == "failed"
                && !r.rollback
                && later_start.get(&step.stage).is_some_and(|&l| l > done);
        }
    }
}

impl<'a> Run<'a> {
    /// What made the run end as it did; `None` for a run that succeeded.
    pub fn cause(&self) -> Option<Cause> {
        let first_of = |name: &str| {
            self.events.iter().position(|e| match &e.event {
                Event::TimedOut { .. } => name == "timed_out",
                Event::Interrupted { .. } => name == "interrupted",
                _ => false,
            })
        };
        let failed_step = || {
            // A stage step that stopped its stage, or a budget handler that
            // failed (which fails the stage); the first of them.
            let stops = |s: &Step<'_>| {
                let Some(r) = s.record else { return false };
                let counts = match s.list {
                    None => true,
                    Some(l) => self.lists[l].kind == "on_budget_exceeded",
                };
                counts && ((r.status == "failed" && !s.tolerated) || r.rollback)
            };
            let by_end = |s: &(usize, &Step<'_>)| s.1.finished;
            self.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| stops(s))
                .min_by_key(by_end)
                .map(|(i, _)| i)
        };
        match self.status {
            "succeeded" => None,
            "timed_out" => Some(first_of("timed_out").map_or(Cause::Unknown, Cause::Stopped)),
            "interrupted" => Some(first_of("interrupted").map_or(Cause::Unknown, Cause::Stopped)),
            _ => Some(match failed_step() {
                Some(i) => Cause::Step(i),
                None => first_of("timed_out")
                    .or_else(|| first_of("interrupted"))
                    .map_or(Cause::Unknown, Cause::Stopped),
            }),
        }
    }

    /// The run's duration in seconds: from `run_finished`, else up to its last event.
    pub fn duration(&self) -> f64 {
        self.duration_s.unwrap_or_else(|| {
            self.events
                .last()
                .map_or(0.0, |e| e.offset_ms as f64 / 1000.0)
        })
    }

    /// The steps that failed or were cancelled, in the order they ended.
    pub fn failures(&self) -> Vec<usize> {
        let mut failed: Vec<usize> = (0..self.steps.len())
            .filter(|&i| matches!(self.steps[i].status(), "failed" | "cancelled"))
            .collect();
        failed.sort_by_key(|&i| self.steps[i].finished);
        failed
    }

    /// The steps that started and never finished (not counting those cut short
    /// by a runner that died, when the run was resumed: see [`Step::cut`]).
    pub fn unfinished(&self) -> Vec<usize> {
        (0..self.steps.len())
            .filter(|&i| self.steps[i].record.is_none() && !self.steps[i].cut)
            .collect()
    }

    /// Whether a step cut short by the runner's death ran again (or was failed)
    /// later in the events.
    pub fn taken_up(&self, step: usize) -> bool {
        let s = &self.steps[step];
        self.steps[step + 1..]
            .iter()
            .any(|later| (later.stage, later.id) == (s.stage, s.id))
    }

    /// The step's handler list, if it is a handler.
    pub fn list_of(&self, step: usize) -> Option<&List<'a>> {
        self.steps[step].list.map(|l| &self.lists[l])
    }

    /// The last `gate` event of a step.
    pub fn gate_of(&self, step: usize) -> Option<usize> {
        self.steps[step]
            .details
            .iter()
            .rev()
            .copied()
            .find(|&i| matches!(self.events[i].event, Event::Gate { .. }))
    }

    /// The `measurement` events of a step.
    pub fn measurements_of(&self, step: usize) -> Vec<usize> {
        self.steps[step]
            .details
            .iter()
            .copied()
            .filter(|&i| matches!(self.events[i].event, Event::Measurement { .. }))
            .collect()
    }
}

/// A gate's conditions with their values, and the values they refer to.
#[derive(Debug)]
pub(super) struct GateView<'a> {
    pub outcome: &'static str,
    /// (`pass` or `fail`, the expression, its value).
    pub conditions: Vec<(&'static str, &'a str, &'a Value)>,
    /// Each `steps.…`, `stages.…` and `inputs.…` path the conditions name, with
    /// its value when the gate was judged (`None`: not in the events).
    pub refers_to: Vec<(String, Option<Value>)>,
}

/// The gate event at `index`, explained.
pub(super) fn gate_view<'a>(run: &Run<'a>, info: &RunInfo, index: usize) -> Option<GateView<'a>> {
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
pub(super) fn references(expr: &str) -> Vec<String> {
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
            let step = run
                .steps
                .iter()
                .filter(|s| s.id == segments[1] && s.finished.is_some_and(|f| f < before))
                .max_by_key(|s| s.finished)?;
            let r = step.record?;
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
            let stage = run.stages.iter().rev().find(|s| s.id == segments[1])?;
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
