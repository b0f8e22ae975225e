//! Hostile: `describe` declares a capability that does not exist (`root`). The
//! runner must reject the plugin, not ignore the unknown kind.

use runner_sdk::serde_json::Value;
use runner_sdk::{Info, Output, Plugin, StepError};

struct UnknownCapability;

impl Plugin for UnknownCapability {
    type Input = Value;

    fn info() -> Info {
        Info::new(
            "unknown-capability",
            env!("CARGO_PKG_VERSION"),
            "declares `root`",
        )
        .capabilities(&["root"])
    }

    fn run(_: Value) -> Result<Output, StepError> {
        Ok(Output::new().summary("should not have run"))
    }
}

runner_sdk::export_plugin!(UnknownCapability);
