//! The Kubernetes test fixture itself (tests/common/kube.rs) against the real
//! control plane: the controller-manager and the node simulator together must carry
//! a Deployment through a rollout, a rolling update and a stalled rollout, as a real
//! cluster would, and Debian's kubectl 1.20 must agree.
//!
//! Needs `scripts/kube-control-plane.sh build`; fails without it.

mod common;

use std::time::{Duration, Instant};

use common::kube::{ControlPlane, NODE_NAME, OTHER_CONTEXT};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

fn deployment(name: &str, image: &str, replicas: i32, progress_deadline: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": image }] }
            }
        }
    }))
    .unwrap()
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch = json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "app", "image": image }]
    }}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

/// Polls `probe` until it returns `Ok`, or panics after [`DEADLINE`] with the last
/// `Err` (a description of what was seen instead).
async fn eventually<T>(what: &str, probe: impl AsyncFn() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > DEADLINE => {
                let cp = ControlPlane::shared();
                panic!(
                    "not {what} after {DEADLINE:?}; last seen: {seen}\n--- controller-manager:\n{}",
                    cp.log_tail("kube-controller-manager")
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A deployment's rollout is complete: every replica updated, ready and available,
/// and no old replica left.
fn rolled_out(d: &Deployment, replicas: i32) -> Result<(), String> {
    let s = d.status.clone().unwrap_or_default();
    let observed = s.observed_generation >= d.metadata.generation;
    let counts = [
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas,
    ];
    if observed && counts.iter().all(|c| *c == Some(replicas)) {
        Ok(())
    } else {
        Err(format!("{s:?}"))
    }
}

async fn pods(api: &Api<Pod>, app: &str) -> Vec<Pod> {
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn image(pod: &Pod) -> &str {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .as_deref()
        .unwrap()
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn kubectl_rollout_status(ns: &str, name: &str) -> std::process::Output {
    ControlPlane::shared()
        .kubectl()
        .args(["-n", ns, "rollout", "status", &format!("deployment/{name}")])
        .arg("--timeout=60s")
        .output()
        .unwrap()
}

#[tokio::test]
async fn deployment_becomes_available_then_rolls_to_a_new_image() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("rollout");
    let client = cp.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", "demo:1.0", 3, 600),
        )
        .await
        .unwrap();

    eventually("available with 3 replicas", async || {
        rolled_out(&deployments.get("web").await.unwrap(), 3)
    })
    .await;
    let out = kubectl_rollout_status(&ns, "web");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("successfully rolled out"),
        "kubectl rollout status: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = pods(&pod_api, "web").await;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|p| is_ready(p) && image(p) == "demo:1.0"));
    assert!(
        first
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(NODE_NAME)),
        "bound to the simulated node"
    );

    set_image(&deployments, "web", "demo:2.0").await;
    eventually("rolled out to demo:2.0", async || {
        rolled_out(&deployments.get("web").await.unwrap(), 3)?;
        let now = pods(&pod_api, "web").await;
        let images: Vec<_> = now.iter().map(|p| (image(p), is_ready(p))).collect();
        // The old pods are gone: deleted by the ReplicaSet, finalised by the simulator.
        if now.len() == 3 && now.iter().all(|p| image(p) == "demo:2.0" && is_ready(p)) {
            Ok(())
        } else {
            Err(format!("pods {images:?}"))
        }
    })
    .await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client, &ns);
    let mut sizes: Vec<(String, i32)> = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|rs| {
            let spec = rs.spec.as_ref().unwrap();
            let image = spec
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap();
            (image, spec.replicas.unwrap())
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [("demo:1.0".to_owned(), 0), ("demo:2.0".to_owned(), 3)],
        "one ReplicaSet per image, the old one scaled down"
    );
    let out = kubectl_rollout_status(&ns, "web");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn rollout_to_an_image_that_never_gets_ready_exceeds_its_progress_deadline() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("stalled");
    let client = cp.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(client, &ns);
    cp.fail_readiness("demo:bad");
    deployments
        .create(&PostParams::default(), &deployment("api", "demo:1.0", 2, 5))
        .await
        .unwrap();
    eventually("available with 2 replicas", async || {
        rolled_out(&deployments.get("api").await.unwrap(), 2)
    })
    .await;

    set_image(&deployments, "api", "demo:bad").await;
    let condition = eventually("ProgressDeadlineExceeded", async || {
        let d = deployments.get("api").await.unwrap();
        let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
        conditions
            .iter()
            .find(|c| c.type_ == "Progressing" && c.status == "False")
            .cloned()
            .ok_or_else(|| format!("{conditions:?}"))
    })
    .await;
    assert_eq!(
        condition.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );

    // The rollout stalled: the old pods still serve, the new one runs but is not Ready.
    let now = pods(&pod_api, "api").await;
    let old: Vec<_> = now.iter().filter(|p| image(p) == "demo:1.0").collect();
    let new: Vec<_> = now.iter().filter(|p| image(p) == "demo:bad").collect();
    assert_eq!(old.len(), 2, "old pods kept");
    assert!(old.iter().all(|p| is_ready(p)), "old pods Ready");
    assert!(!new.is_empty(), "a new pod was started");
    assert!(
        new.iter().all(|p| phase(p) == "Running" && !is_ready(p)),
        "new pods Running but not Ready"
    );
    let out = kubectl_rollout_status(&ns, "api");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("exceeded its progress deadline"),
        "kubectl rollout status: {stderr}"
    );

    // Readiness restored: the same rollout completes.
    cp.clear_readiness("demo:bad");
    eventually("rolled out to demo:bad once it is ready", async || {
        rolled_out(&deployments.get("api").await.unwrap(), 2)
    })
    .await;
}

#[tokio::test]
async fn the_other_context_fails_to_connect() {
    let cp = ControlPlane::shared();
    let client = cp.client_for(OTHER_CONTEXT).await.unwrap();
    let err = client.apiserver_version().await.unwrap_err();
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(chain.contains("Connection refused"), "{chain}");

    let out = cp
        .kubectl()
        .args(["--context", OTHER_CONTEXT, "get", "namespaces"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("server 127.0.0.1:1 was refused"),
        "{stderr}"
    );

    // The same kubeconfig's current context works.
    let version = cp.client().await.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "20")
    );
}
