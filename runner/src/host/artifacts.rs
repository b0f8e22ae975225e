//! Artifacts: files a step leaves in its working directory for the run to keep
//! (evidence, reports, logs).
//!
//! Threat: the plugin (or a program it was granted) names as an artifact a path
//! that leads out of its working directory, a symbolic link to a host file, or
//! files so large or so many that copying them exhausts the runner's disk or time;
//! a program it started may still be writing a file while the runner copies it.
//! What must never happen: a host file outside the working directory is copied;
//! the host does unbounded work for a plugin; a granted secret reaches the
//! record or the disk through an artifact (its name and media type go through
//! `host::text::from_plugin`; a path that contains a secret value is refused,
//! since the runner would keep the file under that name), nor a control
//! character through its path (refused too).
//!
//! What is enforced, in this order:
//!
//! - When the plugin returns ([`check`]): at most [`MAX_ARTIFACTS`] artifacts;
//!   each name, path and media type at most [`MAX_ARTIFACT_TEXT`] bytes; each
//!   path relative to the working directory, without `..`, with no secret value
//!   and no control character. Names and media types are redacted and made
//!   printable.
//! - Before anything is copied ([`keep`]): each artifact is a regular file, not a
//!   symbolic link, reached without leaving the working directory through one; it
//!   is opened without blocking and must be the file that was checked. The files'
//!   sizes are their logical sizes (`st_size`: a sparse file counts at its full
//!   length although it occupies little disk), and together they may total
//!   [`MAX_ARTIFACT_BYTES`]; the run's [`RunBudget`], shared by all steps of a run,
//!   must have room for them ([`MAX_RUN_ARTIFACT_BYTES`], [`MAX_RUN_ARTIFACTS`]).
//!   A refusal here writes nothing.
//! - While copying (on a blocking thread, not the executor's): the copy counts
//!   against the step's deadline (what is left of its `timeout` after the plugin
//!   returned) and is checked against it before each chunk of [`CHUNK_BYTES`]; a
//!   file whose size or modification time changes while it is copied is refused,
//!   and no more than its checked size plus one byte is read from it.
//! - Each file is copied to a hidden temporary name beside its target and renamed
//!   into place only when every copy of the attempt succeeded. On any failure the
//!   temporary files are removed (and the folders this left empty), what an
//!   earlier attempt or measurement kept at the same paths stays as it was, and
//!   the attempt's share of the run's budget is given back; the step fails, as
//!   `timeout` when the deadline passed, else as `bad-output`.
//!
//! The budget counts what was copied, not what is on disk at the end: a watch
//! step whose measurements keep the same file again counts it each time.

use super::bindings::runner::plugin::types::Artifact as Declared;
use super::failure::StepFailure;
use crate::caps::text::printable;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Where the plugin left it, relative to its working directory.
    pub path: String,
    pub media_type: String,
    /// Where the runner kept it (the working directory is deleted after the
    /// attempt); `None` when the run keeps no artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<PathBuf>,
}

/// Most artifacts one step attempt may return. Evidence that needs more files
/// belongs in one archive.
pub const MAX_ARTIFACTS: usize = 64;
/// Most bytes the artifacts of one step attempt may total, by logical size
/// (a sparse file counts at its full length). Also the largest single artifact.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;
/// Most bytes all steps of one run may keep (see [`RunBudget`]).
pub const MAX_RUN_ARTIFACT_BYTES: u64 = 1 << 30;
/// Most artifacts all steps of one run may keep (see [`RunBudget`]).
pub const MAX_RUN_ARTIFACTS: usize = 1024;
/// Longest name, path or media type of one artifact, in bytes: they go to the
/// journal, the reports and the terminal.
pub const MAX_ARTIFACT_TEXT: usize = 1 << 10;
/// The copy checks the deadline before each chunk of this many bytes (a few
/// milliseconds of disk work).
pub const CHUNK_BYTES: u64 = 4 << 20;

/// What the steps of one run may still keep. One budget is shared by every step
/// attempt of a run (the engine hands the same one to each); a [`Granted`] made
/// on its own gets a fresh one, so a lone attempt is bounded by the per-run caps
/// too.
///
/// [`Granted`]: super::state::Granted
#[derive(Debug)]
pub struct RunBudget {
    max_bytes: u64,
    max_files: usize,
    kept: std::sync::Mutex<Kept>,
}

/// What a run has kept so far (or reserved for a copy under way).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub bytes: u64,
    pub files: usize,
}

impl Default for RunBudget {
    fn default() -> RunBudget {
        RunBudget::new(MAX_RUN_ARTIFACT_BYTES, MAX_RUN_ARTIFACTS)
    }
}

/// Why a reservation does not fit in a [`RunBudget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// Already kept by earlier steps of the run.
    pub kept: Kept,
    /// Asked for by this step.
    pub asked: Kept,
    pub max_bytes: u64,
    pub max_files: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kept.files.saturating_add(self.asked.files) > self.max_files {
            write!(
                f,
                "the run has kept {} artifacts and this step returned {}; the limit is {} artifacts per run",
                self.kept.files, self.asked.files, self.max_files
            )
        } else {
            write!(
                f,
                "the run has kept {} of artifacts and this step's total {}; the limit is {} per run",
                size(self.kept.bytes),
                size(self.asked.bytes),
                size(self.max_bytes)
            )
        }
    }
}

impl RunBudget {
    /// A budget of `max_bytes` and `max_files` for one run.
    pub fn new(max_bytes: u64, max_files: usize) -> RunBudget {
        RunBudget {
            max_bytes,
            max_files,
            kept: Default::default(),
        }
    }

    /// What the run has kept (or reserved) so far.
    pub fn kept(&self) -> Kept {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The guarded value is two counters, consistent after every update: a
        // panic elsewhere cannot leave it half-written.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets `files` and `bytes` aside, or says why they do not fit. The
    /// reservation is given back when dropped, unless [`Reservation::commit`]ted.
    pub fn reserve(&self, files: usize, bytes: u64) -> Result<Reservation<'_>, OverBudget> {
        let mut kept = self.lock();
        let asked = Kept { bytes, files };
        let fits = kept
            .bytes
            .checked_add(bytes)
            .is_some_and(|b| b <= self.max_bytes)
            && kept
                .files
                .checked_add(files)
                .is_some_and(|n| n <= self.max_files);
        if !fits {
            return Err(OverBudget {
                kept: *kept,
                asked,
                max_bytes: self.max_bytes,
                max_files: self.max_files,
            });
        }
        kept.bytes += bytes;
        kept.files += files;
        Ok(Reservation {
            budget: self,
            asked,
            committed: false,
        })
    }
}

/// Room set aside in a [`RunBudget`] for one step's copy.
#[derive(Debug)]
pub struct Reservation<'b> {
    budget: &'b RunBudget,
    asked: Kept,
    committed: bool,
}

impl Reservation<'_> {
    /// The files were kept: the room stays used.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let mut kept = self.budget.lock();
            kept.bytes = kept.bytes.saturating_sub(self.asked.bytes);
            kept.files = kept.files.saturating_sub(self.asked.files);
        }
    }
}

/// `bytes` for a person: whole MiB exactly, else MiB with one decimal, else bytes.
fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// What to do about artifacts that are too many or too large.
const SMALLER: &str =
    "write fewer or smaller artifacts (compress them, or keep only what the post-mortem needs)";

/// Checks the artifacts a plugin declared: at most [`MAX_ARTIFACTS`], short
/// texts, relative paths inside its working directory that contain no secret
/// value and no [`hidden`](crate::caps::text::hidden) character; names and media
/// types redacted and made printable
/// ([`from_plugin`](crate::caps::text::from_plugin)). A refusal quotes what the plugin
/// sent as it is: the failure's message is cleaned like any other
/// (`runtime::redact_failure`).
pub(super) fn check(
    redactor: &crate::caps::text::redact::Redactor,
    artifacts: Vec<Declared>,
) -> Result<Vec<Artifact>, StepFailure> {
    if artifacts.len() > MAX_ARTIFACTS {
        return Err(StepFailure::BadOutput(format!(
            "the step returned {} artifacts; the limit is {MAX_ARTIFACTS} artifacts per step: {SMALLER}, e.g. one archive of them",
            artifacts.len()
        )));
    }
    let mut checked = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        for (what, text) in [
            ("name", &a.name),
            ("path", &a.path),
            ("media type", &a.media_type),
        ] {
            if text.len() > MAX_ARTIFACT_TEXT {
                let start: String = printable(text).chars().take(40).collect();
                return Err(StepFailure::BadOutput(format!(
                    "an artifact's {what} (`{start}...`) is {} bytes; the limit is {MAX_ARTIFACT_TEXT} bytes",
                    text.len()
                )));
            }
        }
        let path = Path::new(&a.path);
        let inside = path.is_relative()
            && path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if !inside {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` points at `{}`; artifact paths must be relative to the step's working directory, without `..`",
                a.name, a.path
            )));
        }
        if redactor.finds(&a.path) {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` has a path that contains the value of a granted secret (`{}`); the runner keeps artifacts under their path, so name the file otherwise",
                a.name, a.path
            )));
        }
        if a.path.chars().any(crate::caps::text::hidden) {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` has a path with control characters (`{}`); the runner shows artifact paths as they are, so name the file otherwise",
                a.name, a.path
            )));
        }
        checked.push(Artifact {
            name: crate::caps::text::from_plugin(redactor, &a.name, MAX_ARTIFACT_TEXT),
            path: a.path,
            media_type: crate::caps::text::from_plugin(redactor, &a.media_type, MAX_ARTIFACT_TEXT),
            stored: None,
        });
    }
    Ok(checked)
}

/// Why a successful attempt's artifacts were not kept.
#[derive(Debug)]
pub(super) struct NotKept {
    /// What the attempt fails with.
    pub failure: StepFailure,
    /// A line for the step's log that says what the failure cannot (why a
    /// step whose plugin returned in time timed out).
    pub log: Option<String>,
}

impl From<StepFailure> for NotKept {
    fn from(failure: StepFailure) -> NotKept {
        NotKept { failure, log: None }
    }
}

/// Copies each artifact out of the working directory (deleted after the attempt)
/// into `dest`, within the limits of the module doc: by `deadline` (the step's
/// `timeout`, counted from the attempt's start; `None`: a timeout too long to
/// count), and within `budget`, the run's. All or nothing: on failure nothing of
/// this attempt stays in `dest`.
pub(super) async fn keep(
    workdir: &Path,
    dest: &Path,
    artifacts: &mut [Artifact],
    budget: Arc<RunBudget>,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Result<(), NotKept> {
    if artifacts.is_empty() {
        return Ok(());
    }
    let (workdir, dest, mut owned) = (
        workdir.to_path_buf(),
        dest.to_path_buf(),
        artifacts.to_vec(),
    );
    // File I/O blocks: off the executor thread, so that the other steps, timers
    // and signals of the run are served meanwhile.
    let copied = tokio::task::spawn_blocking(move || {
        let mut expired = || deadline.is_some_and(|d| Instant::now() >= d);
        keep_blocking(&workdir, &dest, &mut owned, &budget, &mut expired).map(|()| owned)
    })
    .await;
    match copied {
        Ok(Ok(kept)) => {
            artifacts.clone_from_slice(&kept);
            Ok(())
        }
        Ok(Err(Stop::Refused(f))) => Err(f.into()),
        Ok(Err(Stop::Deadline {
            name,
            copied,
            total,
        })) => Err(NotKept {
            failure: StepFailure::TimedOut(timeout),
            log: Some(format!(
                "keeping the artifacts ran past the step's timeout of {} (the plugin had returned; stopped at artifact `{name}` after {} of {}, and removed what was copied): raise the step's `timeout`, or {SMALLER}",
                crate::playbook::scalars::format_duration(timeout),
                size(copied),
                size(total)
            )),
        }),
        Err(e) => {
            Err(StepFailure::Failed(format!("the copy of the artifacts stopped: {e}")).into())
        }
    }
}

/// Why [`keep_blocking`] stopped.
#[derive(Debug)]
enum Stop {
    Refused(StepFailure),
    /// The deadline passed after `copied` of `total` bytes, in artifact `name`.
    Deadline {
        name: String,
        copied: u64,
        total: u64,
    },
}

impl From<StepFailure> for Stop {
    fn from(f: StepFailure) -> Stop {
        Stop::Refused(f)
    }
}

/// A checked artifact, open, with what it was when checked.
struct Source {
    file: std::fs::File,
    len: u64,
    modified: (i64, i64),
    target: PathBuf,
}

fn refuse(a: &Artifact, why: &str) -> StepFailure {
    StepFailure::BadOutput(format!(
        "artifact `{}` at `{}` {why}",
        a.name,
        printable(&a.path)
    ))
}

/// [`keep`] on a blocking thread; `expired` says when the deadline has passed
/// (a parameter so that tests can make it pass at a chosen point).
fn keep_blocking(
    workdir: &Path,
    dest: &Path,
    artifacts: &mut [Artifact],
    budget: &RunBudget,
    expired: &mut dyn FnMut() -> bool,
) -> Result<(), Stop> {
    let sources = open_all(workdir, dest, artifacts)?;
    let total = sources
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.len));
    if total > MAX_ARTIFACT_BYTES {
        let (largest, a) = sources
            .iter()
            .zip(artifacts.iter())
            .max_by_key(|(s, _)| s.len)
            .map(|(s, a)| (s.len, a.name.as_str()))
            .unwrap_or((0, ""));
        return Err(StepFailure::BadOutput(format!(
            "the step's {} artifacts total {} (the largest, `{a}`, is {}; sizes count in full even for sparse files); the limit is {} per step: {SMALLER}",
            sources.len(),
            size(total),
            size(largest),
            size(MAX_ARTIFACT_BYTES)
        ))
        .into());
    }
    let reservation = budget.reserve(sources.len(), total).map_err(|over| {
        StepFailure::BadOutput(format!(
            "the step's artifacts were not kept: {over}: {SMALLER}"
        ))
    })?;
    // Each file is copied to a temporary name beside its target and renamed into
    // place only once every copy succeeded: a failed attempt leaves what an
    // earlier attempt or measurement kept at the same path as it was.
    let mut written: Vec<PathBuf> = Vec::with_capacity(sources.len());
    let mut done = 0u64;
    for (s, a) in sources.iter().zip(artifacts.iter()) {
        match copy_one(s, a, &mut written, expired) {
            Ok(()) => done += s.len,
            Err(stop) => {
                remove(&written, dest);
                return Err(match stop {
                    Stop::Deadline { name, copied, .. } => Stop::Deadline {
                        name,
                        copied: done.saturating_add(copied),
                        total,
                    },
                    other => other,
                });
            }
        }
    }
    for (i, (s, a)) in sources.iter().zip(artifacts.iter()).enumerate() {
        if let Err(e) = std::fs::rename(&written[i], &s.target) {
            remove(&written[i..], dest);
            return Err(StepFailure::Failed(format!(
                "cannot keep artifact `{}` in `{}`: {e}",
                a.name,
                s.target.display()
            ))
            .into());
        }
    }
    reservation.commit();
    for (s, a) in sources.into_iter().zip(artifacts.iter_mut()) {
        a.stored = Some(s.target);
    }
    Ok(())
}

/// The temporary name a file is copied to before it is renamed to `target`: a
/// hidden sibling unique to this process and attempt.
fn partial(target: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial-{}-{n}", std::process::id()))
}

/// Opens every artifact and checks what it is, before anything is copied.
fn open_all(workdir: &Path, dest: &Path, artifacts: &[Artifact]) -> Result<Vec<Source>, Stop> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let root = workdir
        .canonicalize()
        .map_err(|e| StepFailure::Failed(format!("the working directory vanished: {e}")))?;
    let mut sources = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        let source = workdir.join(&a.path);
        let meta = std::fs::symlink_metadata(&source)
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(refuse(
                a,
                "is a symbolic link; artifacts must be regular files in the step's working directory",
            )
            .into());
        }
        if !meta.is_file() {
            return Err(refuse(a, "is not a regular file").into());
        }
        // A directory on the way may be a symbolic link that leads out.
        let real = source
            .canonicalize()
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if !real.starts_with(&root) {
            return Err(refuse(
                a,
                "leads out of the step's working directory through a symbolic link",
            )
            .into());
        }
        // Non-blocking: a FIFO swapped in since the check must not hang the open;
        // not following a final symbolic link; and then it must be the very file
        // checked above, or a program the step started is swapping files.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&real)
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        let opened = file
            .metadata()
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if !opened.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(refuse(
                a,
                "was replaced while it was being checked (a program the step started may still be running)",
            )
            .into());
        }
        sources.push(Source {
            file,
            len: opened.len(),
            modified: (opened.mtime(), opened.mtime_nsec()),
            target: dest.join(&a.path),
        });
    }
    Ok(sources)
}

/// Copies one checked file to a [`partial`] name beside its target, in chunks,
/// checking the deadline before each; records that name in `written` as soon
/// as it exists.
fn copy_one(
    s: &Source,
    a: &Artifact,
    written: &mut Vec<PathBuf>,
    expired: &mut dyn FnMut() -> bool,
) -> Result<(), Stop> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let cannot_keep = |e: std::io::Error| {
        StepFailure::Failed(format!(
            "cannot keep artifact `{}` in `{}`: {e}",
            a.name,
            s.target.display()
        ))
    };
    if let Some(parent) = s.target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            StepFailure::Failed(format!("cannot create `{}`: {e}", parent.display()))
        })?;
    }
    let temporary = partial(&s.target);
    // Recorded first, so that a failed open still has its folders removed.
    written.push(temporary.clone());
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&temporary)
        .map_err(cannot_keep)?;
    let changed = || {
        refuse(
            a,
            "changed while it was being kept (a program the step started may still be writing it); artifacts must be complete when the plugin returns",
        )
    };
    // Reading one byte past the checked size is enough to see that it grew.
    let mut copied = 0u64;
    loop {
        if expired() {
            return Err(Stop::Deadline {
                name: a.name.clone(),
                copied,
                total: s.len,
            });
        }
        let want = CHUNK_BYTES.min(s.len.saturating_add(1) - copied);
        let n = std::io::copy(&mut (&s.file).take(want), &mut out)
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if n == 0 {
            break;
        }
        copied += n;
        if copied > s.len {
            return Err(changed().into());
        }
    }
    let after = s
        .file
        .metadata()
        .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
    if copied != s.len || after.len() != s.len || (after.mtime(), after.mtime_nsec()) != s.modified
    {
        return Err(changed().into());
    }
    Ok(())
}

/// Removes what an attempt copied, and the folders under `dest` (and `dest`)
/// that this left empty.
fn remove(written: &[PathBuf], dest: &Path) {
    for file in written {
        let _ = std::fs::remove_file(file);
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !d.starts_with(dest) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_reserves_up_to_its_limits_and_no_further() {
        let b = RunBudget::new(100, 3);
        let first = b.reserve(2, 60).expect("fits");
        first.commit();
        assert_eq!(
            b.kept(),
            Kept {
                bytes: 60,
                files: 2
            }
        );
        // Exactly the rest fits.
        b.reserve(1, 40).expect("fits exactly").commit();
        assert_eq!(
            b.kept(),
            Kept {
                bytes: 100,
                files: 3
            }
        );
        let over = b.reserve(0, 1).expect_err("no bytes left");
        assert_eq!(
            over.kept,
            Kept {
                bytes: 100,
                files: 3
            }
        );
        assert_eq!(
            over.to_string(),
            "the run has kept 100 bytes of artifacts and this step's total 1 bytes; the limit is 100 bytes per run"
        );
        let over = b.reserve(1, 0).expect_err("no files left");
        assert_eq!(
            over.to_string(),
            "the run has kept 3 artifacts and this step returned 1; the limit is 3 artifacts per run"
        );
        assert_eq!(
            b.kept(),
            Kept {
                bytes: 100,
                files: 3
            },
            "a refusal takes nothing"
        );
    }

    #[test]
    fn a_dropped_reservation_gives_its_room_back() {
        let b = RunBudget::new(100, 10);
        b.reserve(1, 30).expect("fits").commit();
        {
            let _pending = b.reserve(2, 70).expect("fits");
            assert_eq!(
                b.kept(),
                Kept {
                    bytes: 100,
                    files: 3
                }
            );
            assert!(b.reserve(0, 1).is_err(), "reserved room is taken");
        }
        assert_eq!(
            b.kept(),
            Kept {
                bytes: 30,
                files: 1
            }
        );
        b.reserve(0, 70).expect("the room came back").commit();
    }

    #[test]
    fn sizes_near_the_top_of_u64_do_not_wrap() {
        let b = RunBudget::new(u64::MAX, usize::MAX);
        b.reserve(usize::MAX, u64::MAX).expect("fits").commit();
        assert!(b.reserve(1, 0).is_err());
        assert!(b.reserve(0, 1).is_err());
        assert_eq!(
            b.kept(),
            Kept {
                bytes: u64::MAX,
                files: usize::MAX
            }
        );
    }

    #[test]
    fn one_budget_is_shared_by_its_clones() {
        let run = Arc::new(RunBudget::new(10, 10));
        let step = run.clone();
        step.reserve(1, 6).expect("fits").commit();
        assert!(run.reserve(1, 6).is_err(), "the second step sees the first");
        assert_eq!(
            Arc::new(RunBudget::default()).kept(),
            Kept::default(),
            "a fresh budget is empty"
        );
    }

    #[test]
    fn the_default_budget_has_the_per_run_caps() {
        let b = RunBudget::default();
        b.reserve(MAX_RUN_ARTIFACTS, MAX_RUN_ARTIFACT_BYTES)
            .expect("the caps themselves fit")
            .commit();
        assert!(b.reserve(0, 1).is_err());
        assert!(b.reserve(1, 0).is_err());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(12), "12 bytes");
        assert_eq!(size(256 << 20), "256 MiB");
        assert_eq!(size((1 << 20) + (1 << 19)), "1.5 MiB");
    }

    fn declared(name: &str, path: &str) -> Declared {
        Declared {
            name: name.into(),
            path: path.into(),
            media_type: "text/plain".into(),
        }
    }

    #[test]
    fn more_artifacts_than_the_cap_are_refused() {
        let ok: Vec<Declared> = (0..MAX_ARTIFACTS)
            .map(|i| declared("a", &format!("f{i}")))
            .collect();
        assert_eq!(
            check(&Default::default(), ok).map(|v| v.len()),
            Ok(MAX_ARTIFACTS)
        );
        let many: Vec<Declared> = (0..=MAX_ARTIFACTS)
            .map(|i| declared("a", &format!("f{i}")))
            .collect();
        assert_eq!(
            check(&Default::default(), many),
            Err(StepFailure::BadOutput(format!(
                "the step returned 65 artifacts; the limit is 64 artifacts per step: {SMALLER}, e.g. one archive of them"
            )))
        );
    }

    #[test]
    fn long_artifact_texts_are_refused() {
        let long = "n".repeat(MAX_ARTIFACT_TEXT + 1);
        let f = check(&Default::default(), vec![declared(&long, "f")]).expect_err("a long name");
        assert!(
            matches!(&f, StepFailure::BadOutput(m) if m.starts_with("an artifact's name (`nnn") && m.ends_with("is 1025 bytes; the limit is 1024 bytes")),
            "{f:?}"
        );
        let f = check(&Default::default(), vec![declared("a", &long)]).expect_err("a long path");
        assert!(
            matches!(&f, StepFailure::BadOutput(m) if m.starts_with("an artifact's path")),
            "{f:?}"
        );
        assert!(
            check(&Default::default(), vec![declared(&long[1..], "f")]).is_ok(),
            "at the limit"
        );
    }

    /// A working directory with `files` (name, bytes), a destination, and the
    /// artifacts naming them.
    fn fixture(tag: &str, files: &[(&str, usize)]) -> (PathBuf, PathBuf, Vec<Artifact>) {
        let base = std::env::temp_dir().join(format!(
            "runner-artifacts-unit-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        let (work, dest) = (base.join("work"), base.join("dest"));
        std::fs::create_dir_all(&work).unwrap();
        let artifacts = files
            .iter()
            .map(|(name, len)| {
                std::fs::write(work.join(name), vec![b'x'; *len]).unwrap();
                Artifact {
                    name: name.to_string(),
                    path: name.to_string(),
                    media_type: "text/plain".into(),
                    stored: None,
                }
            })
            .collect();
        (work, dest, artifacts)
    }

    #[test]
    fn a_copy_that_reaches_its_deadline_stops_and_leaves_nothing() {
        let chunk = CHUNK_BYTES as usize;
        let (work, dest, mut artifacts) =
            fixture("deadline", &[("first", 10), ("second", 3 * chunk)]);
        let budget = RunBudget::default();
        // The deadline passes before the second chunk of the second file: the
        // first file is complete, the second half-written.
        let mut checks = 0;
        let mut expired = || {
            checks += 1;
            checks > 3
        };
        let stop = keep_blocking(&work, &dest, &mut artifacts, &budget, &mut expired)
            .expect_err("the deadline passed");
        assert!(
            matches!(&stop, Stop::Deadline { name, copied, total } if name == "second" && *copied == 10 + CHUNK_BYTES && *total == 10 + 3 * CHUNK_BYTES),
            "{stop:?}"
        );
        assert!(!dest.exists(), "the copied files and folder stay");
        assert_eq!(budget.kept(), Kept::default(), "the budget is given back");
        assert!(artifacts.iter().all(|a| a.stored.is_none()));
    }

    #[test]
    fn a_failed_copy_leaves_what_an_earlier_attempt_kept_at_the_same_path() {
        let chunk = CHUNK_BYTES as usize;
        let (work, dest, mut artifacts) = fixture("earlier", &[("evidence", 2 * chunk)]);
        let budget = RunBudget::default();
        // The first measurement keeps its file.
        keep_blocking(&work, &dest, &mut artifacts, &budget, &mut || false).unwrap();
        let kept = std::fs::read(dest.join("evidence")).unwrap();
        assert_eq!(kept.len(), 2 * chunk);
        // The next one writes a new version at the same path, and its copy stops
        // half-way at the deadline.
        std::fs::write(work.join("evidence"), vec![b'y'; 3 * chunk]).unwrap();
        let mut checks = 0;
        let mut expired = || {
            checks += 1;
            checks > 1
        };
        keep_blocking(&work, &dest, &mut artifacts, &budget, &mut expired)
            .expect_err("the deadline passed");
        assert_eq!(
            std::fs::read(dest.join("evidence")).unwrap(),
            kept,
            "the earlier measurement's file was lost or changed"
        );
        let names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["evidence"], "a partial copy was left behind");
        // A successful copy replaces it whole.
        keep_blocking(&work, &dest, &mut artifacts, &budget, &mut || false).unwrap();
        assert_eq!(
            std::fs::read(dest.join("evidence")).unwrap(),
            vec![b'y'; 3 * chunk]
        );
    }

    #[test]
    fn a_deadline_passed_before_the_copy_is_a_timeout_explained_in_the_log() {
        let (work, dest, mut artifacts) = fixture("late", &[("a.txt", 5)]);
        let budget = Arc::new(RunBudget::default());
        let timeout = Duration::from_millis(300);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let not_kept = rt
            .block_on(keep(
                &work,
                &dest,
                &mut artifacts,
                budget.clone(),
                Some(Instant::now()),
                timeout,
            ))
            .expect_err("the deadline has passed");
        assert_eq!(not_kept.failure, StepFailure::TimedOut(timeout));
        assert_eq!(
            not_kept.log.as_deref(),
            Some(
                "keeping the artifacts ran past the step's timeout of 300ms (the plugin had returned; stopped at artifact `a.txt` after 0 bytes of 5 bytes, and removed what was copied): raise the step's `timeout`, or write fewer or smaller artifacts (compress them, or keep only what the post-mortem needs)"
            )
        );
        assert!(!dest.exists());
        assert_eq!(budget.kept(), Kept::default());
    }

    #[test]
    fn a_file_that_grows_during_the_copy_is_refused() {
        let chunk = CHUNK_BYTES as usize;
        let (work, dest, mut artifacts) = fixture("grows", &[("log", 2 * chunk)]);
        let budget = RunBudget::default();
        // A program the step started appends while the first chunk is copied.
        let mut first = true;
        let growing = work.join("log");
        let mut writer = || {
            if !std::mem::take(&mut first) {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&growing)
                    .unwrap();
                f.write_all(&vec![b'y'; chunk]).unwrap();
            }
            false
        };
        let stop = keep_blocking(&work, &dest, &mut artifacts, &budget, &mut writer)
            .expect_err("a growing file");
        assert!(
            matches!(&stop, Stop::Refused(StepFailure::BadOutput(m)) if m == "artifact `log` at `log` changed while it was being kept (a program the step started may still be writing it); artifacts must be complete when the plugin returns"),
            "{stop:?}"
        );
        assert!(!dest.exists(), "the partial copy stays");
        assert_eq!(budget.kept(), Kept::default());
    }

    #[test]
    fn a_file_that_shrinks_during_the_copy_is_refused() {
        let chunk = CHUNK_BYTES as usize;
        let (work, dest, mut artifacts) = fixture("shrinks", &[("log", 2 * chunk)]);
        let budget = RunBudget::default();
        let shrinking = work.join("log");
        let mut first = true;
        let mut writer = || {
            if !std::mem::take(&mut first) {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&shrinking)
                    .unwrap()
                    .set_len(10)
                    .unwrap();
            }
            false
        };
        let stop = keep_blocking(&work, &dest, &mut artifacts, &budget, &mut writer)
            .expect_err("a shrinking file");
        assert!(
            matches!(&stop, Stop::Refused(StepFailure::BadOutput(m)) if m.contains("changed while it was being kept")),
            "{stop:?}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn files_within_the_limits_are_kept_and_counted() {
        let (work, dest, mut artifacts) = fixture("kept", &[("a.txt", 5), ("b.txt", 7)]);
        let budget = RunBudget::default();
        keep_blocking(&work, &dest, &mut artifacts, &budget, &mut || false).expect("kept");
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"xxxxx");
        assert_eq!(artifacts[1].stored, Some(dest.join("b.txt")));
        assert_eq!(
            budget.kept(),
            Kept {
                bytes: 12,
                files: 2
            }
        );
    }

    #[test]
    fn a_run_budget_without_room_writes_nothing() {
        let (work, dest, mut artifacts) = fixture("run-budget", &[("a", 600), ("b", 600)]);
        let budget = RunBudget::new(1000, 10);
        let stop = keep_blocking(&work, &dest, &mut artifacts, &budget, &mut || false)
            .expect_err("over the run's budget");
        assert!(
            matches!(&stop, Stop::Refused(StepFailure::BadOutput(m)) if m.starts_with("the step's artifacts were not kept: the run has kept 0 bytes of artifacts and this step's total 1200 bytes; the limit is 1000 bytes per run")),
            "{stop:?}"
        );
        assert!(!dest.exists());
    }
}
