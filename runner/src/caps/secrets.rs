//! Where secret values come from.
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
//! `RUNNER_SECRETS_FILE` (lines `NAME=value`, `#` comments, blank lines), then an
//! environment variable of the same name.

use std::collections::BTreeMap;
use std::path::Path;

/// Secret values available to this run.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    file: BTreeMap<String, String>,
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
            file.insert(name.trim().to_owned(), value.to_owned());
        }
        Ok(SecretSource { file })
    }

    /// The value of secret `name`, if any source has it.
    pub fn get(&self, name: &str) -> Option<String> {
        self.file
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
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
        assert_eq!(s.get("TOKEN").as_deref(), Some("from-file=with-equals"));
        assert_eq!(s.get("PATH"), std::env::var("PATH").ok());
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
}
