//! The default [`Approvals`] store: a mailbox of files under the state
//! directory.
//!
//! Why a mailbox of files: the person (or CI job) who approves is rarely the process
//! that runs the playbook. A run started from a pager alert runs without a terminal,
//! and the tech lead answers from their own shell, or a chat bot answers from a CI
//! job on the same machine. A directory under the state dir is something all of
//! them can reach with no daemon, no socket and no port to secure beyond file
//! permissions, and what is left in it afterwards is the evidence of who approved,
//! when and why.
//!
//! Layout: `<state>/approvals/<run_id>/<step>.request.json` says the run is waiting
//! (written by [`Mailbox::open`], removed by [`Mailbox::close`]); every answer is its
//! own file `<step>.decision.<nanos>-<pid>-<seq>.json`, so two people answering at the
//! same moment never overwrite each other, and the names sort oldest first.
//!
//! Every file is written to a temporary name in the same directory and renamed into
//! place: a rename is atomic, so a reader sees the whole file or none of it, never a
//! half-written one. The waiting run polls the directory (every 200 ms) instead of
//! using inotify and friends: it is portable, works on network file systems, and
//! the latency is nothing next to a human's.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Approvals, Decision, IdKind, Request, check_id};

/// The approval files of one run: `<state>/approvals/<run_id>/`.
#[derive(Debug, Clone)]
pub struct Mailbox {
    dir: PathBuf,
    run_id: String,
}

impl Mailbox {
    /// The mailbox of `run_id` under `state_dir`. Nothing is created until
    /// [`open`](Self::open); ids are checked when used.
    pub fn new(state_dir: &Path, run_id: &str) -> Mailbox {
        Mailbox {
            dir: state_dir.join("approvals").join(run_id),
            run_id: run_id.to_owned(),
        }
    }

    /// The directory of this run's approvals.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Announces that the run waits for `request.step`: writes
    /// `<step>.request.json` atomically, creating the directories. Open a step once
    /// per run: decisions already recorded for it would count.
    pub fn open(&self, request: &Request) -> io::Result<()> {
        check_id(&self.run_id, IdKind::Run).map_err(invalid_input)?;
        check_id(&request.step, IdKind::Step).map_err(invalid_input)?;
        fs::create_dir_all(&self.dir)?;
        let text = serde_json::to_string_pretty(request).map_err(io::Error::other)?;
        write_atomic(&self.request_path(&request.step), text.as_bytes())
    }

    /// Every decision recorded for `step`, oldest first. Files that cannot be read
    /// or parsed are skipped; no mailbox yet means no decisions.
    pub fn decisions(&self, step: &str) -> io::Result<Vec<Decision>> {
        check_id(&self.run_id, IdKind::Run).map_err(invalid_input)?;
        check_id(step, IdKind::Step).map_err(invalid_input)?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = format!("{step}.decision.");
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".json"))
            .collect();
        // Zero-padded nanoseconds first in the name: name order is time order.
        names.sort();
        Ok(names
            .iter()
            .filter_map(|n| {
                let text = fs::read(self.dir.join(n)).ok()?;
                serde_json::from_slice(&text).ok()
            })
            .collect())
    }

    /// Records `decision` for `step` as is, without the checks of [`submit`];
    /// returns the file written.
    pub fn record(&self, step: &str, decision: &Decision) -> io::Result<PathBuf> {
        check_id(&self.run_id, IdKind::Run).map_err(invalid_input)?;
        check_id(step, IdKind::Step).map_err(invalid_input)?;
        fs::create_dir_all(&self.dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "{step}.decision.{nanos:020}-{}-{:06}.json",
            std::process::id(),
            next_seq()
        );
        let path = self.dir.join(name);
        let text = serde_json::to_string_pretty(decision).map_err(io::Error::other)?;
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// The run no longer waits for `step`: removes the request. Decisions stay, as
    /// the record of who decided.
    pub fn close(&self, step: &str) {
        if check_id(&self.run_id, IdKind::Run).is_ok() && check_id(step, IdKind::Step).is_ok() {
            let _ = fs::remove_file(self.request_path(step));
        }
    }

    /// The request the run waits on for `step`, if it waits.
    pub fn request(&self, step: &str) -> Option<Request> {
        check_id(step, IdKind::Step).ok()?;
        let text = fs::read(self.request_path(step)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The steps the run waits on, sorted.
    pub fn pending(&self) -> Vec<String> {
        let mut steps: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".request.json").map(str::to_owned))
            .filter(|s| check_id(s, IdKind::Step).is_ok())
            .collect();
        steps.sort();
        steps
    }

    fn request_path(&self, step: &str) -> PathBuf {
        self.dir.join(format!("{step}.request.json"))
    }
}

/// [`Approvals`] as the files of [`Mailbox`] under a state directory.
#[derive(Debug, Clone)]
pub struct FileApprovals {
    state_dir: PathBuf,
}

impl FileApprovals {
    pub fn new(state_dir: &Path) -> FileApprovals {
        FileApprovals {
            state_dir: state_dir.to_owned(),
        }
    }

    fn mailbox(&self, run_id: &str) -> Mailbox {
        Mailbox::new(&self.state_dir, run_id)
    }
}

impl Approvals for FileApprovals {
    fn open(&self, request: &Request) -> io::Result<()> {
        self.mailbox(&request.run_id).open(request)
    }

    fn request(&self, run_id: &str, step: &str) -> Option<Request> {
        check_id(run_id, IdKind::Run).ok()?;
        self.mailbox(run_id).request(step)
    }

    fn pending(&self, run_id: &str) -> Vec<String> {
        if check_id(run_id, IdKind::Run).is_err() {
            return Vec::new();
        }
        self.mailbox(run_id).pending()
    }

    fn known(&self, run_id: &str) -> Result<(), String> {
        check_id(run_id, IdKind::Run)?;
        let mailbox = self.mailbox(run_id);
        if mailbox.dir.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "no run `{run_id}` is waiting for an approval (nothing in {}); check the run id in the run's output, and that RUNNER_STATE_DIR is the same as the run's",
                mailbox.dir.display()
            ))
        }
    }

    fn decisions(&self, run_id: &str, step: &str) -> io::Result<Vec<Decision>> {
        self.mailbox(run_id).decisions(step)
    }

    fn record(&self, run_id: &str, step: &str, decision: &Decision) -> io::Result<()> {
        let mailbox = self.mailbox(run_id);
        mailbox.record(step, decision).map(|_| ()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot record the decision in {}: {e}",
                    mailbox.dir.display()
                ),
            )
        })
    }

    fn close(&self, run_id: &str, step: &str) {
        self.mailbox(run_id).close(step);
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

pub(super) fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename, so that readers see the old file or the new one, never a partial one.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A leading dot: never mistaken for a request or a decision by a reader.
    let tmp = dir.join(format!(".{name}.{}-{}.tmp", std::process::id(), next_seq()));
    let written = (|| {
        let mut file = fs::File::create_new(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
