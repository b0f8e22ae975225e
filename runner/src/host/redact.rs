//! Removing secret values from everything a plugin hands back: log lines, the
//! summary, outputs, error messages.
//!
//! Threat: a plugin (buggy or hostile) that was granted a secret prints it, returns
//! it as an output, or puts it in an error, so it would reach the terminal, the
//! journal and the report. Every such string passes through `redact` before it
//! leaves the host. Empty values are ignored (they would match everywhere).

/// Replaces secret values with `[redacted]`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    values: Vec<String>,
}

pub const MASK: &str = "[redacted]";

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc z"), "x [redacted] y [redacted] z");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
