//! The `http-check` plugin end to end: the real runner binary checks a real HTTP
//! server that this test starts on loopback.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

mod common;

/// A loopback server: `/health` (JSON), `/slow` (300 ms), `/hang` (3 s),
/// `/text`, `/flaky` (statuses from a script), anything else 404.
struct Server {
    port: u16,
    server: Arc<tiny_http::Server>,
    /// The client address of every request: one per TCP connection.
    peers: Arc<Mutex<std::collections::HashSet<std::net::SocketAddr>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(flaky: &[u16]) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let script = Arc::new(Mutex::new(flaky.iter().copied().collect::<VecDeque<u16>>()));
        let s = server.clone();
        let peers = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let seen = peers.clone();
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                if let Some(peer) = request.remote_addr() {
                    seen.lock().unwrap().insert(*peer);
                }
                let script = script.clone();
                // One thread per request, so a hanging one does not block the rest.
                std::thread::spawn(move || {
                    let (status, body, delay) = match request.url() {
                        "/health" => (
                            200,
                            r#"{"status":"ok","checks":{"db":{"up":true,"latency_ms":3.5}},"version":"1.2.4","regions":["eu","us"]}"#.to_owned(),
                            0,
                        ),
                        "/slow" => (200, r#"{"status":"ok"}"#.to_owned(), 300),
                        "/hang" => (200, "late".to_owned(), 3000),
                        "/text" => (200, "all good, build 1.2.4".to_owned(), 0),
                        "/flaky" => {
                            let next = script.lock().unwrap().pop_front().unwrap_or(200);
                            (next, format!("{{\"status\":{next}}}"), 0)
                        }
                        _ => (404, "no such page".to_owned(), 0),
                    };
                    std::thread::sleep(Duration::from_millis(delay));
                    let _ = request
                        .respond(tiny_http::Response::from_string(body).with_status_code(status));
                });
            }
        });
        Server {
            port,
            server,
            peers,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one `http-check` step with `with` (YAML flow mapping) and `grant`;
/// returns the exit code and the step's `step_finished` event.
fn check(grant: &str, with: &str) -> (i32, Value) {
    let dir = common::scratch("http-check");
    let playbook = common::one_step(
        "http-check",
        &format!("{{ http: [\"{grant}\"] }}"),
        "health",
        with,
    );
    let (code, events) = common::exec(&dir, &playbook, &[]);
    let step = common::finished(&events, "health").clone();
    let _ = std::fs::remove_dir_all(&dir);
    (code, step)
}

fn grant(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn error(step: &Value) -> &str {
    step["error"].as_str().unwrap_or("")
}

#[test]
fn a_healthy_endpoint_passes_every_assertion() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/health", repeat: 3, interval: 10ms, max_latency: 2s, assert: [{{ path: "$.status", equals: ok }}, {{ path: "checks.db.up", equals: true }}, {{ path: "checks.db.latency_ms", max: 100 }}, {{ path: "regions", contains: eu }}, {{ path: "version", matches: "^1\\.2\\." }}, {{ path: "$.error", exists: false }}] }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let out = &step["outputs"];
    assert_eq!(
        (
            out["checks"].as_u64(),
            out["passed"].as_u64(),
            out["failed"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(out["status"], 200);
    assert_eq!(out["json"]["version"], "1.2.4");
    assert_eq!(out["results"].as_array().unwrap().len(), 3);
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .starts_with("3/3 checks of"),
        "{step}"
    );
}

#[test]
fn a_wrong_value_fails_with_the_path_and_both_values() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/health", assert: [{{ path: "$.status", equals: degraded }}] }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed");
    assert!(
        error(&step).ends_with("check failed: `$.status` is \"ok\", expected \"degraded\""),
        "{step}"
    );
}

#[test]
fn a_slow_answer_fails_the_latency_bound() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/slow", max_latency: 100ms }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert!(error(&step).contains("over the 100 ms bound"), "{step}");
}

#[test]
fn two_failures_in_a_row_fail_the_step_and_isolated_ones_do_not() {
    let s = Server::start(&[200, 500, 200, 503, 200]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/flaky", repeat: 5, interval: 10ms, consecutive_failure_limit: 1 }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["failed"], 2);
    let s = Server::start(&[200, 500, 503, 200, 200]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/flaky", repeat: 5, interval: 10ms, consecutive_failure_limit: 1 }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert!(
        error(&step).contains(
            "2 checks in a row failed (consecutive_failure_limit: 1); the last: status 503, expected 2xx"
        ),
        "{step}"
    );
}

#[test]
fn a_server_that_is_down_fails_the_check() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, step) = check(
        &grant(port),
        &format!(r#"{{ url: "http://127.0.0.1:{port}/health" }}"#),
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed");
    assert!(
        error(&step).contains("check failed: request failed"),
        "{step}"
    );
}

#[test]
fn a_hanging_server_times_out() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/hang", timeout: 300ms }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert!(error(&step).contains("timed out"), "{step}");
}

#[test]
fn a_body_that_is_not_json_cannot_pass_json_assertions() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/text", assert: [{{ path: status, equals: ok }}] }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert!(error(&step).contains("the body is not JSON"), "{step}");
    // A regular expression on the text works.
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/text", body_matches: "build [0-9.]+$" }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
}

#[test]
fn an_unexpected_status_names_what_was_expected() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/missing", expect_status: [200, 204] }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert!(
        error(&step).ends_with("check failed: status 404, expected [200, 204]"),
        "{step}"
    );
}

#[test]
fn a_url_that_is_not_granted_is_denied() {
    let s = Server::start(&[]);
    let other = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(r#"{{ url: "http://127.0.0.1:{}/health" }}"#, other.port),
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied");
    assert_eq!(
        error(&step),
        format!(
            "denied: `http://127.0.0.1:{}` is not granted to plugin `p`; add it to `plugins.p.grants.http` in the playbook",
            other.port
        )
    );
}

#[test]
fn repeated_checks_reuse_one_connection() {
    let s = Server::start(&[]);
    let (code, step) = check(
        &grant(s.port),
        &format!(
            "{{ url: \"http://127.0.0.1:{}/health\", repeat: 5, interval: 10ms }}",
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(
        s.peers.lock().unwrap().len(),
        1,
        "five checks, one keep-alive connection"
    );
}

/// The attack on the shipped playbooks: a health path that turns the base URL
/// into user information (`http://127.0.0.1:A` + `@127.0.0.1:B/health`). Both
/// origins are granted here, so only the plugin stands in the way: it refuses the
/// URL before any request, and neither server sees one.
#[test]
fn a_path_or_user_information_cannot_send_the_check_to_another_host() {
    let s = Server::start(&[]);
    let other = Server::start(&[]);
    let grants = format!(
        "{{ http: [\"{}\", \"{}\"] }}",
        grant(s.port),
        grant(other.port)
    );
    let run = |with: String| {
        let dir = common::scratch("http-check");
        let playbook = common::one_step("http-check", &grants, "health", &with);
        let (code, events) = common::exec(&dir, &playbook, &[]);
        let step = common::finished(&events, "health").clone();
        let _ = std::fs::remove_dir_all(&dir);
        (code, step)
    };
    for with in [
        format!(
            r#"{{ url: "http://127.0.0.1:{}", path: "@127.0.0.1:{}/health" }}"#,
            s.port, other.port
        ),
        format!(
            r#"{{ url: "http://127.0.0.1:{}", path: "//127.0.0.1:{}/health" }}"#,
            s.port, other.port
        ),
        // What the old playbooks' `${{ url }}${{ path }}` produced.
        format!(
            r#"{{ url: "http://127.0.0.1:{}@127.0.0.1:{}/health" }}"#,
            s.port, other.port
        ),
        format!(
            r#"{{ url: "http://oncall:secret@127.0.0.1:{}/health" }}"#,
            s.port
        ),
    ] {
        let (code, step) = run(with.clone());
        assert_eq!(code, 1, "{with}: {step}");
        assert_eq!(step["error_kind"], "invalid-input", "{with}: {step}");
    }
    assert_eq!(other.peers.lock().unwrap().len(), 0, "no request reached B");
    assert_eq!(s.peers.lock().unwrap().len(), 0, "nor A");

    // Control: a plain path joined to the same base is checked.
    let (code, step) = run(format!(
        r#"{{ url: "http://127.0.0.1:{}/", path: "/health" }}"#,
        s.port
    ));
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["status"], 200);
    assert_eq!(s.peers.lock().unwrap().len(), 1);
}

/// A 500 from the service is a failed check: with `fail_step: false` a watch
/// sees `ok: false` and counts a failed measurement, so its
/// `consecutive_failure_limit` fails it on the second 500 in a row (as plugin
/// errors, two would be tolerated under the default `consecutive_error_limit`).
#[test]
fn a_500_is_a_failed_measurement_of_a_watch() {
    let s = Server::start(&[200, 500, 500, 200, 200, 200]);
    let dir = common::scratch("http-check");
    let playbook = format!(
        "version: 1\nname: watch\nplugins:\n  p: {{ uses: http-check, grants: {{ http: [\"{}\"] }} }}\nstages:\n  - id: s\n    steps:\n      - id: health\n        uses: p\n        with: {{ url: \"http://127.0.0.1:{}\", path: /flaky, fail_step: false }}\n        watch: {{ interval: 10ms, count: 6, success: result.ok, failure: \"!result.ok\", failure_limit: 3, consecutive_failure_limit: 1 }}\n",
        grant(s.port),
        s.port
    );
    let (code, events) = common::exec(&dir, &playbook, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    let verdicts: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "measurement")
        .map(|e| e["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(verdicts, ["success", "failure", "failure"], "{events:#?}");
    assert_eq!(code, 1);
    let step = common::finished(&events, "health");
    assert_eq!(step["error_kind"], "watch", "{step}");
    assert!(
        error(step).contains("2 failed measurements in a row (consecutive_failure_limit: 1)"),
        "{step}"
    );
}
