//! `exec`: runs one granted program and reports how it went.
//!
//! Why a plugin and not a shell: the program runs through the runner's `process`
//! capability, so only programs the playbook grants can run, with an explicit
//! environment (never the runner's), a working directory inside a granted path,
//! and a timeout. The outputs keep the last 4 KiB of stdout and stderr for
//! gates and reports.

use std::collections::BTreeMap;
use std::time::Instant;

use runner_sdk::process::Command;
use runner_sdk::serde_json::json;
use runner_sdk::{Info, Output, Plugin, StepError, capability, tail_lossy};
use serde::Deserialize;

/// How much of stdout and stderr the outputs keep (the end).
const TAIL_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Environment variables whose values are granted secrets: VAR -> SECRET.
    #[serde(default)]
    secret_env: BTreeMap<String, String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    allow_failure: bool,
}

struct Exec;

impl Plugin for Exec {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "exec",
            env!("CARGO_PKG_VERSION"),
            "run an allowlisted program (tests, builds, audits)",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "program": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The program: a name on PATH or an absolute path. It must be granted under `process`."
                },
                "args": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "Its arguments, passed as they are (no shell)."
                },
                "cwd": {
                    "type": "string",
                    "description": "Working directory, inside a granted `fs` path."
                },
                "env": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                    "description": "The program's whole environment; the runner's is never passed on. Beyond LANG, LANGUAGE, LC_*, TZ and NO_COLOR, each name must be granted with the program: `process: [{ run: npm, env: [CI] }]`."
                },
                "secret_env": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                    "description": "Environment variables set to granted secrets, `VAR: SECRET_NAME` (e.g. `NPM_TOKEN: NPM_TOKEN`); the secret must be granted under `secrets` and the variable's name with the program (`process: [{ run: npm, env: [NPM_TOKEN] }]`). Its value is redacted from everything the step reports."
                },
                "timeout": {
                    "type": "string",
                    "pattern": "^([0-9]+(ms|s|m|h))+$",
                    "description": "Kill the program after this long, e.g. `90s`, `5m`, `1m30s`."
                },
                "allow_failure": {
                    "type": "boolean",
                    "description": "Succeed even if the program exits non-zero or times out."
                }
            },
            "required": ["program"],
            "additionalProperties": false
        }))
        .sinks(&[("program", "command"), ("args", "command"), ("env", "command")])
        .capabilities(&[capability::PROCESS, "secrets?"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let mut command = Command::new(&input.program)
            .args(&input.args)
            .envs(&input.env);
        for (var, secret) in &input.secret_env {
            command = command.env(var, runner_sdk::secrets::get(secret)?);
        }
        if let Some(cwd) = &input.cwd {
            command = command.cwd(cwd);
        }
        if let Some(timeout) = &input.timeout {
            command = command.timeout(
                runner_sdk::parse_duration(timeout)
                    .map_err(|e| StepError::InvalidInput(format!("`timeout`: {e}")))?,
            );
        }

        let shown = display_command(&input.program, &input.args);
        let started = Instant::now();
        let done = command.run()?;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let stderr_tail = tail_lossy(&done.stderr, TAIL_BYTES);

        let outcome = match (done.exit_code, done.timed_out) {
            (_, true) => Err(format!(
                "`{shown}` timed out after {}",
                input.timeout.as_deref().unwrap_or("its timeout")
            )),
            (Some(0), false) => Ok(()),
            (Some(code), false) => Err(format!("`{shown}` exited with code {code}")),
            (None, false) => Err(format!("`{shown}` was killed by a signal")),
        };
        let summary = match &outcome {
            Ok(()) => format!("`{shown}` succeeded in {duration_ms} ms"),
            Err(why) if input.allow_failure => format!("{why} (allowed)"),
            Err(why) => {
                let stderr = stderr_tail.trim_end();
                return Err(StepError::Failed(if stderr.is_empty() {
                    format!("{why}; stderr was empty")
                } else {
                    format!("{why}; stderr ends with:\n{stderr}")
                }));
            }
        };

        Ok(Output::new()
            .set("exit_code", done.exit_code)
            .set("stdout_tail", tail_lossy(&done.stdout, TAIL_BYTES))
            .set("stderr_tail", &stderr_tail)
            .set("timed_out", done.timed_out)
            .set("truncated", done.truncated)
            .set("duration_ms", duration_ms)
            .summary(summary))
    }
}

/// `program arg1 "arg with space"`, cut to 120 characters, for messages.
fn display_command(program: &str, args: &[String]) -> String {
    let mut shown = program.to_owned();
    for arg in args {
        shown.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"') {
            shown.push_str(&format!("{arg:?}"));
        } else {
            shown.push_str(arg);
        }
    }
    if shown.chars().count() > 120 {
        shown = shown.chars().take(119).collect::<String>() + "…";
    }
    shown
}

runner_sdk::export_plugin!(Exec);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_messages() {
        let args = vec!["test".to_owned(), "a b".to_owned(), String::new()];
        assert_eq!(display_command("npm", &args), r#"npm test "a b" """#);
    }
}
