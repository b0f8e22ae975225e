//! The plugin host: every step runs as a WebAssembly component in a wasmtime
//! sandbox that can do only what the playbook granted.
//!
//! - `artifacts`: files a step leaves behind, checked and copied out.
//! - `bindings`: host side of the contract in `sdk/wit`.
//! - `cache`: compiled components on disk, keyed by content and engine.
//! - `check`: `runner plugins check`, a component diagnosed against the contract.
//! - `failure`: why a step attempt failed.
//! - `runtime`: engine, limits, loading, one fresh store per step attempt.
//! - `state`: per-attempt state and the host side of each capability.
//! - `redact`, `text`: names kept for `caps::text` (text from a plugin
//!   redacted, escaped and cut before anyone sees it) and `caps::text::redact`,
//!   which moved to `caps` as the `log` capability applies them too.
//! - `oci`: plugins from OCI registries (`oci://…@sha256:…`), pushed, pulled, kept by digest.
//! - `resolve`: `uses:` to a loaded plugin (built-in, pinned file or OCI digest) and its grants.
//!
//! The capabilities themselves (what each grant allows, how it is checked) are
//! in `crate::caps`, one module each.

pub mod artifacts;
pub mod bindings;
pub mod cache;
pub mod check;
pub mod failure;
pub mod oci;
pub mod resolve;
pub mod runtime;
pub mod sinks;
pub mod state;

pub use crate::caps::text;
pub use crate::caps::text::redact;

/// A plugin that ships inside the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
    /// The component, embedded at build time (see `runner/build.rs`); `None` for a
    /// plugin whose implementation has not landed yet.
    pub wasm: Option<&'static [u8]>,
}

macro_rules! embedded {
    ($name:literal) => {
        Some(include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")).as_slice())
    };
}

/// The built-in plugins, by the name a playbook's `uses:` gives them.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "echo",
        summary: "returns its inputs; can sleep or fail on request (tests, benchmarks)",
        wasm: embedded!("echo"),
    },
    Builtin {
        name: "exec",
        summary: "run an allowlisted program (tests, builds, audits)",
        wasm: embedded!("exec"),
    },
    Builtin {
        name: "fs",
        summary: "write, append and copy files in granted folders",
        wasm: embedded!("fs"),
    },
    Builtin {
        name: "git",
        summary: "branch, commit, tag, push, merge with the real git",
        wasm: embedded!("git"),
    },
    Builtin {
        name: "http-check",
        summary: "health and smoke checks with assertions",
        wasm: embedded!("http-check"),
    },
    Builtin {
        name: "kubectl",
        summary: "set image, rollout status / undo / history, scale, canary weights, get, patch",
        wasm: embedded!("kubectl"),
    },
    Builtin {
        name: "load-test",
        summary: "HTTP load with latency percentiles and thresholds",
        wasm: embedded!("load-test"),
    },
    Builtin {
        name: "notify",
        summary: "Slack, webhook and e-mail notifications",
        wasm: embedded!("notify"),
    },
    Builtin {
        name: "prometheus",
        summary: "PromQL queries for metric gates",
        wasm: embedded!("prometheus"),
    },
    Builtin {
        name: "report",
        summary: "write a rendered markdown report into a granted folder",
        wasm: embedded!("report"),
    },
];

/// The built-in plugin called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
