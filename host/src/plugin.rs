//! A loaded plugin: its verified component, a warm instance, and fault accounting.
//!
//! Every call runs under the store's memory cap and an epoch deadline. A trap, timeout,
//! memory-limit hit or oversized result is the guest's fault: it is counted, the instance
//! is dropped (the next call gets a fresh one), and `max_faults` faults inside
//! `fault_window` quarantine the plugin. Other plugins are unaffected.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use wasmtime::Store;

use crate::bindings::collector::{Collector, CollectorPre};
use crate::bindings::detector::{Detector, DetectorPre};
use crate::bindings::remediator::{Remediator, RemediatorPre};
use crate::bindings::wit;
use crate::runtime::Runtime;
use crate::state::{PluginContext, PluginState};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `detector`.
    Detector,
    /// `collector`.
    Collector,
    /// `remediator`.
    Remediator,
}

impl Kind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Detector => "detector",
            Kind::Collector => "collector",
            Kind::Remediator => "remediator",
        }
    }

    /// From the WIT enum.
    pub fn from_wit(kind: wit::PluginKind) -> Self {
        match kind {
            wit::PluginKind::Detector => Kind::Detector,
            wit::PluginKind::Collector => Kind::Collector,
            wit::PluginKind::Remediator => Kind::Remediator,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the admin runs a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Findings are reported and acted on.
    #[default]
    Enforce,
    /// Findings are reported, marked `shadow`, and never acted on.
    Shadow,
    /// Not loaded.
    Disabled,
}

/// The typed pre-instance of one world.
pub enum WorldPre {
    /// A detector.
    Detector(DetectorPre<PluginState>),
    /// A collector.
    Collector(CollectorPre<PluginState>),
    /// A remediator.
    Remediator(RemediatorPre<PluginState>),
}

impl WorldPre {
    /// The world.
    pub fn kind(&self) -> Kind {
        match self {
            WorldPre::Detector(_) => Kind::Detector,
            WorldPre::Collector(_) => Kind::Collector,
            WorldPre::Remediator(_) => Kind::Remediator,
        }
    }
}

enum Bindings {
    Detector(Detector),
    Collector(Collector),
    Remediator(Remediator),
}

struct Live {
    store: Store<PluginState>,
    bindings: Bindings,
}

/// What kind of fault a guest committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Ran past the per-call time cap.
    Timeout,
    /// Tried to grow memory or tables past the cap.
    MemoryLimit,
    /// Overflowed the wasm stack.
    StackOverflow,
    /// Trapped: a panic, abort, unreachable or out-of-bounds access.
    Trap,
    /// Returned more, or larger, results than the host accepts.
    OutputLimit,
    /// Returned something inconsistent (e.g. a finding about an event not in the batch).
    BadOutput,
}

impl FaultKind {
    /// Stable name for logs and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Timeout => "timeout",
            FaultKind::MemoryLimit => "memory-limit",
            FaultKind::StackOverflow => "stack-overflow",
            FaultKind::Trap => "trap",
            FaultKind::OutputLimit => "output-limit",
            FaultKind::BadOutput => "bad-output",
        }
    }
}

/// A guest fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// Detail for the log.
    pub detail: String,
    /// True if this fault quarantined the plugin.
    pub quarantined_now: bool,
}

/// Why a call produced no result.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The plugin returned `err(plugin-error)`: counted, not a fault.
    Plugin(String),
    /// The guest faulted.
    Fault(Fault),
    /// The host failed (not the guest's fault, not counted against it).
    Host(String),
    /// The plugin is quarantined and was not called.
    Quarantined,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Plugin(m) => write!(f, "plugin error: {m}"),
            CallError::Fault(fault) => write!(f, "{}: {}", fault.kind.as_str(), fault.detail),
            CallError::Host(m) => write!(f, "host error: {m}"),
            CallError::Quarantined => f.write_str("plugin is quarantined"),
        }
    }
}

/// Counters per plugin.
#[derive(Debug, Default, Clone)]
pub struct PluginStats {
    /// Export calls made.
    pub calls: u64,
    /// Events delivered.
    pub events: u64,
    /// Results (findings, artifacts, actions) accepted.
    pub results: u64,
    /// `err(plugin-error)` returns.
    pub plugin_errors: u64,
    /// Guest faults.
    pub faults: u64,
    /// Fresh instances created.
    pub instantiations: u64,
    /// Wall time spent inside the plugin's calls (instantiation included).
    pub busy: std::time::Duration,
}

/// A loaded, verified plugin.
pub struct Plugin {
    /// What the plugin said about itself.
    pub info: wit::PluginInfo,
    /// sha-256 of the component bytes.
    pub digest: String,
    /// Where it was loaded from (`path` or `builtin:<name>`).
    pub origin: String,
    /// Admin mode.
    pub mode: Mode,
    /// Counters.
    pub stats: PluginStats,
    ctx: PluginContext,
    pre: WorldPre,
    live: Option<Live>,
    recent_faults: VecDeque<Instant>,
    quarantine: Option<String>,
}

impl Plugin {
    /// A plugin from a checked pre-instance and the fresh instance on which `describe()`
    /// answered `meta.info`.
    pub(crate) fn new(
        meta: PluginMeta,
        ctx: PluginContext,
        pre: WorldPre,
        live: (Store<PluginState>, LiveBindings),
    ) -> Self {
        let (store, bindings) = live;
        let bindings = match bindings {
            LiveBindings::Detector(b) => Bindings::Detector(b),
            LiveBindings::Collector(b) => Bindings::Collector(b),
            LiveBindings::Remediator(b) => Bindings::Remediator(b),
        };
        Self {
            info: meta.info,
            digest: meta.digest,
            origin: meta.origin,
            mode: meta.mode,
            stats: PluginStats {
                instantiations: 1,
                ..PluginStats::default()
            },
            ctx,
            pre,
            live: Some(Live { store, bindings }),
            recent_faults: VecDeque::new(),
            quarantine: None,
        }
    }

    /// The plugin's name (from `describe()`).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The world it implements.
    pub fn kind(&self) -> Kind {
        self.pre.kind()
    }

    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        self.digest.get(..12).unwrap_or(&self.digest)
    }

    /// Why the plugin is quarantined, if it is.
    pub fn quarantined(&self) -> Option<&str> {
        self.quarantine.as_deref()
    }

    /// Builds the replacement instance now (after a fault) rather than inside the next
    /// call: for AUTH events that next call has only what is left of a verdict deadline.
    /// A quarantined plugin, or one with a live instance, is left as it is.
    pub fn warm(&mut self, rt: &Runtime) {
        if self.live.is_some() || self.quarantine.is_some() {
            return;
        }
        if let Ok(live) = self.instantiate(rt) {
            self.live = Some(live);
        }
    }

    fn instantiate(&mut self, rt: &Runtime) -> Result<Live, CallError> {
        let mut store = rt.new_store(self.ctx.clone());
        let bindings = match &self.pre {
            WorldPre::Detector(pre) => pre.instantiate(&mut store).map(Bindings::Detector),
            WorldPre::Collector(pre) => pre.instantiate(&mut store).map(Bindings::Collector),
            WorldPre::Remediator(pre) => pre.instantiate(&mut store).map(Bindings::Remediator),
        };
        let bindings = match bindings {
            Ok(b) => b,
            Err(e) => {
                store.data_mut().flush_output();
                return Err(self.fault(rt, &e));
            }
        };
        self.stats.instantiations += 1;
        let mut live = Live { store, bindings };
        // The contract promises describe() first on every fresh instance.
        let described = match &live.bindings {
            Bindings::Detector(b) => b.call_describe(&mut live.store),
            Bindings::Collector(b) => b.call_describe(&mut live.store),
            Bindings::Remediator(b) => b.call_describe(&mut live.store),
        };
        live.store.data_mut().flush_output();
        match described {
            Ok(info) if info.name == self.info.name && info.kind == self.info.kind => Ok(live),
            Ok(info) => Err(self.record_fault(
                rt,
                FaultKind::BadOutput,
                format!(
                    "a fresh instance described itself as {} `{}`",
                    Kind::from_wit(info.kind),
                    info.name
                ),
            )),
            Err(e) => Err(self.fault(rt, &e)),
        }
    }

    /// Runs `f` against a warm instance, replacing the instance on a fault.
    fn call<T>(
        &mut self,
        rt: &Runtime,
        f: impl FnOnce(&mut Bindings, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        self.call_within(rt, rt.limits.deadline_ticks(), f)
    }

    /// [`Self::call`] with an explicit budget in epoch ticks.
    fn call_within<T>(
        &mut self,
        rt: &Runtime,
        ticks: u64,
        f: impl FnOnce(&mut Bindings, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        if self.quarantine.is_some() {
            return Err(CallError::Quarantined);
        }
        let started = Instant::now();
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate(rt)?,
        };
        live.store.set_epoch_deadline(ticks);
        self.stats.calls += 1;
        let result = f(&mut live.bindings, &mut live.store);
        live.store.data_mut().flush_output();
        self.stats.busy += started.elapsed();
        match result {
            Ok(value) => {
                self.live = Some(live);
                Ok(value)
            }
            // The instance may be in any state after a trap: drop it.
            Err(e) => Err(self.fault(rt, &e)),
        }
    }

    fn fault(&mut self, rt: &Runtime, error: &wasmtime::Error) -> CallError {
        let (kind, detail) = classify(error);
        self.record_fault(rt, kind, detail)
    }

    fn record_fault(&mut self, rt: &Runtime, kind: FaultKind, detail: String) -> CallError {
        let now = Instant::now();
        self.stats.faults += 1;
        self.recent_faults.push_back(now);
        while let Some(first) = self.recent_faults.front() {
            if now.duration_since(*first) > rt.limits.fault_window {
                self.recent_faults.pop_front();
            } else {
                break;
            }
        }
        let quarantined_now = self.recent_faults.len() >= rt.limits.max_faults.max(1) as usize;
        // Whatever the fault, the next call gets a fresh instance.
        self.live = None;
        tracing::warn!(plugin = %self.info.name, digest = %self.short_digest(), fault = kind.as_str(), detail = %detail, "plugin fault; instance replaced");
        if quarantined_now {
            let reason = format!(
                "{} faults within {}s; last: {}: {detail}",
                self.recent_faults.len(),
                rt.limits.fault_window.as_secs(),
                kind.as_str()
            );
            tracing::error!(plugin = %self.info.name, digest = %self.short_digest(), reason = %reason, "plugin quarantined");
            self.quarantine = Some(reason);
        }
        CallError::Fault(Fault {
            kind,
            detail,
            quarantined_now,
        })
    }

    /// Delivers a batch of events to a detector. The result's detections refer to indices of
    /// `events`.
    pub fn on_events(
        &mut self,
        rt: &Runtime,
        events: &[wit::Event],
    ) -> Result<Vec<wit::Detection>, CallError> {
        self.expect_kind(Kind::Detector, "on-events")?;
        self.stats.events += events.len() as u64;
        let out = self.call(rt, |b, store| match b {
            Bindings::Detector(d) => d.call_on_events(store, events),
            _ => Err(wasmtime::Error::msg("world checked by expect_kind")),
        });
        let mut detections = self.unwrap_plugin_result(out)?;
        if detections.len() > rt.limits.max_results_per_call {
            return Err(self.record_fault(
                rt,
                FaultKind::OutputLimit,
                format!(
                    "{} findings from one call (cap {})",
                    detections.len(),
                    rt.limits.max_results_per_call
                ),
            ));
        }
        for d in &detections {
            if d.event_index as usize >= events.len() {
                return Err(self.record_fault(
                    rt,
                    FaultKind::BadOutput,
                    format!(
                        "finding about event {} of a batch of {}",
                        d.event_index,
                        events.len()
                    ),
                ));
            }
            let size = finding_bytes(&d.finding);
            if size > rt.limits.max_finding_bytes {
                return Err(self.record_fault(
                    rt,
                    FaultKind::OutputLimit,
                    format!(
                        "a {size}-byte finding (cap {})",
                        rt.limits.max_finding_bytes
                    ),
                ));
            }
        }
        // Big-but-sane findings (evidence quoting a huge argv) are trimmed, not faulted.
        for d in &mut detections {
            trim_finding(&mut d.finding, rt.limits.max_field_bytes);
        }
        self.stats.results += detections.len() as u64;
        Ok(detections)
    }

    /// Asks a detector for a verdict on an AUTH event, within `budget` (and never longer
    /// than the per-call cap): past it the guest is interrupted and the call is a
    /// `timeout` fault.
    pub fn authorize(
        &mut self,
        rt: &Runtime,
        event: &wit::Event,
        budget: std::time::Duration,
    ) -> Result<wit::Verdict, CallError> {
        self.expect_kind(Kind::Detector, "authorize")?;
        self.stats.events += 1;
        let ticks = crate::engine::ticks(budget).min(rt.limits.deadline_ticks());
        self.call_within(rt, ticks, |b, store| match b {
            Bindings::Detector(d) => d.call_authorize(store, event),
            _ => Err(wasmtime::Error::msg("world checked by expect_kind")),
        })
    }

    /// Asks a collector for evidence.
    pub fn collect(
        &mut self,
        rt: &Runtime,
        trigger: &wit::Trigger,
    ) -> Result<Vec<wit::Artifact>, CallError> {
        self.expect_kind(Kind::Collector, "collect")?;
        let out = self.call(rt, |b, store| match b {
            Bindings::Collector(c) => c.call_collect(store, trigger),
            _ => Err(wasmtime::Error::msg("world checked by expect_kind")),
        });
        let artifacts = self.unwrap_plugin_result(out)?;
        let total: usize = artifacts
            .iter()
            .map(|a| a.content.len() + a.name.len())
            .sum();
        if artifacts.len() > rt.limits.max_results_per_call || total > rt.limits.memory_bytes {
            return Err(self.record_fault(
                rt,
                FaultKind::OutputLimit,
                format!("{} artifacts, {total} bytes", artifacts.len()),
            ));
        }
        self.stats.results += artifacts.len() as u64;
        Ok(artifacts)
    }

    /// Asks a remediator for a plan.
    pub fn plan(
        &mut self,
        rt: &Runtime,
        trigger: &wit::Trigger,
    ) -> Result<Vec<wit::PlannedAction>, CallError> {
        self.expect_kind(Kind::Remediator, "plan")?;
        let out = self.call(rt, |b, store| match b {
            Bindings::Remediator(r) => r.call_plan(store, trigger),
            _ => Err(wasmtime::Error::msg("world checked by expect_kind")),
        });
        let actions = self.unwrap_plugin_result(out)?;
        if actions.len() > rt.limits.max_results_per_call {
            return Err(self.record_fault(
                rt,
                FaultKind::OutputLimit,
                format!("{} planned actions", actions.len()),
            ));
        }
        self.stats.results += actions.len() as u64;
        Ok(actions)
    }

    /// Calling an export the plugin's world lacks is a host bug, never the guest's fault.
    fn expect_kind(&self, kind: Kind, export: &str) -> Result<(), CallError> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(CallError::Host(format!(
                "{export} called on {}, a {}",
                self.info.name,
                self.kind()
            )))
        }
    }

    fn unwrap_plugin_result<T>(
        &mut self,
        out: Result<Result<T, wit::PluginError>, CallError>,
    ) -> Result<T, CallError> {
        match out? {
            Ok(value) => Ok(value),
            Err(e) => {
                self.stats.plugin_errors += 1;
                tracing::warn!(plugin = %self.info.name, error = %e.message, "plugin returned an error");
                Err(CallError::Plugin(e.message))
            }
        }
    }
}

/// Identity of a loaded plugin.
pub(crate) struct PluginMeta {
    pub info: wit::PluginInfo,
    pub digest: String,
    pub origin: String,
    pub mode: Mode,
}

/// The bindings of the instance `describe()` ran on during load, handed to [`Plugin::new`].
pub(crate) enum LiveBindings {
    Detector(Detector),
    Collector(Collector),
    Remediator(Remediator),
}

/// Cuts `text` to at most `max` bytes on a character boundary, noting how much was cut.
fn trim(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let cut = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("…[{} bytes cut]", cut - end));
}

/// Trims the message and each evidence value of a finding to `max` bytes.
fn trim_finding(f: &mut wit::Finding, max: usize) {
    trim(&mut f.message, max);
    for e in &mut f.evidence {
        trim(&mut e.value, max);
    }
}

fn finding_bytes(f: &wit::Finding) -> usize {
    f.rule.len()
        + f.message.len()
        + f.attack.iter().map(String::len).sum::<usize>()
        + f.evidence
            .iter()
            .map(|e| e.name.len() + e.value.len())
            .sum::<usize>()
}

/// Sorts a wasmtime error into a fault kind with a one-line detail.
pub fn classify(error: &wasmtime::Error) -> (FaultKind, String) {
    let chain = format!("{error:#}");
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        let kind = match trap {
            wasmtime::Trap::Interrupt => FaultKind::Timeout,
            wasmtime::Trap::StackOverflow => FaultKind::StackOverflow,
            _ => FaultKind::Trap,
        };
        let detail = match kind {
            FaultKind::Timeout => "exceeded the per-call time cap".to_owned(),
            _ => one_line(&chain),
        };
        return (kind, detail);
    }
    if chain.contains("growing memory")
        || chain.contains("growing table")
        || chain.contains("memory allocation")
    {
        return (FaultKind::MemoryLimit, one_line(&chain));
    }
    (FaultKind::Trap, one_line(&chain))
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}
