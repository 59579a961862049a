//! Playbooks, built from `[[playbooks]]`: which findings each one answers (rule, plugin,
//! severity at or above, ATT&CK technique or tactic, tags, evidence globs), within which
//! smart groups, how often per key, and the steps it runs.

use std::collections::BTreeSet;

use crate::config::response::{
    NotifyConfig, PlaybookConfig, ResponseMode, SEVERITIES, StepConfig, SuppressConfig,
};
use crate::forward::finding::FindingRecord;
use crate::respond::attack;
use crate::respond::groups::glob;

/// One step, built.
#[derive(Debug, Clone)]
pub enum Step {
    /// Ask a collector for evidence.
    Collect(String),
    /// Ask a remediator for a plan.
    Remediate(String),
    /// Notify.
    Notify(NotifyConfig),
    /// Tag the device.
    Tag(String),
}

/// A step with its mode and lease.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// What it does.
    pub step: Step,
    /// Its mode.
    pub mode: ResponseMode,
    /// Its lease, seconds (`None`: the default for the action; `Some(0)`: none).
    pub lease_secs: Option<u64>,
}

/// One playbook, built.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// Name.
    pub name: String,
    /// Default mode.
    pub mode: ResponseMode,
    /// Approval timeout, seconds.
    pub approval_timeout_secs: Option<u64>,
    /// Smart groups (any); empty: all devices.
    pub scope: Vec<String>,
    /// Suppression.
    pub suppress: SuppressConfig,
    /// Steps, in order.
    pub steps: Vec<PlannedStep>,
    rules: Vec<String>,
    plugins: Vec<String>,
    min_severity: Option<usize>,
    techniques: Vec<String>,
    tactics: Vec<&'static str>,
    tags: Vec<String>,
    evidence: Vec<(String, String)>,
}

/// The rank of a severity name (0 informational … 4 critical).
pub fn severity_rank(name: &str) -> Option<usize> {
    SEVERITIES.iter().position(|s| *s == name)
}

/// A finding's tags: the comma-separated values of its `tags` and `categories` evidence.
pub fn finding_tags(f: &FindingRecord) -> BTreeSet<String> {
    f.evidence
        .iter()
        .filter(|(k, _)| k == "tags" || k == "categories")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect()
}

fn step_of(s: &StepConfig, default: ResponseMode) -> PlannedStep {
    let step = if let Some(c) = &s.collect {
        Step::Collect(c.get_ref().clone())
    } else if let Some(r) = &s.remediate {
        Step::Remediate(r.get_ref().clone())
    } else if let Some(n) = &s.notify {
        Step::Notify(n.clone())
    } else {
        Step::Tag(s.tag.clone().unwrap_or_default())
    };
    PlannedStep {
        step,
        mode: s.mode.unwrap_or(default),
        lease_secs: s.lease_secs,
    }
}

impl Playbook {
    /// Builds a playbook (the config was validated).
    pub fn build(c: &PlaybookConfig) -> Self {
        Self {
            name: c.name.clone(),
            mode: c.mode,
            approval_timeout_secs: c.approval_timeout_secs,
            scope: c.scope.clone(),
            suppress: c.suppress.clone(),
            steps: c.steps.iter().map(|s| step_of(s, c.mode)).collect(),
            rules: c.matcher.rules.clone(),
            plugins: c.matcher.plugins.clone(),
            min_severity: c.matcher.severity.as_deref().and_then(severity_rank),
            techniques: c
                .matcher
                .techniques
                .iter()
                .map(|t| t.to_ascii_uppercase())
                .collect(),
            tactics: c
                .matcher
                .tactics
                .iter()
                .filter_map(|t| attack::tactic_id(t))
                .collect(),
            tags: c
                .matcher
                .tags
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            evidence: c
                .matcher
                .evidence
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Whether the finding passes the match (scope aside).
    pub fn matches(&self, f: &FindingRecord) -> bool {
        if !self.rules.is_empty() && !self.rules.contains(&f.rule) {
            return false;
        }
        if !self.plugins.is_empty() && !self.plugins.contains(&f.plugin) {
            return false;
        }
        if let Some(min) = self.min_severity
            && severity_rank(f.severity).is_none_or(|s| s < min)
        {
            return false;
        }
        if !self.techniques.is_empty()
            && !f.attack.iter().any(|t| {
                let t = t.to_ascii_uppercase();
                self.techniques.iter().any(|w| {
                    t == *w
                        || t.strip_prefix(w.as_str())
                            .is_some_and(|r| r.starts_with('.'))
                })
            })
        {
            return false;
        }
        if !self.tactics.is_empty()
            && !f.attack.iter().any(|t| {
                attack::tactics_of(t)
                    .iter()
                    .any(|x| self.tactics.contains(x))
            })
        {
            return false;
        }
        if !self.tags.is_empty() {
            let have = finding_tags(f);
            if !self.tags.iter().any(|t| have.contains(t)) {
                return false;
            }
        }
        self.evidence
            .iter()
            .all(|(key, pattern)| f.evidence.iter().any(|(k, v)| k == key && glob(pattern, v)))
    }

    /// Whether the device (in `groups`) is in scope.
    pub fn in_scope(&self, groups: &BTreeSet<String>) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|g| groups.contains(g))
    }

    /// The plugins its steps name: (collectors, remediators).
    pub fn plugins_named(&self) -> (Vec<&str>, Vec<&str>) {
        let mut collectors = Vec::new();
        let mut remediators = Vec::new();
        for s in &self.steps {
            match &s.step {
                Step::Collect(c) => collectors.push(c.as_str()),
                Step::Remediate(r) => remediators.push(r.as_str()),
                Step::Notify(_) | Step::Tag(_) => {}
            }
        }
        (collectors, remediators)
    }
}

/// Every playbook, in config order.
#[derive(Debug, Clone, Default)]
pub struct Playbooks {
    /// The playbooks.
    pub list: Vec<Playbook>,
}

impl Playbooks {
    /// Builds them.
    pub fn build(configs: &[PlaybookConfig]) -> Self {
        Self {
            list: configs.iter().map(Playbook::build).collect(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A cheap test for the finding writer: could any playbook answer it (scope and
    /// suppression aside)? Findings of shadow-mode detectors are never acted on.
    pub fn could_match(&self, f: &FindingRecord) -> bool {
        !f.shadow && self.list.iter().any(|p| p.matches(f))
    }
}

/// The longest text a notification template fills in.
const MAX_FILLED: usize = 4096;

/// Fills `{rule}`, `{message}`, `{severity}`, `{process.path}`, `{incident}`,
/// `{playbook}` and `{hostname}` into `template` (each value cut to what is left of 4 KiB).
pub fn fill(
    template: &str,
    f: &FindingRecord,
    incident: Option<i64>,
    playbook: &str,
    hostname: &str,
) -> String {
    let incident = incident.map(|i| i.to_string()).unwrap_or_default();
    let values: [(&str, &str); 7] = [
        ("{rule}", &f.rule),
        ("{message}", &f.message),
        ("{severity}", f.severity),
        ("{process.path}", &f.process.path),
        ("{incident}", &incident),
        ("{playbook}", playbook),
        ("{hostname}", hostname),
    ];
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let tail = rest.get(open..).unwrap_or_default();
        match values.iter().find(|(k, _)| tail.starts_with(k)) {
            Some((k, v)) => {
                let room = MAX_FILLED.saturating_sub(out.len());
                out.push_str(crate::respond::actions::cut(v, room));
                rest = tail.get(k.len()..).unwrap_or_default();
            }
            None => {
                out.push('{');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
        if out.len() >= MAX_FILLED {
            return out;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::response::MatchConfig;

    fn finding(rule: &str, severity: &'static str, attack: &[&str]) -> FindingRecord {
        let mut f = FindingRecord::agent_notice(rule, severity, "m".into(), Vec::new());
        f.plugin = "untrusted-exec".into();
        f.attack = attack.iter().map(|s| (*s).to_owned()).collect();
        f
    }

    fn playbook(m: MatchConfig) -> Playbook {
        Playbook::build(&PlaybookConfig {
            name: "p".into(),
            description: String::new(),
            mode: ResponseMode::Enforce,
            approval_timeout_secs: None,
            scope: Vec::new(),
            matcher: m,
            suppress: SuppressConfig::default(),
            steps: Vec::new(),
        })
    }

    #[test]
    fn findings_are_matched_on_every_criterion() {
        let f = finding("r1", "high", &["T1543.001"]);
        assert!(playbook(MatchConfig::default()).matches(&f));
        let by = |f: &dyn Fn(&mut MatchConfig)| {
            let mut m = MatchConfig::default();
            f(&mut m);
            playbook(m)
        };
        assert!(by(&|m| m.rules = vec!["r1".into()]).matches(&f));
        assert!(!by(&|m| m.rules = vec!["r2".into()]).matches(&f));
        assert!(by(&|m| m.severity = Some("medium".into())).matches(&f));
        assert!(!by(&|m| m.severity = Some("critical".into())).matches(&f));
        assert!(by(&|m| m.techniques = vec!["T1543".into()]).matches(&f));
        assert!(by(&|m| m.techniques = vec!["t1543.001".into()]).matches(&f));
        assert!(!by(&|m| m.techniques = vec!["T154".into()]).matches(&f));
        assert!(by(&|m| m.tactics = vec!["persistence".into()]).matches(&f));
        assert!(!by(&|m| m.tactics = vec!["impact".into()]).matches(&f));
        assert!(by(&|m| m.plugins = vec!["untrusted-exec".into()]).matches(&f));
        let mut with = f.clone();
        with.evidence = vec![
            ("path".into(), "/private/tmp/update".into()),
            ("categories".into(), "Visibility, Persistence".into()),
        ];
        assert!(
            by(&|m| m.evidence = [("path".into(), "/private/tmp/*".into())].into()).matches(&with)
        );
        assert!(!by(&|m| m.evidence = [("path".into(), "/Users/*".into())].into()).matches(&with));
        assert!(!by(&|m| m.evidence = [("nope".into(), "*".into())].into()).matches(&with));
        assert!(by(&|m| m.tags = vec!["persistence".into()]).matches(&with));
        assert!(!by(&|m| m.tags = vec!["visibility2".into()]).matches(&with));
        let mut shadow = f.clone();
        shadow.shadow = true;
        let all = Playbooks {
            list: vec![playbook(MatchConfig::default())],
        };
        assert!(all.could_match(&f));
        assert!(!all.could_match(&shadow));
    }

    #[test]
    fn templates_fill_known_fields_and_stay_bounded() {
        let mut f = finding("r1", "high", &[]);
        f.message = "x".repeat(10_000);
        let text = fill(
            "{rule} on {hostname}: {message} {unknown}",
            &f,
            Some(7),
            "p",
            "mac",
        );
        assert!(text.starts_with("r1 on mac: xxx"));
        assert!(text.len() <= MAX_FILLED + 4);
        assert_eq!(fill("{incident}/{playbook}", &f, Some(7), "p", "h"), "7/p");
        assert_eq!(fill("{ {rule", &f, None, "p", "h"), "{ {rule");
    }
}
