//! `http-check`: health and smoke checks of an HTTP endpoint.
//!
//! Why a plugin: the seeds check `curl …/health` after every deploy and roll
//! back when health checks fail twice in a row. A check here is one request
//! judged on its status, its body (JSON paths or a regular expression) and its
//! latency; `repeat` makes N checks `interval` apart, and the step fails when
//! more checks fail in a row than `consecutive_failure_limit` tolerates (0 by
//! default: the first failure) — the same meaning "limit" has in a watch. A request that gets no answer (refused, timed out) is a failed
//! check like any other; a request the runner refuses (the URL is not granted)
//! ends the step at once as `denied`.
//!
//! Failed checks fail the step by default. In a watch each run is one
//! measurement, and an `Err` is a plugin *error* (it could not measure), which
//! the watch tolerates up to `consecutive_error_limit`: so `fail_step: false`
//! returns failed checks as outputs (`ok: false`) and the watch's `failure`
//! condition (`!result.ok`) counts them toward its failure limits.
//!
//! # Where a check goes
//!
//! Threat: the URL, or a path joined to a base URL, comes from a run input. A
//! value such as `@127.0.0.1:9/health` appended to `http://shop:8080` turns the
//! base into user information and sends the check (and its secret headers) to
//! another host; user information would also reach the `Host` header. So the
//! plugin refuses any URL with user information, and with `path` it joins the
//! two itself and refuses a result whose scheme, host or port differ from the
//! base's. The runner's `http` grant still decides what may be reached at all.
//!
//! JSON paths are simple on purpose: `$.a.b[0].c` (the `$.` is optional); a key
//! with dots or brackets is written `["a.b"]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runner_sdk::http::{HttpError, Request};
use runner_sdk::serde_json::{Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability, log, parse_duration};
use serde::Deserialize;

/// Most of the last body kept in the outputs.
const BODY_KEPT: usize = 4096;
/// Most per-check results kept in the outputs.
const RESULTS_KEPT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    /// A path (and query) joined to `url`, which is then a base URL.
    #[serde(default)]
    path: Option<String>,
    /// Whether failed checks fail the step, or come back as outputs.
    #[serde(default = "yes")]
    fail_step: bool,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Headers whose values are granted secrets: header -> secret name.
    #[serde(default)]
    secret_headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<Value>,
    /// Accepted statuses; default: any 2xx.
    #[serde(default)]
    expect_status: Option<Statuses>,
    #[serde(default)]
    assert: Vec<Assertion>,
    /// A regular expression the body must match.
    #[serde(default)]
    body_matches: Option<String>,
    #[serde(default)]
    max_latency: Option<String>,
    #[serde(default = "five_seconds")]
    timeout: String,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default = "one_second")]
    interval: String,
    /// Failed checks in a row tolerated.
    #[serde(default)]
    consecutive_failure_limit: u32,
}

fn yes() -> bool {
    true
}
fn get() -> String {
    "GET".into()
}
fn five_seconds() -> String {
    "5s".into()
}
fn one_second() -> String {
    "1s".into()
}
fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Statuses {
    One(u16),
    Many(Vec<u16>),
}

impl Statuses {
    fn accepts(&self, status: u16) -> bool {
        match self {
            Statuses::One(s) => *s == status,
            Statuses::Many(list) => list.contains(&status),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assertion {
    /// A JSON path into the body.
    path: String,
    #[serde(default)]
    equals: Option<Value>,
    #[serde(default)]
    exists: Option<bool>,
    /// The value (a string, or an array) contains this.
    #[serde(default)]
    contains: Option<Value>,
    /// The value is a string matching this regular expression.
    #[serde(default)]
    matches: Option<String>,
    /// The value is a number at most / at least this.
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
}

/// The checks' settings, parsed once.
struct Plan {
    input: Input,
    /// The URL every check requests: `url`, or `url` joined with `path`.
    url: String,
    max_latency: Option<Duration>,
    timeout: Duration,
    interval: Duration,
    body_regex: Option<regex_lite::Regex>,
    value_regexes: Vec<Option<regex_lite::Regex>>,
    secret_headers: Vec<(String, String)>,
}

/// One check's outcome.
struct Check {
    status: Option<u16>,
    latency: Duration,
    failure: Option<String>,
    body: String,
}

struct HttpCheck;

impl Plugin for HttpCheck {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "http-check",
            env!("CARGO_PKG_VERSION"),
            "health and smoke checks with assertions",
        )
        .input_schema(schema())
        .sinks(&[("url", "url"), ("path", "url")])
        .capabilities(&[capability::HTTP, "secrets?"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let plan = Plan::new(input)?;
        let mut results = Vec::new();
        let (mut passed, mut failed, mut in_a_row) = (0u32, 0u32, 0u32);
        let mut latencies = Vec::new();
        let mut last: Option<Check> = None;
        for n in 1..=plan.input.repeat {
            if n > 1 {
                std::thread::sleep(plan.interval);
            }
            let check = plan.check()?;
            latencies.push(check.latency);
            match &check.failure {
                None => {
                    passed += 1;
                    in_a_row = 0;
                }
                Some(why) => {
                    failed += 1;
                    in_a_row += 1;
                    log::warn(format!("check {n} of {} failed: {why}", plan.input.repeat));
                }
            }
            if results.len() < RESULTS_KEPT {
                results.push(json!({
                    "n": n,
                    "status": check.status,
                    "latency_ms": millis(check.latency),
                    "ok": check.failure.is_none(),
                    "failure": check.failure,
                }));
            }
            let stop = in_a_row > plan.input.consecutive_failure_limit;
            last = Some(check);
            if stop {
                break;
            }
        }
        let last = last.ok_or_else(|| StepError::invalid_input("`repeat` must be at least 1"))?;
        let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
        let max = latencies.iter().max().copied().unwrap_or_default();
        let body_json = runner_sdk::serde_json::from_str::<Value>(&last.body).ok();
        let mut body = last.body.clone();
        if body.len() > BODY_KEPT {
            let mut end = BODY_KEPT;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        let output = Output::new()
            .set("ok", failed == 0)
            .set("checks", passed + failed)
            .set("passed", passed)
            .set("failed", failed)
            .set("status", last.status)
            .set("latency_ms", millis(last.latency))
            .set("mean_latency_ms", millis(mean))
            .set("max_latency_ms", millis(max))
            .set("body", body)
            .set("json", body_json)
            .set("results", results);
        if in_a_row > plan.input.consecutive_failure_limit && plan.input.fail_step {
            let why = last.failure.unwrap_or_default();
            let detail = if plan.input.consecutive_failure_limit > 0 {
                format!(
                    "{in_a_row} checks in a row failed (consecutive_failure_limit: {}); the last: {why}",
                    plan.input.consecutive_failure_limit
                )
            } else {
                format!("check failed: {why}")
            };
            return Err(StepError::failed(format!(
                "{} {}: {detail}",
                plan.input.method, plan.url
            )));
        }
        Ok(output.summary(format!(
            "{passed}/{} checks of {} passed; mean {} ms, max {} ms",
            passed + failed,
            plan.url,
            millis(mean),
            millis(max)
        )))
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

impl Plan {
    fn new(input: Input) -> Result<Plan, StepError> {
        let duration = |name: &str, text: &str| {
            parse_duration(text).map_err(|e| StepError::invalid_input(format!("`{name}`: {e}")))
        };
        let max_latency = input
            .max_latency
            .as_deref()
            .map(|t| duration("max_latency", t))
            .transpose()?;
        let url = target(&input.url, input.path.as_deref()).map_err(StepError::invalid_input)?;
        let timeout = duration("timeout", &input.timeout)?;
        let interval = duration("interval", &input.interval)?;
        if input.repeat == 0 {
            return Err(StepError::invalid_input("`repeat` must be at least 1"));
        }
        if input.body.is_some() && input.json.is_some() {
            return Err(StepError::invalid_input("give `body` or `json`, not both"));
        }
        let regex = |name: &str, text: &str| {
            regex_lite::Regex::new(text).map_err(|e| {
                StepError::invalid_input(format!("`{name}` is not a regular expression: {e}"))
            })
        };
        let body_regex = input
            .body_matches
            .as_deref()
            .map(|r| regex("body_matches", r))
            .transpose()?;
        let mut value_regexes = Vec::new();
        for (i, a) in input.assert.iter().enumerate() {
            parse_path(&a.path)
                .map_err(|e| StepError::invalid_input(format!("`assert[{i}].path`: {e}")))?;
            value_regexes.push(
                a.matches
                    .as_deref()
                    .map(|r| regex(&format!("assert[{i}].matches"), r))
                    .transpose()?,
            );
        }
        let mut secret_headers = Vec::new();
        for (header, secret) in &input.secret_headers {
            secret_headers.push((header.clone(), runner_sdk::secrets::get(secret)?));
        }
        Ok(Plan {
            input,
            url,
            max_latency,
            timeout,
            interval,
            body_regex,
            value_regexes,
            secret_headers,
        })
    }

    /// One request, judged. A refusal by the runner ends the step (`Err`).
    fn check(&self) -> Result<Check, StepError> {
        let i = &self.input;
        let mut request = Request::new(&i.method, &self.url).timeout(self.timeout);
        for (k, v) in i
            .headers
            .iter()
            .chain(self.secret_headers.iter().map(|(k, v)| (k, v)))
        {
            request = request.header(k, v);
        }
        if let Some(body) = &i.body {
            request = request.body(body.clone());
        }
        if let Some(value) = &i.json {
            request = request.json(value).map_err(StepError::from)?;
        }
        let start = Instant::now();
        let response = request.send();
        let latency = start.elapsed();
        let response = match response {
            Ok(r) => r,
            Err(e @ (HttpError::Denied(_) | HttpError::Invalid(_))) => return Err(e.into()),
            Err(e) => {
                return Ok(Check {
                    status: None,
                    latency,
                    failure: Some(e.to_string()),
                    body: String::new(),
                });
            }
        };
        let body = response.text();
        let failure = self.judge(response.status, latency, &body);
        Ok(Check {
            status: Some(response.status),
            latency,
            failure,
            body,
        })
    }

    /// Why a check with this answer failed, or `None`.
    fn judge(&self, status: u16, latency: Duration, body: &str) -> Option<String> {
        let status_ok = match &self.input.expect_status {
            Some(s) => s.accepts(status),
            None => (200..300).contains(&status),
        };
        if !status_ok {
            let expected = match &self.input.expect_status {
                Some(Statuses::One(s)) => s.to_string(),
                Some(Statuses::Many(l)) => format!("{l:?}"),
                None => "2xx".into(),
            };
            return Some(format!("status {status}, expected {expected}"));
        }
        if let Some(max) = self.max_latency
            && latency > max
        {
            return Some(format!(
                "answered in {} ms, over the {} ms bound",
                millis(latency),
                millis(max)
            ));
        }
        if let Some(re) = &self.body_regex
            && !re.is_match(body)
        {
            return Some(format!("the body does not match `{}`", re.as_str()));
        }
        if self.input.assert.is_empty() {
            return None;
        }
        let doc: Value = match runner_sdk::serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                return Some(format!(
                    "the body is not JSON ({e}), so its paths cannot be checked"
                ));
            }
        };
        for (a, re) in self.input.assert.iter().zip(&self.value_regexes) {
            if let Some(why) = assertion(a, re.as_ref(), &doc) {
                return Some(why);
            }
        }
        None
    }
}

/// The URL to request: `url` alone, or `url` joined with `path`. Refuses user
/// information anywhere, and a join that lands on another scheme, host or port.
fn target(url: &str, path: Option<&str>) -> Result<String, String> {
    let base = origin(url).map_err(|why| format!("`url` `{url}`: {why}"))?;
    let Some(path) = path else {
        return Ok(url.to_owned());
    };
    let bad = |why: &str| Err(format!("`path` `{}`: {why}", path.escape_debug()));
    if !path.starts_with('/') {
        return bad("must start with `/`");
    }
    if path.starts_with("//") {
        return bad("`//` at the start names a host");
    }
    if path.contains(['\\', '#', '@']) || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("`\\`, `#`, `@`, spaces and control characters are not allowed");
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "`url` `{url}` has a query or a fragment, so `path` cannot be joined to it"
        ));
    }
    let joined = format!("{}{path}", url.trim_end_matches('/'));
    let now = origin(&joined).map_err(|why| format!("`url` joined with `path`: {why}"))?;
    if now != base {
        return Err(format!(
            "`path` `{path}` changes where the check goes ({} instead of {})",
            now.1, base.1
        ));
    }
    Ok(joined)
}

/// The scheme and authority of an absolute http(s) URL without user information.
fn origin(url: &str) -> Result<(String, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https".into());
    }
    let authority = uri.authority().ok_or("it has no host")?;
    if authority.as_str().contains('@') {
        return Err(
            "user information (`user@`) is refused: it would reach the server's `Host` and hide where the check goes; send credentials with `secret_headers`"
                .into(),
        );
    }
    if authority.host().is_empty() {
        return Err("it has no host".into());
    }
    Ok((scheme, authority.as_str().to_ascii_lowercase()))
}

/// Why `a` does not hold on `doc`, or `None`.
fn assertion(a: &Assertion, re: Option<&regex_lite::Regex>, doc: &Value) -> Option<String> {
    let found = lookup(doc, &a.path);
    let path = &a.path;
    if let Some(should) = a.exists
        && found.is_some() != should
    {
        return Some(if should {
            format!("`{path}` is missing")
        } else {
            format!("`{path}` exists")
        });
    }
    let needs_value = a.equals.is_some()
        || a.contains.is_some()
        || re.is_some()
        || a.max.is_some()
        || a.min.is_some();
    let value = match found {
        Some(v) => v,
        None if needs_value => return Some(format!("`{path}` is missing")),
        None => return None,
    };
    if let Some(expected) = &a.equals
        && value != expected
    {
        return Some(format!("`{path}` is {value}, expected {expected}"));
    }
    if let Some(part) = &a.contains {
        let holds = match (value, part) {
            (Value::String(s), Value::String(p)) => s.contains(p.as_str()),
            (Value::Array(items), p) => items.contains(p),
            _ => false,
        };
        if !holds {
            return Some(format!("`{path}` ({value}) does not contain {part}"));
        }
    }
    if let Some(re) = re {
        match value {
            Value::String(s) if re.is_match(s) => {}
            _ => {
                return Some(format!(
                    "`{path}` ({value}) does not match `{}`",
                    re.as_str()
                ));
            }
        }
    }
    if a.max.is_some() || a.min.is_some() {
        let Some(n) = value.as_f64() else {
            return Some(format!("`{path}` ({value}) is not a number"));
        };
        if let Some(max) = a.max
            && n > max
        {
            return Some(format!("`{path}` is {n}, above the maximum {max}"));
        }
        if let Some(min) = a.min
            && n < min
        {
            return Some(format!("`{path}` is {n}, below the minimum {min}"));
        }
    }
    None
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `$.a.b[0]["c.d"]` into its segments.
fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let rest = path.strip_prefix('$').unwrap_or(path);
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    let bad = |why: &str| {
        Err(format!(
            "`{path}` is not a JSON path: {why} (write it as `$.a.b[0]`)"
        ))
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if key.is_empty() {
                    return bad("an empty key");
                }
                segments.push(Segment::Key(key));
            }
            '[' => {
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                if let Some(quoted) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    segments.push(Segment::Key(quoted.to_owned()));
                } else if let Ok(n) = inner.parse::<usize>() {
                    segments.push(Segment::Index(n));
                } else {
                    return bad("brackets hold an index or a quoted key");
                }
            }
            _ if segments.is_empty() && !path.starts_with('$') => {
                // A path without `$.`: the first key starts here.
                let mut key = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                segments.push(Segment::Key(key));
            }
            _ => return bad("keys are separated by `.`"),
        }
    }
    Ok(segments)
}

fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = doc;
    for segment in parse_path(path).ok()? {
        at = match segment {
            Segment::Key(k) => at.get(k.as_str())?,
            Segment::Index(i) => at.get(i)?,
        };
    }
    Some(at)
}

fn schema() -> Value {
    let duration = |what: &str| json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$", "description": what });
    json!({
        "type": "object",
        "properties": {
            "url": { "type": "string", "minLength": 1, "description": "The URL to check (with `path`: the base URL); its scheme, host and port must be granted under `http`. User information (`user@`) is refused." },
            "path": { "type": "string", "minLength": 1, "description": "A path (and query) joined to `url`, e.g. `/health`; refused if the result would go to another scheme, host or port." },
            "fail_step": { "type": "boolean", "description": "Whether failed checks fail the step (default true). In a watch set false: failed checks come back as outputs with `ok: false`, so the watch counts them as failed measurements, not plugin errors." },
            "method": { "type": "string", "description": "HTTP method (default GET)." },
            "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Request headers." },
            "secret_headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Headers set to granted secrets, `header: SECRET_NAME` (e.g. `authorization: HEALTH_TOKEN`)." },
            "body": { "type": "string", "description": "Request body." },
            "json": { "description": "Request body as JSON (sets content-type)." },
            "expect_status": {
                "oneOf": [
                    { "type": "integer", "minimum": 100, "maximum": 599 },
                    { "type": "array", "items": { "type": "integer", "minimum": 100, "maximum": 599 }, "minItems": 1 }
                ],
                "description": "Accepted status or statuses; default any 2xx."
            },
            "assert": {
                "type": "array",
                "description": "Conditions on the JSON body, all of which must hold.",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": { "type": "string", "description": "JSON path, e.g. `$.checks.db.status` or `items[0]`." },
                        "equals": { "description": "The value equals this." },
                        "exists": { "type": "boolean", "description": "The path exists (true) or does not (false)." },
                        "contains": { "description": "The string or array contains this." },
                        "matches": { "type": "string", "description": "The string matches this regular expression." },
                        "max": { "type": "number", "description": "The number is at most this." },
                        "min": { "type": "number", "description": "The number is at least this." }
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }
            },
            "body_matches": { "type": "string", "description": "A regular expression the body must match." },
            "max_latency": duration("A check answering slower than this fails, e.g. `500ms`."),
            "timeout": duration("Give up on a request after this long (default 5s); counts as a failed check."),
            "repeat": { "type": "integer", "minimum": 1, "maximum": 10000, "description": "Number of checks (default 1)." },
            "interval": duration("Time between two checks (default 1s)."),
            "consecutive_failure_limit": { "type": "integer", "minimum": 0, "description": "Failed checks in a row tolerated; one more fails the step (default 0: the first failure). `1` is the seeds' \"two failures in a row roll back\"." }
        },
        "required": ["url"],
        "additionalProperties": false
    })
}

runner_sdk::export_plugin!(HttpCheck);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed_and_looked_up() {
        let doc = json!({ "a": { "b": [10, { "c.d": "x" }] }, "ok": true });
        assert_eq!(lookup(&doc, "$.a.b[0]"), Some(&json!(10)));
        assert_eq!(lookup(&doc, "a.b[1][\"c.d\"]"), Some(&json!("x")));
        assert_eq!(lookup(&doc, "ok"), Some(&json!(true)));
        assert_eq!(lookup(&doc, "$.a.missing"), None);
        assert!(parse_path("$..a").is_err());
        assert!(parse_path("$.a[x]").is_err());
    }

    #[test]
    fn a_path_never_changes_the_host() {
        assert_eq!(
            target("http://shop:8080", Some("/health?x=1")).unwrap(),
            "http://shop:8080/health?x=1"
        );
        assert_eq!(
            target("http://shop:8080/", Some("/health")).unwrap(),
            "http://shop:8080/health"
        );
        assert_eq!(
            target("https://shop/api", None).unwrap(),
            "https://shop/api"
        );
        for (url, path) in [
            ("http://shop:8080", "@127.0.0.1:9/health"),
            ("http://shop:8080", "//127.0.0.1:9/health"),
            ("http://shop:8080", ":9/health"),
            ("http://shop", ".evil.example/health"),
            ("http://shop:8080", "/a@b"),
            ("http://shop:8080", "/\\evil/health"),
            ("http://shop:8080?q", "/health"),
        ] {
            assert!(target(url, Some(path)).is_err(), "{url} + {path}");
        }
        for url in [
            "http://user@shop/health",
            "http://shop:8080@127.0.0.1:9/health",
            "http://a:b@shop/",
            "ftp://shop/",
            "shop/health",
        ] {
            assert!(target(url, None).is_err(), "{url}");
        }
    }

    #[test]
    fn assertions_say_what_is_wrong() {
        let doc = json!({ "status": "ok", "latency": 12.5, "tags": ["a", "b"] });
        let a = |v: Value| -> Assertion { runner_sdk::serde_json::from_value(v).unwrap() };
        assert_eq!(
            assertion(&a(json!({"path": "status", "equals": "ok"})), None, &doc),
            None
        );
        assert_eq!(
            assertion(&a(json!({"path": "status", "equals": "up"})), None, &doc),
            Some("`status` is \"ok\", expected \"up\"".into())
        );
        assert_eq!(
            assertion(&a(json!({"path": "latency", "max": 10})), None, &doc),
            Some("`latency` is 12.5, above the maximum 10".into())
        );
        assert_eq!(
            assertion(&a(json!({"path": "tags", "contains": "b"})), None, &doc),
            None
        );
        assert_eq!(
            assertion(&a(json!({"path": "db", "exists": true})), None, &doc),
            Some("`db` is missing".into())
        );
    }
}
