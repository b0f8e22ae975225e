//! Per-attempt state of a plugin instance: its WASI context, its limits, what it
//! logged, and the host side of the capabilities it may call.
//!
//! One `StepState` lives in one `Store` for one step attempt and is dropped with
//! it, so nothing a plugin did can leak into the next attempt. Its capabilities
//! are prepared for the attempt by [`Granted::prepare`] (the `prepare` phase of
//! `caps::Capability`); the WIT `Host` impls below name each interface, as the
//! bindings make them one trait each.

use std::collections::BTreeMap;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView};

use crate::caps::fs::Fs;
use crate::caps::http::{Http, HttpHooks};
use crate::caps::kube::Kube;
use crate::caps::log::LogSink;
use crate::caps::process::Process;
use crate::caps::tcp::Tcp;
use crate::caps::{Attempt, Capability, Denials};

use super::bindings::runner::plugin::{kube, log, process, secrets};
use crate::caps::text::redact::Redactor;

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
    /// TCP endpoints it may connect to.
    pub tcp: crate::caps::tcp::TcpGrant,
    /// Kubernetes API rules it is granted.
    pub kube: crate::caps::kube::KubeGrant,
    /// The run's cluster connection (shared by all steps); `None`: no cluster.
    pub cluster: Option<Arc<crate::caps::kube::Cluster>>,
    /// The attempt's fresh working directory (set by the runtime).
    pub workdir: std::path::PathBuf,
    /// Where the step's artifacts are kept (set by the engine); `None`: they are
    /// checked but not kept.
    pub artifacts: Option<std::path::PathBuf>,
    /// What the run may still keep as artifacts, shared by all its steps (set by
    /// the engine); by default a fresh budget of its own.
    pub artifact_budget: Arc<super::artifacts::RunBudget>,
}

impl Granted {
    /// Prepares every capability for one attempt ([`Capability::prepare`]):
    /// the folders are preopened and the socket check installed in `wasi`, and
    /// the `wasi:http` hooks made; refusals go to `denials`. An error fails the
    /// step before it starts. Each capability is named: what each prepares has
    /// its own type.
    pub fn prepare(
        &self,
        wasi: &mut WasiCtxBuilder,
        denials: &Denials,
    ) -> Result<Prepared, String> {
        let mut attempt = Attempt {
            plugin: &self.plugin,
            declared: &self.declared,
            workdir: &self.workdir,
            wasi,
            denials,
        };
        Fs::prepare(&self.fs, &mut attempt)?;
        Tcp::prepare(&self.tcp, &mut attempt)?;
        let http = Http::prepare(&self.http, &mut attempt)?;
        Process::prepare(&self.process, &mut attempt)?;
        Kube::prepare(&self.kube, &mut attempt)?;
        // `secrets` is held as the values read for its names (the store's
        // redactor is made from them); it prepares nothing.
        Ok(Prepared { http })
    }
}

/// What the capabilities prepared for one attempt that its store keeps.
pub struct Prepared {
    /// The hooks every `wasi:http` request goes through.
    pub http: HttpHooks,
}

impl Prepared {
    /// For a store that may do nothing (`describe`): every request refused,
    /// recorded in `denials`.
    pub fn refusing(denials: &Denials) -> Prepared {
        Prepared {
            http: HttpHooks::refusing(denials),
        }
    }
}

pub struct StepState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: HttpHooks,
    table: ResourceTable,
    pub log: LogSink,
    pub granted: Granted,
    pub redactor: Redactor,
    /// Every capability refusal of this attempt.
    pub denials: Denials,
}

impl StepState {
    /// `denials` is shared with what [`Granted::prepare`] set up before the
    /// store (the `tcp` capability's socket check, the `wasi:http` hooks).
    pub fn new(wasi: WasiCtx, granted: Granted, denials: Denials, prepared: Prepared) -> StepState {
        let redactor = Redactor::new(granted.secrets.values().cloned());
        StepState {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks: prepared.http,
            table: ResourceTable::new(),
            log: LogSink::new(&granted.plugin),
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

impl log::Host for StepState {
    async fn log(&mut self, level: log::Level, message: String, fields: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.log.line(&self.redactor, level, message, fields);
    }

    async fn progress(&mut self, done: u64, total: Option<u64>, message: String) {
        self.log.progress(&self.redactor, done, total, message);
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
            .check(
                &self.granted.plugin,
                &request,
                &self.granted.workdir,
                &self.granted.fs.paths,
            )
            .map_err(|m| self.denials.record(m))?;
        // A link planted on the way to the working directory is a refusal too.
        let cwd = allowed.open_cwd().map_err(|m| self.denials.record(m))?;
        let done = cap::run(&allowed, cwd, &request).await?;
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
        use crate::caps::kube as cap;
        if let Some(refusal) = self.undeclared("kube") {
            return Err(refusal);
        }
        let request = cap::Request {
            verb: request.verb,
            api_version: request.api_version,
            resource: request.resource,
            subresource: request.subresource,
            namespace: request.namespace,
            name: request.name,
            label_selector: request.label_selector,
            field_selector: request.field_selector,
            patch_type: request.patch_type,
            body: request.body,
            resource_version: request.resource_version,
            timeout_seconds: request.timeout_seconds,
            query: request.query,
        };
        let call = match self.granted.kube.check(&self.granted.plugin, &request) {
            Ok(call) => call,
            Err(cap::Refusal::Denied(m)) => return Err(self.denials.record(m)),
            Err(cap::Refusal::Invalid(m)) => return Err(m),
        };
        let Some(cluster) = self.granted.cluster.clone() else {
            return Err("this run has no Kubernetes cluster".to_owned());
        };
        let response = cluster.send(&call).await?;
        Ok(kube::Response {
            status: response.status,
            body: response.body,
        })
    }
}

impl super::bindings::runner::plugin::types::Host for StepState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::http::{HttpGrant, Scheme};

    #[test]
    fn an_attempt_prepares_every_capability_or_fails_before_it_starts() {
        let denials = Denials::default();
        let granted = Granted {
            plugin: "p".into(),
            declared: vec!["http".into()],
            http: HttpGrant::new(&["https://api.example.com".into()]),
            workdir: std::env::temp_dir(),
            ..Granted::default()
        };
        let prepared = granted
            .prepare(&mut WasiCtxBuilder::new(), &denials)
            .unwrap();
        assert_eq!(prepared.http.plugin, "p");
        assert!(prepared.http.declared);
        assert!(
            prepared
                .http
                .grant
                .allows("p", Scheme::Https, "api.example.com", 443)
                .is_ok()
        );
        prepared.http.denials.record("refused".into());
        assert_eq!(denials.list(), ["refused"]);

        let missing = Granted {
            fs: crate::caps::fs::FsGrant::from_playbook(
                std::path::Path::new("/no/such"),
                &[crate::caps::grants::FsGrant {
                    path: "data".into(),
                    access: crate::caps::grants::FsAccess::Ro,
                }],
            ),
            ..granted
        };
        let e = missing
            .prepare(&mut WasiCtxBuilder::new(), &denials)
            .err()
            .unwrap();
        assert!(
            e.starts_with("granted folder `data` (/no/such/data)"),
            "{e}"
        );
    }
}
