//! The response half of `ward.toml`: `[[playbooks]]`, `[[smart_groups]]`, `[device]` and
//! `[response]` (limits, protected things, leases, isolation, the script catalogue, Jamf
//! Pro). Parsed and range-checked here; [`crate::respond`] builds the runtime objects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{in_range, wide};

/// How a playbook (or one of its steps) acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// Carry the actions out.
    #[default]
    Enforce,
    /// Record what would have been done; do nothing.
    Shadow,
    /// Queue each action until an admin approves it; deny when the approval times out.
    Approve,
}

impl ResponseMode {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Enforce => "enforce",
            ResponseMode::Shadow => "shadow",
            ResponseMode::Approve => "approve",
        }
    }
}

/// One `[[playbooks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookConfig {
    /// Unique name (in records and the audit log).
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Mode of every step unless a step says otherwise.
    #[serde(default)]
    pub mode: ResponseMode,
    /// How long an `approve` action waits before it is denied (default
    /// `response.approval_timeout_secs`).
    #[serde(default)]
    pub approval_timeout_secs: Option<u64>,
    /// Smart groups this device must be in (any of them); empty: every device.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Which findings it answers.
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// How often it may fire per key.
    #[serde(default)]
    pub suppress: SuppressConfig,
    /// What it does, in order (every `collect` before any `remediate`).
    #[serde(default)]
    pub steps: Vec<StepConfig>,
}

/// `match`: every criterion given must hold; within a list, any entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Rule ids.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Plugins that raised the finding.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Severity at or above.
    #[serde(default)]
    pub severity: Option<String>,
    /// ATT&CK techniques; `T1543` matches `T1543.001`.
    #[serde(default)]
    pub techniques: Vec<String>,
    /// ATT&CK tactics by id (`TA0003`) or name (`persistence`).
    #[serde(default)]
    pub tactics: Vec<String>,
    /// Finding tags (the `tags` and `categories` evidence of Jamf analytics).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Evidence fields and a glob each value must match (`*` any run, `?` one character).
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
}

/// `suppress`: at most `count` firings per `key` value in `period_secs` (stream time);
/// by default once per offending process image an hour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressConfig {
    /// Fields whose values make the key: `rule`, `plugin`, `incident`, `process`
    /// (pid and pidversion), `process.path`, `process.signing_id`, `device`,
    /// `evidence.<name>`.
    pub key: Vec<String>,
    /// Firings allowed per key and period.
    pub count: u32,
    /// The period, seconds.
    pub period_secs: u64,
}

impl Default for SuppressConfig {
    fn default() -> Self {
        Self {
            key: vec!["process".into()],
            count: 1,
            period_secs: 3600,
        }
    }
}

/// The keys [`SuppressConfig::key`] may name (besides `evidence.<name>`).
pub const SUPPRESS_FIELDS: &[&str] = &[
    "rule",
    "plugin",
    "incident",
    "process",
    "process.path",
    "process.signing_id",
    "device",
];

/// One step: exactly one of `collect`, `remediate`, `notify`, `tag`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// A collector plugin, by name.
    #[serde(default)]
    pub collect: Option<toml::Spanned<String>>,
    /// A remediator plugin, by name.
    #[serde(default)]
    pub remediate: Option<toml::Spanned<String>>,
    /// A notification.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    /// A device tag to set.
    #[serde(default)]
    pub tag: Option<String>,
    /// This step's mode (default the playbook's).
    #[serde(default)]
    pub mode: Option<ResponseMode>,
    /// Lease for what this step contains (isolation, tags, penalty box, blocks): released
    /// after this many seconds; `0` for none (default `[response.leases]`).
    #[serde(default)]
    pub lease_secs: Option<u64>,
}

/// `notify = { title, body, to_user }`; `{rule}`, `{message}`, `{severity}`,
/// `{process.path}`, `{incident}`, `{playbook}` and `{hostname}` are filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Show it to the logged-in user (else the admins' record only).
    #[serde(default)]
    pub to_user: bool,
}

/// `[device]`: this Mac's facts, where the admin overrides what the agent reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// OS version, e.g. `14.5`.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Model identifier, e.g. `MacBookPro18,3`.
    #[serde(default)]
    pub model: Option<String>,
    /// The admin's tags for this device (e.g. `finance`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One `[[smart_groups]]` entry: every criterion given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartGroupConfig {
    /// Name (what playbooks' `scope` and plugins' `scope` name).
    pub name: String,
    /// OS version comparison: `>= 14`, `< 15.1`, `= 14.5`, or a glob (`14.*`).
    #[serde(default)]
    pub os_version: Option<String>,
    /// Host name glob.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Serial numbers (any).
    #[serde(default)]
    pub serial: Vec<String>,
    /// Model glob.
    #[serde(default)]
    pub model: Option<String>,
    /// Admin tags the device must all have.
    #[serde(default)]
    pub admin_tags: Vec<String>,
    /// Tags (set by playbooks, with a lease) the device must all have.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Mirror membership to this Jamf Pro static group (needs `[response.jamf]`).
    #[serde(default)]
    pub jamf_static_group_id: Option<u64>,
}

/// `[response]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Actions carried out (or attempted) per minute, all playbooks together; past it
    /// actions are refused and recorded.
    pub max_actions_per_minute: u32,
    /// Actions per incident.
    pub max_actions_per_incident: u32,
    /// How long an `approve` action waits by default.
    pub approval_timeout_secs: u64,
    /// Playbook runs waiting for the response stage; past it a run is refused and
    /// recorded (never silently dropped).
    pub queue: usize,
    /// Findings of one process tree this close in stream time join one incident.
    pub incident_window_secs: u64,
    /// Processes that start a tree of their own for incidents (their children are not
    /// joined through them), beside launchd.
    pub incident_boundaries: Vec<String>,
    /// Never killed, quarantined or removed, beside the built-in set.
    pub protect: ProtectConfig,
    /// Default leases of containment actions.
    pub leases: LeaseConfig,
    /// Network isolation.
    pub isolation: IsolationConfig,
    /// The admin's script catalogue, by id.
    pub scripts: BTreeMap<String, ScriptConfig>,
    /// Jamf Pro.
    pub jamf: Option<JamfConfig>,
    /// What happens to processes already running an image a new block names.
    pub sweep: SweepConfig,
    /// Directories whose plists `remove-launch-item` may remove (`~` for every user's
    /// `Library/LaunchAgents`).
    pub launch_dirs: Vec<String>,
    /// Largest file quarantined by copy (a move within one volume has no limit).
    pub quarantine_max_bytes: u64,
    /// A collector gathers evidence for an incident at most once in this many seconds
    /// (stream time); later findings of the incident reuse it.
    pub evidence_refresh_secs: u64,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            max_actions_per_minute: 30,
            max_actions_per_incident: 25,
            approval_timeout_secs: 900,
            queue: 256,
            incident_window_secs: 1800,
            incident_boundaries: vec![
                "/usr/libexec/sshd-session".into(),
                "/usr/sbin/sshd".into(),
                "/usr/bin/login".into(),
            ],
            protect: ProtectConfig::default(),
            leases: LeaseConfig::default(),
            isolation: IsolationConfig::default(),
            scripts: BTreeMap::new(),
            jamf: None,
            sweep: SweepConfig::default(),
            launch_dirs: vec![
                "/Library/LaunchAgents".into(),
                "/Library/LaunchDaemons".into(),
                "~/Library/LaunchAgents".into(),
            ],
            quarantine_max_bytes: 1 << 30,
            evidence_refresh_secs: 300,
        }
    }
}

/// `[response.protect]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// Path prefixes never quarantined, removed or killed (as executables).
    pub paths: Vec<PathBuf>,
    /// Signing ids never killed or quarantined.
    pub signing_ids: Vec<String>,
}

/// `[response.leases]`: seconds; `0` for no lease (permanent until undone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Network isolation.
    pub isolate_network_secs: u64,
    /// Device tags.
    pub tag_device_secs: u64,
    /// Jamf Pro penalty box.
    pub jamf_penalty_box_secs: u64,
    /// Prevent-list entries.
    pub block_secs: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            isolate_network_secs: 3600,
            tag_device_secs: 86_400,
            jamf_penalty_box_secs: 86_400,
            block_secs: 0,
        }
    }
}

/// Which firewall isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationBackend {
    /// pf on macOS, nftables elsewhere.
    #[default]
    Auto,
    /// An nftables table (`nft`).
    Nftables,
    /// A pf anchor under `com.apple/` (`pfctl`).
    Pf,
    /// No isolation: the action is refused.
    None,
}

/// `[response.isolation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationConfig {
    /// The firewall.
    pub backend: IsolationBackend,
    /// Management hosts kept reachable: `host`, `host:port`, an IP or a CIDR. A port
    /// names what the self-test connects to.
    pub allow: Vec<String>,
    /// DNS resolvers kept reachable (default: the system's, from `/etc/resolv.conf`).
    pub dns: Vec<String>,
    /// Keep Apple's push service (17.0.0.0/8, ports 443, 2197, 5223) reachable.
    pub apple_push: bool,
    /// Re-resolve the hosts this often while isolated.
    pub refresh_secs: u64,
    /// How long the self-test waits for a management host.
    pub selftest_timeout_ms: u64,
    /// The command for the backend (`nft` or `pfctl`), if not on the PATH.
    pub program: Option<PathBuf>,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        Self {
            backend: IsolationBackend::Auto,
            allow: Vec::new(),
            dns: Vec::new(),
            apple_push: true,
            refresh_secs: 300,
            selftest_timeout_ms: 3000,
            program: None,
        }
    }
}

/// One script in the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// The program (owned by root or the agent's user, writable by no one else).
    pub path: PathBuf,
    /// Killed after this long.
    #[serde(default = "default_script_timeout")]
    pub timeout_secs: u64,
    /// Bytes of stdout and of stderr kept.
    #[serde(default = "default_script_output")]
    pub max_output_bytes: usize,
    /// Most arguments a remediator may pass.
    #[serde(default = "default_script_args")]
    pub max_args: usize,
}

fn default_script_timeout() -> u64 {
    60
}
fn default_script_output() -> usize {
    64 << 10
}
fn default_script_args() -> usize {
    16
}

/// `[response.jamf]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JamfConfig {
    /// The Jamf Pro server, e.g. `https://example.jamfcloud.com`.
    pub url: String,
    /// JSON file `{"client_id": …, "client_secret": …}`, readable by the agent only.
    pub credentials: PathBuf,
    /// This Mac's computer id in Jamf Pro (else looked up by serial number).
    #[serde(default)]
    pub computer_id: Option<u64>,
    /// This Mac's management id (else looked up with the computer).
    #[serde(default)]
    pub management_id: Option<String>,
    /// The penalty box.
    #[serde(default)]
    pub penalty_box: Option<PenaltyBoxConfig>,
    /// Allow `jamf-erase`.
    #[serde(default)]
    pub allow_erase: bool,
    /// The `jamf` binary for policies.
    #[serde(default = "default_jamf_binary")]
    pub jamf_binary: PathBuf,
    /// Per request.
    #[serde(default = "default_jamf_timeout")]
    pub timeout_secs: u64,
}

fn default_jamf_binary() -> PathBuf {
    PathBuf::from("/usr/local/bin/jamf")
}
fn default_jamf_timeout() -> u64 {
    15
}

/// `penalty_box = { extension_attribute_id, value, static_group_id }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyBoxConfig {
    /// A computer extension attribute set to `value` in the box (and cleared out of it).
    #[serde(default)]
    pub extension_attribute_id: Option<u64>,
    /// The value.
    #[serde(default = "default_penalty_value")]
    pub value: String,
    /// A static computer group the Mac is added to in the box.
    #[serde(default)]
    pub static_group_id: Option<u64>,
}

fn default_penalty_value() -> String {
    "ward-penalty-box".into()
}

/// What a sweep does to a process already running a newly blocked image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepAction {
    /// Record it only.
    None,
    /// Tell the user.
    Warn,
    /// Kill it at once.
    Kill,
    /// Tell the user, wait the grace period, then kill it.
    #[default]
    WarnThenKill,
}

/// `[response.sweep]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// What to do.
    pub action: SweepAction,
    /// Seconds between the warning and the kill.
    pub grace_secs: u64,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            action: SweepAction::WarnThenKill,
            grace_secs: 30,
        }
    }
}

/// Severity names in order.
pub const SEVERITIES: &[&str] = &["informational", "low", "medium", "high", "critical"];

/// Checks the response half of a config; the message names the key.
pub fn validate(
    response: &ResponseConfig,
    groups: &[SmartGroupConfig],
    playbooks: &[PlaybookConfig],
) -> Result<(), String> {
    in_range(
        "response.max_actions_per_minute",
        u64::from(response.max_actions_per_minute),
        1,
        100_000,
    )?;
    in_range(
        "response.max_actions_per_incident",
        u64::from(response.max_actions_per_incident),
        1,
        100_000,
    )?;
    in_range(
        "response.approval_timeout_secs",
        response.approval_timeout_secs,
        1,
        30 * 86_400,
    )?;
    in_range("response.queue", wide(response.queue), 1, 65_536)?;
    in_range(
        "response.incident_window_secs",
        response.incident_window_secs,
        1,
        30 * 86_400,
    )?;
    in_range(
        "response.isolation.refresh_secs",
        response.isolation.refresh_secs,
        10,
        86_400,
    )?;
    in_range(
        "response.isolation.selftest_timeout_ms",
        response.isolation.selftest_timeout_ms,
        100,
        60_000,
    )?;
    in_range(
        "response.sweep.grace_secs",
        response.sweep.grace_secs,
        0,
        86_400,
    )?;
    in_range(
        "response.evidence_refresh_secs",
        response.evidence_refresh_secs,
        0,
        86_400,
    )?;
    in_range(
        "response.quarantine_max_bytes",
        response.quarantine_max_bytes,
        1,
        64 << 30,
    )?;
    for (what, secs) in [
        ("isolate_network_secs", response.leases.isolate_network_secs),
        ("tag_device_secs", response.leases.tag_device_secs),
        (
            "jamf_penalty_box_secs",
            response.leases.jamf_penalty_box_secs,
        ),
        ("block_secs", response.leases.block_secs),
    ] {
        in_range(&format!("response.leases.{what}"), secs, 0, 365 * 86_400)?;
    }
    for (id, script) in &response.scripts {
        let at = format!("response.scripts.{id}");
        if !script.path.is_absolute() {
            return Err(format!("{at}.path must be absolute"));
        }
        in_range(&format!("{at}.timeout_secs"), script.timeout_secs, 1, 3600)?;
        in_range(
            &format!("{at}.max_output_bytes"),
            wide(script.max_output_bytes),
            1,
            16 << 20,
        )?;
        in_range(&format!("{at}.max_args"), wide(script.max_args), 0, 256)?;
    }
    if let Some(jamf) = &response.jamf {
        let loopback = jamf
            .url
            .strip_prefix("http://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .is_some_and(|host| {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            });
        if !(jamf.url.starts_with("https://") || loopback) {
            return Err(format!(
                "response.jamf.url `{}` must be https:// (the client secret and token travel in it; plain http only to localhost)",
                jamf.url
            ));
        }
        in_range("response.jamf.timeout_secs", jamf.timeout_secs, 1, 300)?;
    }
    for entry in &response.isolation.allow {
        if entry.trim().is_empty() {
            return Err("response.isolation.allow: an empty entry".into());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for g in groups {
        if g.name.is_empty() || !names.insert(g.name.as_str()) {
            return Err(format!(
                "smart_groups: `{}` is empty or defined twice",
                g.name
            ));
        }
        if let Some(v) = &g.os_version {
            crate::respond::groups::VersionTest::parse(v)
                .map_err(|e| format!("smart_groups.{}.os_version: {e}", g.name))?;
        }
        if g.jamf_static_group_id.is_some() && response.jamf.is_none() {
            return Err(format!(
                "smart_groups.{}.jamf_static_group_id needs [response.jamf]",
                g.name
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in playbooks.iter().enumerate() {
        let at = format!("playbooks[{i}] ({})", p.name);
        if p.name.is_empty() || !seen.insert(p.name.as_str()) {
            return Err(format!("{at}: name is empty or used twice"));
        }
        if let Some(t) = p.approval_timeout_secs {
            in_range(&format!("{at}.approval_timeout_secs"), t, 1, 30 * 86_400)?;
        }
        for g in &p.scope {
            if !names.contains(g.as_str()) {
                return Err(format!("{at}.scope: no smart group `{g}`"));
            }
        }
        if let Some(s) = &p.matcher.severity
            && !SEVERITIES.contains(&s.as_str())
        {
            return Err(format!(
                "{at}.match.severity `{s}` must be one of {}",
                SEVERITIES.join(", ")
            ));
        }
        for t in &p.matcher.tactics {
            if crate::respond::attack::tactic_id(t).is_none() {
                return Err(format!("{at}.match.tactics: unknown ATT&CK tactic `{t}`"));
            }
        }
        for field in &p.suppress.key {
            if !SUPPRESS_FIELDS.contains(&field.as_str()) && !field.starts_with("evidence.") {
                return Err(format!(
                    "{at}.suppress.key: unknown field `{field}` (known: {}, evidence.<name>)",
                    SUPPRESS_FIELDS.join(", ")
                ));
            }
        }
        in_range(
            &format!("{at}.suppress.count"),
            u64::from(p.suppress.count),
            1,
            1_000_000,
        )?;
        in_range(
            &format!("{at}.suppress.period_secs"),
            p.suppress.period_secs,
            1,
            365 * 86_400,
        )?;
        if p.steps.is_empty() {
            return Err(format!("{at}: no steps"));
        }
        let mut remediated = false;
        for (j, step) in p.steps.iter().enumerate() {
            let at = format!("{at}.steps[{j}]");
            let given = usize::from(step.collect.is_some())
                + usize::from(step.remediate.is_some())
                + usize::from(step.notify.is_some())
                + usize::from(step.tag.is_some());
            if given != 1 {
                return Err(format!(
                    "{at}: give exactly one of collect, remediate, notify, tag"
                ));
            }
            if step.collect.is_some() && remediated {
                return Err(format!(
                    "{at}: collect comes after a remediate step; evidence is gathered before \
                     anything is changed, so put every collect step first"
                ));
            }
            remediated |= step.remediate.is_some();
            if let Some(secs) = step.lease_secs {
                in_range(&format!("{at}.lease_secs"), secs, 0, 365 * 86_400)?;
            }
            if let Some(tag) = &step.tag
                && !crate::respond::groups::valid_tag(tag)
            {
                return Err(format!(
                    "{at}.tag `{tag}`: 1-64 characters of letters, digits, `-`, `_`, `.`"
                ));
            }
            if let Some(n) = &step.notify
                && (n.title.len() > 256 || n.body.len() > 4096)
            {
                return Err(format!(
                    "{at}.notify: title over 256 or body over 4096 bytes"
                ));
            }
        }
    }
    Ok(())
}
