//! Remediator: stop the offending process. Plans `kill-process` (signal 9) of the offender
//! (the new image of an `exec`, otherwise the event's process), with config `tree = "true"`
//! also of its descendants (after it, at most 64), and with `quarantine_binary` (default
//! `"true"`) `quarantine-file` of its executable unless that is Apple's code.
//!
//! Never plans a kill of pid 0 or 1 (the kernel, launchd), nor a quarantine of a path the
//! kernel reported truncated (it would name another file).

use ward_sdk::prelude::*;
use ward_sdk::{KillProcess, process};

/// Descendants killed with `tree = "true"`.
const MAX_DESCENDANTS: u32 = 64;
/// SIGKILL.
const SIGKILL: i32 = 9;

/// The remediator; keeps nothing between calls.
#[derive(Default)]
pub struct ContainProcess;

fn kill(p: &Process, why: &str) -> Option<PlannedAction> {
    if p.token.pid <= 1 {
        log::warn(&format!("not killing pid {} ({})", p.token.pid, p.path()));
        return None;
    }
    Some(PlannedAction::new(
        Action::KillProcess(KillProcess {
            pid: p.token.pid,
            pidversion: p.token.pidversion,
            signal: SIGKILL,
        }),
        format!(
            "{why}: kill {} (pid {}, pidversion {})",
            p.path(),
            p.token.pid,
            p.token.pidversion
        ),
    ))
}

impl Remediator for ContainProcess {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "contain-process",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Remediator,
            "kill the offending process (and optionally its descendants), quarantine its binary",
        )
        .capability("kill-process")
        .capability("quarantine-file")
        .config_option(
            "tree",
            "\"true\" also kills the offender's descendants, after it (default \"false\")",
        )
        .config_option(
            "quarantine_binary",
            "\"true\" also quarantines the offender's executable unless it is Apple's (default \"true\")",
        )
    }

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        let tree = config_bool("tree", false)?;
        let quarantine = config_bool("quarantine_binary", true)?;
        let offender = trigger.offender();
        let why = format!("finding {} from {}", trigger.finding.rule, trigger.detector);

        let mut plan: Vec<PlannedAction> = kill(offender, &why).into_iter().collect();
        if tree {
            let descendants = process::descendants(offender.token, MAX_DESCENDANTS);
            let why = format!("{why}, descendant of {}", offender.path());
            // A pid that exec'd shows as two images (the fork and the new program): only
            // the latest generation of each pid is still running.
            let latest = |d: &&Process| {
                !descendants
                    .iter()
                    .any(|o| o.token.pid == d.token.pid && o.token.pidversion > d.token.pidversion)
            };
            plan.extend(
                descendants
                    .iter()
                    .filter(latest)
                    .filter_map(|d| kill(d, &why)),
            );
        }
        if quarantine {
            let path = offender.path();
            if offender.is_apple_code() {
                log::info(&format!("not quarantining {path}: Apple code"));
            } else if offender.executable.path_truncated {
                log::warn(&format!("not quarantining {path}: the path was truncated"));
            } else {
                plan.push(PlannedAction::new(
                    Action::QuarantineFile(path.to_owned()),
                    format!("{why}: quarantine the executable {path}"),
                ));
            }
        }
        Ok(plan)
    }
}

ward_sdk::export_remediator!(ContainProcess);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn image(path: &str, pid: i32, parent: Option<i32>) -> Process {
        let mut p = testing::process(path);
        p.token = testing::token(pid, pid * 10);
        p.parent_token = parent.map(|pp| testing::token(pp, pp * 10));
        p.signer = SignerType::Adhoc;
        p.is_platform_binary = false;
        p
    }

    fn trigger(event: Event) -> Trigger {
        Trigger {
            detector: "untrusted-exec".into(),
            finding: Finding::new("untrusted-exec-from-staging-path", Severity::High, "m"),
            event,
        }
    }

    fn kills(plan: &[PlannedAction]) -> Vec<(i32, i32)> {
        plan.iter()
            .filter_map(|a| match &a.action {
                Action::KillProcess(k) => {
                    assert_eq!(k.signal, 9);
                    Some((k.pid, k.pidversion))
                }
                _ => None,
            })
            .collect()
    }

    fn quarantined(plan: &[PlannedAction]) -> Vec<&str> {
        plan.iter()
            .filter_map(|a| match &a.action {
                Action::QuarantineFile(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn describes_its_capabilities_and_config() {
        let info = ContainProcess::describe();
        assert_eq!(info.name, "contain-process");
        assert_eq!(info.kind, PluginKind::Remediator);
        assert_eq!(info.capabilities, ["kill-process", "quarantine-file"]);
        let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(keys, ["tree", "quarantine_binary"]);
    }

    #[test]
    fn kills_the_exec_target_and_quarantines_its_binary() {
        testing::reset();
        let payload = image("/private/tmp/update", 705, Some(600));
        let plan = ContainProcess
            .plan(&trigger(testing::exec_of(payload, &["/tmp/update"])))
            .unwrap();
        assert_eq!(kills(&plan), [(705, 7050)]);
        assert_eq!(quarantined(&plan), ["/private/tmp/update"]);
        assert!(plan[0].reason.contains("untrusted-exec-from-staging-path"));
        assert!(plan[0].reason.contains("/private/tmp/update (pid 705"));
    }

    #[test]
    fn with_tree_kills_descendants_after_the_offender() {
        testing::reset();
        testing::set_config("tree", "true");
        testing::set_config("quarantine_binary", "false");
        let payload = image("/private/tmp/update", 705, Some(600));
        // 720 forked (720/7200) and exec'd curl (720/7201): only the running image dies.
        let mut exec_d = image("/usr/bin/curl", 720, Some(710));
        exec_d.token.pidversion = 7201;
        for p in [
            payload.clone(),
            image("/bin/sh", 710, Some(705)),
            image("/bin/sh", 720, Some(710)),
            exec_d,
            image("/bin/zsh", 730, Some(600)),
        ] {
            testing::add_process(p);
        }
        let plan = ContainProcess
            .plan(&trigger(testing::create(payload, "/tmp/x")))
            .unwrap();
        assert_eq!(kills(&plan), [(705, 7050), (710, 7100), (720, 7201)]);
        assert!(quarantined(&plan).is_empty());
        assert!(plan[2].reason.contains("descendant of /private/tmp/update"));
        testing::reset();
    }

    #[test]
    fn apple_code_launchd_and_truncated_paths_are_spared() {
        testing::reset();
        let osascript = testing::process("/usr/bin/osascript");
        let plan = ContainProcess
            .plan(&trigger(testing::exec_of(osascript, &["osascript"])))
            .unwrap();
        assert_eq!(kills(&plan).len(), 1);
        assert!(quarantined(&plan).is_empty());

        let mut launchd = image("/sbin/launchd", 1, None);
        launchd.token.pidversion = 1;
        let plan = ContainProcess
            .plan(&trigger(testing::create(launchd, "/tmp/x")))
            .unwrap();
        assert!(kills(&plan).is_empty());

        let mut cut = image("/Users/alice/very/long/pa", 800, Some(1));
        cut.executable.path_truncated = true;
        let plan = ContainProcess
            .plan(&trigger(testing::create(cut, "/tmp/x")))
            .unwrap();
        assert_eq!(kills(&plan).len(), 1);
        assert!(quarantined(&plan).is_empty());
        assert!(
            testing::logs()
                .iter()
                .any(|(_, m)| m.contains("path was truncated"))
        );
    }

    #[test]
    fn bad_config_is_an_error() {
        testing::reset();
        testing::set_config("tree", "yes");
        let payload = image("/private/tmp/update", 705, Some(600));
        let err = ContainProcess
            .plan(&trigger(testing::create(payload, "/tmp/x")))
            .unwrap_err();
        assert!(err.message.contains("`tree`"));
        testing::reset();
    }
}
