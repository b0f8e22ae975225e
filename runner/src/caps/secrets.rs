//! The `secrets` capability: the names a plugin may read ([`Secrets`]), and
//! where their values come from.
//!
//! Threat model: secret values must reach only the plugins they are granted to,
//! and never a log, output, journal or report (redaction is `host::redact`). Here
//! the concern is the source: a secrets file readable by other users of the
//! machine leaks by itself, so it is refused unless only its owner can read it.
//!
//! The user's trust decision: a secret granted to a plugin is handed to it in
//! clear. Redaction guards against a plugin that prints or returns it by mistake
//! (and against the forms `host::redact` lists), not against a hostile plugin
//! holding it: such a plugin can encode or split it before returning it, or send
//! it wherever its other grants reach. Grant a secret only to a plugin trusted
//! with it, and with no more `http`/`tcp` reach than the secret is meant for.
//!
//! Sources, first match wins: the file named by `--secrets FILE` or
//! `RUNNER_SECRETS_FILE` (lines `NAME=value`, `#` comments, blank lines), then
//! the environment file's `secrets:` references, then an environment variable
//! of the same name.
//!
//! A value in the secrets file, or an entry of the environment file, may be a
//! reference to a key of a Kubernetes Secret, `k8s://NAMESPACE/SECRET#KEY`: the
//! runner reads it through the cluster connection it already has (the run's
//! kubeconfig context), before the first step, with the runner's own identity.
//! The value is then handled as any other secret (handed only to the plugins
//! granted it, redacted everywhere); the reference itself is not secret. A
//! Secret the runner's identity may not read is refused by the API server, and
//! the run does not start. An environment file holds references only: it is
//! not kept private as the secrets file is.

use std::collections::BTreeMap;
use std::path::Path;

use super::capability::{self, Attempt, Capability, ConfigureContext, GrantEntry, Parsed};

/// The `secrets` capability: entries are names (letters, digits and `_`, not
/// starting with a digit). Configured into the names granted; the host reads
/// their values from the run's [`SecretSource`] before the first step (a
/// Kubernetes Secret needs the run's cluster) and answers each call from them,
/// so an attempt prepares nothing.
pub struct Secrets;

impl Capability for Secrets {
    const KIND: &'static str = "secrets";
    type Written = String;
    type Entry = String;
    type Grant = Vec<String>;
    type Prepared = ();

    fn parse(name: &String) -> Parsed<String> {
        let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Parsed::ok(name.clone())
        } else {
            Parsed::refused(format!(
                "`{name}` is not a secret name; use letters, digits and `_` (like `SLACK_WEBHOOK`)"
            ))
        }
    }

    fn configure(entries: &[GrantEntry<Secrets>], _: &ConfigureContext<'_>) -> Vec<String> {
        capability::parsed(entries).cloned().collect()
    }

    fn prepare(_: &Vec<String>, _: &mut Attempt<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// Where a secret's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The value itself.
    Value(String),
    /// A key of a Kubernetes Secret, read when the run starts.
    Kube(KubeRef),
}

/// `k8s://NAMESPACE/SECRET#KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRef {
    pub namespace: String,
    pub secret: String,
    pub key: String,
}

impl std::fmt::Display for KubeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k8s://{}/{}#{}", self.namespace, self.secret, self.key)
    }
}

/// The scheme of a reference.
pub const KUBE_SCHEME: &str = "k8s://";

impl KubeRef {
    /// Parses `k8s://NAMESPACE/SECRET#KEY`; `Ok(None)` for a text that is not a
    /// reference. Namespace and Secret are Kubernetes names (RFC 1123), the key
    /// a Secret data key (letters, digits, `-`, `_`, `.`).
    pub fn parse(text: &str) -> Result<Option<KubeRef>, String> {
        let Some(rest) = text.trim().strip_prefix(KUBE_SCHEME) else {
            return Ok(None);
        };
        let usage = "write k8s://NAMESPACE/SECRET#KEY";
        let (path, key) = rest
            .split_once('#')
            .ok_or_else(|| format!("a Kubernetes secret reference names a key; {usage}"))?;
        let (namespace, secret) = path
            .split_once('/')
            .ok_or_else(|| format!("a Kubernetes secret reference names a namespace; {usage}"))?;
        let dns = |what: &str, s: &str, max: usize| {
            let ok = !s.is_empty()
                && s.len() <= max
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "`{s}` is not a Kubernetes {what} name (lower-case letters, digits, `-`); {usage}"
                ))
            }
        };
        dns("namespace", namespace, 63)?;
        if namespace.contains('.') {
            return Err(format!(
                "`{namespace}` is not a namespace name (no dots); {usage}"
            ));
        }
        dns("Secret", secret, 253)?;
        if key.is_empty()
            || key.len() > 253
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "`{key}` is not a Secret key (letters, digits, `-`, `_`, `.`); {usage}"
            ));
        }
        Ok(Some(KubeRef {
            namespace: namespace.to_owned(),
            secret: secret.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Reads the value through `cluster`, with the runner's identity there.
    pub async fn read(&self, cluster: &super::kube::Cluster) -> Result<String, String> {
        use base64::Engine as _;
        let call = super::kube::Call {
            method: http::Method::GET,
            uri: format!(
                "/api/v1/namespaces/{}/secrets/{}",
                self.namespace, self.secret
            ),
            body: None,
            content_type: None,
            watch: None,
        };
        let response = cluster
            .send(&call)
            .await
            .map_err(|e| format!("cannot read {self}: {e}"))?;
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap_or_default();
        // The API server's own words, which never hold the Secret's data.
        let said = body["message"].as_str().unwrap_or("").to_owned();
        match response.status {
            200 => {}
            401 | 403 => {
                return Err(format!(
                    "denied: the runner's Kubernetes identity may not read {self} ({said}); bind it a Role with `get` on secrets `{}` in `{}`, or use another context",
                    self.secret, self.namespace
                ));
            }
            404 => {
                return Err(format!(
                    "{self}: there is no Secret `{}` in namespace `{}`",
                    self.secret, self.namespace
                ));
            }
            code => {
                return Err(format!(
                    "cannot read {self}: the API server answered {code} ({said})"
                ));
            }
        }
        let encoded = body["data"][&self.key].as_str().ok_or_else(|| {
            let keys: Vec<&str> = body["data"]
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            format!(
                "{self}: the Secret has no key `{}` (its keys: {})",
                self.key,
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            )
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("{self}: the Secret's value is not valid base64"))?;
        String::from_utf8(bytes).map_err(|_| {
            format!("{self}: the value is not UTF-8 text; a secret is handed to plugins as text")
        })
    }
}

/// Secret values available to this run.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    file: BTreeMap<String, Entry>,
    references: BTreeMap<String, KubeRef>,
}

impl SecretSource {
    /// Values from the environment only.
    pub fn environment() -> SecretSource {
        SecretSource::default()
    }

    /// Values from `path`, then the environment. Refuses a file others can read.
    pub fn with_file(path: &Path) -> Result<SecretSource, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("secrets file `{shown}`: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "secrets file `{shown}` can be read by other users (mode {:o}); run `chmod 600 {shown}`",
                meta.permissions().mode() & 0o777
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("secrets file `{shown}`: {e}"))?;
        let mut file = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                // The line is not shown: it may be a secret pasted without its name.
                return Err(format!(
                    "secrets file `{shown}`, line {}: expected NAME=value",
                    n + 1
                ));
            };
            let entry = match KubeRef::parse(value) {
                Ok(Some(r)) => Entry::Kube(r),
                Ok(None) => Entry::Value(value.to_owned()),
                Err(e) => return Err(format!("secrets file `{shown}`, line {}: {e}", n + 1)),
            };
            file.insert(name.trim().to_owned(), entry);
        }
        Ok(SecretSource {
            file,
            references: BTreeMap::new(),
        })
    }

    /// Adds the environment file's `secrets:` entries, each a reference
    /// (`k8s://…`); the secrets file wins over them. `file` names the
    /// environment file in errors.
    pub fn with_references(
        mut self,
        file: &Path,
        entries: &BTreeMap<String, String>,
    ) -> Result<SecretSource, String> {
        for (name, text) in entries {
            match KubeRef::parse(text) {
                Ok(Some(r)) => {
                    self.references.insert(name.clone(), r);
                }
                // The text is not shown: it may be a value pasted by mistake.
                Ok(None) => {
                    return Err(format!(
                        "{}: secret `{name}` is not a reference; an environment file holds no secret values (it is not kept private): reference a Kubernetes Secret (k8s://NAMESPACE/SECRET#KEY) or put the value in the secrets file",
                        file.display()
                    ));
                }
                Err(e) => return Err(format!("{}: secret `{name}`: {e}", file.display())),
            }
        }
        Ok(self)
    }

    /// Where secret `name` is, if any source has it.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.file
            .get(name)
            .cloned()
            .or_else(|| self.references.get(name).cloned().map(Entry::Kube))
            .or_else(|| std::env::var(name).ok().map(Entry::Value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(text: &str, mode: u32) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "runner-secrets-{}-{mode:o}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn the_file_comes_first_then_the_environment() {
        let p = file("# comment\nTOKEN=from-file=with-equals\n\n", 0o600);
        let s = SecretSource::with_file(&p).unwrap();
        assert_eq!(
            s.get("TOKEN"),
            Some(Entry::Value("from-file=with-equals".into()))
        );
        assert_eq!(s.get("PATH"), std::env::var("PATH").ok().map(Entry::Value));
        assert_eq!(s.get("RUNNER_NO_SUCH_SECRET_X"), None);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let p = file("TOKEN=x\n", 0o644);
        let e = SecretSource::with_file(&p).unwrap_err();
        assert!(e.contains("can be read by other users (mode 644)"), "{e}");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn a_malformed_line_is_reported_without_its_content() {
        let p = file("hunter2\n", 0o600);
        let e = SecretSource::with_file(&p).unwrap_err();
        assert!(e.ends_with("line 1: expected NAME=value"), "{e}");
        assert!(!e.contains("hunter2"));
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn kubernetes_references_are_checked_where_they_are_written() {
        let r = KubeRef::parse("k8s://payments/db-credentials#password")
            .unwrap()
            .unwrap();
        assert_eq!(r.to_string(), "k8s://payments/db-credentials#password");
        assert_eq!(KubeRef::parse("hunter2").unwrap(), None);
        for (bad, says) in [
            ("k8s://payments/db", "names a key"),
            ("k8s://payments#password", "names a namespace"),
            (
                "k8s://Payments/db#password",
                "not a Kubernetes namespace name",
            ),
            ("k8s://a.b/db#password", "no dots"),
            (
                "k8s://payments/db/x#password",
                "not a Kubernetes Secret name",
            ),
            ("k8s://payments/db#pass word", "not a Secret key"),
        ] {
            let e = KubeRef::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let p = file("DB=k8s://payments/db#password\nBAD=k8s://payments\n", 0o600);
        let e = SecretSource::with_file(&p).unwrap_err();
        assert!(
            e.contains("line 2: a Kubernetes secret reference names a key"),
            "{e}"
        );
        let _ = std::fs::remove_file(p);
        let env = std::path::Path::new("env.yaml");
        let literal = BTreeMap::from([("DB".to_owned(), "hunter2".to_owned())]);
        let e = SecretSource::default()
            .with_references(env, &literal)
            .unwrap_err();
        assert!(
            e.contains("holds no secret values") && !e.contains("hunter2"),
            "{e}"
        );
        let reference = BTreeMap::from([(
            "DB".to_owned(),
            "k8s://payments/db-credentials#password".to_owned(),
        )]);
        let s = SecretSource::default()
            .with_references(env, &reference)
            .unwrap();
        assert_eq!(s.get("DB"), Some(Entry::Kube(r)));
    }

    #[test]
    fn the_capability_grants_well_formed_names() {
        assert_eq!(Secrets::KIND, "secrets");
        for ok in ["SLACK_WEBHOOK", "_x", "a1"] {
            assert_eq!(Secrets::parse(&ok.to_owned()), Parsed::ok(ok.to_owned()));
        }
        for bad in ["slack-webhook", "1X", "", "A B"] {
            let p = Secrets::parse(&bad.to_owned());
            assert_eq!(p.entry, None, "{bad}");
            assert_eq!(
                p.problems[0].message,
                format!(
                    "`{bad}` is not a secret name; use letters, digits and `_` (like `SLACK_WEBHOOK`)"
                )
            );
        }
        let entries: Vec<GrantEntry<Secrets>> = ["A", "b-c", "D"]
            .into_iter()
            .map(|n| GrantEntry::new(n.to_owned()))
            .collect();
        assert_eq!(
            Secrets::configure(&entries, &ConfigureContext::default()),
            ["A", "D"]
        );
    }
}
