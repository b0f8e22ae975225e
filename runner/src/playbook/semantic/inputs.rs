//! Inputs: names, types, defaults and the rules an input declares (`pattern`,
//! `format`, ranges, `allow`), each checked against the input's type and the
//! other rules.

use serde_json::Value;

use super::Checker;
use crate::playbook::model::InputType;
use crate::playbook::scalars::parse_duration;
use crate::playbook::yaml::{Path, Target};

impl Checker<'_> {
    pub(super) fn inputs(&mut self) {
        for (name, input) in &self.pb.inputs {
            let path = Path::root().key("inputs").key(name.as_str());
            self.ident_key(name.as_str(), &path, "input");
            if input.required && input.default.is_some() {
                self.report(&path.key("required"), Target::Key,
                    format!("input `{name}` is required and has a default; an input with a default is never missing, so remove one of them"));
            }
            if let Some(allowed) = &input.allowed {
                for (i, v) in allowed.iter().enumerate() {
                    if let Err(e) = check_value(input.kind, v) {
                        self.report(
                            &path.key("enum").index(i),
                            Target::Value,
                            format!("enum value {e}"),
                        );
                    }
                }
            }
            self.input_rules(input, &path);
            if let Some(default) = &input.default {
                let at = path.key("default");
                match check_value(input.kind, default)
                    .map_err(|e| format!("default {e}"))
                    .and_then(|()| {
                        crate::playbook::constraints::check(input, default)
                            .map_err(|e| format!("the default breaks the input's own rules: {e}"))
                    }) {
                    Err(e) => self.report(&at, Target::Value, e),
                    Ok(()) => {
                        if let Some(allowed) = &input.allowed
                            && !allowed.contains(default)
                        {
                            self.report(
                                &at,
                                Target::Value,
                                format!(
                                    "default {default} is not one of the allowed values ({})",
                                    allowed
                                        .iter()
                                        .map(Value::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// The rules of an input (`pattern`, `format`, ranges …) fit its type and
    /// each other.
    fn input_rules(&mut self, input: &crate::playbook::model::Input, path: &Path) {
        let string_only = [
            ("pattern", input.pattern.is_some()),
            ("format", input.format.is_some()),
            ("allow", input.allow.is_some()),
            ("max_length", input.max_length.is_some()),
            ("single_line", input.single_line.is_some()),
        ];
        let number_only = [
            ("minimum", input.minimum.is_some()),
            ("maximum", input.maximum.is_some()),
        ];
        for (key, set) in string_only {
            if set && input.kind != InputType::String {
                self.report(
                    &path.key(key),
                    Target::Key,
                    format!("`{key}` applies to string inputs only"),
                );
            }
        }
        for (key, set) in number_only {
            if set && input.kind != InputType::Number {
                self.report(
                    &path.key(key),
                    Target::Key,
                    format!("`{key}` applies to number inputs only"),
                );
            }
        }
        if let (Some(min), Some(max)) = (input.minimum, input.maximum)
            && min > max
        {
            self.report(
                &path.key("minimum"),
                Target::Value,
                format!("`minimum` {min} is above `maximum` {max}"),
            );
        }
        if let Some(p) = &input.pattern
            && let Err(e) = crate::playbook::constraints::anchored(p)
        {
            self.report(
                &path.key("pattern"),
                Target::Value,
                format!(
                    "the pattern does not compile: {}",
                    e.to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ")
                ),
            );
        }
        if let Some(list) = &input.allow {
            for (i, entry) in list.iter().enumerate() {
                if let Some(e) =
                    crate::playbook::constraints::allow_entry_problem(input.format, entry)
                {
                    self.report(&path.key("allow").index(i), Target::Value, e);
                }
            }
        }
    }
}

/// Whether `v` is a value of type `kind`; the error says what it is instead.
pub(crate) fn check_value(kind: InputType, v: &Value) -> Result<(), String> {
    let ok = match kind {
        InputType::String => v.is_string(),
        InputType::Number => v.is_number(),
        InputType::Bool => v.is_boolean(),
        InputType::Duration => match v.as_str() {
            Some(s) => return parse_duration(s).map(|_| ()).map_err(|e| e.to_string()),
            None => false,
        },
    };
    if ok {
        Ok(())
    } else {
        let kind = match kind {
            InputType::String => "a string",
            InputType::Number => "a number",
            InputType::Bool => "`true` or `false`",
            InputType::Duration => "a duration",
        };
        Err(format!("{v} is not {kind}, the input's type"))
    }
}
