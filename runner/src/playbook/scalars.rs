//! String-shaped values of the format, each with the schema that editors and the
//! validator use for it.
//!
//! They are newtypes over `String` on purpose: the schema check has already run when
//! they are deserialised, and the semantic checks parse their contents (durations,
//! CEL) with locations in hand, so a bad value becomes a located diagnostic rather
//! than a serde error.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Pattern of identifiers: usable as CEL field names (`steps.build_image.outputs`).
pub const IDENT_PATTERN: &str = r"^[a-z][a-z0-9_]*$";
/// Pattern of a literal duration: one or more `<integer><unit>` groups, largest unit first.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";
/// Pattern of a value that is one `${{ }}` expression.
pub const EXPRESSION_PATTERN: &str = r"^\$\{\{[\s\S]*\}\}$";
/// Pattern of a memory size.
pub const MEMORY_PATTERN: &str = r"^[1-9][0-9]*(KiB|MiB|GiB)$";

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// An identifier: lower case letters, digits and `_`, starting with a letter.
    Ident
);
/// A CEL expression (optionally wrapped in `${{ }}`). A YAML `true` or `false` is
/// accepted as the constant expression, so `if: false` disables a step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Cel(pub String);

impl Cel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Cel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cel, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Constant(bool),
        }
        Ok(Cel(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Constant(b) => b.to_string(),
        }))
    }
}
string_newtype!(
    /// Text in which each `${{ expression }}` is replaced by its value.
    Template
);
string_newtype!(
    /// A duration (`90s`, `5m`, `1h30m`) or one `${{ }}` expression over inputs.
    DurationSpec
);
string_newtype!(
    /// A memory size: `64MiB`, `1GiB`.
    MemorySize
);

impl JsonSchema for Ident {
    fn schema_name() -> Cow<'static, str> {
        "Ident".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": IDENT_PATTERN,
            "maxLength": 64,
            "description": "Identifier: lower case letters, digits and `_`, starting with a letter.",
        })
    }
}

impl JsonSchema for Cel {
    fn schema_name() -> Cow<'static, str> {
        "Cel".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "boolean"],
            "minLength": 1,
            "description": "CEL expression over `inputs`, `steps`, `stages` and `run`, e.g. `steps.smoke.outputs.status == 200`; `true` and `false` are constants.",
        })
    }
}

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Text; each `${{ expression }}` in it is replaced by the expression's value.",
        })
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "anyOf": [
                { "pattern": DURATION_PATTERN },
                { "pattern": EXPRESSION_PATTERN },
            ],
            "description": "A duration such as `250ms`, `90s`, `5m`, `1h30m`, `2d`, or one `${{ }}` expression over inputs (`${{ inputs.watch_window }}`).",
        })
    }
}

impl JsonSchema for MemorySize {
    fn schema_name() -> Cow<'static, str> {
        "MemorySize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": MEMORY_PATTERN,
            "description": "Memory size: an integer followed by KiB, MiB or GiB.",
        })
    }
}

impl MemorySize {
    /// The size in bytes, or `None` for a malformed or absurd value.
    pub fn bytes(&self) -> Option<u64> {
        let s = self.0.as_str();
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
        let factor: u64 = match unit {
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return None,
        };
        digits.parse::<u64>().ok()?.checked_mul(factor)
    }
}

/// Why a duration string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "`{0}` is not a duration; write it as a number and a unit, like `90s`, `5m` or `1h30m` (units: ms, s, m, h, d)"
    )]
    Malformed(String),
    #[error(
        "`{0}` repeats or misorders its units; write the largest unit first, each once, like `1h30m`"
    )]
    UnitOrder(String),
    #[error("`{0}` is too long; durations are limited to 365 days")]
    TooLong(String),
}

/// The longest duration accepted anywhere in a playbook.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a literal duration: `<integer><unit>` groups with units `d`, `h`, `m`, `s`,
/// `ms`, largest first, each at most once.
///
/// Hand-written rather than taken from a crate so that the accepted language is exactly
/// `DURATION_PATTERN` in the schema: what an editor accepts, the runner accepts.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // Rank by size, so `ms` (checked before `m` when matching) ranks last.
    fn rank(unit: &str) -> u8 {
        match unit {
            "d" => 0,
            "h" => 1,
            "m" => 2,
            "s" => 3,
            _ => 4,
        }
    }
    let malformed = || DurationError::Malformed(text.to_owned());
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_rank: Option<u8> = None;
    if rest.is_empty() {
        return Err(malformed());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed());
        }
        let (number, tail) = rest.split_at(digits);
        let (unit, factor) = UNITS
            .iter()
            .find(|(u, _)| tail.starts_with(u))
            .ok_or_else(malformed)?;
        let r = rank(unit);
        if last_rank.is_some_and(|l| l >= r) {
            return Err(DurationError::UnitOrder(text.to_owned()));
        }
        last_rank = Some(r);
        let n: u64 = number
            .parse()
            .map_err(|_| DurationError::TooLong(text.to_owned()))?;
        total_ms = n
            .checked_mul(*factor)
            .and_then(|v| v.checked_add(total_ms))
            .ok_or_else(|| DurationError::TooLong(text.to_owned()))?;
        rest = &tail[unit.len()..];
    }
    let d = Duration::from_millis(total_ms);
    if d > MAX_DURATION {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    Ok(d)
}

/// Formats a duration the way playbooks write them (`1h30m`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
    }

    #[test]
    fn durations_reject_what_the_schema_rejects() {
        for bad in ["", "5", "m", "5 m", "5min", "-5s", "1.5h", "5M", "ms"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("30m1h"),
            Err(DurationError::UnitOrder(_))
        ));
        assert!(matches!(
            parse_duration("1m1m"),
            Err(DurationError::UnitOrder(_))
        ));
        assert!(matches!(
            parse_duration("366d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999s"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn durations_format_back() {
        for text in ["250ms", "90s", "5m", "1h30m", "2d", "1m30s500ms"] {
            assert_eq!(
                format_duration(parse_duration(text).unwrap()),
                text.replace("90s", "1m30s")
            );
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(MemorySize("64MiB".into()).bytes(), Some(64 << 20));
        assert_eq!(MemorySize("1GiB".into()).bytes(), Some(1 << 30));
        assert_eq!(MemorySize("1TiB".into()).bytes(), None);
        assert_eq!(MemorySize("99999999999999999999GiB".into()).bytes(), None);
    }
}
