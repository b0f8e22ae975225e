//! HTTP requests through `wasi:http` (the `http` capability).
//!
//! Why through the host: a plugin has no sockets. Every request goes to the
//! runner, which sends it only if the playbook granted the scheme, host and port
//! (`grants.http`), and connects only to addresses that pass its checks: a granted
//! name that resolves to loopback, a private network or the cloud metadata service
//! is refused unless that address is granted itself. A refusal comes back as
//! [`HttpError::Denied`], which `?` turns into [`StepError::Denied`].
//!
//! Needs the SDK's `http` feature. Declare [`crate::capability::HTTP`] in
//! [`crate::Info::capabilities`].
//!
//! ```ignore
//! use runner_sdk::http::Request;
//!
//! let response = Request::get("https://status.example.com/health")
//!     .header("accept", "application/json")
//!     .timeout(std::time::Duration::from_secs(5))
//!     .send()?;
//! if response.status != 200 { /* ... */ }
//! let health: serde_json::Value = response.json()?;
//! ```
//!
//! This is a blocking client, right for one request at a time. A plugin that needs
//! many requests in flight (a load generator) uses the async client of
//! [`wstd`](https://docs.rs/wstd), re-exported as [`crate::http::wstd`] on
//! `wasm32`, which this module is built on.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StepError;

#[cfg(target_arch = "wasm32")]
pub use wstd;

/// An HTTP request, built step by step and sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

/// A response, with its whole body read.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The runner refused it: the grant is missing, the address is not allowed,
    /// or the plugin did not declare `http`. The runner's own message, which
    /// names the missing grant, is in the step's error and log.
    Denied(String),
    /// No answer in time.
    Timeout(String),
    /// The request is malformed (URL, header, method).
    Invalid(String),
    /// Connection, DNS, TLS or protocol failure.
    Failed(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request denied: {m}"),
            HttpError::Timeout(m) => write!(f, "request timed out: {m}"),
            HttpError::Invalid(m) => write!(f, "invalid request: {m}"),
            HttpError::Failed(m) => write!(f, "request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for StepError {
    /// Denied stays denied; timeouts and network failures may pass on a later
    /// attempt; a malformed request is the input's fault.
    fn from(e: HttpError) -> StepError {
        match &e {
            HttpError::Denied(_) => StepError::Denied(e.to_string()),
            HttpError::Timeout(_) | HttpError::Failed(_) => StepError::Retryable(e.to_string()),
            HttpError::Invalid(_) => StepError::InvalidInput(e.to_string()),
        }
    }
}

impl Request {
    /// A request with any method (`GET`, `POST`, `PATCH`, ...).
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header. Hop-by-hop, proxy and `Host` headers are refused by the
    /// runner: the request then fails with [`HttpError::Invalid`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its `content-type`.
    pub fn json(self, value: &impl Serialize) -> Result<Request, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::Invalid(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Bounds the time to connect and the time to the first byte of the answer
    /// (each; the step's own timeout bounds the whole).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            wstd::runtime::block_on(self.send_async())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(HttpError::Denied(format!(
                "{} {}: not running inside the runner",
                self.method, self.url
            )))
        }
    }

    /// [`Request::send`] for async code (with [`wstd`]'s runtime).
    #[cfg(target_arch = "wasm32")]
    pub async fn send_async(self) -> Result<Response, HttpError> {
        use wstd::http::{Body, Client, Method};

        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|e| HttpError::Invalid(format!("method `{}`: {e}", self.method)))?;
        let mut builder = wstd::http::Request::builder().method(method).uri(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Body::from(self.body))
            .map_err(|e| HttpError::Invalid(format!("{}: {e}", self.url)))?;
        let mut client = Client::new();
        if let Some(t) = self.timeout {
            client.set_connect_timeout(t);
            client.set_first_byte_timeout(t);
        }
        let response = client.send(request).await.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = response.into_body();
        let body = body.contents().await.map_err(classify)?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Sorts a `wstd` error by the `wasi:http` error code inside it.
#[cfg(target_arch = "wasm32")]
fn classify(e: wstd::http::Error) -> HttpError {
    use wstd::http::error::{ErrorCode, HeaderError};
    let text = format!("{e:#}");
    if let Some(code) = e.downcast_ref::<ErrorCode>() {
        return match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpError::Denied(text)
            }
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => HttpError::Timeout(text),
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                HttpError::Invalid(text)
            }
            _ => HttpError::Failed(text),
        };
    }
    if e.downcast_ref::<HeaderError>().is_some() {
        return HttpError::Invalid(text);
    }
    HttpError::Failed(text)
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Failed(format!("the response is not the JSON expected: {e}")))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url`, with the whole response.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}
