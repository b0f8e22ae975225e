//! Engine benchmark: `cargo bench -p runner --bench engine`.
//!
//! Measures the execution engine through the CLI only, so it does not depend on the
//! engine's internals: `runner exec FILE --output json` of generated playbooks of
//! 10, 100 and 1,000 `echo` steps (one stage), in child processes, with a warm
//! compile cache. Every run is checked (exit 0, one `succeeded` step event per
//! step) before its time counts. Reported: min and median wall time, time per
//! step, the per-step slope between sizes, and the peak RSS of the child.
//!
//! Baseline, in the same run: `ansible-playbook` of the same shape (N `debug`
//! tasks on localhost, local connection, no fact gathering). It is found through
//! `$ANSIBLE_PLAYBOOK` (path to the binary) or else on `PATH`; without it the
//! runner figures are still printed.
//!
//! A second runner build (an older commit, say) can be measured in the same run,
//! interleaved with this one, with `ENGINE_RUNNER_BASELINE=/path/to/runner`: a
//! table then gives both medians and their ratio per size.
//!
//! Goals (engine issue): 1,000 steps in ≤ 1 s, growing linearly from 10 to 1,000,
//! with ≤ 0.5 ms of engine overhead per step. Nothing here asserts a timing.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{mib, ms, ratio};

const SIZES: [usize; 3] = [10, 100, 1000];
/// Timed runs of each size; the runs of the sizes are interleaved so that a noisy
/// neighbour slows all of them rather than one.
const RUNNER_RUNS: usize = 5;
/// Ansible takes ~25 s for 1,000 tasks here, so fewer runs.
const ANSIBLE_RUNS: usize = 3;

const NOT_FOUND: &str = "baseline: ansible-playbook not found; install with \
    `python3 -m pip install --user ansible-core` (or into a venv), \
    or set ANSIBLE_PLAYBOOK to the path of the binary";

const GOAL_1000: Duration = Duration::from_secs(1);
const GOAL_SLOPE_MS: f64 = 0.5;
/// The growth counts as linear while the per-step slope from 100 to 1,000 steps
/// stays within this factor of the slope from 10 to 100.
const LINEAR_WITHIN: f64 = 1.5;

fn main() {
    let dir = std::env::temp_dir().join(format!("runner-engine-bench-{}", std::process::id()));
    let cache = dir.join("cache");
    let state = dir.join("state");
    std::fs::create_dir_all(&cache).expect("temp dir");
    std::fs::create_dir_all(&state).expect("temp dir");

    // Cargo builds the `runner` binary for this bench with the bench profile, which
    // inherits `release`, and puts it in `target/release`.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_runner"));
    assert!(exe.is_file(), "{} is missing", exe.display());
    println!(
        "binary measured: {} (built by cargo for this bench: bench profile = release settings)",
        exe.display()
    );

    let mut runner_files = Vec::new();
    let mut ansible_files = Vec::new();
    for n in SIZES {
        let f = dir.join(format!("steps{n}.yaml"));
        std::fs::write(&f, runner_playbook(n)).unwrap();
        runner_files.push(f);
        let f = dir.join(format!("tasks{n}.yml"));
        std::fs::write(&f, ansible_playbook(n)).unwrap();
        ansible_files.push(f);
    }

    // Untimed: the first run compiles `echo` into the cache; one run of each size
    // also brings the files and the binary into the page cache.
    let baseline = std::env::var_os("ENGINE_RUNNER_BASELINE").map(PathBuf::from);
    if let Some(b) = &baseline {
        assert!(
            b.is_file(),
            "ENGINE_RUNNER_BASELINE: {} is missing",
            b.display()
        );
        println!(
            "also measured, interleaved: {} (ENGINE_RUNNER_BASELINE)",
            b.display()
        );
    }
    // Each run gets a state folder of its own: `tag` tells the two builds apart.
    let run_with = |exe: &Path, tag: &str, file: &Path, n: usize, i: usize| -> Sample {
        let run_state = state.join(format!("{tag}-{n}-{i}"));
        std::fs::create_dir_all(&run_state).unwrap();
        let mut cmd = Command::new(exe);
        cmd.arg("exec")
            .arg(file)
            .args(["--output", "json"])
            .env("RUNNER_CACHE_DIR", &cache)
            .env("RUNNER_STATE_DIR", &run_state)
            .env_remove("RUNNER_LOG");
        let out = measure(&mut cmd);
        check_runner(&out, n);
        Sample {
            wall: out.wall,
            rss: out.rss,
        }
    };
    let runner = |file: &Path, n: usize, i: usize| run_with(&exe, "this", file, n, i);
    for (file, n) in runner_files.iter().zip(SIZES) {
        runner(file, n, 0);
        if let Some(b) = &baseline {
            run_with(b, "base", file, n, 0);
        }
    }
    let cached = dir_size(&cache);
    assert!(cached > 0, "the warm-up run left the compile cache empty");
    println!(
        "compile cache warmed by an untimed run: {:.1} MiB in {}",
        mib(cached),
        cache.display()
    );

    let mut ansible = find_ansible();
    if ansible.is_none() {
        println!("{NOT_FOUND}");
    }
    if let Some(a) = &ansible {
        let version = Command::new(a)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| "version unknown".into());
        println!("baseline: {} ({version})", a.display());
        // Untimed, as for the runner: Python's imports come into the page cache.
        if let Err(e) = ansible_run(a, &ansible_files[0], SIZES[0], &dir) {
            println!("baseline: the warm-up run failed, no baseline this run:\n{e}");
            ansible = None;
        }
    }

    let mut runner_samples: Vec<Vec<Sample>> = vec![Vec::new(); SIZES.len()];
    let mut baseline_samples: Vec<Vec<Sample>> = vec![Vec::new(); SIZES.len()];
    let mut ansible_samples: Vec<Vec<Sample>> = vec![Vec::new(); SIZES.len()];
    for rep in 1..=RUNNER_RUNS {
        for (k, n) in SIZES.into_iter().enumerate() {
            runner_samples[k].push(runner(&runner_files[k], n, rep));
            if let Some(b) = &baseline {
                baseline_samples[k].push(run_with(b, "base", &runner_files[k], n, rep));
            }
        }
        if rep > ANSIBLE_RUNS {
            continue;
        }
        if let Some(a) = ansible.clone() {
            for (k, n) in SIZES.into_iter().enumerate() {
                match ansible_run(&a, &ansible_files[k], n, &dir) {
                    Ok(s) => ansible_samples[k].push(s),
                    Err(e) => {
                        println!("baseline: ansible-playbook failed, no baseline this run:\n{e}");
                        ansible = None;
                        ansible_samples.iter_mut().for_each(Vec::clear);
                        break;
                    }
                }
            }
        }
    }

    let r: Vec<Stats> = runner_samples.iter().map(|s| Stats::of(s)).collect();
    let a: Option<Vec<Stats>> = ansible
        .as_ref()
        .map(|_| ansible_samples.iter().map(|s| Stats::of(s)).collect());

    println!(
        "\nengine: runner exec of N echo steps in one stage (warm compile cache), release build"
    );
    match &a {
        Some(_) => println!(
            "runner: {RUNNER_RUNS} runs per size; ansible-playbook: {ANSIBLE_RUNS} runs per size"
        ),
        None => println!("runner: {RUNNER_RUNS} runs per size"),
    }
    println!(
        "  {:>5} {:>10} {:>10} {:>10} {:>10} | {:>16} {:>10} {:>7}",
        "N", "min", "median", "per step", "peak RSS", "ansible median", "per task", "ratio"
    );
    for (k, n) in SIZES.into_iter().enumerate() {
        let mut line = format!(
            "  {n:>5} {:>7.1} ms {:>7.1} ms {:>7.3} ms {:>6.1} MiB |",
            ms(r[k].min),
            ms(r[k].median),
            ms(r[k].median) / n as f64,
            mib(r[k].rss),
        );
        match &a {
            Some(a) => {
                let _ = write!(
                    line,
                    " {:>13.1} ms {:>7.2} ms {:>6.1}x",
                    ms(a[k].median),
                    ms(a[k].median) / n as f64,
                    ratio(a[k].median, r[k].median)
                );
            }
            None => line.push_str("   (no baseline)"),
        }
        println!("{line}");
    }
    println!("  (per step = median / N; ratio = ansible-playbook median / runner median)");
    if baseline.is_some() {
        let b: Vec<Stats> = baseline_samples.iter().map(|s| Stats::of(s)).collect();
        println!(
            "\nthis build against ENGINE_RUNNER_BASELINE, {RUNNER_RUNS} interleaved runs per size"
        );
        println!(
            "  {:>5} {:>12} {:>12} {:>10} {:>10} {:>8}",
            "N", "this median", "base median", "this/step", "base/step", "ratio"
        );
        for (k, n) in SIZES.into_iter().enumerate() {
            println!(
                "  {n:>5} {:>9.1} ms {:>9.1} ms {:>7.3} ms {:>7.3} ms {:>7.2}x",
                ms(r[k].median),
                ms(b[k].median),
                ms(r[k].median) / n as f64,
                ms(b[k].median) / n as f64,
                ratio(r[k].median, b[k].median)
            );
        }
        let slope_of = |s: &[Stats]| (ms(s[2].median) - ms(s[0].median)) / 990.0;
        println!(
            "  per-step slope 10 → 1000: this {:.3} ms, baseline {:.3} ms (ratio this/baseline {:.2})",
            slope_of(&r),
            slope_of(&b),
            slope_of(&r) / slope_of(&b)
        );
    }

    // Slopes from medians, and from minimums as a check against the noise.
    let (t10, t100, t1000) = (&r[0], &r[1], &r[2]);
    let slope = |a: Duration, b: Duration, da: usize, db: usize| (ms(b) - ms(a)) / (db - da) as f64;
    let fit = slope(t10.median, t1000.median, 10, 1000);
    let fit_min = slope(t10.min, t1000.min, 10, 1000);
    let low = slope(t10.median, t100.median, 10, 100);
    let high = slope(t100.median, t1000.median, 100, 1000);
    let fixed = ms(t10.median) - 10.0 * fit;
    println!("\nrunner, per-step slope");
    println!(
        "  10 → 1000:  {fit:.3} ms/step from medians, {fit_min:.3} ms/step from minimums   (goal ≤ {GOAL_SLOPE_MS} ms)"
    );
    println!("  fixed cost per run (median at N=10 minus 10 × slope): {fixed:.1} ms");
    println!(
        "  linearity: 10 → 100 {low:.3} ms/step, 100 → 1000 {high:.3} ms/step, ratio {:.2} (1.00 = linear)",
        high / low
    );
    if let Some(a) = &a {
        let afit = slope(a[0].median, a[2].median, 10, 1000);
        println!(
            "  ansible-playbook 10 → 1000: {afit:.2} ms/task ({:.0}x the runner's slope)",
            afit / fit
        );
    } else {
        println!("  (no ansible-playbook baseline this run: see above)");
    }

    println!("\nverdict (measured on this machine, this run)");
    let met = |ok: bool| if ok { "goal met" } else { "goal NOT met" };
    println!(
        "  1000 steps in ≤ 1 s:            median {:.1} ms — {}",
        ms(t1000.median),
        met(t1000.median <= GOAL_1000)
    );
    println!(
        "  overhead ≤ {GOAL_SLOPE_MS} ms per step:      slope {fit:.3} ms — {}",
        met(fit <= GOAL_SLOPE_MS)
    );
    println!(
        "  linear from 10 to 1000 steps:   slope ratio {:.2} (≤ {LINEAR_WITHIN} counts as linear) — {}",
        high / low,
        met(high / low <= LINEAR_WITHIN)
    );

    // Beyond the goal's range, runner only (Ansible would take minutes): does the
    // per-step cost stay flat when one stage holds 4,000 steps?
    let big = 4000;
    let f = dir.join(format!("steps{big}.yaml"));
    std::fs::write(&f, runner_playbook(big)).unwrap();
    runner(&f, big, 0);
    let samples: Vec<Sample> = (1..=3).map(|rep| runner(&f, big, rep)).collect();
    let s4000 = Stats::of(&samples);
    let far = slope(t1000.median, s4000.median, 1000, big);
    println!(
        "
scale check, runner only: {big} steps in one stage, 3 runs"
    );
    println!(
        "  median {:.1} ms, {:.3} ms/step; slope 1000 → {big}: {far:.3} ms/step ({:.2}x the 10 → 1000 slope); peak RSS {:.1} MiB",
        ms(s4000.median),
        ms(s4000.median) / big as f64,
        far / fit,
        mib(s4000.rss)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    rss: u64,
}

struct Stats {
    min: Duration,
    median: Duration,
    /// The highest peak RSS over the runs.
    rss: u64,
}

impl Stats {
    fn of(samples: &[Sample]) -> Stats {
        let mut t: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        t.sort();
        Stats {
            min: t[0],
            median: t[t.len() / 2],
            rss: samples.iter().map(|s| s.rss).max().unwrap_or(0),
        }
    }
}

struct Output {
    wall: Duration,
    rss: u64,
    /// Exit code, or minus the signal that ended the process.
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with stdout and stderr drained through pipes, reaps it with `wait4`
/// (wall time up to the reaping, peak RSS of the child) and keeps both outputs.
#[allow(clippy::zombie_processes)] // reaped by wait4, not Child::wait
fn measure(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut status = 0;
    // SAFETY: plain FFI call with valid out-pointers; `child` is not waited on elsewhere.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Output {
        wall,
        rss: usage.ru_maxrss as u64 * 1024, // kilobytes on Linux
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
    }
}

/// A run only counts if it exited 0 and reported every step as succeeded.
fn check_runner(out: &Output, n: usize) {
    let mut succeeded = 0;
    let mut other = Vec::new();
    let mut run_status = None;
    for line in out.stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            other.push(line.to_owned());
            continue;
        };
        // `step_finished` carries the step record's fields; the executor before it
        // wrote `step` events with the record nested under `step`.
        let status = v["status"].as_str().or(v["step"]["status"].as_str());
        match v["event"].as_str() {
            Some("step_finished" | "step") if status == Some("succeeded") => succeeded += 1,
            Some("step_finished" | "step") => other.push(line.to_owned()),
            Some("run_finished" | "run") => run_status = status.map(str::to_owned),
            _ => {}
        }
    }
    if out.code != 0 || succeeded != n || run_status.as_deref() != Some("succeeded") {
        panic!(
            "runner exec of {n} steps: exit {}, {succeeded} succeeded step events (want {n}), \
             run status {run_status:?}; other lines: {:?}\nstderr:\n{}",
            out.code,
            &other[..other.len().min(5)],
            tail(&out.stderr, 2000)
        );
    }
}

fn ansible_run(exe: &Path, file: &Path, n: usize, dir: &Path) -> Result<Sample, String> {
    let mut cmd = Command::new(exe);
    cmd.args(["-i", "localhost,"])
        .arg(file)
        .current_dir(dir)
        .env("ANSIBLE_NOCOLOR", "1")
        .env_remove("ANSIBLE_STDOUT_CALLBACK")
        // Let Python keep its bytecode cache, as it does on a usual machine.
        .env_remove("PYTHONDONTWRITEBYTECODE");
    let out = measure(&mut cmd);
    // The recap line: `localhost : ok=N changed=0 unreachable=0 failed=0 ...`.
    let recap = format!("ok={n} ");
    if out.code != 0 || !out.stdout.contains(&recap) || !out.stdout.contains("failed=0") {
        return Err(format!(
            "exit {}, recap `{recap}` {}found\nstdout (end):\n{}\nstderr (end):\n{}",
            out.code,
            if out.stdout.contains(&recap) {
                ""
            } else {
                "not "
            },
            tail(&out.stdout, 1000),
            tail(&out.stderr, 1000)
        ));
    }
    Ok(Sample {
        wall: out.wall,
        rss: out.rss,
    })
}

/// `$ANSIBLE_PLAYBOOK`, else `ansible-playbook` on `PATH`.
fn find_ansible() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ANSIBLE_PLAYBOOK") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        println!("baseline: ANSIBLE_PLAYBOOK={} is not a file", p.display());
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("ansible-playbook"))
        .find(|p| p.is_file())
}

fn runner_playbook(n: usize) -> String {
    let mut s = String::from(
        "version: 1\nname: bench\nplugins:\n  echo: { uses: echo }\nstages:\n  - id: s\n    steps:\n",
    );
    for i in 1..=n {
        let _ = writeln!(
            s,
            "      - {{ id: s{i:04}, uses: echo, with: {{ message: \"step {i}\" }} }}"
        );
    }
    s
}

fn ansible_playbook(n: usize) -> String {
    let mut s =
        String::from("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n");
    for i in 1..=n {
        let _ = writeln!(s, "    - debug: msg=\"step {i}\"");
    }
    s
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
