//! Property lists as JSON, the one conversion ward uses on both sides of the sandbox: the
//! host's `enrich.plist` answer, and detectors that decode property lists nested inside
//! data values (Jamf's `asPlistDict`).
//!
//! Dictionaries become objects, arrays arrays; dates RFC 3339 strings; data base64
//! strings; UIDs numbers. Nesting deeper than the caller's limit is an error, so a hostile
//! file cannot make the converter recurse without bound.
//!
//! ```
//! let xml = br#"<plist version="1.0"><dict><key>Label</key><string>x</string></dict></plist>"#;
//! let json = ward_plist_json::parse(xml, ward_plist_json::MAX_DEPTH).unwrap();
//! assert_eq!(json["Label"], "x");
//! ```

use base64::Engine as _;
use serde_json::{Map, Value};

/// Deepest nesting of arrays and dictionaries converted by default.
pub const MAX_DEPTH: usize = 128;

/// `value` as JSON; an error past `max_depth` levels of nesting.
pub fn to_json(value: plist::Value, max_depth: usize) -> Result<Value, String> {
    convert(value, 0, max_depth)
}

/// Parses a property list (XML or binary) from `bytes` and converts it.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a property list: {e}"))?;
    to_json(value, max_depth)
}

fn convert(value: plist::Value, depth: usize, max_depth: usize) -> Result<Value, String> {
    if depth > max_depth {
        return Err(format!("nested deeper than {max_depth} levels"));
    }
    Ok(match value {
        plist::Value::Dictionary(d) => {
            let mut map = Map::new();
            for (k, v) in d {
                map.insert(k, convert(v, depth + 1, max_depth)?);
            }
            Value::Object(map)
        }
        plist::Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| convert(v, depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
        plist::Value::Boolean(b) => Value::Bool(b),
        plist::Value::Data(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        plist::Value::Date(d) => Value::String(d.to_xml_format()),
        plist::Value::Real(r) => serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number),
        plist::Value::Integer(i) => i
            .as_signed()
            .map(Value::from)
            .or_else(|| i.as_unsigned().map(Value::from))
            .unwrap_or(Value::Null),
        plist::Value::String(s) => Value::String(s),
        plist::Value::Uid(u) => Value::from(u.get()),
        _ => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_of_value_converts_and_depth_is_bounded() {
        let xml = br#"<plist version="1.0"><dict>
            <key>a</key><array><integer>-5</integer><real>1.5</real><true/></array>
            <key>d</key><data>AAEC</data><key>t</key><date>2026-10-07T14:00:00Z</date>
            </dict></plist>"#;
        let json = parse(xml, MAX_DEPTH).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": [-5, 1.5, true], "d": "AAEC", "t": "2026-10-07T14:00:00Z"})
        );
        // The root dictionary is depth 0, the array 1, its items 2.
        assert!(parse(xml, 1).unwrap_err().contains("nested deeper than 1"));
        assert!(parse(xml, 2).is_ok());
        assert!(
            parse(b"nope", MAX_DEPTH)
                .unwrap_err()
                .starts_with("not a property list")
        );
    }
}
