//! The built-in `kubectl` plugin and the `kube` capability against a real
//! Kubernetes 1.20 control plane (tests/common/kube.rs): rollouts that complete,
//! a rollout that never becomes ready and is undone within the step's deadline,
//! scaling, canary weights, denied namespaces and verbs, and credentials that
//! never reach a plugin. Debian's kubectl 1.20 reads the same objects, so what
//! the plugin reports and what kubectl shows are compared.

mod common;

use std::process::Command;

use common::kube::{CONTEXT, ControlPlane};
use common::{finished, scratch};
use serde_json::Value;

/// Runs `playbook` against the control plane: KUBECONFIG and --kube-context set
/// as a user would.
fn run(dir: &std::path::Path, playbook: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let cp = ControlPlane::shared();
    let mut args = vec!["--kube-context", CONTEXT];
    args.extend_from_slice(extra);
    common::exec_env(
        dir,
        playbook,
        &args,
        &[("KUBECONFIG", cp.kubeconfig_path().as_os_str())],
    )
}

fn kubectl(args: &[&str]) -> String {
    let out = ControlPlane::shared()
        .kubectl()
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Deployment `name` of `replicas` pods running `image`, created with kubectl
/// and waited for.
fn deployment(ns: &str, name: &str, image: &str, replicas: u32, progress_deadline: u32) {
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": "app", "image": image } ] }
            }
        }
    });
    let mut child = ControlPlane::shared()
        .kubectl()
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        manifest.to_string().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "kubectl apply {name}");
    kubectl(&[
        "rollout",
        "status",
        "-n",
        ns,
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
}

/// The grants of a plugin allowed to deploy in `ns`.
fn deploy_grants(ns: &str) -> String {
    format!(
        "{{kube: [{{namespaces: [{ns}], resources: [deployments.apps, replicasets.apps, pods], verbs: [get, list, watch, patch]}}, \
                   {{namespaces: [{ns}], resources: [deployments.apps/scale], verbs: [get, patch]}}, \
                   {{namespaces: [{ns}], resources: [pods/log], verbs: [get]}}]}}"
    )
}

fn one_step(ns: &str, id: &str, with: &str) -> String {
    common::one_step("kubectl", &deploy_grants(ns), id, with)
}

fn outputs<'e>(events: &'e [Value], id: &str) -> &'e Value {
    let f = finished(events, id);
    assert_eq!(f["status"], "succeeded", "{id}: {f:#}");
    &f["outputs"]
}

#[test]
fn set_image_then_rollout_status_completes_and_kubectl_agrees() {
    let ns = ControlPlane::shared().new_namespace("set-image");
    deployment(&ns, "web", "demo:1.0", 3, 60);
    let dir = scratch("kubectl-set-image");
    let playbook = format!(
        "version: 1\nname: deploy\nplugins:\n  k: {{ uses: kubectl, grants: {g} }}\nstages:\n  - id: deploy\n    steps:\n      - id: set\n        uses: k\n        with: {{ op: set-image, namespace: {ns}, deployment: web, image: 'demo:2.0' }}\n      - id: status\n        uses: k\n        with: {{ op: rollout-status, namespace: {ns}, deployment: web, timeout: 60s }}\n",
        g = deploy_grants(&ns)
    );
    let (code, events) = run(&dir, &playbook, &[]);
    assert_eq!(code, 0, "{events:#?}");
    let set = outputs(&events, "set");
    assert_eq!(set["previous_image"], "demo:1.0");
    assert_eq!(set["image"], "demo:2.0");
    assert_eq!(set["container"], "app");
    assert_eq!(set["changed"], true);
    assert_eq!(set["previous_revision"], 1);
    assert_eq!(set["revision"], 2);
    let status = outputs(&events, "status");
    assert_eq!(status["revision"], 2);
    for key in [
        "replicas",
        "ready_replicas",
        "updated_replicas",
        "available_replicas",
    ] {
        assert_eq!(status[key], 3, "{key}: {status:#}");
    }
    assert_eq!(status["image"], "demo:2.0");
    // What kubectl 1.20 sees.
    assert!(
        kubectl(&[
            "rollout",
            "status",
            "-n",
            &ns,
            "deployment/web",
            "--timeout=5s"
        ])
        .contains("successfully rolled out")
    );
    assert_eq!(
        kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ]),
        "demo:2.0 2"
    );
    let history = kubectl(&["rollout", "history", "-n", &ns, "deployment/web"]);
    assert!(
        history.contains("runner: set image app=demo:2.0"),
        "the change cause is recorded: {history}"
    );
}

#[test]
fn a_rollout_that_never_becomes_ready_is_detected_and_undone_within_the_deadline() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("bad-image");
    cp.fail_readiness("demo:broken");
    deployment(&ns, "api", "demo:1.0", 2, 600);
    let dir = scratch("kubectl-undo");
    // The step's own timeout (10 s) ends the wait long before the progress
    // deadline (600 s): the runner, not the controller, decides.
    let playbook = format!(
        "version: 1\nname: deploy\nplugins:\n  k: {{ uses: kubectl, grants: {g} }}\nstages:\n  - id: deploy\n    steps:\n      - id: set\n        uses: k\n        with: {{ op: set-image, namespace: {ns}, deployment: api, image: 'demo:broken' }}\n      - id: status\n        uses: k\n        with: {{ op: rollout-status, namespace: {ns}, deployment: api, timeout: 10s }}\n    handlers:\n      on_failure:\n        - id: undo\n          uses: k\n          with: {{ op: rollout-undo, namespace: {ns}, deployment: api, wait: true, timeout: 60s }}\n",
        g = deploy_grants(&ns)
    );
    let started = std::time::Instant::now();
    let (code, events) = run(&dir, &playbook, &[]);
    assert_eq!(code, 1, "the run fails: {events:#?}");
    let status = finished(&events, "status");
    assert_eq!(status["status"], "failed", "{status:#}");
    let message = status["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("timed out after 10 s")
            && message.contains("Waiting for deployment \"api\" rollout to finish"),
        "{message}"
    );
    let undo = outputs(&events, "undo");
    assert_eq!(undo["rolled_back_to"], 1);
    assert_eq!(undo["from_revision"], 2);
    assert_eq!(undo["image"], "demo:1.0");
    assert_eq!(undo["skipped"], false);
    assert_eq!(undo["available_replicas"], 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(75),
        "undone within the steps' deadlines"
    );
    // kubectl agrees: the old image again, as revision 3 (kubectl numbers a
    // rollback as a new revision), fully rolled out.
    assert_eq!(
        kubectl(&[
            "get",
            "deployment",
            "api",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ]),
        "demo:1.0 3"
    );
    assert!(
        kubectl(&[
            "rollout",
            "status",
            "-n",
            &ns,
            "deployment/api",
            "--timeout=5s"
        ])
        .contains("successfully rolled out")
    );
}

#[test]
fn the_progress_deadline_fails_rollout_status_with_kubectls_words() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("deadline");
    cp.fail_readiness("demo:stuck");
    deployment(&ns, "svc", "demo:1.0", 1, 3);
    let dir = scratch("kubectl-deadline");
    let playbook = format!(
        "version: 1\nname: deploy\nplugins:\n  k: {{ uses: kubectl, grants: {g} }}\nstages:\n  - id: deploy\n    steps:\n      - id: set\n        uses: k\n        with: {{ op: set-image, namespace: {ns}, deployment: svc, image: 'demo:stuck' }}\n      - id: status\n        uses: k\n        with: {{ op: rollout-status, namespace: {ns}, deployment: svc, timeout: 60s }}\n",
        g = deploy_grants(&ns)
    );
    let (code, events) = run(&dir, &playbook, &[]);
    assert_eq!(code, 1);
    let message = finished(&events, "status")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("deployment \"svc\" exceeded its progress deadline"),
        "{message}"
    );
    // kubectl 1.20 says the same.
    let out = cp
        .kubectl()
        .args([
            "rollout",
            "status",
            "-n",
            &ns,
            "deployment/svc",
            "--timeout=5s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exceeded its progress deadline"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scale_history_and_canary_weights() {
    let ns = ControlPlane::shared().new_namespace("scale");
    deployment(&ns, "web", "demo:1.0", 2, 60);
    deployment(&ns, "web-canary", "demo:1.0", 0, 60);
    let dir = scratch("kubectl-scale");
    let (code, events) = run(
        &dir,
        &one_step(
            &ns,
            "scale",
            &format!(
                "{{ op: scale, namespace: {ns}, deployment: web, replicas: 4, wait: true, timeout: 60s }}"
            ),
        ),
        &[],
    );
    assert_eq!(code, 0, "{events:#?}");
    let o = outputs(&events, "scale");
    assert_eq!(
        (
            o["previous_replicas"].as_i64(),
            o["ready_replicas"].as_i64()
        ),
        (Some(2), Some(4))
    );
    assert_eq!(
        kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.readyReplicas}"
        ]),
        "4"
    );

    // 25 % of the pair's 4 replicas on the canary, with a new image.
    let (code, events) = run(
        &dir,
        &one_step(
            &ns,
            "weight",
            &format!(
                "{{ op: canary-weight, namespace: {ns}, service: web, weight: 25, image: 'demo:2.0', wait: true, timeout: 60s }}"
            ),
        ),
        &[],
    );
    assert_eq!(code, 0, "{events:#?}");
    let o = outputs(&events, "weight");
    assert_eq!(
        (o["stable_replicas"].as_i64(), o["canary_replicas"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(o["canary"]["image"], "demo:2.0");
    assert_eq!(o["canary"]["ready_replicas"], 1);
    assert_eq!(o["stable"]["ready_replicas"], 3);
    assert_eq!(
        kubectl(&[
            "get",
            "deploy",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas} {end}"
        ]),
        "web=3 web-canary=1 "
    );

    let (code, events) = run(
        &dir,
        &one_step(
            &ns,
            "history",
            &format!("{{ op: rollout-history, namespace: {ns}, deployment: web-canary }}"),
        ),
        &[],
    );
    assert_eq!(code, 0, "{events:#?}");
    let o = outputs(&events, "history");
    assert_eq!(o["revision"], 2);
    assert_eq!(o["revisions"].as_array().map(Vec::len), Some(2));
    assert_eq!(o["revisions"][1]["images"][0], "demo:2.0");
}

#[test]
fn logs_of_pods_that_have_none_are_reported_not_fatal() {
    // No kubelet runs here, so pods have no logs: the API server says so, and
    // the plugin records it per pod instead of failing the evidence step.
    let ns = ControlPlane::shared().new_namespace("logs");
    deployment(&ns, "web", "demo:1.0", 1, 60);
    let dir = scratch("kubectl-logs");
    let (code, events) = run(
        &dir,
        &one_step(
            &ns,
            "logs",
            &format!("{{ op: logs, namespace: {ns}, deployment: web, since: 1h, pattern: ERROR }}"),
        ),
        &[],
    );
    assert_eq!(code, 0, "{events:#?}");
    let o = outputs(&events, "logs");
    assert_eq!(o["pods"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        finished(&events, "logs")["artifacts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn namespaces_and_verbs_outside_the_grant_are_denied_before_reaching_the_server() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("granted");
    let other = cp.new_namespace("other");
    deployment(&other, "web", "demo:1.0", 1, 60);
    let dir = scratch("kubectl-denied");
    // Another namespace.
    let (code, events) = run(
        &dir,
        &one_step(
            &ns,
            "elsewhere",
            &format!(
                "{{ op: set-image, namespace: {other}, deployment: web, image: 'demo:evil' }}"
            ),
        ),
        &[],
    );
    assert_eq!(code, 1);
    let f = finished(&events, "elsewhere");
    assert_eq!(f["error_kind"], "denied", "{f:#}");
    let m = f["error"].as_str().unwrap_or_default();
    assert!(
        m.contains(&format!(
            "`get deployments.apps` of `web` in namespace `{other}`"
        )) && m.contains(&format!("does not cover the namespace `{other}`")),
        "{m}"
    );
    // A verb the rule lacks: get but not patch.
    let read_only = format!(
        "{{kube: [{{namespaces: [{other}], resources: [deployments.apps], verbs: [get, list, watch]}}]}}"
    );
    let (code, events) = run(
        &dir,
        &common::one_step(
            "kubectl",
            &read_only,
            "patch",
            &format!(
                "{{ op: set-image, namespace: {other}, deployment: web, image: 'demo:evil' }}"
            ),
        ),
        &[],
    );
    assert_eq!(code, 1);
    let f = finished(&events, "patch");
    assert_eq!(f["error_kind"], "denied", "{f:#}");
    assert!(
        f["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not cover the verb `patch`"),
        "{f:#}"
    );
    // Nothing changed.
    assert_eq!(
        kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            &other,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "demo:1.0"
    );
}

#[test]
fn a_wrong_context_or_no_cluster_is_a_clear_error() {
    let ns = ControlPlane::shared().new_namespace("ctx");
    let dir = scratch("kubectl-context");
    let playbook = one_step(
        &ns,
        "get",
        &format!("{{ op: get, namespace: {ns}, resource: deployments }}"),
    );
    // An unknown context stops the run before anything runs.
    std::fs::write(dir.join("ctx.yaml"), &playbook).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env("KUBECONFIG", ControlPlane::shared().kubeconfig_path())
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .args([
            "exec",
            dir.join("ctx.yaml").to_str().unwrap(),
            "--kube-context",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use the kube context `nope`"), "{err}");
    // A context whose server does not answer fails the step that calls it.
    let (code, events) = common::exec_env(
        &dir,
        &playbook,
        &["--kube-context", "other"],
        &[(
            "KUBECONFIG",
            ControlPlane::shared().kubeconfig_path().as_os_str(),
        )],
    );
    assert_eq!(code, 1);
    let m = finished(&events, "get")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(m.contains("did not answer"), "{m}");
}

#[test]
fn plugins_never_see_the_kubeconfig_or_the_token() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("steal");
    let dir = scratch("kubectl-steal");
    // A granted plugin reads what it can: its environment, the kubeconfig and
    // the service-account token paths, and an API answer.
    let kubeconfig = cp.kubeconfig_path().to_str().unwrap();
    let playbook = format!(
        "version: 1\nname: steal\nplugins:\n  p: {{ uses: {wasm}, grants: {{kube: [{{namespaces: [{ns}], resources: [configmaps], verbs: [list]}}]}} }}\nstages:\n  - id: s\n    steps:\n      - id: steal\n        uses: p\n        with: {{ namespace: {ns}, paths: ['{kubeconfig}', /var/run/secrets/kubernetes.io/serviceaccount/token, '{home}/.kube/config'] }}\n",
        wasm = hostile_wasm("kube_steal"),
        home = std::env::var("HOME").unwrap_or_default()
    );
    let (code, events) = run(&dir, &playbook, &[]);
    let f = finished(&events, "steal");
    assert_eq!(code, 0, "{f:#}");
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(cp.token()), "the token leaked: {f:#}");
    assert!(
        !all.contains("certificate-authority-data"),
        "the kubeconfig leaked: {f:#}"
    );
    let o = &f["outputs"];
    assert_eq!(o["api_status"], 200, "the granted call worked: {o:#}");
    for read in o["reads"].as_array().unwrap() {
        assert_eq!(read["ok"], false, "{read:#}");
    }
    assert_eq!(
        o["env"],
        serde_json::json!({}),
        "no environment reaches a plugin"
    );

    // Granting a folder holding the kubeconfig is refused before anything runs.
    let folder = cp
        .kubeconfig_path()
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let playbook = format!(
        "version: 1\nname: steal\nplugins:\n  p: {{ uses: {wasm}, grants: {{fs: [{{path: '{folder}'}}], kube: [{{namespaces: [{ns}], resources: [configmaps], verbs: [list]}}]}} }}\nstages:\n  - id: s\n    steps:\n      - id: steal\n        uses: p\n        with: {{ namespace: {ns}, paths: ['{kubeconfig}'] }}\n",
        wasm = hostile_wasm("kube_steal"),
    );
    std::fs::write(dir.join("grant-kubeconfig.yaml"), playbook).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .args([
            "exec",
            dir.join("grant-kubeconfig.yaml").to_str().unwrap(),
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds the Kubernetes credentials"), "{err}");
}

/// A hostile plugin from tests/hostile, built by the hostile test harness's
/// method (see tests/hostile.rs).
fn hostile_wasm(name: &str) -> String {
    common::hostile_plugin(name).to_str().unwrap().to_owned()
}

/// An image from an input must be an OCI reference before anything is asked of
/// the API server: values with spaces, line breaks, flags, a second `@`, an
/// upper-case name or a tag past 128 characters are refused as `invalid-input`,
/// and the Deployment still runs its image.
#[test]
fn an_image_that_is_not_a_reference_never_reaches_the_cluster() {
    let ns = ControlPlane::shared().new_namespace("image-ref");
    deployment(&ns, "web", "demo:1.0", 1, 60);
    let dir = scratch("kubectl-image-ref");
    let long_tag = format!("demo:{}", "t".repeat(129));
    for image in [
        "demo:2.0 --privileged",
        "demo:2.0\nkind: Pod",
        "-demo:2.0",
        "Demo:2.0",
        "demo@@sha256:00",
        "https://registry.example.com/demo:2.0",
        long_tag.as_str(),
    ] {
        let with = format!(
            "{{ op: set-image, namespace: {ns}, deployment: web, image: {} }}",
            serde_json::to_string(image).unwrap()
        );
        let (code, events) = run(&dir, &one_step(&ns, "set", &with), &[]);
        let f = finished(&events, "set");
        assert_eq!(code, 1, "{image:?}: {f:#}");
        assert_eq!(f["error_kind"], "invalid-input", "{image:?}: {f:#}");
        assert!(
            f["error"]
                .as_str()
                .unwrap()
                .contains("is not an image reference"),
            "{f:#}"
        );
    }
    assert_eq!(
        kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "demo:1.0"
    );
    // Control: a registry with a port, a path and a digest is an image.
    let digest = format!("127.0.0.1:5000/team/demo:2.0@sha256:{}", "a".repeat(64));
    let with = format!("{{ op: set-image, namespace: {ns}, deployment: web, image: '{digest}' }}");
    let (code, events) = run(&dir, &one_step(&ns, "set", &with), &[]);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outputs(&events, "set")["image"], digest.as_str());
}
