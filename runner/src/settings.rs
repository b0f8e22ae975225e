//! Where the runner keeps things and for how long: read once, by a front end.
//!
//! Why one struct: the library under the front ends (the run service, the
//! journal, the caches) must not read the process environment itself. A server
//! runs many runs in one process, a test runs two runs with two journals side by
//! side, and a setting read from the environment deep down would be the same
//! for all of them. Front ends call [`Settings::from_env`] (or build a
//! `Settings` by hand) and hand it down.

use std::path::PathBuf;
use std::time::Duration;

/// How long a run's lease in a shared journal lasts when nothing says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(25);

/// How many times a run may be taken over when nothing says otherwise.
pub const DEFAULT_TAKEOVER_LIMIT: u32 = 3;

/// How long finished runs are kept when nothing says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// What the runner needs to know about its place on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Locks, approvals, artifacts, reports, registered programs and (by
    /// default) the journal; `None` when there is no absolute place for them.
    pub state_dir: Option<PathBuf>,
    /// The run journal when it is not `journal.sqlite` in the state directory.
    pub journal: Option<PathBuf>,
    /// A shared journal in PostgreSQL instead of the SQLite file.
    pub database: Option<DatabaseUrl>,
    /// How long a run's lease in a shared journal lasts unless renewed: after
    /// its runner died, another may take the run over that much later.
    pub lease: Duration,
    /// How many times a run may be taken over from runners that died on it;
    /// the next taking fails it (its failure path runs).
    pub takeover_limit: u32,
    /// Where compiled components (and pulled OCI blobs) are cached; `None`: no
    /// cache, every plugin is compiled each time.
    pub cache_dir: Option<PathBuf>,
    /// How long finished runs are kept in the journal.
    pub retention: Duration,
    /// A file the markdown report is appended to as well: GitHub Actions'
    /// job summary (`GITHUB_STEP_SUMMARY`).
    pub step_summary: Option<PathBuf>,
    /// Where `runner serve`'s web UI is reached (`RUNNER_PUBLIC_URL`, or the
    /// server's `public_url`): a run's page is `URL/ui/runs/ID`, given to
    /// playbooks as `run.url` (empty when unknown).
    pub public_url: Option<String>,
}

impl Settings {
    /// The settings of this process:
    ///
    /// - state: `RUNNER_STATE_DIR` (absolute), else `$XDG_STATE_HOME/runner`
    ///   (absolute), else `~/.local/state/runner`;
    /// - journal: `RUNNER_DATABASE_URL` (a shared PostgreSQL journal), else
    ///   `RUNNER_JOURNAL`, else `journal.sqlite` in the state directory;
    /// - cache: `RUNNER_CACHE_DIR`, else `$XDG_CACHE_HOME/runner`, else
    ///   `~/.cache/runner`;
    /// - retention: `RUNNER_RETENTION` (a duration such as `30d`), else 90 days;
    /// - lease: `RUNNER_LEASE` (a duration, at least `1s`), else 25 seconds;
    /// - takeover limit: `RUNNER_TAKEOVER_LIMIT`, else 3;
    /// - step summary: `GITHUB_STEP_SUMMARY`.
    ///
    /// A relative `RUNNER_STATE_DIR` would put the journal and the locks in
    /// whatever folder the runner starts in, so two runs of one concurrency
    /// group started from two folders would not see each other: it is then no
    /// state directory at all.
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let state_dir = match std::env::var_os("RUNNER_STATE_DIR") {
            Some(dir) => Some(PathBuf::from(dir)).filter(|d| d.is_absolute()),
            None => var("XDG_STATE_HOME")
                .map(PathBuf::from)
                .filter(|d| d.is_absolute())
                .map(|d| d.join("runner"))
                .or_else(|| home.as_ref().map(|h| h.join(".local/state/runner"))),
        };
        let cache_dir = var("RUNNER_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("runner")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache/runner")));
        let retention = std::env::var("RUNNER_RETENTION")
            .ok()
            .and_then(|t| crate::playbook::scalars::parse_duration(&t).ok())
            .unwrap_or(DEFAULT_RETENTION);
        let lease = std::env::var("RUNNER_LEASE")
            .ok()
            .and_then(|t| crate::playbook::scalars::parse_duration(&t).ok())
            .map_or(DEFAULT_LEASE, |d| d.max(Duration::from_secs(1)));
        let takeover_limit = std::env::var("RUNNER_TAKEOVER_LIMIT")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(DEFAULT_TAKEOVER_LIMIT);
        Settings {
            state_dir,
            journal: var("RUNNER_JOURNAL").map(PathBuf::from),
            database: std::env::var("RUNNER_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .map(DatabaseUrl),
            cache_dir,
            retention,
            lease,
            takeover_limit,
            step_summary: var("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            public_url: var("RUNNER_PUBLIC_URL")
                .and_then(|u| u.into_string().ok())
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| u.starts_with("http://") || u.starts_with("https://")),
        }
    }

    /// Settings that keep everything under `state_dir`, with no component
    /// cache: for tests and embedders that want nothing from the environment.
    pub fn in_dir(state_dir: PathBuf) -> Settings {
        Settings {
            state_dir: Some(state_dir),
            journal: None,
            database: None,
            cache_dir: None,
            retention: DEFAULT_RETENTION,
            lease: DEFAULT_LEASE,
            takeover_limit: DEFAULT_TAKEOVER_LIMIT,
            step_summary: None,
            public_url: None,
        }
    }

    /// The journal's file: [`journal`](Self::journal), else `journal.sqlite`
    /// in the state directory.
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.journal
            .clone()
            .or_else(|| self.state_dir.as_ref().map(|d| d.join("journal.sqlite")))
    }

    /// Where compiled components are cached: `components/` in the cache dir.
    pub fn components_dir(&self) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| d.join("components"))
    }
}

/// A database URL. It may hold a password, so it never prints: its `Debug`
/// shows only that it is set, and messages name the database by
/// [`crate::record::postgres::describe`].
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    /// The URL itself, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}
