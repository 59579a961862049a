//! Property lists as JSON, the one conversion ward uses on both sides of the sandbox: the
//! host's `enrich.plist` answer, and detectors that decode property lists nested inside
//! data values (Jamf's `asPlistDict`).
//!
//! Dictionaries become objects, arrays arrays; dates RFC 3339 strings; data base64
//! strings; UIDs numbers.
//!
//! The adversary writes the file, so the conversion is budgeted while it reads ([`Limits`]):
//! objects of a binary property list may share references, and every reference is
//! expanded, so a 2 KB file can stand for 2^40 values. The conversion drives the `plist`
//! crate's event reader and builds the JSON value itself, iteratively, counting values
//! ([`MAX_NODES`]) and bytes of JSON text ([`MAX_OUTPUT_BYTES`]) and refusing nesting past
//! a depth ([`MAX_DEPTH`]) as soon as any is exceeded, never after the fact.
//!
//! ```
//! let xml = br#"<plist version="1.0"><dict><key>Label</key><string>x</string></dict></plist>"#;
//! let json = ward_plist_json::parse(xml, ward_plist_json::MAX_DEPTH).unwrap();
//! assert_eq!(json["Label"], "x");
//! ```

use std::fmt;

use base64::Engine as _;
use plist::stream::{Event, Reader};
use serde_json::{Map, Value};

/// Deepest nesting of arrays and dictionaries converted by default. Building is iterative,
/// but dropping, cloning or printing a `serde_json::Value` recurses once per level: this
/// keeps that within a plugin's 512 KiB wasm stack.
pub const MAX_DEPTH: usize = 128;

/// Values (scalars, arrays, dictionaries and dictionary keys) one conversion produces by
/// default. Protects the converter's memory (a value costs 32 to ~100 bytes in memory)
/// against binary property lists whose objects share references. A reference takes at
/// least a byte, so every value of a 1 MiB binary property list whose containers are not
/// shared fits (XML needs several bytes per value).
pub const MAX_NODES: usize = 1 << 20;

/// Bytes of compact JSON text (strings, keys, base64 data, numbers and punctuation) one
/// conversion produces by default. Protects the memory of the converter and of whoever
/// receives the text (the host hands it to a plugin) against shared references to long
/// strings and data. 8x the host's 1 MiB file cap: XML converts to at most ~1.4x its size
/// (base64 data); CoreFoundation's binary writer shares equal strings, so repeated keys and
/// values amplify, and 8x leaves room for that.
pub const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// What one conversion may produce; [`Limits::default`] is [`MAX_DEPTH`], [`MAX_NODES`]
/// and [`MAX_OUTPUT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting: the root is at depth 0, its items at 1.
    pub max_depth: usize,
    /// Values produced, keys included.
    pub max_nodes: usize,
    /// Bytes of the result as compact JSON text (counted from above: one separator per
    /// value).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_output_bytes: MAX_OUTPUT_BYTES,
        }
    }
}

impl Limits {
    /// What is left of these limits after a conversion used `used` (depth unchanged):
    /// callers converting several property lists for one purpose share one budget.
    #[must_use]
    pub fn less(self, used: Usage) -> Self {
        Self {
            max_depth: self.max_depth,
            max_nodes: self.max_nodes.saturating_sub(used.nodes),
            max_output_bytes: self.max_output_bytes.saturating_sub(used.json_bytes),
        }
    }
}

/// What a conversion produced, as counted against [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Values, keys included.
    pub nodes: usize,
    /// Upper bound of the compact JSON text's length.
    pub json_bytes: usize,
}

/// Why a property list was not converted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed property list.
    NotPlist(String),
    /// Nested deeper than the limit.
    TooDeep {
        /// The limit.
        max_depth: usize,
    },
    /// Expands to more values than the limit.
    TooManyNodes {
        /// The limit.
        max_nodes: usize,
    },
    /// Expands to more bytes of JSON than the limit.
    TooLarge {
        /// The limit.
        max_output_bytes: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotPlist(why) => write!(f, "not a property list: {why}"),
            Error::TooDeep { max_depth } => write!(f, "nested deeper than {max_depth} levels"),
            Error::TooManyNodes { max_nodes } => {
                write!(f, "expands to more than {max_nodes} values")
            }
            Error::TooLarge { max_output_bytes } => {
                write!(f, "expands to more than {max_output_bytes} bytes of JSON")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Parses a property list (XML, binary or ASCII) from `bytes` and converts it, with the
/// default node and byte budgets and `max_depth`. The error is [`Error`]'s text.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    parse_with(
        bytes,
        &Limits {
            max_depth,
            ..Limits::default()
        },
    )
    .map_err(|e| e.to_string())
}

/// Parses and converts `bytes` within `limits`.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Value, Error> {
    parse_counted(bytes, limits).map(|(value, _)| value)
}

/// [`parse_with`], also saying how much of the budget the result used.
pub fn parse_counted(bytes: &[u8], limits: &Limits) -> Result<(Value, Usage), Error> {
    let mut builder = Builder {
        limits: *limits,
        used: Usage::default(),
        stack: Vec::new(),
        root: None,
    };
    for event in Reader::new(std::io::Cursor::new(bytes)) {
        let event = event.map_err(|e| Error::NotPlist(e.to_string()))?;
        builder.event(event)?;
    }
    match builder.root {
        Some(root) if builder.stack.is_empty() => Ok((root, builder.used)),
        _ => Err(Error::NotPlist("ends inside a value".into())),
    }
}

/// An open array or dictionary.
enum Open {
    Array(Vec<Value>),
    /// A dictionary and the key whose value comes next.
    Dict(Map<String, Value>, Option<String>),
}

struct Builder {
    limits: Limits,
    used: Usage,
    stack: Vec<Open>,
    root: Option<Value>,
}

impl Builder {
    /// Counts one value (or key) of `json_bytes` at the current depth.
    fn count(&mut self, json_bytes: usize) -> Result<(), Error> {
        if self.stack.len() > self.limits.max_depth {
            return Err(Error::TooDeep {
                max_depth: self.limits.max_depth,
            });
        }
        self.used.nodes += 1;
        if self.used.nodes > self.limits.max_nodes {
            return Err(Error::TooManyNodes {
                max_nodes: self.limits.max_nodes,
            });
        }
        // The separator (`,` or `:`) before the value, counted for every value.
        self.used.json_bytes = self.used.json_bytes.saturating_add(json_bytes + 1);
        if self.used.json_bytes > self.limits.max_output_bytes {
            return Err(Error::TooLarge {
                max_output_bytes: self.limits.max_output_bytes,
            });
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), Error> {
        if self.root.is_some() {
            return Err(Error::NotPlist("more than one root value".into()));
        }
        let value = match event {
            Event::StartArray(_) => {
                // The declared length is the file's word: nothing is reserved for it.
                self.count(2)?;
                self.stack.push(Open::Array(Vec::new()));
                return Ok(());
            }
            Event::StartDictionary(_) => {
                self.count(2)?;
                self.stack.push(Open::Dict(Map::new(), None));
                return Ok(());
            }
            Event::EndCollection => match self.stack.pop() {
                Some(Open::Array(items)) => Value::Array(items),
                Some(Open::Dict(map, None)) => Value::Object(map),
                Some(Open::Dict(_, Some(key))) => {
                    return Err(Error::NotPlist(format!(
                        "dictionary key {key:?} has no value"
                    )));
                }
                None => return Err(Error::NotPlist("unbalanced end of collection".into())),
            },
            Event::String(s) => {
                // A dictionary key is a string in the key's place: counted as a value.
                self.count(json_string_len(&s))?;
                if let Some(Open::Dict(_, key @ None)) = self.stack.last_mut() {
                    *key = Some(s.into_owned());
                    return Ok(());
                }
                Value::String(s.into_owned())
            }
            Event::Boolean(b) => {
                self.count(if b { 4 } else { 5 })?;
                Value::Bool(b)
            }
            Event::Data(bytes) => {
                self.count(bytes.len().div_ceil(3).saturating_mul(4).saturating_add(2))?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Event::Date(d) => {
                let text = d.to_xml_format();
                self.count(json_string_len(&text))?;
                Value::String(text)
            }
            Event::Real(r) => {
                let value = serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number);
                self.count(json_len(&value))?;
                value
            }
            Event::Integer(i) => {
                let value = i
                    .as_signed()
                    .map(Value::from)
                    .or_else(|| i.as_unsigned().map(Value::from))
                    .unwrap_or(Value::Null);
                self.count(json_len(&value))?;
                value
            }
            Event::Uid(u) => {
                let value = Value::from(u.get());
                self.count(json_len(&value))?;
                value
            }
            _ => {
                self.count(4)?;
                Value::Null
            }
        };
        self.place(value)
    }

    /// Puts a finished value into its container (or makes it the root).
    fn place(&mut self, value: Value) -> Result<(), Error> {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Open::Array(items)) => items.push(value),
            Some(Open::Dict(map, key)) => match key.take() {
                Some(key) => {
                    map.insert(key, value);
                }
                None => {
                    return Err(Error::NotPlist(
                        "a dictionary key that is not a string".into(),
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Length of a scalar as compact JSON text, as serde_json writes it.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a number is at most 24 characters.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 24,
    }
}

/// Length of `s` as a JSON string, quotes and escapes included (as serde_json writes it).
fn json_string_len(s: &str) -> usize {
    s.bytes().fold(2usize, |n, b| {
        n.saturating_add(match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
    })
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn the_counted_json_length_bounds_the_real_one() {
        let xml = br#"<plist version="1.0"><dict>
            <key>q"uo\te</key><string>tab	nul&#1;&#233;</string>
            <key>n</key><array><integer>-9223372036854775808</integer>
            <integer>18446744073709551615</integer><real>-1.7976931348623157e308</real>
            <false/><data>AAECAwQ=</data></array><key>e</key><dict/></dict></plist>"#;
        let (json, used) = parse_counted(xml, &Limits::default()).unwrap();
        let text = json.to_string();
        assert!(text.len() <= used.json_bytes, "{text} {used:?}");
        assert_eq!(used.nodes, 12);
        assert_eq!(
            json_string_len("a\"\u{1}é"),
            serde_json::to_string("a\"\u{1}é").unwrap().len()
        );
    }
}
