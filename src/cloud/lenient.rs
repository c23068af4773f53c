//! Tolerant readers for the wire: the vendor sends numbers as strings and
//! strings as numbers, `null` for empty lists, and Go's zero time for "unset".

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::de::{Deserializer, Error};
use serde::{Deserialize, Serializer};
use serde_json::Value;

/// Go's `time.Time{}` as the platform prints it.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(D::Error::custom(format!("expected a string, found {}", kind(&other)))),
    }
}

pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let value = Value::deserialize(d)?;
    let number = match &value {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        }
        Value::String(s) if s.trim().is_empty() => Some(0),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    number
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("expected a count, found {}", kind(&value))))
}

pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = Value::deserialize(d)?;
    let number = match &value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => Some(0.0),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        Value::Null => Some(0.0),
        _ => None,
    };
    number.ok_or_else(|| D::Error::custom(format!("expected a number, found {}", kind(&value))))
}

pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(d)?;
    let flag = match &value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| n == 1),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    };
    flag.ok_or_else(|| D::Error::custom(format!("expected a boolean, found {}", kind(&value))))
}

/// A timestamp with its offset kept exactly; Go's zero time, `""` and `null` are `None`.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    let text = string(d)?;
    let text = text.trim();
    if text.is_empty() || text.starts_with("0001-01-01") {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text).map(Some).map_err(|e| D::Error::custom(format!("bad timestamp {text:?}: {e}")))
}

/// Writes a time the way the platform does: whole seconds unless there is a
/// fraction, the offset as given, Go's zero time for "unset".
pub fn serialize_time<S: Serializer>(t: &Option<DateTime<FixedOffset>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

/// Whole numbers without a fraction (`10`, not `10.0`), as the vendor writes prices.
pub fn serialize_number<S: Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
    if n.fract() == 0.0 && n.abs() < 1e15 { s.serialize_i64(*n as i64) } else { s.serialize_f64(*n) }
}

/// Annotation values are strings; a number or boolean among them is read as text.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key, s)),
            Value::Null => Ok((key, String::new())),
            Value::Number(_) | Value::Bool(_) => Ok((key, value.to_string())),
            other => Err(D::Error::custom(format!("annotation {key:?}: expected a string, found {}", kind(&other)))),
        })
        .collect()
}

/// `null` where a list belongs reads as an empty list.
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn kind(value: &Value) -> &'static str {
    match value {
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
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "super::string")]
        s: String,
        #[serde(deserialize_with = "super::u32")]
        n: u32,
        #[serde(deserialize_with = "super::f64")]
        f: f64,
        #[serde(deserialize_with = "super::bool")]
        b: bool,
        #[serde(deserialize_with = "super::time")]
        t: Option<DateTime<FixedOffset>>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn reads_numbers_as_strings_and_strings_as_numbers() {
        let p = probe(r#"{"s": 66, "n": "16", "f": "0.48", "b": "True", "t": "2024-09-02T18:34:33+08:00"}"#).unwrap();
        assert_eq!((p.s.as_str(), p.n, p.f, p.b), ("66", 16, 0.48, true));
        let t = p.t.unwrap();
        assert_eq!(t.offset().local_minus_utc(), 8 * 3600);
        assert_eq!(t.to_rfc3339(), "2024-09-02T18:34:33+08:00");
    }

    #[test]
    fn go_zero_time_is_unset() {
        let p = probe(r#"{"s": null, "n": 8.0, "f": 10, "b": 0, "t": "0001-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!((p.s.as_str(), p.n, p.f, p.b, p.t), ("", 8, 10.0, false, None));
    }

    #[test]
    fn nonsense_is_an_error_not_a_guess() {
        assert!(probe(r#"{"s": "", "n": "sixteen", "f": 1, "b": true, "t": ""}"#).is_err());
        assert!(probe(r#"{"s": "", "n": -1, "f": 1, "b": true, "t": ""}"#).is_err());
        assert!(probe(r#"{"s": "", "n": 1, "f": 1, "b": "maybe", "t": ""}"#).is_err());
        assert!(probe(r#"{"s": "", "n": 1, "f": 1, "b": true, "t": "yesterday"}"#).is_err());
        assert!(probe(r#"{"s": [], "n": 1, "f": 1, "b": true, "t": ""}"#).is_err());
    }
}
