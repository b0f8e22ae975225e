//! The crate's layering, checked: no import cycle between the top-level modules of
//! `runner/src`, none between the submodules one level inside each of them, and
//! nothing outside `cli` reaching into `cli`.
//!
//! Why a test: a cycle is how a layer stops being one. Once `caps` needs `host`
//! and `host` needs `caps`, neither can be read, tested or moved alone, and the
//! next cycle costs nothing to add. The order, lowest first, is `clock`, `expr`,
//! `identity`, `builtins`, `oci_ref`, `caps` → `playbook` → `settings`, `plan` →
//! `host` → `engine` → `run_state` → `record`, `report` → `service` → `cli`
//! (`caps` is below `playbook`: the model holds the grant types and validation
//! calls the capabilities' parsers; `builtins` and `oci_ref` too: the checks
//! name the built-in plugins and parse `oci://` references; `run_state`, the
//! fold of a run's events, is read by `report` and `cli`). The test does not hard-code
//! it (a new module only has to keep the graph acyclic); it insists that the
//! graph has no cycle.
//!
//! How: a small lexer reads every `.rs` file under `runner/src` (comments, doc
//! comments, string and char literals dropped), removes every item under
//! `#[cfg(test)]` (and the files of test-only modules, such as `report/tests.rs`),
//! then resolves each `crate::…`, `super::…` and `self::…` path, `use` trees
//! included, to the module it names. Top-level modules are read from `lib.rs`.
//! A plain text scan rather than `syn`: `syn` is not a dependency of the crate,
//! and paths are all this needs. What it does not see: a name reached through a
//! glob import of a module's root (refused below, so it cannot hide an edge), and
//! an item that a submodule re-exports from a sibling under another name.
//!
//! Edges that other work in progress will remove are listed in
//! [`ALLOWED_FOR_NOW`]; each must still exist, so the list can only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Edges the checks ignore until the change named beside each lands. Node names
/// are a top-level module (`record`) or one of its submodules (`host::runtime`).
/// An edge that no longer exists fails the test: delete it from here.
const ALLOWED_FOR_NOW: &[(&str, &str)] = &[];

#[test]
fn no_module_cycle_and_nothing_outside_cli_uses_cli() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = scan_crate(&src);
    let allowed: BTreeSet<(String, String)> = ALLOWED_FOR_NOW
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut failures = String::new();
    for (from, to) in &allowed {
        if !graph.top.contains_key(&(from.clone(), to.clone()))
            && !graph.inner.contains_key(&(from.clone(), to.clone()))
        {
            let _ = writeln!(
                failures,
                "ALLOWED_FOR_NOW lists {from} -> {to}, which no longer exists: remove it from the list"
            );
        }
    }
    for ((from, to), sites) in &graph.top {
        if to == "cli" && from != "cli" && !allowed.contains(&(from.clone(), to.clone())) {
            let _ = writeln!(
                failures,
                "{from} refers to cli, the outermost layer, at {}",
                sites.join(", ")
            );
        }
    }
    for (name, edges) in [
        ("top-level modules", &graph.top),
        ("submodules", &graph.inner),
    ] {
        let kept: Edges = edges
            .iter()
            .filter(|(e, _)| !allowed.contains(*e))
            .map(|(e, s)| (e.clone(), s.clone()))
            .collect();
        for (cycle, knot) in knots(&kept) {
            let _ = writeln!(
                failures,
                "import cycle between {name}: {}",
                cycle.join(" -> ")
            );
            // Every edge among the modules that reach each other: any of them may
            // be the one in the wrong direction.
            for ((from, to), sites) in &kept {
                if knot.contains(from) && knot.contains(to) {
                    let more = match sites.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    let _ = writeln!(failures, "  {from} -> {to}  {}{more}", sites[0]);
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

/// A graph's edges, each with the places (`file:line`) that make it.
type Edges = BTreeMap<(String, String), Vec<String>>;

/// What the scan of `runner/src` found.
#[derive(Debug, Default)]
struct Graph {
    /// Between top-level modules.
    top: Edges,
    /// Between two submodules of the same top-level module (`host::runtime` →
    /// `host::state`); the module's own root file (`host/mod.rs`) is left out,
    /// as a parent naturally both declares and serves its children.
    inner: Edges,
}

/// One cycle per strongly connected component with more than one node, as the
/// list of nodes walked (first node repeated at the end), in a stable order.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    knots(edges).into_iter().map(|(cycle, _)| cycle).collect()
}

/// Each strongly connected component with more than one node: its shortest
/// cycle through its first node, and all its nodes.
fn knots(edges: &Edges) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().insert(to);
        next.entry(to).or_default();
    }
    let reach = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(n) = todo.pop() {
            for m in &next[n] {
                if seen.insert(*m) {
                    todo.push(m);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in next.keys() {
        if done.contains(n) || !reach[n].contains(n) {
            continue;
        }
        let component: BTreeSet<&str> = reach[n]
            .iter()
            .filter(|m| reach[*m].contains(n))
            .copied()
            .collect();
        done.extend(component.iter().copied());
        // The shortest way back to `n` (breadth first, inside the component).
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*n]);
        'search: while let Some(a) = queue.pop_front() {
            for b in &next[a] {
                if !component.contains(b) {
                    continue;
                }
                if b == n {
                    let mut path = vec![n.to_string()];
                    let mut at = a;
                    while at != *n {
                        path.push(at.to_string());
                        at = parent[at];
                    }
                    path.push(n.to_string());
                    path.reverse();
                    out.push((path, component.iter().map(|m| m.to_string()).collect()));
                    break 'search;
                }
                if !parent.contains_key(b) {
                    parent.insert(b, a);
                    queue.push_back(b);
                }
            }
        }
    }
    out
}

/// Reads every file of the library crate under `src` and builds both graphs.
fn scan_crate(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let lib = scan_source(&lib, &[]);
    let tops: BTreeSet<String> = lib.declared.iter().map(|m| m[0].clone()).collect();
    assert!(!tops.is_empty(), "no `mod` declaration found in lib.rs");

    let mut files = Vec::new();
    collect_rs_files(src, &mut files);
    let mut scanned = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let rel_name = rel.to_string_lossy().replace('\\', "/");
        // The binary is a crate of its own that uses the library as `runner::`.
        if rel_name == "lib.rs" || rel_name == "main.rs" {
            continue;
        }
        let module = module_path(rel);
        assert!(
            tops.contains(&module[0]),
            "{rel_name} is not under a module that lib.rs declares"
        );
        let text = std::fs::read_to_string(&file).expect("read source");
        scanned.push((rel_name, module.clone(), scan_source(&text, &module)));
    }

    // Modules that only exist under test, and every module that is declared.
    let test_only: Vec<Vec<String>> = scanned
        .iter()
        .flat_map(|(_, _, s)| s.test_only.iter().cloned())
        .collect();
    let mut modules: BTreeSet<Vec<String>> = lib.declared.iter().cloned().collect();
    for (_, _, s) in &scanned {
        modules.extend(s.declared.iter().cloned());
    }
    let is_test_only = |m: &[String]| test_only.iter().any(|t| m.starts_with(t));

    // Names a root file (`host/mod.rs`) imports from one of its submodules: a
    // sibling that writes `super::Name` reaches that submodule.
    let mut aliases: BTreeMap<(String, String), String> = BTreeMap::new();
    for (_, module, s) in &scanned {
        if module.len() != 1 {
            continue;
        }
        for r in &s.refs {
            if let (Some(binding), [top, sub, _, ..]) = (&r.binding, r.path.as_slice())
                && top == &module[0]
                && modules.contains(&vec![top.clone(), sub.clone()])
            {
                aliases.insert((top.clone(), binding.clone()), sub.clone());
            }
        }
    }

    let mut graph = Graph::default();
    for (file, module, s) in &scanned {
        if is_test_only(module) {
            continue;
        }
        for r in &s.refs {
            let site = format!("runner/src/{file}:{}", r.line);
            let Some(top) = r.path.first() else { continue };
            if !tops.contains(top) {
                continue;
            }
            if top != &module[0] {
                let edge = (module[0].clone(), top.clone());
                push_site(graph.top.entry(edge).or_default(), site);
                continue;
            }
            // Inside one top-level module: from a submodule to a sibling.
            if module.len() < 2 {
                continue;
            }
            if r.glob && r.path.len() == 1 {
                panic!(
                    "{site}: a glob import of `{top}`'s root hides which submodule each name comes \
                     from; import the names one by one"
                );
            }
            let Some(second) = r.path.get(1) else {
                continue;
            };
            let sub = if modules.contains(&vec![top.clone(), second.clone()]) {
                second.clone()
            } else if let Some(sub) = aliases.get(&(top.clone(), second.clone())) {
                sub.clone()
            } else {
                continue;
            };
            if sub != module[1] {
                let edge = (format!("{top}::{}", module[1]), format!("{top}::{sub}"));
                push_site(graph.inner.entry(edge).or_default(), site);
            }
        }
    }
    graph
}

/// Notes a place once, however many paths on that line make the same edge.
fn push_site(sites: &mut Vec<String>, site: String) {
    if !sites.contains(&site) {
        sites.push(site);
    }
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read source folder")
        .map(|e| e.expect("read folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file holds, from its path: `host/runtime.rs` is `host::runtime`,
/// `host/oci/mod.rs` is `host::oci`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.strip_suffix(".rs").expect("a .rs file");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

/// A path that a file names, resolved to an absolute module path.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    /// Segments from the crate root: `["host", "state", "StepState"]`.
    path: Vec<String>,
    /// The name a `use` binds it to, if it is a `use` leaf.
    binding: Option<String>,
    /// `use path::*`.
    glob: bool,
    line: usize,
}

/// What one file says, test-only items removed.
#[derive(Debug, Default)]
struct Scanned {
    refs: Vec<Ref>,
    /// Modules it declares (`mod x;` or `mod x { … }`), absolute.
    declared: Vec<Vec<String>>,
    /// Modules it declares under `#[cfg(test)]`, absolute.
    test_only: Vec<Vec<String>>,
}

/// Scans one file's text, `module` being the module the file holds.
fn scan_source(text: &str, module: &[String]) -> Scanned {
    let tokens = lex(text);
    let mut out = Scanned::default();
    let tokens = drop_test_items(&tokens, module, &mut out.test_only);

    // Inline modules open a scope: `super` inside one is relative to it.
    let mut scope: Vec<String> = module.to_vec();
    let mut closes_at: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut in_use = false;
    let mut i = 0;
    while i < tokens.len() {
        let prev_is_sep = i > 0 && tokens[i - 1].tok == Tok::PathSep;
        match &tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if closes_at.last() == Some(&depth) {
                    closes_at.pop();
                    scope.pop();
                }
            }
            Tok::Punct(';') => in_use = false,
            Tok::Ident(kw) if kw == "use" => in_use = true,
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(Tok::Ident(name)) = tokens.get(i + 1).map(|t| &t.tok) {
                    let mut declared = scope.clone();
                    declared.push(name.clone());
                    out.declared.push(declared);
                    if tokens.get(i + 2).map(|t| &t.tok) == Some(&Tok::Punct('{')) {
                        scope.push(name.clone());
                        closes_at.push(depth);
                    }
                }
            }
            Tok::Ident(start)
                if !prev_is_sep
                    && matches!(start.as_str(), "crate" | "super" | "self")
                    && tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep) =>
            {
                let mut base: Option<Vec<String>> = Some(if start == "crate" {
                    Vec::new()
                } else {
                    scope.clone()
                });
                let mut j = i;
                // `super::super::…`, `self::…`
                while let Some(Tok::Ident(seg)) = tokens.get(j).map(|t| &t.tok) {
                    if tokens.get(j + 1).map(|t| &t.tok) != Some(&Tok::PathSep) {
                        break;
                    }
                    match seg.as_str() {
                        "super" => {
                            base = base.and_then(|mut b| b.pop().map(|_| b));
                        }
                        "self" | "crate" if j == i => {}
                        _ => break,
                    }
                    j += 2;
                }
                if let Some(base) = base {
                    let mut leaves = Vec::new();
                    use_tree(&tokens, j, base, &mut leaves);
                    for (path, binding, glob) in leaves {
                        out.refs.push(Ref {
                            path,
                            binding: if in_use { binding } else { None },
                            glob,
                            line: tokens[i].line,
                        });
                    }
                }
            }
            // A root file's `use child::Name;`: relative to the module itself.
            Tok::Ident(first)
                if in_use
                    && module.len() == 1
                    && scope.len() == 1
                    && i > 0
                    && tokens[i - 1].tok == Tok::Ident("use".into()) =>
            {
                let _ = first;
                let mut leaves = Vec::new();
                use_tree(&tokens, i, scope.clone(), &mut leaves);
                for (path, binding, glob) in leaves {
                    out.refs.push(Ref {
                        path,
                        binding,
                        glob,
                        line: tokens[i].line,
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads a path or `use` tree from `tokens[at]` on, below `prefix`, pushing each
/// leaf as (absolute path, the name it binds, whether it is a glob).
fn use_tree(
    tokens: &[Token],
    mut at: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>, bool)>,
) -> usize {
    loop {
        match tokens.get(at).map(|t| &t.tok) {
            Some(Tok::Punct('{')) => {
                at += 1;
                loop {
                    match tokens.get(at).map(|t| &t.tok) {
                        Some(Tok::Punct('}')) | None => return at + 1,
                        Some(Tok::Punct(',')) => at += 1,
                        Some(Tok::Ident(s)) if s == "self" => {
                            let binding = prefix.last().cloned();
                            out.push((prefix.clone(), binding, false));
                            at += 1;
                        }
                        _ => at = use_tree(tokens, at, prefix.clone(), out),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push((prefix, None, true));
                return at + 1;
            }
            Some(Tok::Ident(seg)) => {
                prefix.push(seg.clone());
                if tokens.get(at + 1).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    at += 2;
                    continue;
                }
                let mut binding = Some(seg.clone());
                at += 1;
                if tokens.get(at).map(|t| &t.tok) == Some(&Tok::Ident("as".into())) {
                    binding = match tokens.get(at + 1).map(|t| &t.tok) {
                        Some(Tok::Ident(alias)) => Some(alias.clone()),
                        _ => None,
                    };
                    at += 2;
                }
                out.push((prefix, binding, false));
                return at;
            }
            _ => {
                if !prefix.is_empty() {
                    out.push((prefix, None, false));
                }
                return at;
            }
        }
    }
}

/// Removes every item under `#[cfg(test)]` (and a file-wide `#![cfg(test)]`),
/// noting the test-only modules it declares.
fn drop_test_items(
    tokens: &[Token],
    module: &[String],
    test_only: &mut Vec<Vec<String>>,
) -> Vec<Token> {
    let cfg_test = |at: usize, inner: bool| {
        let mut want = vec![Tok::Punct('#')];
        if inner {
            want.push(Tok::Punct('!'));
        }
        want.extend([
            Tok::Punct('['),
            Tok::Ident("cfg".into()),
            Tok::Punct('('),
            Tok::Ident("test".into()),
            Tok::Punct(')'),
            Tok::Punct(']'),
        ]);
        let n = want.len();
        (tokens.len() >= at + n && tokens[at..at + n].iter().map(|t| &t.tok).eq(want.iter()))
            .then_some(n)
    };
    if (0..tokens.len()).any(|i| cfg_test(i, true).is_some()) {
        test_only.push(module.to_vec());
        return Vec::new();
    }
    let mut kept = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(n) = cfg_test(i, false) else {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + n;
        // Further attributes on the same item.
        while tokens.get(j).map(|t| &t.tok) == Some(&Tok::Punct('#')) {
            j = skip_group(tokens, j + 1);
        }
        // `mod name;` (a file) or `mod name { … }`.
        let mut k = j;
        if tokens.get(k).map(|t| &t.tok) == Some(&Tok::Ident("pub".into())) {
            k += 1;
            if tokens.get(k).map(|t| &t.tok) == Some(&Tok::Punct('(')) {
                k = skip_group(tokens, k);
            }
        }
        if tokens.get(k).map(|t| &t.tok) == Some(&Tok::Ident("mod".into()))
            && let Some(Tok::Ident(name)) = tokens.get(k + 1).map(|t| &t.tok)
        {
            let mut m = module.to_vec();
            m.push(name.clone());
            test_only.push(m);
        }
        // The item ends at a `;` outside brackets, or with its first `{ … }`.
        while j < tokens.len() {
            match tokens[j].tok {
                Tok::Punct(';') => {
                    j += 1;
                    break;
                }
                Tok::Punct('{') => {
                    j = skip_group(tokens, j);
                    break;
                }
                Tok::Punct('(' | '[') => j = skip_group(tokens, j),
                _ => j += 1,
            }
        }
        i = j;
    }
    kept
}

/// The index just past the bracket group that opens at `tokens[at]`.
fn skip_group(tokens: &[Token], at: usize) -> usize {
    let mut depth = 0usize;
    let mut i = at;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Attribute keys whose string value is a path to a function (serde's).
const SERDE_PATH_KEYS: &[&str] = &[
    "with",
    "serialize_with",
    "deserialize_with",
    "default",
    "skip_serializing_if",
    "getter",
];

/// Identifiers and punctuation with their line; comments, literals and
/// lifetimes are dropped, so that text inside them cannot look like a path.
fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let is_ident = |ch: char| ch == '_' || ch.is_alphanumeric();
    let mut out: Vec<Token> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Counts the newlines a skipped span held.
    let lines_in = |from: usize, to: usize| {
        c[from..to.min(c.len())]
            .iter()
            .filter(|&&ch| ch == '\n')
            .count()
    };
    while i < c.len() {
        let ch = c[i];
        let start = i;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += lines_in(start, i);
        } else if ch == '"' {
            i = skip_string(&c, i + 1);
            // serde's `with = "path"` and its kin name a function: that is code.
            let n = out.len();
            if n >= 2
                && out[n - 1].tok == Tok::Punct('=')
                && matches!(&out[n - 2].tok, Tok::Ident(k) if SERDE_PATH_KEYS.contains(&k.as_str()))
            {
                let inner: String = c[start + 1..i.saturating_sub(1)].iter().collect();
                out.extend(lex(&inner).into_iter().map(|t| Token { line, ..t }));
            }
            line += lines_in(start, i);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // '\n', '\'', '\u{…}'
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
        } else if is_ident(ch) {
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '"' | '#'))) {
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                while i < c.len() {
                    if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                line += lines_in(start, i);
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(&c, i + 1);
                line += lines_in(start, i);
            } else if word == "b" && at(i) == '\'' {
                i += 1;
                if at(i) == '\\' {
                    i += 1;
                }
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if word == "r" && at(i) == '#' && is_ident(at(i + 1)) {
                // A raw identifier, `r#type`.
                let from = i + 1;
                i = from;
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(c[from..i].iter().collect()),
                    line,
                });
            } else {
                out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                });
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// The index just past the closing quote of a string whose body starts at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

mod checks_of_the_checker {
    //! The scanner and the cycle search on small hand-made inputs: a check that
    //! cannot fail proves nothing.

    use super::*;

    fn paths(text: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        scan_source(text, &module)
            .refs
            .iter()
            .map(|r| format!("{}@{}", r.path.join("::"), r.line))
            .collect()
    }

    #[test]
    fn a_real_use_of_cli_counts() {
        assert_eq!(paths("use crate::cli::x;", &["record"]), ["cli::x@1"]);
        assert_eq!(
            paths(
                "fn f() {\n    let d = crate::cli::state_dir();\n}",
                &["record"]
            ),
            ["cli::state_dir@2"]
        );
    }

    #[test]
    fn comments_strings_and_literals_do_not_count() {
        let text = r##"
            // use crate::cli::x;
            /// See [`crate::cli::run`].
            //! crate::cli
            /* crate::cli /* nested */ crate::cli */
            const A: &str = "crate::cli::x";
            const B: &str = r#"use crate::cli::{a, b}; "quoted" "#;
            const C: &[u8] = b"crate::cli";
            const D: char = '"';
            fn f<'a>(x: &'a str) -> char { 'c' }
            #[doc = "crate::cli"]
            struct S;
        "##;
        assert_eq!(paths(text, &["record"]), Vec::<String>::new());
    }

    #[test]
    fn serde_paths_in_attributes_count() {
        let text = "struct L {\n    #[serde(deserialize_with = \"crate::engine::events::word\")]\n    level: W,\n    #[serde(rename = \"crate::cli\")]\n    x: u8,\n}";
        assert_eq!(paths(text, &["caps", "log"]), ["engine::events::word@2"]);
    }

    #[test]
    fn test_items_do_not_count() {
        let text = "
            #[cfg(test)]
            mod tests {
                use crate::cli::x;
                fn inner() { let s = \"}\"; }
            }
            #[cfg(test)]
            #[allow(dead_code)]
            fn helper() -> [u8; 2] { crate::cli::y() }
            #[cfg(test)]
            use crate::cli::z;
            use crate::host::state;
        ";
        assert_eq!(paths(text, &["record"]), ["host::state@12"]);
        let mut declared = Vec::new();
        drop_test_items(
            &lex("#[cfg(test)]\nmod tests;"),
            &["report".into()],
            &mut declared,
        );
        assert_eq!(declared, [vec!["report".to_string(), "tests".to_string()]]);
    }

    #[test]
    fn use_trees_and_super_resolve_to_modules() {
        let text = "
            use crate::{caps::{self, log::Log}, host::state as st};
            use super::state::StepState;
            use super::super::expr;
            fn f() { self::g(); super::Denials::default(); }
            mod inner { use super::super::runtime::X; }
            pub(crate) fn g() {}
        ";
        assert_eq!(
            paths(text, &["host", "runtime"]),
            [
                "caps@2",
                "caps::log::Log@2",
                "host::state@2",
                "host::state::StepState@3",
                "expr@4",
                "host::runtime::g@5",
                "host::Denials::default@5",
                "host::runtime::X@6",
            ]
        );
    }

    #[test]
    fn cycles_are_found_and_only_cycles() {
        let graph = |pairs: &[(&str, &str)]| -> Edges {
            pairs
                .iter()
                .map(|(a, b)| ((a.to_string(), b.to_string()), vec!["x.rs:1".to_string()]))
                .collect()
        };
        assert!(cycles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
        assert_eq!(
            cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            [["a", "b", "c", "a"]]
        );
        // Two separate cycles, each reported once, by the shortest way round.
        assert_eq!(
            cycles(&graph(&[
                ("caps", "host"),
                ("host", "caps"),
                ("host", "playbook"),
                ("x", "y"),
                ("y", "z"),
                ("z", "x"),
                ("y", "x"),
            ])),
            vec![vec!["caps", "host", "caps"], vec!["x", "y", "x"]]
        );
    }

    #[test]
    fn module_paths_follow_files() {
        assert_eq!(
            module_path(Path::new("host/runtime.rs")),
            ["host", "runtime"]
        );
        assert_eq!(module_path(Path::new("host/oci/mod.rs")), ["host", "oci"]);
        assert_eq!(module_path(Path::new("identity.rs")), ["identity"]);
    }
}
