//! The wasmtime runtime: one `Engine` per process, one `InstancePre` per plugin,
//! one fresh `Store` per step attempt.
//!
//! Threat model: the plugin is untrusted code. It may loop forever, allocate without
//! end, recurse without end, trap, return garbage, flood the log, or lie in
//! `describe`. Each of these must end *that step attempt* with a precise error
//! while the runner carries on. The mechanisms:
//!
//! - CPU: epoch interruption. A ticker thread advances the engine's epoch every
//!   [`TICK`]; at each tick a running plugin yields to the async scheduler, and
//!   traps once its deadline has passed. A host call that blocks is cut by an
//!   async timeout around the call.
//! - Memory: a resource limiter refuses growth past the plugin's cap (256 MiB by
//!   default) and records that it did, so the error says "memory", not "trap".
//! - Stack: wasmtime's own stack limit turns runaway recursion into a trap.
//! - Output: outputs must be a JSON object of at most [`MAX_OUTPUT_BYTES`]; log
//!   lines are capped in `caps::log`. Every text that leaves the plugin (summary,
//!   error message of any kind, artifact name and media type, log and progress
//!   line) goes through `host::text::from_plugin`: redacted of secret values,
//!   made printable, cut ([`MAX_SUMMARY_BYTES`], [`MAX_ERROR_BYTES`]). Outputs
//!   are redacted (keys, strings, numbers) and keep their characters: they are
//!   data, escaped where they are shown. An artifact whose path contains a
//!   secret value is refused: the path names a file the runner keeps.
//! - Artifacts: at most [`MAX_ARTIFACTS`](super::artifacts::MAX_ARTIFACTS) per step, totalling at most
//!   [`MAX_ARTIFACT_BYTES`] per step by logical size and what is left of the
//!   run's budget ([`RunBudget`](super::artifacts::RunBudget)), checked before
//!   anything is copied; the copy runs off the executor thread and within the
//!   step's deadline. See `host::artifacts`.
//! - `describe`: its name, version, description, input schema
//!   ([`MAX_SCHEMA_BYTES`]) and capabilities are measured before anything is
//!   parsed, so an oversized answer is refused at once ([`LoadError::TooLarge`]),
//!   in `runner validate`, `plan` and `plugins check` as in a run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::runner::plugin::types::{PluginInfo, StepError};
use super::bindings::{Plugin, PluginPre};
use super::cache::{ComponentCache, Origin};
use super::state::{Granted, Prepared, StepState};
use crate::caps::log::StepLog;

/// Epoch tick: the granularity of CPU deadlines.
pub const TICK: Duration = Duration::from_millis(10);
/// Default memory cap of a plugin instance.
pub const DEFAULT_MEMORY: usize = 256 << 20;
/// Largest outputs object a step may return (as JSON text).
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Longest summary kept.
pub const MAX_SUMMARY_BYTES: usize = 1 << 10;
/// Longest error message kept.
pub const MAX_ERROR_BYTES: usize = 16 << 10;
/// Time `describe` may take: it must not do any work.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a plugin says about itself, parsed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub description: String,
    pub input_schema: Value,
    /// Capabilities the plugin needs: the playbook must grant them.
    pub capabilities: Vec<String>,
    /// Capabilities it uses when granted (`secrets?` in `describe`), e.g. the
    /// `exec` plugin's secret environment variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub optional: Vec<String>,
}

/// A plugin ready to run: compiled, linked, described.
pub struct LoadedPlugin {
    pub sha256: String,
    pub origin: Origin,
    /// Time to compile or load the compiled artifact.
    pub load_time: Duration,
    pub description: Description,
    pre: PluginPre<Data>,
    input_validator: jsonschema::Validator,
}

impl LoadedPlugin {
    /// Problems of `input` against the plugin's input schema, located relative to
    /// the input object; empty when it is valid.
    pub fn input_problems(
        &self,
        input: &Value,
    ) -> Vec<(
        crate::playbook::yaml::Path,
        crate::playbook::yaml::Target,
        String,
    )> {
        self.input_validator
            .iter_errors(input)
            .flat_map(|e| {
                crate::playbook::schema::input_problem(&self.description.input_schema, &e)
            })
            .collect()
    }
}

/// Limits of one step attempt.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(600),
            memory: DEFAULT_MEMORY,
        }
    }
}

/// A successful step attempt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepSuccess {
    pub outputs: Map<String, Value>,
    pub summary: String,
    pub artifacts: Vec<Artifact>,
}

pub use super::artifacts::{Artifact, MAX_ARTIFACT_BYTES};

pub use super::failure::StepFailure;

/// The result of one step attempt, with what the plugin logged either way.
#[derive(Debug)]
pub struct StepResult {
    pub outcome: Result<StepSuccess, StepFailure>,
    pub log: StepLog,
    pub duration: Duration,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("is not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("cannot be linked: {0}")]
    Link(String),
    #[error("`describe` {0}")]
    Describe(StepFailure),
    #[error("`describe` returned an input schema that is not a valid JSON Schema: {0}")]
    Schema(String),
    #[error("`describe` names the capability `{0}`, which does not exist (known: {known})", known = CAPABILITIES.join(", "))]
    UnknownCapability(String),
    /// Checked before the answer is parsed, so that an oversized one costs
    /// nothing (`runner validate`, `plan` and `plugins check` load plugins too).
    #[error(
        "`describe` returned {what} of {size} {unit}; the limit is {limit} {unit} ({hint}): the plugin is at fault; fix its `describe` or use another plugin"
    )]
    TooLarge {
        what: &'static str,
        size: usize,
        unit: &'static str,
        limit: usize,
        hint: &'static str,
    },
}

/// Longest input schema `describe` may return, as JSON text. A schema describes
/// the `with:` fields, not data: the largest built-in one (`git`'s) is about
/// 12 KiB.
pub const MAX_SCHEMA_BYTES: usize = 256 << 10;
/// Longest plugin name `describe` may return.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest version `describe` may return.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest description `describe` may return.
pub const MAX_DESCRIPTION_BYTES: usize = 4 << 10;
/// Most capabilities `describe` may list (there are 7 kinds, each at most once
/// plain and once optional).
pub const MAX_CAPABILITIES: usize = 32;
/// Longest capability name `describe` may list.
pub const MAX_CAPABILITY_BYTES: usize = 32;

/// The capability kinds a plugin may declare.
pub const CAPABILITIES: &[&str] = &["http", "tcp", "fs", "process", "kube", "secrets", "log"];

/// A fresh, empty working directory for one step attempt (mode 0700).
///
/// Created under a random name with `mkdir`, which fails on any existing entry
/// (a folder or a symbolic link another local user prepared in the shared
/// temporary folder), owned by the runner's user and readable by no one else; its
/// real path is what the plugin and its programs get.
///
/// Creating and deleting a directory per attempt was a fifth of a short step's
/// cost, so a directory the attempt left empty, unchanged in mode and owner, goes
/// back to a small pool and serves a later attempt; anything else is deleted.
struct Workdir<'p> {
    path: PathBuf,
    pool: &'p Workdirs,
}

/// Empty working directories ready for the next attempts.
#[derive(Default)]
struct Workdirs(std::sync::Mutex<Vec<PathBuf>>);

const WORKDIR_MODE: u32 = 0o700;
const POOLED_WORKDIRS: usize = 8;

fn pristine(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    meta.is_dir()
        && meta.mode() & 0o7777 == WORKDIR_MODE
        && meta.uid() == rustix::process::geteuid().as_raw()
        && std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

impl Workdir<'_> {
    fn new(pool: &Workdirs) -> std::io::Result<Workdir<'_>> {
        let reused = pool.0.lock().ok().and_then(|mut p| p.pop());
        if let Some(path) = reused.filter(|p| pristine(p)) {
            return Ok(Workdir { path, pool });
        }
        let dir = tempfile::Builder::new()
            .prefix("runner-step-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(WORKDIR_MODE))
            .tempdir()?;
        let path = dir.keep();
        // The real path: programs start in it, opened without following links.
        match path.canonicalize() {
            Ok(real) => Ok(Workdir { path: real, pool }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }
}

impl Drop for Workdir<'_> {
    fn drop(&mut self) {
        if pristine(&self.path)
            && let Ok(mut pool) = self.pool.0.lock()
            && pool.len() < POOLED_WORKDIRS
        {
            pool.push(std::mem::take(&mut self.path));
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Drop for Workdirs {
    fn drop(&mut self) {
        if let Ok(pool) = self.0.get_mut() {
            for dir in pool.drain(..) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Refuses memory growth past the cap, and remembers that it did.
struct MemoryCap {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            wasmtime::bail!("memory limit of {} MiB reached", self.max >> 20);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any
        // real plugin and bounds what a hostile one can allocate this way.
        Ok(desired <= 1_000_000)
    }
}

/// Store data: the plugin's state plus the limiter.
pub struct Data {
    state: StepState,
    cap: MemoryCap,
}

impl wasmtime_wasi::WasiView for Data {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        self.state.ctx()
    }
}

impl wasmtime_wasi_http::WasiHttpView for Data {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        self.state.http_view()
    }
}

/// The process-wide runtime.
pub struct Runtime {
    workdirs: Workdirs,
    engine: Engine,
    linker: Linker<Data>,
    cache: ComponentCache,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime whose compiled components are cached in `cache_dir` (none: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Bound the wasm stack well below the thread's, so runaway recursion traps.
        config.max_wasm_stack(1 << 20);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<Data> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Linked for every plugin; each request is checked by `caps::http`.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<Data, wasmtime::component::HasSelf<StepState>>(
            &mut linker,
            |d: &mut Data| &mut d.state,
        )?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.weak(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("runner-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        let cache = ComponentCache::new(&engine, cache_dir);
        Ok(Runtime {
            workdirs: Workdirs::default(),
            engine,
            linker,
            cache,
            stop_ticker,
        })
    }

    /// The compile cache's folder; `None` without a cache.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.dir()
    }

    fn store(
        &self,
        memory: usize,
        granted: Granted,
        timeout: Duration,
        wasi: wasmtime_wasi::WasiCtx,
        denials: crate::caps::Denials,
        prepared: Prepared,
    ) -> Store<Data> {
        let data = Data {
            state: StepState::new(wasi, granted, denials, prepared),
            cap: MemoryCap {
                max: memory,
                hit: false,
            },
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.cap);
        // Every tick, wasm yields to the async scheduler (so the steps, timers and
        // signals of a run are served while a plugin computes) and traps once its
        // deadline has passed.
        let deadline = Instant::now() + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// The engine every plugin is compiled for.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What every plugin is linked against (`host::check` diagnoses with it).
    pub(crate) fn linker(&self) -> &Linker<Data> {
        &self.linker
    }

    /// Compiles `wasm`, or loads it from the cache, without linking it.
    pub(crate) fn compile(
        &self,
        wasm: &[u8],
    ) -> wasmtime::Result<(wasmtime::component::Component, String, Origin)> {
        self.cache.load(&self.engine, wasm)
    }

    /// Compiles (or loads from the cache), links and describes a plugin.
    pub async fn load(&self, wasm: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let start = Instant::now();
        let (component, sha256, origin) = self
            .cache
            .load(&self.engine, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let load_time = start.elapsed();
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        // `describe` gets no filesystem at all: it must not do any work.
        let denials = crate::caps::Denials::default();
        let mut store = self.store(
            DEFAULT_MEMORY,
            Granted::default(),
            DESCRIBE_TIMEOUT,
            WasiCtxBuilder::new().build(),
            denials.clone(),
            Prepared::refusing(&denials),
        );
        let info = match tokio::time::timeout(DESCRIBE_TIMEOUT + TICK * 10, async {
            let plugin = pre.instantiate_async(&mut store).await?;
            plugin.call_describe(&mut store).await
        })
        .await
        {
            Err(_) => return Err(LoadError::Describe(StepFailure::TimedOut(DESCRIBE_TIMEOUT))),
            Ok(Err(e)) => return Err(LoadError::Describe(classify(e, &store, DESCRIBE_TIMEOUT))),
            Ok(Ok(info)) => info,
        };
        let description = describe(info)?;
        if let Some(unknown) = description
            .capabilities
            .iter()
            .chain(&description.optional)
            .find(|c| !CAPABILITIES.contains(&c.as_str()))
        {
            return Err(LoadError::UnknownCapability(crate::caps::text::printable(
                unknown,
            )));
        }
        let input_validator = jsonschema::draft202012::options()
            .should_validate_formats(false)
            .build(&description.input_schema)
            .map_err(|e| LoadError::Schema(e.to_string()))?;
        Ok(LoadedPlugin {
            sha256,
            origin,
            load_time,
            description,
            pre,
            input_validator,
        })
    }

    /// Runs one step attempt of `plugin` with `input` (the step's resolved `with:`).
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        input: &Value,
        limits: &Limits,
        mut granted: Granted,
    ) -> StepResult {
        let start = Instant::now();
        granted.declared = plugin.description.capabilities.clone();
        granted
            .declared
            .extend(plugin.description.optional.iter().cloned());
        let problems = plugin.input_problems(input);
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .into_iter()
                .map(|(path, _, m)| {
                    if path == crate::playbook::yaml::Path::root() {
                        m
                    } else {
                        format!("{m} (at with{path})")
                    }
                })
                .collect();
            return StepResult {
                outcome: Err(StepFailure::InvalidInput(text.join("; "))),
                log: StepLog::default(),
                duration: start.elapsed(),
            };
        }
        let workdir = match Workdir::new(&self.workdirs) {
            Ok(w) => w,
            Err(e) => {
                return StepResult {
                    outcome: Err(StepFailure::Failed(format!(
                        "cannot create the step's working directory: {e}"
                    ))),
                    log: StepLog::default(),
                    duration: start.elapsed(),
                };
            }
        };
        granted.workdir = workdir.path.clone();
        let mut wasi = WasiCtxBuilder::new();
        let denials = crate::caps::Denials::default();
        let prepared = match granted.prepare(&mut wasi, &denials) {
            Ok(prepared) => prepared,
            Err(e) => {
                return StepResult {
                    outcome: Err(StepFailure::Failed(e)),
                    log: StepLog::default(),
                    duration: start.elapsed(),
                };
            }
        };
        let mut store = self.store(
            limits.memory,
            granted,
            limits.timeout,
            wasi.build(),
            denials,
            prepared,
        );
        let input_text = input.to_string();
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &input_text).await
        };
        // The epoch deadline stops wasm; this stops a host call that blocks.
        let outcome = match tokio::time::timeout(limits.timeout + TICK * 10, call).await {
            Err(_) => Err(StepFailure::TimedOut(limits.timeout)),
            Ok(Err(e)) => Err(classify(e, &store, limits.timeout)),
            Ok(Ok(Err(step_error))) => Err(from_step_error(step_error)),
            Ok(Ok(Ok(out))) => success(
                &store.data().state.redactor,
                out.outputs,
                out.summary,
                out.artifacts,
            ),
        };
        let mut data = store.into_data();
        let denials = data.state.denials.list();
        let outcome = with_denials(outcome, &denials);
        let outcome = match (outcome, data.state.granted.artifacts.clone()) {
            (Ok(mut s), Some(dest)) => {
                // The copy counts against the step's deadline.
                match super::artifacts::keep(
                    &workdir.path,
                    &dest,
                    &mut s.artifacts,
                    data.state.granted.artifact_budget.clone(),
                    start.checked_add(limits.timeout),
                    limits.timeout,
                )
                .await
                {
                    Ok(()) => Ok(s),
                    Err(not_kept) => {
                        if let Some(line) = not_kept.log {
                            let line = data.state.redactor.redact(&format!("runner: {line}"));
                            data.state.log.host_line("warn", line);
                        }
                        Err(not_kept.failure)
                    }
                }
            }
            (outcome, _) => outcome,
        };
        for denial in denials {
            // A refusal may quote what the plugin sent, secrets included.
            let line = data
                .state
                .redactor
                .redact(&format!("runner: denied: {denial}"));
            data.state.log.host_line("warn", line);
        }
        let redactor = &data.state.redactor;
        let outcome = match outcome {
            Ok(mut s) => {
                s.outputs = redact_map(redactor, s.outputs);
                Ok(s)
            }
            Err(f) => Err(redact_failure(redactor, f)),
        };
        StepResult {
            outcome,
            log: data.state.log.finish(),
            duration: start.elapsed(),
        }
    }
}

/// A failed attempt during which the host refused a capability fails as `denied`
/// with the host's message: the plugin may have swallowed or garbled the refusal
/// it got. Timeouts and memory exhaustion keep their own reason; a successful
/// attempt stays successful (the refusals are in its log).
fn with_denials(
    outcome: Result<StepSuccess, StepFailure>,
    denials: &[String],
) -> Result<StepSuccess, StepFailure> {
    match (outcome, denials.first()) {
        (
            Err(
                StepFailure::Failed(_)
                | StepFailure::Retryable(_)
                | StepFailure::Denied(_)
                | StepFailure::Crashed(_),
            ),
            Some(first),
        ) => Err(StepFailure::Denied(first.clone())),
        (outcome, _) => outcome,
    }
}

/// Turns a wasmtime error from a call into the reason a person needs.
fn classify(e: wasmtime::Error, store: &Store<Data>, timeout: Duration) -> StepFailure {
    if store.data().cap.hit {
        return StepFailure::OutOfMemory(store.data().cap.max);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => StepFailure::TimedOut(timeout),
        Some(Trap::StackOverflow) => {
            StepFailure::Crashed("stack overflow (runaway recursion?)".into())
        }
        Some(Trap::UnreachableCodeReached) => {
            StepFailure::Crashed("the plugin trapped (unreachable code, e.g. a Rust panic)".into())
        }
        Some(trap) => StepFailure::Crashed(format!("the plugin trapped: {trap}")),
        None => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            // A plugin returns its result from `run`; exiting, even with 0, is a crash.
            Some(exit) => StepFailure::Crashed(format!(
                "the plugin exited the process (exit status {})",
                exit.0
            )),
            None => StepFailure::Crashed(last_cause(&e)),
        },
    }
}

/// The innermost cause of an error chain, in one line (the outer ones are
/// wasmtime's backtrace context).
fn last_cause(e: &wasmtime::Error) -> String {
    let text = e
        .chain()
        .last()
        .map(|c| c.to_string())
        .unwrap_or_else(|| e.to_string());
    text.lines().next().unwrap_or("unknown error").to_owned()
}

fn from_step_error(e: StepError) -> StepFailure {
    match e {
        StepError::InvalidInput(m) => StepFailure::InvalidInput(m),
        StepError::Denied(m) => StepFailure::Denied(m),
        StepError::Failed(m) => StepFailure::Failed(m),
        StepError::Retryable(m) => StepFailure::Retryable(m),
    }
}

/// A successful return checked and cleaned: outputs parsed (redacted later,
/// with the rest), the summary and the artifacts' names and media types through
/// [`from_plugin`](crate::caps::text::from_plugin).
fn success(
    redactor: &crate::caps::text::redact::Redactor,
    outputs: String,
    summary: String,
    artifacts: Vec<super::bindings::runner::plugin::types::Artifact>,
) -> Result<StepSuccess, StepFailure> {
    if outputs.len() > MAX_OUTPUT_BYTES {
        return Err(StepFailure::BadOutput(format!(
            "outputs are {} bytes; the limit is {MAX_OUTPUT_BYTES} (write large data to an artifact file)",
            outputs.len()
        )));
    }
    let outputs = match serde_json::from_str::<Value>(&outputs) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(StepFailure::BadOutput(format!(
                "outputs must be a JSON object, got {}",
                crate::playbook::schema::describe(&other)
            )));
        }
        Err(e) => return Err(StepFailure::BadOutput(format!("outputs are not JSON: {e}"))),
    };
    let summary = crate::caps::text::from_plugin(redactor, &summary, MAX_SUMMARY_BYTES);
    let checked = super::artifacts::check(redactor, artifacts)?;
    Ok(StepSuccess {
        outputs,
        summary,
        artifacts: checked,
    })
}

/// Text without the characters that would let a plugin rewrite what the
/// on-call engineer sees: the one function of `host::text`.
pub use crate::caps::text::printable;

/// Outputs with every secret value masked: in keys and strings (at any depth)
/// and in numbers, booleans and nulls ([`Redactor::scalar`](crate::caps::text::redact::Redactor::scalar)).
/// Characters are kept: outputs are data for later steps.
fn redact_map(
    r: &crate::caps::text::redact::Redactor,
    map: Map<String, Value>,
) -> Map<String, Value> {
    fn walk(r: &crate::caps::text::redact::Redactor, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(r.redact(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| walk(r, v)).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (r.redact(&k), walk(r, v)))
                    .collect(),
            ),
            other => r.scalar(other),
        }
    }
    map.into_iter()
        .map(|(k, v)| (r.redact(&k), walk(r, v)))
        .collect()
}

/// A failure's message, whatever its kind, through
/// [`from_plugin`](crate::caps::text::from_plugin): redacted, printable, at most
/// [`MAX_ERROR_BYTES`].
fn redact_failure(r: &crate::caps::text::redact::Redactor, f: StepFailure) -> StepFailure {
    let clean = |m: String| crate::caps::text::from_plugin(r, &m, MAX_ERROR_BYTES);
    match f {
        StepFailure::InvalidInput(m) => StepFailure::InvalidInput(clean(m)),
        StepFailure::Denied(m) => StepFailure::Denied(clean(m)),
        StepFailure::Failed(m) => StepFailure::Failed(clean(m)),
        StepFailure::Retryable(m) => StepFailure::Retryable(clean(m)),
        StepFailure::Crashed(m) => StepFailure::Crashed(clean(m)),
        StepFailure::BadOutput(m) => StepFailure::BadOutput(clean(m)),
        StepFailure::TimedOut(d) => StepFailure::TimedOut(d),
        StepFailure::OutOfMemory(n) => StepFailure::OutOfMemory(n),
    }
}

/// `describe`'s answer, parsed; its sizes are checked first, before any parsing.
fn describe(info: PluginInfo) -> Result<Description, LoadError> {
    let too_large = |what, size, unit, limit, hint| LoadError::TooLarge {
        what,
        size,
        unit,
        limit,
        hint,
    };
    for (what, text, limit) in [
        ("a name", &info.name, MAX_NAME_BYTES),
        ("a version", &info.version, MAX_VERSION_BYTES),
        ("a description", &info.description, MAX_DESCRIPTION_BYTES),
    ] {
        if text.len() > limit {
            return Err(too_large(
                what,
                text.len(),
                "bytes",
                limit,
                "it is shown in plans and reports",
            ));
        }
    }
    if info.input_schema.len() > MAX_SCHEMA_BYTES {
        return Err(too_large(
            "an input schema",
            info.input_schema.len(),
            "bytes",
            MAX_SCHEMA_BYTES,
            "an input schema describes the `with:` fields in a few KiB",
        ));
    }
    if info.capabilities.len() > MAX_CAPABILITIES {
        return Err(too_large(
            "a list",
            info.capabilities.len(),
            "capabilities",
            MAX_CAPABILITIES,
            "each kind needs naming once",
        ));
    }
    if let Some(long) = info
        .capabilities
        .iter()
        .find(|c| c.len() > MAX_CAPABILITY_BYTES)
    {
        return Err(too_large(
            "a capability name",
            long.len(),
            "bytes",
            MAX_CAPABILITY_BYTES,
            "capabilities are short kinds such as `http`",
        ));
    }
    let input_schema: Value = serde_json::from_str(&info.input_schema)
        .map_err(|e| LoadError::Schema(format!("the input schema is not JSON: {e}")))?;
    if !jsonschema::meta::is_valid(&input_schema) {
        return Err(LoadError::Schema(
            "the input schema does not satisfy the JSON Schema meta-schema".into(),
        ));
    }
    let (optional, capabilities): (Vec<String>, Vec<String>) = info
        .capabilities
        .into_iter()
        .partition(|c| c.ends_with('?'));
    // Shown by `plugins list|describe|check`, plans and reports: no character
    // that moves the cursor or reorders the line reaches a person.
    Ok(Description {
        name: crate::caps::text::printable(&info.name),
        version: crate::caps::text::printable(&info.version),
        description: crate::caps::text::printable(&info.description),
        input_schema,
        capabilities,
        optional: optional
            .into_iter()
            .map(|c| c.trim_end_matches('?').to_owned())
            .collect(),
    })
}

#[cfg(test)]
mod describe_tests {
    use super::*;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            capabilities: vec!["http".into(), "secrets?".into()],
        }
    }

    fn refused(info: PluginInfo) -> String {
        match describe(info) {
            Err(e @ LoadError::TooLarge { .. }) => e.to_string(),
            other => panic!("expected a size refusal, got {other:?}"),
        }
    }

    #[test]
    fn answers_at_the_limits_are_accepted() {
        let padded = format!(
            r#"{{"type":"object","description":"{}"}}"#,
            "x".repeat(MAX_SCHEMA_BYTES - 34)
        );
        assert_eq!(padded.len(), MAX_SCHEMA_BYTES);
        let d = describe(PluginInfo {
            name: "n".repeat(MAX_NAME_BYTES),
            version: "v".repeat(MAX_VERSION_BYTES),
            description: "d".repeat(MAX_DESCRIPTION_BYTES),
            input_schema: padded,
            capabilities: vec!["http".into(); MAX_CAPABILITIES],
        })
        .expect("at the limits");
        assert_eq!(d.capabilities.len(), MAX_CAPABILITIES);
        assert_eq!(describe(info()).expect("small").optional, vec!["secrets"]);
    }

    #[test]
    fn each_oversized_part_is_refused_naming_its_limit() {
        let m = refused(PluginInfo {
            input_schema: " ".repeat(MAX_SCHEMA_BYTES + 1),
            ..info()
        });
        assert!(
            m.starts_with(
                "`describe` returned an input schema of 262145 bytes; the limit is 262144 bytes"
            ),
            "{m}"
        );
        let m = refused(PluginInfo {
            name: "n".repeat(MAX_NAME_BYTES + 1),
            ..info()
        });
        assert!(
            m.starts_with("`describe` returned a name of 129 bytes; the limit is 128 bytes"),
            "{m}"
        );
        let m = refused(PluginInfo {
            version: "v".repeat(MAX_VERSION_BYTES + 1),
            ..info()
        });
        assert!(
            m.starts_with("`describe` returned a version of 65 bytes; the limit is 64 bytes"),
            "{m}"
        );
        let m = refused(PluginInfo {
            description: "d".repeat(MAX_DESCRIPTION_BYTES + 1),
            ..info()
        });
        assert!(
            m.starts_with(
                "`describe` returned a description of 4097 bytes; the limit is 4096 bytes"
            ),
            "{m}"
        );
        let m = refused(PluginInfo {
            capabilities: vec!["http".into(); MAX_CAPABILITIES + 1],
            ..info()
        });
        assert!(
            m.starts_with(
                "`describe` returned a list of 33 capabilities; the limit is 32 capabilities"
            ),
            "{m}"
        );
        let m = refused(PluginInfo {
            capabilities: vec!["h".repeat(MAX_CAPABILITY_BYTES + 1)],
            ..info()
        });
        assert!(
            m.starts_with(
                "`describe` returned a capability name of 33 bytes; the limit is 32 bytes"
            ),
            "{m}"
        );
    }

    #[test]
    fn a_schema_under_the_limit_is_still_parsed_and_checked() {
        let r = describe(PluginInfo {
            input_schema: "{ not json".into(),
            ..info()
        });
        assert!(
            matches!(r, Err(LoadError::Schema(m)) if m.starts_with("the input schema is not JSON"))
        );
    }

    #[test]
    fn names_and_descriptions_reach_people_escaped() {
        let d = describe(PluginInfo {
            name: "p\u{1b}[2J".into(),
            version: "1\r2".into(),
            description: "ok\nALL GREEN\u{202e}".into(),
            ..info()
        })
        .unwrap();
        assert_eq!(d.name, "p\\u{1b}[2J");
        assert_eq!(d.version, "1\\r2");
        assert_eq!(d.description, "ok\\nALL GREEN\\u{202e}");
    }
}
