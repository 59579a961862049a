//! `[[sinks]]`: where committed findings are delivered, each read from the outbox with a
//! cursor of its own.

use std::path::PathBuf;

use serde::Deserialize;

/// One sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Its name: the outbox keeps its cursor under it (renaming a sink starts it over).
    pub name: String,
    /// `file`, `syslog`, `http` or `nats`.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// `ward` (the finding line with its `id`), `ocsf` (Detection Finding, class 2004) or
    /// `ecs` (Elastic Common Schema).
    #[serde(default)]
    pub format: Format,
    /// Only findings of this severity and above.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Only these rules (all when empty).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only these plugins (all when empty).
    #[serde(default)]
    pub plugins: Vec<String>,
    /// The kinds of record sent: `finding`, and (in the `ward` format) `audit` — the
    /// response stage's audit records: actions and their outcomes, incidents opened, fleet
    /// commands, plugins loaded.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// `file`: the NDJSON file written.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `file`: bytes before it rotates (`file.1`, `file.2`, …).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// `file`: rotated files kept.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// `syslog`: `host:port` of the receiver; `nats`: `nats://host:port` (several,
    /// comma-separated).
    #[serde(default)]
    pub address: Option<String>,
    /// `syslog`: `udp`, `tcp` (RFC 6587 octet counting) or `tls` (RFC 5425).
    #[serde(default)]
    pub protocol: Option<SyslogProtocol>,
    /// `syslog` over `tls`, `http` to `https://`: a PEM file of the CA certificates to
    /// trust (the web's roots otherwise).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `syslog`: the facility (`local0`…`local7`, `user`, `security`, `daemon`, …).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Records per delivery.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// `http`: where to POST (`https://…/services/collector/event`, `…/_bulk`, a webhook).
    #[serde(default)]
    pub url: Option<String>,
    /// `http`: the receiver's API: `splunk-hec`, `elastic-bulk` or `webhook` (a JSON
    /// array of records per POST).
    #[serde(default)]
    pub api: Option<HttpApi>,
    /// `http`: how to authenticate: `none`, `bearer`, `splunk` (HEC token), `apikey`
    /// (Elastic) or `basic` (`user:password` in the token file).
    #[serde(default)]
    pub auth: HttpAuth,
    /// `http`: the file holding the token (or `user:password`): owned by the agent's user
    /// or root, not readable by others. Secrets never sit in ward.toml.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `http`: gzip the body.
    #[serde(default = "yes")]
    pub compress: bool,
    /// `http`: the Elastic index or Splunk index records go to.
    #[serde(default)]
    pub index: Option<String>,
    /// `nats`: a NATS `.creds` file (JWT and nkey seed) to connect with.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// `nats`: the JetStream stream (made with subjects `<subject_prefix>.>` if missing).
    #[serde(default)]
    pub stream: Option<String>,
    /// `nats`: the first subject token (`ward`: `ward.<device>.findings`).
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// `http`, `nats`, `syslog` over TCP/TLS: seconds a delivery may take before it counts
    /// as failed (and is retried).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// An HTTP receiver's API.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HttpApi {
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec,
    /// Elasticsearch `_bulk` (each record created with its key as `_id`).
    ElasticBulk,
    /// A JSON array of records.
    Webhook,
}

/// How an HTTP sink authenticates.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Splunk <token>`.
    Splunk,
    /// `Authorization: ApiKey <token>`.
    Apikey,
    /// `Authorization: Basic base64(user:password)`.
    Basic,
}

/// The kind of sink.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Rotating NDJSON file.
    File,
    /// Syslog RFC 5424.
    Syslog,
    /// HTTP POST (Splunk HEC, Elastic `_bulk`, webhook).
    Http,
    /// NATS JetStream.
    Nats,
}

/// How a record is rendered.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// ward's finding line, with `id`, `seq` and `kind` first.
    #[default]
    Ward,
    /// OCSF Detection Finding (class 2004).
    Ocsf,
    /// Elastic Common Schema.
    Ecs,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// One datagram per message (cut to 8 KiB).
    Udp,
    /// Octet-counted framing (RFC 6587 §3.4.1).
    Tcp,
    /// Octet-counted framing over TLS (RFC 5425).
    Tls,
}

fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_max_files() -> u32 {
    5
}
fn default_facility() -> String {
    "local0".into()
}
fn default_batch() -> usize {
    500
}
fn default_kinds() -> Vec<String> {
    vec!["finding".into()]
}
fn default_timeout_secs() -> u64 {
    10
}
fn yes() -> bool {
    true
}

/// Syslog facility codes by name.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "security" => 13,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

impl SinkConfig {
    /// Checks what the type needs; the message names the sink and the key.
    pub fn validate(&self) -> Result<(), String> {
        let at = |key: &str, why: &str| format!("sinks[{}].{key}: {why}", self.name);
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "sinks: name {:?} must be 1-64 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if let Some(s) = &self.min_severity
            && !crate::forward::outbox::SEVERITIES.contains(&s.as_str())
        {
            return Err(at(
                "min_severity",
                "one of informational, low, medium, high, critical",
            ));
        }
        for kind in &self.kinds {
            match kind.as_str() {
                "finding" => {}
                "audit" if self.format == Format::Ward => {}
                "audit" => return Err(at("kinds", "audit records go in the ward format only")),
                _ => return Err(at("kinds", "finding or audit")),
            }
        }
        if self.kinds.is_empty() {
            return Err(at("kinds", "at least one of finding, audit"));
        }
        crate::config::in_range(
            &format!("sinks[{}].batch", self.name),
            self.batch as u64,
            1,
            10_000,
        )?;
        crate::config::in_range(
            &format!("sinks[{}].timeout_secs", self.name),
            self.timeout_secs,
            1,
            600,
        )?;
        match self.kind {
            SinkKind::File => {
                if self.path.is_none() {
                    return Err(at("path", "a file sink needs a path"));
                }
                crate::config::in_range(
                    &format!("sinks[{}].max_bytes", self.name),
                    self.max_bytes,
                    4096,
                    1 << 40,
                )?;
                crate::config::in_range(
                    &format!("sinks[{}].max_files", self.name),
                    u64::from(self.max_files),
                    1,
                    1000,
                )?;
            }
            SinkKind::Syslog => {
                let Some(address) = &self.address else {
                    return Err(at("address", "a syslog sink needs host:port"));
                };
                if address
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(at("address", "host:port"));
                }
                if self.protocol.is_none() {
                    return Err(at("protocol", "udp, tcp or tls"));
                }
                if facility_code(&self.facility).is_none() {
                    return Err(at(
                        "facility",
                        "kern, user, daemon, auth, syslog, authpriv, security or local0-local7",
                    ));
                }
            }
            SinkKind::Nats => {
                let Some(address) = &self.address else {
                    return Err(at(
                        "address",
                        "a nats sink needs nats://host:port (comma-separated for several)",
                    ));
                };
                if !address
                    .split(',')
                    .all(|a| a.trim().starts_with("nats://") || a.trim().starts_with("tls://"))
                {
                    return Err(at("address", "nats://host:port or tls://host:port"));
                }
                for (key, value) in [
                    ("stream", &self.stream),
                    ("subject_prefix", &self.subject_prefix),
                ] {
                    if let Some(v) = value
                        && (v.is_empty()
                            || !v
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    {
                        return Err(at(key, "letters, digits, '-' or '_'"));
                    }
                }
            }
            SinkKind::Http => {
                let Some(url) = &self.url else {
                    return Err(at("url", "an http sink needs a url"));
                };
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(at("url", "http:// or https://"));
                }
                if self.api.is_none() {
                    return Err(at("api", "splunk-hec, elastic-bulk or webhook"));
                }
                if self.auth != HttpAuth::None && self.token_file.is_none() {
                    return Err(at("token_file", "this auth needs a token file"));
                }
            }
        }
        Ok(())
    }
}
