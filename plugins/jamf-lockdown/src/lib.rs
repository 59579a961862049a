//! Remediator: lock the Mac down through Jamf Pro. Plans, as configured, `jamf-lock` with
//! the lock-screen message (the host makes and keeps the PIN), `jamf-penalty-box`, and
//! `jamf-policy` with the admin's custom trigger.
//!
//! Config: `lock` (default `"true"`), `message`, `penalty_box` (default `"true"`),
//! `policy` (a Jamf custom trigger; unset runs none).

use ward_sdk::JamfLock;
use ward_sdk::prelude::*;

const DEFAULT_MESSAGE: &str = "This Mac was locked by your security team. Contact IT.";
/// Longest custom trigger accepted; Jamf's own limit is far below the finding sizes.
const MAX_TRIGGER_BYTES: usize = 255;

/// The remediator; keeps nothing between calls.
#[derive(Default)]
pub struct JamfLockdown;

/// The configured custom trigger: one word of printable characters.
fn policy_trigger() -> Result<Option<String>, PluginError> {
    let Some(policy) = config("policy").map(|p| p.trim().to_owned()) else {
        return Ok(None);
    };
    if policy.is_empty() {
        return Ok(None);
    }
    let word = policy.len() <= MAX_TRIGGER_BYTES
        && policy
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control());
    if word {
        Ok(Some(policy))
    } else {
        Err(PluginError::new(format!(
            "config `policy`: a Jamf custom trigger is one word of at most {MAX_TRIGGER_BYTES} bytes"
        )))
    }
}

impl Remediator for JamfLockdown {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "jamf-lockdown",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Remediator,
            "lock the Mac through Jamf Pro, put it in the penalty box, run a Jamf policy",
        )
        .capability("jamf-lock")
        .capability("jamf-penalty-box")
        .capability("jamf-policy")
        .config_option("lock", "\"true\" locks the Mac through Jamf Pro (default \"true\")")
        .config_option(
            "message",
            "the lock-screen message (default \"This Mac was locked by your security team. Contact IT.\")",
        )
        .config_option(
            "penalty_box",
            "\"true\" puts the Mac in the Jamf penalty box (default \"true\")",
        )
        .config_option("policy", "a Jamf custom trigger to run (default: none)")
    }

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        let lock = config_bool("lock", true)?;
        let penalty_box = config_bool("penalty_box", true)?;
        let policy = policy_trigger()?;
        let message = config("message")
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| DEFAULT_MESSAGE.to_owned());
        let offender = trigger.offender();
        let why = format!(
            "finding {} from {} ({} pid {})",
            trigger.finding.rule,
            trigger.detector,
            offender.path(),
            offender.token.pid
        );
        let mut plan = Vec::new();
        if lock {
            plan.push(PlannedAction::new(
                Action::JamfLock(JamfLock { message }),
                format!("{why}: lock this Mac through Jamf Pro"),
            ));
        }
        if penalty_box {
            plan.push(PlannedAction::new(
                Action::JamfPenaltyBox,
                format!("{why}: put this Mac in the Jamf penalty box"),
            ));
        }
        if let Some(policy) = policy {
            let reason = format!("{why}: run the Jamf policies triggered by {policy}");
            plan.push(PlannedAction::new(Action::JamfPolicy(policy), reason));
        }
        Ok(plan)
    }
}

ward_sdk::export_remediator!(JamfLockdown);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn plan() -> Result<Vec<PlannedAction>, PluginError> {
        let trigger = Trigger {
            detector: "command-abuse".into(),
            finding: Finding::new("reverse-shell", Severity::Critical, "m"),
            event: testing::exec("/bin/bash", &["bash", "-i"]),
        };
        JamfLockdown.plan(&trigger)
    }

    fn kinds(plan: &[PlannedAction]) -> Vec<String> {
        plan.iter()
            .map(|p| match &p.action {
                Action::JamfLock(l) => format!("lock: {}", l.message),
                Action::JamfPenaltyBox => "penalty-box".to_owned(),
                Action::JamfPolicy(t) => format!("policy: {t}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn describes_its_capabilities_and_config() {
        let info = JamfLockdown::describe();
        assert_eq!(info.name, "jamf-lockdown");
        assert_eq!(
            info.capabilities,
            ["jamf-lock", "jamf-penalty-box", "jamf-policy"]
        );
        let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(keys, ["lock", "message", "penalty_box", "policy"]);
    }

    #[test]
    fn locks_and_boxes_by_default() {
        testing::reset();
        let plan = plan().unwrap();
        assert_eq!(
            kinds(&plan),
            [format!("lock: {DEFAULT_MESSAGE}"), "penalty-box".to_owned()]
        );
        assert!(plan[0].reason.contains("reverse-shell"));
        assert!(plan[0].reason.contains("/bin/bash"));
    }

    #[test]
    fn follows_its_config() {
        testing::reset();
        testing::set_config("lock", "false");
        testing::set_config("policy", "ward-contain");
        assert_eq!(
            kinds(&plan().unwrap()),
            ["penalty-box", "policy: ward-contain"]
        );
        testing::set_config("lock", "true");
        testing::set_config("penalty_box", "false");
        testing::set_config("message", "Call 555-0100.");
        testing::set_config("policy", " ");
        assert_eq!(kinds(&plan().unwrap()), ["lock: Call 555-0100."]);

        testing::set_config("policy", "two words");
        assert!(plan().unwrap_err().message.contains("policy"));
        testing::set_config("policy", "x");
        testing::set_config("penalty_box", "maybe");
        assert!(plan().unwrap_err().message.contains("penalty_box"));
        testing::reset();
    }
}
