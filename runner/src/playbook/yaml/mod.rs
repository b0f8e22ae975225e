//! YAML text → a tree of located nodes.
//!
//! Parsing (in `builder`) uses tight budgets: playbooks are small and hand-written,
//! so anything deep, alias-heavy or huge is an attack or an accident, and is refused
//! before it costs memory. Duplicate keys are errors (a second `timeout:` silently
//! winning is how a production rollout gets the wrong limit), and only `true` and
//! `false` are booleans (no YAML 1.1 `yes`/`no`/`on`).
//!
//! The tree keeps a line and column for every node and every mapping key. Later
//! stages (schema, semantic checks) report problems by [`Path`]; [`Node::locate`]
//! turns a path back into a position in the file.

use std::fmt;
use std::sync::Arc;

mod builder;

use serde_json::{Map, Number, Value};

pub use builder::parse;

/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 32;
/// Most alias uses (`*name`) in one file.
pub const MAX_ALIASES: usize = 1_000;
/// Most nodes copied by aliases in one file: bounds what an alias bomb can expand to.
pub const MAX_ALIAS_NODES: usize = 50_000;
/// Most nodes in one file (a 4 MiB playbook has about 400,000).
pub const MAX_NODES: usize = 1_000_000;

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
///
/// Stored as a chain of links to the parent, so extending a path (done for every
/// key the semantic checks visit) costs one small allocation, not a copy of the
/// whole path; the segments are only collected when a problem is reported.
#[derive(Clone, Default)]
pub struct Path(Option<Arc<Link>>);

struct Link {
    parent: Path,
    seg: Seg,
}

impl Path {
    pub fn root() -> Path {
        Path(None)
    }

    /// A path from its segments, root first.
    pub fn from_segments(segments: impl IntoIterator<Item = Seg>) -> Path {
        segments
            .into_iter()
            .fold(Path::root(), |p, seg| p.push(seg))
    }

    fn push(&self, seg: Seg) -> Path {
        Path(Some(Arc::new(Link {
            parent: self.clone(),
            seg,
        })))
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Path {
        self.push(Seg::Key(key.to_owned()))
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        self.push(Seg::Index(i))
    }

    /// The last segment, if the path is not the root.
    pub fn last(&self) -> Option<&Seg> {
        self.0.as_ref().map(|l| &l.seg)
    }

    /// The parent path (the root's parent is the root).
    pub fn parent(&self) -> Path {
        self.0
            .as_ref()
            .map_or_else(Path::root, |l| l.parent.clone())
    }

    /// The segments, root first.
    pub fn segments(&self) -> Vec<Seg> {
        let mut out = Vec::new();
        let mut at = self;
        while let Some(link) = &at.0 {
            out.push(link.seg.clone());
            at = &link.parent;
        }
        out.reverse();
        out
    }

    /// Whether this is the top-level key `key`.
    pub fn is_top_level(&self, key: &str) -> bool {
        matches!(self.last(), Some(Seg::Key(k)) if k == key) && self.parent().0.is_none()
    }
}

impl PartialEq for Path {
    fn eq(&self, other: &Path) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || (a.seg == b.seg && a.parent == b.parent),
            _ => false,
        }
    }
}

impl Eq for Path {}

impl std::hash::Hash for Path {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.segments().hash(state);
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl fmt::Display for Path {
    /// JSON pointer form: `/stages/0/steps/2/with`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_none() {
            return f.write_str("/");
        }
        for seg in &self.segments() {
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
        for seg in &path.segments() {
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
        for seg in &path.segments() {
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
