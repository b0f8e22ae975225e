//! `runner serve`: the run service over HTTP, for people, pipelines, alerts
//! and chat.
//!
//! A third front end beside the command line and the worker, as thin as they
//! are: a request becomes a [`PlanRequest`](crate::service::PlanRequest) of a
//! catalog playbook and the run goes through [`Service`] like any other;
//! approvals are answered through the same
//! [`Approvals`](crate::engine::approval::Approvals) store the engine waits on;
//! reads come from the journal. What the server adds is who may ask:
//! every request but the probes carries an API token ([`auth`]), roles are
//! checked before anything is decided, and webhooks are verified by their
//! signature.
//!
//! Built on axum (routing, extractors, Server-Sent Events) over the hyper and
//! tokio the runner already has. Runs started here are executed by this
//! process on its tokio runtime, at most `limits.concurrent_runs` at once; on
//! SIGTERM the server stops taking requests and stops its runs as a SIGTERM
//! stops `runner exec` (their handlers run) before it exits.

mod approvals;
pub mod auth;
pub mod catalog;
mod chat;
pub mod config;
mod error;
pub mod hooks;
mod live;
mod metrics;
mod openapi;
mod runs;
mod stream;
pub mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use config::Config;
pub use error::ApiError;

use crate::engine::approval::{Approvals, Decision, Request as ApprovalRequest};
use crate::record::Journal;
use crate::service::{Service, Store};

/// What every handler shares.
pub struct App {
    pub service: Arc<Service>,
    pub config: Config,
    pub tokens: RwLock<auth::Tokens>,
    /// The approvals store of the service's runs, waking them at once when
    /// this server records an answer.
    pub approvals: Arc<Notifying>,
    readers: Readers,
    limiter: Limiter,
    runs: live::Live,
    pub metrics: metrics::Metrics,
    hooks: hooks::Hooks,
    /// The shared journal's queue, when `runner worker`s execute the runs
    /// started here (`execute: workers`, the default with a shared journal).
    pub(crate) queue: Option<Arc<crate::record::postgres::queue::PgQueue>>,
    /// The web UI's sessions.
    sessions: ui::session::Sessions,
    /// Whether browsers reach the server over HTTPS (its own TLS, or its
    /// public URL): session cookies are then `Secure`.
    secure: bool,
}

/// A certificate chain and its key, PEM files, to serve HTTPS.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Starts serving on `listen` (HTTPS with `tls`) until SIGTERM or SIGINT;
/// then stops the runs this server executes (their handlers run) and returns.
pub fn serve(
    config: Config,
    service: Service,
    listen: SocketAddr,
    tls: Option<Tls>,
) -> Result<(), String> {
    // Certificates first: a server that cannot speak TLS must not start plain.
    let acceptor = tls.as_ref().map(acceptor).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let app = App::new(config, service, acceptor.is_some())?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        // One line a script can wait for.
        println!("runner serve: listening on {scheme}://{bound}");
        let stop = shutdown_signal(app.clone());
        match acceptor {
            None => axum::serve(listener, router(app.clone()))
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| format!("the server failed: {e}"))?,
            Some(acceptor) => serve_tls(listener, acceptor, router(app.clone()), stop).await,
        }
        app.runs.stop_all().await;
        Ok(())
    })
}

/// The TLS side of `tls`: its certificate chain and key, read now.
fn acceptor(tls: &Tls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "cannot read the certificates in `{}`: {e}",
                tls.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "`{}` holds no certificate (PEM)",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        format!(
            "cannot read the private key in `{}`: {e}",
            tls.key.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        format!(
            "the certificate `{}` and the key `{}` do not make a TLS identity: {e}",
            tls.cert.display(),
            tls.key.display()
        )
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves HTTPS until `stop`; then lets the open connections finish (10 s).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            () = &mut stop => break,
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // A client that does not finish its handshake in 10 s is dropped.
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = watcher.watch(connection).await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

impl App {
    pub fn new(config: Config, service: Service, tls: bool) -> Result<Arc<App>, String> {
        let tokens = auth::Tokens::load(&config.tokens)?;
        let store = service.store().map_err(|e| e.to_string())?;
        let inner = service.approvals().ok_or_else(|| {
            "no place for approvals: set RUNNER_STATE_DIR to an absolute path (or HOME), or RUNNER_DATABASE_URL".to_owned()
        })?;
        let approvals = Arc::new(Notifying::new(inner));
        let service = Arc::new(service.with_approvals(approvals.clone()));
        // The journal must open (and its schema exist) before the first request.
        store.open()?;
        let database = service.settings().database.clone();
        let execute = config.execute.unwrap_or(if database.is_some() {
            config::Execute::Workers
        } else {
            config::Execute::Server
        });
        let queue = match (execute, database) {
            (config::Execute::Server, _) => None,
            (config::Execute::Workers, Some(url)) => Some(Arc::new(
                crate::record::postgres::queue::PgQueue::open(url.expose())?,
            )),
            (config::Execute::Workers, None) => {
                return Err(format!(
                    "{}: `execute: workers` needs a shared journal, whose queue the workers take runs from: set RUNNER_DATABASE_URL (or --database)",
                    config.file.display()
                ));
            }
        };
        let secure = tls
            || config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        Ok(Arc::new(App {
            sessions: ui::session::Sessions::default(),
            secure,
            readers: Readers::new(store),
            limiter: Limiter::new(config.limits.requests_per_minute),
            runs: live::Live::new(config.limits.concurrent_runs),
            metrics: metrics::Metrics::default(),
            hooks: hooks::Hooks::new(service.settings().state_dir.as_deref()),
            service,
            config,
            tokens: RwLock::new(tokens),
            approvals,
            queue,
        }))
    }

    /// Reads the token file again (SIGHUP); keeps the old tokens when it
    /// cannot be read.
    pub fn reload_tokens(&self) -> Result<(), String> {
        let tokens = auth::Tokens::load(&self.config.tokens)?;
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
        Ok(())
    }

    /// Runs `read` on a journal connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Journal) -> Result<T, String> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.readers.read(read).await
    }

    /// Whether run `id` waits to begin: for a slot of this server, or in the
    /// workers' queue.
    pub async fn is_queued(&self, id: &str) -> bool {
        if self.runs.queued(id) {
            return true;
        }
        let Some(queue) = self.queue.clone() else {
            return false;
        };
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || queue.entry(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|e| e.state != "done")
    }

    /// The server's URL for `path`, when its public URL is configured.
    pub fn link(&self, path: &str) -> Option<String> {
        self.config
            .public_url
            .as_ref()
            .map(|u| format!("{u}{path}"))
    }
}

/// Every route of the API; the OpenAPI document lists the same ones (a test
/// keeps them in step: [`ROUTES`]).
pub fn router(app: Arc<App>) -> Router {
    let limits = &app.config.limits;
    let timeout = Duration::from_secs(limits.request_timeout_s.max(1));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/me", get(me))
        .route("/api/v1/playbooks", get(runs::playbooks))
        .route("/api/v1/runs", get(runs::list).post(runs::start))
        .route("/api/v1/runs/{id}", get(runs::show))
        .route("/api/v1/runs/{id}/events", get(runs::events))
        .route("/api/v1/runs/{id}/stream", get(stream::stream))
        .route("/api/v1/runs/{id}/report", get(runs::report))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/rerun", post(runs::rerun))
        .route(
            "/api/v1/runs/{id}/approvals/{step}",
            post(approvals::decide),
        )
        .route(
            "/api/v1/runs/{id}/approvals/{step}/links",
            post(chat::make_links),
        )
        .route("/api/v1/approvals", get(approvals::pending))
        .route(
            "/api/v1/approvals/link",
            get(chat::show_link).post(chat::use_link),
        )
        .route("/api/v1/hooks/slack/interactive", post(chat::slack))
        .route("/api/v1/history", get(runs::history))
        .route("/api/v1/history/{id}", get(runs::show))
        .route("/api/v1/stats", get(runs::stats))
        .route("/api/v1/hooks/alertmanager", post(hooks::alertmanager))
        .route("/api/v1/hooks/generic/{name}", post(hooks::generic))
        .merge(ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| {
            within(timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

/// The routes, as `METHOD PATH` in the OpenAPI document's spelling.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/playbooks"),
    ("get", "/api/v1/runs"),
    ("post", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("get", "/api/v1/runs/{id}/events"),
    ("get", "/api/v1/runs/{id}/stream"),
    ("get", "/api/v1/runs/{id}/report"),
    ("post", "/api/v1/runs/{id}/cancel"),
    ("post", "/api/v1/runs/{id}/rerun"),
    ("post", "/api/v1/runs/{id}/approvals/{step}"),
    ("post", "/api/v1/runs/{id}/approvals/{step}/links"),
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/approvals/link"),
    ("post", "/api/v1/approvals/link"),
    ("post", "/api/v1/hooks/slack/interactive"),
    ("get", "/api/v1/history"),
    ("get", "/api/v1/history/{id}"),
    ("get", "/api/v1/stats"),
    ("post", "/api/v1/hooks/alertmanager"),
    ("post", "/api/v1/hooks/generic/{name}"),
];

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub fn openapi_document() -> &'static str {
    openapi::DOCUMENT
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource; the API is described at /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this resource does not take that method; see /api/v1/openapi.json",
    )
}

/// A request that takes longer than the limit is answered 503 (a stream's
/// head comes at once; its events are not limited).
async fn within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {}s (limits.request_timeout_s)",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// Refusals made by the framework itself (a query or path that does not
/// parse, a body over the limit read by a webhook) come as plain text: they
/// are answered in the API's JSON shape like every other error.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(response.status().is_client_error() && plain) {
        return response;
    }
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    ApiError::new(
        status,
        if message.is_empty() {
            status.canonical_reason().unwrap_or("refused").to_owned()
        } else {
            message
        },
    )
    .into_response()
}

/// Counts requests by status class for `/metrics`.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    app.metrics.request(response.status());
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the journal answers.
async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    app.read(|j| {
        j.list(&crate::record::Filter {
            limit: Some(1),
            ..Default::default()
        })
    })
    .await?;
    Ok("ready\n")
}

/// Who the token says the caller is.
async fn me(caller: auth::Caller) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "principal": caller.name, "roles": caller.roles }))
}

/// Waits for SIGTERM or SIGINT (reading the token file again on SIGHUP).
async fn shutdown_signal(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match app.reload_tokens() {
                Ok(()) => eprintln!("runner serve: token file read again"),
                Err(e) => eprintln!("runner serve: {e}; the tokens read before stay in force"),
            },
        }
    }
    eprintln!(
        "runner serve: stopping: no new requests; the running runs are stopped, their handlers run"
    );
    app.runs.stop_all_signal();
}

impl FromRequestParts<Arc<App>> for auth::Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            // A page's script calls the API with the session cookie instead.
            return session_caller(parts, app);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`")
            })?;
        let caller = app
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .caller(token)
            .ok_or_else(|| {
                ApiError::unauthorized("the API token is not valid (unknown or revoked)")
            })?;
        app.limiter.take(&caller.name)?;
        Ok(caller)
    }
}

/// The caller of an API request that carries a web session's cookie and no
/// token: anything but GET and HEAD must also carry the session's CSRF token
/// in `X-CSRF-Token`, so another site cannot make a browser act.
fn session_caller(parts: &Parts, app: &Arc<App>) -> Result<auth::Caller, ApiError> {
    let no_token = || {
        ApiError::unauthorized(
            "no API token: send `Authorization: Bearer TOKEN` (tokens are made with `runner token add`)",
        )
    };
    let id = ui::session::cookie(&parts.headers, ui::session::COOKIE).ok_or_else(no_token)?;
    let viewer = app.sessions.viewer(app, id).ok_or_else(|| {
        ApiError::unauthorized("the web session has ended (logged out, expired or its token revoked): log in again at /ui/login")
    })?;
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !safe {
        let given = parts
            .headers
            .get(ui::session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ui::session::same(given, &viewer.csrf) {
            return Err(ApiError::forbidden(
                "a request with the session cookie must carry the session's CSRF token in X-CSRF-Token",
            ));
        }
    }
    app.limiter.take(&viewer.caller.name)?;
    Ok(viewer.caller)
}

/// A JSON body, read within the size limit and refused with a clear 400
/// when it is not JSON, too deep or has fields the API does not know.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `bytes` as a `T`, or a 400 that says where the body went wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not what this resource takes: {e}"
        ))
    })
}

/// Journal connections for reading, kept between requests.
struct Readers {
    store: Store,
    idle: Mutex<Vec<Box<dyn Journal>>>,
    /// At most this many reads at once (a database's connections are few).
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn new(store: Store) -> Readers {
        Readers {
            store,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(8),
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Journal) -> Result<T, String> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::unavailable("the server is stopping"))?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let store = self.store.clone();
        let (result, journal) = tokio::task::spawn_blocking(move || {
            let journal = match idle {
                Some(j) => j,
                None => match store.open() {
                    Ok(j) => j,
                    Err(e) => return (Err(e), None),
                },
            };
            let result = read(journal.as_ref());
            // A connection that failed is not kept: the next read opens anew.
            let keep = result.is_ok().then_some(journal);
            (result, keep)
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("a journal read stopped: {e}")))?;
        if let Some(j) = journal {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(j);
        }
        result.map_err(ApiError::journal)
    }
}

/// Requests per minute per principal: a bucket of that many, refilled
/// continuously.
struct Limiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    fn new(per_minute: u32) -> Limiter {
        Limiter {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, who: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (left, at) = buckets
            .entry(who.to_owned())
            .or_insert((self.per_minute, now));
        let refill = now.duration_since(*at).as_secs_f64() * self.per_minute / 60.0;
        *left = (*left + refill).min(self.per_minute);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *left) * 60.0 / self.per_minute).ceil() as u64;
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests from `{who}` (limits.requests_per_minute: {}); try again in {wait}s",
                self.per_minute
            ),
        );
        e.retry_after = Some(wait.max(1));
        Err(e)
    }
}

/// An approvals store that wakes the runs waiting in this process as soon as
/// an answer is recorded through it, instead of at their next look.
pub struct Notifying {
    inner: Arc<dyn Approvals>,
    answered: tokio::sync::Notify,
}

impl Notifying {
    pub fn new(inner: Arc<dyn Approvals>) -> Notifying {
        Notifying {
            inner,
            answered: tokio::sync::Notify::new(),
        }
    }
}

impl Approvals for Notifying {
    fn open(&self, request: &ApprovalRequest) -> std::io::Result<()> {
        self.inner.open(request)
    }
    fn request(&self, run_id: &str, step: &str) -> Option<ApprovalRequest> {
        self.inner.request(run_id, step)
    }
    fn pending(&self, run_id: &str) -> Vec<String> {
        self.inner.pending(run_id)
    }
    fn known(&self, run_id: &str) -> Result<(), String> {
        self.inner.known(run_id)
    }
    fn decisions(&self, run_id: &str, step: &str) -> std::io::Result<Vec<Decision>> {
        self.inner.decisions(run_id, step)
    }
    fn record(&self, run_id: &str, step: &str, decision: &Decision) -> std::io::Result<()> {
        self.inner.record(run_id, step, decision)?;
        self.answered.notify_waiters();
        Ok(())
    }
    fn close(&self, run_id: &str, step: &str) {
        self.inner.close(run_id, step)
    }
    fn changed<'a>(
        &'a self,
        run_id: &'a str,
        step: &'a str,
        within: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            tokio::select! {
                _ = self.answered.notified() => {}
                _ = self.inner.changed(run_id, step, within) => {}
            }
        })
    }
}
