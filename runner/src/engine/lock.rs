//! Concurrency groups: at most one run at a time per group
//! (`concurrency: { group: "deploy-${{ inputs.service }}", on_conflict: wait | fail }`).
//!
//! Why an OS file lock: the lock must be released when its run ends, also when the
//! run crashes, is killed with SIGKILL or the machine loses power. A lock taken with
//! `flock` (through [`File::try_lock`]) belongs to the open file, and the kernel drops
//! it when the process dies, so a crashed run never holds a group forever and no one
//! has to guess whether a pid in a file is still alive (pids get reused). A lock
//! file that exists but is not locked is simply free.
//!
//! The file `<state>/locks/<name>.lock` also says who holds it (run id, pid, host,
//! since), written right after the lock is taken, for the message a second run
//! shows. That text is only a description: the lock is the flock. Group lock
//! files are never deleted: deleting one while another run opens it would let two
//! runs lock two different files of the same name. (A run's own lock,
//! `run-<id>.lock`, goes when the run is pruned: only finished runs are, and no
//! one carries a finished run on.)
//!
//! Waiting runs are served first come, first served, which the kernel's flock
//! does not promise: each waiting run holds a ticket in `<name>.queue/` (a file
//! named by the time it queued, flocked while it waits, so the ticket of a run
//! that died waiting is seen as such and removed), and only the first living
//! ticket tries the lock. A newcomer queues behind them, also when the group is
//! free at that moment; with `on_conflict: fail` it fails. Tickets are ordered
//! by the wall clock: a clock stepped back while runs wait may misorder them.
//!
//! Limits: flock is per machine; on a state dir shared over NFS it may not exclude
//! runs on other hosts.
//!
//! The run service takes its locks through the [`Locks`] trait, of which these
//! files ([`FileLocks`]) are the default implementation.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::future::Future;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::playbook::model::OnConflict;

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(250);

/// Who holds a group: written in its lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run that holds the group.
    pub run_id: String,
    /// Its process id.
    pub pid: u32,
    /// Its machine, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Since when (RFC 3339, UTC).
    pub since: String,
}

impl Holder {
    /// This process, for run `run_id`, from now.
    pub fn me(run_id: &str) -> Holder {
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Holder {
            run_id: run_id.to_owned(),
            pid: std::process::id(),
            host,
            since: super::approval::rfc3339(SystemTime::now()),
        }
    }
}

/// A held group. Dropping it releases the group.
#[derive(Debug)]
pub struct GroupLock {
    file: File,
    path: PathBuf,
    group: String,
}

impl GroupLock {
    /// The group held.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for GroupLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first says so plainly.
        // The description stays: a reader checks the lock, not the text.
        let _ = self.file.unlock();
    }
}

/// Why a group could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the group (`holder`: its description, when readable).
    #[error("{}", busy_message(group, holder.as_ref()))]
    Busy {
        group: String,
        holder: Option<Holder>,
    },
    /// The lock file could not be created, opened, locked or written.
    #[error("{0}")]
    Io(String),
}

fn busy_message(group: &str, holder: Option<&Holder>) -> String {
    let who = match holder {
        Some(h) => {
            let host = h
                .host
                .as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            format!("run {} (pid {}{host}, since {})", h.run_id, h.pid, h.since)
        }
        None => "another run".to_owned(),
    };
    format!(
        "concurrency group `{group}` is held by {who}; wait for it to finish and run again, or set `concurrency.on_conflict: wait` to queue behind it"
    )
}

/// The lock file of `group` (see [`try_acquire`]).
pub fn lock_path(state_dir: &Path, group: &str) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("{}.lock", file_stem(group)))
}

/// Takes `group` for `me` if no one holds it; never waits.
///
/// The lock file is `<state>/locks/<name>.lock`, where `<name>` is the group itself
/// when it is 1 to 100 of `A-Z a-z 0-9 . _ -` (not starting with `.`), else a
/// readable part followed by `~` and a SHA-256 prefix of the group.
pub fn try_acquire(state_dir: &Path, group: &str, me: &Holder) -> Result<GroupLock, LockError> {
    let dir = state_dir.join("locks");
    let path = lock_path(state_dir, group);
    let io_error = |what: &str, e: io::Error| {
        LockError::Io(format!(
            "cannot {what} the lock file {} of concurrency group `{group}`: {e}",
            path.display()
        ))
    };
    fs::create_dir_all(&dir).map_err(|e| io_error("create the directory of", e))?;
    // Not truncated on open: the holder's description must survive until we hold it.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Busy {
                group: group.to_owned(),
                holder: read_holder(&mut file),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_error("lock", e)),
    }
    let text =
        serde_json::to_string(me).map_err(|e| io_error("describe the holder in", e.into()))?;
    let described = (|| {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.flush()
    })();
    described.map_err(|e| io_error("write", e))?;
    Ok(GroupLock {
        file,
        path,
        group: group.to_owned(),
    })
}

/// Takes `group` for `me`, first come, first served. When another run holds
/// it, or runs wait for it already: with [`OnConflict::Fail`], fails at once
/// with [`LockError::Busy`]; with [`OnConflict::Wait`], joins the group's queue,
/// calls `on_wait` once with the holder, and takes the group when it is free
/// and every run that queued before has had it (checked every 250 ms; wrap in
/// a timeout to bound the wait).
pub async fn acquire(
    state_dir: &Path,
    group: &str,
    me: &Holder,
    on_conflict: OnConflict,
    mut on_wait: impl FnMut(&Option<Holder>),
) -> Result<GroupLock, LockError> {
    let queue = queue_dir(state_dir, group);
    let queue_error = |e: io::Error| {
        LockError::Io(format!(
            "cannot use the queue {} of concurrency group `{group}`: {e}",
            queue.display()
        ))
    };
    let mut ticket: Option<Ticket> = None;
    loop {
        let first = first_in_line(&queue, ticket.as_ref()).map_err(queue_error)?;
        let holder = if first {
            match try_acquire(state_dir, group, me) {
                // The ticket, if any, is dropped: the next in line goes next.
                Err(LockError::Busy { holder, .. }) => holder,
                other => return other,
            }
        } else {
            read_holder_of(state_dir, group)
        };
        if on_conflict == OnConflict::Fail {
            return Err(LockError::Busy {
                group: group.to_owned(),
                holder,
            });
        }
        if ticket.is_none() {
            ticket = Some(Ticket::take(&queue).map_err(queue_error)?);
            on_wait(&holder);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where runs take their locks: the lock that says a run is alive
/// (`run-<id>`, taken with [`Locks::hold_run`]) and concurrency groups.
/// [`FileLocks`] (flock files under the state directory, the rest of this
/// module) is the default; a shared journal's database can be another. Every
/// implementation keeps the promises of the module doc: no two holders at
/// once, a dead holder's group comes free, waiters are served in order.
pub trait Locks: Send + Sync {
    /// Takes the lock that says run `run_id` is alive, held by `me` for as
    /// long as the run goes on here; never waits. [`LockError::Busy`]: the
    /// run goes on somewhere else.
    fn hold_run(&self, run_id: &str, me: &Holder) -> Result<Held, LockError>;

    /// Takes `group` for `me`, first come, first served (see [`acquire`]);
    /// `on_wait` is called once, with the holder, when the run must wait.
    fn acquire<'a>(
        &'a self,
        group: &'a str,
        me: &'a Holder,
        on_conflict: OnConflict,
        on_wait: &'a mut (dyn FnMut(&Option<Holder>) + Send),
    ) -> Pin<Box<dyn Future<Output = Result<Held, LockError>> + Send + 'a>>;

    /// Forgets the lock of run `run_id`, which has finished and is pruned:
    /// nobody takes it again.
    fn forget_run(&self, run_id: &str);
}

/// A group held through [`Locks`]; dropping it releases the group.
pub struct Held {
    group: String,
    _guard: Box<dyn Send + Sync>,
    /// A lease (a shared journal's run lock): its epoch, and word of its loss.
    lease: Option<(i64, tokio::sync::watch::Receiver<bool>)>,
    /// How many times the run was taken over, this taking included.
    takeovers: u32,
}

impl Held {
    /// `guard` gives the lock back when dropped.
    pub fn new(group: impl Into<String>, guard: Box<dyn Send + Sync>) -> Held {
        Held {
            group: group.into(),
            _guard: guard,
            lease: None,
            takeovers: 0,
        }
    }

    /// A lock that may be lost while held (a lease that another runner took
    /// over): `epoch` fences the run's writes, `lost` turns true on loss.
    pub fn leased(mut self, epoch: i64, lost: tokio::sync::watch::Receiver<bool>) -> Held {
        self.lease = Some((epoch, lost));
        self
    }

    /// How many times a lease was taken from a runner that stopped renewing
    /// it, this taking included (0 for a lock that is no lease).
    pub fn with_takeovers(mut self, takeovers: u32) -> Held {
        self.takeovers = takeovers;
        self
    }

    /// See [`Held::with_takeovers`].
    pub fn takeovers(&self) -> u32 {
        self.takeovers
    }

    /// The group held.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The lease's epoch, for a lock that is one.
    pub fn epoch(&self) -> Option<i64> {
        self.lease.as_ref().map(|(e, _)| *e)
    }

    /// Turns true when the lock is lost (`None`: it cannot be, as a flock).
    pub fn lost(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.lease.as_ref().map(|(_, l)| l.clone())
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("group", &self.group).finish()
    }
}

impl From<GroupLock> for Held {
    fn from(lock: GroupLock) -> Held {
        Held::new(lock.group.clone(), Box::new(lock))
    }
}

/// The default [`Locks`]: flock files under a state directory.
#[derive(Debug, Clone)]
pub struct FileLocks {
    state_dir: PathBuf,
}

impl FileLocks {
    pub fn new(state_dir: &Path) -> FileLocks {
        FileLocks {
            state_dir: state_dir.to_owned(),
        }
    }
}

impl Locks for FileLocks {
    fn hold_run(&self, run_id: &str, me: &Holder) -> Result<Held, LockError> {
        try_acquire(&self.state_dir, &format!("run-{run_id}"), me).map(Held::from)
    }

    fn acquire<'a>(
        &'a self,
        group: &'a str,
        me: &'a Holder,
        on_conflict: OnConflict,
        on_wait: &'a mut (dyn FnMut(&Option<Holder>) + Send),
    ) -> Pin<Box<dyn Future<Output = Result<Held, LockError>> + Send + 'a>> {
        Box::pin(async move {
            acquire(&self.state_dir, group, me, on_conflict, on_wait)
                .await
                .map(Held::from)
        })
    }

    fn forget_run(&self, run_id: &str) {
        let _ = fs::remove_file(lock_path(&self.state_dir, &format!("run-{run_id}")));
    }
}

/// The folder of `group`'s queue: one ticket file per waiting run.
fn queue_dir(state_dir: &Path, group: &str) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("{}.queue", file_stem(group)))
}

/// A waiting run's place in a group's queue: a file named by the time it
/// queued (then its pid), locked (flock) while the run waits, removed when it
/// stops waiting. A ticket file nobody holds locked belongs to a run that
/// died waiting: the next waiter removes it.
struct Ticket {
    path: PathBuf,
    _file: File,
}

impl Ticket {
    fn take(queue: &Path) -> io::Result<Ticket> {
        fs::create_dir_all(queue)?;
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{since:024}-{:010}", std::process::id());
        // Locked before it is in the queue (renamed in), so that no one ever
        // sees it unlocked and takes it for a dead waiter's.
        let hidden = queue.join(format!(".{name}"));
        let file = File::create(&hidden)?;
        file.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => io::Error::other("a fresh ticket is locked"),
        })?;
        let path = queue.join(name);
        fs::rename(&hidden, &path)?;
        Ok(Ticket { path, _file: file })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether `mine` (or, without a ticket, a newcomer) is first among the
/// living waiters of `queue`; tickets of waiters that died are removed.
fn first_in_line(queue: &Path, mine: Option<&Ticket>) -> io::Result<bool> {
    let mut tickets: Vec<PathBuf> = match fs::read_dir(queue) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    tickets.sort();
    for ticket in tickets {
        if mine.is_some_and(|m| m.path == ticket) {
            return Ok(true);
        }
        let file = match File::open(&ticket) {
            Ok(f) => f,
            // Gone meanwhile: its run took the group or stopped waiting.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            // Its run died waiting.
            Ok(()) => {
                let _ = fs::remove_file(&ticket);
            }
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    // Everyone before us is gone (and ours too, if someone removed it).
    Ok(true)
}

/// Who holds `group`, from its lock file, if it is held and can be read (the
/// file keeps the last holder's description after it is released).
fn read_holder_of(state_dir: &Path, group: &str) -> Option<Holder> {
    let mut file = File::open(lock_path(state_dir, group)).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => read_holder(&mut file),
        Err(TryLockError::Error(_)) => None,
    }
}

/// The holder's description, if it can be read; it may be missing or partial when
/// the holder is still writing it.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// The lock file's name without `.lock`: the group when it is already a safe file
/// name; otherwise its safe characters (others as `_`, at most 40) then `~` and 16
/// hex digits of its SHA-256. `~` never appears in the first form, so the two
/// cannot collide.
fn file_stem(group: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=100).contains(&group.len()) && !group.starts_with('.') && group.chars().all(safe) {
        return group.to_owned();
    }
    let readable: String = group
        .chars()
        .take(40)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    let digest = Sha256::digest(group.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", readable.trim_start_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("runner-lock-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn holder(run_id: &str) -> Holder {
        Holder {
            run_id: run_id.to_owned(),
            pid: 4242,
            host: Some("db-1".into()),
            since: "2025-01-31T09:05:00Z".into(),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_second_run_is_refused_with_the_holder_named() {
        let tmp = TempDir::new("busy");
        let first = try_acquire(&tmp.0, "deploy-api", &holder("r1")).unwrap();
        assert_eq!(first.path(), tmp.0.join("locks/deploy-api.lock"));
        let err = try_acquire(&tmp.0, "deploy-api", &holder("r2")).unwrap_err();
        let LockError::Busy {
            group,
            holder: Some(h),
        } = &err
        else {
            panic!("not busy with a holder: {err:?}");
        };
        assert_eq!((group.as_str(), h), ("deploy-api", &holder("r1")));
        assert_eq!(
            err.to_string(),
            "concurrency group `deploy-api` is held by run r1 (pid 4242 on db-1, since 2025-01-31T09:05:00Z); wait for it to finish and run again, or set `concurrency.on_conflict: wait` to queue behind it"
        );
        // Another group is independent.
        let other = try_acquire(&tmp.0, "deploy-web", &holder("r2"));
        assert!(other.is_ok());
    }

    #[test]
    fn a_dropped_lock_frees_the_group() {
        let tmp = TempDir::new("drop");
        drop(try_acquire(&tmp.0, "g", &holder("r1")).unwrap());
        let second = try_acquire(&tmp.0, "g", &holder("r2")).unwrap();
        let text = fs::read_to_string(second.path()).unwrap();
        let written: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(written, holder("r2"));
    }

    #[test]
    fn fail_mode_fails_at_once() {
        let tmp = TempDir::new("fail");
        let _first = try_acquire(&tmp.0, "g", &holder("r1")).unwrap();
        let mut waited = 0;
        let result = runtime().block_on(acquire(
            &tmp.0,
            "g",
            &holder("r2"),
            OnConflict::Fail,
            |_| waited += 1,
        ));
        assert!(matches!(result, Err(LockError::Busy { .. })), "{result:?}");
        assert_eq!(waited, 0);
    }

    #[test]
    fn wait_mode_takes_the_group_once_it_is_released() {
        let tmp = TempDir::new("wait");
        let first = try_acquire(&tmp.0, "g", &holder("r1")).unwrap();
        let mut told = Vec::new();
        let second = runtime().block_on(async {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(first);
            });
            acquire(&tmp.0, "g", &holder("r2"), OnConflict::Wait, |h| {
                told.push(h.as_ref().map(|h| h.run_id.clone()))
            })
            .await
        });
        let second = second.unwrap();
        assert_eq!(told, vec![Some("r1".to_owned())]);
        assert_eq!(second.group(), "g");
    }

    #[test]
    fn a_description_left_by_a_dead_run_does_not_hold_the_group() {
        // What a crashed run leaves: its description, and no lock (the kernel
        // released it with the process).
        let tmp = TempDir::new("dead");
        fs::create_dir_all(tmp.0.join("locks")).unwrap();
        let mut dead = holder("crashed");
        dead.pid = u32::MAX - 1;
        fs::write(
            tmp.0.join("locks/g.lock"),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let lock = try_acquire(&tmp.0, "g", &holder("r2")).unwrap();
        let written: Holder =
            serde_json::from_str(&fs::read_to_string(lock.path()).unwrap()).unwrap();
        assert_eq!(written, holder("r2"));
    }

    /// Four runs queue one after the other behind a holder (each starts once
    /// the one before it has its ticket); a fifth, dead, left a ticket first.
    /// They get the group in the order they queued, the dead ticket is passed
    /// over, and a run with `on_conflict: fail` that comes while they wait is
    /// refused even in the moment the group is free.
    #[test]
    fn waiting_runs_get_the_group_in_the_order_they_queued() {
        let tmp = TempDir::new("fifo");
        let holding = try_acquire(&tmp.0, "g", &holder("r0")).unwrap();
        let queue = queue_dir(&tmp.0, "g");
        fs::create_dir_all(&queue).unwrap();
        // A ticket nobody holds locked: its run died waiting.
        let dead = queue.join(format!("{:024}-{:010}", 1, 1));
        fs::write(&dead, "").unwrap();
        let tickets = || {
            fs::read_dir(&queue)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.path() != dead)
                .count()
        };
        let queued = |n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while tickets() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{n} runs never queued"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let order = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for i in 1..=4 {
                // Queued after the ones before it.
                queued(i - 1);
                let (dir, order) = (&tmp.0, &order);
                scope.spawn(move || {
                    let me = holder(&format!("r{i}"));
                    let waited = runtime().block_on(async {
                        tokio::time::timeout(
                            Duration::from_secs(30),
                            acquire(dir, "g", &me, OnConflict::Wait, |_| {}),
                        )
                        .await
                    });
                    let lock = waited.expect("the group within 30 s").unwrap();
                    order.lock().unwrap().push(i);
                    std::thread::sleep(Duration::from_millis(30));
                    drop(lock);
                });
            }
            queued(4);
            drop(holding);
            // Free now, but four runs wait: a newcomer that would rather fail
            // than wait does not jump the queue.
            let late = runtime().block_on(acquire(
                &tmp.0,
                "g",
                &holder("late"),
                OnConflict::Fail,
                |_| {},
            ));
            assert!(matches!(late, Err(LockError::Busy { .. })), "{late:?}");
        });
        assert_eq!(*order.lock().unwrap(), [1, 2, 3, 4]);
        assert_eq!(tickets(), 0, "every ticket is gone");
        assert!(!dead.exists(), "the dead run's ticket too");
    }

    /// Run by [`a_killed_holder_releases_the_group`] in a child process: holds the
    /// group until killed.
    #[test]
    #[ignore = "a helper run in a child process"]
    fn hold_until_killed() {
        let Some(dir) = std::env::var_os("RUNNER_LOCK_TEST_DIR") else {
            return;
        };
        let _lock = try_acquire(Path::new(&dir), "g", &Holder::me("child")).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn a_killed_holder_releases_the_group() {
        let tmp = TempDir::new("killed");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "engine::lock::tests::hold_until_killed",
                "--exact",
                "--ignored",
                "--quiet",
            ])
            .env("RUNNER_LOCK_TEST_DIR", &tmp.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let path = tmp.0.join("locks/g.lock");
        let mut held = false;
        for _ in 0..200 {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if serde_json::from_str::<Holder>(&text).is_ok_and(|h| h.pid == child.id()) {
                held = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(held, "the child did not take the lock");
        let err = try_acquire(&tmp.0, "g", &holder("r2")).unwrap_err();
        assert!(matches!(&err, LockError::Busy { holder: Some(h), .. } if h.run_id == "child"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(try_acquire(&tmp.0, "g", &holder("r2")).is_ok());
    }

    #[test]
    fn unsafe_group_names_map_to_safe_file_names() {
        assert_eq!(file_stem("deploy-api_1.2"), "deploy-api_1.2");
        let slash = file_stem("deploy/api");
        assert!(slash.starts_with("deploy_api~"), "{slash}");
        assert_eq!(slash.len(), "deploy_api~".len() + 16);
        assert_ne!(slash, file_stem("deploy api"));
        assert!(file_stem("../etc").starts_with("_etc~"));
        assert!(file_stem("").starts_with('~'));
        let long = file_stem(&"x".repeat(300));
        assert_eq!(long.len(), 40 + 1 + 16);
        let tmp = TempDir::new("names");
        let lock = try_acquire(&tmp.0, "deploy / api", &holder("r1")).unwrap();
        assert_eq!(lock.path().parent().unwrap(), tmp.0.join("locks"));
        assert!(try_acquire(&tmp.0, "deploy / api", &holder("r2")).is_err());
        assert!(try_acquire(&tmp.0, "deploy_/_api", &holder("r2")).is_ok());
    }
}
