//! The default journal: a SQLite file under the state directory.
//!
//! Why SQLite: a journal that needs no server, survives a killed runner and
//! is read by any SQLite tool. WAL mode with `synchronous = NORMAL`: a
//! committed event survives the runner being killed at any point (the crash
//! test does exactly that); a power loss may lose the last few commits, which
//! buys a write cost of tens of microseconds instead of an fsync per event.
//! The schema carries its version (`PRAGMA user_version`); an older journal is
//! upgraded in one write transaction when it is opened to write, a newer one
//! is refused.
//!
//! Tables: `runs` (one row per run: playbook, file and its hash, inputs, status,
//! times, links to the run it resumes or re-runs), `events` (the engine's events
//! as JSON, in order, with their time), `steps` (the latest state of each step of
//! a run: in flight, or its final record — what `runner resume` needs),
//! `sources` (the text of the playbook and of the environment file each run
//! started from).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{Filter, Journal, RunRow, SourceFile, SourceKind, StepStates, Stored, stamp};
use crate::engine::Event;

/// The schema this runner writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// What each schema version after the first added: `UPGRADES[n - 1]` turns
/// version n into n + 1.
const UPGRADES: [&str; SCHEMA_VERSION as usize - 1] = [
    "ALTER TABLE runs ADD COLUMN env_file TEXT",
    "ALTER TABLE runs ADD COLUMN guarded INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN started_by TEXT",
    SOURCES,
];

/// Schema 5: the files a run started from.
const SOURCES: &str = "
CREATE TABLE sources (
    run_id  TEXT NOT NULL,
    kind    TEXT NOT NULL,            -- playbook, environment, trigger
    path    TEXT NOT NULL,            -- where the file was when the run started
    text    TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
) WITHOUT ROWID";

const SCHEMA: &str = "
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    playbook     TEXT NOT NULL,
    file         TEXT NOT NULL,
    file_sha256  TEXT NOT NULL,
    input_args   TEXT NOT NULL,   -- JSON array of the KEY=VALUE arguments given
    inputs       TEXT NOT NULL,   -- JSON object of the resolved inputs
    started_at   TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    finished_ms  INTEGER,
    duration_ms  INTEGER,
    status       TEXT NOT NULL,   -- running, succeeded, failed, timed_out, interrupted
    rolled_back  INTEGER NOT NULL DEFAULT 0,
    parent       TEXT,            -- the run this one re-runs
    pid          INTEGER NOT NULL,
    env_file     TEXT,            -- the --env file, for resume and rerun
    guarded      INTEGER NOT NULL DEFAULT 0, -- 1: has an intact mark (recorder.rs)
    started_by   TEXT             -- who started it: `name (source)`, see identity.rs
);
CREATE INDEX runs_started ON runs (started_ms);
CREATE INDEX runs_playbook ON runs (playbook, started_ms);
CREATE TABLE events (
    run_id     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    at         TEXT NOT NULL,
    offset_ms  INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    stage      TEXT,
    step       TEXT,
    body       TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE steps (
    run_id    TEXT NOT NULL,
    step      TEXT NOT NULL,
    status    TEXT NOT NULL,      -- running, or the final status
    attempts  INTEGER NOT NULL,
    record    TEXT,               -- the final StepRecord as JSON
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
";

/// Less free space than this when a write fails: the disk is full (a write
/// of an event needs a few pages of the journal and its WAL).
const FULL_BELOW: u64 = 256 * 1024;

/// How long a journal waits for another runner's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts the journal in WAL mode, waiting as the busy timeout does. Switching
/// a new file to WAL takes an exclusive lock, and SQLite answers "database is
/// locked" at once, without its busy handler, when another runner is creating
/// the same new journal at that moment (seen when several runs start together
/// on a fresh state directory); so the switch is tried again until it succeeds
/// or the timeout passes. A journal already in WAL mode answers at once.
fn wal_mode(conn: &Connection) -> Result<(), String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(sql(e)),
        }
    }
}

/// A journal in one SQLite file.
pub struct SqliteJournal {
    pub(super) conn: Connection,
    pub path: PathBuf,
}

fn sql(e: rusqlite::Error) -> String {
    format!("journal: {e}")
}

impl SqliteJournal {
    /// Opens (creating if need be) the journal at `path`.
    pub fn open(path: &Path) -> Result<SqliteJournal, String> {
        SqliteJournal::open_to_write(path).map_err(|e| {
            // SQLite may only say "unable to open database file".
            let target = if path.exists() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            match rustix::fs::access(target, rustix::fs::Access::WRITE_OK) {
                Err(why) => format!(
                    "the journal `{}` cannot be written ({why}): a run needs a journal it can write; point RUNNER_STATE_DIR, RUNNER_JOURNAL or --journal at one ({e})",
                    path.display()
                ),
                Ok(()) => e,
            }
        })
    }

    fn open_to_write(path: &Path) -> Result<SqliteJournal, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("cannot open the journal `{}`: {e}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        wal_mode(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        // Creating or upgrading the schema happens in one write transaction, so
        // two runners opening a new or old journal at once do it once.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        let upgraded = match version {
            0 => conn
                .execute_batch(&format!("{SCHEMA}{SOURCES};"))
                .map_err(|e| format!("cannot create the journal `{}`: {e}", path.display())),
            // Version N is brought up to date by the upgrades from N on.
            old @ 1..SCHEMA_VERSION => conn
                .execute_batch(&UPGRADES[(old - 1) as usize..].join(";"))
                .map_err(|e| format!("cannot upgrade the journal `{}`: {e}", path.display())),
            SCHEMA_VERSION => Ok(()),
            newer => Err(format!(
                "the journal `{}` has schema version {newer}, written by a newer runner (this one reads {SCHEMA_VERSION}); upgrade the runner or use another journal (--journal)",
                path.display()
            )),
        };
        let finished = upgraded.and_then(|()| {
            if version != SCHEMA_VERSION {
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
            }
            conn.execute_batch("COMMIT").map_err(sql)
        });
        if let Err(e) = finished {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(SqliteJournal {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens the journal at `path` for reading (`runs list`, `runs show`,
    /// `stats`): as [`SqliteJournal::open`] when this user may write it, else read
    /// only (a read-only file system, a journal of another user), so that the
    /// history can be read where it cannot be written. Never creates one then.
    pub fn open_read(path: &Path) -> Result<SqliteJournal, String> {
        let writable = match SqliteJournal::open(path) {
            Ok(j) => return Ok(j),
            Err(e) => e,
        };
        if !path.is_file() {
            return Err(writable);
        }
        use rusqlite::OpenFlags as F;
        let read = |conn: Result<Connection, rusqlite::Error>| {
            let conn = conn?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            Ok::<_, rusqlite::Error>((conn, version))
        };
        let flags = F::SQLITE_OPEN_READ_ONLY | F::SQLITE_OPEN_NO_MUTEX;
        let mut opened = read(Connection::open_with_flags(path, flags));
        // A WAL journal closed cleanly has no -wal and -shm files, and where
        // they cannot be made SQLite cannot read it. Without a -wal file
        // everything is in the main file: read it as immutable (nobody can
        // write it here either).
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if opened.is_err() && !Path::new(&wal).exists() {
            let uri = format!(
                "file:{}?immutable=1",
                path.display()
                    .to_string()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23")
            );
            opened = read(Connection::open_with_flags(uri, flags | F::SQLITE_OPEN_URI));
        }
        let (conn, version) = opened.map_err(|e| {
            format!(
                "cannot read the journal `{}`: {e} (opened for writing: {writable})",
                path.display()
            )
        })?;
        if version != SCHEMA_VERSION {
            return Err(format!(
                "the journal `{}` has schema version {version} and this runner reads {SCHEMA_VERSION}; it cannot be upgraded where it cannot be written ({writable})",
                path.display()
            ));
        }
        Ok(SqliteJournal {
            conn,
            path: path.to_owned(),
        })
    }

    /// Bytes free (for this user) on the journal's file system.
    fn free_space(&self) -> Option<u64> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn write_event(
        &mut self,
        id: &str,
        seq: i64,
        at_ms: i64,
        offset_ms: i64,
        event: &Event,
    ) -> Result<(), String> {
        let super::EventRow {
            body,
            kind,
            stage,
            step,
        } = super::EventRow::of(event)?;
        let tx = self.conn.transaction().map_err(sql)?;
        tx.prepare_cached(
            "INSERT INTO events (run_id, seq, at, offset_ms, kind, stage, step, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut st| {
            st.execute(params![id, seq, stamp(at_ms), offset_ms, kind, stage, step, body])
        })
        .map_err(sql)?;
        match event {
            Event::StepStarted { step, .. } => {
                tx.prepare_cached(
                    "INSERT INTO steps (run_id, step, status, attempts) VALUES (?1, ?2, 'running', 1)
                     ON CONFLICT (run_id, step) DO UPDATE SET status = 'running', attempts = attempts + 1, record = NULL",
                )
                .and_then(|mut st| st.execute(params![id, step]))
                .map_err(sql)?;
            }
            Event::Retry { step, attempt, .. } => {
                tx.execute(
                    "UPDATE steps SET attempts = ?3 WHERE run_id = ?1 AND step = ?2",
                    params![id, step, attempt + 1],
                )
                .map_err(sql)?;
            }
            Event::StepFinished(r) | Event::StepRestored(r) => {
                let record = serde_json::to_string(r).map_err(|e| format!("journal: {e}"))?;
                tx.prepare_cached(
                    "INSERT INTO steps (run_id, step, status, attempts, record) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_id, step) DO UPDATE SET status = ?3, attempts = ?4, record = ?5",
                )
                .and_then(|mut st| st.execute(params![id, r.step, r.status, r.attempts, record]))
                .map_err(sql)?;
            }
            Event::Handlers {
                kind: "on_failure", ..
            } => {
                tx.execute("UPDATE runs SET rolled_back = 1 WHERE id = ?1", [id])
                    .map_err(sql)?;
            }
            Event::RunFinished { status, .. } => {
                tx.execute(
                    "UPDATE runs SET status = ?2, finished_ms = ?3, duration_ms = ?3 - started_ms WHERE id = ?1",
                    params![id, status, at_ms],
                )
                .map_err(sql)?;
            }
            _ => {}
        }
        tx.commit().map_err(sql)
    }

    /// The events of run `id` numbered above `after`, in order, at most
    /// `limit` of them (-1: all).
    fn events_limited(&self, id: &str, after: i64, limit: i64) -> Result<Vec<Stored>, String> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at, offset_ms, body FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(rusqlite::params![id, after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, offset_ms, body) = row.map_err(sql)?;
            let event = super::read_event(id, seq, &body)?;
            out.push(Stored {
                seq,
                at,
                offset_ms,
                event,
            });
        }
        Ok(out)
    }
}

impl Journal for SqliteJournal {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// Records the start of a run with the files it starts from, in one
    /// transaction: a run row never lacks the sources it was begun with.
    fn begin_with(&self, run: &RunRow, sources: &[SourceFile]) -> Result<(), String> {
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        for f in sources {
            tx.execute(
                "INSERT INTO sources (run_id, kind, path, text) VALUES (?1, ?2, ?3, ?4)",
                params![run.id, f.kind.as_str(), f.path, f.text],
            )
            .map_err(sql)?;
        }
        tx
            .execute(
                "INSERT INTO runs (id, playbook, file, file_sha256, input_args, inputs, started_at, started_ms, status, parent, pid, env_file, guarded, started_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9, ?10, ?11, ?12, ?13)",
                params![
                    run.id,
                    run.playbook,
                    run.file,
                    run.file_sha256,
                    serde_json::to_string(&run.input_args).unwrap_or_default(),
                    run.inputs.to_string(),
                    run.started_at,
                    run.started_ms,
                    run.parent,
                    run.pid,
                    run.env_file,
                    run.guarded,
                    run.started_by,
                ],
            )
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// The files run `id` started from, as the journal keeps them (none for a
    /// run begun by a runner older than schema 5).
    fn sources(&self, id: &str) -> Result<Vec<SourceFile>, String> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, path, text FROM sources WHERE run_id = ?1 ORDER BY kind DESC")
            .map_err(sql)?;
        let rows = stmt
            .query_map([id], |r| {
                let kind: String = r.get(0)?;
                Ok((kind, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, path, text) = row.map_err(sql)?;
            let kind = match kind.as_str() {
                "playbook" => SourceKind::Playbook,
                "environment" => SourceKind::Environment,
                "trigger" => SourceKind::Trigger,
                // Written by a newer runner: not ours to use.
                _ => continue,
            };
            out.push(SourceFile { kind, path, text });
        }
        Ok(out)
    }

    /// Marks a run as running again, by this process (`runner resume`), with
    /// an intact mark from now on.
    fn reopen(&self, id: &str) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'running', finished_ms = NULL, duration_ms = NULL, pid = ?2, guarded = 1 WHERE id = ?1",
                params![id, std::process::id()],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Whether event `seq` of run `id` is in the journal.
    fn has_event(&self, id: &str, seq: i64) -> Result<bool, String> {
        self.conn
            .query_row(
                "SELECT 1 FROM events WHERE run_id = ?1 AND seq = ?2",
                params![id, seq],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(sql)
    }

    /// The sequence number the next event of `id` gets.
    fn next_seq(&self, id: &str) -> Result<i64, String> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(sql)
    }

    /// Writes one event (and what it changes of the run and its steps) in one
    /// transaction; returns once it is committed. A refusal on a full disk
    /// says so (SQLite itself may only say "disk I/O error").
    fn record(
        &mut self,
        id: &str,
        seq: i64,
        at_ms: i64,
        offset_ms: i64,
        event: &Event,
    ) -> Result<(), String> {
        self.write_event(id, seq, at_ms, offset_ms, event)
            .map_err(|e| match self.free_space() {
                Some(free) if free < FULL_BELOW => format!(
                    "the file system holding the journal `{}` is full ({free} bytes free; {e})",
                    self.path.display()
                ),
                _ => e,
            })
    }

    /// One run.
    fn run(&self, id: &str) -> Result<Option<RunRow>, String> {
        self.conn
            .query_row(&format!("{RUN_COLUMNS} WHERE id = ?1"), [id], run_row)
            .optional()
            .map_err(sql)
    }

    /// Runs, newest first.
    fn list(&self, f: &Filter) -> Result<Vec<RunRow>, String> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{RUN_COLUMNS} WHERE (?1 IS NULL OR playbook = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR started_ms >= ?3)
                 ORDER BY started_ms DESC, id DESC LIMIT ?4"
            ))
            .map_err(sql)?;
        let limit = f.limit.map_or(-1, |l| l as i64);
        let rows = stmt
            .query_map(params![f.playbook, f.status, f.since_ms, limit], run_row)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// The events of a run, in order; an event this runner cannot read
    /// (damaged, or written by another version) is an error that names it.
    fn events_after(&self, id: &str, after: i64) -> Result<Vec<Stored>, String> {
        self.events_limited(id, after, -1)
    }

    fn first_event(&self, id: &str) -> Result<Option<Stored>, String> {
        Ok(self.events_limited(id, -1, 1)?.into_iter().next())
    }

    /// The steps of a run: finished ones with their records, and those in flight.
    fn steps(&self, id: &str) -> Result<StepStates, String> {
        let mut stmt = self
            .conn
            .prepare("SELECT step, status, attempts, record FROM steps WHERE run_id = ?1")
            .map_err(sql)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql)?;
        let mut out = StepStates::default();
        for row in rows {
            let (step, status, attempts, record) = row.map_err(sql)?;
            super::add_step(&mut out, id, step, &status, attempts, record.as_deref())?;
        }
        Ok(out)
    }

    /// Deletes the finished runs that started before `before_ms`, with their events
    /// and steps; returns them.
    fn prune(&mut self, before_ms: i64) -> Result<Vec<RunRow>, String> {
        // Immediate: the write lock is taken (waiting up to the busy timeout)
        // before the read. A deferred transaction that read first could not
        // upgrade once another process had written, and failed at once with
        // "database is locked" whatever the timeout.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let runs: Vec<RunRow> = {
            let mut stmt = tx
                .prepare(&format!(
                    "{RUN_COLUMNS} WHERE started_ms < ?1 AND status != 'running'"
                ))
                .map_err(sql)?;
            let rows = stmt.query_map([before_ms], run_row).map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        for id in runs.iter().map(|r| &r.id) {
            tx.execute("DELETE FROM events WHERE run_id = ?1", [id])
                .map_err(sql)?;
            tx.execute("DELETE FROM steps WHERE run_id = ?1", [id])
                .map_err(sql)?;
            tx.execute("DELETE FROM sources WHERE run_id = ?1", [id])
                .map_err(sql)?;
            tx.execute("DELETE FROM runs WHERE id = ?1", [id])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(runs)
    }
}

const RUN_COLUMNS: &str = "SELECT id, playbook, file, file_sha256, input_args, inputs, started_at, started_ms, finished_ms, duration_ms, status, rolled_back, parent, pid, env_file, guarded, started_by FROM runs";

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        playbook: r.get(1)?,
        file: r.get(2)?,
        file_sha256: r.get(3)?,
        input_args: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        inputs: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
        started_at: r.get(6)?,
        started_ms: r.get(7)?,
        finished_ms: r.get(8)?,
        duration_ms: r.get(9)?,
        status: r.get(10)?,
        rolled_back: r.get::<_, i64>(11)? != 0,
        parent: r.get(12)?,
        pid: r.get(13)?,
        env_file: r.get(14)?,
        guarded: r.get::<_, i64>(15)? != 0,
        started_by: r.get(16)?,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::StepRecord;

    fn journal(name: &str) -> (SqliteJournal, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("runner-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let j = SqliteJournal::open(&dir.join("j.sqlite")).unwrap();
        (j, dir)
    }

    pub(crate) fn row(id: &str, playbook: &str, started_ms: i64) -> RunRow {
        RunRow {
            id: id.into(),
            playbook: playbook.into(),
            file: "p.yaml".into(),
            file_sha256: "00".into(),
            input_args: vec!["service=api".into()],
            inputs: serde_json::json!({ "service": "api" }),
            started_at: stamp(started_ms),
            started_ms,
            finished_ms: None,
            duration_ms: None,
            status: "running".into(),
            rolled_back: false,
            parent: None,
            pid: 1,
            env_file: None,
            guarded: false,
            started_by: None,
        }
    }

    fn finished(step: &str, status: &'static str) -> Event {
        let mut r: StepRecord = serde_json::from_value(serde_json::json!({
            "step": step, "status": status, "attempts": 1, "duration_ms": 5,
            "outputs": { "sha": "abc" }
        }))
        .unwrap();
        r.status = status;
        Event::StepFinished(r)
    }

    #[test]
    fn events_read_on_from_a_number_and_the_first_alone() {
        let (mut j, dir) = journal("first-event");
        j.begin(&row("r1", "p", 1_000)).unwrap();
        j.begin(&row("r2", "p", 2_000)).unwrap();
        for (seq, step) in ["a", "b", "c"].iter().enumerate() {
            let seq = seq as i64;
            j.record("r1", seq, 1_000 + seq, seq, &finished(step, "succeeded"))
                .unwrap();
        }
        let after: Vec<i64> = j
            .events_after("r1", 0)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(after, [1, 2]);
        assert_eq!(j.events("r1").unwrap().len(), 3);
        let firsts = j
            .first_events(&["r1".into(), "r2".into(), "nope".into()])
            .unwrap();
        assert_eq!(firsts.len(), 1, "r2 has no event, nope is no run");
        assert_eq!(firsts["r1"].seq, 0);
        assert!(matches!(&firsts["r1"].event, Event::StepFinished(r) if r.step == "a"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_records_are_refused_not_skipped() {
        let (mut j, dir) = journal("damaged");
        j.begin(&row("r1", "p", 1_000)).unwrap();
        j.record("r1", 0, 1_000, 0, &finished("deploy", "succeeded"))
            .unwrap();
        assert_eq!(j.steps("r1").unwrap().finished.len(), 1);
        j.conn
            .execute(
                "UPDATE steps SET record = '{\"step\": 1' WHERE run_id = 'r1'",
                [],
            )
            .unwrap();
        let e = j.steps("r1").unwrap_err();
        assert!(
            e.contains("the record of step `deploy` of run r1 (succeeded) cannot be read"),
            "{e}"
        );
        j.conn
            .execute(
                "UPDATE events SET body = 'not json' WHERE run_id = 'r1'",
                [],
            )
            .unwrap();
        let e = j.events("r1").unwrap_err();
        assert!(e.contains("event 0 of run r1 cannot be read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prunes_and_writes_from_several_processes_wait_for_each_other() {
        let (j, dir) = journal("concurrent-prune");
        drop(j);
        let path = dir.join("j.sqlite");
        let failures: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..6)
                .map(|w| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let mut j = SqliteJournal::open(&path).unwrap();
                        let mut failed = Vec::new();
                        for i in 0..40 {
                            let id = format!("w{w}-{i}");
                            // A finished run, old enough for the others' prunes.
                            let ended = Event::RunFinished {
                                status: "succeeded",
                                duration_s: 0.1,
                                budget_s: None,
                                handler_failures: 0,
                            };
                            let written = j
                                .begin(&row(&id, "p", 1_000))
                                .and_then(|()| {
                                    j.record(&id, 0, 1_000, 0, &finished("a", "succeeded"))
                                })
                                .and_then(|()| j.record(&id, 1, 1_100, 100, &ended));
                            if let Err(e) = written.and_then(|()| j.prune(2_000).map(drop)) {
                                failed.push(e);
                            }
                        }
                        failed
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_and_step_states_round_trip() {
        let (mut j, dir) = journal("round-trip");
        j.begin(&row("r1", "hotfix", 1_000)).unwrap();
        let started = |s: &str| Event::StepStarted {
            stage: Some("deploy".into()),
            step: s.into(),
            kind: "plugin",
            handler: None,
        };
        let events = [
            started("build"),
            finished("build", "succeeded"),
            started("rollout"),
            Event::Retry {
                stage: Some("deploy".into()),
                step: "rollout".into(),
                attempt: 1,
                delay_ms: 10,
                error: "503".into(),
            },
        ];
        for (i, e) in events.iter().enumerate() {
            j.record("r1", i as i64, 1_000 + i as i64, i as i64, e)
                .unwrap();
        }
        assert_eq!(j.next_seq("r1").unwrap(), 4);
        let states = j.steps("r1").unwrap();
        assert_eq!(states.finished["build"].outputs["sha"], "abc");
        assert_eq!(
            states.in_flight["rollout"], 2,
            "the second attempt was in flight"
        );
        let stored = j.events("r1").unwrap();
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[3].at, "1970-01-01T00:00:01.003Z");
        assert!(matches!(&stored[1].event, Event::StepFinished(r) if r.status == "succeeded"));
        let run = j.run("r1").unwrap().unwrap();
        assert_eq!(run.status, "running");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn run_finished_and_on_failure_update_the_run() {
        let (mut j, dir) = journal("finish");
        j.begin(&row("r1", "hotfix", 1_000)).unwrap();
        let handlers = Event::Handlers {
            stage: None,
            kind: "on_failure",
        };
        let done = Event::RunFinished {
            status: "failed",
            duration_s: 2.0,
            budget_s: None,
            handler_failures: 0,
        };
        j.record("r1", 0, 2_000, 1_000, &handlers).unwrap();
        j.record("r1", 1, 3_000, 2_000, &done).unwrap();
        let run = j.run("r1").unwrap().unwrap();
        assert_eq!(
            (run.status.as_str(), run.rolled_back, run.duration_ms),
            ("failed", true, Some(2_000))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_runs_sources_are_kept_with_it_and_pruned_with_it() {
        let (mut j, dir) = journal("sources");
        let files = [
            SourceFile {
                kind: SourceKind::Playbook,
                path: "/p/hotfix.yaml".into(),
                text: "version: 1\n".into(),
            },
            SourceFile {
                kind: SourceKind::Environment,
                path: "/p/env.yaml".into(),
                text: "inputs: {}\n".into(),
            },
        ];
        j.begin_with(&row("a", "hotfix", 1_000), &files).unwrap();
        j.begin(&row("b", "hotfix", 2_000)).unwrap();
        assert_eq!(j.sources("a").unwrap(), files);
        assert_eq!(j.sources("b").unwrap(), []);
        // A run id taken already: neither the row nor its sources are written.
        assert!(
            j.begin_with(&row("a", "other", 3_000), &files[..1])
                .is_err()
        );
        assert_eq!(j.run("a").unwrap().unwrap().playbook, "hotfix");
        let done = Event::RunFinished {
            status: "succeeded",
            duration_s: 1.0,
            budget_s: None,
            handler_failures: 0,
        };
        j.record("a", 0, 1_500, 500, &done).unwrap();
        j.prune(10_000).unwrap();
        assert_eq!(j.sources("a").unwrap(), []);
        let left: i64 = j
            .conn
            .query_row("SELECT count(*) FROM sources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn list_filters_and_prune_removes_old_finished_runs() {
        let (mut j, dir) = journal("prune");
        for (id, pb, t) in [
            ("a", "hotfix", 1_000),
            ("b", "rollback", 2_000),
            ("c", "hotfix", 3_000),
        ] {
            j.begin(&row(id, pb, t)).unwrap();
        }
        let done = Event::RunFinished {
            status: "succeeded",
            duration_s: 1.0,
            budget_s: None,
            handler_failures: 0,
        };
        j.record("a", 0, 1_500, 500, &done).unwrap();
        j.record("b", 0, 2_500, 500, &done).unwrap();
        let hotfix = j
            .list(&Filter {
                playbook: Some("hotfix"),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(
            hotfix.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["c", "a"]
        );
        let running = j
            .list(&Filter {
                status: Some("running"),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(running.len(), 1);
        // `c` is old enough but still running: kept.
        let pruned: Vec<String> = j.prune(10_000).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(pruned, ["a", "b"]);
        assert!(j.run("a").unwrap().is_none());
        assert!(j.events("a").unwrap().is_empty());
        assert!(j.run("c").unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn older_journals_are_upgraded_once_even_when_opened_at_once() {
        // What each older version lacked.
        for (version, dropped) in [
            (
                1,
                "ALTER TABLE runs DROP COLUMN env_file; ALTER TABLE runs DROP COLUMN guarded; ALTER TABLE runs DROP COLUMN started_by; DROP TABLE sources;",
            ),
            (
                2,
                "ALTER TABLE runs DROP COLUMN guarded; ALTER TABLE runs DROP COLUMN started_by; DROP TABLE sources;",
            ),
            (
                3,
                "ALTER TABLE runs DROP COLUMN started_by; DROP TABLE sources;",
            ),
            (4, "DROP TABLE sources;"),
        ] {
            let (j, dir) = journal(&format!("upgrade-{version}"));
            j.conn
                .execute_batch(&format!("{dropped} PRAGMA user_version = {version};"))
                .unwrap();
            drop(j);
            let path = dir.join("j.sqlite");
            let opened: Vec<Result<(), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|_| s.spawn(|| SqliteJournal::open(&path).map(|_| ())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(opened.iter().all(Result::is_ok), "v{version}: {opened:?}");
            let j = SqliteJournal::open(&path).unwrap();
            let now: i64 = j
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(now, SCHEMA_VERSION);
            j.conn
                .prepare("SELECT env_file, guarded, started_by FROM runs")
                .expect("the columns exist");
            j.conn
                .prepare("SELECT run_id, kind, path, text FROM sources")
                .expect("the sources table exists");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn a_journal_from_a_newer_runner_is_refused() {
        let (j, dir) = journal("newer");
        j.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(j);
        let e = SqliteJournal::open(&dir.join("j.sqlite")).err().unwrap();
        assert!(e.contains("schema version 99"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
