//! The `http` capability: outgoing HTTP requests.
//!
//! Threat model: the plugin is hostile and wants to reach hosts it was not given:
//! the cloud metadata service (169.254.169.254) to steal credentials, services on
//! the runner's loopback or private network, or an attacker's server to exfiltrate
//! data. It may use a granted *name* whose DNS answer points somewhere private (DNS
//! rebinding). What must never happen: a request to a scheme, host or port no grant
//! names; a connection to a non-public address unless that address is granted
//! literally.
//!
//! Grants, parsed once here: `scheme://host[:port]`, where the host is a name, an
//! IP address, or `*.` followed by a name (any subdomain, not the name itself), and
//! the port is a number, `*` (any), or absent (the scheme's default: 80 or 443).
//!
//! Status: validation uses the parser; the request hook that applies [`HttpGrant`]
//! and [`HttpGrant::address_allowed`] to `wasi:http` requests is not linked yet, so
//! a component importing `wasi:http` does not load.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The scheme of a grant or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A name, lower case.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`, lower case.
    Subdomains(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    Is(u16),
    Any,
}

/// One parsed grant entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    text: String,
    scheme: Scheme,
    host: Host,
    port: Port,
}

impl HostRule {
    /// Parses a grant entry; the error says what is wrong and how to write it.
    pub fn parse(entry: &str) -> Result<HostRule, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{entry}` is not an HTTP grant: {why}; write it as `https://host`, `https://*.example.com` or `http://127.0.0.1:8080`"
            ))
        };
        let Some((scheme, rest)) = entry.split_once("://") else {
            return bad("it has no scheme");
        };
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return bad("the scheme must be `http` or `https`"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return bad("grants name a host and port, not a path, query or user");
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, p)) if p.is_empty() || p.starts_with(':') => (h, p.strip_prefix(':')),
                Some(_) => return bad("only a port may follow the IPv6 address"),
                None => return bad("the IPv6 address is not closed by `]`"),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => Port::Is(scheme.default_port()),
            Some("*") => Port::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Port::Is(n),
                _ => return bad("the port must be a number from 1 to 65535, or `*`"),
            },
        };
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else {
            let (name, wildcard) = match host.strip_prefix("*.") {
                Some(n) => (n, true),
                None => (host, false),
            };
            let label_ok =
                |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if name.is_empty() || !name.split('.').all(label_ok) {
                return bad(
                    "the host is not a name or address (`*` is allowed only as the whole first label)",
                );
            }
            let name = name.to_ascii_lowercase();
            if wildcard {
                Host::Subdomains(name)
            } else {
                Host::Name(name)
            }
        };
        Ok(HostRule {
            text: entry.to_owned(),
            scheme,
            host,
            port,
        })
    }

    fn matches(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = match &self.host {
            Host::Name(n) => *n == host,
            Host::Subdomains(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|p| p.len() > 1 && p.ends_with('.')),
            Host::Ip(ip) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|h| h == *ip),
        };
        let port_ok = match self.port {
            Port::Any => true,
            Port::Is(p) => p == port,
        };
        self.scheme == scheme && host_ok && port_ok
    }
}

/// The hosts a plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    rules: Vec<HostRule>,
}

impl HttpGrant {
    /// Parsed once from the playbook's `grants.http` (already validated).
    pub fn new(entries: &[String]) -> HttpGrant {
        HttpGrant {
            rules: entries
                .iter()
                .filter_map(|e| HostRule::parse(e).ok())
                .collect(),
        }
    }

    /// Whether a request to `scheme://host:port` is granted; the refusal names the
    /// grant to add.
    pub fn allows(
        &self,
        plugin: &str,
        scheme: Scheme,
        host: &str,
        port: u16,
    ) -> Result<(), String> {
        if self.rules.iter().any(|r| r.matches(scheme, host, port)) {
            return Ok(());
        }
        let s = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let shown = if port == scheme.default_port() {
            format!("{s}://{host}")
        } else {
            format!("{s}://{host}:{port}")
        };
        Err(format!(
            "`{shown}` is not granted to plugin `{plugin}`; add it to `plugins.{plugin}.grants.http` in the playbook"
        ))
    }

    /// Whether a connection to `ip` may be made: public addresses always (the name
    /// was granted), non-public ones only when a grant names that address itself.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        !is_non_public(ip) || self.rules.iter().any(|r| r.host == Host::Ip(ip))
    }
}

/// Loopback, private, link-local (which holds the cloud metadata services),
/// shared, unspecified, multicast and broadcast addresses, and IPv6 unique-local
/// and link-local ones; IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => non_public_v4(v4),
            None => non_public_v6(v6),
        },
    }
}

fn non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn non_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, e.g. fd00:ec2::254 (a metadata service)
        || (first & 0xffc0) == 0xfe80 // link local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(entries: &[&str]) -> HttpGrant {
        HttpGrant::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn grant_syntax() {
        for ok in [
            "https://api.example.com",
            "https://*.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9090",
            "https://example.com/",
            "http://localhost:*",
        ] {
            assert!(HostRule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://x:0",
            "https://x:99999",
            "https://a.*.com",
            "https://",
            "https://u@x",
            "http://[::1]x",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_match_scheme_host_and_port() {
        let g = grant(&[
            "https://api.example.com",
            "https://*.svc.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:*",
        ]);
        assert!(g.allows("p", Scheme::Https, "API.example.com", 443).is_ok());
        assert!(
            g.allows("p", Scheme::Http, "api.example.com", 80).is_err(),
            "scheme"
        );
        assert!(
            g.allows("p", Scheme::Https, "api.example.com", 8443)
                .is_err(),
            "no port means the default port"
        );
        assert!(
            g.allows("p", Scheme::Https, "a.svc.example.com", 443)
                .is_ok()
        );
        assert!(
            g.allows("p", Scheme::Https, "svc.example.com", 443)
                .is_err(),
            "*. is subdomains only"
        );
        assert!(
            g.allows("p", Scheme::Https, "evilsvc.example.com", 443)
                .is_err()
        );
        assert!(g.allows("p", Scheme::Http, "127.0.0.1", 8080).is_ok());
        assert!(g.allows("p", Scheme::Http, "127.0.0.1", 8081).is_err());
        assert!(g.allows("p", Scheme::Http, "localhost", 5432).is_ok());
        let e = g
            .allows("p", Scheme::Https, "169.254.169.254", 443)
            .unwrap_err();
        assert_eq!(
            e,
            "`https://169.254.169.254` is not granted to plugin `p`; add it to `plugins.p.grants.http` in the playbook"
        );
    }

    #[test]
    fn non_public_addresses_need_their_own_grant() {
        let by_name = grant(&["http://internal.example.com"]);
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_non_public(ip), "{ip}");
            assert!(
                !by_name.address_allowed(ip),
                "a granted name resolving to {ip} must be refused"
            );
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(by_name.address_allowed(ip.parse().unwrap()), "{ip}");
        }
        let literal = grant(&["http://127.0.0.1:8080"]);
        assert!(literal.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(!literal.address_allowed("127.0.0.2".parse().unwrap()));
    }
}
