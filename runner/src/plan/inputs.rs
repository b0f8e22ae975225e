//! Input values: parsed from `--input KEY=VALUE` by the input's declared type,
//! checked against its `enum`, defaults filled in, missing required inputs refused.
//! All of it happens before anything runs.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::playbook::model::{Input, InputType};
use crate::playbook::scalars::parse_duration;
use crate::playbook::suggest::did_you_mean;

/// Where an input's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `--input` on the command line.
    Given,
    /// The playbook's `default`.
    Default,
}

/// A resolved input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    pub value: Value,
    pub origin: Origin,
}

/// Why the inputs cannot be resolved. Each message names the input and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Splits `KEY=VALUE`.
pub fn parse_assignment(text: &str) -> Result<(String, String), InputError> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(InputError(format!("`--input {text}` is not KEY=VALUE"))),
    }
}

/// Converts a command-line string to a value of `kind`.
pub fn parse_value(kind: InputType, text: &str) -> Result<Value, String> {
    match kind {
        InputType::String => Ok(Value::String(text.to_owned())),
        InputType::Number => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| {
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or(())
            })
            .map_err(|()| format!("`{text}` is not a number")),
        InputType::Bool => match text.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("`{text}` is not `true` or `false`")),
        },
        InputType::Duration => parse_duration(text.trim())
            .map(|_| Value::String(text.trim().to_owned()))
            .map_err(|e| e.to_string()),
    }
}

/// What the input is, after a refusal, so the person knows what to give.
fn about(input: &Input) -> String {
    input
        .description
        .as_deref()
        .map(|d| format!(" ({})", d.trim()))
        .unwrap_or_default()
}

/// Resolves every declared input from the given assignments and the defaults.
/// Reports all problems at once.
pub fn resolve(
    declared: &IndexMap<crate::playbook::scalars::Ident, Input>,
    given: &[(String, String)],
) -> Result<Vec<Resolved>, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut values: IndexMap<&str, Value> = IndexMap::new();
    // Given but refused: already reported, so not "missing" as well.
    let mut refused: Vec<&str> = Vec::new();
    for (name, text) in given {
        let Some(input) = declared.get(name.as_str()) else {
            let hint = did_you_mean(name, declared.keys().map(|k| k.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if declared.is_empty() {
                        "; this playbook takes no inputs".to_owned()
                    } else {
                        format!(
                            "; inputs are: {}",
                            declared
                                .keys()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                });
            errors.push(InputError(format!("unknown input `{name}`{hint}")));
            continue;
        };
        if values.contains_key(name.as_str()) {
            errors.push(InputError(format!("input `{name}` is given twice")));
            continue;
        }
        match parse_value(input.kind, text) {
            Err(e) => {
                refused.push(name);
                errors.push(InputError(format!("input `{name}`: {e}")));
            }
            Ok(v) => {
                if let Err(e) = crate::playbook::constraints::check(input, &v) {
                    refused.push(name);
                    errors.push(InputError(format!("input `{name}`: {e}{}", about(input))));
                } else if let Some(allowed) = &input.allowed
                    && !allowed.contains(&v)
                {
                    let list: Vec<String> = allowed
                        .iter()
                        .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned))
                        .collect();
                    refused.push(name);
                    errors.push(InputError(format!(
                        "input `{name}`: `{text}` is not allowed; choose one of: {}",
                        list.join(", ")
                    )));
                } else {
                    values.insert(name.as_str(), v);
                }
            }
        }
    }
    let mut resolved = Vec::new();
    for (name, input) in declared {
        let (value, origin) = match (values.get(name.as_str()), &input.default) {
            (Some(v), _) => (v.clone(), Origin::Given),
            (None, Some(d)) => (d.clone(), Origin::Default),
            (None, _) if refused.contains(&name.as_str()) => continue,
            (None, None) if input.required => {
                let about = input
                    .description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                errors.push(InputError(format!(
                    "missing required input `{name}`{about}; give it with `--input {name}=VALUE`"
                )));
                continue;
            }
            (None, None) => (Value::Null, Origin::Default),
        };
        resolved.push(Resolved {
            name: name.to_string(),
            kind: input.kind,
            value,
            origin,
        });
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_by_type() {
        assert_eq!(parse_value(InputType::Number, "42"), Ok(Value::from(42)));
        assert_eq!(
            parse_value(InputType::Number, "0.5"),
            Ok(serde_json::json!(0.5))
        );
        assert!(parse_value(InputType::Number, "NaN").is_err());
        assert!(parse_value(InputType::Number, "ten").is_err());
        assert_eq!(parse_value(InputType::Bool, "true"), Ok(Value::Bool(true)));
        assert!(parse_value(InputType::Bool, "yes").is_err());
        assert_eq!(
            parse_value(InputType::Duration, "5m"),
            Ok(Value::from("5m"))
        );
        assert!(parse_value(InputType::Duration, "5 minutes").is_err());
    }

    #[test]
    fn assignments_need_a_key() {
        assert_eq!(parse_assignment("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_assignment("=x").is_err());
        assert!(parse_assignment("novalue").is_err());
    }
}
