//! Secrets the playbook granted to this step (the `secrets` import).
//!
//! Why a host call and not an environment variable: a plugin's environment is
//! empty, and a secret exists inside the sandbox only when this step was granted
//! it by name. The runner redacts every granted secret's value from logs, the
//! journal and reports, but a plugin should still never put one in its outputs.
//!
//! Declare [`crate::capability::SECRETS`] in [`crate::Info::capabilities`].

use crate::StepError;

/// The value of the granted secret `name`.
///
/// A secret that was not granted is [`StepError::Denied`] with the host's
/// message, which names the missing grant; `?` ends the step with it.
pub fn get(name: &str) -> Result<String, StepError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::runner::plugin::secrets::get(name).map_err(StepError::Denied)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(StepError::Denied(format!(
            "secret `{name}`: not running inside the runner"
        )))
    }
}
