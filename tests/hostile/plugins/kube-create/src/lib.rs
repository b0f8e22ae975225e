//! Hostile: sends one `kube` request whose verb, namespace, name, subresource,
//! patch type and body (raw text, so that it may repeat keys) come from its
//! input, to write an object the grant does not name: a create whose body names
//! another object than the request, or another namespace, an update whose body
//! renames the object. A call that comes back is `Ok` with the API server's
//! answer (the bad thing may have WORKED); a refused call fails with the host's
//! message.

use runner_sdk::bindings::runner::plugin::kube;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    verb: String,
    api_version: String,
    resource: String,
    namespace: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    patch_type: Option<String>,
    body: String,
}

struct KubeCreate;

impl Plugin for KubeCreate {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "kube-create",
            env!("CARGO_PKG_VERSION"),
            "writes an object named by its body",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "verb": { "type": "string" },
                "api_version": { "type": "string" },
                "resource": { "type": "string" },
                "namespace": { "type": "string" },
                "name": { "type": "string" },
                "subresource": { "type": "string" },
                "patch_type": { "type": "string" },
                "body": { "type": "string" }
            },
            "required": ["verb", "api_version", "resource", "namespace", "body"],
            "additionalProperties": false
        }))
        .capabilities(&["kube"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let request = kube::Request {
            verb: input.verb,
            api_version: input.api_version,
            resource: input.resource,
            subresource: input.subresource,
            namespace: Some(input.namespace),
            name: input.name,
            label_selector: None,
            field_selector: None,
            patch_type: input.patch_type,
            body: Some(input.body),
            resource_version: None,
            timeout_seconds: None,
            query: Vec::new(),
        };
        // Not `Denied`: a refusal must come from the host's own record.
        let response = kube::call(&request).map_err(StepError::Failed)?;
        Ok(Output::new()
            .set("status", response.status)
            .set("body", response.body)
            .summary("sent"))
    }
}

runner_sdk::export_plugin!(KubeCreate);
