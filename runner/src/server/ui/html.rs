//! Small pieces every page uses: hostile text made inert, statuses in words
//! and signs (never colour alone), times, durations, budget bars.

use maud::{Markup, html};

/// `text` with what a terminal or a bidirectional renderer would act on
/// made visible: C0 controls (but newline and tab) become their Control
/// Pictures (ESC shows as ␛), DEL as ␡, and direction overrides and
/// isolates as `[U+202E]`. HTML itself is escaped by maud on output.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
            }
            '\u{7f}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("[U+{:04X}]", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// A status as a sign and a word, with a class for its colour.
pub fn status(word: &str) -> Markup {
    let (sign, class) = match word {
        "succeeded" | "approved" | "success" | "pass" => ("✓", "ok"),
        "failed" | "rejected" | "failure" | "fail" | "error" => ("✗", "bad"),
        "timed_out" | "timed out" => ("⏱", "bad"),
        "interrupted" | "cancelled" | "cut short" | "dropped" => ("⏹", "bad"),
        "running" => ("●", "live"),
        "waiting" | "queued" => ("◐", "wait"),
        "skipped" => ("↷", "quiet"),
        "pending" | "not started" => ("○", "quiet"),
        "inconclusive" => ("?", "wait"),
        _ => ("·", "quiet"),
    };
    html! {
        span class={ "status " (class) } { span aria-hidden="true" { (sign) } " " (word.replace('_', " ")) }
    }
}

/// A time from the journal (RFC 3339, UTC): UTC without a script, the
/// viewer's time zone with one; UTC on hover.
pub fn time(rfc3339: &str) -> Markup {
    let shown = rfc3339
        .get(..19)
        .map_or(rfc3339.to_owned(), |t| t.replace('T', " "));
    html! {
        time datetime=(rfc3339) title={ (rfc3339) " (UTC)" } { (shown) " UTC" }
    }
}

/// Seconds, as people read them: 850ms, 12.3s, 2m41s, 1h02m.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_owned();
    }
    if seconds < 1.0 {
        return format!("{}ms", (seconds * 1000.0).round() as u64);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        return format!("{}m{:02}s", s / 60, s % 60);
    }
    format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
}

/// Used against a budget: a bar (a `meter`, which assistive technology
/// reads as a value) and the figures in words.
pub fn budget(used_s: f64, budget_s: Option<f64>) -> Markup {
    match budget_s {
        Some(b) if b > 0.0 => {
            let share = used_s / b;
            let over = share > 1.0;
            html! {
                span.budget {
                    meter min="0" max=(b) low=(b * 0.8) high=(b * 0.999) optimum="0" value=(used_s.min(b)) {}
                    " " (duration(used_s)) " of " (duration(b))
                    @if over { " — " strong { "over budget by " (duration(used_s - b)) } }
                    @else { " (" (format!("{:.0}", share * 100.0)) " %)" }
                }
            }
        }
        _ => html! { (duration(used_s)) },
    }
}

/// A JSON value in one line, for tables (strings without quotes).
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => inert(s),
        other => inert(&other.to_string()),
    }
}

/// The anchor of a step on the run page.
pub fn step_anchor(stage: Option<&str>, step: &str) -> String {
    match stage {
        Some(s) => format!("step-{s}.{step}"),
        None => format!("step-{step}"),
    }
}

/// `n` things: "1 line", "2 lines".
pub fn counted(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_made_visible() {
        assert_eq!(inert("a\u{1b}[31mred"), "a\u{241b}[31mred");
        assert_eq!(inert("x\u{202e}y"), "x[U+202E]y");
        assert_eq!(inert("line\nnext\tcol"), "line\nnext\tcol");
        assert_eq!(inert("\u{7f}\u{0}"), "\u{2421}\u{2400}");
    }

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(counted(0, "line"), "0 lines");
        assert_eq!(counted(1, "input"), "1 input");
        assert_eq!(counted(2, "input"), "2 inputs");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(0.85), "850ms");
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(161.0), "2m41s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(duration(f64::NAN), "—");
    }

    #[test]
    fn a_status_is_a_sign_and_a_word() {
        let s = status("timed_out").into_string();
        assert!(s.contains("timed out") && s.contains('⏱'), "{s}");
    }

    #[test]
    fn hostile_text_is_escaped_and_inert_in_markup() {
        let hostile = "<script>alert(1)</script>\u{1b}]0;x\u{7}";
        let out = html! { p { (inert(hostile)) } }.into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out}");
    }
}
