//! Approvals in the shared journal's database (the [`Approvals`] of
//! `engine::approval`, for approvers on any machine that reaches it).
//!
//! A request is a row of `approval_requests` (open while the run waits), each
//! answer a row of `approval_decisions`, kept as the record of who decided, as
//! what, when and why. Recording an answer notifies the channel
//! `runner_approval` in the same transaction (PostgreSQL delivers it at
//! commit); the waiting run listens on a connection of its own and looks at the
//! answers as soon as one comes. A notification can be lost (the listening
//! connection broke and was made again), so the run also looks every two
//! seconds whatever happens.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::Connection;
use crate::engine::approval::{Approvals, Decision, Request};

/// The channel answers are announced on; the payload is `RUN_ID/STEP`.
const CHANNEL: &str = "runner_approval";

/// How often a waiting run looks at the answers when no notification came.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Approvals in a PostgreSQL database.
pub struct PgApprovals {
    conn: Arc<Connection>,
    location: String,
    /// `RUN_ID/STEP` of each answer recorded, from the listening thread.
    answered: tokio::sync::broadcast::Sender<String>,
    stop: Arc<AtomicBool>,
    /// Where the listening connection goes, and whether it was started: only
    /// a run that waits for an answer listens (`runner approve` and runs
    /// without approvals open no second connection).
    target: super::Target,
    listening: std::sync::Once,
}

impl Drop for PgApprovals {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl PgApprovals {
    /// Approvals in the database at `url` (its schema brought up to date).
    pub fn open(url: &str) -> Result<PgApprovals, String> {
        let target = super::Target::parse(url)?;
        let location = target.describe();
        let conn = Connection::open(target.clone(), location.clone())?;
        super::migrate(&conn, &location)?;
        let (answered, _) = tokio::sync::broadcast::channel(64);
        Ok(PgApprovals {
            conn: Arc::new(conn),
            location,
            answered,
            stop: Arc::new(AtomicBool::new(false)),
            target,
            listening: std::sync::Once::new(),
        })
    }

    /// Starts listening, once. Should the thread not start, the waiting run
    /// still looks every [`FALLBACK_POLL`].
    fn listen(&self) {
        self.listening.call_once(|| {
            let (target, answered, stop) = (
                self.target.clone(),
                self.answered.clone(),
                self.stop.clone(),
            );
            let _ = std::thread::Builder::new()
                .name("approvals-listen".into())
                .spawn(move || listen(target, answered, stop));
        });
    }
}

/// Listens on [`CHANNEL`] until `stop`, connecting again when the connection
/// breaks; passes each payload on.
fn listen(
    target: super::Target,
    answered: tokio::sync::broadcast::Sender<String>,
    stop: Arc<AtomicBool>,
) {
    let target = target.named("runner-approvals-listen");
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut client) = target.connect() else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        if client.batch_execute(&format!("LISTEN {CHANNEL}")).is_err() {
            continue;
        }
        while !stop.load(Ordering::SeqCst) && !client.is_closed() {
            let mut notifications = client.notifications();
            let mut batch = notifications.timeout_iter(Duration::from_millis(500));
            loop {
                match batch.next() {
                    Ok(Some(n)) => {
                        let _ = answered.send(n.payload().to_owned());
                    }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
        }
    }
}

fn db(e: String) -> io::Error {
    io::Error::other(e)
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_str(text).ok()
}

impl Approvals for PgApprovals {
    fn open(&self, request: &Request) -> io::Result<()> {
        let (run, step) = (request.run_id.clone(), request.step.clone());
        let text = serde_json::to_string(request).map_err(io::Error::other)?;
        self.conn
            .call(move |c| {
                c.execute(
                    "INSERT INTO approval_requests (run_id, step, request, open) VALUES ($1, $2, $3, true)
                     ON CONFLICT (run_id, step) DO UPDATE SET request = EXCLUDED.request, open = true",
                    &[&run, &step, &text],
                )
            })
            .map(drop)
            .map_err(db)
    }

    fn request(&self, run_id: &str, step: &str) -> Option<Request> {
        let (run, step) = (run_id.to_owned(), step.to_owned());
        let text: Option<String> = self
            .conn
            .call(move |c| {
                c.query_opt(
                    "SELECT request FROM approval_requests WHERE run_id = $1 AND step = $2 AND open",
                    &[&run, &step],
                )
            })
            .ok()
            .flatten()
            .map(|r| r.get(0));
        text.and_then(|t| json(&t))
    }

    fn pending(&self, run_id: &str) -> Vec<String> {
        let run = run_id.to_owned();
        self.conn
            .call(move |c| {
                c.query(
                    "SELECT step FROM approval_requests WHERE run_id = $1 AND open ORDER BY step COLLATE \"C\"",
                    &[&run],
                )
            })
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }

    fn known(&self, run_id: &str) -> Result<(), String> {
        let run = run_id.to_owned();
        let asked = self.conn.call(move |c| {
            c.query_opt(
                "SELECT 1 FROM approval_requests WHERE run_id = $1 LIMIT 1",
                &[&run],
            )
        })?;
        match asked {
            Some(_) => Ok(()),
            None => Err(format!(
                "no run `{run_id}` is waiting for an approval (the shared journal {} has no request of it); check the run id in the run's output",
                self.location
            )),
        }
    }

    fn decisions(&self, run_id: &str, step: &str) -> io::Result<Vec<Decision>> {
        let (run, step) = (run_id.to_owned(), step.to_owned());
        let rows = self
            .conn
            .call(move |c| {
                c.query(
                    "SELECT decision FROM approval_decisions WHERE run_id = $1 AND step = $2 ORDER BY seq",
                    &[&run, &step],
                )
            })
            .map_err(db)?;
        // An answer that cannot be read (a newer runner's) is not counted.
        Ok(rows
            .iter()
            .filter_map(|r| json(r.get::<_, &str>(0)))
            .collect())
    }

    fn record(&self, run_id: &str, step: &str, decision: &Decision) -> io::Result<()> {
        let (run, step) = (run_id.to_owned(), step.to_owned());
        let text = serde_json::to_string(decision).map_err(io::Error::other)?;
        self.conn
            .call(move |c| {
                let mut tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO approval_decisions (run_id, step, decision) VALUES ($1, $2, $3)",
                    &[&run, &step, &text],
                )?;
                // Delivered to the listeners when this commits.
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANNEL, &format!("{run}/{step}")],
                )?;
                tx.commit()
            })
            .map_err(|e| db(format!("cannot record the decision: {e}")))
    }

    fn close(&self, run_id: &str, step: &str) {
        let (run, step) = (run_id.to_owned(), step.to_owned());
        let _ = self.conn.call(move |c| {
            c.execute(
                "UPDATE approval_requests SET open = false WHERE run_id = $1 AND step = $2",
                &[&run, &step],
            )
        });
    }

    fn changed<'a>(
        &'a self,
        run_id: &'a str,
        step: &'a str,
        within: Duration,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        self.listen();
        let mut answers = self.answered.subscribe();
        let key = format!("{run_id}/{step}");
        Box::pin(async move {
            let heard = async {
                loop {
                    match answers.recv().await {
                        Ok(payload) if payload == key => return,
                        Ok(_) => {}
                        // Some were missed: look anyway.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(within.min(FALLBACK_POLL), heard).await;
        })
    }
}
