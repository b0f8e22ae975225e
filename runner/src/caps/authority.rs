//! The one grammar of a granted host and port, shared by the `http` grant
//! (`https://*.example.com`, `http://127.0.0.1:8080`) and the `tcp` grant
//! (`smtp.example.com:587`, `[::1]:2525`).
//!
//! Why one: two parsers of "host and port" drift apart (one lower-cases names,
//! the other forgets; one takes `[::1]`, the other chokes on it), and a grant
//! that means one thing to the check and another to the capability is an
//! escape. Each capability keeps its own words for what is wrong (they name its
//! own way of writing a grant); the reasons themselves come from here.
//!
//! A host is an IP address (IPv6 in brackets), a name made of letters, digits
//! and `-` in dot-separated labels (lower-cased), or, where wildcards are
//! allowed, `*.` and such a name: any name below it, never the name itself.

use std::net::IpAddr;

/// Which hosts a grant names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A name, lower case.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`, lower case.
    Subdomains(String),
    Ip(IpAddr),
}

impl HostPattern {
    /// Whether `host` (a name, maybe with a trailing dot, or an address,
    /// IPv6 maybe in brackets) is one this pattern names.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Name(n) => *n == host,
            HostPattern::Subdomains(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|p| p.len() > 1 && p.ends_with('.')),
            HostPattern::Ip(ip) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|h| h == *ip),
        }
    }
}

/// Which ports a grant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    Is(u16),
    /// `:*`
    Any,
}

/// What the grammar allows where the capabilities differ.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `*.name` hosts and `*` ports.
    pub wildcards: bool,
    /// The port when none is written; `None`: a port must be written.
    pub default_port: Option<u16>,
}

/// A host and port as granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: HostPattern,
    /// The host as written (without brackets), lower case.
    pub written: String,
    pub port: PortPattern,
}

/// Why a text is not a host and port. Checked in this order: brackets, port,
/// host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `[` without its `]`.
    UnclosedV6,
    /// Something other than `:port` after `]`.
    AfterV6,
    /// No port, and none by default.
    NoPort,
    /// Not a number from 1 to 65535 (nor `*` where wildcards are allowed).
    BadPort,
    /// Neither an address nor a name (nor `*.name` where allowed).
    BadHost,
}

/// Parses `host[:port]` (`[v6][:port]`) under `rules`.
pub fn parse(text: &str, rules: Rules) -> Result<Authority, Problem> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(Problem::AfterV6),
            },
            None => return Err(Problem::UnclosedV6),
        },
        None => match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        },
    };
    let port = match port {
        None => PortPattern::Is(rules.default_port.ok_or(Problem::NoPort)?),
        Some("*") if rules.wildcards => PortPattern::Any,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => PortPattern::Is(n),
            _ => return Err(Problem::BadPort),
        },
    };
    let written = host.to_ascii_lowercase();
    let pattern = if let Ok(ip) = host.parse::<IpAddr>() {
        HostPattern::Ip(ip)
    } else {
        let (name, wildcard) = match host.strip_prefix("*.") {
            Some(n) if rules.wildcards => (n, true),
            _ => (host, false),
        };
        let label_ok =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if name.is_empty() || !name.split('.').all(label_ok) {
            return Err(Problem::BadHost);
        }
        let name = name.to_ascii_lowercase();
        if wildcard {
            HostPattern::Subdomains(name)
        } else {
            HostPattern::Name(name)
        }
    };
    Ok(Authority {
        host: pattern,
        written,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: Rules = Rules {
        wildcards: true,
        default_port: Some(443),
    };
    const TCP: Rules = Rules {
        wildcards: false,
        default_port: None,
    };

    #[test]
    fn hosts_and_ports_as_both_grants_write_them() {
        let a = parse("API.Example.com", HTTP).unwrap();
        assert_eq!(a.host, HostPattern::Name("api.example.com".into()));
        assert_eq!(a.port, PortPattern::Is(443));
        let a = parse("*.example.com:*", HTTP).unwrap();
        assert_eq!(a.host, HostPattern::Subdomains("example.com".into()));
        assert_eq!(a.port, PortPattern::Any);
        let a = parse("[::1]:2525", TCP).unwrap();
        assert_eq!(a.host, HostPattern::Ip("::1".parse().unwrap()));
        assert_eq!((a.written.as_str(), a.port), ("::1", PortPattern::Is(2525)));
        let a = parse("Smtp.Example.com:587", TCP).unwrap();
        assert_eq!(a.written, "smtp.example.com");
    }

    #[test]
    fn every_problem_is_named() {
        assert_eq!(parse("[::1", HTTP), Err(Problem::UnclosedV6));
        assert_eq!(parse("[::1]x", HTTP), Err(Problem::AfterV6));
        assert_eq!(parse("[::1]", TCP), Err(Problem::NoPort));
        assert_eq!(parse("host", TCP), Err(Problem::NoPort));
        assert_eq!(parse("host:0", TCP), Err(Problem::BadPort));
        assert_eq!(parse("host:65536", HTTP), Err(Problem::BadPort));
        assert_eq!(parse("host:*", TCP), Err(Problem::BadPort));
        // Wildcards only where allowed, and only as the whole first label.
        assert_eq!(parse("*.example.com:25", TCP), Err(Problem::BadHost));
        assert_eq!(parse("a*.example.com", HTTP), Err(Problem::BadHost));
        assert_eq!(parse("*", HTTP), Err(Problem::BadHost));
        assert_eq!(parse("a..b", HTTP), Err(Problem::BadHost));
        assert_eq!(parse("", HTTP), Err(Problem::BadHost));
        // The port is judged before the host.
        assert_eq!(parse("bad_host:0", TCP), Err(Problem::BadPort));
    }

    #[test]
    fn a_pattern_matches_what_it_names_and_nothing_else() {
        let sub = HostPattern::Subdomains("example.com".into());
        assert!(sub.matches("api.Example.com."));
        assert!(!sub.matches("example.com"));
        assert!(!sub.matches("evilexample.com"));
        let ip = HostPattern::Ip("::1".parse().unwrap());
        assert!(ip.matches("[::1]"));
        assert!(ip.matches("0:0::1"));
        assert!(!ip.matches("127.0.0.1"));
    }
}
