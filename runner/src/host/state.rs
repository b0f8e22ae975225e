//! Per-attempt state of a plugin instance: its WASI context, its limits, what it
//! logged, and the host side of the capabilities it may call.
//!
//! One `StepState` lives in one `Store` for one step attempt and is dropped with
//! it, so nothing a plugin did can leak into the next attempt.

use std::collections::BTreeMap;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView};

use crate::caps::Denials;
use crate::caps::http::HttpHooks;

use super::bindings::runner::plugin::{kube, log, process, secrets};
use super::redact::Redactor;
use super::runtime::printable;

/// Most log lines kept per step attempt; further lines are counted, not kept.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most log bytes kept per step attempt (messages and fields).
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// Longest single log line kept; longer ones are cut.
pub const MAX_LOG_LINE: usize = 8 << 10;
/// Lines a plugin may log at once before the rate cap applies.
pub const LOG_BURST: u64 = 1000;
/// Lines per second a plugin may log after a burst.
pub const LOG_RATE: u64 = 100;

/// A token bucket: [`LOG_BURST`] lines at once, then [`LOG_RATE`] per second.
/// Credit is kept in nanoseconds so that no rounding drifts.
#[derive(Debug, Clone)]
pub struct RateCap {
    credit_ns: u128,
    last: std::time::Instant,
}

impl RateCap {
    const LINE_NS: u128 = 1_000_000_000 / LOG_RATE as u128;
    const FULL_NS: u128 = Self::LINE_NS * LOG_BURST as u128;

    pub fn new(now: std::time::Instant) -> RateCap {
        RateCap {
            credit_ns: Self::FULL_NS,
            last: now,
        }
    }

    /// Whether one more line may pass at `now`.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_nanos();
        self.credit_ns = (self.credit_ns + refill).min(Self::FULL_NS);
        self.last = now.max(self.last);
        if self.credit_ns >= Self::LINE_NS {
            self.credit_ns -= Self::LINE_NS;
            true
        } else {
            false
        }
    }
}

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

impl StepLog {
    /// A line the host adds to the plugin's log (kept even past the caps).
    pub fn host_line(&mut self, level: &'static str, message: String) {
        self.lines.push(LogLine {
            level,
            message: printable(&message),
            fields: String::new(),
        });
    }
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
    /// Hosts it may reach.
    pub http: crate::caps::http::HttpGrant,
    /// The attempt's fresh working directory (set by the runtime).
    pub workdir: std::path::PathBuf,
    /// Where the step's artifacts are kept (set by the engine); `None`: they are
    /// checked but not kept.
    pub artifacts: Option<std::path::PathBuf>,
}

pub struct StepState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: HttpHooks,
    table: ResourceTable,
    pub log: StepLog,
    log_rate: RateCap,
    pub granted: Granted,
    pub redactor: Redactor,
    /// Every capability refusal of this attempt.
    pub denials: Denials,
}

impl StepState {
    pub fn new(wasi: WasiCtx, granted: Granted) -> StepState {
        let redactor = Redactor::new(granted.secrets.values().cloned());
        let denials = Denials::default();
        let http_hooks = HttpHooks {
            plugin: granted.plugin.clone(),
            declared: granted.declared.iter().any(|c| c == "http"),
            grant: Arc::new(granted.http.clone()),
            denials: denials.clone(),
        };
        StepState {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks,
            table: ResourceTable::new(),
            log: StepLog::default(),
            log_rate: RateCap::new(std::time::Instant::now()),
            granted,
            redactor,
            denials,
        }
    }

    /// The `wasi:http` view: shares the resource table with WASI, sends through
    /// the `http` capability's hooks.
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }

    /// Keeps a (redacted) line and passes it on to `tracing`, within the caps.
    fn push_log(&mut self, line: LogLine) {
        let size = line.message.len() + line.fields.len();
        if self.log.lines.len() >= MAX_LOG_LINES
            || self.log.bytes + size > MAX_LOG_BYTES
            || !self.log_rate.take(std::time::Instant::now())
        {
            self.log.dropped += 1;
            return;
        }
        let plugin = self.granted.plugin.as_str();
        let (message, fields) = (line.message.as_str(), line.fields.as_str());
        match line.level {
            "error" => tracing::error!(target: "plugin", plugin, fields, "{message}"),
            "warn" => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
            "info" => tracing::info!(target: "plugin", plugin, fields, "{message}"),
            "debug" => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
            _ => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
        }
        self.log.bytes += size;
        self.log.lines.push(line);
    }

    /// Refusal for a capability the plugin did not declare in `describe`.
    fn undeclared(&self, capability: &str) -> Option<String> {
        (!self.granted.declared.iter().any(|c| c == capability)).then(|| {
            self.denials
                .record(crate::caps::undeclared(&self.granted.plugin, capability))
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
            self.denials.record(format!(
                "secret `{name}` is not granted to plugin `{0}`; add it to `plugins.{0}.grants.secrets` in the playbook",
                self.granted.plugin
            ))
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
        let allowed = self
            .granted
            .process
            .check(&self.granted.plugin, &request, &self.granted.workdir)
            .map_err(|m| self.denials.record(m))?;
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
        Err(self.denials.record(format!(
            "Kubernetes access ({} {}) is not granted to plugin `{plugin}`; add a rule to `plugins.{plugin}.grants.kube` in the playbook",
            request.verb,
            request.resource,
            plugin = self.granted.plugin
        )))
    }
}

impl super::bindings::runner::plugin::types::Host for StepState {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_log_rate_cap_allows_a_burst_then_a_steady_rate() {
        let start = Instant::now();
        let mut cap = RateCap::new(start);
        let burst = (0..2000).filter(|_| cap.take(start)).count();
        assert_eq!(burst, LOG_BURST as usize);
        // One line per 1/LOG_RATE seconds afterwards: 100 lines in the next second.
        let later = (1..=1000)
            .filter(|i| cap.take(start + Duration::from_millis(*i)))
            .count();
        assert_eq!(later, LOG_RATE as usize);
        // Idle time refills up to the burst, not beyond.
        let much_later = start + Duration::from_secs(3600);
        let refilled = (0..5000).filter(|_| cap.take(much_later)).count();
        assert_eq!(refilled, LOG_BURST as usize);
    }
}
