//! The node simulator: what the kubelets of a real cluster would report, in the spirit
//! of KWOK, for a control plane that has no nodes, scheduler or container runtime.
//!
//! Model, reconciled every [`TICK`] from a full pod list (level-triggered, so nothing
//! is lost when a request fails):
//!
//! - one Node, [`NODE_NAME`], Ready, with a heartbeat every few seconds; recreated if
//!   deleted, and stripped of the `not-ready`/`unreachable` taints that admission puts
//!   on new nodes (nothing else would remove them: no node-lifecycle controller runs);
//! - a pod without `spec.nodeName` is bound to it (the `binding` subresource, as a
//!   scheduler would);
//! - a bound pod is Running at once: `PodScheduled`, `Initialized`, `ContainersReady`
//!   and `Ready` true, each container running and ready, a start time and a pod IP;
//! - except when one of its images is listed in the ConfigMap
//!   `kube-system/node-simulator`, key `not-ready-images` (one image reference per
//!   line, compared exactly): then it is Running but not Ready, as with a failing
//!   readiness probe. The list is re-read every tick, so pods follow edits both ways;
//! - a pod with a `deletionTimestamp` is deleted with grace period 0, as the kubelet
//!   does once its containers have stopped.
//!
//! Pods bound to other nodes and pods that have finished are left alone.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};

pub const NODE_NAME: &str = "sim-node";
pub const NOT_READY_NAMESPACE: &str = "kube-system";
pub const NOT_READY_CONFIGMAP: &str = "node-simulator";
pub const NOT_READY_KEY: &str = "not-ready-images";

const TICK: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_secs(5);
const NODE_IP: &str = "10.0.0.1";
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The not-ready image list as stored in the ConfigMap.
pub fn parse_images(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A running simulator; dropping it stops it (within one tick) and waits for it.
pub struct Simulation {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the simulator on a thread of its own, returning once the node and the
/// ConfigMap exist. It runs until the returned [`Simulation`] is dropped, or the
/// process exits.
pub fn start(kubeconfig: PathBuf) -> Result<Simulation, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("node-simulator".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let client = match super::client_from_kubeconfig(&kubeconfig, super::CONTEXT).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut sim = Simulator::new(client);
                let setup = sim.setup().await;
                let ok = setup.is_ok();
                let _ = ready_tx.send(setup);
                if ok {
                    sim.run(&stopped).await;
                }
            });
        })
        .map_err(|e| e.to_string())?;
    let simulation = Simulation {
        stop,
        thread: Some(thread),
    };
    ready_rx
        .recv_timeout(SETUP_TIMEOUT)
        .map_err(|_| format!("not set up after {SETUP_TIMEOUT:?}"))??;
    Ok(simulation)
}

struct Simulator {
    client: kube::Client,
    nodes: Api<Node>,
    pods: Api<Pod>,
    config: Api<ConfigMap>,
    last_heartbeat: Option<Instant>,
    node_since: String,
}

impl Simulator {
    fn new(client: kube::Client) -> Self {
        Simulator {
            nodes: Api::all(client.clone()),
            pods: Api::all(client.clone()),
            config: Api::namespaced(client.clone(), NOT_READY_NAMESPACE),
            client,
            last_heartbeat: None,
            node_since: now(),
        }
    }

    async fn setup(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            // kube-system is created by the apiserver shortly after it becomes ready.
            match self.try_setup().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.to_string()),
                Err(_) => tokio::time::sleep(TICK).await,
            }
        }
    }

    async fn try_setup(&mut self) -> Result<(), kube::Error> {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": NOT_READY_CONFIGMAP, "namespace": NOT_READY_NAMESPACE },
            "data": { NOT_READY_KEY: "" }
        }))
        .expect("a valid ConfigMap");
        match self.config.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
        self.heartbeat().await
    }

    async fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.tick().await {
                eprintln!("node simulator: {e}");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn tick(&mut self) -> Result<(), kube::Error> {
        if self.last_heartbeat.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            self.heartbeat().await?;
        }
        let pods = self.pods.list(&ListParams::default()).await?;
        // Read after the pod list: an image marked not-ready before a pod was created
        // is then always seen together with that pod.
        let not_ready: HashSet<String> = match self.config.get_opt(NOT_READY_CONFIGMAP).await? {
            Some(cm) => parse_images(
                cm.data
                    .as_ref()
                    .and_then(|d| d.get(NOT_READY_KEY))
                    .map(String::as_str),
            )
            .into_iter()
            .collect(),
            None => HashSet::new(),
        };
        for pod in pods.items {
            if let Err(e) = self.reconcile(&pod, &not_ready).await {
                // Gone or changed meanwhile: the next tick sees the new state.
                if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                    eprintln!(
                        "node simulator: pod {}/{}: {e}",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    }

    /// Creates the node if missing, reports it Ready and removes condition taints.
    async fn heartbeat(&mut self) -> Result<(), kube::Error> {
        let node = match self.nodes.get_opt(NODE_NAME).await? {
            Some(node) => node,
            None => {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {
                        "name": NODE_NAME,
                        "labels": {
                            "kubernetes.io/hostname": NODE_NAME,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "node.runner.test/simulated": "true",
                        }
                    }
                }))
                .expect("a valid Node");
                self.node_since = now();
                self.nodes.create(&PostParams::default(), &node).await?
            }
        };
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        let kept: Vec<_> = taints
            .iter()
            .filter(|t| {
                t.key != "node.kubernetes.io/not-ready" && t.key != "node.kubernetes.io/unreachable"
            })
            .collect();
        if kept.len() != taints.len() {
            let patch = json!({ "spec": { "taints": kept } });
            self.nodes
                .patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let (since, beat) = (&self.node_since, now());
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            json!({
                "type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": beat, "lastTransitionTime": since,
            })
        };
        let resources =
            json!({ "cpu": "32", "memory": "128Gi", "pods": "1000", "ephemeral-storage": "100Gi" });
        let status = json!({ "status": {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
                condition("Ready", "True", "KubeletReady", "node simulator is posting ready status"),
            ],
            "addresses": [
                { "type": "InternalIP", "address": NODE_IP },
                { "type": "Hostname", "address": NODE_NAME },
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                "osImage": "runner node simulator", "containerRuntimeVersion": "simulated://1",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }});
        self.nodes
            .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        self.last_heartbeat = Some(Instant::now());
        Ok(())
    }

    async fn reconcile(&self, pod: &Pod, not_ready: &HashSet<String>) -> Result<(), kube::Error> {
        let (Some(name), Some(namespace), Some(spec)) = (
            pod.metadata.name.as_deref(),
            pod.metadata.namespace.as_deref(),
            pod.spec.as_ref(),
        ) else {
            return Ok(());
        };
        if spec.node_name.as_deref().is_some_and(|n| n != NODE_NAME) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            if pod.metadata.deletion_grace_period_seconds == Some(0) {
                // Already deleted with grace 0: waiting for its finalizers.
                return Ok(());
            }
            // Only this pod, not a namesake created since.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            api.delete(name, &dp).await?;
            return Ok(());
        }
        if spec.node_name.is_none() {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": { "name": name, "namespace": namespace },
                "target": { "apiVersion": "v1", "kind": "Node", "name": NODE_NAME },
            });
            let _: Value = api
                .create_subresource("binding", name, &PostParams::default(), &binding)
                .await?;
        }
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Ok(());
        }
        let images: Vec<&str> = spec
            .containers
            .iter()
            .map(|c| c.image.as_deref().unwrap_or_default())
            .collect();
        let ready = !images.iter().any(|i| not_ready.contains(*i));
        if up_to_date(pod, &images, ready) {
            return Ok(());
        }

        let now = now();
        let since = |kind: &str, status: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == status))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| now.clone())
        };
        let ready_str = if ready { "True" } else { "False" };
        let unready: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        let readiness = |kind: &str| {
            let mut c = json!({ "type": kind, "status": ready_str, "lastProbeTime": null,
                                "lastTransitionTime": since(kind, ready_str) });
            if !ready {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                ));
            }
            c
        };
        let start = status
            .start_time
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.clone());
        let uid = pod.metadata.uid.as_deref().unwrap_or(name);
        let containers: Vec<Value> = spec
            .containers
            .iter()
            .map(|c| {
                let image = c.image.as_deref().unwrap_or_default();
                json!({
                    "name": c.name, "image": image, "imageID": format!("simulated://{image}"),
                    "containerID": format!("simulated://{uid}/{}", c.name),
                    "ready": ready, "started": true, "restartCount": 0,
                    "state": { "running": { "startedAt": start } },
                })
            })
            .collect();
        let init_containers: Vec<Value> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let image = c.image.as_deref().unwrap_or_default();
                json!({
                    "name": c.name, "image": image, "imageID": format!("simulated://{image}"),
                    "containerID": format!("simulated://{uid}/{}", c.name),
                    "ready": true, "restartCount": 0,
                    "state": { "terminated": { "exitCode": 0, "reason": "Completed",
                                               "startedAt": start, "finishedAt": start } },
                })
            })
            .collect();
        let ip = pod_ip(uid);
        let patch = json!({ "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Initialized", "status": "True", "lastProbeTime": null,
                  "lastTransitionTime": since("Initialized", "True") },
                readiness("Ready"),
                readiness("ContainersReady"),
                { "type": "PodScheduled", "status": "True", "lastProbeTime": null,
                  "lastTransitionTime": since("PodScheduled", "True") },
            ],
            "hostIP": NODE_IP,
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": start,
            "containerStatuses": containers,
            "initContainerStatuses": init_containers,
        }});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// Whether the pod already shows what the simulator would write.
fn up_to_date(pod: &Pod, images: &[&str], ready: bool) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready_str = if ready { "True" } else { "False" };
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == ready_str)
    };
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE_NAME)
        && status.phase.as_deref() == Some("Running")
        && status.pod_ip.is_some()
        && condition("Ready")
        && condition("ContainersReady")
        && containers.len() == images.len()
        && containers
            .iter()
            .zip(images)
            .all(|(c, image)| c.ready == ready && c.image == *image)
}

/// A stable address in 10.244.0.0/16 for a pod (collisions do not matter here).
fn pod_ip(uid: &str) -> String {
    let h = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("10.244.{}.{}", (h >> 8) & 0xff, (h & 0xff) % 254 + 1)
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
