//! The JUnit XML report: a test case per finished step, so that CI shows a run
//! the way it shows tests.
//!
//! Shape: `<testsuites>` holding one `<testsuite name=PLAYBOOK>`; each step is a
//! `<testcase classname="PLAYBOOK.STAGE" name="STEP">`, a handler's classname
//! ends with its list (`hotfix.deploy.on_failure`, or `hotfix.finally` for the
//! run's own handlers). Failed steps carry `<failure type=ERROR_KIND>`,
//! cancelled ones `<failure type="cancelled">`, skipped ones `<skipped/>`. Two
//! additions keep a bad run from looking green: a step that started and never
//! finished (a run cut short) is an `<error type="unfinished">`, and a run that
//! did not succeed although no step failed (a timeout or signal between steps)
//! gets one more case, `run`, failed with the run's status.
//!
//! Written by hand: the format is small, and every piece of text goes through
//! [`attr`] or [`body`], which escape it and replace the characters XML 1.0
//! cannot hold at all.

use std::fmt::Write;

use super::analysis::{self, Run};
use super::{RunInfo, Stamped, compact};
use crate::engine::Event;
use crate::run_state::Cause;

pub(super) fn render(info: &RunInfo, events: &[Stamped]) -> String {
    let run = analysis::analyse(events);
    let mut cases = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for (s, step) in run.steps().iter().enumerate() {
        tests += 1;
        let mut class = info.playbook.clone();
        if let Some(stage) = &step.stage {
            class.push('.');
            class.push_str(stage);
        }
        if let Some(list) = run.list_of(s) {
            class.push('.');
            class.push_str(list.kind);
        }
        let record = run.record(s);
        let time = record.map_or(0.0, |r| r.duration_ms as f64 / 1000.0);
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\">",
            attr(&class),
            attr(&step.id)
        );
        match record {
            None if step.cut && run.taken_up(s) => {
                skipped += 1;
                let _ = writeln!(
                    cases,
                    "      <skipped message=\"the runner died while it ran; after `runner resume` it ran again or was failed\"/>"
                );
            }
            None => {
                errors += 1;
                let message = if step.cut {
                    "the runner died while the step ran"
                } else {
                    "the step started and never finished"
                };
                let _ = writeln!(
                    cases,
                    "      <error type=\"unfinished\" message=\"{message}\"/>"
                );
            }
            Some(r) => match r.status {
                "failed" | "cancelled" => {
                    failures += 1;
                    let kind = if r.status == "cancelled" {
                        "cancelled"
                    } else {
                        r.error_kind.unwrap_or("failed")
                    };
                    let message = r.error.as_deref().unwrap_or(r.status);
                    let _ = writeln!(
                        cases,
                        "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                        attr(kind),
                        attr(message),
                        body(&explain(info, &run, s, message))
                    );
                }
                "skipped" => {
                    skipped += 1;
                    let _ = writeln!(cases, "      <skipped message=\"its `if` is false\"/>");
                }
                _ => {}
            },
        }
        if let Some(r) = record {
            let mut out = r.summary.clone();
            if step.restored {
                out.insert_str(
                    0,
                    "(restored from the journal: it finished before the runner died) ",
                );
            }
            for line in &r.log {
                if !out.is_empty() {
                    out.push('\n');
                }
                let _ = write!(out, "[{}] {}", line.level, line.message);
                if !line.fields.is_empty() {
                    let _ = write!(out, " {}", line.fields);
                }
            }
            if !out.is_empty() {
                let _ = writeln!(cases, "      <system-out>{}</system-out>", body(&out));
            }
        }
        let _ = writeln!(cases, "    </testcase>");
    }
    if run.status() != "succeeded" && failures + errors == 0 {
        tests += 1;
        let why = match run.cause() {
            Some(Cause::Stopped(i)) => match &run.events[i].event {
                Event::TimedOut {
                    stage: Some(s),
                    timeout_s,
                } => format!("stage {s} reached its timeout of {timeout_s} s"),
                Event::TimedOut { timeout_s, .. } => {
                    format!("the run reached its timeout of {timeout_s} s")
                }
                Event::Interrupted { signal } => format!("the runner got {signal}"),
                _ => format!("the run {}", run.status()),
            },
            _ if run.finished().is_none() => "the events end without run_finished".to_owned(),
            _ => format!("the run {}", run.status()),
        };
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"run\" time=\"{:.3}\">\n      <failure type=\"{}\" message=\"{}\"/>\n    </testcase>",
            attr(&info.playbook),
            run.duration(),
            attr(run.status()),
            attr(&why)
        );
        failures += 1;
    }
    let time = run.duration();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\""
    );
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" {counts}>",
        attr(&info.playbook)
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" id=\"{}\" timestamp=\"{}\" {counts}>",
        attr(&info.playbook),
        attr(&info.run_id),
        attr(&info.started_at)
    );
    let _ = writeln!(out, "    <properties>");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(value)
        );
    };
    property("run_id", &info.run_id);
    property("file", &info.file);
    property("status", run.status());
    for (k, v) in &info.inputs {
        property(&format!("input.{k}"), &compact(v));
    }
    let _ = writeln!(out, "    </properties>");
    out.push_str(&cases);
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}

/// The body of a `<failure>`: the message, then what explains it (a gate's
/// conditions and values, a watch's last measurements), as plain text.
fn explain(info: &RunInfo, run: &Run<'_>, s: usize, message: &str) -> String {
    let mut t = message.to_owned();
    if let Some(g) = run
        .gate_of(s)
        .and_then(|g| analysis::gate_view(run, info, g))
    {
        for (which, expr, value) in &g.conditions {
            let _ = write!(t, "\n{which}: {expr}\n  measured: {}", compact(value));
        }
        for (path, value) in &g.refers_to {
            let _ = write!(
                t,
                "\n{path} = {}",
                value
                    .as_ref()
                    .map_or("(not in the events)".to_owned(), compact)
            );
        }
    }
    let measured = run.measurements_of(s);
    for &i in measured.iter().skip(measured.len().saturating_sub(5)) {
        if let Event::Measurement {
            n,
            verdict,
            outputs,
            error,
            ..
        } = &run.events[i].event
        {
            let _ = write!(
                t,
                "\nmeasurement {n}: {}",
                compact(&serde_json::to_value(verdict).unwrap_or_default())
            );
            if !outputs.is_empty() {
                let _ = write!(
                    t,
                    " {}",
                    compact(&serde_json::Value::Object(outputs.clone()))
                );
            }
            if let Some(e) = error {
                let _ = write!(t, " error: {e}");
            }
        }
    }
    t
}

/// Text for an attribute value (in double quotes): markup and quotes escaped,
/// and tabs and line breaks as character references so parsers keep them.
pub(super) fn attr(s: &str) -> String {
    escape(s, true)
}

/// Text for element content.
pub(super) fn body(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            // XML 1.0 has no way to write other control characters (nor
            // U+FFFE, U+FFFF), not even as references: name them instead.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
