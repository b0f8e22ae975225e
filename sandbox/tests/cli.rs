//! `runner-sandbox up` as a person runs it: ready with an environment file, torn down
//! by SIGTERM, and its children gone even when it is killed with SIGKILL.
//!
//! Needs what tests/sandbox.rs needs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("runner-sandbox-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts `runner-sandbox up --dir DIR` and waits for its environment file.
fn up(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner-sandbox"))
        .args(["up", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let env_file = dir.join("environment.yaml");
    let start = Instant::now();
    while !env_file.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("runner-sandbox up exited early ({status})");
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no environment file after {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, std::fs::read_to_string(env_file).unwrap())
}

/// The ports the environment file names (`127.0.0.1:PORT`).
fn ports(env: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = env
        .split("127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn listening(ports: &[u16]) -> Vec<u16> {
    ports
        .iter()
        .copied()
        .filter(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        .collect()
}

fn kill(child: &Child, signal: libc::c_int) {
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "still running {DEADLINE:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_tears_the_sandbox_down_and_sigkill_takes_the_children_along() {
    let (term_dir, kill_dir) = (scratch("term"), scratch("kill"));
    // Two sandboxes at once: each in its own folder, on its own ports.
    let (mut a, env_a) = up(&term_dir);
    let (mut b, env_b) = up(&kill_dir);
    let (ports_a, ports_b) = (ports(&env_a), ports(&env_b));
    assert!(ports_a.len() >= 5, "{env_a}");
    assert_eq!(listening(&ports_a), ports_a, "{env_a}");
    assert_eq!(listening(&ports_b), ports_b, "{env_b}");

    // A second sandbox in a folder that one already uses is refused.
    let refused = Command::new(env!("CARGO_BIN_EXE_runner-sandbox"))
        .args(["up", "--dir"])
        .arg(&term_dir)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("another sandbox"), "{stderr}");

    kill(&a, libc::SIGTERM);
    kill(&b, libc::SIGKILL);
    assert_eq!(wait(&mut a).code(), Some(0));
    let mut stdout = String::new();
    std::io::Read::read_to_string(a.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("sandbox ready in"), "{stdout}");
    assert!(
        stdout.contains("runner exec playbooks/hotfix.yaml --env"),
        "{stdout}"
    );
    wait(&mut b);

    // SIGTERM: everything stopped, the runtime files removed, the git remote and the
    // notification log kept.
    assert_eq!(listening(&ports_a), Vec::<u16>::new());
    for gone in [
        "environment.yaml",
        "secrets.env",
        "kubeconfig",
        "sandbox.pid",
        "prometheus",
    ] {
        assert!(!term_dir.join(gone).exists(), "{gone} left behind");
    }
    assert!(term_dir.join("git/shop.git").is_dir());
    assert!(term_dir.join("notifications.jsonl").is_file());

    // SIGKILL: no clean-up ran, but the children (apiserver, etcd, Prometheus, the SMTP
    // sink) got the parent-death signal and the fronts died with the process.
    let start = Instant::now();
    loop {
        let open = listening(&ports_b);
        if open.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still listening: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its sandbox.pid is left behind; being stale, it does not stop the next start
    // in that folder (unit test `a_stale_pid_file_does_not_hold_the_folder`).
    assert!(kill_dir.join("sandbox.pid").exists());

    for dir in [term_dir, kill_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
