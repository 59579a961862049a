//! The detection pipeline: parse → process table → convert once → route → batch → call
//! detectors → findings. The core is synchronous ([`Pipeline`]); [`run_stream`] drives it
//! with a reader task, the pipeline task and a sink task joined by bounded channels.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use crate::detect::auth::{self, AuthDecision, AuthPolicy, AuthStats};
use crate::detect::auth_lane::{AuthLane, ShadowOutcome};
use crate::detect::router::Route;
use crate::forward::finding::FindingRecord;
use crate::ingest::convert;
use crate::sandbox::bindings::wit;
use crate::sandbox::plugin::{CallError, Kind, Mode, Plugin, PluginStats};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;
use ward_event::{Message, ParseError, ParseStats, ProcessTable, parse_line};

/// Bytes of events (their eslogger lines, plus [`EVENT_OVERHEAD_BYTES`] each) one
/// detector call carries by default: a batch closes at this size or at `batch_size`
/// events, whichever comes first, so a run of huge command lines becomes many small
/// calls instead of one that overflows a plugin's memory. With 64 MiB per instance,
/// 4 MiB leaves room for the lowered copy, the guest's own copy and its work.
pub const DEFAULT_BATCH_BYTES: usize = 4 << 20;

/// What a lowered event costs beyond its strings (two process records, stat blocks).
pub const EVENT_OVERHEAD_BYTES: usize = 2 << 10;

/// The size an event is counted as in a batch.
pub(crate) fn event_cost(msg: &Message) -> usize {
    let text = if msg.raw.is_empty() {
        // A native source's event has no line: count its arguments and paths.
        let args = match &msg.event {
            ward_event::model::EventPayload::Exec(e) => {
                e.args.iter().map(String::len).sum::<usize>() + e.target.executable.path.len()
            }
            _ => 0,
        };
        args + msg.process.executable.path.len()
    } else {
        msg.raw.len()
    };
    text.saturating_add(EVENT_OVERHEAD_BYTES)
}

/// How long a live stage holds a partial batch for more events: at 2,000 events/s a
/// batch then carries ~40 events instead of the ~20 one 10 ms write brings, and each
/// detector is called half as often. A finding waits at most this much longer.
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Pipeline tuning.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Most events per detector call.
    pub batch_size: usize,
    /// Most bytes of events per detector call (see [`DEFAULT_BATCH_BYTES`]).
    pub batch_bytes: usize,
    /// How long the live stage holds a partial batch for more events (see
    /// [`DEFAULT_LINGER`]).
    pub linger: std::time::Duration,
    /// Longest accepted line.
    pub max_line_bytes: usize,
    /// How AUTH events are answered.
    pub auth: AuthPolicy,
    /// How long a swapped-in version is on probation.
    pub probation: std::time::Duration,
    /// The p99 nanoseconds per event a version on probation may take before it is rolled
    /// back.
    pub probation_max_ns_per_event: u64,
    /// Keep each finding's event with it (the response stage gives it to collectors and
    /// remediators); off unless playbooks run.
    pub keep_events: bool,
    /// Threads a batch's detectors are spread over (1: the stage's own thread only).
    pub detect_threads: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            batch_bytes: DEFAULT_BATCH_BYTES,
            linger: DEFAULT_LINGER,
            max_line_bytes: ward_event::DEFAULT_MAX_LINE_BYTES,
            auth: AuthPolicy::default(),
            probation: std::time::Duration::from_secs(60),
            probation_max_ns_per_event: 2_000_000,
            keep_events: false,
            detect_threads: default_detect_threads(),
        }
    }
}

/// Detection threads by default: the cores left beside the reader's and the stage's own,
/// at most [`MAX_DEFAULT_DETECT_THREADS`], at least one. On two cores a second detection
/// thread only competes with the reader (measured slower: 0.82 s against 0.79 s for 30,000
/// attack events), so it is one there.
pub fn default_detect_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .saturating_sub(2)
        .clamp(1, MAX_DEFAULT_DETECT_THREADS)
}

/// The most detection threads chosen by default: an agent on a large Mac should not take
/// every core in a burst.
pub const MAX_DEFAULT_DETECT_THREADS: usize = 3;

pub(super) struct Routed {
    pub(super) plugin: Plugin,
    pub(super) route: Route,
    /// Set while a new version is on probation (see [`crate::detect::swap`]).
    pub(super) probation: Option<super::swap::Probation>,
}

/// Per-plugin results for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    /// Name.
    pub name: String,
    /// Version (from `describe()`).
    pub version: String,
    /// sha-256 of the component.
    pub sha256: String,
    /// Where it was loaded from.
    pub origin: String,
    /// Mode.
    pub mode: Mode,
    /// On probation after a swap.
    pub on_probation: bool,
    /// New versions rolled back after failing probation.
    pub rollbacks: u64,
    /// Events delivered.
    pub events: u64,
    /// Calls made.
    pub calls: u64,
    /// Findings accepted.
    pub findings: u64,
    /// Guest faults blamed on the plugin.
    pub faults: u64,
    /// Faults on batches that were split and retried (not blamed).
    pub retried: u64,
    /// Times quarantined.
    pub quarantines: u64,
    /// Times released from quarantine.
    pub releases: u64,
    /// Plugin errors.
    pub errors: u64,
    /// Quarantine reason.
    pub quarantined: Option<String>,
    /// Wall time inside the plugin's calls.
    #[serde(skip)]
    pub busy: std::time::Duration,
    /// Instances built: the one from load, plus one per replacement after a fault (and,
    /// for the AUTH lane, its own live and spare instances).
    pub instantiations: u64,
    /// Everything counted (both lanes).
    pub stats: PluginStats,
}

impl PluginSummary {
    fn of(d: &Routed, s: &PluginStats, quarantined: Option<String>, rollbacks: u64) -> Self {
        Self {
            name: d.plugin.name().to_owned(),
            version: d.plugin.info().version.clone(),
            sha256: d.plugin.digest().to_owned(),
            origin: d.plugin.origin().to_owned(),
            mode: d.plugin.mode,
            on_probation: d.probation.is_some(),
            rollbacks,
            stats: s.clone(),
            events: s.events,
            calls: s.calls,
            findings: s.results,
            faults: s.faults,
            retried: s.retried,
            quarantines: s.quarantines,
            releases: s.releases,
            errors: s.plugin_errors,
            quarantined,
            busy: s.busy,
            instantiations: s.instantiations,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Lines and parse failures.
    pub parse: ParseStats,
    /// Findings emitted (including the agent's own).
    pub findings: u64,
    /// Per plugin.
    pub plugins: Vec<PluginSummary>,
    /// AUTH events and their answers.
    pub auth: AuthStats,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {} findings", self.parse, self.findings)?;
        if self.auth.requests > 0 {
            write!(f, "; {}", self.auth)?;
        }
        if self.plugins.is_empty() {
            return Ok(());
        }
        let width = self
            .plugins
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0)
            .max(6);
        write!(
            f,
            "\n  {:<width$} {:>9} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6}",
            "plugin", "events", "calls", "findings", "µs/ev p50", "µs/ev p99", "errors", "faults"
        )?;
        for p in &self.plugins {
            let us = |q: f64| p.stats.ns_per_event.quantile(q) as f64 / 1000.0;
            write!(
                f,
                "\n  {:<width$} {:>9} {:>8} {:>8} {:>9.1} {:>9.1} {:>6} {:>6}",
                p.name,
                p.events,
                p.calls,
                p.findings,
                us(0.5),
                us(0.99),
                p.errors,
                p.faults
            )?;
            let mut notes = Vec::new();
            if p.retried > 0 {
                notes.push(format!("{} split and retried", p.retried));
            }
            if p.releases > 0 {
                notes.push(format!("released {} times", p.releases));
            }
            if let Some(reason) = &p.quarantined {
                notes.push(format!("QUARANTINED ({reason})"));
            }
            if !notes.is_empty() {
                write!(f, "  {}", notes.join(", "))?;
            }
        }
        Ok(())
    }
}

/// `action_type` of an AUTH message.
pub(crate) const AUTH_ACTION: u32 = 0;

/// Samples of each skip reason logged before going quiet.
const SAMPLES_PER_REASON: u64 = 3;

/// The synchronous pipeline core.
pub struct Pipeline {
    rt: Arc<Runtime>,
    pub(super) detectors: Vec<Routed>,
    processes: SharedProcessTable,
    batch: Vec<wit::Event>,
    batch_bytes: usize,
    pub(super) options: PipelineOptions,
    stats: ParseStats,
    pub(super) findings: u64,
    /// `None` while [`run_source`] runs the lane on a thread of its own.
    pub(super) lane: Option<AuthLane>,
    /// What the lane shows of itself while it runs on its own thread.
    pub(super) lane_view: Option<Arc<std::sync::Mutex<crate::detect::auth_lane::LaneView>>>,
    /// Where lane updates go while the lane runs on its own thread.
    pub(super) lane_inbox: Option<std::sync::mpsc::Sender<crate::detect::auth_lane::Inbox>>,
    /// Versions rolled back after failing probation, by plugin name.
    pub(super) rollbacks: std::collections::BTreeMap<String, u64>,
    /// AUTH counts and findings of a lane that ran elsewhere.
    auth_elsewhere: (AuthStats, u64),
    /// The reader of [`run_source`] records each event in the process table before the
    /// AUTH lane and this stage see it.
    pub(crate) observed_upstream: bool,
}

/// One item as the reader hands it over: parsed (with its arrival time) or not.
pub enum Parsed {
    /// A typed message and when it was read.
    Message(Box<Message>, Instant),
    /// A line that did not parse.
    Malformed(ParseError),
}

/// The findings recording `decision` on `event`: a deny or a default answer, and any
/// plugin the event's faults quarantined in the AUTH lane.
pub fn auth_records(
    decision: &AuthDecision,
    event: &wit::Event,
    table: &ProcessTable,
) -> Vec<FindingRecord> {
    let mut out = Vec::new();
    if let Some(finding) = auth::record(decision) {
        out.push(
            FindingRecord::new("ward", false, finding, event, table)
                .with_trigger(Arc::new(event.clone())),
        );
    }
    for (name, digest, reason) in &decision.quarantined {
        let mut notice = FindingRecord::plugin_quarantined(name, digest, reason, event);
        notice.evidence.push(("lane".into(), "auth".into()));
        out.push(notice);
    }
    tracing::debug!(kind = %event.kind, answer = decision.answer.as_str(), elapsed_us = decision.elapsed.as_micros() as u64, "AUTH answered");
    out
}

/// The findings (shadow) recording what shadow-mode plugins would have denied.
pub fn shadow_records(outcomes: Vec<ShadowOutcome>, table: &ProcessTable) -> Vec<FindingRecord> {
    outcomes
        .into_iter()
        .flat_map(|o| {
            auth::shadow_records(&o.decision)
                .into_iter()
                .map(|f| FindingRecord::new("ward", true, f, &o.event, table))
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Pipeline {
    /// A pipeline over the given plugins; non-detectors and disabled plugins are ignored.
    /// Detectors that take AUTH events also get verdict instances of their own in the AUTH
    /// lane (built here, in parallel).
    pub fn new(
        rt: Arc<Runtime>,
        plugins: Vec<Plugin>,
        processes: SharedProcessTable,
        options: PipelineOptions,
    ) -> Self {
        let detectors: Vec<Routed> = plugins
            .into_iter()
            .filter(|p| p.kind() == Kind::Detector && p.mode != Mode::Disabled)
            .map(|plugin| Routed {
                route: plugin.route().clone(),
                plugin,
                probation: None,
            })
            .collect();
        // The lane's instances are built on the first AUTH event, not here.
        let verdict_plugins: Vec<&Plugin> = detectors.iter().map(|d| &d.plugin).collect();
        let lane = AuthLane::new(&rt, &verdict_plugins, options.auth.clone());
        Self {
            rt,
            detectors,
            processes,
            batch: Vec::with_capacity(options.batch_size),
            batch_bytes: 0,
            options,
            stats: ParseStats::default(),
            findings: 0,
            lane: Some(lane),
            lane_inbox: None,
            lane_view: None,
            rollbacks: std::collections::BTreeMap::new(),
            auth_elsewhere: (AuthStats::default(), 0),
            observed_upstream: false,
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The process table it keeps.
    pub fn processes(&self) -> &SharedProcessTable {
        &self.processes
    }

    /// The event kinds any detector subscribes to; `None` if some detector takes all.
    pub fn subscribed_kinds(&self) -> Option<Vec<String>> {
        let mut all = Vec::new();
        for d in &self.detectors {
            match d.route.kinds() {
                None => return None,
                Some(kinds) => all.extend(kinds.iter().cloned()),
            }
        }
        all.sort();
        all.dedup();
        Some(all)
    }

    /// Counts a line that was too long to even read.
    pub fn skip_too_long(&mut self, len: usize) {
        self.record_skip(&ParseError::TooLong {
            len,
            max: self.options.max_line_bytes,
        });
    }

    fn record_skip(&mut self, err: &ParseError) {
        self.stats.lines += 1;
        let reason = err.reason();
        self.stats.skip(reason);
        let seen = self
            .stats
            .skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n);
        if seen <= SAMPLES_PER_REASON {
            tracing::warn!(line = self.stats.lines, reason, error = %err, "skipping malformed line");
        }
    }

    /// Feeds one line; findings from any batch this completes are appended to `out`.
    pub fn push_line(&mut self, line: &[u8], out: &mut Vec<FindingRecord>) {
        let arrival = Instant::now();
        match parse_line(line, self.options.max_line_bytes) {
            Ok(msg) => self.push_message_at(&msg, arrival, out),
            Err(err) => self.record_skip(&err),
        }
    }

    /// Feeds one item the reader parsed.
    pub fn push_parsed(&mut self, item: &Parsed, out: &mut Vec<FindingRecord>) {
        match item {
            Parsed::Message(msg, arrival) => self.push_message_at(msg, *arrival, out),
            Parsed::Malformed(err) => self.record_skip(err),
        }
    }

    /// Feeds one typed message (from the parser or a native source), arrived now.
    pub fn push_message(&mut self, msg: &Message, out: &mut Vec<FindingRecord>) {
        self.push_message_at(msg, Instant::now(), out);
    }

    /// Feeds one typed message that arrived at `arrival` (an AUTH event's deadline runs
    /// from then).
    pub fn push_message_at(
        &mut self,
        msg: &Message,
        arrival: Instant,
        out: &mut Vec<FindingRecord>,
    ) {
        self.stats.lines += 1;
        self.stats.events += 1;
        if !self.observed_upstream {
            self.processes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(msg);
        }
        let subscribed = self
            .detectors
            .iter()
            .any(|d| d.route.subscribes(msg.event.kind()));
        if msg.action_type == Some(AUTH_ACTION) {
            // Detectors tell an AUTH event from a NOTIFY one by its request, on the
            // bulk path too.
            let mut event = convert::event(msg);
            event.auth = Some(wit::AuthRequest {
                deadline_ms: u32::try_from(self.options.auth.verdict_timeout.as_millis())
                    .unwrap_or(u32::MAX),
            });
            let Some(lane) = &mut self.lane else {
                // The lane runs on its own thread ([`run_source`]) and answers there.
                if subscribed {
                    self.enqueue(event, event_cost(msg), out);
                }
                return;
            };
            // The verdict does not wait for the batch in hand: the lane has its own
            // instances, and plugins must not need on-events state to answer.
            let decision = lane.decide(&event, arrival);
            let shadows = lane.take_shadow(false);
            let table = self
                .processes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let mut records = auth_records(&decision, &event, &table);
            records.extend(shadow_records(shadows, &table));
            drop(table);
            self.findings += records.len() as u64;
            out.extend(records);
            // Then the event goes on to `on-events` like any other, for findings.
            if subscribed {
                self.enqueue(event, event_cost(msg), out);
            }
            return;
        }
        if subscribed {
            self.enqueue(convert::event(msg), event_cost(msg), out);
        }
    }

    /// Adds an event to the batch, flushing first if it would take the batch past its
    /// byte budget and after if the batch is full.
    fn enqueue(&mut self, event: wit::Event, cost: usize, out: &mut Vec<FindingRecord>) {
        if !self.batch.is_empty()
            && self.batch_bytes.saturating_add(cost) > self.options.batch_bytes
        {
            self.flush(out);
        }
        self.batch.push(event);
        self.batch_bytes = self.batch_bytes.saturating_add(cost);
        if self.batch.len() >= self.options.batch_size
            || self.batch_bytes >= self.options.batch_bytes
        {
            self.flush(out);
        }
    }

    /// Answers one AUTH event now, through the AUTH lane (a test hook; the pipeline does
    /// this itself for AUTH messages).
    pub fn authorize(&mut self, event: &wit::Event) -> AuthDecision {
        match &mut self.lane {
            Some(lane) => lane.decide(event, Instant::now()),
            None => AuthDecision {
                answer: self.options.auth.default_for(&event.kind),
                decided_by: auth::DecidedBy::Default {
                    missed: vec![("ward".into(), "the AUTH lane runs elsewhere".into())],
                },
                shadow_denies: Vec::new(),
                skipped: Vec::new(),
                quarantined: Vec::new(),
                deadline: self.options.auth.verdict_timeout,
                elapsed: std::time::Duration::ZERO,
            },
        }
    }

    /// Delivers the pending batch and waits for what shadow verdict plugins still owe:
    /// the end of a stream.
    pub fn finish(&mut self, out: &mut Vec<FindingRecord>) {
        self.flush(out);
        if let Some(lane) = &mut self.lane {
            let shadows = lane.take_shadow(true);
            let table = self
                .processes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let records = shadow_records(shadows, &table);
            drop(table);
            self.findings += records.len() as u64;
            out.extend(records);
        }
    }

    /// Starts the AUTH lane's verdict instances now rather than on the first AUTH event
    /// (for a source that will deliver AUTH events, before it subscribes to them).
    pub fn prepare_auth(&mut self) {
        if let Some(lane) = &mut self.lane {
            lane.start();
        }
    }

    /// Takes the AUTH lane out to run on a thread of its own ([`run_source`]).
    pub fn take_auth_lane(&mut self) -> Option<AuthLane> {
        self.lane.take()
    }

    /// Gives the lane back, with the findings it recorded meanwhile.
    pub fn restore_auth_lane(&mut self, lane: AuthLane, findings: u64) {
        self.auth_elsewhere.0 = lane.stats();
        self.auth_elsewhere.1 += findings;
        lane.view()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .findings = 0;
        self.lane = Some(lane);
    }

    /// Events waiting in the partial batch.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Runs the pending batch through the detectors: spread over up to
    /// [`PipelineOptions::detect_threads`] threads (see [`shard_plan`]), each plugin on one
    /// of them for the whole batch, batches one after another, so each plugin still sees
    /// its events in stream order. Findings come out in stream order, and for one event in
    /// plugin order, whatever thread found them.
    pub fn flush(&mut self, out: &mut Vec<FindingRecord>) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let now = Instant::now();
        let threads = if batch.len() >= MIN_SHARDED_BATCH {
            self.options.detect_threads.max(1)
        } else {
            1
        };
        let busy: Vec<std::time::Duration> =
            self.detectors.iter().map(|d| d.plugin.stats.busy).collect();
        let plan = shard_plan(&busy, threads);
        let mut shards: Vec<Vec<(usize, &mut Routed)>> = (0..threads).map(|_| Vec::new()).collect();
        for ((index, routed), &shard) in self.detectors.iter_mut().enumerate().zip(&plan) {
            if routed.plugin.held_at(now) || routed.plugin.mode == Mode::Disabled {
                continue;
            }
            if let Some(group) = shards.get_mut(shard) {
                group.push((index, routed));
            }
        }
        shards.retain(|group| !group.is_empty());
        let work = Shard {
            rt: &self.rt,
            batch: &batch,
            processes: &self.processes,
            keep: self.options.keep_events,
        };
        let mut produced: Vec<(usize, usize, FindingRecord)> = match shards.len() {
            0 => Vec::new(),
            1 => shards
                .pop()
                .map(|group| work.run(group))
                .unwrap_or_default(),
            _ => {
                let mut rest = shards.split_off(1);
                let first = shards.pop().unwrap_or_default();
                std::thread::scope(|scope| {
                    let handles: Vec<_> = rest
                        .drain(..)
                        .map(|group| {
                            let work = &work;
                            std::thread::Builder::new()
                                .name("ward-detect".into())
                                .spawn_scoped(scope, move || work.run(group))
                        })
                        .collect();
                    let mut all = work.run(first);
                    for handle in handles {
                        match handle.map(|h| h.join()) {
                            Ok(Ok(found)) => all.extend(found),
                            // A shard that could not start or panicked: its plugins' findings
                            // of this batch are lost, and said so.
                            Ok(Err(_)) | Err(_) => {
                                tracing::error!(
                                    "a detection thread failed; its findings of this batch are lost"
                                )
                            }
                        }
                    }
                    all
                })
            }
        };
        // Stable: one plugin's findings about one event keep the order it gave them.
        produced.sort_by_key(|(position, detector, _)| (*position, *detector));
        self.findings += produced.len() as u64;
        out.extend(produced.into_iter().map(|(_, _, f)| f));
        self.batch = batch;
        self.batch.clear();
        self.judge_probations(out);
    }

    /// Counts `n` records of the agent's own (emitted beside the findings).
    pub fn count_own(&mut self, n: usize) {
        self.findings += n as u64;
    }

    /// Counts so far. A plugin's figures include its AUTH-lane instances.
    pub fn summary(&self) -> Summary {
        // The lane here, or its view while it runs on its own thread.
        let (lane_stats, auth, lane_findings) = match (&self.lane, &self.lane_view) {
            (Some(lane), _) => (lane.plugin_stats(), lane.stats(), self.auth_elsewhere.1),
            (None, Some(view)) => {
                let v = view.lock().unwrap_or_else(PoisonError::into_inner);
                (
                    v.plugins.clone(),
                    v.stats.clone(),
                    self.auth_elsewhere.1 + v.findings,
                )
            }
            (None, None) => (
                Vec::new(),
                self.auth_elsewhere.0.clone(),
                self.auth_elsewhere.1,
            ),
        };
        Summary {
            parse: self.stats.clone(),
            findings: self.findings + lane_findings,
            plugins: self
                .detectors
                .iter()
                .map(|d| {
                    let mut stats = d.plugin.stats.clone();
                    let mut quarantined = d.plugin.quarantined().map(str::to_owned);
                    if let Some((_, lane)) = lane_stats.iter().find(|(n, _)| n == d.plugin.name()) {
                        stats.add(&lane.stats);
                        if quarantined.is_none() {
                            quarantined =
                                lane.quarantined.as_ref().map(|r| format!("AUTH lane: {r}"));
                        }
                    }
                    let rollbacks = self.rollbacks.get(d.plugin.name()).copied().unwrap_or(0);
                    PluginSummary::of(d, &stats, quarantined, rollbacks)
                })
                .collect(),
            auth,
        }
    }
}

/// Batches smaller than this run on one thread: starting a second costs more than it saves.
const MIN_SHARDED_BATCH: usize = 8;

/// Which thread each detector runs on for the next batch: the longest-running first, each
/// onto the thread with the least time so far (time measured inside each plugin since it
/// was loaded), so one heavy plugin gets a thread of its own and the light ones share.
/// Until they have run, detectors go round-robin.
fn shard_plan(busy: &[std::time::Duration], threads: usize) -> Vec<usize> {
    let mut plan = vec![0; busy.len()];
    if threads <= 1 {
        return plan;
    }
    let mut order: Vec<(usize, std::time::Duration)> = busy.iter().copied().enumerate().collect();
    if order.iter().all(|(_, busy)| busy.is_zero()) {
        for (i, slot) in plan.iter_mut().enumerate() {
            *slot = i % threads;
        }
        return plan;
    }
    // Stable on ties, so the plan does not flap between equal plugins.
    order.sort_by_key(|&(_, busy)| std::cmp::Reverse(busy));
    let mut load = vec![std::time::Duration::ZERO; threads];
    for (i, busy) in order {
        let (least, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .unwrap_or((0, &std::time::Duration::ZERO));
        if let (Some(slot), Some(l)) = (plan.get_mut(i), load.get_mut(least)) {
            *slot = least;
            *l += busy;
        }
    }
    plan
}

/// What every detection thread shares for one batch.
struct Shard<'a> {
    rt: &'a Runtime,
    batch: &'a [wit::Event],
    processes: &'a SharedProcessTable,
    keep: bool,
}

impl Shard<'_> {
    /// Runs the batch through `group` (detector index, detector): (position in the batch,
    /// detector index, finding) for each result.
    fn run(&self, group: Vec<(usize, &mut Routed)>) -> Vec<(usize, usize, FindingRecord)> {
        let batch = self.batch;
        let mut produced = Vec::new();
        // One summary (and one kept event) per event, shared by every finding about it
        // made on this thread.
        let mut summaries: Vec<Option<Arc<crate::forward::finding::ProcessSummary>>> =
            vec![None; batch.len()];
        let mut kept: Vec<Option<Arc<wit::Event>>> = if self.keep {
            vec![None; batch.len()]
        } else {
            Vec::new()
        };
        let mut selection: Vec<usize> = Vec::new();
        for (index, routed) in group {
            selection.clear();
            selection.extend(
                batch
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| routed.route.accepts(e))
                    .map(|(i, _)| i),
            );
            if selection.is_empty() {
                continue;
            }
            // The plugin's subset, borrowed from the batch: lowered from there, not copied.
            let events: Vec<&wit::Event> = selection.iter().filter_map(|&i| batch.get(i)).collect();
            let delivered = deliver(self.rt, &mut routed.plugin, &events);
            let position = |at: usize| selection.get(at).copied().unwrap_or(at);
            let table = self
                .processes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let shadow = routed.plugin.mode == Mode::Shadow;
            for (at, d) in delivered.detections {
                let Some(&event) = events.get(at) else {
                    continue;
                };
                let at = position(at);
                let process = match summaries.get_mut(at) {
                    Some(slot) => Arc::clone(slot.get_or_insert_with(|| {
                        Arc::new(crate::forward::finding::process_summary(event, &table))
                    })),
                    None => Arc::new(crate::forward::finding::process_summary(event, &table)),
                };
                let mut record = FindingRecord::with_process(
                    routed.plugin.name(),
                    shadow,
                    d.finding,
                    event,
                    process,
                );
                if self.keep
                    && let Some(slot) = kept.get_mut(at)
                {
                    let shared = slot.get_or_insert_with(|| Arc::new(event.clone()));
                    record = record.with_trigger(Arc::clone(shared));
                }
                produced.push((at, index, record));
            }
            if let Some(at) = delivered.quarantined_at
                && let Some(&event) = events.get(at)
            {
                let reason = routed.plugin.quarantined().unwrap_or("repeated faults");
                produced.push((
                    position(at),
                    index,
                    FindingRecord::plugin_quarantined(
                        routed.plugin.name(),
                        routed.plugin.digest(),
                        reason,
                        event,
                    ),
                ));
            }
        }
        produced
    }
}

/// What [`deliver`] got out of one batch for one plugin.
struct Delivered {
    /// (index in the delivered events, detection).
    detections: Vec<(usize, wit::Detection)>,
    /// Where in the events the plugin was quarantined, if it was.
    quarantined_at: Option<usize>,
}

/// Delivers `events` to `plugin`. A fault that the input may have caused (time, memory,
/// output room) splits the batch in halves, each retried on a fresh instance, down to
/// single events; only a fault on one event is blamed on the plugin. The unblamed faults
/// of one delivery are capped at the depth of one bisection (`log2 n + 1`): past that a
/// fault on a larger part is blamed too, so a plugin that fails only on batches cannot
/// stall the stage batch after batch without being quarantined. Stops at a quarantine.
/// At most `2n - 1` calls for `n` events.
fn deliver(rt: &Runtime, plugin: &mut Plugin, events: &[&wit::Event]) -> Delivered {
    // Events are counted once, however often a split retries them.
    plugin.stats.events += events.len() as u64;
    bisect(events.len(), |start, end, splittable| {
        let Some(part) = events.get(start..end) else {
            return Err(CallError::Host("range outside the batch".into()));
        };
        plugin.on_events_split(rt, part, splittable)
    })
}

/// The splitting of [`deliver`], over any call: `call(start, end, splittable)` delivers
/// events `start..end`.
fn bisect(
    len: usize,
    mut call: impl FnMut(usize, usize, bool) -> Result<Vec<wit::Detection>, CallError>,
) -> Delivered {
    let mut out = Delivered {
        detections: Vec::new(),
        quarantined_at: None,
    };
    let mut unblamed_left = (usize::BITS - len.leading_zeros()) as usize + 1;
    // A stack of half-open ranges, leftmost on top so events are delivered in order.
    let mut pending = vec![(0usize, len)];
    while let Some((start, end)) = pending.pop() {
        if start >= end {
            continue;
        }
        match call(start, end, end - start > 1 && unblamed_left > 0) {
            Ok(detections) => out.detections.extend(
                detections
                    .into_iter()
                    .map(|d| (start + d.event_index as usize, d)),
            ),
            Err(CallError::Fault(f)) if !f.blamed => {
                unblamed_left = unblamed_left.saturating_sub(1);
                let mid = start + (end - start) / 2;
                pending.push((mid, end));
                pending.push((start, mid));
            }
            Err(CallError::Fault(f)) if f.quarantined_now => {
                out.quarantined_at = Some(start);
                break;
            }
            Err(CallError::Quarantined) => break,
            Err(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(blamed: bool, quarantined_now: bool) -> CallError {
        CallError::Fault(crate::sandbox::plugin::Fault {
            kind: crate::sandbox::plugin::FaultKind::Timeout,
            detail: String::new(),
            quarantined_now,
            blamed,
        })
    }

    fn detection(event_index: u32) -> wit::Detection {
        wit::Detection {
            event_index,
            finding: wit::Finding {
                rule: "r".into(),
                severity: wit::Severity::Low,
                attack: vec![],
                message: String::new(),
                evidence: vec![],
            },
        }
    }

    /// One poisoned event in 64 is found by halving (7 calls down its path), the other 63
    /// delivered, every finding at its batch position; only the single-event fault is
    /// blamed.
    #[test]
    fn the_heaviest_detector_gets_a_thread_of_its_own() {
        let ms = std::time::Duration::from_millis;
        // Not run yet: round-robin.
        assert_eq!(shard_plan(&[ms(0); 5], 2), vec![0, 1, 0, 1, 0]);
        assert_eq!(shard_plan(&[ms(0); 3], 1), vec![0, 0, 0]);
        // One plugin outweighs the rest together: alone on its thread.
        let plan = shard_plan(&[ms(3), ms(40), ms(5), ms(2), ms(1)], 2);
        let heavy = plan[1];
        assert!(
            plan.iter()
                .enumerate()
                .all(|(i, &t)| (i == 1) == (t == heavy))
        );
        // Balanced: 8 + 2 against 6 + 4.
        let plan = shard_plan(&[ms(8), ms(6), ms(4), ms(2)], 2);
        assert_eq!(plan[0], plan[3]);
        assert_eq!(plan[1], plan[2]);
        assert_ne!(plan[0], plan[1]);
        // More threads than plugins: each on its own.
        let plan = shard_plan(&[ms(1), ms(2)], 4);
        assert_ne!(plan[0], plan[1]);
    }

    #[test]
    fn a_fault_is_isolated_by_halving_down_to_one_event() {
        let mut calls = Vec::new();
        let out = bisect(64, |start, end, splittable| {
            calls.push((start, end, splittable));
            if (start..end).contains(&37) {
                return Err(fault(end - start == 1 || !splittable, false));
            }
            Ok((0..(end - start) as u32).map(detection).collect())
        });
        let positions: Vec<usize> = out.detections.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, (0..64).filter(|&p| p != 37).collect::<Vec<_>>());
        assert!(calls.len() < 2 * 64, "at most 2n - 1 calls");
        let blamed = calls
            .iter()
            .filter(|(s, e, _)| e - s == 1 && *s == 37)
            .count();
        assert_eq!(blamed, 1, "{calls:?}");
    }

    /// A plugin that fails on every batch of more than one event (but not alone) cannot
    /// stall the stage for ever unblamed: after one bisection's depth of unblamed faults,
    /// the next fault on a larger part is blamed (and so counts towards quarantine).
    #[test]
    fn unblamed_retries_are_capped_at_one_bisection_depth() {
        let mut unblamed = 0;
        let mut blamed = 0;
        let mut calls = 0;
        bisect(64, |start, end, splittable| {
            calls += 1;
            if end - start > 1 {
                if splittable {
                    unblamed += 1;
                    return Err(fault(false, false));
                }
                blamed += 1;
                return Err(fault(true, false));
            }
            Ok(Vec::new())
        });
        assert_eq!(unblamed, 8, "log2(64) + 1 unblamed faults at most");
        assert!(blamed > 0);
        assert!(
            calls < 64,
            "{calls} calls: the budget stopped the splitting early"
        );
        // A quarantine stops the delivery at once.
        let mut after = 0;
        let out = bisect(8, |_, _, _| {
            after += 1;
            Err(fault(true, true))
        });
        assert_eq!((after, out.quarantined_at), (1, Some(0)));
    }
}
