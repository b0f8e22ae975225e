//! Capabilities: what a plugin may do beyond computing, one module each, all of
//! one shape, the [`Capability`] trait ([`capability`] has its phases):
//!
//! 1. a grammar of grant entries, parsed once, at load, into typed values
//!    ([`GrantEntry`]: what was written, and what it means);
//! 2. a grant configured once per playbook from those values, and what each
//!    step attempt gets from it;
//! 3. a check that turns a plugin's request into an allowed action or a refusal
//!    naming the grant to add;
//! 4. the host implementation of the allowed action;
//! 5. deny-path tests next to the code, and hostile plugins in `tests/hostile`.
//!
//! The capabilities: [`http::Http`], [`tcp::Tcp`], [`fs::Fs`],
//! [`process::Process`], [`kube::Kube`] and [`secrets::Secrets`]; [`log`] is
//! always granted and has no grant. Each module's doc starts with its threat
//! model: who attacks, and what must never happen. The host calls are wired to
//! these modules in `host::state`. Four modules are not capabilities but what
//! capabilities share: [`capability`], the trait and a grant entry;
//! [`authority`], the one grammar of a granted host and port (`http`, `tcp`);
//! [`grants`], the written forms of entries that are not plain strings; and
//! [`text`], how text from a plugin is made safe to keep and show (redaction of
//! secret values in [`text::redact`]).
//!
//! `caps` sits below `playbook` and `host`: it names neither. The playbook's
//! model holds grant entries (parsed by the capabilities' parsers as it is
//! deserialised) and its validation reports their problems; `host` configures
//! and prepares the grants and wires the checks to the plugin's imports.
//!
//! Every refusal is also recorded in the attempt's [`Denials`]: the plugin may
//! swallow or garble the error it gets, but the step's error and log always carry
//! the host's own message.

use std::sync::{Arc, Mutex};

pub use capability::{Attempt, Capability, ConfigureContext, Entries, GrantEntry};

pub mod authority;
pub mod capability;
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
