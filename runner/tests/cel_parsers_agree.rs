//! Validation parses CEL with the `cel` crate's fast Pratt parser; its ANTLR parser
//! is the reference implementation. They must agree on what is valid and on what an
//! expression reads, for every expression in the shipped playbooks and for a list of
//! tricky ones, or validation would accept what the reference rejects.

use std::path::PathBuf;

use runner::expr::{self, Piece};
use serde_json::Value;

const CONDITION_KEYS: &[&str] = &["if", "pass", "fail", "success", "failure"];

const TRICKY: &[&str] = &[
    "a.b.c",
    "a['b'].c",
    "a[b.c]",
    "has(a.b)",
    "a.all(x, x > b.c)",
    "a.exists(x, x == 'y') || !b",
    "a.map(x, x * 2).size() > 0",
    "a ? b : c",
    "-a.b + 3 * (c - 1) / 2 % 4",
    "'}}' + \"x\" + '''t'''",
    "[1, 2, 3][0] == 1u",
    "{'k': v}.k",
    "a in ['x', 'y']",
    "size(a) >= 2 && int(b) < 3.5",
    "a > > 3",
    "a.",
    "(a",
    "a ==",
    "1 +",
    "'unterminated",
    "a..b",
    "a.b(",
    "",
    "   ",
];

fn playbook_expressions() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("playbooks/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let v =
                runner::playbook::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            collect(&v.tree.to_json(), None, &mut out);
        }
    }
    assert!(
        out.len() > 50,
        "expected the playbooks' expressions, found {}",
        out.len()
    );
    out
}

fn collect(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        Value::String(s) if key.is_some_and(|k| CONDITION_KEYS.contains(&k)) => {
            out.push(expr::unwrap_condition(s).to_owned());
        }
        Value::String(s) => {
            for piece in expr::parse_template(s).unwrap_or_default() {
                if let Piece::Expr { source, .. } = piece {
                    out.push(source.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, key, out)),
        Value::Object(map) => map.iter().for_each(|(k, i)| collect(i, Some(k), out)),
        _ => {}
    }
}

#[test]
fn both_parsers_agree() {
    let mut all = playbook_expressions();
    all.extend(TRICKY.iter().map(|s| s.to_string()));
    let mut disagreements = Vec::new();
    for source in &all {
        let fast = expr::compile(source);
        let reference = cel::Program::compile(source);
        match (&fast, &reference) {
            (Ok(f), Ok(r)) => {
                let (a, b) = (f.references(), expr::references_of(r.expression()));
                if a != b {
                    disagreements.push(format!("{source:?}: references {a:?} vs {b:?}"));
                }
            }
            (Err(_), Err(_)) => {}
            _ => disagreements.push(format!(
                "{source:?}: pratt {}, antlr {}",
                if fast.is_ok() { "accepts" } else { "rejects" },
                if reference.is_ok() {
                    "accepts"
                } else {
                    "rejects"
                }
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "parsers disagree:\n{}",
        disagreements.join("\n")
    );
}
