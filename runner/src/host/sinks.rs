//! Where inputs reach the fields of a plugin that read text as something more than
//! text: a query, a URL, an object's name, a command, a chat message.
//!
//! Inputs are data (they never become CEL), but a plugin still reads its `with:`
//! fields in its own language: a PromQL query, a URL, a Kubernetes name, Slack's
//! markup. Whoever supplies inputs (a person, an alert, an API caller) then writes
//! part of that query or URL. Plugins escape and refuse what they can; the
//! playbook's author should also say what an input may be. A plugin marks such
//! fields in its input schema with `"x-runner-sink": "<kind>"`, and `runner
//! validate` notes every string input that reaches one without a rule narrowing
//! it (`pattern`, `format` or `enum`; for chat text, `max_length` is enough: free
//! text is what a message is for, and the notify plugin escapes its markup).
//!
//! Only direct references are followed (`${{ inputs.service }}` or an expression
//! that reads `inputs.service`); a value that travels through a step's outputs is
//! that step's business.

use std::collections::HashMap;

use serde_json::Value;

use super::runtime::LoadedPlugin;
use crate::playbook::model::{Input, InputType, Step};
use crate::playbook::yaml::{Path, Target};
use crate::playbook::{Problem, Validated};

/// The schema keyword a plugin uses to mark a field.
pub const KEYWORD: &str = "x-runner-sink";

/// What a marked field is, for messages: `query` → "a query".
fn described(kind: &str) -> &str {
    match kind {
        "query" => "a query",
        "url" => "a URL",
        "object-name" => "an object's name",
        "image" => "an image reference",
        "command" => "a command line",
        "chat" => "chat text",
        _ => "a field its plugin marks as sensitive",
    }
}

/// Whether `input` says enough about its values to reach a `kind` field.
fn narrowed(input: &Input, kind: &str) -> bool {
    input.kind != InputType::String
        || input.pattern.is_some()
        || input.format.is_some()
        || input.allowed.is_some()
        || (kind == "chat" && input.max_length.is_some())
}

/// A note for every unnarrowed string input that reaches a marked field of a
/// step's plugin, among `loaded`, at the field.
pub fn notes(validated: &Validated, loaded: &HashMap<String, LoadedPlugin>) -> Vec<Problem> {
    let mut notes = Vec::new();
    validated.each_step(|step: &Step, path: Path| {
        let Some(plugin) = step.uses.as_ref().and_then(|u| loaded.get(u.as_str())) else {
            return;
        };
        let schema = &plugin.description.input_schema;
        for (key, value) in &step.with {
            let at = path.key("with").key(key);
            visit(
                value,
                field(schema, key),
                None,
                at,
                &mut |text, kind, at| {
                    for name in inputs_read(text) {
                        let Some(input) = validated.playbook.inputs.get(name.as_str()) else {
                            continue;
                        };
                        if narrowed(input, kind) {
                            continue;
                        }
                        let rule = if kind == "chat" {
                            "`max_length`, `pattern`, `format` or `enum`"
                        } else {
                            "`pattern`, `format` or `enum`"
                        };
                        notes.push(Problem::at(
                        &validated.tree,
                        at,
                        Target::Value,
                        format!(
                            "input `{name}` reaches {} (plugin `{}`) and may be any text: whoever supplies inputs writes part of it; give `inputs.{name}` a {rule}",
                            described(kind),
                            plugin.description.name
                        ),
                    ));
                    }
                },
            );
        }
    });
    notes.sort();
    notes.dedup();
    notes
}

/// Calls `found(text, kind, at)` for each string in `value` that sits in a field
/// marked with a sink kind: by `schema` (the schema of `value`, when known) or,
/// for what a marked array or map holds, by its container (`inherited`).
fn visit(
    value: &Value,
    schema: Option<&Value>,
    inherited: Option<&str>,
    at: Path,
    found: &mut impl FnMut(&str, &str, &Path),
) {
    let kind = schema
        .and_then(|s| s.get(KEYWORD))
        .and_then(Value::as_str)
        .or(inherited);
    match value {
        Value::String(text) => {
            if let Some(kind) = kind {
                found(text, kind, &at);
            }
        }
        Value::Array(items) => {
            let sub = schema.and_then(|s| s.get("items"));
            for (i, item) in items.iter().enumerate() {
                visit(item, sub, kind, at.index(i), found);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                visit(v, schema.and_then(|s| field(s, k)), kind, at.key(k), found);
            }
        }
        _ => {}
    }
}

/// The schema of the field `key` of an object whose schema is `schema`: its
/// `properties` entry, else `additionalProperties`, looking into `allOf`, `anyOf`
/// and `oneOf` branches and `then` / `else` (a field marked in any branch counts).
fn field<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    if let Some(p) = schema.get("properties").and_then(|p| p.get(key)) {
        return Some(p);
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = field(branch, key) {
                return Some(p);
            }
        }
    }
    for conditional in ["then", "else"] {
        if let Some(p) = schema.get(conditional).and_then(|c| field(c, key)) {
            return Some(p);
        }
    }
    schema.get("additionalProperties").filter(|a| a.is_object())
}

/// The input names a template reads (`inputs.NAME`), in order, once each.
fn inputs_read(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(pieces) = crate::expr::parse_template(text) else {
        return names;
    };
    for piece in pieces {
        let crate::expr::Piece::Expr { source, .. } = piece else {
            continue;
        };
        let Ok(compiled) = crate::expr::compile(source) else {
            continue;
        };
        for r in compiled.references() {
            if r.root == "inputs"
                && let Some(name) = r.fields.first()
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_name_the_inputs_they_read() {
        assert_eq!(
            inputs_read(
                "up{job=\"${{ inputs.job }}\", ns=\"${{ inputs.ns + '-x' }}\"} ${{ inputs.job }}"
            ),
            ["job", "ns"]
        );
        assert!(inputs_read("${{ steps.a.outputs.x }} plain").is_empty());
        assert!(inputs_read("${{ unclosed").is_empty());
    }

    #[test]
    fn fields_are_found_through_properties_branches_and_maps() {
        let schema = json!({
            "properties": { "query": { "type": "string", KEYWORD: "query" } },
            "oneOf": [{ "properties": { "name": { KEYWORD: "object-name" } } }],
            "additionalProperties": { "type": "string", KEYWORD: "chat" }
        });
        let kind = |k: &str| {
            field(&schema, k)
                .and_then(|s| s.get(KEYWORD))
                .and_then(Value::as_str)
        };
        assert_eq!(kind("query"), Some("query"));
        assert_eq!(kind("name"), Some("object-name"));
        assert_eq!(kind("anything"), Some("chat"));
        assert_eq!(field(&json!({ "additionalProperties": false }), "x"), None);
    }
}
