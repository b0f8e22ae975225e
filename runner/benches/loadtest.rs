//! The `load-test` plugin against `wrk` on the same loopback server, in one run:
//! requests per second and latency percentiles, closed model, same concurrency
//! and duration. `wrk` comes from Debian (`apt-get install wrk`); without it the
//! bench prints the plugin's figures alone.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const CONCURRENCY: u32 = 16;
const SECONDS: u64 = 5;

/// A plain keep-alive HTTP server on loopback, four worker threads.
fn server() -> (u16, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    for _ in 0..4 {
        let s = server.clone();
        std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_string("ok"));
            }
        });
    }
    (port, server)
}

/// `wrk` figures: requests per second and latency percentiles in ms.
fn wrk(port: u16) -> Option<(f64, Vec<(String, f64)>)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONCURRENCY}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let ms = |v: &str| -> Option<f64> {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic())?);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    let mut percentiles = Vec::new();
    let mut in_dist = false;
    for l in text.lines() {
        if l.contains("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            let parts: Vec<&str> = l.split_whitespace().collect();
            match parts.as_slice() {
                [p, v] if p.ends_with('%') => {
                    percentiles.push((format!("p{}", p.trim_end_matches('%')), ms(v)?));
                }
                _ => in_dist = false,
            }
        }
    }
    Some((rps, percentiles))
}

fn main() {
    let (port, _server) = server();
    let dir = std::env::temp_dir().join(format!("runner-loadtest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let playbook = dir.join("load.yaml");
    std::fs::write(
        &playbook,
        format!("version: 1\nname: load\nplugins:\n  load: {{ uses: load-test, grants: {{ http: [\"http://127.0.0.1:{port}\"] }} }}\nstages:\n  - id: s\n    steps:\n      - id: run\n        uses: load\n        with: {{ url: \"http://127.0.0.1:{port}/\", concurrency: {CONCURRENCY}, duration: {SECONDS}s }}\n"),
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_runner");
    let run = || {
        let out = Command::new(exe)
            .env("RUNNER_CACHE_DIR", dir.join("cache"))
            .env("RUNNER_STATE_DIR", dir.join("state"))
            .args(["exec", playbook.to_str().unwrap(), "--output", "json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["event"] == "step_finished")
            .map(|e| e["outputs"].clone())
            .expect("a finished step")
    };
    // Warm the compile cache with a short run first.
    let _ = run();
    let o = run();
    println!(
        "load-test vs wrk: closed model, {CONCURRENCY} connections/workers, {SECONDS} s, loopback tiny_http server"
    );
    println!(
        "  runner load-test: {:>9.1} req/s   p50 {:.3} ms  p90 {:.3} ms  p95 {:.3} ms  p99 {:.3} ms  errors {}",
        o["rps"].as_f64().unwrap_or(0.0),
        o["p50_ms"].as_f64().unwrap_or(0.0),
        o["p90_ms"].as_f64().unwrap_or(0.0),
        o["p95_ms"].as_f64().unwrap_or(0.0),
        o["p99_ms"].as_f64().unwrap_or(0.0),
        o["errors"]
    );
    std::thread::sleep(Duration::from_millis(500));
    match wrk(port) {
        None => println!(
            "  baseline: `wrk` not found or unreadable; install with `apt-get install wrk`"
        ),
        Some((rps, pct)) => {
            let shown: Vec<String> = pct.iter().map(|(p, v)| format!("{p} {v:.3} ms")).collect();
            println!(
                "  wrk (baseline):   {rps:>9.1} req/s   {}",
                shown.join("  ")
            );
            let ours = o["rps"].as_f64().unwrap_or(0.0);
            println!(
                "  ratio: {:.2}x wrk's requests per second (goal >= 0.8: {})",
                ours / rps,
                if ours / rps >= 0.8 { "met" } else { "NOT met" }
            );
            for (p, v) in &pct {
                if let Some(mine) = o[format!("{p}_ms")].as_f64() {
                    println!(
                        "  {p}: load-test {mine:.3} ms vs wrk {v:.3} ms ({:.2}x)",
                        mine / v
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
