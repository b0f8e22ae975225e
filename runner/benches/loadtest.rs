//! The `load-test` plugin against `wrk` on the same loopback server, in one run:
//! requests per second and latency percentiles, closed model, same concurrency
//! and duration; and the CPU time each client and the server spent per request
//! (from `getrusage`), a figure that moves less with the machine's neighbours
//! than a rate does. `wrk` comes from Debian (`apt-get install wrk`); without it
//! the bench prints the plugin's figures alone.
//!
//! `LOADTEST_SERVE=1` only starts the server and prints its URL, for profiling
//! either client by hand against it; `LOADTEST_RUNNER=PATH` measures another
//! build of `runner`.

use std::process::Command;
use std::time::Duration;

const CONCURRENCY: u32 = 16;
const SECONDS: u64 = 5;

/// A keep-alive HTTP/1.1 server on loopback answering `ok`: hyper on a tokio
/// runtime with a worker per core. (tiny_http's thread pool starves connections
/// that arrive in a burst until others close, which froze 12 of 16 first
/// requests of the plugin here.)
fn server() -> (u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, rt)
}

/// What one client measured.
struct Figures {
    rps: f64,
    requests: f64,
    /// Latency percentiles in ms, by name (`p50`, ...).
    percentiles: Vec<(String, f64)>,
    /// CPU seconds the client process used (user + system).
    cpu: f64,
    /// CPU seconds the server used meanwhile.
    server_cpu: f64,
}

/// User + system CPU seconds of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`).
fn cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs `client` (a child process) and charges it and the server their CPU.
fn measured(client: impl FnOnce() -> Option<Figures>) -> Option<Figures> {
    let (children, me) = (cpu(libc::RUSAGE_CHILDREN), cpu(libc::RUSAGE_SELF));
    let mut f = client()?;
    f.cpu = cpu(libc::RUSAGE_CHILDREN) - children;
    f.server_cpu = cpu(libc::RUSAGE_SELF) - me;
    Some(f)
}

/// `wrk`'s figures.
fn wrk(port: u16) -> Option<Figures> {
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
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        println!("  wrk: {}", errors.trim());
    }
    let number = |prefix: &str, nth: usize| -> Option<f64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))?
            .split_whitespace()
            .nth(nth)?
            .parse()
            .ok()
    };
    let rps = number("Requests/sec:", 1)?;
    // "  123456 requests in 5.00s, ..."
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
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
    Some(Figures {
        rps,
        requests,
        percentiles,
        cpu: 0.0,
        server_cpu: 0.0,
    })
}

fn main() {
    let (port, _server) = server();
    if std::env::var_os("LOADTEST_SERVE").is_some() {
        println!("serving on http://127.0.0.1:{port}/ until killed");
        loop {
            std::thread::park();
        }
    }
    let dir = std::env::temp_dir().join(format!("runner-loadtest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let playbook = dir.join("load.yaml");
    std::fs::write(
        &playbook,
        format!("version: 1\nname: load\nplugins:\n  load: {{ uses: load-test, grants: {{ http: [\"http://127.0.0.1:{port}\"] }} }}\nstages:\n  - id: s\n    steps:\n      - id: run\n        uses: load\n        with: {{ url: \"http://127.0.0.1:{port}/\", concurrency: {CONCURRENCY}, duration: {SECONDS}s }}\n"),
    )
    .unwrap();
    // LOADTEST_RUNNER: another build of runner, to compare two builds.
    let exe =
        std::env::var("LOADTEST_RUNNER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_runner").into());
    let run = || -> Option<Figures> {
        let out = Command::new(&exe)
            .env("RUNNER_CACHE_DIR", dir.join("cache"))
            .env("RUNNER_STATE_DIR", dir.join("state"))
            .args(["exec", playbook.to_str().unwrap(), "--output", "json"])
            .output()
            .unwrap();
        let o = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["event"] == "step_finished")
            .map(|e| e["outputs"].clone())
            .expect("a finished step");
        if o["errors"].as_u64() != Some(0) {
            println!(
                "  load-test errors: {} (first: {})",
                o["status_counts"], o["first_error"]
            );
        }
        let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
        Some(Figures {
            rps: f("rps"),
            requests: f("requests"),
            percentiles: ["p50", "p90", "p95", "p99"]
                .iter()
                .map(|p| (p.to_string(), f(&format!("{p}_ms"))))
                .collect(),
            cpu: 0.0,
            server_cpu: 0.0,
        })
    };
    // The first run compiles the plugin into the cache; the second is measured.
    let _ = run();
    let ours = measured(run).expect("load-test figures");
    println!(
        "load-test vs wrk: closed model, {CONCURRENCY} connections/workers, {SECONDS} s, loopback hyper server"
    );
    let show = |name: &str, f: &Figures| {
        let shown: Vec<String> = f
            .percentiles
            .iter()
            .map(|(p, v)| format!("{p} {v:.3} ms"))
            .collect();
        println!(
            "  {name:<16} {:>9.1} req/s  {}  CPU/request: client {:.1} us, server {:.1} us",
            f.rps,
            shown.join("  "),
            f.cpu / f.requests * 1e6,
            f.server_cpu / f.requests * 1e6,
        );
    };
    show("runner load-test", &ours);
    std::thread::sleep(Duration::from_millis(500));
    let Some(base) = measured(|| wrk(port)) else {
        println!("  baseline: `wrk` not found or unreadable; install with `apt-get install wrk`");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    show("wrk (baseline)", &base);
    let ratio = ours.rps / base.rps;
    println!(
        "  ratio: {ratio:.2}x wrk's requests per second (goal >= 0.8: {}); client CPU per request {:.1}x wrk's",
        if ratio >= 0.8 { "met" } else { "NOT met" },
        (ours.cpu / ours.requests) / (base.cpu / base.requests),
    );
    for (p, v) in &base.percentiles {
        if let Some((_, mine)) = ours.percentiles.iter().find(|(q, _)| q == p) {
            println!(
                "  {p}: load-test {mine:.3} ms vs wrk {v:.3} ms ({:.2}x)",
                mine / v
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
