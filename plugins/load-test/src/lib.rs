//! `load-test`: HTTP load with latency percentiles and k6-style thresholds.
//!
//! Two models:
//! - **open** (`rate`: requests per second): requests start on a schedule,
//!   whatever the server does, and each latency is measured from the moment the
//!   request *should* have started (or was sent, when it went out early: requests
//!   due within the host timer's next 1 ms tick go at once). A slow server
//!   therefore shows up as slow instead of quietly lowering the load (no
//!   coordinated omission).
//!   `max_in_flight` bounds the requests in flight at once; a request that would
//!   pass it is counted as an error (`overloaded`), not delayed.
//! - **closed** (`concurrency`: workers): each worker sends its next request
//!   when the last one is answered.
//!
//! `ramp_up` raises the rate linearly (open) or starts workers one by one
//! (closed). Latencies go into an HDR histogram (microsecond resolution, 3
//! significant digits). Thresholds are k6's: `p(95)<500`, `avg<200`, `max<=2000`
//! (milliseconds), `rate<0.01` (error rate), `rps>100`; the output `passed` says
//! whether all hold, for a gate; the step itself succeeds unless
//! `fail_on_thresholds` is set.

// Native builds exist for the unit tests only: they have no wasi:http, so the
// request loop and what feeds it are not compiled there.
#![cfg_attr(
    not(target_arch = "wasm32"),
    allow(dead_code, unused_variables, unused_mut)
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use runner_sdk::serde_json::{Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability, parse_duration};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    concurrency: Option<u32>,
    duration: String,
    #[serde(default)]
    ramp_up: Option<String>,
    #[serde(default = "five_seconds")]
    timeout: String,
    #[serde(default = "max_in_flight")]
    max_in_flight: u32,
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default)]
    fail_on_thresholds: bool,
}

fn get() -> String {
    "GET".into()
}
fn five_seconds() -> String {
    "5s".into()
}
/// Each request in flight holds a connection and is one more pollable every
/// round of the request loop asks the host about: at 20,000/s, a bound of
/// 1,000 let a short stall snowball into ~970 connections and 50 ms latencies
/// (docs/performance.md); 256 keeps a stall a counted `overloaded`.
fn max_in_flight() -> u32 {
    256
}

#[cfg(target_arch = "wasm32")]
mod driver;

/// How one request ended.
enum Outcome {
    /// An answer with this status (4xx and 5xx count as errors).
    Status(u16),
    /// The host refused the request: the grant does not cover the URL.
    Denied(String),
    /// No complete answer in time.
    Timeout(String),
    /// Connection refused or reset, malformed answer, ...
    Error(String),
}

/// What the requests measured.
struct Stats {
    latency_us: Histogram<u64>,
    /// Counts by status code, and `timeout`, `error`, `denied`, `overloaded`.
    statuses: BTreeMap<String, u64>,
    /// Counts by status code below 1000 without a string per request.
    by_code: [u64; 1000],
    errors: u64,
    denied: Option<String>,
    /// The first transport or timeout error, to say what `error` counts.
    first_error: Option<String>,
}

impl Stats {
    /// Records a request that took `took_ns` nanoseconds.
    fn record(&mut self, took_ns: u64, outcome: &Outcome) {
        let _ = self
            .latency_us
            .record((took_ns / 1000).clamp(1, 3_600_000_000));
        let key = match outcome {
            Outcome::Status(status) => {
                if *status >= 400 {
                    self.errors += 1;
                }
                match self.by_code.get_mut(usize::from(*status)) {
                    Some(n) => *n += 1,
                    None => *self.statuses.entry(status.to_string()).or_insert(0) += 1,
                }
                return;
            }
            Outcome::Denied(m) => {
                self.denied.get_or_insert_with(|| m.clone());
                "denied"
            }
            Outcome::Timeout(m) => {
                self.first_error.get_or_insert_with(|| m.clone());
                "timeout"
            }
            Outcome::Error(m) => {
                self.first_error.get_or_insert_with(|| m.clone());
                "error"
            }
        };
        self.errors += 1;
        *self.statuses.entry(key.into()).or_insert(0) += 1;
    }

    /// An open-model request not sent because `limit` were in flight.
    fn record_overloaded(&mut self, limit: u32) {
        self.first_error.get_or_insert_with(|| {
            format!(
                "requests not sent: {limit} were already in flight (`max_in_flight`); raise it, or lower `rate`"
            )
        });
        self.errors += 1;
        *self.statuses.entry("overloaded".into()).or_insert(0) += 1;
        let _ = self.latency_us.record(1);
    }

    /// Counts by status, the codes folded in.
    fn status_counts(&self) -> BTreeMap<String, u64> {
        let mut all = self.statuses.clone();
        for (code, n) in self.by_code.iter().enumerate() {
            if *n > 0 {
                *all.entry(code.to_string()).or_insert(0) += n;
            }
        }
        all
    }
}

struct LoadTest;

impl Plugin for LoadTest {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "load-test",
            env!("CARGO_PKG_VERSION"),
            "HTTP load with latency percentiles and thresholds",
        )
        .input_schema(schema())
        .sinks(&[("url", "url")])
        .capabilities(&[capability::HTTP])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let dur = |name: &str, t: &str| {
            parse_duration(t).map_err(|e| StepError::invalid_input(format!("`{name}`: {e}")))
        };
        let duration = dur("duration", &input.duration)?;
        let ramp = input
            .ramp_up
            .as_deref()
            .map(|t| dur("ramp_up", t))
            .transpose()?
            .unwrap_or_default();
        let timeout = dur("timeout", &input.timeout)?;
        let thresholds: Vec<Threshold> = input
            .thresholds
            .iter()
            .map(|t| Threshold::parse(t).map_err(StepError::invalid_input))
            .collect::<Result<_, _>>()?;
        let model = match (input.rate, input.concurrency) {
            (Some(r), None) if r > 0.0 => Model::Open(r),
            (None, Some(c)) if c > 0 => Model::Closed(c),
            _ => {
                return Err(StepError::invalid_input(
                    "give either `rate` (requests per second, > 0) or `concurrency` (workers, > 0)",
                ));
            }
        };
        #[cfg(target_arch = "wasm32")]
        let target = {
            let headers: Vec<(String, String)> = input.headers.clone().into_iter().collect();
            driver::Target::new(
                &input.method,
                &input.url,
                &headers,
                input.body.as_deref(),
                timeout,
            )
            .map_err(StepError::invalid_input)?
        };
        let mut stats = Stats {
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| StepError::failed(format!("histogram: {e}")))?,
            statuses: BTreeMap::new(),
            by_code: [0; 1000],
            errors: 0,
            first_error: None,
            denied: None,
        };
        let started = Instant::now();
        #[cfg(target_arch = "wasm32")]
        driver::run(
            model,
            &target,
            duration,
            ramp,
            input.max_in_flight,
            &mut stats,
        );
        let elapsed = started.elapsed();
        let s = stats;
        if let Some(denied) = &s.denied {
            return Err(StepError::Denied(denied.clone()));
        }
        let requests = s.latency_us.len();
        if requests == 0 {
            return Err(StepError::failed(
                "no request was made (the duration is too short for the rate?)",
            ));
        }
        let h = &s.latency_us;
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let figures = Figures {
            rps: requests as f64 / elapsed.as_secs_f64(),
            error_rate: s.errors as f64 / requests as f64,
            min_ms: ms(h.min()),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        };
        let judged: Vec<Value> = thresholds
            .iter()
            .map(|t| {
                let value = t.metric.of(&figures, h);
                json!({ "threshold": t.text, "value": value, "pass": t.holds(value) })
            })
            .collect();
        let passed = judged.iter().all(|j| j["pass"] == true);
        let summary = format!(
            "{requests} requests, {:.1}/s, errors {:.2}%, p95 {} ms{}",
            figures.rps,
            figures.error_rate * 100.0,
            figures.p95_ms,
            if thresholds.is_empty() {
                String::new()
            } else if passed {
                "; thresholds passed".into()
            } else {
                "; thresholds FAILED".into()
            }
        );
        if input.fail_on_thresholds && !passed {
            let failed: Vec<String> = judged
                .iter()
                .filter(|j| j["pass"] == false)
                .map(|j| {
                    format!(
                        "{} (measured {})",
                        j["threshold"].as_str().unwrap_or(""),
                        j["value"]
                    )
                })
                .collect();
            return Err(StepError::failed(format!(
                "thresholds failed: {}; {summary}",
                failed.join(", ")
            )));
        }
        Ok(Output::new()
            .set("requests", requests)
            .set("rps", (figures.rps * 10.0).round() / 10.0)
            .set("errors", s.errors)
            .set("error_rate", figures.error_rate)
            .set("status_counts", s.status_counts())
            .set("first_error", &s.first_error)
            .set("min_ms", figures.min_ms)
            .set("mean_ms", figures.mean_ms)
            .set("p50_ms", figures.p50_ms)
            .set("p90_ms", figures.p90_ms)
            .set("p95_ms", figures.p95_ms)
            .set("p99_ms", figures.p99_ms)
            .set("max_ms", figures.max_ms)
            .set("thresholds", judged)
            .set("passed", passed)
            .summary(summary))
    }
}

#[derive(Clone, Copy)]
enum Model {
    Open(f64),
    Closed(u32),
}

/// When the `i`-th request of an open model starts, after the start: the rate
/// rises linearly over `ramp`, then stays at `rate`.
fn schedule(i: u64, rate: f64, ramp: Duration) -> Duration {
    let i = i as f64;
    let t = ramp.as_secs_f64();
    let ramp_requests = rate * t / 2.0;
    let secs = if t > 0.0 && i < ramp_requests {
        (2.0 * t * i / rate).sqrt()
    } else if t > 0.0 {
        t + (i - ramp_requests) / rate
    } else {
        i / rate
    };
    Duration::from_secs_f64(secs)
}

struct Figures {
    rps: f64,
    error_rate: f64,
    min_ms: f64,
    mean_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, PartialEq)]
enum Metric {
    Percentile(f64),
    Avg,
    Min,
    Max,
    Med,
    Rate,
    Rps,
}

impl Metric {
    fn of(&self, f: &Figures, h: &Histogram<u64>) -> f64 {
        match self {
            Metric::Percentile(p) => h.value_at_quantile(p / 100.0) as f64 / 1000.0,
            Metric::Avg => f.mean_ms,
            Metric::Min => f.min_ms,
            Metric::Max => f.max_ms,
            Metric::Med => f.p50_ms,
            Metric::Rate => f.error_rate,
            Metric::Rps => f.rps,
        }
    }
}

#[derive(Debug, PartialEq)]
struct Threshold {
    text: String,
    metric: Metric,
    op: &'static str,
    value: f64,
}

impl Threshold {
    /// `p(95)<500`, `avg<=200`, `rate<0.01`, `rps>100`.
    fn parse(text: &str) -> Result<Threshold, String> {
        let bad = |why: &str| {
            format!(
                "threshold `{text}`: {why} (write e.g. `p(95)<500`, `avg<200`, `rate<0.01`, `rps>100`)"
            )
        };
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let ops = ["<=", ">=", "==", "<", ">"];
        let (at, op) = ops
            .iter()
            .filter_map(|op| t.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| bad("no comparison"))?;
        let (left, right) = (&t[..at], &t[at + op.len()..]);
        let value: f64 = right
            .parse()
            .map_err(|_| bad("the right side is not a number"))?;
        let metric = match left {
            "avg" => Metric::Avg,
            "min" => Metric::Min,
            "max" => Metric::Max,
            "med" => Metric::Med,
            "rate" => Metric::Rate,
            "rps" => Metric::Rps,
            p if p.starts_with("p(") && p.ends_with(')') => {
                let n: f64 = p[2..p.len() - 1]
                    .parse()
                    .map_err(|_| bad("p(N) needs a number"))?;
                if !(0.0..=100.0).contains(&n) {
                    return Err(bad("p(N) needs 0 ≤ N ≤ 100"));
                }
                Metric::Percentile(n)
            }
            _ => {
                return Err(bad(
                    "unknown metric; metrics: p(N), avg, min, max, med (ms), rate (errors), rps",
                ));
            }
        };
        Ok(Threshold {
            text: text.to_owned(),
            metric,
            op,
            value,
        })
    }

    fn holds(&self, v: f64) -> bool {
        match self.op {
            "<" => v < self.value,
            "<=" => v <= self.value,
            ">" => v > self.value,
            ">=" => v >= self.value,
            _ => v == self.value,
        }
    }
}

/// The grammar `Threshold::parse` reads, as the input schema's `pattern`, so
/// that `runner validate` refuses `p(101)<5` before a run starts: a metric
/// (`p(N)` with 0 ≤ N ≤ 100, `avg`, `min`, `max`, `med`, `rate`, `rps`), a
/// comparison and a number, blanks allowed between them.
const THRESHOLD: &str = r"^\s*(p\(\s*(100(\.0*)?|[0-9]{1,2}(\.[0-9]*)?)\s*\)|avg|min|max|med|rate|rps)\s*(<=|>=|==|<|>)\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$";

fn schema() -> Value {
    let duration = |what: &str| json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$", "description": what });
    json!({
        "type": "object",
        "properties": {
            "url": { "type": "string", "minLength": 1, "description": "The URL; granted under `http`." },
            "method": { "type": "string", "description": "HTTP method (default GET)." },
            "headers": { "type": "object", "additionalProperties": { "type": "string" } },
            "body": { "type": "string" },
            "rate": { "type": "number", "exclusiveMinimum": 0, "description": "Open model: requests per second (latency from the scheduled start)." },
            "concurrency": { "type": "integer", "minimum": 1, "description": "Closed model: workers, each sending when its last request is answered." },
            "duration": duration("How long to send, e.g. `30s`."),
            "ramp_up": duration("Raise the rate linearly (open) or start workers one by one (closed) over this long."),
            "timeout": duration("Per request (default 5s); a timeout is an error."),
            "max_in_flight": { "type": "integer", "minimum": 1, "description": "Open model: most requests in flight at once (default 256); a request due past it is not sent and counts as an error (`overloaded`)." },
            "thresholds": { "type": "array", "items": { "type": "string", "pattern": THRESHOLD }, "description": "k6-style: `p(95)<500`, `avg<200`, `max<=2000` (ms), `rate<0.01` (error rate), `rps>100`; p(N) with 0 ≤ N ≤ 100." },
            "fail_on_thresholds": { "type": "boolean", "description": "Fail the step when a threshold fails (default: report `passed` for a gate)." }
        },
        "required": ["url", "duration"],
        "additionalProperties": false
    })
}

runner_sdk::export_plugin!(LoadTest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_reads_what_the_schema_pattern_describes() {
        // runner/src/playbook/schema.rs tests the same lists against THRESHOLD.
        for ok in [
            "p(95)<500",
            "p(99.9) <= 2000",
            "p(100)<1",
            "p(0)>=0",
            "avg<200",
            "rate <= 0.01",
            "rps>100",
            "max==1e3",
            "med<.5",
        ] {
            assert!(Threshold::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "p(101)<5",
            "p(95)<abc",
            "avg",
            "p95<500",
            "p(95)=<5",
            "mean<3",
            "rate<0.01ms",
        ] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_parse_like_k6() {
        let t = Threshold::parse("p(95)<500").unwrap();
        assert_eq!(
            (t.metric, t.op, t.value),
            (Metric::Percentile(95.0), "<", 500.0)
        );
        let t = Threshold::parse("rate <= 0.01").unwrap();
        assert_eq!((t.metric, t.op), (Metric::Rate, "<="));
        assert!(Threshold::parse("p(95)<abc").is_err());
        assert!(Threshold::parse("foo<1").is_err());
        assert!(Threshold::parse("avg").is_err());
        assert!(Threshold::parse("rps>=100").unwrap().holds(100.0));
    }

    #[test]
    fn the_open_schedule_ramps_then_holds_the_rate() {
        let r = 100.0;
        assert_eq!(schedule(0, r, Duration::ZERO), Duration::ZERO);
        assert_eq!(schedule(100, r, Duration::ZERO), Duration::from_secs(1));
        // Over a 2 s ramp, 100 requests start (half of 200), the last at ~2 s.
        let at = schedule(100, r, Duration::from_secs(2));
        assert!((at.as_secs_f64() - 2.0).abs() < 1e-9, "{at:?}");
        assert!((schedule(200, r, Duration::from_secs(2)).as_secs_f64() - 3.0).abs() < 1e-9);
        assert!(
            schedule(25, r, Duration::from_secs(2)).as_secs_f64() > 0.25,
            "slower at first"
        );
    }
}
