//! Helpers for response plugins (collectors and remediators): who a trigger is about and
//! how a planned action is written down.

use crate::{Action, EventData, PlannedAction, Process, SignerType, Trigger};

impl Trigger {
    /// The process the finding is about: the new image of an `exec`, otherwise the
    /// event's process. What a collector gathers evidence about and a remediator acts on.
    ///
    /// ```
    /// use ward_sdk::{testing, Finding, FindingExt, Severity, Trigger};
    /// let finding = Finding::new("r", Severity::High, "m");
    /// let event = testing::exec("/tmp/payload", &["payload"]);
    /// let trigger = Trigger { detector: "d".into(), finding, event };
    /// assert_eq!(trigger.offender().executable.path, "/tmp/payload");
    /// ```
    pub fn offender(&self) -> &Process {
        match &self.event.data {
            EventData::Exec(exec) => &exec.target,
            _ => &self.event.process,
        }
    }
}

impl Process {
    /// True for Apple's own code (a platform binary, or signed by Apple): never quarantined
    /// or blocked by a response, whatever a finding says.
    pub fn is_apple_code(&self) -> bool {
        self.is_platform_binary || matches!(self.signer, SignerType::Apple)
    }
}

impl PlannedAction {
    /// An action with the reason the audit log records for it.
    pub fn new(action: Action, reason: impl Into<String>) -> Self {
        Self {
            action,
            reason: reason.into(),
        }
    }
}
