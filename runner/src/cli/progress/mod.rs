//! The live progress display of `runner exec` on a terminal: a tree of the run,
//! its stages and their steps, with spinners and clocks that move on their own.
//!
//! What the screen holds:
//! - above, in the scrollback, what is over: a line naming the run when it
//!   starts, each stage's whole block (stage line, every step, its handler
//!   lists) once the stage has finished, notices (approvals with the command
//!   that answers them, budgets passed, timeouts, signals), and at the end the
//!   run-level handler lists and a one-line verdict;
//! - below, redrawn in place (`indicatif`, ticking every 100 ms), what is still
//!   going on: a header line for the run (elapsed against budget), the running
//!   stage with its steps and handler lists, and the run-level handler lists.
//!   Older steps of the running stage that succeeded or were skipped fold into
//!   one counted line, so that the live part stays short enough for the
//!   terminal (a line past the bottom of the screen would not be drawn, and the
//!   running steps are the ones at the bottom); the full list is printed when
//!   the stage ends.
//!
//! Why the tree is driven by events and nothing else: the same [`Event`]s are
//! the JSON Lines of `--output json` and the rows of the journal. Drawing from
//! them, and only them, means the screen cannot disagree with the record: a
//! step shows as done when the engine said so, with the duration the engine
//! measured, the summary or error it recorded, the status it reported. The
//! display keeps no shadow copy of the plan and never guesses an outcome; the
//! only numbers it makes itself are the clocks of things still running,
//! counted from the arrival of the event that started them (the engine sends
//! it synchronously, as the thing starts). Events it did not
//! expect (a step that never started, a run that ends with no stage) are drawn
//! as they come, never dropped, never a panic.
//!
//! What the events mean (which step an event is about, which handler list
//! a step ran in, which steps a timeout dropped) is not worked out here: the
//! tree holds the fold the reports read too ([`crate::run_state`], whose module
//! doc gives the rules, the one guess about a stage's `on_budget_exceeded`
//! included), so the screen and the report cannot place a step differently. A
//! budget handler that a timeout or a signal stopped has no record of its end;
//! its line says so instead of spinning on.
//!
//! Lines are built by plain functions of the tree and a moment ([`Tree::live`],
//! [`Tree::apply`], [`Line::text`]), tested without a terminal; the terminal
//! part ([`Progress`], this file) only maps those lines onto `indicatif` bars.
//! Files: `line.rs` (a line and its words), `tree.rs` (the run's fold and
//! what the display keeps beside it), `tree/view.rs` (the lines drawn from
//! them), `tree/tests.rs`.
//! Colour (`color`) is only ever a second cue: every state is also in the
//! words or the mark, so `NO_COLOR` loses nothing. Text that comes from
//! plugins or playbooks (summaries, errors, prompts) is put on one line, its
//! white space folded and its other control characters and bidi controls shown
//! as visible escapes (`host::text`), so that it cannot move the cursor,
//! reorder the line or break the tree; on the live part it is cut at the right
//! edge of the terminal.
//!
//! Approvals: when standard input is a terminal, the CLI's prompt
//! (`cli::prompt`) also asks the question on the terminal (on stderr) and
//! reads the answer; a tree redrawn
//! below it would erase the question and the answer being typed, so the live
//! part is cleared and stops while any approval waits, and comes back, drawn
//! anew, once it is decided.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::engine::Event;

/// How often spinners and clocks move without events.
const TICK: Duration = Duration::from_millis(100);
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// Steps of the running stage that succeeded or were skipped and stay on the
/// live part; older ones fold into a counted line.
const RECENT_DONE: usize = 5;
/// Columns of a summary, error or prompt kept on one line (the live part cuts
/// further, at the terminal's edge). The full text is in the JSON and journal.
const DETAIL_MAX: usize = 240;

/// Said once above when the live part stops for a question on the terminal.
const PAUSED: &str = "  (the live display pauses while the question is asked here; it comes back once the approval is decided)";

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";
const BOLD: &str = "1";

mod line;
mod tree;

use line::Line;
pub(crate) use tree::Tree;

// ----- the terminal --------------------------------------------------------

/// A live tree of stages and steps on a terminal.
pub struct Progress {
    tree: Tree,
    multi: MultiProgress,
    /// One bar per line of the live part, in order.
    bars: Vec<Bar>,
    style: ProgressStyle,
    color: bool,
    /// Draws on stdout (false: a hidden target, in tests).
    terminal: bool,
    /// Stop drawing while an approval waits (the engine asks on the terminal).
    pause_for_questions: bool,
    paused: bool,
    done: bool,
}

struct Bar {
    bar: ProgressBar,
    line: Line,
    ticking: bool,
}

impl Progress {
    /// `color`: false when NO_COLOR is set (any value) or TERM=dumb. Draws on
    /// stdout (the caller only creates it when stdout is a terminal).
    pub fn new(color: bool) -> Progress {
        Progress::with_target(
            ProgressDrawTarget::stdout(),
            true,
            color,
            std::io::stdin().is_terminal(),
        )
    }

    fn with_target(
        target: ProgressDrawTarget,
        terminal: bool,
        color: bool,
        pause_for_questions: bool,
    ) -> Progress {
        let style = ProgressStyle::with_template("{head}{wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Progress {
            tree: Tree::new(color),
            multi: MultiProgress::with_draw_target(target),
            bars: Vec::new(),
            style,
            color,
            terminal,
            pause_for_questions,
            paused: false,
            done: false,
        }
    }

    /// Feeds one event; updates the tree.
    pub fn event(&mut self, event: &Event) {
        if self.done {
            return;
        }
        let above = self.tree.apply(event, Instant::now());
        // The live part first, so that a stage printed above is not also
        // drawn below it for a moment.
        self.redraw();
        if !above.is_empty() {
            self.println(&above.join("\n"));
        }
        self.pause_or_resume();
    }

    /// Prints a line above the tree (e.g. an approval prompt), without breaking it.
    pub fn println(&self, line: &str) {
        if self.paused {
            // Nothing is drawn while paused: write as any program would.
            if self.terminal {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// Finishes the display, leaving the final tree and a one-line verdict on screen.
    pub fn finish(&mut self) {
        if self.done {
            return;
        }
        let now = Instant::now();
        if self.paused {
            self.paused = false;
            self.multi.set_draw_target(self.target());
        }
        self.done = true;
        self.redraw();
        let above = self.tree.finish(now);
        if !above.is_empty() {
            self.println(&above.join("\n"));
        }
        let _ = self.multi.clear();
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.terminal {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    fn pause_or_resume(&mut self) {
        let waiting = self.pause_for_questions && self.tree.awaiting_approval();
        if waiting && !self.paused {
            self.println(PAUSED);
            let _ = self.multi.clear();
            self.multi.set_draw_target(ProgressDrawTarget::hidden());
            self.paused = true;
        } else if !waiting && self.paused {
            self.multi.set_draw_target(self.target());
            self.paused = false;
            for b in &self.bars {
                b.bar.tick();
            }
        }
    }

    /// Makes the bars show the live part: bar `i` draws line `i`.
    fn redraw(&mut self) {
        let lines = if self.done {
            Vec::new()
        } else {
            self.tree.live()
        };
        let had = self.bars.len();
        while self.bars.len() > lines.len() {
            if let Some(b) = self.bars.pop() {
                b.bar.disable_steady_tick();
                b.bar.finish_and_clear();
                self.multi.remove(&b.bar);
            }
        }
        if lines.is_empty() && had > 0 {
            // No bar is left to draw the change: clear what is on the screen.
            let _ = self.multi.clear();
        }
        for (i, line) in lines.into_iter().enumerate() {
            let moves = line.moves();
            match self.bars.get_mut(i) {
                Some(b) if b.line == line => {}
                Some(b) => {
                    show(&b.bar, &line, &self.style, self.color);
                    if moves != b.ticking {
                        if moves {
                            b.bar.enable_steady_tick(TICK);
                        } else {
                            b.bar.disable_steady_tick();
                        }
                        b.ticking = moves;
                    }
                    b.line = line;
                }
                None => {
                    let bar = self.multi.add(ProgressBar::hidden());
                    show(&bar, &line, &self.style, self.color);
                    if moves {
                        bar.enable_steady_tick(TICK);
                    }
                    self.bars.push(Bar {
                        bar,
                        line,
                        ticking: moves,
                    });
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Points a bar at a line: the head (what moves with time) is drawn from the
/// line at each tick; the detail is the bar's message, cut at the terminal's edge.
fn show(bar: &ProgressBar, line: &Line, style: &ProgressStyle, color: bool) {
    let shared = Arc::new(line.clone());
    let head = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&shared.head(Instant::now(), color));
    };
    bar.set_style(style.clone().with_key("head", head));
    bar.set_message(line.detail.clone());
}
