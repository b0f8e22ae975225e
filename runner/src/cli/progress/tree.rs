//! The run as the events told it so far: stages, steps and handler lists,
//! and what each event changes ([`Tree::apply`]); what is over goes above as
//! text, what still runs is drawn by [`view`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::line::{
    Clock, Line, Mark, Timed, against, capped, later, one_line, paint, plural, seconds, span, took,
};
use super::{BOLD, DETAIL_MAX, RECENT_DONE, RED, YELLOW};
use crate::engine::approval::Decision;
use crate::engine::watch::Verdict;
use crate::engine::{Event, StepRecord};
use view::decided;

/// The run as the events told it so far.
pub(crate) struct Tree {
    color: bool,
    run: Option<Run>,
    stages: Vec<Stage>,
    /// Run-level handler lists (steps without a stage).
    run_groups: Vec<Group>,
    steps: Vec<Step>,
    /// The latest step for each (stage, step id).
    latest: HashMap<(Option<String>, String), usize>,
    /// `run_finished` came, or the display finished: nothing is live.
    ended: bool,
    /// The handler list the event being applied names for its step, if any;
    /// taken by the next new step.
    said: Option<&'static str>,
}

struct Run {
    /// `None` for a resumed run (its event does not name the playbook).
    playbook: Option<String>,
    since: Instant,
    budget: Option<Duration>,
    timeout: Option<Duration>,
    over: bool,
    signal: Option<&'static str>,
}

struct Stage {
    name: String,
    since: Option<Instant>,
    budget: Option<Duration>,
    timeout: Option<Duration>,
    over: bool,
    end: Option<StageEnd>,
    steps: Vec<usize>,
    groups: Vec<Group>,
    /// Printed above: no longer on the live part.
    committed: bool,
}

#[derive(Clone, Copy)]
enum StageEnd {
    Skipped,
    Finished {
        status: &'static str,
        took: Duration,
    },
}

struct Group {
    /// `on_failure`, `finally`, `on_budget_exceeded`; empty: steps without a list.
    kind: String,
    steps: Vec<usize>,
    /// New steps of the stage go here.
    accepting: bool,
    /// A stage's `on_budget_exceeded`: its handlers run beside the stage's
    /// steps, under the same stage id (see the module doc).
    shared: Option<Shared>,
    /// The events name this list's handlers (`handler`): a step they do not
    /// name is a stage step, no guessing needed.
    explicit: bool,
}

impl Group {
    fn new(kind: &str) -> Group {
        Group {
            kind: one_line(kind),
            steps: Vec::new(),
            accepting: true,
            shared: None,
            explicit: false,
        }
    }
}

/// Where a stage's `on_budget_exceeded` list stands.
struct Shared {
    /// The stage's steps that were running when the list began.
    running: Vec<usize>,
    /// One of them has finished since: it may have let a stage step start.
    released: bool,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No handler yet.
    First,
    /// This handler runs.
    In(usize),
    /// A handler just ended: the next step is the next handler, or the list is over.
    After,
}

struct Step {
    name: String,
    stage: Option<usize>,
    kind: Option<&'static str>,
    since: Option<Instant>,
    note: Note,
    end: Option<End>,
    /// A budget handler stopped by a timeout or signal: it will not end.
    dropped: bool,
}

struct End {
    status: &'static str,
    attempts: u32,
    took: Duration,
    summary: String,
    error: Option<String>,
    /// From the journal (`runner resume`, `rerun`): it did not run now.
    restored: bool,
}

/// What the step line says while the step runs.
enum Note {
    None,
    Retry {
        attempt: u32,
        at: Instant,
        error: String,
    },
    Measurement {
        n: u32,
        verdict: &'static str,
        error: Option<String>,
    },
    Gate(&'static str),
    Approval {
        until: Instant,
    },
    Decided(&'static str),
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Success => "success",
        Verdict::Failure => "failure",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Error => "error",
    }
}

impl Tree {
    pub(crate) fn new(color: bool) -> Tree {
        Tree {
            color,
            run: None,
            stages: Vec::new(),
            run_groups: Vec::new(),
            steps: Vec::new(),
            latest: HashMap::new(),
            ended: false,
            said: None,
        }
    }

    /// Takes one event in, at `now`; gives the lines to print above the live
    /// part (notices, a finished stage's block, the verdict).
    pub(crate) fn apply(&mut self, event: &Event, now: Instant) -> Vec<String> {
        let mut above = Vec::new();
        match event {
            Event::RunStarted {
                playbook,
                timeout_s,
                budget_s,
                by,
                by_source,
            } => {
                let run = Run {
                    playbook: Some(one_line(playbook)),
                    since: now,
                    budget: budget_s.map(seconds),
                    timeout: timeout_s.map(seconds),
                    over: false,
                    signal: None,
                };
                let mut limits = Vec::new();
                if let Some(who) = crate::identity::recorded(by.as_deref(), by_source.as_deref()) {
                    limits.push(format!("by {}", one_line(&who)));
                }
                if let Some(b) = run.budget {
                    limits.push(format!("budget {}", span(b)));
                }
                if let Some(t) = run.timeout {
                    limits.push(format!("timeout {}", span(t)));
                }
                let name = format!("run {}", one_line(playbook));
                above.push(
                    self.render(&Line::new(0, Mark::Blank, &name).with_detail(&limits.join(" · "))),
                );
                self.run = Some(run);
            }
            Event::RunResumed {
                restored,
                in_flight,
                ..
            } => {
                self.run = Some(Run {
                    playbook: None,
                    since: now,
                    budget: None,
                    timeout: None,
                    over: false,
                    signal: None,
                });
                let mut text = format!(
                    "run resumed: {} restored from the journal",
                    plural(*restored, "finished step", "finished steps")
                );
                if !in_flight.is_empty() {
                    let _ = write!(
                        text,
                        "; running when the runner stopped (run again or failed): {}",
                        in_flight.join(", ")
                    );
                }
                above.push(one_line(&text));
            }
            Event::StageStarted {
                stage,
                timeout_s,
                budget_s,
            } => {
                let s = self.stage_for_start(stage);
                let st = &mut self.stages[s];
                st.since = Some(now);
                st.budget = budget_s.map(seconds);
                st.timeout = timeout_s.map(seconds);
            }
            Event::StageSkipped { stage } => {
                let s = self.stage_at(stage);
                self.stages[s].end = Some(StageEnd::Skipped);
                above.extend(self.commit(s));
            }
            Event::StepStarted {
                stage,
                step,
                kind,
                handler,
            } => {
                self.said = *handler;
                let i = match self.latest.get(&key(stage.as_deref(), step)) {
                    // Something about it came before its start: same step.
                    Some(&i) if self.steps[i].end.is_none() && self.steps[i].since.is_none() => i,
                    _ => self.new_step(stage.as_deref(), step, true),
                };
                self.steps[i].since = Some(now);
                self.steps[i].kind = Some(*kind);
            }
            Event::StepRestored(record) => {
                self.said = record.handler;
                let i = self.step_at(record.stage.as_deref(), &record.step);
                self.steps[i].end = Some(end_of(record, true));
                self.ended_in_shared_list(i);
                above.extend(self.late(i));
            }
            Event::Retry {
                stage,
                step,
                attempt,
                delay_ms,
                error,
            } => {
                let i = self.step_at(stage.as_deref(), step);
                self.steps[i].note = Note::Retry {
                    attempt: *attempt,
                    at: later(now, Duration::from_millis(*delay_ms)),
                    error: error.clone(),
                };
            }
            Event::Measurement {
                stage,
                step,
                n,
                verdict,
                error,
                ..
            } => {
                let i = self.step_at(stage.as_deref(), step);
                self.steps[i].note = Note::Measurement {
                    n: *n,
                    verdict: verdict_word(*verdict),
                    error: error.clone(),
                };
            }
            Event::Gate {
                stage,
                step,
                outcome,
                ..
            } => {
                let i = self.step_at(stage.as_deref(), step);
                self.steps[i].note = Note::Gate(outcome);
            }
            Event::ApprovalRequested {
                stage,
                step,
                prompt,
                approvers,
                timeout_s,
                answer_with,
            } => {
                let i = self.step_at(stage.as_deref(), step);
                let wait = seconds(*timeout_s);
                self.steps[i].note = Note::Approval {
                    until: later(now, wait),
                };
                let place = match stage {
                    Some(s) => format!("step {} (stage {})", one_line(step), one_line(s)),
                    None => format!("step {}", one_line(step)),
                };
                above.push(format!(
                    "{} {place}: {}",
                    paint("approval needed for", Some(BOLD), self.color),
                    capped(&one_line(prompt), DETAIL_MAX)
                ));
                if !approvers.is_empty() {
                    above.push(format!("  approvers: {}", one_line(&approvers.join(", "))));
                }
                above.push(format!("  answer within {} with:", span(wait)));
                above.push(format!("    {}", one_line(answer_with)));
            }
            Event::ApprovalDecided {
                stage,
                step,
                outcome,
                decisions,
            } => {
                let i = self.step_at(stage.as_deref(), step);
                self.steps[i].note = Note::Decided(outcome);
                above.push(format!(
                    "approval for step {}: {}",
                    one_line(step),
                    capped(&one_line(&decided(outcome, decisions)), DETAIL_MAX)
                ));
            }
            Event::StepFinished(record) => {
                self.said = record.handler;
                let i = self.step_at(record.stage.as_deref(), &record.step);
                self.steps[i].end = Some(end_of(record, false));
                self.ended_in_shared_list(i);
                above.extend(self.late(i));
            }
            Event::BudgetExceeded {
                stage,
                budget_s,
                elapsed_s,
            } => {
                let used = format!(
                    "{}, over its {} budget",
                    took(seconds(*elapsed_s)),
                    span(seconds(*budget_s))
                );
                let text = match stage {
                    Some(name) => {
                        let s = self.stage_at(name);
                        self.stages[s].over = true;
                        format!("budget exceeded: stage {} has run {used}", one_line(name))
                    }
                    None => {
                        if let Some(run) = &mut self.run {
                            run.over = true;
                        }
                        format!("budget exceeded: the run has run {used}")
                    }
                };
                above.push(paint(&text, Some(YELLOW), self.color));
            }
            Event::TimedOut { stage, timeout_s } => {
                self.drop_shared_lists();
                let text = match stage {
                    Some(s) => format!(
                        "timed out: stage {} reached its {} timeout; its running steps are cancelled",
                        one_line(s),
                        span(seconds(*timeout_s))
                    ),
                    None => format!(
                        "timed out: the run reached its {} timeout; running steps are cancelled",
                        span(seconds(*timeout_s))
                    ),
                };
                above.push(paint(&text, Some(RED), self.color));
            }
            Event::Interrupted { signal } => {
                self.drop_shared_lists();
                if let Some(run) = &mut self.run {
                    run.signal = Some(*signal);
                }
                let text = format!(
                    "interrupted by {}: running steps are cancelled; the on_failure and finally handlers run next",
                    one_line(signal)
                );
                above.push(paint(&text, Some(RED), self.color));
            }
            Event::Handlers { stage, kind } => {
                let mut group = Group::new(kind);
                let groups = match stage {
                    Some(name) => {
                        let s = self.stage_at(name);
                        if *kind == "on_budget_exceeded" {
                            let running = self.stages[s].steps.iter().copied();
                            group.shared = Some(Shared {
                                running: running.filter(|&i| self.steps[i].end.is_none()).collect(),
                                released: false,
                                phase: Phase::First,
                            });
                        }
                        &mut self.stages[s].groups
                    }
                    None => &mut self.run_groups,
                };
                for g in groups.iter_mut() {
                    g.accepting = false;
                }
                groups.push(group);
            }
            Event::StageFinished {
                stage,
                status,
                duration_s,
                budget_s,
            } => {
                let s = self.stage_at(stage);
                let st = &mut self.stages[s];
                st.end = Some(StageEnd::Finished {
                    status,
                    took: seconds(*duration_s),
                });
                if budget_s.is_some() {
                    st.budget = budget_s.map(seconds);
                }
                if st.committed {
                    let line = self.stage_line(&self.stages[s], true);
                    above.push(self.render(&line));
                } else {
                    above.extend(self.commit(s));
                }
            }
            Event::RunFinished {
                status,
                duration_s,
                budget_s,
                handler_failures,
            } => {
                above.extend(self.commit_rest());
                let budget = budget_s
                    .map(seconds)
                    .or_else(|| self.run.as_ref().and_then(|r| r.budget));
                above.push(self.verdict(status, seconds(*duration_s), budget, *handler_failures));
                self.ended = true;
            }
        }
        above
    }

    /// The lines to print when the display finishes: what was still live, and
    /// a verdict if the run never reported its end.
    pub(crate) fn finish(&mut self, now: Instant) -> Vec<String> {
        if self.ended {
            return Vec::new();
        }
        let mut above = self.commit_rest();
        if self.run.is_some() || !above.is_empty() {
            let name = self.run_name();
            let mut line = Line::new(0, Mark::Unknown, &name).with_detail("no end was reported");
            if let Some(run) = &self.run {
                line.clock = Clock::Took {
                    took: now.saturating_duration_since(run.since),
                    budget: None,
                };
            }
            above.push(self.render(&line));
        }
        self.ended = true;
        above
    }

    /// Whether an approval is waiting for its answer.
    pub(crate) fn awaiting_approval(&self) -> bool {
        !self.ended
            && self
                .steps
                .iter()
                .any(|s| s.end.is_none() && !s.dropped && matches!(s.note, Note::Approval { .. }))
    }

    /// The stage a `stage_started` is about: a live one of that name that has
    /// not started (something about it came first), else a new one.
    fn stage_for_start(&mut self, name: &str) -> usize {
        match self
            .stages
            .iter()
            .rposition(|s| s.name == name && !s.committed)
        {
            Some(s) if self.stages[s].end.is_none() && self.stages[s].since.is_none() => s,
            _ => self.push_stage(name),
        }
    }

    /// The stage an event is about: the latest of that name, else a new one.
    fn stage_at(&mut self, name: &str) -> usize {
        match self.stages.iter().rposition(|s| s.name == name) {
            Some(s) => s,
            None => self.push_stage(name),
        }
    }

    fn push_stage(&mut self, name: &str) -> usize {
        self.stages.push(Stage {
            name: one_line(name),
            since: None,
            budget: None,
            timeout: None,
            over: false,
            end: None,
            steps: Vec::new(),
            groups: Vec::new(),
            committed: false,
        });
        self.stages.len() - 1
    }

    /// The step an event is about: the latest of that id in that stage that
    /// has not ended, else a new one.
    fn step_at(&mut self, stage: Option<&str>, step: &str) -> usize {
        match self.latest.get(&key(stage, step)) {
            Some(&i) if self.steps[i].end.is_none() => i,
            _ => self.new_step(stage, step, false),
        }
    }

    /// A new step, where the engine runs it: in the handler list that is
    /// taking steps, else in its stage (or at run level). `starts`: it comes
    /// with a `step_started` (a skipped or restored step does not).
    fn new_step(&mut self, stage: Option<&str>, step: &str, starts: bool) -> usize {
        let said = self.said.take();
        let i = self.steps.len();
        let at = stage.map(|name| self.stage_at(name));
        self.steps.push(Step {
            name: one_line(step),
            stage: at,
            kind: None,
            since: None,
            note: Note::None,
            end: None,
            dropped: false,
        });
        self.latest.insert(key(stage, step), i);
        match at {
            None => {
                if self.run_groups.is_empty() {
                    self.run_groups.push(Group::new(""));
                }
                if let Some(g) = self.run_groups.last_mut() {
                    g.steps.push(i);
                }
            }
            Some(s) => {
                let st = &mut self.stages[s];
                let list = st.groups.last_mut().filter(|g| g.accepting);
                // The engine names every handler's list: no need to guess.
                match (said, list) {
                    (Some(_), Some(g)) => {
                        g.explicit = true;
                        if let Some(shared) = &mut g.shared {
                            shared.phase = if starts { Phase::In(i) } else { Phase::After };
                        }
                        g.steps.push(i);
                        return i;
                    }
                    (None, Some(g)) if g.explicit => {
                        st.steps.push(i);
                        return i;
                    }
                    _ => {}
                }
                let list = st.groups.last_mut().filter(|g| g.accepting);
                match list {
                    Some(g) => match &mut g.shared {
                        None => g.steps.push(i),
                        Some(shared) => match shared.phase {
                            // Handlers run one at a time, and no stage step
                            // starts while one runs.
                            Phase::In(_) => st.steps.push(i),
                            // A stage step may have been let start: the list
                            // ends here.
                            Phase::After if shared.released => {
                                g.accepting = false;
                                st.steps.push(i);
                            }
                            Phase::First | Phase::After => {
                                shared.phase = if starts { Phase::In(i) } else { Phase::After };
                                g.steps.push(i);
                            }
                        },
                    },
                    None => st.steps.push(i),
                }
            }
        }
        i
    }

    /// Keeps a stage's `on_budget_exceeded` list up to date when step `i` ends.
    fn ended_in_shared_list(&mut self, i: usize) {
        let Some(s) = self.steps[i].stage else { return };
        let list = self.stages[s].groups.last_mut().filter(|g| g.accepting);
        if let Some(shared) = list.and_then(|g| g.shared.as_mut()) {
            if shared.phase == Phase::In(i) {
                shared.phase = Phase::After;
            }
            if shared.running.contains(&i) {
                shared.released = true;
            }
        }
    }

    /// A timeout or a signal drops the `on_budget_exceeded` handlers that
    /// were running (the engine stops them with the stage, without a record).
    fn drop_shared_lists(&mut self) {
        let mut dropped = Vec::new();
        let budget_lists = self
            .stages
            .iter_mut()
            .flat_map(|st| st.groups.iter_mut())
            .chain(self.run_groups.iter_mut())
            .filter(|g| g.kind == "on_budget_exceeded");
        for g in budget_lists {
            g.accepting = false;
            dropped.extend(g.steps.iter().copied());
        }
        for i in dropped {
            let step = &mut self.steps[i];
            step.dropped = step.end.is_none();
        }
    }

    /// A step that ended after its stage's block was printed: its own line.
    fn late(&self, i: usize) -> Vec<String> {
        match self.steps[i].stage {
            Some(s) if self.stages[s].committed => {
                let line = self.step_line(i, 2, true);
                let mut text = self.render(&line);
                let _ = write!(text, "  (stage {})", self.stages[s].name);
                vec![text]
            }
            _ => Vec::new(),
        }
    }

    /// A stage's whole block, to print above; it leaves the live part.
    fn commit(&mut self, s: usize) -> Vec<String> {
        let st = &self.stages[s];
        let mut lines = vec![self.stage_line(st, true)];
        lines.extend(st.steps.iter().map(|&i| self.step_line(i, 2, true)));
        for g in &st.groups {
            self.group_lines(g, 2, true, &mut lines);
        }
        let texts = lines.iter().map(|l| self.render(l)).collect();
        self.stages[s].committed = true;
        texts
    }

    /// Everything still live, to print above (the run is over).
    fn commit_rest(&mut self) -> Vec<String> {
        let mut above = Vec::new();
        for s in 0..self.stages.len() {
            if !self.stages[s].committed {
                above.extend(self.commit(s));
            }
        }
        let mut lines = Vec::new();
        for g in &self.run_groups {
            self.group_lines(g, 1, true, &mut lines);
        }
        above.extend(lines.iter().map(|l| self.render(l)));
        self.run_groups.clear();
        above
    }
}

fn key(stage: Option<&str>, step: &str) -> (Option<String>, String) {
    (stage.map(str::to_owned), step.to_owned())
}

fn end_of(r: &StepRecord, restored: bool) -> End {
    End {
        status: r.status,
        attempts: r.attempts,
        took: Duration::from_millis(r.duration_ms),
        summary: r.summary.clone(),
        error: r.error.clone(),
        restored,
    }
}

mod view;

#[cfg(test)]
mod tests;
