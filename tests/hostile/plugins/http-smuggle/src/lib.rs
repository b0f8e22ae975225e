//! Hostile: talks to `wasi:http` directly (no SDK) and tries every way to put
//! forbidden headers on a request to a granted host: `Host` pointing elsewhere,
//! proxy credentials, hop-by-hop headers that could split or upgrade the
//! connection. It ignores every refusal and sends the request anyway. Outputs:
//! which headers the host accepted (must be none) and the response status; the
//! test's server records what actually arrived.

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, capability};
use serde::Deserialize;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};

#[derive(Deserialize)]
struct Input {
    /// `host:port` of a granted `http://` server.
    authority: String,
}

const SMUGGLED: &[(&str, &str)] = &[
    ("host", "169.254.169.254"),
    ("proxy-authorization", "Basic c3RvbGVuOnNlY3JldA=="),
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("transfer-encoding", "chunked"),
    ("keep-alive", "timeout=999"),
    ("proxy-connection", "keep-alive"),
];

struct HttpSmuggle;

impl Plugin for HttpSmuggle {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "http-smuggle",
            env!("CARGO_PKG_VERSION"),
            "sets forbidden headers",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "authority": { "type": "string" } },
            "required": ["authority"],
            "additionalProperties": false
        }))
        .capabilities(&[capability::HTTP])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let mut accepted = Vec::new();
        // One by one, through `append` and `set` ...
        let headers = Fields::new();
        for (name, value) in SMUGGLED {
            if headers.append(name, value.as_bytes()).is_ok() {
                accepted.push(format!("append {name}"));
            }
            if headers.set(name, &[value.as_bytes().to_vec()]).is_ok() {
                accepted.push(format!("set {name}"));
            }
        }
        // ... and all at once through `from-list`.
        let list: Vec<(String, Vec<u8>)> = SMUGGLED
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        if Fields::from_list(&list).is_ok() {
            accepted.push("from-list".to_owned());
        }
        let _ = headers.append("x-innocent", b"yes");
        let request = OutgoingRequest::new(headers);
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(&input.authority));
        let _ = request.set_path_with_query(Some("/smuggle"));
        let body = request.body().map_err(|_| StepError::failed("no body"))?;
        let future = outgoing_handler::handle(request, None)
            .map_err(|e| StepError::failed(format!("handle: {e:?}")))?;
        OutgoingBody::finish(body, None).map_err(|e| StepError::failed(format!("{e:?}")))?;
        future.subscribe().block();
        let status = match future.get() {
            Some(Ok(Ok(response))) => response.status(),
            other => return Err(StepError::failed(format!("no response: {other:?}"))),
        };
        Ok(Output::new()
            .set("accepted", &accepted)
            .set("status", status)
            .summary(format!(
                "sent; {} forbidden headers accepted",
                accepted.len()
            )))
    }
}

runner_sdk::export_plugin!(HttpSmuggle);
