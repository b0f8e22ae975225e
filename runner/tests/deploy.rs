//! The Kubernetes deployment of workers (deploy/kubernetes/) and the RBAC that
//! `runner plan --rbac` prints, applied with `kubectl apply --dry-run=server`
//! to the real 1.20 API server of the test control plane: the API server
//! validates every object (schemas, references, RBAC's own rules) without
//! keeping them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::kube::ControlPlane;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl apply --dry-run=server -f -` of `yaml` in namespace `ns`; what it said.
fn dry_run(cp: &ControlPlane, ns: Option<&str>, yaml: &str) -> String {
    let mut c = cp.kubectl();
    c.args(["apply", "--dry-run=server", "-o", "name", "-f", "-"]);
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply --dry-run=server: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_worker_manifests_are_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("runner");
    let read = |f: &str| std::fs::read_to_string(root().join("deploy/kubernetes").join(f)).unwrap();
    let yaml = format!(
        "{}\n---\n{}",
        read("database-secret.yaml"),
        read("worker.yaml")
    );
    let applied = dry_run(cp, Some(&ns), &yaml);
    assert!(
        applied.contains("secret/runner-database")
            && applied.contains("serviceaccount/runner-worker")
            && applied.contains("deployment.apps/runner-worker"),
        "{applied}"
    );
}

#[test]
fn the_rbac_of_a_playbook_is_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    let production = cp.new_namespace("production");
    let workers = cp.new_namespace("runner");
    // The rollback playbook's `kube` grant, in a namespace of this test.
    let base = common::scratch("rbac");
    let playbook = base.join("rollback.yaml");
    let text = std::fs::read_to_string(root().join("playbooks/rollback.yaml"))
        .unwrap()
        .replace(
            "namespaces: [production]",
            &format!("namespaces: [{production}]"),
        );
    std::fs::write(&playbook, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(root())
        .args([
            "plan",
            playbook.to_str().unwrap(),
            "-i",
            "service=api",
            "-i",
            "reason=test",
            "-i",
            "production_url=http://127.0.0.1:8080",
            "--rbac",
            "--service-account",
            &format!("{workers}/runner-worker"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("resources: [\"deployments/scale\"]")
            && yaml.contains("apiGroups: [\"apps\"]")
            && yaml.contains("verbs: [\"get\", \"list\", \"patch\", \"update\", \"watch\"]"),
        "{yaml}"
    );
    let applied = dry_run(cp, None, &yaml);
    assert!(
        applied.contains("role.rbac.authorization.k8s.io/runner-rollback")
            && applied.contains("rolebinding.rbac.authorization.k8s.io/runner-rollback"),
        "{applied}"
    );
}
