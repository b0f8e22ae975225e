//! The run service: one way to prepare, start, resume, re-run and read runs,
//! for every front end.
//!
//! Why a layer of its own: starting a run is more than calling the engine. It
//! opens the secrets, the WebAssembly runtime and the Kubernetes cluster,
//! resolves the plugins, makes every check `runner validate` makes, takes the
//! run's lock and its concurrency group, prunes the journal, writes the run's
//! first row, stamps and records every event durably before anything else sees
//! it, and writes the reports at the end. The CLI, a server and a worker must
//! all do exactly that, so it lives here once, and the front ends only turn
//! their input into a request and the outcome into their output (an exit code
//! and lines of text, an HTTP status and JSON).
//!
//! Nothing here prints or reads the terminal. What a front end shows comes
//! through an [`Observer`]: the run's events (stamped, as the journal has them)
//! and [`Notice`]s about the run around them (a concurrency group it waits for,
//! a journal that stops taking writes). Approvals are answered through the
//! [`Approvals`](crate::engine::approval::Approvals) store that
//! [`Service::approvals`] returns; the CLI's terminal prompt is one such
//! answerer. Nothing here is process-wide: two services with two settings run
//! side by side in one process, each with its own journal and reports.

mod error;
mod launch;
mod read;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub use error::{PrepareError, RunError};
pub use launch::new_run_id;
pub use read::{JournalReports, lacking, markdown_report, report_input};

use crate::engine::{self, Interrupt};
use crate::host::runtime::Runtime;
use crate::identity::Principal;
use crate::plan::{self, Plan};
use crate::playbook::{self, Validated, environment::Environment};
use crate::record::{Journal, PgJournal, RunRow, SqliteJournal};
use crate::report::Stamped;
use crate::settings::DatabaseUrl;
use crate::settings::Settings;

/// Sets a run's interrupt: the first value sent stops the run (its handlers
/// run). A front end sends signals through it; the service sends
/// [`Interrupt::Journal`] when the journal stops taking writes and the run was
/// told to stop then.
pub type Interrupter = tokio::sync::watch::Sender<Option<Interrupt>>;

/// A playbook to plan: its file, `name=value` inputs and environment file.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub file: PathBuf,
    /// `name=value`, as given on a command line (`-i`).
    pub inputs: Vec<String>,
    /// The environment file (inputs, grants, hosts, secrets, cluster).
    pub env: Option<PathBuf>,
    /// The playbook's text, used instead of reading `file`: the copy a run's
    /// journal keeps (resume and re-run on a machine without the file).
    pub playbook_text: Option<String>,
    /// The environment file's text, used instead of reading `env`.
    pub env_text: Option<String>,
}

/// A playbook loaded, checked and planned.
pub struct Prepared {
    /// The playbook, with the text it was read from (`validated.source`).
    pub validated: Validated,
    pub plan: Plan,
    pub env: Option<Environment>,
    /// The environment file's text as read.
    pub env_text: Option<String>,
}

/// What to do when the journal stops taking a run's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnJournalError {
    /// Stop the run as a SIGTERM would: no further step starts, the failure
    /// and finally handlers run.
    #[default]
    Stop,
    /// Carry on; the events are kept and written when the journal takes
    /// writes again.
    Continue,
}

/// How a run is run, whoever starts it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A secrets file (`NAME=value` lines) instead of the environment file's
    /// or the process environment.
    pub secrets: Option<PathBuf>,
    /// The kubeconfig context, instead of the environment file's.
    pub kube_context: Option<String>,
    /// Who starts (or resumes) the run: recorded with it.
    pub actor: Principal,
    pub on_journal_error: OnJournalError,
    /// What started the run when not a person: the alert or webhook body
    /// (JSON), kept with the run's sources ([`crate::record::SourceKind::Trigger`])
    /// under the name `trigger.0` (the route or hook it came through).
    pub trigger: Option<(String, String)>,
}

/// What a front end is told while a run goes.
pub trait Observer: Send {
    /// Every event of run `run_id`, in order, after the journal has it.
    fn event(&mut self, run_id: &str, event: &Stamped);
    /// Something about the run besides its events.
    fn notice(&mut self, run_id: &str, notice: &Notice);
}

/// What happens around a run's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A resumed run stopped programs its previous runner left running.
    Reaped { programs: usize },
    /// The run waits for its concurrency group.
    Waiting {
        group: String,
        holder: Option<engine::lock::Holder>,
    },
    /// Pruning old runs from the journal failed; the run goes on.
    PruneFailed(String),
    /// The journal stopped taking the run's events; `stopping`: the run stops
    /// because of it (see [`OnJournalError`]).
    JournalRefused { error: String, stopping: bool },
    /// The journal takes writes again: the `events` it had refused are in it.
    JournalCaughtUp { events: usize },
}

/// How a run ended, and where its record is.
pub struct RunOutcome {
    pub run_id: String,
    pub report: engine::RunReport,
    /// The report files written, or why they could not be.
    pub reports: Result<Vec<PathBuf>, String>,
    /// What the journal lacks of the run (it stopped taking writes and did not
    /// catch up), as said in the reports; `None`: the journal has it all.
    pub journal_lacks: Option<String>,
    /// The playbook as run (for annotations at its steps' lines).
    pub validated: Validated,
}

/// The run service of one set of [`Settings`].
pub struct Service {
    settings: Settings,
    runtime: OnceLock<Arc<Runtime>>,
    /// The shared journal's locks, connected on first use.
    shared_locks: OnceLock<Arc<dyn engine::lock::Locks>>,
    /// The shared journal's approvals, connected on first use.
    shared_approvals: OnceLock<Arc<dyn engine::approval::Approvals>>,
    /// The store a front end gave ([`Service::with_approvals`]).
    given_approvals: Option<Arc<dyn engine::approval::Approvals>>,
}

impl Service {
    pub fn new(settings: Settings) -> Service {
        Service {
            settings,
            runtime: OnceLock::new(),
            shared_locks: OnceLock::new(),
            shared_approvals: OnceLock::new(),
            given_approvals: None,
        }
    }

    /// This service with its runs' approvals kept by `approvals` instead of
    /// the store of its settings: a server wraps that store to hear of the
    /// answers it records itself at once.
    pub fn with_approvals(mut self, approvals: Arc<dyn engine::approval::Approvals>) -> Service {
        self.given_approvals = Some(approvals);
        self
    }

    /// The web UI's address for the runs of this service (a server's
    /// `public_url`), when the environment did not give one.
    pub fn with_public_url(mut self, url: Option<&str>) -> Service {
        if let Some(u) = url {
            self.settings.public_url = Some(u.trim_end_matches('/').to_owned());
        }
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The WebAssembly runtime, started on first use and shared by every run
    /// of this service (compiled components are cached by it).
    pub fn runtime(&self) -> Result<Arc<Runtime>, RunError> {
        if let Some(r) = self.runtime.get() {
            return Ok(r.clone());
        }
        let runtime = Runtime::new(self.settings.components_dir())
            .map_err(|e| RunError::Runtime(format!("{e:#}")))?;
        Ok(self.runtime.get_or_init(|| Arc::new(runtime)).clone())
    }

    /// Where approvals of this service's runs wait: with a shared journal its
    /// database, else files under the state directory; `None` without either
    /// (approval steps then fail, saying so) or when the database cannot be
    /// reached ([`Service::shared_approvals`] says why).
    pub fn approvals(&self) -> Option<Arc<dyn engine::approval::Approvals>> {
        if let Some(given) = &self.given_approvals {
            return Some(given.clone());
        }
        if self.settings.database.is_some() {
            return self.shared_approvals().ok();
        }
        self.settings
            .state_dir
            .as_deref()
            .map(|s| Arc::new(engine::approval::FileApprovals::new(s)) as _)
    }

    /// The shared journal's approvals, connected on first use.
    pub fn shared_approvals(&self) -> Result<Arc<dyn engine::approval::Approvals>, String> {
        if let Some(a) = self.shared_approvals.get() {
            return Ok(a.clone());
        }
        let url = self
            .settings
            .database
            .as_ref()
            .ok_or("no shared journal is set (RUNNER_DATABASE_URL or --database)")?;
        let approvals = crate::record::PgApprovals::open(url.expose())?;
        Ok(self
            .shared_approvals
            .get_or_init(|| Arc::new(approvals))
            .clone())
    }

    /// Where this service's runs take their locks (their own and their
    /// concurrency groups): with a shared journal its database (leases and
    /// groups owned by runs), else files under the state directory.
    pub fn locks(&self) -> Result<Arc<dyn engine::lock::Locks>, RunError> {
        if let Some(url) = &self.settings.database {
            if let Some(l) = self.shared_locks.get() {
                return Ok(l.clone());
            }
            let locks = crate::record::PgLocks::open(url.expose(), self.settings.lease)
                .map_err(RunError::Journal)?;
            return Ok(self.shared_locks.get_or_init(|| Arc::new(locks)).clone());
        }
        let state = self
            .settings
            .state_dir
            .as_deref()
            .ok_or(RunError::NoStateDir)?;
        Ok(Arc::new(engine::lock::FileLocks::new(state)))
    }

    /// Where this service's journal is: the PostgreSQL database of the
    /// settings, else their SQLite file.
    pub fn store(&self) -> Result<Store, RunError> {
        match &self.settings.database {
            Some(url) => Ok(Store::Postgres(url.clone())),
            None => self
                .settings
                .journal_path()
                .map(Store::Sqlite)
                .ok_or(RunError::NoJournal),
        }
    }

    /// Opens the journal to write (creating it, or its schema).
    pub fn journal(&self) -> Result<Box<dyn Journal>, RunError> {
        self.store()?.open().map_err(RunError::Journal)
    }

    /// Opens the journal to read: a SQLite file this user cannot write is
    /// opened read-only.
    pub fn journal_to_read(&self) -> Result<Box<dyn Journal>, RunError> {
        self.store()?.open_read().map_err(RunError::Journal)
    }

    /// Where `run_report(ID)` reads: this service's journal.
    pub fn reports(&self) -> Option<Arc<dyn crate::expr::RunReports>> {
        let journal = self.store().ok()?;
        Some(Arc::new(JournalReports {
            journal,
            state_dir: self.settings.state_dir.clone(),
        }))
    }

    /// Loads and checks the playbook and its environment file, resolves the
    /// inputs and builds the plan. Plugins are not loaded here (see
    /// [`Service::check_plugins`]).
    pub fn prepare(&self, request: &PlanRequest) -> Result<Prepared, PrepareError> {
        let file = request.file.as_path();
        let mut validated = match &request.playbook_text {
            None => playbook::load(file)?,
            Some(text) => playbook::validate(
                playbook::source::Source::from_bytes(
                    file.display().to_string(),
                    file.parent().map(PathBuf::from).unwrap_or_default(),
                    text.clone().into_bytes(),
                )
                .map_err(playbook::LoadError::from)?,
            )?,
        };
        let (env, env_text) = match &request.env {
            Some(path) => {
                let source = match &request.env_text {
                    None => playbook::source::Source::read(path, "environment file")
                        .map_err(playbook::LoadError::from)?,
                    Some(text) => playbook::source::Source::from_bytes(
                        path.display().to_string(),
                        path.parent().map(PathBuf::from).unwrap_or_default(),
                        text.clone().into_bytes(),
                    )
                    .map_err(playbook::LoadError::from)?,
                };
                let text = source.text.clone();
                (Some(Environment::from_source(source, path)?), Some(text))
            }
            None => (None, None),
        };
        let invalid = |lines: Vec<String>| PrepareError::Invalid {
            file: file.to_owned(),
            lines,
        };
        let mut given = request
            .inputs
            .iter()
            .map(|raw| plan::inputs::parse_assignment(raw))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(vec![e.to_string()]))?;
        if let Some(env) = &env {
            given = env.inputs_for(&validated, &given);
            env.add_grants(&mut validated);
            env.add_allow(&mut validated)
                .map_err(PrepareError::Environment)?;
        }
        let reports = self.reports();
        let plan = plan::build_reading(&validated, &given, reports.as_ref())
            .map_err(|e| invalid(e.to_string().lines().map(str::to_owned).collect()))?;
        Ok(Prepared {
            validated,
            plan,
            env,
            env_text,
        })
    }

    /// The plugin checks of `runner validate`: loads each plugin, checks
    /// `with:` against its input schema and its capabilities against its
    /// grants.
    pub fn check_plugins(&self, mut v: Validated) -> Result<Validated, playbook::LoadError> {
        let runtime = match self.runtime() {
            Ok(r) => r,
            Err(e) => {
                let problem = playbook::Problem {
                    pos: v.tree.pos,
                    message: format!(
                        "cannot start the WebAssembly runtime to check plugins: {}",
                        match e {
                            RunError::Runtime(e) => e,
                            other => other.to_string(),
                        }
                    ),
                };
                return Err(playbook::LoadError::Invalid {
                    file: Box::new(v.source),
                    problems: vec![problem],
                });
            }
        };
        let problems = current_thread().block_on(crate::host::resolve::check(&runtime, &mut v));
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(playbook::LoadError::Invalid {
                file: Box::new(v.source),
                problems,
            })
        }
    }

    /// Starts a new run of `request` and drives it to its end.
    pub async fn start(
        &self,
        request: &PlanRequest,
        options: &RunOptions,
        observer: &mut dyn Observer,
        interrupt: &Interrupter,
    ) -> Result<RunOutcome, RunError> {
        self.start_as(&launch::new_run_id(), request, options, observer, interrupt)
            .await
    }

    /// [`Service::start`] with the run's id given: a run submitted to a queue
    /// got its id when it was queued ([`new_run_id`]).
    pub async fn start_as(
        &self,
        run_id: &str,
        request: &PlanRequest,
        options: &RunOptions,
        observer: &mut dyn Observer,
        interrupt: &Interrupter,
    ) -> Result<RunOutcome, RunError> {
        let journal = self.journal()?;
        launch::launch(
            self,
            launch::Launch {
                request: request.clone(),
                options,
                journal,
                run_id: run_id.to_owned(),
                resume: engine::Resume::default(),
                parent: None,
                alive: None,
            },
            observer,
            interrupt,
        )
        .await
    }

    /// Continues run `run_id`, whose runner died: finished steps keep their
    /// records, the rest runs (or, when the run had started its failure path,
    /// only that path is finished).
    pub async fn resume(
        &self,
        run_id: &str,
        options: &RunOptions,
        observer: &mut dyn Observer,
        interrupt: &Interrupter,
    ) -> Result<RunOutcome, RunError> {
        let journal = self.journal()?;
        let run = find(journal.as_ref(), run_id)?;
        // The run's lock first, then its state: read before the lock, a second
        // `resume` started at the same moment would see the same unfinished
        // steps and run them again.
        let alive = launch::hold_run(self, &run.id)?;
        let run = find(journal.as_ref(), &run.id)?;
        if run.status != "running" {
            return Err(RunError::Refused(format!(
                "run {} already ended ({}); there is nothing to resume. To run it again from a step: runner rerun {} --from STEP",
                run.id, run.status, run.id
            )));
        }
        let events = journal.events(&run.id).map_err(RunError::Journal)?;
        // A journal that missed events cannot say which steps finished:
        // resuming from it could run a finished deployment step, or a
        // rollback, again.
        if let Some(lack) = lacking(self.settings.state_dir.as_deref(), &run, &events) {
            let reports = self
                .settings
                .state_dir
                .as_ref()
                .map(|s| format!(" ({})", s.join("reports").display()))
                .unwrap_or_default();
            return Err(RunError::Refused(format!(
                "run {id} cannot be resumed: {lack}, so which of its steps finished is not known, and resuming could run a finished step (a deployment, a rollback) again.\n  What was recorded: runner runs show {id}. The reports the run wrote when it ended{reports} have every event, if they could be written.\n  Check by hand what the run changed; start a new run if one is needed.",
                id = run.id
            )));
        }
        let request = request_of(journal.as_ref(), &run)?;
        let steps = journal.steps(&run.id).map_err(RunError::Journal)?;
        // A run that had started its failure path finishes that path only.
        let mut stopping = engine::stopping(events.iter().map(|s| &s.event));
        // A run taken over too many times (each runner died on it) is not
        // carried on once more: what was in flight fails, the failure path runs.
        let limit = self.settings.takeover_limit;
        let give_up = (alive.takeovers() > limit).then(|| {
            format!(
                "the run was taken over {} times, more than RUNNER_TAKEOVER_LIMIT ({limit}): every runner that carried it died, so it is not carried on again; what was running fails and its failure handlers run",
                alive.takeovers()
            )
        });
        // What was in flight fails with the reason, and that failure starts
        // the failure path; with nothing in flight, the path starts here.
        if give_up.is_some() && stopping.is_none() && steps.in_flight.is_empty() {
            stopping = Some(engine::Stopping {
                status: engine::RunStatus::Failed,
                stage: open_stage(events.iter().map(|s| &s.event)),
            });
        }
        launch::launch(
            self,
            launch::Launch {
                request,
                options,
                journal,
                run_id: run.id.clone(),
                resume: engine::Resume {
                    resumed: true,
                    restored: steps.finished,
                    in_flight: steps.in_flight,
                    stopping,
                    give_up,
                },
                parent: None,
                alive: Some(alive),
            },
            observer,
            interrupt,
        )
        .await
    }

    /// Starts finished run `run_id` again from step `from`: a new run with the
    /// same inputs, keeping the results of the steps before `from` (see
    /// [`kept_before`]).
    pub async fn rerun(
        &self,
        run_id: &str,
        from: &str,
        options: &RunOptions,
        observer: &mut dyn Observer,
        interrupt: &Interrupter,
    ) -> Result<RunOutcome, RunError> {
        let journal = self.journal()?;
        let run = find(journal.as_ref(), run_id)?;
        if run.status == "running" {
            return Err(RunError::Refused(format!(
                "run {} has not ended; if its runner died, continue it with: runner resume {}",
                run.id, run.id
            )));
        }
        let request = request_of(journal.as_ref(), &run)?;
        let plan = self.prepare(&request)?.plan;
        let steps = journal.steps(&run.id).map_err(RunError::Journal)?;
        let keep = kept_before(&plan, from).map_err(RunError::Refused)?;
        let restored = steps
            .finished
            .into_iter()
            .filter(|(id, r)| {
                keep.contains(id.as_str()) && matches!(r.status, "succeeded" | "skipped")
            })
            .collect();
        launch::launch(
            self,
            launch::Launch {
                request,
                options,
                journal,
                run_id: launch::new_run_id(),
                resume: engine::Resume {
                    resumed: false,
                    restored,
                    in_flight: Default::default(),
                    stopping: None,
                    give_up: None,
                },
                parent: Some(run.id.clone()),
                alive: None,
            },
            observer,
            interrupt,
        )
        .await
    }

    /// Deletes finished runs that started before `before_ms` from the journal,
    /// with what they left in the state directory; the runs deleted.
    pub fn prune(
        &self,
        journal: &mut dyn Journal,
        before_ms: i64,
    ) -> Result<Vec<RunRow>, RunError> {
        let pruned = journal.prune(before_ms).map_err(RunError::Journal)?;
        if let Some(state) = &self.settings.state_dir {
            launch::forget(state, self.locks()?.as_ref(), &pruned);
        }
        Ok(pruned)
    }
}

/// Run `id` of `journal`.
pub fn find(journal: &dyn Journal, id: &str) -> Result<RunRow, RunError> {
    match journal.run(id) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(RunError::NotFound {
            run_id: id.to_owned(),
            journal: journal.location(),
        }),
        Err(e) => Err(RunError::Journal(e)),
    }
}

/// The request that started `run`, with the texts of its playbook and
/// environment file from the journal when it keeps them (runs begun by a
/// runner before schema 5 are read from their files). A file still at its
/// place must not have changed: a run is not continued, or re-run, with
/// another version of its playbook or environment than the one it started
/// with. Where the file is gone (another machine), the journal's copy is used.
/// The stage a run's events left started and not finished.
fn open_stage<'e>(events: impl IntoIterator<Item = &'e engine::Event>) -> Option<String> {
    let mut open = None;
    for event in events {
        match event {
            engine::Event::StageStarted { stage, .. } => open = Some(stage.clone()),
            engine::Event::StageFinished { stage, .. } if open.as_ref() == Some(stage) => {
                open = None;
            }
            _ => {}
        }
    }
    open
}

fn request_of(journal: &dyn Journal, run: &RunRow) -> Result<PlanRequest, RunError> {
    use crate::record::SourceKind;
    let sources = journal.sources(&run.id).map_err(RunError::Journal)?;
    let stored = |kind| sources.iter().find(|s| s.kind == kind);
    let playbook_text = match stored(SourceKind::Playbook) {
        None => {
            same_playbook(run)?;
            None
        }
        Some(copy) => {
            if let Ok(now) = std::fs::read(&run.file)
                && sha256(&now) != run.file_sha256
            {
                return Err(changed("playbook", &run.file, &run.id));
            }
            Some(copy.text.clone())
        }
    };
    let env_text = match stored(SourceKind::Environment) {
        None => None,
        Some(copy) => {
            if let Ok(now) = std::fs::read(&copy.path)
                && now != copy.text.as_bytes()
            {
                return Err(changed("environment file", &copy.path, &run.id));
            }
            Some(copy.text.clone())
        }
    };
    Ok(PlanRequest {
        file: PathBuf::from(&run.file),
        inputs: run.input_args.clone(),
        env: run.env_file.as_ref().map(PathBuf::from),
        playbook_text,
        env_text,
    })
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::host::cache::hex(&sha2::Sha256::digest(bytes))
}

fn changed(what: &str, path: &str, run: &str) -> RunError {
    RunError::Refused(format!(
        "the {what} `{path}` changed since run {run} started; a run is not continued with another version of its {what}: start a new run (or move the changed file away: the run then uses the copy its journal keeps)"
    ))
}

/// Refuses to continue `run`, which has no copy of its playbook in the
/// journal, without its file as it was.
fn same_playbook(run: &RunRow) -> Result<(), RunError> {
    let bytes = std::fs::read(&run.file).map_err(|e| {
        RunError::Refused(format!(
            "cannot read the playbook `{}` of run {}: {e} (the run is older than the journal's copies of playbooks)",
            run.file, run.id
        ))
    })?;
    if sha256(&bytes) != run.file_sha256 {
        return Err(changed("playbook", &run.file, &run.id));
    }
    Ok(())
}

/// The steps whose results a re-run from `from` keeps: every step of earlier
/// stages, and the steps of `from`'s stage that do not wait on it (directly or
/// not). Handlers always run again.
pub fn kept_before<'p>(
    plan: &'p Plan,
    from: &str,
) -> Result<std::collections::HashSet<&'p str>, String> {
    use std::collections::HashSet;
    let Some(at) = plan
        .stages
        .iter()
        .position(|s| s.steps.iter().any(|p| p.step.id.as_str() == from))
    else {
        let ids: Vec<&str> = plan
            .stages
            .iter()
            .flat_map(|s| s.steps.iter().map(|p| p.step.id.as_str()))
            .collect();
        return Err(format!(
            "the playbook has no step `{from}` to start from (handlers cannot be chosen); its steps: {}",
            ids.join(", ")
        ));
    };
    let mut keep: HashSet<&str> = plan.stages[..at]
        .iter()
        .flat_map(|s| s.steps.iter().map(|p| p.step.id.as_str()))
        .collect();
    let stage = &plan.stages[at];
    // Steps that wait on `from`, transitively.
    let mut tainted: HashSet<&str> = HashSet::from([from]);
    let mut grew = true;
    while grew {
        grew = false;
        for p in &stage.steps {
            let id = p.step.id.as_str();
            if !tainted.contains(id) && p.after.iter().any(|a| tainted.contains(a.as_str())) {
                tainted.insert(id);
                grew = true;
            }
        }
    }
    keep.extend(
        stage
            .steps
            .iter()
            .map(|p| p.step.id.as_str())
            .filter(|id| !tainted.contains(id)),
    );
    Ok(keep)
}

/// A runtime on this thread, for the few calls a synchronous caller makes.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime can always be built")
}

/// Where a journal is: which implementation of [`Journal`], and its place.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file (the default).
    Sqlite(std::path::PathBuf),
    /// A shared PostgreSQL database.
    Postgres(DatabaseUrl),
}

impl Store {
    /// Opens it to write.
    pub fn open(&self) -> Result<Box<dyn Journal>, String> {
        Ok(match self {
            Store::Sqlite(path) => Box::new(SqliteJournal::open(path)?),
            Store::Postgres(url) => Box::new(PgJournal::open(url.expose())?),
        })
    }

    /// Opens it to read.
    pub fn open_read(&self) -> Result<Box<dyn Journal>, String> {
        Ok(match self {
            Store::Sqlite(path) => Box::new(SqliteJournal::open_read(path)?),
            Store::Postgres(url) => Box::new(PgJournal::open(url.expose())?),
        })
    }
}
