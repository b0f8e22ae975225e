//! Who calls: API tokens, their principals and roles.
//!
//! A token is 32 random bytes shown once (`runner token add`), as
//! `rnr_` + base64url. The token file keeps only its SHA-256, with the
//! principal's name and roles: whoever reads the file cannot call the API with
//! it. A plain hash is enough for 256 random bits (a slow password hash only
//! helps guessable secrets). Lookups go by the hash, so the time a lookup takes
//! says nothing about how close a guess was.
//!
//! The file is read at start; the server reads it again on SIGHUP, so a token
//! is revoked by deleting its line and signalling the server.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::identity::{Principal, Source};

/// The prefix of every token: a scanner of leaked secrets can spot it.
pub const PREFIX: &str = "rnr_";

/// One principal, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub roles: Vec<String>,
    /// How they were authenticated.
    pub source: Source,
}

impl Caller {
    pub fn principal(&self) -> Principal {
        Principal::named(&self.name, self.source)
    }

    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_any(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.has(r))
    }
}

/// One line of the token file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub principal: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The token's SHA-256, hex.
    pub sha256: String,
    /// When it was made (RFC 3339), for whoever reviews the file.
    #[serde(default)]
    pub created: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

/// The tokens the server takes.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], usize>,
    entries: Vec<Entry>,
}

impl Tokens {
    /// Reads the token file; a missing file is an error (a server nobody can
    /// call is a mistake), an empty one is not.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the token file `{}`: {e}; create tokens with: runner token add --tokens {} --principal NAME --role ROLE",
                path.display(),
                path.display()
            )
        })?;
        let file = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tokens = Tokens::default();
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let hash = decode_hex(&entry.sha256).ok_or_else(|| {
                format!(
                    "{}: token {} (principal `{}`): sha256 must be 64 hexadecimal digits",
                    path.display(),
                    i + 1,
                    entry.principal
                )
            })?;
            if entry.principal.trim().is_empty() {
                return Err(format!(
                    "{}: token {} has no principal",
                    path.display(),
                    i + 1
                ));
            }
            tokens.by_hash.insert(hash, tokens.entries.len());
            tokens.entries.push(entry);
        }
        Ok(tokens)
    }

    /// The caller a bearer token authenticates.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        if !token.starts_with(PREFIX) {
            return None;
        }
        self.by_hash(&sha256(token.as_bytes()), Source::Token)
    }

    /// The caller whose token has SHA-256 `hash`, if the file still holds it
    /// (a web session keeps only the hash; a revoked token ends it).
    pub fn by_hash(&self, hash: &[u8; 32], source: Source) -> Option<Caller> {
        let entry = &self.entries[*self.by_hash.get(hash)?];
        Some(Caller {
            name: entry.principal.clone(),
            roles: self.roles_of(&entry.principal),
            source,
        })
    }

    /// The roles of principal `name`: every token of theirs counts (a
    /// principal met through Slack or a link has the roles their tokens give).
    pub fn roles_of(&self, name: &str) -> Vec<String> {
        let mut roles: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.principal == name)
            .flat_map(|e| e.roles.iter().cloned())
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// Whether the file names principal `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.principal == name)
    }
}

fn parse(text: &str) -> Result<File, String> {
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    let tree = crate::playbook::yaml::parse(text)
        .map_err(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))?;
    serde_json::from_value(tree.to_json()).map_err(|e| format!("not a token file: {e}"))
}

/// Makes a token for `principal` with `roles`, adds its hash to the file at
/// `path` (created private to its owner when missing) and returns the token.
pub fn add(
    path: &Path,
    principal: &str,
    roles: &[String],
    note: Option<&str>,
) -> Result<String, String> {
    let principal = crate::identity::Principal::named(principal, Source::Token).name;
    if principal.is_empty() {
        return Err("a token needs a principal name (--principal NAME)".to_owned());
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system's random source failed".to_owned())?;
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    file.tokens.push(Entry {
        principal,
        roles: roles.to_vec(),
        sha256: hex(&sha256(token.as_bytes())),
        created: Some(crate::clock::rfc3339(std::time::SystemTime::now())),
        note: note.map(str::to_owned),
    });
    let text = format!(
        "# API tokens of `runner serve`: only their SHA-256 is kept. Add with `runner token add`;\n# revoke by deleting an entry and sending SIGHUP to the server.\n{}",
        serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?
    );
    write_private(path, &text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(token)
}

/// Writes `text` to `path` through a file next to it, readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokens")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir.unwrap_or(Path::new(".")))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    let _ = std::fs::OpenOptions::new().mode(0o600).open(path);
    Ok(())
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    crate::host::cache::hex(bytes)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_added_authenticates_and_its_file_keeps_only_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let token = add(&path, "alice", &["tech-lead".into()], Some("laptop")).unwrap();
        let bob = add(&path, "bob", &["operator".into()], None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[PREFIX.len()..]));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
        let tokens = Tokens::load(&path).unwrap();
        let alice = tokens.caller(&token).unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.roles, vec!["tech-lead".to_owned()]);
        assert_eq!(tokens.caller(&bob).unwrap().name, "bob");
        // A token one character off, without its prefix, or empty: nobody.
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(tokens.caller(&wrong), None);
        assert_eq!(tokens.caller(&token[PREFIX.len()..]), None);
        assert_eq!(tokens.caller(""), None);
    }

    #[test]
    fn a_damaged_token_file_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, "tokens:\n  - principal: a\n    sha256: xyz\n").unwrap();
        let e = Tokens::load(&path).unwrap_err();
        assert!(e.contains("64 hexadecimal digits"), "{e}");
        std::fs::write(&path, "tokens:\n  - principal: a\n    sha: 1\n").unwrap();
        let e = Tokens::load(&path).unwrap_err();
        assert!(e.contains("unknown field `sha`"), "{e}");
        let e = Tokens::load(&dir.path().join("none.yaml")).unwrap_err();
        assert!(e.contains("runner token add"), "{e}");
    }
}
