//! Plugins written in other languages, end to end: the JavaScript and Python
//! examples in examples/plugins are built from source with their real
//! toolchains (examples/plugins/build.sh installs them from npm and PyPI), then
//! run in playbooks that pin them by sha256, through the real `runner exec`,
//! against a real HTTP server on loopback.
//!
//! What is pinned down: outputs come back through the contract; a JavaScript
//! `throw` and a Python `raise` fail the step with their message and the
//! contract's error kind; a URL or a secret outside the playbook's grants is
//! refused by the runner (`denied`, with the grant to add); a file that does not
//! match its pin is refused before anything runs; `runner plugins check`
//! accepts both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

mod common;

/// The two components, built once per test binary.
struct Built {
    js: PathBuf,
    python: PathBuf,
}

/// Builds both examples with examples/plugins/build.sh into the test target's
/// temporary folder (rebuilt only when their sources change), and loads each
/// once with `runner plugins check`, which compiles it into the tests' compile
/// cache: the tests then start from the cache instead of each compiling 12-18 MB
/// of interpreter at the same time.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/build.sh");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("other-languages");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .expect("run examples/plugins/build.sh");
        assert!(
            out.status.success(),
            "examples/plugins/build.sh failed (it needs node, npm and python3 with venv; .ci/run installs them):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = |language: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{language} ")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("build.sh printed no `{language}` component: {stdout}"))
        };
        let built = Built {
            js: path("js"),
            python: path("python"),
        };
        for wasm in [&built.js, &built.python] {
            let r = plugins_check(wasm);
            assert_eq!(r.0, 0, "`runner plugins check {}`: {}{}", wasm.display(), r.1, r.2);
        }
        built
    })
}

/// `runner plugins check FILE`: exit code, stdout, stderr.
fn plugins_check(wasm: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .arg("plugins")
        .arg("check")
        .arg(wasm)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// A scratch folder holding `wasm` next to the playbooks, so that they name it
/// the way a user would: `uses: ./NAME.wasm` with its `sha256`.
fn folder_with(wasm: &Path) -> PathBuf {
    let dir = common::scratch("other-languages");
    let name = dir.join(wasm.file_name().unwrap());
    if std::fs::hard_link(wasm, &name).is_err() {
        std::fs::copy(wasm, &name).unwrap();
    }
    dir
}

/// A one-step playbook running `./FILE` (pinned) with `grants` and `with`.
fn playbook(wasm: &Path, grants: &str, with: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: other-languages\nplugins:\n  p:\n    uses: ./{file}\n    sha256: {sha}\n    grants: {grants}\nstages:\n  - id: s\n    steps:\n      - id: step\n        uses: p\n        with: {with}\n{extra}",
        file = wasm.file_name().unwrap().to_string_lossy(),
        sha = sha256(wasm),
    )
}

/// Runs the playbook; the exit code and the step's `step_finished` event.
fn run(wasm: &Path, grants: &str, with: &str, env: &[(&str, &str)]) -> (i32, Value) {
    run_with(wasm, grants, with, "", env)
}

fn run_with(
    wasm: &Path,
    grants: &str,
    with: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> (i32, Value) {
    let dir = folder_with(wasm);
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let (code, events) = common::exec_env(&dir, &playbook(wasm, grants, with, extra), &[], &env);
    let step = common::finished(&events, "step").clone();
    let _ = std::fs::remove_dir_all(&dir);
    (code, step)
}

fn error(step: &Value) -> &str {
    step["error"].as_str().unwrap_or("")
}

/// A request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    authorization: Option<String>,
    body: String,
}

/// A loopback HTTP server: `/health` 200 JSON, `/down` 503, `/hook` 200 JSON
/// echoing the `authorization` header, `/reject` 400, `/busy` 503; it records
/// every request.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let authorization = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("authorization"))
                    .map(|h| h.value.to_string());
                log.lock().unwrap().push(Seen {
                    method: request.method().to_string(),
                    url: request.url().to_owned(),
                    authorization: authorization.clone(),
                    body,
                });
                let (status, text) = match request.url() {
                    "/health" => (200, r#"{"status":"ok"}"#.to_owned()),
                    "/down" => (503, "maintenance".to_owned()),
                    "/hook" => (
                        200,
                        serde_json::json!({ "ok": true, "authorization": authorization })
                            .to_string(),
                    ),
                    "/reject" => (400, "no such channel: #ops\n".to_owned()),
                    "/busy" => (503, "try later".to_owned()),
                    _ => (404, "not found".to_owned()),
                };
                let _ = request
                    .respond(tiny_http::Response::from_string(text).with_status_code(status));
            }
        });
        Server {
            port,
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn grant(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port nothing listens on, not granted to the plugin.
fn other_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// --- Python: the health check -------------------------------------------------

#[test]
fn python_health_check_reports_status_and_latency() {
    let s = Server::start();
    let (code, step) = run(
        &built().python,
        &format!("{{ http: [\"{}\"] }}", s.grant()),
        &format!("{{ url: \"{}\", max_latency_ms: 5000 }}", s.url("/health")),
        &[],
    );
    assert_eq!(code, 0, "{step}");
    let out = &step["outputs"];
    assert_eq!(out["status"], 200, "{step}");
    assert!(
        out["latency_ms"]
            .as_f64()
            .is_some_and(|ms| (0.0..5000.0).contains(&ms)),
        "{step}"
    );
    assert_eq!(out["body"], r#"{"status":"ok"}"#);
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("GET {}: 200 in ", s.url("/health"))),
        "{step}"
    );
    let seen = s.seen();
    assert_eq!((seen.len(), seen[0].method.as_str()), (1, "GET"));
}

#[test]
fn python_raise_fails_the_step_with_its_message() {
    let s = Server::start();
    let grants = format!("{{ http: [\"{}\"] }}", s.grant());
    let (code, step) = run(
        &built().python,
        &grants,
        &format!("{{ url: \"{}\" }}", s.url("/down")),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed", "{step}");
    assert_eq!(error(&step), "failed: status 503, expected 2xx");
    let (code, step) = run(
        &built().python,
        &grants,
        &format!(
            "{{ url: \"{}\", expect_status: [200, 204] }}",
            s.url("/nope")
        ),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(error(&step), "failed: status 404, expected [200, 204]");
}

#[test]
fn python_exception_from_library_code_fails_the_step_with_its_type() {
    // `urllib.parse.urlsplit` raises ValueError on a broken IPv6 literal; the
    // plugin's catch-all turns any exception into the contract's `failed`.
    let (code, step) = run(
        &built().python,
        "{ http: [\"http://127.0.0.1:1\"] }",
        "{ url: \"http://[::1/health\" }",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed", "{step}");
    assert_eq!(error(&step), "failed: ValueError: Invalid IPv6 URL");
}

#[test]
fn python_connection_refused_is_retryable_and_retried() {
    let port = other_port();
    let (code, step) = run_with(
        &built().python,
        &format!("{{ http: [\"http://127.0.0.1:{port}\"] }}"),
        &format!("{{ url: \"http://127.0.0.1:{port}/health\", timeout_ms: 2000 }}"),
        "        retry: { max_attempts: 2, delay: 10ms }\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "retryable", "{step}");
    assert_eq!(step["attempts"], 2, "{step}");
    assert!(
        error(&step).starts_with("failed (retryable): request failed: ConnectionRefused"),
        "{step}"
    );
}

#[test]
fn python_url_outside_the_grant_is_denied() {
    let s = Server::start();
    let other = other_port();
    let (code, step) = run(
        &built().python,
        &format!("{{ http: [\"{}\"] }}", s.grant()),
        &format!("{{ url: \"http://127.0.0.1:{other}/health\" }}"),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied", "{step}");
    assert_eq!(
        error(&step),
        format!(
            "denied: `http://127.0.0.1:{other}` is not granted to plugin `p`; add it to `plugins.p.grants.http` in the playbook"
        )
    );
    assert!(s.seen().is_empty());
}

#[test]
fn input_outside_the_plugins_schema_is_refused_before_it_runs() {
    // Refused by `runner exec` before the first step, as `runner validate`
    // refuses it: exit 2, located, and nothing ran.
    let wasm = &built().python;
    let dir = folder_with(wasm);
    let file = dir.join("bad-input.yaml");
    std::fs::write(
        &file,
        playbook(
            wasm,
            "{ http: [\"http://127.0.0.1:1\"] }",
            "{ url: \"ftp://127.0.0.1/\" }",
            "",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .args(["exec", file.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "a step ran");
    assert!(
        stderr.contains(":13:22: `ftp://127.0.0.1/` does not fit `^https?://`: it cannot start with `f` (input schema of plugin `py-health-check`)"),
        "{stderr}"
    );
}

// --- JavaScript: the webhook ---------------------------------------------------

const TOKEN: &str = "s3cret-token-4d9a";

#[test]
fn js_webhook_posts_the_event_with_the_granted_secret() {
    let s = Server::start();
    let (code, step) = run(
        &built().js,
        &format!("{{ http: [\"{}\"], secrets: [WEBHOOK_TOKEN] }}", s.grant()),
        &format!(
            "{{ url: \"{}\", event: deployed, text: \"api v1.2.4 is live\", fields: {{ service: api, canary: 10 }} }}",
            s.url("/hook")
        ),
        &[("WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{step}");
    let seen = s.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].url.as_str()),
        ("POST", "/hook")
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let sent: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(sent["event"], "deployed");
    assert_eq!(sent["text"], "api v1.2.4 is live");
    assert_eq!(
        sent["fields"],
        serde_json::json!({ "service": "api", "canary": 10 })
    );
    let out = &step["outputs"];
    assert_eq!(out["status"], 200, "{step}");
    assert_eq!(out["response"]["ok"], true, "{step}");
    // The webhook echoed the token: the runner redacts it from the outputs.
    assert_eq!(
        out["response"]["authorization"], "Bearer [redacted]",
        "{step}"
    );
    assert!(!step.to_string().contains(TOKEN), "{step}");
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("posted \"deployed\" to {}: 200 in ", s.grant())),
        "{step}"
    );
}

#[test]
fn js_throw_fails_the_step_with_its_message() {
    let s = Server::start();
    let (code, step) = run(
        &built().js,
        &format!("{{ http: [\"{}\"], secrets: [WEBHOOK_TOKEN] }}", s.grant()),
        &format!("{{ url: \"{}\", event: deployed }}", s.url("/reject")),
        &[("WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed", "{step}");
    assert_eq!(
        error(&step),
        "failed: the webhook answered 400: no such channel: #ops"
    );
}

#[test]
fn js_exception_from_the_runtime_fails_the_step_with_its_type() {
    // `new URL` throws a TypeError; the plugin's catch-all turns any exception
    // into the contract's `failed` (uncaught, it would trap the plugin).
    let (code, step) = run(
        &built().js,
        "{ http: [\"http://127.0.0.1:1\"], secrets: [WEBHOOK_TOKEN] }",
        "{ url: \"http://[::1/hook\", event: deployed }",
        &[("WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "failed", "{step}");
    assert_eq!(
        error(&step),
        "failed: TypeError: URL constructor: http://[::1/hook is not a valid URL."
    );
}

#[test]
fn js_server_error_is_retryable_and_retried() {
    let s = Server::start();
    let (code, step) = run_with(
        &built().js,
        &format!("{{ http: [\"{}\"], secrets: [WEBHOOK_TOKEN] }}", s.grant()),
        &format!("{{ url: \"{}\", event: deployed }}", s.url("/busy")),
        "        retry: { max_attempts: 2, delay: 10ms }\n",
        &[("WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "retryable", "{step}");
    assert_eq!(step["attempts"], 2, "{step}");
    assert_eq!(
        error(&step),
        "failed (retryable): the webhook answered 503: try later"
    );
    assert_eq!(s.seen().len(), 2);
}

#[test]
fn js_url_outside_the_grant_is_denied() {
    let s = Server::start();
    let other = other_port();
    let (code, step) = run(
        &built().js,
        &format!("{{ http: [\"{}\"], secrets: [WEBHOOK_TOKEN] }}", s.grant()),
        &format!("{{ url: \"http://127.0.0.1:{other}/hook\", event: deployed }}"),
        &[("WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied", "{step}");
    assert_eq!(
        error(&step),
        format!(
            "denied: `http://127.0.0.1:{other}` is not granted to plugin `p`; add it to `plugins.p.grants.http` in the playbook"
        )
    );
}

#[test]
fn js_secret_outside_the_grant_is_denied() {
    let s = Server::start();
    let (code, step) = run(
        &built().js,
        &format!("{{ http: [\"{}\"], secrets: [WEBHOOK_TOKEN] }}", s.grant()),
        &format!(
            "{{ url: \"{}\", event: deployed, token_secret: DEPLOY_KEY }}",
            s.url("/hook")
        ),
        &[("WEBHOOK_TOKEN", TOKEN), ("DEPLOY_KEY", "other")],
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied", "{step}");
    assert_eq!(
        error(&step),
        "denied: secret `DEPLOY_KEY` is not granted to plugin `p`; add it to `plugins.p.grants.secrets` in the playbook"
    );
    assert!(s.seen().is_empty(), "nothing may be sent");
}

// --- Both ------------------------------------------------------------------------

#[test]
fn a_component_that_does_not_match_its_pin_is_refused_before_anything_runs() {
    let dir = folder_with(&built().python);
    let wrong = "ab".repeat(32);
    let text = playbook(
        &built().python,
        "{ http: [\"http://127.0.0.1:1\"] }",
        "{ url: \"http://127.0.0.1:1/\" }",
        "",
    )
    .replace(&sha256(&built().python), &wrong);
    let file = dir.join("pinned.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .arg("exec")
        .arg(&file)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`./py-health-check.wasm` does not match its pin: its sha256 is {}; if the new file is trusted, update the pin",
            sha256(&built().python)
        )),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("step_started"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plugins_check_accepts_both_and_shows_what_they_need() {
    let (code, stdout, stderr) = plugins_check(&built().js);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let row = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no import {name}: {out}"))
            .to_owned()
    };
    // ComponentizeJS imports wasi:http for `fetch`.
    assert!(
        row(&stdout, "wasi:http/outgoing-handler@").ends_with("requests need an `http` grant"),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"js-webhook\""), "{stdout}");
    let (code, stdout, stderr) = plugins_check(&built().python);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        row(&stdout, "wasi:http/outgoing-handler@0.2.12")
            .ends_with("requests need an `http` grant"),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"py-health-check\""), "{stdout}");
    assert!(
        stdout.contains("loaded from the compile cache in "),
        "{stdout}"
    );
}

#[test]
fn rebuilding_unchanged_sources_is_skipped() {
    let before = std::fs::metadata(&built().python)
        .unwrap()
        .modified()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--out")
        .arg(built().python.parent().unwrap())
        .arg("python")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("python {}\n", built().python.display())
    );
    // Neither the toolchain nor the component was touched.
    assert_eq!(
        std::fs::metadata(&built().python)
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
