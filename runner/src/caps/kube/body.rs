//! What a request body says about the object it acts on: the name and namespace
//! the API server will read from it, checked before the grant check sees the
//! request.
//!
//! The API server creates the object its body names (`metadata.name`, or a name
//! it generates from `metadata.generateName`), not the name a plugin puts beside
//! the body; so the grant check must see the body's name, and the body must not
//! name another namespace or object than the request. Reading the body the way
//! the API server reads it matters as much: a decoder that keeps the other copy
//! of a repeated key, or (older API servers) matches `Name` or `nameſpace` to
//! `name` or `namespace`, would act on what the check did not see. So the host
//! refuses, in any body: a key repeated in one object; and at the top level and
//! in `metadata`: a key that is not ASCII, or that is spelled like `metadata`,
//! `name`, `namespace` or `generateName` in another case.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// It is not JSON (the plugin's own error).
    NotJson(String),
    /// A key appears twice in one object: refused as an attempt to have the
    /// API server read another object than the one checked.
    Repeated(String),
}

/// Parses `text`, refusing a key repeated in one object.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Unique {
        repeated: &repeated,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (value, repeated.into_inner()) {
        (Ok(v), _) => Ok(v),
        (Err(e), Some(key)) => Err(ParseError::Repeated(format!(
            "the body repeats the key `{key}` in one object (line {}, column {}), and a decoder that keeps the other copy would act on what the runner did not check; write each key once",
            e.line(),
            e.column()
        ))),
        (Err(e), None) => Err(ParseError::NotJson(e.to_string())),
    }
}

/// A JSON value whose objects have unique keys; the first repeated key is
/// left in `repeated`.
struct Unique<'a> {
    repeated: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Unique {
            repeated: self.repeated,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let e = de::Error::custom(format_args!("the key `{key}` is repeated"));
                *self.repeated.borrow_mut() = Some(key);
                return Err(e);
            }
            let v = map.next_value_seed(Unique {
                repeated: self.repeated,
            })?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

/// What the body says it acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `metadata.name`, as written (possibly empty).
    pub name: Option<String>,
    /// `metadata.namespace`, as written.
    pub namespace: Option<String>,
    /// Whether `metadata.generateName` is set and not empty.
    pub generate_name: bool,
}

/// The body's shape, by what the verb sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A whole object (create, update) or an object-shaped patch (strategic,
    /// merge, apply).
    Object,
    /// A JSON patch (RFC 6902): a list of operations.
    JsonPatch,
}

/// The name and namespace `body` sets, or why it is refused (a sentence to
/// follow "refused: ").
pub fn identity(shape: Shape, body: &Value) -> Result<Identity, String> {
    match shape {
        Shape::Object => object_identity(body),
        Shape::JsonPatch => {
            json_patch(body)?;
            Ok(Identity::default())
        }
    }
}

fn object_identity(body: &Value) -> Result<Identity, String> {
    let Value::Object(top) = body else {
        return Err(format!(
            "the body is {}, not a JSON object; send the object (or, for `patch-type: json`, a list of operations)",
            what(body)
        ));
    };
    spelled_exactly(top, &["metadata"], "at the top level")?;
    let Some(meta) = top.get("metadata") else {
        return Ok(Identity::default());
    };
    let Value::Object(meta) = meta else {
        return Err(format!(
            "the body's metadata is {}, not an object; write metadata as an object",
            what(meta)
        ));
    };
    spelled_exactly(meta, &["name", "namespace", "generateName"], "in metadata")?;
    let text = |field: &str| -> Result<Option<String>, String> {
        match meta.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "the body's metadata.{field} is {}, not a string; write it as a string or leave it out",
                what(other)
            )),
        }
    };
    Ok(Identity {
        name: text("name")?,
        namespace: text("namespace")?,
        generate_name: text("generateName")?.is_some_and(|g| !g.is_empty()),
    })
}

/// Refuses keys of `object` that are not ASCII, or that spell one of `fields`
/// in another case: decoders that match field names regardless of case (Go's
/// `encoding/json`, which older API servers used, also folds `ſ` to `s` and
/// the Kelvin sign to `k`) would read them as that field.
fn spelled_exactly(
    object: &Map<String, Value>,
    fields: &[&str],
    place: &str,
) -> Result<(), String> {
    for key in object.keys() {
        if !key.is_ascii() {
            return Err(format!(
                "the body has the key `{key}` {place}, which is not ASCII (some decoders read such a key as an ASCII field name); write field names in ASCII"
            ));
        }
        if let Some(field) = fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(key) && **f != key.as_str())
        {
            return Err(format!(
                "the body has the key `{key}` {place}, which decoders that ignore case read as `{field}`; spell it `{field}`"
            ));
        }
    }
    Ok(())
}

/// Paths a JSON patch operation may not change: the object's name and
/// namespace, and what holds them.
const IDENTITY_PATHS: &[&str] = &["", "/metadata", "/metadata/name", "/metadata/namespace"];

fn json_patch(body: &Value) -> Result<(), String> {
    let Value::Array(ops) = body else {
        return Err(format!(
            "the body is {}, not a list of operations, which `patch-type: json` needs",
            what(body)
        ));
    };
    for (i, op) in ops.iter().enumerate() {
        let n = i + 1;
        let Value::Object(fields) = op else {
            return Err(format!(
                "JSON patch operation #{n} is {}, not an object; write it as {{\"op\": …, \"path\": …}}",
                what(op)
            ));
        };
        spelled_exactly(fields, &["op", "path", "from"], "in a JSON patch operation")?;
        let verb = fields.get("op").and_then(Value::as_str).unwrap_or("");
        if verb == "test" {
            continue;
        }
        for field in ["path", "from"] {
            let Some(target) = fields.get(field) else {
                continue;
            };
            let Some(target) = target.as_str() else {
                return Err(format!(
                    "JSON patch operation #{n} has a `{field}` that is {}, not a string",
                    what(target)
                ));
            };
            // `from` moves away (or copies from) a value; only a move takes it.
            let changes = field == "path" || verb == "move";
            if changes && IDENTITY_PATHS.contains(&target) {
                return Err(format!(
                    "JSON patch operation #{n} (`{verb}` of `{target}`) would change the object's name or namespace; a patch may change neither, so leave out that operation"
                ));
            }
        }
    }
    Ok(())
}

/// `a string`, `a list`, … for messages.
fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Result<Identity, String> {
        let v = parse(text).map_err(|e| format!("{e:?}"))?;
        identity(Shape::Object, &v)
    }

    #[test]
    fn the_name_and_namespace_are_read_where_the_api_server_reads_them() {
        assert_eq!(
            object(r#"{"metadata":{"name":"web","namespace":"prod"},"spec":{"name":"x"}}"#),
            Ok(Identity {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                generate_name: false
            })
        );
        assert_eq!(
            object(r#"{"metadata":{"generateName":"web-"}}"#),
            Ok(Identity {
                generate_name: true,
                ..Identity::default()
            })
        );
        assert_eq!(
            object(r#"{"metadata":{"generateName":""}}"#),
            Ok(Identity::default())
        );
        assert_eq!(object(r#"{"spec":{}}"#), Ok(Identity::default()));
        // Escapes are read as the API server reads them.
        assert_eq!(
            object(r#"{"metadata":{"na\u006de":"web"}}"#).map(|i| i.name),
            Ok(Some("web".into()))
        );
    }

    #[test]
    fn bodies_of_another_shape_are_refused() {
        for (body, part) in [
            ("[]", "the body is a list, not a JSON object"),
            ("\"web\"", "the body is a string, not a JSON object"),
            ("null", "the body is null, not a JSON object"),
            (r#"{"metadata":[]}"#, "metadata is a list, not an object"),
            (r#"{"metadata":null}"#, "metadata is null, not an object"),
            (r#"{"metadata":{"name":7}}"#, "metadata.name is a number"),
            (r#"{"metadata":{"name":null}}"#, "metadata.name is null"),
            (
                r#"{"metadata":{"namespace":["prod"]}}"#,
                "metadata.namespace is a list",
            ),
        ] {
            let e = object(body).unwrap_err();
            assert!(e.contains(part), "{body}: {e}");
        }
    }

    #[test]
    fn repeated_keys_are_refused_anywhere() {
        for body in [
            r#"{"metadata":{"name":"flags","name":"other"}}"#,
            r#"{"metadata":{"name":"flags"},"metadata":{"name":"other"}}"#,
            r#"{"data":{"a":"1","a":"2"}}"#,
            r#"[{"op":"add","path":"/x","path":"/metadata/name","value":"y"}]"#,
        ] {
            match parse(body) {
                Err(ParseError::Repeated(m)) => assert!(
                    m.starts_with("the body repeats the key `")
                        && m.contains("write each key once"),
                    "{body}: {m}"
                ),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(
            parse(r#"{"metadata":{"name":"a","name":"b"}}"#),
            Err(ParseError::Repeated(
                "the body repeats the key `name` in one object (line 1, column 30), and a decoder that keeps the other copy would act on what the runner did not check; write each key once".into()
            ))
        );
        // The same key in different objects is fine.
        assert!(parse(r#"{"metadata":{"name":"a"},"spec":{"name":"b"}}"#).is_ok());
        assert!(matches!(parse("{not json"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse("{} {}"), Err(ParseError::NotJson(_))));
    }

    #[test]
    fn names_spelled_in_another_case_or_not_in_ascii_are_refused() {
        for (body, part) in [
            (
                r#"{"Metadata":{"name":"other"},"metadata":{"name":"flags"}}"#,
                "the key `Metadata` at the top level, which decoders that ignore case read as `metadata`",
            ),
            (
                r#"{"metadata":{"name":"flags","Name":"other"}}"#,
                "the key `Name` in metadata, which decoders that ignore case read as `name`",
            ),
            (
                r#"{"metadata":{"NAMESPACE":"kube-system"}}"#,
                "read as `namespace`",
            ),
            (
                r#"{"metadata":{"generatename":"x-"}}"#,
                "read as `generateName`",
            ),
            (
                r#"{"metadata":{"nameſpace":"kube-system"}}"#,
                "the key `nameſpace` in metadata, which is not ASCII",
            ),
        ] {
            let e = object(body).unwrap_err();
            assert!(e.contains(part), "{body}: {e}");
        }
        // Other keys may use any case (labels, annotations, data are maps).
        assert!(object(r#"{"metadata":{"name":"a","labels":{"Name":"x","nameſ":"y"}}}"#).is_ok());
    }

    #[test]
    fn json_patches_may_not_touch_the_name_or_namespace() {
        let patch = |text: &str| identity(Shape::JsonPatch, &parse(text).unwrap());
        assert_eq!(
            patch(
                r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"test","path":"/metadata/name","value":"web"}]"#
            ),
            Ok(Identity::default())
        );
        for (body, part) in [
            (
                r#"[{"op":"replace","path":"/metadata/name","value":"other"}]"#,
                "operation #1 (`replace` of `/metadata/name`) would change the object's name or namespace",
            ),
            (
                r#"[{"op":"add","path":"/metadata/namespace","value":"kube-system"}]"#,
                "`add` of `/metadata/namespace`",
            ),
            (
                r#"[{"op":"replace","path":"/metadata","value":{}}]"#,
                "`replace` of `/metadata`",
            ),
            (
                r#"[{"op":"replace","path":"","value":{}}]"#,
                "`replace` of ``",
            ),
            (
                r#"[{"op":"remove","path":"/metadata/name"}]"#,
                "`remove` of `/metadata/name`",
            ),
            (
                r#"[{"op":"test","path":"/x","value":1},{"op":"move","from":"/metadata/name","path":"/spec/x"}]"#,
                "operation #2 (`move` of `/metadata/name`)",
            ),
            (
                r#"[{"op":"copy","from":"/spec/x","path":"/metadata/name"}]"#,
                "`copy` of `/metadata/name`",
            ),
            (r#"{"op":"replace"}"#, "not a list of operations"),
            (r#"["replace"]"#, "operation #1 is a string, not an object"),
            (r#"[{"op":"add","path":7}]"#, "a `path` that is a number"),
            (
                r#"[{"op":"add","Path":"/metadata/name"}]"#,
                "read as `path`",
            ),
        ] {
            let e = patch(body).unwrap_err();
            assert!(e.contains(part), "{body}: {e}");
        }
        // Copying the name elsewhere changes neither.
        assert!(patch(r#"[{"op":"copy","from":"/metadata/name","path":"/spec/x"}]"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded_without_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(parse(&deep), Err(ParseError::NotJson(_))));
    }
}
