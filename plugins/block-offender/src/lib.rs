//! Remediator: add the offending binary to the agent's prevent list, so it cannot run
//! again. Plans `block` entries for the offending process (the new image of an `exec`,
//! otherwise the event's process):
//! - `cdhash` when it has one;
//! - `signing-id` when it has one and a certificate vouches for it (Developer ID, App
//!   Store, development): an ad-hoc signature's id is whatever the signer chose, often
//!   just the file name, so blocking it would block unrelated programs; the cdhash names
//!   such code exactly;
//! - `team-id` only with `by_team = "true"`: every program of that developer;
//! - `sha256` when the finding's evidence carries a 64-hex `sha256`.
//!
//! Config `kinds` (default `cdhash,signing-id,sha256`, plus `team-id` with `by_team`)
//! limits which. Apple's own code is never blocked: nothing is planned, and the log says
//! why.

use ward_sdk::BlockEntry;
use ward_sdk::prelude::*;

const KINDS: &[&str] = &["cdhash", "signing-id", "team-id", "sha256"];
const DEFAULT_KINDS: &[&str] = &["cdhash", "signing-id", "sha256"];

/// The remediator; keeps nothing between calls.
#[derive(Default)]
pub struct BlockOffender;

/// The entry kinds allowed by `kinds` and `by_team`.
fn allowed_kinds() -> Result<Vec<&'static str>, PluginError> {
    let by_team = config_bool("by_team", false)?;
    let configured = config("kinds").filter(|k| !k.trim().is_empty());
    let mut kinds = Vec::new();
    for word in configured.as_deref().unwrap_or_default().split([',', ' ']) {
        if word.is_empty() {
            continue;
        }
        let kind = KINDS.iter().find(|k| **k == word).ok_or_else(|| {
            PluginError::new(format!(
                "config `kinds`: unknown kind {word:?} (known: {})",
                KINDS.join(", ")
            ))
        })?;
        kinds.push(*kind);
    }
    if configured.is_none() {
        kinds = DEFAULT_KINDS.to_vec();
        kinds.push("team-id");
    }
    if !by_team {
        kinds.retain(|k| *k != "team-id");
    }
    Ok(kinds)
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Remediator for BlockOffender {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "block-offender",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Remediator,
            "add the offending binary to the prevent list (cdhash, signing id, sha256, team id)",
        )
        .capability("block")
        .config_option(
            "kinds",
            "entry kinds planned, comma-separated: cdhash, signing-id, sha256, team-id (default \"cdhash,signing-id,sha256\")",
        )
        .config_option(
            "by_team",
            "\"true\" also blocks the developer's team id: all their programs (default \"false\")",
        )
    }

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        let kinds = allowed_kinds()?;
        let p = trigger.offender();
        let path = p.path();
        if p.is_apple_code() {
            log::info(&format!(
                "not blocking {path}: Apple code (finding {})",
                trigger.finding.rule
            ));
            return Ok(Vec::new());
        }
        let vouched = matches!(
            p.signer,
            SignerType::DeveloperId | SignerType::AppStore | SignerType::Development
        );
        let cdhash = p.cdhash.clone().filter(|c| is_hex(c, 40));
        let signing_id = p.signing_id.clone().filter(|s| !s.is_empty());
        let team_id = p.team_id.clone().filter(|t| !t.is_empty());
        let sha256 = trigger
            .finding
            .evidence_value("sha256")
            .filter(|h| is_hex(h, 64))
            .map(str::to_ascii_lowercase);
        if signing_id.is_some() && !vouched && kinds.contains(&"signing-id") {
            log::info(&format!(
                "not blocking the signing id of {path}: {} code names itself",
                p.signer.as_str()
            ));
        }
        let entries = [
            ("cdhash", cdhash.map(BlockEntry::Cdhash)),
            (
                "signing-id",
                signing_id.filter(|_| vouched).map(BlockEntry::SigningId),
            ),
            ("team-id", team_id.map(BlockEntry::TeamId)),
            ("sha256", sha256.map(BlockEntry::Sha256)),
        ];
        let why = format!("finding {} from {}", trigger.finding.rule, trigger.detector);
        Ok(entries
            .into_iter()
            .filter(|(kind, _)| kinds.contains(kind))
            .filter_map(|(kind, entry)| {
                let entry = entry?;
                let value = match &entry {
                    BlockEntry::Cdhash(v)
                    | BlockEntry::SigningId(v)
                    | BlockEntry::TeamId(v)
                    | BlockEntry::Sha256(v) => v.clone(),
                };
                Some(PlannedAction::new(
                    Action::Block(entry),
                    format!("{why}: block {path} by {kind} {value}"),
                ))
            })
            .collect())
    }
}

ward_sdk::export_remediator!(BlockOffender);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    const SHA: &str = "AB01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01";

    fn developer_signed() -> Process {
        let mut p = testing::process("/Users/alice/Downloads/Tool.app/Contents/MacOS/tool");
        p.is_platform_binary = false;
        p.signer = SignerType::DeveloperId;
        p.signing_id = Some("com.evil.tool".into());
        p.team_id = Some("EVILTEAM01".into());
        p.cdhash = Some("7D1A04C3E4F1B2A9C8D7E6F5A4B3C2D1E0F9A8B7".into());
        p
    }

    fn entries(offender: Process, sha256: Option<&str>) -> Vec<String> {
        let mut finding = Finding::new("prevent-list-match", Severity::High, "m");
        if let Some(sha) = sha256 {
            finding = finding.evidence("sha256", sha);
        }
        let trigger = Trigger {
            detector: "untrusted-exec".into(),
            finding,
            event: testing::exec_of(offender, &["tool"]),
        };
        let plan = BlockOffender.plan(&trigger).unwrap();
        for p in &plan {
            assert!(p.reason.contains("prevent-list-match"), "{}", p.reason);
        }
        plan.into_iter()
            .map(|p| match p.action {
                Action::Block(BlockEntry::Cdhash(v)) => format!("cdhash {v}"),
                Action::Block(BlockEntry::SigningId(v)) => format!("signing-id {v}"),
                Action::Block(BlockEntry::TeamId(v)) => format!("team-id {v}"),
                Action::Block(BlockEntry::Sha256(v)) => format!("sha256 {v}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn describes_its_capability_and_config() {
        let info = BlockOffender::describe();
        assert_eq!(info.name, "block-offender");
        assert_eq!(info.capabilities, ["block"]);
        let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(keys, ["kinds", "by_team"]);
    }

    #[test]
    fn blocks_by_cdhash_signing_id_and_sha256_by_default() {
        testing::reset();
        assert_eq!(
            entries(developer_signed(), Some(SHA)),
            [
                "cdhash 7D1A04C3E4F1B2A9C8D7E6F5A4B3C2D1E0F9A8B7".to_owned(),
                "signing-id com.evil.tool".to_owned(),
                format!("sha256 {}", SHA.to_ascii_lowercase()),
            ]
        );
        // A malformed sha256 is ignored.
        assert_eq!(entries(developer_signed(), Some("abc")).len(), 2);
    }

    #[test]
    fn team_id_needs_by_team_and_kinds_limit() {
        testing::reset();
        testing::set_config("by_team", "true");
        assert_eq!(
            entries(developer_signed(), None),
            [
                "cdhash 7D1A04C3E4F1B2A9C8D7E6F5A4B3C2D1E0F9A8B7",
                "signing-id com.evil.tool",
                "team-id EVILTEAM01"
            ]
        );
        testing::set_config("kinds", "team-id,sha256");
        assert_eq!(
            entries(developer_signed(), Some(SHA)),
            [
                "team-id EVILTEAM01".to_owned(),
                format!("sha256 {}", SHA.to_ascii_lowercase())
            ]
        );
        testing::set_config("by_team", "false");
        assert_eq!(entries(developer_signed(), Some(SHA)).len(), 1);
        testing::set_config("kinds", "cdhash,md5");
        let trigger = Trigger {
            detector: "d".into(),
            finding: Finding::new("r", Severity::High, "m"),
            event: testing::exec_of(developer_signed(), &["tool"]),
        };
        assert!(
            BlockOffender
                .plan(&trigger)
                .unwrap_err()
                .message
                .contains("md5")
        );
        testing::reset();
    }

    #[test]
    fn adhoc_code_is_blocked_by_cdhash_not_by_its_self_chosen_id() {
        testing::reset();
        let mut adhoc = testing::process("/private/tmp/update");
        adhoc.is_platform_binary = false;
        adhoc.signer = SignerType::Adhoc;
        adhoc.signing_id = Some("update-55554944a1b2c3d4".into());
        adhoc.cdhash = Some("1".repeat(40));
        assert_eq!(entries(adhoc, None), [format!("cdhash {}", "1".repeat(40))]);
    }

    #[test]
    fn apple_code_is_never_blocked() {
        testing::reset();
        assert!(entries(testing::process("/usr/bin/osascript"), Some(SHA)).is_empty());
        let mut signed_by_apple = developer_signed();
        signed_by_apple.signer = SignerType::Apple;
        assert!(entries(signed_by_apple, Some(SHA)).is_empty());
        assert!(
            testing::logs()
                .iter()
                .any(|(level, m)| level == "info" && m.contains("Apple code"))
        );
    }
}
