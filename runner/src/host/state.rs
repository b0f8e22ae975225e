//! Per-attempt state of a plugin instance: its WASI context, its limits, what it
//! logged, and the host side of the capabilities it may call.
//!
//! One `StepState` lives in one `Store` for one step attempt and is dropped with
//! it, so nothing a plugin did can leak into the next attempt.

use std::collections::BTreeMap;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::runner::plugin::{kube, log, process, secrets};
use super::redact::Redactor;
use super::runtime::printable;

/// Most log lines kept per step attempt; further lines are counted, not kept.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most log bytes kept per step attempt (messages and fields).
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// Longest single log line kept; longer ones are cut.
pub const MAX_LOG_LINE: usize = 8 << 10;

/// A log line written by a plugin, already redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fields: String,
}

/// What the plugin logged, within the caps.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StepLog {
    pub lines: Vec<LogLine>,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    bytes: usize,
    /// Last progress report: done, total, message.
    pub progress: Option<(u64, Option<u64>, String)>,
}

/// What the step's grants allow, resolved for this attempt.
#[derive(Debug, Default, Clone)]
pub struct Granted {
    /// The plugin's local name in the playbook, for messages.
    pub plugin: String,
    /// Secret values by name, for the names granted.
    pub secrets: BTreeMap<String, String>,
    /// Capabilities the plugin declared in `describe`.
    pub declared: Vec<String>,
    /// Programs it may run.
    pub process: crate::caps::process::ProcessGrant,
    /// Folders it may open.
    pub fs: crate::caps::fs::FsGrant,
    /// The attempt's fresh working directory (set by the runtime).
    pub workdir: std::path::PathBuf,
}

pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub log: StepLog,
    pub granted: Granted,
    pub redactor: Redactor,
}

impl StepState {
    pub fn new(wasi: WasiCtx, granted: Granted) -> StepState {
        let redactor = Redactor::new(granted.secrets.values().cloned());
        StepState {
            wasi,
            table: ResourceTable::new(),
            log: StepLog::default(),
            granted,
            redactor,
        }
    }

    fn push_log(&mut self, line: LogLine) {
        let size = line.message.len() + line.fields.len();
        if self.log.lines.len() >= MAX_LOG_LINES || self.log.bytes + size > MAX_LOG_BYTES {
            self.log.dropped += 1;
            return;
        }
        self.log.bytes += size;
        self.log.lines.push(line);
    }

    /// Refusal for a capability the plugin did not declare in `describe`.
    fn undeclared(&self, capability: &str) -> Option<String> {
        (!self.granted.declared.iter().any(|c| c == capability)).then(|| {
            format!(
                "plugin `{}` used the `{capability}` capability without declaring it in `describe`; the plugin is at fault",
                self.granted.plugin
            )
        })
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …[cut]");
    }
    s
}

impl log::Host for StepState {
    async fn log(&mut self, level: log::Level, message: String, fields: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        let message = self
            .redactor
            .redact(&printable(&cut(message, MAX_LOG_LINE)));
        let fields = self.redactor.redact(&printable(&cut(fields, MAX_LOG_LINE)));
        self.push_log(LogLine {
            level,
            message,
            fields,
        });
    }

    async fn progress(&mut self, done: u64, total: Option<u64>, message: String) {
        let message = self
            .redactor
            .redact(&printable(&cut(message, MAX_LOG_LINE)));
        self.log.progress = Some((done, total, message));
    }
}

impl secrets::Host for StepState {
    async fn get(&mut self, name: String) -> Result<String, String> {
        if let Some(refusal) = self.undeclared("secrets") {
            return Err(refusal);
        }
        self.granted.secrets.get(&name).cloned().ok_or_else(|| {
            format!(
                "secret `{name}` is not granted to plugin `{0}`; add it to `plugins.{0}.grants.secrets` in the playbook",
                self.granted.plugin
            )
        })
    }
}

impl process::Host for StepState {
    async fn run(&mut self, command: process::Command) -> Result<process::Completed, String> {
        use crate::caps::process as cap;
        if let Some(refusal) = self.undeclared("process") {
            return Err(refusal);
        }
        let request = cap::Request {
            program: command.program,
            args: command.args,
            cwd: command.cwd,
            env: command.env,
            timeout: command.timeout_ms.map(std::time::Duration::from_millis),
        };
        let allowed =
            self.granted
                .process
                .check(&self.granted.plugin, &request, &self.granted.workdir)?;
        let done = cap::run(&allowed, &request).await?;
        Ok(process::Completed {
            exit_code: done.exit_code,
            stdout: done.stdout,
            stderr: done.stderr,
            timed_out: done.timed_out,
            truncated: done.truncated,
        })
    }
}

impl kube::Host for StepState {
    async fn call(&mut self, request: kube::Request) -> Result<kube::Response, String> {
        if let Some(refusal) = self.undeclared("kube") {
            return Err(refusal);
        }
        Err(format!(
            "Kubernetes access ({} {}) is not granted to plugin `{plugin}`; add a rule to `plugins.{plugin}.grants.kube` in the playbook",
            request.verb,
            request.resource,
            plugin = self.granted.plugin
        ))
    }
}

impl super::bindings::runner::plugin::types::Host for StepState {}
