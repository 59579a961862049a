//! One hand-built line per event kind of the format reference (§4–5), each parsed to its
//! typed payload with its fields checked. Lines follow eslogger: escaped slashes, nullable
//! values as null, keys left out where message versions leave them out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Value, json};
use ward_event::model::{EventPayload as P, OdKind};
use ward_event::{Message, parse_line};

fn token(pid: i64, pv: i64) -> Value {
    json!({"asid": 100_001, "auid": 501, "egid": 20, "euid": 501, "pid": pid, "pidversion": pv, "rgid": 20, "ruid": 501})
}

fn file(path: &str) -> Value {
    json!({"path": path, "path_truncated": false, "stat": {"st_dev": 16_777_231, "st_ino": 77, "st_mode": 33188, "st_uid": 501, "st_gid": 20, "st_size": 10, "st_flags": 0, "st_mtimespec": "2026-01-01T00:00:00.000000000Z", "st_birthtimespec": "2026-01-01T00:00:00.000000000Z", "st_nlink": 1, "st_rdev": 0, "st_blocks": 8, "st_blksize": 4096, "st_gen": 0, "st_atimespec": "2026-01-01T00:00:00.000000000Z", "st_ctimespec": "2026-01-01T00:00:00.000000000Z"}})
}

fn process(pid: i64, pv: i64, path: &str) -> Value {
    json!({
        "audit_token": token(pid, pv), "parent_audit_token": token(1, 1), "responsible_audit_token": token(1, 1),
        "ppid": 1, "original_ppid": 1, "group_id": pid, "session_id": pid, "codesigning_flags": 637_618_689,
        "is_platform_binary": true, "is_es_client": false, "cdhash": "00112233445566778899AABBCCDDEEFF01234567",
        "signing_id": "com.apple.test", "team_id": null, "executable": file(path), "tty": null,
        "start_time": "2026-01-01T00:00:00.000000Z", "cs_validation_category": 1
    })
}

/// A full eslogger line for `name` with `payload`, slashes escaped as eslogger writes them.
fn line(name: &str, event_type: u32, payload: Value) -> Message {
    let msg = json!({
        "schema_version": 1, "version": 10, "time": "2026-10-05T00:00:01.000000000Z", "mach_time": 1,
        "event_type": event_type, "seq_num": 1, "global_seq_num": 42, "thread": {"thread_id": 7},
        "action_type": 1, "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
        "process": process(100, 1000, "/bin/zsh"), "event": {name: payload}
    });
    let text = msg.to_string().replace('/', "\\/");
    let parsed = parse_line(text.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed.event.kind(), name);
    assert_eq!(parsed.global_seq_num, Some(42));
    parsed
}

#[test]
fn process_lifecycle() {
    let m = line(
        "exec",
        9,
        json!({
            "target": process(100, 1001, "/usr/bin/curl"), "args": ["curl", "-O", "x"], "env": ["A=1"],
            "cwd": file("/Users/a"), "script": null, "dyld_exec_path": "/usr/bin/curl", "last_fd": 3,
            "fds": [{"fd": 0, "fdtype": 1}], "image_cputype": 16_777_228, "image_cpusubtype": 2,
            "entitlements": {"com.apple.security.cs.allow-jit": true}
        }),
    );
    let P::Exec(e) = &m.event else { panic!() };
    assert_eq!(
        (
            e.target.audit_token.pidversion,
            m.process.audit_token.pidversion
        ),
        (1001, 1000)
    );
    assert_eq!(e.args, ["curl", "-O", "x"]);
    assert_eq!(e.target.executable.path, "/usr/bin/curl");
    assert_eq!(e.image_cputype, Some(16_777_228));

    let m = line("fork", 11, json!({"child": process(101, 1010, "/bin/zsh")}));
    let P::Fork(f) = &m.event else { panic!() };
    assert_eq!(f.child.audit_token.pid, 101);

    let m = line("exit", 15, json!({"stat": 256 * 2}));
    let P::Exit(x) = &m.event else { panic!() };
    assert_eq!((x.exit_code(), x.signal()), (Some(2), None));

    let m = line(
        "signal",
        31,
        json!({"sig": 9, "target": process(102, 1, "/bin/sleep"), "instigator": null}),
    );
    let P::Signal(s) = &m.event else { panic!() };
    assert_eq!(
        (s.sig, s.target.audit_token.pid, s.instigator.is_none()),
        (9, 102, true)
    );

    let m = line("cs_invalidated", 94, json!({}));
    assert!(matches!(m.event, P::CsInvalidated));
}

#[test]
fn file_system() {
    let m = line(
        "create",
        13,
        json!({"destination_type": 1, "destination": {"new_path": {"dir": file("/Library/LaunchDaemons"), "filename": "x.plist", "mode": 420}}, "acl": null}),
    );
    let P::Create(c) = &m.event else { panic!() };
    assert_eq!(c.destination.path(), "/Library/LaunchDaemons/x.plist");
    let m = line(
        "create",
        13,
        json!({"destination_type": 0, "destination": {"existing_file": file("/etc/hosts")}, "acl": null}),
    );
    let P::Create(c) = &m.event else { panic!() };
    assert_eq!(c.destination.path(), "/etc/hosts");

    let m = line(
        "rename",
        25,
        json!({"source": file("/tmp/a"), "destination_type": 1, "destination": {"new_path": {"dir": file("/tmp"), "filename": "b"}}}),
    );
    let P::Rename(r) = &m.event else { panic!() };
    assert_eq!(
        (r.source.path.as_str(), r.destination.path()),
        ("/tmp/a", "/tmp/b".to_owned())
    );

    let m = line(
        "unlink",
        32,
        json!({"target": file("/tmp/a"), "parent_dir": file("/tmp")}),
    );
    let P::Unlink(u) = &m.event else { panic!() };
    assert_eq!(u.target.path, "/tmp/a");

    let m = line(
        "open",
        10,
        json!({"fflag": 3, "file": file("/etc/sudoers")}),
    );
    let P::Open(o) = &m.event else { panic!() };
    assert_eq!((o.fflag, o.file.path.as_str()), (3, "/etc/sudoers"));

    let m = line(
        "close",
        12,
        json!({"modified": true, "target": file("/etc/sudoers"), "was_mapped_writable": false}),
    );
    let P::Close(c) = &m.event else { panic!() };
    assert!(c.modified);

    let m = line("write", 33, json!({"target": file("/tmp/w")}));
    assert!(matches!(&m.event, P::Write(w) if w.target.path == "/tmp/w"));

    let m = line(
        "setextattr",
        27,
        json!({"target": file("/tmp/d.dmg"), "extattr": "com.apple.quarantine"}),
    );
    assert!(matches!(&m.event, P::Setextattr(x) if x.extattr == "com.apple.quarantine"));
    let m = line(
        "deleteextattr",
        70,
        json!({"target": file("/tmp/d.dmg"), "extattr": "com.apple.quarantine"}),
    );
    assert!(matches!(&m.event, P::Deleteextattr(x) if x.target.path == "/tmp/d.dmg"));

    let m = line(
        "setmode",
        29,
        json!({"mode": 493, "target": file("/tmp/run.sh")}),
    );
    assert!(matches!(&m.event, P::Setmode(s) if s.mode == 0o755));

    let m = line(
        "mmap",
        20,
        json!({"protection": 5, "max_protection": 7, "flags": 2, "file_pos": 4096, "source": file("/usr/lib/libz.dylib")}),
    );
    assert!(matches!(&m.event, P::Mmap(x) if x.file_pos == 4096 && x.protection == 5));

    let m = line(
        "mount",
        22,
        json!({"statfs": {"f_bsize": 4096, "f_iosize": 1_048_576, "f_blocks": 1, "f_bfree": 1, "f_bavail": 1, "f_files": 1, "f_ffree": 1, "f_fsid": [1, 2], "f_owner": 501, "f_type": 24, "f_flags": 4096, "f_flags_ext": 0, "f_fssubtype": 0, "f_fstypename": "smbfs", "f_mntonname": "/Volumes/share", "f_mntfromname": "//alice@nas/share"}, "disposition": 2}),
    );
    let P::Mount(x) = &m.event else { panic!() };
    assert_eq!(
        (
            x.statfs.f_fstypename.as_str(),
            x.statfs.f_mntonname.as_str(),
            x.disposition
        ),
        ("smbfs", "/Volumes/share", Some(2))
    );
}

#[test]
fn kernel_and_ipc() {
    let m = line("kextload", 17, json!({"identifier": "com.evil.kext"}));
    assert!(matches!(&m.event, P::Kextload(k) if k.identifier == "com.evil.kext"));

    let m = line(
        "uipc_connect",
        78,
        json!({"file": file("/var/run/mDNSResponder"), "domain": 1, "type": 1, "protocol": 0}),
    );
    assert!(matches!(&m.event, P::UipcConnect(u) if u.domain == 1 && u.socket_type == 1));

    let m = line(
        "remote_thread_create",
        97,
        json!({"target": process(300, 3, "/Applications/X.app/Contents/MacOS/X"), "thread_state": {"flavor": 6, "state": null}}),
    );
    let P::RemoteThreadCreate(r) = &m.event else {
        panic!()
    };
    assert_eq!(
        (
            r.target.audit_token.pid,
            r.thread_state.as_ref().and_then(|t| t.flavor)
        ),
        (300, Some(6))
    );
}

#[test]
fn authentication_and_login() {
    let m = line(
        "authentication",
        111,
        json!({"success": false, "type": 0, "data": {"od": {"instigator": process(5, 5, "/usr/bin/login"), "record_type": "user", "record_name": "root", "node_name": "/Local/Default", "db_path": null}}}),
    );
    let P::Authentication(a) = &m.event else {
        panic!()
    };
    assert!(!a.success);
    assert_eq!(a.data["od"]["record_name"], "root");

    let m = line(
        "login_login",
        122,
        json!({"success": true, "failure_message": null, "username": "alice", "uid": 501}),
    );
    assert!(matches!(&m.event, P::LoginLogin(l) if l.username == "alice" && l.uid == Some(501)));

    let m = line(
        "openssh_login",
        120,
        json!({"success": false, "result_type": 4, "source_address_type": 1, "source_address": "203.0.113.9", "username": "root", "uid": null}),
    );
    assert!(
        matches!(&m.event, P::OpensshLogin(o) if o.result_type == 4 && o.uid.is_none() && o.source_address == "203.0.113.9")
    );

    let m = line(
        "screensharing_attach",
        118,
        json!({"success": true, "source_address_type": 1, "source_address": "198.51.100.4", "viewer_appleid": null, "authentication_type": "password", "authentication_username": "alice", "session_username": "alice", "existing_session": true, "graphical_session_id": 257}),
    );
    assert!(
        matches!(&m.event, P::ScreensharingAttach(s) if s.graphical_session_id == 257 && s.existing_session)
    );

    let m = line(
        "sudo",
        131,
        json!({"success": false, "reject_info": {"plugin_name": "sudoers", "plugin_type": 1, "failure_message": "not in sudoers"}, "from_uid": 502, "from_username": "bob", "to_uid": 0, "to_username": "root", "command": "/bin/cat /etc/master.passwd"}),
    );
    let P::Sudo(s) = &m.event else { panic!() };
    assert_eq!(
        s.reject_info.as_ref().map(|r| r.failure_message.as_str()),
        Some("not in sudoers")
    );
    assert_eq!(s.command.as_deref(), Some("/bin/cat /etc/master.passwd"));

    let m = line(
        "su",
        128,
        json!({"success": true, "failure_message": null, "from_uid": 501, "from_username": "alice", "to_uid": 0, "to_username": "root", "shell": "/bin/zsh", "argc": 1, "argv": ["su"], "env_count": 0, "env": []}),
    );
    assert!(matches!(&m.event, P::Su(s) if s.to_uid == Some(0) && s.argv == ["su"]));
}

#[test]
fn security_and_configuration() {
    let m = line(
        "btm_launch_item_add",
        124,
        json!({"instigator": null, "instigator_token": token(7, 70), "app": null, "app_token": null, "executable_path": "/Users/a/.x/agent", "item": {"item_type": 3, "legacy": true, "managed": false, "uid": 501, "item_url": "file:///Users/a/Library/LaunchAgents/x.plist", "app_url": null}}),
    );
    let P::BtmLaunchItemAdd(b) = &m.event else {
        panic!()
    };
    assert_eq!(
        (b.item.item_type, b.instigator_token.map(|t| t.pid)),
        (3, Some(7))
    );

    let m = line(
        "btm_launch_item_remove",
        125,
        json!({"instigator": null, "app": null, "item": {"item_type": 4, "legacy": false, "managed": true, "uid": 0, "item_url": "file:///Library/LaunchDaemons/y.plist", "app_url": null}}),
    );
    assert!(matches!(&m.event, P::BtmLaunchItemRemove(b) if b.item.managed));

    let m = line(
        "xp_malware_detected",
        112,
        json!({"signature_version": "5287", "malware_identifier": "Adload", "incident_identifier": "ID-1", "detected_path": "/tmp/a", "detected_executable": "/tmp/a/b"}),
    );
    assert!(matches!(&m.event, P::XpMalwareDetected(x) if x.malware_identifier == "Adload"));

    let m = line(
        "profile_add",
        126,
        json!({"instigator": process(9, 9, "/usr/libexec/mdmclient"), "is_update": false, "profile": {"identifier": "com.corp.wifi", "uuid": "U-1", "install_source": 0, "organization": "Corp", "display_name": "Wi-Fi", "scope": "System"}}),
    );
    assert!(matches!(&m.event, P::ProfileAdd(p) if p.profile.identifier == "com.corp.wifi"));

    let m = line(
        "tcc_modify",
        147,
        json!({"service": "kTCCServiceSystemPolicyAllFiles", "identity": "com.evil.app", "identity_type": 0, "update_type": 1, "right": 2, "reason": 4, "instigator_token": token(8, 8), "instigator": null, "responsible_token": null, "responsible": null}),
    );
    assert!(
        matches!(&m.event, P::TccModify(t) if t.service == "kTCCServiceSystemPolicyAllFiles" && t.right == 2)
    );
}

#[test]
fn open_directory() {
    let cases: &[(&str, u32, OdKind, Value)] = &[
        (
            "od_create_user",
            141,
            OdKind::CreateUser,
            json!({"user_name": "hidden"}),
        ),
        (
            "od_delete_user",
            143,
            OdKind::DeleteUser,
            json!({"user_name": "hidden"}),
        ),
        (
            "od_create_group",
            142,
            OdKind::CreateGroup,
            json!({"group_name": "g"}),
        ),
        (
            "od_delete_group",
            144,
            OdKind::DeleteGroup,
            json!({"group_name": "g"}),
        ),
        (
            "od_group_add",
            132,
            OdKind::GroupAdd,
            json!({"group_name": "admin", "member": {"member_type": 0, "member_value": "hidden"}}),
        ),
        (
            "od_group_remove",
            133,
            OdKind::GroupRemove,
            json!({"group_name": "admin", "member": {"member_type": 0, "member_value": "hidden"}}),
        ),
        (
            "od_group_set",
            134,
            OdKind::GroupSet,
            json!({"group_name": "admin", "members": []}),
        ),
        (
            "od_modify_password",
            135,
            OdKind::ModifyPassword,
            json!({"account_name": "hidden", "account_type": 0}),
        ),
        (
            "od_disable_user",
            136,
            OdKind::DisableUser,
            json!({"user_name": "hidden"}),
        ),
        (
            "od_enable_user",
            137,
            OdKind::EnableUser,
            json!({"user_name": "hidden"}),
        ),
        (
            "od_attribute_value_add",
            138,
            OdKind::AttributeValueAdd,
            json!({"record_name": "hidden", "record_type": 0, "attribute_name": "IsHidden", "attribute_value": "1"}),
        ),
        (
            "od_attribute_value_remove",
            139,
            OdKind::AttributeValueRemove,
            json!({"record_name": "hidden", "record_type": 0, "attribute_name": "IsHidden", "attribute_value": "1"}),
        ),
        (
            "od_attribute_set",
            140,
            OdKind::AttributeSet,
            json!({"record_name": "hidden", "record_type": 0, "attribute_name": "IsHidden", "attribute_values": ["1"]}),
        ),
    ];
    for (name, event_type, kind, extra) in cases {
        let mut payload = json!({"instigator": null, "instigator_token": token(4, 4), "error_code": 0, "node_name": "/Local/Default", "db_path": "/var/db/dslocal/nodes/Default"});
        for (k, v) in extra.as_object().unwrap() {
            payload[k] = v.clone();
        }
        let m = line(name, *event_type, payload);
        let P::Od(k, od) = &m.event else {
            panic!("{name}")
        };
        assert_eq!(k, kind);
        assert!(od.record().is_some(), "{name} names its record");
        assert_eq!(od.instigator_token.map(|t| t.pid), Some(4));
    }
}

#[test]
fn unknown_kinds_and_fields_are_kept_not_rejected() {
    let m = line("future_event", 200, json!({"brand_new": [1, 2, 3]}));
    let P::Other { name, raw } = &m.event else {
        panic!()
    };
    assert_eq!(name, "future_event");
    assert_eq!(raw["brand_new"][2], 3);
    // An unknown field inside a known kind does not reject the line.
    let m = line(
        "exit",
        15,
        json!({"stat": 0, "added_in_macos_27": {"x": true}}),
    );
    assert!(matches!(m.event, P::Exit(_)));
}
