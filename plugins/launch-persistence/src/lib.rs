//! Detector: a property list written into a LaunchAgents or LaunchDaemons folder, or a
//! launch item registered with Background Task Management (MITRE ATT&CK T1543.001 Launch
//! Agent, T1543.004 Launch Daemon).
//!
//! File events seen: `create` and `rename` into the folder, and `close` of a modified
//! plist there. Apple's own installers and MDM-managed items are left alone.

use ward_sdk::BtmItemType;
use ward_sdk::prelude::*;

const RULE_FILE: &str = "launch-item-plist-written";
const RULE_BTM: &str = "launch-item-registered";
/// Writers that install launch items as a matter of course.
const TRUSTED_WRITERS: &[&str] = &[
    "com.apple.installer",
    "com.apple.PackageKit.system_installd",
    "com.apple.softwareupdated",
];

/// The detector; stateless.
#[derive(Default)]
pub struct LaunchPersistence;

/// `Some((scope, technique))` when `path` is a plist directly inside a launchd folder.
pub fn launch_item_path(path: &str) -> Option<(&'static str, &'static str)> {
    if !path.ends_with(".plist") {
        return None;
    }
    let dir = path.rsplit_once('/')?.0;
    if dir == "/Library/LaunchDaemons" {
        Some(("system daemon", "T1543.004"))
    } else if dir == "/Library/LaunchAgents" {
        Some(("system agent", "T1543.001"))
    } else if dir.starts_with("/Users/")
        && dir.ends_with("/Library/LaunchAgents")
        && dir.matches('/').count() == 4
    {
        Some(("user agent", "T1543.001"))
    } else {
        None
    }
}

fn written_path(event: &Event) -> Option<String> {
    match &event.data {
        EventData::Create(c) => Some(c.path.clone()),
        EventData::Rename(r) => Some(r.destination_path.clone()),
        EventData::Close(c) if c.modified => Some(c.target.path.clone()),
        _ => None,
    }
}

impl Detector for LaunchPersistence {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "launch-persistence",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "plist written to LaunchAgents/LaunchDaemons, or a launch item registered",
        )
        .subscribe(&["create", "rename", "close", "btm_launch_item_add"])
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        if let EventData::BtmLaunchItem(item) = &event.data {
            let daemon = matches!(item.item_type, BtmItemType::Daemon);
            let agent = matches!(item.item_type, BtmItemType::Agent);
            if !item.added || item.managed || !(daemon || agent) {
                return Ok(Vec::new());
            }
            let technique = if daemon { "T1543.004" } else { "T1543.001" };
            let program = item.executable_path.clone().unwrap_or_default();
            return Ok(vec![
                Finding::new(
                    RULE_BTM,
                    Severity::Medium,
                    format!(
                        "launch {} registered: {} runs {program}",
                        if daemon { "daemon" } else { "agent" },
                        item.item_url
                    ),
                )
                .attack(&[technique])
                .evidence("item_url", item.item_url.clone())
                .evidence("executable_path", program)
                .evidence("legacy", item.legacy.to_string()),
            ]);
        }
        let Some(path) = written_path(event) else {
            return Ok(Vec::new());
        };
        let Some((scope, technique)) = launch_item_path(&path) else {
            return Ok(Vec::new());
        };
        let writer = event.process.signing_id_or_empty();
        if TRUSTED_WRITERS.contains(&writer) {
            return Ok(Vec::new());
        }
        Ok(vec![
            Finding::new(
                RULE_FILE,
                if scope == "system daemon" {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!("{} wrote {scope} plist {path}", event.process.path()),
            )
            .attack(&[technique])
            .evidence("plist", path)
            .evidence("scope", scope)
            .evidence("writer_path", event.process.path())
            .evidence("writer_signing_id", writer)
            .evidence("event", event.kind.clone()),
        ])
    }
}

ward_sdk::export_detector!(LaunchPersistence);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn curl() -> Process {
        testing::process("/usr/bin/curl")
    }

    #[test]
    fn classifies_launchd_folders() {
        assert_eq!(
            launch_item_path("/Library/LaunchDaemons/com.evil.plist"),
            Some(("system daemon", "T1543.004"))
        );
        assert_eq!(
            launch_item_path("/Library/LaunchAgents/com.evil.plist"),
            Some(("system agent", "T1543.001"))
        );
        assert_eq!(
            launch_item_path("/Users/bob/Library/LaunchAgents/x.plist"),
            Some(("user agent", "T1543.001"))
        );
        assert_eq!(
            launch_item_path("/Users/bob/Library/LaunchAgents/sub/x.plist"),
            None
        );
        assert_eq!(
            launch_item_path("/Users/bob/Library/LaunchAgents/x.txt"),
            None
        );
        assert_eq!(launch_item_path("/Library/Preferences/x.plist"), None);
    }

    #[test]
    fn create_rename_and_modified_close_fire() {
        let mut d = LaunchPersistence;
        let f = d
            .on_event(&testing::create(
                curl(),
                "/Library/LaunchDaemons/com.evil.plist",
            ))
            .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].attack, vec!["T1543.004"]);
        assert_eq!(f[0].severity, Severity::High);
        let f = d
            .on_event(&testing::rename(
                curl(),
                "/tmp/a",
                "/Users/bob/Library/LaunchAgents/com.evil.plist",
            ))
            .unwrap();
        assert_eq!(f[0].attack, vec!["T1543.001"]);
        assert_eq!(
            d.on_event(&testing::close_modified(
                curl(),
                "/Library/LaunchAgents/a.plist"
            ))
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn installer_and_other_paths_are_quiet() {
        let mut d = LaunchPersistence;
        let mut installer = testing::process(
            "/System/Library/PrivateFrameworks/PackageKit.framework/Resources/system_installd",
        );
        installer.signing_id = Some("com.apple.PackageKit.system_installd".into());
        assert!(
            d.on_event(&testing::create(
                installer,
                "/Library/LaunchDaemons/com.vendor.plist"
            ))
            .unwrap()
            .is_empty()
        );
        assert!(
            d.on_event(&testing::create(
                curl(),
                "/Library/Preferences/com.evil.plist"
            ))
            .unwrap()
            .is_empty()
        );
        assert!(
            d.on_event(&testing::unlink(
                curl(),
                "/Library/LaunchDaemons/com.evil.plist"
            ))
            .unwrap()
            .is_empty()
        );
    }
}
