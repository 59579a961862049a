//! Detector: an unsigned or ad-hoc-signed binary executed from a place malware stages
//! payloads — `/tmp`, `/private/tmp`, `/private/var/folders`, `/Users/Shared` or a user's
//! `Downloads` folder (MITRE ATT&CK T1204.002, User Execution: Malicious File).
//!
//! Apple, App Store and Developer ID code is left alone: what matters is code nobody
//! vouches for, running from where droppers put it.
//!
//! With `check_quarantine = "true"` (and the admin's `file-xattr` grant over the staging
//! folders) the finding says whether the binary carries `com.apple.quarantine`. One that
//! does not was never going to meet Gatekeeper — fetched by `curl`, unpacked by a tool that
//! drops the attribute, or stripped — and the finding adds T1553.001 (Gatekeeper Bypass).

use ward_sdk::prelude::*;

const RULE: &str = "untrusted-exec-from-staging-path";
const STAGING_PREFIXES: &[&str] = &[
    "/tmp/",
    "/private/tmp/",
    "/private/var/tmp/",
    "/private/var/folders/",
    "/Users/Shared/",
];

/// The detector; stateless.
pub struct UntrustedExec {
    check_quarantine: bool,
}

/// Config key turning the quarantine check on.
pub const CHECK_QUARANTINE: &str = "check_quarantine";

fn check_quarantine() -> bool {
    ward_sdk::config(CHECK_QUARANTINE).as_deref() == Some("true")
}

impl Default for UntrustedExec {
    fn default() -> Self {
        Self {
            check_quarantine: check_quarantine(),
        }
    }
}

/// True if `path` is a staging location: one of [`STAGING_PREFIXES`] or
/// `/Users/<name>/Downloads/…`.
pub fn is_staging_path(path: &str) -> bool {
    if STAGING_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return true;
    }
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("Users"), Some(user), Some("Downloads"), Some(_)) if !user.is_empty()
    )
}

impl Detector for UntrustedExec {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new(
            "untrusted-exec",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "unsigned or ad-hoc-signed code executed from /tmp, Downloads or other staging paths",
        )
        .subscribe(&["exec"])
        .prefilter(Prefilter::any().path_prefixes(&["/tmp/", "/private/", "/Users/"]))
        .config_option(
            CHECK_QUARANTINE,
            "\"true\": report whether the binary carries com.apple.quarantine (needs file-xattr)",
        );
        if check_quarantine() {
            info.capability("file-xattr")
        } else {
            info
        }
    }

    /// Only what it reads: argv, for the finding's command line.
    fn parts() -> EventParts {
        EventParts::ARGS
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let Some(exec) = event.as_exec() else {
            return Ok(Vec::new());
        };
        let target = &exec.target;
        if !target.is_untrusted_code() || !is_staging_path(target.path()) {
            return Ok(Vec::new());
        }
        let signer = match target.signer {
            SignerType::Adhoc => "ad-hoc",
            _ => "unsigned",
        };
        // (evidence, message suffix, Gatekeeper bypassed)
        let (quarantine, note, bypass) = if self.check_quarantine {
            match ward_sdk::enrich::quarantined(target.path()) {
                Ok(Some(true)) => ("yes", "", false),
                Ok(Some(false)) => ("no", " without a quarantine attribute", true),
                Ok(None) => ("file gone", "", false),
                Err(e) => {
                    ward_sdk::log::warn(&format!("quarantine check of {}: {e:?}", target.path()));
                    ("unknown", "", false)
                }
            }
        } else {
            ("not checked", "", false)
        };
        let attack: &[&str] = if bypass {
            &["T1204.002", "T1553.001"]
        } else {
            &["T1204.002"]
        };
        let finding = Finding::new(
            RULE,
            Severity::High,
            format!(
                "{signer} binary {} executed from a staging path{note}",
                target.path()
            ),
        )
        .attack(attack)
        .evidence("quarantined", quarantine)
        .evidence("path", target.path())
        .evidence("signer", signer)
        .evidence("signing_id", target.signing_id_or_empty())
        .evidence("cdhash", target.cdhash.clone().unwrap_or_default())
        .evidence("command_line", exec.args.join(" "))
        .evidence("parent_path", event.process.path());
        Ok(vec![finding])
    }
}

ward_sdk::export_detector!(UntrustedExec);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn run(event: &Event) -> Vec<Finding> {
        UntrustedExec::default().on_event(event).unwrap()
    }

    fn untrusted(path: &str, signer: SignerType) -> Process {
        let mut p = testing::process(path);
        p.signer = signer;
        p.is_platform_binary = false;
        p.signing_id = Some("a.out-55554944".into());
        p
    }

    #[test]
    fn adhoc_binary_in_tmp_fires() {
        let ev = testing::exec_of(
            untrusted("/private/tmp/update", SignerType::Adhoc),
            &["/private/tmp/update"],
        );
        let findings = run(&ev);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, RULE);
        assert_eq!(findings[0].attack, vec!["T1204.002"]);
        assert_eq!(findings[0].evidence_value("signer"), Some("ad-hoc"));
    }

    #[test]
    fn unsigned_binary_in_downloads_fires() {
        let ev = testing::exec_of(
            untrusted("/Users/alice/Downloads/Installer", SignerType::Unsigned),
            &["Installer"],
        );
        assert_eq!(run(&ev).len(), 1);
    }

    #[test]
    fn developer_id_binary_in_tmp_is_quiet() {
        let ev = testing::exec_of(untrusted("/tmp/tool", SignerType::DeveloperId), &["tool"]);
        assert!(run(&ev).is_empty());
    }

    #[test]
    fn adhoc_binary_outside_staging_is_quiet() {
        let ev = testing::exec_of(
            untrusted("/Users/alice/src/target/debug/app", SignerType::Adhoc),
            &["app"],
        );
        assert!(run(&ev).is_empty());
        assert!(!is_staging_path("/Users/alice/Downloadsx/a"));
        assert!(!is_staging_path("/Users/Downloads"));
    }

    #[test]
    fn non_exec_events_are_ignored() {
        let ev = testing::create(untrusted("/tmp/x", SignerType::Unsigned), "/tmp/x");
        assert!(run(&ev).is_empty());
    }

    #[test]
    fn quarantine_is_checked_only_when_configured() {
        let path = "/Users/alice/Downloads/Installer";
        let ev = testing::exec_of(untrusted(path, SignerType::Unsigned), &["Installer"]);
        testing::reset();
        assert!(UntrustedExec::describe().capabilities.is_empty());
        assert_eq!(
            run(&ev)[0].evidence_value("quarantined"),
            Some("not checked")
        );

        testing::set_config(CHECK_QUARANTINE, "true");
        assert_eq!(UntrustedExec::describe().capabilities, vec!["file-xattr"]);
        // Downloaded by a browser: quarantined, T1204.002 only.
        testing::set_file(
            path,
            testing::FakeFile {
                xattrs: vec![(
                    "com.apple.quarantine".into(),
                    b"0083;6720f1c2;Safari;".to_vec(),
                )],
                ..Default::default()
            },
        );
        let f = run(&ev);
        assert_eq!(f[0].evidence_value("quarantined"), Some("yes"));
        assert_eq!(f[0].attack, vec!["T1204.002"]);
        // Fetched by curl, or stripped: no attribute, Gatekeeper bypassed.
        testing::set_file(path, testing::FakeFile::default());
        let f = run(&ev);
        assert_eq!(f[0].evidence_value("quarantined"), Some("no"));
        assert_eq!(f[0].attack, vec!["T1204.002", "T1553.001"]);
        assert!(f[0].message.ends_with("without a quarantine attribute"));
        // Already deleted when the check ran.
        testing::reset();
        testing::set_config(CHECK_QUARANTINE, "true");
        assert_eq!(run(&ev)[0].evidence_value("quarantined"), Some("file gone"));
        testing::reset();
    }
}
