//! Remediator: cut the Mac off the network, except its management servers, while the
//! incident is handled. Plans one `isolate-network`; the host applies and later lifts it
//! under the admin's policy.

use ward_sdk::prelude::*;

/// The remediator; keeps nothing between calls.
#[derive(Default)]
pub struct IsolateHost;

impl Remediator for IsolateHost {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "isolate-host",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Remediator,
            "cut the Mac off the network except its management servers",
        )
        .capability("isolate-network")
    }

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {
        let offender = trigger.offender();
        Ok(vec![PlannedAction::new(
            Action::IsolateNetwork,
            format!(
                "finding {} from {}: isolate this Mac from the network ({} pid {})",
                trigger.finding.rule,
                trigger.detector,
                offender.path(),
                offender.token.pid
            ),
        )])
    }
}

ward_sdk::export_remediator!(IsolateHost);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    #[test]
    fn plans_one_isolation_naming_the_finding() {
        let info = IsolateHost::describe();
        assert_eq!(info.name, "isolate-host");
        assert_eq!(info.capabilities, ["isolate-network"]);
        let trigger = Trigger {
            detector: "malware-activity".into(),
            finding: Finding::new("xprotect-malware-detected", Severity::Critical, "m"),
            event: testing::exec("/private/tmp/update", &["update"]),
        };
        let plan = IsolateHost.plan(&trigger).unwrap();
        assert_eq!(plan.len(), 1);
        assert!(matches!(plan[0].action, Action::IsolateNetwork));
        assert!(plan[0].reason.contains("xprotect-malware-detected"));
        assert!(plan[0].reason.contains("/private/tmp/update"));
    }
}
