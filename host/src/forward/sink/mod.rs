//! Sinks: each configured `[[sinks]]` entry runs on a thread of its own, reading the
//! outbox after its cursor, rendering what its filters select in its format, delivering,
//! and only then moving its cursor — at least once, in order. A failing receiver is
//! retried with exponential backoff and jitter (0.25 s doubling to 30 s) while the outbox
//! keeps everything (within its bounds); the agent never waits for a sink.

pub mod file;
pub mod http;
pub mod nats;
pub mod syslog;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::WardConfig;
use crate::config::sinks::{SinkConfig, SinkKind};
use crate::forward::format;
use crate::forward::outbox::{Bell, Outbox, StoredRecord, severity_rank};

/// A receiver of rendered records.
pub trait Deliver: Send {
    /// Delivers `records` (rendered lines, in order); `Ok` only when all were accepted.
    fn deliver(&mut self, records: &[Rendered<'_>]) -> Result<(), String>;
}

/// One record as a sink sends it.
pub struct Rendered<'a> {
    /// The stored record.
    pub record: &'a StoredRecord,
    /// Its rendering in the sink's format (one JSON object).
    pub line: String,
}

/// Counters of one sink, shared with metrics and the summary.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records delivered.
    pub delivered: AtomicU64,
    /// Records its filters passed over.
    pub filtered: AtomicU64,
    /// Failed deliveries (each retried).
    pub failures: AtomicU64,
    /// The cursor: the last record it has delivered.
    pub cursor: AtomicU64,
}

/// When to stop: asked, and by when the sinks must have drained.
#[derive(Debug, Default)]
struct Stop {
    asked: AtomicBool,
    by: std::sync::Mutex<Option<Instant>>,
}

impl Stop {
    fn past_deadline(&self) -> bool {
        self.asked.load(Ordering::Acquire)
            && self
                .by
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none_or(|by| Instant::now() >= by)
    }
}

/// The running sinks.
pub struct Sinks {
    threads: Vec<(String, std::thread::JoinHandle<()>)>,
    stop: Arc<Stop>,
    bell: Bell,
    /// Each sink's counters, by name.
    pub stats: Vec<(String, Arc<SinkStats>)>,
}

impl Sinks {
    /// Starts every configured sink on the outbox in `dir`.
    pub fn start(config: &WardConfig, dir: &Path, bell: Bell) -> anyhow::Result<Self> {
        let stop = Arc::new(Stop::default());
        let device = config.device_id();
        let mut sinks = Self {
            threads: Vec::new(),
            stop: Arc::clone(&stop),
            bell: bell.clone(),
            stats: Vec::new(),
        };
        let names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
        for sink in &config.sinks {
            let target: Box<dyn Deliver> = match sink.kind {
                SinkKind::File => Box::new(file::FileSink::new(
                    config.resolve(sink.path.as_deref().unwrap_or(Path::new("findings.ndjson"))),
                    sink.max_bytes,
                    sink.max_files,
                )),
                SinkKind::Syslog => Box::new(syslog::SyslogSink::new(sink, &device, config)?),
                SinkKind::Http => Box::new(http::HttpSink::new(sink, &device, config)?),
                SinkKind::Nats => Box::new(nats::NatsSink::new(sink, &device, config)?),
            };
            let outbox = Outbox::open(dir, &device, config.outbox_limits(), &names)?;
            let stats = Arc::new(SinkStats::default());
            sinks.stats.push((sink.name.clone(), Arc::clone(&stats)));
            let runner = Runner {
                sink: sink.clone(),
                device: device.clone(),
                target,
                outbox,
                bell: bell.clone(),
                stop: Arc::clone(&stop),
                stats,
            };
            let thread = std::thread::Builder::new()
                .name(format!("ward-sink-{}", sink.name))
                .spawn(move || runner.run())?;
            sinks.threads.push((sink.name.clone(), thread));
        }
        Ok(sinks)
    }

    /// True when no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Stops the sinks once they have delivered everything committed, or after `drain`
    /// (what is left stays in the outbox for the next start); says what each delivered.
    pub fn finish(self, drain: Duration) -> String {
        *self
            .stop
            .by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + drain);
        self.stop.asked.store(true, Ordering::Release);
        self.bell.ring();
        for (name, thread) in self.threads {
            if thread.join().is_err() {
                tracing::error!(sink = %name, "sink thread panicked");
            }
        }
        let parts: Vec<String> = self
            .stats
            .iter()
            .map(|(name, s)| {
                format!(
                    "{name} delivered {} (filtered {}, {} failed tries, at {})",
                    s.delivered.load(Ordering::Relaxed),
                    s.filtered.load(Ordering::Relaxed),
                    s.failures.load(Ordering::Relaxed),
                    s.cursor.load(Ordering::Relaxed),
                )
            })
            .collect();
        format!("sinks: {}", parts.join("; "))
    }
}

/// The TLS client settings of `sink`: the CAs of its `ca_file`, else the web's roots.
pub(crate) fn tls_config(
    sink: &SinkConfig,
    config: &WardConfig,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match &sink.ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let path = config.resolve(path);
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
                .with_context(|| format!("sinks[{}].ca_file {}", sink.name, path.display()))?;
            for cert in certs {
                let cert = cert
                    .with_context(|| format!("sinks[{}].ca_file {}", sink.name, path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("sinks[{}].ca_file {}", sink.name, path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // ring, as ureq already builds it (aws-lc-rs, rustls's preferred provider, needs a C
    // toolchain and cmake); its lack of post-quantum key exchange is the deprecation.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One sink's loop.
struct Runner {
    sink: SinkConfig,
    device: String,
    target: Box<dyn Deliver>,
    outbox: Outbox,
    bell: Bell,
    stop: Arc<Stop>,
    stats: Arc<SinkStats>,
}

/// The first retry's wait; it doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an idle sink waits for the bell before looking anyway.
const IDLE_LOOK: Duration = Duration::from_secs(2);

/// The wait before retry number `failures` (1-based): doubling, capped, and from half to
/// all of that at random, so a fleet that lost its receiver does not come back in step.
pub fn backoff(failures: u32, random: u64) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let full = exp.min(MAX_BACKOFF);
    let half = full / 2;
    let jitter = half.mul_f64((random % 1_000) as f64 / 1_000.0);
    half + jitter
}

impl Runner {
    fn selects(&self, r: &StoredRecord) -> bool {
        let s = &self.sink;
        s.kinds.contains(&r.kind)
            && s.min_severity
                .as_deref()
                .is_none_or(|min| severity_rank(r.severity) >= severity_rank(min))
            && (s.rules.is_empty() || s.rules.contains(&r.rule))
            && (s.plugins.is_empty() || s.plugins.contains(&r.plugin))
    }

    fn run(mut self) {
        let name = self.sink.name.clone();
        let mut cursor = match self.outbox.cursor(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "sink cannot read its cursor; not started");
                return;
            }
        };
        self.stats
            .cursor
            .store(cursor.unsigned_abs(), Ordering::Relaxed);
        let mut failures = 0u32;
        let mut random = u64::from(std::process::id()) ^ crate::clock::now_ms().unsigned_abs();
        loop {
            let seen = self.bell.rung();
            let records = match self.outbox.after(cursor, self.sink.batch) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "sink cannot read the outbox");
                    if self.stop.past_deadline() {
                        return;
                    }
                    std::thread::sleep(IDLE_LOOK);
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                if self.stop.asked.load(Ordering::Acquire) {
                    return;
                }
                self.bell.wait(seen, IDLE_LOOK);
                continue;
            };
            let rendered: Vec<Rendered<'_>> = records
                .iter()
                .filter(|r| self.selects(r))
                .map(|r| Rendered {
                    record: r,
                    line: format::render(self.sink.format, r, &self.device),
                })
                .collect();
            let skipped = records.len() - rendered.len();
            let result = if rendered.is_empty() {
                Ok(())
            } else {
                self.target.deliver(&rendered)
            };
            match result {
                Ok(()) => {
                    if let Err(e) = self.outbox.advance(&name, last) {
                        tracing::error!(sink = %name, error = %e, "sink delivered but cannot move its cursor (they will be sent again)");
                    }
                    cursor = last;
                    self.stats
                        .delivered
                        .fetch_add(rendered.len() as u64, Ordering::Relaxed);
                    self.stats
                        .filtered
                        .fetch_add(skipped as u64, Ordering::Relaxed);
                    self.stats
                        .cursor
                        .store(last.unsigned_abs(), Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(sink = %name, after = failures, "sink delivering again");
                    }
                    failures = 0;
                }
                Err(why) => {
                    failures = failures.saturating_add(1);
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    let wait = backoff(failures, random);
                    tracing::warn!(sink = %name, failures, retry_in_ms = wait.as_millis() as u64, error = %why, "sink delivery failed; kept in the outbox");
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        if self.stop.past_deadline() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter_in_the_upper_half() {
        for failures in 1..40 {
            for random in [0, 499, 999, u64::MAX] {
                let full = FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(MAX_BACKOFF);
                let wait = backoff(failures, random);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "{failures} {random} {wait:?}"
                );
            }
        }
        assert_eq!(backoff(1, 0), Duration::from_millis(125));
        assert!(backoff(30, 999) <= MAX_BACKOFF);
    }
}
