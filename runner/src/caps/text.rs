//! Text that came from a plugin, made safe to keep and to show to a person.
//!
//! Threat model: a plugin (buggy or hostile) returns text (a summary, an error
//! message, a log line, a progress message, an artifact's name or media type,
//! an output key) that a person will read on a terminal (`runner exec`, `runner
//! runs show`) or in the markdown report. The text may carry a granted secret,
//! escape sequences that clear the screen or retitle the window and then print
//! "ALL GREEN", carriage returns and newlines that overwrite or forge lines, NUL
//! bytes, Unicode bidi controls that make a line read differently from what it
//! is, or line/paragraph separators (U+2028, U+2029). What must never happen:
//! such text reaches the journal or a person with a granted secret in clear, or
//! with a character that moves the cursor, changes the terminal's state or
//! reorders what is read.
//!
//! What is enforced, in this order, by [`from_plugin`] (the host applies it to
//! every such text before it leaves `host::runtime` and `caps::log`):
//!
//! 1. **Redact** ([`Redactor::redact`]): every secret value granted to the
//!    step is replaced with `[redacted]`, in its own form and in the forms it
//!    takes once escaped by [`printable`] or by JSON.
//! 2. **Escape** ([`printable`]): every character for which [`hidden`] holds
//!    (C0 and C1 control characters and DEL, except the tab; bidi embeddings,
//!    overrides, isolates and marks; U+2028, U+2029) is written as a visible
//!    escape: `\n`, `\r`, `\0`, or `\u{1b}` (the hexadecimal code point), so
//!    the text is still there to read, on one line. Then redaction runs again,
//!    so that escaping cannot put a secret together.
//! 3. **Cut** to at most `max_bytes` on a character boundary, ending with
//!    [`CUT_MARK`]. Cutting last means that a secret is never cut in half
//!    before it could be recognised.
//!
//! Renderers (the CLI's text output, the live tree, the markdown report) call
//! [`printable`] (or [`hidden`] and [`escape`] where they put text in a shape of
//! their own) on what they show, again: the journal may hold text recorded by
//! an older runner, and the escaping is idempotent (an escape contains no
//! hidden character).
//!
//! It lives in `caps`, with redaction as its first step (`caps::text::redact`),
//! because the `log` capability applies it too and `caps` sits below `host`;
//! `host::text` and `host::redact` name the same modules.
//!
//! Not enforced here: a secret that a plugin transforms (encodes, reverses,
//! splits across two log lines or two outputs) is not recognised; redaction
//! finds the value, not every way of spelling it. Outputs keep their
//! characters (they are data that later steps use); they are redacted, and
//! escaped where they are shown.

pub mod redact;

use redact::Redactor;

/// Ends a text that [`from_plugin`] cut.
pub const CUT_MARK: &str = " …[cut]";

/// Whether `c` must not reach a person as it is: it moves the cursor, changes
/// the terminal's state, breaks the line, or reorders the text around it.
pub fn hidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            // Arabic letter mark, left-to-right and right-to-left marks.
            '\u{061C}' | '\u{200E}' | '\u{200F}'
            // Embeddings, overrides and their end (LRE, RLE, PDF, LRO, RLO).
            | '\u{202A}'..='\u{202E}'
            // Isolates (LRI, RLI, FSI, PDI).
            | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators.
            | '\u{2028}' | '\u{2029}'
        )
}

/// Appends the visible escape of `c` (meant for a [`hidden`] character):
/// `\n`, `\r`, `\0`, else `\u{` hexadecimal code point `}`.
pub fn escape(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\0' => out.push_str("\\0"),
        c => {
            use std::fmt::Write;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `text` with every [`hidden`] character written as its visible [`escape`].
pub fn printable(text: &str) -> String {
    if !text.chars().any(hidden) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Text from a plugin as the host keeps it: redacted, then [`printable`], then
/// cut to at most `max_bytes` (see the module doc for why in this order).
pub fn from_plugin(redactor: &Redactor, text: &str, max_bytes: usize) -> String {
    let redacted = redactor.redact(text);
    // Escaping only lengthens text, so no more than the first `max_bytes` (and
    // a character, for `cut` to see that there was more) can be kept: a 16 MiB
    // summary is not escaped whole.
    let mut head = max_bytes.saturating_add(4).min(redacted.len());
    while !redacted.is_char_boundary(head) {
        head -= 1;
    }
    let clean = redactor.redact(&printable(&redacted[..head]));
    cut(clean, max_bytes)
}

/// `s` cut to at most `max` bytes on a character boundary, ending with
/// [`CUT_MARK`] when it was cut (or only as much of the mark as fits).
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mark = if max >= CUT_MARK.len() * 2 {
        CUT_MARK
    } else {
        ""
    };
    let mut end = max - mark.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(mark);
    s
}

#[cfg(test)]
mod tests {
    use super::redact::MASK;
    use super::*;

    #[test]
    fn hidden_characters_become_visible_escapes() {
        assert_eq!(
            printable("a\u{1b}[2Jb\u{1b}]0;title\u{7}c"),
            "a\\u{1b}[2Jb\\u{1b}]0;title\\u{7}c"
        );
        assert_eq!(printable("x\0y\r\nz"), "x\\0y\\r\\nz");
        assert_eq!(printable("del\u{7f} csi\u{9b}"), "del\\u{7f} csi\\u{9b}");
        assert_eq!(
            printable("evil\u{202e}txt.exe \u{2066}i\u{2069} \u{200f}"),
            "evil\\u{202e}txt.exe \\u{2066}i\\u{2069} \\u{200f}"
        );
        assert_eq!(printable("l1\u{2028}l2\u{2029}"), "l1\\u{2028}l2\\u{2029}");
        // The tab stays, and so does everything printable.
        assert_eq!(printable("a\tb ✓ é 中"), "a\tb ✓ é 中");
    }

    #[test]
    fn printable_is_idempotent_and_leaves_nothing_hidden() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let once = printable(&all);
        assert!(!once.chars().any(hidden));
        assert_eq!(printable(&once), once);
    }

    #[test]
    fn a_multi_line_secret_is_redacted_before_its_newline_is_escaped() {
        let r = Redactor::new(["line-one\nline-two".to_owned()]);
        let out = from_plugin(&r, "key:\nline-one\nline-two\nend", 1000);
        assert_eq!(out, format!("key:\\n{MASK}\\nend"));
    }

    #[test]
    fn text_the_host_escaped_already_is_still_redacted() {
        // A message built by the host with `printable` before it was redacted
        // (e.g. a refusal quoting an artifact path) carries the escaped form.
        let r = Redactor::new(["pa\u{1b}ss\nword".to_owned()]);
        let out = from_plugin(&r, &printable("at `pa\u{1b}ss\nword`"), 1000);
        assert_eq!(out, format!("at `{MASK}`"));
    }

    #[test]
    fn escaping_cannot_put_a_secret_together() {
        // The secret is the escaped spelling; the plugin sends the raw bytes.
        let r = Redactor::new(["a\\u{1b}b".to_owned()]);
        assert_eq!(from_plugin(&r, "a\u{1b}b", 1000), MASK);
    }

    #[test]
    fn a_secret_at_the_cut_is_redacted_whole_then_cut() {
        let secret = "0123456789abcdef";
        let r = Redactor::new([secret.to_owned()]);
        for pad in 80..100 {
            let text = format!("{}{secret}", "x".repeat(pad));
            let out = from_plugin(&r, &text, 100);
            assert!(out.len() <= 100, "{}", out.len());
            assert!(!out.contains(&secret[..8]), "{pad}: {out}");
            assert!(!out.contains(&secret[8..]), "{pad}: {out}");
        }
        // Cut before redaction (the old order), the first half was kept.
        let text = format!("{}{secret} and more", "x".repeat(84));
        assert!(r.redact(&cut(text.clone(), 100)).contains(&secret[..7]));
        assert!(!from_plugin(&r, &text, 100).contains(&secret[..7]));
    }

    #[test]
    fn a_long_text_is_cut_with_its_mark_whether_or_not_it_has_escapes() {
        let r = Redactor::default();
        for text in ["x".repeat(2000), "\u{1b}".repeat(2000), "é".repeat(51)] {
            let out = from_plugin(&r, &text, 100);
            assert!(out.len() <= 100 && out.ends_with(CUT_MARK), "{out}");
        }
        assert_eq!(from_plugin(&r, &"x".repeat(100), 100), "x".repeat(100));
    }

    #[test]
    fn cuts_land_on_character_boundaries() {
        for max in 0..40 {
            let out = cut("é中✓".repeat(10), max);
            assert!(out.len() <= max, "{max}: {out}");
        }
        assert_eq!(cut("short".into(), 5), "short");
        assert_eq!(
            cut("x".repeat(30), 20),
            format!("{}{CUT_MARK}", "x".repeat(11))
        );
    }
}
