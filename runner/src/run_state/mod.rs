//! A run as its events tell it: one fold of the event stream, which the live
//! tree (`cli::progress`), the reports (`report`) and a server's run page read,
//! so that none of them can tell the same run another way.
//!
//! What it holds: the stages (started, skipped, how each ended), every run of
//! every step (known by its stage and id; a step started again after a resume,
//! or finished twice in a damaged record, is one more run of it), the handler
//! lists and the steps that ran in each, how the run ended, and for each event
//! the part of the run it is about ([`About`]). It keeps the indexes of the
//! events, not the events: whoever reads it has them (the journal's rows, a
//! report's list), and a step's record is the event at its `finished` index.
//!
//! Why one fold that takes one event at a time ([`RunState::apply`]): the live
//! tree draws each event as it comes, and a report folds a whole list
//! ([`RunState::from_events`]); every rule below looks only at the events
//! before, so both see the same run at the same point.
//!
//! Events may come from a damaged journal (a run cut short, rows lost), so no
//! order is assumed and none panics: a finish without a start is a step that
//! never started (as a skipped step is), a second finish is one more run of
//! the step, the retries, measurements, gates and approvals of a step that is
//! not running belong to no step, a step (or list) seen before its stage
//! started is that stage's once it does, a stage that finishes without having
//! started is a stage of its own.
//!
//! Handler lists. A `handlers` event opens a list; the steps that follow belong
//! to it. The engine names the list of every handler (`handler` on
//! `step_started` and on step records): once the events of a list name one,
//! a step they do not name is not a handler of it. Events that name none
//! (written by hand, or by an older runner) are placed by their order, and for
//! `on_failure` and `finally` that is exact: the engine runs those lists alone,
//! after the stage's (or the run's) steps are over, until the next `handlers`,
//! `stage_*`, `run_resumed` or `run_finished` event. `on_budget_exceeded` is
//! harder, because its handlers run beside the stage steps that were already
//! running:
//! - the run's list runs with no stage (`stage` is absent in its steps' events),
//!   which tells its steps from the stage's exactly;
//! - a stage's list runs under the stage's id, like the stage's own steps. While
//!   it runs no new stage step starts, so every step that starts (or is skipped)
//!   and was not already running is a handler; the handlers run one after the
//!   other, each starting in the same instant the one before it finished. The
//!   only case the events cannot settle: when a handler finishes, one of the
//!   steps that were already running has finished meanwhile, and a step starts at
//!   once. It is the next handler or a stage step that the finished one released;
//!   the fold takes it for a stage step (the usual shape: the rollout step
//!   ends while a human is asked whether to go on, then the next step starts).
//!   A handler that finishes with no step starting at once ends the list.
//!
//! A timeout or a signal stops the `on_budget_exceeded` handlers that are
//! running, without a record of their end: they are [`Step::dropped`], and
//! the list takes no more steps. The placement itself lives in `lists.rs`.

use std::collections::{HashMap, HashSet};

use crate::engine::Event;
use crate::engine::events::Word;

mod lists;

use lists::Open;

/// A step is known by its stage (none for the run's handlers) and its id.
type Key = (Option<String>, String);

fn key(stage: Option<&str>, step: &str) -> Key {
    (stage.map(str::to_owned), step.to_owned())
}

/// The run, as far as its events go.
#[derive(Debug, Default)]
pub struct RunState {
    /// From `run_finished`.
    status: Option<Word>,
    /// Index of `run_finished`.
    finished: Option<usize>,
    timeout_s: Option<f64>,
    budget_s: Option<f64>,
    duration_s: Option<f64>,
    handler_failures: Option<u32>,
    /// Index of the run's `budget_exceeded`.
    budget_exceeded: Option<usize>,
    /// Index of the first `timed_out`.
    timed_out: Option<usize>,
    /// Index of the first `interrupted`.
    interrupted: Option<usize>,
    stages: Vec<Stage>,
    steps: Vec<Step>,
    lists: Vec<List>,
    /// For each event, what it is about.
    about: Vec<About>,
    /// The steps running now, by key.
    running: HashMap<Key, usize>,
    /// The handler list that takes new steps, if any.
    open: Option<Open>,
    /// For each stage id, the index of the event that brought its latest own
    /// step (see [`RunState::tolerated`]).
    last_stage_step: HashMap<Option<String>, usize>,
}

/// One run of a step: from its `step_started` (if any) to its `step_finished`
/// (if any).
#[derive(Debug, Clone)]
pub struct Step {
    /// Its stage's id; `None` for the run's handlers.
    pub stage: Option<String>,
    pub id: String,
    /// `plugin`, `watch`, `gate` or `approval`, from `step_started`; skipped steps
    /// never start, so they have none.
    pub kind: Option<Word>,
    /// The handler list it ran in (index into [`RunState::lists`]); `None`: a
    /// stage's own step.
    pub list: Option<usize>,
    /// The stage it ran in (index into [`RunState::stages`]): the latest of its
    /// id when the step first appeared, else the first to appear after it;
    /// `None` while none has.
    pub in_stage: Option<usize>,
    /// Index of its `step_started` event.
    pub started: Option<usize>,
    /// Index of its `step_finished` (or `step_restored`) event: its record.
    pub finished: Option<usize>,
    /// Its other events (retries, measurements, gate, approval), in order.
    pub details: Vec<usize>,
    /// The status its record gives; `None` until it finishes.
    pub outcome: Option<Word>,
    /// Its record says `rollback`: an approval nobody answered in time whose
    /// step says `on_timeout: rollback`.
    pub rollback: bool,
    /// Its record comes from the journal (`step_restored`): it finished before
    /// the runner died, in events these do not hold.
    pub restored: bool,
    /// It was running when the runner died; the run was resumed (`run_resumed`)
    /// and the step was not finished by this record of it.
    pub cut: bool,
    /// A budget handler that was running when a timeout or signal came: the
    /// engine dropped it, and no end of it will be told.
    pub dropped: bool,
}

impl Step {
    /// The record's status; `unfinished` when it never finished, `cut short`
    /// when the runner died while it ran and the run was resumed.
    pub fn status(&self) -> Word {
        match self.outcome {
            Some(status) => status,
            None if self.cut => "cut short",
            None => "unfinished",
        }
    }
}

/// A handler list that started.
#[derive(Debug, Clone)]
pub struct List {
    /// The stage whose list it is; `None`: the run's.
    pub scope: Option<String>,
    /// `on_failure`, `on_budget_exceeded` or `finally`.
    pub kind: Word,
    /// Index of its `handlers` event.
    pub at: usize,
    /// The stage it ran in (index into [`RunState::stages`]), as for a step.
    pub in_stage: Option<usize>,
    /// Its steps (indexes into [`RunState::steps`]), in order.
    pub steps: Vec<usize>,
}

/// A stage that started, was skipped, or finished.
#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub skipped: bool,
    pub budget_s: Option<f64>,
    pub timeout_s: Option<f64>,
    /// `succeeded`, `failed`, `timed_out`, `interrupted`, `skipped`; `None`:
    /// never finished.
    pub status: Option<Word>,
    pub duration_s: Option<f64>,
    /// Index of its `budget_exceeded` event.
    pub budget_exceeded: Option<usize>,
    /// Its own steps (not its handlers), in order.
    pub steps: Vec<usize>,
    /// Its handler lists, in order.
    pub lists: Vec<usize>,
}

impl Stage {
    fn new(id: &str) -> Stage {
        Stage {
            id: id.to_owned(),
            skipped: false,
            budget_s: None,
            timeout_s: None,
            status: None,
            duration_s: None,
            budget_exceeded: None,
            steps: Vec::new(),
            lists: Vec::new(),
        }
    }
}

/// The part of the run an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// The run as a whole (its start, end, resume, budget, a timeout, a signal).
    Run,
    /// A stage (index into [`RunState::stages`]).
    Stage(usize),
    /// A step (index into [`RunState::steps`]).
    Step(usize),
    /// A handler list (index into [`RunState::lists`]).
    List(usize),
    /// Nothing known: a detail of a step that is not running, the budget of a
    /// stage that never appeared.
    Nothing,
}

/// What made a run end as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A step (index into [`RunState::steps`]) failed.
    Step(usize),
    /// A `timed_out` or `interrupted` event (index into the events).
    Stopped(usize),
    /// Nothing in the events says.
    Unknown,
}

impl RunState {
    /// A run no event has told anything about yet.
    pub fn new() -> RunState {
        RunState::default()
    }

    /// A run told by all of `events`, in order.
    pub fn from_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> RunState {
        let mut state = RunState::new();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Takes the next event in; says what it is about.
    pub fn apply(&mut self, event: &Event) -> About {
        let i = self.about.len();
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.ends_before(event, &self.running))
        {
            self.open = None;
        }
        let about = match event {
            Event::RunStarted {
                timeout_s,
                budget_s,
                ..
            } => {
                self.timeout_s = *timeout_s;
                self.budget_s = *budget_s;
                About::Run
            }
            Event::StageStarted {
                stage,
                timeout_s,
                budget_s,
            } => {
                self.open = None;
                let mut s = Stage::new(stage);
                s.budget_s = *budget_s;
                s.timeout_s = *timeout_s;
                About::Stage(self.push_stage(s))
            }
            Event::StageSkipped { stage } => {
                self.open = None;
                let mut s = Stage::new(stage);
                s.skipped = true;
                s.status = Some("skipped");
                About::Stage(self.push_stage(s))
            }
            Event::StepStarted {
                stage,
                step,
                kind,
                handler,
            } => {
                let key = key(stage.as_deref(), step);
                let index = self.steps.len();
                let list = lists::place(&mut self.open, &key, true, index, *handler);
                let index = self.new_step(key.clone(), list, i);
                self.steps[index].kind = Some(*kind);
                self.steps[index].started = Some(i);
                self.running.insert(key, index);
                About::Step(index)
            }
            Event::StepFinished(record) => {
                let key = key(record.stage.as_deref(), &record.step);
                let index = match self.running.remove(&key) {
                    Some(index) => index,
                    None => {
                        // Skipped (or never able to start): no `step_started`.
                        let index = self.steps.len();
                        let list = lists::place(&mut self.open, &key, false, index, record.handler);
                        self.new_step(key.clone(), list, i)
                    }
                };
                let step = &mut self.steps[index];
                step.finished = Some(i);
                step.outcome = Some(record.status);
                step.rollback = record.rollback;
                if let Some(o) = &mut self.open {
                    o.step_finished(&key, index);
                }
                About::Step(index)
            }
            Event::RunResumed { .. } => {
                // What was running died with the runner.
                self.open = None;
                for (_, index) in self.running.drain() {
                    self.steps[index].cut = true;
                }
                About::Run
            }
            Event::StepRestored(record) => {
                let key = key(record.stage.as_deref(), &record.step);
                // The same step finishing earlier in these events is the same run
                // of it; otherwise this is the only record of it here.
                let earlier = self.steps.iter().rposition(|s| {
                    s.stage == key.0 && s.id == key.1 && s.outcome.is_some() && !s.restored
                });
                match earlier {
                    Some(index) => About::Step(index),
                    None => {
                        let index = self.steps.len();
                        let list = lists::place(&mut self.open, &key, false, index, record.handler);
                        let index = self.new_step(key, list, i);
                        let step = &mut self.steps[index];
                        step.finished = Some(i);
                        step.outcome = Some(record.status);
                        step.rollback = record.rollback;
                        step.restored = true;
                        About::Step(index)
                    }
                }
            }
            Event::Retry { stage, step, .. }
            | Event::Measurement { stage, step, .. }
            | Event::Gate { stage, step, .. }
            | Event::ApprovalRequested { stage, step, .. }
            | Event::ApprovalDecided { stage, step, .. } => {
                match self.running.get(&key(stage.as_deref(), step)) {
                    Some(&index) => {
                        self.steps[index].details.push(i);
                        About::Step(index)
                    }
                    None => About::Nothing,
                }
            }
            Event::BudgetExceeded { stage, .. } => match stage {
                Some(id) => match self.stages.iter().rposition(|s| &s.id == id) {
                    Some(s) => {
                        self.stages[s].budget_exceeded = Some(i);
                        About::Stage(s)
                    }
                    None => About::Nothing,
                },
                None => {
                    self.budget_exceeded = Some(i);
                    About::Run
                }
            },
            Event::TimedOut { .. } | Event::Interrupted { .. } => {
                let first = match event {
                    Event::TimedOut { .. } => &mut self.timed_out,
                    _ => &mut self.interrupted,
                };
                first.get_or_insert(i);
                // Budget handlers still running are dropped with the stage.
                if self
                    .open
                    .as_ref()
                    .is_some_and(|o| o.kind == "on_budget_exceeded")
                {
                    self.open = None;
                }
                for list in self.lists.iter().filter(|l| l.kind == "on_budget_exceeded") {
                    for &s in &list.steps {
                        let step = &mut self.steps[s];
                        step.dropped |= step.finished.is_none();
                    }
                }
                About::Run
            }
            Event::Handlers { stage, kind } => {
                let l = self.lists.len();
                let in_stage = self.latest_stage(stage.as_deref());
                self.lists.push(List {
                    scope: stage.clone(),
                    kind,
                    at: i,
                    in_stage,
                    steps: Vec::new(),
                });
                if let Some(s) = in_stage {
                    self.stages[s].lists.push(l);
                }
                let already: HashSet<Key> = if *kind == "on_budget_exceeded" {
                    self.running.keys().cloned().collect()
                } else {
                    HashSet::new()
                };
                self.open = Some(Open::new(l, stage.clone(), kind, already));
                About::List(l)
            }
            Event::StageFinished {
                stage,
                status,
                duration_s,
                budget_s,
            } => {
                self.open = None;
                let unfinished = self
                    .stages
                    .iter()
                    .rposition(|s| &s.id == stage && s.status.is_none());
                let s = match unfinished {
                    Some(s) => s,
                    None => self.push_stage(Stage::new(stage)),
                };
                let st = &mut self.stages[s];
                st.status = Some(*status);
                st.duration_s = Some(*duration_s);
                st.budget_s = st.budget_s.or(*budget_s);
                About::Stage(s)
            }
            Event::RunFinished {
                status,
                duration_s,
                budget_s,
                handler_failures,
            } => {
                self.open = None;
                self.status = Some(*status);
                self.finished = Some(i);
                self.duration_s = Some(*duration_s);
                self.budget_s = self.budget_s.or(*budget_s);
                self.handler_failures = Some(*handler_failures);
                About::Run
            }
        };
        self.about.push(about);
        about
    }

    /// A run of a step first seen at event `at`, in `list` (or its stage).
    fn new_step(&mut self, key: Key, list: Option<usize>, at: usize) -> usize {
        let index = self.steps.len();
        let in_stage = self.latest_stage(key.0.as_deref());
        match list {
            Some(l) => self.lists[l].steps.push(index),
            None => {
                if let Some(s) = in_stage {
                    self.stages[s].steps.push(index);
                }
                self.last_stage_step.insert(key.0.clone(), at);
            }
        }
        self.steps.push(Step {
            stage: key.0,
            id: key.1,
            kind: None,
            list,
            in_stage,
            started: None,
            finished: None,
            details: Vec::new(),
            outcome: None,
            rollback: false,
            restored: false,
            cut: false,
            dropped: false,
        });
        index
    }

    /// A stage appears; the steps and lists of its id that came before any
    /// stage of it (a damaged record) are its.
    fn push_stage(&mut self, mut stage: Stage) -> usize {
        let s = self.stages.len();
        for (i, step) in self.steps.iter_mut().enumerate() {
            if step.in_stage.is_none() && step.stage.as_deref() == Some(&stage.id) {
                step.in_stage = Some(s);
                if step.list.is_none() {
                    stage.steps.push(i);
                }
            }
        }
        for (l, list) in self.lists.iter_mut().enumerate() {
            if list.in_stage.is_none() && list.scope.as_deref() == Some(&stage.id) {
                list.in_stage = Some(s);
                stage.lists.push(l);
            }
        }
        self.stages.push(stage);
        s
    }

    /// The latest stage of that id.
    fn latest_stage(&self, id: Option<&str>) -> Option<usize> {
        let id = id?;
        self.stages.iter().rposition(|s| s.id == id)
    }

    /// `succeeded`, `failed`, `timed_out` or `interrupted`, from `run_finished`;
    /// `incomplete` when there is none.
    pub fn status(&self) -> Word {
        self.status.unwrap_or("incomplete")
    }

    /// Index of `run_finished`.
    pub fn finished(&self) -> Option<usize> {
        self.finished
    }

    pub fn timeout_s(&self) -> Option<f64> {
        self.timeout_s
    }

    /// From `run_started`, else from `run_finished`.
    pub fn budget_s(&self) -> Option<f64> {
        self.budget_s
    }

    /// From `run_finished`.
    pub fn duration_s(&self) -> Option<f64> {
        self.duration_s
    }

    /// From `run_finished`.
    pub fn handler_failures(&self) -> Option<u32> {
        self.handler_failures
    }

    /// Index of the run's `budget_exceeded`.
    pub fn budget_exceeded(&self) -> Option<usize> {
        self.budget_exceeded
    }

    /// The stages, in the order they appeared.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Every run of every step, in the order they appeared.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The handler lists that started, in order.
    pub fn lists(&self) -> &[List] {
        &self.lists
    }

    /// How many events it has taken in.
    pub fn events(&self) -> usize {
        self.about.len()
    }

    /// What event `event` is about; [`About::Nothing`] past the last one.
    pub fn about(&self, event: usize) -> About {
        self.about.get(event).copied().unwrap_or(About::Nothing)
    }

    /// The step event `event` is about.
    pub fn step_of(&self, event: usize) -> Option<usize> {
        match self.about(event) {
            About::Step(s) => Some(s),
            _ => None,
        }
    }

    /// The latest run of a step.
    pub fn latest(&self, stage: Option<&str>, step: &str) -> Option<usize> {
        self.steps
            .iter()
            .rposition(|s| s.stage.as_deref() == stage && s.id == step)
    }

    /// The step's handler list, if it is a handler.
    pub fn list_of(&self, step: usize) -> Option<&List> {
        self.steps
            .get(step)
            .and_then(|s| s.list)
            .and_then(|l| self.lists.get(l))
    }

    /// A stage step that failed, after which the same stage started (or
    /// skipped) another of its steps, was allowed to fail: after a failure
    /// that stops the stage, no step starts.
    pub fn tolerated(&self, step: usize) -> bool {
        let Some(s) = self.steps.get(step) else {
            return false;
        };
        s.list.is_none()
            && s.outcome == Some("failed")
            && !s.rollback
            && s.finished.is_some_and(|done| {
                self.last_stage_step
                    .get(&s.stage)
                    .is_some_and(|&later| later > done)
            })
    }

    /// What made the run end as it did; `None` for a run that succeeded.
    pub fn cause(&self) -> Option<Cause> {
        let stopped = |first: Option<usize>| first.map_or(Cause::Unknown, Cause::Stopped);
        let failed_step = || {
            // A stage step that stopped its stage, or a budget handler that
            // failed (which fails the stage); the first of them.
            let stops = |(i, s): &(usize, &Step)| {
                let counts = match s.list {
                    None => true,
                    Some(l) => self
                        .lists
                        .get(l)
                        .is_some_and(|l| l.kind == "on_budget_exceeded"),
                };
                let failed = s.outcome == Some("failed") && !self.tolerated(*i);
                s.outcome.is_some() && counts && (failed || s.rollback)
            };
            self.steps
                .iter()
                .enumerate()
                .filter(stops)
                .min_by_key(|(_, s)| s.finished)
                .map(|(i, _)| i)
        };
        match self.status() {
            "succeeded" => None,
            "timed_out" => Some(stopped(self.timed_out)),
            "interrupted" => Some(stopped(self.interrupted)),
            _ => Some(match failed_step() {
                Some(i) => Cause::Step(i),
                None => stopped(self.timed_out.or(self.interrupted)),
            }),
        }
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
            .filter(|&i| self.steps[i].outcome.is_none() && !self.steps[i].cut)
            .collect()
    }

    /// Whether a step cut short by the runner's death ran again (or was failed)
    /// later in the events.
    pub fn taken_up(&self, step: usize) -> bool {
        let Some(s) = self.steps.get(step) else {
            return false;
        };
        self.steps[step + 1..]
            .iter()
            .any(|later| later.stage == s.stage && later.id == s.id)
    }
}

#[cfg(test)]
mod tests;
