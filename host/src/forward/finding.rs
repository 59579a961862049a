//! The finding line: what `ward replay` prints, one JSON object per line (DESIGN.md).

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::ingest::convert;
use crate::sandbox::bindings::wit;
use ward_event::ProcessTable;

/// One finding as emitted on the NDJSON stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingRecord {
    /// Rule id.
    pub rule: String,
    /// Plugin name.
    pub plugin: String,
    /// `informational|low|medium|high|critical`.
    pub severity: &'static str,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
    /// Of the triggering event; null if the source had none.
    pub global_seq_num: Option<u64>,
    /// eslogger short name of the triggering event.
    pub event_type: String,
    /// Time of the triggering event.
    pub time: String,
    /// The acting process (shared by every finding about the same event).
    pub process: Arc<ProcessSummary>,
    /// One sentence.
    pub message: String,
    /// Rule-specific evidence, in the plugin's order.
    #[serde(serialize_with = "evidence_map")]
    pub evidence: Vec<(String, String)>,
    /// True when the plugin runs in shadow mode (reported, never acted on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The event it is about, kept for the response stage when playbooks run (never
    /// serialised).
    #[serde(skip)]
    pub trigger: Option<TriggerEvent>,
}

/// The event a finding is about, and when the finding was made: what collectors and
/// remediators are given, and where the finding → first action latency starts.
#[derive(Debug, Clone)]
pub struct TriggerEvent {
    /// The event (shared by every finding about it).
    pub event: Arc<wit::Event>,
    /// When the finding was made.
    pub at: std::time::Instant,
}

impl PartialEq for TriggerEvent {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.event, &other.event)
    }
}

fn evidence_map<S: Serializer>(evidence: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(evidence.len()))?;
    for (k, v) in evidence {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// A process in a finding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessSummary {
    /// Pid.
    pub pid: i32,
    /// Pid generation.
    pub pidversion: i32,
    /// Executable path.
    pub path: String,
    /// Signing id.
    pub signing_id: Option<String>,
    /// Team id.
    pub team_id: Option<String>,
    /// Signer class.
    pub signer: &'static str,
    /// argv, if known: at most the first [`ward_event::process_table::MAX_ARGS`]
    /// arguments and [`MAX_SUMMARY_ARGS_BYTES`] bytes (the last one kept cut and marked).
    pub args: Option<Vec<String>>,
    /// The full argument count, present only when `args` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_total: Option<usize>,
    /// Parent: from the process table, or, when the table never saw it, from the event's
    /// own `parent_audit_token` (or `ppid`) with what it does not say left null.
    pub parent: Option<ProcessRef>,
    /// Responsible process, the same way (from `responsible_audit_token`).
    pub responsible: Option<ProcessRef>,
}

/// A related process in a finding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessRef {
    /// Pid.
    pub pid: i32,
    /// Pid generation (null when the event gave only a `ppid`).
    pub pidversion: Option<i32>,
    /// Executable path (null when the process table never saw the process).
    pub path: Option<String>,
    /// Signing id.
    pub signing_id: Option<String>,
    /// Team id.
    pub team_id: Option<String>,
}

/// The agent itself, as the process of its own findings.
fn agent_process() -> ProcessSummary {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "ward".into());
    ProcessSummary {
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        pidversion: 0,
        path: exe,
        signing_id: None,
        team_id: None,
        signer: "unsigned",
        args: None,
        args_total: None,
        parent: None,
        responsible: None,
    }
}

/// Now, as RFC 3339 in UTC with nanoseconds (the form eslogger writes).
pub fn now_rfc3339() -> String {
    crate::clock::now_rfc3339()
}

/// The lowercase severity name.
pub fn severity_name(s: wit::Severity) -> &'static str {
    match s {
        wit::Severity::Informational => "informational",
        wit::Severity::Low => "low",
        wit::Severity::Medium => "medium",
        wit::Severity::High => "high",
        wit::Severity::Critical => "critical",
    }
}

fn signer_name(s: wit::SignerType) -> &'static str {
    match s {
        wit::SignerType::Apple => "apple",
        wit::SignerType::AppStore => "app-store",
        wit::SignerType::DeveloperId => "developer-id",
        wit::SignerType::Development => "development",
        wit::SignerType::Adhoc => "adhoc",
        wit::SignerType::Unsigned => "unsigned",
    }
}

/// The process `token` names (else, with no token, the pid `ppid`): whole from the table,
/// or as much as the event itself says.
fn reference(
    table: &ProcessTable,
    token: Option<&wit::AuditToken>,
    ppid: Option<i32>,
) -> Option<ProcessRef> {
    let Some(token) = token else {
        return ppid.filter(|&p| p > 0).map(|pid| ProcessRef {
            pid,
            pidversion: None,
            path: None,
            signing_id: None,
            team_id: None,
        });
    };
    Some(match table.get(&convert::model_token(token)) {
        Some(p) => ProcessRef {
            pid: p.audit_token.pid,
            pidversion: Some(p.audit_token.pidversion),
            path: Some(p.executable.path.clone()),
            signing_id: p.signing_id.clone(),
            team_id: p.team_id.clone(),
        },
        None => ProcessRef {
            pid: token.pid,
            pidversion: Some(token.pidversion),
            path: None,
            signing_id: None,
            team_id: None,
        },
    })
}

/// Bytes of arguments a finding quotes: the command line an analyst reads, not a copy of
/// a megabyte argv per finding (an attacker chooses its argv).
pub const MAX_SUMMARY_ARGS_BYTES: usize = 16 << 10;

/// At most [`ward_event::process_table::MAX_ARGS`] of `args` and
/// [`MAX_SUMMARY_ARGS_BYTES`] bytes, and whether anything was cut.
fn quoted_args(args: &[String]) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut left = MAX_SUMMARY_ARGS_BYTES;
    for arg in args.iter().take(ward_event::process_table::MAX_ARGS) {
        if arg.len() <= left {
            left -= arg.len();
            out.push(arg.clone());
            continue;
        }
        let mut end = left;
        while !arg.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = arg.get(..end).unwrap_or_default().to_owned();
        cut.push_str(&format!("…[{} bytes cut]", arg.len() - end));
        out.push(cut);
        return (out, true);
    }
    let cut = out.len() < args.len();
    (out, cut)
}

/// Summarises the acting process of `event`, with parent and responsible from `table`.
pub fn process_summary(event: &wit::Event, table: &ProcessTable) -> ProcessSummary {
    let actor = crate::detect::router::actor(event);
    let quote = |args: &[String]| {
        let (kept, cut) = quoted_args(args);
        (Some(kept), cut.then_some(args.len()))
    };
    let (args, args_total) = match &event.data {
        wit::EventData::Exec(exec) => quote(&exec.args),
        // The table keeps a capped argv and the true count.
        _ => match table.argv(&convert::model_token(&actor.token)) {
            Some(argv) => {
                let (kept, cut) = quoted_args(&argv.kept);
                let cut = cut || argv.truncated || argv.total > argv.kept.len();
                (Some(kept), cut.then_some(argv.total))
            }
            None => (None, None),
        },
    };
    ProcessSummary {
        pid: actor.token.pid,
        pidversion: actor.token.pidversion,
        path: actor.executable.path.clone(),
        signing_id: actor.signing_id.clone(),
        team_id: actor.team_id.clone(),
        signer: signer_name(actor.signer),
        args,
        args_total,
        parent: reference(table, actor.parent_token.as_ref(), Some(actor.ppid)),
        responsible: reference(table, actor.responsible_token.as_ref(), None),
    }
}

impl FindingRecord {
    /// The record for a plugin's finding about `event`.
    pub fn new(
        plugin: &str,
        shadow: bool,
        finding: wit::Finding,
        event: &wit::Event,
        table: &ProcessTable,
    ) -> Self {
        Self::with_process(
            plugin,
            shadow,
            finding,
            event,
            Arc::new(process_summary(event, table)),
        )
    }

    /// [`Self::new`] with the event's process summary already made (and shared).
    pub fn with_process(
        plugin: &str,
        shadow: bool,
        finding: wit::Finding,
        event: &wit::Event,
        process: Arc<ProcessSummary>,
    ) -> Self {
        Self {
            rule: finding.rule,
            plugin: plugin.to_owned(),
            severity: severity_name(finding.severity),
            attack: finding.attack,
            global_seq_num: event.global_seq_num,
            event_type: event.kind.clone(),
            time: event.time.clone(),
            process,
            message: finding.message,
            evidence: finding
                .evidence
                .into_iter()
                .map(|e| (e.name, e.value))
                .collect(),
            shadow,
            trigger: None,
        }
    }

    /// Keeps `event` with the finding for the response stage.
    pub fn with_trigger(mut self, event: Arc<wit::Event>) -> Self {
        self.trigger = Some(TriggerEvent {
            event,
            at: std::time::Instant::now(),
        });
        self
    }

    /// A finding of the agent itself about its own state (a plugin rolled back, refused),
    /// not about an event: no triggering event, the agent as the process.
    pub fn agent_notice(
        rule: &str,
        severity: &'static str,
        message: String,
        evidence: Vec<(String, String)>,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            plugin: "ward".into(),
            severity,
            attack: Vec::new(),
            global_seq_num: None,
            event_type: "agent".into(),
            time: now_rfc3339(),
            process: Arc::new(agent_process()),
            message,
            evidence,
            shadow: false,
            trigger: None,
        }
    }

    /// The agent's own record that a plugin was refused (at startup or on a reload), so
    /// that a SIEM learns it is not running.
    pub fn plugin_refused(origin: &str, reason: &str) -> Self {
        Self::agent_notice(
            "plugin-refused",
            "high",
            format!("plugin refused, not running: {reason}"),
            vec![
                ("origin".into(), origin.to_owned()),
                ("reason".into(), reason.to_owned()),
            ],
        )
    }

    /// The agent's own finding that a plugin was quarantined after repeated faults, raised
    /// while processing `event`.
    pub fn plugin_quarantined(
        plugin: &str,
        digest: &str,
        reason: &str,
        event: &wit::Event,
    ) -> Self {
        Self {
            rule: "plugin-quarantined".into(),
            plugin: "ward".into(),
            severity: "high",
            attack: Vec::new(),
            global_seq_num: event.global_seq_num,
            event_type: event.kind.clone(),
            time: event.time.clone(),
            process: Arc::new(agent_process()),
            message: format!(
                "plugin {plugin} was quarantined after repeated faults; it receives no events until the quarantine ends"
            ),
            evidence: vec![
                ("quarantined_plugin".into(), plugin.into()),
                ("sha256".into(), digest.into()),
                ("reason".into(), reason.into()),
            ],
            shadow: false,
            trigger: None,
        }
    }

    /// The NDJSON line (without newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"unserializable finding: {e}\"}}"))
    }
}
