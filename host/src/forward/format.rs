//! How a sink renders a committed record: ward's own finding line (with its key), an OCSF
//! Detection Finding (class 2004, OCSF 1.8.0) or an Elastic Common Schema document. Each
//! is built from the stored finding JSON, off the event path.

use serde_json::{Map, Value, json};

use crate::config::sinks::Format;
use crate::forward::outbox::StoredRecord;

/// The OCSF schema version the rendering follows.
pub const OCSF_VERSION: &str = "1.8.0";
/// Detection Finding.
pub const OCSF_CLASS_UID: u64 = 2004;
/// The Findings category.
pub const OCSF_CATEGORY_UID: u64 = 2;
/// Activity: Create (a new finding).
pub const OCSF_ACTIVITY_CREATE: u64 = 1;

/// The value at a JSON pointer in `v`, null when absent (never panics).
pub(crate) fn field<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// Sets `key` of an object (nothing for any other value).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), value);
    }
}

/// This Mac's host name (read once).
pub fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// `record` in `format`, one JSON object on one line.
pub fn render(format: Format, record: &StoredRecord, device: &str) -> String {
    match format {
        Format::Ward => record.json_line(),
        Format::Ocsf => ocsf(record, device).to_string(),
        Format::Ecs => ecs(record, device).to_string(),
    }
}

fn body(record: &StoredRecord) -> Value {
    serde_json::from_str(&record.body).unwrap_or_else(|_| json!({}))
}

/// OCSF severity_id: 1 Informational … 5 Critical.
fn ocsf_severity(severity: &str) -> (u64, &'static str) {
    match severity {
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        "critical" => (5, "Critical"),
        _ => (1, "Informational"),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn command_line(args: &Value) -> Option<String> {
    let args = args.as_array()?;
    Some(
        args.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// An OCSF process object from a finding's process (or a parent reference).
fn ocsf_process(p: &Value) -> Value {
    let mut out = Map::new();
    if let Some(pid) = field(p, "/pid").as_i64() {
        out.insert("pid".into(), json!(pid));
        // The process's identity on the Mac: (pid, pidversion).
        let uid = match field(p, "/pidversion").as_i64() {
            Some(v) => format!("{pid}:{v}"),
            None => pid.to_string(),
        };
        out.insert("uid".into(), json!(uid));
    }
    if let Some(path) = field(p, "/path").as_str() {
        out.insert("name".into(), json!(basename(path)));
        let mut file =
            json!({"path": path, "name": basename(path), "type_id": 1, "type": "Regular File"});
        let mut signature = Map::new();
        if let Some(id) = field(p, "/signing_id").as_str() {
            signature.insert("developer_uid".into(), json!(field(p, "/team_id").as_str()));
            signature.insert("certificate".into(), json!({"subject": id}));
        }
        if !signature.is_empty() {
            signature.insert("algorithm_id".into(), json!(0));
            if let Some(f) = file.as_object_mut() {
                f.insert("signature".into(), Value::Object(signature));
            }
        }
        out.insert("file".into(), file);
    }
    if let Some(cmd) = command_line(field(p, "/args")) {
        out.insert("cmd_line".into(), json!(cmd));
    }
    if field(p, "/parent").is_object() {
        out.insert("parent_process".into(), ocsf_process(field(p, "/parent")));
    }
    Value::Object(out)
}

/// The ATT&CK entries: each technique with the tactics it serves.
fn ocsf_attacks(attack: &Value) -> Vec<Value> {
    attack
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|technique| {
            let base = technique.split('.').next().unwrap_or(technique);
            let mut entry = json!({
                "version": "v15",
                "technique": {"uid": base, "name": base},
            });
            if technique.contains('.') {
                set(
                    &mut entry,
                    "sub_technique",
                    json!({"uid": technique, "name": technique}),
                );
            }
            let tactics = crate::respond::attack::tactics_of(base);
            if let Some(first) = tactics.first() {
                let name = crate::respond::attack::TACTICS
                    .iter()
                    .find(|(id, _)| id == first)
                    .map_or(*first, |(_, name)| name);
                set(&mut entry, "tactic", json!({"uid": first, "name": name}));
                set(
                    &mut entry,
                    "tactics",
                    Value::Array(
                        tactics
                            .iter()
                            .map(|t| {
                                let name = crate::respond::attack::TACTICS
                                    .iter()
                                    .find(|(id, _)| id == t)
                                    .map_or(*t, |(_, name)| name);
                                json!({"uid": t, "name": name})
                            })
                            .collect(),
                    ),
                );
            }
            entry
        })
        .collect()
}

/// `record` as an OCSF Detection Finding.
pub fn ocsf(record: &StoredRecord, device: &str) -> Value {
    let b = body(record);
    let (severity_id, severity) = ocsf_severity(record.severity);
    let time = crate::clock::parse_rfc3339_ms(&record.time).unwrap_or_else(crate::clock::now_ms);
    let process = ocsf_process(field(&b, "/process"));
    let message = field(&b, "/message").as_str().unwrap_or("").to_owned();
    let hostname = hostname();
    json!({
        "activity_id": OCSF_ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": OCSF_CLASS_UID * 100 + OCSF_ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "is_alert": !field(&b, "/shadow").as_bool().unwrap_or(false),
        "time": time,
        "message": message,
        "finding_info": {
            "uid": record.id,
            "title": format!("{}: {message}", record.rule),
            "desc": message,
            "analytic": {"type_id": 1, "type": "Rule", "uid": record.rule, "name": record.rule},
            "attacks": ocsf_attacks(field(&b, "/attack")),
            "data_sources": ["Endpoint Security (eslogger)"],
            "product": {"name": "ward", "vendor_name": "ward", "feature": {"name": record.plugin}},
        },
        "metadata": {
            "version": OCSF_VERSION,
            "uid": record.id,
            "log_name": record.kind,
            "original_time": record.time,
            "product": {
                "name": "ward",
                "vendor_name": "ward",
                "uid": "ward",
                "version": env!("CARGO_PKG_VERSION"),
                "feature": {"name": record.plugin},
            },
        },
        "device": {
            "type_id": 0,
            "type": "Unknown",
            "uid": device,
            "hostname": if hostname.is_empty() { device } else { hostname },
            "os": {"name": "macOS", "type_id": 300, "type": "macOS"},
        },
        "actor": {"process": process},
        "evidences": [{
            "process": process,
            "data": field(&b, "/evidence"),
        }],
        "unmapped": {
            "ward": {
                "rule": record.rule,
                "plugin": record.plugin,
                "global_seq_num": record.global_seq_num,
                "event_type": field(&b, "/event_type"),
                "outbox_seq": record.seq,
            },
        },
    })
}

/// `record` as an Elastic Common Schema document.
pub fn ecs(record: &StoredRecord, device: &str) -> Value {
    let b = body(record);
    let p = field(&b, "/process");
    let severity = crate::forward::outbox::severity_rank(record.severity);
    let techniques: Vec<Value> = field(&b, "/attack")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|t| json!({"id": t, "reference": format!("https://attack.mitre.org/techniques/{}/", t.replace('.', "/"))}))
        .collect();
    let tactics: Vec<Value> = field(&b, "/attack")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(|t| crate::respond::attack::tactics_of(t.split('.').next().unwrap_or(t)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    json!({
        "@timestamp": record.time,
        "message": field(&b, "/message"),
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "id": record.id,
            "severity": severity,
            "module": "ward",
            "dataset": "ward.findings",
            "provider": record.plugin,
            "sequence": record.global_seq_num,
        },
        "rule": {"id": record.rule, "name": record.rule, "ruleset": record.plugin},
        "threat": {"framework": "MITRE ATT&CK", "technique": techniques, "tactic": tactics},
        "host": {"id": device, "os": {"type": "macos"}},
        "observer": {"vendor": "ward", "product": "ward", "type": "edr"},
        "process": {
            "pid": field(p, "/pid"),
            "executable": field(p, "/path"),
            "name": field(p, "/path").as_str().map(basename),
            "args": field(p, "/args"),
            "command_line": command_line(field(p, "/args")),
            "code_signature": {"signing_id": field(p, "/signing_id"), "team_id": field(p, "/team_id")},
            "parent": {"pid": field(p, "/parent/pid"), "executable": field(p, "/parent/path")},
        },
        "ward": {
            "severity": record.severity,
            "event_type": field(&b, "/event_type"),
            "evidence": field(&b, "/evidence"),
            "shadow": field(&b, "/shadow").as_bool().unwrap_or(false),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OCSF 1.8.0, Detection Finding (class 2004) after base_event → finding →
    /// detection_finding: the attributes whose requirement is "required", and the
    /// at_least_one constraints of the objects ward fills (ocsf/ocsf-schema, tag 1.8.0).
    const REQUIRED: &[&str] = &[
        "activity_id",
        "category_uid",
        "class_uid",
        "finding_info",
        "metadata",
        "severity_id",
        "time",
        "type_uid",
    ];

    fn record(body: Value) -> StoredRecord {
        StoredRecord {
            seq: 3,
            id: "k".into(),
            kind: "finding".into(),
            severity: "high",
            rule: "downloaded-file-executed".into(),
            plugin: "command-abuse".into(),
            time: "2026-10-05T09:00:19.123456789Z".into(),
            global_seq_num: Some(1019),
            body: body.to_string(),
        }
    }

    /// Checks `v` against class 2004's required attributes, enums and the constraints of
    /// the objects in it.
    pub(crate) fn check_ocsf(v: &Value) {
        for key in REQUIRED {
            assert!(!v[key].is_null(), "required {key} missing: {v}");
        }
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["category_uid"], 2);
        let activity = v["activity_id"].as_u64().unwrap();
        assert!([0, 1, 2, 3, 99].contains(&activity));
        assert_eq!(v["type_uid"].as_u64().unwrap(), 2004 * 100 + activity);
        assert!([0, 1, 2, 3, 4, 5, 6, 99].contains(&v["severity_id"].as_u64().unwrap()));
        assert!([0, 1, 2, 3, 4, 5, 6, 99].contains(&v["status_id"].as_u64().unwrap()));
        assert!(v["time"].is_i64(), "time is a timestamp in ms");
        // finding_info requires uid; metadata requires product and version.
        assert!(v["finding_info"]["uid"].is_string());
        assert!(v["metadata"]["product"].is_object());
        assert!(v["metadata"]["version"].is_string());
        // product, technique, tactic: at least one of name, uid.
        let named = |o: &Value| o["name"].is_string() || o["uid"].is_string();
        assert!(named(&v["metadata"]["product"]));
        // device requires type_id and at least one of its identifying attributes.
        assert!(v["device"]["type_id"].is_u64());
        assert!(v["device"]["uid"].is_string() || v["device"]["hostname"].is_string());
        // actor and its process: at least one of process/user; of pid/uid/cpid.
        let process_ok = |p: &Value| p["pid"].is_i64() || p["uid"].is_string();
        assert!(process_ok(&v["actor"]["process"]), "{v}");
        if v["actor"]["process"]["parent_process"].is_object() {
            assert!(process_ok(&v["actor"]["process"]["parent_process"]));
        }
        // evidences: each with at least one of its listed objects (process, data, …).
        for e in v["evidences"].as_array().unwrap() {
            assert!(e["process"].is_object() || !e["data"].is_null());
        }
        // attacks: each with at least one of tactic, technique, sub_technique.
        for a in v["finding_info"]["attacks"].as_array().unwrap() {
            assert!(named(&a["technique"]) || named(&a["tactic"]) || named(&a["sub_technique"]));
        }
    }

    #[test]
    fn ocsf_carries_every_required_attribute_of_class_2004() {
        let full = json!({
            "rule": "downloaded-file-executed", "plugin": "command-abuse", "severity": "high",
            "attack": ["T1105", "T1059.004"], "global_seq_num": 1019, "event_type": "exec",
            "time": "2026-10-05T09:00:19.123456789Z",
            "process": {"pid": 705, "pidversion": 7051, "path": "/private/tmp/update",
                "signing_id": "update-5555", "team_id": null, "signer": "adhoc",
                "args": ["/tmp/update", "--install"],
                "parent": {"pid": 600, "pidversion": 6000, "path": "/bin/zsh", "signing_id": "com.apple.zsh", "team_id": null},
                "responsible": null},
            "message": "ran a file just downloaded", "evidence": {"url": "https://x"}
        });
        let v = ocsf(&record(full), "C02XYZ");
        check_ocsf(&v);
        assert_eq!(v["type_uid"], 200401);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["time"], 1_791_190_819_123i64);
        assert_eq!(v["actor"]["process"]["pid"], 705);
        assert_eq!(
            v["actor"]["process"]["parent_process"]["file"]["path"],
            "/bin/zsh"
        );
        assert_eq!(v["actor"]["process"]["cmd_line"], "/tmp/update --install");
        let attacks = v["finding_info"]["attacks"].as_array().unwrap();
        assert_eq!(attacks[0]["technique"]["uid"], "T1105");
        assert_eq!(attacks[0]["tactic"]["uid"], "TA0011");
        assert_eq!(attacks[1]["sub_technique"]["uid"], "T1059.004");
        assert_eq!(v["evidences"][0]["data"]["url"], "https://x");
        assert_eq!(v["device"]["uid"], "C02XYZ");
        // A finding with next to nothing in it still renders a valid class 2004.
        check_ocsf(&ocsf(&record(json!({"process": {"pid": 1}})), "d"));
    }

    #[test]
    fn ecs_and_ward_renderings_keep_the_key() {
        let r = record(
            json!({"message": "m", "attack": ["T1105"], "process": {"pid": 7, "path": "/bin/sh", "args": ["sh", "-c", "x"]}}),
        );
        let e = ecs(&r, "dev");
        assert_eq!(e["event"]["id"], "k");
        assert_eq!(e["event"]["kind"], "alert");
        assert_eq!(e["process"]["command_line"], "sh -c x");
        assert_eq!(e["threat"]["technique"][0]["id"], "T1105");
        let w: Value = serde_json::from_str(&render(Format::Ward, &r, "dev")).unwrap();
        assert_eq!(w["id"], "k");
        assert_eq!(w["message"], "m");
    }
}
