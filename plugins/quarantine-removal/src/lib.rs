//! Detector: the Gatekeeper quarantine attribute is stripped from a file (MITRE ATT&CK
//! T1553.001, Subvert Trust Controls: Gatekeeper Bypass).
//!
//! Two views of the same act:
//! - `exec` of `xattr` with `-d com.apple.quarantine` or `-c` (clear all), in any flag
//!   spelling (`-d`, `-rd`, `-dr`, `-c`, `-rc`);
//! - `deleteextattr` of `com.apple.quarantine` by any process other than the system's own
//!   quarantine bookkeeping.

use ward_sdk::prelude::*;

const ATTR: &str = "com.apple.quarantine";
const RULE_EXEC: &str = "quarantine-attribute-removed-by-xattr";
const RULE_EXTATTR: &str = "quarantine-attribute-deleted";
/// Apple processes that legitimately clear quarantine (Finder after the user approves,
/// the quarantine/Gatekeeper daemons).
const SYSTEM_CLEARERS: &[&str] = &[
    "com.apple.finder",
    "com.apple.XprotectFramework.AnalysisService",
    "com.apple.syspolicyd",
];

/// The detector; stateless.
#[derive(Default)]
pub struct QuarantineRemoval;

/// What an `xattr` argv does to the quarantine attribute, if anything: `Some("delete")`
/// for `-d com.apple.quarantine`, `Some("clear")` for `-c`.
pub fn xattr_strips_quarantine(args: &[String]) -> Option<&'static str> {
    let mut delete = false;
    let mut clear = false;
    let mut names_quarantine = false;
    for arg in args.iter().skip(1) {
        if let Some(flags) = arg
            .strip_prefix('-')
            .filter(|f| !f.starts_with('-') && !f.is_empty())
        {
            delete |= flags.contains('d');
            clear |= flags.contains('c');
        } else if arg.trim_matches(|c| c == '"' || c == '\'') == ATTR {
            names_quarantine = true;
        }
    }
    if delete && names_quarantine {
        Some("delete")
    } else if clear {
        Some("clear")
    } else {
        None
    }
}

impl Detector for QuarantineRemoval {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "quarantine-removal",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "com.apple.quarantine stripped with xattr or deleteextattr (Gatekeeper bypass)",
        )
        .subscribe(&["exec", "deleteextattr"])
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        match &event.data {
            EventData::Exec(exec) if exec.target.name() == "xattr" => {
                let Some(how) = xattr_strips_quarantine(&exec.args) else {
                    return Ok(Vec::new());
                };
                let targets: Vec<&str> = exec
                    .args
                    .iter()
                    .skip(1)
                    .filter(|a| !a.starts_with('-') && a.as_str() != ATTR)
                    .map(String::as_str)
                    .collect();
                Ok(vec![
                    Finding::new(
                        RULE_EXEC,
                        Severity::Medium,
                        format!(
                            "xattr {how}s the quarantine attribute: {}",
                            exec.args.join(" ")
                        ),
                    )
                    .attack(&["T1553.001"])
                    .evidence("command_line", exec.args.join(" "))
                    .evidence("mode", how)
                    .evidence("targets", targets.join(" "))
                    .evidence("parent_path", event.process.path()),
                ])
            }
            EventData::Deleteextattr(x) if x.extattr == ATTR => {
                let by = event.process.signing_id_or_empty();
                if SYSTEM_CLEARERS.contains(&by) {
                    return Ok(Vec::new());
                }
                Ok(vec![
                    Finding::new(
                        RULE_EXTATTR,
                        Severity::Medium,
                        format!(
                            "{} deleted the quarantine attribute of {}",
                            event.process.path(),
                            x.target.path
                        ),
                    )
                    .attack(&["T1553.001"])
                    .evidence("file", x.target.path.clone())
                    .evidence("by_path", event.process.path())
                    .evidence("by_signing_id", by),
                ])
            }
            _ => Ok(Vec::new()),
        }
    }
}

ward_sdk::export_detector!(QuarantineRemoval);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn recognises_flag_spellings() {
        assert_eq!(
            xattr_strips_quarantine(&args(&["xattr", "-d", ATTR, "/Applications/X.app"])),
            Some("delete")
        );
        assert_eq!(
            xattr_strips_quarantine(&args(&["xattr", "-rd", ATTR, "X.app"])),
            Some("delete")
        );
        assert_eq!(
            xattr_strips_quarantine(&args(&[
                "xattr",
                "-r",
                "-d",
                "\"com.apple.quarantine\"",
                "X.app"
            ])),
            Some("delete")
        );
        assert_eq!(
            xattr_strips_quarantine(&args(&["xattr", "-cr", "X.app"])),
            Some("clear")
        );
        assert_eq!(
            xattr_strips_quarantine(&args(&["xattr", "-p", ATTR, "X.app"])),
            None
        );
        assert_eq!(
            xattr_strips_quarantine(&args(&[
                "xattr",
                "-d",
                "com.apple.metadata:kMDItemWhereFroms",
                "X"
            ])),
            None
        );
    }

    #[test]
    fn xattr_exec_fires_with_evidence() {
        let ev = testing::exec(
            "/usr/bin/xattr",
            &["xattr", "-d", ATTR, "/Users/alice/Downloads/Evil.app"],
        );
        let f = QuarantineRemoval.on_event(&ev).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RULE_EXEC);
        assert_eq!(f[0].attack, vec!["T1553.001"]);
        assert_eq!(
            f[0].evidence_value("targets"),
            Some("/Users/alice/Downloads/Evil.app")
        );
    }

    #[test]
    fn reading_the_attribute_is_quiet() {
        let ev = testing::exec(
            "/usr/bin/xattr",
            &["xattr", "-l", "/Users/alice/Downloads/Evil.app"],
        );
        assert!(QuarantineRemoval.on_event(&ev).unwrap().is_empty());
        let other = testing::exec("/bin/rm", &["rm", "-d", ATTR]);
        assert!(QuarantineRemoval.on_event(&other).unwrap().is_empty());
    }

    #[test]
    fn deleteextattr_fires_except_for_system_clearers() {
        let mut shell = testing::process("/bin/zsh");
        shell.signing_id = Some("com.apple.zsh".into());
        let ev = testing::deleteextattr(shell, "/Users/alice/Downloads/x.dmg", ATTR);
        assert_eq!(QuarantineRemoval.on_event(&ev).unwrap().len(), 1);

        let mut finder =
            testing::process("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder");
        finder.signing_id = Some("com.apple.finder".into());
        let ev = testing::deleteextattr(finder, "/Users/alice/Downloads/x.dmg", ATTR);
        assert!(QuarantineRemoval.on_event(&ev).unwrap().is_empty());

        let ev = testing::deleteextattr(
            testing::process("/bin/zsh"),
            "/tmp/x",
            "com.apple.lastuseddate#PS",
        );
        assert!(QuarantineRemoval.on_event(&ev).unwrap().is_empty());
    }
}
