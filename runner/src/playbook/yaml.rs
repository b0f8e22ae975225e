//! YAML text → a tree of located nodes.
//!
//! Parsing is done by `serde-saphyr` with tight budgets: playbooks are small and
//! hand-written, so anything deep, alias-heavy or huge is an attack or an accident,
//! and is refused before it costs memory. Duplicate keys are errors (a second
//! `timeout:` silently winning is how a production rollout gets the wrong limit), and
//! only `true`/`false` are booleans (no YAML 1.1 `yes`/`no`/`on`).
//!
//! The tree keeps a line and column for every node and every mapping key. Later
//! stages (schema, semantic checks) report problems by [`Path`]; [`Node::locate`]
//! turns a path back into a position in the file.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Options, Spanned};

/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 32;
/// Most alias uses (`*name`) in one file.
pub const MAX_ALIASES: usize = 1_000;
/// Most events replayed by aliases in one file: bounds what an alias bomb can expand to.
pub const MAX_ALIAS_EVENTS: usize = 50_000;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

/// The value of a node. Scalars are already typed by YAML's core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, like a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for Path {
    /// JSON pointer form: `/stages/0/steps/2/with`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                Seg::Index(i) => write!(f, "/{i}")?,
            }
        }
        Ok(())
    }
}

/// Where a path points: at a mapping key (the key's position is the useful one for
/// "unknown key" and "duplicate id"), or at a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
}

/// A YAML syntax or budget error, with its position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// The value at `path`, if the document has it.
    pub fn get(&self, path: &Path) -> Option<&Node> {
        let mut node = self;
        for seg in &path.0 {
            node = node.child(seg)?.1;
        }
        Some(node)
    }

    fn child(&self, seg: &Seg) -> Option<(Option<&Key>, &Node)> {
        match (&self.kind, seg) {
            (NodeKind::Map(entries), Seg::Key(k)) => entries
                .iter()
                .find(|(key, _)| &key.name == k)
                .map(|(key, v)| (Some(key), v)),
            (NodeKind::Seq(items), Seg::Index(i)) => items.get(*i).map(|v| (None, v)),
            _ => None,
        }
    }

    /// The position of `path`: its key or its value, as `target` asks. When the path
    /// runs past the document (a missing key), the deepest existing node is used.
    pub fn locate(&self, path: &Path, target: Target) -> Pos {
        let mut node = self;
        let mut key_pos = None;
        for seg in &path.0 {
            match node.child(seg) {
                Some((key, next)) => {
                    key_pos = key.map(|k| k.pos);
                    node = next;
                }
                None => return node.pos,
            }
        }
        match (target, key_pos) {
            (Target::Key, Some(pos)) => pos,
            _ => node.pos,
        }
    }

    /// The equivalent JSON value, for the schema check and typed deserialisation.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Number(n) => Value::Number(n.clone()),
            NodeKind::String(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// The string value, if this node is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The parser options: core schema, strict booleans, duplicate keys refused, and
/// budgets sized for hand-written files.
fn options() -> Options {
    serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_documents: 1,
            max_nodes: 1_000_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
            max_replay_stack_depth: 16,
        },
        with_snippet: false,
    }
}

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
    match serde_saphyr::from_str_with_options::<Node>(text, options()) {
        Ok(Node {
            kind: NodeKind::Null,
            ..
        }) => Err(empty()),
        Ok(node) => Ok(node),
        Err(e) => {
            let mut pos = e
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| Pos {
                    line: l.line() as usize,
                    col: l.column().max(1) as usize,
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            let message = friendly_message(&e.without_snippet().to_string());
            // The scanner reports a tab after consuming it; point at the tab itself.
            if message.contains("tab") && pos.col > 1 {
                let line = text.lines().nth(pos.line - 1).unwrap_or_default();
                if line.chars().nth(pos.col - 2) == Some('\t') {
                    pos.col -= 1;
                }
            }
            Err(SyntaxError { pos, message })
        }
    }
}

/// The parser's message, in the words of this tool: without the position it repeats
/// (we print our own), without library settings the user cannot change, and with
/// the budgets explained.
fn friendly_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}`; each key may appear only once in a mapping");
    }
    if first.contains("Documents {") {
        return "the file holds more than one YAML document (`---`); a playbook is one document"
            .into();
    }
    if first.contains("Depth {") {
        return format!(
            "the document is nested more than {MAX_DEPTH} levels deep; playbooks are refused past that"
        );
    }
    if first.contains("alias replay limit") || first.contains("Aliases {") {
        return format!(
            "aliases expand to too much (limits: {MAX_ALIASES} aliases, {MAX_ALIAS_EVENTS} replayed nodes); \
             anchors and aliases may not be used to inflate a playbook"
        );
    }
    if first.contains("budget breached") {
        return "the document is too large or complex for a playbook".into();
    }
    if first.contains("cannot deserialize null into string") {
        return "a mapping key cannot be empty or null".into();
    }
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    if first.is_empty() {
        "invalid YAML".to_owned()
    } else {
        first.to_owned()
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeKind>::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(Node {
            pos: Pos {
                line: loc.line() as usize,
                col: loc.column() as usize,
            },
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeKind, E> {
        i64::try_from(v)
            .map(|v| NodeKind::Number(v.into()))
            .map_err(|_| E::custom("integer out of range; integers must fit in 64 bits"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        u64::try_from(v)
            .map(|v| NodeKind::Number(v.into()))
            .map_err(|_| E::custom("integer out of range; integers must fit in 64 bits"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Number::from_f64(v)
            .map(NodeKind::Number)
            .ok_or_else(|| E::custom("numbers must be finite (no .inf or .nan)"))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<NodeKind, E> {
        Err(E::custom("binary values are not supported in playbooks"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            let loc = key.referenced;
            let name = key.value.0;
            if entries.iter().any(|(k, _)| k.name == name) {
                return Err(de::Error::custom(format!("duplicate key `{name}`")));
            }
            entries.push((
                Key {
                    pos: Pos {
                        line: loc.line() as usize,
                        col: loc.column() as usize,
                    },
                    name,
                },
                value,
            ));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A mapping key: any scalar, kept as its text. Collections as keys are refused.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a plain key (a mapping or sequence cannot be a key)")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_owned()))
            }
        }
        d.deserialize_string(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let doc = parse("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        assert_eq!(
            doc.get(&Path::root().key("a")).unwrap().kind,
            NodeKind::Number(1.into())
        );
        let c = Path::root().key("b").index(1).key("c");
        assert_eq!(doc.locate(&c, Target::Key), Pos { line: 4, col: 6 });
        assert_eq!(doc.locate(&c, Target::Value), Pos { line: 4, col: 9 });
        assert_eq!(
            doc.locate(&Path::root().key("b").index(0), Target::Value),
            Pos { line: 3, col: 5 }
        );
    }

    #[test]
    fn missing_path_falls_back_to_the_deepest_node() {
        let doc = parse("a:\n  b: 1\n").unwrap();
        let p = Path::root().key("a").key("nope").key("deeper");
        assert_eq!(doc.locate(&p, Target::Value), Pos { line: 2, col: 3 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e:?}");
        assert_eq!(e.pos.line, 3);
    }

    #[test]
    fn yes_and_no_stay_strings() {
        let doc = parse("a: yes\nb: true\n").unwrap();
        assert_eq!(doc.to_json(), serde_json::json!({"a": "yes", "b": true}));
    }

    #[test]
    fn paths_print_as_json_pointers() {
        let p = Path::root().key("stages").index(0).key("a/b~c");
        assert_eq!(p.to_string(), "/stages/0/a~1b~0c");
    }
}
