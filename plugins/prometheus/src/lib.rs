//! `prometheus`: PromQL queries for metric gates.
//!
//! Why a plugin: the seeds roll back when the production error rate passes 1 %
//! or the mean latency 500 ms. This plugin asks Prometheus's HTTP API
//! (`/api/v1/query`, `/api/v1/query_range`) and returns numbers a gate or a
//! watch can compare: `value` when the answer is one number, `values` for a
//! vector, `series` for a range. Prometheus sends sample values as strings;
//! they become JSON numbers here, and `NaN` and infinities, which JSON cannot
//! hold, become `runner_sdk::number`'s marker, which gates and watches read as
//! the number it is (they are also counted in `not_numbers`).
//!
//! An empty answer (no series: no traffic yet, a typo in a label) is an error by
//! default, because a gate comparing nothing would pass or fail for the wrong
//! reason; `empty: zero` makes it 0 and `empty: null` returns `value: null`.
//!
//! # Label values are data
//!
//! Threat: a label value comes from a run input (an alert, an API caller) and is
//! pasted into the query text, so `production",track!="canary` closes the string
//! and adds matchers of its own: the gate then compares the numbers the input
//! chose. Values therefore travel in `labels:`, a map whose entries replace the
//! `$name` placeholders of the query as PromQL string literals, with `\`, `"`
//! and control characters escaped: whatever the value holds, it is one label
//! value. Placeholders are read outside string literals and comments only (so a
//! `"$1"` in `label_replace` stays as written); an unknown placeholder and an
//! unused entry are both `invalid-input`, so a misspelt name cannot silently
//! leave the raw query or drop a matcher.

use runner_sdk::http::Request;
use runner_sdk::serde_json::{Map, Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability, parse_duration};
use serde::Deserialize;

/// Most series kept in the outputs.
const SERIES_KEPT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Prometheus's base URL, e.g. `http://127.0.0.1:9090`.
    url: String,
    query: String,
    /// Values for the query's `$name` placeholders, each inserted as a PromQL
    /// string literal.
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    /// Evaluation time of an instant query (RFC 3339 or Unix seconds); default now.
    #[serde(default)]
    time: Option<String>,
    /// A range query over the last `range` (e.g. `10m`), one point per `step`.
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default = "fail")]
    empty: String,
    #[serde(default = "ten_seconds")]
    timeout: String,
    /// Headers set to granted secrets (e.g. a bearer token).
    #[serde(default)]
    secret_headers: std::collections::BTreeMap<String, String>,
}

fn fail() -> String {
    "fail".into()
}
fn ten_seconds() -> String {
    "10s".into()
}

struct Prometheus;

impl Plugin for Prometheus {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "prometheus",
            env!("CARGO_PKG_VERSION"),
            "PromQL queries for metric gates",
        )
        .input_schema(schema())
        .sinks(&[("url", "url"), ("query", "query")])
        .capabilities(&[capability::HTTP, "secrets?"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let timeout = parse_duration(&input.timeout)
            .map_err(|e| StepError::invalid_input(format!("`timeout`: {e}")))?;
        let base = input.url.trim_end_matches('/');
        let query = substitute(&input.query, &input.labels).map_err(StepError::invalid_input)?;
        let (path, mut params) = match &input.range {
            None => {
                let mut p = vec![("query", query.clone())];
                if let Some(t) = &input.time {
                    p.push(("time", t.clone()));
                }
                ("/api/v1/query", p)
            }
            Some(range) => {
                let range = parse_duration(range)
                    .map_err(|e| StepError::invalid_input(format!("`range`: {e}")))?;
                let step = match &input.step {
                    Some(s) => parse_duration(s)
                        .map_err(|e| StepError::invalid_input(format!("`step`: {e}")))?,
                    None => (range / 60).max(std::time::Duration::from_secs(1)),
                };
                let end = now_seconds();
                let start = end - range.as_secs_f64();
                (
                    "/api/v1/query_range",
                    vec![
                        ("query", query.clone()),
                        ("start", format!("{start:.3}")),
                        ("end", format!("{end:.3}")),
                        ("step", format!("{}", step.as_secs_f64())),
                    ],
                )
            }
        };
        let body = params
            .drain(..)
            .map(|(k, v)| format!("{k}={}", form_encode(&v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = Request::post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(timeout);
        for (header, secret) in &input.secret_headers {
            request = request.header(header, runner_sdk::secrets::get(secret)?);
        }
        let response = request.send()?;
        // A proxy or a Prometheus that is restarting or overloaded answers 502,
        // 503 or 504 (Prometheus itself answers 503 to a query that timed out):
        // the same query may well pass in a moment, so `retry:` applies.
        let transient = matches!(response.status, 429 | 502 | 503 | 504);
        let answer: Value = match response.json() {
            Ok(a) => a,
            Err(_) => {
                let message = format!(
                    "{base}{path} answered {} with a body that is not Prometheus's JSON: {}",
                    response.status,
                    runner_sdk::tail_lossy(&response.body, 300)
                );
                return Err(if transient {
                    StepError::retryable(message)
                } else {
                    StepError::failed(message)
                });
            }
        };
        if answer["status"] != "success" {
            let kind = answer["errorType"].as_str().unwrap_or("error");
            let message = format!(
                "Prometheus refused the query `{}`: {} ({kind}, HTTP {})",
                query,
                answer["error"].as_str().unwrap_or("no error message"),
                response.status
            );
            // `timeout` and `unavailable` describe the server, not the query.
            return Err(if transient || matches!(kind, "timeout" | "unavailable") {
                StepError::retryable(message)
            } else {
                StepError::failed(message)
            });
        }
        // Warnings (a partial answer, a limit hit) qualify the numbers: the
        // step's log shows them.
        if let Some(warnings) = answer["warnings"].as_array() {
            for w in warnings {
                runner_sdk::log::warn(format!(
                    "Prometheus warns: {}",
                    w.as_str().map_or_else(|| w.to_string(), str::to_owned)
                ));
            }
        }
        let data = &answer["data"];
        let mut out = Output::new().set("result_type", &data["resultType"]);
        let mut not_numbers = 0usize;
        // Prometheus writes `NaN`, `+Inf`, `-Inf`, which Rust's parser reads.
        let mut number = |v: &Value| -> Value {
            let parsed = v.as_str().and_then(|s| s.parse::<f64>().ok());
            match parsed {
                Some(n) if n.is_finite() => json!(n),
                Some(n) => {
                    not_numbers += 1;
                    runner_sdk::number(n)
                }
                None => {
                    not_numbers += 1;
                    Value::Null
                }
            }
        };
        let (value, count) = match data["resultType"].as_str() {
            Some("scalar") => (number(&data["result"][1]), 1),
            Some("vector") => {
                let items = data["result"].as_array().cloned().unwrap_or_default();
                let values: Vec<Value> = items
                    .iter()
                    .take(SERIES_KEPT)
                    .map(|s| json!({ "metric": s["metric"], "value": number(&s["value"][1]) }))
                    .collect();
                let value = match values.as_slice() {
                    [one] => one["value"].clone(),
                    _ => Value::Null,
                };
                out = out.set("values", values);
                (value, items.len())
            }
            Some("matrix") => {
                let items = data["result"].as_array().cloned().unwrap_or_default();
                let mut all = Vec::new();
                let series: Vec<Value> = items
                    .iter()
                    .take(SERIES_KEPT)
                    .map(|s| {
                        let points: Vec<Value> = s["values"]
                            .as_array()
                            .map(|ps| {
                                ps.iter()
                                    .map(|p| {
                                        let v = number(&p[1]);
                                        if let Some(n) = v.as_f64() {
                                            all.push(n);
                                        }
                                        json!([p[0], v])
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        json!({ "metric": s["metric"], "values": points })
                    })
                    .collect();
                let last = match series.as_slice() {
                    [one] => one["values"]
                        .as_array()
                        .and_then(|p| p.last())
                        .map(|p| p[1].clone())
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                if !all.is_empty() {
                    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mean = all.iter().sum::<f64>() / all.len() as f64;
                    out = out.set("min", min).set("max", max).set("mean", mean);
                }
                out = out.set("series", series);
                (last, items.len())
            }
            other => {
                return Err(StepError::failed(format!(
                    "Prometheus answered a result of type {other:?}, which this plugin does not read"
                )));
            }
        };
        let value = if count == 0 {
            match input.empty.as_str() {
                "zero" => json!(0.0),
                "null" => Value::Null,
                _ => {
                    return Err(StepError::failed(format!(
                        "the query `{}` returned no series (no data for it yet, or a label that matches nothing); set `empty: zero` if no data means 0",
                        query
                    )));
                }
            }
        } else {
            value
        };
        let summary = match (value.as_f64(), value.get("$nonfinite")) {
            (Some(v), _) => format!("{query} = {v}"),
            (None, Some(word)) => format!("{query} = {}", word.as_str().unwrap_or("?")),
            (None, None) => format!("{query}: {count} series"),
        };
        Ok(out
            .set("value", value)
            .set("count", count)
            .set("not_numbers", not_numbers)
            .summary(summary))
    }
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `query` with each `$name` outside string literals and comments replaced by
/// `labels[name]` as a PromQL string literal. An unknown name, a `$` without a
/// name and an entry of `labels` the query never uses are errors.
fn substitute(
    query: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut used = std::collections::BTreeSet::new();
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A string literal: copied as it is, escapes included.
            '"' | '\'' | '`' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' && c != '`' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            // A comment runs to the end of the line.
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '$' => {
                let mut name = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        name.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if name.is_empty() {
                    return Err("`$` in the query must start a placeholder such as `$namespace`, named in `labels`".into());
                }
                let value = labels.get(&name).ok_or_else(|| {
                    format!("the query's `${name}` has no value: add `{name}` to `labels`")
                })?;
                out.push_str(&promql_string(value));
                used.insert(name);
            }
            _ => out.push(c),
        }
    }
    if let Some(unused) = labels.keys().find(|k| !used.contains(*k)) {
        return Err(format!(
            "`labels.{unused}` is not used: the query has no `${unused}` outside quotes (write `namespace=${unused}`, not `namespace=\"${unused}\"`)"
        ));
    }
    Ok(out)
}

/// `text` as a double-quoted PromQL string: it can only ever be one string.
fn promql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn schema() -> Value {
    let duration = |what: &str| json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$", "description": what });
    let mut props = Map::new();
    props.insert("url".into(), json!({ "type": "string", "minLength": 1, "description": "Prometheus's base URL, e.g. `http://127.0.0.1:9090`; granted under `http`." }));
    props.insert(
        "query".into(),
        json!({ "type": "string", "minLength": 1, "description": "The PromQL expression; `$name` (outside quotes) stands for `labels.name`." }),
    );
    props.insert("labels".into(), json!({
        "type": "object",
        "propertyNames": { "pattern": "^[A-Za-z0-9_]+$" },
        "additionalProperties": { "type": "string" },
        "description": "Values for the query's `$name` placeholders, each inserted as a quoted, escaped PromQL string: `query: up{namespace=$ns}` with `labels: { ns: \"${{ inputs.namespace }}\" }`. Put every input that reaches a query here."
    }));
    props.insert("time".into(), json!({ "type": "string", "description": "Evaluation time of an instant query (RFC 3339 or Unix seconds); default now." }));
    props.insert(
        "range".into(),
        duration("Make a range query over the last this long, e.g. `10m`."),
    );
    props.insert(
        "step".into(),
        duration("Resolution of a range query (default: the range / 60, at least 1s)."),
    );
    props.insert("empty".into(), json!({ "enum": ["fail", "zero", "null"], "description": "What an answer without series does: fail the step (default), count as 0, or give `value: null`." }));
    props.insert(
        "timeout".into(),
        duration("Time to connect and to the first byte (default 10s)."),
    );
    props.insert("secret_headers".into(), json!({ "type": "object", "additionalProperties": { "type": "string" }, "description": "Headers set to granted secrets, e.g. `authorization: PROM_TOKEN`." }));
    json!({
        "type": "object",
        "properties": props,
        "required": ["url", "query"],
        "additionalProperties": false
    })
}

runner_sdk::export_plugin!(Prometheus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode("sum(rate(x{code=~\"5..\"}[5m]))"),
            "sum%28rate%28x%7Bcode%3D~%225..%22%7D%5B5m%5D%29%29"
        );
        assert_eq!(form_encode("a b&c"), "a+b%26c");
    }

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_label_value_stays_one_string() {
        let q = "sum(x{namespace=$ns,code=~\"5..\"})";
        assert_eq!(
            substitute(q, &labels(&[("ns", "production")])).unwrap(),
            "sum(x{namespace=\"production\",code=~\"5..\"})"
        );
        assert_eq!(
            substitute(q, &labels(&[("ns", r#"production",track!="canary"#)])).unwrap(),
            r#"sum(x{namespace="production\",track!=\"canary",code=~"5.."})"#
        );
        // A value that tries to close the string with its own backslash.
        assert_eq!(promql_string(r#"a\"}"#), r#""a\\\"}""#);
        assert_eq!(promql_string("a\nb\u{1}"), r#""a\nb\u0001""#);
    }

    #[test]
    fn placeholders_are_read_outside_strings_and_comments_only() {
        let q = "label_replace(up{job=$job}, \"dst\", \"$1\", 'src', `(.*)$`) # $job";
        assert_eq!(
            substitute(q, &labels(&[("job", "app")])).unwrap(),
            "label_replace(up{job=\"app\"}, \"dst\", \"$1\", 'src', `(.*)$`) # $job"
        );
        // An escaped quote does not end a string early.
        assert_eq!(
            substitute(r#"x{a="\"$b"} + y{b=$b}"#, &labels(&[("b", "v")])).unwrap(),
            r#"x{a="\"$b"} + y{b="v"}"#
        );
    }

    #[test]
    fn unknown_and_unused_placeholders_are_refused() {
        let err = substitute("up{ns=$nss}", &labels(&[("ns", "a")])).unwrap_err();
        assert!(err.contains("`$nss` has no value"), "{err}");
        let err = substitute("up{ns=\"$ns\"}", &labels(&[("ns", "a")])).unwrap_err();
        assert!(err.contains("`labels.ns` is not used"), "{err}");
        assert!(substitute("up{ns=$}", &labels(&[])).is_err());
        assert_eq!(substitute("up", &labels(&[])).unwrap(), "up");
    }
}
