//! Detector: a property list written into a LaunchAgents or LaunchDaemons folder, or a
//! launch item registered with Background Task Management (MITRE ATT&CK T1543.001 Launch
//! Agent, T1543.004 Launch Daemon); a login item registered with BTM (T1547.015 Login
//! Items).
//!
//! File events seen: `create` and `rename` into the folder, and `close` of a modified
//! plist there. One act is reported once: a writer image's `create`, `close` and `rename`
//! of the same plist are one plist written (the detector remembers the last 1,024 it
//! reported). Apple's own installers and MDM-managed items are left alone. A login item
//! whose program lives in a user-writable place (a home folder, `/tmp`, `/Users/Shared`)
//! or whose instigator is ad-hoc signed or unsigned is raised to medium.

use std::collections::VecDeque;

use ward_sdk::BtmItemType;
use ward_sdk::prelude::*;

const RULE_FILE: &str = "launch-item-plist-written";
const RULE_BTM: &str = "launch-item-registered";
const RULE_LOGIN_ITEM: &str = "login-item-registered";
/// Folders any user can write: programs launched from there at login are suspicious.
const USER_WRITABLE: &[&str] = &["/Users/", "/tmp/", "/private/tmp/", "/private/var/folders/"];
/// Writers that install launch items as a matter of course.
const TRUSTED_WRITERS: &[&str] = &[
    "com.apple.installer",
    "com.apple.PackageKit.system_installd",
    "com.apple.softwareupdated",
];

/// Plists reported lately, so one act is reported once: a writer's `create` and its
/// `close` after writing are the same plist written. Protects memory against a stream of
/// distinct plists: at most this many entries, the oldest forgotten first.
const MAX_REMEMBERED: usize = 1024;
/// Longest plist path remembered (the attacker picks it): longer ones are reported each
/// time rather than kept, so the memory holds at most `MAX_REMEMBERED` x 4 KiB of paths.
const MAX_REMEMBERED_PATH: usize = 4096;

/// The detector. Remembers the (writer pid, pidversion, plist) it reported.
#[derive(Default)]
pub struct LaunchPersistence {
    reported: VecDeque<(i32, i32, String)>,
}

impl LaunchPersistence {
    /// True when this writer image already had this plist reported; otherwise remembers
    /// it (when its path is short enough) and answers false.
    fn seen(&mut self, writer: &Process, path: &str) -> bool {
        let (pid, version) = (writer.token.pid, writer.token.pidversion);
        if self
            .reported
            .iter()
            .any(|(p, v, known)| (*p, *v) == (pid, version) && known == path)
        {
            return true;
        }
        if path.len() <= MAX_REMEMBERED_PATH {
            if self.reported.len() >= MAX_REMEMBERED {
                self.reported.pop_front();
            }
            self.reported.push_back((pid, version, path.to_owned()));
        }
        false
    }
}

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

/// A login item (BTM user item, app or login item) added outside MDM.
fn login_item(item: &ward_sdk::BtmLaunchItemEvent) -> Option<Finding> {
    let login = matches!(
        item.item_type,
        BtmItemType::UserItem | BtmItemType::App | BtmItemType::LoginItem
    );
    if !item.added || item.managed || !login {
        return None;
    }
    let program = item
        .executable_path
        .clone()
        .or_else(|| item.app_url.clone())
        .unwrap_or_else(|| item.item_url.clone());
    let local = program.strip_prefix("file://").unwrap_or(&program);
    let writable = USER_WRITABLE.iter().any(|p| local.starts_with(p));
    let instigator = item.instigator.as_ref();
    let untrusted = instigator.is_some_and(|p| p.is_untrusted_code());
    let severity = if writable || untrusted {
        Severity::Medium
    } else {
        Severity::Low
    };
    Some(
        Finding::new(
            RULE_LOGIN_ITEM,
            severity,
            format!("login item registered: {} runs {program}", item.item_url),
        )
        .attack(&["T1547.015"])
        .evidence("item_url", item.item_url.clone())
        .evidence("program", program.clone())
        .evidence("user_writable", writable.to_string())
        .evidence(
            "instigator_path",
            instigator.map(|p| p.path()).unwrap_or_default(),
        )
        .evidence(
            "instigator_signer",
            instigator.map(|p| p.signer.as_str()).unwrap_or_default(),
        ),
    )
}

impl Detector for LaunchPersistence {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "launch-persistence",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "plist written to LaunchAgents/LaunchDaemons, or a launch or login item registered",
        )
        .subscribe(&["create", "rename", "close", "btm_launch_item_add"])
    }

    /// Only what it reads: paths and signing data only.
    fn parts() -> EventParts {
        EventParts::empty()
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        if let EventData::BtmLaunchItem(item) = &event.data {
            if let Some(finding) = login_item(item) {
                return Ok(vec![finding]);
            }
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
        let Some(path) = event.written_path().map(str::to_owned) else {
            return Ok(Vec::new());
        };
        let Some((scope, technique)) = launch_item_path(&path) else {
            return Ok(Vec::new());
        };
        let writer = event.process.signing_id_or_empty();
        if TRUSTED_WRITERS.contains(&writer) || self.seen(&event.process, &path) {
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
        let mut d = LaunchPersistence::default();
        let f = testing::deliver(
            &mut d,
            &testing::create(curl(), "/Library/LaunchDaemons/com.evil.plist"),
        )
        .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].attack, vec!["T1543.004"]);
        assert_eq!(f[0].severity, Severity::High);
        let f = testing::deliver(
            &mut d,
            &testing::rename(
                curl(),
                "/tmp/a",
                "/Users/bob/Library/LaunchAgents/com.evil.plist",
            ),
        )
        .unwrap();
        assert_eq!(f[0].attack, vec!["T1543.001"]);
        assert_eq!(
            testing::deliver(
                &mut d,
                &testing::close_modified(curl(), "/Library/LaunchAgents/a.plist")
            )
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn installer_and_other_paths_are_quiet() {
        let mut d = LaunchPersistence::default();
        let mut installer = testing::process(
            "/System/Library/PrivateFrameworks/PackageKit.framework/Resources/system_installd",
        );
        installer.signing_id = Some("com.apple.PackageKit.system_installd".into());
        assert!(
            testing::deliver(
                &mut d,
                &testing::create(installer, "/Library/LaunchDaemons/com.vendor.plist")
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            testing::deliver(
                &mut d,
                &testing::create(curl(), "/Library/Preferences/com.evil.plist")
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            testing::deliver(
                &mut d,
                &testing::unlink(curl(), "/Library/LaunchDaemons/com.evil.plist")
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn one_writer_writing_one_plist_is_reported_once() {
        let mut d = LaunchPersistence::default();
        let plist = "/Users/alice/Library/LaunchAgents/com.apple.updater.plist";
        let mut writer = testing::process("/private/tmp/update");
        writer.token = testing::token(705, 7051);
        assert_eq!(
            testing::deliver(&mut d, &testing::create(writer.clone(), plist))
                .unwrap()
                .len(),
            1
        );
        for again in [
            testing::close_modified(writer.clone(), plist),
            testing::rename(writer.clone(), "/tmp/x", plist),
            testing::create(writer.clone(), plist),
        ] {
            assert!(
                testing::deliver(&mut d, &again).unwrap().is_empty(),
                "{}",
                again.kind
            );
        }
        // A different plist by the same writer, or the same plist by another image
        // (another pid, or the same pid after an exec), is another act.
        let other = "/Users/alice/Library/LaunchAgents/com.apple.other.plist";
        assert_eq!(
            testing::deliver(&mut d, &testing::close_modified(writer.clone(), other))
                .unwrap()
                .len(),
            1
        );
        let mut after_exec = writer.clone();
        after_exec.token = testing::token(705, 7052);
        let mut another = writer.clone();
        another.token = testing::token(900, 7051);
        for by in [after_exec, another] {
            assert_eq!(
                testing::deliver(&mut d, &testing::create(by, plist))
                    .unwrap()
                    .len(),
                1
            );
        }
        // Registering it with BTM is a separate act and is still reported.
        assert_eq!(
            testing::deliver(&mut d, &btm(BtmItemType::Agent, "/Users/alice/x", writer))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn memory_of_reported_plists_stays_bounded() {
        let mut d = LaunchPersistence::default();
        let writer = curl();
        for i in 0..100_000 {
            let path = format!("/Library/LaunchAgents/com.evil.{i}.plist");
            assert_eq!(
                testing::deliver(&mut d, &testing::create(writer.clone(), &path))
                    .unwrap()
                    .len(),
                1
            );
        }
        assert_eq!(d.reported.len(), MAX_REMEMBERED);
        // The newest are remembered, the oldest forgotten (and reported again).
        let newest = "/Library/LaunchAgents/com.evil.99999.plist";
        assert!(
            testing::deliver(&mut d, &testing::close_modified(writer.clone(), newest))
                .unwrap()
                .is_empty()
        );
        let oldest = "/Library/LaunchAgents/com.evil.0.plist";
        assert_eq!(
            testing::deliver(&mut d, &testing::close_modified(writer.clone(), oldest))
                .unwrap()
                .len(),
            1
        );
        // Paths over the cap are not kept: reported each time, memory unchanged.
        let long = format!("/Library/LaunchAgents/{}.plist", "a".repeat(8192));
        for _ in 0..2 {
            assert_eq!(
                testing::deliver(&mut d, &testing::create(writer.clone(), &long))
                    .unwrap()
                    .len(),
                1
            );
        }
        let bytes: usize = d.reported.iter().map(|(_, _, p)| p.len()).sum();
        assert!(bytes <= MAX_REMEMBERED * MAX_REMEMBERED_PATH, "{bytes}");
        assert!(
            d.reported
                .iter()
                .all(|(_, _, p)| p.len() <= MAX_REMEMBERED_PATH)
        );
    }

    fn btm(item_type: BtmItemType, program: &str, instigator: Process) -> Event {
        testing::event(
            "btm_launch_item_add",
            testing::process(
                "/System/Library/PrivateFrameworks/BackgroundTaskManagement.framework/Resources/backgroundtaskmanagementd",
            ),
            EventData::BtmLaunchItem(ward_sdk::BtmLaunchItemEvent {
                added: true,
                instigator_token: Some(instigator.token),
                instigator: Some(instigator),
                app: None,
                executable_path: Some(program.into()),
                item_type,
                legacy: false,
                managed: false,
                uid: 501,
                item_url: format!("file://{program}"),
                app_url: None,
            }),
        )
    }

    #[test]
    fn btm_items_map_to_their_technique() {
        let mut d = LaunchPersistence::default();
        let cases = [
            (BtmItemType::Daemon, RULE_BTM, "T1543.004"),
            (BtmItemType::Agent, RULE_BTM, "T1543.001"),
            (BtmItemType::LoginItem, RULE_LOGIN_ITEM, "T1547.015"),
            (BtmItemType::App, RULE_LOGIN_ITEM, "T1547.015"),
            (BtmItemType::UserItem, RULE_LOGIN_ITEM, "T1547.015"),
        ];
        for (item_type, rule, technique) in cases {
            let f = testing::deliver(
                &mut d,
                &btm(
                    item_type,
                    "/Applications/Tool.app/Contents/MacOS/tool",
                    curl(),
                ),
            )
            .unwrap();
            assert_eq!(f.len(), 1, "{item_type:?}");
            assert_eq!(
                (f[0].rule.as_str(), f[0].attack[0].as_str()),
                (rule, technique)
            );
        }
    }

    #[test]
    fn login_items_from_writable_places_or_untrusted_instigators_are_medium() {
        let mut d = LaunchPersistence::default();
        let installed = testing::deliver(
            &mut d,
            &btm(
                BtmItemType::LoginItem,
                "/Applications/Tool.app/Contents/MacOS/tool",
                curl(),
            ),
        )
        .unwrap();
        assert_eq!(installed[0].severity, Severity::Low);
        let writable = testing::deliver(
            &mut d,
            &btm(BtmItemType::LoginItem, "/Users/Shared/.helper/run", curl()),
        )
        .unwrap();
        assert_eq!(writable[0].severity, Severity::Medium);
        assert_eq!(writable[0].evidence_value("user_writable"), Some("true"));
        let mut dropper = testing::process("/tmp/dropper");
        dropper.signer = SignerType::Adhoc;
        let untrusted = testing::deliver(
            &mut d,
            &btm(BtmItemType::App, "/Applications/Tool.app", dropper),
        )
        .unwrap();
        assert_eq!(untrusted[0].severity, Severity::Medium);
        assert_eq!(
            untrusted[0].evidence_value("instigator_signer"),
            Some("adhoc")
        );
    }

    #[test]
    fn managed_removed_and_unknown_btm_items_are_quiet() {
        let mut d = LaunchPersistence::default();
        let mut managed = btm(BtmItemType::LoginItem, "/Users/a/x", curl());
        let mut removed = managed.clone();
        if let EventData::BtmLaunchItem(i) = &mut managed.data {
            i.managed = true;
        }
        if let EventData::BtmLaunchItem(i) = &mut removed.data {
            i.added = false;
        }
        let unknown = btm(BtmItemType::Unknown, "/Users/a/x", curl());
        for event in [managed, removed, unknown] {
            assert!(
                testing::deliver(&mut d, &event).unwrap().is_empty(),
                "{event:?}"
            );
        }
    }
}
