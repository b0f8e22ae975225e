//! Which handler list a new step runs in: the rules of the module doc of
//! `run_state`, as the fold walks the events.

use std::collections::{HashMap, HashSet};

use super::Key;
use crate::engine::Event;
use crate::engine::events::Word;

/// Where the fold stands in the handler list that takes new steps.
#[derive(Debug)]
pub(super) struct Open {
    /// Index of the list.
    list: usize,
    /// The stage whose list it is; `None`: the run's.
    scope: Option<String>,
    pub(super) kind: Word,
    /// `on_budget_exceeded` of a stage: the stage steps running when it began.
    running: HashSet<Key>,
    /// One of those finished while the list ran.
    running_finished: bool,
    phase: Phase,
    /// The events name this list's handlers (`handler`): a step they do not
    /// name is a stage step, no guessing needed.
    explicit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No handler has started yet.
    First,
    /// A handler (index into the steps) is running.
    In(usize),
    /// A handler just finished: the next one starts now, or the list is over.
    After,
}

impl Open {
    /// List `list` opens; `running`: for a stage's `on_budget_exceeded`, the
    /// steps running as it begins.
    pub(super) fn new(
        list: usize,
        scope: Option<String>,
        kind: Word,
        running: HashSet<Key>,
    ) -> Open {
        Open {
            list,
            scope,
            kind,
            running,
            running_finished: false,
            phase: Phase::First,
            explicit: false,
        }
    }

    /// A stage's `on_budget_exceeded`: the one list whose steps share their
    /// stage with steps that are not handlers.
    fn shared(&self) -> bool {
        self.kind == "on_budget_exceeded" && self.scope.is_some()
    }

    /// Whether a stage's budget handlers are over before `event`: a handler
    /// finished and `event` starts no other step at once.
    pub(super) fn ends_before(&self, event: &Event, running: &HashMap<Key, usize>) -> bool {
        self.shared() && self.phase == Phase::After && !is_new_step(event, running, &self.running)
    }

    /// Step `index`, known by `key`, finished.
    pub(super) fn step_finished(&mut self, key: &Key, index: usize) {
        if self.running.remove(key) {
            self.running_finished = true;
        }
        if self.phase == Phase::In(index) {
            self.phase = Phase::After;
        }
    }

    /// A handler of this list: step `index` (`starts`: with a `step_started`).
    fn take(&mut self, index: usize, starts: bool) -> Option<usize> {
        self.phase = if starts {
            Phase::In(index)
        } else {
            Phase::After
        };
        Some(self.list)
    }
}

/// Whether `event` starts a step that is neither running nor among `already`
/// (or finishes one that never started: a skipped step).
fn is_new_step(event: &Event, running: &HashMap<Key, usize>, already: &HashSet<Key>) -> bool {
    let key = match event {
        Event::StepStarted { stage, step, .. } => (stage.clone(), step.clone()),
        Event::StepFinished(r) => (r.stage.clone(), r.step.clone()),
        _ => return false,
    };
    !running.contains_key(&key) && !already.contains(&key)
}

/// The handler list a new step belongs to, given where the fold stands; moves
/// the fold on. `index` is the step's index; `starts`: it has a `step_started`.
///
/// `named`: the handler list the event names (`handler` of `step_started` and
/// of step records). The engine names every handler; events that name none
/// (written by hand, or by an older runner) are placed by their order.
pub(super) fn place(
    open: &mut Option<Open>,
    key: &Key,
    starts: bool,
    index: usize,
    named: Option<&str>,
) -> Option<usize> {
    if named.is_some() {
        let o = open.as_mut()?;
        o.explicit = true;
        if o.shared() {
            return o.take(index, starts);
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
    if o.running.contains(key) {
        return None;
    }
    match o.phase {
        // Handlers run one at a time: a second step cannot be one.
        Phase::In(_) => None,
        Phase::After if o.running_finished => {
            *open = None;
            None
        }
        Phase::First | Phase::After => o.take(index, starts),
    }
}
