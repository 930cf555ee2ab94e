//! Typed coercion of SCIM values into mapped properties. The rules, as documented to the app:
//!
//! | data type | accepts |
//! |---|---|
//! | `string` | strings; numbers and booleans as text; a complex value's `value` (e.g. `manager`) |
//! | `boolean` | booleans; `"true"`/`"false"` in any case; `1`/`0` |
//! | `integer` | whole numbers; strings holding one (`"42"`) |
//! | `number` | numbers; strings holding one (`"4.5"`) |
//! | `date_time` | RFC 3339 (any offset), `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` and `YYYY-MM-DD HH:MM:SS` (taken as UTC), UNIX seconds; always written as RFC 3339 UTC |
//! | `email` | a string with one `@`, a non-empty local part and a dotted domain; trimmed |
//! | `enum` | one of the declared values, matched exactly or else case-insensitively (written as declared) |
//! | `string_array` | an array of strings (complex items give their `value`); a single string becomes one item |
//! | `json` | anything |

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::spec::DataType;

/// Why a field has no value, or not the one sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    Missing,
    CoercionFailed,
    InvalidEnumValue,
}

impl WarningCode {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::Missing => "missing",
            WarningCode::CoercionFailed => "coercion_failed",
            WarningCode::InvalidEnumValue => "invalid_enum_value",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Coerced {
    Value(Value),
    Failed(WarningCode, String),
}

fn failed(message: String) -> Coerced {
    Coerced::Failed(WarningCode::CoercionFailed, message)
}

/// The text of a scalar, or of a complex value's `value` sub-attribute.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) => o.get("value").and_then(text),
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

pub fn parse_date_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.to_offset(time::UtcOffset::UTC));
    }
    let with_t = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let with_space = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    for format in [with_t, with_space] {
        if let Ok(t) = PrimitiveDateTime::parse(s, format) {
            return Some(t.assume_utc());
        }
    }
    let date = format_description!("[year]-[month]-[day]");
    Date::parse(s, date).ok().map(|d| d.midnight().assume_utc())
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// Coerces `v` to `data_type`. `values` are an enum's allowed values.
pub fn coerce(v: &Value, data_type: DataType, values: &[String]) -> Coerced {
    match data_type {
        DataType::Json => Coerced::Value(v.clone()),
        DataType::String => match text(v) {
            Some(s) => Coerced::Value(Value::String(s)),
            None => failed(format!("{} is not text", describe(v))),
        },
        DataType::Boolean => match v {
            Value::Bool(b) => Coerced::Value(Value::Bool(*b)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => {
                Coerced::Value(Value::Bool(true))
            }
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => {
                Coerced::Value(Value::Bool(false))
            }
            Value::Number(n) if n.as_i64() == Some(1) => Coerced::Value(Value::Bool(true)),
            Value::Number(n) if n.as_i64() == Some(0) => Coerced::Value(Value::Bool(false)),
            other => failed(format!("{} is not a boolean", describe(other))),
        },
        DataType::Integer => {
            let parsed = match v {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                }),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match parsed {
                Some(n) => Coerced::Value(Value::from(n)),
                None => failed(format!("{} is not a whole number", describe(v))),
            }
        }
        DataType::Number => {
            let parsed = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            match parsed.and_then(serde_json::Number::from_f64) {
                Some(n) => Coerced::Value(Value::Number(n)),
                None => failed(format!("{} is not a number", describe(v))),
            }
        }
        DataType::DateTime => {
            let instant = match v {
                Value::String(s) => parse_date_time(s),
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok()),
                _ => None,
            };
            match instant.and_then(|t| t.format(&Rfc3339).ok()) {
                Some(s) => Coerced::Value(Value::String(s)),
                None => failed(format!(
                    "{} is not a date-time (RFC 3339, YYYY-MM-DD or UNIX seconds)",
                    describe(v)
                )),
            }
        }
        DataType::Email => match text(v).map(|s| s.trim().to_owned()) {
            Some(s) if is_email(&s) => Coerced::Value(Value::String(s)),
            _ => failed(format!("{} is not an email address", describe(v))),
        },
        DataType::Enum => {
            let Some(s) = text(v) else {
                return Coerced::Failed(
                    WarningCode::InvalidEnumValue,
                    format!("{} is not one of {}", describe(v), values.join(", ")),
                );
            };
            match values
                .iter()
                .find(|x| **x == s)
                .or_else(|| values.iter().find(|x| x.eq_ignore_ascii_case(&s)))
            {
                Some(canonical) => Coerced::Value(Value::String(canonical.clone())),
                None => Coerced::Failed(
                    WarningCode::InvalidEnumValue,
                    format!("\"{s}\" is not one of {}", values.join(", ")),
                ),
            }
        }
        DataType::StringArray => {
            let items: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let texts: Option<Vec<Value>> = items
                .into_iter()
                .map(|i| text(i).map(Value::String))
                .collect();
            match texts {
                Some(t) => Coerced::Value(Value::Array(t)),
                None => failed(format!("{} is not a list of strings", describe(v))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value, t: DataType) -> Value {
        match coerce(&v, t, &["Engineering".into(), "Sales".into()]) {
            Coerced::Value(v) => v,
            Coerced::Failed(code, why) => panic!("{v} as {t:?}: {code:?} {why}"),
        }
    }

    fn fails(v: Value, t: DataType) -> WarningCode {
        match coerce(&v, t, &["Engineering".into()]) {
            Coerced::Value(out) => panic!("{v} as {t:?} should fail, gave {out}"),
            Coerced::Failed(code, _) => code,
        }
    }

    #[test]
    fn every_documented_coercion() {
        assert_eq!(ok(json!("x"), DataType::String), json!("x"));
        assert_eq!(ok(json!(42), DataType::String), json!("42"));
        assert_eq!(
            ok(
                json!({"value": "m1", "displayName": "Boss"}),
                DataType::String
            ),
            json!("m1")
        );
        assert_eq!(ok(json!("True"), DataType::Boolean), json!(true));
        assert_eq!(ok(json!("false"), DataType::Boolean), json!(false));
        assert_eq!(ok(json!(1), DataType::Boolean), json!(true));
        assert_eq!(ok(json!("42"), DataType::Integer), json!(42));
        assert_eq!(ok(json!(7.0), DataType::Integer), json!(7));
        assert_eq!(ok(json!("4.5"), DataType::Number), json!(4.5));
        assert_eq!(
            ok(json!("2024-03-01T10:00:00+02:00"), DataType::DateTime),
            json!("2024-03-01T08:00:00Z")
        );
        assert_eq!(
            ok(json!("2024-03-01"), DataType::DateTime),
            json!("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            ok(json!("2024-03-01 10:30:00"), DataType::DateTime),
            json!("2024-03-01T10:30:00Z")
        );
        assert_eq!(
            ok(json!(0), DataType::DateTime),
            json!("1970-01-01T00:00:00Z")
        );
        assert_eq!(ok(json!(" a@b.co "), DataType::Email), json!("a@b.co"));
        assert_eq!(ok(json!("sales"), DataType::Enum), json!("Sales"));
        assert_eq!(
            ok(json!([{"value": "a"}, "b"]), DataType::StringArray),
            json!(["a", "b"])
        );
        assert_eq!(ok(json!("solo"), DataType::StringArray), json!(["solo"]));
        assert_eq!(ok(json!({"any": [1]}), DataType::Json), json!({"any": [1]}));
    }

    #[test]
    fn failures_name_their_code() {
        assert_eq!(
            fails(json!("yes please"), DataType::Boolean),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!("4.5"), DataType::Integer),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!("soon"), DataType::DateTime),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!("not-an-email"), DataType::Email),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!("a@b"), DataType::Email),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!("Marketing"), DataType::Enum),
            WarningCode::InvalidEnumValue
        );
        assert_eq!(
            fails(json!([[1]]), DataType::StringArray),
            WarningCode::CoercionFailed
        );
        assert_eq!(
            fails(json!(["x"]), DataType::String),
            WarningCode::CoercionFailed
        );
    }
}
