//! Detector: an unsigned or ad-hoc-signed binary executed from a place malware stages
//! payloads — `/tmp`, `/private/tmp`, `/private/var/folders`, `/Users/Shared` or a user's
//! `Downloads` folder (MITRE ATT&CK T1204.002, User Execution: Malicious File).
//!
//! Apple, App Store and Developer ID code is left alone: what matters is code nobody
//! vouches for, running from where droppers put it.

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
#[derive(Default)]
pub struct UntrustedExec;

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
        PluginInfo::new(
            "untrusted-exec",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "unsigned or ad-hoc-signed code executed from /tmp, Downloads or other staging paths",
        )
        .subscribe(&["exec"])
        .prefilter(Prefilter::any().path_prefixes(&["/tmp/", "/private/", "/Users/"]))
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
        let finding = Finding::new(
            RULE,
            Severity::High,
            format!(
                "{signer} binary {} executed from a staging path",
                target.path()
            ),
        )
        .attack(&["T1204.002"])
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
        UntrustedExec.on_event(event).unwrap()
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
}
