//! Kubernetes API calls through the host (the `kube` import).
//!
//! Why not a Kubernetes client in the plugin: the credentials (kubeconfig,
//! tokens, client keys) must never enter a plugin. The runner holds the
//! connection to the cluster the user chose; the plugin names what it wants
//! (verb, API version, resource, namespace, name, body) and the host sends it
//! only if a rule in the playbook's `grants.kube` covers it.
//!
//! ```ignore
//! use runner_sdk::kube::{Request, PatchType};
//! use runner_sdk::serde_json::json;
//! let deploy = Request::get("apps/v1", "deployments", "prod", "web").send()?.ok()?;
//! let patch = json!({ "spec": { "replicas": 3 } });
//! Request::patch("apps/v1", "deployments", "prod", "web", PatchType::Merge, &patch)
//!     .subresource("scale")
//!     .send()?
//!     .ok()?;
//! ```
//!
//! The API server's own refusals (403, 404, 409, ...) are [`Response`]s: look at
//! [`Response::status`] or let [`Response::ok`] turn them into errors. Declare
//! [`crate::capability::KUBE`] in [`crate::Info::capabilities`].

use std::time::Duration;

use serde_json::Value;

use crate::StepError;
use crate::bindings::runner::plugin::kube as wit;

/// How a patch body is read by the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// Strategic merge patch (what `kubectl set image` and `kubectl patch` use):
    /// lists of containers merge by name.
    Strategic,
    /// JSON merge patch (RFC 7386): lists are replaced.
    Merge,
    /// JSON patch (RFC 6902): a list of operations.
    Json,
}

/// One API request, built with chained calls and sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request(wit::Request);

impl Request {
    fn new(verb: &str, api_version: &str, resource: &str, namespace: &str) -> Request {
        Request(wit::Request {
            verb: verb.to_owned(),
            api_version: api_version.to_owned(),
            resource: resource.to_owned(),
            subresource: None,
            namespace: Some(namespace.to_owned()),
            name: None,
            label_selector: None,
            field_selector: None,
            patch_type: None,
            body: None,
            resource_version: None,
            timeout_seconds: None,
            query: Vec::new(),
        })
    }

    /// Reads one object.
    pub fn get(api_version: &str, resource: &str, namespace: &str, name: &str) -> Request {
        Request::new("get", api_version, resource, namespace).name(name)
    }

    /// Lists the objects of a namespace (narrow it with [`Request::label_selector`]).
    pub fn list(api_version: &str, resource: &str, namespace: &str) -> Request {
        Request::new("list", api_version, resource, namespace)
    }

    /// Waits for changes: the response body is a JSON array of the events that
    /// arrived first (empty if none came before the timeout). Start from a
    /// `resourceVersion` you read, or you get the current objects as `ADDED`.
    pub fn watch(api_version: &str, resource: &str, namespace: &str) -> Request {
        Request::new("watch", api_version, resource, namespace)
    }

    /// Creates an object from `body` (its `metadata.name` names it).
    pub fn create(api_version: &str, resource: &str, namespace: &str, body: &Value) -> Request {
        Request::new("create", api_version, resource, namespace).body(body)
    }

    /// Replaces an object.
    pub fn update(
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Request {
        Request::new("update", api_version, resource, namespace)
            .name(name)
            .body(body)
    }

    /// Patches an object.
    pub fn patch(
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        kind: PatchType,
        body: &Value,
    ) -> Request {
        let mut r = Request::new("patch", api_version, resource, namespace)
            .name(name)
            .body(body);
        r.0.patch_type = Some(
            match kind {
                PatchType::Strategic => "strategic",
                PatchType::Merge => "merge",
                PatchType::Json => "json",
            }
            .to_owned(),
        );
        r
    }

    /// Deletes an object.
    pub fn delete(api_version: &str, resource: &str, namespace: &str, name: &str) -> Request {
        Request::new("delete", api_version, resource, namespace).name(name)
    }

    /// The object; for list and watch, only the object of that name.
    pub fn name(mut self, name: &str) -> Request {
        self.0.name = Some(name.to_owned());
        self
    }

    /// A subresource of the object, e.g. `scale`, `status` or `log`.
    pub fn subresource(mut self, sub: &str) -> Request {
        self.0.subresource = Some(sub.to_owned());
        self
    }

    /// Only objects with these labels, e.g. `app=web,track=canary`.
    pub fn label_selector(mut self, selector: &str) -> Request {
        self.0.label_selector = Some(selector.to_owned());
        self
    }

    /// Only objects whose fields match, e.g. `status.phase=Running`.
    pub fn field_selector(mut self, selector: &str) -> Request {
        self.0.field_selector = Some(selector.to_owned());
        self
    }

    /// For list and watch: start at this `resourceVersion`.
    pub fn resource_version(mut self, version: &str) -> Request {
        self.0.resource_version = Some(version.to_owned());
        self
    }

    /// For watch: wait at most this long (whole seconds, at least 1; the host
    /// caps it at 300 s and at the step's deadline).
    pub fn timeout(mut self, wait: Duration) -> Request {
        self.0.timeout_seconds = Some(wait.as_secs().clamp(1, u64::from(u32::MAX)) as u32);
        self
    }

    /// A further query parameter, e.g. `tailLines` for `pods/log` (the host
    /// accepts a fixed list; see the `kube` interface in `sdk/wit`).
    pub fn query(mut self, key: &str, value: impl ToString) -> Request {
        self.0.query.push((key.to_owned(), value.to_string()));
        self
    }

    fn body(mut self, body: &Value) -> Request {
        self.0.body = Some(body.to_string());
        self
    }

    /// Sends it. A refusal by the host (no grant) ends the step as denied
    /// whatever the plugin does with the error; a connection problem is
    /// [`StepError::Retryable`].
    pub fn send(&self) -> Result<Response, StepError> {
        match wit::call(&self.0) {
            Ok(r) => Ok(Response {
                status: r.status,
                body: r.body,
            }),
            Err(message) => Err(StepError::Retryable(message)),
        }
    }
}

/// The API server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body (for a watch, an array of events).
    pub body: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, StepError> {
        serde_json::from_str(&self.body).map_err(|e| {
            StepError::failed(format!(
                "the Kubernetes API server answered with something that is not JSON ({e})"
            ))
        })
    }

    /// The body as JSON if the status is 2xx; else an error carrying the API
    /// server's message: 404 and 422 fail, 409 (conflict), 429 and 5xx are
    /// retryable, 401/403 (the cluster's own RBAC) fail.
    pub fn ok(self) -> Result<Value, StepError> {
        if self.is_success() {
            return self.json();
        }
        let message = self.status_message();
        let text = format!("Kubernetes API: {message} (HTTP {})", self.status);
        Err(match self.status {
            409 | 429 | 500..=599 => StepError::Retryable(text),
            _ => StepError::Failed(text),
        })
    }

    /// The `message` of a Kubernetes `Status` body, else the body itself.
    pub fn status_message(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| crate::tail_lossy(self.body.as_bytes(), 500).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_the_api_server_carry_its_message_and_kind() {
        let r = Response {
            status: 404,
            body: r#"{"kind":"Status","message":"deployments.apps \"web\" not found"}"#.into(),
        };
        let e = r.ok().unwrap_err();
        assert_eq!(e.kind(), "failed");
        assert_eq!(
            e.message(),
            "Kubernetes API: deployments.apps \"web\" not found (HTTP 404)"
        );
        let r = Response {
            status: 409,
            body: "conflict".into(),
        };
        assert_eq!(r.ok().unwrap_err().kind(), "retryable");
        let r = Response {
            status: 200,
            body: r#"{"a":1}"#.into(),
        };
        assert_eq!(r.ok().unwrap()["a"], 1);
    }

    #[test]
    fn builders_fill_the_request() {
        let r = Request::patch(
            "apps/v1",
            "deployments",
            "prod",
            "web",
            PatchType::Merge,
            &serde_json::json!({"spec": {"replicas": 2}}),
        )
        .subresource("scale");
        assert_eq!(r.0.verb, "patch");
        assert_eq!(r.0.patch_type.as_deref(), Some("merge"));
        assert_eq!(r.0.subresource.as_deref(), Some("scale"));
        assert_eq!(r.0.body.as_deref(), Some(r#"{"spec":{"replicas":2}}"#));
        let w = Request::watch("apps/v1", "deployments", "prod")
            .name("web")
            .timeout(Duration::from_millis(10));
        assert_eq!(w.0.timeout_seconds, Some(1));
    }
}
