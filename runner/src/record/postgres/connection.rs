//! One connection to the database, on a thread of its own (see the module
//! doc of `record::postgres`): every call is sent to that thread and waited
//! for, so synchronous code (and code inside the engine's async task) can use
//! it; a connection that broke is opened again on the next call.

use std::sync::mpsc;

use postgres::Client;

use super::Target;

/// A call to run on the connection's thread.
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The connection, on a thread of its own (see the module doc).
pub struct Connection {
    jobs: mpsc::Sender<Job>,
}

impl Connection {
    /// Connects, on a new thread; returns once connected.
    pub fn open(target: Target, location: String) -> Result<Connection, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel::<Result<(), String>>(1);
        let where_ = location.clone();
        std::thread::Builder::new()
            .name("journal-postgres".into())
            .spawn(move || {
                let connect = || {
                    let mut client = target.connect()?;
                    // A runner stopped inside a transaction (SIGSTOP, a
                    // pause) would hold its run's lease row, and whoever takes
                    // the run over would wait for it forever: the server ends
                    // such a session instead.
                    client.batch_execute(
                        "SET search_path = runner; SET idle_in_transaction_session_timeout = '10s'",
                    )?;
                    Ok::<_, postgres::Error>(client)
                };
                let mut client = match connect() {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(connect_error(&where_, &e)));
                        return;
                    }
                };
                for job in queue {
                    if client.is_closed() {
                        // Broken since the last call (a restart of the
                        // server, a network blip): one new attempt; if it
                        // fails the job's own query says so.
                        if let Ok(c) = connect() {
                            client = c;
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| format!("journal: cannot start its connection thread: {e}"))?;
        match connected.recv() {
            Ok(result) => result.map(|()| Connection { jobs }),
            Err(_) => Err(format!("journal {location}: the connection thread stopped")),
        }
    }

    /// Runs `f` on the connection and waits for its answer.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, String> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |client| {
                let _ = answer.send(f(client).map_err(|e| db_error(&e)));
            }))
            .map_err(|_| "journal: the connection thread stopped".to_owned())?;
        answered
            .recv()
            .map_err(|_| "journal: the connection thread stopped".to_owned())?
    }
}

/// An error of the database, with what the server said in full.
pub(crate) fn db_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("journal: {} ({})", db.message(), db.code().code()),
        None => format!("journal: {e}"),
    }
}

fn connect_error(location: &str, e: &postgres::Error) -> String {
    let why = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            // The source names the cause (refused, timed out, no such host).
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(e) {
                text = format!("{text}: {source}");
            }
            text
        }
    };
    format!(
        "cannot connect to the journal database {location}: {why}; check RUNNER_DATABASE_URL (or --database) and that the server is up"
    )
}
