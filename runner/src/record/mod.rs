//! The run journal: every run and every event of it.
//!
//! Why: a hotfix run is evidence for the post-mortem, the operations guide wants
//! history, success rates and durations, and a runner that dies mid-canary must
//! be able to pick the run up again. So each event is written, in its own
//! transaction, before the engine moves on (the run's event sink returns only
//! after the commit). A run keeps the text of the playbook and of the
//! environment file it started from, so that it can be resumed or re-run on a
//! machine that does not have the files (environment files hold secret
//! references, not values). Everything stored has been redacted by the host
//! already: secret values never reach an event.
//!
//! What a journal does is the [`Journal`] trait; [`SqliteJournal`] (one file
//! under the state directory) is the default and what every front end uses
//! when no shared journal is configured; [`PgJournal`] is the shared one, a
//! PostgreSQL database several machines write to. The [`recorder`] puts a run's events
//! into a journal in order, holding them while it refuses writes; [`stats`]
//! reads figures from any journal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::engine::{Event, StepRecord};

pub mod postgres;
pub mod recorder;
pub mod sqlite;
pub mod stats;

pub use postgres::{PgApprovals, PgJournal, PgLocks};
pub use recorder::{Outcome, Recorder};
pub use sqlite::{SCHEMA_VERSION, SqliteJournal};

pub use crate::settings::DEFAULT_RETENTION;

/// A run as the journal knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub playbook: String,
    pub file: String,
    pub file_sha256: String,
    pub input_args: Vec<String>,
    pub inputs: Value,
    pub started_at: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub status: String,
    pub rolled_back: bool,
    pub parent: Option<String>,
    pub pid: i64,
    /// The `--env` file the run used.
    pub env_file: Option<String>,
    /// Whether the run was started with an intact mark (see [`recorder`]):
    /// runs started by a runner older than schema 3 were not.
    pub guarded: bool,
    /// Who started the run, `name (source)` (see [`crate::identity`]); runs
    /// of older runners have none.
    pub started_by: Option<String>,
}

/// A file a run started from, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub kind: SourceKind,
    /// Where the file was when the run started (canonical when it could be).
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Playbook,
    Environment,
    /// What started the run, when not a person: the alert or webhook body
    /// (JSON) that `runner serve` started it for.
    Trigger,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Playbook => "playbook",
            SourceKind::Environment => "environment",
            SourceKind::Trigger => "trigger",
        }
    }
}

/// What `runner resume` needs about the steps of a run.
#[derive(Debug, Default)]
pub struct StepStates {
    /// Steps that finished, with their records.
    pub finished: std::collections::HashMap<String, StepRecord>,
    /// Steps that were running when the runner died, with the attempts started.
    pub in_flight: std::collections::HashMap<String, u32>,
}

/// An event as stored, with its time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    pub seq: i64,
    pub at: String,
    pub offset_ms: i64,
    pub event: Event,
}

/// Which runs to list.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub playbook: Option<&'a str>,
    pub status: Option<&'a str>,
    pub since_ms: Option<i64>,
    pub limit: Option<usize>,
}

/// Where runs and their events are kept, whatever keeps them. Every method
/// answers from what is committed: a crash between two calls loses nothing
/// that one of them said was written. Errors are messages that name the
/// journal ([`Journal::location`]) and say what to do.
pub trait Journal: Send {
    /// Where the journal is, for messages: a file's path, a server's address.
    fn location(&self) -> String;

    /// Whether runners on other machines write to it too. A run's intact
    /// mark (see [`recorder`]) is a file on the machine that runs it, which
    /// nobody else can see: runs in a shared journal are begun without one.
    fn shared(&self) -> bool {
        false
    }

    /// Writes of run `run_id` from now on are refused unless the run's lease
    /// is still at `epoch` (see `engine::lock::Held::epoch`): a runner that
    /// lost the run to another writes nothing more. A journal without leases
    /// ignores it.
    fn fence(&mut self, _run_id: &str, _epoch: i64) {}

    /// Whether a write was refused because the run was taken over (see
    /// [`Journal::fence`]).
    fn taken_over(&self) -> bool {
        false
    }

    /// Who carries run `run_id` on, for a journal with leases (`None`
    /// otherwise, or when the run never had one).
    fn lease(&self, _run_id: &str) -> Result<Option<Lease>, String> {
        Ok(None)
    }

    /// Records the start of a run.
    fn begin(&self, run: &RunRow) -> Result<(), String> {
        self.begin_with(run, &[])
    }

    /// Records the start of a run with the files it starts from, at once: a
    /// run row never lacks the sources it was begun with.
    fn begin_with(&self, run: &RunRow, sources: &[SourceFile]) -> Result<(), String>;

    /// The files run `id` started from (none for runs of older runners).
    fn sources(&self, id: &str) -> Result<Vec<SourceFile>, String>;

    /// Marks run `id` as running again (it is resumed).
    fn reopen(&self, id: &str) -> Result<(), String>;

    /// Whether run `id` has its event number `seq`.
    fn has_event(&self, id: &str, seq: i64) -> Result<bool, String>;

    /// The number the next event of run `id` gets.
    fn next_seq(&self, id: &str) -> Result<i64, String>;

    /// Writes one event (and what it changes of the run and its steps) at
    /// once; returns when it is committed.
    fn record(
        &mut self,
        id: &str,
        seq: i64,
        at_ms: i64,
        offset_ms: i64,
        event: &Event,
    ) -> Result<(), String>;

    /// One run.
    fn run(&self, id: &str) -> Result<Option<RunRow>, String>;

    /// Runs, newest first.
    fn list(&self, f: &Filter) -> Result<Vec<RunRow>, String>;

    /// The events of run `id`, in order.
    fn events(&self, id: &str) -> Result<Vec<Stored>, String> {
        self.events_after(id, -1)
    }

    /// The events of run `id` numbered above `after`, in order: what a
    /// reader who has seen up to `after` has not seen yet.
    fn events_after(&self, id: &str, after: i64) -> Result<Vec<Stored>, String>;

    /// The first event of run `id` (its `run_started`, which carries the
    /// run's budget). Journals that can read that row alone override this.
    fn first_event(&self, id: &str) -> Result<Option<Stored>, String> {
        Ok(self.events_after(id, -1)?.into_iter().next())
    }

    /// [`Journal::first_event`] of each of the runs `ids` that has one, by
    /// run: what a list of runs needs without reading whole runs. A journal
    /// across a network overrides this with one query.
    fn first_events(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Stored>, String> {
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(first) = self.first_event(id)? {
                out.insert(id.clone(), first);
            }
        }
        Ok(out)
    }

    /// What `runner resume` needs about the steps of run `id`.
    fn steps(&self, id: &str) -> Result<StepStates, String>;

    /// Deletes the finished runs that started before `before_ms`, with their
    /// events, steps and sources; returns them.
    fn prune(&mut self, before_ms: i64) -> Result<Vec<RunRow>, String>;
}

/// A run's lease in a shared journal, as `runner runs show` tells it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lease {
    /// The runner that took it last (run id, pid, host, since).
    pub holder: crate::engine::lock::Holder,
    /// Seconds until it runs out (negative: it ran out that long ago); `None`
    /// when it was given back (the run ended there).
    pub left_s: Option<f64>,
    /// How many times it was taken from a runner that stopped renewing it.
    pub takeovers: u32,
    pub epoch: i64,
}

/// An event as a journal's row keeps it: its JSON text, and the kind, stage
/// and step it is about (columns to query by).
pub(crate) struct EventRow {
    pub body: String,
    pub kind: String,
    pub stage: Option<String>,
    pub step: Option<String>,
}

impl EventRow {
    pub(crate) fn of(event: &Event) -> Result<EventRow, String> {
        let body = serde_json::to_value(event).map_err(|e| format!("journal: {e}"))?;
        Ok(EventRow {
            kind: body["event"].as_str().unwrap_or("").to_owned(),
            stage: body["stage"].as_str().map(str::to_owned),
            step: body["step"].as_str().map(str::to_owned),
            body: body.to_string(),
        })
    }
}

/// Event `seq` of run `id` read back from its text. One that cannot be read is
/// reported, never skipped: a history with a hole in it would tell a
/// post-mortem something false.
pub(crate) fn read_event(id: &str, seq: i64, body: &str) -> Result<Event, String> {
    serde_json::from_str(body).map_err(|e| {
        format!(
            "journal: event {seq} of run {id} cannot be read ({e}); the journal was damaged or written by another version of runner"
        )
    })
}

/// Adds a step's stored state to `out`: in flight (`running`), or finished
/// with its record. A finished step whose record cannot be read is not taken
/// for one in flight (that would run it again): the run is refused.
pub(crate) fn add_step(
    out: &mut StepStates,
    id: &str,
    step: String,
    status: &str,
    attempts: u32,
    record: Option<&str>,
) -> Result<(), String> {
    if status == "running" {
        out.in_flight.insert(step, attempts);
        return Ok(());
    }
    let record = record
        .ok_or_else(|| "no record".to_owned())
        .and_then(|r| serde_json::from_str::<StepRecord>(r).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "journal: the record of step `{step}` of run {id} ({status}) cannot be read ({e}); the journal was damaged or written by another version of runner"
            )
        })?;
    out.finished.insert(step, record);
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 with milliseconds, UTC.
pub fn stamp(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let secs = crate::clock::rfc3339(t);
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms.rem_euclid(1000))
}
