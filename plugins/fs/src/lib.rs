//! `fs`: write, append and copy files in granted folders.
//!
//! Why a plugin: playbooks leave evidence behind (saved logs, metric snapshots,
//! the deployment's configuration, a changelog entry). The `with:` values are
//! already rendered by the runner (`${{ }}`), so this plugin only puts text or
//! JSON where the playbook granted it, and returns the sha256 a post-mortem
//! cites. Paths are as the playbook grants them (`artifacts/...`).

mod files;

use runner_sdk::serde_json::{Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    op: String,
    path: String,
    /// write / append: text, or any JSON value (written pretty-printed).
    #[serde(default)]
    content: Option<Value>,
    /// copy: the file to copy to `path`.
    #[serde(default)]
    from: Option<String>,
}

struct Fs;

impl Plugin for Fs {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "fs",
            env!("CARGO_PKG_VERSION"),
            "write, append and copy files in granted folders",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {
                "op": { "enum": ["write", "append", "copy"], "description": "write (replace), append, or copy `from` to `path`." },
                "path": { "type": "string", "minLength": 1, "description": "The file, inside a folder granted with `access: rw`." },
                "content": { "description": "write / append: text, or JSON (written pretty-printed)." },
                "from": { "type": "string", "minLength": 1, "description": "copy: the source file, inside a granted folder." }
            },
            "required": ["op", "path"],
            "additionalProperties": false,
            "allOf": [
                { "if": { "properties": { "op": { "const": "copy" } } }, "then": { "required": ["from"] } },
                { "if": { "properties": { "op": { "enum": ["write", "append"] } } }, "then": { "required": ["content"] } }
            ]
        }))
        .capabilities(&[capability::FS])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let folders = runner_sdk::fs::granted();
        let data: Vec<u8> = match input.op.as_str() {
            "write" | "append" => match input.content {
                Some(Value::String(s)) => s.into_bytes(),
                Some(other) => {
                    let mut text = runner_sdk::serde_json::to_string_pretty(&other)
                        .map_err(|e| StepError::failed(e.to_string()))?;
                    text.push('\n');
                    text.into_bytes()
                }
                None => return Err(StepError::invalid_input("`content` is missing")),
            },
            "copy" => {
                let from = input
                    .from
                    .as_deref()
                    .ok_or_else(|| StepError::invalid_input("`from` is missing"))?;
                std::fs::read(from)
                    .map_err(|e| StepError::failed(format!("cannot read `{from}`: {e}")))?
            }
            other => {
                return Err(StepError::invalid_input(format!(
                    "`{other}` is not an op of fs"
                )));
            }
        };
        let sha256 = files::write(&folders, &input.path, &data, input.op == "append")?;
        Ok(Output::new()
            .set("path", &input.path)
            .set("bytes", data.len())
            .set("sha256", &sha256)
            .summary(format!(
                "{} {} ({} bytes)",
                input.op,
                input.path,
                data.len()
            )))
    }
}

runner_sdk::export_plugin!(Fs);
