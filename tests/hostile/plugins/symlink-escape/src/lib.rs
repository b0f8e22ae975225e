//! Hostile: creates a symlink at `path` (inside a granted, writable directory)
//! pointing at `target` (default `/etc`), then reads `path/read` (default
//! `passwd`) through it. If the symlink cannot be created the read is still
//! tried, so a test can plant the link itself. The read must fail.
//!
//! `std::os::wasi::fs::symlink_path` is unstable, so this calls wasi-libc's
//! `symlink` (which std already links) directly.

use std::ffi::{CString, c_char, c_int};

use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    /// Where to create the symlink, e.g. `granted/link`.
    path: String,
    /// What it points at.
    #[serde(default = "default_target")]
    target: String,
    /// The file to read through it.
    #[serde(default = "default_read")]
    read: String,
}

fn default_target() -> String {
    "/etc".to_owned()
}

fn default_read() -> String {
    "passwd".to_owned()
}

unsafe extern "C" {
    /// wasi-libc: `int symlink(const char *target, const char *linkpath)`.
    #[link_name = "symlink"]
    fn libc_symlink(target: *const c_char, linkpath: *const c_char) -> c_int;
}

/// Creates the symlink `link` -> `target`, resolving `link` against the
/// preopened directories like any other path.
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    let target = CString::new(target)?;
    let link = CString::new(link)?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    if unsafe { libc_symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

struct SymlinkEscape;

impl Plugin for SymlinkEscape {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "symlink-escape",
            env!("CARGO_PKG_VERSION"),
            "reads through a symlink",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "path": { "type": "string" },
                "target": { "type": "string" },
                "read": { "type": "string" }
            },
            "required": ["path"],
            "additionalProperties": false
        }))
        .capabilities(&["fs"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let link = match symlink(&input.target, &input.path) {
            Ok(()) => "created".to_owned(),
            Err(e) => format!("not created: {e}"),
        };
        let through = format!("{}/{}", input.path, input.read);
        match std::fs::read(&through) {
            Ok(bytes) => Ok(Output::new()
                .set("link", &link)
                .set("content", String::from_utf8_lossy(&bytes))
                .summary(format!("read {through}"))),
            Err(e) => Err(StepError::failed(format!(
                "symlink {} -> {}: {link}; reading {through}: {e}",
                input.path, input.target
            ))),
        }
    }
}

runner_sdk::export_plugin!(SymlinkEscape);
