//! NaN and infinities in step outputs.
//!
//! JSON has no NaN or infinity, yet metric sources answer with them: PromQL's
//! `0/0` is NaN (a ratio over no traffic), `1/0` is `+Inf`. Dropping them to
//! `null` made every later comparison fail with a type error that named no
//! number at all. So a plugin writes a non-finite number as a marker object,
//! `{"$nonfinite": "NaN" | "+Inf" | "-Inf"}` (`runner_sdk::number` does it),
//! expressions see a CEL `double` NaN or infinity, and an expression whose
//! value is one gives the marker back. Reports show the marker as the bare
//! word (`NaN`, `+Inf`, `-Inf`).

use serde_json::{Map, Value};

/// The only key of a marker object.
pub const MARKER: &str = "$nonfinite";

/// The number a marker object stands for; `None` for anything else (an object
/// with other keys too is plain data).
pub fn decode(v: &Value) -> Option<f64> {
    let Value::Object(map) = v else { return None };
    if map.len() != 1 {
        return None;
    }
    match map.get(MARKER)?.as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// The marker for a non-finite `n`; `None` for a finite one.
pub fn encode(n: f64) -> Option<Value> {
    (!n.is_finite()).then(|| {
        let mut map = Map::new();
        map.insert(MARKER.to_owned(), Value::String(word(n).to_owned()));
        Value::Object(map)
    })
}

/// How a non-finite number is written: Prometheus's and Go's spelling.
pub fn word(n: f64) -> &'static str {
    if n.is_nan() {
        "NaN"
    } else if n > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Compact JSON, except that markers are written as the bare word: for people,
/// not for parsers (`{"value":NaN}`).
pub fn readable(v: &Value) -> String {
    let mut out = String::new();
    write_readable(v, &mut out);
    out
}

fn write_readable(v: &Value, out: &mut String) {
    if let Some(n) = decode(v) {
        out.push_str(word(n));
        return;
    }
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_readable(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_readable(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Whether `v` holds a marker anywhere.
pub fn contains(v: &Value) -> bool {
    decode(v).is_some()
        || match v {
            Value::Array(items) => items.iter().any(contains),
            Value::Object(map) => map.values().any(contains),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_round_trip() {
        for n in [f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(decode(&encode(n).unwrap()), Some(n));
        }
        assert!(decode(&encode(f64::NAN).unwrap()).unwrap().is_nan());
        assert_eq!(encode(1.5), None);
        assert_eq!(encode(f64::NAN), Some(json!({ "$nonfinite": "NaN" })));
    }

    #[test]
    fn only_exact_markers_are_numbers() {
        assert_eq!(decode(&json!({ "$nonfinite": "nan" })), None);
        assert_eq!(decode(&json!({ "$nonfinite": "NaN", "x": 1 })), None);
        assert_eq!(decode(&json!({ "$nonfinite": 1 })), None);
        assert_eq!(decode(&json!("NaN")), None);
    }

    #[test]
    fn reports_show_the_word() {
        let v = json!({ "value": { "$nonfinite": "NaN" }, "max": { "$nonfinite": "+Inf" }, "q": "a\"b", "n": [1, { "$nonfinite": "-Inf" }] });
        assert_eq!(
            readable(&v),
            r#"{"value":NaN,"max":+Inf,"q":"a\"b","n":[1,-Inf]}"#
        );
        assert!(contains(&v));
        assert!(!contains(&json!({ "a": [1, 2] })));
    }
}
