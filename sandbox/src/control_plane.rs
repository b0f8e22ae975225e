//! A real Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager 1.20 on 127.0.0.1, built from Debian's sources by
//! `scripts/kube-control-plane.sh build`, plus a node simulator ([`node_sim`])
//! standing in for the kubelets that a real cluster would have.
//!
//! Two ways to have one: [`ControlPlane::start`] returns an owned control plane whose
//! processes are killed when it is dropped (the sandbox); [`ControlPlane::shared`]
//! starts one per process on first use and never drops it (runner's kube tests, which
//! run in parallel against it, each in a namespace of its own:
//! [`ControlPlane::new_namespace`]). The binaries are required: without them starting
//! fails, naming the build command, rather than skip.
//!
//! The processes die with the process that started them even when it is killed and
//! the control plane never dropped (see the crate's `process` module). Submodules: [`pki`] makes
//! the credentials and the kubeconfig, [`node_sim`] plays the kubelet.

mod node_sim;
mod pki;

use std::fs;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use pki::Pki;

use crate::process::{self, Processes, tail};

pub use node_sim::{NODE_NAME, NOT_READY_CONFIGMAP, NOT_READY_KEY, NOT_READY_NAMESPACE};

/// The kubeconfig context that reaches the control plane.
pub const CONTEXT: &str = "sandbox";
/// A second kubeconfig context, pointing at a port where nothing listens (127.0.0.1:1).
pub const OTHER_CONTEXT: &str = "other";

/// A context of the kubeconfig whose user (`reader`) RBAC allows nothing
/// unless a test binds it a role: for what a run may not read.
pub const READER_CONTEXT: &str = "reader";
/// What to do when the binaries are missing.
pub const BUILD_HINT: &str = "run `scripts/kube-control-plane.sh build` (about 8 minutes on 2 cores the first time; cached afterwards)";
/// The binaries [`ControlPlane::start`] needs, in [`bin_dir`].
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running control plane. Its processes are killed and its folder removed when it
/// is dropped, or when the process that started it exits.
pub struct ControlPlane {
    dir: PathBuf,
    bin: PathBuf,
    server_url: String,
    token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    // Declared before `processes`: stopped first, so that it never talks to a
    // half-killed control plane (the explicit order is in `Drop` too).
    simulator: Option<node_sim::Simulation>,
    processes: Processes,
}

impl ControlPlane {
    /// The control plane of this process (one per test binary), started (≈5 s) by the
    /// first caller and never dropped. Panics, naming the build command, when the
    /// binaries are missing.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        // Started on a thread of its own: the caller may be inside a tokio runtime,
        // and starting blocks on one.
        let started = SHARED.get_or_init(|| {
            std::thread::spawn(ControlPlane::start)
                .join()
                .unwrap_or_else(|panic| Err(panic_message(&panic)))
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("Kubernetes control plane unavailable: {e}"),
        }
    }

    /// `https://127.0.0.1:<port>`
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The bearer token of `admin` (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA that signed the apiserver's serving certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig with contexts [`CONTEXT`] (current) and [`OTHER_CONTEXT`].
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The folder holding certificates, the kubeconfig and the processes' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client for context [`CONTEXT`], read from the kubeconfig as a user's would be.
    /// Must be called inside the tokio runtime that will use it.
    pub async fn client(&self) -> kube::Client {
        self.client_for(CONTEXT)
            .await
            .unwrap_or_else(|e| panic!("client for context {CONTEXT}: {e}"))
    }

    /// A client for any context of the kubeconfig.
    pub async fn client_for(&self, context: &str) -> Result<kube::Client, String> {
        client_from_kubeconfig(&self.kubeconfig, context).await
    }

    /// Debian's kubectl 1.20 with `--kubeconfig` set (context [`CONTEXT`] unless the
    /// caller adds `--context`).
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"));
        cmd
    }

    /// Creates a namespace named `<prefix>-<random>` and returns its name. A test
    /// helper: panics when the API server refuses.
    pub fn new_namespace(&self, prefix: &str) -> String {
        block_on(async {
            let api: Api<Namespace> = Api::all(self.client().await);
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": { "generateName": format!("{prefix}-") }
            }))
            .unwrap();
            let created = api
                .create(&PostParams::default(), &ns)
                .await
                .unwrap_or_else(|e| panic!("creating a namespace {prefix}-*: {e}"));
            created.metadata.name.expect("created namespace has a name")
        })
    }

    /// Makes the node simulator report pods running `image` (exact reference, as in
    /// the pod spec) as Running but not Ready, as a failing readiness probe would.
    /// Applies to pods created after this returns, and within ~0.2 s to existing ones.
    /// A test helper: panics when the API server refuses.
    pub fn fail_readiness(&self, image: &str) {
        self.edit_not_ready(|images| {
            if !images.iter().any(|i| i == image) {
                images.push(image.to_owned());
            }
        });
    }

    /// Undoes [`ControlPlane::fail_readiness`].
    pub fn clear_readiness(&self, image: &str) {
        self.edit_not_ready(|images| images.retain(|i| i != image));
    }

    fn edit_not_ready(&self, edit: impl Fn(&mut Vec<String>) + Send + Sync) {
        block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(self.client().await, NOT_READY_NAMESPACE);
            // Read-modify-write with the resourceVersion: tests edit it concurrently.
            for _ in 0..20 {
                let mut cm = api
                    .get(NOT_READY_CONFIGMAP)
                    .await
                    .unwrap_or_else(|e| panic!("reading the node simulator's ConfigMap: {e}"));
                let data = cm.data.get_or_insert_default();
                let mut images =
                    node_sim::parse_images(data.get(NOT_READY_KEY).map(String::as_str));
                edit(&mut images);
                data.insert(NOT_READY_KEY.to_owned(), images.join("\n"));
                match api
                    .replace(NOT_READY_CONFIGMAP, &PostParams::default(), &cm)
                    .await
                {
                    Ok(_) => return,
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(e) => panic!("updating the node simulator's ConfigMap: {e}"),
                }
            }
            panic!("updating the node simulator's ConfigMap: 20 conflicts in a row");
        });
    }

    /// The last lines of a process's log: `etcd`, `kube-apiserver`,
    /// `kube-controller-manager`.
    pub fn log_tail(&self, process: &str) -> String {
        tail(&self.dir.join(format!("{process}.log")))
    }

    /// Starts a control plane of its own (≈5 s on 2 cores), owned by the caller: its
    /// processes are killed and its folder (under the system's temp dir) removed when
    /// it is dropped. Fails, naming the build command, when the binaries are missing
    /// ([`is_built`]). Blocks; callable from inside a tokio runtime.
    pub fn start() -> Result<ControlPlane, String> {
        let bin = bin_dir()?;
        if let Some(missing) = BINARIES.iter().find(|b| !bin.join(b).is_file()) {
            return Err(format!(
                "{} not found: {BUILD_HINT}",
                bin.join(missing).display()
            ));
        }
        let began = Instant::now();
        remove_stale_dirs();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runner-kube-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pki = Pki::generate(&dir)?;
        let token = pki::random_hex(16)?;
        // `reader`: authenticated, in no group, so RBAC grants it nothing but
        // what a test gives it (a Role and RoleBinding): for refusals.
        let reader_token = pki::random_hex(16)?;
        fs::write(
            dir.join("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n{reader_token},reader,reader\n"),
        )
        .map_err(|e| e.to_string())?;

        let [etcd_client, etcd_peer, apiserver] = free_ports()?;
        let server_url = format!("https://127.0.0.1:{apiserver}");
        let kubeconfig = dir.join("kubeconfig");
        fs::write(
            &kubeconfig,
            pki::kubeconfig_yaml(&server_url, &pki.ca_pem, &token, &reader_token),
        )
        .map_err(|e| e.to_string())?;

        let mut processes = Processes::default();
        process::remove_after_exit(&dir)?;
        let etcd_data = dir.join("etcd");
        let client_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        processes.spawn(&dir, "etcd", {
            let mut c = Command::new(bin.join("etcd"));
            c.arg("--name=test")
                .arg(format!("--data-dir={}", etcd_data.display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"))
                .arg("--listen-metrics-urls=")
                .arg("--logger=zap")
                .arg("--log-level=warn");
            c
        })?;

        let p = |name: &str| dir.join(name).display().to_string();
        processes.spawn(&dir, "kube-apiserver", {
            let mut c = Command::new(bin.join("kube-apiserver"));
            c.arg(format!("--etcd-servers={client_url}"))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--secure-port={apiserver}"))
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", p("apiserver-certs")))
                .arg(format!("--tls-cert-file={}", p("server.crt")))
                .arg(format!("--tls-private-key-file={}", p("server.key")))
                .arg(format!("--token-auth-file={}", p("tokens.csv")))
                // admin is in system:masters (everything); `reader` gets only
                // what a test's RoleBinding gives it.
                .arg("--authorization-mode=RBAC")
                .arg(format!("--service-account-key-file={}", p("sa.pub")))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    p("sa.key")
                ))
                .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
                .arg("--service-cluster-ip-range=10.96.0.0/16")
                // ServiceAccount admission would reject pods until a token controller
                // has made the namespace's service-account token.
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--profiling=false")
                .arg("--v=1");
            c
        })?;

        let api_ready = block_on(wait_ready(&kubeconfig, &mut processes));
        api_ready.map_err(|e| format!("{e}\n{}", processes.tails(&dir)))?;
        let apiserver_ready = began.elapsed();

        processes.spawn(&dir, "kube-controller-manager", {
            let mut c = Command::new(bin.join("kube-controller-manager"));
            c.arg(format!("--kubeconfig={}", kubeconfig.display()))
                // Deployments → ReplicaSets → Pods, cascading deletes, namespace
                // deletion and default service accounts; nothing that could evict or
                // taint the simulated node (no nodelifecycle, podgc or scheduler).
                .arg(
                    "--controllers=deployment,replicaset,garbagecollector,namespace,serviceaccount",
                )
                .arg("--leader-elect=false")
                .arg("--secure-port=0")
                .arg("--port=0")
                .arg("--use-service-account-credentials=false")
                .arg("--v=1");
            c
        })?;

        let mut cp = ControlPlane {
            dir,
            bin,
            server_url,
            token,
            ca_pem: pki.ca_pem,
            kubeconfig,
            simulator: None,
            processes,
        };
        cp.simulator = Some(
            node_sim::start(cp.kubeconfig.clone())
                .map_err(|e| format!("node simulator: {e}\n{}", cp.processes.tails(&cp.dir)))?,
        );
        eprintln!(
            "kube control plane: apiserver ready {:.1} s after start, node simulator {:.1} s ({})",
            apiserver_ready.as_secs_f64(),
            began.elapsed().as_secs_f64(),
            cp.dir.display()
        );
        Ok(cp)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The simulator before the processes it talks to, the processes before their
        // folder (fields are dropped after this body).
        drop(self.simulator.take());
        self.processes.kill_all();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `${RUNNER_KUBE_CACHE:-$HOME/.cache/runner/kube}/bin`, as in the build script.
pub fn bin_dir() -> Result<PathBuf, String> {
    let cache = match std::env::var_os("RUNNER_KUBE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cache/runner/kube"),
            None => return Err("neither RUNNER_KUBE_CACHE nor HOME is set".to_owned()),
        },
    };
    Ok(cache.join("bin"))
}

/// Whether the binaries [`ControlPlane::start`] needs are in [`bin_dir`].
pub fn is_built() -> bool {
    bin_dir().is_ok_and(|bin| BINARIES.iter().all(|b| bin.join(b).is_file()))
}

pub(crate) async fn client_from_kubeconfig(
    kubeconfig: &Path,
    context: &str,
) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Polls `/readyz` until it answers `ok`, failing early when a process exits.
async fn wait_ready(kubeconfig: &Path, processes: &mut Processes) -> Result<(), String> {
    let client = client_from_kubeconfig(kubeconfig, CONTEXT).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(exited) = processes.exited() {
            return Err(format!("{exited} exited during startup"));
        }
        let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
        let last = match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "kube-apiserver not ready after {READY_TIMEOUT:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `fut` to completion on a fresh single-threaded runtime, on a thread of its
/// own so that callers inside a runtime may use it too.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Ports free now on 127.0.0.1, all bound at once so that they differ.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<_>>()
        .map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

/// Removes the folders of earlier test processes that are gone, should their
/// clean-up shell ([`process::remove_after_exit`]) have been killed too.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // runner-kube-<pid>-<n>, or runner-kube-<pid> from before there could be
        // several per process.
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("runner-kube-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}
