//! Plugins in other languages: what the compile cache saves.
//! `cargo bench -p runner --bench other_languages`.
//!
//! The Python (componentize-py, ~18 MB) and JavaScript (ComponentizeJS,
//! ~12 MB) examples embed a whole interpreter, which Cranelift compiles the
//! first time the runner sees the component. For each, built from source by
//! examples/plugins/build.sh:
//!
//! - in process: `Runtime::load` (compile or cache load, link, `describe`) with
//!   an empty cache, then from the cache in a fresh `Runtime`, as a new process
//!   would (median of 10);
//! - `runner exec` of a one-step playbook (a health check / webhook against a
//!   loopback server) in a child process: the first run with an empty cache,
//!   then the second and later runs (median of 5), against the same playbook
//!   run with the built-in Rust `http-check` plugin as the baseline.
//!
//! The child processes run first: a child's peak RSS counts its parent's at the
//! fork, and the in-process loads make this process large.
//!
//! Goal (issue 9): a second run of a playbook using the Python plugin starts it
//! in under 200 ms. Nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{child, mib, ms, ratio};

use runner::host::runtime::Runtime;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("other-languages");
    let built = build(&root.join("examples/plugins/build.sh"), &out_dir);
    let dir = std::env::temp_dir().join(format!("runner-lang-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("runner exec, one step against a loopback server (child process; wall time)");
    let exe = Path::new(env!("CARGO_BIN_EXE_runner"));
    let baseline = {
        let cache = dir.join("exec-builtin");
        let file = dir.join("builtin.yaml");
        std::fs::write(
            &file,
            format!(
                "version: 1\nname: bench\nplugins:\n  p: {{ uses: http-check, grants: {{ http: [\"{}\"] }} }}\nstages:\n  - id: s\n    steps:\n      - id: step\n        uses: p\n        with: {{ url: \"{}/health\" }}\n",
                server.origin(),
                server.origin()
            ),
        )
        .unwrap();
        let _ = exec(exe, &file, &cache, &dir);
        warm(exe, &file, &cache, &dir)
    };
    println!(
        "  built-in http-check (Rust), warm cache, median of 5 {:>9.1} ms   peak RSS {:>6.1} MiB   (baseline)",
        ms(baseline.0),
        mib(baseline.1)
    );
    let baseline = baseline.0;
    for (language, wasm) in &built {
        let sha = sha256(wasm);
        let name = wasm.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(wasm, dir.join(&name)).unwrap();
        let (with, secrets) = match *language {
            "python" => (format!("{{ url: \"{}/health\" }}", server.origin()), ""),
            _ => (
                format!("{{ url: \"{}/hook\", event: bench }}", server.origin()),
                ", secrets: [WEBHOOK_TOKEN]",
            ),
        };
        let file = dir.join(format!("{language}.yaml"));
        std::fs::write(
            &file,
            format!(
                "version: 1\nname: bench\nplugins:\n  p:\n    uses: ./{name}\n    sha256: {sha}\n    grants: {{ http: [\"{}\"]{secrets} }}\nstages:\n  - id: s\n    steps:\n      - id: step\n        uses: p\n        with: {with}\n",
                server.origin()
            ),
        )
        .unwrap();
        let cache = dir.join(format!("exec-{language}"));
        let first = exec(exe, &file, &cache, &dir).0;
        let second = exec(exe, &file, &cache, &dir).0;
        let (later, rss) = warm(exe, &file, &cache, &dir);
        println!(
            "  {language:<7} first run (empty cache) {:>9.1} ms   second run {:>7.1} ms   later runs (median of 5) {:>7.1} ms   peak RSS {:>6.1} MiB",
            ms(first),
            ms(second),
            ms(later),
            mib(rss)
        );
        println!(
            "          first/second {:>5.0}x   second run over the built-in baseline {:>+7.1} ms",
            ratio(first, second),
            ms(second) - ms(baseline)
        );
    }
    println!(
        "\ncomponent sizes and loading (Runtime::load: compile or cache load, link, describe)"
    );
    for (language, wasm) in &built {
        let bytes = std::fs::read(wasm).unwrap();
        let cache = dir.join(format!("load-{language}/components"));
        let runtime = Runtime::new(Some(cache.clone())).unwrap();
        let t = Instant::now();
        let first = rt.block_on(runtime.load(&bytes)).unwrap();
        let compiled = t.elapsed();
        assert_eq!(format!("{:?}", first.origin), "Compiled");
        drop((first, runtime));
        let mut cached = Vec::new();
        for _ in 0..10 {
            let runtime = Runtime::new(Some(cache.clone())).unwrap();
            let t = Instant::now();
            let p = rt.block_on(runtime.load(&bytes)).unwrap();
            cached.push(t.elapsed());
            assert_eq!(format!("{:?}", p.origin), "Cached");
        }
        let cached = median(cached);
        let artifact: u64 = std::fs::read_dir(&cache)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "  {language:<7} {:>5.1} MiB component, {:>5.1} MiB compiled   first {:>9.1} ms   cached (median) {:>7.1} ms   first/cached {:>6.0}x",
            mib(bytes.len() as u64),
            mib(artifact),
            ms(compiled),
            ms(cached),
            ratio(compiled, cached)
        );
    }

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds both examples; (language, component) pairs.
fn build(script: &Path, out: &Path) -> Vec<(&'static str, PathBuf)> {
    let t = Instant::now();
    let result = Command::new("bash")
        .arg(script)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run examples/plugins/build.sh");
    assert!(
        result.status.success(),
        "examples/plugins/build.sh failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    eprintln!(
        "examples/plugins/build.sh: {:.1} s\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    ["python", "js"]
        .into_iter()
        .map(|language| {
            let path = stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{language} ")))
                .unwrap_or_else(|| panic!("build.sh printed no {language} component"));
            (language, PathBuf::from(path))
        })
        .collect()
}

/// Median wall time and highest peak RSS of 5 runs.
fn warm(exe: &Path, file: &Path, cache: &Path, dir: &Path) -> (Duration, u64) {
    let runs: Vec<(Duration, u64)> = (0..5).map(|_| exec(exe, file, cache, dir)).collect();
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    (median(runs.into_iter().map(|r| r.0).collect()), rss)
}

/// Wall time and peak RSS of one `runner exec FILE` with the compile cache in
/// `cache`; the run must succeed.
fn exec(exe: &Path, file: &Path, cache: &Path, dir: &Path) -> (Duration, u64) {
    child(
        exe,
        &["exec", file.to_str().unwrap(), "--output", "json"],
        &[
            ("RUNNER_CACHE_DIR", cache),
            ("RUNNER_STATE_DIR", &dir.join("state")),
            ("WEBHOOK_TOKEN", Path::new("bench-token")),
        ],
        0,
        1,
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// A loopback server answering every request with 200 and a small JSON body.
struct Server {
    port: u16,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_string(r#"{"status":"ok"}"#));
            }
        });
        Server {
            port,
            server,
            thread: Some(thread),
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
