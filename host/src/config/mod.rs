//! `ward.toml`: admin policy. What loads (pins, grants, modes), limits and the source.
//!
//! Unknown keys are errors, so a typo never silently weakens policy.

pub mod response;
pub mod secret;
pub mod sinks;
pub mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::detect::auth::{Answer, AuthPolicy};
use crate::detect::pipeline::PipelineOptions;
use crate::registry::load::LoadOptions;
use crate::sandbox::engine::Limits;
use crate::sandbox::grants::KNOWN_CAPABILITIES;
use crate::sandbox::plugin::{Kind, Mode};

/// Why a config was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read the file.
    #[error("config {path}: cannot read: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML or schema error, where the parser stopped.
    #[error("config {path}:{line}:{column}: {message}")]
    Parse {
        /// File.
        path: String,
        /// Line (1-based).
        line: usize,
        /// Column (1-based, in characters).
        column: usize,
        /// What the parser expected or found.
        message: String,
    },
    /// Invalid at a known place.
    #[error("config {path}:{line}:{column}: {key}: {message}")]
    At {
        /// File.
        path: String,
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
        /// The key, e.g. `playbooks[0].steps[1].remediate`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Semantically invalid.
    #[error("config {path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardConfig {
    /// Agent-wide settings.
    #[serde(default)]
    pub agent: AgentConfig,
    /// Resource limits for every plugin.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Event source for `ward run`.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// Admin-installed plugins.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// Settings for built-in plugins, by package name.
    #[serde(default)]
    pub builtin: BTreeMap<String, BuiltinConfig>,
    /// How AUTH events are answered.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Response: limits, protected things, leases, isolation, scripts, Jamf Pro.
    #[serde(default)]
    pub response: response::ResponseConfig,
    /// This Mac's facts, where the admin sets them.
    #[serde(default)]
    pub device: response::DeviceConfig,
    /// Smart groups.
    #[serde(default)]
    pub smart_groups: Vec<response::SmartGroupConfig>,
    /// Playbooks.
    #[serde(default)]
    pub playbooks: Vec<response::PlaybookConfig>,
    /// Where committed findings are delivered.
    #[serde(default)]
    pub sinks: Vec<sinks::SinkConfig>,
    /// Fleet commands over NATS JetStream.
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
    /// Directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it was read from, and its text (to name the line of a later error).
    #[serde(skip)]
    pub file_text: Option<(String, std::sync::Arc<str>)>,
    /// Prevent-list entries ward added (from the state store): merged into the built-in
    /// prevent-list's lists when it loads.
    #[serde(skip)]
    pub blocks: Vec<(String, String)>,
}

/// `[fleet]`: commands to this Mac over NATS JetStream (see `operate::fleet`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `nats://host:port` (several, comma-separated).
    pub address: String,
    /// A NATS `.creds` file (JWT and nkey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Ed25519 public keys (hex) whose signed commands this Mac carries out.
    pub trusted_keys: Vec<String>,
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Run the built-in first-party plugins.
    #[serde(default = "yes")]
    pub default_content: bool,
    /// Refuse admin plugins without a sha-256 pin.
    #[serde(default)]
    pub require_pins: bool,
    /// Where compiled components are cached; `""` disables the cache.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Most events per detector call.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Most bytes of events per detector call.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// How long a live agent may hold a partial batch for more events before delivering
    /// it, milliseconds (0: at once). Fewer, fuller calls cost a Mac less CPU; AUTH events
    /// never wait (they have their own lane).
    #[serde(default = "default_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// Threads a batch's detectors are spread over: each plugin runs on one of them for a
    /// whole batch, the heaviest on a thread of its own (1: all on the detection stage's
    /// thread). By default the cores beyond two, from one to three.
    #[serde(default = "default_detect_threads")]
    pub detect_threads: usize,
    /// Longest accepted eslogger line.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// Process images kept in the process table.
    #[serde(default = "default_process_capacity")]
    pub process_table_capacity: usize,
    /// Bytes the process table may hold (images, arguments, bookkeeping).
    #[serde(default = "default_process_bytes")]
    pub process_table_bytes: usize,
    /// How long a hot-swapped plugin version is on probation, seconds.
    #[serde(default = "default_probation_secs")]
    pub probation_secs: u64,
    /// The p99 microseconds per event a version on probation may take.
    #[serde(default = "default_probation_us")]
    pub probation_max_us_per_event: u64,
    /// `ward run` watches this directory: every `*.wasm` in it is an admin plugin, loaded,
    /// swapped and unloaded as files come, change and go.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// The agent's own state (the control socket by default).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The control socket `ward ctl` talks to (default `<state_dir>/ward.sock`).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// A localhost address (`127.0.0.1:9464`) to serve Prometheus metrics on; off unless set.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Most records the outbox (`<state_dir>/outbox.db`) keeps; past it, what every sink
    /// delivered goes first, then the least severe and oldest, counted.
    #[serde(default = "default_outbox_records")]
    pub outbox_max_records: u64,
    /// Most bytes of records the outbox keeps, the same way.
    #[serde(default = "default_outbox_bytes")]
    pub outbox_max_bytes: u64,
    /// At exit, how long the sinks may take to deliver what is committed, seconds (the
    /// rest waits in the outbox for the next start).
    #[serde(default = "default_sink_drain_secs")]
    pub sink_drain_secs: u64,
    /// Ed25519 public keys (hex) of trusted publishers: a component in `plugin_dir`
    /// carrying a valid `<file>.sig` by one of them loads without a pin.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_batch() -> usize {
    64
}
fn default_batch_bytes() -> usize {
    crate::detect::pipeline::DEFAULT_BATCH_BYTES
}
fn default_batch_linger_ms() -> u64 {
    crate::detect::pipeline::DEFAULT_LINGER.as_millis() as u64
}
fn default_sink_drain_secs() -> u64 {
    10
}
fn default_outbox_records() -> u64 {
    crate::forward::outbox::DEFAULT_MAX_RECORDS
}
fn default_outbox_bytes() -> u64 {
    crate::forward::outbox::DEFAULT_MAX_BYTES
}
fn default_detect_threads() -> usize {
    crate::detect::pipeline::default_detect_threads()
}
fn default_max_line() -> usize {
    ward_event::DEFAULT_MAX_LINE_BYTES
}
fn default_probation_secs() -> u64 {
    60
}
fn default_probation_us() -> u64 {
    2_000
}
fn default_process_capacity() -> usize {
    ward_event::process_table::DEFAULT_CAPACITY
}
fn default_process_bytes() -> usize {
    ward_event::process_table::DEFAULT_BYTE_BUDGET
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            default_content: true,
            require_pins: false,
            cache_dir: None,
            batch_size: default_batch(),
            batch_bytes: default_batch_bytes(),
            batch_linger_ms: default_batch_linger_ms(),
            detect_threads: default_detect_threads(),
            outbox_max_records: default_outbox_records(),
            sink_drain_secs: default_sink_drain_secs(),
            outbox_max_bytes: default_outbox_bytes(),
            max_line_bytes: default_max_line(),
            process_table_capacity: default_process_capacity(),
            process_table_bytes: default_process_bytes(),
            probation_secs: default_probation_secs(),
            probation_max_us_per_event: default_probation_us(),
            plugin_dir: None,
            state_dir: None,
            control_socket: None,
            metrics_addr: None,
            trusted_keys: Vec::new(),
        }
    }
}

/// `[auth]`: the verdict deadline and what to answer when a plugin misses it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Longest the host waits for all verdicts on one AUTH event, milliseconds (at most
    /// `limits.call_timeout_ms`).
    pub verdict_timeout_ms: u64,
    /// Answer when a plugin faults or misses the deadline: `allow` (fail-open, the
    /// default) or `deny` (fail-closed).
    pub default: Answer,
    /// Per event kind overrides of `default`, e.g. `exec = "deny"`.
    pub kinds: BTreeMap<String, Answer>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let p = AuthPolicy::default();
        Self {
            verdict_timeout_ms: u64::try_from(p.verdict_timeout.as_millis()).unwrap_or(100),
            default: p.default,
            kinds: p.kinds,
        }
    }
}

/// Shortest verdict deadline: four 5 ms epoch ticks.
pub const MIN_VERDICT_TIMEOUT_MS: u64 = 20;

/// Largest file `config_files` reads into a config value, and largest total of one
/// `config_dirs` directory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;
/// Most files one `config_dirs` directory may hold.
pub const MAX_CONFIG_DIR_FILES: usize = 10_000;

fn read_text(path: &Path, at: &str, key: &str, budget: &mut u64) -> Result<String, String> {
    use std::io::Read as _;
    let shown = path.display();
    // A regular file (the admin's own: links followed), opened without blocking (a FIFO
    // must not hang start-up), read through the budget (a file growing after the size
    // check cannot get past it).
    let (file, _) = crate::sandbox::grants::open_regular_following(path)
        .map_err(|e| format!("{at}: {key}: {e}"))?
        .ok_or_else(|| format!("{at}: {key}: {shown}: No such file or directory"))?;
    let mut text = String::new();
    file.take(*budget + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{at}: {key}: {shown}: {e}"))?;
    let len = text.len() as u64;
    if len > *budget {
        return Err(format!(
            "{at}: {key}: {shown}: over the {MAX_CONFIG_FILE_BYTES}-byte cap (for config_dirs, \
             the total of the directory)"
        ));
    }
    *budget -= len;
    Ok(text)
}

/// Reads `files` (one text each) and `dirs` (a JSON object of relative path → text of
/// every YAML file under it) into `config`.
fn read_into(
    base: &Path,
    at: &str,
    files: &BTreeMap<String, PathBuf>,
    dirs: &BTreeMap<String, PathBuf>,
    config: &mut BTreeMap<String, toml::Value>,
) -> Result<(), String> {
    let resolve = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    for (key, file) in files {
        if config.contains_key(key) {
            return Err(format!(
                "{at}: `{key}` is set in both config and config_files"
            ));
        }
        let mut budget = MAX_CONFIG_FILE_BYTES;
        let text = read_text(
            &resolve(file),
            at,
            &format!("config_files.{key}"),
            &mut budget,
        )?;
        config.insert(key.clone(), toml::Value::String(text));
    }
    for (key, dir) in dirs {
        if config.contains_key(key) {
            return Err(format!(
                "{at}: `{key}` is set twice (config, config_files or config_dirs)"
            ));
        }
        let dir = resolve(dir);
        let label = format!("config_dirs.{key}");
        let mut paths = Vec::new();
        crate::config::walk::yaml_files_capped(&dir, MAX_CONFIG_DIR_FILES, &mut paths)
            .map_err(|e| format!("{at}: {label}: {e:#}"))?;
        paths.sort();
        let mut budget = MAX_CONFIG_FILE_BYTES;
        let mut texts = serde_json::Map::new();
        for path in paths {
            let text = read_text(&path, at, &label, &mut budget)?;
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            texts.insert(name, serde_json::Value::String(text));
        }
        config.insert(
            key.clone(),
            toml::Value::String(serde_json::Value::Object(texts).to_string()),
        );
    }
    Ok(())
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per plugin instance, MiB.
    pub memory_mib: usize,
    /// Time cap per call, milliseconds.
    pub call_timeout_ms: u64,
    /// Time cap for a fresh instance to start (instantiation + describe), milliseconds.
    pub init_timeout_ms: u64,
    /// Faults within the window that quarantine a plugin.
    pub max_faults: u32,
    /// Fault window, seconds.
    pub fault_window_secs: u64,
    /// Findings accepted per call.
    pub max_findings_per_call: usize,
    /// First quarantine of a faulting plugin, seconds; each repeat doubles it.
    pub quarantine_secs: u64,
    /// Longest quarantine, seconds.
    pub quarantine_max_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            memory_mib: l.memory_bytes >> 20,
            call_timeout_ms: u64::try_from(l.call_timeout.as_millis()).unwrap_or(250),
            init_timeout_ms: u64::try_from(l.init_timeout.as_millis()).unwrap_or(2000),
            max_faults: l.max_faults,
            fault_window_secs: l.fault_window.as_secs(),
            max_findings_per_call: l.max_results_per_call,
            quarantine_secs: l.quarantine_base.as_secs(),
            quarantine_max_secs: l.quarantine_max.as_secs(),
        }
    }
}

/// `name` must lie in `min..=max`; the message names the key, the range and the value.
pub(crate) fn in_range(name: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{name} must be {min}..={max} (is {value})"))
    }
}

/// `usize` as `u64` for range checks (saturating on a 128-bit `usize`).
pub(crate) fn wide(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// `[source]` of `ward run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A recorded eslogger file, read once.
    File {
        /// Path.
        path: PathBuf,
    },
    /// Standard input (e.g. `eslogger exec fork exit | ward run`).
    Stdin,
    /// A file another process appends to, followed across rotation and truncation.
    Follow {
        /// Path.
        path: PathBuf,
        /// Read what is already there first (default: start at the end).
        #[serde(default)]
        from_start: bool,
    },
    /// Run `eslogger` (macOS 13+, root, Full Disk Access) and restart it if it dies.
    Eslogger {
        /// Program (default `eslogger` on PATH).
        #[serde(default)]
        program: Option<PathBuf>,
        /// Event kinds (default: what the loaded detectors subscribe to, plus fork/exec/exit).
        #[serde(default)]
        kinds: Option<Vec<String>>,
    },
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Component file; or, with `name` instead, the settings of `<name>.wasm` (or
    /// `<name_with_underscores>.wasm`) in `[agent] plugin_dir`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Which `plugin_dir` component these settings are for.
    #[serde(default)]
    pub name: Option<String>,
    /// A stream and its expected findings a new version must reproduce before it is
    /// swapped in (hot reload).
    #[serde(default)]
    pub selftest: Option<SelftestConfig>,
    /// Expected sha-256.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Expected world.
    #[serde(default)]
    pub kind: Option<String>,
    /// Mode.
    #[serde(default)]
    pub mode: Mode,
    /// Modes while the device is in a smart group: the first group it is in decides,
    /// else `mode`.
    #[serde(default)]
    pub group_modes: Vec<GroupMode>,
    /// Granted capabilities.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Directories covered by `file-read` and the enrichment grants.
    #[serde(default)]
    pub file_scope: Vec<PathBuf>,
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Config values read from files (e.g. a 100,000-line prevent list), by key.
    #[serde(default)]
    pub config_files: BTreeMap<String, PathBuf>,
    /// Config values read from directories of YAML files (e.g. custom Jamf analytics), by
    /// key: a JSON object of relative path → file text.
    #[serde(default)]
    pub config_dirs: BTreeMap<String, PathBuf>,
}

/// `selftest = { events = "…", expect = "…" }` of a `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelftestConfig {
    /// eslogger JSON lines to feed the new version.
    pub events: PathBuf,
    /// Its expected output (`ward plugin test --expect` format).
    pub expect: PathBuf,
}

impl PluginConfig {
    /// How the entry is named in messages: its path, or its `plugin_dir` name.
    pub fn label(&self) -> String {
        match (&self.path, &self.name) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(n)) => format!("plugin_dir:{n}"),
            (None, None) => "?".into(),
        }
    }
}

/// `{ group = "compromised", mode = "enforce" }`: a plugin's mode while the device is in
/// that smart group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMode {
    /// The smart group.
    pub group: String,
    /// The mode.
    pub mode: Mode,
}

/// The mode of a plugin configured with `mode` and `group_modes` while the device is in
/// `groups`.
pub fn mode_in(
    mode: Mode,
    group_modes: &[GroupMode],
    groups: &std::collections::BTreeSet<String>,
) -> Mode {
    group_modes
        .iter()
        .find(|g| groups.contains(&g.group))
        .map_or(mode, |g| g.mode)
}

/// `[builtin.<package>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinConfig {
    /// Mode.
    #[serde(default)]
    pub mode: Mode,
    /// Modes while the device is in a smart group (see [`PluginConfig::group_modes`]).
    #[serde(default)]
    pub group_modes: Vec<GroupMode>,
    /// Granted capabilities (e.g. `file-hash` for a SHA-256 prevent list).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Directories the grants cover.
    #[serde(default)]
    pub file_scope: Vec<PathBuf>,
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Config values read from files, by key.
    #[serde(default)]
    pub config_files: BTreeMap<String, PathBuf>,
    /// Config values read from directories of YAML files, by key.
    #[serde(default)]
    pub config_dirs: BTreeMap<String, PathBuf>,
}

fn config_text(values: &BTreeMap<String, toml::Value>) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

impl WardConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut config: WardConfig = toml::from_str(&text).map_err(|e| {
            let (line, column) = line_column(&text, e.span().map_or(0, |s| s.start));
            ConfigError::Parse {
                path: shown.clone(),
                line,
                column,
                message: e.message().replace('\n', " ").trim().to_owned(),
            }
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.file_text = Some((shown.clone(), std::sync::Arc::from(text.as_str())));
        config.validate().map_err(|message| ConfigError::Invalid {
            path: shown.clone(),
            message,
        })?;
        config
            .read_config_files()
            .map_err(|message| ConfigError::Invalid {
                path: shown,
                message,
            })?;
        Ok(config)
    }

    /// Reads every `config_files` and `config_dirs` entry into its plugin's `config` table.
    fn read_config_files(&mut self) -> Result<(), String> {
        let base = self.base_dir.clone();
        for (i, p) in self.plugins.iter_mut().enumerate() {
            let at = format!("plugins[{i}] ({})", p.label());
            read_into(&base, &at, &p.config_files, &p.config_dirs, &mut p.config)?;
        }
        for (name, b) in &mut self.builtin {
            let at = format!("builtin.{name}");
            read_into(&base, &at, &b.config_files, &b.config_dirs, &mut b.config)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(fleet) = &self.fleet {
            if !fleet
                .address
                .split(',')
                .all(|a| a.trim().starts_with("nats://") || a.trim().starts_with("tls://"))
            {
                return Err("fleet.address: nats://host:port or tls://host:port".into());
            }
            if fleet.trusted_keys.is_empty() {
                return Err(
                    "fleet.trusted_keys: at least one key, or no command is ever carried out"
                        .into(),
                );
            }
            for key in &fleet.trusted_keys {
                crate::registry::signature::parse_key(key)
                    .map_err(|e| format!("fleet.trusted_keys: {e}"))?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for sink in &self.sinks {
            sink.validate()?;
            if !names.insert(sink.name.as_str()) {
                return Err(format!("sinks: two sinks are named {:?}", sink.name));
            }
        }
        // At least four epoch ticks: below that a plugin's budget is all rounding.
        if self.auth.verdict_timeout_ms < MIN_VERDICT_TIMEOUT_MS
            || self.auth.verdict_timeout_ms > self.limits.call_timeout_ms
        {
            return Err(format!(
                "auth.verdict_timeout_ms must be {MIN_VERDICT_TIMEOUT_MS}..={} (limits.call_timeout_ms)",
                self.limits.call_timeout_ms
            ));
        }
        for kind in self.auth.kinds.keys() {
            if !crate::detect::auth::AUTH_KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "auth.kinds: `{kind}` is not an event kind Endpoint Security authorizes \
                     (e.g. exec, open, create, rename, unlink, mmap, signal)"
                ));
            }
        }
        for (name, b) in &self.builtin {
            for g in &b.grants {
                if !KNOWN_CAPABILITIES.contains(&g.as_str()) {
                    return Err(format!(
                        "builtin.{name}: unknown capability `{g}` (known: {})",
                        KNOWN_CAPABILITIES.join(", ")
                    ));
                }
            }
        }
        // Every limit has a range: a value outside it is a mistake, never wrapped or
        // clamped into something else (`memory_mib << 20` of a huge value was once 0).
        let a = &self.agent;
        in_range("agent.batch_size", wide(a.batch_size), 1, 4096)?;
        in_range(
            "agent.batch_bytes",
            wide(a.batch_bytes),
            64 << 10,
            256 << 20,
        )?;
        in_range("agent.batch_linger_ms", a.batch_linger_ms, 0, 1000)?;
        in_range("agent.detect_threads", a.detect_threads as u64, 1, 16)?;
        in_range(
            "agent.outbox_max_records",
            a.outbox_max_records,
            1_000,
            100_000_000,
        )?;
        in_range(
            "agent.outbox_max_bytes",
            a.outbox_max_bytes,
            1 << 20,
            64 << 30,
        )?;
        in_range(
            "agent.max_line_bytes",
            wide(a.max_line_bytes),
            1024,
            64 << 20,
        )?;
        in_range(
            "agent.process_table_capacity",
            wide(a.process_table_capacity),
            1,
            10_000_000,
        )?;
        in_range(
            "agent.process_table_bytes",
            wide(a.process_table_bytes),
            wide(ward_event::process_table::MAX_IMAGE_BYTES),
            64 << 30,
        )?;
        in_range("agent.probation_secs", a.probation_secs, 1, 86_400)?;
        in_range(
            "agent.probation_max_us_per_event",
            a.probation_max_us_per_event,
            1,
            10_000_000,
        )?;
        if let Some(addr) = &a.metrics_addr {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| format!("agent.metrics_addr `{addr}`: {e}"))?;
            if !parsed.ip().is_loopback() {
                return Err(format!(
                    "agent.metrics_addr `{addr}`: only a loopback address is served (the metrics are not authenticated)"
                ));
            }
        }
        for key in &a.trusted_keys {
            crate::registry::signature::parse_key(key)
                .map_err(|e| format!("agent.trusted_keys: {e}"))?;
        }
        let l = &self.limits;
        // wasm32 memories address at most 4 GiB.
        in_range("limits.memory_mib", wide(l.memory_mib), 1, 4096)?;
        in_range("limits.call_timeout_ms", l.call_timeout_ms, 1, 600_000)?;
        in_range("limits.init_timeout_ms", l.init_timeout_ms, 1, 600_000)?;
        in_range("limits.max_faults", u64::from(l.max_faults), 1, 1_000_000)?;
        in_range(
            "limits.fault_window_secs",
            l.fault_window_secs,
            1,
            7 * 86_400,
        )?;
        in_range(
            "limits.max_findings_per_call",
            wide(l.max_findings_per_call),
            1,
            65_536,
        )?;
        in_range("limits.quarantine_secs", l.quarantine_secs, 1, 7 * 86_400)?;
        in_range(
            "limits.quarantine_max_secs",
            l.quarantine_max_secs,
            l.quarantine_secs,
            7 * 86_400,
        )?;
        response::validate(&self.response, &self.smart_groups, &self.playbooks)?;
        let group_named = |g: &str| self.smart_groups.iter().any(|s| s.name == g);
        for (name, b) in &self.builtin {
            if let Some(g) = b.group_modes.iter().find(|g| !group_named(&g.group)) {
                return Err(format!(
                    "builtin.{name}.group_modes: no smart group `{}`",
                    g.group
                ));
            }
        }
        let known = crate::registry::builtin::builtin_names();
        if let Some(name) = self.builtin.keys().find(|n| !known.contains(&n.as_str())) {
            return Err(format!(
                "builtin.{name}: there is no built-in plugin `{name}` (built in: {})",
                known.join(", ")
            ));
        }
        for (i, p) in self.plugins.iter().enumerate() {
            let at = format!("plugins[{i}] ({})", p.label());
            if p.path.is_none() && p.name.is_none() {
                return Err(format!(
                    "{at}: give `path` (a component) or `name` (one in plugin_dir)"
                ));
            }
            if p.path.is_none() && self.agent.plugin_dir.is_none() {
                return Err(format!("{at}: `name` needs `[agent] plugin_dir`"));
            }
            if let Some(pin) = &p.sha256
                && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(format!("{at}: sha256 must be 64 hex characters"));
            }
            if let Some(kind) = &p.kind {
                parse_kind(kind).ok_or_else(|| {
                    format!("{at}: kind must be detector, collector or remediator")
                })?;
            }
            for g in &p.grants {
                if !KNOWN_CAPABILITIES.contains(&g.as_str()) {
                    return Err(format!(
                        "{at}: unknown capability `{g}` (known: {})",
                        KNOWN_CAPABILITIES.join(", ")
                    ));
                }
            }
            if let Some(g) = p.group_modes.iter().find(|g| !group_named(&g.group)) {
                return Err(format!("{at}.group_modes: no smart group `{}`", g.group));
            }
        }
        Ok(())
    }

    /// Runtime limits (the ranges were checked on load).
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.limits.memory_mib.saturating_mul(1 << 20),
            call_timeout: Duration::from_millis(self.limits.call_timeout_ms),
            init_timeout: Duration::from_millis(self.limits.init_timeout_ms),
            max_faults: self.limits.max_faults,
            fault_window: Duration::from_secs(self.limits.fault_window_secs),
            max_results_per_call: self.limits.max_findings_per_call,
            quarantine_base: Duration::from_secs(self.limits.quarantine_secs),
            quarantine_max: Duration::from_secs(self.limits.quarantine_max_secs),
            ..Limits::default()
        }
    }

    /// Pipeline options.
    pub fn pipeline(&self) -> PipelineOptions {
        PipelineOptions {
            batch_size: self.agent.batch_size,
            batch_bytes: self.agent.batch_bytes,
            linger: Duration::from_millis(self.agent.batch_linger_ms),
            max_line_bytes: self.agent.max_line_bytes,
            auth: AuthPolicy {
                verdict_timeout: Duration::from_millis(self.auth.verdict_timeout_ms),
                default: self.auth.default,
                kinds: self.auth.kinds.clone(),
            },
            probation: Duration::from_secs(self.agent.probation_secs),
            probation_max_ns_per_event: self.agent.probation_max_us_per_event.saturating_mul(1_000),
            keep_events: !self.playbooks.is_empty(),
            detect_threads: self.agent.detect_threads,
        }
    }

    /// The compile-cache directory: configured, or the user cache dir, or none.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        match &self.agent.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(self.resolve(dir)),
            None => default_cache_dir(),
        }
    }

    /// The agent's state directory: configured, or `WARD_STATE_DIR`, or the system's
    /// (`/var/db/ward` on macOS, `/var/lib/ward` elsewhere) for root, or the user's
    /// (`$XDG_STATE_HOME/ward`, `~/.local/state/ward`).
    pub fn state_dir(&self) -> PathBuf {
        match &self.agent.state_dir {
            Some(dir) => self.resolve(dir),
            None => default_state_dir(),
        }
    }

    /// The outbox's bounds.
    pub fn outbox_limits(&self) -> crate::forward::outbox::Limits {
        crate::forward::outbox::Limits {
            max_records: self.agent.outbox_max_records,
            max_bytes: self.agent.outbox_max_bytes,
        }
    }

    /// This Mac's name in idempotency keys and fleet subjects: its serial number (from
    /// `[device]` or the machine), else its host name.
    pub fn device_id(&self) -> String {
        let facts = crate::respond::groups::DeviceFacts::read(&self.device);
        let id = if facts.serial.is_empty() {
            facts.hostname
        } else {
            facts.serial
        };
        if id.is_empty() { "unknown".into() } else { id }
    }

    /// Opens the outbox in `dir` for this config's sinks.
    pub fn open_outbox(
        &self,
        dir: &std::path::Path,
    ) -> Result<crate::forward::outbox::Outbox, crate::respond::store::StoreError> {
        let sinks: Vec<String> = self.sinks.iter().map(|s| s.name.clone()).collect();
        crate::forward::outbox::Outbox::open(dir, &self.device_id(), self.outbox_limits(), &sinks)
    }

    /// The control socket: configured, or `<state_dir>/ward.sock`.
    pub fn control_socket(&self) -> PathBuf {
        match &self.agent.control_socket {
            Some(p) => self.resolve(p),
            None => self.state_dir().join("ward.sock"),
        }
    }

    /// `path` relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Every plugin a playbook step names.
    pub fn playbook_plugins(&self) -> std::collections::BTreeSet<String> {
        self.playbooks
            .iter()
            .flat_map(|p| &p.steps)
            .flat_map(|s| [&s.collect, &s.remediate])
            .flatten()
            .map(|n| n.get_ref().clone())
            .collect()
    }

    /// An error about `key`, placed at byte `span` of the file the config came from.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: String,
    ) -> ConfigError {
        match &self.file_text {
            Some((path, text)) => {
                let (line, column) = line_column(text, span.start);
                ConfigError::At {
                    path: path.clone(),
                    line,
                    column,
                    key: key.to_owned(),
                    message,
                }
            }
            None => ConfigError::Invalid {
                path: "(built-in defaults)".into(),
                message: format!("{key}: {message}"),
            },
        }
    }

    /// Checks that every plugin a playbook step names is loaded, of the world the step
    /// needs (`loaded`: name → world). The error names the file, line and key.
    pub fn check_playbook_plugins(
        &self,
        loaded: &std::collections::BTreeMap<String, Kind>,
    ) -> Result<(), ConfigError> {
        for (i, p) in self.playbooks.iter().enumerate() {
            for (j, step) in p.steps.iter().enumerate() {
                for (field, want, name) in [
                    ("collect", Kind::Collector, &step.collect),
                    ("remediate", Kind::Remediator, &step.remediate),
                ] {
                    let Some(name) = name else { continue };
                    let key = format!("playbooks[{i}] ({}).steps[{j}].{field}", p.name);
                    let problem = match loaded.get(name.get_ref()) {
                        Some(kind) if *kind == want => None,
                        Some(kind) => {
                            Some(format!("`{}` is a {kind}, not a {want}", name.get_ref()))
                        }
                        None => {
                            let of_kind: Vec<&str> = loaded
                                .iter()
                                .filter(|(_, k)| **k == want)
                                .map(|(n, _)| n.as_str())
                                .collect();
                            Some(format!(
                                "no {want} `{}` is loaded (loaded {want}s: {})",
                                name.get_ref(),
                                if of_kind.is_empty() {
                                    "none".to_owned()
                                } else {
                                    of_kind.join(", ")
                                }
                            ))
                        }
                    };
                    if let Some(message) = problem {
                        return Err(self.error_at(name.span(), &key, message));
                    }
                }
            }
        }
        Ok(())
    }

    /// Load options for a `[[plugins]]` entry.
    pub fn plugin_options(&self, p: &PluginConfig) -> LoadOptions {
        LoadOptions {
            pin: p.sha256.clone(),
            require_pin: self.agent.require_pins,
            expected_kind: p.kind.as_deref().and_then(parse_kind),
            grants: p.grants.clone(),
            file_scope: p.file_scope.iter().map(|d| self.resolve(d)).collect(),
            config: config_text(&p.config),
            mode: p.mode,
        }
    }

    /// Load options for the built-in plugin `package`.
    pub fn builtin_options(&self, package: &str) -> LoadOptions {
        let b = self.builtin.get(package).cloned().unwrap_or_default();
        let mut config = config_text(&b.config);
        if package == "prevent-list" && !self.blocks.is_empty() {
            config = crate::respond::actions::blocklist::merged_config(&config, &self.blocks);
        }
        LoadOptions {
            grants: b.grants.clone(),
            file_scope: b.file_scope.iter().map(|d| self.resolve(d)).collect(),
            config,
            mode: b.mode,
            ..LoadOptions::default()
        }
    }
}

/// The 1-based line and column of byte `at` of `text`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

/// `detector` / `collector` / `remediator`.
pub fn parse_kind(s: &str) -> Option<Kind> {
    match s {
        "detector" => Some(Kind::Detector),
        "collector" => Some(Kind::Collector),
        "remediator" => Some(Kind::Remediator),
        _ => None,
    }
}

/// The state directory when none is configured (see [`WardConfig::state_dir`]).
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARD_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from(if cfg!(target_os = "macos") {
            "/var/db/ward"
        } else {
            "/var/lib/ward"
        });
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(xdg).join("ward");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/ward"))
        .unwrap_or_else(|| PathBuf::from("ward-state"))
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WARD_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("ward"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ward"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WardConfig, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tmp".into(),
            source,
        })?;
        let path = dir.path().join("ward.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: "tmp".into(),
            source,
        })?;
        WardConfig::load(&path)
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs/ward.toml");
        let config = WardConfig::load(&path).unwrap();
        assert!(config.agent.default_content);
        assert_eq!(config.limits().call_timeout, Duration::from_millis(250));
        assert!(matches!(config.source, Some(SourceConfig::Stdin)));
        assert_eq!(config.builtin_options("untrusted-exec").mode, Mode::Enforce);
    }

    #[test]
    fn auth_policy_is_read_and_checked() {
        let config = parse(
            "[auth]\nverdict_timeout_ms = 40\ndefault = \"deny\"\nkinds = { exec = \"allow\" }\n",
        )
        .unwrap();
        let policy = config.pipeline().auth;
        assert_eq!(policy.verdict_timeout, Duration::from_millis(40));
        assert_eq!(policy.default_for("exec"), Answer::Allow);
        assert_eq!(policy.default_for("open"), Answer::Deny);
        // Fail-open with the default deadline when absent.
        let policy = parse("").unwrap().pipeline().auth;
        assert_eq!(policy.default_for("exec"), Answer::Allow);
        assert_eq!(
            policy.verdict_timeout,
            crate::detect::auth::DEFAULT_VERDICT_TIMEOUT
        );
        let err = parse("[auth]\nverdict_timeout_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.verdict_timeout_ms must be 20..=250"),
            "{err}"
        );
        let err = parse("[auth]\nverdict_timeout_ms = 500\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.verdict_timeout_ms"), "{err}");
        let err = parse("[auth]\ndefault = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn config_files_are_read_into_config_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("teams.txt"), "EQHXZ8M8AV\n# comment\n").unwrap();
        let path = dir.path().join("ward.toml");
        std::fs::write(
            &path,
            "[builtin.prevent-list]\ngrants = [\"file-hash\"]\nfile_scope = [\"/usr\"]\nconfig_files = { team_id = \"teams.txt\" }\n",
        )
        .unwrap();
        let config = WardConfig::load(&path).unwrap();
        let options = config.builtin_options("prevent-list");
        assert_eq!(options.config["team_id"], "EQHXZ8M8AV\n# comment\n");
        assert_eq!(options.grants, vec!["file-hash"]);
        assert_eq!(options.file_scope, vec![PathBuf::from("/usr")]);
        // A missing file, a key set twice and an unknown grant are errors naming the place.
        std::fs::write(
            &path,
            "[builtin.prevent-list]\nconfig_files = { team_id = \"gone.txt\" }\n",
        )
        .unwrap();
        let err = WardConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("builtin.prevent-list: config_files.team_id") && err.contains("gone.txt"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[builtin.prevent-list]\nconfig = { team_id = \"X\" }\nconfig_files = { team_id = \"teams.txt\" }\n",
        )
        .unwrap();
        let err = WardConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("set in both"), "{err}");
        // A directory of YAML files becomes one JSON object of relative path → text.
        std::fs::create_dir_all(dir.path().join("analytics/sub")).unwrap();
        std::fs::write(dir.path().join("analytics/a.yaml"), "name: A\n").unwrap();
        std::fs::write(dir.path().join("analytics/sub/b.yml"), "name: B\n").unwrap();
        std::fs::write(dir.path().join("analytics/notes.txt"), "ignored").unwrap();
        std::fs::write(
            &path,
            "[builtin.jamf-analytics]\nconfig_dirs = { analytics = \"analytics\" }\n",
        )
        .unwrap();
        let config = WardConfig::load(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&config.builtin_options("jamf-analytics").config["analytics"])
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a.yaml": "name: A\n", "sub/b.yml": "name: B\n"})
        );
        std::fs::write(
            &path,
            "[builtin.jamf-analytics]\nconfig_dirs = { analytics = \"nope\" }\n",
        )
        .unwrap();
        let err = WardConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("builtin.jamf-analytics: config_dirs.analytics"),
            "{err}"
        );
        std::fs::write(&path, "[builtin.prevent-list]\ngrants = [\"root\"]\n").unwrap();
        let err = WardConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("builtin.prevent-list: unknown capability `root`"),
            "{err}"
        );
    }

    #[test]
    fn typos_and_bad_values_are_rejected_with_the_file_named() {
        let err = parse("[agent]\nbatch_sise = 3\n").unwrap_err().to_string();
        assert!(
            err.contains("ward.toml") && err.contains("batch_sise"),
            "{err}"
        );
        let err = parse("[[plugins]]\npath = \"x.wasm\"\nsha256 = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256 must be 64 hex"), "{err}");
        let err = parse("[[plugins]]\npath = \"x.wasm\"\ngrants = [\"network\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown capability `network`"), "{err}");
        let err = parse("[[plugins]]\npath = \"x.wasm\"\nkind = \"scanner\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind must be"), "{err}");
        let err = parse("[agent]\nbatch_size = 0\n").unwrap_err().to_string();
        assert!(err.contains("batch_size"), "{err}");
    }

    /// Every limit has a range, checked before any arithmetic: `memory_mib << 20` of a
    /// huge value once wrapped to 0 and refused every plugin with exit 0.
    #[test]
    fn limits_out_of_range_are_refused_not_wrapped() {
        for (text, key) in [
            (
                "[limits]\nmemory_mib = 17592186044416\n",
                "limits.memory_mib must be 1..=4096",
            ),
            ("[limits]\nmemory_mib = 0\n", "limits.memory_mib"),
            ("[limits]\ncall_timeout_ms = 0\n", "limits.call_timeout_ms"),
            ("[limits]\nmax_faults = 0\n", "limits.max_faults"),
            (
                "[limits]\nfault_window_secs = 99999999999\n",
                "limits.fault_window_secs",
            ),
            (
                "[limits]\nmax_findings_per_call = 10000000\n",
                "limits.max_findings_per_call",
            ),
            (
                "[limits]\nquarantine_secs = 600\nquarantine_max_secs = 60\n",
                "limits.quarantine_max_secs must be 600",
            ),
            ("[agent]\nbatch_bytes = 1\n", "agent.batch_bytes"),
            (
                "[agent]\nmax_line_bytes = 18446744073709551615\n",
                "agent.max_line_bytes",
            ),
            (
                "[agent]\nprocess_table_capacity = 0\n",
                "agent.process_table_capacity",
            ),
            (
                "[agent]\nprocess_table_bytes = 10\n",
                "agent.process_table_bytes",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("ward.toml"),
                "{text}: {err}"
            );
        }
        let ok = parse("[limits]\nmemory_mib = 4096\n").unwrap();
        assert_eq!(ok.limits().memory_bytes, 4 << 30);
    }

    /// A misspelt built-in name is a typo that would silently leave the real plugin as
    /// it was: refused, naming the ones that exist.
    #[test]
    fn a_misspelt_builtin_is_refused() {
        let err = parse("[builtin.untrusted-exe]\nmode = \"shadow\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no built-in plugin `untrusted-exe`"), "{err}");
        assert!(err.contains("untrusted-exec"), "{err}");
    }

    /// A symlink loop in a `config_dirs` directory ends the walk instead of hanging
    /// start-up with memory growing; a tree past the entry cap fails fast.
    #[test]
    fn directory_walks_survive_link_loops() {
        let dir = tempfile::tempdir().unwrap();
        let analytics = dir.path().join("analytics");
        std::fs::create_dir_all(analytics.join("a/b")).unwrap();
        std::fs::write(analytics.join("a/b/one.yaml"), "name: One\n").unwrap();
        std::os::unix::fs::symlink(&analytics, analytics.join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink("../..", analytics.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("gone", analytics.join("dangling")).unwrap();
        let path = dir.path().join("ward.toml");
        std::fs::write(
            &path,
            "[builtin.jamf-analytics]\nconfig_dirs = { analytics = \"analytics\" }\n",
        )
        .unwrap();
        let config = WardConfig::load(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&config.builtin_options("jamf-analytics").config["analytics"])
                .unwrap();
        assert_eq!(json, serde_json::json!({"a/b/one.yaml": "name: One\n"}));
        // Past the file cap: an error naming the directory, not a hang or a huge read.
        let mut many = Vec::new();
        let err = crate::config::walk::yaml_files_capped(&analytics, 0, &mut many).unwrap_err();
        assert!(
            format!("{err:#}").contains("more than 0 analytics files"),
            "{err:#}"
        );
    }

    #[test]
    fn plugin_paths_resolve_against_the_config_file() {
        let config = parse("[[plugins]]\npath = \"plugins/a.wasm\"\nmode = \"shadow\"\n[plugins.config]\nlimit = 5\nname = \"x\"\n").unwrap();
        let entry = &config.plugins[0];
        assert!(config.resolve(entry.path.as_deref().unwrap()).is_absolute());
        let options = config.plugin_options(entry);
        assert_eq!(options.mode, Mode::Shadow);
        assert_eq!(options.config.get("limit").map(String::as_str), Some("5"));
        assert_eq!(options.config.get("name").map(String::as_str), Some("x"));
    }
}
