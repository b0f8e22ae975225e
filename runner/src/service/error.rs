//! The run service's errors: one enum for preparing a run, one for running it.
//!
//! Each variant is a reason a front end treats differently: the CLI turns a
//! [`RunError`] into an exit code (2 for everything refused before the first
//! step, 3 for a busy concurrency group) and prints its text; a server turns it
//! into an HTTP status. The texts say what is wrong and what to do, as the CLI
//! has always printed them.

use std::path::PathBuf;

use crate::engine::lock::Holder;
use crate::playbook::LoadError;

/// Why a playbook, its environment file or its inputs cannot make a plan.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The playbook or the environment file cannot be read, or is invalid:
    /// each problem has its place in the file.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Problems said of the playbook file as a whole (inputs, secrets, plugins
    /// that cannot be loaded or reached).
    #[error("{}", lines.join("\n"))]
    Invalid { file: PathBuf, lines: Vec<String> },
    /// The environment file's input rules do not fit the playbook.
    #[error("{}", .0.join("\n"))]
    Environment(Vec<String>),
}

/// Why a run did not start (nothing ran), or could not be continued.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// No state directory: locks, approvals and artifacts have no place.
    #[error("no state directory: set RUNNER_STATE_DIR to an absolute path (or HOME)")]
    NoStateDir,
    /// No journal path could be made from the settings.
    #[error(
        "no place for the run journal: set RUNNER_STATE_DIR (an absolute path), RUNNER_JOURNAL or --journal"
    )]
    NoJournal,
    /// The journal cannot be opened, read or written.
    #[error("{0}")]
    Journal(String),
    /// The WebAssembly runtime cannot start.
    #[error("cannot start the WebAssembly runtime: {0}")]
    Runtime(String),
    /// Another runner carries the run on.
    #[error(
        "run {run_id} is still running{}; only one runner may carry a run on: wait for it to end, or stop it (Ctrl-C or `kill` of that process) and resume it then",
        holder_text(.holder.as_ref())
    )]
    StillRunning {
        run_id: String,
        holder: Option<Holder>,
    },
    /// The concurrency group is held and the playbook says not to wait.
    #[error("{0}")]
    GroupBusy(String),
    /// A lock file could not be used.
    #[error("{0}")]
    Lock(String),
    /// The run could not be begun in the state directory or the journal.
    #[error("cannot start run {run_id}: {error}")]
    Start { run_id: String, error: String },
    /// No such run in the journal.
    #[error("no run `{run_id}` in the journal `{journal}`; `runner runs list` shows the runs")]
    NotFound { run_id: String, journal: String },
    /// The run's lease went to another runner (this one was paused or cut
    /// off for longer than the lease): it stopped where it was, without its
    /// handlers, and wrote nothing more; the new owner carries it on.
    #[error(
        "run {run_id} was taken over by another runner while this one could not renew its lease; this runner stopped it here without running its handlers (the new owner runs them) and wrote nothing more"
    )]
    TakenOver { run_id: String },
    /// The run cannot be resumed or re-run as asked; the text says why and
    /// what to do instead.
    #[error("{0}")]
    Refused(String),
}

fn holder_text(holder: Option<&Holder>) -> String {
    holder.map_or_else(String::new, |h| {
        let host = h
            .host
            .as_ref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        format!(" (pid {}{host}, since {})", h.pid, h.since)
    })
}
