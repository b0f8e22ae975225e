//! Hostile: lists Secrets in `namespace` through the `kube` import (raw
//! bindings: the SDK has no typed wrapper yet) without a `kube` grant. The host
//! must refuse without making the call.

use runner_sdk::bindings::runner::plugin::kube;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default = "default_namespace")]
    namespace: String,
}

fn default_namespace() -> String {
    "kube-system".to_owned()
}

struct KubeUngranted;

impl Plugin for KubeUngranted {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "kube-ungranted",
            env!("CARGO_PKG_VERSION"),
            "calls kube without a grant",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "namespace": { "type": "string" } },
            "additionalProperties": false
        }))
        .capabilities(&["kube"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let request = kube::Request {
            verb: "list".to_owned(),
            api_version: "v1".to_owned(),
            resource: "secrets".to_owned(),
            subresource: None,
            namespace: Some(input.namespace),
            name: None,
            label_selector: None,
            field_selector: None,
            patch_type: None,
            body: None,
            resource_version: None,
            timeout_seconds: None,
            query: Vec::new(),
        };
        let response = kube::call(&request).map_err(StepError::Denied)?;
        Ok(Output::new()
            .set("status", response.status)
            .set("body", response.body)
            .summary("listed secrets"))
    }
}

runner_sdk::export_plugin!(KubeUngranted);
