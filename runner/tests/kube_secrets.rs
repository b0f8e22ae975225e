//! Secrets from Kubernetes: `k8s://NAMESPACE/SECRET#KEY` in the secrets file or
//! the environment file, read by the runner through its cluster connection
//! with its own identity, against the real API server of the test control
//! plane (RBAC on; the `reader` context may read only what a RoleBinding
//! gives it). The value reaches the plugin granted it (an `http-check`
//! against a loopback server sends it as a header) and nothing else: not the
//! events, not the journal.
//!
//! Needs `scripts/kube-control-plane.sh build`; fails without it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::kube::{ControlPlane, READER_CONTEXT};

const VALUE: &str = "s3cr3t-from-k8s-7f3a91";

fn kubectl(args: &[&str]) {
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
}

/// A loopback server that records each request's Authorization header.
fn server() -> (String, Arc<Mutex<Vec<String>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let auth = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            record.lock().unwrap().push(auth);
            let _ = request.respond(tiny_http::Response::from_string("ok"));
        }
    });
    (url, seen)
}

/// Runs the playbook with the `reader` context; exit code, stdout, stderr.
fn run(dir: &Path, url: &str, extra: &[&str]) -> (i32, String, String) {
    let playbook = format!(
        "version: 1\nname: kube-secret\nplugins:\n  check: {{ uses: http-check, grants: {{ http: [\"{url}\"], secrets: [TOKEN] }} }}\nstages:\n  - id: s\n    steps:\n      - id: call\n        uses: check\n        with: {{ url: \"{url}\", secret_headers: {{ authorization: TOKEN }}, expect_status: 200 }}\n"
    );
    let file = dir.join("playbook.yaml");
    std::fs::write(&file, playbook).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .env("KUBECONFIG", ControlPlane::shared().kubeconfig_path())
        .env_remove("TOKEN")
        .args(["exec", file.to_str().unwrap(), "--output", "json"])
        .args(["--kube-context", READER_CONTEXT])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_secret_the_runner_may_read_reaches_the_plugin_and_nothing_else() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("secrets");
    kubectl(&[
        "create",
        "secret",
        "generic",
        "app",
        "-n",
        &ns,
        &format!("--from-literal=token={VALUE}"),
    ]);
    kubectl(&[
        "create",
        "secret",
        "generic",
        "other",
        "-n",
        &ns,
        "--from-literal=token=not-for-the-runner",
    ]);
    kubectl(&[
        "create",
        "role",
        "read-app",
        "-n",
        &ns,
        "--verb=get",
        "--resource=secrets",
        "--resource-name=app",
    ]);
    kubectl(&[
        "create",
        "rolebinding",
        "reader-app",
        "-n",
        &ns,
        "--role=read-app",
        "--user=reader",
    ]);
    let dir = common::scratch("kube-secrets");
    let (url, seen) = server();

    // From the secrets file.
    let secrets = dir.join("secrets.env");
    private(&secrets, &format!("TOKEN=k8s://{ns}/app#token\n"));
    let (code, stdout, stderr) = run(&dir, &url, &["--secrets", secrets.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(*seen.lock().unwrap(), [VALUE.to_owned()]);
    assert!(!stdout.contains(VALUE) && !stderr.contains(VALUE));
    let run_id = stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok()?["run"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap();
    let shown = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .args(["runs", "show", &run_id, "--output", "json"])
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains(VALUE),
        "the journal holds no value"
    );

    // From the environment file: a Secret the reader may not read is refused
    // by the API server, and nothing runs.
    let env = dir.join("env.yaml");
    std::fs::write(&env, format!("secrets:\n  TOKEN: k8s://{ns}/other#token\n")).unwrap();
    let (code, _, stderr) = run(&dir, &url, &["--env", env.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "secret `TOKEN` granted to plugin `check`: denied: the runner's Kubernetes identity may not read k8s://{ns}/other#token"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not-for-the-runner"));
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing ran");

    // A key the Secret does not have, and a value in the environment file.
    std::fs::write(
        &env,
        format!("secrets:\n  TOKEN: k8s://{ns}/app#password\n"),
    )
    .unwrap();
    let (code, _, stderr) = run(&dir, &url, &["--env", env.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the Secret has no key `password` (its keys: token)"),
        "{stderr}"
    );
    std::fs::write(&env, "secrets:\n  TOKEN: hunter2\n").unwrap();
    let (code, _, stderr) = run(&dir, &url, &["--env", env.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("holds no secret values") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing ran");
}
