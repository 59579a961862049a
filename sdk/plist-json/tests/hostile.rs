//! Hostile property lists, generated here: shared references that expand without bound
//! (the binary format's "billion laughs"), deep nesting, cycles; and ordinary property lists
//! that must convert exactly as before.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use serde_json::{Map, Value, json};
use ward_plist_json::{Error, Limits, MAX_DEPTH, MAX_NODES, MAX_OUTPUT_BYTES, parse, parse_with};

/// A binary property list ("bplist00") of `objects` (each already encoded, references
/// `ref_size` bytes wide), object 0 the root: header, objects, offset table, trailer.
fn bplist(objects: &[Vec<u8>], ref_size: u8) -> Vec<u8> {
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for object in objects {
        offsets.push(out.len() as u64);
        out.extend_from_slice(object);
    }
    let table = out.len() as u64;
    for offset in &offsets {
        out.extend_from_slice(&offset.to_be_bytes()[4..]);
    }
    // Trailer: 5 unused bytes, sort version, offset size, reference size, object count,
    // root object, offset table offset.
    out.extend_from_slice(&[0; 6]);
    out.push(4);
    out.push(ref_size);
    out.extend_from_slice(&(objects.len() as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

/// The marker byte of an object of kind `kind` (high nibble) holding `len` items, with the
/// length as a following integer object when it does not fit the nibble.
fn marker(kind: u8, len: usize) -> Vec<u8> {
    if len < 15 {
        return vec![kind << 4 | len as u8];
    }
    let mut out = vec![kind << 4 | 0x0f, 0x12];
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out
}

/// An array of references to the objects `refs`, `ref_size` bytes each.
fn array(refs: &[u64], ref_size: u8) -> Vec<u8> {
    let mut out = marker(0xa, refs.len());
    for r in refs {
        out.extend_from_slice(&r.to_be_bytes()[8 - ref_size as usize..]);
    }
    out
}

fn ascii(text: &str) -> Vec<u8> {
    let mut out = marker(0x5, text.len());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Object i (i < levels) is an array holding `width` references to object i + 1; the last
/// object is `leaf`. Expands to `width`^`levels` leaves.
fn laughs(width: usize, levels: usize, leaf: Vec<u8>) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = (0..levels)
        .map(|i| array(&vec![i as u64 + 1; width], 1))
        .collect();
    objects.push(leaf);
    bplist(&objects, 1)
}

#[test]
fn shared_references_are_refused_by_the_node_budget_while_reading() {
    // 16^10 = 2^40 `true`s from a few hundred bytes; shallow, so only the budget stops it.
    let bytes = laughs(16, 10, vec![0x09]);
    assert!(bytes.len() < 2048, "{}", bytes.len());
    let err = parse_with(&bytes, &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        Error::TooManyNodes {
            max_nodes: MAX_NODES
        }
    );
    assert_eq!(
        parse(&bytes, MAX_DEPTH).unwrap_err(),
        format!("expands to more than {MAX_NODES} values")
    );
    // A caller's own budget is what counts.
    let small = Limits {
        max_nodes: 1000,
        ..Limits::default()
    };
    assert_eq!(
        parse_with(&bytes, &small).unwrap_err(),
        Error::TooManyNodes { max_nodes: 1000 }
    );
}

#[test]
fn shared_references_to_long_strings_are_refused_by_the_byte_budget() {
    // 16^4 = 65,536 references to a 1 KiB string: 64 MiB of JSON from a ~1.2 KB file, far
    // fewer values than the node budget.
    let text = "A".repeat(1024);
    let bytes = laughs(16, 4, ascii(&text));
    assert!(bytes.len() < 2048, "{}", bytes.len());
    assert_eq!(
        parse_with(&bytes, &Limits::default()).unwrap_err(),
        Error::TooLarge {
            max_output_bytes: MAX_OUTPUT_BYTES
        }
    );
    // Data counts as its base64 text.
    let mut data = marker(0x4, 1024);
    data.extend_from_slice(&[0xff; 1024]);
    let bytes = laughs(16, 4, data);
    assert!(matches!(
        parse_with(&bytes, &Limits::default()),
        Err(Error::TooLarge { .. })
    ));
    // Two levels (256 copies, ~260 KB of JSON) are within the budget.
    let bytes = laughs(16, 2, ascii(&text));
    let json = parse_with(&bytes, &Limits::default()).unwrap();
    assert_eq!(json[15][15], Value::String(text));
}

#[test]
fn deep_nesting_and_cycles_are_refused() {
    // 10,000 nested arrays in ~40 KB: each holds a reference to the next.
    let n = 10_000u64;
    let mut objects: Vec<Vec<u8>> = (0..n).map(|i| array(&[i + 1], 2)).collect();
    objects.push(vec![0x09]);
    let deep = bplist(&objects, 2);
    assert_eq!(
        parse_with(&deep, &Limits::default()).unwrap_err(),
        Error::TooDeep {
            max_depth: MAX_DEPTH
        }
    );
    // The same in XML.
    let xml = format!(
        "<plist version=\"1.0\">{}<true/>{}</plist>",
        "<array>".repeat(10_000),
        "</array>".repeat(10_000)
    );
    assert_eq!(
        parse_with(xml.as_bytes(), &Limits::default()).unwrap_err(),
        Error::TooDeep {
            max_depth: MAX_DEPTH
        }
    );
    // An array that holds itself.
    let cycle = bplist(&[array(&[0], 1)], 1);
    assert!(matches!(
        parse_with(&cycle, &Limits::default()),
        Err(Error::NotPlist(_))
    ));
    // A dictionary key that is not a string.
    let bad_key = bplist(&[vec![0xd1, 1, 1], vec![0x09]], 1);
    assert!(matches!(
        parse_with(&bad_key, &Limits::default()),
        Err(Error::NotPlist(_))
    ));
}

#[test]
fn the_largest_honest_binary_plist_fits_the_default_budget() {
    // One array referencing the same `false` from every byte of a 1 MiB file (the host's
    // size cap): the most values 1 MiB can hold without sharing a container.
    let refs = (1 << 20) - 100;
    let mut objects = vec![array(&vec![1; refs], 1), vec![0x08]];
    let bytes = bplist(&objects, 1);
    assert!(bytes.len() <= 1 << 20, "{}", bytes.len());
    let json = parse_with(&bytes, &Limits::default()).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(refs));
    assert!(json.to_string().len() <= MAX_OUTPUT_BYTES);
    // One value more than a budget is refused, exactly at the budget accepted.
    objects[0] = array(&[1; 9], 1);
    let ten = bplist(&objects, 1);
    let limits = |max_nodes| Limits {
        max_nodes,
        ..Limits::default()
    };
    assert!(parse_with(&ten, &limits(10)).is_ok());
    assert!(parse_with(&ten, &limits(9)).is_err());
}

/// The conversion as it was, over `plist::Value` (the oracle for ordinary files).
fn convert(value: plist::Value) -> Value {
    match value {
        plist::Value::Dictionary(d) => {
            let mut map = Map::new();
            for (k, v) in d {
                map.insert(k, convert(v));
            }
            Value::Object(map)
        }
        plist::Value::Array(a) => Value::Array(a.into_iter().map(convert).collect()),
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
    }
}

#[test]
fn ordinary_xml_and_binary_plists_convert_as_before() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>Label</key><string>com.example.agent</string>
  <key>ProgramArguments</key><array><string>/bin/sh</string><string>-c</string><string>echo "é ✓"</string></array>
  <key>RunAtLoad</key><true/><key>KeepAlive</key><false/>
  <key>StartInterval</key><integer>3600</integer><key>Big</key><integer>18446744073709551615</integer>
  <key>Negative</key><integer>-42</integer><key>Ratio</key><real>0.25</real>
  <key>When</key><date>2026-10-07T14:00:00Z</date><key>Blob</key><data>AAECAwQFBgc=</data>
  <key>Window Settings</key><dict><key>Basic</key><dict><key>CommandString</key><string>ls</string>
    <key>Nested</key><array><array><dict/></array><array/></array></dict></dict>
  <key>Label</key><string>duplicate key: the last wins</string>
</dict></plist>"#;
    let value = plist::Value::from_reader_xml(xml.as_bytes()).unwrap();
    let mut binary = Vec::new();
    value.to_writer_binary(&mut binary).unwrap();
    let expected = convert(value);
    assert_eq!(parse(xml.as_bytes(), MAX_DEPTH).unwrap(), expected);
    assert_eq!(parse(&binary, MAX_DEPTH).unwrap(), expected);
    assert_eq!(expected["Label"], json!("duplicate key: the last wins"));
    assert_eq!(
        expected["Window Settings"]["Basic"]["Nested"],
        json!([[{}], []])
    );
    // ASCII (OpenStep) property lists too.
    assert_eq!(
        parse(br#"{ Label = "x"; Items = (a, b); }"#, MAX_DEPTH).unwrap(),
        json!({"Label": "x", "Items": ["a", "b"]})
    );
}
