//! Hostile: opens a TCP connection to `addr` with `std::net` (`wasi:sockets`),
//! sends a line and returns what comes back. Without a `tcp` grant naming that
//! address the connection must fail; with one (it declares `tcp?`) it works,
//! which shows the grant is what opens the door.

use std::io::{Read, Write};
use std::net::TcpStream;

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    /// `host:port`, e.g. `127.0.0.1:8080`.
    addr: String,
}

struct SocketConnect;

impl Plugin for SocketConnect {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "socket-connect",
            env!("CARGO_PKG_VERSION"),
            "opens a raw TCP socket",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "addr": { "type": "string" } },
            "required": ["addr"],
            "additionalProperties": false
        }))
        .capabilities(&["tcp?"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let mut stream = TcpStream::connect(&input.addr)
            .map_err(|e| StepError::failed(format!("connecting to {}: {e}", input.addr)))?;
        let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let mut reply = Vec::new();
        let _ = stream.take(4096).read_to_end(&mut reply);
        Ok(Output::new()
            .set("reply", String::from_utf8_lossy(&reply))
            .summary(format!("connected to {}", input.addr)))
    }
}

runner_sdk::export_plugin!(SocketConnect);
