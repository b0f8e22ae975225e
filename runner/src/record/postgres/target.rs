//! Where the database is and how to reach it: the URL read once, the password
//! never repeated, and TLS.
//!
//! TLS follows the URL's `sslmode`, as libpq's names go, but always checks the
//! server's certificate and name (libpq checks neither below `verify-full`):
//! - `disable`: no TLS;
//! - `prefer` (the default): TLS when the server offers it, plain when it has
//!   none; a server that offers TLS with a certificate that does not check out
//!   is refused, not spoken to in plain;
//! - `require`, `verify-ca`, `verify-full`: TLS or nothing.
//!
//! The certificate is checked against `sslrootcert=FILE` (PEM) when the URL
//! names one, else against the Web PKI roots.

use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long connecting may take before the journal gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database to connect to.
#[derive(Clone)]
pub struct Target {
    pub config: postgres::Config,
    /// `None`: `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
}

const HOW: &str =
    "write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=require&sslrootcert=CA.pem]";

impl Target {
    /// Reads a database URL (`postgres://…`, or `key=value …` without
    /// `sslrootcert`), with messages that do not repeat it (it may hold a
    /// password).
    pub fn parse(url: &str) -> Result<Target, String> {
        let unreadable = |why: String| {
            format!(
                "the database URL (RUNNER_DATABASE_URL or --database) cannot be read: {why}; {HOW}"
            )
        };
        let (rest, root_file) = split_tls_options(url).map_err(unreadable)?;
        let mut config: postgres::Config = rest
            .parse()
            .map_err(|e: postgres::Error| unreadable(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("runner");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(connector(root_file.as_deref())?),
        };
        Ok(Target { config, tls })
    }

    /// `postgres://user@host:port/db`: where the database is, without the
    /// password.
    pub fn describe(&self) -> String {
        let config = &self.config;
        let user = config.get_user().unwrap_or("");
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or(user);
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        format!("postgres://{at}{host}:{port}/{db}")
    }

    /// Connects (with TLS as the URL says).
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }

    /// The same database under another application name (what
    /// `pg_stat_activity` shows for the connection).
    pub fn named(&self, application: &str) -> Target {
        let mut t = self.clone();
        t.config.application_name(application);
        t
    }
}

/// Takes `sslrootcert` out of the URL (the client library does not know it)
/// and turns `verify-ca` and `verify-full` into `require` (which checks as
/// much here); the rest of the URL and the root file.
fn split_tls_options(url: &str) -> Result<(String, Option<String>), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        if url.contains("sslrootcert") {
            return Err("sslrootcert is read from the URL form only".to_owned());
        }
        return Ok((url.to_owned(), None));
    }
    let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let mut root = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("sslrootcert", file) => root = Some(file.to_owned()),
            ("sslmode", "verify-ca" | "verify-full") => {
                kept.push(("sslmode".to_owned(), "require".to_owned()));
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.to_string(), root))
}

/// The TLS client: ring, the roots of `root_file` or else the Web PKI's.
fn connector(root_file: Option<&str>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(file) => {
            let pem = std::fs::read(file).map_err(|e| {
                format!(
                    "the database's root certificate `{file}` (sslrootcert) cannot be read: {e}"
                )
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    format!(
                        "the database's root certificate `{file}` (sslrootcert) is not PEM: {e}"
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    format!(
                        "the database's root certificate `{file}` (sslrootcert) cannot be used: {e}"
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "the database's root certificate `{file}` (sslrootcert) holds no certificate"
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS to the database: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
