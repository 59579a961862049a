//! A loaded plugin: its verified component ([`PluginImage`], shared by every instance), a
//! warm [`Instance`] per lane, and fault accounting with quarantine.
//!
//! Every call runs under the store's memory cap, an epoch deadline and the output limits
//! of [`crate::sandbox::lift`]. A trap, timeout, memory-limit hit or oversized result is the
//! guest's fault: it is counted, the instance is dropped (the next call gets a fresh one),
//! and `max_faults` faults inside `fault_window` quarantine the plugin — for
//! `quarantine_base`, doubling on each repeat up to `quarantine_max`, after which it is
//! released on probation. Faults a caller asks not to blame (a batch that will be split
//! and retried) replace the instance but do not count. Other plugins are unaffected.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Func, InstancePre, Lift, Lower, TypedFunc};

use crate::detect::router::Route;
use crate::sandbox::bindings::wit;
use crate::sandbox::lift::{self, OutputLimitExceeded, OutputLimits};
use crate::sandbox::parts;
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::{PluginContext, PluginState};

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

    /// The export that only this world has.
    fn main_export(self) -> &'static str {
        match self {
            Kind::Detector => "on-events",
            Kind::Collector => "collect",
            Kind::Remediator => "plan",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which version of the `ward:plugin` contract a component was built against (read from
/// the versions of the `ward:plugin/…` interfaces it imports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contract {
    /// `ward:plugin@0.1.0`, frozen in `wit/v0.1.0/`.
    V0_1,
    /// `ward:plugin@0.2.0`, frozen in `wit/v0.2.0/`: 0.2.1 without the detector's `parts`
    /// export (its detectors get whole events).
    V0_2,
    /// `ward:plugin@0.2.1`, the current contract.
    #[default]
    V0_2_1,
}

impl Contract {
    /// The version text.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
            Contract::V0_2_1 => "0.2.1",
        }
    }
}

/// How the admin runs a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
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

    /// True when the same input in smaller pieces may not fault: a batch that ran out of
    /// time, memory or output room is split and retried before anyone is blamed.
    pub fn may_be_the_input(self) -> bool {
        !matches!(self, FaultKind::BadOutput)
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
    /// False when the caller will retry the input in smaller pieces: not counted.
    pub blamed: bool,
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

pub use crate::sandbox::stats::{Histogram, PluginStats};

/// Output limits of `describe()`: a name, a few hundred subscriptions, prefilter lists.
pub const DESCRIBE_LIMITS: OutputLimits = OutputLimits {
    field_bytes: 4 << 10,
    total_bytes: 8 << 20,
    list_items: MAX_PREFILTER_ENTRIES,
};

/// Longest prefilter list (of path prefixes, path fragments or signing ids) a plugin may
/// describe; the router's match structures are built from them once, per plugin.
pub const MAX_PREFILTER_ENTRIES: usize = 16_384;

/// What one loaded plugin is: identity, checked pre-instance and context. Shared (`Arc`)
/// by every instance any lane creates.
pub struct PluginImage {
    /// What the plugin said about itself.
    pub info: wit::PluginInfo,
    /// sha-256 of the component bytes.
    pub digest: String,
    /// Where it was loaded from (`path` or `builtin:<name>`).
    pub origin: String,
    kind: Kind,
    contract: Contract,
    route: Route,
    ctx: PluginContext,
    pre: InstancePre<PluginState>,
}

impl PluginImage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: wit::PluginInfo,
        digest: String,
        origin: String,
        kind: Kind,
        contract: Contract,
        route: Route,
        ctx: PluginContext,
        pre: InstancePre<PluginState>,
    ) -> Self {
        Self {
            info,
            digest,
            origin,
            kind,
            contract,
            route,
            ctx,
            pre,
        }
    }

    /// Which events it is given, compiled from `describe()` at load.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The plugin's name (from `describe()`).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The world it implements.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The contract version it was built against.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        self.digest.get(..12).unwrap_or(&self.digest)
    }

    /// A fresh instance whose `describe()` (run under the start-up budget) still names
    /// this plugin and world.
    pub fn instantiate(&self, rt: &Runtime) -> Result<Instance, (FaultKind, String)> {
        let (instance, info) =
            Instance::start(rt, &self.pre, self.kind, self.contract, self.ctx.clone())?;
        if info.name == self.info.name && info.kind == self.info.kind {
            Ok(instance)
        } else {
            Err((
                FaultKind::BadOutput,
                format!(
                    "a fresh instance described itself as {} `{}`",
                    Kind::from_wit(info.kind),
                    info.name
                ),
            ))
        }
    }
}

/// The export functions of one instance, type-checked against [`crate::sandbox::lift`]'s types
/// when the instance was created.
enum Exports {
    Detector {
        on_events: Func,
        authorize: Func,
        /// What `parts` (since 0.2.1) answered: the parts every event is lowered with.
        parts: wit::EventParts,
    },
    Collector {
        collect: Func,
    },
    Remediator {
        plan: Func,
        contract: Contract,
    },
}

/// `on-events` over a batch of borrowed events: a plugin's subset of a batch is lowered
/// from the batch itself, never copied first (`&Event` lowers as `event`).
type OnEvents<'a> =
    TypedFunc<(&'a [&'a wit::Event],), (Result<lift::List<lift::Detection>, lift::PluginError>,)>;
type Authorize<'a> = TypedFunc<(&'a wit::Event,), (lift::Verdict,)>;
/// [`OnEvents`] lowering only the parts the detector reads.
type OnEventsParts<'a> =
    TypedFunc<(&'a [parts::Event<'a>],), (Result<lift::List<lift::Detection>, lift::PluginError>,)>;
type AuthorizeParts<'a> = TypedFunc<(&'a parts::Event<'a>,), (lift::Verdict,)>;
type Parts = TypedFunc<(), (wit::EventParts,)>;
type Respond<'a, T> = TypedFunc<(&'a wit::Trigger,), (Result<lift::List<T>, lift::PluginError>,)>;
type Describe = TypedFunc<(), (lift::PluginInfo,)>;
type PlanV0_1<'a> = Respond<'a, lift::PlannedActionV0_1>;

/// Types an export whose signature [`Instance::start`] checked, without checking it again
/// on every call (the check walks the whole event type).
#[allow(unsafe_code)]
fn checked<P, R>(func: Func) -> TypedFunc<P, R>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    // SAFETY: every `Func` in `Exports` was type-checked with `Func::typed` against exactly
    // the signature it is used at here (`OnEvents`, `Authorize`, `Respond<_, Artifact>`,
    // `Respond<_, PlannedAction>`; `Parts`, `OnEventsParts` and `AuthorizeParts` only when
    // the `parts` export exists) when its instance was created, and it is only ever
    // called on that instance's store.
    unsafe { TypedFunc::new_unchecked(func) }
}

/// One live instance of a plugin: its store and exports.
pub struct Instance {
    store: Store<PluginState>,
    exports: Exports,
}

fn export(
    store: &mut Store<PluginState>,
    instance: &wasmtime::component::Instance,
    name: &str,
) -> wasmtime::Result<Func> {
    instance
        .get_func(&mut *store, name)
        .ok_or_else(|| wasmtime::Error::msg(format!("the component does not export `{name}`")))
}

impl Instance {
    /// Instantiates `pre` in a fresh store and runs `describe()` (the contract promises it
    /// first on every fresh instance), all under the start-up budget.
    pub(crate) fn start(
        rt: &Runtime,
        pre: &InstancePre<PluginState>,
        kind: Kind,
        contract: Contract,
        ctx: PluginContext,
    ) -> Result<(Instance, wit::PluginInfo), (FaultKind, String)> {
        // Instantiation, `describe` and `parts` run guest code: the epoch must move.
        let _running = rt.guest_running();
        let mut store = rt.new_store(ctx);
        // The `parts` export (a 0.2.1 detector's), type-checked with `on-events` and
        // `authorize` against [`parts::Event`]; called after `describe`.
        let mut parts_export = None;
        let result = (|| -> wasmtime::Result<(Exports, Func)> {
            let instance = pre.instantiate(&mut store)?;
            let describe = export(&mut store, &instance, "describe")?;
            describe.typed::<(), (lift::PluginInfo,)>(&store)?;
            let exports = match kind {
                Kind::Detector => {
                    let on_events = export(&mut store, &instance, "on-events")?;
                    let authorize = export(&mut store, &instance, "authorize")?;
                    on_events.typed::<(&[&wit::Event],), (
                        Result<lift::List<lift::Detection>, lift::PluginError>,
                    )>(&store)?;
                    authorize.typed::<(&wit::Event,), (lift::Verdict,)>(&store)?;
                    // Since 0.2.1; asked after `describe`, below. An older component's
                    // export of that name (its world has none) is not consulted.
                    parts_export = (contract == Contract::V0_2_1)
                        .then(|| instance.get_func(&mut store, "parts"))
                        .flatten();
                    if let Some(parts) = parts_export {
                        parts.typed::<(), (wit::EventParts,)>(&store)?;
                        on_events.typed::<(&[parts::Event<'_>],), (
                            Result<lift::List<lift::Detection>, lift::PluginError>,
                        )>(&store)?;
                        authorize.typed::<(&parts::Event<'_>,), (lift::Verdict,)>(&store)?;
                    }
                    Exports::Detector {
                        on_events,
                        authorize,
                        parts: parts::every(),
                    }
                }
                Kind::Collector => {
                    let collect = export(&mut store, &instance, kind.main_export())?;
                    collect.typed::<(&wit::Trigger,), (
                        Result<lift::List<lift::Artifact>, lift::PluginError>,
                    )>(&store)?;
                    Exports::Collector { collect }
                }
                Kind::Remediator => {
                    let plan = export(&mut store, &instance, kind.main_export())?;
                    match contract {
                        Contract::V0_2 | Contract::V0_2_1 => {
                            plan.typed::<(&wit::Trigger,), (
                                Result<lift::List<lift::PlannedAction>, lift::PluginError>,
                            )>(&store)?;
                        }
                        Contract::V0_1 => {
                            plan.typed::<(&wit::Trigger,), (
                                    Result<lift::List<lift::PlannedActionV0_1>, lift::PluginError>,
                                )>(&store)?;
                        }
                    }
                    Exports::Remediator { plan, contract }
                }
            };
            Ok((exports, describe))
        })();
        let (exports, describe) = match result {
            Ok(found) => found,
            Err(e) => {
                store.data_mut().flush_output();
                let refused = store.data_mut().take_growth_refused();
                return Err(classify_with(&e, refused));
            }
        };
        let describe: Describe = match describe.typed(&store) {
            Ok(f) => f,
            Err(e) => return Err(classify(&e)),
        };
        let (described, usage) =
            lift::with_limits(DESCRIBE_LIMITS, || describe.call(&mut store, ()));
        store.data_mut().flush_output();
        let refused = store.data_mut().take_growth_refused();
        match described {
            // A cut name, prefix or key would silently mean something else: refuse it.
            Ok(_) if usage.fields_cut > 0 => Err((
                FaultKind::OutputLimit,
                format!(
                    "describe() returned a string over {} bytes",
                    DESCRIBE_LIMITS.field_bytes
                ),
            )),
            Ok((info,)) => {
                let mut exports = exports;
                if let (Exports::Detector { parts, .. }, Some(export)) =
                    (&mut exports, parts_export)
                {
                    let asked: Parts = checked(export);
                    let answer = asked.call(&mut store, ());
                    store.data_mut().flush_output();
                    let refused = store.data_mut().take_growth_refused();
                    match answer {
                        Ok((answer,)) => *parts = answer,
                        Err(e) => return Err(classify_with(&e, refused)),
                    }
                }
                if store.data().take_wait_cut() {
                    // Instantiation, `describe` or `parts` waited on a clock past the
                    // start-up deadline.
                    return Err((
                        FaultKind::Timeout,
                        "exceeded the start-up time cap".to_owned(),
                    ));
                }
                Ok((Instance { store, exports }, info.into()))
            }
            Err(e) => Err(classify_with(&e, refused)),
        }
    }

    /// Replaces what the instance's host calls see (after load has checked `describe()`).
    pub(crate) fn set_context(&mut self, ctx: PluginContext) {
        self.store.data_mut().ctx = ctx;
    }
}

/// The quarantine a plugin is in.
#[derive(Debug, Clone)]
struct Quarantine {
    reason: String,
    until: Instant,
}

/// Faults in the window, the quarantine if any, and how often it was quarantined lately.
#[derive(Debug, Default)]
struct Health {
    recent_faults: VecDeque<Instant>,
    quarantine: Option<Quarantine>,
    /// Quarantines since the plugin last ran clean for `quarantine_max`.
    strikes: u32,
    last_quarantine: Option<Instant>,
}

/// How long the `strikes`-th quarantine in a row lasts: `base`, doubling, at most `max`.
pub fn quarantine_period(base: Duration, max: Duration, strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << doublings)
        .min(max)
        .max(base.min(max))
}

/// One lane's handle on a loaded plugin: a warm instance and fault accounting.
pub struct Plugin {
    image: Arc<PluginImage>,
    /// Admin mode.
    pub mode: Mode,
    /// Counters.
    pub stats: PluginStats,
    live: Option<Instance>,
    health: Health,
}

impl Plugin {
    /// A handle on `image`, with `live` (if any) as its first instance.
    pub fn new(image: Arc<PluginImage>, mode: Mode, live: Option<Instance>) -> Self {
        Self {
            image,
            mode,
            stats: PluginStats {
                instantiations: u64::from(live.is_some()),
                ..PluginStats::default()
            },
            live,
            health: Health::default(),
        }
    }

    /// A second, independent handle on the same plugin (another lane), without an
    /// instance yet.
    pub fn another_lane(&self) -> Self {
        Self::new(Arc::clone(&self.image), self.mode, None)
    }

    /// The shared image.
    pub fn image(&self) -> &Arc<PluginImage> {
        &self.image
    }

    /// What the plugin said about itself.
    pub fn info(&self) -> &wit::PluginInfo {
        &self.image.info
    }

    /// Which events it is given.
    pub fn route(&self) -> &Route {
        self.image.route()
    }

    /// sha-256 of the component.
    pub fn digest(&self) -> &str {
        &self.image.digest
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &str {
        &self.image.origin
    }

    /// The plugin's name (from `describe()`).
    pub fn name(&self) -> &str {
        self.image.name()
    }

    /// The world it implements.
    pub fn kind(&self) -> Kind {
        self.image.kind()
    }

    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        self.image.short_digest()
    }

    /// Why the plugin is quarantined, if it is (a quarantine whose time is up still shows
    /// until the next call releases it).
    pub fn quarantined(&self) -> Option<&str> {
        self.health.quarantine.as_ref().map(|q| q.reason.as_str())
    }

    /// True when the plugin is quarantined and its quarantine has not run out by `now`.
    pub fn held_at(&self, now: Instant) -> bool {
        self.health
            .quarantine
            .as_ref()
            .is_some_and(|q| now < q.until)
    }

    /// Ends a quarantine whose time is up: the plugin is called again (on probation: a
    /// fault soon after doubles the next quarantine). True if it was released now.
    pub fn release_if_due(&mut self, now: Instant) -> bool {
        match &self.health.quarantine {
            Some(q) if now >= q.until => {
                tracing::warn!(plugin = %self.name(), digest = %self.short_digest(), "quarantine over; plugin released on probation");
                self.health.quarantine = None;
                self.health.recent_faults.clear();
                self.stats.releases += 1;
                true
            }
            _ => false,
        }
    }

    /// True when a warm instance is ready.
    pub fn is_warm(&self) -> bool {
        self.live.is_some()
    }

    /// Builds the replacement instance now (after a fault) rather than inside the next
    /// call. A quarantined plugin, or one with a live instance, is left as it is.
    pub fn warm(&mut self, rt: &Runtime) {
        if self.live.is_some() || self.health.quarantine.is_some() {
            return;
        }
        if let Ok(live) = self.instantiate(rt) {
            self.live = Some(live);
        }
    }

    /// Counts a fault that happened outside a call of this handle (a spare instance built
    /// on another thread failed to start). Returns the fault.
    pub fn note_fault(&mut self, rt: &Runtime, kind: FaultKind, detail: String) -> Fault {
        match self.record_fault(rt, kind, detail, true) {
            CallError::Fault(f) => f,
            _ => Fault {
                kind,
                detail: String::new(),
                quarantined_now: false,
                blamed: true,
            },
        }
    }

    /// Takes `instance` (built elsewhere, e.g. on a spare-building thread) as the live
    /// one if none is live; otherwise hands it back.
    pub fn adopt(&mut self, instance: Instance) -> Option<Instance> {
        if self.live.is_some() {
            return Some(instance);
        }
        self.stats.instantiations += 1;
        self.live = Some(instance);
        None
    }

    fn instantiate(&mut self, rt: &Runtime) -> Result<Instance, CallError> {
        let started = Instant::now();
        let result = self.image.instantiate(rt);
        self.stats.busy += started.elapsed();
        match result {
            Ok(live) => {
                self.stats.instantiations += 1;
                Ok(live)
            }
            Err((kind, detail)) => Err(self.record_fault(rt, kind, detail, true)),
        }
    }

    /// Runs `f` on a warm instance within `ticks` epoch ticks and `limits`, replacing the
    /// instance on a fault — counted against the plugin unless `excused` says the fault
    /// was not its doing (a batch the caller will split, a budget the host cut short).
    fn call<T>(
        &mut self,
        rt: &Runtime,
        ticks: u64,
        limits: OutputLimits,
        events: u64,
        excused: impl Fn(FaultKind) -> bool,
        f: impl FnOnce(&Exports, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let now = Instant::now();
        if self.held_at(now) {
            return Err(CallError::Quarantined);
        }
        self.release_if_due(now);
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate(rt)?,
        };
        let running = rt.guest_running();
        let started = Instant::now();
        live.store.data_mut().take_growth_refused();
        live.store.data().take_wait_cut();
        live.store.set_epoch_deadline(ticks);
        let budget = crate::sandbox::engine::EPOCH_TICK
            .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
        live.store
            .data_mut()
            .set_deadline(started.checked_add(budget));
        self.stats.calls += 1;
        let (result, usage) = lift::with_limits(limits, || f(&live.exports, &mut live.store));
        drop(running);
        // A guest whose clock wait was cut at the deadline ran out of time, even if it
        // returned before the epoch caught up with it.
        let result = match result {
            Ok(_) if live.store.data().take_wait_cut() => {
                Err(wasmtime::Error::new(wasmtime::Trap::Interrupt))
            }
            other => other,
        };
        let refused = live.store.data_mut().take_growth_refused();
        live.store.data_mut().set_deadline(None);
        live.store.data_mut().flush_output();
        let took = started.elapsed();
        self.stats.busy += took;
        self.stats.ns_per_event.record_n(
            u64::try_from(took.as_nanos() / u128::from(events.max(1))).unwrap_or(u64::MAX),
            1,
        );
        self.stats.memory_high_water = self
            .stats
            .memory_high_water
            .max(live.store.data().memory_high_water());
        self.stats.fields_cut += usage.fields_cut as u64;
        match result {
            Ok(value) => {
                self.live = Some(live);
                Ok(value)
            }
            // The instance may be in any state after a trap: drop it.
            Err(e) => {
                let (kind, detail) = classify_with(&e, refused);
                let blame = !excused(kind);
                Err(self.record_fault(rt, kind, detail, blame))
            }
        }
    }

    fn record_fault(
        &mut self,
        rt: &Runtime,
        kind: FaultKind,
        detail: String,
        blame: bool,
    ) -> CallError {
        // Whatever the fault, the next call gets a fresh instance.
        self.live = None;
        if !blame {
            self.stats.retried += 1;
            tracing::debug!(plugin = %self.name(), fault = kind.as_str(), detail = %detail, "fault on a batch that is split and retried");
            return CallError::Fault(Fault {
                kind,
                detail,
                quarantined_now: false,
                blamed: false,
            });
        }
        let now = Instant::now();
        self.stats.faults += 1;
        match kind {
            FaultKind::Timeout => self.stats.timeouts += 1,
            FaultKind::MemoryLimit => self.stats.memory_limits += 1,
            FaultKind::Trap | FaultKind::StackOverflow => self.stats.traps += 1,
            FaultKind::OutputLimit | FaultKind::BadOutput => {}
        }
        let h = &mut self.health;
        h.recent_faults.push_back(now);
        while let Some(first) = h.recent_faults.front() {
            if now.duration_since(*first) > rt.limits.fault_window {
                h.recent_faults.pop_front();
            } else {
                break;
            }
        }
        let quarantined_now = h.recent_faults.len() >= rt.limits.max_faults.max(1) as usize;
        tracing::warn!(plugin = %self.image.info.name, digest = %self.image.short_digest(), fault = kind.as_str(), detail = %detail, "plugin fault; instance replaced");
        if quarantined_now {
            // A plugin that ran clean for the longest quarantine starts over at the base.
            if h.last_quarantine
                .is_some_and(|t| now.duration_since(t) > rt.limits.quarantine_max.saturating_mul(2))
            {
                h.strikes = 0;
            }
            h.strikes = h.strikes.saturating_add(1);
            h.last_quarantine = Some(now);
            let period = quarantine_period(
                rt.limits.quarantine_base,
                rt.limits.quarantine_max,
                h.strikes,
            );
            let reason = format!(
                "{} faults within {:?}; last: {}: {detail}; quarantined for {period:?}",
                h.recent_faults.len(),
                rt.limits.fault_window,
                kind.as_str(),
            );
            tracing::error!(plugin = %self.image.info.name, digest = %self.image.short_digest(), reason = %reason, "plugin quarantined");
            h.recent_faults.clear();
            h.quarantine = Some(Quarantine {
                reason,
                until: now + period,
            });
            self.stats.quarantines += 1;
        }
        CallError::Fault(Fault {
            kind,
            detail,
            quarantined_now,
            blamed: true,
        })
    }

    /// The output limits of `on-events`.
    fn event_limits(rt: &Runtime) -> OutputLimits {
        OutputLimits {
            field_bytes: rt.limits.max_field_bytes,
            total_bytes: rt.limits.max_output_bytes_per_call,
            list_items: rt.limits.max_results_per_call,
        }
    }

    /// Delivers a batch of events to a detector. The result's detections refer to indices of
    /// `events`. A fault is blamed on the plugin.
    pub fn on_events(
        &mut self,
        rt: &Runtime,
        events: &[&wit::Event],
    ) -> Result<Vec<wit::Detection>, CallError> {
        self.stats.events += events.len() as u64;
        self.on_events_split(rt, events, false)
    }

    /// [`Self::on_events`]; with `splittable`, a fault the input may have caused replaces
    /// the instance without counting against the plugin (`blamed: false`): the caller
    /// retries the events in smaller batches. The caller counts the events delivered.
    pub fn on_events_split(
        &mut self,
        rt: &Runtime,
        events: &[&wit::Event],
        splittable: bool,
    ) -> Result<Vec<wit::Detection>, CallError> {
        self.expect_kind(Kind::Detector, "on-events")?;
        let out = self.call(
            rt,
            rt.limits.deadline_ticks(),
            Self::event_limits(rt),
            events.len() as u64,
            |kind| splittable && kind.may_be_the_input(),
            |exports, store| {
                let Exports::Detector {
                    on_events, parts, ..
                } = exports
                else {
                    return Err(wasmtime::Error::msg("world checked by expect_kind"));
                };
                let result = if parts::whole(*parts) {
                    let f: OnEvents<'_> = checked(*on_events);
                    f.call(&mut *store, (events,))?.0
                } else {
                    let views: Vec<parts::Event<'_>> = events
                        .iter()
                        .map(|e| parts::Event::new(e, *parts))
                        .collect();
                    let f: OnEventsParts<'_> = checked(*on_events);
                    f.call(&mut *store, (&views,))?.0
                };
                Ok(lift::plugin_result(result))
            },
        );
        let detections: Vec<wit::Detection> = self.unwrap_plugin_result(out)?;
        if let Some(d) = detections
            .iter()
            .find(|d| d.event_index as usize >= events.len())
        {
            let detail = format!(
                "finding about event {} of a batch of {}",
                d.event_index,
                events.len()
            );
            return Err(self.record_fault(rt, FaultKind::BadOutput, detail, true));
        }
        self.stats.results += detections.len() as u64;
        Ok(detections)
    }

    /// Asks a detector for a verdict on an AUTH event, within `budget` (and never longer
    /// than the per-call cap): past it the guest is interrupted and the call is a
    /// `timeout` fault. Host imports see the same deadline. With `short`, the budget was
    /// cut below the plugin's due (the event waited for a turn), so running out of it is
    /// not counted against the plugin.
    pub fn authorize(
        &mut self,
        rt: &Runtime,
        event: &wit::Event,
        budget: Duration,
        short: bool,
    ) -> Result<wit::Verdict, CallError> {
        self.expect_kind(Kind::Detector, "authorize")?;
        self.stats.events += 1;
        let ticks = crate::sandbox::engine::ticks(budget).min(rt.limits.deadline_ticks());
        let limits = OutputLimits {
            field_bytes: rt.limits.max_field_bytes,
            total_bytes: rt.limits.max_field_bytes,
            list_items: 0,
        };
        let excused = move |kind: FaultKind| short && kind == FaultKind::Timeout;
        self.call(rt, ticks, limits, 1, excused, |exports, store| {
            let Exports::Detector {
                authorize, parts, ..
            } = exports
            else {
                return Err(wasmtime::Error::msg("world checked by expect_kind"));
            };
            let verdict = if parts::whole(*parts) {
                let f: Authorize<'_> = checked(*authorize);
                f.call(&mut *store, (event,))?.0
            } else {
                let view = parts::Event::new(event, *parts);
                let f: AuthorizeParts<'_> = checked(*authorize);
                f.call(&mut *store, (&view,))?.0
            };
            Ok(verdict.into())
        })
    }

    /// Asks a collector for evidence.
    pub fn collect(
        &mut self,
        rt: &Runtime,
        trigger: &wit::Trigger,
    ) -> Result<Vec<wit::Artifact>, CallError> {
        self.expect_kind(Kind::Collector, "collect")?;
        let limits = OutputLimits {
            field_bytes: rt.limits.max_field_bytes,
            total_bytes: rt.limits.max_artifact_bytes_per_call,
            list_items: rt.limits.max_results_per_call,
        };
        let out = self.call(
            rt,
            rt.limits.deadline_ticks(),
            limits,
            1,
            |_| false,
            |exports, store| {
                let Exports::Collector { collect } = exports else {
                    return Err(wasmtime::Error::msg("world checked by expect_kind"));
                };
                let f: Respond<'_, lift::Artifact> = checked(*collect);
                Ok(lift::plugin_result(f.call(&mut *store, (trigger,))?.0))
            },
        );
        let artifacts: Vec<wit::Artifact> = self.unwrap_plugin_result(out)?;
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
        let cut_before = self.stats.fields_cut;
        let out = self.call(
            rt,
            rt.limits.deadline_ticks(),
            Self::event_limits(rt),
            1,
            |_| false,
            |exports, store| {
                let Exports::Remediator { plan, contract } = exports else {
                    return Err(wasmtime::Error::msg("world checked by expect_kind"));
                };
                Ok(match contract {
                    Contract::V0_2 | Contract::V0_2_1 => {
                        let f: Respond<'_, lift::PlannedAction> = checked(*plan);
                        lift::plugin_result(f.call(&mut *store, (trigger,))?.0)
                    }
                    Contract::V0_1 => {
                        let f: PlanV0_1<'_> = checked(*plan);
                        lift::plugin_result(f.call(&mut *store, (trigger,))?.0)
                    }
                })
            },
        );
        let actions: Vec<wit::PlannedAction> = self.unwrap_plugin_result(out)?;
        // A path or argument cut to the field cap would name something else: refused.
        if self.stats.fields_cut > cut_before {
            let detail = format!(
                "a planned action's field was over {} bytes",
                rt.limits.max_field_bytes
            );
            return Err(self.record_fault(rt, FaultKind::OutputLimit, detail, true));
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
                self.name(),
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
                tracing::warn!(plugin = %self.name(), error = %e.message, "plugin returned an error");
                Err(CallError::Plugin(e.message))
            }
        }
    }
}

/// Sorts a wasmtime error into a fault kind with a one-line detail.
pub fn classify(error: &wasmtime::Error) -> (FaultKind, String) {
    classify_with(error, false)
}

/// [`classify`], knowing whether the store's limiter refused a growth during the call
/// (then it is a `memory-limit` fault, whatever the guest did next).
pub fn classify_with(error: &wasmtime::Error, growth_refused: bool) -> (FaultKind, String) {
    let chain = format!("{error:#}");
    if growth_refused && error.downcast_ref::<OutputLimitExceeded>().is_none() {
        return (FaultKind::MemoryLimit, one_line(&chain));
    }
    if let Some(limit) = error.downcast_ref::<OutputLimitExceeded>() {
        return (FaultKind::OutputLimit, one_line(&limit.0));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        let periods: Vec<u64> = (1..=9)
            .map(|s| quarantine_period(base, max, s).as_secs())
            .collect();
        assert_eq!(periods, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(quarantine_period(base, max, u32::MAX).as_secs(), 3600);
        // A cap below the base wins.
        assert_eq!(
            quarantine_period(base, Duration::from_secs(5), 1).as_secs(),
            5
        );
    }
}
