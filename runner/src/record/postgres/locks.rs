//! The locks of a shared journal: a run's lease, and concurrency groups owned
//! by runs, in the database (the [`Locks`] of `engine::lock`, for runners on
//! many machines).
//!
//! A run's lease (`leases`, one row per run) says which runner carries the run
//! on: taken before the run starts or is resumed, renewed by a heartbeat every
//! third of its length, on the database's clock. A runner that dies stops
//! renewing; once the lease has run out another runner may take the run over
//! (`runner resume`), and taking it increases the lease's *epoch*. Every write
//! of the run's events checks that epoch in the same transaction (see
//! [`super::PgJournal::fence`]), so a runner that lost its lease (a pause, a
//! partition) can write nothing more; its heartbeat finds out at its next
//! renewal (or when it could not renew for a whole lease) and the run stops
//! there, without its handlers: the new owner runs them. A lease given back
//! (the run ended) runs out at once but keeps its row, so its epoch only grows.
//!
//! A concurrency group (`groups`) belongs to a run, not to a process: it is
//! given back when the run ends, and kept while the run waits to be taken over
//! after its runner died, so that no other run of the group starts in the
//! middle of it. A group held by a run that ended, or by a run that never got
//! its first row and whose lease ran out, is free. Waiting runs queue
//! (`group_queue`, first come, first served); a waiter whose lease ran out
//! (it died while waiting) is skipped and removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Connection;
use crate::engine::lock::{Held, Holder, LockError, Locks, OnConflict};

/// How often a waiting run looks at its group again.
const POLL: Duration = Duration::from_millis(250);

/// Leases and groups in a PostgreSQL database.
pub struct PgLocks {
    conn: Arc<Connection>,
    lease: Duration,
}

impl PgLocks {
    /// Locks in the database at `url` (its schema brought up to date, as a
    /// journal's); leases last `lease`.
    pub fn open(url: &str, lease: Duration) -> Result<PgLocks, String> {
        let target = super::Target::parse(url)?;
        let location = target.describe();
        let conn = Connection::open(target, location.clone())?;
        super::migrate(&conn, &location)?;
        Ok(PgLocks {
            conn: Arc::new(conn),
            lease: lease.max(Duration::from_secs(1)),
        })
    }
}

fn holder_json(me: &Holder) -> String {
    serde_json::to_string(me).unwrap_or_default()
}

fn holder_of(text: Option<String>) -> Option<Holder> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// What a held lease keeps: dropping it stops the heartbeat and gives the
/// lease back.
struct Lease {
    conn: Arc<Connection>,
    run_id: String,
    epoch: i64,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let (id, epoch) = (self.run_id.clone(), self.epoch);
        let _ = self.conn.call(move |c| {
            c.execute(
                "UPDATE leases SET until = '-infinity' WHERE run_id = $1 AND epoch = $2",
                &[&id, &epoch],
            )
        });
    }
}

/// Renews the lease every third of its length until `stop`; says `lost` when
/// the lease is another runner's now (its epoch moved on) or could not be
/// renewed for a whole lease.
fn heartbeat(
    conn: Arc<Connection>,
    run_id: String,
    epoch: i64,
    lease: Duration,
    stop: Arc<AtomicBool>,
    lost: tokio::sync::watch::Sender<bool>,
) {
    let every = lease / 3;
    let mut renewed = Instant::now();
    let secs = lease.as_secs_f64();
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(every);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let id = run_id.clone();
        let answer = conn.call(move |c| {
            c.query_opt(
                "UPDATE leases SET until = now() + make_interval(secs => $3)
                 WHERE run_id = $1 AND epoch = $2 RETURNING 1",
                &[&id, &epoch, &secs],
            )
        });
        match answer {
            Ok(Some(_)) => renewed = Instant::now(),
            // Taken over: the epoch moved on.
            Ok(None) => {
                let _ = lost.send(true);
                return;
            }
            // The database cannot be reached: the lease holds until it runs
            // out, and then someone else may take the run.
            Err(_) if renewed.elapsed() >= lease => {
                let _ = lost.send(true);
                return;
            }
            Err(_) => {}
        }
    }
}

/// A group held by a run; dropping it gives the group back.
struct Group {
    conn: Arc<Connection>,
    group: String,
    run_id: String,
}

impl Drop for Group {
    fn drop(&mut self) {
        let (g, id) = (self.group.clone(), self.run_id.clone());
        let _ = self.conn.call(move |c| {
            c.execute(
                "DELETE FROM groups WHERE grp = $1 AND run_id = $2",
                &[&g, &id],
            )
        });
    }
}

/// Frees the groups whose runs are over (they ended, or died before their
/// first row with their lease run out) and drops the tickets of waiters that
/// died; the holder of `group` afterwards, if any.
const TIDY: &str = "
DELETE FROM groups g
 WHERE g.grp = $1
   AND (EXISTS (SELECT 1 FROM runs r WHERE r.id = g.run_id AND r.status <> 'running')
        OR (NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = g.run_id)
            AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run_id = g.run_id AND l.until > now())))";

const DEAD_TICKETS: &str = "
DELETE FROM group_queue q
 WHERE q.grp = $1
   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run_id = q.run_id AND l.until > now())";

/// What one look at a group found.
enum Look {
    /// It is ours now (or was already: a run taken over keeps its group).
    Taken,
    /// Someone holds it, or waits before us.
    Busy(Option<Holder>),
}

impl PgLocks {
    /// One look at `group` for `me`, in one transaction: takes it when it is
    /// free and nobody queues before `me` (`queued`: `me` holds a ticket).
    fn look(&self, group: &str, me: &Holder, queued: bool) -> Result<Look, LockError> {
        let (g, id, holder) = (group.to_owned(), me.run_id.clone(), holder_json(me));
        self.conn
            .call(move |c| {
                let mut tx = c.transaction()?;
                // One look at a group at a time, from any machine.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('group:' || $1))",
                    &[&g],
                )?;
                tx.execute(TIDY, &[&g])?;
                tx.execute(DEAD_TICKETS, &[&g])?;
                if let Some(row) =
                    tx.query_opt("SELECT run_id, holder FROM groups WHERE grp = $1", &[&g])?
                {
                    let holder_id: String = row.get(0);
                    if holder_id == id {
                        tx.execute(
                            "DELETE FROM group_queue WHERE grp = $1 AND run_id = $2",
                            &[&g, &id],
                        )?;
                        tx.commit()?;
                        return Ok(Look::Taken);
                    }
                    let holder = holder_of(row.get(1));
                    tx.commit()?;
                    return Ok(Look::Busy(holder));
                }
                let first: Option<String> = tx
                    .query_opt(
                        "SELECT run_id FROM group_queue WHERE grp = $1 ORDER BY ticket LIMIT 1",
                        &[&g],
                    )?
                    .map(|r| r.get(0));
                let mine = match &first {
                    None => !queued,
                    Some(first) => queued && *first == id,
                };
                if !mine {
                    tx.commit()?;
                    return Ok(Look::Busy(None));
                }
                tx.execute(
                    "INSERT INTO groups (grp, run_id, holder) VALUES ($1, $2, $3)",
                    &[&g, &id, &holder],
                )?;
                tx.execute(
                    "DELETE FROM group_queue WHERE grp = $1 AND run_id = $2",
                    &[&g, &id],
                )?;
                tx.commit()?;
                Ok(Look::Taken)
            })
            .map_err(LockError::Io)
    }

    fn group_held(&self, group: &str, me: &Holder) -> Held {
        Held::new(
            group,
            Box::new(Group {
                conn: self.conn.clone(),
                group: group.to_owned(),
                run_id: me.run_id.clone(),
            }),
        )
    }

    /// Takes a ticket for `group` (keeping the one `me` has).
    fn queue(&self, group: &str, me: &Holder) -> Result<(), LockError> {
        let (g, id) = (group.to_owned(), me.run_id.clone());
        self.conn
            .call(move |c| {
                c.execute(
                    "INSERT INTO group_queue (grp, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&g, &id],
                )
            })
            .map(drop)
            .map_err(LockError::Io)
    }

    fn leave_queue(&self, group: &str, me: &Holder) {
        let (g, id) = (group.to_owned(), me.run_id.clone());
        let _ = self.conn.call(move |c| {
            c.execute(
                "DELETE FROM group_queue WHERE grp = $1 AND run_id = $2",
                &[&g, &id],
            )
        });
    }
}

/// Leaves the queue when a waiting acquisition is dropped (the run was
/// interrupted while it waited).
struct Ticket<'a> {
    locks: &'a PgLocks,
    group: &'a str,
    me: &'a Holder,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.locks.leave_queue(self.group, self.me);
    }
}

impl Locks for PgLocks {
    fn hold_run(&self, run_id: &str, me: &Holder) -> Result<Held, LockError> {
        let (id, holder) = (run_id.to_owned(), holder_json(me));
        let secs = self.lease.as_secs_f64();
        let taken = self
            .conn
            .call(move |c| {
                let row = c.query_opt(
                    "INSERT INTO leases (run_id, epoch, until, holder)
                     VALUES ($1, 1, now() + make_interval(secs => $3), $2)
                     ON CONFLICT (run_id) DO UPDATE
                        SET epoch = leases.epoch + 1,
                            until = EXCLUDED.until,
                            holder = EXCLUDED.holder,
                            takeovers = leases.takeovers + (leases.until > '-infinity')::int
                      WHERE leases.until < now()
                     RETURNING epoch, takeovers",
                    &[&id, &holder, &secs],
                )?;
                match row {
                    Some(r) => Ok(Ok((r.get::<_, i64>(0), r.get::<_, i32>(1)))),
                    None => {
                        let holder: Option<String> = c
                            .query_opt("SELECT holder FROM leases WHERE run_id = $1", &[&id])?
                            .map(|r| r.get(0));
                        Ok(Err(holder_of(holder)))
                    }
                }
            })
            .map_err(LockError::Io)?;
        let (epoch, takeovers) = taken.map_err(|holder| LockError::Busy {
            group: format!("run-{run_id}"),
            holder,
        })?;
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let (conn, id, stop, lease) = (
                self.conn.clone(),
                run_id.to_owned(),
                stop.clone(),
                self.lease,
            );
            std::thread::Builder::new()
                .name("lease-heartbeat".into())
                .spawn(move || heartbeat(conn, id, epoch, lease, stop, lost_tx))
                .map_err(|e| LockError::Io(format!("cannot start the lease's heartbeat: {e}")))?
        };
        let lease = Lease {
            conn: self.conn.clone(),
            run_id: run_id.to_owned(),
            epoch,
            stop,
            heartbeat: Some(beat),
        };
        Ok(Held::new(format!("run-{run_id}"), Box::new(lease))
            .leased(epoch, lost_rx)
            .with_takeovers(u32::try_from(takeovers).unwrap_or(0)))
    }

    fn acquire<'a>(
        &'a self,
        group: &'a str,
        me: &'a Holder,
        on_conflict: OnConflict,
        on_wait: &'a mut (dyn FnMut(&Option<Holder>) + Send),
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Held, LockError>> + Send + 'a>>
    {
        Box::pin(async move {
            match self.look(group, me, false)? {
                Look::Taken => return Ok(self.group_held(group, me)),
                Look::Busy(holder) if on_conflict == OnConflict::Fail => {
                    return Err(LockError::Busy {
                        group: group.to_owned(),
                        holder,
                    });
                }
                Look::Busy(holder) => {
                    self.queue(group, me)?;
                    on_wait(&holder);
                }
            }
            let _ticket = Ticket {
                locks: self,
                group,
                me,
            };
            loop {
                tokio::time::sleep(POLL).await;
                if let Look::Taken = self.look(group, me, true)? {
                    return Ok(self.group_held(group, me));
                }
            }
        })
    }

    fn forget_run(&self, run_id: &str) {
        let id = run_id.to_owned();
        let _ = self
            .conn
            .call(move |c| c.execute("DELETE FROM leases WHERE run_id = $1", &[&id]));
    }
}
