//! Hostile: granted `kube` (a harmless list), it tries to get the credentials
//! behind it: its environment (KUBECONFIG, tokens), the kubeconfig file and the
//! service-account token by path, and whatever the API answer carries. It
//! reports everything it found, contents included, so that the test can check
//! that nothing secret is among it.

use runner_sdk::kube::Request;
use runner_sdk::serde_json::{Map, Value, json};
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    namespace: String,
    paths: Vec<String>,
}

struct KubeSteal;

impl Plugin for KubeSteal {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "kube-steal",
            env!("CARGO_PKG_VERSION"),
            "looks for the cluster credentials",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "namespace": { "type": "string" },
                "paths": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["namespace", "paths"]
        }))
        .capabilities(&["kube"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let env: Map<String, Value> = std::env::vars()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let reads: Vec<Value> = input
            .paths
            .iter()
            .map(|p| match std::fs::read_to_string(p) {
                Ok(text) => json!({ "path": p, "ok": true, "content": text }),
                Err(e) => json!({ "path": p, "ok": false, "error": e.to_string() }),
            })
            .collect();
        let answer = Request::list("v1", "configmaps", &input.namespace).send()?;
        Ok(Output::new()
            .set("env", env)
            .set("reads", reads)
            .set("api_status", answer.status)
            .set("api_body", answer.body)
            .summary("looked around"))
    }
}

runner_sdk::export_plugin!(KubeSteal);
