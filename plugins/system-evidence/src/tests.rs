use super::*;
use std::time::{Duration, SystemTime};
use ward_sdk::testing;

/// The finding's event time: far enough ahead that what the tests create now is old
/// unless dated otherwise.
const EVENT_TIME: &str = "2040-01-01T00:00:00Z";
const EVENT_SECS: u64 = 2_208_988_800;

const HISTORY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><array>
<dict><key>date</key><date>2039-12-28T10:00:00Z</date><key>displayName</key><string>Photo Viewer</string><key>displayVersion</key><string>1.0</string><key>packageIdentifiers</key><array><string>com.evil.viewer</string></array><key>processName</key><string>installer</string></dict>
<dict><key>date</key><date>2030-01-01T00:00:00Z</date><key>displayName</key><string>Old Thing</string></dict>
<dict><key>date</key><date>2039-12-30T10:00:00Z</date><key>displayName</key><string>XProtectPlistConfigData</string><key>processName</key><string>softwareupdated</string></dict>
<dict><key>displayName</key><string>No date</string></dict>
</array></plist>"#;

fn user(name: &str, uid: &str) -> String {
    format!(
        r#"<plist version="1.0"><dict>
<key>name</key><array><string>{name}</string></array>
<key>uid</key><array><string>{uid}</string></array>
<key>realname</key><array><string>{name} user</string></array>
<key>home</key><array><string>/Users/{name}</string></array>
<key>shell</key><array><string>/bin/zsh</string></array>
</dict></plist>"#
    )
}

struct Mac(tempfile::TempDir);

impl Mac {
    fn new() -> Self {
        testing::reset();
        let dir = tempfile::tempdir().unwrap();
        testing::set_config("root", dir.path().to_str().unwrap());
        Mac(dir)
    }

    fn write(&self, path: &str, content: &[u8]) -> &Self {
        let full = self.0.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
        self
    }

    /// An app bundle, dated a week before the event when `recent`.
    fn app(&self, path: &str, recent: bool) -> &Self {
        let full = self.0.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.join("Contents")).unwrap();
        if recent {
            let when = SystemTime::UNIX_EPOCH + Duration::from_secs(EVENT_SECS - 7 * 86_400);
            std::fs::File::open(&full)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        self
    }
}

fn collect() -> Value {
    let mut event = testing::exec("/Applications/Photo Viewer.app/Contents/MacOS/viewer", &[]);
    event.time = EVENT_TIME.to_owned();
    let trigger = Trigger {
        detector: "untrusted-exec".into(),
        finding: Finding::new("untrusted-exec-from-staging-path", Severity::High, "m"),
        event,
    };
    let artifacts = SystemEvidence.collect(&trigger).unwrap();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0].name, "system.json");
    serde_json::from_slice(&artifacts[0].content).unwrap()
}

#[test]
fn describes_itself_with_every_config_key() {
    let info = SystemEvidence::describe();
    assert_eq!(info.name, "system-evidence");
    assert_eq!(info.capabilities, ["file-read"]);
    let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(keys, ["recent_days", "root", "max_total_bytes"]);
}

#[test]
fn reports_applications_installs_and_accounts() {
    let mac = Mac::new();
    mac.app("/Applications/Photo Viewer.app", true)
        .app("/Applications/Safari.app", false)
        .app("/Users/alice/Applications/Tool.app", false)
        .write("/Applications/.DS_Store", b"")
        .write(INSTALL_HISTORY, HISTORY.as_bytes())
        .write(
            &format!("{USERS_NODE}/alice.plist"),
            user("alice", "501").as_bytes(),
        )
        .write(
            &format!("{USERS_NODE}/backdoor.plist"),
            user("backdoor", "502").as_bytes(),
        )
        .write(
            &format!("{USERS_NODE}/_www.plist"),
            user("_www", "70").as_bytes(),
        )
        .write(&format!("{USERS_NODE}/broken.plist"), b"<plist><dict>");
    let system = collect();

    let apps: Vec<(&str, bool)> = system["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].as_str().unwrap(), a["recent"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        apps,
        [
            ("/Applications/Photo Viewer.app", true),
            ("/Applications/Safari.app", false),
            ("/Users/alice/Applications/Tool.app", false),
        ]
    );

    let installs = system["installs"].as_array().unwrap();
    let names: Vec<&str> = installs
        .iter()
        .map(|i| i["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Photo Viewer", "XProtectPlistConfigData"]);
    assert_eq!(
        installs[0]["packageIdentifiers"],
        json!(["com.evil.viewer"])
    );
    assert_eq!(installs[0]["date"], "2039-12-28T10:00:00Z");

    let accounts = system["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    assert_eq!(accounts[0]["name"], "alice");
    assert_eq!(accounts[0]["uid"], "501");
    assert_eq!(accounts[0]["home"], "/Users/alice");
    assert_eq!(accounts[0]["shell"], "/bin/zsh");
    assert_eq!(accounts[0]["record"], format!("{USERS_NODE}/alice.plist"));
    assert_eq!(accounts[1]["name"], "backdoor");
    assert_eq!(
        accounts[1]["recent"], false,
        "created now, years before the event"
    );

    let errors = system["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{USERS_NODE}/broken.plist: not a property list"))
    );

    // A window reaching back to now makes the new accounts recent.
    testing::set_config("recent_days", "10000");
    let system = collect();
    assert_eq!(system["accounts"][1]["recent"], true);
    assert_eq!(system["installs"].as_array().unwrap().len(), 3);
}

#[test]
fn large_plists_and_many_apps_are_bounded() {
    let mac = Mac::new();
    let mut huge = HISTORY.replace("</array></plist>", "");
    while huge.len() <= 1 << 20 {
        huge.push_str("<dict><key>displayName</key><string>padding</string></dict>\n");
    }
    huge.push_str("</array></plist>");
    mac.write(INSTALL_HISTORY, huge.as_bytes());
    for i in 0..3_000 {
        mac.app(&format!("/Applications/App {i:04}.app"), false);
    }
    testing::set_config("max_total_bytes", "100000");
    let system = collect();
    let apps = system["applications"].as_array().unwrap().len();
    assert!(apps > 100 && apps < 3_000, "{apps}");
    let truncated: Vec<&str> = system["truncated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(truncated.len(), 2, "{truncated:?}");
    assert_eq!(
        truncated[0],
        format!("applications: {} entries left out", 3_000 - apps)
    );
    assert!(truncated[1].starts_with(&format!("{INSTALL_HISTORY}: ")));
    assert!(truncated[1].ends_with("over the 1048576-byte property-list cap"));
    let text = serde_json::to_vec_pretty(&system).unwrap();
    assert!(text.len() <= 100_000, "{}", text.len());
}
