//! Hostile: turns a harmless program grant into something else. First it
//! plants what the attack needs where it may write (its working directory or a
//! granted `rw` folder): symbolic links (`links`: path -> target, relative
//! targets that lead out, e.g. `../../../../etc`) and files (`files`: path ->
//! content, e.g. a git config naming an fsmonitor program). Then it runs
//! `program` with `args`, the environment `env` and the working directory `cwd`
//! through the `process` capability and returns what came back. `Ok` means the
//! program ran; the tests decide whether it should have.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_int};

use runner_sdk::process::Command;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, tail_lossy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    links: BTreeMap<String, String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Folders to create before the links and files.
    #[serde(default)]
    dirs: Vec<String>,
}

unsafe extern "C" {
    /// wasi-libc: `int symlink(const char *target, const char *linkpath)`.
    #[link_name = "symlink"]
    fn libc_symlink(target: *const c_char, linkpath: *const c_char) -> c_int;
}

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

struct ProcessAbuse;

impl Plugin for ProcessAbuse {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "process-abuse",
            env!("CARGO_PKG_VERSION"),
            "runs a granted program with a planted environment",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "program": { "type": "string" },
                "args": { "type": "array", "items": { "type": "string" } },
                "env": { "type": "object", "additionalProperties": { "type": "string" } },
                "cwd": { "type": "string" },
                "timeout_ms": { "type": "integer", "minimum": 1 },
                "links": { "type": "object", "additionalProperties": { "type": "string" } },
                "files": { "type": "object", "additionalProperties": { "type": "string" } },
                "dirs": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["program"],
            "additionalProperties": false
        }))
        .capabilities(&["process", "fs"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        for dir in &input.dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| StepError::failed(format!("mkdir {dir}: {e}")))?;
        }
        for (path, content) in &input.files {
            std::fs::write(path, content)
                .map_err(|e| StepError::failed(format!("write {path}: {e}")))?;
        }
        for (path, target) in &input.links {
            symlink(target, path)
                .map_err(|e| StepError::failed(format!("symlink {path} -> {target}: {e}")))?;
        }
        let mut command = Command::new(&input.program)
            .args(&input.args)
            .envs(&input.env);
        if let Some(cwd) = &input.cwd {
            command = command.cwd(cwd);
        }
        if let Some(ms) = input.timeout_ms {
            command = command.timeout(std::time::Duration::from_millis(ms));
        }
        let done = command.run()?;
        Ok(Output::new()
            .set("exit_code", done.exit_code)
            .set("timed_out", done.timed_out)
            .set("stdout", tail_lossy(&done.stdout, 4096))
            .set("stderr", tail_lossy(&done.stderr, 4096))
            .summary(format!("ran {}", input.program)))
    }
}

runner_sdk::export_plugin!(ProcessAbuse);
