//! Log lines and progress, sent to the runner (the `log` import, always granted).
//!
//! Why not `println!`: stdout and stderr of a plugin are captured as raw text,
//! while these lines reach the terminal, the JSON event stream and the journal
//! with their level and fields. The host caps their rate and size and redacts
//! secret values, so logging cannot flood a run or leak a granted secret.
//!
//! Outside the runner (a plugin's unit tests on the build machine) lines go to
//! stderr instead.

use serde::Serialize;

use crate::bindings::runner::plugin::log as wit;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed, for debugging the plugin itself.
    Trace,
    /// Detail useful when a step misbehaves.
    Debug,
    /// Normal progress: what the step is doing.
    Info,
    /// Something unexpected that the step survived.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn into_wit(self) -> wit::Level {
        match self {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }
}

/// Logs `message` at `level` with structured `fields`, which should serialize to
/// a JSON object (anything else is wrapped as `{"value": ...}`).
///
/// ```ignore
/// log::log_with(Level::Info, "deployed", json!({ "revision": rev, "pods": 3 }));
/// ```
pub fn log_with(level: Level, message: impl AsRef<str>, fields: impl Serialize) {
    let fields = match serde_json::to_value(fields) {
        Ok(serde_json::Value::Null) => String::new(),
        Ok(value @ serde_json::Value::Object(_)) => value.to_string(),
        Ok(value) => serde_json::json!({ "value": value }).to_string(),
        Err(e) => serde_json::json!({ "fields_error": e.to_string() }).to_string(),
    };
    emit(level, message.as_ref(), &fields);
}

/// Logs `message` at `level`, without fields.
pub fn log(level: Level, message: impl AsRef<str>) {
    emit(level, message.as_ref(), "");
}

/// Logs `message` at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs `message` at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs `message` at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs `message` at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs `message` at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

/// Reports progress: `done` of `total` units (`None` if the total is unknown),
/// with a short message such as `"3/10 pods ready"`.
pub fn progress(done: u64, total: Option<u64>, message: impl AsRef<str>) {
    #[cfg(target_arch = "wasm32")]
    wit::progress(done, total, message.as_ref());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!(
        "[progress] {done}/{} {}",
        total.map_or_else(|| "?".to_owned(), |t| t.to_string()),
        message.as_ref()
    );
}

fn emit(level: Level, message: &str, fields: &str) {
    #[cfg(target_arch = "wasm32")]
    wit::log(level.into_wit(), message, fields);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message} {fields}");
}
