//! The hostile-plugin suite: deliberately malicious components (sources in
//! `tests/hostile/plugins`), each of which must end its own step attempt with a
//! specific error while the runner carries on. Every case asserts the exact kind of
//! failure, not just "failed".
//!
//! The plugins are built once per test run for `wasm32-wasip2` (about a minute from
//! nothing), into the test target's temporary folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::caps::http::HttpGrant;
use runner::host::runtime::{Limits, LoadError, LoadedPlugin, Runtime, StepFailure, StepResult};
use runner::host::state::Granted;
use serde_json::{Value, json};

mod common;
#[path = "hostile/display.rs"]
mod display;
#[path = "hostile/fs_grant.rs"]
mod fs_grant;
#[path = "hostile/kube.rs"]
mod kube;
#[path = "hostile/net.rs"]
mod net;
#[path = "hostile/process_grant.rs"]
mod process_grant;
#[path = "hostile/redaction.rs"]
mod redaction;
#[path = "hostile/resources.rs"]
mod resources;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn runtime() -> Runtime {
    Runtime::new(Some(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
    ))
    .unwrap()
}

fn wasm(name: &str) -> Vec<u8> {
    let path = common::hostile_plugin(&name.replace('-', "_"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(runtime: &Runtime, name: &str) -> LoadedPlugin {
    rt().block_on(runtime.load(&wasm(name)))
        .unwrap_or_else(|e| panic!("{name} did not load: {e}"))
}

fn limits(timeout_ms: u64, memory_mib: usize) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        memory: memory_mib << 20,
    }
}

fn granted(secrets: &[(&str, &str)]) -> Granted {
    Granted {
        plugin: "hostile".into(),
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Granted::default()
    }
}

/// Runs `name` with `input`; the runtime is used again afterwards to show it
/// carries on.
fn run_with(name: &str, input: Value, limits: Limits, grants: Granted) -> StepResult {
    let runtime = runtime();
    let plugin = load(&runtime, name);
    let result = rt().block_on(runtime.run(&plugin, &input, &limits, grants));
    // The runner carries on: the same runtime still runs a well-behaved step.
    let echo = runner::host::builtin("echo").and_then(|b| b.wasm).unwrap();
    let echo = rt().block_on(runtime.load(echo)).unwrap();
    let after = rt().block_on(runtime.run(
        &echo,
        &json!({"message": "still here"}),
        &Limits::default(),
        Granted::default(),
    ));
    assert_eq!(
        after.outcome.map(|s| s.summary),
        Ok("still here".to_owned()),
        "runtime unusable after {name}"
    );
    result
}

fn run(name: &str, input: Value) -> StepResult {
    run_with(name, input, limits(2_000, 64), granted(&[]))
}

fn failure(r: StepResult) -> StepFailure {
    match r.outcome {
        Err(f) => f,
        Ok(s) => panic!("expected a failure, the step succeeded: {s:?}"),
    }
}

#[test]
fn busy_loop_is_stopped_at_its_deadline() {
    let f = failure(run_with(
        "busy-loop",
        json!({}),
        limits(300, 64),
        granted(&[]),
    ));
    assert_eq!(f, StepFailure::TimedOut(Duration::from_millis(300)));
}

#[test]
fn a_blocking_host_call_is_stopped_at_its_deadline() {
    let f = failure(run_with(
        "sleep-forever",
        json!({}),
        limits(300, 64),
        granted(&[]),
    ));
    assert_eq!(f, StepFailure::TimedOut(Duration::from_millis(300)));
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let f = failure(run_with(
        "memory-bomb",
        json!({}),
        limits(10_000, 32),
        granted(&[]),
    ));
    assert_eq!(f, StepFailure::OutOfMemory(32 << 20));
}

#[test]
fn recursion_past_the_wasm_stack_is_a_stack_overflow() {
    let f = failure(run("deep-recursion-native", json!({})));
    assert_eq!(
        f,
        StepFailure::Crashed("stack overflow (runaway recursion?)".into())
    );
}

#[test]
fn recursion_past_the_guest_stack_is_a_memory_fault() {
    let f = failure(run("deep-recursion", json!({})));
    assert!(
        matches!(&f, StepFailure::Crashed(m) if m.contains("out of bounds memory access")),
        "{f:?}"
    );
}

#[test]
fn a_trap_is_a_crash() {
    let f = failure(run("trap", json!({})));
    assert!(
        matches!(&f, StepFailure::Crashed(m) if m.contains("unreachable")),
        "{f:?}"
    );
}

#[test]
fn a_panic_is_a_crash_and_its_message_is_logged() {
    let r = run("panic", json!({}));
    assert!(
        r.log
            .lines
            .iter()
            .any(|l| l.level == "error" && l.message.contains("boom")),
        "{:?}",
        r.log.lines
    );
    let f = failure(r);
    assert!(
        matches!(&f, StepFailure::Crashed(m) if m.contains("unreachable")),
        "{f:?}"
    );
}

#[test]
fn exiting_the_process_is_a_failure_even_with_code_zero() {
    // WASI 0.2's `exit` carries only success or failure, not the code.
    for code in [0, 3] {
        let f = failure(run("process-exit", json!({ "code": code })));
        assert!(
            matches!(&f, StepFailure::Crashed(m) if m.starts_with("the plugin exited the process")),
            "{f:?}"
        );
    }
}

#[test]
fn outputs_that_are_not_json_are_refused() {
    let f = failure(run("bad-json", json!({})));
    assert!(
        matches!(&f, StepFailure::BadOutput(m) if m.starts_with("outputs are not JSON")),
        "{f:?}"
    );
}

#[test]
fn outputs_that_are_not_an_object_are_refused() {
    let f = failure(run("non-object-output", json!({})));
    assert_eq!(
        f,
        StepFailure::BadOutput("outputs must be a JSON object, got a list".into())
    );
}

#[test]
fn huge_outputs_are_refused() {
    let f = failure(run_with(
        "huge-output",
        json!({}),
        limits(10_000, 256),
        granted(&[]),
    ));
    assert!(
        matches!(&f, StepFailure::BadOutput(m) if m.contains("the limit is 1048576")),
        "{f:?}"
    );
}

#[test]
fn huge_summaries_are_cut_and_stripped_of_terminal_escapes() {
    let r = run_with("huge-summary", json!({}), limits(10_000, 256), granted(&[]));
    let s = r.outcome.expect("the step itself succeeds").summary;
    assert!(s.len() <= 1024, "{}", s.len());
    assert!(
        !s.chars().any(|c| c.is_control()),
        "control characters reach the terminal: {s:?}"
    );
    assert!(s.contains("all good"));
}

#[test]
fn a_log_flood_is_capped() {
    let r = run_with("log-flood", json!({}), limits(60_000, 64), granted(&[]));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    let kept: usize = r.log.lines.iter().map(|l| l.message.len()).sum();
    assert!(kept <= runner::caps::log::MAX_LOG_BYTES, "{kept}");
    assert!(
        r.log.dropped > 0,
        "nothing was dropped from a 100 MiB flood"
    );
}

#[test]
fn a_huge_log_line_is_cut() {
    let r = run_with(
        "huge-log-line",
        json!({}),
        limits(10_000, 256),
        granted(&[]),
    );
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    let longest = r
        .log
        .lines
        .iter()
        .map(|l| l.message.len())
        .max()
        .unwrap_or(0);
    assert!(longest <= runner::caps::log::MAX_LOG_LINE + 16, "{longest}");
}

#[test]
fn stdout_floods_go_nowhere() {
    let r = run_with("stdout-flood", json!({}), limits(30_000, 64), granted(&[]));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
}

#[test]
fn the_host_filesystem_is_not_visible() {
    let f = failure(run("read-passwd", json!({})));
    assert!(!f.to_string().contains("root:"), "{f}");
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
}

#[test]
fn dotdot_paths_do_not_escape() {
    let f = failure(run(
        "dotdot-escape",
        json!({ "path": "../../../../etc/passwd" }),
    ));
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
}

#[test]
fn writes_outside_the_sandbox_do_not_happen() {
    let marker = Path::new("/tmp/runner-escape-test");
    let _ = std::fs::remove_file(marker);
    let r = run("write-outside", json!({}));
    assert!(!marker.exists(), "the plugin wrote {}", marker.display());
    assert!(
        matches!(r.outcome, Err(StepFailure::Failed(_))),
        "{:?}",
        r.outcome
    );
}

#[test]
fn symlinks_cannot_be_planted() {
    let f = failure(run(
        "symlink-escape",
        json!({ "target": "/etc", "path": "link" }),
    ));
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
}

#[test]
fn artifacts_outside_the_workdir_are_refused() {
    let f = failure(run(
        "artifact-escape",
        json!({ "path": "../../etc/passwd" }),
    ));
    assert!(
        matches!(&f, StepFailure::BadOutput(m) if m.contains("must be relative")),
        "{f:?}"
    );
    let f = failure(run("artifact-escape", json!({ "path": "/etc/passwd" })));
    assert!(
        matches!(&f, StepFailure::BadOutput(m) if m.contains("must be relative")),
        "{f:?}"
    );
}

#[test]
fn an_artifact_planted_as_a_symlink_is_not_collected() {
    let dest =
        std::env::temp_dir().join(format!("runner-hostile-artifacts-{}", std::process::id()));
    let g = Granted {
        process: runner::caps::process::ProcessGrant::new(&["ln -s * *".into()]),
        artifacts: Some(dest.clone()),
        ..granted(&[])
    };
    let f = failure(run_with(
        "artifact-escape",
        json!({ "path": "leak.txt", "link": "/etc/passwd" }),
        limits(5_000, 64),
        g,
    ));
    assert_eq!(
        f,
        StepFailure::BadOutput(
            "artifact `passwd` at `leak.txt` is a symbolic link; artifacts must be regular files in the step's working directory".into()
        )
    );
    assert!(!dest.join("leak.txt").exists(), "the host file was copied");
    let _ = std::fs::remove_dir_all(&dest);
}

#[test]
fn an_ungranted_secret_is_denied_with_the_grant_to_add() {
    let f = failure(run_with(
        "secret-steal",
        json!({ "name": "AWS_KEY" }),
        limits(2_000, 64),
        granted(&[("OTHER", "x")]),
    ));
    assert_eq!(
        f,
        StepFailure::Denied(
            "secret `AWS_KEY` is not granted to plugin `hostile`; add it to `plugins.hostile.grants.secrets` in the playbook"
                .into()
        )
    );
}

#[test]
fn a_granted_secret_never_comes_back_in_clear() {
    let value = "hunter2-very-secret";
    let r = run_with(
        "secret-print",
        json!({ "name": "TOKEN" }),
        limits(2_000, 64),
        granted(&[("TOKEN", value)]),
    );
    let everything = format!("{:?} {:?}", r.outcome, r.log);
    assert!(
        !everything.contains(value),
        "the secret leaked: {everything}"
    );
    assert!(everything.contains("[redacted]"), "{everything}");
}

#[test]
fn an_ungranted_program_is_denied() {
    let f = failure(run(
        "exec-ungranted",
        json!({ "program": "sh", "args": ["-c", "id"] }),
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.contains("program `sh` is not granted")),
        "{f:?}"
    );
}

#[test]
fn ungranted_kubernetes_access_is_denied() {
    let f = failure(run("kube-ungranted", json!({})));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.contains("Kubernetes access")),
        "{f:?}"
    );
}

#[test]
fn capabilities_not_declared_in_describe_are_refused() {
    let server = Server::start();
    let g = Granted {
        process: runner::caps::process::ProcessGrant::new(&["sh".into()]),
        http: HttpGrant::new(&[format!("http://{}", server.addr)]),
        ..granted(&[("TOKEN", "x")])
    };
    let r = run_with(
        "describe-underclaims",
        json!({ "secret": "TOKEN", "program": "sh", "url": server.url("/") }),
        limits(2_000, 64),
        g,
    );
    let denied: Vec<&str> = r
        .log
        .lines
        .iter()
        .filter(|l| l.message.starts_with("runner: denied:"))
        .map(|l| l.message.as_str())
        .collect();
    for capability in ["secrets", "process", "http"] {
        let expected = format!(
            "runner: denied: plugin `hostile` used the `{capability}` capability without declaring it in `describe`; the plugin is at fault"
        );
        assert!(denied.contains(&expected.as_str()), "{denied:#?}");
    }
    assert!(
        matches!(failure(r), StepFailure::Denied(m) if m.contains("without declaring it in `describe`"))
    );
    assert_eq!(
        server.requests().len(),
        0,
        "an undeclared request got through"
    );
}

/// Header names (lower case) and values of one request.
type Headers = Vec<(String, String)>;

/// A real HTTP server on loopback that answers `200 ok` and records the headers of
/// each request; stopped when dropped.
struct Server {
    addr: std::net::SocketAddr,
    server: std::sync::Arc<tiny_http::Server>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Headers>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let headers = request
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.to_string(),
                        )
                    })
                    .collect();
                log.lock().unwrap().push(headers);
                let _ = request.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Server {
            addr,
            server,
            seen,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Headers> {
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

fn http_granted(grants: &[String]) -> Granted {
    Granted {
        http: HttpGrant::new(grants),
        ..granted(&[])
    }
}

#[test]
fn http_to_a_granted_loopback_address_goes_through() {
    // The control case: the checks below refuse for their reasons, not always.
    let server = Server::start();
    let r = run_with(
        "http-get",
        json!({ "url": server.url("/health") }),
        limits(5_000, 64),
        http_granted(&[format!("http://{}", server.addr)]),
    );
    let out = r.outcome.expect("a granted request");
    assert_eq!(out.outputs["status"], json!(200));
    assert_eq!(out.outputs["body"], json!("ok"));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn http_to_a_host_or_port_not_granted_is_denied() {
    let server = Server::start();
    let grant = http_granted(&[format!("http://{}", server.addr)]);
    let other_port = format!("http://127.0.0.1:{}/", server.addr.port() ^ 1);
    for (url, shown) in [
        (
            other_port.clone(),
            other_port.trim_end_matches('/').to_owned(),
        ),
        (
            "https://127.0.0.1:1/".to_owned(),
            "https://127.0.0.1:1".to_owned(),
        ),
        (
            "http://attacker.example/x".to_owned(),
            "http://attacker.example".to_owned(),
        ),
    ] {
        let f = failure(run_with(
            "http-get",
            json!({ "url": url }),
            limits(5_000, 64),
            grant.clone(),
        ));
        assert_eq!(
            f,
            StepFailure::Denied(format!(
                "`{shown}` is not granted to plugin `hostile`; add it to `plugins.hostile.grants.http` in the playbook"
            )),
        );
    }
    assert_eq!(server.requests().len(), 0);
}

/// A refusal reaches the plugin as a refusal, every time: the request's body
/// (empty here) is still taken in, so the plugin's client never sees its body
/// stream closed under it and mistakes that for a network error. (The git
/// plugin asks the runner about an https origin this way and lets git connect
/// on any other outcome: a refusal seen as a broken stream let git reach an
/// origin no grant named.) Both refusals: the grant's and the address's.
#[test]
fn every_refusal_reaches_the_plugin_as_a_refusal() {
    let server = Server::start();
    let name = "service.example.test";
    let port = server.addr.port();
    let to_name = Granted {
        http: HttpGrant::new(&[format!("http://{name}:{port}")])
            .with_host(name, &[server.addr.ip()]),
        ..granted(&[])
    };
    for (url, grant) in [
        (server.url("/x"), http_granted(&[])),
        (format!("http://{name}:{port}/x"), to_name),
    ] {
        let r = run_with(
            "http-get",
            json!({ "url": url, "times": 300 }),
            limits(60_000, 64),
            grant,
        );
        let out = r.outcome.expect("the plugin counts its outcomes");
        assert_eq!(out.outputs["other"], json!([]), "{url}: {:?}", out.outputs);
        assert_eq!(
            out.outputs["denied"],
            json!(300),
            "{url}: {:?}",
            out.outputs
        );
    }
    assert_eq!(server.requests().len(), 0);
}

/// A granted *name* that points at a non-public address: refused, and the refusal
/// says which address and which grant would allow it.
fn granted_name_resolving_to(ip: &str, kind: &str) {
    let (f, url, port, sent) = net::fetch_through_name(ip);
    assert_eq!(
        f,
        StepFailure::Denied(format!(
            "`{url}` resolves to {ip}, a {kind} address, which plugin `hostile` may reach only if that address is granted itself; if this is intended, add `http://{ip}:{port}` to `plugins.hostile.grants.http` in the playbook"
        ))
    );
    assert_eq!(sent, 0);
}

#[test]
fn a_granted_name_resolving_to_loopback_is_denied() {
    granted_name_resolving_to("127.0.0.1", "loopback");
}

#[test]
fn a_granted_name_resolving_to_the_metadata_address_is_denied() {
    granted_name_resolving_to(
        "169.254.169.254",
        "link-local (cloud metadata services live here)",
    );
}

#[test]
fn a_granted_name_resolving_to_a_private_address_is_denied() {
    granted_name_resolving_to("10.0.0.1", "private-network");
}

#[test]
fn localhost_through_real_dns_is_loopback_unless_its_address_is_granted() {
    let server = Server::start();
    let port = server.addr.port();
    let url = format!("http://localhost:{port}/");
    let f = failure(run_with(
        "http-get",
        json!({ "url": url }),
        limits(5_000, 64),
        http_granted(&[format!("http://localhost:{port}")]),
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.contains("a loopback address")),
        "{f:?}"
    );
    assert_eq!(server.requests().len(), 0);
    // Granting the address itself allows it.
    let r = run_with(
        "http-get",
        json!({ "url": url }),
        limits(5_000, 64),
        http_granted(&[
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ]),
    );
    assert_eq!(r.outcome.expect("granted").outputs["status"], json!(200));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn forbidden_headers_never_reach_the_server() {
    let server = Server::start();
    let r = run_with(
        "http-smuggle",
        json!({ "authority": server.addr.to_string() }),
        limits(5_000, 64),
        http_granted(&[format!("http://{}", server.addr)]),
    );
    let out = r.outcome.expect("the request itself is granted");
    assert_eq!(
        out.outputs["accepted"],
        json!([]),
        "forbidden headers accepted"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let headers = &requests[0];
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("host"), vec![server.addr.to_string().as_str()]);
    assert_eq!(get("x-innocent"), vec!["yes"]);
    for name in [
        "proxy-authorization",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
    ] {
        assert_eq!(get(name), Vec::<&str>::new(), "{name} reached the server");
    }
}

#[test]
fn the_host_environment_is_not_passed_on() {
    // This test process has PATH, HOME, CARGO_* ...; none of it may reach a plugin.
    assert!(std::env::var_os("PATH").is_some());
    let r = run("env-leak", json!({}));
    let out = r.outcome.expect("reading the environment is allowed");
    assert!(
        out.outputs.is_empty(),
        "the plugin saw the host environment: {:?}",
        out.outputs
    );
    assert!(
        out.summary.starts_with("0 environment variables"),
        "{}",
        out.summary
    );
}

#[test]
fn network_sockets_are_closed() {
    let listener = std::net::TcpListener::bind((common::own_loopback().as_str(), 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let outcome = rt().block_on(async {
        let runtime = runtime();
        match runtime.load(&wasm("socket-connect")).await {
            // Refusing the component outright is also containment.
            Err(e) => Err(format!("{e}")),
            Ok(p) => runtime
                .run(
                    &p,
                    &json!({ "addr": addr }),
                    &limits(2_000, 64),
                    granted(&[]),
                )
                .await
                .outcome
                .map(|_| ())
                .map_err(|f| f.to_string()),
        }
    });
    assert!(outcome.is_err(), "the plugin connected out");
    assert!(
        listener.accept().is_err(),
        "a connection reached the listener"
    );
}

/// A real listener on loopback that answers `pong` to one connection.
fn pong_listener() -> (std::net::SocketAddr, std::thread::JoinHandle<bool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let thread = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::{Read, Write};
                let _ = s.set_nonblocking(false);
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"pong");
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    (addr, thread)
}

#[test]
fn a_tcp_grant_opens_exactly_its_endpoint() {
    let (addr, server) = pong_listener();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    // Granted another endpoint: refused, and the refusal names the grant to add.
    let g = Granted {
        tcp: runner::caps::tcp::TcpGrant::new(&[other_addr.to_string()]),
        ..granted(&[])
    };
    let f = failure(run_with(
        "socket-connect",
        json!({ "addr": addr.to_string() }),
        limits(5_000, 64),
        g,
    ));
    assert_eq!(
        f,
        StepFailure::Denied(format!(
            "a TCP connection to {addr} is not granted to plugin `hostile`; add `{addr}` to `plugins.hostile.grants.tcp` in the playbook if it is intended"
        ))
    );
    // Granted this endpoint: the connection is made and the answer comes back.
    let g = Granted {
        tcp: runner::caps::tcp::TcpGrant::new(&[addr.to_string()]),
        ..granted(&[])
    };
    let r = run_with(
        "socket-connect",
        json!({ "addr": addr.to_string() }),
        limits(5_000, 64),
        g,
    );
    let out = r.outcome.expect("a granted endpoint");
    assert_eq!(out.outputs["reply"], "pong");
    assert!(server.join().unwrap(), "the listener saw the connection");
}

#[test]
fn describe_that_never_returns_is_cut_off() {
    let err = rt()
        .block_on(runtime().load(&wasm("slow-describe")))
        .err()
        .expect("load must fail");
    assert!(
        matches!(err, LoadError::Describe(StepFailure::TimedOut(_))),
        "{err}"
    );
}

#[test]
fn an_invalid_input_schema_is_refused() {
    let err = rt()
        .block_on(runtime().load(&wasm("bad-schema")))
        .err()
        .expect("load must fail");
    assert!(matches!(err, LoadError::Schema(_)), "{err}");
}

#[test]
fn an_unknown_capability_is_refused() {
    let err = rt()
        .block_on(runtime().load(&wasm("unknown-capability")))
        .err()
        .expect("load must fail");
    assert!(matches!(err, LoadError::UnknownCapability(_)), "{err}");
}

#[test]
fn the_suite_has_at_least_twenty_cases() {
    let plugins =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile/plugins"))
            .unwrap()
            .count();
    assert!(plugins >= 20, "{plugins}");
}

/// A granted read-only folder `ro` with `hello.txt`, next to a `secret.txt` that is
/// not granted, and a symlink inside `ro` pointing out of it.
fn fs_fixture() -> (PathBuf, Granted) {
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fs-fixture-{}", std::process::id()));
    let ro = base.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("hello.txt"), "hi from a granted folder").unwrap();
    std::fs::write(base.join("secret.txt"), "TOP-SECRET").unwrap();
    let link = ro.join("out");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("..", &link).unwrap();
    let grants = vec![runner::playbook::model::FsGrant {
        path: "ro".into(),
        access: runner::playbook::model::FsAccess::Ro,
    }];
    let granted = Granted {
        fs: runner::caps::fs::FsGrant::from_playbook(&base, &grants),
        ..granted(&[])
    };
    (base, granted)
}

#[test]
fn a_granted_folder_can_be_read() {
    let (_, g) = fs_fixture();
    let r = run_with(
        "dotdot-escape",
        json!({ "path": "ro/hello.txt" }),
        limits(2_000, 64),
        g,
    );
    let out = r.outcome.expect("reading a granted file works");
    assert_eq!(out.outputs["content"], "hi from a granted folder");
}

#[test]
fn dotdot_does_not_leave_a_granted_folder() {
    let (_, g) = fs_fixture();
    let f = failure(run_with(
        "dotdot-escape",
        json!({ "path": "ro/../secret.txt" }),
        limits(2_000, 64),
        g,
    ));
    assert!(!f.to_string().contains("TOP-SECRET"), "{f}");
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
}

#[test]
fn a_symlink_in_a_granted_folder_does_not_lead_out() {
    let (_, g) = fs_fixture();
    let f = failure(run_with(
        "dotdot-escape",
        json!({ "path": "ro/out/secret.txt" }),
        limits(2_000, 64),
        g,
    ));
    assert!(!f.to_string().contains("TOP-SECRET"), "{f}");
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
}

#[test]
fn a_read_only_grant_cannot_be_written() {
    let (base, g) = fs_fixture();
    let f = failure(run_with(
        "symlink-escape",
        json!({ "target": "/etc", "path": "ro/planted" }),
        limits(2_000, 64),
        g,
    ));
    assert!(matches!(f, StepFailure::Failed(_)), "{f:?}");
    assert!(
        std::fs::symlink_metadata(base.join("ro/planted")).is_err(),
        "a link was planted in a read-only grant"
    );
}

#[test]
fn a_missing_granted_folder_fails_the_step_before_it_starts() {
    let grants = vec![runner::playbook::model::FsGrant {
        path: "nope".into(),
        access: runner::playbook::model::FsAccess::Ro,
    }];
    let g = Granted {
        fs: runner::caps::fs::FsGrant::from_playbook(Path::new("/definitely/not/here"), &grants),
        ..granted(&[])
    };
    let f = failure(run_with(
        "dotdot-escape",
        json!({ "path": "nope/x" }),
        limits(2_000, 64),
        g,
    ));
    assert!(
        matches!(&f, StepFailure::Failed(m) if m.starts_with("granted folder `nope`")),
        "{f:?}"
    );
}

#[test]
fn a_granted_program_with_forbidden_arguments_is_denied() {
    let g = Granted {
        process: runner::caps::process::ProcessGrant::new(&["sh -c exit*".into()]),
        ..granted(&[])
    };
    let f = failure(run_with(
        "exec-ungranted",
        json!({ "program": "sh", "args": ["-c", "id"] }),
        limits(2_000, 64),
        g,
    ));
    assert!(
        matches!(&f, StepFailure::Denied(m) if m.starts_with("arguments [\"-c\", \"id\"] of `sh` are not granted to plugin `hostile` (granted: `sh -c exit*`)")),
        "{f:?}"
    );
}
