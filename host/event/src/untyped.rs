//! Untyped JSON the model keeps as a `serde_json::Value` (payloads of kinds not typed yet,
//! authentication details), built under a node budget.
//!
//! Typed fields cost at most a small multiple of their bytes and unknown fields are skipped
//! without allocating, but a `Value` allocates per node: a 1 MiB line of `[[0],[0],…]`
//! becomes tens of MiB. The budget keeps one untyped payload near the size of its text.
//! Depth is bounded by serde_json's recursion limit (128, on by default: this crate does
//! not enable `unbounded_depth`).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// JSON values (nulls, numbers, strings, arrays, objects) one untyped payload may hold;
/// a payload over it fails the line as `bad-shape`. Protects the parser from a line that
/// expands ~40x into `Value` nodes; a real payload (an authentication record with its
/// instigator) has a few hundred.
pub const MAX_UNTYPED_NODES: usize = 16_384;

/// Deserializes one untyped payload within [`MAX_UNTYPED_NODES`].
pub(crate) fn bounded_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Untyped.deserialize(deserializer)
}

/// Seed for one untyped payload, with a fresh budget.
pub(crate) struct Untyped;

impl<'de> DeserializeSeed<'de> for Untyped {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let budget = Cell::new(MAX_UNTYPED_NODES);
        Budgeted(&budget).deserialize(deserializer)
    }
}

/// One node of a payload, drawing on the payload's budget.
struct Budgeted<'a>(&'a Cell<usize>);

impl Budgeted<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "untyped payload has more than {MAX_UNTYPED_NODES} JSON values"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Budgeted(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Budgeted(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::model::EventPayload;
    use crate::parse_line;

    fn line(event: &str, payload: &str) -> String {
        format!(
            r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":1,"pidversion":1}},"executable":{{"path":"/bin/sh"}}}},"event":{{"{event}":{payload}}}}}"#
        )
    }

    /// `[[0],[0],…]`: two values per four bytes, the shape that expands most.
    fn nodes(values: usize) -> String {
        format!("[{}]", vec!["[0]"; values / 2].join(","))
    }

    #[test]
    fn an_untyped_payload_within_the_budget_is_kept_whole() {
        let payload = nodes(MAX_UNTYPED_NODES - 2);
        let msg = parse_line(line("future_kind", &payload).as_bytes(), 1 << 20).unwrap();
        let EventPayload::Other { name, raw } = msg.event else {
            panic!("untyped")
        };
        assert_eq!(name, "future_kind");
        assert_eq!(raw, serde_json::from_str::<Value>(&payload).unwrap());
        let mixed = r#"{"a":[1,-2,3.5,"s",true,null,{"b":{}}],"c":18446744073709551615}"#;
        let msg = parse_line(line("future_kind", mixed).as_bytes(), 1 << 20).unwrap();
        let EventPayload::Other { raw, .. } = msg.event else {
            panic!("untyped")
        };
        assert_eq!(raw, serde_json::from_str::<Value>(mixed).unwrap());
    }

    /// A line under the 1 MiB default cap whose payload would expand to ~40 MiB of `Value`
    /// nodes is refused and counted; the old parser built all of it.
    #[test]
    fn an_untyped_payload_over_the_budget_fails_the_line() {
        let payload = nodes(250_000);
        let text = line("future_kind", &payload);
        assert!(text.len() < crate::DEFAULT_MAX_LINE_BYTES);
        let err = parse_line(text.as_bytes(), crate::DEFAULT_MAX_LINE_BYTES).unwrap_err();
        assert_eq!(err.reason(), "bad-shape", "{err}");
        let auth = format!(r#"{{"success":true,"type":0,"data":{{"od":{payload}}}}}"#);
        let err = parse_line(line("authentication", &auth).as_bytes(), 1 << 20).unwrap_err();
        assert_eq!(err.reason(), "bad-shape", "{err}");
    }

    /// Nesting 200,000 deep fails cleanly where it is built (the recursion limit), and is
    /// skipped without recursion where it is ignored: no stack overflow either way.
    #[test]
    fn deep_nesting_is_refused_or_skipped_never_recursed_into() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let err = parse_line(line("future_kind", &deep).as_bytes(), 1 << 20).unwrap_err();
        assert_eq!(err.reason(), "invalid-json", "{err}");
        let auth = format!(r#"{{"success":true,"data":{deep}}}"#);
        assert!(parse_line(line("authentication", &auth).as_bytes(), 1 << 20).is_err());
        // An unknown field of a typed payload is skipped iteratively.
        let exit = format!(r#"{{"stat":0,"future_field":{deep}}}"#);
        let msg = parse_line(line("exit", &exit).as_bytes(), 1 << 20).unwrap();
        assert_eq!(msg.event.kind(), "exit");
    }
}
