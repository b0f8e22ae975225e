//! Registry credentials from the Docker config, the file `docker login`,
//! `podman login --compat-auth-file`, `oras login` and CI actions write:
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, entry
//! `auths.<registry>.auth` (base64 of `user:password`).
//!
//! Threat model: the password must never leave the runner except in the
//! `Authorization` header to the registry it belongs to. It never enters a
//! plugin's sandbox (nothing in `host::state` sees it), is never printed,
//! logged, journaled or put in a report: [`Credential`] prints as
//! `user (from FILE)`, and every error text that came back from a registry is
//! passed through [`Credential::redact`] before anyone sees it. Credential
//! helpers (`credsStore`, `credHelpers`) are programs: the runner does not run
//! them, and says so when one is configured for the registry it needs.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// A user and password for one registry, and the file they came from.
#[derive(Clone)]
pub struct Credential {
    pub user: String,
    password: String,
    /// The `auth` value as written in the file, redacted as well.
    encoded: String,
    pub source: PathBuf,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user `{}` (from {})", self.user, self.source.display())
    }
}

impl Credential {
    /// What the OCI client sends.
    pub fn auth(&self) -> oci_client::secrets::RegistryAuth {
        oci_client::secrets::RegistryAuth::Basic(self.user.clone(), self.password.clone())
    }

    /// `text` without the password or its encoded form.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in [&self.encoded, &self.password] {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "[REDACTED]");
            }
        }
        out
    }
}

/// What the Docker config says about a registry.
#[derive(Debug)]
pub enum Lookup {
    Found(Credential),
    /// No entry: the registry is used anonymously. `helper` names a credential
    /// helper the file configures for it, which the runner does not run.
    None {
        file: Option<PathBuf>,
        helper: Option<String>,
    },
}

/// The Docker config file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials for `registry` (`host[:port]`) from [`config_path`].
pub fn lookup(registry: &str) -> Result<Lookup, String> {
    match config_path() {
        Some(path) => lookup_in(&path, registry),
        None => Ok(Lookup::None {
            file: None,
            helper: None,
        }),
    }
}

/// The credentials for `registry` from the Docker config at `path`; a missing
/// file means none. The error never quotes a value of the file.
pub fn lookup_in(path: &Path, registry: &str) -> Result<Lookup, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Lookup::None {
                file: None,
                helper: None,
            });
        }
        Err(e) => {
            return Err(format!(
                "cannot read the Docker config {}: {e}; make it readable, or point DOCKER_CONFIG at the folder of another config.json",
                path.display()
            ));
        }
    };
    let config: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "the Docker config {} is not valid JSON (line {}, column {}); fix it or point DOCKER_CONFIG at another folder",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let wanted = normalize(registry);
    let entry = config
        .get("auths")
        .and_then(|a| a.as_object())
        .and_then(|auths| {
            auths
                .iter()
                .find(|(key, _)| normalize(key) == wanted)
                .map(|(key, value)| (key.clone(), value))
        });
    if let Some((key, value)) = entry {
        let encoded = value.get("auth").and_then(|v| v.as_str()).unwrap_or("");
        if !encoded.is_empty() {
            return decode(encoded, path, &key).map(Lookup::Found);
        }
        let user = value.get("username").and_then(|v| v.as_str());
        let password = value.get("password").and_then(|v| v.as_str());
        if let (Some(user), Some(password)) = (user, password) {
            return Ok(Lookup::Found(Credential {
                user: user.to_owned(),
                password: password.to_owned(),
                encoded: String::new(),
                source: path.to_owned(),
            }));
        }
    }
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(key, _)| normalize(key) == wanted)
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| config.get("credsStore").and_then(|s| s.as_str()))
        .map(|h| format!("docker-credential-{h}"));
    Ok(Lookup::None {
        file: Some(path.to_owned()),
        helper,
    })
}

/// Refuses a folder grant through which a plugin could read the registry
/// credentials: `folder` holds the Docker config `config`.
pub fn check_fs_grant(plugin: &str, folder: &Path, config: &Path) -> Result<(), String> {
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    if config.starts_with(&folder) {
        Err(format!(
            "plugin `{plugin}` is granted the folder `{}`, which holds the registry credentials `{}`; grant a narrower folder (the runner pulls plugins itself, plugins never see the Docker config)",
            folder.display(),
            config.display()
        ))
    } else {
        Ok(())
    }
}

fn decode(encoded: &str, path: &Path, key: &str) -> Result<Credential, String> {
    let bad = |why: &str| {
        format!(
            "the Docker config {} has an `auth` for `{key}` that is {why}; it must be the base64 of `user:password` (`docker login {key}` writes it)",
            path.display()
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("not base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 once decoded"))?;
    let Some((user, password)) = text.split_once(':') else {
        return Err(bad("without a `:` between user and password"));
    };
    Ok(Credential {
        user: user.to_owned(),
        password: password.to_owned(),
        encoded: encoded.trim().to_owned(),
        source: path.to_owned(),
    })
}

/// A registry key as `docker login` may have written it (`https://host/v1/`,
/// `host`), reduced to `host[:port]`; Docker Hub's names are one.
fn normalize(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn the_auth_of_the_registry_is_decoded() {
        // base64("alice:s3cret:with:colons")
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let (_d, path) = config(&format!(
            r#"{{"auths": {{"other.io": {{"auth": "eDp5"}}, "https://127.0.0.1:5000/v1/": {{"auth": "{auth}"}}}}}}"#
        ));
        let Lookup::Found(c) = lookup_in(&path, "127.0.0.1:5000").expect("ok") else {
            panic!("no credential");
        };
        assert_eq!(c.user, "alice");
        let shown = format!("{c} {c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains(&auth),
            "{shown}"
        );
        assert_eq!(
            c.redact(&format!("401 for s3cret:with:colons and {auth}")),
            "401 for [REDACTED] and [REDACTED]"
        );
    }

    #[test]
    fn no_entry_is_anonymous_and_a_helper_is_named() {
        let (_d, path) = config(r#"{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}"#);
        match lookup_in(&path, "ghcr.io").expect("ok") {
            Lookup::None { helper, .. } => {
                assert_eq!(helper.as_deref(), Some("docker-credential-desktop"))
            }
            Lookup::Found(_) => panic!("found"),
        }
        let missing = path.with_file_name("absent.json");
        assert!(matches!(
            lookup_in(&missing, "ghcr.io"),
            Ok(Lookup::None { file: None, .. })
        ));
    }

    #[test]
    fn a_broken_file_is_an_error_that_quotes_no_value() {
        let (_d, path) = config(r#"{"auths": {"ghcr.io": {"auth": "!!notbase64-s3cret"}}}"#);
        let e = lookup_in(&path, "ghcr.io").expect_err("bad auth");
        assert!(e.contains("not base64") && !e.contains("s3cret"), "{e}");
        let (_d2, path) = config("{ not json");
        assert!(
            lookup_in(&path, "ghcr.io")
                .expect_err("bad json")
                .contains("not valid JSON")
        );
    }

    #[test]
    fn a_folder_grant_holding_the_docker_config_is_refused() {
        let (dir, path) = config("{}");
        let e = check_fs_grant("p", dir.path(), &path).expect_err("holds it");
        assert!(e.contains("registry credentials"), "{e}");
        let other = tempfile::tempdir().expect("temp dir");
        assert!(check_fs_grant("p", other.path(), &path).is_ok());
    }

    #[test]
    fn docker_hub_keys_are_one_registry() {
        assert_eq!(normalize("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize("GHCR.io"), "ghcr.io");
    }
}
