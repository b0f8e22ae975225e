//! Measuring helpers shared by the benchmarks.

#![allow(dead_code)] // each benchmark uses a subset

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Best wall time and lowest peak RSS (bytes) of `exe args` over `runs` runs,
/// checking the exit code each time. The child is reaped by `wait4`, which also
/// reports its peak RSS, rather than by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn child(
    exe: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
    expect: i32,
    runs: usize,
) -> (Duration, u64) {
    let mut best = (Duration::MAX, u64::MAX);
    for _ in 0..runs {
        let start = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn runner");
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: plain FFI call with valid out-pointers; `child` is not waited on elsewhere.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let elapsed = start.elapsed();
        assert_eq!(r, pid, "wait4 failed");
        assert!(libc::WIFEXITED(status), "runner did not exit normally");
        assert_eq!(
            libc::WEXITSTATUS(status),
            expect,
            "unexpected exit code for {args:?}"
        );
        let rss = usage.ru_maxrss as u64 * 1024; // kilobytes on Linux
        best = (best.0.min(elapsed), best.1.min(rss));
    }
    best
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}
