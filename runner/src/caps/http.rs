//! The `http` capability: outgoing HTTP requests through `wasi:http`.
//!
//! Threat model: the plugin is hostile and wants to reach hosts it was not given:
//! the cloud metadata service (169.254.169.254) to steal credentials, services on
//! the runner's loopback or private network, or an attacker's server to exfiltrate
//! data. It may use a granted *name* whose DNS answer points somewhere private (DNS
//! rebinding), smuggle a `Host` or proxy header, or follow a redirect elsewhere.
//! What must never happen: a request to a scheme, host or port no grant names; a
//! connection to a non-public address unless that address is granted literally.
//! An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-compatible,
//! SIIT, NAT64, 6to4, Teredo) is judged by that IPv4 address, so a DNS answer
//! `64:ff9b::a9fe:a9fe` is the metadata service; the NAT64 local-use prefix
//! `64:ff9b:1::/48` is non-public as a whole ([`address`] has the table).
//! The user's trust decision: the granted names, whatever public addresses
//! they resolve to, and each address granted literally (a granted name that
//! resolves to it may then connect to it too, on the name's granted port).
//!
//! Grants, parsed once at load by [`HostRule::parse`] (through [`Http`], the
//! capability's [`super::capability`] shape): `scheme://host[:port]`, where the
//! host is a name, an IP address, or `*.` followed by a name (any subdomain, not
//! the name itself), and the port is a number, `*` (any), or absent (the
//! scheme's default: 80 or 443).
//!
//! Enforcement, in [`HttpHooks::send_request`], the one place every `wasi:http`
//! request passes: (1) the plugin declared `http`; (2) a grant matches the
//! request's scheme, host and port; (3) the runner resolves the name itself and
//! keeps only the addresses [`HttpGrant::address_allowed`] accepts; (4) it connects
//! to exactly those addresses, so no second lookup can answer differently. TLS is
//! verified against the Web PKI roots with the granted name. Hop-by-hop, proxy and
//! `Host` headers are refused when the plugin sets them (wasmtime-wasi-http's
//! forbidden list); `Host` is always the request's authority. Redirects are not
//! followed by the host: a plugin that follows one makes a new request, checked
//! again. Every refusal is recorded for the step's error and log.
//!
//! Connections are kept alive within one step attempt ([`Pool`]): a connection
//! whose response was read to the end serves the next request to the same
//! granted origin (a load test or a repeated health check would otherwise pay a
//! TCP (and TLS) handshake per request). Every request is still checked; a
//! connection never outlives its attempt.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::Denials;
use super::authority::{self, Authority, HostPattern, PortPattern, Problem};
use super::capability::{self, Attempt, Capability, ConfigureContext, GrantEntry, Parsed};

pub mod address;
pub use address::is_non_public;

/// Time to establish a connection when the plugin sets no connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The scheme of a grant or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// One parsed grant entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    text: String,
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
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
        let rules = authority::Rules {
            wildcards: true,
            default_port: Some(scheme.default_port()),
        };
        let Authority { host, port, .. } = match authority::parse(rest, rules) {
            Ok(a) => a,
            Err(problem) => {
                return bad(match problem {
                    Problem::AfterV6 => "only a port may follow the IPv6 address",
                    Problem::UnclosedV6 => "the IPv6 address is not closed by `]`",
                    Problem::NoPort | Problem::BadPort => {
                        "the port must be a number from 1 to 65535, or `*`"
                    }
                    Problem::BadHost => {
                        "the host is not a name or address (`*` is allowed only as the whole first label)"
                    }
                });
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
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Is(p) => p == port,
        };
        let host_ok = self.host.matches(host);
        self.scheme == scheme && host_ok && port_ok
    }
}

/// The hosts a plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    rules: Vec<HostRule>,
    /// Static name → addresses entries consulted before DNS, like `/etc/hosts`.
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// The `http` capability: entries `scheme://host[:port]`, parsed by
/// [`HostRule::parse`]; each attempt gets the [`HttpHooks`] every `wasi:http`
/// request goes through.
pub struct Http;

impl Capability for Http {
    const KIND: &'static str = "http";
    type Written = String;
    type Entry = HostRule;
    type Grant = HttpGrant;
    type Prepared = HttpHooks;

    fn parse(written: &String) -> Parsed<HostRule> {
        match HostRule::parse(written) {
            Ok(rule) => Parsed::ok(rule),
            Err(message) => Parsed::refused(message),
        }
    }

    fn configure(entries: &[GrantEntry<Http>], _: &ConfigureContext<'_>) -> HttpGrant {
        HttpGrant {
            rules: capability::parsed(entries).cloned().collect(),
            hosts: BTreeMap::new(),
        }
    }

    fn prepare(grant: &HttpGrant, attempt: &mut Attempt<'_>) -> Result<HttpHooks, String> {
        Ok(HttpHooks {
            plugin: attempt.plugin.to_owned(),
            declared: attempt.declares(Http::KIND),
            grant: Arc::new(grant.clone()),
            denials: attempt.denials.clone(),
            pool: Pool::default(),
        })
    }
}

impl HttpGrant {
    /// The grant of entries as written, through [`Http`]'s parser (a playbook's
    /// grants are configured by `host::resolve`).
    pub fn new(entries: &[String]) -> HttpGrant {
        capability::grant_from::<Http>(entries, &ConfigureContext::default())
    }

    /// Whether the grant allows anything at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Answers lookups of `name` with `addrs` instead of asking DNS, as an
    /// `/etc/hosts` entry would. The addresses are still checked.
    pub fn with_host(mut self, name: &str, addrs: &[IpAddr]) -> HttpGrant {
        self.hosts.insert(name.to_ascii_lowercase(), addrs.to_vec());
        self
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
        !is_non_public(ip) || self.rules.iter().any(|r| r.host == HostPattern::Ip(ip))
    }

    /// The addresses of `host` a connection may go to: its static entry or DNS
    /// answer, screened by [`HttpGrant::address_allowed`].
    pub async fn addresses(
        &self,
        plugin: &str,
        url: &str,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<IpAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![ip]
        } else if let Some(ips) = self.hosts.get(&bare.to_ascii_lowercase()) {
            ips.clone()
        } else {
            tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Refusal::Unresolved(format!("cannot resolve `{bare}`: {e}")))?
                .map(|a| a.ip())
                .collect()
        };
        self.screen(plugin, url, &found).map(|ips| {
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        })
    }

    /// The allowed ones of `found`, or a refusal naming the first refused one.
    fn screen(&self, plugin: &str, url: &str, found: &[IpAddr]) -> Result<Vec<IpAddr>, Refusal> {
        let allowed: Vec<IpAddr> = found
            .iter()
            .copied()
            .filter(|ip| self.address_allowed(*ip))
            .collect();
        if !allowed.is_empty() {
            return Ok(allowed);
        }
        let Some(ip) = found.first() else {
            return Err(Refusal::Unresolved(format!("`{url}` has no address")));
        };
        Err(Refusal::Denied(format!(
            "`{url}` resolves to {ip}, {what}, which plugin `{plugin}` may reach only if that address is granted itself; if this is intended, add `{literal}` to `plugins.{plugin}.grants.http` in the playbook",
            what = address::classify(*ip).describe(),
            literal = literal_grant(url, *ip),
        )))
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The grants do not allow it; the message names the grant to add.
    Denied(String),
    /// The name has no usable address.
    Unresolved(String),
}

/// `url` with its host replaced by `ip`, as a grant entry.
fn literal_grant(url: &str, ip: IpAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let port = rest
        .rsplit_once(':')
        .filter(|(_, p)| p.parse::<u16>().is_ok())
        .map(|(_, p)| format!(":{p}"))
        .unwrap_or_default();
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]{port}"),
    }
}

/// The `wasi:http` hooks of one step attempt: every request a plugin makes goes
/// through [`WasiHttpHooks::send_request`] here. Made by [`Http::prepare`].
pub struct HttpHooks {
    pub plugin: String,
    /// Whether the plugin declared `http` in `describe`.
    pub declared: bool,
    pub grant: Arc<HttpGrant>,
    pub denials: Denials,
    /// The attempt's idle connections.
    pub pool: Pool,
}

impl HttpHooks {
    /// Hooks that refuse every request, as from a plugin that declared nothing
    /// and was granted nothing (`describe` runs with these), recording into
    /// `denials`.
    pub fn refusing(denials: &Denials) -> HttpHooks {
        HttpHooks {
            plugin: String::new(),
            declared: false,
            grant: Arc::default(),
            denials: denials.clone(),
            pool: Pool::default(),
        }
    }
}

/// Most idle connections kept per origin.
const MAX_IDLE: usize = 512;

/// Where a connection goes: scheme, granted host, port.
type Origin = (Scheme, String, u16);

/// An open HTTP/1.1 connection: the handle to send on, and the task driving it
/// (aborted when this is dropped).
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<WasiBody>,
    _driver: wasmtime_wasi::runtime::AbortOnDropJoinHandle<Result<(), hyper::Error>>,
}

/// Idle keep-alive connections of one step attempt, by origin. A connection
/// goes back only when its response was read to the end.
#[derive(Clone, Default)]
pub struct Pool(Arc<Mutex<HashMap<Origin, Vec<Connection>>>>);

impl Pool {
    fn take(&self, origin: &Origin) -> Option<Connection> {
        self.0.lock().ok()?.get_mut(origin)?.pop()
    }

    fn put(&self, origin: Origin, c: Connection) {
        if let Ok(mut idle) = self.0.lock() {
            let list = idle.entry(origin).or_default();
            if list.len() < MAX_IDLE {
                list.push(c);
            }
        }
    }

    /// Idle connections, for tests.
    pub fn idle(&self) -> usize {
        self.0.lock().map_or(0, |m| m.values().map(Vec::len).sum())
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (plugin, declared) = (self.plugin.clone(), self.declared);
        let (grant, denials) = (self.grant.clone(), self.denials.clone());
        let pool = self.pool.clone();
        Box::new(async move {
            match destination(&plugin, declared, &grant, &denials, request.uri()).await {
                Ok((scheme, host, port, addrs)) => {
                    send(request, options, (scheme, host, port), &addrs, &pool).await
                }
                Err(refused) => {
                    swallow(request.into_body());
                    Err(refused)
                }
            }
        })
    }
}

/// Where a request may go: its scheme, host, port and the addresses it may
/// connect to; or why not (a refusal is recorded in `denials` as well).
async fn destination(
    plugin: &str,
    declared: bool,
    grant: &HttpGrant,
    denials: &Denials,
    uri: &http::Uri,
) -> Result<(Scheme, String, u16, Vec<SocketAddr>), HttpError> {
    if !declared {
        denials.record(super::undeclared(plugin, "http"));
        return Err(HttpError::HttpRequestDenied);
    }
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(HttpError::HttpProtocolError),
    };
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .to_owned();
    let port = uri.port_u16().unwrap_or(scheme.default_port());
    if let Err(refusal) = grant.allows(plugin, scheme, &host, port) {
        denials.record(refusal);
        return Err(HttpError::HttpRequestDenied);
    }
    let url = format!("{}://{host}:{port}", uri.scheme_str().unwrap_or("http"));
    match grant.addresses(plugin, &url, &host, port).await {
        Ok(addrs) => Ok((scheme, host, port, addrs)),
        Err(Refusal::Denied(m)) => {
            denials.record(m);
            Err(HttpError::DestinationIpProhibited)
        }
        Err(Refusal::Unresolved(m)) => Err(HttpError::DnsError {
            rcode: Some(m),
            info_code: None,
        }),
    }
}

/// Takes in (and throws away) the body of a request that is not sent, until
/// the plugin finishes it. Dropped at once, the plugin could find its body
/// stream closed before it reads the refusal, and its client would report a
/// broken connection instead (the git plugin, which lets git connect after
/// anything but a refusal, then did). The body ends with the plugin's
/// instance at the latest.
fn swallow(body: WasiBody) {
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(Ok(_)) = body.frame().await {}
    });
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Sends `request` over HTTP/1.1: on an idle connection to the origin if there
/// is one, else on a new one to the first of `addrs` that accepts (TLS for
/// `https`, verified for the host).
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    origin: Origin,
    addrs: &[SocketAddr],
    pool: &Pool,
) -> SendResult {
    // Origin form on the wire; the authority travels in `Host`.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;
    // The body is read whole before sending: a server may answer before a
    // streamed body ends, which makes hyper drop the connection under a plugin
    // still writing (wstd writes the body while it waits for the answer); a
    // whole body also has its length, and can be resent on another connection.
    let (parts, body) = request.into_parts();
    let body = if http_body::Body::is_end_stream(&body) {
        body
    } else {
        whole(body).await?
    };
    let mut request = http::Request::from_parts(parts, body);
    let first_byte = options.and_then(|o| o.first_byte_timeout);
    while let Some(mut c) = pool.take(&origin) {
        // Ready at once unless the server closed it meanwhile.
        if !c.sender.is_ready() {
            match tokio::time::timeout(Duration::from_secs(1), c.sender.ready()).await {
                Ok(Ok(())) => {}
                _ => continue,
            }
        }
        match exchange(&mut c, request, first_byte).await {
            Ok(response) => return Ok(respond(response, c, origin, pool)),
            // Not sent (the server closed the idle connection first): try the
            // next one, or a new one.
            Err(Unsent::Retry(back)) => request = back,
            Err(Unsent::Failed(e)) => return Err(e),
        }
    }
    let mut c = connect(options, &origin, addrs).await?;
    match exchange(&mut c, request, first_byte).await {
        Ok(response) => Ok(respond(response, c, origin, pool)),
        Err(Unsent::Retry(_)) => Err(HttpError::ConnectionTerminated),
        Err(Unsent::Failed(e)) => Err(e),
    }
}

/// Most bytes of a request body.
pub const MAX_REQUEST_BODY: usize = 64 << 20;

/// The plugin's request body, read to its end.
async fn whole(mut body: WasiBody) -> Result<WasiBody, HttpError> {
    let mut data = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            if data.len() + chunk.len() > MAX_REQUEST_BODY {
                return Err(HttpError::HttpRequestBodySize(Some(
                    MAX_REQUEST_BODY as u64,
                )));
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(http_body_util::Full::new(data.freeze())
        .map_err(|never| match never {})
        .boxed_unsync())
}

/// Why an exchange gave no response.
enum Unsent {
    /// The request was not sent; here it is back.
    Retry(http::Request<WasiBody>),
    Failed(HttpError),
}

async fn exchange(
    c: &mut Connection,
    request: http::Request<WasiBody>,
    first_byte: Option<Duration>,
) -> Result<http::Response<hyper::body::Incoming>, Unsent> {
    let sent = c.sender.try_send_request(request);
    let result = match first_byte {
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| Unsent::Failed(HttpError::ConnectionReadTimeout))?,
        None => sent.await,
    };
    result.map_err(|mut e| match e.take_message() {
        Some(back) => Unsent::Retry(back),
        None => Unsent::Failed(HttpError::from(e.into_error())),
    })
}

/// The response for the guest; its connection returns to the pool when the
/// body has been read to the end.
fn respond(
    response: http::Response<hyper::body::Incoming>,
    c: Connection,
    origin: Origin,
    pool: &Pool,
) -> (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
) {
    let pool = pool.clone();
    let response = response.map(|body| {
        ReturnsConnection {
            body,
            back: Some((c, origin, pool)),
        }
        .boxed_unsync()
    });
    // The connection's task belongs to the pool, not to this response.
    (response, Box::new(async { Ok(()) }))
}

/// A response body that hands its connection back to the pool at its end.
struct ReturnsConnection {
    body: hyper::body::Incoming,
    back: Option<(Connection, Origin, Pool)>,
}

impl http_body::Body for ReturnsConnection {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, HttpError>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => {
                if let Some((c, origin, pool)) = self.back.take() {
                    pool.put(origin, c);
                }
            }
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        frame.map_err(HttpError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A new connection to the first of `addrs` that accepts.
async fn connect(
    options: Option<RequestOptions>,
    origin: &Origin,
    addrs: &[SocketAddr],
) -> Result<Connection, HttpError> {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addrs))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match origin.0 {
        Scheme::Http => Box::new(tcp),
        Scheme::Https => {
            let bare = origin.1.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tls_connector()?
                .connect(name, tcp)
                .await
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
    };
    let (sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    Ok(Connection {
        sender,
        _driver: wasmtime_wasi::runtime::spawn(connection),
    })
}

/// The TLS client configuration, built once: Web PKI roots, ring.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, HttpError> {
    static CONNECTOR: OnceLock<Option<tokio_rustls::TlsConnector>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        })
        .clone()
        .ok_or(HttpError::ConfigurationError)
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

    #[test]
    fn only_allowed_addresses_are_kept() {
        let g = grant(&["https://api.example.com"]);
        let mixed: Vec<IpAddr> = ["10.0.0.7", "93.184.216.34"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            g.screen("p", "https://api.example.com:443", &mixed),
            Ok(vec!["93.184.216.34".parse().unwrap()]),
            "a name with public and private answers connects to the public one only"
        );
        let v6: Vec<IpAddr> = vec!["fd00:ec2::254".parse().unwrap()];
        assert_eq!(
            g.screen("p", "https://api.example.com:443", &v6),
            Err(Refusal::Denied(
                "`https://api.example.com:443` resolves to fd00:ec2::254, a unique-local (private-network) address, which plugin `p` may reach only if that address is granted itself; if this is intended, add `https://[fd00:ec2::254]:443` to `plugins.p.grants.http` in the playbook".into()
            ))
        );
        assert!(matches!(
            g.screen("p", "https://api.example.com:443", &[]),
            Err(Refusal::Unresolved(_))
        ));
    }

    #[test]
    fn a_refusal_names_the_ipv4_address_an_ipv6_answer_carries() {
        let g = grant(&["https://api.example.com"]);
        let nat64: Vec<IpAddr> = vec!["64:ff9b::a9fe:a9fe".parse().unwrap()];
        assert_eq!(
            g.screen("p", "https://api.example.com:443", &nat64),
            Err(Refusal::Denied(
                "`https://api.example.com:443` resolves to 64:ff9b::a9fe:a9fe, a NAT64 (64:ff9b::/96) address embedding the IPv4 address 169.254.169.254, a link-local (cloud metadata services live here) address, which plugin `p` may reach only if that address is granted itself; if this is intended, add `https://[64:ff9b::a9fe:a9fe]:443` to `plugins.p.grants.http` in the playbook".into()
            ))
        );
        // The same form carrying a public address is public; granted
        // literally, a non-public one is allowed.
        let public: Vec<IpAddr> = vec!["64:ff9b::5db8:d822".parse().unwrap()];
        assert_eq!(
            g.screen("p", "https://api.example.com:443", &public),
            Ok(public.clone())
        );
        let literal = grant(&["https://api.example.com", "https://[64:ff9b::a9fe:a9fe]"]);
        assert_eq!(
            literal.screen("p", "https://api.example.com:443", &nat64),
            Ok(nat64.clone())
        );
    }

    #[test]
    fn static_hosts_answer_before_dns_and_are_still_checked() {
        let g = grant(&["http://db.example.test:5432"])
            .with_host("DB.example.test", &["10.1.2.3".parse().unwrap()]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r =
            rt.block_on(g.addresses("p", "http://db.example.test:5432", "db.example.test", 5432));
        assert!(
            matches!(&r, Err(Refusal::Denied(m)) if m.contains("10.1.2.3, a private-network address")),
            "{r:?}"
        );
        let g = grant(&["http://db.example.test:5432", "http://10.1.2.3:5432"])
            .with_host("db.example.test", &["10.1.2.3".parse().unwrap()]);
        let r =
            rt.block_on(g.addresses("p", "http://db.example.test:5432", "db.example.test", 5432));
        assert_eq!(r, Ok(vec!["10.1.2.3:5432".parse().unwrap()]));
    }

    #[test]
    fn the_capability_parses_with_host_rule_and_grants_what_parsed() {
        use crate::caps::capability::Spot;
        assert_eq!(Http::KIND, "http");
        let bad = Http::parse(&"ftp://x".to_owned());
        assert_eq!(bad.entry, None);
        assert_eq!(bad.problems.len(), 1);
        assert_eq!(bad.problems[0].at, Spot::Entry);
        assert_eq!(
            bad.problems[0].message,
            HostRule::parse("ftp://x").unwrap_err()
        );
        let good = Http::parse(&"https://API.example.com".to_owned());
        assert_eq!(good.entry, HostRule::parse("https://API.example.com").ok());
        assert!(good.problems.is_empty());
        // A refused entry grants nothing; the others stand.
        let g = grant(&["ftp://api.example.com", "https://api.example.com"]);
        assert_eq!(g.rules.len(), 1);
        assert!(g.allows("p", Scheme::Https, "api.example.com", 443).is_ok());
    }

    #[test]
    fn an_attempt_gets_hooks_for_its_plugin_and_declaration() {
        let g = grant(&["https://api.example.com"]);
        let denials = Denials::default();
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        for (declared, expected) in [(vec!["http".to_owned()], true), (vec![], false)] {
            let hooks = Http::prepare(
                &g,
                &mut Attempt {
                    plugin: "p",
                    declared: &declared,
                    workdir: std::path::Path::new("/tmp"),
                    wasi: &mut wasi,
                    denials: &denials,
                },
            )
            .unwrap();
            assert_eq!(hooks.plugin, "p");
            assert_eq!(hooks.declared, expected);
            assert!(
                hooks
                    .grant
                    .allows("p", Scheme::Https, "api.example.com", 443)
                    .is_ok()
            );
            assert_eq!(hooks.pool.idle(), 0);
        }
        let refusing = HttpHooks::refusing(&denials);
        assert!(!refusing.declared && refusing.grant.is_empty());
        refusing.denials.record("x".into());
        assert_eq!(
            denials.list(),
            ["x"],
            "the refusals go to the attempt's list"
        );
    }
}
