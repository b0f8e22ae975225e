//! A granted secret smuggled out through every text and number that crosses the
//! plugin boundary (`secret-smuggle`): each way has its own case, and each case
//! asserts that neither the secret, nor either half of it, nor its escaped
//! spellings appear anywhere in the step's result (outcome and log), and that
//! `[redacted]` does where the secret was.

use super::*;
use runner::host::redact::MASK;
use runner::host::runtime::{MAX_ERROR_BYTES, MAX_SUMMARY_BYTES, StepSuccess};

/// A multi-line secret: text is escaped after it is redacted, so the newline
/// must not keep it from being recognised.
const SECRET: &str = "tok-9f3a7c2e-multi\nline-b81d5e04-end";
/// A secret of digits, which a plugin can return as a JSON number.
const DIGITS: &str = "8675309123";

fn smuggle(secret: &str, input: Value) -> StepResult {
    let mut input = input;
    input["name"] = json!("TOKEN");
    run_with(
        "secret-smuggle",
        input,
        limits(5_000, 64),
        granted(&[("TOKEN", secret)]),
    )
}

/// Every text of a step result, as the host keeps it: outputs' keys, strings
/// and numbers, the summary, artifacts, the failure, log lines, fields, progress.
fn texts(r: &StepResult) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    out.push(k.clone());
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::String(s) => out.push(s.clone()),
            other => out.push(other.to_string()),
        }
    }
    let mut out = Vec::new();
    match &r.outcome {
        Ok(StepSuccess {
            outputs,
            summary,
            artifacts,
        }) => {
            walk(&Value::Object(outputs.clone()), &mut out);
            out.push(summary.clone());
            for a in artifacts {
                out.extend([a.name.clone(), a.path.clone(), a.media_type.clone()]);
            }
        }
        Err(f) => out.push(f.to_string()),
    }
    for l in &r.log.lines {
        out.extend([l.message.clone(), l.fields.clone()]);
    }
    if let Some((_, _, m)) = &r.log.progress {
        out.push(m.clone());
    }
    out
}

/// The secret, its halves (cut where a cap could cut it, and at its newline),
/// and the spellings it takes once escaped.
fn pieces(secret: &str) -> Vec<String> {
    let mut p = vec![
        secret.to_owned(),
        runner::host::text::printable(secret),
        json!(secret).to_string().trim_matches('"').to_owned(),
    ];
    if secret.len() >= 8 {
        let half = secret.len() / 2;
        p.extend([secret[..half].to_owned(), secret[half..].to_owned()]);
    }
    p.extend(secret.lines().filter(|l| l.len() >= 8).map(str::to_owned));
    p
}

/// Asserts that no piece of `secret` is anywhere in `r`, and the mask is.
fn assert_redacted(r: &StepResult, secret: &str) {
    let all = texts(r);
    for t in &all {
        for p in pieces(secret) {
            assert!(!t.contains(&p), "{p:?} leaked in {t:?}\n{all:#?}");
        }
    }
    assert!(all.iter().any(|t| t.contains(MASK)), "{all:#?}");
}

fn success(r: &StepResult) -> &StepSuccess {
    r.outcome.as_ref().expect("the step itself succeeds")
}

#[test]
fn a_secret_returned_as_a_json_number_is_redacted() {
    let r = smuggle(DIGITS, json!({ "how": "number" }));
    assert_redacted(&r, DIGITS);
    let out = &success(&r).outputs;
    // The bare number, a number whose digits contain it, one deep in a list.
    assert_eq!(out["n"], json!(MASK));
    assert_eq!(out["around"], json!(MASK));
    assert_eq!(out["list"], json!([[1, 2], { "deep": MASK }]));
}

#[test]
fn a_secret_in_an_output_key_is_redacted() {
    let r = smuggle(SECRET, json!({ "how": "key" }));
    assert_redacted(&r, SECRET);
    let out = &success(&r).outputs;
    assert_eq!(out[&format!("key-{MASK}")], json!("v"));
    assert_eq!(out["nested"], json!({ format!("inner-{MASK}"): 1 }));
}

#[test]
fn a_secret_in_an_artifact_name_or_media_type_is_redacted() {
    let r = smuggle(SECRET, json!({ "how": "artifact" }));
    assert_redacted(&r, SECRET);
    let a = &success(&r).artifacts;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, format!("report {MASK}"));
    assert_eq!(a[0].media_type, format!("text/plain; token={MASK}"));
    assert_eq!(a[0].path, "report.txt");
}

#[test]
fn an_artifact_path_that_contains_a_secret_is_refused_and_redacted() {
    let r = smuggle(SECRET, json!({ "how": "artifact-path" }));
    assert_redacted(&r, SECRET);
    let f = failure(r);
    assert_eq!(
        f,
        StepFailure::BadOutput(format!(
            "artifact `report` has a path that contains the value of a granted secret (`dir-{MASK}.txt`); the runner keeps artifacts under their path, so name the file otherwise"
        ))
    );
}

#[test]
fn a_multi_line_secret_in_a_log_line_its_fields_progress_and_summary_is_redacted() {
    let r = smuggle(SECRET, json!({ "how": "lines" }));
    assert_redacted(&r, SECRET);
    assert_eq!(success(&r).summary, format!("summary {MASK} (end)"));
    let lines: Vec<(&str, &str)> = r
        .log
        .lines
        .iter()
        .map(|l| (l.message.as_str(), l.fields.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (format!("the secret is {MASK} (end)").as_str(), ""),
            ("in fields", format!(r#"{{"secret":"{MASK}"}}"#).as_str()),
        ]
    );
    assert_eq!(
        r.log.progress,
        Some((1, Some(2), format!("progress {MASK}")))
    );
}

#[test]
fn a_secret_at_the_summary_cut_is_redacted_before_the_cut() {
    // The secret starts 20 bytes before the cap: cut first (the old order),
    // its first 20 bytes stayed.
    let r = smuggle(
        SECRET,
        json!({ "how": "cut", "pad": MAX_SUMMARY_BYTES - 20 }),
    );
    assert_redacted(&r, SECRET);
    let summary = &success(&r).summary;
    assert!(summary.len() <= MAX_SUMMARY_BYTES, "{}", summary.len());
    assert!(summary.ends_with(runner::host::text::CUT_MARK), "{summary}");
    assert!(summary.contains(MASK), "{}", &summary[summary.len() - 40..]);
}

#[test]
fn a_secret_at_the_log_line_cut_is_redacted_before_the_cut() {
    let max = runner::caps::log::MAX_LOG_LINE;
    let r = smuggle(SECRET, json!({ "how": "cut", "pad": max - 20 }));
    assert_redacted(&r, SECRET);
    let line = &r.log.lines[0].message;
    assert!(line.len() <= max, "{}", line.len());
    assert!(line.contains(MASK), "{}", &line[line.len() - 40..]);
    assert!(line.ends_with(runner::host::text::CUT_MARK));
    let progress = r.log.progress.as_ref().map(|p| p.2.as_str()).unwrap_or("");
    assert!(progress.len() <= max && progress.contains(MASK));
}

#[test]
fn a_secret_at_the_error_message_cut_is_redacted_before_the_cut() {
    let r = smuggle(
        SECRET,
        json!({ "how": "cut", "pad": MAX_ERROR_BYTES - 20, "kind": "failed" }),
    );
    assert_redacted(&r, SECRET);
    match failure(r) {
        StepFailure::Failed(m) => {
            assert!(m.len() <= MAX_ERROR_BYTES, "{}", m.len());
            assert!(m.ends_with(runner::host::text::CUT_MARK));
            assert!(m.contains(MASK), "{}", &m[m.len() - 40..]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_secret_in_an_error_message_is_redacted_for_every_kind() {
    let message = format!("could not use {MASK} (end)");
    for (kind, expected) in [
        ("invalid-input", StepFailure::InvalidInput(message.clone())),
        ("denied", StepFailure::Denied(message.clone())),
        ("failed", StepFailure::Failed(message.clone())),
        ("retryable", StepFailure::Retryable(message.clone())),
    ] {
        let r = smuggle(SECRET, json!({ "how": "fail", "kind": kind }));
        assert_redacted(&r, SECRET);
        assert_eq!(failure(r), expected, "{kind}");
    }
}

#[test]
fn a_host_refusal_that_quotes_a_secret_is_redacted() {
    // The plugin asks for a secret named like the value it holds: the host's
    // refusal quotes the name, in the failure and in the log.
    let r = smuggle(SECRET, json!({ "how": "ask" }));
    assert_redacted(&r, SECRET);
    let host_line = r
        .log
        .lines
        .iter()
        .find(|l| l.message.starts_with("runner: denied: "))
        .map(|l| l.message.clone());
    assert!(
        host_line.as_deref().is_some_and(|l| l.contains(MASK)),
        "{host_line:?}"
    );
    let f = failure(r);
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.starts_with(&format!("secret `{MASK}` is not granted"))),
        "{f:?}"
    );
}
