//! The lines of the live tree: what each line shows (its mark, its words, its
//! clock) and how a line becomes text at a given moment. Plain values and
//! functions, so the tree and the tests use them without a terminal.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::{DETAIL_MAX, DIM, GREEN, RED, SPINNER, TICK, YELLOW};
use crate::playbook::scalars::format_duration;

/// The mark at the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark {
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
    pub(super) fn glyph(self, frame: usize) -> &'static str {
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

    pub(super) fn code(self) -> Option<&'static str> {
        match self {
            Mark::Succeeded => Some(GREEN),
            Mark::Failed | Mark::TimedOut => Some(RED),
            Mark::Stopped => Some(YELLOW),
            Mark::Skipped | Mark::Fold => Some(DIM),
            Mark::Spinner | Mark::Unknown | Mark::Blank => None,
        }
    }

    pub(super) fn of_status(status: &str) -> Mark {
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
pub(super) enum Clock {
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
pub(super) enum Timed {
    /// A failed attempt waits until `at`; then attempt `next` runs.
    Retry { at: Instant, next: u32 },
    /// An approval waits until `until`.
    Approval { until: Instant },
}

impl Timed {
    pub(super) fn text(self, now: Instant) -> String {
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
    pub(super) depth: usize,
    pub(super) mark: Mark,
    /// When it started: the spinner's phase and the running clock.
    pub(super) since: Option<Instant>,
    pub(super) name: String,
    pub(super) clock: Clock,
    pub(super) timed: Option<Timed>,
    /// The rest (summary, error, measurement): one line, at most
    /// [`DETAIL_MAX`] columns.
    pub(super) detail: String,
}

impl Line {
    pub(super) fn new(depth: usize, mark: Mark, name: &str) -> Line {
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

    pub(super) fn with_detail(mut self, detail: &str) -> Line {
        self.detail = capped(&one_line(detail), DETAIL_MAX);
        self
    }

    /// Whether the line changes with time alone (and so needs ticking).
    pub(super) fn moves(&self) -> bool {
        self.mark == Mark::Spinner || self.timed.is_some()
    }

    /// The whole line at `now`.
    pub(crate) fn text(&self, now: Instant, color: bool) -> String {
        let mut out = self.head(now, color);
        out.push_str(&self.detail);
        out
    }

    /// Everything but the detail (which follows it directly).
    pub(super) fn head(&self, now: Instant, color: bool) -> String {
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
    pub(super) fn clock_text(&self, now: Instant) -> Option<(String, bool)> {
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
pub(super) fn against(elapsed: String, budget: Option<Duration>, over: bool) -> String {
    match budget {
        None => elapsed,
        Some(b) if over => format!("{elapsed}, over its {} budget", span(b)),
        Some(b) => format!("{elapsed} of {} budget", span(b)),
    }
}

pub(super) fn paint(text: &str, code: Option<&str>, color: bool) -> String {
    match code {
        Some(code) if color && !text.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_owned(),
    }
}

/// A running clock: whole seconds, never rounded up (`0s`, `59s`, `1m05s`, `2h03m00s`).
pub(super) fn clock(d: Duration) -> String {
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
pub(super) fn countdown(d: Duration) -> String {
    clock(Duration::from_secs(
        d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)),
    ))
}

/// How long something took: `340ms`, `2.3s`, `1m05s` (cut, not rounded).
pub(super) fn took(d: Duration) -> String {
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
pub(super) fn span(d: Duration) -> String {
    format_duration(d)
}

/// `now + d`, or as late as can be (a delay or timeout too long to count).
pub(super) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Seconds from an event; what is not a duration (negative, NaN) is zero.
pub(super) fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// One line of text: runs of white space (newlines, tabs, line separators
/// included) become one space; every other character `host::text::hidden`
/// names (an escape sequence's ESC, NUL, a bidi override) is shown as its
/// visible escape (`\u{1b}`), as everywhere else a person reads plugin text.
pub(super) fn one_line(text: &str) -> String {
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
pub(super) fn capped(text: &str, max: usize) -> String {
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

pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
