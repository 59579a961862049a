//! Collector: the Mac's persistence items, with what changed lately marked.
//!
//! Looks at launch agents and daemons (`/Library/LaunchAgents`, `/Library/LaunchDaemons`,
//! `/Users/*/Library/LaunchAgents`), Background Task Management's database, cron tables,
//! periodic scripts, shell profiles (system-wide, every user's and root's), SSH authorized
//! keys and sudoers. Artifacts:
//! - `persistence.json`: every item found, sorted by path, with size, times, SHA-256 and
//!   whether it is recent (modified or created within `recent_days` of the finding's
//!   event), plus `errors` and `truncated`;
//! - `files<path>` (e.g. `files/Library/LaunchAgents/com.evil.plist`): each item's content
//!   up to `max_file_bytes`, recent items first when the budget runs out.
//!
//! At most 4,096 items are listed. Config: `root`, `max_total_bytes`, `max_file_bytes`,
//! `recent_days`. Needs `file-read` over the locations above.

use serde_json::{Value, json};
use ward_collect::{Reader, config_u64, json_artifact, rfc3339, summary_cost};
use ward_sdk::collector_files::FileMetadata;
use ward_sdk::prelude::*;

/// Items listed at most, all locations together: bounds the hashing, the summary and the
/// time one collection takes on a Mac whose folders an attacker filled.
const MAX_ITEMS: usize = 4096;
/// Default of `max_file_bytes`: bytes of one item's content returned.
const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 10;
/// Default of `recent_days`.
const DEFAULT_RECENT_DAYS: u64 = 30;
/// Shell start-up files read in every home.
const HOME_PROFILES: &[&str] = &[
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".bash_profile",
    ".bashrc",
    ".profile",
];
/// System-wide shell start-up files.
const SYSTEM_PROFILES: &[&str] = &[
    "/etc/zshrc",
    "/etc/zprofile",
    "/etc/zshenv",
    "/etc/profile",
    "/etc/bashrc",
];

/// The collector; keeps nothing between calls.
#[derive(Default)]
pub struct PersistenceEvidence;

/// One persistence item found.
struct Item {
    path: String,
    kind: &'static str,
    meta: FileMetadata,
}

/// Walks the persistence locations, keeping at most [`MAX_ITEMS`].
struct Survey<'r> {
    reader: &'r mut Reader,
    items: Vec<Item>,
    /// Items found past the cap, only counted.
    over_cap: u64,
}

impl Survey<'_> {
    fn push(&mut self, path: String, kind: &'static str, meta: FileMetadata) {
        if meta.is_dir {
            return;
        }
        if self.items.len() >= MAX_ITEMS {
            self.over_cap += 1;
        } else {
            self.items.push(Item { path, kind, meta });
        }
    }

    /// The file `path`, if present.
    fn file(&mut self, path: &str, kind: &'static str) {
        if let Some(meta) = self.reader.metadata(path) {
            self.push(path.to_owned(), kind, meta);
        }
    }

    /// The files in directory `dir` whose name `wanted` accepts.
    fn dir(&mut self, dir: &str, kind: &'static str, wanted: impl Fn(&str) -> bool) {
        for entry in self.reader.list(dir).unwrap_or_default() {
            if wanted(&entry.name) {
                self.push(format!("{dir}/{}", entry.name), kind, entry.metadata);
            }
        }
    }

    fn walk(&mut self) {
        let all = |_: &str| true;
        let homes: Vec<String> = self
            .reader
            .list("/Users")
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.metadata.is_dir && !e.metadata.is_symlink && !e.name.starts_with('.'))
            .map(|e| format!("/Users/{}", e.name))
            .collect();
        self.dir("/Library/LaunchAgents", "launch-agent", all);
        self.dir("/Library/LaunchDaemons", "launch-daemon", all);
        for home in &homes {
            self.dir(&format!("{home}/Library/LaunchAgents"), "launch-agent", all);
        }
        self.dir(
            "/private/var/db/com.apple.backgroundtaskmanagement",
            "btm",
            |n| n.starts_with("BackgroundItems-v") && n.ends_with(".btm"),
        );
        self.dir("/usr/lib/cron/tabs", "cron", all);
        self.file("/etc/crontab", "cron");
        for period in ["daily", "weekly", "monthly"] {
            self.dir(&format!("/etc/periodic/{period}"), "periodic", all);
        }
        self.file("/etc/periodic.conf", "periodic");
        self.file("/etc/periodic.conf.local", "periodic");
        for profile in SYSTEM_PROFILES {
            self.file(profile, "shell-profile");
        }
        let root_home = "/var/root".to_owned();
        for home in homes.iter().chain([&root_home]) {
            for profile in HOME_PROFILES {
                self.file(&format!("{home}/{profile}"), "shell-profile");
            }
            self.file(&format!("{home}/.ssh/authorized_keys"), "authorized-keys");
        }
        self.file("/etc/sudoers", "sudoers");
        self.dir("/etc/sudoers.d", "sudoers", all);
    }
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".plist") || path.ends_with(".btm") {
        "application/x-plist"
    } else {
        "text/plain"
    }
}

impl Collector for PersistenceEvidence {
    fn describe() -> PluginInfo {
        Reader::describe_config(PluginInfo::new(
            "persistence-evidence",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Collector,
            "launch items, BTM, cron, periodic, shell profiles, SSH keys and sudoers, recent first",
        )
        .capability("file-read")
        .config_option(
            "max_file_bytes",
            "bytes of one item's content returned at most (default 256 KiB)",
        )
        .config_option(
            "recent_days",
            "items modified or created within this many days of the finding are recent (default 30)",
        ))
    }

    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError> {
        let mut reader = Reader::from_config()?;
        let max_file = config_u64("max_file_bytes", DEFAULT_MAX_FILE_BYTES)?;
        let recent_days = config_u64("recent_days", DEFAULT_RECENT_DAYS)?;
        let window = i64::try_from(recent_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        let since = rfc3339::seconds(&trigger.event.time).map(|t| t.saturating_sub(window));
        let recent = |m: &FileMetadata| {
            since.is_some_and(|s| m.mtime >= s || m.birthtime.is_some_and(|b| b >= s))
        };

        let mut survey = Survey {
            reader: &mut reader,
            items: Vec::new(),
            over_cap: 0,
        };
        survey.walk();
        let (mut items, over_cap) = (survey.items, survey.over_cap);
        if over_cap > 0 {
            reader.left_out(format!(
                "{over_cap} items past the {MAX_ITEMS}-item cap not listed"
            ));
        }
        items.sort_by(|a, b| a.path.cmp(&b.path));
        items.dedup_by(|a, b| a.path == b.path);

        // The listing first: every entry is paid for before any content.
        let mut entries = Vec::new();
        let mut listed = Vec::new();
        for item in &items {
            let m = &item.meta;
            let sha256 = (!m.is_symlink).then(|| reader.sha256(&item.path)).flatten();
            let entry = json!({
                "path": item.path,
                "kind": item.kind,
                "size": m.size,
                "mtime": m.mtime,
                "birthtime": m.birthtime,
                "symlink": m.is_symlink,
                "sha256": sha256,
                "recent": recent(m),
                "content_included": false,
            });
            if reader.take(summary_cost(&entry)) {
                entries.push(entry);
                listed.push(item);
            } else {
                reader.left_out(format!("{}: listing over the budget", item.path));
            }
        }

        // Then the content, recent items first.
        let mut order: Vec<usize> = (0..listed.len()).collect();
        order.sort_by_key(|i| listed.get(*i).is_none_or(|item| !recent(&item.meta)));
        let mut artifacts = Vec::new();
        for index in order {
            let Some(item) = listed.get(index) else {
                continue;
            };
            if item.meta.is_symlink {
                continue;
            }
            let want = item.meta.size.min(max_file);
            if !reader.take(want) {
                reader.left_out(format!("{}: content over the budget", item.path));
                continue;
            }
            let Some(content) = reader.read(&item.path, want) else {
                continue;
            };
            if item.meta.size > max_file {
                reader.left_out(format!(
                    "{}: first {max_file} of {} bytes",
                    item.path, item.meta.size
                ));
            }
            if let Some(entry) = entries.get_mut(index).and_then(Value::as_object_mut) {
                entry.insert("content_included".into(), json!(true));
            }
            artifacts.push(Artifact {
                name: format!("files{}", item.path),
                content_type: content_type(&item.path).to_owned(),
                content,
            });
        }
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));

        let mut summary = json!({
            "event_time": trigger.event.time,
            "recent_days": recent_days,
            "items": entries,
        });
        reader.add_notes(&mut summary);
        artifacts.insert(0, json_artifact("persistence.json", &summary));
        Ok(artifacts)
    }
}

ward_sdk::export_collector!(PersistenceEvidence);

#[cfg(test)]
mod tests;
