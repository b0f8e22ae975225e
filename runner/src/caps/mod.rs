//! Capabilities: what a plugin may do beyond computing, one module each, all of
//! the same shape:
//!
//! 1. a grant type, parsed once from the playbook's `grants:`;
//! 2. a check that turns a plugin's request into an allowed action or a refusal
//!    naming the grant to add;
//! 3. the host implementation of the allowed action;
//! 4. deny-path tests next to the code, and hostile plugins in `tests/hostile`.
//!
//! Each module's doc starts with its threat model: who attacks, and what must
//! never happen. Status: `process`, `fs` and the sources of `secrets` are here; `log` and the
//! secrets host call live in `host::state`, redaction in `host::redact`; `http` has its grant parser and address policy here (used by validation) but
//! is not linked to `wasi:http` yet; `kube` is refused until its module lands.

pub mod fs;
pub mod http;
pub mod process;
pub mod secrets;
