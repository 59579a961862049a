//! The AUTH lane: verdicts on AUTH events, apart from the bulk stream.
//!
//! Every detector that may be asked (it subscribes to some AUTH-able kind) gets a worker
//! thread here with instances of its own: one live, one spare built in the background —
//! started with the first AUTH event, so streams without any cost nothing.
//! Nothing the bulk stage does — a batch of huge events, a plugin that spins until its
//! per-call cap, a fault and the re-instantiation after it — touches these instances or
//! their fault accounting, and an AUTH event never waits behind a batch.
//!
//! The lane is an event loop over decisions in flight: an AUTH event is handed to the
//! enforcing workers the moment it arrives, whatever is still pending, so a burst of AUTH
//! events is decided side by side rather than one window after another. For each event
//! the lane asks every enforcing worker at once, each with the time left until the
//! answer is due: the verdict deadline clocked from the
//! event's *arrival*, less a safety margin ([`ANSWER_BY`], as Santa answers by 80% of
//! Endpoint Security's deadline). Host imports see the same deadline (a file too large to
//! hash in time is hashed in the background for next time and the plugin answers
//! `undecided`). A worker whose instance faulted swaps in its spare at once and builds a
//! new spare on another thread, so re-instantiation never runs inside a verdict window.
//! Shadow-mode workers are asked only once the answer is decided, and their replies are
//! collected later ([`AuthLane::take_shadow`]): they never delay this answer or the next.
//!
//! A plugin is blamed for running out of time only when it had its whole budget: an event
//! that waited for its turn (a burst of AUTH events) gives the plugin less, and missing
//! that is the host's doing, so the stream cannot get a verdict plugin quarantined by
//! timing. A plugin the lane has quarantined (repeated faults of its own on AUTH events,
//! with back-off and release as everywhere) is *skipped*: not asked, and not a reason for
//! the policy default — a quarantine never turns a fail-closed default into "deny every
//! exec" for everyone. The quarantine itself is reported as a `plugin-quarantined` finding.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::detect::auth::{self, AuthDecision, AuthPolicy, AuthStats, DecidedBy};
use crate::detect::router::Route;
use crate::sandbox::bindings::wit;
use crate::sandbox::engine::EPOCH_TICK;
use crate::sandbox::plugin::{CallError, FaultKind, Instance, Kind, Mode, Plugin, PluginStats};
use crate::sandbox::runtime::Runtime;

/// The share of the verdict deadline by which ward answers, so the answer reaches the
/// kernel before Endpoint Security's own deadline however late the clock reads.
pub const ANSWER_BY: f64 = 0.8;

/// Asks queued per worker (a burst of AUTH events is handed out at once; the lane's
/// byte gate bounds what is in flight); a worker still busy past that is answered for as
/// `busy`.
const WORKER_QUEUE: usize = 256;

/// First wait before retrying a spare instance that failed to start; doubles each time.
const SPARE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between spare retries.
const SPARE_RETRY_MAX: Duration = Duration::from_secs(60);

enum Msg {
    Ask {
        id: u64,
        event: Arc<wit::Event>,
        due: Instant,
        /// The budget a plugin gets for an event that did not wait: less than this is the
        /// host's doing.
        full: Duration,
        reply: Sender<Inbox>,
    },
    Spare(Result<Instance, (FaultKind, String)>),
    Stop,
}

/// What reaches the lane: events to decide, workers' replies, the end of the stream.
pub enum Inbox {
    /// An AUTH event to decide.
    Event(Box<Submitted>),
    /// A worker's verdict.
    Reply(Reply),
    /// No more events will come.
    End,
    /// A plugin to put in (a new version or a new one).
    Upsert(Box<Plugin>),
    /// A plugin to take out, by name.
    Remove(String),
    /// A plugin's new mode.
    Mode(String, Mode),
    /// A new version's worker has its live instance (internal).
    Ready(String),
}

/// An AUTH event handed to the lane.
pub struct Submitted {
    /// The message.
    pub message: Box<ward_event::Message>,
    /// When it arrived: its deadline runs from here.
    pub arrival: Instant,
    /// What it counts for in the reader's byte budget.
    pub cost: usize,
    /// A native source's deadline and answer handle (`None` for recorded streams).
    pub responder: Option<crate::ingest::Responder>,
}

/// How a starting worker says its live instance is ready.
enum Ready {
    /// At start-up: the lane waits on this.
    Signal(SyncSender<()>),
    /// A swap: the lane's inbox hears it, between events.
    Inbox(Sender<Inbox>, String),
}

/// A worker's answer to one ask.
pub struct Reply {
    id: u64,
    result: Result<wit::Verdict, Miss>,
    /// Set when this ask quarantined the plugin: the reason.
    quarantined: Option<String>,
}

/// Why a worker gave no verdict.
#[derive(Debug, Clone)]
enum Miss {
    /// Quarantined by this lane: skipped, not a reason for the default.
    Quarantined,
    /// Any other reason: the default applies unless someone denied in time.
    Missed(String),
}

/// What a running lane shows of itself: its AUTH counts, its findings, each worker's
/// counters.
#[derive(Debug, Clone, Default)]
pub struct LaneView {
    /// AUTH counts.
    pub stats: AuthStats,
    /// Findings it recorded.
    pub findings: u64,
    /// (plugin name, counters and quarantine).
    pub plugins: Vec<(String, LaneStats)>,
}

/// What the lane shows of a worker's plugin: its counters and quarantine.
#[derive(Debug, Clone, Default)]
pub struct LaneStats {
    /// Counters of the lane's instances.
    pub stats: PluginStats,
    /// Why the lane holds it in quarantine, if it does.
    pub quarantined: Option<String>,
}

struct Worker {
    name: String,
    digest: String,
    mode: Mode,
    route: Route,
    tx: SyncSender<Msg>,
    stats: Arc<Mutex<LaneStats>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Verdicts it did not give in time, counted by the lane.
    missed: u64,
}

/// A worker's verdict on an event, by the worker's index.
type WorkerReply = (usize, Result<wit::Verdict, Miss>);

/// An event being decided.
struct Pending {
    ticket: u64,
    event: Arc<wit::Event>,
    arrival: Instant,
    due: Instant,
    cost: usize,
    /// Asks without a reply yet: (worker, ask id).
    waiting: Vec<(usize, u64)>,
    replies: Vec<WorkerReply>,
    quarantined: Vec<(String, String, String)>,
    /// Where a native source hears the answer.
    respond: Option<crate::ingest::Responder>,
}

/// Shadow asks of an event already answered.
struct PendingShadow {
    event: Arc<wit::Event>,
    decision: AuthDecision,
    waiting: Vec<(usize, u64)>,
    due: Instant,
}

/// An AUTH event decided.
pub struct Decided {
    /// The event, as the plugins saw it.
    pub event: Arc<wit::Event>,
    /// The answer.
    pub decision: AuthDecision,
    /// What the event counted for when it was submitted.
    pub cost: usize,
    ticket: u64,
}

/// What shadow plugins said of an event already answered.
pub struct ShadowOutcome {
    /// The event.
    pub event: Arc<wit::Event>,
    /// The answer given, with the shadow denies filled in.
    pub decision: AuthDecision,
}

/// Verdict workers and the policy they answer under.
pub struct AuthLane {
    rt: Arc<Runtime>,
    /// Lane handles of the plugins, until the workers start.
    planned: Vec<Plugin>,
    /// When the workers were ready; `None` before they start.
    ready_at: Option<Instant>,
    /// Published by [`Self::run`] as it goes.
    view: Arc<Mutex<LaneView>>,
    policy: AuthPolicy,
    workers: Vec<Worker>,
    /// New versions whose live instance is still being built; the old ones answer.
    incoming: Vec<Worker>,
    stats: AuthStats,
    next_id: u64,
    inbox_tx: Sender<Inbox>,
    inbox: Receiver<Inbox>,
    pending: Vec<Pending>,
    shadow: Vec<PendingShadow>,
    decided: Vec<Decided>,
    shadowed: Vec<ShadowOutcome>,
    ended: bool,
}

/// True if a plugin with `route` can be asked about any AUTH event.
fn takes_auth(route: &Route) -> bool {
    match route.kinds() {
        None => true,
        Some(kinds) => kinds.iter().any(|k| auth::AUTH_KINDS.contains(&k.as_str())),
    }
}

impl AuthLane {
    /// A lane for each detector in `plugins` that takes AUTH events. Nothing starts yet:
    /// the workers and their instances are built on the first AUTH event (or by
    /// [`Self::start`]), so a stream without AUTH events — every eslogger stream — pays
    /// nothing for the lane.
    pub fn new(rt: &Arc<Runtime>, plugins: &[&Plugin], policy: AuthPolicy) -> Self {
        let planned = plugins
            .iter()
            .filter(|p| {
                p.kind() == Kind::Detector && p.mode != Mode::Disabled && takes_auth(p.route())
            })
            .map(|p| p.another_lane())
            .collect();
        let (inbox_tx, inbox) = mpsc::channel();
        Self {
            rt: Arc::clone(rt),
            planned,
            ready_at: None,
            view: Arc::default(),
            policy,
            workers: Vec::new(),
            incoming: Vec::new(),
            stats: AuthStats::default(),
            next_id: 0,
            inbox_tx,
            inbox,
            pending: Vec::new(),
            shadow: Vec::new(),
            decided: Vec::new(),
            shadowed: Vec::new(),
            ended: false,
        }
    }

    /// Starts the workers, each building its live instance (in parallel), and returns
    /// once all are ready; spares follow in the background. Done once; a source that
    /// will deliver AUTH events (a native Endpoint Security client) calls it before
    /// subscribing to them. Events that arrived before the lane was ready are clocked
    /// from when it was.
    pub fn start(&mut self) {
        if self.ready_at.is_some() {
            return;
        }
        let mut ready = Vec::new();
        for plugin in std::mem::take(&mut self.planned) {
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            if let Some(worker) = self.spawn(plugin, Ready::Signal(tx)) {
                ready.push(rx);
                self.workers.push(worker);
            }
        }
        for r in ready {
            let _ = r.recv();
        }
        self.ready_at = Some(Instant::now());
    }

    /// Starts a worker thread for `plugin`, which says when its live instance is ready
    /// through `ready`.
    fn spawn(&self, plugin: Plugin, ready: Ready) -> Option<Worker> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(WORKER_QUEUE);
        let stats = Arc::new(Mutex::new(LaneStats::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (name, digest, mode, route) = (
            plugin.name().to_owned(),
            plugin.digest().to_owned(),
            plugin.mode,
            plugin.route().clone(),
        );
        let worker = WorkerLoop {
            rt: Arc::clone(&self.rt),
            plugin,
            tx: tx.clone(),
            stats: Arc::clone(&stats),
            stopping: Arc::clone(&stopping),
        };
        let thread = std::thread::Builder::new()
            .name(format!("ward-auth-{name}"))
            .spawn(move || worker.run(rx, ready));
        match thread {
            Ok(handle) => Some(Worker {
                name,
                digest,
                mode,
                route,
                tx,
                stats,
                stopping,
                thread: Some(handle),
                missed: 0,
            }),
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "cannot start the AUTH worker; the plugin will not be asked for verdicts");
                None
            }
        }
    }

    /// Applies a swap, a removal or a mode change now (the synchronous path; a running
    /// lane takes them through its inbox, between events).
    pub fn apply(&mut self, msg: Inbox) {
        self.handle(msg);
    }

    /// Puts `plugin` in (a new version of one already here, or a new one). Before the
    /// lane starts this only replaces the plan; after, the new version gets a worker of
    /// its own and the old one keeps answering until the new one's instance is ready —
    /// a swap never leaves a verdict to the default.
    fn upsert(&mut self, plugin: Plugin) {
        if self.ready_at.is_none() {
            self.planned.retain(|p| p.name() != plugin.name());
            if takes_auth(plugin.route()) {
                self.planned.push(plugin);
            }
            return;
        }
        if !takes_auth(plugin.route()) {
            self.remove(plugin.name());
            return;
        }
        let name = plugin.name().to_owned();
        let ready = Ready::Inbox(self.inbox_tx.clone(), name.clone());
        if let Some(worker) = self.spawn(plugin, ready) {
            // One incoming version at a time: a newer one replaces a still-warming one.
            if let Some(old) = self.incoming.iter().position(|w| w.name == name) {
                let mut stale = self.incoming.swap_remove(old);
                stale.stop(false);
            }
            self.incoming.push(worker);
        }
    }

    /// The incoming worker for `name` is ready: it takes the old one's place.
    fn promote(&mut self, name: &str) {
        let Some(at) = self.incoming.iter().position(|w| w.name == name) else {
            return;
        };
        let worker = self.incoming.swap_remove(at);
        match self.workers.iter().position(|w| w.name == name) {
            Some(i) => {
                if let Some(slot) = self.workers.get_mut(i) {
                    let mut old = std::mem::replace(slot, worker);
                    old.stop(false);
                }
            }
            None => self.workers.push(worker),
        }
        tracing::info!(plugin = %name, "AUTH lane: the new version answers from now on");
    }

    /// Takes `name` out of the lane. What it was still asked has no say any more (no
    /// opinion, not a miss), and the asks in flight are renumbered to the workers' new
    /// places.
    fn remove(&mut self, name: &str) {
        self.planned.retain(|p| p.name() != name);
        if let Some(at) = self.incoming.iter().position(|w| w.name == name) {
            let mut w = self.incoming.remove(at);
            w.stop(false);
        }
        let Some(at) = self.workers.iter().position(|w| w.name == name) else {
            return;
        };
        let mut w = self.workers.remove(at);
        w.stop(false);
        let shift = |i: &mut usize| {
            if *i > at {
                *i -= 1;
            }
        };
        for p in &mut self.pending {
            p.waiting.retain(|(i, _)| *i != at);
            p.replies.retain(|(i, _)| *i != at);
            p.waiting.iter_mut().for_each(|(i, _)| shift(i));
            p.replies.iter_mut().for_each(|(i, _)| shift(i));
        }
        for s in &mut self.shadow {
            s.waiting.retain(|(i, _)| *i != at);
            s.waiting.iter_mut().for_each(|(i, _)| shift(i));
        }
    }

    /// Sets `name`'s mode.
    fn set_mode(&mut self, name: &str, mode: Mode) {
        for p in &mut self.planned {
            if p.name() == name {
                p.mode = mode;
            }
        }
        for w in self.workers.iter_mut().chain(self.incoming.iter_mut()) {
            if w.name == name {
                w.mode = mode;
            }
        }
    }

    /// The policy.
    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// AUTH counts so far.
    pub fn stats(&self) -> AuthStats {
        self.stats.clone()
    }

    /// Where a source sends AUTH events ([`Inbox::Event`]) and, at its end, [`Inbox::End`].
    pub fn sender(&self) -> Sender<Inbox> {
        self.inbox_tx.clone()
    }

    /// Each worker's counters and quarantine: (plugin name, what the lane shows).
    pub fn plugin_stats(&self) -> Vec<(String, LaneStats)> {
        self.workers
            .iter()
            .map(|w| {
                let mut s = w
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                s.stats.deadlines_missed += w.missed;
                (w.name.clone(), s)
            })
            .collect()
    }

    /// The budget of a plugin asked about an event the moment it arrives.
    fn full_budget(&self) -> Duration {
        self.policy
            .verdict_timeout
            .mul_f64(ANSWER_BY)
            .saturating_sub(EPOCH_TICK)
    }

    /// When the answer to an event that arrived at `arrival` is due.
    pub fn answer_due(&self, arrival: Instant) -> Instant {
        arrival + self.policy.verdict_timeout.mul_f64(ANSWER_BY)
    }

    fn worker_name(&self, i: usize) -> String {
        self.workers
            .get(i)
            .map(|w| w.name.clone())
            .unwrap_or_default()
    }

    /// Sends `event` to the workers `chosen` with `due` as their deadline: the asks sent
    /// and the misses of those that could not be asked.
    fn ask(
        &mut self,
        chosen: &[usize],
        event: &Arc<wit::Event>,
        due: Instant,
    ) -> (Vec<(usize, u64)>, Vec<WorkerReply>) {
        let full = self.full_budget();
        let mut asked = Vec::new();
        let mut unasked = Vec::new();
        for &i in chosen {
            let Some(w) = self.workers.get(i) else {
                continue;
            };
            self.next_id += 1;
            let id = self.next_id;
            let msg = Msg::Ask {
                id,
                event: Arc::clone(event),
                due,
                full,
                reply: self.inbox_tx.clone(),
            };
            match w.tx.try_send(msg) {
                Ok(()) => asked.push((i, id)),
                Err(TrySendError::Full(_)) => unasked.push((i, Err(Miss::Missed("busy".into())))),
                Err(TrySendError::Disconnected(_)) => {
                    unasked.push((i, Err(Miss::Missed("worker stopped".into()))));
                }
            }
        }
        (asked, unasked)
    }

    fn takers(&self, event: &wit::Event, mode: Mode) -> Vec<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.mode == mode && w.route.accepts(event))
            .map(|(i, _)| i)
            .collect()
    }

    /// Hands `event` to the enforcing workers at once; returns its ticket.
    fn submit(
        &mut self,
        event: &wit::Event,
        arrival: Instant,
        cost: usize,
        responder: Option<crate::ingest::Responder>,
    ) -> u64 {
        self.start();
        let deadline = responder
            .as_ref()
            .and_then(crate::ingest::Responder::deadline);
        let respond = responder;
        let arrival = self.ready_at.map_or(arrival, |ready| arrival.max(ready));
        // The policy's deadline, or the message's own if that is sooner.
        let due = match deadline {
            Some(d) => self.answer_due(arrival).min(d),
            None => self.answer_due(arrival),
        };
        let mut event = event.clone();
        event.auth = Some(wit::AuthRequest {
            deadline_ms: u32::try_from(due.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(u32::MAX),
        });
        let event = Arc::new(event);
        let enforcing = self.takers(&event, Mode::Enforce);
        let (waiting, replies) = self.ask(&enforcing, &event, due);
        self.next_id += 1;
        let ticket = self.next_id;
        self.pending.push(Pending {
            ticket,
            event,
            arrival,
            due,
            cost,
            waiting,
            replies,
            quarantined: Vec::new(),
            respond,
        });
        ticket
    }

    /// Takes in one message.
    fn handle(&mut self, msg: Inbox) {
        match msg {
            Inbox::Event(submitted) => {
                let Submitted {
                    message,
                    arrival,
                    cost,
                    responder,
                } = *submitted;
                let event = crate::ingest::convert::event(&message);
                self.submit(&event, arrival, cost, responder);
            }
            Inbox::End => self.ended = true,
            Inbox::Upsert(plugin) => self.upsert(*plugin),
            Inbox::Remove(name) => self.remove(&name),
            Inbox::Mode(name, mode) => self.set_mode(&name, mode),
            Inbox::Ready(name) => self.promote(&name),
            Inbox::Reply(reply) => {
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .find(|p| p.waiting.iter().any(|(_, id)| *id == reply.id))
                {
                    let Some(at) = p.waiting.iter().position(|(_, id)| *id == reply.id) else {
                        return;
                    };
                    let (worker, _) = p.waiting.swap_remove(at);
                    if let (Some(reason), Some(w)) = (reply.quarantined, self.workers.get(worker)) {
                        p.quarantined
                            .push((w.name.clone(), w.digest.clone(), reason));
                    }
                    // An answer after the due time is one Endpoint Security never saw.
                    let result = if Instant::now() > p.due {
                        Err(Miss::Missed("late".into()))
                    } else {
                        reply.result
                    };
                    p.replies.push((worker, result));
                } else if let Some(s) = self
                    .shadow
                    .iter_mut()
                    .find(|s| s.waiting.iter().any(|(_, id)| *id == reply.id))
                {
                    let Some(at) = s.waiting.iter().position(|(_, id)| *id == reply.id) else {
                        return;
                    };
                    let (worker, _) = s.waiting.swap_remove(at);
                    if let Ok(wit::Verdict::Deny(reason)) = reply.result {
                        let name = self
                            .workers
                            .get(worker)
                            .map(|w| w.name.clone())
                            .unwrap_or_default();
                        s.decision.shadow_denies.push((name, reason));
                    }
                }
                // A reply to nothing pending came after its event was decided: dropped.
            }
        }
    }

    /// Decides every pending event whose replies are all in or whose due time has passed,
    /// and completes the shadow asks likewise.
    fn settle(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let ready = self
                .pending
                .get(i)
                .is_some_and(|p| p.waiting.is_empty() || now >= p.due);
            if !ready {
                i += 1;
                continue;
            }
            let p = self.pending.swap_remove(i);
            let decided = self.conclude(p);
            self.decided.push(decided);
        }
        let mut j = 0;
        while j < self.shadow.len() {
            let ready = self
                .shadow
                .get(j)
                .is_some_and(|s| s.waiting.is_empty() || now >= s.due);
            if !ready {
                j += 1;
                continue;
            }
            let s = self.shadow.swap_remove(j);
            self.shadowed.push(ShadowOutcome {
                event: s.event,
                decision: s.decision,
            });
        }
        // Keep the order events were submitted in.
        self.decided.sort_by_key(|d| d.ticket);
    }

    /// The decision for `p`, and its shadow asks sent.
    fn conclude(&mut self, mut p: Pending) -> Decided {
        for (worker, _) in p.waiting.drain(..) {
            p.replies.push((worker, Err(Miss::Missed("late".into()))));
        }
        // Load order decides which deny is reported when several plugins deny.
        p.replies.sort_by_key(|(i, _)| *i);
        let elapsed = p.arrival.elapsed();
        let mut denied = None;
        let mut missed = Vec::new();
        let mut skipped = Vec::new();
        for (i, result) in std::mem::take(&mut p.replies) {
            let name = self.worker_name(i);
            match result {
                Ok(wit::Verdict::Deny(reason)) => {
                    if denied.is_none() {
                        denied = Some((name, reason));
                    }
                }
                Ok(wit::Verdict::Allow | wit::Verdict::NoOpinion) => {}
                Ok(wit::Verdict::Undecided(why)) => {
                    missed.push((name, format!("undecided: {why}")))
                }
                Err(Miss::Quarantined) => skipped.push((name, "quarantined".to_owned())),
                Err(Miss::Missed(why)) => {
                    if let Some(w) = self.workers.get_mut(i) {
                        w.missed += 1;
                    }
                    missed.push((name, why));
                }
            }
        }
        let deadline = self.policy.verdict_timeout;
        let (answer, decided_by) = match (denied, missed.is_empty()) {
            (Some((name, reason)), _) => (auth::Answer::Deny, DecidedBy::Plugin { name, reason }),
            (None, true) => (auth::Answer::Allow, DecidedBy::Plugins),
            (None, false) => (
                self.policy.default_for(&p.event.kind),
                DecidedBy::Default { missed },
            ),
        };
        let decision = AuthDecision {
            answer,
            decided_by,
            shadow_denies: Vec::new(),
            skipped,
            quarantined: std::mem::take(&mut p.quarantined),
            deadline,
            elapsed,
        };
        self.stats.record(&decision);
        // The answer is decided: a native source sends it now, before anything else.
        if let Some(respond) = p.respond.take() {
            respond.answer(decision.answer == auth::Answer::Allow);
        }
        // Shadow plugins are asked only now, with the rest of the deadline, and collected later.
        let shadow = self.takers(&p.event, Mode::Shadow);
        if !shadow.is_empty() {
            let shadow_due = p.arrival + deadline;
            let (waiting, _) = self.ask(&shadow, &p.event, shadow_due);
            if !waiting.is_empty() {
                self.shadow.push(PendingShadow {
                    event: Arc::clone(&p.event),
                    decision: decision.clone(),
                    waiting,
                    due: shadow_due,
                });
            }
        }
        Decided {
            event: p.event,
            decision,
            cost: p.cost,
            ticket: p.ticket,
        }
    }

    /// The earliest due time of anything in flight.
    fn next_due(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.due)
            .chain(self.shadow.iter().map(|s| s.due))
            .min()
    }

    /// Takes in what has arrived and settles what is ready, without waiting.
    fn pump(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            self.handle(msg);
        }
        self.settle();
    }

    /// Waits for the next message until `until` (or the next due time, if sooner), takes
    /// it in with whatever else has arrived, and settles.
    fn pump_until(&mut self, until: Option<Instant>) {
        let wake = match (until, self.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let got = match wake {
            Some(at) => self
                .inbox
                .recv_timeout(at.saturating_duration_since(Instant::now()))
                .ok(),
            None => self.inbox.recv().ok(),
        };
        if let Some(msg) = got {
            self.handle(msg);
        }
        self.pump();
    }

    /// Answers one AUTH event that arrived at `arrival`, now (the synchronous path):
    /// asks the enforcing workers, concurrently, and decides by the answer's due time.
    /// Shadow workers are asked once the answer is decided; [`Self::take_shadow`]
    /// collects them.
    pub fn decide(&mut self, event: &wit::Event, arrival: Instant) -> AuthDecision {
        let ticket = self.submit(event, arrival, 0, None);
        loop {
            self.pump();
            if let Some(at) = self.decided.iter().position(|d| d.ticket == ticket) {
                return self.decided.remove(at).decision;
            }
            self.pump_until(None);
        }
    }

    /// What the lane shows of itself while [`Self::run`] runs it.
    pub fn view(&self) -> Arc<Mutex<LaneView>> {
        Arc::clone(&self.view)
    }

    /// Runs the lane on events sent to [`Self::sender`] until [`Inbox::End`] and all in
    /// flight is settled, handing each decision and shadow outcome to `emit` as it comes
    /// (`emit` answers how many findings it recorded, or `None` to stop).
    pub fn run(&mut self, mut emit: impl FnMut(Output) -> bool) {
        loop {
            self.pump_until(None);
            let shown = LaneView {
                stats: self.stats.clone(),
                findings: 0,
                plugins: self.plugin_stats(),
            };
            {
                let mut v = self.view.lock().unwrap_or_else(PoisonError::into_inner);
                let findings = v.findings;
                *v = shown;
                v.findings = findings;
            }
            for d in std::mem::take(&mut self.decided) {
                if !emit(Output::Decided(d)) {
                    return;
                }
            }
            for s in std::mem::take(&mut self.shadowed) {
                if !emit(Output::Shadow(s)) {
                    return;
                }
            }
            if self.ended && self.pending.is_empty() && self.shadow.is_empty() {
                return;
            }
        }
    }

    /// The shadow outcomes settled so far; with `wait`, all of them, waiting for each
    /// until its time is up.
    pub fn take_shadow(&mut self, wait: bool) -> Vec<ShadowOutcome> {
        self.pump();
        while wait && !self.shadow.is_empty() {
            self.pump_until(None);
        }
        std::mem::take(&mut self.shadowed)
    }
}

/// What [`AuthLane::run`] hands out.
pub enum Output {
    /// An event decided.
    Decided(Decided),
    /// What shadow plugins said of an event decided earlier.
    Shadow(ShadowOutcome),
}

impl Worker {
    /// Stops the worker. It keeps a sender of its own (for spare builders), so it is told
    /// to stop; one that cannot take the message (stuck in a host call with a full queue)
    /// sees the flag after its current ask and is not waited for.
    /// Its queued asks are answered first. With `join`, waits for it.
    fn stop(&mut self, join: bool) {
        self.stopping.store(true, Ordering::Relaxed);
        let told = self.tx.try_send(Msg::Stop).is_ok();
        if let Some(t) = self.thread.take()
            && told
            && join
        {
            let _ = t.join();
        }
    }
}

impl Drop for AuthLane {
    fn drop(&mut self) {
        for w in self.workers.iter_mut().chain(self.incoming.iter_mut()) {
            w.stop(true);
        }
    }
}

/// One worker: its plugin handle, a spare instance, and the sender spare builders use.
struct WorkerLoop {
    rt: Arc<Runtime>,
    plugin: Plugin,
    tx: SyncSender<Msg>,
    stats: Arc<Mutex<LaneStats>>,
    stopping: Arc<AtomicBool>,
}

impl WorkerLoop {
    /// Starts building a spare instance on its own thread; it arrives as [`Msg::Spare`].
    fn build_spare(&self) -> bool {
        let image = Arc::clone(self.plugin.image());
        let rt = Arc::clone(&self.rt);
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("ward-spare-{}", self.plugin.name()))
            .spawn(move || {
                let built = image.instantiate(&rt);
                let _ = tx.send(Msg::Spare(built));
            })
            .is_ok()
    }

    /// This worker's verdict for `event`, due at `due`.
    fn verdict(&mut self, event: &wit::Event, due: Instant, full: Duration) -> Reply {
        let now = Instant::now();
        let miss = |m: Miss| Err(m);
        let result = if self.plugin.held_at(now) {
            miss(Miss::Quarantined)
        } else if now >= due {
            miss(Miss::Missed("no time left".into()))
        } else if !self.plugin.is_warm() {
            miss(Miss::Missed("warming".into()))
        } else {
            // One epoch tick short of the due time, so an interrupted plugin's reply still
            // arrives before the lane stops waiting.
            let budget = (due - now).saturating_sub(EPOCH_TICK).max(EPOCH_TICK);
            let short = budget + EPOCH_TICK * 2 < full;
            match self.plugin.authorize(&self.rt, event, budget, short) {
                // An answer after the due time is one Endpoint Security never saw.
                Ok(_) if Instant::now() > due => miss(Miss::Missed("late".into())),
                Ok(v) => Ok(v),
                Err(CallError::Quarantined) => miss(Miss::Quarantined),
                Err(CallError::Fault(f)) => {
                    let why = if f.blamed {
                        f.kind.as_str().to_owned()
                    } else {
                        format!("{} (its time was cut short)", f.kind.as_str())
                    };
                    let reply = Reply {
                        id: 0,
                        result: Err(Miss::Missed(why)),
                        quarantined: f
                            .quarantined_now
                            .then(|| self.plugin.quarantined().unwrap_or_default().to_owned()),
                    };
                    return reply;
                }
                Err(e) => miss(Miss::Missed(e.to_string())),
            }
        };
        Reply {
            id: 0,
            result,
            quarantined: None,
        }
    }

    fn run(mut self, rx: Receiver<Msg>, ready: Ready) {
        // The live instance first (the lane waits for it), then a spare in the background.
        self.plugin.warm(&self.rt);
        match ready {
            Ready::Signal(tx) => {
                let _ = tx.send(());
            }
            Ready::Inbox(tx, name) => {
                let _ = tx.send(Inbox::Ready(name));
            }
        }
        let mut spare: Option<Instance> = None;
        let mut building = self.build_spare();
        let mut retry_wait = SPARE_RETRY_FIRST;
        let mut retry_at: Option<Instant> = None;
        loop {
            let msg = match retry_at {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
            };
            match msg {
                Some(Msg::Stop) => break,
                Some(Msg::Ask {
                    id,
                    event,
                    due,
                    full,
                    reply,
                }) => {
                    self.plugin.release_if_due(Instant::now());
                    let mut answer = self.verdict(&event, due, full);
                    answer.id = id;
                    let _ = reply.send(Inbox::Reply(answer));
                }
                Some(Msg::Spare(built)) => {
                    building = false;
                    match built {
                        Ok(instance) => {
                            spare = Some(instance);
                            retry_wait = SPARE_RETRY_FIRST;
                        }
                        Err((kind, detail)) => {
                            // A fresh instance that cannot start is the plugin's fault; retry
                            // later, backing off.
                            self.plugin.note_fault(&self.rt, kind, detail);
                            retry_at = Some(Instant::now() + retry_wait);
                            retry_wait = (retry_wait * 2).min(SPARE_RETRY_MAX);
                        }
                    }
                }
                None => retry_at = None,
            }
            if self.stopping.load(Ordering::Relaxed) {
                // Asks queued before the stop are answered (a swapped-out version answers
                // what it was asked), then the worker ends.
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Ask {
                        id,
                        event,
                        due,
                        full,
                        reply,
                    } = msg
                    {
                        let mut answer = self.verdict(&event, due, full);
                        answer.id = id;
                        let _ = reply.send(Inbox::Reply(answer));
                    }
                }
                break;
            }
            // A faulted instance is replaced by the spare now, outside any verdict window,
            // and a new spare is built on another thread.
            if !self.plugin.is_warm()
                && let Some(s) = spare.take()
            {
                self.plugin.adopt(s);
            }
            let may_build = retry_at.is_none_or(|at| Instant::now() >= at);
            if spare.is_none() && !building && may_build && self.plugin.quarantined().is_none() {
                retry_at = None;
                building = self.build_spare();
            }
            let mut shown = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            shown.stats = self.plugin.stats.clone();
            shown.quarantined = self.plugin.quarantined().map(str::to_owned);
        }
    }
}
