//! Converting the parsed eslogger model into the WIT `event` record, once per event.

use crate::sandbox::bindings::wit;
use ward_event::model::{self as m, EventPayload, OdKind};
use ward_event::{Message, Signer};

/// The WIT audit token.
pub fn token(t: &m::AuditToken) -> wit::AuditToken {
    wit::AuditToken {
        pid: t.pid,
        pidversion: t.pidversion,
        auid: t.auid,
        euid: t.euid,
        egid: t.egid,
        ruid: t.ruid,
        rgid: t.rgid,
        asid: t.asid,
    }
}

/// The model's audit token from a WIT one.
pub fn model_token(t: &wit::AuditToken) -> m::AuditToken {
    m::AuditToken {
        pid: t.pid,
        pidversion: t.pidversion,
        auid: t.auid,
        euid: t.euid,
        egid: t.egid,
        ruid: t.ruid,
        rgid: t.rgid,
        asid: t.asid,
    }
}

fn file(f: &m::File) -> wit::File {
    wit::File {
        path: f.path.clone(),
        path_truncated: f.path_truncated,
        stat: f
            .stat
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| wit::FileStat {
                dev: s.st_dev.unwrap_or(0),
                ino: s.st_ino.unwrap_or(0),
                mode: s.st_mode.unwrap_or(0),
                uid: s.st_uid.unwrap_or(0),
                gid: s.st_gid.unwrap_or(0),
                size: s.st_size.unwrap_or(0),
                flags: s.st_flags.unwrap_or(0),
                mtime: s.st_mtimespec.clone(),
                birthtime: s.st_birthtimespec.clone(),
            }),
    }
}

/// The WIT signer enum.
pub fn signer(s: Signer) -> wit::SignerType {
    match s {
        Signer::Apple => wit::SignerType::Apple,
        Signer::AppStore => wit::SignerType::AppStore,
        Signer::DeveloperId => wit::SignerType::DeveloperId,
        Signer::Development => wit::SignerType::Development,
        Signer::Adhoc => wit::SignerType::Adhoc,
        Signer::Unsigned => wit::SignerType::Unsigned,
    }
}

/// The WIT process record.
pub fn process(p: &m::Process) -> wit::Process {
    wit::Process {
        token: token(&p.audit_token),
        ppid: p.ppid,
        original_ppid: p.original_ppid,
        group_id: p.group_id,
        session_id: p.session_id,
        codesigning_flags: p.codesigning_flags,
        is_platform_binary: p.is_platform_binary,
        is_es_client: p.is_es_client,
        cdhash: p.cdhash.clone(),
        signing_id: p.signing_id.clone(),
        team_id: p.team_id.clone(),
        executable: file(&p.executable),
        tty: p.tty.as_ref().map(file),
        start_time: p.start_time.clone(),
        parent_token: p.parent_audit_token.as_ref().map(token),
        responsible_token: p.responsible_audit_token.as_ref().map(token),
        cs_validation_category: p.cs_validation_category,
        signer: signer(p.signer()),
    }
}

fn destination(d: &m::Destination) -> wit::Destination {
    match (&d.new_path, &d.existing_file) {
        (Some(new), _) => wit::Destination::NewPath(wit::NewPath {
            dir: file(&new.dir),
            filename: new.filename.clone(),
            mode: new.mode,
        }),
        (None, Some(existing)) => wit::Destination::ExistingFile(file(existing)),
        (None, None) => wit::Destination::ExistingFile(wit::File {
            path: String::new(),
            path_truncated: false,
            stat: None,
        }),
    }
}

fn btm(added: bool, b: &m::BtmLaunchItem) -> wit::BtmLaunchItemEvent {
    wit::BtmLaunchItemEvent {
        added,
        instigator: b.instigator.as_ref().map(process),
        instigator_token: b.instigator_token.as_ref().map(token),
        app: b.app.as_ref().map(process),
        executable_path: b.executable_path.clone(),
        item_type: match b.item.item_type {
            0 => wit::BtmItemType::UserItem,
            1 => wit::BtmItemType::App,
            2 => wit::BtmItemType::LoginItem,
            3 => wit::BtmItemType::Agent,
            4 => wit::BtmItemType::Daemon,
            _ => wit::BtmItemType::Unknown,
        },
        legacy: b.item.legacy,
        managed: b.item.managed,
        uid: b.item.uid,
        item_url: b.item.item_url.clone(),
        app_url: b.item.app_url.clone(),
    }
}

fn od_operation(kind: OdKind) -> wit::OdOperation {
    match kind {
        OdKind::CreateUser => wit::OdOperation::CreateUser,
        OdKind::DeleteUser => wit::OdOperation::DeleteUser,
        OdKind::CreateGroup => wit::OdOperation::CreateGroup,
        OdKind::DeleteGroup => wit::OdOperation::DeleteGroup,
        OdKind::GroupAdd => wit::OdOperation::GroupAdd,
        OdKind::GroupRemove => wit::OdOperation::GroupRemove,
        OdKind::GroupSet => wit::OdOperation::GroupSet,
        OdKind::ModifyPassword => wit::OdOperation::ModifyPassword,
        OdKind::DisableUser => wit::OdOperation::DisableUser,
        OdKind::EnableUser => wit::OdOperation::EnableUser,
        OdKind::AttributeValueAdd => wit::OdOperation::AttributeValueAdd,
        OdKind::AttributeValueRemove => wit::OdOperation::AttributeValueRemove,
        OdKind::AttributeSet => wit::OdOperation::AttributeSet,
    }
}

fn authentication(a: &m::Authentication) -> wit::AuthenticationEvent {
    let (kind, detail) = match a.data.as_object().and_then(|o| o.iter().next()) {
        Some((k, v)) => (k.clone(), Some(v)),
        None => (a.auth_type.to_string(), None),
    };
    let field = |name: &str| {
        detail
            .and_then(|d| d.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let instigator = detail
        .and_then(|d| d.get("instigator"))
        .and_then(|v| serde_json::from_value::<m::Process>(v.clone()).ok());
    wit::AuthenticationEvent {
        success: a.success,
        auth_type: kind,
        instigator: instigator.as_ref().map(process),
        account: field("record_name")
            .or_else(|| field("username"))
            .or_else(|| field("kerberos_principal")),
    }
}

/// The WIT payload of one event.
pub fn data(payload: &EventPayload) -> wit::EventData {
    use wit::EventData as D;
    match payload {
        EventPayload::Exec(e) => D::Exec(wit::ExecEvent {
            target: process(&e.target),
            args: e.args.clone(),
            cwd: e.cwd.as_ref().map(file),
            script: e.script.as_ref().map(file),
            dyld_exec_path: e.dyld_exec_path.clone(),
            image_cputype: e.image_cputype,
            image_cpusubtype: e.image_cpusubtype,
        }),
        EventPayload::Fork(f) => D::Fork(process(&f.child)),
        EventPayload::Exit(e) => D::Exit(wit::ExitEvent {
            stat: e.stat,
            exit_code: e.exit_code(),
            signal: e.signal(),
        }),
        EventPayload::Signal(s) => D::Signal(wit::SignalEvent {
            sig: s.sig,
            target: process(&s.target),
            instigator: s.instigator.as_ref().map(process),
        }),
        EventPayload::CsInvalidated => D::CsInvalidated,
        EventPayload::Open(o) => D::Open(wit::OpenEvent {
            fflag: o.fflag,
            file: file(&o.file),
        }),
        EventPayload::Close(c) => D::Close(wit::CloseEvent {
            modified: c.modified,
            target: file(&c.target),
            was_mapped_writable: c.was_mapped_writable,
        }),
        EventPayload::Create(c) => D::Create(wit::CreateEvent {
            destination: destination(&c.destination),
            path: c.destination.path(),
            acl: c.acl.clone(),
        }),
        EventPayload::Rename(r) => D::Rename(wit::RenameEvent {
            source: file(&r.source),
            destination: destination(&r.destination),
            destination_path: r.destination.path(),
        }),
        EventPayload::Unlink(u) => D::Unlink(wit::UnlinkEvent {
            target: file(&u.target),
            parent_dir: u.parent_dir.as_ref().map(file),
        }),
        EventPayload::Write(w) => D::Write(file(&w.target)),
        EventPayload::Setextattr(x) => D::Setextattr(wit::ExtattrEvent {
            target: file(&x.target),
            extattr: x.extattr.clone(),
        }),
        EventPayload::Deleteextattr(x) => D::Deleteextattr(wit::ExtattrEvent {
            target: file(&x.target),
            extattr: x.extattr.clone(),
        }),
        EventPayload::Setmode(s) => D::Setmode(wit::SetmodeEvent {
            mode: s.mode,
            target: file(&s.target),
        }),
        EventPayload::Mmap(mm) => D::Mmap(wit::MmapEvent {
            protection: mm.protection,
            max_protection: mm.max_protection,
            flags: mm.flags,
            file_pos: mm.file_pos,
            source: file(&mm.source),
        }),
        EventPayload::Mount(mt) => D::Mount(wit::MountEvent {
            fs_type: mt.statfs.f_fstypename.clone(),
            mount_on: mt.statfs.f_mntonname.clone(),
            mount_from: mt.statfs.f_mntfromname.clone(),
            flags: mt.statfs.f_flags,
            disposition: mt.disposition,
        }),
        EventPayload::Kextload(k) => D::Kextload(k.identifier.clone()),
        EventPayload::UipcConnect(u) => D::UipcConnect(wit::UipcConnectEvent {
            file: file(&u.file),
            domain: u.domain,
            socket_type: u.socket_type,
            protocol: u.protocol,
        }),
        EventPayload::RemoteThreadCreate(r) => {
            D::RemoteThreadCreate(wit::RemoteThreadCreateEvent {
                target: process(&r.target),
                thread_state_flavor: r.thread_state.as_ref().and_then(|t| t.flavor),
            })
        }
        EventPayload::BtmLaunchItemAdd(b) => D::BtmLaunchItem(btm(true, b)),
        EventPayload::BtmLaunchItemRemove(b) => D::BtmLaunchItem(btm(false, b)),
        EventPayload::XpMalwareDetected(x) => D::XpMalwareDetected(wit::XpMalwareDetectedEvent {
            signature_version: x.signature_version.clone(),
            malware_identifier: x.malware_identifier.clone(),
            incident_identifier: x.incident_identifier.clone(),
            detected_path: x.detected_path.clone(),
            detected_executable: x.detected_executable.clone(),
        }),
        EventPayload::Authentication(a) => D::Authentication(authentication(a)),
        EventPayload::LoginLogin(l) => D::LoginLogin(wit::LoginEvent {
            success: l.success,
            failure_message: l.failure_message.clone(),
            username: l.username.clone(),
            uid: l.uid,
        }),
        EventPayload::OpensshLogin(o) => D::OpensshLogin(wit::OpensshLoginEvent {
            success: o.success,
            result_type: o.result_type,
            source_address_type: o.source_address_type,
            source_address: o.source_address.clone(),
            username: o.username.clone(),
            uid: o.uid,
        }),
        EventPayload::ScreensharingAttach(s) => {
            D::ScreensharingAttach(wit::ScreensharingAttachEvent {
                success: s.success,
                source_address: s.source_address.clone(),
                viewer_appleid: s.viewer_appleid.clone(),
                authentication_type: s.authentication_type.clone(),
                authentication_username: s.authentication_username.clone(),
                session_username: s.session_username.clone(),
                existing_session: s.existing_session,
                graphical_session_id: s.graphical_session_id,
            })
        }
        EventPayload::Sudo(s) => D::Sudo(wit::SudoEvent {
            success: s.success,
            reject_reason: s
                .reject_info
                .as_ref()
                .map(|r| format!("{}: {}", r.plugin_name, r.failure_message)),
            from_uid: s.from_uid,
            from_username: s.from_username.clone(),
            to_uid: s.to_uid,
            to_username: s.to_username.clone(),
            command: s.command.clone(),
        }),
        EventPayload::Su(s) => D::Su(wit::SuEvent {
            success: s.success,
            failure_message: s.failure_message.clone(),
            from_uid: s.from_uid,
            from_username: s.from_username.clone(),
            to_uid: s.to_uid,
            to_username: s.to_username.clone(),
            shell: s.shell.clone(),
            argv: s.argv.clone(),
        }),
        EventPayload::ProfileAdd(p) => D::ProfileAdd(wit::ProfileAddEvent {
            instigator: p.instigator.as_ref().map(process),
            is_update: p.is_update,
            identifier: p.profile.identifier.clone(),
            uuid: p.profile.uuid.clone(),
            install_source: p.profile.install_source,
            organization: p.profile.organization.clone(),
            display_name: p.profile.display_name.clone(),
            scope: p.profile.scope.clone(),
        }),
        EventPayload::TccModify(t) => D::TccModify(wit::TccModifyEvent {
            service: t.service.clone(),
            identity: t.identity.clone(),
            identity_type: t.identity_type,
            update_type: t.update_type,
            right: t.right,
            reason: t.reason,
            instigator: t.instigator.as_ref().map(process),
            instigator_token: t.instigator_token.as_ref().map(token),
            responsible: t.responsible.as_ref().map(process),
        }),
        EventPayload::Od(kind, od) => D::Od(wit::OdEvent {
            operation: od_operation(*kind),
            instigator: od.instigator.as_ref().map(process),
            instigator_token: od.instigator_token.as_ref().map(token),
            error_code: od.error_code,
            node_name: od.node_name.clone(),
            db_path: od.db_path.clone(),
            record_name: od.record().map(str::to_owned),
            member: od.member.as_ref().map(|mb| mb.member_value.clone()),
            attribute_name: od.attribute_name.clone(),
            attribute_values: match (&od.attribute_values, &od.attribute_value) {
                (Some(values), _) => values.clone(),
                (None, Some(value)) => vec![value.clone()],
                (None, None) => Vec::new(),
            },
        }),
        EventPayload::Other { name, raw } => D::Other(wit::OtherEvent {
            name: name.clone(),
            json: raw.to_string(),
        }),
    }
}

/// The WIT event for one parsed message.
pub fn event(msg: &Message) -> wit::Event {
    wit::Event {
        kind: msg.event.kind().to_owned(),
        version: msg.version,
        time: msg.time.clone(),
        global_seq_num: msg.global_seq_num,
        process: process(&msg.process),
        data: data(&msg.event),
        auth: None,
    }
}
