//! The shared journal: PostgreSQL, for a team whose runs start on several
//! machines and must share one history (`RUNNER_DATABASE_URL`, `--database`).
//!
//! The same records as the SQLite journal, in the same shape: the events and a
//! step's final record are kept as the JSON text the runner wrote (not `jsonb`,
//! which reorders keys), so a report read from either journal is the same
//! report. Everything lives in the `runner` schema of the database, so the
//! journal can share a database with other programs.
//!
//! Schema versions are the rows of `runner.schema_version`; `MIGRATIONS[n]`
//! turns version n into n + 1. They are applied when the journal is opened, in
//! one transaction under an advisory lock, so runners that start together on a
//! new database create it once. A database written by a newer runner is
//! refused with a message that says so.
//!
//! Why a thread per journal: the [`Journal`] trait is synchronous (an event is
//! committed before the engine moves on, from inside the engine's async task),
//! and the `postgres` client drives its own small runtime, which must not run
//! on a thread of another. So each journal owns a connection on a thread of its
//! own and each call waits for that thread's answer, as a call to SQLite waits
//! for the disk. A connection that broke is opened again on the next call.
//!
//! Why the `postgres` crate (rust-postgres's synchronous client over
//! tokio-postgres): the journal, the locks and the approvals are synchronous
//! traits, and it adds nothing the runner does not use (no pool, no macros,
//! no compile-time database); `LISTEN`/`NOTIFY` come with it. Not `sqlx::Any`:
//! the two journals need different SQL anyway (PRAGMAs and `WITHOUT ROWID`
//! here, `SKIP LOCKED`, advisory locks and `NOTIFY` there).

use postgres::Row;
use serde_json::Value;

use super::{Filter, Journal, RunRow, SourceFile, SourceKind, StepStates, Stored, stamp};
use crate::engine::Event;

pub mod approvals;
mod connection;
pub mod locks;
pub mod queue;
mod target;

pub use approvals::PgApprovals;
pub use connection::Connection;
pub use locks::PgLocks;
pub use queue::PgQueue;
pub use target::Target;

/// The schema version this runner writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// `MIGRATIONS[n]` turns version n into version n + 1.
const MIGRATIONS: [&str; 6] = [
    // 1: runs, their events, their steps' states and their source files.
    "
CREATE TABLE runs (
    id           text PRIMARY KEY,
    playbook     text NOT NULL,
    file         text NOT NULL,
    file_sha256  text NOT NULL,
    input_args   text NOT NULL,      -- JSON array of the KEY=VALUE arguments given
    inputs       text NOT NULL,      -- JSON object of the resolved inputs
    started_at   text NOT NULL,
    started_ms   bigint NOT NULL,
    finished_ms  bigint,
    duration_ms  bigint,
    status       text NOT NULL,      -- running, succeeded, failed, timed_out, interrupted
    rolled_back  boolean NOT NULL DEFAULT false,
    parent       text,               -- the run this one re-runs
    pid          bigint NOT NULL,
    env_file     text,
    guarded      boolean NOT NULL DEFAULT false,
    started_by   text
);
CREATE INDEX runs_started ON runs (started_ms);
CREATE INDEX runs_playbook ON runs (playbook, started_ms);
CREATE TABLE events (
    run_id     text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    at         text NOT NULL,
    offset_ms  bigint NOT NULL,
    kind       text NOT NULL,
    stage      text,
    step       text,
    body       text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE steps (
    run_id    text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step      text NOT NULL,
    status    text NOT NULL,         -- running, or the final status
    attempts  integer NOT NULL,
    record    text,                  -- the final StepRecord as JSON
    PRIMARY KEY (run_id, step)
);
CREATE TABLE sources (
    run_id  text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind    text NOT NULL,           -- playbook, environment
    path    text NOT NULL,
    text    text NOT NULL,
    PRIMARY KEY (run_id, kind)
);
",
    // 2: the locks of runners on many machines (see locks.rs): runs' leases,
    // the groups runs hold, the runs that wait for a group.
    "
CREATE TABLE leases (
    run_id     text PRIMARY KEY,
    epoch      bigint NOT NULL,      -- grows at each taking: fences the run's writes
    until      timestamptz NOT NULL, -- on the database's clock; -infinity: given back
    holder     text NOT NULL,        -- JSON: run_id, pid, host, since
    takeovers  integer NOT NULL DEFAULT 0
);
CREATE TABLE groups (
    grp     text PRIMARY KEY,
    run_id  text NOT NULL,
    holder  text NOT NULL,
    since   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE group_queue (
    grp     text NOT NULL,
    run_id  text NOT NULL,
    ticket  bigserial,
    PRIMARY KEY (grp, run_id)
);
",
    // 3: approvals (see approvals.rs): what runs wait for, and every answer.
    "
CREATE TABLE approval_requests (
    run_id   text NOT NULL,
    step     text NOT NULL,
    request  text NOT NULL,          -- JSON: prompt, approvers, deadline
    open     boolean NOT NULL,       -- the run waits for it now
    PRIMARY KEY (run_id, step)
);
CREATE TABLE approval_decisions (
    seq       bigserial PRIMARY KEY,
    run_id    text NOT NULL,
    step      text NOT NULL,
    decision  text NOT NULL          -- JSON: approved, by, role, at, comment, via
);
CREATE INDEX approval_decisions_step ON approval_decisions (run_id, step, seq);
",
    // 4: the run queue (see queue.rs).
    "
CREATE TABLE queue (
    run_id      text PRIMARY KEY,
    state       text NOT NULL,       -- queued, claimed, done
    run         text NOT NULL,       -- JSON: the playbook's text, inputs, environment, who
    queued_at   timestamptz NOT NULL DEFAULT now(),
    worker      text,
    claimed_at  timestamptz,
    exit_code   integer,
    done_at     timestamptz
);
CREATE INDEX queue_waiting ON queue (queued_at, run_id) WHERE state = 'queued';
",
    // 5: a queued run's concurrency group, so that a worker does not take a run
    // that could only wait for its group.
    "ALTER TABLE queue ADD COLUMN grp text",
    // 6: who asked to cancel a queued run (`runner serve`); its worker's child
    // stops it as SIGTERM would.
    "ALTER TABLE queue ADD COLUMN cancel_by text",
];

/// The advisory lock that makes opening (and migrating) one at a time.
const MIGRATION_LOCK: i64 = 0x7275_6e6e_6572; // "runner"

/// A journal in a PostgreSQL database.
pub struct PgJournal {
    conn: Connection,
    location: String,
    /// The run whose writes are fenced, and the epoch of its lease.
    fence: Option<(String, i64)>,
    /// A write was refused by the fence.
    taken_over: std::sync::atomic::AtomicBool,
}

/// `postgres://user@host:port/db`: where the database of `url` is, without
/// its password; `None` when the URL cannot be read.
pub fn describe(url: &str) -> Option<String> {
    Target::parse(url).ok().map(|t| t.describe())
}

impl PgJournal {
    /// Connects to the database at `url` and brings its schema up to date
    /// (creating it in a new database).
    pub fn open(url: &str) -> Result<PgJournal, String> {
        let target = Target::parse(url)?;
        let location = target.describe();
        let conn = Connection::open(target, location.clone())?;
        let journal = PgJournal {
            conn,
            location,
            fence: None,
            taken_over: Default::default(),
        };
        migrate(&journal.conn, &journal.location)?;
        Ok(journal)
    }

    /// Runs `work` in one transaction behind the run's fence (see
    /// [`fenced`]); a refusal by the fence is remembered (see
    /// [`Journal::taken_over`]).
    fn behind_fence<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, String> {
        let fence = self.fence.clone();
        let done = self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            if let Err(e) = fenced(&mut tx, fence.as_ref())? {
                return Ok(Err(e));
            }
            let value = work(&mut tx)?;
            tx.commit()?;
            Ok(Ok(value))
        })?;
        if done.is_err() {
            self.taken_over
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        done
    }

    /// The schema version the database holds.
    pub fn schema_version(&self) -> Result<i64, String> {
        self.conn.call(|c| {
            let row = c.query_one("SELECT max(version) FROM runner.schema_version", &[])?;
            Ok(row.get::<_, Option<i64>>(0).unwrap_or(0))
        })
    }
}

/// `Err`: the run's lease has moved on to another epoch (another runner took
/// the run over), so this runner may write nothing more of it.
fn fenced(
    tx: &mut postgres::Transaction<'_>,
    fence: Option<&(String, i64)>,
) -> Result<Result<(), String>, postgres::Error> {
    let Some((run_id, epoch)) = fence else {
        return Ok(Ok(()));
    };
    let now: Option<i64> = tx
        .query_opt(
            "SELECT epoch FROM leases WHERE run_id = $1 FOR SHARE",
            &[run_id],
        )?
        .map(|r| r.get(0));
    Ok(match now {
        Some(now) if now == *epoch => Ok(()),
        now => Err(format!(
            "journal: run {run_id} was taken over by another runner (its lease is at epoch {}, this runner held epoch {epoch}); this runner writes nothing more of it",
            now.map_or("none".to_owned(), |n| n.to_string())
        )),
    })
}

/// An event of run `id` from a row that begins `seq, at, offset_ms, body`.
fn stored(id: &str, r: &postgres::Row) -> Result<Stored, String> {
    let seq: i64 = r.get(0);
    let event = super::read_event(id, seq, r.get(3))?;
    Ok(Stored {
        seq,
        at: r.get(1),
        offset_ms: r.get(2),
        event,
    })
}

/// Creates or upgrades the schema, one runner at a time; refuses a newer one.
pub(super) fn migrate(conn: &Connection, location: &str) -> Result<(), String> {
    let location = location.to_owned();
    let outcome = conn.call(move |c| {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS runner;
             CREATE TABLE IF NOT EXISTS runner.schema_version (version bigint NOT NULL)",
        )?;
        let version: Option<i64> = tx
            .query_opt("SELECT max(version) FROM runner.schema_version", &[])?
            .and_then(|r| r.get(0));
        let version = version.unwrap_or(0);
        if version > PG_SCHEMA_VERSION {
            return Ok(Err(format!(
                "the journal database {location} has schema version {version}, written by a newer runner (this one reads {PG_SCHEMA_VERSION}); upgrade the runner or use another database"
            )));
        }
        for (n, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(migration)?;
            tx.execute(
                "INSERT INTO runner.schema_version (version) VALUES ($1)",
                &[&(n as i64 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(Ok(()))
    })?;
    outcome.map_err(|e| e.to_string())
}

const RUN_COLUMNS: &str = "SELECT id, playbook, file, file_sha256, input_args, inputs, started_at, started_ms, finished_ms, duration_ms, status, rolled_back, parent, pid, env_file, guarded, started_by FROM runs";

fn run_row(r: &Row) -> RunRow {
    RunRow {
        id: r.get(0),
        playbook: r.get(1),
        file: r.get(2),
        file_sha256: r.get(3),
        input_args: serde_json::from_str(r.get::<_, &str>(4)).unwrap_or_default(),
        inputs: serde_json::from_str(r.get::<_, &str>(5)).unwrap_or(Value::Null),
        started_at: r.get(6),
        started_ms: r.get(7),
        finished_ms: r.get(8),
        duration_ms: r.get(9),
        status: r.get(10),
        rolled_back: r.get(11),
        parent: r.get(12),
        pid: r.get(13),
        env_file: r.get(14),
        guarded: r.get(15),
        started_by: r.get(16),
    }
}

impl Journal for PgJournal {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    /// From now on every write of run `run_id` first checks, in its own
    /// transaction, that its lease still has `epoch` (and holds the lease's
    /// row until it commits, so no taking over comes between).
    fn fence(&mut self, run_id: &str, epoch: i64) {
        self.fence = Some((run_id.to_owned(), epoch));
    }

    fn lease(&self, run_id: &str) -> Result<Option<super::Lease>, String> {
        let id = run_id.to_owned();
        let row = self.conn.call(move |c| {
            c.query_opt(
                "SELECT holder, CASE WHEN until = '-infinity' THEN NULL
                                     ELSE extract(epoch FROM until - now())::float8 END,
                        takeovers, epoch
                   FROM leases WHERE run_id = $1",
                &[&id],
            )
        })?;
        Ok(row.and_then(|r| {
            Some(super::Lease {
                holder: serde_json::from_str(r.get::<_, &str>(0)).ok()?,
                left_s: r.get(1),
                takeovers: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                epoch: r.get(3),
            })
        }))
    }

    fn taken_over(&self) -> bool {
        self.taken_over.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn begin_with(&self, run: &RunRow, sources: &[SourceFile]) -> Result<(), String> {
        let run = run.clone();
        let sources: Vec<(String, String, String)> = sources
            .iter()
            .map(|f| (f.kind.as_str().to_owned(), f.path.clone(), f.text.clone()))
            .collect();
        self.behind_fence(move |tx| {
            tx.execute(
                "INSERT INTO runs (id, playbook, file, file_sha256, input_args, inputs, started_at, started_ms, status, parent, pid, env_file, guarded, started_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, $10, $11, $12, $13)",
                &[
                    &run.id,
                    &run.playbook,
                    &run.file,
                    &run.file_sha256,
                    &serde_json::to_string(&run.input_args).unwrap_or_default(),
                    &run.inputs.to_string(),
                    &run.started_at,
                    &run.started_ms,
                    &run.parent,
                    &run.pid,
                    &run.env_file,
                    &run.guarded,
                    &run.started_by,
                ],
            )?;
            for (kind, path, text) in &sources {
                tx.execute(
                    "INSERT INTO sources (run_id, kind, path, text) VALUES ($1, $2, $3, $4)",
                    &[&run.id, kind, path, text],
                )?;
            }
            Ok(())
        })
    }

    fn sources(&self, id: &str) -> Result<Vec<SourceFile>, String> {
        let id = id.to_owned();
        let rows = self.conn.call(move |c| {
            c.query(
                "SELECT kind, path, text FROM sources WHERE run_id = $1 ORDER BY kind DESC",
                &[&id],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let kind = match r.get::<_, &str>(0) {
                    "playbook" => SourceKind::Playbook,
                    "environment" => SourceKind::Environment,
                    "trigger" => SourceKind::Trigger,
                    // Written by a newer runner: not ours to use.
                    _ => return None,
                };
                Some(SourceFile {
                    kind,
                    path: r.get(1),
                    text: r.get(2),
                })
            })
            .collect())
    }

    fn reopen(&self, id: &str) -> Result<(), String> {
        let id = id.to_owned();
        let pid = i64::from(std::process::id());
        self.behind_fence(move |tx| {
            tx.execute(
                "UPDATE runs SET status = 'running', finished_ms = NULL, duration_ms = NULL, pid = $2, guarded = false WHERE id = $1",
                &[&id, &pid],
            )?;
            Ok(())
        })
    }

    /// Behind the fence, as a write is: once the run is another runner's,
    /// an event numbered `seq` may be the new owner's, and must not pass for
    /// this runner's own write having landed.
    fn has_event(&self, id: &str, seq: i64) -> Result<bool, String> {
        let id = id.to_owned();
        self.behind_fence(move |tx| {
            tx.query_opt(
                "SELECT 1 FROM events WHERE run_id = $1 AND seq = $2",
                &[&id, &seq],
            )
            .map(|r| r.is_some())
        })
    }

    fn next_seq(&self, id: &str) -> Result<i64, String> {
        let id = id.to_owned();
        self.conn.call(move |c| {
            c.query_one(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = $1",
                &[&id],
            )
            .map(|r| r.get(0))
        })
    }

    fn record(
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
        let id = id.to_owned();
        let at = stamp(at_ms);
        // What the event changes besides its own row.
        let change: Option<(&'static str, Vec<Param>)> = match event {
            Event::StepStarted { step, .. } => Some((
                "INSERT INTO steps (run_id, step, status, attempts) VALUES ($1, $2, 'running', 1)
                 ON CONFLICT (run_id, step) DO UPDATE SET status = 'running', attempts = steps.attempts + 1, record = NULL",
                vec![Param::Text(id.clone()), Param::Text(step.clone())],
            )),
            Event::Retry { step, attempt, .. } => Some((
                "UPDATE steps SET attempts = $3 WHERE run_id = $1 AND step = $2",
                vec![
                    Param::Text(id.clone()),
                    Param::Text(step.clone()),
                    Param::Int(i32::try_from(attempt.saturating_add(1)).unwrap_or(i32::MAX)),
                ],
            )),
            Event::StepFinished(r) | Event::StepRestored(r) => Some((
                "INSERT INTO steps (run_id, step, status, attempts, record) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, step) DO UPDATE SET status = $3, attempts = $4, record = $5",
                vec![
                    Param::Text(id.clone()),
                    Param::Text(r.step.clone()),
                    Param::Text(r.status.to_owned()),
                    Param::Int(i32::try_from(r.attempts).unwrap_or(i32::MAX)),
                    Param::Text(serde_json::to_string(r).map_err(|e| format!("journal: {e}"))?),
                ],
            )),
            Event::Handlers {
                kind: "on_failure", ..
            } => Some((
                "UPDATE runs SET rolled_back = true WHERE id = $1",
                vec![Param::Text(id.clone())],
            )),
            Event::RunFinished { status, .. } => Some((
                "UPDATE runs SET status = $2, finished_ms = $3, duration_ms = $3 - started_ms WHERE id = $1",
                vec![
                    Param::Text(id.clone()),
                    Param::Text((*status).to_owned()),
                    Param::Big(at_ms),
                ],
            )),
            _ => None,
        };
        self.behind_fence(move |tx| {
            tx.execute(
                "INSERT INTO events (run_id, seq, at, offset_ms, kind, stage, step, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&id, &seq, &at, &offset_ms, &kind, &stage, &step, &body],
            )?;
            if let Some((statement, params)) = &change {
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(Param::as_sql).collect();
                tx.execute(*statement, &refs)?;
            }
            Ok(())
        })
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>, String> {
        let id = id.to_owned();
        let row = self
            .conn
            .call(move |c| c.query_opt(&format!("{RUN_COLUMNS} WHERE id = $1"), &[&id]))?;
        Ok(row.as_ref().map(run_row))
    }

    fn list(&self, f: &Filter) -> Result<Vec<RunRow>, String> {
        let playbook = f.playbook.map(str::to_owned);
        let status = f.status.map(str::to_owned);
        let since = f.since_ms;
        let limit = f.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = self.conn.call(move |c| {
            c.query(
                &format!(
                    "{RUN_COLUMNS} WHERE ($1::text IS NULL OR playbook = $1) AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR started_ms >= $3)
                     ORDER BY started_ms DESC, id DESC LIMIT $4"
                ),
                &[&playbook, &status, &since, &limit],
            )
        })?;
        Ok(rows.iter().map(run_row).collect())
    }

    fn events_after(&self, id: &str, after: i64) -> Result<Vec<Stored>, String> {
        let run = id.to_owned();
        let rows = self.conn.call(move |c| {
            c.query(
                "SELECT seq, at, offset_ms, body FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                &[&run, &after],
            )
        })?;
        rows.iter().map(|r| stored(id, r)).collect()
    }

    /// One query for all the runs (a list of 200 runs would otherwise cost
    /// 200 round trips to the database).
    fn first_events(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Stored>, String> {
        let wanted = ids.to_vec();
        let rows = self.conn.call(move |c| {
            c.query(
                "SELECT DISTINCT ON (run_id) seq, at, offset_ms, body, run_id FROM events
                  WHERE run_id = ANY($1) ORDER BY run_id, seq",
                &[&wanted],
            )
        })?;
        rows.iter()
            .map(|r| {
                let run: String = r.get(4);
                Ok((run.clone(), stored(&run, r)?))
            })
            .collect()
    }

    fn steps(&self, id: &str) -> Result<StepStates, String> {
        let run = id.to_owned();
        let rows = self.conn.call(move |c| {
            c.query(
                "SELECT step, status, attempts, record FROM steps WHERE run_id = $1",
                &[&run],
            )
        })?;
        let mut out = StepStates::default();
        for r in &rows {
            let attempts = u32::try_from(r.get::<_, i32>(2)).unwrap_or(0);
            super::add_step(&mut out, id, r.get(0), r.get(1), attempts, r.get(3))?;
        }
        Ok(out)
    }

    fn prune(&mut self, before_ms: i64) -> Result<Vec<RunRow>, String> {
        let rows = self.conn.call(move |c| {
            c.query(
                &format!(
                    "DELETE FROM runs WHERE started_ms < $1 AND status <> 'running'
                     RETURNING {}",
                    RUN_COLUMNS
                        .trim_start_matches("SELECT ")
                        .trim_end_matches(" FROM runs")
                ),
                &[&before_ms],
            )
        })?;
        Ok(rows.iter().map(run_row).collect())
    }
}

/// A parameter of a statement built before the call (the call's closure must
/// own what it sends).
enum Param {
    Text(String),
    Int(i32),
    Big(i64),
}

impl Param {
    fn as_sql(&self) -> &(dyn postgres::types::ToSql + Sync) {
        match self {
            Param::Text(t) => t,
            Param::Int(i) => i,
            Param::Big(i) => i,
        }
    }
}
