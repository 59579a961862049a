//! AUTH verdicts: host policy (deadline, fail-open or fail-closed per event kind) and the
//! decision the pipeline reaches for one AUTH event.
//!
//! The subscribed detectors are asked in load order, each with what is left of the
//! deadline as its epoch budget; the first in-time `deny` decides. A plugin that faults,
//! runs out of time, answers after the deadline or is skipped because no time is left
//! makes the host answer with the admin's default for the kind — unless a plugin already
//! denied in time — and the decision says so. Every deny and every default answer is
//! recorded as a finding of the agent itself (`auth-denied`, `auth-default-answer`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::bindings::wit;

/// What the host tells Endpoint Security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Let it happen (fail-open).
    #[default]
    Allow,
    /// Stop it (fail-closed).
    Deny,
}

impl Answer {
    /// `allow` / `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Deny => "deny",
        }
    }
}

/// The event kinds Endpoint Security can ask to authorize (`ES_EVENT_TYPE_AUTH_*`), by
/// their eslogger names: what `[auth] kinds` may name.
pub const AUTH_KINDS: &[&str] = &[
    "exec",
    "open",
    "kextload",
    "mmap",
    "mprotect",
    "mount",
    "remount",
    "rename",
    "signal",
    "unlink",
    "create",
    "truncate",
    "link",
    "readlink",
    "setattrlist",
    "setextattr",
    "setflags",
    "setmode",
    "setowner",
    "setacl",
    "chdir",
    "chroot",
    "getattrlist",
    "getextattr",
    "listextattr",
    "deleteextattr",
    "readdir",
    "fsgetpath",
    "clone",
    "exchangedata",
    "utimes",
    "file_provider_materialize",
    "file_provider_update",
    "uipc_bind",
    "uipc_connect",
    "proc_check",
    "get_task",
    "get_task_read",
    "get_task_inspect",
    "searchfs",
    "fcntl",
    "iokit_open",
    "proc_suspend_resume",
    "settime",
    "copyfile",
    "lookup",
];

/// Default verdict deadline: well inside Endpoint Security's own AUTH deadlines.
pub const DEFAULT_VERDICT_TIMEOUT: Duration = Duration::from_millis(100);

/// Admin policy for AUTH events (`[auth]` in `ward.toml`).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Longest the host waits for all verdicts on one event.
    pub verdict_timeout: Duration,
    /// Answer when no in-time verdict decides and some plugin missed the deadline.
    pub default: Answer,
    /// Per-kind overrides of `default`.
    pub kinds: BTreeMap<String, Answer>,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            verdict_timeout: DEFAULT_VERDICT_TIMEOUT,
            default: Answer::Allow,
            kinds: BTreeMap::new(),
        }
    }
}

impl AuthPolicy {
    /// The default answer for `kind`.
    pub fn default_for(&self, kind: &str) -> Answer {
        self.kinds.get(kind).copied().unwrap_or(self.default)
    }
}

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// A plugin denied in time.
    Plugin {
        /// Its name.
        name: String,
        /// Its reason.
        reason: String,
    },
    /// Every asked plugin answered in time without denying (or none was subscribed).
    Plugins,
    /// Some plugin did not answer in time: the policy's default for the kind.
    Default {
        /// (plugin, why): `timeout`, `trap`, `late`, `no time left`, …
        missed: Vec<(String, String)>,
    },
}

/// The host's answer to one AUTH event.
#[derive(Debug, Clone)]
pub struct AuthDecision {
    /// The answer.
    pub answer: Answer,
    /// Why.
    pub decided_by: DecidedBy,
    /// Denies from plugins in shadow mode: (plugin, reason). Recorded, not answered.
    pub shadow_denies: Vec<(String, String)>,
    /// Plugins not asked because the AUTH lane holds them in quarantine: (plugin, why).
    /// They do not make the default answer (see [`crate::detect::auth_lane`]).
    pub skipped: Vec<(String, String)>,
    /// Plugins this event's faults quarantined in the AUTH lane: (plugin, sha-256, reason).
    pub quarantined: Vec<(String, String, String)>,
    /// The deadline the plugins were given.
    pub deadline: Duration,
    /// How long deciding took.
    pub elapsed: Duration,
}

/// AUTH counts for the run summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuthStats {
    /// AUTH events answered.
    pub requests: u64,
    /// Answered allow.
    pub allowed: u64,
    /// Answered deny.
    pub denied: u64,
    /// Answered with the policy default because a plugin missed the deadline.
    pub defaulted: u64,
    /// Answered without a quarantined plugin that would have been asked.
    pub skipped: u64,
    /// From arrival to answer, nanoseconds.
    pub latency_ns: crate::sandbox::stats::Histogram,
}

impl AuthStats {
    /// Counts `decision`.
    pub fn record(&mut self, decision: &AuthDecision) {
        self.requests += 1;
        self.latency_ns.record_n(
            u64::try_from(decision.elapsed.as_nanos()).unwrap_or(u64::MAX),
            1,
        );
        match decision.answer {
            Answer::Allow => self.allowed += 1,
            Answer::Deny => self.denied += 1,
        }
        if matches!(decision.decided_by, DecidedBy::Default { .. }) {
            self.defaulted += 1;
        }
        if !decision.skipped.is_empty() {
            self.skipped += 1;
        }
    }
}

impl std::fmt::Display for AuthStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} AUTH events: {} allowed, {} denied, {} answered by the default",
            self.requests, self.allowed, self.denied, self.defaulted
        )?;
        if self.skipped > 0 {
            write!(f, ", {} without a quarantined plugin", self.skipped)?;
        }
        Ok(())
    }
}

fn evidence(pairs: Vec<(&str, String)>) -> Vec<wit::Evidence> {
    pairs
        .into_iter()
        .map(|(name, value)| wit::Evidence {
            name: name.to_owned(),
            value,
        })
        .collect()
}

fn timing<'a>(
    decision: &AuthDecision,
    mut pairs: Vec<(&'a str, String)>,
) -> Vec<(&'a str, String)> {
    pairs.push(("deadline_ms", decision.deadline.as_millis().to_string()));
    pairs.push(("elapsed_us", decision.elapsed.as_micros().to_string()));
    if !decision.skipped.is_empty() {
        let who = decision
            .skipped
            .iter()
            .map(|(p, why)| format!("{p} ({why})"))
            .collect::<Vec<_>>()
            .join(", ");
        pairs.push(("skipped", who));
    }
    pairs
}

/// The findings (shadow) recording what shadow-mode plugins would have denied.
pub fn shadow_records(decision: &AuthDecision) -> Vec<wit::Finding> {
    decision
        .shadow_denies
        .iter()
        .map(|(name, reason)| wit::Finding {
            rule: "auth-denied".into(),
            severity: wit::Severity::Medium,
            attack: Vec::new(),
            message: format!(
                "{name} (shadow mode) would deny: {reason}; answered {}",
                decision.answer.as_str()
            ),
            evidence: evidence(timing(
                decision,
                vec![
                    ("answer", decision.answer.as_str().into()),
                    ("decided_by", name.clone()),
                    ("reason", reason.clone()),
                ],
            )),
        })
        .collect()
}

/// The finding that records a deny or a default answer; `None` for a plain allow.
pub fn record(decision: &AuthDecision) -> Option<wit::Finding> {
    match &decision.decided_by {
        DecidedBy::Plugin { name, reason } => Some(wit::Finding {
            rule: "auth-denied".into(),
            severity: wit::Severity::Medium,
            attack: Vec::new(),
            message: format!("denied by {name}: {reason}"),
            evidence: evidence(timing(
                decision,
                vec![
                    ("answer", "deny".into()),
                    ("decided_by", name.clone()),
                    ("reason", reason.clone()),
                ],
            )),
        }),
        DecidedBy::Default { missed } => {
            let who = missed
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect::<Vec<_>>()
                .join(", ");
            Some(wit::Finding {
                rule: "auth-default-answer".into(),
                severity: wit::Severity::Low,
                attack: Vec::new(),
                message: format!(
                    "answered {} by policy default: no in-time verdict from {who}",
                    decision.answer.as_str()
                ),
                evidence: evidence(timing(
                    decision,
                    vec![
                        ("answer", decision.answer.as_str().into()),
                        ("decided_by", "default".into()),
                        ("missed", who),
                    ],
                )),
            })
        }
        DecidedBy::Plugins => None,
    }
}
