//! Safety invariants no plugin or playbook can break: never kill or quarantine ward
//! itself, launchd, the MDM agent or what the admin protects; never quarantine or remove
//! the system's own files, nor a directory that holds any of them. Checked against what
//! is on the Mac (the real path a file resolves to, the executable a live pid runs, the
//! signer of the image the stream showed), not against what a remediator claims.
//!
//! Paths compare without regard to case (APFS, as macOS ships it, is case-insensitive:
//! `/USR/LOCAL/JAMF` is `/usr/local/jamf`). Signing ids are protected with their signer,
//! as Santa writes them: `platform:com.apple.xpc.launchd` (an Apple platform binary),
//! `483DWKW443:com.jamf.management.Jamf` (that team); a bare id matches any signer and is
//! for the admin's own use only — any developer can sign code with any id.
//!
//! The blast-radius limits and the management set of isolation are enforced by the
//! executor and the isolation backend with the same stance.

use std::path::{Path, PathBuf};

use crate::config::response::ProtectConfig;

/// Executables whose processes are never killed: launchd, the MDM and Jamf agents.
pub const PROTECTED_PROCESSES: &[&str] = &[
    "/sbin/launchd",
    "/usr/libexec/mdmclient",
    "/usr/local/jamf/bin/jamf",
    "/usr/local/bin/jamf",
    "/Library/Application Support/JAMF/",
    "/Applications/JamfProtect.app/",
    "/Library/Application Support/JamfProtect/",
];

/// Signing ids never killed or quarantined, with their signer (see the module doc).
pub const PROTECTED_SIGNING_IDS: &[&str] = &[
    "platform:com.apple.xpc.launchd",
    "platform:com.apple.mdmclient",
    "platform:com.apple.ManagedClient",
    "platform:com.apple.loginwindow",
    "platform:com.apple.WindowServer",
    "platform:com.apple.securityd",
    "483DWKW443:com.jamf.management.Jamf",
    "483DWKW443:com.jamf.management.jamfAAD",
    "483DWKW443:com.jamfsoftware.jamf",
    "483DWKW443:com.jamf.protect.daemon",
    "483DWKW443:com.jamf.protect.agent",
];

/// Path prefixes never quarantined or removed: the sealed system, Apple's binaries and
/// libraries, the MDM agent's files and settings, system keychains and managed
/// preferences, the main sudoers file.
pub const PROTECTED_FILES: &[&str] = &[
    "/System/",
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/lib/",
    "/usr/libexec/",
    "/usr/share/",
    "/Library/Apple/",
    "/Library/Keychains/",
    "/Library/Managed Preferences/",
    "/Library/Preferences/com.jamfsoftware.jamf.plist",
    "/private/var/db/",
    "/var/db/",
    "/private/etc/sudoers",
    "/etc/sudoers",
    "/private/etc/pam.d/",
    "/usr/local/jamf/",
    "/usr/local/bin/jamf",
    "/Library/Application Support/JAMF/",
    "/Library/Application Support/JamfProtect/",
    "/Applications/JamfProtect.app",
];

/// Launchd labels never booted out (Apple's own, Jamf's).
pub const PROTECTED_LABELS: &[&str] = &["com.apple.", "com.jamf", "com.jamfsoftware."];

/// What is protected, built from the built-in sets, the admin's `[response.protect]` and
/// the agent's own files.
#[derive(Debug, Clone)]
pub struct Protected {
    processes: Vec<String>,
    files: Vec<String>,
    signing_ids: Vec<String>,
    own: Vec<PathBuf>,
}

/// Lowercase, for comparing paths on a case-insensitive volume.
fn fold(path: &str) -> String {
    path.to_lowercase()
}

/// Whether `path` is `prefix` or lies under it (`prefix` ending in `/` names a
/// directory; otherwise a file or a directory). Both already folded.
fn under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix) || path == prefix.trim_end_matches('/')
    } else {
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }
}

/// Whether moving `path` would move `prefix`: `prefix` lies strictly under it.
fn holds(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    let dir = format!("{}/", path.trim_end_matches('/'));
    p.starts_with(&dir) || (path == "/" && !p.is_empty())
}

/// The forms a signer-qualified id can match: `platform:id`, `TEAM:id`, and bare `id`.
fn signer_forms(signing_id: &str, team_id: Option<&str>, platform: bool) -> Vec<String> {
    let mut forms = vec![signing_id.to_owned()];
    if platform {
        forms.push(format!("platform:{signing_id}"));
    }
    if let Some(team) = team_id {
        forms.push(format!("{team}:{signing_id}"));
    }
    forms
}

/// The signer of an image, as far as the stream says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signer<'a> {
    /// Signing id.
    pub signing_id: Option<&'a str>,
    /// Team id.
    pub team_id: Option<&'a str>,
    /// An Apple platform binary.
    pub platform: bool,
}

impl Protected {
    /// The protected set; `own` are the agent's executable, state directory and config.
    pub fn new(config: &ProtectConfig, own: Vec<PathBuf>) -> Self {
        let admin: Vec<String> = config
            .paths
            .iter()
            .map(|p| {
                let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                fold(&canon.display().to_string())
            })
            .chain(config.paths.iter().map(|p| fold(&p.display().to_string())))
            .collect();
        Self {
            processes: PROTECTED_PROCESSES
                .iter()
                .map(|s| fold(s))
                .chain(admin.iter().cloned())
                .collect(),
            files: PROTECTED_FILES
                .iter()
                .map(|s| fold(s))
                .chain(admin)
                .collect(),
            signing_ids: PROTECTED_SIGNING_IDS
                .iter()
                .map(|s| (*s).to_owned())
                .chain(config.signing_ids.iter().cloned())
                .collect(),
            own,
        }
    }

    /// Why `signer` is protected, if it is.
    pub fn refuse_signer(&self, signer: Signer<'_>) -> Option<String> {
        let id = signer.signing_id?;
        let forms = signer_forms(id, signer.team_id, signer.platform);
        self.signing_ids
            .iter()
            .find(|p| forms.iter().any(|f| f == *p))
            .map(|p| format!("signing id {p} is protected"))
    }

    /// Why the process `pid` running `exe` (signed by `signer`) must not be killed.
    pub fn refuse_kill(&self, pid: i32, exe: Option<&Path>, signer: Signer<'_>) -> Option<String> {
        if pid <= 1 {
            return Some(format!("pid {pid} is launchd or the kernel"));
        }
        if u32::try_from(pid).ok() == Some(std::process::id()) {
            return Some("that is ward itself".into());
        }
        if let Some(why) = self.refuse_signer(signer) {
            return Some(why);
        }
        if let Some(exe) = exe {
            if self
                .own
                .iter()
                .any(|o| fold(&o.display().to_string()) == fold(&exe.display().to_string()))
            {
                return Some("that is ward itself".into());
            }
            let shown = fold(&exe.display().to_string());
            if let Some(p) = self.processes.iter().find(|p| under(&shown, p)) {
                return Some(format!("{} is protected ({p})", exe.display()));
            }
        }
        None
    }

    /// Why the file (or directory) at real path `real` must not be quarantined or
    /// removed: it is protected, ward's own, or holds something that is.
    pub fn refuse_file(&self, real: &Path) -> Option<String> {
        let shown = real.display().to_string();
        let folded = fold(&shown);
        if folded == "/" || !real.is_absolute() {
            return Some(format!("{shown} is not a file ward may act on"));
        }
        for o in &self.own {
            let own = fold(&o.display().to_string());
            if under(&folded, &own) || holds(&folded, &own) {
                return Some(format!("{shown} is ward's own ({})", o.display()));
            }
        }
        if let Some(p) = self.files.iter().find(|p| under(&folded, p)) {
            return Some(format!("{shown} is protected ({p})"));
        }
        if let Some(p) = self
            .files
            .iter()
            .chain(self.processes.iter())
            .find(|p| holds(&folded, p))
        {
            return Some(format!("{shown} holds something protected ({p})"));
        }
        None
    }

    /// Why the launchd job `label` must not be booted out.
    pub fn refuse_label(&self, label: &str) -> Option<String> {
        let valid = (1..=255).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Some(format!(
                "`{}` is not a launchd label ward acts on (letters, digits, . - _)",
                crate::respond::actions::shown(label)
            ));
        }
        let lower = label.to_ascii_lowercase();
        PROTECTED_LABELS
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| format!("launchd label {label} is protected ({p}*)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected::new(
            &ProtectConfig {
                paths: vec![PathBuf::from("/opt/corp-agent")],
                signing_ids: vec!["ABCDE12345:com.corp.agent".into()],
            },
            vec![
                PathBuf::from("/usr/local/bin/ward"),
                PathBuf::from("/var/lib/ward"),
            ],
        )
    }

    fn none() -> Signer<'static> {
        Signer::default()
    }

    #[test]
    fn the_protected_are_refused_and_the_rest_allowed() {
        let p = protected();
        assert!(p.refuse_kill(1, None, none()).is_some());
        assert!(p.refuse_kill(0, None, none()).is_some());
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(p.refuse_kill(me, None, none()).is_some());
        assert!(
            p.refuse_kill(500, Some(Path::new("/usr/local/bin/ward")), none())
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/usr/libexec/mdmclient")), none())
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/USR/LIBEXEC/MDMCLIENT")), none())
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/opt/corp-agent/bin/a")), none())
                .is_some()
        );
        let corp = Signer {
            signing_id: Some("com.corp.agent"),
            team_id: Some("ABCDE12345"),
            platform: false,
        };
        assert!(p.refuse_kill(500, Some(Path::new("/x")), corp).is_some());
        assert!(
            p.refuse_kill(
                500,
                Some(Path::new("/usr/bin/curl")),
                Signer {
                    signing_id: Some("com.apple.curl"),
                    team_id: None,
                    platform: true
                }
            )
            .is_none()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/Users/Shared/.u")), none())
                .is_none()
        );
        // Malware signed with a protected id but by another signer is not protected.
        let fake = Signer {
            signing_id: Some("com.apple.loginwindow"),
            team_id: Some("EVILTEAM00"),
            platform: false,
        };
        assert!(
            p.refuse_kill(500, Some(Path::new("/tmp/x")), fake)
                .is_none()
        );
        let real = Signer {
            signing_id: Some("com.apple.loginwindow"),
            team_id: None,
            platform: true,
        };
        assert!(p.refuse_kill(500, Some(Path::new("/x")), real).is_some());
        let fake_jamf = Signer {
            signing_id: Some("com.jamf.management.Jamf"),
            team_id: Some("EVILTEAM00"),
            platform: false,
        };
        assert!(
            p.refuse_kill(500, Some(Path::new("/tmp/j")), fake_jamf)
                .is_none()
        );
    }

    #[test]
    fn files_their_ancestors_and_other_cases_are_refused() {
        let p = protected();
        assert!(p.refuse_file(Path::new("/System/Library/x")).is_some());
        assert!(p.refuse_file(Path::new("/usr/bin/curl")).is_some());
        assert!(
            p.refuse_file(Path::new("/USR/LOCAL/JAMF/bin/jamf"))
                .is_some()
        );
        assert!(
            p.refuse_file(Path::new("/var/lib/ward/vault/1/content"))
                .is_some()
        );
        assert!(p.refuse_file(Path::new("/VAR/LIB/WARD/ward.db")).is_some());
        assert!(
            p.refuse_file(Path::new("/var/lib")).is_some(),
            "holds the state dir"
        );
        assert!(
            p.refuse_file(Path::new("/usr/local")).is_some(),
            "holds jamf"
        );
        assert!(
            p.refuse_file(Path::new("/Library/Application Support"))
                .is_some()
        );
        assert!(p.refuse_file(Path::new("/private/var")).is_some());
        assert!(p.refuse_file(Path::new("/")).is_some());
        assert!(p.refuse_file(Path::new("/usr/local/bin/jamf")).is_some());
        assert!(p.refuse_file(Path::new("/usr/local/bin/jamfx")).is_none());
        assert!(p.refuse_file(Path::new("/Users/Shared/.u")).is_none());
        assert!(p.refuse_file(Path::new("/private/tmp/update")).is_none());
        assert!(
            p.refuse_file(Path::new("/private/etc/sudoers.d/zz-maint"))
                .is_none()
        );
        assert!(p.refuse_file(Path::new("/private/etc/sudoers")).is_some());
        assert!(p.refuse_label("com.evil.agent").is_none());
        assert!(p.refuse_label("com.apple.softwareupdated").is_some());
        assert!(p.refuse_label("com.jamf.management.daemon").is_some());
        assert!(p.refuse_label("../x").is_some());
        assert!(p.refuse_label("").is_some());
    }
}
