//! `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`: what a playbook's `uses:`
//! and `runner plugins push|pull` name, parsed once, with no I/O.
//!
//! The registry is always written out. A Docker-style short name (`org/plugin`,
//! meaning Docker Hub) is refused: a playbook read at 3 a.m. must say which
//! registry it trusts. A run takes only references pinned by a manifest digest
//! (`@sha256:` and 64 lower-case hex digits): a tag can be moved by whoever can
//! push to the repository, a digest cannot. Tags alone are for exploration
//! (`runner plugins pull REF` prints the digest to pin).
//!
//! Why a top-level module and not `host::oci`, which fetches and pushes: the
//! playbook's checks parse `uses: oci://…` too, and `playbook` sits below
//! `host`. The grammar needs nothing of either; `host::oci` re-exports it.

use std::fmt;

/// The scheme a playbook's `uses:` starts with to name a registry.
pub const SCHEME: &str = "oci://";

/// A SHA-256 content digest, `sha256:` and 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:HEX`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Digest, String> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            return Err(format!(
                "`{text}` is not a sha256 digest: it must start with `sha256:`"
            ));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{text}` is not a sha256 digest: `sha256:` must be followed by 64 hex digits"
            ));
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "`{text}` has upper-case hex digits; write the digest in lower case, as `runner plugins pull` prints it"
            ));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest {
            hex: format!("{:x}", sha2::Sha256::digest(bytes)),
        }
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// `host[:port]`, as written.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl OciRef {
    /// Parses a reference with or without the `oci://` scheme.
    pub fn parse(text: &str) -> Result<OciRef, String> {
        let rest = text.strip_prefix(SCHEME).unwrap_or(text);
        if rest.is_empty() {
            return Err("the reference is empty; write `oci://REGISTRY/REPOSITORY:TAG`".into());
        }
        if rest.contains("://") {
            return Err(format!(
                "`{text}` has a second scheme; write `oci://REGISTRY/REPOSITORY:TAG`, without `https://`"
            ));
        }
        let (name_tag, digest) = match rest.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d)?)),
            None => (rest, None),
        };
        let Some((registry, path)) = name_tag.split_once('/') else {
            return Err(format!(
                "`{text}` names no repository; write `oci://REGISTRY/REPOSITORY:TAG` (for example `oci://ghcr.io/acme/health-check:1.2.0`)"
            ));
        };
        check_registry(registry, text)?;
        // The tag is after a `:` in the last path segment only (`host:5000/a/b:1`).
        let last = path.rsplit('/').next().unwrap_or(path);
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag)),
            None => (path, None),
        };
        check_repository(repository, text)?;
        if let Some(tag) = tag {
            check_tag(tag, text)?;
        }
        Ok(OciRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Whether the registry is on this machine: only those are reached over
    /// plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => self.registry.split(':').next().unwrap_or(&self.registry),
        };
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The same reference pinned to `digest` (the tag kept, for people).
    pub fn pinned(&self, digest: Digest) -> OciRef {
        OciRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Without the digest, as people name an artifact: `oci://host/repo:tag`.
    pub fn unpinned(&self) -> String {
        let mut s = format!("{SCHEME}{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        s
    }

    /// The reference as the OCI client takes it.
    pub fn client_reference(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                t.clone(),
                d.to_string(),
            ),
            (None, Some(d)) => {
                oci_client::Reference::with_digest(registry, repository, d.to_string())
            }
            (Some(t), None) => oci_client::Reference::with_tag(registry, repository, t.clone()),
            (None, None) => {
                oci_client::Reference::with_tag(registry, repository, "latest".to_owned())
            }
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unpinned())?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `host[:port]` where host is a name with a dot, `localhost`, an IPv4
/// address or a bracketed IPv6 address.
fn check_registry(registry: &str, text: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{registry}` in `{text}` is not a registry: {why}; write the registry's host (and port), for example `oci://ghcr.io/acme/plugin:1.0` or `oci://127.0.0.1:5000/plugin:1.0`"
        ))
    };
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad("an IPv6 address needs its closing `]`");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("the address in brackets is not an IPv6 address");
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return bad("only `:PORT` may follow the address"),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return bad("the port is not a number from 1 to 65535");
    }
    if registry.starts_with('[') {
        return Ok(());
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return bad("a host name has only letters, digits, `.` and `-`");
    }
    if !host.contains('.') && !host.eq_ignore_ascii_case("localhost") && port.is_none() {
        return bad(
            "it has no dot and no port, so it would be read as a Docker Hub repository; the registry must be named",
        );
    }
    Ok(())
}

/// Path components of lower-case letters and digits, separated by `.`, `_`,
/// `__` or `-` runs (the distribution spec's grammar, simplified the same way).
fn check_repository(repository: &str, text: &str) -> Result<(), String> {
    let ok = !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{repository}` in `{text}` is not a repository name: lower-case letters, digits, `.`, `_` and `-` between `/`, each part starting and ending with a letter or digit"
        ))
    }
}

/// At most 128 of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
fn check_tag(tag: &str, text: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` in `{text}` is not a tag: at most 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_full_reference_is_split_into_its_parts() {
        let r = OciRef::parse(&format!("oci://127.0.0.1:5000/team/echo:1.0@sha256:{HEX}"))
            .expect("valid");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/echo");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest.as_ref().map(Digest::hex), Some(HEX));
        assert!(r.is_loopback());
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/team/echo:1.0@sha256:{HEX}")
        );
        assert_eq!(r.unpinned(), "oci://127.0.0.1:5000/team/echo:1.0");
    }

    #[test]
    fn a_port_is_not_taken_for_a_tag() {
        let r = OciRef::parse("localhost:5000/echo").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag),
            ("localhost:5000", "echo", None)
        );
        let r = OciRef::parse("[::1]:5000/a/b:v2").expect("valid");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert!(r.is_loopback());
    }

    #[test]
    fn only_loopback_registries_are_loopback() {
        for (text, loopback) in [
            ("oci://ghcr.io/a/b:1", false),
            ("oci://localhost/a:1", true),
            ("oci://127.0.0.2:80/a:1", true),
            ("oci://10.0.0.1:5000/a:1", false),
            ("oci://localhost.example.com/a:1", false),
        ] {
            assert_eq!(
                OciRef::parse(text).expect(text).is_loopback(),
                loopback,
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for (text, says) in [
            ("oci://", "empty"),
            ("oci://ghcr.io", "names no repository"),
            ("oci://acme/plugin:1", "would be read as a Docker Hub"),
            ("oci://ghcr.io/Acme/plugin:1", "not a repository name"),
            ("oci://ghcr.io/acme/plugin:.x", "not a tag"),
            ("oci://ghcr.io:99999/a:1", "port"),
            ("oci://ghcr.io/a:1@sha256:abc", "64 hex digits"),
            ("oci://ghcr.io/a:1@md5:abc", "must start with `sha256:`"),
            ("oci://https://ghcr.io/a:1", "second scheme"),
        ] {
            let e = OciRef::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let upper = format!("oci://ghcr.io/a:1@sha256:{}", HEX.to_uppercase());
        assert!(
            OciRef::parse(&upper)
                .expect_err("upper")
                .contains("lower case")
        );
    }

    #[test]
    fn no_text_panics_the_parser() {
        let pieces = [
            "oci://",
            "/",
            ":",
            "@",
            "sha256:",
            "[",
            "]",
            "::1",
            "é",
            "a",
            ".",
            "-",
            "_",
            "0",
            "localhost",
            "ghcr.io",
            HEX,
            "%",
            " ",
            "\u{0}",
        ];
        // Every sequence of up to four pieces: parsing answers, never panics.
        let mut count = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let text = format!("{a}{b}{c}{d}");
                        let _ = OciRef::parse(&text);
                        let _ = OciRef::parse(&format!("oci://ghcr.io/{text}"));
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, pieces.len().pow(4));
    }

    #[test]
    fn the_digest_of_bytes_is_their_sha256() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
