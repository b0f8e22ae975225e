//! Expressions: CEL (the language of Kubernetes admission rules and Tekton) for
//! conditions and gates, and `${{ }}` interpolation in strings.
//!
//! Why CEL: it is side-effect free, always terminates, and is already known to the
//! people who write Kubernetes policies. Here we compile expressions and list what
//! they reference, so validation can reject `steps.deploi.outputs` before anything
//! runs; evaluation lives next to the code that has the values (plan, engine).

use std::fmt;

pub mod check;
pub mod nonfinite;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::parser::PrattParser;
use cel::{IdedExpr, Program};

/// A compiled CEL expression with its source.
///
/// Parsed with the `cel` crate's Pratt parser: about 25 times faster than its ANTLR
/// parser here (2 µs against 60 µs per expression), which decides whether a large
/// playbook validates in milliseconds or in a noticeable fraction of a second. The
/// ANTLR parser is used only to locate a problem inside an expression, and a test
/// checks that both parsers agree on every expression of the shipped playbooks.
pub struct Compiled {
    pub source: String,
    pub expr: IdedExpr,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Compiled").field(&self.source).finish()
    }
}

/// Deepest nesting of an expression; CEL's own recommended minimum is 32.
const MAX_EXPRESSION_DEPTH: u16 = 64;
/// Most nodes of one expression.
const MAX_EXPRESSION_NODES: usize = 10_000;

/// A CEL syntax error, with its 1-based position inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid expression: {} (at character {})",
            self.message, self.col
        )
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
        return Err(SyntaxError {
            line: 1,
            col: 1,
            message: "the expression is empty".into(),
        });
    }
    let parser = PrattParser::default()
        .max_recursion_depth(MAX_EXPRESSION_DEPTH)
        .max_expression_node_count(MAX_EXPRESSION_NODES);
    match parser.parse(source) {
        Ok(expr) => Ok(Compiled {
            source: source.to_owned(),
            expr,
        }),
        Err(errors) => {
            let first = errors.errors.first();
            let (line, col) = first.map_or((1, 1), |e| e.pos);
            let (line, col) = (
                usize::try_from(line).unwrap_or(1).max(1),
                usize::try_from(col).unwrap_or(1).max(1),
            );
            let mut message = first.map_or_else(|| "cannot parse".to_owned(), |e| e.msg.clone());
            if message == "unexpected token"
                && let Some(token) = token_at(source, line, col)
            {
                message = format!("unexpected `{token}`");
            }
            Err(SyntaxError {
                line,
                col,
                // One line, whatever the parser wrote: diagnostics are line-oriented.
                message: message.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        }
    }
}

/// The token starting at 1-based (`line`, `col`) of `source`: a word, or one character.
fn token_at(source: &str, line: usize, col: usize) -> Option<String> {
    let rest: String = source
        .lines()
        .nth(line - 1)?
        .chars()
        .skip(col - 1)
        .collect();
    let first = rest.chars().next()?;
    if first.is_alphanumeric() || first == '_' {
        Some(
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect(),
        )
    } else {
        Some(first.to_string())
    }
}

/// A name an expression reads: a root variable and the fields selected from it, as
/// far as they are literal (`steps.build.outputs["sha"]` → `steps`, `build`, `outputs`, `sha`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub root: String,
    pub fields: Vec<String>,
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
        references_of(&self.expr)
    }

    /// Byte offset in the source where `reference` starts (0 when it cannot be found).
    /// Only called to report a problem, so it may re-parse with the ANTLR parser, the
    /// one that records positions.
    pub fn offset_of(&self, reference: &Reference) -> usize {
        let Ok(program) = Program::compile(&self.source) else {
            return 0;
        };
        let mut found = None;
        walk(program.expression(), &mut Vec::new(), &mut |e| {
            if found.is_none()
                && let Some((root, fields)) = chain(e)
                && root == reference.root
                && fields
                    .iter()
                    .copied()
                    .eq(reference.fields.iter().map(String::as_str))
            {
                found = program
                    .source_info()
                    .offset_for(chain_root(e).id)
                    .map(|(start, _)| start as usize);
            }
        });
        found.unwrap_or(0)
    }
}

impl Compiled {
    /// Type-checks the expression (see [`check`]); with `condition`, it must be
    /// able to give a `bool`. The error has its byte offset in the source.
    pub fn type_check(&self, condition: bool) -> Result<(), (usize, String)> {
        let Err(e) = check::check(&self.expr, condition) else {
            return Ok(());
        };
        // Only now is the position worth a parse with the parser that records
        // positions; both parsers build the same tree, so the same node fails.
        let at = Program::compile(&self.source)
            .ok()
            .and_then(|program| {
                let again = check::check(program.expression(), condition).err()?;
                program
                    .source_info()
                    .offset_for(again.id)
                    .map(|(start, _)| start as usize)
            })
            .unwrap_or(0);
        Err((at, e.message))
    }
}

/// Whether the evaluator knows a function `name` called as a method
/// (`x.name()`) or not (`name()`): a call with no arguments fails as an
/// undeclared reference only when it does not.
pub(crate) fn runtime_knows(name: &str, method: bool) -> bool {
    use cel::common::ast::CallExpr;
    let call = IdedExpr {
        id: 1,
        expr: Expr::Call(CallExpr {
            func_name: name.to_owned(),
            target: method.then(|| {
                Box::new(IdedExpr {
                    id: 2,
                    expr: Expr::Literal(LiteralValue::String(String::new().into())),
                })
            }),
            args: Vec::new(),
        }),
    };
    let ctx = cel::Context::with_env(environment());
    !matches!(
        cel::Value::resolve(&call, &ctx),
        Err(cel::ExecutionError::UndeclaredReference(ref n)) if n.as_str() == name
    )
}

/// The references of a parsed expression, whichever parser produced it.
pub fn references_of(expr: &IdedExpr) -> Vec<Reference> {
    let mut out = Vec::new();
    walk(expr, &mut Vec::new(), &mut |e| {
        if let Some((root, fields)) = chain(e) {
            out.push(Reference {
                root: root.to_owned(),
                fields: fields.into_iter().map(str::to_owned).collect(),
            });
        }
    });
    out
}

/// Calls `visit` on every outermost selection chain (`a.b.c` once, not three times)
/// whose root is not a name bound by a macro such as `exists(x, …)`.
fn walk(e: &IdedExpr, bound: &mut Vec<String>, visit: &mut impl FnMut(&IdedExpr)) {
    if let Some((root, _)) = chain(e) {
        if !bound.iter().any(|b| b == root) {
            visit(e);
        }
        // Index expressions inside the chain (`a[b.c]`) may hold references too.
        walk_indices(e, bound, visit);
        return;
    }
    match &e.expr {
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                walk(t, bound, visit);
            }
            for a in &call.args {
                walk(a, bound, visit);
            }
        }
        Expr::Select(sel) => walk(&sel.operand, bound, visit),
        Expr::List(list) => {
            for el in &list.elements {
                walk(el, bound, visit);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, bound, visit);
                    walk(&me.value, bound, visit);
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    walk(&f.value, bound, visit);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, visit);
            walk(&c.accu_init, bound, visit);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound, visit);
            walk(&c.loop_step, bound, visit);
            walk(&c.result, bound, visit);
            bound.truncate(before);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn walk_indices(e: &IdedExpr, bound: &mut Vec<String>, visit: &mut impl FnMut(&IdedExpr)) {
    match &e.expr {
        Expr::Select(sel) => walk_indices(&sel.operand, bound, visit),
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => {
            walk_indices(&call.args[0], bound, visit);
            if !matches!(call.args[1].expr, Expr::Literal(_)) {
                walk(&call.args[1], bound, visit);
            }
        }
        _ => {}
    }
}

/// The identifier a chain starts from.
fn chain_root(e: &IdedExpr) -> &IdedExpr {
    match &e.expr {
        Expr::Select(sel) => chain_root(&sel.operand),
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => {
            chain_root(&call.args[0])
        }
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
        Expr::Call(call)
            if call.func_name == "_[_]" && call.args.len() == 2 && call.target.is_none() =>
        {
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

/// Where `run_report(ID)` finds another run's report: the markdown report of
/// run ID from the journal (timeline, gates and what they measured,
/// handlers), e.g. for a post-mortem of the run that failed. Given by whoever
/// knows the journal (the run service), per evaluation: two runs in one
/// process may read two journals.
pub trait RunReports: Send + Sync {
    fn markdown(&self, run_id: &str) -> Result<String, String>;
}

/// What an expression is evaluated in: its variables (each key a root name:
/// `inputs`, `steps`, …) and where `run_report(ID)` reads (`None`: the
/// function fails, saying no journal is open).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub vars: &'a serde_json::Map<String, serde_json::Value>,
    pub reports: Option<&'a std::sync::Arc<dyn RunReports>>,
}

impl<'a> From<&'a serde_json::Map<String, serde_json::Value>> for Scope<'a> {
    fn from(vars: &'a serde_json::Map<String, serde_json::Value>) -> Scope<'a> {
        Scope {
            vars,
            reports: None,
        }
    }
}

/// The environment every expression is evaluated in: CEL's standard library
/// and the strings extension Kubernetes ships (`"a,b".split(",")`,
/// `lowerAscii()`, `format()`, ...). Built once: it is a few hundred overloads.
fn environment() -> std::sync::Arc<cel::Env> {
    static ENV: std::sync::LazyLock<std::sync::Arc<cel::Env>> = std::sync::LazyLock::new(|| {
        let mut env = cel::Env::stdlib();
        // Fails only if an overload were declared twice, which the standard
        // library and this extension never do (a unit test evaluates both).
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension fits the standard library");
        std::sync::Arc::new(env)
    });
    ENV.clone()
}

/// A value, and whether computing it ordered a NaN (`NaN < 1.0`): gates and
/// watches give such a condition a meaning of its own (see `engine::watch`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub value: serde_json::Value,
    pub compared_nan: bool,
}

/// Evaluates `source` with `vars` as its variables (each key a root name:
/// `inputs`, `steps`, …). The error says what went wrong, for a step error.
pub fn evaluate<'a>(
    source: &str,
    scope: impl Into<Scope<'a>>,
) -> Result<serde_json::Value, String> {
    evaluate_traced(source, scope).map(|e| e.value)
}

/// [`evaluate`], also telling whether a comparison met a NaN.
pub fn evaluate_traced<'a>(source: &str, scope: impl Into<Scope<'a>>) -> Result<Evaluated, String> {
    let Scope { vars, reports } = scope.into();
    let mut compiled = compile(source).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::with_env(environment());
    let compared_nan = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if ieee::rewrite(&mut compiled.expr) {
        ieee::register(&mut ctx, &compared_nan).map_err(|e| e.to_string())?;
    }
    if source.contains("run_report") {
        // CEL's functions are `'static`: the function holds its own handle.
        let reports = reports.cloned();
        ctx.add_function(
            "run_report",
            move |id: std::sync::Arc<String>| -> cel::ResolveResult {
                let report = match &reports {
                    Some(r) => r.markdown(&id),
                    None => Err("no run journal is open here".to_owned()),
                };
                report
                    .map(|text| cel::Value::String(std::sync::Arc::new(text)))
                    .map_err(|e| cel::ExecutionError::function_error("run_report", e))
            },
        )
        .map_err(|e| e.to_string())?;
    }
    // Hand CEL only what the expression reads: `steps` grows with every step of
    // a run, and converting all of it for each expression would make a run
    // quadratic in its length.
    let references = compiled.references();
    for (name, value) in vars {
        let mut used = references.iter().filter(|r| &r.root == name).peekable();
        if used.peek().is_none() {
            continue;
        }
        let keys: Option<Vec<&str>> = used.map(|r| r.fields.first().map(String::as_str)).collect();
        match (value, keys) {
            (serde_json::Value::Object(map), Some(keys)) => {
                let part: serde_json::Map<String, serde_json::Value> = keys
                    .into_iter()
                    .filter_map(|k| map.get(k).map(|v| (k.to_owned(), v.clone())))
                    .collect();
                ctx.add_variable(name.as_str(), AsCel(&serde_json::Value::Object(part)))
            }
            _ => ctx.add_variable(name.as_str(), AsCel(value)),
        }
        .map_err(|e| e.to_string())?;
    }
    let value = cel::Value::resolve(&compiled.expr, &ctx)
        .map_err(|e| format!("cannot evaluate `{}`: {e}", source.trim()))?;
    Ok(Evaluated {
        value: to_json(&value)
            .map_err(|e| format!("`{}` gives a value that is not JSON: {e}", source.trim()))?,
        compared_nan: compared_nan.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The names `source` reads whose value in `vars` is NaN (`steps.q.outputs.value`),
/// to say why a condition that compared a NaN did not decide.
pub fn nan_readings(
    source: &str,
    vars: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    let Ok(compiled) = compile(source) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for r in compiled.references() {
        let mut value = vars.get(&r.root);
        for f in &r.fields {
            value = value.and_then(|v| v.get(f));
        }
        let name = r.dotted(usize::MAX);
        if value.and_then(nonfinite::decode).is_some_and(f64::is_nan) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A CEL value as JSON; a NaN or infinite double becomes its marker object.
fn to_json(v: &cel::Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        cel::Value::Float(f) if !f.is_finite() => {
            nonfinite::encode(*f).unwrap_or(serde_json::Value::Null)
        }
        cel::Value::List(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<Vec<_>, _>>()?)
        }
        cel::Value::Map(map) => serde_json::Value::Object(
            map.map
                .iter()
                .map(|(k, v)| Ok((k.to_string(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.json().map_err(|e| e.to_string())?,
    })
}

/// Ordering comparisons that follow IEEE 754, as CEL's specification asks:
/// `NaN < 1.0`, `NaN >= 1.0` are false (the `cel` crate makes them errors),
/// `+Inf > 1000` is true. The parsed expression's `<`, `<=`, `>`, `>=` are
/// renamed to functions registered here; pairs that involve no double keep
/// the crate's own comparison, messages included.
mod ieee {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use cel::common::ast::{EntryExpr, Expr};
    use cel::{IdedExpr, Value};

    /// (CEL operator, our function, the crate's expression for other types).
    const OPERATORS: [(&str, &str, &str); 4] = [
        ("_<_", "@lt", "l < r"),
        ("_<=_", "@le", "l <= r"),
        ("_>_", "@gt", "l > r"),
        ("_>=_", "@ge", "l >= r"),
    ];

    /// Renames the comparisons in `e`; whether there was one.
    pub(super) fn rewrite(e: &mut IdedExpr) -> bool {
        let mut found = false;
        visit(e, &mut |call_name: &mut String| {
            if let Some((_, ours, _)) = OPERATORS.iter().find(|(op, _, _)| op == call_name) {
                *call_name = (*ours).to_owned();
                found = true;
            }
        });
        found
    }

    fn visit(e: &mut IdedExpr, f: &mut impl FnMut(&mut String)) {
        match &mut e.expr {
            Expr::Call(call) => {
                if call.args.len() == 2 && call.target.is_none() {
                    f(&mut call.func_name);
                }
                if let Some(t) = &mut call.target {
                    visit(t, f);
                }
                for a in &mut call.args {
                    visit(a, f);
                }
            }
            Expr::Select(sel) => visit(&mut sel.operand, f),
            Expr::List(list) => list.elements.iter_mut().for_each(|el| visit(el, f)),
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    if let EntryExpr::MapEntry(me) = &mut entry.expr {
                        visit(&mut me.key, f);
                        visit(&mut me.value, f);
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &mut st.entries {
                    if let EntryExpr::StructField(field) = &mut entry.expr {
                        visit(&mut field.value, f);
                    }
                }
            }
            Expr::Comprehension(c) => {
                for part in [
                    &mut c.iter_range,
                    &mut c.accu_init,
                    &mut c.loop_cond,
                    &mut c.loop_step,
                    &mut c.result,
                ] {
                    visit(part, f);
                }
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    /// Registers the four comparison functions on `ctx`; each sets
    /// `compared_nan` when one of its operands is a NaN.
    pub(super) fn register(
        ctx: &mut cel::Context<'_, '_>,
        compared_nan: &Arc<AtomicBool>,
    ) -> Result<(), cel::DeclarationError> {
        for (i, (_, ours, _)) in OPERATORS.iter().enumerate() {
            let seen = Arc::clone(compared_nan);
            ctx.add_function(ours, move |l: Value, r: Value| -> cel::ResolveResult {
                compare(i, &l, &r, &seen)
            })?;
        }
        Ok(())
    }

    fn compare(op: usize, l: &Value, r: &Value, seen: &AtomicBool) -> cel::ResolveResult {
        let number = |v: &Value| match v {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            _ => None,
        };
        let doubles = matches!(l, Value::Float(_)) || matches!(r, Value::Float(_));
        if doubles && let (Some(a), Some(b)) = (number(l), number(r)) {
            if a.is_nan() || b.is_nan() {
                seen.store(true, Ordering::Relaxed);
            }
            return Ok(Value::Bool(match op {
                0 => a < b,
                1 => a <= b,
                2 => a > b,
                _ => a >= b,
            }));
        }
        crate_comparison(op, l, r)
    }

    /// The crate's own operator, for strings, integers, timestamps, ... and
    /// for its error on pairs that have no ordering.
    fn crate_comparison(op: usize, l: &Value, r: &Value) -> cel::ResolveResult {
        static PARSED: std::sync::LazyLock<Vec<IdedExpr>> = std::sync::LazyLock::new(|| {
            OPERATORS
                .iter()
                .map(|(_, _, source)| {
                    cel::parser::PrattParser::default()
                        .parse(source)
                        .unwrap_or(IdedExpr {
                            id: 0,
                            expr: Expr::Unspecified,
                        })
                })
                .collect()
        });
        let mut ctx = cel::Context::with_env(super::environment());
        ctx.add_variable_from_value("l", l.clone());
        ctx.add_variable_from_value("r", r.clone());
        Value::resolve(&PARSED[op], &ctx)
    }
}

/// A JSON value as CEL sees it: integers are CEL `int` when they fit (JSON has one
/// number type; without this, `3` would be a `uint` and `inputs.n + 1` an error),
/// and a [`nonfinite`] marker is the `double` it stands for.
struct AsCel<'a>(&'a serde_json::Value);

impl serde::Serialize for AsCel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        if let Some(n) = nonfinite::decode(self.0) {
            return s.serialize_f64(n);
        }
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => s.serialize_i64(i),
                (None, Some(u), _) => s.serialize_u64(u),
                (_, _, f) => s.serialize_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(t) => s.serialize_str(t),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&AsCel(i))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &AsCel(v))?;
                }
                m.end()
            }
        }
    }
}

/// Renders a template: a string that is one whole `${{ }}` keeps the value's type;
/// otherwise each expression's value is put into the text.
pub fn render<'a>(text: &str, scope: impl Into<Scope<'a>>) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let scope = scope.into();
    if let Some(source) = whole_expression(text) {
        return evaluate(source, scope);
    }
    let pieces = parse_template(text).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Expr { source, .. } => match evaluate(source, scope)? {
                Value::String(s) => out.push_str(&s),
                // A NaN in text reads `NaN`, not as its marker object.
                other => out.push_str(&nonfinite::readable(&other)),
            },
        }
    }
    Ok(Value::String(out))
}

/// Renders every string inside a JSON value (a step's `with:`).
pub fn render_json<'a>(
    v: &serde_json::Value,
    scope: impl Into<Scope<'a>>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let scope = scope.into();
    Ok(match v {
        Value::String(s) => render(s, scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_json(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, i)| Ok((k.clone(), render_json(i, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A part of a `${{ }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// An expression, with its byte offset in the template (after `${{`).
    Expr {
        source: &'a str,
        offset: usize,
    },
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

/// Byte offset of the `}}` that closes an expression: the first one outside CEL
/// string literals (`'…'`, `"…"`, with `\` escapes), so `${{ x + '}}' }}` works.
fn closing(expr: &str) -> Option<usize> {
    let bytes = expr.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), b) if b == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(bytes[i]),
            (None, b'}') if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits a string into text and `${{ expression }}` pieces. An expression ends at
/// the first `}}` after its `${{` that is not inside a string literal.
pub fn parse_template(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(start) = text[rest..].find("${{").map(|i| i + rest) {
        if start > rest {
            pieces.push(Piece::Text(&text[rest..start]));
        }
        let inner = start + 3;
        let end = closing(&text[inner..])
            .map(|i| i + inner)
            .ok_or(TemplateError { offset: start })?;
        pieces.push(Piece::Expr {
            source: &text[inner..end],
            offset: inner,
        });
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
        assert_eq!(c.offset_of(&c.references()[0]), 8);
        let c = compile("a.b || inputs . x").unwrap();
        assert_eq!(c.offset_of(&c.references()[1]), 7);
    }

    #[test]
    fn references_follow_selection_chains() {
        assert_eq!(
            refs("steps.build.outputs.sha != ''"),
            ["steps.build.outputs.sha"]
        );
        assert_eq!(
            refs("steps['build'].outputs[\"sha\"]"),
            ["steps.build.outputs.sha"]
        );
        assert_eq!(
            refs("inputs.priority in ['P0', 'P1'] && run.elapsed < 60"),
            ["inputs.priority", "run.elapsed"]
        );
    }

    #[test]
    fn references_see_through_macros_and_skip_bound_names() {
        assert_eq!(refs("has(steps.a.outputs.x)"), ["steps.a.outputs.x"]);
        assert_eq!(
            refs("steps.a.outputs.list.all(x, x > inputs.min)"),
            ["steps.a.outputs.list", "inputs.min"]
        );
    }

    #[test]
    fn computed_indices_are_references_too() {
        assert_eq!(
            refs("steps.a.outputs[inputs.key]"),
            ["steps.a.outputs", "inputs.key"]
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = compile("steps.a.outputs.x >").unwrap_err();
        assert!(e.col >= 1, "{e:?}");
        assert!(compile("").is_err());
    }

    #[test]
    fn rendering_keeps_types_of_whole_expressions() {
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"inputs": {"n": 3, "s": "api"}, "steps": {"a": {"outputs": {"ok": true}}}}"#,
        )
        .unwrap();
        assert_eq!(render("${{ inputs.n }}", &vars), Ok(serde_json::json!(3)));
        assert_eq!(
            render("x-${{ inputs.s }}-${{ inputs.n + 1 }}", &vars),
            Ok(serde_json::json!("x-api-4"))
        );
        assert_eq!(
            render("${{ steps.a.outputs.ok }}", &vars),
            Ok(serde_json::json!(true))
        );
        assert!(render("${{ steps.b.outputs.ok }}", &vars).is_err());
    }

    fn with_value(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        serde_json::json!({ "result": { "value": v } })
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn non_finite_markers_are_doubles_that_compare_as_ieee_says() {
        let nan = with_value(serde_json::json!({ "$nonfinite": "NaN" }));
        let inf = with_value(serde_json::json!({ "$nonfinite": "+Inf" }));
        let minus = with_value(serde_json::json!({ "$nonfinite": "-Inf" }));
        let holds = |src: &str, vars| evaluate_traced(src, vars).unwrap();
        for op in ["<", "<=", ">", ">="] {
            let e = holds(&format!("result.value {op} 0.5"), &nan);
            assert_eq!(e.value, serde_json::json!(false), "NaN {op} 0.5");
            assert!(e.compared_nan);
            let e = holds(&format!("1 {op} result.value"), &nan);
            assert_eq!(e.value, serde_json::json!(false), "1 {op} NaN");
        }
        assert_eq!(holds("result.value == result.value", &nan).value, false);
        assert_eq!(holds("result.value != result.value", &nan).value, true);
        assert!(!holds("result.value != result.value", &nan).compared_nan);
        assert_eq!(holds("result.value > 1000", &inf).value, true);
        assert_eq!(holds("result.value > 1e308", &inf).value, true);
        assert_eq!(holds("result.value < -1000", &minus).value, true);
        assert_eq!(holds("result.value >= 1000", &minus).value, false);
        assert!(!holds("result.value > 1000", &inf).compared_nan);
        // What no double takes part in is the crate's own comparison.
        let plain = with_value(serde_json::json!("b"));
        assert_eq!(holds("result.value > 'a'", &plain).value, true);
        assert_eq!(holds("2 > 1 && 1u < 2u", &plain).value, true);
        assert!(evaluate("result.value < 1", &plain).is_err());
        // A computed non-finite value is written back as its marker.
        assert_eq!(
            evaluate("result.value * 2.0", &inf),
            Ok(serde_json::json!({ "$nonfinite": "+Inf" }))
        );
        assert_eq!(
            evaluate("[0.0 / 0.0]", &inf),
            Ok(serde_json::json!([{ "$nonfinite": "NaN" }]))
        );
    }

    #[test]
    fn the_strings_extension_works_as_in_kubernetes() {
        let vars = serde_json::Map::new();
        let eval = |src: &str| evaluate(src, &vars);
        let json = |v| Ok(serde_json::json!(v));
        assert_eq!(eval("'a,b'.split(',')"), Ok(serde_json::json!(["a", "b"])));
        assert_eq!(
            eval("'a,b,c'.split(',', 2)"),
            Ok(serde_json::json!(["a", "b,c"]))
        );
        assert_eq!(eval("['a', 'b'].join('-')"), json("a-b"));
        assert_eq!(eval("['a', 'b'].join()"), json("ab"));
        assert_eq!(eval("'x'.indexOf('y')"), Ok(serde_json::json!(-1)));
        assert_eq!(eval("'héllo'.indexOf('l')"), Ok(serde_json::json!(2)));
        assert_eq!(eval("'hello'.lastIndexOf('l')"), Ok(serde_json::json!(3)));
        assert_eq!(eval("'TacoCat'.lowerAscii()"), json("tacocat"));
        assert_eq!(eval("'TacoCat'.upperAscii()"), json("TACOCAT"));
        assert_eq!(eval("'  v1.2 \\n'.trim()"), json("v1.2"));
        assert_eq!(eval("'a-b-c'.replace('-', '.')"), json("a.b.c"));
        assert_eq!(eval("'a-b-c'.replace('-', '.', 1)"), json("a.b-c"));
        // Code points, not bytes.
        assert_eq!(eval("'héllo'.substring(1, 3)"), json("él"));
        assert_eq!(eval("'héllo'.substring(2)"), json("llo"));
        assert_eq!(
            eval("'%s took %d ms (%.1f%%)'.format(['p95', 250, 12.345])"),
            json("p95 took 250 ms (12.3%)")
        );
        // Out of range is an error, not a shorter string.
        let err = eval("'abc'.substring(1, 5)").unwrap_err();
        assert!(err.contains("index out of range: 5"), "{err}");
        assert!(eval("'abc'.substring(2, 1)").is_err());
        assert!(eval("'abc'.substring(-1)").is_err());
        assert!(eval("'abc'.indexOf('a', 9)").is_err());
    }

    #[test]
    fn the_checker_asks_the_evaluator_about_functions_it_does_not_list() {
        assert!(runtime_knows("size", false));
        assert!(runtime_knows("lowerAscii", true));
        assert!(!runtime_knows("lowerAscii", false));
        assert!(!runtime_knows("frobnicate", false));
        assert!(!runtime_knows("frobnicate", true));
    }

    #[test]
    fn type_errors_point_into_the_expression() {
        let c = compile("inputs.a > 1 && 2 + 1.5 > 0").unwrap();
        let (at, message) = c.type_check(true).unwrap_err();
        assert_eq!(&c.source[at..at + 1], "+", "{message}");
        assert!(compile("inputs.a > 1").unwrap().type_check(true).is_ok());
    }

    #[test]
    fn templates_split_into_pieces() {
        assert_eq!(
            parse_template("v${{ inputs.tag }}-${{run.id}}").unwrap(),
            vec![
                Piece::Text("v"),
                Piece::Expr {
                    source: " inputs.tag ",
                    offset: 4
                },
                Piece::Text("-"),
                Piece::Expr {
                    source: "run.id",
                    offset: 22
                },
            ]
        );
        assert_eq!(
            parse_template("a ${{ b").unwrap_err(),
            TemplateError { offset: 2 }
        );
        assert_eq!(whole_expression(" ${{ inputs.n }} "), Some(" inputs.n "));
        assert_eq!(whole_expression("x${{ inputs.n }}"), None);
        assert_eq!(unwrap_condition("${{ a && b }}"), "a && b");
        assert_eq!(unwrap_condition("a"), "a");
    }
}
