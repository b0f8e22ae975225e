//! Reports of a run, written at its end whatever the outcome: markdown for
//! people (and GitHub's step summary), JUnit XML for CI, JSON for tools.
//!
//! Why each report is a pure function of the run's events (with the time the
//! journal recorded for each) and of [`RunInfo`]: the journal keeps exactly
//! those, so any report can be rendered again later from the journal, and comes
//! out the same as the one written when the run ended. A post-mortem can
//! regenerate the report of a run from last week; a run that crashed before it
//! could write its reports gets them from its journal, marked `incomplete`; and a
//! test pins a report by building the events by hand. Nothing else feeds a
//! report: not the plan, not the clock, not the environment. Only
//! [`write_all`] touches the outside world (files, `$GITHUB_STEP_SUMMARY`).
//!
//! Every report reads the same fold of the events, [`crate::run_state`] (which
//! the live tree reads too), through `analysis`. What the events alone cannot
//! tell is said there: which handler list a step of a stage's
//! `on_budget_exceeded` belongs to is inferred from the order of the events,
//! and is exact except in one case described in `run_state`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::Event;
use crate::run_state::Cause;

pub(crate) mod analysis;
mod junit;
mod markdown;

/// What a report needs besides the events.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The playbook's `name`.
    pub playbook: String,
    /// The playbook file, as given on the command line.
    pub file: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The run's inputs, resolved. Never secrets: those are not inputs.
    pub inputs: Map<String, Value>,
    /// What the journal lacks of this run, when it lacks something (it
    /// stopped taking writes): a report rebuilt from the journal is then
    /// incomplete, and the run cannot be resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// An event with the time the journal recorded for it.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    /// When it happened (RFC 3339 with milliseconds).
    pub at: String,
    /// Milliseconds since the run started.
    pub offset_ms: u64,
    /// The event; in JSON its fields sit beside `at` and `offset_ms`.
    #[serde(flatten)]
    pub event: Event,
}

/// The markdown report: title and status, why the run did not succeed (first,
/// when it did not), summary, stages against their budgets, gates with their
/// measured values, watches, approvals, handlers that ran, failures, outputs,
/// and the timeline of every event.
pub fn markdown(info: &RunInfo, events: &[Stamped]) -> String {
    markdown::render(info, events)
}

/// The JUnit XML report: `<testsuites><testsuite name=PLAYBOOK>` with a
/// `<testcase classname="PLAYBOOK.STAGE[.HANDLER_LIST]" name="STEP">` per
/// step (see the `junit` module for the details).
pub fn junit(info: &RunInfo, events: &[Stamped]) -> String {
    junit::render(info, events)
}

/// The JSON report, pretty-printed: `{"run": RunInfo, "status", "duration_s",
/// "failure", "events": [{"at", "offset_ms", "event", ...fields}]}`. `status`
/// is `incomplete` when there is no `run_finished`; `failure` (absent when the
/// run succeeded) is what the markdown's "Why it failed" says, for tools.
pub fn json(info: &RunInfo, events: &[Stamped]) -> String {
    let run = analysis::analyse(events);
    #[derive(Serialize)]
    struct Document<'a> {
        run: &'a RunInfo,
        status: &'a str,
        duration_s: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<Value>,
        events: &'a [Stamped],
    }
    let document = Document {
        run: info,
        status: run.status(),
        duration_s: run.duration(),
        failure: failure(info, &run),
        events,
    };
    serde_json::to_string_pretty(&document).unwrap_or_else(|e| {
        // Only a serializer error can land here; the report still says so.
        serde_json::to_string_pretty(&json!({
            "run": info,
            "status": run.status(),
            "error": format!("the events could not be written as JSON: {e}"),
        }))
        .unwrap_or_default()
    })
}

/// The cause of a run that did not succeed, as JSON.
fn failure(info: &RunInfo, run: &analysis::Run<'_>) -> Option<Value> {
    let cause = run.cause()?;
    Some(match cause {
        Cause::Step(s) => {
            let step = &run.steps()[s];
            let r = run.record(s)?;
            let mut f = json!({
                "kind": step.kind.unwrap_or("plugin"),
                "stage": step.stage,
                "step": step.id,
                "handler": run.list_of(s).map(|l| l.kind),
                "error_kind": r.error_kind,
                "error": r.error,
            });
            if let Some(g) = run
                .gate_of(s)
                .and_then(|g| analysis::gate_view(run, info, g))
            {
                f["conditions"] = g
                    .conditions
                    .iter()
                    .map(|(which, expr, value)| {
                        json!({"condition": which, "expression": expr, "value": value})
                    })
                    .collect();
                f["refers_to"] = g
                    .refers_to
                    .into_iter()
                    .map(|(path, value)| (path, value.unwrap_or(Value::Null)))
                    .collect::<Map<String, Value>>()
                    .into();
            }
            f
        }
        Cause::Stopped(i) => {
            let mut f = serde_json::to_value(&run.events[i].event).unwrap_or(Value::Null);
            f["cancelled"] = (0..run.steps().len())
                .filter(|&s| run.steps()[s].status() == "cancelled")
                .map(|s| json!({"stage": run.steps()[s].stage, "step": run.steps()[s].id}))
                .collect();
            f
        }
        Cause::Unknown => json!({"kind": "unknown"}),
    })
}

/// GitHub refuses a step summary over 1 MiB (the whole of it, not just what
/// was added); this much is kept under that.
const STEP_SUMMARY_LIMIT: u64 = 1024 * 1024 - 4096;

/// Writes `<dir>/<playbook>-<run_id>-<YYYYMMDDTHHMMSSZ>.{md,xml,json}` (names
/// sanitised, the time is the run's start in UTC) and appends the markdown to
/// `summary`, GitHub's job summary when there is one (`GITHUB_STEP_SUMMARY`,
/// see `Settings`; appended, never truncated). Returns the three report files. An error names each file that
/// could not be written and why.
pub fn write_all_to(
    dir: &Path,
    summary: Option<&Path>,
    info: &RunInfo,
    events: &[Stamped],
) -> Result<Vec<PathBuf>, String> {
    let stem = file_stem(info);
    let markdown = markdown(info, events);
    let reports = [
        ("md", markdown.clone()),
        ("xml", junit(info, events)),
        ("json", json(info, events)),
    ];
    let mut written = Vec::new();
    let mut problems = Vec::new();
    match fs::create_dir_all(dir) {
        Err(e) => problems.push(format!(
            "cannot create the report directory {}: {e}",
            dir.display()
        )),
        Ok(()) => {
            for (ext, content) in reports {
                let path = dir.join(format!("{stem}.{ext}"));
                match write_new(&path, content.as_bytes()) {
                    Ok(()) => written.push(path),
                    Err(e) => problems.push(format!("cannot write {}: {e}", path.display())),
                }
            }
        }
    }
    if let Some(summary) = summary {
        let full_report = written
            .first()
            .filter(|p| p.extension().is_some_and(|e| e == "md"));
        if let Err(e) = append_summary(summary, &markdown, full_report.map(PathBuf::as_path)) {
            problems.push(format!(
                "cannot append to the step summary {}: {e}",
                summary.display()
            ));
        }
    }
    if problems.is_empty() {
        Ok(written)
    } else {
        let done = if written.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            format!(" (written: {})", names.join(", "))
        };
        Err(format!("{}{done}", problems.join("; ")))
    }
}

/// Writes a file through a temporary name in the same directory and a rename,
/// so that nobody ever reads half a report.
fn write_new(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = fs::write(&tmp, content).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends the markdown to GitHub's step summary file, cut at a line so that
/// the file stays within GitHub's limit (the full report is `full`).
fn append_summary(path: &Path, markdown: &str, full: Option<&Path>) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    let existing = file.metadata()?.len();
    let separator = if existing > 0 { "\n" } else { "" };
    let room = STEP_SUMMARY_LIMIT.saturating_sub(existing + separator.len() as u64) as usize;
    let mut text = String::from(separator);
    if markdown.len() <= room {
        text.push_str(markdown);
    } else {
        let note = format!(
            "\n*The report is cut here to fit GitHub's step summary limit; the full report is {}.*\n",
            full.map_or("in the run's report directory".to_owned(), |p| format!(
                "`{}`",
                p.display()
            ))
        );
        let keep = room.saturating_sub(note.len());
        // Cut after the last whole line that fits.
        let mut end = keep.min(markdown.len());
        while !markdown.is_char_boundary(end) {
            end -= 1;
        }
        let end = markdown[..end].rfind('\n').map_or(0, |n| n + 1);
        text.push_str(&markdown[..end]);
        text.push_str(&note);
    }
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// `<playbook>-<run_id>-<YYYYMMDDTHHMMSSZ>`, safe as a file name anywhere.
fn file_stem(info: &RunInfo) -> String {
    stem(&info.playbook, &info.run_id, &info.started_at)
}

fn stem(playbook: &str, run_id: &str, started_at: &str) -> String {
    format!(
        "{}-{}-{}",
        sanitise(playbook, "playbook"),
        sanitise(run_id, "run"),
        compact_time(started_at)
    )
}

/// The report files [`write_all`] writes in `dir` for a run.
pub fn files(dir: &Path, playbook: &str, run_id: &str, started_at: &str) -> [PathBuf; 3] {
    let stem = stem(playbook, run_id, started_at);
    ["md", "xml", "json"].map(|ext| dir.join(format!("{stem}.{ext}")))
}

/// Keeps ASCII letters, digits, `.`, `_` and `-`; anything else becomes `_`.
/// No leading dot (a hidden file), at most 64 characters, never empty.
fn sanitise(s: &str, fallback: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// An RFC 3339 time as `YYYYMMDDTHHMMSSZ` in UTC; a time that does not parse
/// gives the current time (the report must be written all the same).
fn compact_time(rfc3339: &str) -> String {
    let t = parse_rfc3339(rfc3339).unwrap_or_else(SystemTime::now);
    let text = crate::clock::rfc3339(t); // YYYY-MM-DDTHH:MM:SSZ
    text.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (the fraction is dropped).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let zone = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from 1970-01-01 to the civil date, with years starting in March so
    // that the leap day ends the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - zone;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A value as compact JSON (a string is quoted, as in the events).
fn compact(v: &Value) -> String {
    // A NaN or an infinity reads as `NaN`, `+Inf`, `-Inf`, not as its marker.
    crate::expr::nonfinite::readable(v)
}

/// `s` cut to `max` characters: the cut text and, when cut, the full length in
/// characters.
fn cut(s: &str, max: usize) -> (String, Option<usize>) {
    match s.char_indices().nth(max) {
        None => (s.to_owned(), None),
        Some((end, _)) => (s[..end].to_owned(), Some(s.chars().count())),
    }
}

#[cfg(test)]
mod tests;
