//! Hostile plugins against the `process` capability: a harmless grant must not
//! become native code through the environment, a planted link must not move the
//! working directory, and nothing a program starts may outlive it.

use super::*;
use runner::caps::process::ProcessGrant;
use runner::playbook::model::{ProcessEntry, ProcessRule};

fn process_granted(entries: &[ProcessEntry]) -> Granted {
    Granted {
        process: ProcessGrant::new(entries),
        ..granted(&[])
    }
}

fn rule(run: &str, env: &[&str]) -> ProcessEntry {
    ProcessEntry::Rule(ProcessRule {
        run: run.into(),
        env: env.iter().map(|e| e.to_string()).collect(),
    })
}

/// A folder of this test's own, outside every grant.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("process-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each variable that turns a granted `true`, `sh -c true` or `git --version`
/// into code of the plugin's choosing, or a write outside every grant, is refused
/// before the program starts, and nothing ran.
#[test]
fn the_environment_cannot_turn_a_grant_into_code() {
    let out = scratch("env");
    let marker = out.join("pwned");
    let m = marker.display().to_string();
    let grants = process_granted(&["true".into(), "sh -c true".into(), "git --version".into()]);
    // (variable, value, program, args): each is how that family gets code run.
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        ("LD_PRELOAD", "./evil.so".into(), "true", vec![]),
        ("LD_LIBRARY_PATH", ".".into(), "true", vec![]),
        ("LD_AUDIT", "./evil.so".into(), "true", vec![]),
        ("GCONV_PATH", ".".into(), "true", vec![]),
        ("GIT_CONFIG_COUNT", "1".into(), "git", vec!["--version"]),
        (
            "GIT_CONFIG_PARAMETERS",
            format!("'core.pager'='touch {m}'"),
            "git",
            vec!["--version"],
        ),
        ("GIT_TRACE", m.clone(), "git", vec!["--version"]),
        ("BASH_ENV", "./evil.sh".into(), "sh", vec!["-c", "true"]),
        ("ENV", "./evil.sh".into(), "sh", vec!["-c", "true"]),
        ("PYTHONSTARTUP", "./evil.py".into(), "true", vec![]),
        ("PYTHONPATH", ".".into(), "true", vec![]),
        ("NODE_OPTIONS", "--require ./evil.js".into(), "true", vec![]),
        ("PERL5OPT", "-Mevil".into(), "true", vec![]),
        ("PATH", ".".into(), "sh", vec!["-c", "true"]),
        ("HOME", ".".into(), "git", vec!["--version"]),
    ];
    for (name, value, program, args) in cases {
        let f = failure(run_with(
            "process-abuse",
            json!({
                "program": program,
                "args": args,
                "env": { name: value },
                "files": { "evil.sh": format!("touch {m}\n") }
            }),
            limits(5_000, 64),
            grants.clone(),
        ));
        let StepFailure::Denied(message) = &f else {
            panic!("{name}: {f:?}");
        };
        let expected = if name.starts_with("LD_") || name == "GCONV_PATH" {
            format!("environment variable `{name}` is never passed to a program")
        } else {
            format!(
                "environment variable `{name}` of `{program}` is not granted to plugin `hostile`"
            )
        };
        assert!(message.starts_with(&expected), "{name}: {message}");
        assert!(
            !marker.exists(),
            "{name}: the program ran the plugin's code"
        );
    }
}

/// The control case: a variable granted by the entry reaches the program, and
/// only what the plugin set is there.
#[test]
fn a_granted_variable_reaches_the_program_and_nothing_else_does() {
    let r = run_with(
        "process-abuse",
        json!({
            "program": "sh",
            "args": ["-c", "env | sort"],
            "env": { "CI": "true", "LANG": "C.UTF-8" }
        }),
        limits(5_000, 64),
        process_granted(&[rule("sh", &["CI"])]),
    );
    let out = r.outcome.expect("granted");
    let env = out.outputs["stdout"].as_str().unwrap();
    let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    // `sh` itself adds PWD (and dash may add OLDPWD); nothing comes from the runner.
    let names: Vec<&str> = names
        .into_iter()
        .filter(|n| !["PWD", "OLDPWD", "SHLVL", "_"].contains(n))
        .collect();
    assert_eq!(names, ["CI", "LANG"], "{env}");
}

/// A grant of a loader variable, by name or pattern, grants nothing.
#[test]
fn a_loader_variable_stays_refused_even_when_granted() {
    let f = failure(run_with(
        "process-abuse",
        json!({ "program": "true", "env": { "LD_PRELOAD": "./x.so" } }),
        limits(5_000, 64),
        process_granted(&[rule("true", &["LD_PRELOAD", "LD_*", "L*"])]),
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.starts_with("environment variable `LD_PRELOAD` is never passed to a program")),
        "{f:?}"
    );
}

/// A link the plugin planted in its own working directory or in a granted `rw`
/// folder does not move a program's working directory out of them.
#[test]
fn a_planted_link_does_not_move_the_working_directory() {
    // In the step's working directory.
    let f = failure(run_with(
        "process-abuse",
        json!({
            "program": "sh",
            "args": ["-c", "pwd"],
            "links": { "up": "../../../../../../../../../../etc" },
            "cwd": "up"
        }),
        limits(5_000, 64),
        process_granted(&["sh".into()]),
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.starts_with("working directory `") && m.contains("/up`, a symbolic link; links are not followed")),
        "{f:?}"
    );
    // In a granted folder, deeper down.
    let base = scratch("cwd");
    std::fs::create_dir_all(base.join("work")).unwrap();
    let g = Granted {
        fs: runner::caps::fs::FsGrant::from_playbook(
            &base,
            &[runner::playbook::model::FsGrant {
                path: "work".into(),
                access: runner::playbook::model::FsAccess::Rw,
            }],
        ),
        ..process_granted(&["sh".into()])
    };
    let f = failure(run_with(
        "process-abuse",
        json!({
            "program": "sh",
            "args": ["-c", "pwd"],
            "dirs": ["work/a"],
            "links": { "work/a/b": "../../../../../../../../../../.." },
            "cwd": "work/a/b"
        }),
        limits(5_000, 64),
        g.clone(),
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.contains("work/a/b`, a symbolic link")),
        "{f:?}"
    );
    // The control case: the real folder works, and the program starts in it.
    let r = run_with(
        "process-abuse",
        json!({ "program": "sh", "args": ["-c", "pwd -P"], "dirs": ["work/c"], "cwd": "work/c" }),
        limits(5_000, 64),
        g,
    );
    let out = r.outcome.expect("a real folder");
    assert_eq!(
        out.outputs["stdout"].as_str().unwrap().trim(),
        base.canonicalize()
            .unwrap()
            .join("work/c")
            .display()
            .to_string()
    );
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    })
}

/// Waits (at most 10 s) for `pid` to be gone.
fn gone(pid: u32) -> bool {
    (0..200).any(|_| {
        let done = !alive(pid);
        if !done {
            std::thread::sleep(Duration::from_millis(50));
        }
        done
    })
}

fn pids(dir: &Path, files: &[&str]) -> Vec<(String, u32)> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f.to_string(), text.trim().parse().unwrap())
        })
        .collect()
}

/// A program's children die with it: when it exits, when its own timeout passes,
/// and when the step's deadline cancels the call.
#[test]
fn the_process_tree_ends_with_the_program_and_the_step() {
    let out = scratch("tree");
    let o = out.display();
    let script = format!("sleep 60 & echo $! > {o}/bg.pid; echo $$ > {o}/sh.pid; wait");
    // The program's own timeout.
    let r = run_with(
        "process-abuse",
        json!({ "program": "sh", "args": ["-c", script], "timeout_ms": 300 }),
        limits(10_000, 64),
        process_granted(&["sh".into()]),
    );
    assert_eq!(
        r.outcome.expect("the call returns").outputs["timed_out"],
        json!(true)
    );
    for (f, pid) in pids(&out, &["bg.pid", "sh.pid"]) {
        assert!(gone(pid), "{f} ({pid}) outlived the program's timeout");
    }
    // The step's deadline: the call is cancelled.
    let f = failure(run_with(
        "process-abuse",
        json!({ "program": "sh", "args": ["-c", script] }),
        limits(1_000, 64),
        process_granted(&["sh".into()]),
    ));
    assert_eq!(f, StepFailure::TimedOut(Duration::from_millis(1_000)));
    for (f, pid) in pids(&out, &["bg.pid", "sh.pid"]) {
        assert!(gone(pid), "{f} ({pid}) outlived the step");
    }
    // The program exits and leaves a child behind: killed, and its hold on the
    // output pipe does not keep the step waiting.
    let r = run_with(
        "process-abuse",
        json!({ "program": "sh", "args": ["-c", format!("sleep 60 & echo $! > {o}/bg.pid")] }),
        limits(10_000, 64),
        process_granted(&["sh".into()]),
    );
    assert_eq!(r.outcome.expect("ran").outputs["exit_code"], json!(0));
    for (f, pid) in pids(&out, &["bg.pid"]) {
        assert!(gone(pid), "{f} ({pid}) outlived its program");
    }
}

/// The attempt's working directory is fresh, private and unpredictable: a
/// random name under the temporary folder, mode 0700, owned by the runner's user.
#[test]
fn the_working_directory_is_fresh_and_private() {
    let r = run_with(
        "process-abuse",
        json!({ "program": "sh", "args": ["-c", "pwd -P; stat -c '%a %u' .; ls -A | wc -l"] }),
        limits(5_000, 64),
        process_granted(&["sh".into()]),
    );
    let out = r.outcome.expect("ran");
    let text = out.outputs["stdout"].as_str().unwrap().to_owned();
    let lines: Vec<&str> = text.lines().collect();
    let path = Path::new(lines[0]);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("runner-step-"), "{text}");
    let suffix = &name["runner-step-".len()..];
    // The old predictable form was `runner-step-<pid>-<counter>`.
    assert!(
        !suffix.starts_with(&format!("{}-", std::process::id())),
        "the name is predictable from the pid: {name}"
    );
    assert_eq!(
        path.parent(),
        Some(std::env::temp_dir().canonicalize().unwrap().as_path())
    );
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(lines[1], format!("700 {uid}"), "{text}");
    assert_eq!(lines[2].trim(), "0", "the folder was not empty: {text}");
}

/// Starts `runner exec` of a step whose `sh` starts a background `sleep`,
/// waits until both run, sends `signal` to the runner and waits for it; the
/// folder holds `sh.pid` and `bg.pid`.
fn runner_signalled(tag: &str, signal: i32) -> PathBuf {
    let dir = scratch(tag);
    let d = dir.display();
    let playbook = dir.join("p.yaml");
    std::fs::write(
        &playbook,
        format!(
            "version: 1\nname: tree\nplugins:\n  sh: {{ uses: exec, grants: {{ process: [sh] }} }}\nstages:\n  - id: s\n    steps:\n      - id: long\n        uses: sh\n        with: {{ program: sh, args: [\"-c\", \"sleep 60 & echo $! > {d}/bg.pid; echo $$ > {d}/sh.pid; wait\"] }}\n"
        ),
    )
    .unwrap();
    let mut runner = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["exec", playbook.to_str().unwrap(), "--output", "json"])
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start runner");
    // Wait (at most 60 s: the first run compiles the plugin) for both programs.
    let started = (0..1200).any(|_| {
        let both = dir.join("bg.pid").exists() && dir.join("sh.pid").exists();
        if !both {
            std::thread::sleep(Duration::from_millis(50));
        }
        both
    });
    if !started {
        let _ = runner.kill();
        panic!("the step's programs did not start");
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: plain FFI call sending a signal to our own child.
    unsafe { libc::kill(runner.id() as i32, signal) };
    let status = runner.wait().expect("runner ends");
    assert!(!status.success(), "{status:?}");
    dir
}

/// When the runner itself is stopped (SIGTERM, as a CI job's cancel sends), the
/// programs its steps started and what they started end with it.
#[test]
fn the_process_tree_ends_when_the_runner_is_stopped() {
    let dir = runner_signalled("sigterm", libc::SIGTERM);
    for (f, pid) in pids(&dir, &["bg.pid", "sh.pid"]) {
        assert!(gone(pid), "{f} ({pid}) outlived the runner");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A runner killed outright (SIGKILL) runs no code: the program it started gets
/// SIGKILL from the kernel (parent-death signal). What that program started in
/// turn is not followed (docs/security.md, known gaps); it is cleaned up here.
#[test]
fn the_program_dies_with_a_killed_runner() {
    let dir = runner_signalled("sigkill", libc::SIGKILL);
    let found = pids(&dir, &["sh.pid", "bg.pid"]);
    let (sh, bg) = (found[0].1, found[1].1);
    let died = gone(sh);
    // SAFETY: plain FFI call; the leftover `sleep` is this test's own grandchild.
    unsafe { libc::kill(bg as i32, libc::SIGKILL) };
    assert!(died, "the step's program ({sh}) outlived a killed runner");
    let _ = std::fs::remove_dir_all(&dir);
}
