//! A small CEL type checker, run by `runner validate`: it refuses what can only
//! fail when evaluated, before a run changes anything.
//!
//! The `cel` crate has no checker, and a full one needs the type of every
//! value, which step outputs do not have before they exist. So this one is
//! deliberately partial and never guesses: every name read from the context
//! (`inputs`, `steps`, `result`, ...) is `dyn` and fits anything; only literals
//! and the results of known functions and operators have types. It refuses:
//!
//! - a function no one declared, or a known one with a wrong number of
//!   arguments or arguments of types it never takes (`size(1)`);
//! - operators without an overload for their operand types (`1 + 1.0`: CEL has
//!   no arithmetic across `int` and `double`; `'a' < 1`);
//! - a condition whose type is known and is not `bool`
//!   (`steps.x.outputs.count + 1` is an `int`).
//!
//! A function the checker does not list but the evaluator knows is accepted
//! unchecked: the evaluator is asked, so the checker never refuses what would
//! run.

use std::fmt;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue};

/// What the checker knows of a value's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// Unknown until the run: fits anything.
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Null => f.write_str("null"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Duration => f.write_str("duration"),
            Ty::Timestamp => f.write_str("timestamp"),
            Ty::Type => f.write_str("type"),
            Ty::List(e) => write!(f, "list({e})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
        }
    }
}

/// Why an expression cannot run, and at which node (its id in the parsed tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub id: u64,
    pub message: String,
}

/// Checks `expr`; with `condition`, it must also be able to give a `bool`.
pub fn check(expr: &IdedExpr, condition: bool) -> Result<Ty, TypeError> {
    let mut scope = Vec::new();
    let ty = infer(expr, &mut scope)?;
    if condition && !matches!(ty, Ty::Bool | Ty::Dyn) {
        return Err(TypeError {
            id: expr.id,
            message: format!(
                "this condition gives a value of type {ty}, never true or false; compare it (`… > 0`, `… == '…'`)"
            ),
        });
    }
    Ok(ty)
}

/// "an int", "a string": a type in a sentence.
fn a_(t: &Ty) -> String {
    let name = t.to_string();
    if name.starts_with('i') {
        format!("an {name}")
    } else {
        format!("a {name}")
    }
}

/// Whether `actual` may be passed where `param` is taken.
fn fits(actual: &Ty, param: &Ty) -> bool {
    match (actual, param) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (Ty::List(_), Ty::List(_)) | (Ty::Map(..), Ty::Map(..)) => true,
        (a, p) => a == p,
    }
}

/// The common type of two values, `dyn` when they differ.
fn join(a: &Ty, b: &Ty) -> Ty {
    if a == b { a.clone() } else { Ty::Dyn }
}

fn infer(e: &IdedExpr, scope: &mut Vec<(String, Ty)>) -> Result<Ty, TypeError> {
    let err = |message: String| TypeError { id: e.id, message };
    Ok(match &e.expr {
        Expr::Literal(l) => match l {
            LiteralValue::Null => Ty::Null,
            LiteralValue::Boolean(_) => Ty::Bool,
            LiteralValue::Int(_) => Ty::Int,
            LiteralValue::UInt(_) => Ty::Uint,
            LiteralValue::Double(_) => Ty::Double,
            LiteralValue::String(_) => Ty::String,
            LiteralValue::Bytes(_) => Ty::Bytes,
        },
        Expr::Ident(name) => scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Ty::Dyn, |(_, t)| t.clone()),
        Expr::Select(sel) => {
            let operand = infer(&sel.operand, scope)?;
            if sel.test {
                if !matches!(operand, Ty::Dyn | Ty::Map(..)) {
                    return Err(err(format!(
                        "`has()` tests a field of a map; this is {}",
                        a_(&operand)
                    )));
                }
                Ty::Bool
            } else {
                match operand {
                    Ty::Dyn => Ty::Dyn,
                    Ty::Map(_, v) => *v,
                    other => {
                        return Err(err(format!(
                            "{} has no fields; `.{}` cannot be read",
                            a_(&other),
                            sel.field
                        )));
                    }
                }
            }
        }
        Expr::List(list) => {
            let mut elem: Option<Ty> = None;
            for el in &list.elements {
                let t = infer(el, scope)?;
                elem = Some(elem.map_or(t.clone(), |e| join(&e, &t)));
            }
            Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
        }
        Expr::Map(map) => {
            let (mut key, mut value): (Option<Ty>, Option<Ty>) = (None, None);
            for entry in &map.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    let k = infer(&me.key, scope)?;
                    if !matches!(k, Ty::Dyn | Ty::String | Ty::Int | Ty::Uint | Ty::Bool) {
                        return Err(TypeError {
                            id: me.key.id,
                            message: format!(
                                "a map key is a string, int, uint or bool, not {}",
                                a_(&k)
                            ),
                        });
                    }
                    let v = infer(&me.value, scope)?;
                    key = Some(key.map_or(k.clone(), |old| join(&old, &k)));
                    value = Some(value.map_or(v.clone(), |old| join(&old, &v)));
                }
            }
            Ty::Map(
                Box::new(key.unwrap_or(Ty::Dyn)),
                Box::new(value.unwrap_or(Ty::Dyn)),
            )
        }
        Expr::Struct(_) | Expr::Unspecified => Ty::Dyn,
        Expr::Comprehension(c) => {
            let range = infer(&c.iter_range, scope)?;
            let (first, second) = match &range {
                Ty::List(el) => (Ty::Int, (**el).clone()),
                Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
                Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                other => {
                    return Err(TypeError {
                        id: c.iter_range.id,
                        message: format!("only a list or a map can be iterated, not {}", a_(other)),
                    });
                }
            };
            let accu = infer(&c.accu_init, scope)?;
            let before = scope.len();
            // One variable: a list's elements or a map's keys; two: index (key)
            // and element (value).
            match &c.iter_var2 {
                None => {
                    let one = if matches!(range, Ty::List(_)) {
                        second
                    } else {
                        first
                    };
                    scope.push((c.iter_var.clone(), one));
                }
                Some(v2) => {
                    scope.push((c.iter_var.clone(), first));
                    scope.push((v2.clone(), second));
                }
            }
            // The accumulator's type may widen in the loop (`[] + [x]`): dyn.
            scope.push((
                c.accu_var.clone(),
                if accu == Ty::Bool { Ty::Bool } else { Ty::Dyn },
            ));
            let checked = (|| {
                infer(&c.loop_cond, scope)?;
                infer(&c.loop_step, scope)?;
                infer(&c.result, scope)
            })();
            scope.truncate(before);
            checked?
        }
        Expr::Call(call) => {
            let target = match &call.target {
                Some(t) => Some(infer(t, scope)?),
                None => None,
            };
            let mut args = Vec::with_capacity(call.args.len());
            for a in &call.args {
                args.push(infer(a, scope)?);
            }
            self::call(&call.func_name, target.as_ref(), &args).map_err(err)?
        }
    })
}

/// A function's overloads: (receiver, parameters, result).
type Overload = (Option<Ty>, Vec<Ty>, Ty);

fn call(name: &str, target: Option<&Ty>, args: &[Ty]) -> Result<Ty, String> {
    use Ty::*;
    let shown = || {
        target
            .into_iter()
            .chain(args)
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, target, args) {
        ("_&&_" | "_||_", None, [a, b]) => {
            for t in [a, b] {
                if !fits(t, &Bool) {
                    return Err(format!(
                        "`{}` joins conditions; {} is not true or false",
                        if name == "_&&_" { "&&" } else { "||" },
                        a_(t)
                    ));
                }
            }
            return Ok(Bool);
        }
        ("!_", None, [a]) => {
            return if fits(a, &Bool) {
                Ok(Bool)
            } else {
                Err(format!("`!` negates a condition, not {}", a_(a)))
            };
        }
        ("_?_:_", None, [c, a, b]) => {
            if !fits(c, &Bool) {
                return Err(format!(
                    "the condition of `? :` is {}, not true or false",
                    a_(c)
                ));
            }
            return Ok(join(a, b));
        }
        ("_==_" | "_!=_", None, [_, _]) => return Ok(Bool),
        ("@in", None, [_, container]) => {
            return if matches!(container, Dyn | List(_) | Map(..)) {
                Ok(Bool)
            } else {
                Err(format!(
                    "`in` looks in a list or a map, not in {}",
                    a_(container)
                ))
            };
        }
        ("_[_]", None, [container, index]) => {
            return match container {
                Dyn => Ok(Dyn),
                List(el) if fits(index, &Int) || fits(index, &Uint) => Ok((**el).clone()),
                Map(k, v)
                    if fits(index, k)
                        || matches!(**k, Int | Uint | Double)
                            && matches!(index, Int | Uint | Double) =>
                {
                    Ok((**v).clone())
                }
                List(_) | Map(..) => Err(format!(
                    "{} cannot be indexed with {}",
                    a_(container),
                    a_(index)
                )),
                other => Err(format!(
                    "{} cannot be indexed; only lists and maps can",
                    a_(other)
                )),
            };
        }
        _ => {}
    }
    if name.starts_with('@') || (name.starts_with('_') && name.ends_with('_') && !is_operator(name))
    {
        // Internal functions of macros (`@not_strictly_false`) and operators
        // this checker does not model: not refused.
        return Ok(Dyn);
    }
    let overloads = overloads(name);
    if overloads.is_empty() {
        if crate::expr::runtime_knows(name, target.is_some()) {
            return Ok(Dyn);
        }
        let other_style =
            crate::expr::runtime_knows(name, target.is_none()) || overloads_any_style(name);
        return Err(match (other_style, target.is_some()) {
            (true, true) => format!("`{name}` is a function, not a method: write `{name}(x, …)`"),
            (true, false) => format!("`{name}` is a method: write `x.{name}(…)`"),
            (false, _) => format!("unknown function `{name}`"),
        });
    }
    let styled: Vec<&Overload> = overloads
        .iter()
        .filter(|(recv, _, _)| recv.is_some() == target.is_some())
        .collect();
    if styled.is_empty() {
        return Err(if target.is_some() {
            format!("`{name}` is a function, not a method: write `{name}(x, …)`")
        } else {
            format!("`{name}` is a method: write `x.{name}(…)`")
        });
    }
    let arities: Vec<usize> = {
        let mut a: Vec<usize> = styled.iter().map(|(_, p, _)| p.len()).collect();
        a.sort_unstable();
        a.dedup();
        a
    };
    if !arities.contains(&args.len()) {
        let counts = arities
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(format!(
            "`{}` takes {counts} argument{}, not {}",
            display_name(name),
            if arities == [1] { "" } else { "s" },
            args.len()
        ));
    }
    let matching: Vec<&Overload> = styled
        .into_iter()
        .filter(|(recv, params, _)| {
            params.len() == args.len()
                && recv.as_ref().zip(target).is_none_or(|(r, t)| fits(t, r))
                && params.iter().zip(args).all(|(p, a)| fits(a, p))
        })
        .collect();
    match matching.as_slice() {
        [] => Err(format!(
            "`{}` cannot take ({}){}",
            display_name(name),
            shown(),
            hint(name, target, args)
        )),
        [first, rest @ ..] => Ok(rest.iter().fold(first.2.clone(), |t, o| join(&t, &o.2))),
    }
}

fn is_operator(name: &str) -> bool {
    matches!(
        name,
        "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_" | "_<_" | "_<=_" | "_>_" | "_>=_"
    )
}

/// How an operator is written, for messages.
fn display_name(name: &str) -> &str {
    match name {
        "_+_" => "+",
        "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        "-_" => "unary -",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        other => other,
    }
}

fn hint(name: &str, target: Option<&Ty>, args: &[Ty]) -> &'static str {
    let numbers = |t: &Ty| matches!(t, Ty::Int | Ty::Uint | Ty::Double);
    match (name, target, args) {
        ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", None, [a, b]) if numbers(a) && numbers(b) => {
            "; CEL does no arithmetic across int, uint and double: convert one side, e.g. `double(x) * 1.1` or `x * 2.0`"
        }
        ("_+_", None, [a, b]) if *a == Ty::String || *b == Ty::String => {
            "; convert the other side with `string(…)`"
        }
        _ => "",
    }
}

/// Whether any overload of `name` is known, in either call style.
fn overloads_any_style(name: &str) -> bool {
    !overloads(name).is_empty()
}

/// The overloads this checker knows: CEL's standard library as the `cel`
/// crate implements it, the strings extension, and `run_report`.
fn overloads(name: &str) -> Vec<Overload> {
    use Ty::*;
    let list = || List(Box::new(Dyn));
    let map = || Map(Box::new(Dyn), Box::new(Dyn));
    let f = |params: Vec<Ty>, result: Ty| (None, params, result);
    let m = |recv: Ty, params: Vec<Ty>, result: Ty| (Some(recv), params, result);
    let numbers = [Int, Uint, Double];
    match name {
        "_+_" => vec![
            f(vec![Int, Int], Int),
            f(vec![Uint, Uint], Uint),
            f(vec![Double, Double], Double),
            f(vec![String, String], String),
            f(vec![Bytes, Bytes], Bytes),
            f(vec![list(), list()], list()),
            f(vec![Timestamp, Duration], Timestamp),
            f(vec![Duration, Timestamp], Timestamp),
            f(vec![Duration, Duration], Duration),
        ],
        "_-_" => vec![
            f(vec![Int, Int], Int),
            f(vec![Uint, Uint], Uint),
            f(vec![Double, Double], Double),
            f(vec![Timestamp, Timestamp], Duration),
            f(vec![Timestamp, Duration], Timestamp),
            f(vec![Duration, Duration], Duration),
        ],
        "_*_" | "_/_" => vec![
            f(vec![Int, Int], Int),
            f(vec![Uint, Uint], Uint),
            f(vec![Double, Double], Double),
        ],
        "_%_" => vec![f(vec![Int, Int], Int), f(vec![Uint, Uint], Uint)],
        "-_" => vec![f(vec![Int], Int), f(vec![Double], Double)],
        "_<_" | "_<=_" | "_>_" | "_>=_" => {
            let mut all: Vec<Overload> = Vec::new();
            for a in &numbers {
                for b in &numbers {
                    all.push(f(vec![a.clone(), b.clone()], Bool));
                }
            }
            for t in [String, Bool, Bytes, Timestamp, Duration] {
                all.push(f(vec![t.clone(), t], Bool));
            }
            all
        }
        "size" => [String, Bytes, list(), map()]
            .into_iter()
            .flat_map(|t| [f(vec![t.clone()], Int), m(t, vec![], Int)])
            .collect(),
        "int" => [Int, Uint, Double, String, Timestamp]
            .into_iter()
            .map(|t| f(vec![t], Int))
            .collect(),
        "uint" => [Int, Uint, Double, String]
            .into_iter()
            .map(|t| f(vec![t], Uint))
            .collect(),
        "double" => [Int, Uint, Double, String]
            .into_iter()
            .map(|t| f(vec![t], Double))
            .collect(),
        "string" => [Int, Uint, Double, String, Bool, Bytes, Timestamp, Duration]
            .into_iter()
            .map(|t| f(vec![t], String))
            .collect(),
        "bool" => vec![f(vec![Bool], Bool), f(vec![String], Bool)],
        "bytes" => vec![f(vec![String], Bytes), f(vec![Bytes], Bytes)],
        "dyn" => vec![f(vec![Dyn], Dyn)],
        "type" => vec![f(vec![Dyn], Type)],
        "duration" => vec![f(vec![String], Duration), f(vec![Duration], Duration)],
        "timestamp" => vec![
            f(vec![String], Timestamp),
            f(vec![Int], Timestamp),
            f(vec![Timestamp], Timestamp),
        ],
        "matches" => vec![f(vec![String, String], Bool), m(String, vec![String], Bool)],
        "contains" | "startsWith" | "endsWith" => vec![m(String, vec![String], Bool)],
        "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfYear"
        | "getDayOfWeek" => vec![m(Timestamp, vec![], Int), m(Timestamp, vec![String], Int)],
        "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => vec![
            m(Timestamp, vec![], Int),
            m(Timestamp, vec![String], Int),
            m(Duration, vec![], Int),
        ],
        // The strings extension (Kubernetes' CEL library).
        "charAt" => vec![m(String, vec![Int], String)],
        "indexOf" | "lastIndexOf" => vec![
            m(String, vec![String], Int),
            m(String, vec![String, Int], Int),
        ],
        "lowerAscii" | "upperAscii" | "trim" | "reverse" => vec![m(String, vec![], String)],
        "replace" => vec![
            m(String, vec![String, String], String),
            m(String, vec![String, String, Int], String),
        ],
        "split" => vec![
            m(String, vec![String], List(Box::new(String))),
            m(String, vec![String, Int], List(Box::new(String))),
        ],
        "substring" => vec![
            m(String, vec![Int], String),
            m(String, vec![Int, Int], String),
        ],
        "join" => vec![m(list(), vec![], String), m(list(), vec![String], String)],
        "format" => vec![m(String, vec![list()], String)],
        "run_report" => vec![f(vec![String], String)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(src: &str, condition: bool) -> Result<Ty, String> {
        let c = crate::expr::compile(src).unwrap();
        check(&c.expr, condition).map_err(|e| e.message)
    }

    #[test]
    fn what_reads_the_context_fits_anything() {
        for src in [
            "steps.a.outputs.x + 1.0 > 2",
            "steps.a.outputs.x * inputs.n",
            "result.value < 0.01 && result.ok",
            "steps.a.outputs.list.all(x, x > 1)",
            "steps.a.outputs.list.map(x, x * 2).size() > 0",
            "has(steps.a.outputs.x) ? steps.a.outputs.x : 0",
            "inputs.priority in ['P0', 'P1']",
            "double(steps.a.outputs.p95) <= double(steps.b.outputs.p95) * 1.1",
            "steps.a.outputs.s.lowerAscii().split(',').join('-') == 'a-b'",
            "'%s is %d'.format([inputs.name, 3]) != ''",
            "size(steps.a.outputs) == 2 && steps.a.outputs.x.startsWith('v')",
            "{'a': 1}['a'] == 1 && [1, 2][0] == 1",
            "duration('5m') > duration('1m') && timestamp('2024-01-01T00:00:00Z').getFullYear() == 2024",
            "run_report(inputs.id).contains('failed')",
        ] {
            assert_eq!(checked(src, true).map(|_| ()), Ok(()), "{src}");
        }
    }

    #[test]
    fn certain_mistakes_are_refused() {
        let refused = |src: &str, condition: bool| checked(src, condition).unwrap_err();
        assert_eq!(
            refused("1 + 1.0 > 0", true),
            "`+` cannot take (int, double); CEL does no arithmetic across int, uint and double: convert one side, e.g. `double(x) * 1.1` or `x * 2.0`"
        );
        assert_eq!(
            refused("frobnicate(1)", false),
            "unknown function `frobnicate`"
        );
        assert_eq!(
            refused("size('a', 'b') > 0", true),
            "`size` takes 1 argument, not 2"
        );
        assert_eq!(
            refused("'x'.substring(1, 2, 3) == ''", true),
            "`substring` takes 1 or 2 arguments, not 3"
        );
        assert_eq!(refused("size(1) > 0", true), "`size` cannot take (int)");
        assert_eq!(refused("'a' < 1", true), "`<` cannot take (string, int)");
        assert_eq!(
            refused("steps.x.outputs.count + 1", true),
            "this condition gives a value of type int, never true or false; compare it (`… > 0`, `… == '…'`)"
        );
        assert!(refused("'deploy'", true).contains("type string"));
        assert_eq!(
            refused("contains('a', 'b')", false),
            "`contains` is a method: write `x.contains(…)`"
        );
        assert_eq!(
            refused("inputs.s.size(1)", false),
            "`size` takes 0 arguments, not 1"
        );
        assert_eq!(
            refused("1 && true", true),
            "`&&` joins conditions; an int is not true or false"
        );
        // Not a condition: any type will do.
        assert_eq!(checked("steps.x.outputs.count + 1", false), Ok(Ty::Int));
    }
}
