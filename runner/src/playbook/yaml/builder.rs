//! Builds the located tree straight from `granit-parser`'s event stream.
//!
//! `granit-parser` is the hardened YAML 1.2 parser underneath `serde-saphyr` (nesting
//! limits in the scanner, no recursion on input depth). We use its events directly
//! rather than `serde-saphyr`'s serde layer because we need a located tree, not typed
//! structs, and that layer cost 2.5 times the parse itself on a 1 MB playbook (see
//! `docs/performance.md`). What `serde-saphyr` enforced on top of the parser is
//! enforced here, each with a test below: one document; depth, node and alias
//! budgets; duplicate keys; strict booleans; finite numbers; no custom tags.
//!
//! Scalars are resolved by the YAML 1.2 core schema: `null`/`~`/empty, `true`/`false`
//! (any case form the schema allows), decimal, `0x` and `0o` integers, and floats.
//! Quoted and block scalars are always strings.

use std::collections::HashMap;

use granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::Number;

use super::{
    Key, MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH, MAX_NODES, Node, NodeKind, Pos, SyntaxError,
};

/// Parses one YAML document into a located tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let empty = || SyntaxError {
        pos: Pos { line: 1, col: 1 },
        message:
            "the file has no content; a playbook needs at least `version`, `name` and `stages`"
                .into(),
    };
    if text.trim().is_empty() {
        return Err(empty());
    }
    let mut options = Options::default();
    // The scanner's own limits sit just above ours, so ours report first with a
    // clear message; the scanner's guard the recursion-free parser regardless.
    options.flow_nesting_limit = MAX_DEPTH + 1;
    options.block_nesting_limit = MAX_DEPTH + 1;
    options.disallow_directives = true;
    let mut builder = Builder::new();
    for event in Parser::new_from_str_with_options(text, options) {
        match event {
            Ok((event, span)) => builder.event(event, span)?,
            Err(e) => return Err(scan_error(text, &e)),
        }
    }
    match builder.root {
        Some(Node {
            kind: NodeKind::Null,
            ..
        })
        | None => Err(empty()),
        Some(root) => Ok(root),
    }
}

/// A collection being built.
enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    nodes: usize,
    aliases: usize,
    alias_nodes: usize,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn err(pos: Pos, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        message: message.into(),
    }
}

impl Builder {
    fn new() -> Builder {
        Builder {
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            documents: 0,
            nodes: 0,
            aliases: 0,
            alias_nodes: 0,
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let at = pos(&span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Anchor(..) => {
                Ok(())
            }
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(err(
                        at,
                        "the file holds more than one YAML document (`---`); a playbook is one document",
                    ));
                }
                Ok(())
            }
            Event::Scalar(value, style, anchor, tag) => {
                let kind = resolve(&value, style, tag.as_deref(), at)?;
                self.push(Node { pos: at, kind }, anchor)
            }
            Event::SequenceStart(_, anchor, tag) => {
                refuse_tag(tag.as_deref(), "seq", at)?;
                self.open(
                    Frame::Seq {
                        pos: at,
                        anchor,
                        items: Vec::new(),
                    },
                    at,
                )
            }
            Event::MappingStart(_, anchor, tag) => {
                refuse_tag(tag.as_deref(), "map", at)?;
                self.open(
                    Frame::Map {
                        pos: at,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                    at,
                )
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (
                        Node {
                            pos,
                            kind: NodeKind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            pos,
                            kind: NodeKind::Map(merge(entries)?),
                        },
                        anchor,
                    ),
                    None => return Err(err(at, "unbalanced YAML collection")),
                };
                self.push(node, anchor)
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return Err(err(
                        at,
                        format!(
                            "more than {MAX_ALIASES} aliases (`*name`); anchors and aliases may not be used to inflate a playbook"
                        ),
                    ));
                }
                let Some(target) = self.anchors.get(&id) else {
                    return Err(err(at, "this alias refers to no anchor defined before it"));
                };
                let size = count(target);
                self.alias_nodes += size;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(err(
                        at,
                        format!(
                            "aliases expand to too much (more than {MAX_ALIAS_NODES} copied nodes); anchors and aliases may not be used to inflate a playbook"
                        ),
                    ));
                }
                let mut copy = target.clone();
                copy.pos = at;
                // Copies count against the node budget too.
                self.nodes += size - 1;
                self.push(copy, 0)
            }
            Event::UnresolvedAlias(name) => Err(err(
                at,
                format!("alias `*{name}` refers to no anchor defined before it"),
            )),
            // Events added by later parser versions or features (comments): no content.
            _ => Ok(()),
        }
    }

    fn open(&mut self, frame: Frame, at: Pos) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(
                at,
                format!(
                    "the document is nested more than {MAX_DEPTH} levels deep; playbooks are refused past that"
                ),
            ));
        }
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(err(
                at,
                "a mapping or list cannot be a key; keys are plain names",
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Adds a finished node to its parent (or makes it the root).
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(err(
                node.pos,
                format!("the document has more than {MAX_NODES} values; this is not a playbook"),
            ));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => {
                    entries.push((k, node));
                    Ok(())
                }
                None => {
                    let name = match node.kind {
                        NodeKind::String(s) => s,
                        NodeKind::Bool(b) => b.to_string(),
                        NodeKind::Number(n) => n.to_string(),
                        NodeKind::Null => {
                            return Err(err(node.pos, "a mapping key cannot be empty or null"));
                        }
                        NodeKind::Seq(_) | NodeKind::Map(_) => {
                            return Err(err(
                                node.pos,
                                "a mapping or list cannot be a key; keys are plain names",
                            ));
                        }
                    };
                    if entries.iter().any(|(k, _)| k.name == name) {
                        return Err(err(
                            node.pos,
                            format!(
                                "duplicate key `{name}`; each key may appear only once in a mapping"
                            ),
                        ));
                    }
                    *key = Some(Key {
                        pos: node.pos,
                        name,
                    });
                    Ok(())
                }
            },
        }
    }
}

/// Number of nodes in a tree.
fn count(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Seq(items) => items.iter().map(count).sum(),
        NodeKind::Map(entries) => entries.iter().map(|(_, v)| count(v)).sum(),
        _ => 0,
    }
}

/// Applies YAML merge keys (`<<: *defaults`, or a list of them): their entries are
/// added where the mapping does not set the key itself.
fn merge(entries: Vec<(Key, Node)>) -> Result<Vec<(Key, Node)>, SyntaxError> {
    if !entries.iter().any(|(k, _)| k.name == "<<") {
        return Ok(entries);
    }
    let (merges, mut own): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|(k, _)| k.name == "<<");
    for (key, value) in merges {
        let sources = match value.kind {
            NodeKind::Map(m) => vec![m],
            NodeKind::Seq(items) => items
                .into_iter()
                .map(|i| match i.kind {
                    NodeKind::Map(m) => Ok(m),
                    _ => Err(err(i.pos, "`<<` merges mappings only")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(err(key.pos, "`<<` merges mappings only (`<<: *anchor`)")),
        };
        for source in sources {
            for (k, v) in source {
                if !own.iter().any(|(o, _)| o.name == k.name) {
                    own.push((k, v));
                }
            }
        }
    }
    Ok(own)
}

/// Custom tags (`!thing`) have no meaning in a playbook; core-schema tags are
/// accepted where they match the node.
fn refuse_tag(tag: Option<&Tag>, expected: &str, at: Pos) -> Result<(), SyntaxError> {
    match tag {
        None => Ok(()),
        Some(t) if t.core_suffix() == Some(expected) => Ok(()),
        Some(t) => Err(err(
            at,
            format!(
                "YAML tag `{}{}` is not supported in playbooks; remove it",
                t.handle(),
                t.suffix()
            ),
        )),
    }
}

/// Resolves a scalar by the core schema (plain scalars) or as a string.
fn resolve(
    value: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    at: Pos,
) -> Result<NodeKind, SyntaxError> {
    if let Some(t) = tag {
        return match t.core_suffix() {
            Some("str") => Ok(NodeKind::String(value.to_owned())),
            Some(kind @ ("null" | "bool" | "int" | "float")) => match plain(value, at)? {
                NodeKind::Null if kind == "null" => Ok(NodeKind::Null),
                NodeKind::Bool(b) if kind == "bool" => Ok(NodeKind::Bool(b)),
                NodeKind::Number(n) if kind == "int" && !n.is_f64() => Ok(NodeKind::Number(n)),
                NodeKind::Number(n) if kind == "float" => Ok(NodeKind::Number(n)),
                _ => Err(err(at, format!("`{value}` is not a valid `!!{kind}`"))),
            },
            _ => refuse_tag(Some(t), "", at).map(|()| NodeKind::Null),
        };
    }
    match style {
        ScalarStyle::Plain => plain(value, at),
        _ => Ok(NodeKind::String(value.to_owned())),
    }
}

/// The core schema's resolution of a plain scalar.
fn plain(value: &str, at: Pos) -> Result<NodeKind, SyntaxError> {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(NodeKind::Null),
        "true" | "True" | "TRUE" => return Ok(NodeKind::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(NodeKind::Bool(false)),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Ok(NodeKind::String(value.to_owned()));
    }
    if let Some(n) = integer(value) {
        return Ok(NodeKind::Number(n));
    }
    let unsigned = value.trim_start_matches(['-', '+']);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(value, ".nan" | ".NaN" | ".NAN") {
        return Err(err(at, "numbers must be finite (no .inf or .nan)"));
    }
    if is_float(value) {
        return match value.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(NodeKind::Number(n)),
            None => Err(err(at, format!("`{value}` is out of range for a number"))),
        };
    }
    Ok(NodeKind::String(value.to_owned()))
}

/// Decimal (`-12`), hexadecimal (`0x1F`) and octal (`0o17`) integers that fit 64 bits.
fn integer(value: &str) -> Option<Number> {
    if let Some(hex) = value.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(Number::from);
    }
    if let Some(oct) = value.strip_prefix("0o") {
        return u64::from_str_radix(oct, 8).ok().map(Number::from);
    }
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = value.strip_prefix('+').unwrap_or(value);
    text.parse::<i64>()
        .ok()
        .map(Number::from)
        .or_else(|| text.parse::<u64>().ok().map(Number::from))
        .or_else(|| {
            // Too large for 64 bits: the core schema still calls it a number.
            text.parse::<f64>().ok().and_then(Number::from_f64)
        })
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(value: &str) -> bool {
    let s = value.strip_prefix(['-', '+']).unwrap_or(value).as_bytes();
    let mut i = 0;
    let int_digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == s.len()
}

/// A scanner error in this tool's words, pointing at the right character.
fn scan_error(text: &str, e: &ScanError) -> SyntaxError {
    let mark = e.marker();
    let mut at = Pos {
        line: mark.line().max(1),
        col: mark.col() + 1,
    };
    let info = e.info().to_string();
    let message = if info.contains("nesting limit") || info.contains("recursion limit") {
        format!(
            "the document is nested more than {MAX_DEPTH} levels deep; playbooks are refused past that"
        )
    } else if info.contains("unknown anchor") {
        "this alias (`*name`) refers to no anchor (`&name`) defined before it".to_owned()
    } else if info.contains("directive") {
        "YAML directives (`%YAML`, `%TAG`) are not supported in playbooks; remove the line"
            .to_owned()
    } else {
        info
    };
    // The scanner reports a tab after consuming it; point at the tab itself.
    if message.contains("tab") && at.col > 1 {
        let line = text.lines().nth(at.line - 1).unwrap_or_default();
        if line.chars().nth(at.col - 2) == Some('\t') {
            at.col -= 1;
        }
    }
    SyntaxError { pos: at, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> NodeKind {
        match parse(&format!("v: {text}\n")).unwrap().kind {
            NodeKind::Map(mut entries) => entries.remove(0).1.kind,
            other => panic!("{other:?}"),
        }
    }

    fn error(text: &str) -> SyntaxError {
        parse(text).unwrap_err()
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(kind("~"), NodeKind::Null);
        assert_eq!(kind("null"), NodeKind::Null);
        assert_eq!(kind("True"), NodeKind::Bool(true));
        assert_eq!(kind("yes"), NodeKind::String("yes".into()));
        assert_eq!(kind("off"), NodeKind::String("off".into()));
        assert_eq!(kind("42"), NodeKind::Number(42.into()));
        assert_eq!(kind("-7"), NodeKind::Number((-7).into()));
        assert_eq!(kind("0x1F"), NodeKind::Number(31.into()));
        assert_eq!(kind("0o17"), NodeKind::Number(15.into()));
        assert_eq!(
            kind("1.5"),
            NodeKind::Number(Number::from_f64(1.5).unwrap())
        );
        assert_eq!(
            kind("1e3"),
            NodeKind::Number(Number::from_f64(1000.0).unwrap())
        );
        assert_eq!(kind(".5"), NodeKind::Number(Number::from_f64(0.5).unwrap()));
        assert_eq!(kind("5m"), NodeKind::String("5m".into()));
        assert_eq!(kind("1.2.3"), NodeKind::String("1.2.3".into()));
        assert_eq!(kind("'42'"), NodeKind::String("42".into()));
        assert_eq!(kind("\"true\""), NodeKind::String("true".into()));
        assert_eq!(kind("!!str 42"), NodeKind::String("42".into()));
    }

    #[test]
    fn non_finite_numbers_and_custom_tags_are_refused() {
        assert!(error("v: .nan\n").message.contains("finite"));
        assert!(error("v: -.inf\n").message.contains("finite"));
        assert!(error("v: !custom x\n").message.contains("tag"));
        assert!(error("v: !!int abc\n").message.contains("!!int"));
    }

    #[test]
    fn budgets() {
        let deep: String = (0..40)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        assert!(error(&deep).message.contains("nested more than"));
        let flow = format!("v: {}{}\n", "[".repeat(40), "]".repeat(40));
        assert!(error(&flow).message.contains("nested more than"));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = if i == 1 {
                "a".to_owned()
            } else {
                format!("a{}", i - 1)
            };
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*{p}"); 10].join(", ")
            ));
        }
        let e = error(&bomb);
        assert!(e.message.contains("aliases expand"), "{e:?}");
    }

    #[test]
    fn structure_errors() {
        assert!(
            error("a: 1\n---\nb: 2\n")
                .message
                .contains("more than one YAML document")
        );
        assert_eq!(error("a: 1\n---\nb: 2\n").pos.line, 2);
        assert!(error("a: *nope\n").message.contains("no anchor"));
        assert!(error("? [a]\n: 1\n").message.contains("cannot be a key"));
        assert!(error("~: 1\n").message.contains("cannot be empty"));
        assert!(
            error("%YAML 1.2\n---\na: 1\n")
                .message
                .contains("directives")
        );
        assert!(error("# only a comment\n").message.contains("no content"));
        let tab = error("a:\n\tb: 1\n");
        assert_eq!(tab.pos, Pos { line: 2, col: 1 }, "{tab:?}");
    }

    #[test]
    fn aliases_and_merge_keys() {
        let doc = parse("d: &d {a: 1, b: 2}\nx:\n  <<: *d\n  b: 3\ny: *d\n").unwrap();
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"d": {"a": 1, "b": 2}, "x": {"b": 3, "a": 1}, "y": {"a": 1, "b": 2}})
        );
        // An alias is located where it is used.
        let y = doc.get(&super::super::Path::root().key("y")).unwrap();
        assert_eq!(y.pos, Pos { line: 5, col: 4 });
    }
}
