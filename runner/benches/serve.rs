//! `runner serve` on loopback, beside baselines measured in the same run:
//!
//! 1. starting a run: `POST /api/v1/runs` until its 201 (the checks of
//!    `runner exec`, the run's first event in the journal);
//! 2. an approval reaching the waiting run: from sending the decision to the
//!    approval step's `step_finished` arriving over the run's event stream
//!    (goal ≤ 100 ms p95), against `runner approve` answering a `runner exec`
//!    through the file mailbox it polls every 200 ms;
//! 3. one run followed by 100 Server-Sent Events watchers: how long after the
//!    journal stamped an event each watcher has it, against one watcher.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const ASK: &str = r#"version: 1
name: ask
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: go
        approval: { prompt: "go?", approvers: [tech-lead], timeout: 5m, on_timeout: fail }
      - id: after
        uses: echo
        with: { message: "approved" }
"#;

const QUICK: &str = r#"version: 1
name: quick
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: one
        uses: echo
        with: { message: "one" }
"#;

/// 20 steps of 100 ms each, one after the other: a run of about two seconds.
fn twenty() -> String {
    let mut text = "version: 1\nname: twenty\nplugins:\n  echo: { uses: echo }\nstages:\n  - id: s\n    steps:\n".to_owned();
    for i in 0..20 {
        text.push_str(&format!(
            "      - id: s{i}\n        uses: echo\n{}        with: {{ message: \"{i}\", sleep_ms: 100 }}\n",
            if i > 0 {
                format!("        needs: [s{}]\n", i - 1)
            } else {
                String::new()
            }
        ));
    }
    text
}

const RUNS: usize = 30;
const WATCHERS: usize = 100;

struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_runner"))
}

fn cache() -> PathBuf {
    std::env::temp_dir().join("runner-test-cache")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    dir
}

fn start(dir: &Path) -> Server {
    for (n, t) in [
        ("ask", ASK.to_owned()),
        ("quick", QUICK.to_owned()),
        ("twenty", twenty()),
    ] {
        std::fs::write(dir.join("playbooks").join(format!("{n}.yaml")), t).unwrap();
    }
    std::fs::write(
        dir.join("serve.yaml"),
        "catalog:\n  playbooks: playbooks\ntokens: tokens.yaml\nlimits:\n  requests_per_minute: 100000\n  concurrent_runs: 8\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .args(["token", "add", "--tokens"])
        .arg(dir.join("tokens.yaml"))
        .args([
            "--principal",
            "bench",
            "--role",
            "operator",
            "--role",
            "tech-lead",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut child = Command::new(exe())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("serve.yaml"))
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .env("RUNNER_CACHE_DIR", cache())
        .env_remove("RUNNER_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("runner serve: listening on http://")
        .unwrap()
        .to_owned();
    Server { child, addr, token }
}

fn call(s: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.token,
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// Opens run `id`'s event stream; returns a reader positioned at its body.
fn stream(addr: &str, token: &str, id: &str) -> BufReader<TcpStream> {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /api/v1/runs/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return r;
        }
    }
}

/// The next SSE data line's JSON (chunk sizes and other lines skipped).
fn next_event(r: &mut BufReader<TcpStream>) -> Option<Value> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            return serde_json::from_str(d).ok();
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn waiting(s: &Server, id: &str) {
    loop {
        let (_, run) = call(s, "GET", &format!("/api/v1/runs/{id}"), None);
        if run["waiting_for"].as_array().is_some_and(|w| !w.is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    let dir = scratch();
    let server = start(&dir);
    // Warm: plugins compiled and cached once.
    let (status, _) = call(
        &server,
        "POST",
        "/api/v1/runs",
        Some(&json!({ "playbook": "quick" })),
    );
    assert_eq!(status, 201);
    std::thread::sleep(Duration::from_millis(300));

    // 1. Starting a run.
    let mut starts = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let (status, _) = call(
            &server,
            "POST",
            "/api/v1/runs",
            Some(&json!({ "playbook": "quick" })),
        );
        starts.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 201);
    }
    let mut health = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        call(&server, "GET", "/api/v1/me", None);
        health.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "start a run (POST /api/v1/runs → 201, {RUNS} runs): p50 {:.1} ms, p95 {:.1} ms; baseline GET /api/v1/me: p50 {:.2} ms",
        pct(&mut starts.clone(), 0.5),
        pct(&mut starts, 0.95),
        pct(&mut health, 0.5)
    );

    // 2. Approval to continue, through the API.
    let mut api = Vec::new();
    for _ in 0..RUNS {
        let (_, started) = call(
            &server,
            "POST",
            "/api/v1/runs",
            Some(&json!({ "playbook": "ask" })),
        );
        let id = started["id"].as_str().unwrap().to_owned();
        waiting(&server, &id);
        let mut events = stream(&server.addr, &server.token, &id);
        let t = Instant::now();
        let (status, _) = call(
            &server,
            "POST",
            &format!("/api/v1/runs/{id}/approvals/go"),
            Some(&json!({ "decision": "approve" })),
        );
        assert_eq!(status, 200);
        while let Some(e) = next_event(&mut events) {
            if e["event"]["event"] == "step_finished" && e["event"]["step"] == "go" {
                break;
            }
        }
        api.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Baseline: `runner exec` waiting on the file mailbox, `runner approve`.
    let mut files = Vec::new();
    let ask = dir.join("playbooks/ask.yaml");
    let state = dir.join("exec-state");
    for _ in 0..10 {
        let mut run = Command::new(exe())
            .args(["exec"])
            .arg(&ask)
            .args(["--output", "json"])
            .env("RUNNER_STATE_DIR", &state)
            .env("RUNNER_CACHE_DIR", cache())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(run.stdout.take().unwrap());
        let mut line = String::new();
        let id = loop {
            line.clear();
            out.read_line(&mut line).unwrap();
            let e: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if e["event"] == "approval_requested"
                || e["event"] == "step_started" && e["step"] == "go"
            {
                // The run's id is the name of its mailbox folder.
                std::thread::sleep(Duration::from_millis(50));
                let entry = std::fs::read_dir(state.join("approvals"))
                    .unwrap()
                    .filter_map(Result::ok)
                    .find(|e| e.path().join("go.request.json").exists());
                if let Some(e) = entry {
                    break e.file_name().to_string_lossy().into_owned();
                }
            }
        };
        let t = Instant::now();
        let ok = Command::new(exe())
            .args(["approve", &id, "go", "--role", "tech-lead"])
            .env("RUNNER_STATE_DIR", &state)
            .output()
            .unwrap();
        assert!(ok.status.success());
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let e: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if e["event"] == "step_finished" && e["step"] == "go" {
                break;
            }
        }
        files.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = run.wait();
        let _ = std::fs::remove_dir_all(state.join("approvals"));
    }
    println!(
        "approval to continue through the API ({RUNS} runs): p50 {:.1} ms, p95 {:.1} ms; baseline `runner approve` + file mailbox (10 runs): p50 {:.1} ms, p95 {:.1} ms",
        pct(&mut api.clone(), 0.5),
        pct(&mut api, 0.95),
        pct(&mut files.clone(), 0.5),
        pct(&mut files, 0.95),
    );

    // 3. Fan-out: one watcher, then 100, each on a run of its own.
    for watchers in [1, WATCHERS] {
        let (_, started) = call(
            &server,
            "POST",
            "/api/v1/runs",
            Some(&json!({ "playbook": "twenty" })),
        );
        let id = started["id"].as_str().unwrap().to_owned();
        let server_addr = server.addr.clone();
        let token = server.token.clone();
        let barrier = Arc::new(Barrier::new(watchers));
        let handles: Vec<_> = (0..watchers)
            .map(|_| {
                let (id, addr, token, barrier) = (
                    id.clone(),
                    server_addr.clone(),
                    token.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut r = stream(&addr, &token, &id);
                    let mut lags = Vec::new();
                    let mut count = 0;
                    while let Some(e) = next_event(&mut r) {
                        count += 1;
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs_f64()
                            * 1000.0;
                        // Events already stamped when the watcher connected are backlog, not fan-out.
                        if let Some(at) = e["at"].as_str().and_then(epoch_ms)
                            && count > 3
                        {
                            lags.push(now - at);
                        }
                    }
                    (count, lags)
                })
            })
            .collect();
        let mut lags = Vec::new();
        let mut counts = Vec::new();
        for h in handles {
            let (c, l) = h.join().unwrap();
            counts.push(c);
            lags.extend(l);
        }
        let all = counts.iter().all(|c| *c == counts[0]);
        println!(
            "{watchers} watcher(s) of one 20-step run: every watcher got {} events: {all}; event stamped → at the watcher: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            counts[0],
            pct(&mut lags.clone(), 0.5),
            pct(&mut lags.clone(), 0.95),
            pct(&mut lags, 1.0),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Milliseconds since the epoch of `2026-12-06T06:15:56.547Z`.
fn epoch_ms(at: &str) -> Option<f64> {
    let (date, time) = at.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (proleptic Gregorian), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) as f64 + h * 3600.0 + min * 60.0 + s) * 1000.0)
}
