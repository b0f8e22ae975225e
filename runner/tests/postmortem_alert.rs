//! The shipped post-mortem playbook's failure alert, run by the real binary
//! against loopback counterparts: a service whose health endpoint answers as
//! the test says and a Slack webhook that records what it gets. No cluster is
//! needed: the run stops in its first stage, before any Kubernetes step.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

mod common;

/// A loopback server: `/health` answers `health_status`; every POST body is
/// recorded (the Slack webhook). Prometheus queries get a body that is not
/// Prometheus's JSON, so the recovery metrics fail, as when Prometheus is down.
struct Loopback {
    port: u16,
    posts: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl Loopback {
    fn start(health_status: u16) -> Loopback {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (server.clone(), posts.clone());
        std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let status = if request.url() == "/health" {
                    health_status
                } else {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    if request.url().starts_with("/services/") {
                        p.lock().unwrap().push(body);
                    }
                    200
                };
                let _ = request.respond(
                    tiny_http::Response::from_string("no JSON here").with_status_code(status),
                );
            }
        });
        Loopback {
            port,
            posts,
            server,
        }
    }

    /// The text of every Slack message received.
    fn slack_texts(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .map(|m| m["attachments"][0]["blocks"][1]["text"]["text"].to_string())
            .collect()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Runs playbooks/postmortem.yaml with every host on `lo`; the Slack texts.
fn postmortem(dir: &Path, lo: &Loopback) -> (common::Shipped, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let origin = format!("http://127.0.0.1:{}", lo.port);
    let secrets = dir.join("secrets.env");
    std::fs::write(
        &secrets,
        format!("SLACK_WEBHOOK={origin}/services/T0/B0/x\n"),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The run needs a cluster configured, and never reaches it: the kube steps
    // come after the stage that fails. Port 9 on loopback has no API server.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: { server: \"https://127.0.0.1:9\" }\nusers:\n- name: nobody\n  user: { token: none }\ncontexts:\n- name: none\n  context: { cluster: none, user: nobody }\ncurrent-context: none\n",
    )
    .unwrap();
    let env = dir.join("environment.yaml");
    std::fs::write(
        &env,
        format!(
            "kube_context: none\nkubeconfig: {}\nsecrets_file: {}\ninputs:\n  service: shop\n  production_url: {origin}\n  prometheus_url: {origin}\ngrants:\n  http_check: {{ http: [\"{origin}\"] }}\n  prom: {{ http: [\"{origin}\"] }}\n  notify: {{ http: [\"{origin}\"] }}\n",
            kubeconfig.display(),
            secrets.display()
        ),
    )
    .unwrap();
    // The failed run the post-mortem is about: any run in the same journal.
    let (_, events) = common::exec(
        dir,
        "version: 1\nname: failed-canary\nplugins:\n  e: { uses: echo }\nstages:\n  - id: s\n    steps:\n      - { id: a, uses: e, with: { message: x } }\n",
        &[],
    );
    let failed_run = events
        .iter()
        .find(|e| e["event"] == "run_started")
        .and_then(|e| e["run"].as_str())
        .expect("the first run has an id")
        .to_owned();
    let failed_run = format!("failed_run={failed_run}");
    let run = common::Shipped::run(
        "postmortem",
        &env,
        &dir.join("state"),
        &[
            "incident_id=INC-ALERT-1",
            "incident_title=canary failed",
            failed_run.as_str(),
        ],
    );
    let texts = lo.slack_texts();
    (run, texts)
}

#[test]
fn an_unhealthy_service_is_alerted_as_a_rollback_that_is_not_complete() {
    let dir = common::scratch("postmortem-alert");
    let lo = Loopback::start(500);
    let (run, texts) = postmortem(&dir, &lo);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.status("health"), "failed");
    assert_eq!(run.status("alert_failed"), "succeeded");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("The rollback is NOT complete")
            && texts[0].contains("run rollback.yaml now"),
        "{texts:?}"
    );
    assert!(
        !texts[0].contains("Evidence collection failed"),
        "{texts:?}"
    );

    // Control: healthy, but the recovery metrics cannot be read (this
    // "Prometheus" answers no JSON): the alert says what did fail.
    let lo = Loopback::start(200);
    let (run, texts) = postmortem(&dir, &lo);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.status("health"), "succeeded");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("Evidence collection failed"), "{texts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
