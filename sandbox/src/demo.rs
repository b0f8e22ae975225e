//! The demo service, in process: what the Deployments of the control plane would
//! serve if their pods ran.
//!
//! For each namespace a *front* (an HTTP server on 127.0.0.1, the Service) sends each
//! request to a random **ready** pod of the Deployments whose pods carry
//! `app=<service>`, and answers as that pod's image would:
//!
//! - an image whose tag contains `bad` takes 500–700 ms and fails 1 request in 4
//!   with a 500, except that a tag ending in `bad-in-<namespace>` is bad in that
//!   namespace only (`1.4.3-bad-in-production` passes staging and fails in
//!   production, as a fix that only production's traffic breaks);
//! - any other takes 3–7 ms and answers 200.
//!
//! Routes: `GET /health` (`{"status":"ok","version":TAG}`), `GET /` and
//! `GET /api/orders` (JSON); anything else 404. No ready pod: 503. Each answer carries
//! `X-Pod`, `X-Track` (the pod's `track` label) and `X-Version` headers.
//!
//! The pods are listed from the API server every [`REFRESH`] (one list for all
//! namespaces), so the traffic follows rollouts and readiness as a Service's endpoints
//! would. The metrics ([`crate::metrics`]) are served on a port of their own, and a
//! background generator ([`Traffic`]) keeps a steady trickle of requests going so that
//! rates exist when nobody is testing.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::control_plane::{CONTEXT, client_from_kubeconfig};
use crate::metrics::Metrics;

/// How often the fronts' view of the pods is refreshed.
pub const REFRESH: Duration = Duration::from_millis(200);
/// Added latency of a bad image, and its spread (uniform in `BAD_LATENCY ± SPREAD`).
const BAD_LATENCY_MS: u64 = 600;
const BAD_SPREAD_MS: u64 = 100;
/// Latency of a good image (uniform in 3–7 ms).
const GOOD_LATENCY_MS: u64 = 5;
const GOOD_SPREAD_MS: u64 = 2;
/// One request in this many fails on a bad image.
const BAD_FAILURE_ONE_IN: u64 = 4;

/// A pod a front can send requests to: Running, Ready and not being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingPod {
    pub namespace: String,
    pub pod: String,
    /// The pod's `track` label (`stable`, `canary`), or `unknown`.
    pub track: String,
    /// The first container's name.
    pub container: String,
    /// The first container's image reference.
    pub image: String,
    /// The image's tag (`latest` when it has none): the version the pod reports.
    pub version: String,
    /// Whether the image behaves badly here ([`behaves_badly`]).
    pub bad: bool,
}

/// The ready pods per namespace, as last listed.
#[derive(Default)]
pub(crate) struct Views {
    pods: RwLock<HashMap<String, Vec<ServingPod>>>,
}

impl Views {
    pub(crate) fn serving(&self, namespace: &str) -> Vec<ServingPod> {
        self.pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    /// Every serving pod, in every namespace.
    fn all(&self) -> Vec<ServingPod> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<ServingPod> = pods.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        all
    }

    fn pick(&self, namespace: &str) -> Option<ServingPod> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let list = pods.get(namespace)?;
        if list.is_empty() {
            return None;
        }
        Some(list[(random() % list.len() as u64) as usize].clone())
    }
}

/// The running demo service: fronts, metrics endpoint, pod refresher. Stopped on drop.
pub(crate) struct Demo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    fronts: Vec<(String, u16)>,
    metrics_port: u16,
    views: Arc<Views>,
    metrics: Arc<Metrics>,
    refresher: Option<JoinHandle<()>>,
}

impl Demo {
    /// Binds a front for each of `namespaces` (on `ports`, or free ports when `None`)
    /// and the metrics endpoint (on `metrics_port`, or a free one). Requests are
    /// answered 503 until [`Demo::watch_pods`] has listed ready pods.
    pub(crate) fn bind(
        service: &str,
        namespaces: &[(&str, Option<u16>)],
        metrics_port: Option<u16>,
    ) -> Result<Demo, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let views = Arc::new(Views::default());
        let metrics = Arc::new(Metrics::default());
        let mut demo = Demo {
            stop: stop.clone(),
            threads: Vec::new(),
            fronts: Vec::new(),
            metrics_port: 0,
            views: views.clone(),
            metrics: metrics.clone(),
            refresher: None,
        };
        for (namespace, port) in namespaces {
            let server = bind(*port, &format!("the {namespace} front"))?;
            let port = port_of(&server)?;
            let (ns, svc) = ((*namespace).to_owned(), service.to_owned());
            let (views, metrics) = (views.clone(), metrics.clone());
            let thread = serve(server, stop.clone(), &format!("front-{ns}"), move |rq| {
                answer(rq, &ns, &svc, &views, &metrics);
            })?;
            demo.threads.push(thread);
            demo.fronts.push(((*namespace).to_owned(), port));
        }
        let server = bind(metrics_port, "the metrics endpoint")?;
        demo.metrics_port = port_of(&server)?;
        let pods = views.clone();
        let thread = serve(server, stop, "metrics", move |rq| {
            let response = if rq.url() == "/metrics" {
                let text = metrics.render() + &crate::metrics::render_pods(&pods.all());
                tiny_http::Response::from_string(text).with_header(header(
                    "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8",
                ))
            } else {
                tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
            };
            let _ = rq.respond(response);
        })?;
        demo.threads.push(thread);
        Ok(demo)
    }

    /// Starts listing the pods labelled `app=<service>` every [`REFRESH`] through the
    /// kubeconfig's [`CONTEXT`].
    pub(crate) fn watch_pods(&mut self, kubeconfig: PathBuf, service: &str) -> Result<(), String> {
        let (stop, views) = (self.stop.clone(), self.views.clone());
        let selector = format!("app={service}");
        let thread = std::thread::Builder::new()
            .name("pod-refresher".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("sandbox: pod refresher: tokio runtime: {e}");
                        return;
                    }
                };
                rt.block_on(refresh_loop(kubeconfig, selector, stop, views));
            })
            .map_err(|e| format!("starting the pod refresher: {e}"))?;
        self.refresher = Some(thread);
        Ok(())
    }

    /// `(namespace, port)` of each front.
    pub(crate) fn fronts(&self) -> &[(String, u16)] {
        &self.fronts
    }

    pub(crate) fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub(crate) fn views(&self) -> &Arc<Views> {
        &self.views
    }

    /// Forgets every series, as a restarted service would.
    pub(crate) fn clear_metrics(&self) {
        self.metrics.clear();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..).chain(self.refresher.take()) {
            let _ = thread.join();
        }
    }
}

async fn refresh_loop(
    kubeconfig: PathBuf,
    selector: String,
    stop: Arc<AtomicBool>,
    views: Arc<Views>,
) {
    let mut client = None;
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let listed = async {
            if client.is_none() {
                client = Some(client_from_kubeconfig(&kubeconfig, CONTEXT).await?);
            }
            let api: Api<Pod> = Api::all(client.clone().expect("set above"));
            api.list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match listed {
            Ok(list) => {
                let mut by_namespace: HashMap<String, Vec<ServingPod>> = HashMap::new();
                for pod in list.items.iter().filter_map(serving_pod) {
                    by_namespace
                        .entry(pod.namespace.clone())
                        .or_default()
                        .push(pod);
                }
                *views.pods.write().unwrap_or_else(|e| e.into_inner()) = by_namespace;
                if failing {
                    eprintln!("sandbox: listing pods works again");
                    failing = false;
                }
            }
            // The fronts keep the last view; say so once per streak of failures.
            Err(e) => {
                if !failing {
                    eprintln!(
                        "sandbox: listing pods failed (the fronts keep their last view): {e}"
                    );
                    failing = true;
                }
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// The pod as a front sees it, when it is ready to serve.
fn serving_pod(pod: &Pod) -> Option<ServingPod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let first = pod.spec.as_ref()?.containers.first()?;
    let (container, image) = (first.name.clone(), first.image.clone()?);
    let version = image_tag(&image).to_owned();
    let namespace = pod.metadata.namespace.clone()?;
    Some(ServingPod {
        bad: behaves_badly(&version, &namespace),
        namespace,
        pod: pod.metadata.name.clone()?,
        track: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("track"))
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned()),
        version,
        container,
        image,
    })
}

/// Whether an image with tag `tag` behaves badly in `namespace`: a tag ending in
/// `bad-in-<namespace>` only there, any other tag containing `bad` everywhere.
pub fn behaves_badly(tag: &str, namespace: &str) -> bool {
    match tag.rfind("bad-in-") {
        Some(i) => &tag[i + "bad-in-".len()..] == namespace,
        None => tag.contains("bad"),
    }
}

/// `demo/shop:1.4.2` → `1.4.2`; `registry:5000/shop` → `latest`; a digest is ignored.
pub fn image_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_end..].rfind(':') {
        Some(i) => &image[name_end + i + 1..],
        None => "latest",
    }
}

/// Answers one request on the front of `namespace`.
fn answer(
    rq: tiny_http::Request,
    namespace: &str,
    service: &str,
    views: &Views,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let path = rq.url().split('?').next().unwrap_or("/").to_owned();
    let Some(pod) = views.pick(namespace) else {
        let body = json!({ "error": format!("no ready pod of {service} in {namespace}") });
        metrics.record(namespace, service, "none", 503, started, false);
        let _ = rq.respond(json_response(503, &body));
        return;
    };
    let (delay, spread) = if pod.bad {
        (BAD_LATENCY_MS, BAD_SPREAD_MS)
    } else {
        (GOOD_LATENCY_MS, GOOD_SPREAD_MS)
    };
    let delay = Duration::from_millis(delay - spread + random() % (2 * spread + 1));
    let fails = pod.bad && random().is_multiple_of(BAD_FAILURE_ONE_IN);
    let get = matches!(
        rq.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let (code, body) = match path.as_str() {
        _ if fails && path == "/health" => (
            500,
            json!({ "status": "error", "version": pod.version, "error": "orders database unreachable" }),
        ),
        _ if fails => (
            500,
            json!({ "error": "internal server error", "version": pod.version, "pod": pod.pod }),
        ),
        "/health" | "/" | "/api/orders" if !get => (
            405,
            json!({ "error": format!("{} not allowed", rq.method()) }),
        ),
        "/health" => (200, json!({ "status": "ok", "version": pod.version })),
        "/" => (
            200,
            json!({
                "service": service, "namespace": namespace, "version": pod.version,
                "pod": pod.pod, "track": pod.track, "message": "Welcome to the shop",
            }),
        ),
        "/api/orders" => (
            200,
            json!({
                "version": pod.version,
                "orders": [
                    { "id": 1041, "item": "coffee beans", "quantity": 2, "total": "23.80" },
                    { "id": 1042, "item": "grinder", "quantity": 1, "total": "89.00" },
                    { "id": 1043, "item": "filter papers", "quantity": 3, "total": "7.50" },
                ],
            }),
        ),
        _ => (404, json!({ "error": format!("no route for {path}") })),
    };
    if let Some(rest) = delay.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let response = json_response(code, &body)
        .with_header(header("X-Pod", &pod.pod))
        .with_header(header("X-Track", &pod.track))
        .with_header(header("X-Version", &pod.version));
    metrics.record(namespace, service, &pod.track, code, started, code >= 500);
    let _ = rq.respond(response);
}

fn json_response(
    code: u16,
    body: &serde_json::Value,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(format!("{body}\n"))
        .with_status_code(code)
        .with_header(header("Content-Type", "application/json"))
}

/// A response header (names and values here are always valid).
pub(crate) fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|()| {
        tiny_http::Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("valid header")
    })
}

/// Binds an HTTP server on 127.0.0.1 (`port`, or a free one).
pub(crate) fn bind(port: Option<u16>, what: &str) -> Result<tiny_http::Server, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
    tiny_http::Server::http(addr).map_err(|e| format!("{what}: binding {addr}: {e}"))
}

pub(crate) fn port_of(server: &tiny_http::Server) -> Result<u16, String> {
    server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or_else(|| "server has no IP address".to_owned())
}

/// Accepts requests on a thread named `name` until `stop`, each handled on a thread of
/// its own (answers may be slow on purpose).
pub(crate) fn serve(
    server: tiny_http::Server,
    stop: Arc<AtomicBool>,
    name: &str,
    handle: impl Fn(tiny_http::Request) + Send + Sync + 'static,
) -> Result<JoinHandle<()>, String> {
    let handle = Arc::new(handle);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(rq)) => {
                        let handle = handle.clone();
                        // If no thread can be had, the request is dropped (the client
                        // sees the connection close).
                        let _ = std::thread::Builder::new()
                            .name("request".into())
                            .spawn(move || handle(rq));
                    }
                    Ok(None) => {}
                    // An accept error (e.g. out of file descriptors): go on.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(|e| format!("starting {name}: {e}"))
}

/// A background client: `rate` requests per second to each front, cycling through
/// `/`, `/api/orders` and `/health`, at most 200 in flight per front. Stopped on drop.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(ports: &[u16], rate: f64) -> Result<Traffic, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut traffic = Traffic {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        if rate <= 0.0 || !rate.is_finite() {
            return Ok(traffic);
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        for &port in ports {
            let stop = stop.clone();
            let in_flight = Arc::new(AtomicUsize::new(0));
            let thread = std::thread::Builder::new()
                .name(format!("traffic-{port}"))
                .spawn(move || {
                    let paths = ["/", "/api/orders", "/health"];
                    let mut next = Instant::now();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        if in_flight.load(Ordering::Relaxed) < 200 {
                            let path = paths[n % paths.len()];
                            n += 1;
                            let in_flight = in_flight.clone();
                            in_flight.fetch_add(1, Ordering::Relaxed);
                            let spawned = std::thread::Builder::new()
                                .name("traffic-request".into())
                                .spawn({
                                    let in_flight = in_flight.clone();
                                    move || {
                                        let _ = get(port, path);
                                        in_flight.fetch_sub(1, Ordering::Relaxed);
                                    }
                                });
                            if spawned.is_err() {
                                in_flight.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        next += period;
                        let now = Instant::now();
                        match next.checked_duration_since(now) {
                            Some(wait) => std::thread::sleep(wait),
                            // Fell behind (a stalled machine): do not burst to catch up.
                            None => next = now,
                        }
                    }
                })
                .map_err(|e| format!("starting the traffic generator: {e}"))?;
            traffic.threads.push(thread);
        }
        Ok(traffic)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A minimal HTTP/1.0 GET to 127.0.0.1: the status code and the body.
pub fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    request(port, "GET", path)
}

/// A minimal HTTP/1.0 request without a body to 127.0.0.1: the status code and the
/// body.
pub fn request(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: runner-sandbox\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response from {addr}: {head:.200}"))?;
    Ok((code, body.to_owned()))
}

/// A random number from a per-thread xorshift generator seeded by the OS.
pub(crate) fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            h.write_u128(now.map_or(0, |d| d.as_nanos()));
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("demo/shop:1.4.2"), "1.4.2");
        assert_eq!(image_tag("demo/shop:1.4.3-bad"), "1.4.3-bad");
        assert_eq!(image_tag("registry:5000/shop"), "latest");
        assert_eq!(image_tag("registry:5000/shop:2"), "2");
        assert_eq!(image_tag("shop@sha256:abc"), "latest");
        assert_eq!(image_tag("shop:1@sha256:abc"), "1");
    }

    #[test]
    fn bad_tags() {
        assert!(behaves_badly("1.4.3-bad", "staging"));
        assert!(behaves_badly("1.4.3-bad", "production"));
        assert!(!behaves_badly("1.4.3", "production"));
        assert!(behaves_badly("1.4.3-bad-in-production", "production"));
        assert!(!behaves_badly("1.4.3-bad-in-production", "staging"));
        assert!(!behaves_badly("1.4.3-bad-in-production", "production-eu"));
    }

    #[test]
    fn random_spreads() {
        let hits = (0..4000).filter(|_| random().is_multiple_of(4)).count();
        assert!((800..1200).contains(&hits), "{hits}");
    }
}
