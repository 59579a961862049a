//! Host actions: what the executor carries out, typed. A remediator's planned
//! `wit::Action` becomes a [`HostAction`] (or is refused); each action, run, yields an
//! [`Outcome`] and, if it can be reverted, an [`Undo`] record — prepared and stored
//! before the action runs, so a crash never leaves a containment nobody can release.
//!
//! One file per kind of action: [`process`] (kill, by identity), [`vault`] (quarantine,
//! restore, remove), [`launchd`] (launch items), [`script`] (the admin's catalogue),
//! [`notify`], [`isolation`] (pf / nftables), [`jamf`] (Jamf Pro API and binary),
//! [`blocklist`] (prevent-list entries and the sweep).

pub mod blocklist;
pub mod isolation;
pub mod jamf;
pub mod launchd;
pub mod notify;
pub mod process;
pub mod script;
pub mod vault;

use serde::{Deserialize, Serialize};

use crate::sandbox::bindings::wit;

/// What a prevent-list entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// SHA-256 of the executable.
    Sha256,
    /// Code directory hash.
    Cdhash,
    /// Team id.
    TeamId,
    /// Signing id.
    SigningId,
}

impl BlockKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Sha256 => "sha256",
            BlockKind::Cdhash => "cdhash",
            BlockKind::TeamId => "team-id",
            BlockKind::SigningId => "signing-id",
        }
    }

    /// From the kebab-case name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sha256, Self::Cdhash, Self::TeamId, Self::SigningId]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The prevent-list plugin's config key for this list.
    pub fn config_key(self) -> &'static str {
        match self {
            BlockKind::Sha256 => "sha256",
            BlockKind::Cdhash => "cdhash",
            BlockKind::TeamId => "team_id",
            BlockKind::SigningId => "signing_id",
        }
    }

    /// Whether `value` is well formed for this list (the plugin would skip it otherwise).
    pub fn valid(self, value: &str) -> bool {
        let hex = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_hexdigit());
        match self {
            BlockKind::Sha256 => hex(64),
            BlockKind::Cdhash => hex(40),
            BlockKind::TeamId => {
                value.len() == 10 && value.bytes().all(|b| b.is_ascii_alphanumeric())
            }
            BlockKind::SigningId => {
                (1..=255).contains(&value.len())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'#' | b'"' | b'\''))
            }
        }
    }
}

/// An action the host carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HostAction {
    /// Kill the process image `(pid, pidversion)`.
    KillProcess {
        /// Pid.
        pid: i32,
        /// Generation.
        pidversion: i32,
        /// Signal.
        signal: i32,
    },
    /// Move a file into the vault.
    QuarantineFile {
        /// The file.
        path: String,
    },
    /// Delete a file.
    RemoveFile {
        /// The file.
        path: String,
    },
    /// Unload a launchd item and move its plist into the vault.
    RemoveLaunchItem {
        /// Its plist.
        path: String,
    },
    /// Cut the network off except the management set.
    IsolateNetwork,
    /// Lock the screen.
    LockScreen,
    /// Tell the user or the admins.
    Notify {
        /// Title.
        title: String,
        /// Body.
        body: String,
        /// To the logged-in user.
        to_user: bool,
    },
    /// Run a catalogued script.
    RunScript {
        /// Its id.
        script_id: String,
        /// Arguments.
        args: Vec<String>,
    },
    /// Jamf Pro `DEVICE_LOCK`.
    JamfLock {
        /// Lock-screen message.
        message: String,
    },
    /// Jamf Pro `ERASE_DEVICE`.
    JamfErase {
        /// Why (for the admins).
        reason: String,
    },
    /// Into the Jamf Pro penalty box.
    JamfPenaltyBox,
    /// `jamf policy -event <trigger>`.
    JamfPolicy {
        /// The custom trigger.
        trigger: String,
    },
    /// A Jamf Pro static group membership (smart-group mirroring).
    JamfStaticGroup {
        /// The group.
        group_id: u64,
        /// Add (else remove).
        add: bool,
    },
    /// A prevent-list entry.
    Block {
        /// Which list.
        entry: BlockKind,
        /// The value.
        value: String,
    },
    /// A device tag.
    TagDevice {
        /// The tag.
        tag: String,
    },
    /// Evidence collection by a collector plugin (recorded like an action).
    Collect {
        /// The collector.
        plugin: String,
    },
}

/// Longest string field an action keeps (paths, messages, arguments).
pub const MAX_ACTION_TEXT: usize = 4096;

fn bounded(text: &str) -> Result<String, String> {
    if text.len() > MAX_ACTION_TEXT {
        Err(format!(
            "a field of {} bytes (at most {MAX_ACTION_TEXT})",
            text.len()
        ))
    } else {
        Ok(text.to_owned())
    }
}

impl HostAction {
    /// The action a remediator planned, or why it cannot be one.
    pub fn from_planned(action: &wit::Action) -> Result<Self, String> {
        Ok(match action {
            wit::Action::KillProcess(k) => HostAction::KillProcess {
                pid: k.pid,
                pidversion: k.pidversion,
                signal: k.signal,
            },
            wit::Action::QuarantineFile(p) => HostAction::QuarantineFile { path: bounded(p)? },
            wit::Action::RemoveFile(p) => HostAction::RemoveFile { path: bounded(p)? },
            wit::Action::RemoveLaunchItem(p) => HostAction::RemoveLaunchItem { path: bounded(p)? },
            wit::Action::IsolateNetwork => HostAction::IsolateNetwork,
            wit::Action::LockScreen => HostAction::LockScreen,
            wit::Action::Notify(n) => HostAction::Notify {
                title: bounded(&n.title)?,
                body: bounded(&n.body)?,
                to_user: n.to_user,
            },
            wit::Action::RunScript(r) => HostAction::RunScript {
                script_id: bounded(&r.script_id)?,
                args: r
                    .args
                    .iter()
                    .map(|a| bounded(a))
                    .collect::<Result<_, _>>()?,
            },
            wit::Action::JamfLock(l) => HostAction::JamfLock {
                message: bounded(&l.message)?,
            },
            wit::Action::JamfErase(r) => HostAction::JamfErase {
                reason: bounded(r)?,
            },
            wit::Action::JamfPenaltyBox => HostAction::JamfPenaltyBox,
            wit::Action::JamfPolicy(t) => HostAction::JamfPolicy {
                trigger: bounded(t)?,
            },
            wit::Action::Block(b) => {
                let (entry, value) = match b {
                    wit::BlockEntry::Sha256(v) => (BlockKind::Sha256, v.to_ascii_lowercase()),
                    wit::BlockEntry::Cdhash(v) => (BlockKind::Cdhash, v.to_ascii_lowercase()),
                    wit::BlockEntry::TeamId(v) => (BlockKind::TeamId, v.clone()),
                    wit::BlockEntry::SigningId(v) => (BlockKind::SigningId, v.clone()),
                };
                if !entry.valid(&value) {
                    return Err(format!(
                        "`{}` is not a valid {} entry",
                        crate::respond::actions::shown(&value),
                        entry.as_str()
                    ));
                }
                HostAction::Block { entry, value }
            }
            wit::Action::TagDevice(t) => {
                if !crate::respond::groups::valid_tag(t) {
                    return Err(format!("`{}` is not a valid tag", shown(t)));
                }
                HostAction::TagDevice { tag: t.clone() }
            }
        })
    }

    /// The kind, as in the contract (and the capability that allows it).
    pub fn kind(&self) -> &'static str {
        match self {
            HostAction::KillProcess { .. } => "kill-process",
            HostAction::QuarantineFile { .. } => "quarantine-file",
            HostAction::RemoveFile { .. } => "remove-file",
            HostAction::RemoveLaunchItem { .. } => "remove-launch-item",
            HostAction::IsolateNetwork => "isolate-network",
            HostAction::LockScreen => "lock-screen",
            HostAction::Notify { .. } => "notify",
            HostAction::RunScript { .. } => "run-script",
            HostAction::JamfLock { .. } => "jamf-lock",
            HostAction::JamfErase { .. } => "jamf-erase",
            HostAction::JamfPenaltyBox => "jamf-penalty-box",
            HostAction::JamfPolicy { .. } => "jamf-policy",
            HostAction::JamfStaticGroup { .. } => "jamf-static-group",
            HostAction::Block { .. } => "block",
            HostAction::TagDevice { .. } => "tag-device",
            HostAction::Collect { .. } => "collect",
        }
    }

    /// What it acts on, in words.
    pub fn target(&self) -> String {
        match self {
            HostAction::KillProcess {
                pid,
                pidversion,
                signal,
            } => format!("pid {pid} (pidversion {pidversion}), signal {signal}"),
            HostAction::QuarantineFile { path }
            | HostAction::RemoveFile { path }
            | HostAction::RemoveLaunchItem { path } => shown(path),
            HostAction::IsolateNetwork => "this Mac's network".into(),
            HostAction::LockScreen => "this Mac's screen".into(),
            HostAction::Notify { title, to_user, .. } => format!(
                "{}: {}",
                if *to_user { "user" } else { "admins" },
                shown(title)
            ),
            HostAction::RunScript { script_id, .. } => format!("script {}", shown(script_id)),
            HostAction::JamfLock { .. } => "this Mac (Jamf Pro DEVICE_LOCK)".into(),
            HostAction::JamfErase { .. } => "this Mac (Jamf Pro ERASE_DEVICE)".into(),
            HostAction::JamfPenaltyBox => "this Mac (Jamf Pro penalty box)".into(),
            HostAction::JamfPolicy { trigger } => format!("jamf policy -event {}", shown(trigger)),
            HostAction::JamfStaticGroup { group_id, add } => format!(
                "Jamf Pro static group {group_id} ({})",
                if *add { "add" } else { "remove" }
            ),
            HostAction::Block { entry, value } => format!("{} {}", entry.as_str(), shown(value)),
            HostAction::TagDevice { tag } => format!("tag {tag}"),
            HostAction::Collect { plugin } => format!("evidence by {plugin}"),
        }
    }

    /// True when a successful run can be reverted (`ward actions undo`, a lease).
    pub fn reversible(&self) -> bool {
        matches!(
            self,
            HostAction::QuarantineFile { .. }
                | HostAction::RemoveLaunchItem { .. }
                | HostAction::IsolateNetwork
                | HostAction::JamfPenaltyBox
                | HostAction::JamfStaticGroup { .. }
                | HostAction::Block { .. }
                | HostAction::TagDevice { .. }
        )
    }

    /// True for actions that change the Mac (everything but notes, tags and evidence):
    /// never carried out by a replay without `--execute`.
    pub fn destructive(&self) -> bool {
        !matches!(self, HostAction::Collect { .. })
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary.
pub fn cut(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// A value from the stream or a plugin as it is shown in a record: control characters
/// escaped, at most 256 characters.
pub fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 256 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A replay without `--execute`: what would have been done.
    DryRun,
    /// A shadow-mode playbook: what would have been done.
    Shadow,
    /// Waiting for an admin.
    PendingApproval,
    /// To be carried out at its deadline (a sweep's kill after the grace period).
    Scheduled,
    /// An admin denied it, or its approval timed out (default deny).
    Denied,
    /// Refused by policy: an invariant, a missing grant, the blast radius.
    Refused,
    /// Being carried out (its undo record is already stored).
    Running,
    /// The agent stopped while it ran: it may or may not have happened; its undo and
    /// lease stand.
    Interrupted,
    /// Carried out.
    Done,
    /// Tried and failed.
    Failed,
    /// Reverted by `ward actions undo`.
    Undone,
    /// Reverted when its lease ended.
    Released,
}

impl Status {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::DryRun => "dry-run",
            Status::Shadow => "shadow",
            Status::PendingApproval => "pending-approval",
            Status::Scheduled => "scheduled",
            Status::Denied => "denied",
            Status::Refused => "refused",
            Status::Running => "running",
            Status::Interrupted => "interrupted",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Undone => "undone",
            Status::Released => "released",
        }
    }

    /// From the kebab-case name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::DryRun,
            Status::Shadow,
            Status::PendingApproval,
            Status::Scheduled,
            Status::Denied,
            Status::Refused,
            Status::Running,
            Status::Interrupted,
            Status::Done,
            Status::Failed,
            Status::Undone,
            Status::Released,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to revert an action, stored before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Undo {
    /// Put a vaulted file back (quarantine, launch item).
    Restore {
        /// The vault item.
        item: String,
        /// Where it came from.
        original: String,
        /// For a launch item: bootstrap it again into this domain.
        #[serde(default)]
        launchd_domain: Option<String>,
    },
    /// Take the isolation down.
    ReleaseIsolation {
        /// `nftables` or `pf`.
        backend: String,
        /// pf's enable reference token, once known.
        #[serde(default)]
        token: Option<String>,
    },
    /// Take the Mac out of the penalty box.
    LeavePenaltyBox,
    /// Reverse a static group change.
    StaticGroup {
        /// The group.
        group_id: u64,
        /// Add it back (else remove it).
        add: bool,
    },
    /// Remove a prevent-list entry.
    Unblock {
        /// Which list.
        entry: BlockKind,
        /// The value.
        value: String,
    },
    /// Clear a device tag.
    ClearTag {
        /// The tag.
        tag: String,
    },
}

/// What an action did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// One line.
    pub details: String,
    /// Facts worth keeping (hashes, exit codes, the PIN, …).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

impl Outcome {
    /// An outcome with `details`.
    pub fn new(details: impl Into<String>) -> Self {
        Self {
            details: details.into(),
            evidence: serde_json::Map::new(),
        }
    }

    /// Adds one fact.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.evidence.insert(key.to_owned(), value.into());
        self
    }

    /// As stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_actions_become_host_actions_or_are_refused() {
        let a = HostAction::from_planned(&wit::Action::Block(wit::BlockEntry::Cdhash(
            "0B9F2E61C4D3A2B1E0F9A8B7C6D5E4F3A2B1C0D9".into(),
        )))
        .unwrap();
        assert_eq!(
            a,
            HostAction::Block {
                entry: BlockKind::Cdhash,
                value: "0b9f2e61c4d3a2b1e0f9a8b7c6d5e4f3a2b1c0d9".into()
            }
        );
        assert_eq!(a.kind(), "block");
        assert!(a.reversible());
        assert!(
            HostAction::from_planned(&wit::Action::Block(wit::BlockEntry::Sha256("xyz".into())))
                .is_err()
        );
        assert!(HostAction::from_planned(&wit::Action::QuarantineFile("x".repeat(5000))).is_err());
        assert!(HostAction::from_planned(&wit::Action::TagDevice("a b".into())).is_err());
        let json = serde_json::to_value(HostAction::KillProcess {
            pid: 1,
            pidversion: 2,
            signal: 9,
        })
        .unwrap();
        assert_eq!(json["kind"], "kill-process");
        let back: HostAction = serde_json::from_value(json).unwrap();
        assert!(matches!(back, HostAction::KillProcess { pid: 1, .. }));
        assert_eq!(
            Status::parse("pending-approval"),
            Some(Status::PendingApproval)
        );
        assert_eq!(shown("a\nb"), "a\\nb");
    }
}
