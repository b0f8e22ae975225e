//! Hostile: returns text that would forge what a person reads if the host
//! showed it as it is: terminal escapes that clear the screen and retitle the
//! window, NUL, a carriage return, newlines followed by a markdown table row and
//! a heading, HTML, and bidi overrides. `how`:
//!
//! - `fail`: fails with that text as the error message.
//! - `keys`: succeeds with outputs whose keys (and values) are that text, and a
//!   summary and a log line of it.

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    how: String,
}

/// Every trick at once; each piece also alone, as an output key.
const PIECES: &[&str] = &[
    "\u{1b}[2J\u{1b}[H",
    "\u{1b}]0;ALL GREEN\u{7}",
    "nul\0byte",
    "over\rwrite",
    "\n| forged | row |\n",
    "\n# ALL GREEN\n",
    "<script>alert(1)</script><!--",
    "`code` **bold**",
    "evil\u{202e}txt.exe",
    "line\u{2028}separator",
];

struct ForgeDisplay;

impl Plugin for ForgeDisplay {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "forge-display",
            env!("CARGO_PKG_VERSION"),
            "forges what a person reads",
        )
        .input_schema(json!({
            "type": "object",
            "properties": { "how": { "type": "string" } },
            "required": ["how"],
            "additionalProperties": false
        }))
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let all = format!("boom{}", PIECES.concat());
        match input.how.as_str() {
            "fail" => Err(StepError::failed(all)),
            "keys" => {
                log::info(&all);
                let mut out = Output::new().summary(all.clone());
                for (i, p) in PIECES.iter().enumerate() {
                    out = out.set(format!("k{i}{p}"), *p);
                }
                Ok(out)
            }
            other => Err(StepError::invalid_input(format!("unknown how `{other}`"))),
        }
    }
}

runner_sdk::export_plugin!(ForgeDisplay);
