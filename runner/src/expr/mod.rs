//! Expressions: CEL (the language of Kubernetes admission rules and Tekton) for
//! conditions and gates, and `${{ }}` interpolation in strings.
//!
//! Why CEL: it is side-effect free, always terminates, and is already known to the
//! people who write Kubernetes policies. Here we compile expressions and list what
//! they reference, so validation can reject `steps.deploi.outputs` before anything
//! runs; evaluation lives next to the code that has the values (plan, engine).

use std::fmt;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::{IdedExpr, Program};

/// A compiled CEL expression with its source.
pub struct Compiled {
    pub source: String,
    pub program: Program,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Compiled").field(&self.source).finish()
    }
}

/// A CEL syntax error, with its 1-based position inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid expression: {} (at character {})", self.message, self.col)
    }
}

/// Removes an optional `${{ }}` around a whole condition, so `if: ${{ x }}` and
/// `if: x` mean the same.
pub fn unwrap_condition(text: &str) -> &str {
    let t = text.trim();
    match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("${{") => inner.trim(),
        _ => t,
    }
}

/// Compiles one CEL expression.
pub fn compile(source: &str) -> Result<Compiled, SyntaxError> {
    if source.trim().is_empty() {
        return Err(SyntaxError { line: 1, col: 1, message: "the expression is empty".into() });
    }
    match Program::compile(source) {
        Ok(program) => Ok(Compiled { source: source.to_owned(), program }),
        Err(errors) => {
            let first = errors.errors.first();
            let (line, col) = first.map_or((0, 0), |e| e.pos);
            Err(SyntaxError {
                line: usize::try_from(line).unwrap_or(0).max(1),
                col: usize::try_from(col).unwrap_or(0) + 1,
                message: first.map_or_else(|| "cannot parse".to_owned(), |e| e.msg.clone()),
            })
        }
    }
}

/// A name an expression reads: a root variable and the fields selected from it, as
/// far as they are literal (`steps.build.outputs["sha"]` → `steps`, `build`, `outputs`, `sha`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub root: String,
    pub fields: Vec<String>,
    /// Byte offset of the reference's first character in the expression.
    pub offset: usize,
}

impl Reference {
    /// Dotted form for messages: `steps.build.outputs`.
    pub fn dotted(&self, depth: usize) -> String {
        std::iter::once(self.root.as_str())
            .chain(self.fields.iter().take(depth).map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl Compiled {
    /// Every variable reference, outermost selection only (`a.b.c` is one reference,
    /// not three), ignoring names bound by macros such as `exists(x, …)`.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        let mut bound = Vec::new();
        self.walk(self.program.expression(), &mut bound, &mut out);
        out
    }

    fn offset_of(&self, e: &IdedExpr) -> usize {
        self.program
            .source_info()
            .offset_for(e.id)
            .map_or(0, |(start, _)| start as usize)
    }

    fn walk(&self, e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
        if let Some((root, fields)) = chain(e) {
            if !bound.iter().any(|b| b == root) {
                out.push(Reference {
                    root: root.to_owned(),
                    fields: fields.into_iter().map(str::to_owned).collect(),
                    offset: self.offset_of(chain_root(e)),
                });
            }
            // Index expressions inside the chain (`a[b.c]`) may hold references too.
            self.walk_indices(e, bound, out);
            return;
        }
        match &e.expr {
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    self.walk(t, bound, out);
                }
                for a in &call.args {
                    self.walk(a, bound, out);
                }
            }
            Expr::Select(sel) => self.walk(&sel.operand, bound, out),
            Expr::List(list) => {
                for el in &list.elements {
                    self.walk(el, bound, out);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key, bound, out);
                        self.walk(&me.value, bound, out);
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value, bound, out);
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound, out);
                self.walk(&c.accu_init, bound, out);
                let before = bound.len();
                bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    bound.push(v2.clone());
                }
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound, out);
                self.walk(&c.loop_step, bound, out);
                self.walk(&c.result, bound, out);
                bound.truncate(before);
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_indices(&self, e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
        match &e.expr {
            Expr::Select(sel) => self.walk_indices(&sel.operand, bound, out),
            Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => {
                self.walk_indices(&call.args[0], bound, out);
                if !matches!(call.args[1].expr, Expr::Literal(_)) {
                    self.walk(&call.args[1], bound, out);
                }
            }
            _ => {}
        }
    }
}

/// The identifier a chain starts from.
fn chain_root(e: &IdedExpr) -> &IdedExpr {
    match &e.expr {
        Expr::Select(sel) => chain_root(&sel.operand),
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => chain_root(&call.args[0]),
        _ => e,
    }
}

/// `a.b["c"].d` → (`a`, [`b`, `c`, `d`]). `None` when `e` is not a plain chain.
fn chain(e: &IdedExpr) -> Option<(&str, Vec<&str>)> {
    match &e.expr {
        Expr::Ident(name) => Some((name.as_str(), Vec::new())),
        Expr::Select(sel) => {
            let (root, mut fields) = chain(&sel.operand)?;
            fields.push(sel.field.as_str());
            Some((root, fields))
        }
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 && call.target.is_none() => {
            let (root, mut fields) = chain(&call.args[0])?;
            match &call.args[1].expr {
                Expr::Literal(LiteralValue::String(s)) => {
                    fields.push(s.as_ref());
                    Some((root, fields))
                }
                // A computed index ends the literal part of the chain.
                _ => Some((root, fields)),
            }
        }
        _ => None,
    }
}

/// A part of a `${{ }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// An expression, with its byte offset in the template (after `${{`).
    Expr { source: &'a str, offset: usize },
}

/// Why a template cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the `${{` that is not closed.
    pub offset: usize,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`${{` is not closed by `}}`")
    }
}

/// Splits a string into text and `${{ expression }}` pieces. An expression ends at
/// the first `}}` after its `${{`.
pub fn parse_template(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(start) = text[rest..].find("${{").map(|i| i + rest) {
        if start > rest {
            pieces.push(Piece::Text(&text[rest..start]));
        }
        let inner = start + 3;
        let end = text[inner..].find("}}").map(|i| i + inner).ok_or(TemplateError { offset: start })?;
        pieces.push(Piece::Expr { source: &text[inner..end], offset: inner });
        rest = end + 2;
    }
    if rest < text.len() {
        pieces.push(Piece::Text(&text[rest..]));
    }
    Ok(pieces)
}

/// When `text` is exactly one `${{ expression }}` (surrounding blanks allowed), the
/// expression: its value keeps its type instead of becoming text.
pub fn whole_expression(text: &str) -> Option<&str> {
    match parse_template(text.trim()).ok()?.as_slice() {
        [Piece::Expr { source, .. }] => Some(source),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str) -> Vec<String> {
        compile(src)
            .unwrap()
            .references()
            .iter()
            .map(|r| r.dotted(usize::MAX))
            .collect()
    }

    #[test]
    fn references_know_their_offset() {
        let c = compile("true && inputs.x == 1").unwrap();
        assert_eq!(c.references()[0].offset, 8);
        let c = compile("inputs.x").unwrap();
        assert_eq!(c.references()[0].offset, 0);
    }

    #[test]
    fn references_follow_selection_chains() {
        assert_eq!(refs("steps.build.outputs.sha != ''"), ["steps.build.outputs.sha"]);
        assert_eq!(refs("steps['build'].outputs[\"sha\"]"), ["steps.build.outputs.sha"]);
        assert_eq!(
            refs("inputs.priority in ['P0', 'P1'] && run.elapsed < 60"),
            ["inputs.priority", "run.elapsed"]
        );
    }

    #[test]
    fn references_see_through_macros_and_skip_bound_names() {
        assert_eq!(refs("has(steps.a.outputs.x)"), ["steps.a.outputs.x"]);
        assert_eq!(refs("steps.a.outputs.list.all(x, x > inputs.min)"), ["steps.a.outputs.list", "inputs.min"]);
    }

    #[test]
    fn computed_indices_are_references_too() {
        assert_eq!(refs("steps.a.outputs[inputs.key]"), ["steps.a.outputs", "inputs.key"]);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = compile("steps.a.outputs.x >").unwrap_err();
        assert!(e.col >= 1, "{e:?}");
        assert!(compile("").is_err());
    }

    #[test]
    fn templates_split_into_pieces() {
        assert_eq!(
            parse_template("v${{ inputs.tag }}-${{run.id}}").unwrap(),
            vec![
                Piece::Text("v"),
                Piece::Expr { source: " inputs.tag ", offset: 4 },
                Piece::Text("-"),
                Piece::Expr { source: "run.id", offset: 22 },
            ]
        );
        assert_eq!(parse_template("a ${{ b").unwrap_err(), TemplateError { offset: 2 });
        assert_eq!(whole_expression(" ${{ inputs.n }} "), Some(" inputs.n "));
        assert_eq!(whole_expression("x${{ inputs.n }}"), None);
        assert_eq!(unwrap_condition("${{ a && b }}"), "a && b");
        assert_eq!(unwrap_condition("a"), "a");
    }
}
