//! Remove a launchd item: its plist must lie directly in one of the admin's launch
//! directories; its `Label` is read (bounded); on macOS it is booted out of its domain
//! (`system` for daemons, the owning user's `gui/<uid>` for agents) with `launchctl`,
//! then the plist goes into the vault, so undo restores it and bootstraps it again.

use std::path::Path;
use std::time::Duration;

use crate::respond::actions::Outcome;
use crate::respond::actions::script::run_bounded;

/// How long `launchctl` may take.
const LAUNCHCTL_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether `real` is a plist directly inside one of `dirs` (`~/Library/LaunchAgents`
/// stands for every home's, `/Users/<name>/Library/LaunchAgents` and
/// `/var/root/Library/LaunchAgents`).
pub fn in_launch_dir(real: &Path, dirs: &[String]) -> bool {
    if real.extension().is_none_or(|e| e != "plist") {
        return false;
    }
    let Some(parent) = real.parent() else {
        return false;
    };
    let parent = parent.display().to_string();
    dirs.iter().any(|d| match d.strip_prefix("~/") {
        Some(rest) => parent
            .strip_suffix(&format!("/{rest}"))
            .is_some_and(|home| {
                (home.starts_with("/Users/") && home.matches('/').count() == 2)
                    || home == "/var/root"
                    || home == "/private/var/root"
            }),
        None => parent == d.trim_end_matches('/'),
    })
}

/// The launchd domain an item in `real`'s directory loads into.
pub fn domain_of(real: &Path, owner_uid: u32) -> String {
    let dir = real
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if dir.ends_with("/LaunchDaemons") {
        "system".into()
    } else if dir.starts_with("/Library/") {
        // A system-wide agent: the console user's session.
        format!("gui/{}", console_uid().unwrap_or(owner_uid))
    } else {
        format!("gui/{owner_uid}")
    }
}

fn console_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/dev/console").ok().map(|m| m.uid())
}

/// The `Label` of the plist `entry` (read through the handle the path resolved to, as the
/// `plist-read` grant reads: a regular file, at most 1 MiB, `ward-plist-json`'s budgets).
pub fn label_of(entry: &crate::sandbox::grants::Resolved) -> Result<String, String> {
    let (file, meta) = entry.open_regular().map_err(|e| format!("{e:?}"))?;
    let json = crate::sandbox::host_api::enrich::read_plist_from(file, &meta, &entry.real)?;
    let value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("{}: {e}", entry.real.display()))?;
    value
        .get("Label")
        .and_then(|l| l.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no Label", entry.real.display()))
}

/// `launchctl bootout <domain>/<label>` on macOS; elsewhere nothing to unload.
pub fn bootout(domain: &str, label: &str) -> Outcome {
    if !cfg!(target_os = "macos") {
        return Outcome::new("launchctl is not on this system: the plist is removed only");
    }
    let target = format!("{domain}/{label}");
    match run_bounded(
        Path::new("/bin/launchctl"),
        &["bootout".to_owned(), target.clone()],
        &[],
        LAUNCHCTL_TIMEOUT,
        4096,
    ) {
        Ok(run) if run.code == Some(0) => Outcome::new(format!("booted out {target}")),
        Ok(run) => Outcome::new(format!(
            "launchctl bootout {target} answered {:?} (not loaded?): {}",
            run.code,
            run.stderr.trim()
        )),
        Err(e) => Outcome::new(format!("launchctl bootout {target}: {e}")),
    }
}

/// `launchctl bootstrap <domain> <path>` on macOS (after a restore).
pub fn bootstrap(domain: &str, path: &str) -> String {
    if !cfg!(target_os = "macos") {
        return "launchctl is not on this system: the plist is restored only".into();
    }
    match run_bounded(
        Path::new("/bin/launchctl"),
        &["bootstrap".to_owned(), domain.to_owned(), path.to_owned()],
        &[],
        LAUNCHCTL_TIMEOUT,
        4096,
    ) {
        Ok(run) if run.code == Some(0) => format!("bootstrapped {path} into {domain}"),
        Ok(run) => format!(
            "launchctl bootstrap {domain} {path} answered {:?}: {}",
            run.code,
            run.stderr.trim()
        ),
        Err(e) => format!("launchctl bootstrap: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plists_directly_in_launch_dirs_qualify() {
        let dirs: Vec<String> = crate::config::response::ResponseConfig::default().launch_dirs;
        let ok = |p: &str| in_launch_dir(Path::new(p), &dirs);
        assert!(ok("/Library/LaunchDaemons/com.evil.plist"));
        assert!(ok("/Library/LaunchAgents/com.evil.plist"));
        assert!(ok(
            "/Users/alice/Library/LaunchAgents/com.apple.updater.plist"
        ));
        assert!(ok("/var/root/Library/LaunchAgents/x.plist"));
        assert!(!ok("/Users/alice/Library/LaunchAgents/sub/x.plist"));
        assert!(!ok("/Users/alice/Library/LaunchAgents/x.txt"));
        assert!(!ok("/etc/passwd"));
        assert!(!ok("/Users/a/b/Library/LaunchAgents/x.plist"));
        assert_eq!(
            domain_of(Path::new("/Library/LaunchDaemons/x.plist"), 501),
            "system"
        );
        assert_eq!(
            domain_of(Path::new("/Users/alice/Library/LaunchAgents/x.plist"), 501),
            "gui/501"
        );
    }
}
