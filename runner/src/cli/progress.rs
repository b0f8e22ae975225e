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
//! Handler lists: a `handlers` event opens one, and the new steps that follow
//! are its. That is exact for `on_failure` and `finally` (they run alone, after
//! the stage's steps) and for every run-level list (its steps carry no stage).
//! A stage's `on_budget_exceeded` runs beside the stage steps already running,
//! under the same stage id, and no event closes it. The tree reads it the way
//! the run report does (`report::analysis`): handlers run one at a time and no
//! stage step starts meanwhile, so a new step is a handler unless one of the
//! stage steps that were running when the list began has ended since (it may
//! have let a stage step start); then the list is taken as over. Only that last
//! case is a guess, the same one the report makes. A timeout or a signal
//! stops a budget handler that is running without any record of its end; its
//! line says so instead of spinning on.
//!
//! Lines are built by plain functions of the tree and a moment ([`Tree::live`],
//! [`Tree::apply`], [`Line::text`]), tested here without a terminal; the
//! terminal part ([`Progress`]) only maps those lines onto `indicatif` bars.
//! Colour (`color`) is only ever a second cue: every state is also in the
//! words or the mark, so `NO_COLOR` loses nothing. Text that comes from
//! plugins or playbooks (summaries, errors, prompts) is put on one line, its
//! white space folded and its other control characters and bidi controls shown
//! as visible escapes (`host::text`), so that it cannot move the cursor,
//! reorder the line or break the tree; on the live part it is cut at the right
//! edge of the terminal.
//!
//! Approvals: when standard input is a terminal, the engine also asks the
//! question on the terminal (on stderr) and reads the answer; a tree redrawn
//! below it would erase the question and the answer being typed, so the live
//! part is cleared and stops while any approval waits, and comes back, drawn
//! anew, once it is decided.

// Not called by `exec` yet: drop this once it is.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::engine::approval::Decision;
use crate::engine::watch::Verdict;
use crate::engine::{Event, StepRecord};
use crate::playbook::scalars::format_duration;

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

// ----- lines ---------------------------------------------------------------

/// The mark at the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Spinner,
    Succeeded,
    Failed,
    TimedOut,
    /// Cancelled or interrupted.
    Stopped,
    Skipped,
    /// No end was reported.
    Unknown,
    /// Steps folded into one line.
    Fold,
    /// None: a handler list's name, the run's first line.
    Blank,
}

impl Mark {
    fn glyph(self, frame: usize) -> &'static str {
        match self {
            Mark::Spinner => SPINNER[frame % SPINNER.len()],
            Mark::Succeeded => "✓",
            Mark::Failed => "✗",
            Mark::TimedOut => "⏱",
            Mark::Stopped | Mark::Skipped => "⊘",
            Mark::Unknown => "?",
            Mark::Fold => "⋯",
            Mark::Blank => "",
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Mark::Succeeded => Some(GREEN),
            Mark::Failed | Mark::TimedOut => Some(RED),
            Mark::Stopped => Some(YELLOW),
            Mark::Skipped | Mark::Fold => Some(DIM),
            Mark::Spinner | Mark::Unknown | Mark::Blank => None,
        }
    }

    fn of_status(status: &str) -> Mark {
        match status {
            "succeeded" => Mark::Succeeded,
            "failed" => Mark::Failed,
            "timed_out" => Mark::TimedOut,
            "cancelled" | "interrupted" => Mark::Stopped,
            "skipped" => Mark::Skipped,
            _ => Mark::Unknown,
        }
    }
}

/// The time part of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Clock {
    None,
    /// Running since the line's `since`: whole seconds, against a budget.
    Running {
        budget: Option<Duration>,
        timeout: Option<Duration>,
        /// The engine said the budget was passed.
        over: bool,
    },
    /// Over: how long it took, as the engine measured it.
    Took {
        took: Duration,
        budget: Option<Duration>,
    },
}

/// A note whose words depend on the moment.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timed {
    /// A failed attempt waits until `at`; then attempt `next` runs.
    Retry { at: Instant, next: u32 },
    /// An approval waits until `until`.
    Approval { until: Instant },
}

impl Timed {
    fn text(self, now: Instant) -> String {
        match self {
            Timed::Retry { at, .. } if now < at => {
                format!("retry in {}", countdown(at - now))
            }
            Timed::Retry { next, .. } => format!("attempt {next}"),
            Timed::Approval { until } => format!(
                "waiting for approval, {} left",
                countdown(until.saturating_duration_since(now))
            ),
        }
    }
}

/// One line of the tree, ready to be drawn at any moment: what changes with
/// time (spinner, clock, countdowns) is worked out from `now` by [`Line::head`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    depth: usize,
    mark: Mark,
    /// When it started: the spinner's phase and the running clock.
    since: Option<Instant>,
    name: String,
    clock: Clock,
    timed: Option<Timed>,
    /// The rest (summary, error, measurement): one line, at most
    /// [`DETAIL_MAX`] columns.
    detail: String,
}

impl Line {
    fn new(depth: usize, mark: Mark, name: &str) -> Line {
        Line {
            depth,
            mark,
            since: None,
            name: one_line(name),
            clock: Clock::None,
            timed: None,
            detail: String::new(),
        }
    }

    fn with_detail(mut self, detail: &str) -> Line {
        self.detail = capped(&one_line(detail), DETAIL_MAX);
        self
    }

    /// Whether the line changes with time alone (and so needs ticking).
    fn moves(&self) -> bool {
        self.mark == Mark::Spinner || self.timed.is_some()
    }

    /// The whole line at `now`.
    pub(crate) fn text(&self, now: Instant, color: bool) -> String {
        let mut out = self.head(now, color);
        out.push_str(&self.detail);
        out
    }

    /// Everything but the detail (which follows it directly).
    fn head(&self, now: Instant, color: bool) -> String {
        let mut out = "  ".repeat(self.depth);
        if self.mark != Mark::Blank {
            let frame = self.since.map_or(0, |t| {
                (now.saturating_duration_since(t).as_millis() / TICK.as_millis()) as usize
            });
            out.push_str(&paint(self.mark.glyph(frame), self.mark.code(), color));
            out.push(' ');
        }
        out.push_str(&self.name);
        if let Some((clock, over)) = self.clock_text(now) {
            out.push_str("  ");
            out.push_str(&paint(&clock, over.then_some(YELLOW), color));
        }
        if let Some(t) = self.timed {
            out.push_str("  ");
            out.push_str(&t.text(now));
        }
        if !self.detail.is_empty() {
            out.push_str(if self.timed.is_some() { ", " } else { "  " });
        }
        out
    }

    /// The clock and whether it is over its budget.
    fn clock_text(&self, now: Instant) -> Option<(String, bool)> {
        match self.clock {
            Clock::None => None,
            Clock::Running {
                budget,
                timeout,
                over,
            } => {
                let elapsed = now.saturating_duration_since(self.since?);
                let over = over || budget.is_some_and(|b| elapsed > b);
                let mut text = against(clock(elapsed), budget, over);
                if let Some(t) = timeout {
                    let _ = write!(text, " · timeout {}", span(t));
                }
                Some((text, over))
            }
            Clock::Took { took: d, budget } => {
                let over = budget.is_some_and(|b| d > b);
                Some((against(took(d), budget, over), over))
            }
        }
    }
}

/// `12s of 2m budget`, or `2m10s, over its 2m budget`.
fn against(elapsed: String, budget: Option<Duration>, over: bool) -> String {
    match budget {
        None => elapsed,
        Some(b) if over => format!("{elapsed}, over its {} budget", span(b)),
        Some(b) => format!("{elapsed} of {} budget", span(b)),
    }
}

fn paint(text: &str, code: Option<&str>, color: bool) -> String {
    match code {
        Some(code) if color && !text.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_owned(),
    }
}

/// A running clock: whole seconds, never rounded up (`0s`, `59s`, `1m05s`, `2h03m00s`).
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Time left: whole seconds, rounded up, so that `0s` means it is over.
fn countdown(d: Duration) -> String {
    clock(Duration::from_secs(
        d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)),
    ))
}

/// How long something took: `340ms`, `2.3s`, `1m05s` (cut, not rounded).
fn took(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else {
        clock(d)
    }
}

/// A budget or a timeout, as playbooks write them (`15m`, `1m30s`).
fn span(d: Duration) -> String {
    format_duration(d)
}

/// `now + d`, or as late as can be (a delay or timeout too long to count).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Seconds from an event; what is not a duration (negative, NaN) is zero.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// One line of text: runs of white space (newlines, tabs, line separators
/// included) become one space; every other character `host::text::hidden`
/// names (an escape sequence's ESC, NUL, a bidi override) is shown as its
/// visible escape (`\u{1b}`), as everywhere else a person reads plugin text.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            if crate::host::text::hidden(c) {
                crate::host::text::escape(&mut out, c);
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// At most `max` columns; `…` ends a text that was cut.
fn capped(text: &str, max: usize) -> String {
    if text.width() <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut width = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if width + w > max.saturating_sub(1) {
            break;
        }
        width += w;
        out.push(c);
    }
    out.push('…');
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

// ----- the tree ------------------------------------------------------------

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

    /// The live part: the run's header, the running stage with its steps and
    /// handler lists, the run-level handler lists. (What moves with time is
    /// worked out when a line is drawn: [`Line::text`].)
    pub(crate) fn live(&self) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        let mut lines = Vec::new();
        if let Some(run) = &self.run {
            let mut header = Line::new(0, Mark::Spinner, &self.run_name());
            header.since = Some(run.since);
            header.clock = Clock::Running {
                budget: run.budget,
                timeout: run.timeout,
                over: run.over,
            };
            lines.push(header);
        }
        for st in self.stages.iter().filter(|s| !s.committed) {
            lines.push(self.stage_line(st, false));
            let (fold, shown) = self.fold(&st.steps);
            lines.extend(fold);
            lines.extend(shown.iter().map(|&i| self.step_line(i, 2, false)));
            for g in &st.groups {
                self.group_lines(g, 2, false, &mut lines);
            }
        }
        for g in &self.run_groups {
            self.group_lines(g, 1, false, &mut lines);
        }
        lines
    }

    /// A line for the scrollback. These lines have no spinner, clock or
    /// countdown, so the moment does not matter.
    fn render(&self, line: &Line) -> String {
        line.text(Instant::now(), self.color)
    }

    fn run_name(&self) -> String {
        match self.run.as_ref() {
            Some(Run {
                playbook: Some(p), ..
            }) => format!("run {p}"),
            Some(_) => "resumed run".to_owned(),
            None => "run".to_owned(),
        }
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

    fn group_lines(&self, g: &Group, depth: usize, frozen: bool, lines: &mut Vec<Line>) {
        let depth = if g.kind.is_empty() {
            depth
        } else {
            lines.push(Line::new(depth, Mark::Blank, &g.kind));
            depth + 1
        };
        lines.extend(g.steps.iter().map(|&i| self.step_line(i, depth, frozen)));
    }

    /// The steps of a live stage: older ones that succeeded or were skipped
    /// fold into one counted line when there are many.
    fn fold(&self, ids: &[usize]) -> (Option<Line>, Vec<usize>) {
        let quiet = |i: usize| {
            self.steps[i]
                .end
                .as_ref()
                .is_some_and(|e| e.status == "succeeded" || e.status == "skipped")
        };
        let hide = ids
            .iter()
            .filter(|&&i| quiet(i))
            .count()
            .saturating_sub(RECENT_DONE);
        if hide == 0 {
            return (None, ids.to_vec());
        }
        let (mut succeeded, mut skipped, mut shown) = (0, 0, Vec::new());
        for &i in ids {
            if quiet(i) && succeeded + skipped < hide {
                match self.steps[i].end.as_ref().map(|e| e.status) {
                    Some("succeeded") => succeeded += 1,
                    _ => skipped += 1,
                }
            } else {
                shown.push(i);
            }
        }
        let what = match (succeeded, skipped) {
            (n, 0) => format!("{} succeeded", plural(n, "earlier step", "earlier steps")),
            (0, n) => format!("{} skipped", plural(n, "earlier step", "earlier steps")),
            (a, b) => format!(
                "{}: {a} succeeded, {b} skipped",
                plural(a + b, "earlier step", "earlier steps")
            ),
        };
        (Some(Line::new(2, Mark::Fold, &what)), shown)
    }

    /// A stage's line. `frozen`: for the scrollback, where nothing moves.
    fn stage_line(&self, st: &Stage, frozen: bool) -> Line {
        let mut line = Line::new(1, Mark::Spinner, &st.name);
        line.since = st.since;
        match st.end {
            Some(StageEnd::Skipped) => {
                line.mark = Mark::Skipped;
                line = line.with_detail("skipped: its `if` is false");
            }
            Some(StageEnd::Finished { status, took }) => {
                line.mark = Mark::of_status(status);
                line.clock = Clock::Took {
                    took,
                    budget: st.budget,
                };
                line = line.with_detail(match status {
                    "succeeded" => "",
                    "timed_out" => "timed out",
                    other => other,
                });
            }
            None if frozen => {
                line.mark = Mark::Unknown;
                line = line.with_detail("no end was reported");
            }
            None => {
                line.clock = Clock::Running {
                    budget: st.budget,
                    timeout: st.timeout,
                    over: st.over,
                };
            }
        }
        line
    }

    /// A step's line at `depth`. `frozen`: for the scrollback.
    fn step_line(&self, i: usize, depth: usize, frozen: bool) -> Line {
        let step = &self.steps[i];
        let mut line = Line::new(depth, Mark::Spinner, &step.name);
        line.since = step.since;
        match &step.end {
            Some(end) => {
                line.mark = Mark::of_status(end.status);
                if matches!(end.status, "succeeded" | "failed") {
                    line.clock = Clock::Took {
                        took: end.took,
                        budget: None,
                    };
                }
                line.with_detail(&end_words(end, step.kind))
            }
            None if step.dropped => {
                line.mark = Mark::Unknown;
                line.with_detail("dropped by the timeout or signal; no end was reported")
            }
            None if frozen => {
                line.mark = Mark::Unknown;
                line.with_detail("no end was reported")
            }
            None => {
                line.clock = Clock::Running {
                    budget: None,
                    timeout: None,
                    over: false,
                };
                match &step.note {
                    Note::None => line,
                    Note::Retry { attempt, at, error } => {
                        line.timed = Some(Timed::Retry {
                            at: *at,
                            next: attempt.saturating_add(1),
                        });
                        line.with_detail(&format!("after attempt {attempt} failed: {error}"))
                    }
                    Note::Measurement { n, verdict, error } => {
                        let mut text = format!("measurement {n}: {verdict}");
                        if let Some(e) = error {
                            let _ = write!(text, ": {e}");
                        }
                        line.with_detail(&text)
                    }
                    Note::Gate(outcome) => line.with_detail(&format!("gate {outcome}")),
                    Note::Approval { until } => {
                        line.timed = Some(Timed::Approval { until: *until });
                        line
                    }
                    Note::Decided(outcome) => line.with_detail(match *outcome {
                        "timed_out" => "approval timed out",
                        other => other,
                    }),
                }
            }
        }
    }

    /// The run's last line: how it ended, in how long, against its budget.
    fn verdict(
        &self,
        status: &str,
        took_: Duration,
        budget: Option<Duration>,
        handler_failures: u32,
    ) -> String {
        let mark = Mark::of_status(status);
        let signal = self.run.as_ref().and_then(|r| r.signal);
        let how = match (status, signal) {
            ("succeeded", _) => "succeeded in".to_owned(),
            ("timed_out", _) => "timed out after".to_owned(),
            ("interrupted", Some(sig)) => format!("was interrupted by {} after", one_line(sig)),
            ("interrupted", None) => "was interrupted after".to_owned(),
            (other, _) => format!("{} after", one_line(other).replace('_', " ")),
        };
        let over = budget.is_some_and(|b| took_ > b);
        let mut text = format!(
            "{} {} {how} {}",
            paint(mark.glyph(0), mark.code(), self.color),
            self.run_name(),
            paint(
                &against(took(took_), budget, over),
                over.then_some(YELLOW),
                self.color
            )
        );
        if handler_failures > 0 {
            let _ = write!(
                text,
                "; {}",
                plural(
                    handler_failures as usize,
                    "handler failed",
                    "handlers failed"
                )
            );
        }
        text
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

/// What a step's line says once it ended.
fn end_words(end: &End, kind: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if end.restored {
        parts.push("restored from the journal".to_owned());
    }
    let n = end.attempts as usize;
    // The engine's summary of a watch starts with its count already
    // ("5 measurements: 5 ok, …"): not twice.
    let counts = |text: &str| {
        text.split_once(' ').is_some_and(|(number, rest)| {
            number.parse::<u64>().is_ok() && rest.starts_with("measurement")
        })
    };
    let counted = counts(&end.summary) || end.error.as_deref().is_some_and(counts);
    match (end.status, kind) {
        ("succeeded" | "failed", Some("watch")) if n > 0 && !counted => {
            parts.push(plural(n, "measurement", "measurements"));
        }
        // Its count is in its summary already.
        ("succeeded" | "failed", Some("watch")) => {}
        ("succeeded" | "failed", _) if n > 1 => parts.push(format!("after {n} attempts")),
        _ => {}
    }
    match end.status {
        "succeeded" => {
            if !end.summary.is_empty() {
                parts.push(end.summary.clone());
            }
        }
        "failed" => parts.push(end.error.clone().unwrap_or_else(|| "failed".to_owned())),
        "skipped" => parts.push("skipped".to_owned()),
        other => {
            parts.push(other.replace('_', " "));
            match &end.error {
                Some(e) => parts.push(e.clone()),
                None if !end.summary.is_empty() => parts.push(end.summary.clone()),
                None => {}
            }
        }
    }
    parts.join(": ")
}

/// `approved by alice as tech-lead`, `rejected by bob: not now`, `no answer in time`.
fn decided(outcome: &str, decisions: &[Decision]) -> String {
    let who = |d: &Decision| match &d.role {
        Some(r) => format!("{} as {r}", d.who()),
        None => d.who(),
    };
    match outcome {
        "approved" if !decisions.is_empty() => format!(
            "approved by {}",
            decisions.iter().map(who).collect::<Vec<_>>().join(", ")
        ),
        "rejected" => match decisions.iter().find(|d| !d.approved) {
            Some(d) => match &d.comment {
                Some(c) => format!("rejected by {}: {c}", who(d)),
                None => format!("rejected by {}", who(d)),
            },
            None => "rejected".to_owned(),
        },
        "timed_out" => "no answer in time".to_owned(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn rec(
        stage: Option<&str>,
        step: &str,
        status: &'static str,
        attempts: u32,
        ms: u64,
        summary: &str,
        error: Option<&str>,
    ) -> StepRecord {
        StepRecord {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            status,
            attempts,
            duration_ms: ms,
            summary: summary.to_owned(),
            error: error.map(str::to_owned),
            error_kind: error.map(|_| "failed"),
            outputs: Map::new(),
            log: Vec::new(),
            artifacts: Vec::new(),
            handler: None,
            rollback: false,
        }
    }

    fn started(stage: Option<&str>, step: &str, kind: &'static str) -> Event {
        Event::StepStarted {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            kind,
            handler: None,
        }
    }

    fn stage_started(stage: &str, budget_s: Option<f64>, timeout_s: Option<f64>) -> Event {
        Event::StageStarted {
            stage: stage.to_owned(),
            timeout_s,
            budget_s,
        }
    }

    fn handlers(stage: Option<&str>, kind: &'static str) -> Event {
        Event::Handlers {
            stage: stage.map(str::to_owned),
            kind,
        }
    }

    /// A clock for the tests: `at(t)` is `t` seconds after the start.
    struct Clock0(Instant);

    impl Clock0 {
        fn at(&self, t: f64) -> Instant {
            self.0 + Duration::from_secs_f64(t)
        }
    }

    fn live(tree: &Tree, now: Instant) -> Vec<String> {
        tree.live().iter().map(|l| l.text(now, false)).collect()
    }

    /// A rollback that fails: parallel steps, a retry, a watch, a failed step,
    /// a stage budget passed with its handler, on_failure handlers at both
    /// levels, a failing handler, and the verdict; every line checked.
    /// A watch's line says its count once: the engine's summary starts with
    /// it ("5 measurements: …"), a failure's error does not.
    #[test]
    fn a_watch_says_how_many_measurements_once() {
        let end = |status, summary: &str, error: Option<&str>| End {
            status,
            attempts: 5,
            took: Duration::from_secs(50),
            summary: summary.to_owned(),
            error: error.map(str::to_owned),
            restored: false,
        };
        let ok = end(
            "succeeded",
            "5 measurements: 5 ok, 0 failed, 0 inconclusive, 0 errors",
            None,
        );
        assert_eq!(
            end_words(&ok, Some("watch")),
            "5 measurements: 5 ok, 0 failed, 0 inconclusive, 0 errors"
        );
        let failed = end("failed", "", Some("error rate 7% above the 5% limit"));
        assert_eq!(
            end_words(&failed, Some("watch")),
            "5 measurements: error rate 7% above the 5% limit"
        );
    }

    #[test]
    fn tree_tells_a_failed_rollback_line_by_line() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        let s = Some;

        let above = tree.apply(
            &Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "rollback".into(),
                timeout_s: Some(3600.0),
                budget_s: Some(900.0),
            },
            t.at(0.0),
        );
        assert_eq!(above, ["run rollback  budget 15m · timeout 1h"]);
        assert!(
            tree.apply(&stage_started("precheck", Some(60.0), None), t.at(0.0))
                .is_empty()
        );
        tree.apply(&started(s("precheck"), "check_health", "plugin"), t.at(0.0));
        tree.apply(&started(s("precheck"), "snapshot", "plugin"), t.at(0.0));
        tree.apply(
            &Event::Retry {
                stage: Some("precheck".into()),
                step: "snapshot".into(),
                attempt: 1,
                delay_ms: 2500,
                error: "connection refused\n(os error 111)".into(),
            },
            t.at(0.0),
        );
        // Two steps at once, each with its spinner; the retry counts down.
        assert_eq!(
            live(&tree, t.at(1.0)),
            [
                "⠋ run rollback  1s of 15m budget · timeout 1h",
                "  ⠋ precheck  1s of 1m budget",
                "    ⠋ check_health  1s",
                "    ⠋ snapshot  1s  retry in 2s, after attempt 1 failed: connection refused (os error 111)",
            ]
        );
        // The spinner turns with time alone.
        assert!(live(&tree, t.at(1.1))[2].starts_with("    ⠙ check_health"));
        let finished = Event::StepFinished(rec(
            s("precheck"),
            "check_health",
            "succeeded",
            1,
            1234,
            "healthy: 200 OK",
            None,
        ));
        assert!(tree.apply(&finished, t.at(2.0)).is_empty());
        assert_eq!(
            live(&tree, t.at(3.0))[2..],
            [
                "    ✓ check_health  1.2s  healthy: 200 OK",
                "    ⠋ snapshot  3s  attempt 2, after attempt 1 failed: connection refused (os error 111)",
            ]
        );
        let finished = Event::StepFinished(rec(
            s("precheck"),
            "snapshot",
            "succeeded",
            2,
            3400,
            "snapshot s-123",
            None,
        ));
        tree.apply(&finished, t.at(3.4));
        let above = tree.apply(
            &Event::StageFinished {
                stage: "precheck".into(),
                status: "succeeded",
                duration_s: 3.52,
                budget_s: Some(60.0),
            },
            t.at(3.5),
        );
        assert_eq!(
            above,
            [
                "  ✓ precheck  3.5s of 1m budget",
                "    ✓ check_health  1.2s  healthy: 200 OK",
                "    ✓ snapshot  3.4s  after 2 attempts: snapshot s-123",
            ]
        );
        // A finished stage leaves the live part.
        assert_eq!(live(&tree, t.at(3.5)).len(), 1);

        let above = tree.apply(
            &Event::StageSkipped {
                stage: "announce".into(),
            },
            t.at(3.6),
        );
        assert_eq!(above, ["  ⊘ announce  skipped: its `if` is false"]);

        tree.apply(
            &stage_started("rollback", Some(120.0), Some(600.0)),
            t.at(4.0),
        );
        tree.apply(
            &started(s("rollback"), "rollback_traffic", "plugin"),
            t.at(4.0),
        );
        tree.apply(&started(s("rollback"), "watch_errors", "watch"), t.at(4.0));
        tree.apply(
            &Event::Measurement {
                stage: Some("rollback".into()),
                step: "watch_errors".into(),
                n: 3,
                verdict: Verdict::Success,
                outputs: Map::new(),
                error: None,
                nan: None,
            },
            t.at(10.0),
        );
        let failed = Event::StepFinished(rec(
            s("rollback"),
            "rollback_traffic",
            "failed",
            1,
            16_500,
            "",
            Some("deploy API answered 503"),
        ));
        tree.apply(&failed, t.at(20.5));
        let above = tree.apply(
            &Event::BudgetExceeded {
                stage: Some("rollback".into()),
                budget_s: 120.0,
                elapsed_s: 120.0,
            },
            t.at(124.0),
        );
        assert_eq!(
            above,
            ["budget exceeded: stage rollback has run 2m00s, over its 2m budget"]
        );
        tree.apply(&handlers(s("rollback"), "on_budget_exceeded"), t.at(124.0));
        tree.apply(&started(s("rollback"), "alert_slow", "plugin"), t.at(124.0));
        assert_eq!(
            live(&tree, t.at(125.0)),
            [
                "⠋ run rollback  2m05s of 15m budget · timeout 1h",
                "  ⠋ rollback  2m01s, over its 2m budget · timeout 10m",
                "    ✗ rollback_traffic  16.5s  deploy API answered 503",
                "    ⠋ watch_errors  2m01s  measurement 3: success",
                "    on_budget_exceeded",
                "      ⠋ alert_slow  1s",
            ]
        );
        let finished = Event::StepFinished(rec(
            s("rollback"),
            "alert_slow",
            "succeeded",
            1,
            500,
            "posted to #incidents",
            None,
        ));
        tree.apply(&finished, t.at(124.5));
        let failed = Event::StepFinished(rec(
            s("rollback"),
            "watch_errors",
            "failed",
            12,
            126_000,
            "",
            Some("error rate 7% above the 5% limit"),
        ));
        tree.apply(&failed, t.at(130.0));
        tree.apply(&handlers(s("rollback"), "on_failure"), t.at(130.0));
        tree.apply(
            &started(s("rollback"), "restore_traffic", "plugin"),
            t.at(130.0),
        );
        let finished = Event::StepFinished(rec(
            s("rollback"),
            "restore_traffic",
            "succeeded",
            1,
            2000,
            "traffic back on v41",
            None,
        ));
        tree.apply(&finished, t.at(132.0));
        let above = tree.apply(
            &Event::StageFinished {
                stage: "rollback".into(),
                status: "failed",
                duration_s: 128.2,
                budget_s: Some(120.0),
            },
            t.at(132.2),
        );
        assert_eq!(
            above,
            [
                "  ✗ rollback  2m08s, over its 2m budget  failed",
                "    ✗ rollback_traffic  16.5s  deploy API answered 503",
                "    ✗ watch_errors  2m06s  12 measurements: error rate 7% above the 5% limit",
                "    on_budget_exceeded",
                "      ✓ alert_slow  500ms  posted to #incidents",
                "    on_failure",
                "      ✓ restore_traffic  2.0s  traffic back on v41",
            ]
        );

        tree.apply(&handlers(None, "on_failure"), t.at(132.2));
        tree.apply(&started(None, "page", "plugin"), t.at(132.2));
        assert_eq!(
            live(&tree, t.at(133.2))[1..],
            ["  on_failure", "    ⠋ page  1s"]
        );
        let failed = Event::StepFinished(rec(
            None,
            "page",
            "failed",
            3,
            1300,
            "",
            Some("the secret SLACK_WEBHOOK is not set"),
        ));
        tree.apply(&failed, t.at(133.5));
        tree.apply(&handlers(None, "finally"), t.at(133.5));
        tree.apply(&started(None, "write_report", "plugin"), t.at(133.5));
        let finished = Event::StepFinished(rec(
            None,
            "write_report",
            "succeeded",
            1,
            700,
            "report written",
            None,
        ));
        tree.apply(&finished, t.at(134.2));
        let above = tree.apply(
            &Event::RunFinished {
                status: "failed",
                duration_s: 134.25,
                budget_s: Some(900.0),
                handler_failures: 1,
            },
            t.at(134.3),
        );
        assert_eq!(
            above,
            [
                "  on_failure",
                "    ✗ page  1.3s  after 3 attempts: the secret SLACK_WEBHOOK is not set",
                "  finally",
                "    ✓ write_report  700ms  report written",
                "✗ run rollback failed after 2m14s of 15m budget; 1 handler failed",
            ]
        );
        assert!(tree.live().is_empty());
        assert!(tree.finish(t.at(135.0)).is_empty());
    }

    #[test]
    fn approvals_are_announced_above_and_counted_down_on_the_step() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        tree.apply(
            &Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "hotfix".into(),
                timeout_s: None,
                budget_s: None,
            },
            t.at(0.0),
        );
        tree.apply(&stage_started("fix", None, None), t.at(0.0));
        tree.apply(&started(Some("fix"), "confirm", "approval"), t.at(0.0));
        let above = tree.apply(
            &Event::ApprovalRequested {
                stage: Some("fix".into()),
                step: "confirm".into(),
                prompt: "Deploy the hotfix\nto production?".into(),
                approvers: vec!["tech-lead".into()],
                timeout_s: 600.0,
                answer_with: "runner approve 17-42 confirm --role ROLE [--reject] [--comment TEXT]"
                    .into(),
            },
            t.at(0.0),
        );
        assert_eq!(
            above,
            [
                "approval needed for step confirm (stage fix): Deploy the hotfix to production?",
                "  approvers: tech-lead",
                "  answer within 10m with:",
                "    runner approve 17-42 confirm --role ROLE [--reject] [--comment TEXT]",
            ]
        );
        assert!(tree.awaiting_approval());
        assert_eq!(
            live(&tree, t.at(47.5))[2],
            "    ⠴ confirm  47s  waiting for approval, 9m13s left"
        );
        let above = tree.apply(
            &Event::ApprovalDecided {
                stage: Some("fix".into()),
                step: "confirm".into(),
                outcome: "approved",
                decisions: vec![Decision {
                    by_source: None,
                    approved: true,
                    by: "alice".into(),
                    role: Some("tech-lead".into()),
                    at: "2025-01-31T09:05:00Z".into(),
                    comment: None,
                    via: "command".into(),
                }],
            },
            t.at(50.0),
        );
        assert_eq!(
            above,
            ["approval for step confirm: approved by alice as tech-lead"]
        );
        assert!(!tree.awaiting_approval());
        assert_eq!(live(&tree, t.at(50.0))[2], "    ⠋ confirm  50s  approved");
    }

    #[test]
    fn a_long_stage_folds_its_older_successes_while_live_and_prints_them_all() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        tree.apply(&stage_started("build", None, None), t.at(0.0));
        for n in 0..9 {
            let step = format!("s{n}");
            tree.apply(&started(Some("build"), &step, "plugin"), t.at(0.0));
            let status = if n == 1 { "skipped" } else { "succeeded" };
            let r = rec(Some("build"), &step, status, 1, 100, "", None);
            tree.apply(&Event::StepFinished(r), t.at(0.0));
        }
        tree.apply(&started(Some("build"), "last", "plugin"), t.at(0.0));
        assert_eq!(
            live(&tree, t.at(2.0)),
            [
                "  ⠋ build  2s",
                "    ⋯ 4 earlier steps: 3 succeeded, 1 skipped",
                "    ✓ s4  100ms",
                "    ✓ s5  100ms",
                "    ✓ s6  100ms",
                "    ✓ s7  100ms",
                "    ✓ s8  100ms",
                "    ⠋ last  2s",
            ]
        );
        let done = rec(Some("build"), "last", "succeeded", 1, 2000, "", None);
        tree.apply(&Event::StepFinished(done), t.at(2.0));
        let above = tree.apply(
            &Event::StageFinished {
                stage: "build".into(),
                status: "succeeded",
                duration_s: 2.0,
                budget_s: None,
            },
            t.at(2.0),
        );
        assert_eq!(above.len(), 11);
        assert_eq!(above[2], "    ⊘ s1  skipped");
    }

    #[test]
    fn over_budget_turns_yellow_only_with_colour() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(true);
        tree.apply(&stage_started("deploy", Some(60.0), None), t.at(0.0));
        let line = &tree.live()[0];
        assert_eq!(line.text(t.at(30.0), true), "  ⠋ deploy  30s of 1m budget");
        assert_eq!(
            line.text(t.at(61.0), true),
            "  ⠋ deploy  \x1b[33m1m01s, over its 1m budget\x1b[0m"
        );
        assert_eq!(
            line.text(t.at(61.0), false),
            "  ⠋ deploy  1m01s, over its 1m budget"
        );
        let above = tree.apply(
            &Event::StageFinished {
                stage: "deploy".into(),
                status: "succeeded",
                duration_s: 42.0,
                budget_s: Some(60.0),
            },
            t.at(42.0),
        );
        assert_eq!(above, ["  \x1b[32m✓\x1b[0m deploy  42.0s of 1m budget"]);
    }

    #[test]
    fn notices_for_timeouts_signals_and_cancelled_steps() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        tree.apply(
            &Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "canary".into(),
                timeout_s: None,
                budget_s: None,
            },
            t.at(0.0),
        );
        tree.apply(&stage_started("watch", None, Some(300.0)), t.at(0.0));
        tree.apply(&started(Some("watch"), "errors", "watch"), t.at(0.0));
        let above = tree.apply(
            &Event::TimedOut {
                stage: Some("watch".into()),
                timeout_s: 300.0,
            },
            t.at(300.0),
        );
        assert_eq!(
            above,
            ["timed out: stage watch reached its 5m timeout; its running steps are cancelled"]
        );
        let cancelled = rec(
            Some("watch"),
            "errors",
            "cancelled",
            0,
            0,
            "",
            Some("the stage timed out"),
        );
        tree.apply(&Event::StepFinished(cancelled), t.at(300.0));
        let above = tree.apply(
            &Event::StageFinished {
                stage: "watch".into(),
                status: "timed_out",
                duration_s: 300.01,
                budget_s: None,
            },
            t.at(300.0),
        );
        assert_eq!(
            above,
            [
                "  ⏱ watch  5m00s  timed out",
                "    ⊘ errors  cancelled: the stage timed out",
            ]
        );
        let above = tree.apply(&Event::Interrupted { signal: "SIGINT" }, t.at(301.0));
        assert_eq!(
            above,
            [
                "interrupted by SIGINT: running steps are cancelled; the on_failure and finally handlers run next"
            ]
        );
        let above = tree.apply(
            &Event::RunFinished {
                status: "interrupted",
                duration_s: 301.5,
                budget_s: None,
                handler_failures: 0,
            },
            t.at(301.5),
        );
        assert_eq!(
            above,
            ["⊘ run canary was interrupted by SIGINT after 5m01s"]
        );
    }

    #[test]
    fn plugin_text_stays_on_one_line_and_is_capped() {
        assert_eq!(
            one_line("\x1b[31mred\x1b[0m\r\nnext\tline  "),
            "\\u{1b}[31mred\\u{1b}[0m next line"
        );
        assert_eq!(one_line("a\0b\u{202e}c\u{2028}d"), "a\\0b\\u{202e}c d");
        let long = capped(&"x".repeat(300), DETAIL_MAX);
        assert_eq!(long.width(), DETAIL_MAX);
        assert!(long.ends_with("x…"));
        assert_eq!(capped("short", 10), "short");
        let line = Line::new(2, Mark::Failed, "a\nb").with_detail(&"é".repeat(500));
        assert_eq!(line.name, "a b");
        assert_eq!(line.detail.width(), DETAIL_MAX);
    }

    #[test]
    fn durations_read_the_same_everywhere() {
        assert_eq!(clock(Duration::ZERO), "0s");
        assert_eq!(clock(Duration::from_millis(59_900)), "59s");
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
        assert_eq!(clock(Duration::from_secs(7380)), "2h03m00s");
        assert_eq!(took(Duration::from_millis(340)), "340ms");
        assert_eq!(took(Duration::from_millis(2399)), "2.3s");
        assert_eq!(took(Duration::from_secs(65)), "1m05s");
        assert_eq!(countdown(Duration::from_millis(1200)), "2s");
        assert_eq!(countdown(Duration::ZERO), "0s");
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(span(Duration::from_secs(90)), "1m30s");
    }

    /// A stage's `on_budget_exceeded` takes the new steps while no stage step
    /// that was running has ended; run-level lists take every step without stage.
    #[test]
    fn handler_steps_are_placed_under_their_list() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        let finish = |tree: &mut Tree, stage: Option<&str>, step: &str| {
            let r = rec(stage, step, "succeeded", 1, 10, "", None);
            tree.apply(&Event::StepFinished(r), t.at(1.0));
        };
        tree.apply(&stage_started("a", Some(1.0), None), t.at(0.0));
        tree.apply(&started(Some("a"), "rollout", "plugin"), t.at(0.0));
        tree.apply(&handlers(Some("a"), "on_budget_exceeded"), t.at(1.0));
        tree.apply(&started(Some("a"), "tell", "plugin"), t.at(1.0));
        finish(&mut tree, Some("a"), "tell");
        // A skipped handler has no start.
        let skipped = rec(Some("a"), "page", "skipped", 0, 0, "", None);
        tree.apply(&Event::StepFinished(skipped), t.at(1.0));
        tree.apply(&started(Some("a"), "ask", "approval"), t.at(1.0));
        // The stage step ends while the approval waits: what starts next after
        // the approval is the stage's.
        finish(&mut tree, Some("a"), "rollout");
        finish(&mut tree, Some("a"), "ask");
        tree.apply(&started(Some("a"), "verify", "plugin"), t.at(1.0));
        tree.apply(&handlers(None, "on_budget_exceeded"), t.at(1.0));
        tree.apply(&started(None, "page_run", "plugin"), t.at(1.0));
        tree.apply(&started(None, "ask_run", "approval"), t.at(1.0));
        assert_eq!(
            live(&tree, t.at(2.0)),
            [
                "  ⠋ a  2s, over its 1s budget",
                "    ✓ rollout  10ms",
                "    ⠋ verify  1s",
                "    on_budget_exceeded",
                "      ✓ tell  10ms",
                "      ⊘ page  skipped",
                "      ✓ ask  10ms",
                "  on_budget_exceeded",
                "    ⠋ page_run  1s",
                "    ⠋ ask_run  1s",
            ]
        );
    }

    /// A timeout drops a budget handler that waits for an approval: the
    /// display stops waiting too, and says the step has no end.
    #[test]
    fn a_timeout_drops_the_budget_handlers_that_were_running() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        tree.apply(&stage_started("fix", Some(1.0), Some(5.0)), t.at(0.0));
        tree.apply(&started(Some("fix"), "build", "plugin"), t.at(0.0));
        tree.apply(&handlers(Some("fix"), "on_budget_exceeded"), t.at(1.0));
        tree.apply(&started(Some("fix"), "go_on", "approval"), t.at(1.0));
        tree.apply(
            &Event::ApprovalRequested {
                stage: Some("fix".into()),
                step: "go_on".into(),
                prompt: "Continue?".into(),
                approvers: Vec::new(),
                timeout_s: 600.0,
                answer_with: "runner approve 1-2 go_on".into(),
            },
            t.at(1.0),
        );
        assert!(tree.awaiting_approval());
        tree.apply(
            &Event::TimedOut {
                stage: Some("fix".into()),
                timeout_s: 5.0,
            },
            t.at(5.0),
        );
        assert!(!tree.awaiting_approval());
        let cancelled = rec(
            Some("fix"),
            "build",
            "cancelled",
            0,
            0,
            "",
            Some("the stage timed out"),
        );
        tree.apply(&Event::StepFinished(cancelled), t.at(5.0));
        tree.apply(&handlers(Some("fix"), "on_failure"), t.at(5.0));
        tree.apply(&started(Some("fix"), "undo", "plugin"), t.at(5.0));
        let done = rec(Some("fix"), "undo", "succeeded", 1, 400, "", None);
        tree.apply(&Event::StepFinished(done), t.at(5.4));
        let above = tree.apply(
            &Event::StageFinished {
                stage: "fix".into(),
                status: "timed_out",
                duration_s: 5.4,
                budget_s: Some(1.0),
            },
            t.at(5.4),
        );
        assert_eq!(
            above,
            [
                "  ⏱ fix  5.4s, over its 1s budget  timed out",
                "    ⊘ build  cancelled: the stage timed out",
                "    on_budget_exceeded",
                "      ? go_on  dropped by the timeout or signal; no end was reported",
                "    on_failure",
                "      ✓ undo  400ms",
            ]
        );
    }

    fn every_kind_of_event() -> Vec<Event> {
        let s = |x: &str| Some(x.to_owned());
        vec![
            Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "p".into(),
                timeout_s: Some(f64::NAN),
                budget_s: Some(-3.0),
            },
            Event::RunResumed {
                by: None,
                by_source: None,
                restored: 2,
                in_flight: vec!["x".into()],
            },
            stage_started("a", Some(1e300), Some(f64::INFINITY)),
            Event::StageSkipped { stage: "b".into() },
            started(s("a").as_deref(), "x", "plugin"),
            Event::StepRestored(rec(s("a").as_deref(), "r", "succeeded", 1, 5, "kept", None)),
            Event::Retry {
                stage: s("a"),
                step: "x".into(),
                attempt: u32::MAX,
                delay_ms: u64::MAX,
                error: "\x1b[2J".into(),
            },
            Event::Measurement {
                stage: s("ghost"),
                step: "w".into(),
                n: 1,
                verdict: Verdict::Error,
                outputs: Map::new(),
                error: Some("down".into()),
                nan: None,
            },
            Event::Gate {
                stage: None,
                step: "g".into(),
                outcome: "inconclusive",
                pass: "true".into(),
                pass_value: serde_json::Value::Bool(true),
                fail: None,
                fail_value: None,
            },
            Event::ApprovalRequested {
                stage: s("a"),
                step: "ok".into(),
                prompt: "go?".into(),
                approvers: Vec::new(),
                timeout_s: 1e18,
                answer_with: "runner approve 1 ok".into(),
            },
            Event::ApprovalDecided {
                stage: s("nowhere"),
                step: "ok".into(),
                outcome: "rejected",
                decisions: Vec::new(),
            },
            Event::StepFinished(rec(s("a").as_deref(), "x", "failed", 0, u64::MAX, "", None)),
            Event::StepFinished(rec(None, "lost", "weird", 0, 0, "", None)),
            Event::BudgetExceeded {
                stage: None,
                budget_s: 1.0,
                elapsed_s: f64::NAN,
            },
            Event::TimedOut {
                stage: s("zzz"),
                timeout_s: 1.0,
            },
            Event::Interrupted { signal: "SIGTERM" },
            handlers(s("a").as_deref(), "on_failure"),
            handlers(None, "finally"),
            started(None, "fin", "plugin"),
            Event::StageFinished {
                stage: "never_started".into(),
                status: "succeeded",
                duration_s: 1.0,
                budget_s: None,
            },
            Event::StageFinished {
                stage: "a".into(),
                status: "failed",
                duration_s: -1.0,
                budget_s: Some(f64::NAN),
            },
            Event::StepFinished(rec(s("a").as_deref(), "late", "succeeded", 1, 1, "", None)),
            Event::RunFinished {
                status: "timed_out",
                duration_s: 2.0,
                budget_s: None,
                handler_failures: 7,
            },
            Event::StepFinished(rec(None, "after_the_end", "succeeded", 1, 1, "", None)),
        ]
    }

    fn hidden(pause: bool) -> Progress {
        Progress::with_target(ProgressDrawTarget::hidden(), false, true, pause)
    }

    /// Whatever comes, in whatever order, the display neither panics nor
    /// hangs: steps and stages it never saw start, a run that ends with no
    /// stage, events after the end, absurd numbers.
    #[test]
    fn progress_takes_any_sequence_of_events() {
        let mut p = hidden(true);
        p.event(&Event::RunFinished {
            status: "succeeded",
            duration_s: 0.0,
            budget_s: None,
            handler_failures: 0,
        });
        p.finish();
        p.finish();
        p.event(&started(None, "x", "plugin"));
        p.println("after the end");

        let events = every_kind_of_event();
        for pause in [false, true] {
            let mut p = hidden(pause);
            for e in &events {
                p.event(e);
                p.println("a line above");
            }
            p.finish();
        }
        // Every prefix, then finish; and shuffled orders.
        for n in 0..=events.len() {
            let mut p = hidden(n % 2 == 0);
            for e in &events[..n] {
                p.event(e);
            }
            p.finish();
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200 {
            let mut order: Vec<&Event> = events.iter().collect();
            for i in (1..order.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let mut tree = Tree::new(true);
            let now = Instant::now();
            for e in &order {
                tree.apply(e, now);
                for line in tree.live() {
                    line.text(now + Duration::from_secs(5), true);
                }
            }
            tree.finish(now);
        }
        // Dropped without finish: finishes itself.
        let mut p = hidden(true);
        for e in &events[..10] {
            p.event(e);
        }
        drop(p);
    }

    /// A run that never says it ended still gets a last line that says so.
    #[test]
    fn finish_without_run_finished_says_no_end_was_reported() {
        let t = Clock0(Instant::now());
        let mut tree = Tree::new(false);
        tree.apply(
            &Event::RunStarted {
                by: None,
                by_source: None,
                playbook: "p".into(),
                timeout_s: None,
                budget_s: None,
            },
            t.at(0.0),
        );
        tree.apply(&stage_started("a", None, None), t.at(0.0));
        tree.apply(&started(Some("a"), "x", "plugin"), t.at(0.0));
        let above = tree.finish(t.at(3.0));
        assert_eq!(
            above,
            [
                "  ? a  no end was reported",
                "    ? x  no end was reported",
                "? run p  3.0s  no end was reported",
            ]
        );
        assert!(tree.live().is_empty());
        assert!(Tree::new(false).finish(t.at(0.0)).is_empty());
    }
}
