//! JSON as runner reads what people write: serde_json's grammar, but an object with the same
//! key twice is refused instead of silently keeping the last one (`"temperature": 0.2, …,
//! "temperature": 1.9` is a mistake, not a setting), as YAML and TOML files and JSONL datasets
//! already refuse it. Every JSON a user hands runner (prompt files, `--param` / `--meta`
//! values, messages and variables files, request bodies of `runner serve`) goes through here.
//! It must not be used for JSON runner wrote itself or an endpoint's answers.

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `text` into a value, refusing repeated keys (the error names the key and where).
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// `parse` of bytes.
pub fn parse_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// `T` from `text`, refusing repeated keys anywhere in it.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(parse(text)?)
}

/// `T` from bytes, refusing repeated keys anywhere in them.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_value(parse_slice(bytes)?)
}

/// The `Visitor` methods that turn a JSON scalar into a `Value`, as serde_json does; a visitor
/// that builds values its own way (this module's, the JSONL reader's) shares them.
macro_rules! scalar_visits {
    () => {
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
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
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

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}
pub(crate) use scalar_visits;

/// Builds a `Value` the way serde_json does, but refuses an object's repeated key.
pub(crate) struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalar_visits!();

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_keys_are_refused_at_any_depth_with_where() {
        let cases = [
            r#"{"temperature": 0.2, "model": "m", "temperature": 1.9}"#,
            r#"{"params": {"a": 1, "a": 2}}"#,
            r#"[{"x": {"y": [{"k": 1, "k": 1}]}}]"#,
        ];
        for text in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
            assert!(e.contains("line 1"), "{text}: {e}");
        }
        assert!(from_slice::<Value>(cases[0].as_bytes()).is_err());
    }

    #[test]
    fn everything_else_reads_as_serde_json_reads_it() {
        for text in [
            r#"{"a": [1, -2, 3.5, 1e300, true, null, "x\u00e9"], "b": {}, "c": []}"#,
            "18446744073709551615",
            "-9223372036854775808",
            r#""just a string""#,
        ] {
            assert_eq!(
                parse(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap()
            );
        }
        // Trailing text and bad JSON fail as they do in serde_json.
        assert!(parse(r#"{"a": 1} x"#).is_err());
        assert!(parse(r#"{"a": "#).is_err());
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Params {
            temperature: f64,
        }
        assert_eq!(
            from_str::<Params>(r#"{"temperature": 0.5}"#).unwrap(),
            Params { temperature: 0.5 }
        );
        assert_eq!(parse("[[[1]]]").unwrap(), json!([[[1]]]));
    }

    #[test]
    fn nesting_is_bounded_as_in_serde_json() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }
}
