//! The JSON Schema of the format, and the check of a document against it.
//!
//! The schema is generated from the model types (`model.rs`) with `schemars`, so the
//! two cannot disagree at run time; `schemas/playbook.schema.json` is a committed
//! copy for editors, and a test fails when it is stale.
//!
//! `jsonschema` reports every violation with a JSON pointer; here each one becomes a
//! [`Problem`] at the right key or value, with a message written for the person who
//! typed the file (unknown keys get a did-you-mean from the keys the schema allows at
//! that place).

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::Value;

use super::Problem;
use super::model::Playbook;
use super::scalars::{DURATION_PATTERN, EXPRESSION_PATTERN, IDENT_PATTERN, MEMORY_PATTERN};
use super::suggest::did_you_mean;
use super::yaml::{Node, Path, Seg, Target};

/// The schema as a JSON value.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut settings = SchemaSettings::draft2020_12();
        settings
            .transforms
            .push(Box::new(RecursiveTransform(no_null)));
        let generator = settings.into_generator();
        let root = generator.into_root_schema_for::<Playbook>();
        root.to_value()
    })
}

/// Optional fields are written by leaving the key out, never as `null`: an empty
/// `timeout:` is far more likely a mistake than a wish for the default.
fn no_null(schema: &mut Schema) {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            schema.insert("type".into(), only);
        }
    }
    let nullable_ref = match schema.get("anyOf") {
        Some(Value::Array(any)) if any.len() == 2 => {
            let is_null = |v: &Value| v.get("type") == Some(&Value::from("null"));
            any.iter().position(is_null).map(|i| any[1 - i].clone())
        }
        _ => None,
    };
    if let Some(Value::Object(other)) = nullable_ref {
        schema.remove("anyOf");
        for (k, v) in other {
            schema.insert(k, v);
        }
    }
    if schema.get("default") == Some(&Value::Null) {
        schema.remove("default");
    }
}

/// The schema as the pretty-printed text committed in `schemas/`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::options()
            .should_validate_formats(false)
            .build(schema())
            // The schema is generated from our own types; a failure here is a bug in
            // this crate that every test would catch, not something input can cause.
            .expect("the generated playbook schema is a valid JSON Schema")
    })
}

/// Checks `doc` (the JSON form of `tree`) against the schema; every violation becomes
/// a located problem.
pub fn check(doc: &Value, tree: &Node) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    // For each problem: the value it is about, and whether it is a type error.
    let mut about: Vec<(Path, bool)> = Vec::new();
    for error in validator().iter_errors(doc) {
        let path = to_path(error.instance_path().segments());
        let schema_path = error.schema_path().as_str().to_owned();
        let instance = error.instance();
        let is_type = matches!(error.kind(), ValidationErrorKind::Type { .. });
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(&schema_path);
                for key in unexpected {
                    let at = path.key(key);
                    problems.push(Problem::at(
                        tree,
                        &at,
                        Target::Key,
                        unknown_key(key, &allowed, &schema_path),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("missing required key `{name}`{}", context(&path)),
                ));
            }
            ValidationErrorKind::Type { .. } if path.is_top_level("version") => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!(
                        "`version` must be the number 1 (without quotes), found {}",
                        describe(instance)
                    ),
                ));
            }
            ValidationErrorKind::Type { .. } => {
                let expected = expected_type(&schema_path);
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("expected {expected}, found {}", describe(instance)),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    enum_message(options, instance),
                ));
            }
            ValidationErrorKind::Constant { .. } if path.is_top_level("version") => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!(
                        "unsupported playbook version {instance}; this runner reads `version: 1`"
                    ),
                ));
            }
            ValidationErrorKind::Constant { expected_value } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("expected {expected_value}, found {}", describe(instance)),
                ));
            }
            ValidationErrorKind::Pattern { pattern } => {
                let text = instance.as_str().unwrap_or_default();
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    pattern_message(pattern, text, &path),
                ));
            }
            ValidationErrorKind::AnyOf { .. } if schema_path.contains("/Duration/") => {
                let text = instance.as_str().unwrap_or_default();
                let message = match super::scalars::parse_duration(text) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("`{text}` is not a duration"),
                };
                problems.push(Problem::at(tree, &path, Target::Value, message));
            }
            ValidationErrorKind::MinItems { limit } => {
                let what = match path.last() {
                    Some(Seg::Key(k)) => format!("`{k}`"),
                    _ => "this list".to_owned(),
                };
                let message = if *limit == 1 {
                    format!("{what} must list at least one entry")
                } else {
                    format!("{what} must list at least {limit} entries")
                };
                problems.push(Problem::at(tree, &path, Target::Value, message));
            }
            ValidationErrorKind::MinLength { .. } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    "must not be empty".to_owned(),
                ));
            }
            ValidationErrorKind::MaxLength { limit } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("is longer than {limit} characters"),
                ));
            }
            ValidationErrorKind::Minimum { limit } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("must be at least {limit}, found {instance}"),
                ));
            }
            ValidationErrorKind::Maximum { limit } => {
                problems.push(Problem::at(
                    tree,
                    &path,
                    Target::Value,
                    format!("must be at most {limit}, found {instance}"),
                ));
            }
            _ => {
                problems.push(Problem::at(tree, &path, Target::Value, error.to_string()));
            }
        }
        about.resize(problems.len(), (path.clone(), is_type));
    }
    // A value of the wrong type fails its `const`, `enum` and `pattern` too; saying so
    // adds nothing, so only the type error is kept for that value.
    let typed: Vec<&Path> = about.iter().filter(|(_, t)| *t).map(|(p, _)| p).collect();
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .zip(&about)
        .filter(|(_, (path, is_type))| *is_type || !typed.contains(&path))
        .map(|(p, _)| p)
        .collect();
    problems.sort_by_key(|p| p.pos);
    problems.dedup();
    problems
}

fn to_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> Path {
    Path::from_segments(segments.map(|s| match s {
        LocationSegment::Property(p) => Seg::Key(p.into_owned()),
        LocationSegment::Index(i) => Seg::Index(i),
    }))
}

/// The schema object that owns the keyword at `schema_path` (its last segment dropped).
fn owner(schema_path: &str) -> Option<&'static Value> {
    owner_in(schema(), schema_path)
}

fn owner_in<'s>(root: &'s Value, schema_path: &str) -> Option<&'s Value> {
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    root.pointer(parent)
}

/// The keys the schema allows where an `additionalProperties` error was raised.
fn allowed_keys(schema_path: &str) -> Vec<String> {
    allowed_keys_in(schema(), schema_path)
}

fn allowed_keys_in(root: &Value, schema_path: &str) -> Vec<String> {
    owner_in(root, schema_path)
        .and_then(|o| o.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// A problem found by a plugin's own input schema in a step's `with:`, located
/// relative to the `with:` object, in the same words as the playbook's own
/// problems (did-you-mean for unknown keys, the allowed values of an enum).
pub fn input_problem(
    root: &Value,
    error: &jsonschema::ValidationError<'_>,
) -> Vec<(Path, Target, String)> {
    let path = to_path(error.instance_path().segments());
    let schema_path = error.schema_path().as_str().to_owned();
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys_in(root, &schema_path);
            unexpected
                .iter()
                .map(|key| {
                    let message = match did_you_mean(key, allowed.iter().map(String::as_str)) {
                        Some(s) => format!("unknown input `{key}`; did you mean `{s}`?"),
                        None if allowed.is_empty() => format!("unknown input `{key}`"),
                        None => format!(
                            "unknown input `{key}`; expected one of: {}",
                            allowed.join(", ")
                        ),
                    };
                    (path.key(key), Target::Key, message)
                })
                .collect()
        }
        ValidationErrorKind::Required { property } => {
            vec![(
                path,
                Target::Value,
                format!(
                    "missing required input `{}`",
                    property.as_str().unwrap_or_default()
                ),
            )]
        }
        ValidationErrorKind::Enum { options } => {
            vec![(path, Target::Value, enum_message(options, instance))]
        }
        ValidationErrorKind::Pattern { pattern } => {
            let text = instance.as_str().unwrap_or_default();
            let message = match fits_until(pattern, text) {
                Some(at) if at < text.len() => {
                    let (fits, rest) = text.split_at(at);
                    let next: String = rest.chars().next().into_iter().collect();
                    if fits.is_empty() {
                        format!("`{text}` does not fit `{pattern}`: it cannot start with `{next}`")
                    } else {
                        format!(
                            "`{text}` does not fit `{pattern}` from `{next}` on (after `{fits}`)"
                        )
                    }
                }
                Some(_) => format!("`{text}` does not fit `{pattern}`: it ends too early"),
                None => error.to_string(),
            };
            vec![(path, Target::Value, message)]
        }
        ValidationErrorKind::Type { .. } => {
            let ty = owner_in(root, &schema_path)
                .and_then(|o| o.get("type"))
                .cloned();
            let expected = match ty {
                Some(Value::String(t)) => t,
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" or "),
                _ => "another type".to_owned(),
            };
            vec![(
                path,
                Target::Value,
                format!("expected {expected}, found {}", describe(instance)),
            )]
        }
        _ => vec![(path, Target::Value, error.to_string())],
    }
}

fn unknown_key(key: &str, allowed: &[String], schema_path: &str) -> String {
    if owner(schema_path).is_some_and(|o| o.get("patternProperties").is_some()) {
        return format!(
            "`{key}` is not a valid name; use lower case letters, digits and `_`, starting with a letter (it is used as a name in expressions)"
        );
    }
    let what = if schema_path.starts_with("/$defs/Grants/") {
        "capability"
    } else {
        "key"
    };
    match did_you_mean(key, allowed.iter().map(String::as_str)) {
        Some(s) => format!("unknown {what} `{key}`; did you mean `{s}`?"),
        None if allowed.is_empty() => format!("unknown {what} `{key}`"),
        None => format!(
            "unknown {what} `{key}`; expected one of: {}",
            allowed.join(", ")
        ),
    }
}

fn expected_type(schema_path: &str) -> String {
    let ty = owner(schema_path).and_then(|o| o.get("type"));
    let name = |v: &Value| match v.as_str().unwrap_or_default() {
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "string" => "a string".to_owned(),
        "integer" => "an integer".to_owned(),
        "number" => "a number".to_owned(),
        "boolean" => "`true` or `false`".to_owned(),
        "null" => "nothing".to_owned(),
        other => other.to_owned(),
    };
    match ty {
        Some(Value::Array(types)) => types.iter().map(name).collect::<Vec<_>>().join(" or "),
        Some(v) => name(v),
        None => "another type".to_owned(),
    }
}

/// "`x` is not allowed here", with a did-you-mean or the allowed values.
fn enum_message(options: &Value, instance: &Value) -> String {
    let choices: Vec<String> = options
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let found = instance
        .as_str()
        .map_or_else(|| instance.to_string(), str::to_owned);
    let hint = did_you_mean(&found, choices.iter().map(String::as_str))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_else(|| format!("; expected one of: {}", choices.join(", ")));
    format!("`{found}` is not allowed here{hint}")
}

/// A short description of a JSON value for "found …" messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".to_owned(),
        Value::String(s) => format!("the string `{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// How far `text` fits `pattern` (an anchored `^…$` regular expression): the
/// byte offset of the first character after which no match is possible any
/// more, or `text.len()` when every prefix could still become a match. `None`
/// when the pattern is not one the `regex` syntax reads.
fn fits_until(pattern: &str, text: &str) -> Option<usize> {
    use regex_automata::hybrid::dfa::DFA;
    use regex_automata::{Anchored, Input};
    let dfa = DFA::new(pattern).ok()?;
    let mut cache = dfa.create_cache();
    let mut state = dfa
        .start_state_forward(&mut cache, &Input::new(text).anchored(Anchored::Yes))
        .ok()?;
    for (at, byte) in text.bytes().enumerate() {
        state = dfa.next_state(&mut cache, state, byte).ok()?;
        if state.is_dead() {
            // Back to the start of the character the byte belongs to.
            let start = (0..=at).rev().find(|&i| text.is_char_boundary(i))?;
            return Some(start);
        }
    }
    Some(text.len())
}

fn pattern_message(pattern: &str, text: &str, path: &Path) -> String {
    match pattern {
        IDENT_PATTERN => format!(
            "`{text}` is not a valid identifier; use lower case letters, digits and `_`, starting with a letter (it is used as a name in expressions)"
        ),
        DURATION_PATTERN | EXPRESSION_PATTERN => match super::scalars::parse_duration(text) {
            Err(e) => e.to_string(),
            Ok(_) => format!("`{text}` is not a duration"),
        },
        MEMORY_PATTERN => {
            format!("`{text}` is not a memory size; write it like `256MiB` or `1GiB`")
        }
        _ if path.last() == Some(&Seg::Key("sha256".into())) => {
            "`sha256` must be 64 lower-case hex digits (the output of `sha256sum`)".to_owned()
        }
        _ if path.is_top_level("name") => format!(
            "`{text}` is not a valid playbook name; use letters, digits, `.`, `_` and `-` (it becomes part of file names)"
        ),
        _ => format!("`{text}` does not match the pattern `{pattern}`"),
    }
}

/// " in steps" style suffix naming the list or mapping a problem is in.
fn context(path: &Path) -> String {
    match path.last() {
        Some(Seg::Key(k)) => format!(" in `{k}`"),
        Some(Seg::Index(_)) => match path.parent().last() {
            Some(Seg::Key(k)) => format!(" in this entry of `{k}`"),
            _ => String::new(),
        },
        None => " at the top level".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::fits_until;

    #[test]
    fn a_pattern_says_where_a_value_stops_fitting() {
        let p = r"^\s*(p\((100|[0-9]{1,2})\)|avg)\s*(<=|<)\s*[0-9]+$";
        assert_eq!(fits_until(p, "p(101)<5"), Some(4), "after `p(10`");
        assert_eq!(fits_until(p, "p95<5"), Some(1));
        assert_eq!(fits_until(p, "x"), Some(0));
        assert_eq!(fits_until(p, "avg <"), Some(5), "ends too early");
        assert_eq!(fits_until(p, "avg<5"), Some(5));
        assert_eq!(fits_until(p, "avg<5é"), Some(5), "a character, not a byte");
        assert_eq!(fits_until("(", "x"), None);
    }
}
