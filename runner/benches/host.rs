//! Plugin host benchmark: `cargo bench -p runner --bench host`.
//!
//! - first load of the `echo` component (Cranelift compile + describe) against a
//!   load from the on-disk cache, in the same run;
//! - per-step cost of `echo` in-process (fresh Store, instantiate, call, checks);
//! - `runner exec` of a generated 200-step playbook in a child process: wall time
//!   per step and peak RSS (from `wait4`), against `runner validate` of the same
//!   file as the baseline process.
//!
//! Goal (issue 3): ≤ 0.5 ms per step with a warm cache. Nothing here asserts.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

mod common;
use common::{child, mib, ms, ratio};

use runner::host::runtime::{Limits, Runtime};
use runner::host::state::Granted;

fn main() {
    let dir = std::env::temp_dir().join(format!("runner-host-bench-{}", std::process::id()));
    // The layout `runner` uses under RUNNER_CACHE_DIR, so the child process shares it.
    let cache = dir.join("components");
    std::fs::create_dir_all(&cache).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let echo = runner::host::builtin("echo")
        .and_then(|b| b.wasm)
        .expect("echo is embedded");
    println!("echo component: {} bytes", echo.len());

    // First run: nothing cached.
    let runtime = Runtime::new(Some(cache.clone())).unwrap();
    let t = Instant::now();
    let first = rt.block_on(runtime.load(echo)).unwrap();
    let first_time = t.elapsed();
    assert_eq!(format!("{:?}", first.origin), "Compiled");
    drop(first);
    // Cached: a new runtime, as a new process would have.
    let mut cached_times = Vec::new();
    for _ in 0..10 {
        let runtime = Runtime::new(Some(cache.clone())).unwrap();
        let t = Instant::now();
        let p = rt.block_on(runtime.load(echo)).unwrap();
        cached_times.push(t.elapsed());
        assert_eq!(format!("{:?}", p.origin), "Cached");
    }
    cached_times.sort();
    let cached = cached_times[cached_times.len() / 2];
    println!("\nloading echo (load includes instantiating it once and calling describe)");
    println!("  first run, compiled       {:>9.2} ms", ms(first_time));
    println!(
        "  from the cache (median)   {:>9.2} ms   compiled/cached = {:.1}x",
        ms(cached),
        ratio(first_time, cached)
    );

    // Per step, in process.
    let plugin = rt.block_on(runtime.load(echo)).unwrap();
    let input = serde_json::json!({ "message": "bench", "outputs": { "n": 1, "s": "x" } });
    let limits = Limits::default();
    for _ in 0..50 {
        rt.block_on(runtime.run(&plugin, &input, &limits, Granted::default()))
            .outcome
            .unwrap();
    }
    let n = 2000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        rt.block_on(runtime.run(&plugin, &input, &limits, Granted::default()))
            .outcome
            .unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let p50 = samples[n / 2];
    let p99 = samples[n * 99 / 100];
    let json_base = {
        let t = Instant::now();
        for _ in 0..n {
            let text = input.to_string();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            std::hint::black_box(v);
        }
        t.elapsed() / n as u32
    };
    println!(
        "\none echo step in process ({n} runs: fresh Store, instantiate, call, output checks, workdir)"
    );
    println!(
        "  median {:>8.3} ms   p99 {:>8.3} ms   (goal ≤ 0.5 ms)",
        ms(p50),
        ms(p99)
    );
    println!(
        "  baseline: the same input through serde_json alone {:.4} ms ({:.0}x)",
        ms(json_base),
        ratio(p50, json_base)
    );

    // 200 steps through the CLI.
    let file = dir.join("steps200.yaml");
    std::fs::write(&file, playbook(200)).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_runner"));
    let env = [("RUNNER_CACHE_DIR", dir.as_path())];
    let (validate_time, validate_rss) =
        child(exe, &["validate", file.to_str().unwrap()], &env, 0, 3);
    let (exec_time, exec_rss) = child(exe, &["exec", file.to_str().unwrap()], &env, 0, 3);
    println!("\nrunner exec of a 200-step playbook (child process, warm cache, best of 3)");
    println!(
        "  runner validate (baseline)  {:>8.1} ms  peak RSS {:>6.1} MiB",
        ms(validate_time),
        mib(validate_rss)
    );
    println!(
        "  runner exec                 {:>8.1} ms  peak RSS {:>6.1} MiB   per step {:.3} ms over validate",
        ms(exec_time),
        mib(exec_rss),
        ms(exec_time.saturating_sub(validate_time)) / 200.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn playbook(steps: usize) -> String {
    let mut s = String::from(
        "version: 1\nname: steps200\nplugins:\n  echo: { uses: echo }\nstages:\n  - id: all\n    steps:\n",
    );
    for i in 0..steps {
        let prev = if i == 0 {
            "'start'".to_owned()
        } else {
            format!("steps.s{}.outputs.n", i - 1)
        };
        let _ = writeln!(
            s,
            "      - {{ id: s{i}, uses: echo, with: {{ message: \"step {i}\", outputs: {{ n: \"${{{{ {prev} }}}}\" }} }} }}"
        );
    }
    s
}
