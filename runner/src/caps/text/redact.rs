//! Removing secret values from everything a plugin hands back: log lines and
//! progress messages, the summary, outputs (keys, strings and numbers),
//! artifacts' names and media types, error messages of every kind, and the
//! host's own refusal messages about the step.
//!
//! Threat: a plugin (buggy or hostile) that was granted a secret prints it, returns
//! it as an output, or puts it in an error, so it would reach the terminal, the
//! journal and the reports. What is enforced:
//!
//! - Every occurrence of a granted value is replaced with [`MASK`], longest
//!   value first (a secret containing another is replaced whole). A value is
//!   also recognised in the forms it takes once written as a JSON string
//!   (`"a\nb"` becomes `a\nb` in a log line's JSON fields) and once escaped by
//!   [`printable`](super::printable) (the host escapes control characters in what it
//!   shows), so a multi-line secret or one with control characters is caught
//!   whichever way round the text was escaped.
//! - A number in the outputs is replaced with the string [`MASK`] when its JSON
//!   text contains a value (`123456` in `91234569`), or when it equals a value
//!   that is itself a number (`1e3` equals the secret `1000`; a number too long
//!   for a float is rounded on parsing, and still equals the secret rounded the
//!   same way). `true`, `false` and `null` are treated like numbers.
//! - An empty value is ignored: it would match everywhere and hides nothing.
//!   A short value is redacted like any other, wherever it occurs: a one-letter
//!   secret masks that letter in every text of the step. That makes the text
//!   hard to read, never leaks; choose secrets that are not short words.
//!
//! The host applies this as each text leaves the plugin
//! ([`from_plugin`](super::from_plugin), `host::runtime::redact_map`). Out of reach: a
//! secret the plugin transforms (base64, reversed, split across two log lines
//! or two outputs, cut into pieces) is not recognised.

use serde_json::Value;

/// Replaces secret values with `[redacted]`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The values and their escaped forms, longest first, so a secret
    /// containing another is replaced whole.
    values: Vec<String>,
    /// The values that are JSON numbers, as parsed numbers.
    numbers: Vec<f64>,
}

pub const MASK: &str = "[redacted]";

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut forms = Vec::new();
        let mut numbers = Vec::new();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(v.trim())
                && let Some(f) = n.as_f64()
            {
                numbers.push(f);
            }
            let json = Value::String(v.clone()).to_string();
            let json = json[1..json.len() - 1].to_owned();
            forms.push(super::printable(&v));
            forms.push(json);
            forms.push(v);
        }
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Redactor {
            values: forms,
            numbers,
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Whether `text` contains a secret value (in any form it recognises).
    pub fn finds(&self, text: &str) -> bool {
        self.values.iter().any(|v| text.contains(v.as_str()))
    }

    /// A JSON value that is not a string, array or object, or [`MASK`] when
    /// its JSON text contains a secret value or it equals a numeric one.
    pub fn scalar(&self, v: Value) -> Value {
        let equal = v.as_f64().is_some_and(|f| self.numbers.contains(&f));
        if equal || self.finds(&v.to_string()) {
            Value::String(MASK.to_owned())
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc z"), "x [redacted] y [redacted] z");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn escaped_forms_of_a_secret_are_masked() {
        let r = Redactor::new(["one\ntwo\u{1b}\"".to_owned()]);
        // As a JSON string (log fields), as the host escapes it, and raw.
        assert_eq!(
            r.redact(r#"{"k":"one\ntwo\u001b\""}"#),
            r#"{"k":"[redacted]"}"#
        );
        assert_eq!(r.redact("x one\\ntwo\\u{1b}\" y"), "x [redacted] y");
        assert_eq!(r.redact("x one\ntwo\u{1b}\" y"), "x [redacted] y");
        // Half of it is not the secret, and is not masked.
        assert_eq!(r.redact("one\n"), "one\n");
    }

    #[test]
    fn numbers_that_contain_or_equal_a_secret_are_masked() {
        let r = Redactor::new(["123456".to_owned(), "1e3".to_owned()]);
        let mask = json!(MASK);
        assert_eq!(r.scalar(json!(123456)), mask);
        assert_eq!(r.scalar(json!(-91234569)), mask);
        assert_eq!(r.scalar(json!(123456.5)), mask);
        assert_eq!(r.scalar(json!(1000)), mask);
        assert_eq!(r.scalar(json!(12345)), json!(12345));
        assert_eq!(r.scalar(json!(true)), json!(true));
        // A numeric secret too long for a float, sent as a bare number.
        let long = "123456789012345678901234567890";
        let r = Redactor::new([long.to_owned()]);
        let rounded: Value = serde_json::from_str(long).unwrap();
        assert!(!rounded.to_string().contains(long));
        assert_eq!(r.scalar(rounded), mask);
        let r = Redactor::new(["true".to_owned()]);
        assert_eq!(r.scalar(json!(true)), mask);
    }

    #[test]
    fn an_empty_secret_is_ignored_and_a_short_one_masks_everywhere() {
        let r = Redactor::new([String::new()]);
        assert_eq!(r.redact("text"), "text");
        assert!(!r.finds("text"));
        let r = Redactor::new(["e".to_owned()]);
        assert_eq!(
            r.redact("deploy secret"),
            "d[redacted]ploy s[redacted]cr[redacted]t"
        );
    }
}
