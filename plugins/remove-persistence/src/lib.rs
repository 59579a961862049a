//! Remediator: undo the persistence a finding names. From the finding's evidence:
//! - `plist`, `item_url` (a `file://` URL) and `path`: a `.plist` directly inside a
//!   `LaunchAgents` or `LaunchDaemons` folder → `remove-launch-item`;
//! - `executable_path` and `program`: the program the item runs, when it lives where any
//!   user can write (`/Users/`, `/tmp/`, `/private/tmp/`, `/private/var/folders/`) →
//!   `quarantine-file`.
//!
//! Each path planned once. Paths that are not absolute and normalised (`.`, `..`, `//`)
//! and anything under `/System/` are never planned: the evidence is text an attacker can
//! shape.

use ward_sdk::prelude::*;

/// Evidence fields that may name a launch item's property list.
const PLIST_FIELDS: &[&str] = &["plist", "item_url", "path"];
/// Evidence fields that may name the program a launch item runs.
const PROGRAM_FIELDS: &[&str] = &["executable_path", "program"];
/// Where any user can write: a program there is the attacker's, not an installed one.
const USER_WRITABLE: &[&str] = &["/Users/", "/tmp/", "/private/tmp/", "/private/var/folders/"];

/// The remediator; keeps nothing between calls.
#[derive(Default)]
pub struct RemovePersistence;

/// `%XX` escapes decoded; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The local path an evidence value names: a path, or a `file://` URL (percent-decoded).
/// `None` unless the result is absolute, normalised and outside `/System/`.
pub fn local_path(value: &str) -> Option<String> {
    let path = match value.strip_prefix("file://") {
        Some(rest) => percent_decode(rest.strip_prefix("localhost").unwrap_or(rest))?,
        None => value.to_owned(),
    };
    let path = match path.strip_suffix('/') {
        Some(dir) if !dir.is_empty() => dir.to_owned(),
        _ => path,
    };
    let normalised = path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .skip(1)
            .all(|part| !matches!(part, "" | "." | ".."));
    (normalised && !path.starts_with("/System/")).then_some(path)
}

/// True for a `.plist` directly inside a `LaunchAgents` or `LaunchDaemons` folder.
pub fn is_launch_item(path: &str) -> bool {
    let folder = path
        .rsplit_once('/')
        .and_then(|(dir, _)| dir.rsplit_once('/'))
        .map(|(_, name)| name);
    path.ends_with(".plist") && matches!(folder, Some("LaunchAgents" | "LaunchDaemons"))
}

impl Remediator for RemovePersistence {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "remove-persistence",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Remediator,
            "remove the launch item a finding names and quarantine the program it runs",
        )
        .capability("remove-launch-item")
        .capability("quarantine-file")
    }

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        let finding = &trigger.finding;
        let why = format!("finding {} from {}", finding.rule, trigger.detector);
        let paths = |fields: &[&str]| -> Vec<String> {
            let mut found: Vec<String> = Vec::new();
            for value in fields.iter().filter_map(|f| finding.evidence_value(f)) {
                if let Some(path) = local_path(value).filter(|p| !found.contains(p)) {
                    found.push(path);
                }
            }
            found
        };
        let mut plan = Vec::new();
        for path in paths(PLIST_FIELDS)
            .into_iter()
            .filter(|p| is_launch_item(p))
        {
            let reason = format!("{why}: remove the launch item {path}");
            plan.push(PlannedAction::new(Action::RemoveLaunchItem(path), reason));
        }
        for path in paths(PROGRAM_FIELDS)
            .into_iter()
            .filter(|p| USER_WRITABLE.iter().any(|w| p.starts_with(w)))
        {
            let reason = format!("{why}: quarantine {path}, the program the launch item runs");
            plan.push(PlannedAction::new(Action::QuarantineFile(path), reason));
        }
        Ok(plan)
    }
}

ward_sdk::export_remediator!(RemovePersistence);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn trigger(finding: Finding) -> Trigger {
        Trigger {
            detector: "launch-persistence".into(),
            finding,
            event: testing::create(
                testing::process("/private/tmp/update"),
                "/Users/alice/Library/LaunchAgents/com.apple.updater.plist",
            ),
        }
    }

    /// The plan as `(action, path)` pairs.
    fn actions(finding: Finding) -> Vec<(&'static str, String)> {
        RemovePersistence
            .plan(&trigger(finding))
            .unwrap()
            .into_iter()
            .map(|p| match p.action {
                Action::RemoveLaunchItem(path) => ("remove-launch-item", path),
                Action::QuarantineFile(path) => ("quarantine-file", path),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn describes_its_capabilities() {
        let info = RemovePersistence::describe();
        assert_eq!(info.name, "remove-persistence");
        assert_eq!(info.capabilities, ["remove-launch-item", "quarantine-file"]);
        assert!(info.config.is_empty());
    }

    #[test]
    fn removes_the_plist_and_quarantines_a_writable_program_once() {
        let plist = "/Users/alice/Library/LaunchAgents/com.apple.updater.plist";
        let finding = Finding::new("launch-item-registered", Severity::Medium, "m")
            .evidence(
                "item_url",
                "file:///Users/alice/Library/LaunchAgents/com.apple.updater.plist",
            )
            .evidence("plist", plist)
            .evidence(
                "executable_path",
                "/Users/alice/Library/Application Support/.updater/agent",
            );
        let plan = RemovePersistence.plan(&trigger(finding.clone())).unwrap();
        assert!(plan[0].reason.contains("launch-item-registered"));
        assert!(plan[0].reason.contains(plist));
        assert_eq!(
            actions(finding),
            [
                ("remove-launch-item", plist.to_owned()),
                (
                    "quarantine-file",
                    "/Users/alice/Library/Application Support/.updater/agent".to_owned()
                )
            ]
        );
    }

    #[test]
    fn decodes_file_urls() {
        assert_eq!(
            local_path("file:///Library/LaunchDaemons/com.evil%20helper.plist").as_deref(),
            Some("/Library/LaunchDaemons/com.evil helper.plist")
        );
        assert_eq!(
            local_path("file://localhost/Users/Shared/.u").as_deref(),
            Some("/Users/Shared/.u")
        );
        assert_eq!(
            local_path("file:///Applications/Tool.app/").as_deref(),
            Some("/Applications/Tool.app")
        );
        for bad in [
            "file:///x%2",
            "file:///x%zz",
            "file:///x%ff",
            "relative/x.plist",
            "/Users/../Library/LaunchDaemons/x.plist",
            "/Users//x",
            "/System/Library/LaunchDaemons/com.apple.x.plist",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_launchd_folders_and_writable_programs_are_planned() {
        assert!(is_launch_item("/Library/LaunchDaemons/x.plist"));
        assert!(is_launch_item("/Users/bob/Library/LaunchAgents/x.plist"));
        assert!(!is_launch_item("/Library/LaunchDaemons/sub/x.plist"));
        assert!(!is_launch_item("/Library/LaunchDaemons/x.sh"));
        assert!(!is_launch_item("/Library/Preferences/x.plist"));

        let finding = Finding::new("login-item-registered", Severity::Medium, "m")
            .evidence("item_url", "file:///Users/Shared/.u")
            .evidence("program", "/Users/Shared/.u")
            .evidence("path", "/etc/hosts");
        assert_eq!(
            actions(finding),
            [("quarantine-file", "/Users/Shared/.u".to_owned())]
        );
        let installed = Finding::new("launch-item-registered", Severity::Medium, "m")
            .evidence(
                "executable_path",
                "/Applications/Tool.app/Contents/MacOS/tool",
            )
            .evidence("path", "/private/tmp/../../Library/LaunchDaemons/x.plist");
        assert!(actions(installed).is_empty());
    }
}
