//! Building findings.

use crate::{Evidence, Finding, Severity};

/// Builder-style helpers on [`Finding`].
pub trait FindingExt: Sized {
    /// A finding for `rule` with a severity and one-sentence message, no ATT&CK ids and no
    /// evidence yet.
    fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Self;
    /// Adds MITRE ATT&CK technique ids.
    fn attack(self, techniques: &[&str]) -> Self;
    /// Adds one evidence field.
    fn evidence(self, name: &str, value: impl Into<String>) -> Self;
}

impl FindingExt for Finding {
    fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.to_owned(),
            severity,
            attack: Vec::new(),
            message: message.into(),
            evidence: Vec::new(),
        }
    }

    fn attack(mut self, techniques: &[&str]) -> Self {
        self.attack
            .extend(techniques.iter().map(|t| (*t).to_owned()));
        self
    }

    fn evidence(mut self, name: &str, value: impl Into<String>) -> Self {
        self.evidence.push(Evidence {
            name: name.to_owned(),
            value: value.into(),
        });
        self
    }
}

impl Finding {
    /// The value of the evidence field `name`, if present.
    pub fn evidence_value(&self, name: &str) -> Option<&str> {
        self.evidence
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.as_str())
    }
}
