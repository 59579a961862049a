//! Detector: runs Jamf Protect custom analytics — the YAML format of Jamf's public library,
//! NSPredicate filters over `$event` — on Endpoint Security events.
//!
//! The public corpus is bundled (MIT, see `analytics/NOTICE.md`). Each event is mapped once
//! to the Jamf event model (`GPProcessEvent` from exec/exit, `GPFSEvent` from
//! create/rename/unlink/close/write with Jamf's type codes, parent and responsible from the
//! agent's process table, `signerType` from the signer class), then every analytic of that
//! input type is evaluated in `level` order; an analytic that fires adds its name and tags
//! to `$tags` and its context values to `$context` for higher levels.

use serde_json::{Map, Value, json};
use ward_predicate::{Analytic, Predicate, Vars};
use ward_sdk::prelude::*;
use ward_sdk::{AuditToken, Destination, File};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Jamf `signerType` codes: 0 Apple, 1 App Store, 2 Developer ID, 3 ad hoc, 4 unsigned.
fn signer_code(signer: SignerType) -> i64 {
    match signer {
        SignerType::Apple => 0,
        SignerType::AppStore => 1,
        SignerType::DeveloperId | SignerType::Development => 2,
        SignerType::Adhoc => 3,
        SignerType::Unsigned => 4,
    }
}

fn signing_info(p: &Process) -> Value {
    json!({
        "appid": p.signing_id.clone().unwrap_or_default(),
        "teamid": p.team_id.clone().unwrap_or_default(),
        "signerType": signer_code(p.signer),
        "cdhash": p.cdhash.clone().unwrap_or_default(),
    })
}

/// A process in the Jamf model. `args` come from the exec (for the acting process) or are
/// unknown (empty) for relatives.
fn process(p: &Process, args: &[String]) -> Value {
    json!({
        "pid": p.token.pid,
        "path": p.path(),
        "name": p.name(),
        "args": args,
        "commandLine": args.join(" "),
        "tty": p.tty.as_ref().map(|t| Value::String(t.path.clone())).unwrap_or(Value::Null),
        "isShell": p.is_shell(),
        "signingInfo": signing_info(p),
    })
}

/// The acting process with `parent` and `responsible` resolved through the process table.
fn process_with_relatives(p: &Process, args: &[String]) -> Value {
    let mut value = process(p, args);
    let relative = |token: Option<AuditToken>| {
        token
            .filter(|t| (t.pid, t.pidversion) != (p.token.pid, p.token.pidversion))
            .and_then(ward_sdk::process::lookup)
    };
    if let Value::Object(map) = &mut value {
        map.insert(
            "parent".into(),
            relative(p.parent_token).map_or(Value::Null, |q| process(&q, &[])),
        );
        map.insert(
            "responsible".into(),
            relative(p.responsible_token).map_or(Value::Null, |q| process(&q, &[])),
        );
    }
    value
}

fn is_dir(file: &File) -> bool {
    file.stat
        .as_ref()
        .is_some_and(|s| s.mode & 0o170000 == 0o040000)
}

/// Maps an event to (inputType, Jamf event), or `None` for kinds analytics do not see.
pub fn jamf_event(event: &Event) -> Option<(&'static str, Value)> {
    let actor = || process_with_relatives(&event.process, &[]);
    let fs =
        |kind: i64, path: &str, prev: Option<&str>, new: bool, new_dir: bool, modified: bool| {
            json!({
                "type": kind,
                "path": path,
                "prevFile": prev,
                "isNew": new,
                "isNewFile": new && !new_dir,
                "isNewDirectory": new_dir,
                "isModified": modified,
                "file": {"path": path},
                "process": actor(),
            })
        };
    Some(match &event.data {
        EventData::Exec(exec) => (
            "GPProcessEvent",
            json!({
                "type": 1,
                "process": process_with_relatives(&exec.target, &exec.args),
            }),
        ),
        EventData::Exit(exit) => {
            let mut p = process_with_relatives(&event.process, &[]);
            if let Value::Object(map) = &mut p {
                map.insert(
                    "exitCode".into(),
                    exit.exit_code.map_or(Value::Null, Value::from),
                );
            }
            ("GPProcessEvent", json!({"type": 2, "process": p}))
        }
        EventData::Create(c) => {
            let dir = match &c.destination {
                Destination::NewPath(n) => n.mode.is_some_and(|m| m & 0o170000 == 0o040000),
                Destination::ExistingFile(f) => is_dir(f),
            };
            (
                "GPFSEvent",
                fs(if dir { 7 } else { 0 }, &c.path, None, true, dir, false),
            )
        }
        // A rename changes the file at its destination: editors save by renaming a temporary
        // over the original, and Jamf's trash analytics expect moved bundles as modified.
        EventData::Rename(r) => (
            "GPFSEvent",
            fs(
                3,
                &r.destination_path,
                Some(&r.source.path),
                false,
                false,
                true,
            ),
        ),
        EventData::Unlink(u) => (
            "GPFSEvent",
            fs(1, &u.target.path, None, false, false, false),
        ),
        EventData::Close(c) if c.modified => {
            ("GPFSEvent", fs(4, &c.target.path, None, false, false, true))
        }
        EventData::Write(f) => ("GPFSEvent", fs(4, &f.path, None, false, false, true)),
        _ => return None,
    })
}

/// Finding severity from the analytic's.
fn severity(s: &str) -> Severity {
    match s.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Informational,
    }
}

/// ATT&CK technique ids among an analytic's tags and MITRE categories.
fn techniques(a: &Analytic) -> Vec<String> {
    a.tags
        .iter()
        .chain(&a.mitre)
        .filter(|t| {
            t.len() >= 5
                && t.starts_with('T')
                && t.get(1..5)
                    .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The detector: the loaded analytics, by level.
pub struct JamfAnalytics {
    analytics: Vec<Analytic>,
}

impl Default for JamfAnalytics {
    fn default() -> Self {
        let mut analytics = Vec::new();
        for (path, yaml) in BUNDLED {
            match ward_predicate::parse_analytic(yaml) {
                Ok(a) => analytics.push(a),
                Err(e) => ward_sdk::log::info(&format!("analytic {path} skipped: {e}")),
            }
        }
        Self::with(analytics)
    }
}

impl JamfAnalytics {
    /// A detector over `analytics` (sorted by level, stable).
    pub fn with(mut analytics: Vec<Analytic>) -> Self {
        analytics.sort_by_key(|a| a.level);
        Self { analytics }
    }

    /// Number of loaded analytics.
    pub fn len(&self) -> usize {
        self.analytics.len()
    }

    /// True when none loaded.
    pub fn is_empty(&self) -> bool {
        self.analytics.is_empty()
    }
}

impl Detector for JamfAnalytics {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "jamf-analytics",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "Jamf Protect custom analytics (the public corpus is bundled)",
        )
        .subscribe(&[
            "exec", "exit", "create", "rename", "unlink", "close", "write",
        ])
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let Some((input_type, jamf)) = jamf_event(event) else {
            return Ok(Vec::new());
        };
        let mut vars = Vars::new(&jamf);
        let mut tags: Vec<Value> = Vec::new();
        let mut context = Map::new();
        let mut findings = Vec::new();
        for a in &self.analytics {
            if a.input_type != input_type || !a.filter.eval(&vars) {
                continue;
            }
            let mut finding = Finding::new(
                &a.name,
                severity(&a.severity),
                format!("Jamf analytic {}: {}", a.name, a.description),
            )
            .attack(&techniques(a).iter().map(String::as_str).collect::<Vec<_>>())
            .evidence("input_type", input_type)
            .evidence("categories", a.categories.join(", "));
            for (label, exprs) in &a.context {
                let values: Vec<String> = exprs
                    .iter()
                    .map(|e| text(&Predicate::resolve(e, &vars)))
                    .filter(|v| !v.is_empty())
                    .collect();
                if let Some(first) = values.first() {
                    context.insert(label.clone(), json!({"value": first}));
                    finding = finding.evidence(label, values.join(" | "));
                }
            }
            tags.push(Value::String(a.name.clone()));
            tags.extend(a.tags.iter().cloned().map(Value::String));
            // Higher levels see what this one found; only rebuilt when something fired.
            vars.tags = std::borrow::Cow::Owned(Value::Array(tags.clone()));
            vars.context = std::borrow::Cow::Owned(Value::Object(context.clone()));
            findings.push(finding);
        }
        Ok(findings)
    }
}

ward_sdk::export_detector!(JamfAnalytics);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use ward_sdk::testing;

    /// Loading compiles every filter's regular expressions: do it once per test binary.
    fn analytics() -> Vec<Analytic> {
        static LOADED: OnceLock<Vec<Analytic>> = OnceLock::new();
        LOADED
            .get_or_init(|| JamfAnalytics::default().analytics)
            .clone()
    }

    fn fired(event: &Event) -> Vec<String> {
        JamfAnalytics::with(analytics())
            .on_event(event)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    fn exec(path: &str, signing_id: &str, args: &[&str]) -> Event {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        testing::exec_of(p, args)
    }

    fn with_tty(mut event: Event) -> Event {
        if let EventData::Exec(e) = &mut event.data {
            e.target.tty = Some(testing::file("/dev/ttys001"));
        }
        event
    }

    #[test]
    fn the_bundled_corpus_loads_all_well_formed_analytics() {
        assert_eq!(BUNDLED.len(), 80);
        assert_eq!(JamfAnalytics::default().len(), 77);
    }

    /// (analytic, event that must fire it, near miss that must not).
    #[test]
    fn analytics_fire_on_their_pattern_and_not_on_near_misses() {
        let cases: Vec<(&str, Event, Event)> = vec![
            (
                "XattrExtendedAttributesActivity",
                exec(
                    "/usr/bin/xattr",
                    "com.apple.xattr",
                    &[
                        "xattr",
                        "-d",
                        "com.apple.quarantine",
                        "/Users/a/Downloads/X.app",
                    ],
                ),
                exec(
                    "/usr/bin/xattr",
                    "com.apple.xattr",
                    &[
                        "xattr",
                        "-p",
                        "com.apple.quarantine",
                        "/Users/a/Downloads/X.app",
                    ],
                ),
            ),
            (
                "AdhocCodesigning",
                exec(
                    "/usr/bin/codesign",
                    "com.apple.security.codesign",
                    &["codesign", "--sign", "-", "/tmp/x"],
                ),
                exec(
                    "/usr/bin/codesign",
                    "com.apple.security.codesign",
                    &["codesign", "--sign", "Developer ID", "/tmp/x"],
                ),
            ),
            (
                "KeychainDumped",
                exec(
                    "/usr/bin/security",
                    "com.apple.security",
                    &["security", "dump-keychain"],
                ),
                exec(
                    "/usr/bin/security",
                    "com.apple.security",
                    &["security", "list-keychains"],
                ),
            ),
            (
                "GatekeeperConfigChanges",
                exec(
                    "/usr/sbin/spctl",
                    "com.apple.spctl",
                    &["spctl", "--master-disable"],
                ),
                exec("/usr/sbin/spctl", "com.apple.spctl", &["spctl", "--status"]),
            ),
            (
                "LaunchctlUnloadAndBootout",
                exec(
                    "/bin/launchctl",
                    "com.apple.xpc.launchctl",
                    &["launchctl", "bootout", "system/com.jamf.protect.daemon"],
                ),
                exec(
                    "/bin/launchctl",
                    "com.apple.xpc.launchctl",
                    &["launchctl", "list"],
                ),
            ),
            (
                "HiddenAccountCreatedDscl",
                exec(
                    "/usr/bin/dscl",
                    "com.apple.dscl",
                    &["dscl", ".", "-create", "/Users/x", "IsHidden", "1"],
                ),
                exec(
                    "/usr/bin/dscl",
                    "com.apple.dscl",
                    &["dscl", ".", "-read", "/Users/x", "IsHidden"],
                ),
            ),
            (
                "AllCurlActivity",
                exec(
                    "/usr/bin/curl",
                    "com.apple.curl",
                    &["curl", "-O", "https://x"],
                ),
                exec("/usr/bin/wget", "wget", &["wget", "https://x"]),
            ),
            (
                "UnsignedProcessExecFromVolumes",
                {
                    let mut p = testing::process("/Volumes/Installer/Run");
                    p.signer = SignerType::Unsigned;
                    testing::exec_of(p, &["Run"])
                },
                {
                    let mut p = testing::process("/Volumes/Installer/Run");
                    p.signer = SignerType::DeveloperId;
                    testing::exec_of(p, &["Run"])
                },
            ),
            (
                "SysctlActivity",
                with_tty(exec(
                    "/usr/sbin/sysctl",
                    "com.apple.sysctl",
                    &["sysctl", "-a"],
                )),
                exec("/usr/sbin/sysctl", "com.apple.sysctl", &["sysctl", "-a"]),
            ),
            (
                "ZshenvCreateModify",
                testing::create(testing::process("/usr/bin/vim"), "/Users/alice/.zshenv"),
                testing::create(testing::process("/usr/bin/vim"), "/Users/alice/.zshrc"),
            ),
            (
                "HostFileModification",
                testing::close_modified(testing::process("/usr/bin/vim"), "/private/etc/hosts"),
                testing::close_modified(testing::process("/usr/bin/vim"), "/private/etc/hosts.bak"),
            ),
            (
                "AppBundleTrashed",
                {
                    let mut finder = testing::process(
                        "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder",
                    );
                    finder.signing_id = Some("com.apple.finder".into());
                    testing::rename(finder, "/Applications/Evil.app", "/Users/a/.Trash/Evil.app")
                },
                testing::rename(
                    testing::process("/usr/bin/mv"),
                    "/Applications/Evil.app",
                    "/Users/a/.Trash/Evil.app",
                ),
            ),
        ];
        for (name, hit, miss) in &cases {
            assert!(
                fired(hit).iter().any(|r| r == name),
                "{name} did not fire: {:?}",
                fired(hit)
            );
            assert!(
                !fired(miss).iter().any(|r| r == name),
                "{name} fired on its near miss"
            );
        }
    }

    #[test]
    fn parent_and_responsible_come_from_the_process_table() {
        testing::reset();
        let mut shell = testing::process("/bin/zsh");
        shell.token = testing::token(600, 6000);
        testing::add_process(shell.clone());
        let mut caffeinate = testing::process("/usr/bin/caffeinate");
        caffeinate.signing_id = Some("com.apple.caffeinate".into());
        caffeinate.tty = Some(testing::file("/dev/ttys001"));
        caffeinate.parent_token = Some(shell.token);
        let ev = testing::exec_of(caffeinate.clone(), &["caffeinate", "-d"]);
        assert!(
            fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
        // Without the parent in the table, `parent.isShell` is nil and the analytic is quiet.
        testing::reset();
        assert!(
            !fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
    }
}
