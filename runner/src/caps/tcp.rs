//! The `tcp` capability: outgoing TCP connections to granted endpoints, for
//! protocols that are not HTTP (SMTP for e-mail notifications, a database's
//! health port).
//!
//! Threat model: the plugin is hostile and wants to reach any service it can:
//! the cloud metadata service, databases on the runner's network, an attacker's
//! server. What must never happen: a connection to an address and port that no
//! grant names; listening for or accepting connections; UDP.
//!
//! Grant, parsed once at load by [`Endpoint::parse`] (through [`Tcp`], the
//! capability's [`super::capability`] shape): `host:port` (`127.0.0.1:2525`,
//! `[::1]:25`, `smtp.example.com:587`). The port is required: a grant names an
//! endpoint, not a machine. Names are resolved by the runner when the plugin
//! connects; the plugin may connect to those addresses only (it may look names
//! up itself, but a connection to an address the runner did not resolve for a
//! grant is refused, so a DNS answer cannot widen the grant).
//!
//! Enforcement: wasmtime-wasi's socket address check, called for every bind and
//! connect; only connects to granted addresses and the implicit bind to the
//! wildcard address that precedes them pass. Every refusal is recorded in the
//! attempt's [`super::Denials`] with the grant to add.
//!
//! The user's trust decision: a granted name is trusted to lead to the service
//! meant. Unlike `http`, there is no screen of the resolved addresses: whatever
//! the name resolves to when the attempt starts (a private, loopback or metadata
//! address too) is granted, so a name whose DNS someone else controls grants
//! what they point it at. Grant an address (`10.0.3.7:25`) where that matters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::Denials;
use super::capability::{self, Attempt, Capability, ConfigureContext, GrantEntry, Parsed};

/// One parsed grant entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port`; the error says what is wrong and how to write it.
    pub fn parse(entry: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{entry}` is not a TCP grant: {why}; write it as `host:port`, e.g. `127.0.0.1:2525` or `smtp.example.com:587`"
            ))
        };
        let rules = super::authority::Rules {
            wildcards: false,
            default_port: None,
        };
        use super::authority::{PortPattern, Problem};
        match super::authority::parse(entry, rules) {
            Ok(a) => match a.port {
                PortPattern::Is(port) => Ok(Endpoint {
                    host: a.written,
                    port,
                }),
                // Not with `wildcards: false`.
                PortPattern::Any => bad("the port must be a number from 1 to 65535"),
            },
            Err(Problem::UnclosedV6 | Problem::AfterV6 | Problem::NoPort)
                if entry.starts_with('[') =>
            {
                bad("an IPv6 address is written `[addr]:port`")
            }
            Err(Problem::UnclosedV6 | Problem::AfterV6 | Problem::NoPort) => {
                bad("the port is missing")
            }
            Err(Problem::BadPort) => bad("the port must be a number from 1 to 65535"),
            Err(Problem::BadHost) => bad("the host is not a name or an address (no wildcards)"),
        }
    }
}

/// The endpoints a plugin may connect to.
#[derive(Debug, Clone, Default)]
pub struct TcpGrant {
    endpoints: Vec<Endpoint>,
}

/// The `tcp` capability: entries `host:port`, parsed by [`Endpoint::parse`];
/// each attempt's WASI sockets check connections against the grant.
pub struct Tcp;

impl Capability for Tcp {
    const KIND: &'static str = "tcp";
    type Written = String;
    type Entry = Endpoint;
    type Grant = TcpGrant;
    type Prepared = ();

    fn parse(written: &String) -> Parsed<Endpoint> {
        match Endpoint::parse(written) {
            Ok(endpoint) => Parsed::ok(endpoint),
            Err(message) => Parsed::refused(message),
        }
    }

    fn configure(entries: &[GrantEntry<Tcp>], _: &ConfigureContext<'_>) -> TcpGrant {
        TcpGrant {
            endpoints: capability::parsed(entries).cloned().collect(),
        }
    }

    fn prepare(grant: &TcpGrant, attempt: &mut Attempt<'_>) -> Result<(), String> {
        let declared = attempt.declares(Tcp::KIND);
        Arc::new(grant.clone()).apply(attempt.wasi, attempt.plugin, declared, attempt.denials);
        Ok(())
    }
}

impl TcpGrant {
    /// The grant of entries as written, through [`Tcp`]'s parser (a playbook's
    /// grants are configured by `host::resolve`).
    pub fn new(entries: &[String]) -> TcpGrant {
        capability::grant_from::<Tcp>(entries, &ConfigureContext::default())
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Whether a connection to `addr` is granted: an endpoint naming that
    /// address, or a granted name whose answer, looked up now by the runner,
    /// contains it. Looked up when the plugin connects, without blocking.
    pub async fn allows(&self, addr: SocketAddr) -> bool {
        for e in self.endpoints.iter().filter(|e| e.port == addr.port()) {
            let found = match e.host.parse::<IpAddr>() {
                Ok(ip) => ip == addr.ip(),
                Err(_) => tokio::net::lookup_host((e.host.as_str(), e.port))
                    .await
                    .is_ok_and(|mut answers| answers.any(|a| a.ip() == addr.ip())),
            };
            if found {
                return true;
            }
        }
        false
    }

    /// Opens TCP in `wasi` for the granted endpoints only. A plugin that did not
    /// declare `tcp`, or declared it and was granted nothing, is refused at each
    /// connection with a message; a plugin that neither declared nor was granted
    /// it gets no sockets at all.
    pub fn apply(
        self: &Arc<Self>,
        wasi: &mut WasiCtxBuilder,
        plugin: &str,
        declared: bool,
        denials: &Denials,
    ) {
        if self.endpoints.is_empty() && !declared {
            return;
        }
        let (grant, plugin, denials) = (self.clone(), plugin.to_owned(), denials.clone());
        wasi.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(declared)
            .socket_addr_check(move |addr, use_| {
                let (grant, plugin, denials) = (grant.clone(), plugin.clone(), denials.clone());
                Box::pin(async move {
                    let ok = match use_ {
                        _ if !declared => false,
                        SocketAddrUse::TcpConnect => grant.allows(addr).await,
                        // `connect` binds the socket to the wildcard address first.
                        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                        _ => false,
                    };
                    if !ok {
                        denials.record(if !declared {
                            super::undeclared(&plugin, "tcp")
                        } else {
                            let what = match use_ {
                                SocketAddrUse::TcpConnect => format!("a TCP connection to {addr}"),
                                other => format!("{other:?} on {addr}"),
                            };
                            format!(
                                "{what} is not granted to plugin `{plugin}`; add `{addr}` to `plugins.{plugin}.grants.tcp` in the playbook if it is intended"
                            )
                        });
                    }
                    ok
                })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_syntax() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:2525"),
            Ok(Endpoint {
                host: "127.0.0.1".into(),
                port: 2525
            })
        );
        assert_eq!(
            Endpoint::parse("[::1]:25"),
            Ok(Endpoint {
                host: "::1".into(),
                port: 25
            })
        );
        assert!(Endpoint::parse("Smtp.Example.com:587").is_ok());
        for bad in [
            "127.0.0.1",
            "host:0",
            "host:99999",
            "*.example.com:25",
            ":25",
            "[::1]25",
            "a b:25",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_match_literal_endpoints_and_resolved_names() {
        let g = TcpGrant::new(&["127.0.0.1:2525".into(), "localhost:25".into()]);
        assert!(g.allows("127.0.0.1:2525".parse().unwrap()).await);
        assert!(
            !g.allows("127.0.0.1:2526".parse().unwrap()).await,
            "another port"
        );
        assert!(
            !g.allows("127.0.0.2:2525".parse().unwrap()).await,
            "another address"
        );
        assert!(
            g.allows("127.0.0.1:25".parse().unwrap()).await
                || g.allows("[::1]:25".parse().unwrap()).await,
            "localhost resolves to a loopback address"
        );
    }

    #[test]
    fn the_capability_parses_with_endpoint_and_grants_what_parsed() {
        use crate::caps::capability::Spot;
        assert_eq!(Tcp::KIND, "tcp");
        let bad = Tcp::parse(&"127.0.0.1".to_owned());
        assert_eq!(bad.entry, None);
        assert_eq!(bad.problems[0].at, Spot::Entry);
        assert_eq!(
            bad.problems[0].message,
            Endpoint::parse("127.0.0.1").unwrap_err()
        );
        assert_eq!(
            Tcp::parse(&"[::1]:25".to_owned()).entry,
            Endpoint::parse("[::1]:25").ok()
        );
        let g = TcpGrant::new(&["127.0.0.1".into(), "127.0.0.1:2525".into()]);
        assert_eq!(
            g.endpoints,
            [Endpoint {
                host: "127.0.0.1".into(),
                port: 2525
            }]
        );
    }
}
