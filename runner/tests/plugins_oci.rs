//! Plugins from an OCI registry, end to end: the real `runner` binary against a
//! real registry (Debian's `docker-registry`, the CNCF distribution 2.8 server;
//! `.ci/run` installs it), started by each test on a free loopback port with
//! its own storage folder and stopped after it. One registry is anonymous, one
//! wants basic auth (an htpasswd file with a bcrypt hash made here).
//!
//! Tampering is done the way a compromised registry would: by changing the
//! stored bytes under their digest in the registry's storage folder, which the
//! registry then serves as they are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

mod common;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A `docker-registry serve` on 127.0.0.1, killed when dropped.
struct Registry {
    child: Option<Child>,
    port: u16,
    storage: PathBuf,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: runner-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n{auth}http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("run `docker-registry` (Debian: apt-get install docker-registry; .ci/run installs it)");
        let registry = Registry {
            child: Some(child),
            port,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.get("/v2/", "").is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not answer on port {port}: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain HTTP GET, for checks independent of the runner: status line
    /// and body.
    fn get(&self, path: &str, accept: &str) -> Option<(String, Vec<u8>)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        Some((
            head.lines().next().unwrap_or("").to_owned(),
            raw[split + 4..].to_vec(),
        ))
    }

    /// The file in which the registry keeps the blob `digest`.
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `echo` built-in's component, as a file to push.
fn echo_wasm(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = runner::host::builtin("echo")
        .and_then(|b| b.wasm)
        .expect("echo is built in")
        .to_vec();
    let path = dir.join("echo.wasm");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// The runner with a private cache, state and Docker config under `dir`.
fn runner(dir: &Path, cache: &str, args: &[&str]) -> Output {
    runner_env(dir, cache, args, &[])
}

fn runner_env(dir: &Path, cache: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .env("RUNNER_CACHE_DIR", dir.join(cache))
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env_remove("RUNNER_LOG")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The value after `key: ` in the output of push or pull.
fn field(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}:` in {stdout}"))
        .to_owned()
}

/// Pushes echo to `reference`; the digest printed.
fn push(dir: &Path, reference: &str) -> String {
    let (file, _) = echo_wasm(dir);
    let out = runner(
        dir,
        "cache-push",
        &["plugins", "push", file.to_str().unwrap(), reference],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "push: {stdout}{stderr}");
    field(&stdout, "digest")
}

fn playbook(dir: &Path, uses: &str) -> PathBuf {
    let file = dir.join("oci.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
name: oci
plugins:
  echo: {{ uses: \"{uses}\" }}
stages:
  - id: greet
    steps:
      - id: hello
        uses: echo
        with: {{ message: hi from the registry, outputs: {{ ok: true }} }}
"
        ),
    )
    .unwrap();
    file
}

/// `runner exec` with JSON events; exit code, the step results and stderr.
fn exec(dir: &Path, cache: &str, file: &Path) -> (i32, Vec<serde_json::Value>, String) {
    let out = runner(
        dir,
        cache,
        &["exec", file.to_str().unwrap(), "--output", "json"],
    );
    let (stdout, stderr) = text(&out);
    let steps = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_finished")
        .collect();
    (out.status.code().unwrap_or(-1), steps, stderr)
}

#[test]
fn push_then_pull_round_trips_the_component_and_prints_its_digest() {
    let dir = common::scratch("oci-roundtrip");
    let registry = Registry::start(&dir, None);
    let (file, wasm) = echo_wasm(&dir);
    let reference = format!("oci://{}/plugins/echo:1.0", registry.host());

    let out = runner(
        &dir,
        "cache-push",
        &["plugins", "push", file.to_str().unwrap(), &reference],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let digest = field(&stdout, "digest");
    assert_eq!(field(&stdout, "uses"), format!("{reference}@{digest}"));

    // What the registry holds, read without the runner: the Wasm OCI artifact
    // layout, under the digest the push printed.
    let (status, manifest) = registry
        .get(
            "/v2/plugins/echo/manifests/1.0",
            "application/vnd.oci.image.manifest.v1+json",
        )
        .expect("manifest");
    assert!(status.contains("200"), "{status}");
    assert_eq!(sha256(&manifest), digest);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(m["layers"][0]["digest"], sha256(&wasm));
    let config_digest = m["config"]["digest"].as_str().unwrap();
    let (_, config) = registry
        .get(&format!("/v2/plugins/echo/blobs/{config_digest}"), "*/*")
        .expect("config");
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], sha256(&wasm));
    // The component's world, as wasmCloud and wkg describe it.
    assert_eq!(
        config["component"]["exports"],
        serde_json::json!(["describe", "run"])
    );
    assert!(
        config["component"]["imports"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("runner:plugin/log@0.1.0")),
        "{config}"
    );

    // Pull by tag (exploring): the same digest, the same bytes.
    let pulled = dir.join("pulled.wasm");
    let out = runner(
        &dir,
        "cache-pull",
        &[
            "plugins",
            "pull",
            &reference,
            "--output",
            pulled.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(field(&stdout, "digest"), digest);
    assert_eq!(field(&stdout, "uses"), format!("{reference}@{digest}"));
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        wasm,
        "the bytes pulled are the bytes pushed"
    );
    // And kept in the content-addressed store, under their digests.
    let store = dir.join("cache-pull/components/oci/sha256");
    assert_eq!(std::fs::read(store.join(&digest[7..])).unwrap(), manifest);
    assert_eq!(
        std::fs::read(store.join(&sha256(&wasm)[7..])).unwrap(),
        wasm
    );

    // Pull by digest gives the same.
    let out = runner(
        &dir,
        "cache-pull2",
        &["plugins", "pull", &format!("{reference}@{digest}")],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(field(&text(&out).0, "digest"), digest);

    // `plugins check` takes the reference too.
    let out = runner(&dir, "cache-check", &["plugins", "check", &reference]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let head = stdout.lines().next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("{reference}: WebAssembly component, "))
            && head.ends_with(&format!("sha256 {}", &sha256(&wasm)[7..])),
        "{stdout}"
    );
}

#[test]
fn a_plugin_pinned_by_digest_runs_and_runs_again_with_the_registry_down() {
    let dir = common::scratch("oci-run");
    let mut registry = Registry::start(&dir, None);
    let reference = format!("oci://{}/team/echo:2.0", registry.host());
    let digest = push(&dir, &reference);
    let file = playbook(&dir, &format!("{reference}@{digest}"));

    // `plan` shows the digest the run is pinned to.
    let out = runner(&dir, "cache", &["plan", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("echo = {reference} (oci, pinned to {digest})")),
        "{stdout}"
    );
    let out = runner(
        &dir,
        "cache",
        &["plan", file.to_str().unwrap(), "--output", "json"],
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["plugins"][0]["source"], "oci");
    assert_eq!(plan["plugins"][0]["digest"], digest.as_str());

    let (code, steps, stderr) = exec(&dir, "cache", &file);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["status"], "succeeded");
    assert_eq!(steps[0]["summary"], "hi from the registry");

    registry.stop();
    assert!(registry.get("/v2/", "").is_none(), "the registry is down");
    let (code, steps, stderr) = exec(&dir, "cache", &file);
    assert_eq!(code, 0, "offline, from the store: {stderr}");
    assert_eq!(steps[0]["status"], "succeeded");

    // Without the store the registry is needed, and its absence is said.
    let (code, steps, stderr) = exec(&dir, "empty-cache", &file);
    assert_eq!(code, 2, "{stderr}");
    assert!(steps.is_empty());
    assert!(
        stderr.contains(&format!("cannot reach registry `{}`", registry.host())),
        "{stderr}"
    );
}

#[test]
fn a_digest_mismatch_refuses_the_run_before_any_step_starts() {
    let dir = common::scratch("oci-mismatch");
    let registry = Registry::start(&dir, None);
    let reference = format!("oci://{}/plugins/echo:1.0", registry.host());
    let digest = push(&dir, &reference);
    let (_, wasm) = echo_wasm(&dir);
    let layer = sha256(&wasm);
    let file = playbook(&dir, &format!("{reference}@{digest}"));

    // The component's bytes changed in the registry, under the same digest.
    let blob = registry.blob(&layer);
    let mut tampered = std::fs::read(&blob).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&blob, &tampered).unwrap();
    let (code, steps, stderr) = exec(&dir, "cache-1", &file);
    assert_eq!(code, 2, "{stderr}");
    assert!(steps.is_empty(), "no step ran: {steps:?}");
    assert!(
        stderr.contains("the component layer of")
            && stderr.contains(&format!("expected {layer}, got {}", sha256(&tampered))),
        "{stderr}"
    );
    assert!(
        !dir.join("state/reports").exists(),
        "no run was started, so no report"
    );
    std::fs::write(&blob, &wasm).unwrap();

    // The manifest changed under its digest.
    let blob = registry.blob(&digest);
    let manifest = std::fs::read(&blob).unwrap();
    let mut tampered = b" ".to_vec();
    tampered.extend_from_slice(&manifest);
    std::fs::write(&blob, &tampered).unwrap();
    let (code, steps, stderr) = exec(&dir, "cache-2", &file);
    assert_eq!(code, 2, "{stderr}");
    assert!(steps.is_empty(), "no step ran: {steps:?}");
    assert!(
        stderr.contains("the manifest of")
            && stderr.contains(&format!("expected {digest}, got {}", sha256(&tampered))),
        "{stderr}"
    );
    assert!(
        !dir.join("cache-2/components/oci/sha256")
            .join(&digest[7..])
            .exists()
    );
    std::fs::write(&blob, &manifest).unwrap();

    // Restored, the same playbook runs.
    let (code, _, stderr) = exec(&dir, "cache-3", &file);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_oci_reference_without_a_digest_is_refused_by_validate_where_it_is() {
    let dir = common::scratch("oci-unpinned");
    let file = playbook(&dir, "oci://127.0.0.1:9/plugins/echo:1.0");
    let out = runner(&dir, "cache", &["validate", file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:17: `oci://127.0.0.1:9/plugins/echo:1.0` is not pinned by digest",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("`runner plugins pull oci://127.0.0.1:9/plugins/echo:1.0` prints it"),
        "{stderr}"
    );
    // `exec` refuses it the same way, before anything runs.
    let (code, steps, stderr) = exec(&dir, "cache", &file);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        steps.is_empty() && stderr.contains("is not pinned by digest"),
        "{stderr}"
    );
}

/// A registry that wants `alice` and a random password, and a Docker config
/// with that entry.
struct Guarded {
    registry: Registry,
    password: String,
    encoded: String,
}

fn guarded(dir: &Path) -> Guarded {
    let password = format!(
        "pw-{:x}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let password = format!(
        "{password}-{}",
        sha256(password.as_bytes())[7..23].to_owned()
    );
    let hash = bcrypt::hash_with_result(&password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let registry = Registry::start(dir, Some(&htpasswd));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    std::fs::create_dir_all(dir.join("docker")).unwrap();
    std::fs::write(
        dir.join("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    Guarded {
        registry,
        password,
        encoded,
    }
}

/// Every file under `dir`, read as bytes, that contains `needle`.
fn files_containing(dir: &Path, needle: &str, skip: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.starts_with(skip) {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn credentials_from_the_docker_config_are_used_and_never_shown() {
    let dir = common::scratch("oci-auth");
    let g = guarded(&dir);
    let reference = format!("oci://{}/private/echo:1.0", g.registry.host());
    // Anonymous access is refused by this registry: the credentials are needed.
    let (status, _) = g.registry.get("/v2/private/echo/tags/list", "*/*").unwrap();
    assert!(status.contains("401"), "{status}");

    let (file, _) = echo_wasm(&dir);
    let mut outputs = Vec::new();
    let out = runner(
        &dir,
        "cache-push",
        &["plugins", "push", file.to_str().unwrap(), &reference],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let digest = field(&text(&out).0, "digest");
    outputs.push(out);
    let out = runner(&dir, "cache-pull", &["plugins", "pull", &reference]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(field(&text(&out).0, "digest"), digest);
    outputs.push(out);
    // A run, with every log line the runner and its libraries write.
    let file = playbook(&dir, &format!("{reference}@{digest}"));
    let out = runner_env(
        &dir,
        "cache-run",
        &["exec", file.to_str().unwrap(), "--output", "json"],
        &[("RUNNER_LOG", "trace")],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("hi from the registry"));
    outputs.push(out);
    let out = runner(&dir, "cache-run", &["runs", "list"]);
    outputs.push(out);

    for out in &outputs {
        let (stdout, stderr) = text(out);
        for secret in [&g.password, &g.encoded] {
            assert!(
                !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
                "a credential was printed: {stdout}{stderr}"
            );
        }
    }
    // Not in the journal, the reports, the caches: only in the Docker config.
    for secret in [&g.password, &g.encoded] {
        let found = files_containing(&dir, secret, &dir.join("docker"));
        assert!(found.is_empty(), "a credential is in {found:?}");
    }
    assert!(dir.join("state/journal.sqlite").exists());
}

#[test]
fn wrong_or_missing_credentials_are_refused_with_what_to_do() {
    let dir = common::scratch("oci-denied");
    let g = guarded(&dir);
    let host = g.registry.host();
    let reference = format!("oci://{host}/private/echo:1.0");
    let (file, _) = echo_wasm(&dir);

    // A wrong password.
    let wrong = base64::engine::general_purpose::STANDARD.encode("alice:not-the-password");
    std::fs::write(
        dir.join("docker/config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{wrong}"}}}}}}"#),
    )
    .unwrap();
    let out = runner(
        &dir,
        "cache",
        &["plugins", "push", file.to_str().unwrap(), &reference],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let config = dir.join("docker/config.json");
    assert!(
        stderr.contains(&format!(
            "registry `{host}` refused user `alice` (from {}): the user or password is wrong",
            config.display()
        )) && stderr.contains(&format!("docker login {host}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password") && !stderr.contains(&wrong),
        "{stderr}"
    );

    // No entry at all: anonymous, refused, and said so.
    std::fs::write(&config, r#"{"auths": {}}"#).unwrap();
    let out = runner(&dir, "cache", &["plugins", "pull", &reference]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry `{host}` refused anonymous access: it wants credentials and {} has none for it",
            config.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&g.password), "{stderr}");
}
