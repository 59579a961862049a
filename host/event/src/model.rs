//! The eslogger JSON model: one struct per object eslogger writes, every field tolerant of
//! absence (message versions differ) and of unknown neighbours (ignored, never rejected).

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One eslogger line: the envelope around one event.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// eslogger's own schema version (1 so far).
    #[serde(default)]
    pub schema_version: Option<u32>,
    /// ES message version (6-11); decides which fields exist.
    #[serde(default)]
    pub version: u32,
    /// Event time, RFC 3339 with nanoseconds.
    #[serde(default)]
    pub time: String,
    /// Mach absolute time.
    #[serde(default)]
    pub mach_time: Option<u64>,
    /// Numeric `es_event_type_t`.
    #[serde(default)]
    pub event_type: Option<u32>,
    /// Per-kind sequence number.
    #[serde(default)]
    pub seq_num: Option<u64>,
    /// Sequence number across kinds.
    #[serde(default)]
    pub global_seq_num: Option<u64>,
    /// `0` AUTH, `1` NOTIFY.
    #[serde(default)]
    pub action_type: Option<u32>,
    /// The instigating process (for `exec`, the old image).
    pub process: Process,
    /// The event payload.
    pub event: EventPayload,
    /// The line as read: fields this model does not type (new in a later macOS, or not
    /// needed yet) are kept here, never lost.
    #[serde(skip)]
    pub raw: std::sync::Arc<str>,
}

/// An `audit_token_t`, written by eslogger as an object or (macOS 26) an 8-integer array
/// `[auid, euid, egid, ruid, rgid, pid, asid, pidversion]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AuditToken {
    /// Process id.
    pub pid: i32,
    /// Pid generation.
    pub pidversion: i32,
    /// Audit user id.
    pub auid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Real uid.
    pub ruid: u32,
    /// Real gid.
    pub rgid: u32,
    /// Audit session id.
    pub asid: i32,
}

impl AuditToken {
    /// The process-table key.
    pub fn key(&self) -> (i32, i32) {
        (self.pid, self.pidversion)
    }
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}
fn to_u32(v: i64) -> u32 {
    // auid 4294967295 arrives as an unsigned value; negative ids are bogus.
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl<'de> Deserialize<'de> for AuditToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TokenVisitor;
        impl<'de> Visitor<'de> for TokenVisitor {
            type Value = AuditToken;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an audit token object or an array of 8 integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AuditToken, A::Error> {
                let mut val = [0i64; 8];
                for (i, slot) in val.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(9, &self));
                }
                let [auid, euid, egid, ruid, rgid, pid, asid, pidversion] = val;
                Ok(AuditToken {
                    pid: to_i32(pid),
                    pidversion: to_i32(pidversion),
                    auid: to_u32(auid),
                    euid: to_u32(euid),
                    egid: to_u32(egid),
                    ruid: to_u32(ruid),
                    rgid: to_u32(rgid),
                    asid: to_i32(asid),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AuditToken, A::Error> {
                let mut t = AuditToken::default();
                let (mut has_pid, mut has_pidversion) = (false, false);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "pid" => {
                            t.pid = to_i32(map.next_value()?);
                            has_pid = true;
                        }
                        "pidversion" => {
                            t.pidversion = to_i32(map.next_value()?);
                            has_pidversion = true;
                        }
                        "auid" => t.auid = to_u32(map.next_value()?),
                        "euid" => t.euid = to_u32(map.next_value()?),
                        "egid" => t.egid = to_u32(map.next_value()?),
                        "ruid" => t.ruid = to_u32(map.next_value()?),
                        "rgid" => t.rgid = to_u32(map.next_value()?),
                        "asid" => t.asid = to_i32(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if !has_pid {
                    return Err(de::Error::missing_field("pid"));
                }
                if !has_pidversion {
                    return Err(de::Error::missing_field("pidversion"));
                }
                Ok(t)
            }
        }
        deserializer.deserialize_any(TokenVisitor)
    }
}

/// `stat` as eslogger writes it; `{}` leaves everything `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Stat {
    /// `st_dev`.
    pub st_dev: Option<i64>,
    /// `st_ino`.
    pub st_ino: Option<u64>,
    /// `st_mode`.
    pub st_mode: Option<u32>,
    /// `st_uid`.
    pub st_uid: Option<u32>,
    /// `st_gid`.
    pub st_gid: Option<u32>,
    /// `st_size`.
    pub st_size: Option<i64>,
    /// `st_flags`.
    pub st_flags: Option<u32>,
    /// `st_mtimespec`.
    pub st_mtimespec: Option<String>,
    /// `st_birthtimespec`.
    pub st_birthtimespec: Option<String>,
}

impl Stat {
    /// True when eslogger wrote an empty object.
    pub fn is_empty(&self) -> bool {
        self.st_ino.is_none() && self.st_mode.is_none() && self.st_dev.is_none()
    }

    /// True for a directory (`S_IFDIR`).
    pub fn is_dir(&self) -> bool {
        self.st_mode.is_some_and(|m| m & 0o170000 == 0o040000)
    }
}

/// A file: path, truncation flag and stat.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct File {
    /// Absolute path.
    #[serde(default)]
    pub path: String,
    /// True when the kernel truncated the path.
    #[serde(default)]
    pub path_truncated: bool,
    /// File metadata.
    #[serde(default)]
    pub stat: Option<Stat>,
}

/// An `es_process_t`.
#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    /// Identity of this image.
    pub audit_token: AuditToken,
    /// Current parent pid.
    #[serde(default)]
    pub ppid: i32,
    /// Parent pid at fork.
    #[serde(default)]
    pub original_ppid: i32,
    /// Process group id.
    #[serde(default)]
    pub group_id: i32,
    /// Session id.
    #[serde(default)]
    pub session_id: i32,
    /// `CS_*` flags.
    #[serde(default)]
    pub codesigning_flags: u32,
    /// Apple platform binary.
    #[serde(default)]
    pub is_platform_binary: bool,
    /// Is itself an ES client.
    #[serde(default)]
    pub is_es_client: bool,
    /// Code directory hash (uppercase hex).
    #[serde(default)]
    pub cdhash: Option<String>,
    /// Signing identifier.
    #[serde(default)]
    pub signing_id: Option<String>,
    /// Team identifier; null for platform and ad-hoc code.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The executable.
    #[serde(default)]
    pub executable: File,
    /// Controlling tty.
    #[serde(default)]
    pub tty: Option<File>,
    /// Fork time.
    #[serde(default)]
    pub start_time: Option<String>,
    /// Parent identity (v4+).
    #[serde(default)]
    pub parent_audit_token: Option<AuditToken>,
    /// Responsible process identity (v4+).
    #[serde(default)]
    pub responsible_audit_token: Option<AuditToken>,
    /// `es_cs_validation_category_t` (v10+).
    #[serde(default)]
    pub cs_validation_category: Option<u32>,
}

/// Code-signing flag: ad-hoc signed.
pub const CS_ADHOC: u32 = 0x0000_0002;
/// Code-signing flag: signed at all (set by the kernel for any signature).
pub const CS_SIGNED: u32 = 0x2000_0000;

/// Signer class, as the WIT `signer-type` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    /// Apple platform binary.
    Apple,
    /// Mac App Store.
    AppStore,
    /// Developer ID.
    DeveloperId,
    /// Development / enterprise / local signing.
    Development,
    /// Ad hoc.
    Adhoc,
    /// Unsigned.
    Unsigned,
}

impl Signer {
    /// Lowercase name used in findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Signer::Apple => "apple",
            Signer::AppStore => "app-store",
            Signer::DeveloperId => "developer-id",
            Signer::Development => "development",
            Signer::Adhoc => "adhoc",
            Signer::Unsigned => "unsigned",
        }
    }
}

/// Shells by executable name.
const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "tcsh", "csh", "fish", "pwsh",
];

impl Process {
    /// The executable's file name.
    pub fn name(&self) -> &str {
        self.executable
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&self.executable.path)
    }

    /// True for an interactive or script shell (by executable name).
    pub fn is_shell(&self) -> bool {
        SHELLS.contains(&self.name())
    }

    /// Derives the signer class from the platform flag, the validation category (v10+),
    /// `CS_ADHOC` / `CS_SIGNED` and the team id.
    pub fn signer(&self) -> Signer {
        if self.is_platform_binary {
            return Signer::Apple;
        }
        match self.cs_validation_category {
            Some(1) => return Signer::Apple,
            Some(4) => return Signer::AppStore,
            Some(6) => return Signer::DeveloperId,
            Some(2 | 3 | 5) => return Signer::Development,
            _ => {}
        }
        if self.codesigning_flags & CS_ADHOC != 0 {
            return Signer::Adhoc;
        }
        let signed = self.codesigning_flags & CS_SIGNED != 0 || self.cdhash.is_some();
        match (&self.team_id, signed) {
            (_, false) => Signer::Unsigned,
            (Some(team), true) if !team.is_empty() => Signer::DeveloperId,
            (_, true) => Signer::Development,
        }
    }
}

/// Where a create or rename puts its file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Destination {
    /// An existing file is replaced.
    #[serde(default)]
    pub existing_file: Option<File>,
    /// A new path is created.
    #[serde(default)]
    pub new_path: Option<NewPath>,
}

/// A new path: directory plus file name.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewPath {
    /// Directory.
    #[serde(default)]
    pub dir: File,
    /// File name.
    #[serde(default)]
    pub filename: String,
    /// Requested mode.
    #[serde(default)]
    pub mode: Option<u32>,
}

impl Destination {
    /// The full destination path.
    pub fn path(&self) -> String {
        if let Some(new) = &self.new_path {
            if new.dir.path.ends_with('/') {
                format!("{}{}", new.dir.path, new.filename)
            } else {
                format!("{}/{}", new.dir.path, new.filename)
            }
        } else if let Some(existing) = &self.existing_file {
            existing.path.clone()
        } else {
            String::new()
        }
    }
}

/// `exec`.
#[derive(Debug, Clone, Deserialize)]
pub struct Exec {
    /// The new image.
    pub target: Process,
    /// argv.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<File>,
    /// Directly executed script.
    #[serde(default)]
    pub script: Option<File>,
    /// execve path before symlink resolution (v7+).
    #[serde(default)]
    pub dyld_exec_path: Option<String>,
    /// CPU type.
    #[serde(default)]
    pub image_cputype: Option<i32>,
    /// CPU subtype.
    #[serde(default)]
    pub image_cpusubtype: Option<i32>,
}

/// `fork`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fork {
    /// The child.
    pub child: Process,
}

/// `exit`.
#[derive(Debug, Clone, Deserialize)]
pub struct Exit {
    /// wait(2) status.
    #[serde(default)]
    pub stat: i32,
}

impl Exit {
    /// Exit code if the process exited normally (`WIFEXITED`).
    pub fn exit_code(&self) -> Option<u8> {
        (self.stat & 0x7f == 0).then_some(((self.stat >> 8) & 0xff) as u8)
    }
    /// Terminating signal if it was killed (`WIFSIGNALED`).
    pub fn signal(&self) -> Option<u8> {
        let sig = self.stat & 0x7f;
        (sig != 0 && sig != 0x7f).then_some(sig as u8)
    }
}

/// `signal`.
#[derive(Debug, Clone, Deserialize)]
pub struct Signal {
    /// Signal number.
    #[serde(default)]
    pub sig: i32,
    /// Receiver.
    pub target: Process,
    /// Instigator (v9+).
    #[serde(default)]
    pub instigator: Option<Process>,
}

/// `open`.
#[derive(Debug, Clone, Deserialize)]
pub struct Open {
    /// FFLAGS.
    #[serde(default)]
    pub fflag: u32,
    /// The file.
    pub file: File,
}

/// `close`.
#[derive(Debug, Clone, Deserialize)]
pub struct Close {
    /// Written while open.
    #[serde(default)]
    pub modified: bool,
    /// The file.
    pub target: File,
    /// Mapped writable (v6+).
    #[serde(default)]
    pub was_mapped_writable: Option<bool>,
}

/// `create`.
#[derive(Debug, Clone, Deserialize)]
pub struct Create {
    /// 0 existing file, 1 new path.
    #[serde(default)]
    pub destination_type: Option<u32>,
    /// Destination.
    pub destination: Destination,
    /// ACL text.
    #[serde(default)]
    pub acl: Option<String>,
}

/// `rename`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rename {
    /// Source file.
    pub source: File,
    /// 0 existing file, 1 new path.
    #[serde(default)]
    pub destination_type: Option<u32>,
    /// Destination.
    pub destination: Destination,
}

/// `unlink`.
#[derive(Debug, Clone, Deserialize)]
pub struct Unlink {
    /// Removed file.
    pub target: File,
    /// Its directory.
    #[serde(default)]
    pub parent_dir: Option<File>,
}

/// `write`.
#[derive(Debug, Clone, Deserialize)]
pub struct Write {
    /// Written file.
    pub target: File,
}

/// `setextattr` / `deleteextattr`.
#[derive(Debug, Clone, Deserialize)]
pub struct Extattr {
    /// The file.
    pub target: File,
    /// Attribute name.
    #[serde(default)]
    pub extattr: String,
}

/// `setmode`.
#[derive(Debug, Clone, Deserialize)]
pub struct Setmode {
    /// New mode.
    #[serde(default)]
    pub mode: u32,
    /// The file.
    pub target: File,
}

/// `mmap`.
#[derive(Debug, Clone, Deserialize)]
pub struct Mmap {
    /// PROT_*.
    #[serde(default)]
    pub protection: u32,
    /// Max PROT_*.
    #[serde(default)]
    pub max_protection: u32,
    /// MAP_*.
    #[serde(default)]
    pub flags: u32,
    /// File offset.
    #[serde(default)]
    pub file_pos: u64,
    /// Mapped file.
    pub source: File,
}

/// statfs subset of `mount`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Statfs {
    /// fs type.
    #[serde(default)]
    pub f_fstypename: String,
    /// Mount point.
    #[serde(default)]
    pub f_mntonname: String,
    /// Mounted from.
    #[serde(default)]
    pub f_mntfromname: String,
    /// MNT_* flags.
    #[serde(default)]
    pub f_flags: u32,
}

/// `mount`.
#[derive(Debug, Clone, Deserialize)]
pub struct Mount {
    /// statfs.
    #[serde(default)]
    pub statfs: Statfs,
    /// Disposition.
    #[serde(default)]
    pub disposition: Option<i32>,
}

/// `kextload`.
#[derive(Debug, Clone, Deserialize)]
pub struct Kextload {
    /// Bundle id.
    #[serde(default)]
    pub identifier: String,
}

/// `uipc_connect`.
#[derive(Debug, Clone, Deserialize)]
pub struct UipcConnect {
    /// Socket file.
    pub file: File,
    /// AF_*.
    #[serde(default)]
    pub domain: i32,
    /// SOCK_*.
    #[serde(default, rename = "type")]
    pub socket_type: i32,
    /// Protocol.
    #[serde(default)]
    pub protocol: i32,
}

/// Thread state of `remote_thread_create`.
#[derive(Debug, Clone, Deserialize)]
pub struct ThreadState {
    /// Flavor.
    #[serde(default)]
    pub flavor: Option<i32>,
}

/// `remote_thread_create`.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteThreadCreate {
    /// Target.
    pub target: Process,
    /// Thread state.
    #[serde(default)]
    pub thread_state: Option<ThreadState>,
}

/// BTM item.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BtmItem {
    /// 0 user item, 1 app, 2 login item, 3 agent, 4 daemon.
    #[serde(default)]
    pub item_type: u32,
    /// Legacy plist.
    #[serde(default)]
    pub legacy: bool,
    /// MDM managed.
    #[serde(default)]
    pub managed: bool,
    /// Owner.
    #[serde(default)]
    pub uid: i32,
    /// Item URL.
    #[serde(default)]
    pub item_url: String,
    /// App URL.
    #[serde(default)]
    pub app_url: Option<String>,
}

/// `btm_launch_item_add` / `btm_launch_item_remove`.
#[derive(Debug, Clone, Deserialize)]
pub struct BtmLaunchItem {
    /// Instigator.
    #[serde(default)]
    pub instigator: Option<Process>,
    /// Instigator identity (v8+).
    #[serde(default)]
    pub instigator_token: Option<AuditToken>,
    /// App.
    #[serde(default)]
    pub app: Option<Process>,
    /// Executable path.
    #[serde(default)]
    pub executable_path: Option<String>,
    /// Item.
    #[serde(default)]
    pub item: BtmItem,
}

/// `xp_malware_detected`.
#[derive(Debug, Clone, Deserialize)]
pub struct XpMalwareDetected {
    /// Signature version.
    #[serde(default)]
    pub signature_version: String,
    /// Malware id.
    #[serde(default)]
    pub malware_identifier: String,
    /// Incident id.
    #[serde(default)]
    pub incident_identifier: String,
    /// Detected path.
    #[serde(default)]
    pub detected_path: String,
    /// Detected executable (v10+).
    #[serde(default)]
    pub detected_executable: Option<String>,
}

/// `authentication`.
#[derive(Debug, Clone, Deserialize)]
pub struct Authentication {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// 0 od, 1 touchid, 2 token, 3 auto_unlock.
    #[serde(default, rename = "type")]
    pub auth_type: u32,
    /// Mechanism-specific data, kept raw (within [`crate::MAX_UNTYPED_NODES`]).
    #[serde(default, deserialize_with = "crate::untyped::bounded_value")]
    pub data: serde_json::Value,
}

/// `login_login`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginLogin {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Failure text.
    #[serde(default)]
    pub failure_message: Option<String>,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Uid.
    #[serde(default)]
    pub uid: Option<u32>,
}

/// `openssh_login`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpensshLogin {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Result type.
    #[serde(default)]
    pub result_type: u32,
    /// Address type.
    #[serde(default)]
    pub source_address_type: u32,
    /// Address.
    #[serde(default)]
    pub source_address: String,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Uid.
    #[serde(default)]
    pub uid: Option<u32>,
}

/// `screensharing_attach`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScreensharingAttach {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Viewer address.
    #[serde(default)]
    pub source_address: Option<String>,
    /// Viewer Apple ID.
    #[serde(default)]
    pub viewer_appleid: Option<String>,
    /// Authentication type.
    #[serde(default)]
    pub authentication_type: String,
    /// Authenticated user.
    #[serde(default)]
    pub authentication_username: Option<String>,
    /// Session user.
    #[serde(default)]
    pub session_username: Option<String>,
    /// Existing session.
    #[serde(default)]
    pub existing_session: bool,
    /// Graphical session id.
    #[serde(default)]
    pub graphical_session_id: u32,
}

/// Why sudo refused.
#[derive(Debug, Clone, Deserialize)]
pub struct SudoRejectInfo {
    /// Plugin.
    #[serde(default)]
    pub plugin_name: String,
    /// Failure text.
    #[serde(default)]
    pub failure_message: String,
}

/// `sudo`.
#[derive(Debug, Clone, Deserialize)]
pub struct Sudo {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Rejection.
    #[serde(default)]
    pub reject_info: Option<SudoRejectInfo>,
    /// From uid.
    #[serde(default)]
    pub from_uid: Option<u32>,
    /// From user.
    #[serde(default)]
    pub from_username: Option<String>,
    /// To uid.
    #[serde(default)]
    pub to_uid: Option<u32>,
    /// To user.
    #[serde(default)]
    pub to_username: Option<String>,
    /// Command.
    #[serde(default)]
    pub command: Option<String>,
}

/// `su`.
#[derive(Debug, Clone, Deserialize)]
pub struct Su {
    /// Success.
    #[serde(default)]
    pub success: bool,
    /// Failure text.
    #[serde(default)]
    pub failure_message: Option<String>,
    /// From uid.
    #[serde(default)]
    pub from_uid: Option<u32>,
    /// From user.
    #[serde(default)]
    pub from_username: Option<String>,
    /// To uid.
    #[serde(default)]
    pub to_uid: Option<u32>,
    /// To user.
    #[serde(default)]
    pub to_username: Option<String>,
    /// Shell.
    #[serde(default)]
    pub shell: Option<String>,
    /// argv.
    #[serde(default)]
    pub argv: Vec<String>,
}

/// Profile of `profile_add`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    /// Identifier.
    #[serde(default)]
    pub identifier: String,
    /// UUID.
    #[serde(default)]
    pub uuid: String,
    /// 0 managed, 1 install.
    #[serde(default)]
    pub install_source: u32,
    /// Organisation.
    #[serde(default)]
    pub organization: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Scope.
    #[serde(default)]
    pub scope: String,
}

/// `profile_add`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileAdd {
    /// Instigator.
    #[serde(default)]
    pub instigator: Option<Process>,
    /// Update of an existing profile.
    #[serde(default)]
    pub is_update: bool,
    /// Profile.
    #[serde(default)]
    pub profile: Profile,
}

/// `tcc_modify`.
#[derive(Debug, Clone, Deserialize)]
pub struct TccModify {
    /// Service.
    #[serde(default)]
    pub service: String,
    /// Identity.
    #[serde(default)]
    pub identity: String,
    /// Identity type.
    #[serde(default)]
    pub identity_type: u32,
    /// Update type.
    #[serde(default)]
    pub update_type: u32,
    /// Right.
    #[serde(default)]
    pub right: u32,
    /// Reason.
    #[serde(default)]
    pub reason: u32,
    /// Instigator.
    #[serde(default)]
    pub instigator: Option<Process>,
    /// Instigator identity.
    #[serde(default)]
    pub instigator_token: Option<AuditToken>,
    /// Responsible process.
    #[serde(default)]
    pub responsible: Option<Process>,
}

/// Group member of an OD event.
#[derive(Debug, Clone, Deserialize)]
pub struct OdMember {
    /// Member type.
    #[serde(default)]
    pub member_type: u32,
    /// Member value.
    #[serde(default)]
    pub member_value: String,
}

/// All `od_*` events share this shape; each uses a subset of the fields.
#[derive(Debug, Clone, Deserialize)]
pub struct Od {
    /// Instigator.
    #[serde(default)]
    pub instigator: Option<Process>,
    /// Instigator identity (v8+).
    #[serde(default)]
    pub instigator_token: Option<AuditToken>,
    /// 0 on success.
    #[serde(default)]
    pub error_code: i32,
    /// Directory node.
    #[serde(default)]
    pub node_name: String,
    /// DB path.
    #[serde(default)]
    pub db_path: Option<String>,
    /// User record.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Group record.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Account record (password events).
    #[serde(default)]
    pub account_name: Option<String>,
    /// Generic record (attribute events).
    #[serde(default)]
    pub record_name: Option<String>,
    /// Group member.
    #[serde(default)]
    pub member: Option<OdMember>,
    /// Attribute name.
    #[serde(default)]
    pub attribute_name: Option<String>,
    /// Single attribute value.
    #[serde(default)]
    pub attribute_value: Option<String>,
    /// Attribute values (`od_attribute_set`).
    #[serde(default)]
    pub attribute_values: Option<Vec<String>>,
}

impl Od {
    /// The record acted on, whichever field carries it.
    pub fn record(&self) -> Option<&str> {
        self.user_name
            .as_deref()
            .or(self.group_name.as_deref())
            .or(self.account_name.as_deref())
            .or(self.record_name.as_deref())
    }
}

/// The typed payload under `event`.
#[derive(Debug, Clone)]
pub enum EventPayload {
    /// `exec`.
    Exec(Box<Exec>),
    /// `fork`.
    Fork(Box<Fork>),
    /// `exit`.
    Exit(Exit),
    /// `signal`.
    Signal(Box<Signal>),
    /// `cs_invalidated`.
    CsInvalidated,
    /// `open`.
    Open(Open),
    /// `close`.
    Close(Close),
    /// `create`.
    Create(Create),
    /// `rename`.
    Rename(Rename),
    /// `unlink`.
    Unlink(Unlink),
    /// `write`.
    Write(Write),
    /// `setextattr`.
    Setextattr(Extattr),
    /// `deleteextattr`.
    Deleteextattr(Extattr),
    /// `setmode`.
    Setmode(Setmode),
    /// `mmap`.
    Mmap(Mmap),
    /// `mount`.
    Mount(Mount),
    /// `kextload`.
    Kextload(Kextload),
    /// `uipc_connect`.
    UipcConnect(UipcConnect),
    /// `remote_thread_create`.
    RemoteThreadCreate(Box<RemoteThreadCreate>),
    /// `btm_launch_item_add`.
    BtmLaunchItemAdd(Box<BtmLaunchItem>),
    /// `btm_launch_item_remove`.
    BtmLaunchItemRemove(Box<BtmLaunchItem>),
    /// `xp_malware_detected`.
    XpMalwareDetected(XpMalwareDetected),
    /// `authentication`.
    Authentication(Authentication),
    /// `login_login`.
    LoginLogin(LoginLogin),
    /// `openssh_login`.
    OpensshLogin(OpensshLogin),
    /// `screensharing_attach`.
    ScreensharingAttach(ScreensharingAttach),
    /// `sudo`.
    Sudo(Sudo),
    /// `su`.
    Su(Su),
    /// `profile_add`.
    ProfileAdd(Box<ProfileAdd>),
    /// `tcc_modify`.
    TccModify(Box<TccModify>),
    /// `od_*`; the operation is the kind name.
    Od(OdKind, Box<Od>),
    /// A kind not typed yet: its name and raw payload.
    Other {
        /// The key under `event`.
        name: String,
        /// The payload, within [`crate::MAX_UNTYPED_NODES`].
        raw: serde_json::Value,
    },
}

/// Which `od_*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OdKind {
    /// `od_create_user`.
    CreateUser,
    /// `od_delete_user`.
    DeleteUser,
    /// `od_create_group`.
    CreateGroup,
    /// `od_delete_group`.
    DeleteGroup,
    /// `od_group_add`.
    GroupAdd,
    /// `od_group_remove`.
    GroupRemove,
    /// `od_group_set`.
    GroupSet,
    /// `od_modify_password`.
    ModifyPassword,
    /// `od_disable_user`.
    DisableUser,
    /// `od_enable_user`.
    EnableUser,
    /// `od_attribute_value_add`.
    AttributeValueAdd,
    /// `od_attribute_value_remove`.
    AttributeValueRemove,
    /// `od_attribute_set`.
    AttributeSet,
}

const OD_KINDS: &[(&str, OdKind)] = &[
    ("od_create_user", OdKind::CreateUser),
    ("od_delete_user", OdKind::DeleteUser),
    ("od_create_group", OdKind::CreateGroup),
    ("od_delete_group", OdKind::DeleteGroup),
    ("od_group_add", OdKind::GroupAdd),
    ("od_group_remove", OdKind::GroupRemove),
    ("od_group_set", OdKind::GroupSet),
    ("od_modify_password", OdKind::ModifyPassword),
    ("od_disable_user", OdKind::DisableUser),
    ("od_enable_user", OdKind::EnableUser),
    ("od_attribute_value_add", OdKind::AttributeValueAdd),
    ("od_attribute_value_remove", OdKind::AttributeValueRemove),
    ("od_attribute_set", OdKind::AttributeSet),
];

impl OdKind {
    /// The eslogger short name.
    pub fn name(self) -> &'static str {
        OD_KINDS
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("od")
    }
}

/// eslogger short names with typed payloads, and their `es_event_type_t` NOTIFY value.
pub const TYPED_KINDS: &[(&str, u32)] = &[
    ("exec", 9),
    ("open", 10),
    ("fork", 11),
    ("close", 12),
    ("create", 13),
    ("exit", 15),
    ("kextload", 17),
    ("mmap", 20),
    ("mount", 22),
    ("rename", 25),
    ("setextattr", 27),
    ("setmode", 29),
    ("signal", 31),
    ("unlink", 32),
    ("write", 33),
    ("deleteextattr", 70),
    ("uipc_connect", 78),
    ("cs_invalidated", 94),
    ("remote_thread_create", 97),
    ("authentication", 111),
    ("xp_malware_detected", 112),
    ("screensharing_attach", 118),
    ("openssh_login", 120),
    ("login_login", 122),
    ("btm_launch_item_add", 124),
    ("btm_launch_item_remove", 125),
    ("profile_add", 126),
    ("su", 128),
    ("sudo", 131),
    ("od_group_add", 132),
    ("od_group_remove", 133),
    ("od_group_set", 134),
    ("od_modify_password", 135),
    ("od_disable_user", 136),
    ("od_enable_user", 137),
    ("od_attribute_value_add", 138),
    ("od_attribute_value_remove", 139),
    ("od_attribute_set", 140),
    ("od_create_user", 141),
    ("od_create_group", 142),
    ("od_delete_user", 143),
    ("od_delete_group", 144),
    ("tcc_modify", 147),
];

impl EventPayload {
    /// The eslogger short name of this event.
    pub fn kind(&self) -> &str {
        match self {
            EventPayload::Exec(_) => "exec",
            EventPayload::Fork(_) => "fork",
            EventPayload::Exit(_) => "exit",
            EventPayload::Signal(_) => "signal",
            EventPayload::CsInvalidated => "cs_invalidated",
            EventPayload::Open(_) => "open",
            EventPayload::Close(_) => "close",
            EventPayload::Create(_) => "create",
            EventPayload::Rename(_) => "rename",
            EventPayload::Unlink(_) => "unlink",
            EventPayload::Write(_) => "write",
            EventPayload::Setextattr(_) => "setextattr",
            EventPayload::Deleteextattr(_) => "deleteextattr",
            EventPayload::Setmode(_) => "setmode",
            EventPayload::Mmap(_) => "mmap",
            EventPayload::Mount(_) => "mount",
            EventPayload::Kextload(_) => "kextload",
            EventPayload::UipcConnect(_) => "uipc_connect",
            EventPayload::RemoteThreadCreate(_) => "remote_thread_create",
            EventPayload::BtmLaunchItemAdd(_) => "btm_launch_item_add",
            EventPayload::BtmLaunchItemRemove(_) => "btm_launch_item_remove",
            EventPayload::XpMalwareDetected(_) => "xp_malware_detected",
            EventPayload::Authentication(_) => "authentication",
            EventPayload::LoginLogin(_) => "login_login",
            EventPayload::OpensshLogin(_) => "openssh_login",
            EventPayload::ScreensharingAttach(_) => "screensharing_attach",
            EventPayload::Sudo(_) => "sudo",
            EventPayload::Su(_) => "su",
            EventPayload::ProfileAdd(_) => "profile_add",
            EventPayload::TccModify(_) => "tcc_modify",
            EventPayload::Od(kind, _) => kind.name(),
            EventPayload::Other { name, .. } => name,
        }
    }
}

impl<'de> Deserialize<'de> for EventPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;
        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = EventPayload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with exactly one event key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventPayload, A::Error> {
                let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                    return Err(de::Error::custom("`event` is empty"));
                };
                let payload = payload_for(name.as_ref(), &mut map)?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("`event` has more than one key"));
                }
                Ok(payload)
            }
        }
        deserializer.deserialize_map(PayloadVisitor)
    }
}

fn payload_for<'de, A: MapAccess<'de>>(name: &str, map: &mut A) -> Result<EventPayload, A::Error> {
    use EventPayload as P;
    Ok(match name {
        "exec" => P::Exec(map.next_value()?),
        "fork" => P::Fork(map.next_value()?),
        "exit" => P::Exit(map.next_value()?),
        "signal" => P::Signal(map.next_value()?),
        "cs_invalidated" => {
            map.next_value::<IgnoredAny>()?;
            P::CsInvalidated
        }
        "open" => P::Open(map.next_value()?),
        "close" => P::Close(map.next_value()?),
        "create" => P::Create(map.next_value()?),
        "rename" => P::Rename(map.next_value()?),
        "unlink" => P::Unlink(map.next_value()?),
        "write" => P::Write(map.next_value()?),
        "setextattr" => P::Setextattr(map.next_value()?),
        "deleteextattr" => P::Deleteextattr(map.next_value()?),
        "setmode" => P::Setmode(map.next_value()?),
        "mmap" => P::Mmap(map.next_value()?),
        "mount" => P::Mount(map.next_value()?),
        "kextload" => P::Kextload(map.next_value()?),
        "uipc_connect" => P::UipcConnect(map.next_value()?),
        "remote_thread_create" => P::RemoteThreadCreate(map.next_value()?),
        "btm_launch_item_add" => P::BtmLaunchItemAdd(map.next_value()?),
        "btm_launch_item_remove" => P::BtmLaunchItemRemove(map.next_value()?),
        "xp_malware_detected" => P::XpMalwareDetected(map.next_value()?),
        "authentication" => P::Authentication(map.next_value()?),
        "login_login" => P::LoginLogin(map.next_value()?),
        "openssh_login" => P::OpensshLogin(map.next_value()?),
        "screensharing_attach" => P::ScreensharingAttach(map.next_value()?),
        "sudo" => P::Sudo(map.next_value()?),
        "su" => P::Su(map.next_value()?),
        "profile_add" => P::ProfileAdd(map.next_value()?),
        "tcc_modify" => P::TccModify(map.next_value()?),
        other => match OD_KINDS.iter().find(|(n, _)| *n == other) {
            Some((_, kind)) => P::Od(*kind, map.next_value()?),
            None => P::Other {
                name: other.to_owned(),
                raw: map.next_value_seed(crate::untyped::Untyped)?,
            },
        },
    })
}
