//! The run queue of a shared journal: runs submitted to be run by whichever
//! worker claims them first (`runner submit`, `runner worker`).
//!
//! A submitted run is a row of `queue` with everything needed to start it on
//! any machine: the playbook's and environment file's text, the inputs, who
//! submitted it. Workers claim the oldest queued row with `FOR UPDATE SKIP
//! LOCKED`, so two workers never claim one row and none waits for another. A
//! claimed run is started by a child process of the worker, which takes the
//! run's lease (see `locks.rs`) before anything else; from then on the run is
//! carried on as any run is, and a worker that finds its lease run out takes it
//! over. A row claimed by a worker that died before its child took the lease
//! goes back to the queue.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Connection;

/// What a worker needs to start a submitted run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    /// Where the playbook was on the machine it was submitted from.
    pub file: String,
    pub playbook_text: String,
    /// `name=value`, as given with `-i`.
    pub inputs: Vec<String>,
    pub env: Option<String>,
    pub env_text: Option<String>,
    /// Who submitted it, and where that name came from (`identity::Source`).
    pub by: String,
    pub by_source: String,
    /// What started it when not a person (`RunOptions::trigger`): the hook
    /// it came through and the alert or body, JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<(String, String)>,
}

/// A queued run as the queue has it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub run_id: String,
    /// `queued`, `claimed` (a worker started it) or `done`.
    pub state: String,
    pub worker: Option<String>,
    /// The exit code of the worker's child, once done.
    pub exit_code: Option<i32>,
}

/// The queue in a PostgreSQL database.
pub struct PgQueue {
    conn: Arc<Connection>,
}

impl PgQueue {
    /// The queue in the database at `url` (its schema brought up to date).
    pub fn open(url: &str) -> Result<PgQueue, String> {
        let target = super::Target::parse(url)?;
        let location = target.describe();
        let conn = Connection::open(target, location.clone())?;
        super::migrate(&conn, &location)?;
        Ok(PgQueue {
            conn: Arc::new(conn),
        })
    }

    /// Queues run `run_id`, of concurrency group `group` if it has one.
    pub fn submit(&self, run_id: &str, run: &Submitted, group: Option<&str>) -> Result<(), String> {
        let id = run_id.to_owned();
        let group = group.map(str::to_owned);
        let text = serde_json::to_string(run).map_err(|e| e.to_string())?;
        self.conn
            .call(move |c| {
                c.execute(
                    "INSERT INTO queue (run_id, state, run, grp) VALUES ($1, 'queued', $2, $3)",
                    &[&id, &text, &group],
                )
            })
            .map(drop)
    }

    /// Claims the oldest queued run for `worker` that can start now: one whose
    /// concurrency group nobody holds or waits for (a run of a busy group
    /// would only wait, holding a worker's slot that a run of another group
    /// could use; it is claimed when its group comes free, oldest first).
    pub fn claim(&self, worker: &str) -> Result<Option<(String, Submitted)>, String> {
        let worker = worker.to_owned();
        let row = self.conn.call(move |c| {
            c.query_opt(
                "UPDATE queue SET state = 'claimed', worker = $1, claimed_at = now()
                  WHERE run_id = (SELECT q.run_id FROM queue q
                                   WHERE q.state = 'queued'
                                     AND (q.grp IS NULL OR NOT (
                                          -- held, by a run that goes on (see locks.rs)
                                          EXISTS (SELECT 1 FROM groups g WHERE g.grp = q.grp
                                                  AND (EXISTS (SELECT 1 FROM runs r WHERE r.id = g.run_id AND r.status = 'running')
                                                       OR (NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = g.run_id)
                                                           AND EXISTS (SELECT 1 FROM leases l WHERE l.run_id = g.run_id AND l.until > now()))))
                                          -- waited for, by a runner that is alive
                                          OR EXISTS (SELECT 1 FROM group_queue w JOIN leases l ON l.run_id = w.run_id
                                                     WHERE w.grp = q.grp AND l.until > now())
                                          -- taken by a worker, not ended yet
                                          OR EXISTS (SELECT 1 FROM queue o WHERE o.grp = q.grp AND o.state = 'claimed'
                                                     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = o.run_id AND r.status <> 'running'))))
                                   ORDER BY q.queued_at, q.run_id
                                   FOR UPDATE SKIP LOCKED LIMIT 1)
                 RETURNING run_id, run",
                &[&worker],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let run_id: String = row.get(0);
        let run = serde_json::from_str(row.get::<_, &str>(1)).map_err(|e| {
            format!("queue: the submitted run {run_id} cannot be read ({e}); it was written by another version of runner")
        })?;
        Ok(Some((run_id, run)))
    }

    /// The worker's child for `run_id` ended with `exit_code`.
    pub fn done(&self, run_id: &str, exit_code: i32) -> Result<(), String> {
        let id = run_id.to_owned();
        self.conn
            .call(move |c| {
                c.execute(
                    "UPDATE queue SET state = 'done', exit_code = $2, done_at = now() WHERE run_id = $1",
                    &[&id, &exit_code],
                )
            })
            .map(drop)
    }

    /// Puts back in the queue the runs claimed more than `after` ago whose
    /// child never took their lease or never began them (their worker died
    /// first); how many.
    pub fn requeue_stranded(&self, after: Duration) -> Result<u64, String> {
        let secs = after.as_secs_f64();
        self.conn.call(move |c| {
            c.execute(
                "UPDATE queue q SET state = 'queued', worker = NULL, claimed_at = NULL
                  WHERE q.state = 'claimed'
                    AND q.claimed_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = q.run_id)
                    AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run_id = q.run_id AND l.until > now())",
                &[&secs],
            )
        })
    }

    /// Marks done the claimed runs that ended with nobody left to say so in
    /// the queue (their child died between the run's end and that word); the
    /// exit code stays unknown. A child that is only slow still writes its
    /// code over this. How many.
    pub fn settle_ended(&self) -> Result<u64, String> {
        self.conn.call(|c| {
            c.execute(
                "UPDATE queue q SET state = 'done', done_at = now()
                  WHERE q.state = 'claimed'
                    AND EXISTS (SELECT 1 FROM runs r WHERE r.id = q.run_id AND r.status <> 'running')
                    AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run_id = q.run_id AND l.until > now())",
                &[],
            )
        })
    }

    /// A run whose runner is gone: it is running by the journal, its lease ran
    /// out, and no other worker looks at it now (`SKIP LOCKED`); `None` when
    /// there is none. `skip`: runs this worker is carrying on already.
    pub fn orphan(&self, skip: &[String]) -> Result<Option<String>, String> {
        let skip = skip.to_vec();
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt(
                "SELECT l.run_id FROM leases l JOIN runs r ON r.id = l.run_id
                  WHERE r.status = 'running' AND l.until < now() AND NOT (l.run_id = ANY($1))
                  ORDER BY l.until
                  FOR UPDATE OF l SKIP LOCKED LIMIT 1",
                &[&skip],
            )?;
            tx.commit()?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// What was submitted as run `run_id`, if it was.
    pub fn submission(&self, run_id: &str) -> Result<Option<Submitted>, String> {
        let id = run_id.to_owned();
        let row = self
            .conn
            .call(move |c| c.query_opt("SELECT run FROM queue WHERE run_id = $1", &[&id]))?;
        row.map(|r| {
            serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| {
                format!("queue: the submitted run {run_id} cannot be read ({e}); it was written by another version of runner")
            })
        })
        .transpose()
    }

    /// Asks for run `run_id` to be cancelled by `by`: a run still queued is
    /// done at once (it never starts); a claimed one is stopped by its
    /// worker's child ([`PgQueue::cancel_requested`]). The state the row was
    /// in; `None` when the queue has no such run.
    pub fn cancel(&self, run_id: &str, by: &str) -> Result<Option<String>, String> {
        let (id, by) = (run_id.to_owned(), by.to_owned());
        let row = self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let old = tx.query_opt(
                "SELECT state FROM queue WHERE run_id = $1 FOR UPDATE",
                &[&id],
            )?;
            if old.is_some() {
                tx.execute(
                    "UPDATE queue SET cancel_by = $2,
                            done_at = CASE WHEN state = 'queued' THEN now() ELSE done_at END,
                            state = CASE WHEN state = 'queued' THEN 'done' ELSE state END
                      WHERE run_id = $1",
                    &[&id, &by],
                )?;
            }
            tx.commit()?;
            Ok(old)
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The runs submitted and not done (queued, or claimed by a worker),
    /// with what was submitted.
    pub fn undone(&self) -> Result<Vec<(String, Submitted)>, String> {
        let rows = self.conn.call(|c| {
            c.query(
                "SELECT run_id, run FROM queue WHERE state <> 'done' ORDER BY queued_at",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let run: Submitted = serde_json::from_str(r.get::<_, &str>(1)).ok()?;
                Some((r.get(0), run))
            })
            .collect())
    }

    /// How many runs wait for a worker.
    pub fn depth(&self) -> Result<i64, String> {
        let row = self
            .conn
            .call(|c| c.query_one("SELECT count(*) FROM queue WHERE state = 'queued'", &[]))?;
        Ok(row.get(0))
    }

    /// Who asked for run `run_id` to be cancelled, if anyone did.
    pub fn cancel_requested(&self, run_id: &str) -> Result<Option<String>, String> {
        let id = run_id.to_owned();
        let row = self
            .conn
            .call(move |c| c.query_opt("SELECT cancel_by FROM queue WHERE run_id = $1", &[&id]))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// The queue's row of `run_id`.
    pub fn entry(&self, run_id: &str) -> Result<Option<Entry>, String> {
        let id = run_id.to_owned();
        let row = self.conn.call(move |c| {
            c.query_opt(
                "SELECT run_id, state, worker, exit_code FROM queue WHERE run_id = $1",
                &[&id],
            )
        })?;
        Ok(row.map(|r| Entry {
            run_id: r.get(0),
            state: r.get(1),
            worker: r.get(2),
            exit_code: r.get(3),
        }))
    }
}
