//! Running a granted program on the host (the `process` import).
//!
//! Why not `std::process`: WebAssembly has no processes. The runner starts the
//! program for the plugin, and only if the playbook granted it, with exactly the
//! arguments and environment given here (the host's environment is never passed
//! on), a working directory inside a granted path, and a timeout. Output beyond
//! the host's cap is dropped and flagged in [`Completed::truncated`].
//!
//! ```ignore
//! use runner_sdk::process::Command;
//! let done = Command::new("git").args(["rev-parse", "HEAD"]).cwd("repo").run()?;
//! if !done.success() {
//!     return Err(StepError::failed(done.stderr_lossy()));
//! }
//! ```
//!
//! Declare [`crate::capability::PROCESS`] in [`crate::Info::capabilities`].

use std::borrow::Cow;
use std::time::Duration;

use crate::StepError;
use crate::bindings::runner::plugin::process as wit;

/// A program to run: built with chained calls, then [`Command::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: String,
    args: Vec<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
}

impl Command {
    /// Runs `program`: a name looked up on the host's `PATH`, or an absolute path.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            timeout: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The working directory; it must be inside a granted path. Default: the
    /// step's working directory.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets one environment variable. The program sees only the variables set
    /// here.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Kills the program after `timeout` (then [`Completed::timed_out`] is set).
    /// The step's own timeout applies in any case.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the program to completion; see [`run`].
    pub fn run(&self) -> Result<Completed, StepError> {
        run(self)
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn to_wit(&self) -> wit::Command {
        wit::Command {
            program: self.program.clone(),
            args: self.args.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// A program that ran (whatever its exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The exit code; `None` if the program was killed by a signal or timed out.
    pub exit_code: Option<i32>,
    /// What it wrote to stdout (up to the host's cap).
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (up to the host's cap).
    pub stderr: Vec<u8>,
    /// It was killed because its timeout passed.
    pub timed_out: bool,
    /// Output beyond the host's cap was dropped.
    pub truncated: bool,
}

impl Completed {
    /// It exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// stdout as text, invalid UTF-8 replaced by U+FFFD.
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text, invalid UTF-8 replaced by U+FFFD.
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Runs `command` to completion.
///
/// `Ok` means the program ran, even if it failed: check [`Completed::success`].
/// A command the runner refused (program not granted, cwd outside the granted
/// paths, capability not declared) is [`StepError::Denied`] with the host's
/// message.
pub fn run(command: &Command) -> Result<Completed, StepError> {
    #[cfg(target_arch = "wasm32")]
    {
        let done = wit::run(&command.to_wit()).map_err(StepError::Denied)?;
        Ok(Completed {
            exit_code: done.exit_code,
            stdout: done.stdout,
            stderr: done.stderr,
            timed_out: done.timed_out,
            truncated: done.truncated,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(StepError::Denied(format!(
            "process `{}`: not running inside the runner",
            command.program
        )))
    }
}
