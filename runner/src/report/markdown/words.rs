//! How the markdown writes things: text and code escaped so that nothing in
//! them can forge markup, durations, offsets and values, and the names of
//! steps, lists and events.

use std::fmt::Write;

use serde_json::Value;

use super::{INLINE_CHARS, OUTPUT_CHARS};
use crate::engine::Event;
use crate::report::analysis::Run;
use crate::report::{compact, cut};
use crate::run_state::List;

pub(super) fn decisions_text(decisions: &[crate::engine::approval::Decision]) -> String {
    decisions
        .iter()
        .map(|d| {
            let mut t = format!(
                "{} by {}",
                if d.approved { "approved" } else { "rejected" },
                d.who()
            );
            if let Some(role) = &d.role {
                let _ = write!(t, " as {role}");
            }
            let _ = write!(t, " at {} via {}", d.at, d.via);
            if let Some(c) = &d.comment {
                let _ = write!(t, ": \"{c}\"");
            }
            t
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A finished step's summary, or its error (with its kind), as a table cell.
pub(super) fn outcome_text(r: &crate::engine::StepRecord) -> String {
    match (&r.error, r.status) {
        (Some(e), _) => format!(
            "{}{}",
            cell_text(e),
            r.error_kind
                .map_or(String::new(), |k| format!(" ({})", cell_code(k)))
        ),
        (None, "skipped") => "its `if` is false".to_owned(),
        (None, _) if r.summary.is_empty() => "—".to_owned(),
        (None, _) => cell_text(&r.summary),
    }
}

/// ` in stage `x``, for a table cell.
pub(super) fn in_stage(stage: &Option<String>) -> String {
    stage
        .as_deref()
        .map_or(String::new(), |s| format!(" in stage {}", cell_code(s)))
}

/// ` in stage `x`` and the handler list, for prose.
pub(super) fn place(run: &Run<'_>, s: usize) -> String {
    let step = &run.steps()[s];
    let mut t = step
        .stage
        .as_deref()
        .map_or(String::new(), |st| format!(" in stage {}", code(st)));
    if let Some(l) = run.list_of(s) {
        let _ = write!(t, " (handler in {})", list_name(l));
    }
    t
}

/// `` `on_failure` of stage `deploy` ``, `` `finally` of the run ``.
pub(super) fn list_name(l: &List) -> String {
    match &l.scope {
        Some(s) => format!("{} of stage {}", cell_code(l.kind), cell_code(s)),
        None => format!("{} of the run", cell_code(l.kind)),
    }
}

/// `` `deploy` (stage `x`) ``, for prose.
pub(super) fn step_name(run: &Run<'_>, s: usize) -> String {
    let step = &run.steps()[s];
    match &step.stage {
        Some(st) => format!("{} (stage {})", code(&step.id), code(st)),
        None => code(&step.id),
    }
}

/// The event's name in the JSON schema (`step_finished`, ...), as serde writes it.
pub(super) fn name(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(super) fn verdict_name(v: &crate::engine::watch::Verdict) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{v:?}"))
}

/// A value as compact JSON in a code span, cut to `max` characters with a note.
pub(super) fn cell_value(v: &Value, max: usize) -> String {
    let json = compact(v);
    match cut(&json, max) {
        (shown, None) => cell_code(&shown),
        (shown, Some(total)) => format!(
            "{} … *(cut: {total} characters; the JSON report has all of it)*",
            cell_code(&shown)
        ),
    }
}

/// A value for prose: compact JSON in a code span, or a note when it is not known.
pub(super) fn shown(v: Option<&Value>) -> String {
    match v {
        Some(v) => match cut(&compact(v), OUTPUT_CHARS) {
            (s, None) => code(&s),
            (s, Some(total)) => format!("{} … *(cut: {total} characters)*", code(&s)),
        },
        None => "*(not in the events)*".to_owned(),
    }
}

pub(super) fn cell_shown(v: Option<&Value>) -> String {
    match v {
        Some(v) => cell_value(v, INLINE_CHARS),
        None => "*(not in the events)*".to_owned(),
    }
}

/// `12.345 s`, `2 min 05.345 s`, `1 h 02 min 05 s`.
pub(in crate::report) fn secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return format!("{s} s");
    }
    let ms = (s * 1000.0).round() as u64;
    if ms < 60_000 {
        format!("{}.{:03} s", ms / 1000, ms % 1000)
    } else if ms < 3_600_000 {
        format!(
            "{} min {:02}.{:03} s",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )
    } else {
        format!(
            "{} h {:02} min {:02} s",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60
        )
    }
}

/// A duration against its budget: `over by 1.200 s (+12%)` or `0.800 s under`.
pub(super) fn against(duration: f64, budget: f64) -> String {
    if duration > budget {
        let pct = if budget > 0.0 {
            format!(" (+{:.0}%)", (duration - budget) / budget * 100.0)
        } else {
            String::new()
        };
        format!("over by {}{pct}", secs(duration - budget))
    } else {
        format!("{} under", secs(budget - duration))
    }
}

/// An offset from the run's start: `+01:02.345`, `+1:02:03.456`.
pub(super) fn offset(ms: u64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("+{h}:{m:02}:{s:02}.{milli:03}")
    } else {
        format!("+{m:02}:{s:02}.{milli:03}")
    }
}

/// Text for prose: markdown's active characters escaped with a backslash, so
/// the text shows as it is (`|`, `#`, backticks, `<` of HTML and comments
/// included, so no table row, heading, code or markup can be forged); line
/// breaks become `<br>`; every other character that `host::text::hidden`
/// names (escape sequences' ESC, NUL, bidi overrides, U+2028) is written as its
/// visible escape (`\u{1b}`), since the report is also read on a terminal.
pub(in crate::report) fn text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\r' if chars.get(i + 1) == Some(&'\n') => {}
            '\r' | '\n' => out.push_str("<br>"),
            // An underscore inside a word never emphasises: `error_rate` stays as it is.
            '_' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) =>
            {
                out.push('_')
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '#' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if crate::host::text::hidden(c) => crate::host::text::escape(&mut out, c),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// [`text`] for a table cell (the same: its escapes cover `|`).
pub(in crate::report) fn cell_text(s: &str) -> String {
    text(s)
}

/// A code span that shows `s` exactly: a fence longer than any run of
/// backticks inside; line breaks become spaces (a span cannot hold them); the
/// other characters `host::text::hidden` names become visible escapes.
pub(in crate::report) fn code(s: &str) -> String {
    if s.is_empty() {
        return "*(empty)*".to_owned();
    }
    let s = crate::host::text::printable(&s.replace("\r\n", " ").replace(['\n', '\r'], " "));
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || (s.starts_with(' ') && s.ends_with(' '))
    {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// [`code`] for a table cell: `|` is escaped, as GitHub's tables need even in code.
pub(in crate::report) fn cell_code(s: &str) -> String {
    code(s).replace('|', "\\|")
}
