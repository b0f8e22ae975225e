//! The `load-test` plugin against `wrk` and `oha` on the same loopback server,
//! in one run.
//!
//! 1. Throughput, closed model: 16 connections / workers for 5 s each; requests
//!    per second, latency percentiles, and the CPU time each client and the
//!    server spent per request (from `getrusage`), a figure that moves less with
//!    the machine's neighbours than a rate does.
//! 2. Latency at a fixed rate, open model: `load-test` with `rate` against `oha
//!    -q RATE --latency-correction` (both measure from the scheduled start), at
//!    rates both can hold.
//!
//! `wrk` comes from Debian (`apt-get install wrk`), `oha` from crates.io
//! (`cargo install oha --locked`, or a binary named by `LOADTEST_OHA`); a
//! missing one is reported and skipped. `LOADTEST_SERVE=1` only starts the
//! server and prints its URL, for profiling a client by hand against it;
//! `LOADTEST_RUNNER=PATH` measures another build of `runner`; `LOADTEST_RATES`
//! (default `5000,20000`) sets part 2's rates.

use std::path::Path;
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
#[derive(Default)]
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

impl Figures {
    fn percentile(&self, name: &str) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, v)| *v)
    }

    fn show(&self, name: &str) {
        let shown: Vec<String> = self
            .percentiles
            .iter()
            .map(|(p, v)| format!("{p} {v:.3} ms"))
            .collect();
        println!(
            "  {name:<10} {:>9.1} req/s  {}  CPU/request: client {:.1} us, server {:.1} us",
            self.rps,
            shown.join("  "),
            self.cpu / self.requests * 1e6,
            self.server_cpu / self.requests * 1e6,
        );
    }
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
    std::thread::sleep(Duration::from_millis(300));
    let (children, me) = (cpu(libc::RUSAGE_CHILDREN), cpu(libc::RUSAGE_SELF));
    let mut f = client()?;
    f.cpu = cpu(libc::RUSAGE_CHILDREN) - children;
    f.server_cpu = cpu(libc::RUSAGE_SELF) - me;
    Some(f)
}

/// `wrk -t2 -cN -dS --latency`.
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
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
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
            match l.split_whitespace().collect::<Vec<_>>().as_slice() {
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
        ..Figures::default()
    })
}

/// `oha` for `SECONDS` with `CONCURRENCY` connections; at `rate` with latency
/// correction (measured from the scheduled start), else as fast as it can.
fn oha(exe: &Path, port: u16, rate: Option<u32>) -> Option<Figures> {
    let mut args: Vec<String> = [
        "-c",
        &CONCURRENCY.to_string(),
        "-z",
        &format!("{SECONDS}s"),
        "--no-tui",
        "--output-format",
        "json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if let Some(r) = rate {
        args.extend(["-q".into(), r.to_string(), "--latency-correction".into()]);
    }
    args.push(format!("http://127.0.0.1:{port}/"));
    let out = Command::new(exe).args(&args).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let requests: f64 = v["statusCodeDistribution"]
        .as_object()?
        .values()
        .filter_map(|n| n.as_f64())
        .sum();
    if v["summary"]["successRate"].as_f64() != Some(1.0) {
        println!(
            "  oha: success rate {} ({})",
            v["summary"]["successRate"], v["errorDistribution"]
        );
    }
    let percentiles = ["p50", "p90", "p95", "p99"]
        .iter()
        .filter_map(|p| Some((p.to_string(), v["latencyPercentiles"][p].as_f64()? * 1000.0)))
        .collect();
    Some(Figures {
        rps: v["summary"]["requestsPerSec"].as_f64()?,
        requests,
        percentiles,
        ..Figures::default()
    })
}

/// Where `oha` is: `LOADTEST_OHA`, else on the PATH.
fn oha_exe() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("LOADTEST_OHA") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("oha"))
            .find(|p| p.is_file())
    })
}

/// `runner exec` of a one-step playbook running `load-test` with `load`
/// (`concurrency: N` or `rate: N`).
struct Plugin {
    exe: String,
    dir: std::path::PathBuf,
    port: u16,
}

impl Plugin {
    fn run(&self, load: &str) -> Option<Figures> {
        let port = self.port;
        let playbook = self.dir.join("load.yaml");
        std::fs::write(
            &playbook,
            format!("version: 1\nname: load\nplugins:\n  load: {{ uses: load-test, grants: {{ http: [\"http://127.0.0.1:{port}\"] }} }}\nstages:\n  - id: s\n    steps:\n      - id: run\n        uses: load\n        with: {{ url: \"http://127.0.0.1:{port}/\", {load}, duration: {SECONDS}s }}\n"),
        )
        .ok()?;
        let out = Command::new(&self.exe)
            .env("RUNNER_CACHE_DIR", self.dir.join("cache"))
            .env("RUNNER_STATE_DIR", self.dir.join("state"))
            .args(["exec", playbook.to_str()?, "--output", "json"])
            .output()
            .ok()?;
        let o = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "step_finished")
            .map(|e| e["outputs"].clone())?;
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
            ..Figures::default()
        })
    }
}

/// Each of `ours`'s percentiles against the same one of `base`.
fn compare(base_name: &str, ours: &Figures, base: &Figures) {
    let shown: Vec<String> = base
        .percentiles
        .iter()
        .filter_map(|(p, v)| Some(format!("{p} {:.2}x", ours.percentile(p)? / v)))
        .collect();
    println!("  load-test / {base_name} latency: {}", shown.join("  "));
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
    let plugin = Plugin {
        // LOADTEST_RUNNER: another build of runner, to compare two builds.
        exe: std::env::var("LOADTEST_RUNNER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_runner").into()),
        dir: dir.clone(),
        port,
    };
    let oha_exe = oha_exe();

    println!(
        "1. closed model: {CONCURRENCY} connections/workers, {SECONDS} s each, loopback hyper server (2 threads)"
    );
    // The first run compiles the plugin into the cache; the second is measured.
    let closed = format!("concurrency: {CONCURRENCY}");
    let _ = plugin.run(&closed);
    let ours = measured(|| plugin.run(&closed)).expect("load-test figures");
    ours.show("load-test");
    let mut bases = Vec::new();
    match measured(|| wrk(port)) {
        Some(f) => {
            f.show("wrk");
            bases.push(("wrk", f));
        }
        None => println!("  wrk: not found or unreadable; install with `apt-get install wrk`"),
    }
    match oha_exe
        .as_deref()
        .and_then(|exe| measured(|| oha(exe, port, None)))
    {
        Some(f) => {
            f.show("oha");
            bases.push(("oha", f));
        }
        None => println!(
            "  oha: not found or unreadable; install with `cargo install oha --locked` or name it in LOADTEST_OHA"
        ),
    }
    for (name, base) in &bases {
        let ratio = ours.rps / base.rps;
        println!(
            "  load-test / {name}: {ratio:.2}x the requests per second (goal >= 0.8: {}), {:.1}x the client CPU per request",
            if ratio >= 0.8 { "met" } else { "NOT met" },
            (ours.cpu / ours.requests) / (base.cpu / base.requests),
        );
        compare(name, &ours, base);
    }

    let Some(oha_exe) = oha_exe else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let rates: Vec<u32> = std::env::var("LOADTEST_RATES")
        .unwrap_or_else(|_| "5000,20000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    for rate in rates {
        println!(
            "2. open model at {rate} requests/s for {SECONDS} s: latency from the scheduled start"
        );
        let (Some(ours), Some(base)) = (
            measured(|| plugin.run(&format!("rate: {rate}"))),
            measured(|| oha(&oha_exe, port, Some(rate))),
        ) else {
            println!("  (a client gave no figures)");
            continue;
        };
        ours.show("load-test");
        base.show("oha");
        compare("oha", &ours, &base);
        if let (Some(a), Some(b)) = (ours.percentile("p95"), base.percentile("p95")) {
            println!(
                "  p95: {a:.3} ms vs {b:.3} ms (goal within 10 %: {})",
                if a <= b * 1.1 { "met" } else { "NOT met" }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
