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
//! never happen. The host calls are wired to these modules in `host::state`.
//! Three modules are not capabilities but what capabilities share:
//! [`authority`], the one grammar of a granted host and port (`http`, `tcp`),
//! [`grants`], the entries of a playbook's `grants:` as written, and [`text`],
//! how text from a plugin is made safe to keep and show (redaction of secret
//! values in [`text::redact`]).
//!
//! `caps` sits below `playbook` and `host`: it names neither. The playbook's
//! validation calls the capabilities' parsers, and `host` wires them to the
//! plugin's imports.
//!
//! Every refusal is also recorded in the attempt's [`Denials`]: the plugin may
//! swallow or garble the error it gets, but the step's error and log always carry
//! the host's own message.

use std::sync::{Arc, Mutex};

pub mod authority;
pub mod fs;
pub mod grants;
pub mod http;
pub mod kube;
pub mod log;
pub mod process;
pub mod secrets;
pub mod tcp;
pub mod text;

/// The refusals of one step attempt, in order, shared with tasks that outlive a
/// host call (an HTTP request is sent from a spawned task).
#[derive(Debug, Clone, Default)]
pub struct Denials(Arc<Mutex<Vec<String>>>);

impl Denials {
    /// Records a refusal and hands it back, for the plugin's error.
    pub fn record(&self, message: String) -> String {
        if let Ok(mut list) = self.0.lock() {
            // A plugin looping on refused calls must not grow this without end.
            if list.len() < 100 {
                list.push(message.clone());
            }
        }
        message
    }

    /// The refusals so far.
    pub fn list(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Refusal of a capability the plugin did not declare in `describe`.
pub fn undeclared(plugin: &str, capability: &str) -> String {
    format!(
        "plugin `{plugin}` used the `{capability}` capability without declaring it in `describe`; the plugin is at fault"
    )
}
