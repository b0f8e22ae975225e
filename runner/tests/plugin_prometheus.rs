//! The `prometheus` plugin end to end, against a real Prometheus (Debian's
//! `prometheus` package; `.ci/run` installs it) that scrapes a small service with
//! known counters, all on loopback, started and stopped by this test.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const METRICS: &str = "# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 990
http_requests_total{code=\"500\"} 10
# TYPE request_latency_seconds gauge
request_latency_seconds 0.25
# TYPE app_requests_total counter
app_requests_total{namespace=\"production\",track=\"stable\",code=\"200\"} 940
app_requests_total{namespace=\"production\",track=\"stable\",code=\"500\"} 10
app_requests_total{namespace=\"production\",track=\"canary\",code=\"200\"} 40
app_requests_total{namespace=\"production\",track=\"canary\",code=\"500\"} 10
app_requests_total{namespace=\"we\\\"ird\\\\ns\",track=\"stable\",code=\"200\"} 7
";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on loopback: the body, or `None` if nobody answers.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

struct Stack {
    dir: PathBuf,
    prometheus: Child,
    port: u16,
    app: std::sync::Arc<tiny_http::Server>,
}

impl Stack {
    fn start() -> Stack {
        let dir = common::scratch("prometheus");
        let app = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let app_port = app.server_addr().to_ip().unwrap().port();
        let a = app.clone();
        std::thread::spawn(move || {
            for request in a.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_string(METRICS));
            }
        });
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let prometheus = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run `prometheus` (Debian: apt-get install prometheus; .ci/run installs it)");
        let stack = Stack {
            dir,
            prometheus,
            port,
            app,
        };
        // Wait until the service has been scraped twice (a minute is a hang guard).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = get(port, "/api/v1/query?query=count_over_time(up%5B1m%5D)")
                .and_then(|b| serde_json::from_str::<Value>(&b).ok());
            let scrapes = answer
                .as_ref()
                .and_then(|a| a["data"]["result"][0]["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if scrapes >= 2.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never scraped the service: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        stack
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.prometheus.kill();
        let _ = self.prometheus.wait();
        self.app.unblock();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a playbook whose `steps` are given; the exit code and the events.
fn run(dir: &Path, grant: u16, steps: &str) -> (i32, Vec<Value>) {
    let playbook = format!(
        "version: 1\nname: metrics\nplugins:\n  prom: {{ uses: prometheus, grants: {{ http: [\"http://127.0.0.1:{grant}\"] }} }}\nstages:\n  - id: s\n    steps:\n{steps}"
    );
    common::exec(dir, &playbook, &[])
}

fn step<'e>(events: &'e [Value], id: &str) -> &'e Value {
    common::finished(events, id)
}

fn one(stack: &Stack, with: &str) -> (i32, Value) {
    let (code, ev) = run(
        &stack.dir,
        stack.port,
        &format!("      - {{ id: q, uses: prom, with: {with} }}\n"),
    );
    (code, step(&ev, "q").clone())
}

#[test]
fn queries_against_a_real_prometheus() {
    let stack = Stack::start();
    let url = format!("http://127.0.0.1:{}", stack.port);

    // The seeds' error rate, for a gate: 10 errors out of 1,000 requests.
    let (code, ev) = run(
        &stack.dir,
        stack.port,
        &format!(
            "      - {{ id: rate, uses: prom, with: {{ url: \"{url}\", query: 'sum(http_requests_total{{code=\"500\"}}) / sum(http_requests_total)' }} }}\n      - id: healthy\n        gate: {{ pass: \"${{{{ steps.rate.outputs.value <= 0.005 }}}}\" }}\n"
        ),
    );
    let rate = step(&ev, "rate");
    assert_eq!(rate["outputs"]["value"], 0.01, "{rate}");
    assert_eq!(rate["outputs"]["result_type"], "vector");
    assert_eq!(code, 1, "the gate fails on a 1 % error rate");
    let gate = ev.iter().find(|e| e["event"] == "gate").unwrap();
    assert_eq!(gate["outcome"], "fail");

    // A vector by label.
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'sort(http_requests_total)' }}"),
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["outputs"]["count"], 2);
    assert_eq!(s["outputs"]["values"][0]["metric"]["code"], "500");
    assert_eq!(s["outputs"]["values"][0]["value"], 10.0);
    assert_eq!(s["outputs"]["values"][1]["value"], 990.0);
    assert_eq!(
        s["outputs"]["value"],
        Value::Null,
        "two series: no single value"
    );

    // A scalar.
    let (_, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'scalar(request_latency_seconds) * 1000' }}"),
    );
    assert_eq!(s["outputs"]["result_type"], "scalar");
    assert_eq!(s["outputs"]["value"], 250.0);

    // NaN and infinities (PromQL's 0/0 and 1/0) stay numbers: a gate compares
    // +Inf as above everything and fails on NaN, naming it, instead of
    // meeting a `null` it cannot compare.
    let (code, ev) = run(
        &stack.dir,
        stack.port,
        &format!(
            "      - {{ id: inf, uses: prom, with: {{ url: \"{url}\", query: '1/0' }} }}\n      - {{ id: above, gate: {{ pass: 'steps.inf.outputs.value > 1000' }} }}\n      - {{ id: nan, uses: prom, with: {{ url: \"{url}\", query: '0/0' }} }}\n      - {{ id: low, gate: {{ pass: 'steps.nan.outputs.value <= 0.005' }} }}\n"
        ),
    );
    assert_eq!(code, 1);
    let inf = step(&ev, "inf");
    assert_eq!(
        inf["outputs"]["value"],
        serde_json::json!({ "$nonfinite": "+Inf" }),
        "{inf}"
    );
    assert_eq!(inf["outputs"]["not_numbers"], 1);
    assert_eq!(inf["summary"], "1/0 = +Inf");
    let above = step(&ev, "above");
    assert_eq!(above["status"], "succeeded", "{above}");
    let nan = step(&ev, "nan");
    assert_eq!(
        nan["outputs"]["value"],
        serde_json::json!({ "$nonfinite": "NaN" }),
        "{nan}"
    );
    let low = step(&ev, "low");
    assert_eq!(low["status"], "failed");
    assert!(
        low["error"]
            .as_str()
            .unwrap()
            .contains("compares NaN, which is neither more nor less than any number (`steps.nan.outputs.value` is NaN)"),
        "{low}"
    );

    // A range: every point of the gauge is 0.25.
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: request_latency_seconds, range: 30s, step: 1s }}"),
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["outputs"]["result_type"], "matrix");
    assert!(
        s["outputs"]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len()
            >= 2,
        "{s}"
    );
    assert_eq!(
        (s["outputs"]["min"].as_f64(), s["outputs"]["max"].as_f64()),
        (Some(0.25), Some(0.25))
    );
    assert_eq!(s["outputs"]["value"], 0.25);

    // No series: an error by default, 0 when asked.
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'http_requests_total{{code=\"502\"}}' }}"),
    );
    assert_eq!(code, 1);
    assert!(
        s["error"].as_str().unwrap().contains("returned no series"),
        "{s}"
    );
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'http_requests_total{{code=\"502\"}}', empty: zero }}"),
    );
    assert_eq!(code, 0);
    assert_eq!(s["outputs"]["value"], 0.0);

    // Bad PromQL: Prometheus's own message.
    let (code, s) = one(&stack, &format!("{{ url: \"{url}\", query: 'sum(' }}"));
    assert_eq!(code, 1);
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("Prometheus refused the query `sum(`"),
        "{s}"
    );

    // Not granted: denied, naming the grant.
    let other = free_port();
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"http://127.0.0.1:{other}\", query: up }}"),
    );
    assert_eq!(code, 1);
    assert_eq!(s["error_kind"], "denied");

    // Prometheus down: a failure that may pass later (retryable).
    let port = stack.port;
    let dir = stack.dir.clone();
    drop(stack);
    std::fs::create_dir_all(&dir).unwrap();
    let (code, ev) = run(
        &dir,
        port,
        &format!(
            "      - {{ id: q, uses: prom, with: {{ url: \"{url}\", query: up, timeout: 2s }} }}\n"
        ),
    );
    assert_eq!(code, 1);
    let s = step(&ev, "q");
    assert_eq!(s["error_kind"], "retryable", "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rollback-confirmation attack: a namespace input that closes its string and
/// adds matchers of its own. Through `labels:` it stays one label value, so it
/// matches no series, and a value that really holds `"` and `\\` matches exactly
/// the series that carries it.
#[test]
fn a_label_value_cannot_add_matchers_to_the_query() {
    let stack = Stack::start();
    let url = format!("http://127.0.0.1:{}", stack.port);
    let query = r#"sum(app_requests_total{namespace=$namespace,code=~"5.."}) / sum(app_requests_total{namespace=$namespace})"#;
    let with = |namespace: &str| {
        format!(
            "{{ url: \"{url}\", query: '{query}', labels: {{ namespace: {} }} }}",
            serde_json::to_string(namespace).unwrap()
        )
    };

    // The honest value: 20 errors in 1,000 requests.
    let (code, s) = one(&stack, &with("production"));
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["outputs"]["value"], 0.02, "{s}");

    // Pasted into the query text, this value would measure the stable track only
    // (10 in 950); as a label it is one string that no series carries.
    for hostile in [
        r#"production",track!="canary"#,
        r#"production\",track!=\"canary"#,
        "production\"}) or vector(0) or sum(x{a=\"",
    ] {
        let (code, s) = one(&stack, &with(hostile));
        assert_eq!(code, 1, "{hostile}: {s}");
        let error = s["error"].as_str().unwrap();
        assert!(error.contains("returned no series"), "{hostile}: {error}");
        assert_eq!(s["outputs"]["value"], Value::Null, "{s}");
    }

    // Escaping is exact: a namespace that really holds a quote and a backslash.
    let (code, s) = one(
        &stack,
        &format!(
            "{{ url: \"{url}\", query: 'sum(app_requests_total{{namespace=$ns}})', labels: {{ ns: {} }} }}",
            serde_json::to_string(r#"we"ird\ns"#).unwrap()
        ),
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["outputs"]["value"], 7.0, "{s}");

    // A placeholder without a value, and a label the query does not use (quoted
    // by mistake), are refused before Prometheus is asked.
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'up{{job=$jobb}}', labels: {{ job: app }} }}"),
    );
    assert_eq!(
        (code, s["error_kind"].as_str()),
        (1, Some("invalid-input")),
        "{s}"
    );
    let (code, s) = one(
        &stack,
        &format!("{{ url: \"{url}\", query: 'up{{job=\"$job\"}}', labels: {{ job: app }} }}"),
    );
    assert_eq!(
        (code, s["error_kind"].as_str()),
        (1, Some("invalid-input")),
        "{s}"
    );
}

#[test]
fn a_prometheus_that_never_answers_times_out() {
    let dir = common::scratch("prom-hang");
    let hung = common::Silent::start();
    let (code, ev) = run(
        &dir,
        hung.port,
        &format!(
            "      - {{ id: q, uses: prom, with: {{ url: \"http://127.0.0.1:{}\", query: up, timeout: 300ms }} }}\n",
            hung.port
        ),
    );
    assert_eq!(code, 1);
    let s = step(&ev, "q");
    // A timeout may pass later: retryable, saying what happened.
    assert_eq!(s["error_kind"], "retryable", "{s}");
    assert!(s["error"].as_str().unwrap().contains("timed out"), "{s}");
    assert_eq!(hung.connections(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server on loopback that answers every request with `status` and `body`, as
/// a proxy in front of Prometheus, or Prometheus itself, does when it is
/// restarting, overloaded or out of time for a query.
fn answering(status: u16, body: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let thread = std::thread::spawn(move || {
        // One request per measurement in these tests; stop after a few.
        for _ in 0..3 {
            let Ok(Some(request)) = server.recv_timeout(Duration::from_secs(30)) else {
                return;
            };
            let header =
                tiny_http::Header::from_bytes(&b"content-type"[..], &b"application/json"[..])
                    .unwrap();
            let _ = request.respond(
                tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header),
            );
        }
    });
    (port, thread)
}

/// Gateway errors and a query that timed out in Prometheus may pass in a moment:
/// `retryable`, so `retry:` applies; a refused query is `failed`; warnings reach
/// the step's log.
#[test]
fn transient_answers_are_retryable_and_warnings_are_logged() {
    let dir = common::scratch("prom-transient");
    let cases: [(u16, &'static str, &str, &str); 4] = [
        (503, "upstream connect error", "retryable", "answered 503"),
        (502, "<html>bad gateway</html>", "retryable", "answered 502"),
        (
            503,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
            "retryable",
            "query timed out in expression evaluation (timeout, HTTP 503)",
        ),
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            "failed",
            "parse error (bad_data, HTTP 400)",
        ),
    ];
    for (status, body, kind, says) in cases {
        let (port, server) = answering(status, body);
        let (code, ev) = run(
            &dir,
            port,
            &format!(
                "      - {{ id: q, uses: prom, with: {{ url: \"http://127.0.0.1:{port}\", query: up }} }}\n"
            ),
        );
        assert_eq!(code, 1);
        let s = step(&ev, "q");
        assert_eq!(s["error_kind"], kind, "{status} {body}: {s}");
        assert!(s["error"].as_str().unwrap().contains(says), "{s}");
        drop(server);
    }
    let (port, _server) = answering(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"0.5"]},"warnings":["results truncated due to limit"]}"#,
    );
    let (code, ev) = run(
        &dir,
        port,
        &format!(
            "      - {{ id: q, uses: prom, with: {{ url: \"http://127.0.0.1:{port}\", query: up }} }}\n"
        ),
    );
    assert_eq!(code, 0);
    let s = step(&ev, "q");
    assert_eq!(s["outputs"]["value"], 0.5, "{s}");
    let log = s["log"].to_string();
    assert!(
        log.contains("Prometheus warns: results truncated due to limit"),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
