//! The sandbox's processes (the control plane's, Prometheus, the SMTP sink): spawned
//! so that they die with the process that started them, logged to files, killed when
//! dropped.
//!
//! Linux sends the parent-death signal (`PR_SET_PDEATHSIG`) when the *thread* that
//! forked a child exits, not the process; so every child is forked by one thread
//! that never exits, and the signal comes exactly when this process ends, however it
//! ends, SIGKILL included (the shared control plane is a static and is never
//! dropped).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};

/// A group of processes, killed on drop.
#[derive(Default)]
pub struct Processes {
    children: Vec<(String, Child)>,
}

impl Processes {
    /// Starts `cmd` as `name`, its output going to `dir/<name>.log`.
    pub fn spawn(&mut self, dir: &Path, name: &str, mut cmd: Command) -> Result<(), String> {
        let log = fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .current_dir(dir);
        let child = spawn_with_parent_death(cmd).map_err(|e| format!("starting {name}: {e}"))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// The name of a process that has exited, if any.
    pub fn exited(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|(name, child)| {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| format!("{name} ({status})"))
        })
    }

    /// The end of every process's log, for failure messages.
    pub fn tails(&self, dir: &Path) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let _ = write!(
                out,
                "--- {name}.log (last lines)\n{}\n",
                tail(&dir.join(format!("{name}.log")))
            );
        }
        out
    }

    /// Kills the processes, youngest first.
    pub fn kill_all(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Spawns `cmd` so that it gets SIGKILL when this process exits: the spawn happens on
/// one thread that lives as long as the process, because the parent-death signal
/// fires when the spawning thread exits, not the process.
fn spawn_with_parent_death(mut cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Unreachable while SPAWNER holds the sender; never exit regardless.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the child-spawner thread");
        tx
    });
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("child-spawner thread gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("child-spawner thread gone"))?
}

/// The last 30 lines of a log file (empty when unreadable).
pub fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Removes `dir` (certificates, logs, etcd's data with its 128 MB of preallocated
/// WAL) about a second after this process exits, however it exits: a small shell
/// outlives it, polling for its pid. Never dropped, the shared control plane cannot
/// clean up after itself.
pub fn remove_after_exit(dir: &Path) -> Result<(), String> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf -- "$2""#)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the clean-up shell: {e}"))
}
