//! A local rehearsal environment for runner's playbooks, on loopback, torn down when
//! dropped: what `runner-sandbox up` runs, and what the end-to-end tests start.
//!
//! - a real Kubernetes control plane ([`ControlPlane`]: etcd, kube-apiserver and
//!   kube-controller-manager 1.20, and a node simulator), with the Deployments `shop`
//!   (4 × `demo/shop:1.4.2`) and `shop-canary` (0 replicas) in the namespaces
//!   `staging` and `production`;
//! - the demo service ([`demo`]): one HTTP front per namespace sending each request
//!   to a random ready pod of those Deployments and answering as the pod's image
//!   behaves (a tag containing `bad`: 25 % of 500s and +600 ms), with Prometheus
//!   metrics and a steady background trickle of traffic;
//! - Prometheus scraping those metrics every second, when `prometheus` is installed;
//! - a notification sink ([`notify_sink`]): Slack and webhook POSTs and e-mail (SMTP)
//!   printed and appended to `notifications.jsonl`;
//! - a bare git remote `git/shop.git` ([`git_fixture`]) with release tags `v1.4.0`,
//!   `v1.4.1`, `v1.4.2`;
//! - the environment file for `runner exec PLAYBOOK --env FILE` and its secrets file.
//!
//! ```no_run
//! let sandbox = runner_sandbox::Sandbox::start(Default::default())?;
//! println!("{}", sandbox.env_file().display());
//! # Ok::<(), String>(())
//! ```

pub mod control_plane;
pub mod demo;
pub mod git_fixture;
pub mod notify_sink;
pub mod prometheus;

mod clock;
mod env_file;
mod metrics;
mod process;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub use control_plane::ControlPlane;
pub use demo::ServingPod;

use demo::{Demo, Traffic};
use notify_sink::NotifySink;
use process::Processes;

/// The demo service: Deployments `shop` and `shop-canary`, pods labelled `app=shop`.
pub const SERVICE: &str = "shop";
pub const PRODUCTION: &str = "production";
pub const STAGING: &str = "staging";
/// The image both Deployments run at the start (the release `v1.4.2`).
pub const IMAGE: &str = "demo/shop:1.4.2";
/// The release tag production runs.
pub const BASE_TAG: &str = "v1.4.2";
/// The image of a good fix (the environment file's `fixed_image`).
pub const FIXED_IMAGE: &str = "demo/shop:1.4.3";
/// An image of a bad fix: its tag contains `bad`, so it fails everywhere (staging's
/// checks catch it).
pub const BAD_IMAGE: &str = "demo/shop:1.4.3-bad";
/// An image of a fix that passes staging and fails in production (its tag ends in
/// `bad-in-production`): what the production canary must catch.
pub const BAD_IN_PRODUCTION_IMAGE: &str = "demo/shop:1.4.3-bad-in-production";
/// Replicas of the stable Deployment.
pub const REPLICAS: i32 = 4;
/// `progressDeadlineSeconds` of both Deployments.
pub const PROGRESS_DEADLINE_SECONDS: i32 = 60;
/// The password the SMTP sink wants when a client authenticates.
pub const SMTP_PASSWORD: &str = "sandbox";
/// Ports with `fixed_ports`: they match the loopback grants of the draft playbooks.
pub const FIXED_PORTS: Ports = Ports {
    production: 8080,
    staging: 8081,
    notify: 8082,
    metrics: 9091,
    prometheus: 9090,
    smtp: 2525,
};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The ports of the sandbox's servers, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub production: u16,
    pub staging: u16,
    /// The notification sink (HTTP).
    pub notify: u16,
    /// The demo service's `/metrics`.
    pub metrics: u16,
    pub prometheus: u16,
    pub smtp: u16,
}

impl Ports {
    /// Fails, naming the first, when one of the ports is taken on 127.0.0.1.
    fn check_free(&self) -> Result<(), String> {
        for (port, what) in [
            (self.production, "the production front"),
            (self.staging, "the staging front"),
            (self.notify, "the notification sink"),
            (self.metrics, "the metrics endpoint"),
            (self.prometheus, "Prometheus"),
            (self.smtp, "the SMTP sink"),
        ] {
            std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
                format!(
                    "{what}: 127.0.0.1:{port} is taken ({e}); is another sandbox running? Without fixed ports the sandbox takes free ones"
                )
            })?;
        }
        Ok(())
    }
}

/// How to start a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Folder for the sandbox's files (git remote, notifications, environment file,
    /// Prometheus data, logs); created if missing. `None`: a fresh folder under the
    /// system's temp dir, removed when the sandbox is dropped. A given folder keeps
    /// `git/`, `notifications.jsonl` and `logs/` after the sandbox stops; the rest of
    /// what the sandbox writes there is removed, and replaced at the next start.
    pub dir: Option<PathBuf>,
    /// Where to write the environment file (default `<dir>/environment.yaml`).
    pub env_out: Option<PathBuf>,
    /// Listen on [`FIXED_PORTS`] instead of free ports.
    pub fixed_ports: bool,
    /// Run `scripts/kube-control-plane.sh build` (≈8 minutes, once) when the control
    /// plane's binaries are missing, instead of failing.
    pub build_control_plane: bool,
    /// Start Prometheus when it is installed.
    pub prometheus: bool,
    /// Print progress lines (with times) on stderr.
    pub progress: bool,
    /// Print each notification on stdout as it arrives.
    pub print_notifications: bool,
    /// Background requests per second to each front (0: none).
    pub traffic_rate: f64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            dir: None,
            env_out: None,
            fixed_ports: false,
            build_control_plane: false,
            prometheus: true,
            progress: true,
            print_notifications: false,
            traffic_rate: 20.0,
        }
    }
}

/// A running sandbox. Dropping it stops everything it started.
pub struct Sandbox {
    dir: PathBuf,
    owns_dir: bool,
    pid_file: Option<PathBuf>,
    env_file: PathBuf,
    secrets_file: PathBuf,
    kubeconfig: PathBuf,
    notifications: PathBuf,
    git_dir: PathBuf,
    git_remote: PathBuf,
    ports: Ports,
    prometheus_bin: Option<PathBuf>,
    started_in: Duration,
    progress: Progress,
    // Stopped in this order (see Drop): traffic, fronts, Prometheus, the SMTP sink,
    // the HTTP sink, the control plane.
    traffic: Option<Traffic>,
    demo: Option<Demo>,
    prometheus: Processes,
    smtp: Processes,
    sink: Option<NotifySink>,
    control_plane: Option<ControlPlane>,
}

impl Sandbox {
    /// Starts everything and writes the environment file; ≈10–15 s on 2 cores once the
    /// control plane is built. Blocks; callable from inside a tokio runtime.
    pub fn start(options: SandboxOptions) -> Result<Sandbox, String> {
        let progress = Progress {
            began: Instant::now(),
            enabled: options.progress,
        };
        let (dir, owns_dir) = match &options.dir {
            Some(dir) => (absolute(dir)?, false),
            None => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "runner-sandbox-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = fs::remove_dir_all(&dir);
                (dir, true)
            }
        };
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if owns_dir {
            // Never dropped (a static in a test binary), it is removed all the same.
            process::remove_after_exit(&dir)?;
        }
        let env_file = match &options.env_out {
            Some(path) => absolute(path)?,
            None => dir.join("environment.yaml"),
        };
        let git_dir = dir.join("git");
        let mut sb = Sandbox {
            pid_file: None,
            secrets_file: dir.join("secrets.env"),
            kubeconfig: dir.join("kubeconfig"),
            notifications: dir.join("notifications.jsonl"),
            git_remote: git_dir.join(git_fixture::REPO),
            git_dir,
            env_file,
            ports: FIXED_PORTS,
            prometheus_bin: None,
            started_in: Duration::ZERO,
            progress,
            traffic: None,
            demo: None,
            prometheus: Processes::default(),
            smtp: Processes::default(),
            sink: None,
            control_plane: None,
            dir,
            owns_dir,
        };
        if !owns_dir {
            sb.pid_file = Some(claim_dir(&sb.dir)?);
        }
        sb.progress
            .say(&format!("sandbox folder {}", sb.dir.display()));
        sb.clean_runtime_files();
        let logs = sb.dir.join("logs");
        fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        fs::write(&sb.notifications, "")
            .map_err(|e| format!("{}: {e}", sb.notifications.display()))?;

        if options.fixed_ports {
            FIXED_PORTS.check_free()?;
        }
        if !control_plane::is_built() {
            if !options.build_control_plane {
                return Err(format!(
                    "the Kubernetes control plane is not built: {}",
                    control_plane::BUILD_HINT
                ));
            }
            sb.progress.say(
                "building the Kubernetes control plane (once; about 8 minutes on 2 cores, cached in ~/.cache/runner/kube)",
            );
            build_control_plane()?;
            sb.progress.say("control plane built");
        }
        sb.progress
            .say("starting etcd, kube-apiserver, kube-controller-manager");
        let control_plane = std::thread::Builder::new()
            .name("control-plane-start".into())
            .spawn(ControlPlane::start)
            .map_err(|e| format!("starting the control plane: {e}"))?;

        // Everything that does not need the control plane meanwhile; the control plane
        // is joined whatever happens, so that an error never leaves it running.
        let meanwhile = sb.start_services(&options, &logs);
        let control_plane = control_plane
            .join()
            .unwrap_or_else(|panic| Err(control_plane::panic_message(&panic)));
        meanwhile?;
        sb.control_plane =
            Some(control_plane.map_err(|e| format!("Kubernetes control plane: {e}"))?);
        let cp = sb.control_plane();
        sb.progress.say(&format!(
            "control plane ready at {} (logs in {})",
            cp.server_url(),
            cp.dir().display()
        ));
        let text = fs::read_to_string(cp.kubeconfig_path())
            .map_err(|e| format!("{}: {e}", cp.kubeconfig_path().display()))?;
        env_file::write_private(&sb.kubeconfig, &text)?;
        let kubeconfig = cp.kubeconfig_path().to_owned();

        sb.progress.say(&format!(
            "deploying {SERVICE} ({REPLICAS} × {IMAGE}) and {SERVICE}-canary (0) in {STAGING} and {PRODUCTION}"
        ));
        sb.kube(reset_deployments)?;
        let demo = sb.demo.as_mut().expect("started above");
        demo.watch_pods(kubeconfig, SERVICE)?;
        sb.wait_serving()?;
        sb.progress.say(&format!(
            "{SERVICE} ready: {REPLICAS} pods behind each front"
        ));
        let fronts = [sb.ports.production, sb.ports.staging];
        sb.traffic = Some(Traffic::start(&fronts, options.traffic_rate)?);

        sb.write_env_file()?;
        sb.started_in = sb.progress.began.elapsed();
        sb.progress.say(&format!(
            "ready in {:.1} s; environment file {}",
            sb.started_in.as_secs_f64(),
            sb.env_file.display()
        ));
        Ok(sb)
    }

    /// The notification sink, the SMTP sink, the git remote, the demo's fronts and
    /// Prometheus: all that can start before the control plane is up.
    fn start_services(&mut self, options: &SandboxOptions, logs: &Path) -> Result<(), String> {
        let fixed = options.fixed_ports.then_some(FIXED_PORTS);
        self.progress.say("creating the git remote");
        self.git_remote = git_fixture::create(&self.git_dir)?;

        let sink = NotifySink::start(
            fixed.map(|p| p.notify),
            self.notifications.clone(),
            options.print_notifications,
        )?;
        self.ports.notify = sink.port();
        self.sink = Some(sink);

        let demo = Demo::bind(
            SERVICE,
            &[
                (PRODUCTION, fixed.map(|p| p.production)),
                (STAGING, fixed.map(|p| p.staging)),
            ],
            fixed.map(|p| p.metrics),
        )?;
        for (namespace, port) in demo.fronts() {
            match namespace.as_str() {
                PRODUCTION => self.ports.production = *port,
                _ => self.ports.staging = *port,
            }
        }
        self.ports.metrics = demo.metrics_port();
        self.demo = Some(demo);

        let [smtp, prometheus] = match fixed {
            Some(p) => [p.smtp, p.prometheus],
            None => control_plane::free_ports()?,
        };
        self.ports.smtp = smtp;
        self.ports.prometheus = prometheus;

        self.progress
            .say(&format!("starting the SMTP sink on 127.0.0.1:{smtp}"));
        let sink_url = format!("{}/email", self.notify_url());
        notify_sink::start_smtp(
            &mut self.smtp,
            logs,
            smtp,
            &sink_url,
            &self.notifications,
            SMTP_PASSWORD,
        )?;

        if options.prometheus {
            match prometheus::find() {
                Some(bin) => {
                    self.progress
                        .say(&format!("starting Prometheus on 127.0.0.1:{prometheus}"));
                    self.prometheus_bin = Some(bin);
                    self.start_prometheus()?;
                }
                None => self.progress.say(
                    "prometheus not found on PATH: running without it (Debian: apt-get install prometheus); the environment file has no prometheus_url",
                ),
            }
        }
        Ok(())
    }

    fn start_prometheus(&mut self) -> Result<(), String> {
        let Some(bin) = self.prometheus_bin.clone() else {
            return Ok(());
        };
        let dir = self.dir.join("prometheus");
        let _ = fs::remove_dir_all(&dir);
        prometheus::start(
            &mut self.prometheus,
            &bin,
            &dir,
            &self.dir.join("logs"),
            self.ports.prometheus,
            self.ports.metrics,
        )
    }

    /// Puts the sandbox back as [`Sandbox::start`] left it, for the next scenario of a
    /// test: both Deployments back to [`IMAGE`] (4 and 0 replicas) and ready, no image
    /// failing readiness, a fresh git remote, an empty notification log, and fresh
    /// metrics (the demo's counters start again and Prometheus forgets their series,
    /// so no rate remembers the last scenario). The environment file stays valid.
    pub fn reset(&mut self) -> Result<(), String> {
        let began = Instant::now();
        self.kube(|client| async move {
            let api: Api<ConfigMap> =
                Api::namespaced(client.clone(), control_plane::NOT_READY_NAMESPACE);
            let patch = json!({ "data": { control_plane::NOT_READY_KEY: "" } });
            api.patch(
                control_plane::NOT_READY_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("clearing the not-ready images: {e}"))?;
            reset_deployments(client).await
        })?;
        self.wait_serving()?;
        self.git_remote = git_fixture::create(&self.git_dir)?;
        fs::write(&self.notifications, "")
            .map_err(|e| format!("{}: {e}", self.notifications.display()))?;
        if let Some(demo) = &self.demo {
            demo.clear_metrics();
        }
        if self.prometheus_bin.is_some() {
            prometheus::forget(self.ports.prometheus)?;
        }
        self.progress.say(&format!(
            "sandbox reset in {:.1} s",
            began.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Runs `f` with a client of the control plane on a runtime of its own.
    fn kube<F, Fut>(&self, f: F) -> Result<(), String>
    where
        F: FnOnce(kube::Client) -> Fut + Send,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let kubeconfig = self.control_plane().kubeconfig_path().to_owned();
        control_plane::block_on(async move {
            let client =
                control_plane::client_from_kubeconfig(&kubeconfig, control_plane::CONTEXT).await?;
            f(client).await
        })
    }

    /// Waits until each front sends its traffic to exactly the [`REPLICAS`] stable pods
    /// running [`IMAGE`].
    fn wait_serving(&self) -> Result<(), String> {
        let demo = self.demo.as_ref().expect("the demo runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut last = None;
            for ns in [PRODUCTION, STAGING] {
                let pods = demo.views().serving(ns);
                let ok = pods.len() == REPLICAS as usize
                    && pods.iter().all(|p| p.image == IMAGE && p.track == "stable");
                if !ok {
                    last = Some(format!("{ns}: {pods:?}"));
                }
            }
            let Some(last) = last else {
                return Ok(());
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "the fronts do not see {REPLICAS} ready pods of {IMAGE} after 30 s; {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write_env_file(&self) -> Result<(), String> {
        env_file::write_private(
            &self.secrets_file,
            &env_file::secrets(&self.notify_url(), &self.smtp_server(), SMTP_PASSWORD),
        )?;
        let prometheus_url = self.prometheus_url();
        let (production_url, staging_url) = (self.production_url(), self.staging_url());
        let (smtp_server, notify_url) = (self.smtp_server(), self.notify_url());
        let env = env_file::Environment {
            kubeconfig: &self.kubeconfig,
            secrets_file: &self.secrets_file,
            service: SERVICE,
            namespace: PRODUCTION,
            staging_namespace: STAGING,
            production_url: &production_url,
            staging_url: &staging_url,
            prometheus_url: prometheus_url.as_deref(),
            git_remote: &self.git_remote,
            git_dir: &self.git_dir,
            base_tag: BASE_TAG,
            fixed_image: FIXED_IMAGE,
            smtp_server: &smtp_server,
            notify_url: &notify_url,
        };
        if let Some(parent) = self.env_file.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        env_file::write_private(&self.env_file, &env.yaml())
    }

    /// Removes what a run leaves that the next one replaces (a stopped sandbox's
    /// environment file would point at ports nobody listens on).
    fn clean_runtime_files(&self) {
        for file in [
            &self.env_file,
            &self.secrets_file,
            &self.kubeconfig,
            &self.dir.join("logs/smtp_sink.py"),
        ] {
            let _ = fs::remove_file(file);
        }
        let _ = fs::remove_dir_all(self.dir.join("prometheus"));
    }

    /// The environment file (`runner exec PLAYBOOK --env FILE`).
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// The secrets file the environment file names (mode 0600): `SLACK_WEBHOOK`,
    /// `WEBHOOK_URL`, `INCIDENT_WEBHOOK`, `SMTP_PASSWORD`, `SMTP_URL`.
    pub fn secrets_file(&self) -> &Path {
        &self.secrets_file
    }

    /// A copy of the control plane's kubeconfig (context `sandbox`), mode 0600.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `notifications.jsonl`: one JSON object a line per notification received.
    pub fn notifications_path(&self) -> &Path {
        &self.notifications
    }

    /// The notifications received so far (see [`notify_sink`] for their fields).
    pub fn notifications(&self) -> Vec<Value> {
        fs::read_to_string(&self.notifications)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The titles of the notifications received so far, in order.
    pub fn notification_titles(&self) -> Vec<String> {
        self.notifications()
            .iter()
            .filter_map(|n| n["title"].as_str().map(str::to_owned))
            .collect()
    }

    /// The bare git remote holding `shop`.
    pub fn git_remote(&self) -> &Path {
        &self.git_remote
    }

    /// The sandbox's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// `http://127.0.0.1:PORT` of the front of [`PRODUCTION`].
    pub fn production_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.production)
    }

    /// `http://127.0.0.1:PORT` of the front of [`STAGING`].
    pub fn staging_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.staging)
    }

    /// The demo service's metrics endpoint, `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.ports.metrics)
    }

    /// `http://127.0.0.1:PORT`, when Prometheus runs.
    pub fn prometheus_url(&self) -> Option<String> {
        self.prometheus_bin
            .as_ref()
            .map(|_| format!("http://127.0.0.1:{}", self.ports.prometheus))
    }

    /// The notification sink's base URL: `/slack` and `/webhook` below it.
    pub fn notify_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.notify)
    }

    /// `127.0.0.1:PORT` of the SMTP sink.
    pub fn smtp_server(&self) -> String {
        format!("127.0.0.1:{}", self.ports.smtp)
    }

    /// The control plane (kubectl, API clients, readiness failures).
    pub fn control_plane(&self) -> &ControlPlane {
        self.control_plane
            .as_ref()
            .expect("a started sandbox has a control plane")
    }

    /// The pods the front of `namespace` sends requests to now (refreshed every
    /// [`demo::REFRESH`]).
    pub fn serving(&self, namespace: &str) -> Vec<ServingPod> {
        self.demo
            .as_ref()
            .map(|d| d.views().serving(namespace))
            .unwrap_or_default()
    }

    /// An instant PromQL query: the `data.result` of Prometheus' answer. Fails when
    /// Prometheus does not run.
    pub fn prometheus_query(&self, promql: &str) -> Result<Value, String> {
        if self.prometheus_bin.is_none() {
            return Err("Prometheus does not run in this sandbox".to_owned());
        }
        prometheus::query(self.ports.prometheus, promql)
    }

    /// How long [`Sandbox::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let began = Instant::now();
        drop(self.traffic.take());
        drop(self.demo.take());
        self.prometheus.kill_all();
        self.smtp.kill_all();
        drop(self.sink.take());
        drop(self.control_plane.take());
        self.clean_runtime_files();
        if self.owns_dir {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            if let Some(pid_file) = &self.pid_file {
                let _ = fs::remove_file(pid_file);
            }
        }
        if self.started_in > Duration::ZERO {
            self.progress.say(&format!(
                "sandbox stopped in {:.1} s",
                began.elapsed().as_secs_f64()
            ));
        }
    }
}

/// Refuses a folder another running sandbox uses (its `sandbox.pid` names a live
/// process); marks it as this process's. Returns the pid file.
fn claim_dir(dir: &Path) -> Result<PathBuf, String> {
    let pid_file = dir.join("sandbox.pid");
    if let Ok(text) = fs::read_to_string(&pid_file)
        && let Ok(pid) = text.trim().parse::<u32>()
        && pid != std::process::id()
        && Path::new("/proc").join(pid.to_string()).exists()
    {
        return Err(format!(
            "another sandbox (pid {pid}) runs in {}: stop it (Ctrl-C, or kill {pid}) or use another folder",
            dir.display()
        ));
    }
    fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| format!("{}: {e}", pid_file.display()))?;
    Ok(pid_file)
}

/// Namespaces and both Deployments of each as at the start, created or put back.
async fn reset_deployments(client: kube::Client) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [STAGING, PRODUCTION] {
        let namespace: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": ns } })).expect("valid");
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("creating namespace {ns}: {e}")),
        }
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for (name, track, replicas) in [
            (SERVICE.to_owned(), "stable", REPLICAS),
            (format!("{SERVICE}-canary"), "canary", 0),
        ] {
            let wanted = deployment(&name, track, replicas);
            let patch = json!({
                "metadata": { "annotations": { "kubernetes.io/change-cause": format!("release {BASE_TAG}") } },
                "spec": { "replicas": replicas, "paused": false, "template": { "spec": {
                    "containers": [{ "name": SERVICE, "image": IMAGE }] } } },
            });
            match api.get_opt(&name).await {
                Ok(None) => {
                    let d: Deployment = serde_json::from_value(wanted).expect("valid Deployment");
                    api.create(&PostParams::default(), &d)
                        .await
                        .map_err(|e| format!("creating {ns}/{name}: {e}"))?;
                }
                Ok(Some(_)) => {
                    api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                        .map_err(|e| format!("resetting {ns}/{name}: {e}"))?;
                }
                Err(e) => return Err(format!("reading {ns}/{name}: {e}")),
            }
        }
    }
    for ns in [STAGING, PRODUCTION] {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for (name, replicas) in [
            (SERVICE.to_owned(), REPLICAS),
            (format!("{SERVICE}-canary"), 0),
        ] {
            rolled_out(&api, &name, replicas).await?;
        }
    }
    Ok(())
}

fn deployment(name: &str, track: &str, replicas: i32) -> Value {
    let labels = json!({ "app": SERVICE, "track": track });
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": { "kubernetes.io/change-cause": format!("release {BASE_TAG}") },
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{
                    "name": SERVICE,
                    "image": IMAGE,
                    "ports": [{ "containerPort": 8080 }],
                    "readinessProbe": { "httpGet": { "path": "/health", "port": 8080 } },
                }]}
            }
        }
    })
}

/// Waits until Deployment `name` has rolled out `replicas` ready replicas.
async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let d = api
            .get(name)
            .await
            .map_err(|e| format!("reading {name}: {e}"))?;
        let s = d.status.clone().unwrap_or_default();
        let n = |c: Option<i32>| c.unwrap_or(0);
        let done = s.observed_generation >= d.metadata.generation
            && [
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
            ]
            .iter()
            .all(|c| n(*c) == replicas);
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "deployment {name} not rolled out to {replicas} ready replicas after {READY_TIMEOUT:?}: {s:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `scripts/kube-control-plane.sh build`, its progress on this process's stderr.
fn build_control_plane() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube-control-plane.sh");
    if !script.is_file() {
        return Err(format!(
            "{} not found (runner-sandbox runs from a clone of the runner repository)",
            script.display()
        ));
    }
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("build")
        .status()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "{} build failed ({status}); its log is above",
            script.display()
        ));
    }
    if !control_plane::is_built() {
        return Err(format!(
            "{} build succeeded but the binaries are still missing in {}",
            script.display(),
            control_plane::bin_dir()?.display()
        ));
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Progress lines on stderr: `[12:03:04 +5.2s] message`.
#[derive(Debug, Clone, Copy)]
struct Progress {
    began: Instant,
    enabled: bool,
}

impl Progress {
    fn say(&self, message: &str) {
        if self.enabled {
            eprintln!(
                "[{} +{:.1}s] {message}",
                clock::local_hms(),
                self.began.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stale_pid_file_does_not_hold_the_folder() {
        let dir = std::env::temp_dir().join(format!("runner-sandbox-claim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(dir.join("sandbox.pid"), format!("{}\n", gone.id())).unwrap();
        assert_eq!(super::claim_dir(&dir), Ok(dir.join("sandbox.pid")));
        assert_eq!(
            std::fs::read_to_string(dir.join("sandbox.pid")).unwrap(),
            format!("{}\n", std::process::id())
        );
        // A live one does (pid 1 always runs).
        std::fs::write(dir.join("sandbox.pid"), "1\n").unwrap();
        let refused = super::claim_dir(&dir).unwrap_err();
        assert!(refused.contains("another sandbox (pid 1)"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sandbox_can_be_shared_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<super::Sandbox>();
    }
}
