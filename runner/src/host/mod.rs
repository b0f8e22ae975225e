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
//! - `Builtin`, `BUILTINS`, `builtin`: the table of built-in plugins, kept in
//!   `crate::builtins` (below `playbook`, whose checks name them).
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

pub use crate::builtins::{BUILTINS, Builtin, builtin};
pub use crate::caps::text;
pub use crate::caps::text::redact;
