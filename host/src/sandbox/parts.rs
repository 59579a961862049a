//! Lowering only the parts of an event a detector reads (`event-parts`, contract 0.2.1).
//!
//! A detector names the parts it reads with its `parts` export; the host lowers every
//! event into it through the borrowed views below, which mirror `wit/types.wit` field for
//! field (wasmtime type-checks them against the component's `on-events` and `authorize`
//! when the instance starts) but hold `none` or an empty list where the detector did not
//! ask. Nothing is copied: a view borrows the batch's events and is built per call.
//!
//! What is left out is what costs: each string or list is one `realloc` call into the
//! guest, a copy and a free there. An exec event carries two process images of about ten
//! strings each, each stat block two more, plus argv and the working directory.

use wasmtime::component::{ComponentType, Lower};

use crate::sandbox::bindings::wit;
use wit::EventParts;

/// Every part the contract names. (`EventParts::all()` sets every bit of the flags'
/// representation, known or not, so a guest's answer never `contains` it.)
pub fn every() -> EventParts {
    EventParts::FILE_STATS
        | EventParts::ARGS
        | EventParts::EXEC_CONTEXT
        | EventParts::PROCESS_SESSION
}

/// True when `parts` names every part: the event lowers whole, with no view.
pub fn whole(parts: EventParts) -> bool {
    parts.contains(every())
}

/// `file`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct File<'a> {
    path: &'a str,
    #[component(name = "path-truncated")]
    path_truncated: bool,
    stat: Option<&'a wit::FileStat>,
}

/// `process`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct Process<'a> {
    token: &'a wit::AuditToken,
    ppid: i32,
    #[component(name = "original-ppid")]
    original_ppid: i32,
    #[component(name = "group-id")]
    group_id: i32,
    #[component(name = "session-id")]
    session_id: i32,
    #[component(name = "codesigning-flags")]
    codesigning_flags: u32,
    #[component(name = "is-platform-binary")]
    is_platform_binary: bool,
    #[component(name = "is-es-client")]
    is_es_client: bool,
    cdhash: Option<&'a str>,
    #[component(name = "signing-id")]
    signing_id: Option<&'a str>,
    #[component(name = "team-id")]
    team_id: Option<&'a str>,
    executable: File<'a>,
    tty: Option<File<'a>>,
    #[component(name = "start-time")]
    start_time: Option<&'a str>,
    #[component(name = "parent-token")]
    parent_token: Option<&'a wit::AuditToken>,
    #[component(name = "responsible-token")]
    responsible_token: Option<&'a wit::AuditToken>,
    #[component(name = "cs-validation-category")]
    cs_validation_category: Option<u32>,
    signer: &'a wit::SignerType,
}

/// `new-path`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct NewPath<'a> {
    dir: File<'a>,
    filename: &'a str,
    mode: Option<u32>,
}

/// `destination`.
#[derive(ComponentType, Lower)]
#[component(variant)]
pub enum Destination<'a> {
    #[component(name = "existing-file")]
    ExistingFile(File<'a>),
    #[component(name = "new-path")]
    NewPath(NewPath<'a>),
}

/// `exec-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct ExecEvent<'a> {
    target: Process<'a>,
    args: &'a [String],
    cwd: Option<File<'a>>,
    script: Option<File<'a>>,
    #[component(name = "dyld-exec-path")]
    dyld_exec_path: Option<&'a str>,
    #[component(name = "image-cputype")]
    image_cputype: Option<i32>,
    #[component(name = "image-cpusubtype")]
    image_cpusubtype: Option<i32>,
}

/// `signal-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct SignalEvent<'a> {
    sig: i32,
    target: Process<'a>,
    instigator: Option<Process<'a>>,
}

/// `open-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct OpenEvent<'a> {
    fflag: u32,
    file: File<'a>,
}

/// `close-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct CloseEvent<'a> {
    modified: bool,
    target: File<'a>,
    #[component(name = "was-mapped-writable")]
    was_mapped_writable: Option<bool>,
}

/// `create-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct CreateEvent<'a> {
    destination: Destination<'a>,
    path: &'a str,
    acl: Option<&'a str>,
}

/// `rename-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct RenameEvent<'a> {
    source: File<'a>,
    destination: Destination<'a>,
    #[component(name = "destination-path")]
    destination_path: &'a str,
}

/// `unlink-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct UnlinkEvent<'a> {
    target: File<'a>,
    #[component(name = "parent-dir")]
    parent_dir: Option<File<'a>>,
}

/// `extattr-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct ExtattrEvent<'a> {
    target: File<'a>,
    extattr: &'a str,
}

/// `setmode-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct SetmodeEvent<'a> {
    mode: u32,
    target: File<'a>,
}

/// `mmap-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct MmapEvent<'a> {
    protection: u32,
    #[component(name = "max-protection")]
    max_protection: u32,
    flags: u32,
    #[component(name = "file-pos")]
    file_pos: u64,
    source: File<'a>,
}

/// `uipc-connect-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct UipcConnectEvent<'a> {
    file: File<'a>,
    domain: i32,
    #[component(name = "socket-type")]
    socket_type: i32,
    protocol: i32,
}

/// `remote-thread-create-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct RemoteThreadCreateEvent<'a> {
    target: Process<'a>,
    #[component(name = "thread-state-flavor")]
    thread_state_flavor: Option<i32>,
}

/// `btm-launch-item-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct BtmLaunchItemEvent<'a> {
    added: bool,
    instigator: Option<Process<'a>>,
    #[component(name = "instigator-token")]
    instigator_token: Option<&'a wit::AuditToken>,
    app: Option<Process<'a>>,
    #[component(name = "executable-path")]
    executable_path: Option<&'a str>,
    #[component(name = "item-type")]
    item_type: &'a wit::BtmItemType,
    legacy: bool,
    managed: bool,
    uid: i32,
    #[component(name = "item-url")]
    item_url: &'a str,
    #[component(name = "app-url")]
    app_url: Option<&'a str>,
}

/// `authentication-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct AuthenticationEvent<'a> {
    success: bool,
    #[component(name = "auth-type")]
    auth_type: &'a str,
    instigator: Option<Process<'a>>,
    account: Option<&'a str>,
}

/// `su-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct SuEvent<'a> {
    success: bool,
    #[component(name = "failure-message")]
    failure_message: Option<&'a str>,
    #[component(name = "from-uid")]
    from_uid: Option<u32>,
    #[component(name = "from-username")]
    from_username: Option<&'a str>,
    #[component(name = "to-uid")]
    to_uid: Option<u32>,
    #[component(name = "to-username")]
    to_username: Option<&'a str>,
    shell: Option<&'a str>,
    argv: &'a [String],
}

/// `profile-add-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct ProfileAddEvent<'a> {
    instigator: Option<Process<'a>>,
    #[component(name = "is-update")]
    is_update: bool,
    identifier: &'a str,
    uuid: &'a str,
    #[component(name = "install-source")]
    install_source: u32,
    organization: &'a str,
    #[component(name = "display-name")]
    display_name: &'a str,
    scope: &'a str,
}

/// `tcc-modify-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct TccModifyEvent<'a> {
    service: &'a str,
    identity: &'a str,
    #[component(name = "identity-type")]
    identity_type: u32,
    #[component(name = "update-type")]
    update_type: u32,
    right: u32,
    reason: u32,
    instigator: Option<Process<'a>>,
    #[component(name = "instigator-token")]
    instigator_token: Option<&'a wit::AuditToken>,
    responsible: Option<Process<'a>>,
}

/// `od-event`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct OdEvent<'a> {
    operation: &'a wit::OdOperation,
    instigator: Option<Process<'a>>,
    #[component(name = "instigator-token")]
    instigator_token: Option<&'a wit::AuditToken>,
    #[component(name = "error-code")]
    error_code: i32,
    #[component(name = "node-name")]
    node_name: &'a str,
    #[component(name = "db-path")]
    db_path: Option<&'a str>,
    #[component(name = "record-name")]
    record_name: Option<&'a str>,
    member: Option<&'a str>,
    #[component(name = "attribute-name")]
    attribute_name: Option<&'a str>,
    #[component(name = "attribute-values")]
    attribute_values: &'a [String],
}

/// `event-data`. Payloads without a file, a process or argv lower as they are.
#[derive(ComponentType, Lower)]
#[component(variant)]
pub enum EventData<'a> {
    #[component(name = "exec")]
    Exec(ExecEvent<'a>),
    #[component(name = "fork")]
    Fork(Process<'a>),
    #[component(name = "exit")]
    Exit(&'a wit::ExitEvent),
    #[component(name = "signal")]
    Signal(SignalEvent<'a>),
    #[component(name = "cs-invalidated")]
    CsInvalidated,
    #[component(name = "open")]
    Open(OpenEvent<'a>),
    #[component(name = "close")]
    Close(CloseEvent<'a>),
    #[component(name = "create")]
    Create(CreateEvent<'a>),
    #[component(name = "rename")]
    Rename(RenameEvent<'a>),
    #[component(name = "unlink")]
    Unlink(UnlinkEvent<'a>),
    #[component(name = "write")]
    Write(File<'a>),
    #[component(name = "setextattr")]
    Setextattr(ExtattrEvent<'a>),
    #[component(name = "deleteextattr")]
    Deleteextattr(ExtattrEvent<'a>),
    #[component(name = "setmode")]
    Setmode(SetmodeEvent<'a>),
    #[component(name = "mmap")]
    Mmap(MmapEvent<'a>),
    #[component(name = "mount")]
    Mount(&'a wit::MountEvent),
    #[component(name = "kextload")]
    Kextload(&'a str),
    #[component(name = "uipc-connect")]
    UipcConnect(UipcConnectEvent<'a>),
    #[component(name = "remote-thread-create")]
    RemoteThreadCreate(RemoteThreadCreateEvent<'a>),
    #[component(name = "btm-launch-item")]
    BtmLaunchItem(BtmLaunchItemEvent<'a>),
    #[component(name = "xp-malware-detected")]
    XpMalwareDetected(&'a wit::XpMalwareDetectedEvent),
    #[component(name = "authentication")]
    Authentication(AuthenticationEvent<'a>),
    #[component(name = "login-login")]
    LoginLogin(&'a wit::LoginEvent),
    #[component(name = "openssh-login")]
    OpensshLogin(&'a wit::OpensshLoginEvent),
    #[component(name = "screensharing-attach")]
    ScreensharingAttach(&'a wit::ScreensharingAttachEvent),
    #[component(name = "sudo")]
    Sudo(&'a wit::SudoEvent),
    #[component(name = "su")]
    Su(SuEvent<'a>),
    #[component(name = "profile-add")]
    ProfileAdd(ProfileAddEvent<'a>),
    #[component(name = "tcc-modify")]
    TccModify(TccModifyEvent<'a>),
    #[component(name = "od")]
    Od(OdEvent<'a>),
    #[component(name = "other")]
    Other(&'a wit::OtherEvent),
}

/// `event`, holding only the parts one detector reads.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct Event<'a> {
    kind: &'a str,
    version: u32,
    time: &'a str,
    #[component(name = "global-seq-num")]
    global_seq_num: Option<u64>,
    process: Process<'a>,
    data: EventData<'a>,
    auth: Option<&'a wit::AuthRequest>,
}

impl<'a> Event<'a> {
    /// `event` as a detector that reads `parts` receives it.
    pub fn new(event: &'a wit::Event, parts: EventParts) -> Self {
        let v = View(parts);
        Event {
            kind: &event.kind,
            version: event.version,
            time: &event.time,
            global_seq_num: event.global_seq_num,
            process: v.process(&event.process),
            data: v.data(&event.data),
            auth: event.auth.as_ref(),
        }
    }
}

/// Builds views keeping `.0`'s parts.
#[derive(Clone, Copy)]
struct View(EventParts);

impl View {
    fn has(self, part: EventParts) -> bool {
        self.0.contains(part)
    }

    fn file<'a>(self, f: &'a wit::File) -> File<'a> {
        File {
            path: &f.path,
            path_truncated: f.path_truncated,
            stat: f.stat.as_ref().filter(|_| self.has(EventParts::FILE_STATS)),
        }
    }

    fn process<'a>(self, p: &'a wit::Process) -> Process<'a> {
        let session = self.has(EventParts::PROCESS_SESSION);
        Process {
            token: &p.token,
            ppid: p.ppid,
            original_ppid: p.original_ppid,
            group_id: p.group_id,
            session_id: p.session_id,
            codesigning_flags: p.codesigning_flags,
            is_platform_binary: p.is_platform_binary,
            is_es_client: p.is_es_client,
            cdhash: p.cdhash.as_deref(),
            signing_id: p.signing_id.as_deref(),
            team_id: p.team_id.as_deref(),
            executable: self.file(&p.executable),
            tty: p.tty.as_ref().filter(|_| session).map(|t| self.file(t)),
            start_time: p.start_time.as_deref().filter(|_| session),
            parent_token: p.parent_token.as_ref(),
            responsible_token: p.responsible_token.as_ref(),
            cs_validation_category: p.cs_validation_category,
            signer: &p.signer,
        }
    }

    fn processes<'a>(self, p: &'a Option<wit::Process>) -> Option<Process<'a>> {
        p.as_ref().map(|p| self.process(p))
    }

    fn destination<'a>(self, d: &'a wit::Destination) -> Destination<'a> {
        match d {
            wit::Destination::ExistingFile(f) => Destination::ExistingFile(self.file(f)),
            wit::Destination::NewPath(n) => Destination::NewPath(NewPath {
                dir: self.file(&n.dir),
                filename: &n.filename,
                mode: n.mode,
            }),
        }
    }

    fn args(self, args: &[String]) -> &[String] {
        if self.has(EventParts::ARGS) {
            args
        } else {
            &[]
        }
    }

    fn data<'a>(self, data: &'a wit::EventData) -> EventData<'a> {
        use wit::EventData as D;
        let context = self.has(EventParts::EXEC_CONTEXT);
        match data {
            D::Exec(e) => EventData::Exec(ExecEvent {
                target: self.process(&e.target),
                args: self.args(&e.args),
                cwd: e.cwd.as_ref().filter(|_| context).map(|f| self.file(f)),
                script: e.script.as_ref().filter(|_| context).map(|f| self.file(f)),
                dyld_exec_path: e.dyld_exec_path.as_deref().filter(|_| context),
                image_cputype: e.image_cputype,
                image_cpusubtype: e.image_cpusubtype,
            }),
            D::Fork(p) => EventData::Fork(self.process(p)),
            D::Exit(e) => EventData::Exit(e),
            D::Signal(s) => EventData::Signal(SignalEvent {
                sig: s.sig,
                target: self.process(&s.target),
                instigator: self.processes(&s.instigator),
            }),
            D::CsInvalidated => EventData::CsInvalidated,
            D::Open(o) => EventData::Open(OpenEvent {
                fflag: o.fflag,
                file: self.file(&o.file),
            }),
            D::Close(c) => EventData::Close(CloseEvent {
                modified: c.modified,
                target: self.file(&c.target),
                was_mapped_writable: c.was_mapped_writable,
            }),
            D::Create(c) => EventData::Create(CreateEvent {
                destination: self.destination(&c.destination),
                path: &c.path,
                acl: c.acl.as_deref(),
            }),
            D::Rename(r) => EventData::Rename(RenameEvent {
                source: self.file(&r.source),
                destination: self.destination(&r.destination),
                destination_path: &r.destination_path,
            }),
            D::Unlink(u) => EventData::Unlink(UnlinkEvent {
                target: self.file(&u.target),
                parent_dir: u.parent_dir.as_ref().map(|f| self.file(f)),
            }),
            D::Write(f) => EventData::Write(self.file(f)),
            D::Setextattr(x) => EventData::Setextattr(self.extattr(x)),
            D::Deleteextattr(x) => EventData::Deleteextattr(self.extattr(x)),
            D::Setmode(s) => EventData::Setmode(SetmodeEvent {
                mode: s.mode,
                target: self.file(&s.target),
            }),
            D::Mmap(m) => EventData::Mmap(MmapEvent {
                protection: m.protection,
                max_protection: m.max_protection,
                flags: m.flags,
                file_pos: m.file_pos,
                source: self.file(&m.source),
            }),
            D::Mount(m) => EventData::Mount(m),
            D::Kextload(k) => EventData::Kextload(k),
            D::UipcConnect(u) => EventData::UipcConnect(UipcConnectEvent {
                file: self.file(&u.file),
                domain: u.domain,
                socket_type: u.socket_type,
                protocol: u.protocol,
            }),
            D::RemoteThreadCreate(r) => EventData::RemoteThreadCreate(RemoteThreadCreateEvent {
                target: self.process(&r.target),
                thread_state_flavor: r.thread_state_flavor,
            }),
            D::BtmLaunchItem(b) => EventData::BtmLaunchItem(BtmLaunchItemEvent {
                added: b.added,
                instigator: self.processes(&b.instigator),
                instigator_token: b.instigator_token.as_ref(),
                app: self.processes(&b.app),
                executable_path: b.executable_path.as_deref(),
                item_type: &b.item_type,
                legacy: b.legacy,
                managed: b.managed,
                uid: b.uid,
                item_url: &b.item_url,
                app_url: b.app_url.as_deref(),
            }),
            D::XpMalwareDetected(x) => EventData::XpMalwareDetected(x),
            D::Authentication(a) => EventData::Authentication(AuthenticationEvent {
                success: a.success,
                auth_type: &a.auth_type,
                instigator: self.processes(&a.instigator),
                account: a.account.as_deref(),
            }),
            D::LoginLogin(l) => EventData::LoginLogin(l),
            D::OpensshLogin(o) => EventData::OpensshLogin(o),
            D::ScreensharingAttach(s) => EventData::ScreensharingAttach(s),
            D::Sudo(s) => EventData::Sudo(s),
            D::Su(s) => EventData::Su(SuEvent {
                success: s.success,
                failure_message: s.failure_message.as_deref(),
                from_uid: s.from_uid,
                from_username: s.from_username.as_deref(),
                to_uid: s.to_uid,
                to_username: s.to_username.as_deref(),
                shell: s.shell.as_deref(),
                argv: self.args(&s.argv),
            }),
            D::ProfileAdd(p) => EventData::ProfileAdd(ProfileAddEvent {
                instigator: self.processes(&p.instigator),
                is_update: p.is_update,
                identifier: &p.identifier,
                uuid: &p.uuid,
                install_source: p.install_source,
                organization: &p.organization,
                display_name: &p.display_name,
                scope: &p.scope,
            }),
            D::TccModify(t) => EventData::TccModify(TccModifyEvent {
                service: &t.service,
                identity: &t.identity,
                identity_type: t.identity_type,
                update_type: t.update_type,
                right: t.right,
                reason: t.reason,
                instigator: self.processes(&t.instigator),
                instigator_token: t.instigator_token.as_ref(),
                responsible: self.processes(&t.responsible),
            }),
            D::Od(o) => EventData::Od(OdEvent {
                operation: &o.operation,
                instigator: self.processes(&o.instigator),
                instigator_token: o.instigator_token.as_ref(),
                error_code: o.error_code,
                node_name: &o.node_name,
                db_path: o.db_path.as_deref(),
                record_name: o.record_name.as_deref(),
                member: o.member.as_deref(),
                attribute_name: o.attribute_name.as_deref(),
                attribute_values: &o.attribute_values,
            }),
            D::Other(o) => EventData::Other(o),
        }
    }

    fn extattr<'a>(self, x: &'a wit::ExtattrEvent) -> ExtattrEvent<'a> {
        ExtattrEvent {
            target: self.file(&x.target),
            extattr: &x.extattr,
        }
    }
}
