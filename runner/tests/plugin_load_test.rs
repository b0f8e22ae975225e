//! The `load-test` plugin end to end, against a real HTTP server on loopback.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

mod common;

/// `/ok` answers 200, `/fail` 500, `/slow` 200 after 200 ms, `/big` 200 with a
/// 1 MiB body; one thread per request.
struct Server {
    port: u16,
    server: Arc<tiny_http::Server>,
    /// The client address of every request: one per TCP connection.
    peers: Arc<std::sync::Mutex<std::collections::HashSet<std::net::SocketAddr>>>,
    /// Method, `x-test` header and body of every request.
    seen: Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

impl Server {
    fn start() -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let s = server.clone();
        let peers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (peers2, seen2) = (peers.clone(), seen.clone());
        std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                if let Some(peer) = request.remote_addr() {
                    peers2.lock().unwrap().insert(*peer);
                }
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let header = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("x-test"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                seen2
                    .lock()
                    .unwrap()
                    .push((request.method().to_string(), header, body));
                std::thread::spawn(move || {
                    let (status, body) = match request.url() {
                        "/fail" => (500, "ok".to_owned()),
                        "/slow" => {
                            std::thread::sleep(Duration::from_millis(200));
                            (200, "ok".to_owned())
                        }
                        "/big" => (200, "x".repeat(1 << 20)),
                        _ => (200, "ok".to_owned()),
                    };
                    let _ = request
                        .respond(tiny_http::Response::from_string(body).with_status_code(status));
                });
            }
        });
        Server {
            port,
            server,
            peers,
            seen,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn load(grant_port: u16, with: &str) -> (i32, Value) {
    let dir = common::scratch("load");
    let grants = format!("{{ http: [\"http://127.0.0.1:{grant_port}\"] }}");
    let (code, events) = common::exec(
        &dir,
        &common::one_step("load-test", &grants, "run", with),
        &[],
    );
    let step = common::finished(&events, "run").clone();
    let _ = std::fs::remove_dir_all(&dir);
    (code, step)
}

#[test]
fn the_open_model_sends_exactly_the_scheduled_requests() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/ok", rate: 50, duration: 1s, thresholds: ["p(95)<5000", "rate<0.01"] }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let o = &step["outputs"];
    assert_eq!(o["requests"], 50, "50/s for 1 s: {o}");
    assert_eq!(o["status_counts"]["200"], 50);
    assert_eq!(o["error_rate"], 0.0);
    assert_eq!(o["passed"], true);
    let (min, p95, max) = (
        o["min_ms"].as_f64().unwrap(),
        o["p95_ms"].as_f64().unwrap(),
        o["max_ms"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= p95 && p95 <= max, "{o}");
    assert_eq!(o["thresholds"].as_array().unwrap().len(), 2);
}

#[test]
fn the_closed_model_keeps_its_workers_busy() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/ok", concurrency: 4, duration: 1s }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let o = &step["outputs"];
    assert!(o["requests"].as_u64().unwrap() >= 4, "{o}");
    assert_eq!(o["errors"], 0, "{o}");
    // Keep-alive: each worker reuses its connection.
    let connections = s.peers.lock().unwrap().len();
    assert!(
        (1..=4).contains(&connections),
        "{connections} connections for 4 workers"
    );
}

#[test]
fn latency_is_measured_from_the_scheduled_start() {
    let s = Server::start();
    let (_, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/slow", rate: 10, duration: 1s, timeout: 3s }}"#,
            s.port
        ),
    );
    let o = &step["outputs"];
    assert!(
        o["min_ms"].as_f64().unwrap() >= 200.0,
        "no answer comes faster than the server: {o}"
    );
}

#[test]
fn errors_fail_the_thresholds_and_optionally_the_step() {
    let s = Server::start();
    let with = format!(
        r#"{{ url: "http://127.0.0.1:{}/fail", rate: 20, duration: 500ms, thresholds: ["rate<0.01"] }}"#,
        s.port
    );
    let (code, step) = load(s.port, &with);
    assert_eq!(code, 0, "the gate decides: {step}");
    assert_eq!(step["outputs"]["error_rate"], 1.0);
    assert_eq!(step["outputs"]["status_counts"]["500"], 10);
    assert_eq!(step["outputs"]["passed"], false);
    let with = format!(
        r#"{{ url: "http://127.0.0.1:{}/fail", rate: 20, duration: 500ms, thresholds: ["rate<0.01"], fail_on_thresholds: true }}"#,
        s.port
    );
    let (code, step) = load(s.port, &with);
    assert_eq!(code, 1);
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("thresholds failed: rate<0.01 (measured 1.0)"),
        "{step}"
    );
}

#[test]
fn a_server_that_is_down_is_all_errors_and_an_ungranted_url_is_denied() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, step) = load(
        port,
        &format!(r#"{{ url: "http://127.0.0.1:{port}/ok", rate: 10, duration: 300ms }}"#),
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["error_rate"], 1.0);
    assert_eq!(step["outputs"]["status_counts"]["error"], 3);
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(r#"{{ url: "http://127.0.0.1:{port}/ok", rate: 10, duration: 300ms }}"#),
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied", "{step}");
}

#[test]
fn a_request_past_its_timeout_is_counted_as_a_timeout() {
    let hung = common::Silent::start();
    let (code, step) = load(
        hung.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/", rate: 10, duration: 300ms, timeout: 50ms }}"#,
            hung.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let o = &step["outputs"];
    assert_eq!(o["status_counts"]["timeout"], 3, "{o}");
    assert_eq!(o["error_rate"], 1.0, "{o}");
    assert_eq!(o["first_error"], "no complete answer within 50 ms", "{o}");
    // Each timed-out request's connection was given up, not reused.
    assert_eq!(hung.connections(), 3);
}

#[test]
fn method_headers_and_body_are_sent_with_every_request() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/ok", method: POST, headers: {{ x-test: hello }}, body: '{{"a":1}}', rate: 20, duration: 250ms }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["status_counts"]["200"], 5, "{step}");
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    for request in seen.iter() {
        assert_eq!(
            request,
            &(
                "POST".to_owned(),
                "hello".to_owned(),
                r#"{"a":1}"#.to_owned()
            )
        );
    }
}

#[test]
fn large_bodies_are_read_to_the_end_and_connections_reused() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/big", concurrency: 2, duration: 500ms }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let o = &step["outputs"];
    assert_eq!(o["errors"], 0, "{o}");
    assert!(o["requests"].as_u64().unwrap() >= 2, "{o}");
    // A connection goes back to the pool only once its body was read whole.
    let connections = s.peers.lock().unwrap().len();
    assert!(
        (1..=2).contains(&connections),
        "{connections} connections for 2 workers"
    );
}

#[test]
fn a_malformed_url_or_header_is_refused_before_any_request() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        r#"{ url: "ftp://127.0.0.1/x", rate: 10, duration: 100ms }"#,
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "invalid-input", "{step}");
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("the scheme must be http or https"),
        "{step}"
    );
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/ok", headers: {{ "bad header": x }}, rate: 10, duration: 100ms }}"#,
            s.port
        ),
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "invalid-input", "{step}");
    assert!(
        step["error"].as_str().unwrap().contains("`headers`"),
        "{step}"
    );
    assert!(s.seen.lock().unwrap().is_empty(), "no request was sent");
}

#[test]
fn requests_past_max_in_flight_are_counted_not_sent() {
    let s = Server::start();
    let (code, step) = load(
        s.port,
        &format!(
            r#"{{ url: "http://127.0.0.1:{}/slow", rate: 20, duration: 500ms, max_in_flight: 2 }}"#,
            s.port
        ),
    );
    assert_eq!(code, 0, "{step}");
    let o = &step["outputs"];
    let (ok, overloaded) = (
        o["status_counts"]["200"].as_u64().unwrap_or(0),
        o["status_counts"]["overloaded"].as_u64().unwrap_or(0),
    );
    // 10 due, 50 ms apart; each answer takes 200 ms, so at most 2 wait at once.
    assert_eq!(ok + overloaded, 10, "{o}");
    assert!(overloaded >= 4 && ok >= 2, "{o}");
    assert_eq!(
        s.seen.lock().unwrap().len() as u64,
        ok,
        "overloaded ones are not sent"
    );
    assert!(
        o["first_error"]
            .as_str()
            .unwrap()
            .contains("2 were already in flight (`max_in_flight`)"),
        "{o}"
    );
}
