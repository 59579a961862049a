//! Collector: what changed on the Mac lately. One artifact, `system.json`:
//! - `applications`: the `.app` bundles in `/Applications` and `/Users/*/Applications`,
//!   with birth and modification times, marked recent;
//! - `installs`: the entries of `/Library/Receipts/InstallHistory.plist` dated within
//!   `recent_days` of the finding's event;
//! - `accounts`: local users (`/private/var/db/dslocal/nodes/Default/users/*.plist`,
//!   without the `_` service accounts), with when their record was created, marked recent;
//!
//! plus `errors` and `truncated`. "Recent" is within `recent_days` (default 14) before the
//! finding's event time, or after it; nothing is recent when that time cannot be parsed.
//! Config: `root`, `max_total_bytes`, `recent_days`. Needs `file-read` over those paths.

use serde_json::{Value, json};
use ward_collect::{Reader, config_u64, json_artifact, rfc3339, summary_cost};
use ward_sdk::prelude::*;

/// Default of `recent_days`.
const DEFAULT_RECENT_DAYS: u64 = 14;
/// Largest property list read: a plist must be parsed whole, so a larger one is reported
/// as left out rather than read.
const MAX_PLIST_BYTES: u64 = 1 << 20;
/// Nesting read in those property lists: install history and user records are three
/// levels deep.
const MAX_PLIST_DEPTH: usize = 16;
/// Entries kept per section, on top of the byte budget.
const MAX_ENTRIES: usize = 4096;
const INSTALL_HISTORY: &str = "/Library/Receipts/InstallHistory.plist";
const USERS_NODE: &str = "/private/var/db/dslocal/nodes/Default/users";

/// The collector; keeps nothing between calls.
#[derive(Default)]
pub struct SystemEvidence;

/// One section of `system.json`, bounded by [`MAX_ENTRIES`] and the reader's budget.
struct Section {
    name: &'static str,
    entries: Vec<Value>,
    left_out: u64,
}

impl Section {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            entries: Vec::new(),
            left_out: 0,
        }
    }

    fn push(&mut self, reader: &mut Reader, entry: Value) {
        if self.entries.len() < MAX_ENTRIES && reader.take(summary_cost(&entry)) {
            self.entries.push(entry);
        } else {
            self.left_out += 1;
        }
    }

    /// The entries sorted by `key`, noting in `reader` what was left out.
    fn finish(mut self, reader: &mut Reader, key: &[&str]) -> Value {
        if self.left_out > 0 {
            reader.left_out(format!("{}: {} entries left out", self.name, self.left_out));
        }
        let sort_key =
            |v: &Value| -> Vec<String> { key.iter().map(|k| v[*k].to_string()).collect() };
        self.entries.sort_by_cached_key(sort_key);
        Value::Array(self.entries)
    }
}

/// Reads and parses the property list at `path`, within [`MAX_PLIST_BYTES`].
fn plist(reader: &mut Reader, path: &str, size: u64) -> Option<Value> {
    if size > MAX_PLIST_BYTES {
        reader.left_out(format!(
            "{path}: {size} bytes is over the {MAX_PLIST_BYTES}-byte property-list cap"
        ));
        return None;
    }
    let bytes = reader.read(path, MAX_PLIST_BYTES)?;
    ward_plist_json::parse(&bytes, MAX_PLIST_DEPTH)
        .map_err(|why| reader.error(path, &why))
        .ok()
}

/// The first element of the user record's array `key`.
fn first<'v>(record: &'v Value, key: &str) -> &'v Value {
    record
        .get(key)
        .and_then(|v| v.get(0))
        .unwrap_or(&Value::Null)
}

fn applications(reader: &mut Reader, recent: &dyn Fn(i64) -> bool) -> Value {
    let mut section = Section::new("applications");
    let mut folders = vec!["/Applications".to_owned()];
    for home in reader.list("/Users").unwrap_or_default() {
        if home.metadata.is_dir && !home.name.starts_with('.') {
            folders.push(format!("/Users/{}/Applications", home.name));
        }
    }
    for folder in folders {
        for app in reader.list(&folder).unwrap_or_default() {
            if !app.name.ends_with(".app") {
                continue;
            }
            let m = &app.metadata;
            let entry = json!({
                "path": format!("{folder}/{}", app.name),
                "birthtime": m.birthtime,
                "mtime": m.mtime,
                "recent": recent(m.mtime) || m.birthtime.is_some_and(recent),
            });
            section.push(reader, entry);
        }
    }
    section.finish(reader, &["path"])
}

fn installs(reader: &mut Reader, recent: &dyn Fn(i64) -> bool) -> Value {
    let mut section = Section::new("installs");
    let history = reader
        .metadata(INSTALL_HISTORY)
        .and_then(|m| plist(reader, INSTALL_HISTORY, m.size));
    for install in history
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let date = install.get("date").and_then(Value::as_str);
        if !date.and_then(rfc3339::seconds).is_some_and(recent) {
            continue;
        }
        let field = |k: &str| install.get(k).cloned().unwrap_or(Value::Null);
        let entry = json!({
            "date": date,
            "displayName": field("displayName"),
            "displayVersion": field("displayVersion"),
            "packageIdentifiers": field("packageIdentifiers"),
            "processName": field("processName"),
        });
        section.push(reader, entry);
    }
    section.finish(reader, &["date", "displayName"])
}

fn accounts(reader: &mut Reader, recent: &dyn Fn(i64) -> bool) -> Value {
    let mut section = Section::new("accounts");
    for file in reader.list(USERS_NODE).unwrap_or_default() {
        if file.name.starts_with('_') || !file.name.ends_with(".plist") || file.metadata.is_dir {
            continue;
        }
        let path = format!("{USERS_NODE}/{}", file.name);
        let Some(record) = plist(reader, &path, file.metadata.size) else {
            continue;
        };
        let name = first(&record, "name");
        if name.as_str().is_some_and(|n| n.starts_with('_')) {
            continue;
        }
        let created = file.metadata.birthtime.unwrap_or(file.metadata.mtime);
        let entry = json!({
            "name": name,
            "uid": first(&record, "uid"),
            "realname": first(&record, "realname"),
            "home": first(&record, "home"),
            "shell": first(&record, "shell"),
            "record": path,
            "created": created,
            "recent": recent(created),
        });
        section.push(reader, entry);
    }
    section.finish(reader, &["name", "record"])
}

impl Collector for SystemEvidence {
    fn describe() -> PluginInfo {
        Reader::describe_config(
            PluginInfo::new(
                "system-evidence",
                env!("CARGO_PKG_VERSION"),
                PluginKind::Collector,
                "recently installed applications and packages, and local accounts",
            )
            .capability("file-read")
            .config_option(
                "recent_days",
                "what changed within this many days of the finding is recent (default 14)",
            ),
        )
    }

    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError> {
        let mut reader = Reader::from_config()?;
        let recent_days = config_u64("recent_days", DEFAULT_RECENT_DAYS)?;
        let window = i64::try_from(recent_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        let since = rfc3339::seconds(&trigger.event.time).map(|t| t.saturating_sub(window));
        let recent = |t: i64| since.is_some_and(|s| t >= s);

        let applications = applications(&mut reader, &recent);
        let installs = installs(&mut reader, &recent);
        let accounts = accounts(&mut reader, &recent);
        let mut summary = json!({
            "event_time": trigger.event.time,
            "recent_days": recent_days,
            "applications": applications,
            "installs": installs,
            "accounts": accounts,
        });
        reader.add_notes(&mut summary);
        Ok(vec![json_artifact("system.json", &summary)])
    }
}

ward_sdk::export_collector!(SystemEvidence);

#[cfg(test)]
mod tests;
