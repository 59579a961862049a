//! Safety invariants no plugin or playbook can break: never kill or quarantine ward
//! itself, launchd, the MDM agent or what the admin protects; never quarantine or remove
//! the system's own files. Checked against what is on the Mac (the real path a file
//! resolves to, the executable a live pid runs), not against what a remediator claims.
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

/// Signing ids never killed or quarantined: launchd, the MDM client, the Jamf agents,
/// the login and window servers.
pub const PROTECTED_SIGNING_IDS: &[&str] = &[
    "com.apple.xpc.launchd",
    "com.apple.mdmclient",
    "com.apple.ManagedClient",
    "com.jamf.management.Jamf",
    "com.jamf.management.jamfAAD",
    "com.jamfsoftware.jamf",
    "com.jamf.protect.daemon",
    "com.jamf.protect.agent",
    "com.apple.loginwindow",
    "com.apple.WindowServer",
];

/// Path prefixes never quarantined or removed: the sealed system, Apple's binaries and
/// libraries, the MDM agent's files.
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
    "/private/var/db/",
    "/var/db/",
    "/usr/local/jamf/",
    "/usr/local/bin/jamf",
    "/Library/Application Support/JAMF/",
    "/Library/Application Support/JamfProtect/",
    "/Applications/JamfProtect.app",
];

/// What is protected, built from the built-in sets, the admin's `[response.protect]` and
/// the agent's own files.
#[derive(Debug, Clone)]
pub struct Protected {
    processes: Vec<String>,
    files: Vec<String>,
    signing_ids: Vec<String>,
    own: Vec<PathBuf>,
}

fn under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix) || path == prefix.trim_end_matches('/')
    } else {
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }
}

impl Protected {
    /// The protected set; `own` are the agent's executable, state directory and config.
    pub fn new(config: &ProtectConfig, own: Vec<PathBuf>) -> Self {
        let admin: Vec<String> = config
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Self {
            processes: PROTECTED_PROCESSES
                .iter()
                .map(|s| (*s).to_owned())
                .chain(admin.iter().cloned())
                .collect(),
            files: PROTECTED_FILES
                .iter()
                .map(|s| (*s).to_owned())
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

    /// Why the process `pid` running `exe` (signed `signing_id`) must not be killed.
    pub fn refuse_kill(
        &self,
        pid: i32,
        exe: Option<&Path>,
        signing_id: Option<&str>,
    ) -> Option<String> {
        if pid <= 1 {
            return Some(format!("pid {pid} is launchd or the kernel"));
        }
        if u32::try_from(pid).ok() == Some(std::process::id()) {
            return Some("that is ward itself".into());
        }
        if let Some(id) = signing_id
            && self.signing_ids.iter().any(|s| s == id)
        {
            return Some(format!("signing id {id} is protected"));
        }
        if let Some(exe) = exe {
            if self.own.iter().any(|o| o == exe) {
                return Some("that is ward itself".into());
            }
            let shown = exe.display().to_string();
            if let Some(p) = self.processes.iter().find(|p| under(&shown, p)) {
                return Some(format!("{shown} is protected ({p})"));
            }
        }
        None
    }

    /// Why the file at real path `real` must not be quarantined or removed.
    pub fn refuse_file(&self, real: &Path, signing_id: Option<&str>) -> Option<String> {
        let shown = real.display().to_string();
        if shown == "/" || !real.is_absolute() {
            return Some(format!("{shown} is not a file ward may act on"));
        }
        if let Some(o) = self
            .own
            .iter()
            .find(|o| real.starts_with(o) || o.starts_with(real))
        {
            return Some(format!("{shown} is ward's own ({})", o.display()));
        }
        if let Some(p) = self.files.iter().find(|p| under(&shown, p)) {
            return Some(format!("{shown} is protected ({p})"));
        }
        if let Some(id) = signing_id
            && self.signing_ids.iter().any(|s| s == id)
        {
            return Some(format!("signing id {id} is protected"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected::new(
            &ProtectConfig {
                paths: vec![PathBuf::from("/opt/corp-agent")],
                signing_ids: vec!["com.corp.agent".into()],
            },
            vec![
                PathBuf::from("/usr/local/bin/ward"),
                PathBuf::from("/var/lib/ward"),
            ],
        )
    }

    #[test]
    fn the_protected_are_refused_and_the_rest_allowed() {
        let p = protected();
        assert!(p.refuse_kill(1, None, None).is_some());
        assert!(p.refuse_kill(0, None, None).is_some());
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(p.refuse_kill(me, None, None).is_some());
        assert!(
            p.refuse_kill(500, Some(Path::new("/usr/local/bin/ward")), None)
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/usr/libexec/mdmclient")), None)
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/opt/corp-agent/bin/a")), None)
                .is_some()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/x")), Some("com.corp.agent"))
                .is_some()
        );
        assert!(
            p.refuse_kill(
                500,
                Some(Path::new("/usr/bin/curl")),
                Some("com.apple.curl")
            )
            .is_none()
        );
        assert!(
            p.refuse_kill(500, Some(Path::new("/Users/Shared/.u")), None)
                .is_none()
        );

        assert!(
            p.refuse_file(Path::new("/System/Library/x"), None)
                .is_some()
        );
        assert!(p.refuse_file(Path::new("/usr/bin/curl"), None).is_some());
        assert!(
            p.refuse_file(Path::new("/var/lib/ward/vault/1/content"), None)
                .is_some()
        );
        assert!(
            p.refuse_file(Path::new("/var/lib"), None).is_some(),
            "holds the state dir"
        );
        assert!(p.refuse_file(Path::new("/"), None).is_some());
        assert!(
            p.refuse_file(Path::new("/usr/local/bin/jamf"), None)
                .is_some()
        );
        assert!(
            p.refuse_file(Path::new("/usr/local/bin/jamfx"), None)
                .is_none()
        );
        assert!(p.refuse_file(Path::new("/Users/Shared/.u"), None).is_none());
        assert!(
            p.refuse_file(Path::new("/private/tmp/update"), None)
                .is_none()
        );
    }
}
