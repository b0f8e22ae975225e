//! The run as the events told it so far, for a terminal: the fold of the
//! events that the reports read too ([`RunState`]: stages, steps, handler
//! lists, how each ended) and what only a display keeps beside it: when each
//! thing started by this machine's clock, the note a running step shows, which
//! stage blocks are printed above already. [`Tree::apply`] takes an event in;
//! [`view`] draws the lines.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::line::{
    Clock, Line, Mark, Timed, against, capped, later, one_line, paint, plural, seconds, span, took,
};
use super::{BOLD, DETAIL_MAX, RECENT_DONE, RED, YELLOW};
use crate::engine::approval::Decision;
use crate::engine::watch::Verdict;
use crate::engine::{Event, StepRecord};
use crate::run_state::{About, RunState};
use view::decided;

/// The run as the events told it so far.
pub(crate) struct Tree {
    color: bool,
    state: RunState,
    run: Option<Run>,
    /// Beside each of the state's stages, by index.
    stages: Vec<StageShown>,
    /// Beside each of the state's steps, by index.
    steps: Vec<Step>,
    /// `run_finished` came, or the display finished: nothing is live.
    ended: bool,
    /// The steps and lists printed above with the run's end (a second
    /// `run_finished` prints only what came since).
    printed: (usize, usize),
}

struct Run {
    /// `None` for a resumed run (its event does not name the playbook).
    playbook: Option<String>,
    since: Instant,
    signal: Option<&'static str>,
}

#[derive(Default)]
struct StageShown {
    since: Option<Instant>,
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

/// A step as the screen shows it.
#[derive(Default)]
struct Step {
    since: Option<Instant>,
    note: Note,
    end: Option<End>,
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
#[derive(Default)]
enum Note {
    #[default]
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
            state: RunState::new(),
            run: None,
            stages: Vec::new(),
            steps: Vec::new(),
            ended: false,
            printed: (0, 0),
        }
    }

    /// Takes one event in, at `now`; gives the lines to print above the live
    /// part (notices, a finished stage's block, the verdict).
    pub(crate) fn apply(&mut self, event: &Event, now: Instant) -> Vec<String> {
        let about = self.state.apply(event);
        let index = self.state.events() - 1;
        self.stages
            .resize_with(self.state.stages().len(), StageShown::default);
        self.steps
            .resize_with(self.state.steps().len(), Step::default);
        let step = match about {
            About::Step(i) => Some(i),
            _ => None,
        };
        let mut above = Vec::new();
        match event {
            Event::RunStarted {
                playbook,
                timeout_s,
                budget_s,
                by,
                by_source,
            } => {
                let mut limits = Vec::new();
                if let Some(who) = crate::identity::recorded(by.as_deref(), by_source.as_deref()) {
                    limits.push(format!("by {}", one_line(&who)));
                }
                if let Some(b) = budget_s.map(seconds) {
                    limits.push(format!("budget {}", span(b)));
                }
                if let Some(t) = timeout_s.map(seconds) {
                    limits.push(format!("timeout {}", span(t)));
                }
                let name = format!("run {}", one_line(playbook));
                above.push(
                    self.render(&Line::new(0, Mark::Blank, &name).with_detail(&limits.join(" · "))),
                );
                self.run = Some(Run {
                    playbook: Some(one_line(playbook)),
                    since: now,
                    signal: None,
                });
            }
            Event::RunResumed {
                restored,
                in_flight,
                ..
            } => {
                self.run = Some(Run {
                    playbook: None,
                    since: now,
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
            Event::StageStarted { .. } => {
                if let About::Stage(s) = about {
                    self.stages[s].since = Some(now);
                }
            }
            Event::StageSkipped { .. } => {
                if let About::Stage(s) = about {
                    above.extend(self.commit(s));
                }
            }
            Event::StepStarted { .. } => {
                if let Some(i) = step {
                    self.steps[i].since = Some(now);
                }
            }
            Event::StepRestored(record) => {
                // Restored as it is here: a step that finished earlier in
                // these events is that run of it, already drawn.
                if let Some(i) = step.filter(|&i| self.state.steps()[i].finished == Some(index)) {
                    self.steps[i].end = Some(end_of(record, true));
                    above.extend(self.late(i));
                }
            }
            Event::Retry {
                attempt,
                delay_ms,
                error,
                ..
            } => {
                if let Some(i) = step {
                    self.steps[i].note = Note::Retry {
                        attempt: *attempt,
                        at: later(now, Duration::from_millis(*delay_ms)),
                        error: error.clone(),
                    };
                }
            }
            Event::Measurement {
                n, verdict, error, ..
            } => {
                if let Some(i) = step {
                    self.steps[i].note = Note::Measurement {
                        n: *n,
                        verdict: verdict_word(*verdict),
                        error: error.clone(),
                    };
                }
            }
            Event::Gate { outcome, .. } => {
                if let Some(i) = step {
                    self.steps[i].note = Note::Gate(outcome);
                }
            }
            Event::ApprovalRequested {
                stage,
                step: id,
                prompt,
                approvers,
                timeout_s,
                answer_with,
            } => {
                let wait = seconds(*timeout_s);
                if let Some(i) = step {
                    self.steps[i].note = Note::Approval {
                        until: later(now, wait),
                    };
                }
                let place = match stage {
                    Some(s) => format!("step {} (stage {})", one_line(id), one_line(s)),
                    None => format!("step {}", one_line(id)),
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
                step: id,
                outcome,
                decisions,
                ..
            } => {
                if let Some(i) = step {
                    self.steps[i].note = Note::Decided(outcome);
                }
                above.push(format!(
                    "approval for step {}: {}",
                    one_line(id),
                    capped(&one_line(&decided(outcome, decisions)), DETAIL_MAX)
                ));
            }
            Event::StepFinished(record) => {
                if let Some(i) = step {
                    self.steps[i].end = Some(end_of(record, false));
                    above.extend(self.late(i));
                }
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
                        format!("budget exceeded: stage {} has run {used}", one_line(name))
                    }
                    None => format!("budget exceeded: the run has run {used}"),
                };
                above.push(paint(&text, Some(YELLOW), self.color));
            }
            Event::TimedOut { stage, timeout_s } => {
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
                if let Some(run) = &mut self.run {
                    run.signal = Some(*signal);
                }
                let text = format!(
                    "interrupted by {}: running steps are cancelled; the on_failure and finally handlers run next",
                    one_line(signal)
                );
                above.push(paint(&text, Some(RED), self.color));
            }
            Event::Handlers { .. } => {}
            Event::StageFinished { .. } => {
                if let About::Stage(s) = about {
                    if self.stages[s].committed {
                        let line = self.stage_line(s, true);
                        above.push(self.render(&line));
                    } else {
                        above.extend(self.commit(s));
                    }
                }
            }
            Event::RunFinished {
                status,
                duration_s,
                budget_s,
                handler_failures,
            } => {
                above.extend(self.commit_rest());
                let budget = budget_s.or(self.state.budget_s()).map(seconds);
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
                .zip(self.state.steps())
                .any(|(shown, step)| {
                    shown.end.is_none()
                        && !step.dropped
                        && matches!(shown.note, Note::Approval { .. })
                })
    }

    /// The stage whose block shows step `i`: for a handler, its list's (none
    /// for the run's lists), else its own.
    fn block_of(&self, i: usize) -> Option<usize> {
        let step = &self.state.steps()[i];
        match step.list {
            Some(l) => self.state.lists()[l].in_stage,
            None => step.in_stage,
        }
    }

    /// A step that ended after its stage's block was printed: its own line.
    fn late(&self, i: usize) -> Vec<String> {
        match self.block_of(i) {
            Some(s) if self.stages[s].committed => {
                let line = self.step_line(i, 2, true);
                let mut text = self.render(&line);
                let _ = write!(text, "  (stage {})", one_line(&self.state.stages()[s].id));
                vec![text]
            }
            _ => Vec::new(),
        }
    }

    /// A stage's whole block, to print above; it leaves the live part.
    fn commit(&mut self, s: usize) -> Vec<String> {
        let stage = &self.state.stages()[s];
        let mut lines = vec![self.stage_line(s, true)];
        lines.extend(stage.steps.iter().map(|&i| self.step_line(i, 2, true)));
        for &l in &stage.lists {
            self.list_lines(l, 2, true, &mut lines);
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
        self.unannounced_lines(self.printed, true, &mut lines);
        self.run_lines(self.printed, true, &mut lines);
        above.extend(lines.iter().map(|l| self.render(l)));
        self.printed = (self.state.steps().len(), self.state.lists().len());
        above
    }
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
