//! `runner serve` against the real binary on 127.0.0.1: runs started and
//! followed over HTTP, approvals with roles, cancel, reports, alert and
//! webhook deliveries, and hostile requests.

mod common;

use common::serve::{Reply, Server, add_token};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const QUICK: &str = r#"version: 1
name: quick
inputs:
  service: { type: string, pattern: "[a-z]+", default: shop }
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: one
        uses: echo
        with: { message: "hello ${{ inputs.service }}", outputs: { greeting: "hi ${{ inputs.service }}" } }
      - id: two
        uses: echo
        with: { message: "<script>alert(1)</script> \u001b[31m" }
"#;

const ASK: &str = r#"version: 1
name: ask
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: go
        approval: { prompt: "deploy?", approvers: [tech-lead], timeout: 2m, on_timeout: fail, prevent_self_approval: true }
      - id: after
        uses: echo
        with: { message: "approved" }
"#;

const SLOW: &str = r#"version: 1
name: slow
inputs:
  service: { type: string, default: shop }
  reason: { type: string, default: "" }
  started: { type: string, default: "" }
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: wait
        uses: echo
        timeout: 2m
        with: { message: "waiting", sleep_ms: 60000 }
handlers:
  on_failure:
    - id: undo
      uses: echo
      with: { message: "rolled back" }
"#;

/// A server of the QUICK, ASK and SLOW playbooks.
fn server(name: &str, extra_config: &str, env: &[(&str, &str)]) -> Server {
    Server::start_with(
        name,
        &[("quick", QUICK), ("ask", ASK), ("slow", SLOW)],
        extra_config,
        env,
    )
}

/// Reads a run's Server-Sent Events to the end: the `data:` of each `event`
/// and the status of `end`.
fn follow(server: &Server, id: &str) -> (Vec<Value>, String) {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    write!(
        s,
        "GET /api/v1/runs/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token("carol")
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let reply = Reply::parse(&out);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.headers.contains("text/event-stream"),
        "{}",
        reply.headers
    );
    let mut events = Vec::new();
    let mut end = String::new();
    let mut kind = String::new();
    for line in reply.body.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            if kind == "end" {
                end = v["status"].as_str().unwrap().to_owned();
            } else {
                events.push(v);
            }
        }
    }
    (events, end)
}

#[test]
fn a_run_started_through_the_api_is_followed_to_its_end_and_its_report_is_the_journals() {
    let server = server("follow", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "quick", "inputs": { "service": "cart" } })),
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        started.json()["url"],
        format!("http://runner.test/api/v1/runs/{id}")
    );
    let (events, end) = follow(&server, &id);
    assert_eq!(end, "succeeded");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as i64).collect::<Vec<_>>(),
        "every event once, in order"
    );

    // A stream resumed after event 2 gets what came after it only.
    let rest = server.call(
        "GET",
        &format!("/api/v1/runs/{id}/events?after=2"),
        Some("carol"),
        None,
    );
    assert_eq!(
        rest.json()["events"].as_array().unwrap().len(),
        seqs.len() - 3
    );

    let shown = server
        .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
        .json();
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["run"]["started_by"], "alice (api token)");
    let one = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "one")
        .unwrap();
    assert_eq!(one["outputs"]["greeting"], "hi cart");

    // The reports equal `runner runs show`'s, read from the same journal.
    let markdown = server.call(
        "GET",
        &format!("/api/v1/runs/{id}/report"),
        Some("carol"),
        None,
    );
    assert_eq!(markdown.status, 200);
    let cli = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["runs", "show", &id, "--output", "markdown"])
        .env("RUNNER_STATE_DIR", server.dir.join("state"))
        .env_remove("RUNNER_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(markdown.body, String::from_utf8_lossy(&cli.stdout));
    let json_report = server.call(
        "GET",
        &format!("/api/v1/runs/{id}/report?format=json"),
        Some("carol"),
        None,
    );
    assert_eq!(json_report.json()["status"], "succeeded");
    let junit = server.call(
        "GET",
        &format!("/api/v1/runs/{id}/report?format=junit"),
        Some("carol"),
        None,
    );
    assert!(junit.body.starts_with("<?xml"), "{}", junit.body);

    // Listed, in the history, in the figures and the metrics.
    let list = server.call(
        "GET",
        "/api/v1/runs?playbook=quick&status=succeeded&since=1h",
        Some("carol"),
        None,
    );
    assert_eq!(list.json()["runs"][0]["id"], id.as_str());
    let history = server.call("GET", "/api/v1/history?limit=10", Some("carol"), None);
    assert_eq!(history.json()["runs"][0]["id"], id.as_str());
    let stats = server.call("GET", "/api/v1/stats?period=30", Some("carol"), None);
    assert_eq!(stats.json()["playbooks"][0]["success_rate"], 1.0);
    let metrics = server.call("GET", "/metrics", None, None);
    assert!(
        metrics.body.contains("runner_runs{status=\"succeeded\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("runner_step_duration_seconds_count 2"),
        "{}",
        metrics.body
    );
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(server.call("GET", "/readyz", None, None).status, 200);
}

#[test]
fn inputs_are_checked_as_exec_checks_them_and_only_operators_start_runs() {
    let server = server("inputs", "", &[]);
    let bad = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "quick", "inputs": { "service": "NOT OK" } })),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.error().contains("service"), "{}", bad.body);
    let unknown = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "quick", "inputs": { "nope": "x" } })),
    );
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    let expression = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "quick", "inputs": { "service": "${{ 1 + 1 }}" } })),
    );
    assert_eq!(
        expression.status, 422,
        "an input is never code: {}",
        expression.body
    );
    let missing = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "../quick" })),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    let viewer = server.call(
        "POST",
        "/api/v1/runs",
        Some("carol"),
        Some(&json!({ "playbook": "quick" })),
    );
    assert_eq!(viewer.status, 403);
    assert!(viewer.error().contains("`operator`"), "{}", viewer.body);
    let nobody = server.call(
        "POST",
        "/api/v1/runs",
        None,
        Some(&json!({ "playbook": "quick" })),
    );
    assert_eq!(nobody.status, 401);
    assert!(
        nobody.headers.contains("www-authenticate"),
        "{}",
        nobody.headers
    );
    let forged = server.raw(
        "GET",
        "/api/v1/runs",
        Some("rnr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        &[],
        None,
    );
    assert_eq!(forged.status, 401);
    // Nothing was started by any of these.
    assert_eq!(
        server
            .call("GET", "/api/v1/runs", Some("carol"), None)
            .json()["runs"],
        json!([])
    );
    let catalog = server
        .call("GET", "/api/v1/playbooks", Some("carol"), None)
        .json();
    let names: Vec<&str> = catalog["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ask", "quick", "slow"]);
}

#[test]
fn approvals_take_the_right_role_refuse_the_wrong_one_and_the_starter() {
    let server = server("approve", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "ask" })),
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| !r["waiting_for"].as_array().unwrap().is_empty());
    let path = format!("/api/v1/runs/{id}/approvals/go");
    let approve = json!({ "decision": "approve", "comment": "looks fine" });

    // Bob sees it among his; Carol (viewer) does not.
    let bobs = server
        .call("GET", "/api/v1/approvals", Some("bob"), None)
        .json();
    assert_eq!(bobs["approvals"][0]["run"], id.as_str());
    let carols = server
        .call("GET", "/api/v1/approvals", Some("carol"), None)
        .json();
    assert_eq!(carols["approvals"], json!([]));

    let nobody = server.call("POST", &path, None, Some(&approve));
    assert_eq!(nobody.status, 401);
    let viewer = server.call("POST", &path, Some("carol"), Some(&approve));
    assert_eq!(viewer.status, 403);
    assert!(
        viewer.error().contains("`tech-lead`"),
        "the role needed is named: {}",
        viewer.body
    );
    let claimed = server.call(
        "POST",
        &path,
        Some("carol"),
        Some(&json!({ "decision": "approve", "role": "tech-lead" })),
    );
    assert_eq!(
        claimed.status, 403,
        "a role is held, not claimed: {}",
        claimed.body
    );
    let own = server.call("POST", &path, Some("alice"), Some(&approve));
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(
        own.error().contains("prevent_self_approval"),
        "{}",
        own.body
    );
    // Still waiting after all of that.
    let run = server
        .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
        .json();
    assert_eq!(run["run"]["status"], "running");
    assert_eq!(run["waiting_for"][0]["step"], "go");

    let ok = server.call("POST", &path, Some("bob"), Some(&approve));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["decision"]["by"], "bob");
    assert_eq!(ok.json()["decision"]["by_source"], "api token");
    assert_eq!(ok.json()["decision"]["role"], "tech-lead");
    let done = server.wait_for(&id, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "succeeded");
    let report = server
        .call(
            "GET",
            &format!("/api/v1/runs/{id}/report"),
            Some("carol"),
            None,
        )
        .body;
    assert!(
        report.contains("bob (api token)"),
        "the decision names its principal: {report}"
    );
    let late = server.call("POST", &path, Some("bob"), Some(&approve));
    assert_eq!(late.status, 404, "{}", late.body);
}

#[test]
fn cancel_stops_the_run_and_runs_its_rollback() {
    let server = server("cancel", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "slow" })),
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| r["in_flight"].get("wait").is_some());
    let viewer = server.call(
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        Some("carol"),
        None,
    );
    assert_eq!(viewer.status, 403);
    let cancel = server.call(
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        Some("dave"),
        None,
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    let done = server.wait_for(&id, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "interrupted");
    assert_eq!(done["run"]["rolled_back"], true);
    let undo = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "undo")
        .unwrap();
    assert_eq!(undo["status"], "succeeded");
    let again = server.call(
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        Some("dave"),
        None,
    );
    assert_eq!(again.status, 409);
}

const ALERTS: &str = "alertmanager:\n  routes:\n    - name: slow-alert\n      match: { alertname: Slow }\n      playbook: slow\n      inputs:\n        service: { label: service }\n        started: { alert: starts_at }\nwebhooks:\n  - name: deploys\n    secret_env: TEST_HOOK_KEY\n    playbook: slow\n    inputs:\n      service: { field: /service }\n    dedup: /id\n";

fn alert(status: &str) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"Slow\"}", "status": status, "receiver": "runner",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
        "alerts": [{
            "status": status, "labels": { "alertname": "Slow", "service": "cart" }, "annotations": {},
            "startsAt": "2026-12-06T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": "c0ffee"
        }]
    })
}

#[test]
fn the_same_alert_twice_starts_one_run_and_a_resolved_one_none() {
    let server = server("alerts", ALERTS, &[]);
    let path = "/api/v1/hooks/alertmanager";
    assert_eq!(
        server
            .call("POST", path, None, Some(&alert("firing")))
            .status,
        401
    );
    assert_eq!(
        server
            .call("POST", path, Some("carol"), Some(&alert("firing")))
            .status,
        403
    );
    let resolved = server.call("POST", path, Some("am"), Some(&alert("resolved")));
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.json()["alerts"][0]["outcome"], "resolved");
    assert_eq!(
        server
            .call("GET", "/api/v1/runs", Some("carol"), None)
            .json()["runs"],
        json!([])
    );

    let first = server.call("POST", path, Some("am"), Some(&alert("firing")));
    assert_eq!(
        first.json()["alerts"][0]["outcome"],
        "started",
        "{}",
        first.body
    );
    let id = first.json()["alerts"][0]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = server.call("POST", path, Some("am"), Some(&alert("firing")));
    assert_eq!(
        second.json()["alerts"][0]["outcome"],
        "duplicate",
        "{}",
        second.body
    );
    assert_eq!(second.json()["alerts"][0]["run"], id.as_str());
    let runs = server
        .call("GET", "/api/v1/runs", Some("carol"), None)
        .json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let run = server
        .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
        .json();
    assert_eq!(run["run"]["inputs"]["started"], "2026-12-06T05:00:00Z");
    assert_eq!(run["run"]["inputs"]["service"], "cart");
    assert_eq!(run["run"]["started_by"], "slow-alert (alert)");
    assert_eq!(run["trigger"]["body"]["alert"]["fingerprint"], "c0ffee");
    let log = std::fs::read_to_string(server.dir.join("state/hooks.jsonl")).unwrap();
    let outcomes: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(outcomes, ["resolved", "started", "duplicate"]);
}

#[test]
fn a_generic_webhook_needs_a_fresh_signature() {
    let server = server("webhook", ALERTS, &[("TEST_HOOK_KEY", "k3y")]);
    let path = "/api/v1/hooks/generic/deploys";
    let body = br#"{"id": "d-1", "service": "cart"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let good = runner::server::hooks::signature(b"k3y", &now, body);
    let send = |ts: &str, sig: &str| {
        server.raw(
            "POST",
            path,
            None,
            &[("X-Runner-Timestamp", ts), ("X-Runner-Signature", sig)],
            Some(body),
        )
    };
    let unsigned = server.raw("POST", path, None, &[], Some(body));
    assert_eq!(unsigned.status, 401);
    let wrong = runner::server::hooks::signature(b"other", &now, body);
    assert_eq!(send(&now, &wrong).status, 401);
    let old = (now.parse::<u64>().unwrap() - 600).to_string();
    let stale = runner::server::hooks::signature(b"k3y", &old, body);
    assert_eq!(
        send(&old, &stale).status,
        401,
        "a timestamp ten minutes old is refused"
    );
    let ok = send(&now, &good);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["outcome"], "started");
    let replay = send(&now, &good);
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert!(replay.error().contains("before"), "{}", replay.body);
    assert_eq!(
        server
            .call("GET", "/api/v1/runs", Some("carol"), None)
            .json()["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn hostile_requests_get_a_4xx_never_a_5xx() {
    let server = server("hostile", "limits:\n  max_body_bytes: 65536\n", &[]);
    let alice = Some(server.token("alice"));
    let huge = vec![b'['; 2 << 20];
    let r = server.raw("POST", "/api/v1/runs", alice, &[], Some(&huge));
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(!r.error().is_empty(), "{}", r.body);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = server.raw("POST", "/api/v1/runs", alice, &[], Some(deep.as_bytes()));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = server.raw(
        "POST",
        "/api/v1/runs",
        alice,
        &[],
        Some(br#"{"playbook": "quick", "extra": 1}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("unknown field"), "{}", r.body);
    let r = server.raw(
        "POST",
        "/api/v1/runs",
        alice,
        &[],
        Some(b"{\"playbook\": \"\xff\xfe\"}"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    for path in [
        "/api/v1/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/runs/../../etc/passwd",
        "/api/v1/runs/%00",
        "/api/v1/runs/%ff%fe",
        "/api/v1/runs/a/report?format=../../x",
        "/api/v1/runs?limit=-1",
        "/api/v1/runs?status=evil",
        "/api/v1/nothing",
    ] {
        let r = server.raw("GET", path, alice, &[], None);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.error().is_empty(),
            "{path}: every refusal is the API's JSON: {}",
            r.body
        );
    }
    let r = server.raw(
        "POST",
        "/api/v1/runs/x%2F..%2F/approvals/go",
        alice,
        &[],
        Some(br#"{"decision":"approve"}"#),
    );
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    let r = server.raw("DELETE", "/api/v1/runs", alice, &[], None);
    assert_eq!(r.status, 405);
    // Still serving.
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
}

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(runner::server::openapi_document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schema: Value = serde_json::from_str(include_str!("openapi/schema-3.1.json")).unwrap();
    let validator = jsonschema::draft202012::options().build(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "not a valid OpenAPI 3.1 document: {problems:#?}"
    );
    // The schema is not a formality: a document without `info` is refused.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&broken));
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = runner::server::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Every route answers something other than "no such route" on the real server.
    let server = server("routes", ALERTS, &[("TEST_HOOK_KEY", "k")]);
    for (method, path) in runner::server::ROUTES {
        let path = path
            .replace("{id}", "1-2-abcdef")
            .replace("{step}", "go")
            .replace("{name}", "deploys");
        let r = server.raw(
            &method.to_uppercase(),
            &path,
            Some(server.token("carol")),
            &[],
            Some(b"{}"),
        );
        assert_ne!(r.status, 405, "{method} {path}");
        if r.status == 404 {
            assert!(
                !r.error().contains("no such resource"),
                "{method} {path}: {}",
                r.body
            );
        }
        assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.body);
    }
}

#[test]
fn the_example_configuration_serves_the_shipped_playbooks() {
    let dir = common::scratch("serve-example");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::copy(
        root.join("examples/serve.yaml"),
        dir.join("examples/serve.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("playbooks"), dir.join("playbooks")).unwrap();
    std::os::unix::fs::symlink(root.join("environments"), dir.join("environments")).unwrap();
    let token = add_token(
        &dir.join("examples/serve-tokens.yaml"),
        "alice",
        &["operator"],
    );
    let tokens = std::collections::HashMap::from([("alice".to_owned(), token)]);
    let server = Server::spawn(dir.clone(), &dir.join("examples/serve.yaml"), tokens, &[]);
    let catalog = server
        .call("GET", "/api/v1/playbooks", Some("alice"), None)
        .json();
    let names: Vec<&str> = catalog["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["canary", "hotfix", "postmortem", "rollback"]);
    assert!(
        catalog["playbooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["invalid"].is_null()),
        "{catalog}"
    );
    assert_eq!(
        catalog["environments"],
        json!(["production.example", "sandbox"])
    );
}

fn slack_form(user: &str, action: &str, run: &str, step: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "username": "x", "team_id": "T1" },
        "actions": [{ "action_id": action, "block_id": "b", "type": "button",
                      "value": json!({ "run": run, "step": step }).to_string() }],
        "response_url": "http://127.0.0.1:9/never",
    });
    url_encode(&[("payload", &payload.to_string())])
}

fn url_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn slack_signature(secret: &str, ts: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("v0:{ts}:{body}").as_bytes());
    format!(
        "v0={}",
        tag.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[test]
fn a_signed_slack_button_approves_as_the_mapped_principal_and_nothing_else_does() {
    let server = server(
        "slack",
        "slack:\n  signing_secret_env: TEST_SLACK_SECRET\n  users: { U1: bob, U2: carol, U9: mallory }\n",
        &[("TEST_SLACK_SECRET", "s3cret")],
    );
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "ask" })),
    );
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| !r["waiting_for"].as_array().unwrap().is_empty());
    let path = "/api/v1/hooks/slack/interactive";
    let post = |body: &str, ts: &str, sig: &str| {
        server.raw(
            "POST",
            path,
            None,
            &[
                ("X-Slack-Request-Timestamp", ts),
                ("X-Slack-Signature", sig),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            Some(body.as_bytes()),
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let bob = slack_form("U1", "approve", &id, "go");

    let forged = post(&bob, &now, &slack_signature("wrong", &now, &bob));
    assert_eq!(forged.status, 401, "{}", forged.body);
    let old = (now.parse::<u64>().unwrap() - 400).to_string();
    let stale = post(&bob, &old, &slack_signature("s3cret", &old, &bob));
    assert_eq!(stale.status, 401, "{}", stale.body);
    let carol = slack_form("U2", "approve", &id, "go");
    let viewer = post(&carol, &now, &slack_signature("s3cret", &now, &carol));
    assert_eq!(viewer.status, 403, "{}", viewer.body);
    let mallory = slack_form("U9", "approve", &id, "go");
    let unknown = post(&mallory, &now, &slack_signature("s3cret", &now, &mallory));
    assert_eq!(unknown.status, 403, "{}", unknown.body);
    let stranger = slack_form("U5", "approve", &id, "go");
    let unmapped = post(&stranger, &now, &slack_signature("s3cret", &now, &stranger));
    assert_eq!(unmapped.status, 403, "{}", unmapped.body);
    assert_eq!(
        server
            .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
            .json()["run"]["status"],
        "running"
    );

    let sig = slack_signature("s3cret", &now, &bob);
    let ok = post(&bob, &now, &sig);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.json()["text"]
            .as_str()
            .unwrap()
            .contains("approved by bob (slack) as tech-lead"),
        "{}",
        ok.body
    );
    let replay = post(&bob, &now, &sig);
    assert_eq!(replay.status, 401, "{}", replay.body);
    let done = server.wait_for(&id, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "succeeded");
}

#[test]
fn a_signed_link_decides_once_for_its_principal() {
    let server = server(
        "links",
        "links:\n  secret_env: TEST_LINK_KEY\n",
        &[("TEST_LINK_KEY", "l1nk")],
    );
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "ask" })),
    );
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| !r["waiting_for"].as_array().unwrap().is_empty());
    let links_path = format!("/api/v1/runs/{id}/approvals/go/links");
    let body = json!({ "principals": ["bob"] });
    assert_eq!(
        server
            .call("POST", &links_path, Some("carol"), Some(&body))
            .status,
        403
    );
    let made = server.call("POST", &links_path, Some("dave"), Some(&body));
    assert_eq!(made.status, 200, "{}", made.body);
    let approve = made.json()["links"][0]["approve"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = approve.split_once('?').unwrap().1.to_owned();
    assert!(
        approve.starts_with("http://runner.test/api/v1/approvals/link?"),
        "{approve}"
    );

    // Opening it decides nothing.
    let page = server.raw(
        "GET",
        &format!("/api/v1/approvals/link?{query}"),
        None,
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("deploy?") && page.body.contains("<form method=\"post\""),
        "{}",
        page.body
    );
    assert_eq!(
        server
            .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
            .json()["run"]["status"],
        "running"
    );

    // Another principal, or another decision, under the same signature: refused.
    let as_alice = query.replace("as=bob", "as=alice");
    let form = |q: &str| {
        server.raw(
            "POST",
            "/api/v1/approvals/link",
            None,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(q.as_bytes()),
        )
    };
    assert_eq!(form(&as_alice).status, 401);
    assert_eq!(
        form(&query.replace("decision=approve", "decision=reject")).status,
        401
    );
    assert_eq!(
        server
            .call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None)
            .json()["run"]["status"],
        "running"
    );

    let used = form(&format!("{query}&comment=ok+from+mail"));
    assert_eq!(used.status, 200, "{}", used.body);
    assert_eq!(used.json()["decision"]["by_source"], "approval link");
    let again = form(&query);
    assert!(
        again.status == 410 || again.status == 404,
        "{} {}",
        again.status,
        again.body
    );
    let done = server.wait_for(&id, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "succeeded");
}

#[test]
fn with_a_certificate_the_server_speaks_only_tls() {
    let dir = common::scratch("serve-tls");
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(dir.join("playbooks/quick.yaml"), QUICK).unwrap();
    std::fs::write(
        dir.join("serve.yaml"),
        "catalog:\n  playbooks: playbooks\ntokens: tokens.yaml\n",
    )
    .unwrap();
    let token = add_token(&dir.join("tokens.yaml"), "carol", &["viewer"]);
    // A CA of the test's own, and the server's certificate for 127.0.0.1 signed by it.
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("openssl (Debian's `openssl` package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=runner test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);

    // A key that is not there: refused before anything listens.
    let bad = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("serve.yaml"))
        .args(["--tls-cert", "cert.pem", "--tls-key", "missing.pem"])
        .current_dir(&dir)
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("missing.pem"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let tokens = std::collections::HashMap::from([("carol".to_owned(), token.clone())]);
    let server = Server::spawn_with(
        dir.clone(),
        &dir.join("serve.yaml"),
        tokens,
        &[],
        &[
            "--tls-cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.join("key.pem").to_str().unwrap(),
        ],
    );
    // Plain HTTP to it gets no HTTP answer.
    let plain = server.raw("GET", "/healthz", None, &[], None);
    assert_eq!(plain.status, 0, "{plain:?}");

    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(&server.addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let reply = Reply::parse(&out);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["principal"], "carol");

    // `runner approve --server https://…` trusts the CA it is given, and only then.
    let approve = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args([
                "approve",
                "1-2-abcdef",
                "go",
                "--server",
                &format!("https://{}", server.addr),
            ])
            .args(extra)
            .env("RUNNER_TOKEN", &token)
            .output()
            .unwrap()
    };
    let trusted = approve(&["--server-ca", dir.join("ca.pem").to_str().unwrap()]);
    let said = String::from_utf8_lossy(&trusted.stderr);
    assert!(
        said.contains("refused (404)") && said.contains("1-2-abcdef"),
        "{said}"
    );
    let untrusted = approve(&[]);
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(2));
    assert!(said.contains("TLS with 127.0.0.1"), "{said}");
}

#[test]
fn runner_approve_answers_through_the_server_with_a_token() {
    let server = server("cli-approve", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "ask" })),
    );
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| !r["waiting_for"].as_array().unwrap().is_empty());
    let approve = |token: Option<&str>, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args([
            "approve",
            &id,
            "go",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .args(extra)
        .env_remove("RUNNER_TOKEN")
        .env_remove("RUNNER_DATABASE_URL");
        if let Some(t) = token {
            cmd.env("RUNNER_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let none = approve(None, &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("RUNNER_TOKEN"));
    let carol = approve(Some(server.token("carol")), &["--role", "tech-lead"]);
    assert_eq!(carol.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&carol.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&carol.stderr)
    );
    let bob = approve(Some(server.token("bob")), &["--comment", "ok"]);
    assert_eq!(
        bob.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bob.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&bob.stdout),
        format!("step `go` of run `{id}`: approved by bob (api token) as tech-lead (\"ok\")\n")
    );
    assert_eq!(
        server.wait_for(&id, |r| r["run"]["status"] != "running")["run"]["status"],
        "succeeded"
    );
}

/// With a shared journal the server queues what it starts and `runner
/// worker`s run it: approvals and cancels from the API reach the worker's run.
#[test]
fn with_a_shared_journal_workers_run_what_the_server_starts() {
    use std::os::unix::process::CommandExt;
    let pg = common::postgres::Postgres::start();
    let url = pg.create_db("serve");
    let server = server("pg", ALERTS, &[("RUNNER_DATABASE_URL", &url)]);

    // The same alert twice while its run waits in the queue: one run.
    let path = "/api/v1/hooks/alertmanager";
    let first = server.call("POST", path, Some("am"), Some(&alert("firing")));
    assert_eq!(
        first.json()["alerts"][0]["outcome"],
        "accepted",
        "{}",
        first.body
    );
    let alerted = first.json()["alerts"][0]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = server.call("POST", path, Some("am"), Some(&alert("firing")));
    assert_eq!(
        second.json()["alerts"][0]["outcome"],
        "duplicate",
        "{}",
        second.body
    );
    assert_eq!(second.json()["alerts"][0]["run"], alerted.as_str());
    let off = server.call(
        "POST",
        &format!("/api/v1/runs/{alerted}/cancel"),
        Some("dave"),
        None,
    );
    assert_eq!(off.json()["status"], "cancelled", "{}", off.body);

    // Queued with no worker yet, then cancelled: it never starts.
    let never = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "slow" })),
    );
    assert_eq!(never.status, 202, "{}", never.body);
    assert_eq!(never.json()["status"], "queued");
    let metrics = server.call("GET", "/metrics", None, None).body;
    assert!(metrics.contains("runner_queue_depth 1"), "{metrics}");
    let never = never.json()["id"].as_str().unwrap().to_owned();
    let cancelled = server.call(
        "POST",
        &format!("/api/v1/runs/{never}/cancel"),
        Some("dave"),
        None,
    );
    assert_eq!(cancelled.status, 202, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");

    let state = server.dir.join("worker-state");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["worker", "--concurrency", "2"])
        .env("RUNNER_DATABASE_URL", &url)
        .env("RUNNER_STATE_DIR", &state)
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let ask = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "ask" })),
    );
    assert_eq!(ask.status, 202, "{}", ask.body);
    let ask = ask.json()["id"].as_str().unwrap().to_owned();
    // The stream waits for the queued run to begin, then follows it to its end.
    let watcher = {
        let (addr, token) = (server.addr.clone(), server.token("carol").to_owned());
        let id = ask.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            write!(s, "GET /api/v1/runs/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            Reply::parse(&out).body
        })
    };
    let waiting = server.wait_for(&ask, |r| !r["waiting_for"].as_array().unwrap().is_empty());
    assert_ne!(
        waiting["run"]["pid"],
        json!(server.child.id()),
        "a worker runs it, not the server"
    );
    let metrics = server.call("GET", "/metrics", None, None).body;
    assert!(metrics.contains("runner_approvals_pending 1"), "{metrics}");
    assert_eq!(waiting["run"]["started_by"], "alice (api token)");
    let ok = server.call(
        "POST",
        &format!("/api/v1/runs/{ask}/approvals/go"),
        Some("bob"),
        Some(&json!({ "decision": "approve" })),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        server.wait_for(&ask, |r| r["run"]["status"] != "running")["run"]["status"],
        "succeeded"
    );
    let streamed = watcher.join().unwrap();
    assert!(
        streamed.contains("\"run_started\"")
            && streamed.contains("event: end\ndata: {\"status\":\"succeeded\"}"),
        "{streamed}"
    );

    let slow = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "slow" })),
    );
    let slow = slow.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&slow, |r| r["in_flight"].get("wait").is_some());
    let cancel = server.call(
        "POST",
        &format!("/api/v1/runs/{slow}/cancel"),
        Some("dave"),
        None,
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    assert_eq!(cancel.json()["status"], "cancelling");
    let done = server.wait_for(&slow, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "interrupted");
    let undo = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "undo")
        .unwrap();
    assert_eq!(undo["status"], "succeeded");

    // The cancelled run never began.
    let runs = server
        .call("GET", "/api/v1/runs", Some("carol"), None)
        .json();
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&never.as_str()) && ids.len() == 2, "{ids:?}");
    unsafe { libc::kill(-(worker.id() as i32), libc::SIGKILL) };
    let _ = worker.wait();
}

#[test]
fn a_principal_over_its_rate_is_told_when_to_come_back_and_others_are_not() {
    let server = server("rate", "limits:\n  requests_per_minute: 5\n", &[]);
    for _ in 0..5 {
        assert_eq!(
            server.call("GET", "/api/v1/me", Some("carol"), None).status,
            200
        );
    }
    let over = server.call("GET", "/api/v1/me", Some("carol"), None);
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(
        over.headers.to_ascii_lowercase().contains("retry-after: "),
        "{}",
        over.headers
    );
    assert_eq!(
        server.call("GET", "/api/v1/me", Some("bob"), None).status,
        200
    );
}

#[test]
fn no_other_origin_is_allowed_and_no_secret_is_answered() {
    let server = server("cors", "", &[("SOME_SECRET", "hunter2-do-not-show")]);
    let preflight = server.raw(
        "OPTIONS",
        "/api/v1/runs",
        None,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert!((400..500).contains(&preflight.status), "{preflight:?}");
    let get = server.raw(
        "GET",
        "/api/v1/me",
        Some(server.token("carol")),
        &[("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(get.status, 200);
    assert!(
        !get.headers
            .to_ascii_lowercase()
            .contains("access-control-allow"),
        "{}",
        get.headers
    );
    // Neither a token nor the server's environment is ever in an answer.
    for path in [
        "/api/v1/me",
        "/api/v1/playbooks",
        "/api/v1/runs",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        let r = server.call("GET", path, Some("alice"), None);
        assert!(
            !r.body.contains(server.token("alice")) && !r.body.contains("hunter2"),
            "{path}"
        );
    }
}

#[test]
fn sigterm_stops_the_servers_runs_with_their_handlers_then_the_server() {
    let mut server = server("shutdown", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "slow" })),
    );
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| r["in_flight"].get("wait").is_some());
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let shown = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["runs", "show", &id, "--output", "json"])
        .env("RUNNER_STATE_DIR", server.dir.join("state"))
        .env_remove("RUNNER_DATABASE_URL")
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "interrupted");
    assert_eq!(shown["run"]["rolled_back"], true);
}

#[test]
fn a_finished_run_is_rerun_from_a_step_with_its_inputs() {
    let server = server("rerun", "", &[]);
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "quick", "inputs": { "service": "cart" } })),
    );
    let id = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&id, |r| r["run"]["status"] != "running");
    let path = format!("/api/v1/runs/{id}/rerun");
    assert_eq!(
        server
            .call(
                "POST",
                &path,
                Some("carol"),
                Some(&json!({ "from": "two" }))
            )
            .status,
        403
    );
    let bad = server.call(
        "POST",
        &path,
        Some("alice"),
        Some(&json!({ "from": "nope" })),
    );
    assert_eq!(bad.status, 409, "{}", bad.body);
    assert!(bad.error().contains("no step `nope`"), "{}", bad.body);
    let again = server.call(
        "POST",
        &path,
        Some("alice"),
        Some(&json!({ "from": "two" })),
    );
    assert_eq!(again.status, 201, "{}", again.body);
    let new = again.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(new, id);
    let done = server.wait_for(&new, |r| r["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "succeeded");
    assert_eq!(done["run"]["parent"], id.as_str());
    assert_eq!(done["run"]["inputs"]["service"], "cart");
}

#[test]
fn a_wrong_configuration_is_refused_at_its_place_before_anything_listens() {
    let dir = common::scratch("serve-config");
    std::fs::create_dir_all(dir.join("pb")).unwrap();
    let serve = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config", name])
            .current_dir(&dir)
            .env("RUNNER_STATE_DIR", dir.join("state"))
            .env_remove("RUNNER_DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty(), "it never listened");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = serve(
        "a.yaml",
        "catalog:\n  playbooks: pb\ntokens: t.yaml\nlimits:\n  bogus: 1\n",
    );
    assert!(
        e.starts_with("a.yaml:5:10: not a valid server configuration: unknown field `bogus`"),
        "{e}"
    );
    let e = serve("b.yaml", "catalog:\n  playbooks: nope\ntokens: t.yaml\n");
    assert!(
        e.starts_with("b.yaml:2:14: the catalog's playbook folder"),
        "{e}"
    );
    let e = serve("c.yaml", "catalog:\n  playbooks: pb\ntokens: t.yaml\n");
    assert!(
        e.contains("cannot read the token file") && e.contains("runner token add"),
        "{e}"
    );
    std::fs::write(dir.join("t.yaml"), "").unwrap();
    let e = serve(
        "d.yaml",
        "catalog:\n  playbooks: pb\ntokens: t.yaml\nexecute: workers\n",
    );
    assert!(
        e.contains("`execute: workers` needs a shared journal"),
        "{e}"
    );
}
