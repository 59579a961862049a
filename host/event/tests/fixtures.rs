//! Every real eslogger fixture line parses to its typed kind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use ward_event::{DEFAULT_MAX_LINE_BYTES, EventPayload, ProcessTable, parse_line};

fn fixture_dir() -> PathBuf {
    // Real eslogger records (Mac Monitor, BSD-3-Clause), shipped with their licence.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/macmonitor")
}

fn lines(name: &str) -> Vec<String> {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_fixture_line_parses_to_its_typed_kind() {
    let mut kinds = Vec::new();
    for name in [
        "eslogger-exit.jsonl",
        "eslogger-open.jsonl",
        "eslogger-remote-thread-create.jsonl",
        "eslogger-lineage.jsonl",
        "eslogger-od.jsonl",
    ] {
        for line in lines(name) {
            let msg = parse_line(line.as_bytes(), DEFAULT_MAX_LINE_BYTES)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                !matches!(msg.event, EventPayload::Other { .. }),
                "{name}: untyped {}",
                msg.event.kind()
            );
            kinds.push(msg.event.kind().to_owned());
        }
    }
    for expected in [
        "exit",
        "open",
        "remote_thread_create",
        "fork",
        "exec",
        "od_create_user",
        "od_group_add",
        "od_modify_password",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} among {kinds:?}"
        );
    }
}

#[test]
fn lineage_resolves_parents_and_ancestry() {
    let mut table = ProcessTable::default();
    let mut last_exec = None;
    for line in lines("eslogger-lineage.jsonl") {
        let msg = parse_line(line.as_bytes(), DEFAULT_MAX_LINE_BYTES).unwrap();
        table.observe(&msg);
        if let EventPayload::Exec(exec) = &msg.event {
            last_exec = Some(exec.target.clone());
        }
    }
    let last = last_exec.expect("lineage has execs");
    let parent = table
        .parent(&last)
        .expect("parent of the last exec is known");
    assert_ne!(parent.audit_token, last.audit_token);
    let chain = table.ancestors(&last.audit_token, 32);
    assert!(!chain.is_empty());
    assert_eq!(chain[0].audit_token, parent.audit_token);
}

#[test]
fn audit_token_array_form_matches_object_form() {
    let obj = r#"{"version":10,"time":"t","process":{"audit_token":{"asid":7,"auid":501,"egid":20,"euid":501,"pid":42,"pidversion":43,"rgid":20,"ruid":501},"executable":{"path":"/bin/ls"}},"event":{"exit":{"stat":0}}}"#;
    let arr = r#"{"version":10,"time":"t","process":{"audit_token":[501,501,20,501,20,42,7,43],"executable":{"path":"/bin/ls"}},"event":{"exit":{"stat":0}}}"#;
    let a = parse_line(obj.as_bytes(), 1 << 20).unwrap();
    let b = parse_line(arr.as_bytes(), 1 << 20).unwrap();
    assert_eq!(a.process.audit_token, b.process.audit_token);
    assert_eq!(a.process.audit_token.pid, 42);
    assert_eq!(a.process.audit_token.pidversion, 43);
}

#[test]
fn bad_lines_are_classified() {
    let cases: &[(&[u8], &str)] = &[
        (b"{\"version\":10,\"process\":", "truncated"),
        (b"[1,2,3]", "not-an-object"),
        (b"not json", "invalid-json"),
        (b"\xff\xfe{}", "invalid-utf8"),
        (
            b"{\"version\":\"ten\",\"process\":{},\"event\":{}}",
            "bad-shape",
        ),
        (b"{\"version\":10}", "bad-shape"),
    ];
    for (line, reason) in cases {
        let err = parse_line(line, 1 << 20).unwrap_err();
        assert_eq!(err.reason(), *reason, "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(
        parse_line(&[b' '; 100], 10).unwrap_err().reason(),
        "too-long"
    );
}

#[test]
fn exit_status_is_decoded() {
    let killed = ward_event::model::Exit { stat: 9 };
    assert_eq!(killed.signal(), Some(9));
    assert_eq!(killed.exit_code(), None);
    let failed = ward_event::model::Exit { stat: 3 << 8 };
    assert_eq!(failed.exit_code(), Some(3));
    assert_eq!(failed.signal(), None);
}
