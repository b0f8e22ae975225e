//! `runner serve` started from the real binary on 127.0.0.1 for a test, with
//! its catalog and tokens, and plain HTTP/1.1 calls to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub tokens: std::collections::HashMap<String, String>,
}

impl Server {
    /// A server of catalog `playbooks` (name, text), with tokens for alice
    /// (operator, tech-lead), bob (tech-lead), carol (viewer), am
    /// (alertmanager) and dave (operator).
    pub fn start_with(
        name: &str,
        playbooks: &[(&str, &str)],
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = super::scratch(&format!("serve-{name}"));
        let books = dir.join("playbooks");
        std::fs::create_dir_all(&books).unwrap();
        for (n, text) in playbooks {
            std::fs::write(books.join(format!("{n}.yaml")), text).unwrap();
        }
        let config = dir.join("serve.yaml");
        std::fs::write(
            &config,
            format!(
                "catalog:\n  playbooks: playbooks\ntokens: tokens.yaml\npublic_url: http://runner.test\n{extra_config}"
            ),
        )
        .unwrap();
        let mut tokens = std::collections::HashMap::new();
        for (who, roles) in [
            ("alice", &["operator", "tech-lead"][..]),
            ("bob", &["tech-lead"][..]),
            ("carol", &["viewer"][..]),
            ("am", &["alertmanager"][..]),
            ("dave", &["operator"][..]),
        ] {
            tokens.insert(
                who.to_owned(),
                add_token(&dir.join("tokens.yaml"), who, roles),
            );
        }
        Server::spawn(dir, &config, tokens, env)
    }

    pub fn spawn(
        dir: PathBuf,
        config: &Path,
        tokens: std::collections::HashMap<String, String>,
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn_with(dir, config, tokens, env, &[])
    }

    pub fn spawn_with(
        dir: PathBuf,
        config: &Path,
        tokens: std::collections::HashMap<String, String>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(args)
            .env("RUNNER_STATE_DIR", dir.join("state"))
            .env(
                "RUNNER_CACHE_DIR",
                std::env::temp_dir().join("runner-test-cache"),
            )
            .env_remove("RUNNER_DATABASE_URL")
            .env_remove("RUNNER_JOURNAL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("runner serve: listening on http://")
            .or_else(|| {
                line.trim()
                    .strip_prefix("runner serve: listening on https://")
            })
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server {
            child,
            addr,
            dir,
            tokens,
        }
    }

    pub fn token(&self, who: &str) -> &str {
        &self.tokens[who]
    }

    pub fn call(&self, method: &str, path: &str, who: Option<&str>, body: Option<&Value>) -> Reply {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(
            method,
            path,
            who.map(|w| self.token(w)),
            &[],
            body.as_deref(),
        )
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            // JSON unless the caller named the body's type.
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req.push_str("Content-Type: application/json\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        // The server may answer (413) before it read a huge body.
        let _ = s.write_all(&bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Reply::parse(&out)
    }

    pub fn wait_for(&self, id: &str, what: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let r = self.call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None);
            if r.status == 200 && what(&r.json()) {
                return r.json();
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never got there: {}",
                r.body
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Not a process reaped already (its pid may belong to another by now).
        if let Ok(None) = self.child.try_wait() {
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}

pub fn add_token(file: &Path, who: &str, roles: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(["token", "add", "--tokens"])
        .arg(file)
        .args(["--principal", who]);
    for r in roles {
        cmd.args(["--role", r]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        Reply {
            status,
            headers: head.to_owned(),
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
