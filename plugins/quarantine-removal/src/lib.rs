//! Detector: the Gatekeeper quarantine attribute is stripped from a file (MITRE ATT&CK
//! T1553.001, Subvert Trust Controls: Gatekeeper Bypass).
//!
//! Two views of the same act:
//! - `exec` of `xattr` with `-d com.apple.quarantine` or `-c` (clear all), in any flag
//!   spelling (`-d`, `-rd`, `-dr`, `-c`, `-rc`);
//! - `deleteextattr` of `com.apple.quarantine` by any process other than the system's own
//!   quarantine bookkeeping.
//!
//! One act is reported once: the `deleteextattr` that a reported `xattr` image makes on
//! one of its targets (or, with `-r`, on a path under one) is the same removal and is not
//! reported again. The detector remembers the last 1,024 such `xattr` images.

use std::collections::VecDeque;

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

/// `xattr` images remembered after they were reported. Protects memory against a stream
/// of distinct execs: at most this many, the oldest forgotten first.
const MAX_REMEMBERED: usize = 1024;
/// Bytes of target paths (with their `String` headers) remembered per `xattr` image (the
/// attacker picks argv): targets past it are not remembered, so their `deleteextattr` is
/// reported rather than the memory growing. At most `MAX_REMEMBERED` x 4 KiB in all.
const MAX_REMEMBERED_TARGET_BYTES: usize = 4096;

/// An `xattr` image reported for stripping quarantine, and what it was told to strip.
struct Reported {
    /// The new image's (pid, pidversion): the `deleteextattr` comes from it.
    image: (i32, i32),
    /// Absolute, normalised target paths.
    targets: Vec<String>,
    /// `-r`: paths under a target are covered too.
    recursive: bool,
}

impl Reported {
    fn covers(&self, image: (i32, i32), path: &str) -> bool {
        self.image == image
            && self.targets.iter().any(|t| {
                path == t
                    || (self.recursive
                        && path
                            .strip_prefix(t.as_str())
                            .is_some_and(|rest| rest.starts_with('/') || t.ends_with('/')))
            })
    }
}

/// The detector. Remembers the `xattr` images it reported.
#[derive(Default)]
pub struct QuarantineRemoval {
    reported: VecDeque<Reported>,
}

impl QuarantineRemoval {
    fn remember(&mut self, reported: Reported) {
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.pop_front();
        }
        self.reported.push_back(reported);
    }

    fn already_reported(&self, image: (i32, i32), path: &str) -> bool {
        self.reported.iter().any(|r| r.covers(image, path))
    }
}

/// `target` as an absolute path the kernel would report: relative ones resolved against
/// `cwd`, `.` and `..` folded, `/tmp`, `/var` and `/etc` under `/private`. `None` when a
/// relative target has no working directory to resolve against.
fn absolute(target: &str, cwd: Option<&str>) -> Option<String> {
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{}/{target}", cwd?)
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let path = format!("/{}", parts.join("/"));
    let firmlinked = ["/tmp", "/var", "/etc"]
        .iter()
        .any(|d| path == *d || path.starts_with(&format!("{d}/")));
    Some(if firmlinked {
        format!("/private{path}")
    } else {
        path
    })
}

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

    /// Only what it reads: xattr's argv, and the working directory its relative targets
    /// resolve against.
    fn parts() -> EventParts {
        EventParts::ARGS | EventParts::EXEC_CONTEXT
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
                let recursive = exec.args.iter().skip(1).any(|a| {
                    a.strip_prefix('-')
                        .is_some_and(|f| !f.starts_with('-') && f.contains('r'))
                });
                let cwd = exec.cwd.as_ref().map(|f| f.path.as_str());
                let mut remembered = Vec::new();
                let mut bytes = 0;
                for target in &targets {
                    let target = target.trim_matches(['"', '\'']);
                    let Some(path) = absolute(target, cwd).filter(|_| target != ATTR) else {
                        continue;
                    };
                    // A `String` costs its bytes plus a pointer, length and capacity.
                    bytes += path.len() + std::mem::size_of::<String>();
                    if bytes > MAX_REMEMBERED_TARGET_BYTES {
                        break;
                    }
                    remembered.push(path);
                }
                self.remember(Reported {
                    image: (exec.target.token.pid, exec.target.token.pidversion),
                    targets: remembered,
                    recursive,
                });
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
                let image = (event.process.token.pid, event.process.token.pidversion);
                if SYSTEM_CLEARERS.contains(&by) || self.already_reported(image, &x.target.path) {
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
        let f = QuarantineRemoval::default().on_event(&ev).unwrap();
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
        assert!(
            QuarantineRemoval::default()
                .on_event(&ev)
                .unwrap()
                .is_empty()
        );
        let other = testing::exec("/bin/rm", &["rm", "-d", ATTR]);
        assert!(
            QuarantineRemoval::default()
                .on_event(&other)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn deleteextattr_fires_except_for_system_clearers() {
        let mut shell = testing::process("/bin/zsh");
        shell.signing_id = Some("com.apple.zsh".into());
        let ev = testing::deleteextattr(shell, "/Users/alice/Downloads/x.dmg", ATTR);
        assert_eq!(QuarantineRemoval::default().on_event(&ev).unwrap().len(), 1);

        let mut finder =
            testing::process("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder");
        finder.signing_id = Some("com.apple.finder".into());
        let ev = testing::deleteextattr(finder, "/Users/alice/Downloads/x.dmg", ATTR);
        assert!(
            QuarantineRemoval::default()
                .on_event(&ev)
                .unwrap()
                .is_empty()
        );

        let ev = testing::deleteextattr(
            testing::process("/bin/zsh"),
            "/tmp/x",
            "com.apple.lastuseddate#PS",
        );
        assert!(
            QuarantineRemoval::default()
                .on_event(&ev)
                .unwrap()
                .is_empty()
        );
    }

    fn xattr_image(pid: i32, pidversion: i32) -> Process {
        let mut image = testing::process("/usr/bin/xattr");
        image.token = testing::token(pid, pidversion);
        image
    }

    #[test]
    fn the_deleteextattr_of_a_reported_xattr_is_not_reported_again() {
        let mut d = QuarantineRemoval::default();
        let app = "/Users/alice/Downloads/Photo Viewer.app";
        let xattr = xattr_image(706, 7061);
        let exec = testing::exec_of(xattr.clone(), &["xattr", "-d", ATTR, app]);
        assert_eq!(testing::deliver(&mut d, &exec).unwrap().len(), 1);
        let same = testing::deleteextattr(xattr.clone(), app, ATTR);
        assert!(testing::deliver(&mut d, &same).unwrap().is_empty());
        // Another file, another process, or the old image of the pid: reported.
        let other_file = testing::deleteextattr(xattr.clone(), "/Users/alice/x.dmg", ATTR);
        assert_eq!(testing::deliver(&mut d, &other_file).unwrap().len(), 1);
        for by in [xattr_image(707, 7071), xattr_image(706, 7060)] {
            let ev = testing::deleteextattr(by, app, ATTR);
            assert_eq!(testing::deliver(&mut d, &ev).unwrap().len(), 1);
        }
        // Not recursive: a file inside the target is another act.
        let inside = testing::deleteextattr(xattr, &format!("{app}/Contents/Info.plist"), ATTR);
        assert_eq!(testing::deliver(&mut d, &inside).unwrap().len(), 1);
    }

    #[test]
    fn relative_and_recursive_targets_are_resolved() {
        let mut d = QuarantineRemoval::default();
        let xattr = xattr_image(800, 8001);
        // testing::exec_of runs in /Users/alice.
        let exec = testing::exec_of(
            xattr.clone(),
            &["xattr", "-rd", ATTR, "./Downloads/Evil.app"],
        );
        assert_eq!(testing::deliver(&mut d, &exec).unwrap().len(), 1);
        for path in [
            "/Users/alice/Downloads/Evil.app",
            "/Users/alice/Downloads/Evil.app/Contents/MacOS/evil",
        ] {
            let ev = testing::deleteextattr(xattr.clone(), path, ATTR);
            assert!(testing::deliver(&mut d, &ev).unwrap().is_empty(), "{path}");
        }
        let sibling =
            testing::deleteextattr(xattr.clone(), "/Users/alice/Downloads/Evil.apps", ATTR);
        assert_eq!(testing::deliver(&mut d, &sibling).unwrap().len(), 1);

        let tmp = xattr_image(801, 8011);
        let exec = testing::exec_of(tmp.clone(), &["xattr", "-c", "/tmp/../tmp/payload"]);
        assert_eq!(testing::deliver(&mut d, &exec).unwrap().len(), 1);
        let ev = testing::deleteextattr(tmp, "/private/tmp/payload", ATTR);
        assert!(testing::deliver(&mut d, &ev).unwrap().is_empty());
        assert_eq!(absolute("x", None), None);
        assert_eq!(absolute("/a/./b/../c", None).as_deref(), Some("/a/c"));
    }

    #[test]
    fn memory_of_reported_xattr_images_stays_bounded() {
        let mut d = QuarantineRemoval::default();
        for i in 0..100_000 {
            let target = format!("/Users/alice/Downloads/{i}.app");
            let exec = testing::exec_of(xattr_image(i, 2), &["xattr", "-d", ATTR, &target]);
            assert_eq!(testing::deliver(&mut d, &exec).unwrap().len(), 1);
        }
        assert_eq!(d.reported.len(), MAX_REMEMBERED);
        let newest = testing::deleteextattr(
            xattr_image(99_999, 2),
            "/Users/alice/Downloads/99999.app",
            ATTR,
        );
        assert!(testing::deliver(&mut d, &newest).unwrap().is_empty());
        let oldest =
            testing::deleteextattr(xattr_image(0, 2), "/Users/alice/Downloads/0.app", ATTR);
        assert_eq!(testing::deliver(&mut d, &oldest).unwrap().len(), 1);

        // Thousands of targets (a glob), or very long ones: only 4 KiB of them are kept.
        let many: Vec<String> = (0..10_000).map(|i| format!("f{i}")).collect();
        let long = format!("/{}", "a".repeat(100_000));
        let mut args = vec!["xattr", "-d", ATTR, &long];
        args.extend(many.iter().map(String::as_str));
        let exec = testing::exec_of(xattr_image(1, 2), &args);
        assert_eq!(testing::deliver(&mut d, &exec).unwrap().len(), 1);
        for r in &d.reported {
            let bytes: usize = r
                .targets
                .iter()
                .map(|t| t.len() + std::mem::size_of::<String>())
                .sum();
            assert!(bytes <= MAX_REMEMBERED_TARGET_BYTES, "{bytes}");
        }
        let past = testing::deleteextattr(xattr_image(1, 2), "/Users/alice/f9999", ATTR);
        assert_eq!(testing::deliver(&mut d, &past).unwrap().len(), 1);
    }
}
