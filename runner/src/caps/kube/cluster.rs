//! The run's Kubernetes connection: chosen by the runner, made on the first
//! call, shared by every step, and the only holder of the credentials; sends
//! the calls the grant check built and bounds what comes back.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;

use super::MAX_RESPONSE;
use super::check::Call;

/// The API server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}
/// The cluster of a run: which kubeconfig context, and the connection, made on
/// the first call and shared by every step.
#[derive(Default)]
pub struct Cluster {
    context: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
    client: tokio::sync::OnceCell<Result<kube::Client, String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("context", &self.context)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl Cluster {
    /// `context`: a kubeconfig context; `None`: the current one (or in-cluster).
    /// `kubeconfig`: a file to read instead of KUBECONFIG / ~/.kube/config.
    pub fn new(context: Option<String>, kubeconfig: Option<std::path::PathBuf>) -> Arc<Cluster> {
        Arc::new(Cluster {
            context,
            kubeconfig,
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// The kubeconfig file this cluster is read from, when not the default.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.kubeconfig.as_deref()
    }

    /// Reads the kubeconfig (or in-cluster config) and sets up the client,
    /// without contacting the server: a missing kubeconfig or an unknown
    /// context is found before the run starts.
    pub async fn prepare(&self) -> Result<(), String> {
        self.client().await.map(|_| ())
    }

    async fn client(&self) -> Result<&kube::Client, String> {
        self.client
            .get_or_init(|| connect(self.context.clone(), self.kubeconfig.clone()))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends an allowed call. An error is a connection problem; the API
    /// server's own refusals (403, 404, 409, …) are responses.
    pub async fn send(&self, call: &Call) -> Result<Response, String> {
        let client = self.client().await?;
        let mut req = http::Request::builder()
            .method(call.method.clone())
            .uri(&call.uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(ct) = call.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(kube::client::Body::from(
                call.body.clone().unwrap_or_default(),
            ))
            .map_err(|e| format!("cannot build the Kubernetes request: {e}"))?;
        let exchange = async {
            let res = client
                .send(req)
                .await
                .map_err(|e| format!("the Kubernetes API server did not answer: {e}"))?;
            let status = res.status().as_u16();
            let body = if call.watch.is_some() && status == 200 {
                first_events(res.into_body()).await?
            } else {
                read_all(res.into_body()).await?
            };
            Ok(Response { status, body })
        };
        match call.watch {
            // The server ends the watch at `timeoutSeconds`; this is the backstop.
            Some(t) => tokio::time::timeout(t + Duration::from_secs(10), exchange)
                .await
                .unwrap_or_else(|_| {
                    Ok(Response {
                        status: 200,
                        body: "[]".to_owned(),
                    })
                }),
            None => exchange.await,
        }
    }
}

async fn connect(
    context: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
) -> Result<kube::Client, String> {
    let options = kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let config = match (&kubeconfig, &context) {
        (Some(file), _) => {
            let parsed = kube::config::Kubeconfig::read_from(file).map_err(|e| {
                format!("cannot read the kubeconfig `{}`: {e}", file.display())
            })?;
            kube::Config::from_custom_kubeconfig(parsed, &options)
                .await
                .map_err(|e| {
                    format!(
                        "cannot use the kubeconfig `{}`{}: {e}; check the environment file's kubeconfig and kube_context",
                        file.display(),
                        context.as_deref().map(|c| format!(" with context `{c}`")).unwrap_or_default()
                    )
                })?
        }
        (None, Some(c)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
            format!(
                "cannot use the kube context `{c}`: {e}; check `--kube-context` / RUNNER_KUBE_CONTEXT and the kubeconfig (KUBECONFIG or ~/.kube/config)"
            )
        })?,
        (None, None) => kube::Config::infer().await.map_err(|e| {
            format!(
                "no Kubernetes cluster configured: {e}; set KUBECONFIG (or ~/.kube/config) and choose a context with `--kube-context`"
            )
        })?,
    };
    let mut config = config;
    config.connect_timeout = Some(Duration::from_secs(10));
    let server = config.cluster_url.to_string();
    kube::Client::try_from(config).map_err(|e| {
        format!("cannot set up the connection to the Kubernetes API server {server}: {e}")
    })
}

async fn read_all(mut body: kube::client::Body) -> Result<String, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| format!("the Kubernetes API server's answer broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_RESPONSE {
                return Err(format!(
                    "the Kubernetes API server's answer is larger than {} MiB; narrow the request (a label or field selector)",
                    MAX_RESPONSE >> 20
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads a watch stream until at least one whole event has arrived, takes the
/// ones already received with it, and returns them as a JSON array (`[]` when the
/// watch ended without events).
async fn first_events(mut body: kube::client::Body) -> Result<String, String> {
    use futures_util::FutureExt;
    let mut buf = Vec::new();
    let mut events = Vec::new();
    loop {
        let frame = if events.is_empty() {
            body.frame().await
        } else {
            // Events already received come along; do not wait for more.
            match body.frame().now_or_never() {
                Some(f) => f,
                None => break,
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| format!("the Kubernetes watch broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_RESPONSE {
                return Err(format!(
                    "a Kubernetes watch event is larger than {} MiB",
                    MAX_RESPONSE >> 20
                ));
            }
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if !line.is_empty() {
                    let event: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                        format!("the Kubernetes watch sent something that is not JSON: {e}")
                    })?;
                    events.push(event);
                }
            }
        }
    }
    Ok(serde_json::Value::Array(events).to_string())
}
