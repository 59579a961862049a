//! The AUTH lane: verdicts on AUTH events, apart from the bulk stream.
//!
//! Every detector that may be asked (it subscribes to some AUTH-able kind) gets a worker
//! thread here with instances of its own: one live, one spare built in the background.
//! Nothing the bulk stage does — a batch of huge events, a plugin that spins until its
//! per-call cap, a fault and the re-instantiation after it — touches these instances or
//! their fault accounting, and an AUTH event never waits behind a batch.
//!
//! For one event ([`AuthLane::decide`]) the lane asks every enforcing worker at once, each
//! with the time left until the answer is due: the verdict deadline clocked from the
//! event's *arrival*, less a safety margin ([`ANSWER_BY`], as Santa answers by 80% of
//! Endpoint Security's deadline). Host imports see the same deadline (a file too large to
//! hash in time is hashed in the background for next time and the plugin answers
//! `undecided`). A worker whose instance faulted swaps in its spare at once and builds a
//! new spare on another thread, so re-instantiation never runs inside a verdict window.
//! Shadow-mode workers are asked only after the answer is decided, and only recorded.
//!
//! A plugin this lane has quarantined (repeated faults on AUTH events, with back-off and
//! release as everywhere) is *skipped*: not asked, and not a reason for the policy
//! default. The stream cannot quarantine it through the bulk stage, and a quarantine does
//! not turn a fail-closed default into "deny every exec" for everyone.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::auth::{self, AuthDecision, AuthPolicy, AuthStats, DecidedBy};
use crate::bindings::wit;
use crate::plugin::{CallError, FaultKind, Instance, Kind, Mode, Plugin, PluginStats};
use crate::router::Route;
use crate::runtime::Runtime;

/// The share of the verdict deadline by which ward answers, so the answer reaches the
/// kernel before Endpoint Security's own deadline however late the clock reads.
pub const ANSWER_BY: f64 = 0.8;

/// Asks queued per worker; a worker still busy past that is answered for as `busy`.
const WORKER_QUEUE: usize = 4;

enum Msg {
    Ask {
        id: u64,
        event: Arc<wit::Event>,
        due: Instant,
        reply: SyncSender<Reply>,
    },
    Spare(Result<Instance, (FaultKind, String)>),
    Stop,
}

/// A worker asked: (its index, the ask's id, where its reply comes).
type Asked = (usize, u64, Receiver<Reply>);

struct Reply {
    id: u64,
    result: Result<wit::Verdict, Miss>,
}

/// Why a worker gave no verdict.
#[derive(Debug, Clone)]
enum Miss {
    /// Quarantined by this lane: skipped, not a reason for the default.
    Quarantined,
    /// Any other reason: the default applies unless someone denied in time.
    Missed(String),
}

struct Worker {
    name: String,
    mode: Mode,
    route: Route,
    tx: SyncSender<Msg>,
    stats: Arc<Mutex<PluginStats>>,
    thread: Option<JoinHandle<()>>,
}

/// Verdict workers and the policy they answer under.
pub struct AuthLane {
    policy: AuthPolicy,
    workers: Vec<Worker>,
    stats: AuthStats,
    next_id: u64,
}

/// True if a plugin with `route` can be asked about any AUTH event.
fn takes_auth(route: &Route) -> bool {
    match route.kinds() {
        None => true,
        Some(kinds) => kinds.iter().any(|k| auth::AUTH_KINDS.contains(&k.as_str())),
    }
}

impl AuthLane {
    /// A lane with a worker for each detector in `plugins` that takes AUTH events. Returns
    /// once every worker has its live instance (built in parallel); spares follow in the
    /// background.
    pub fn new(rt: &Arc<Runtime>, plugins: &[&Plugin], policy: AuthPolicy) -> Self {
        let mut workers = Vec::new();
        let mut ready = Vec::new();
        for p in plugins {
            if p.kind() != Kind::Detector || p.mode == Mode::Disabled {
                continue;
            }
            let route = p.route().clone();
            if !takes_auth(&route) {
                continue;
            }
            let (tx, rx) = mpsc::sync_channel::<Msg>(WORKER_QUEUE);
            let (ready_tx, ready_rx) = mpsc::sync_channel::<()>(1);
            let stats = Arc::new(Mutex::new(PluginStats::default()));
            let plugin = p.another_lane();
            let thread = std::thread::Builder::new()
                .name(format!("ward-auth-{}", p.name()))
                .spawn({
                    let rt = Arc::clone(rt);
                    let stats = Arc::clone(&stats);
                    let tx = tx.clone();
                    move || run_worker(rt, plugin, rx, tx, stats, ready_tx)
                });
            match thread {
                Ok(handle) => {
                    ready.push(ready_rx);
                    workers.push(Worker {
                        name: p.name().to_owned(),
                        mode: p.mode,
                        route,
                        tx,
                        stats,
                        thread: Some(handle),
                    });
                }
                Err(e) => {
                    tracing::error!(plugin = %p.name(), error = %e, "cannot start the AUTH worker; the plugin will not be asked for verdicts");
                }
            }
        }
        for r in ready {
            let _ = r.recv();
        }
        Self {
            policy,
            workers,
            stats: AuthStats::default(),
            next_id: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// AUTH counts so far.
    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    /// Each worker's counters: (plugin name, stats).
    pub fn plugin_stats(&self) -> Vec<(String, PluginStats)> {
        self.workers
            .iter()
            .map(|w| {
                let s = w
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                (w.name.clone(), s)
            })
            .collect()
    }

    /// When the answer to an event that arrived at `arrival` is due.
    pub fn answer_due(&self, arrival: Instant) -> Instant {
        arrival + self.policy.verdict_timeout.mul_f64(ANSWER_BY)
    }

    /// Sends `event` to the workers `chosen` with `due` as their deadline; returns the
    /// ones asked with their reply channels, and the ones that could not be asked.
    fn ask(
        &mut self,
        chosen: &[usize],
        event: &Arc<wit::Event>,
        due: Instant,
    ) -> (Vec<Asked>, Vec<(String, Miss)>) {
        let mut asked = Vec::new();
        let mut unasked = Vec::new();
        for &i in chosen {
            let Some(w) = self.workers.get(i) else {
                continue;
            };
            self.next_id += 1;
            let id = self.next_id;
            let (reply_tx, reply_rx) = mpsc::sync_channel(1);
            let msg = Msg::Ask {
                id,
                event: Arc::clone(event),
                due,
                reply: reply_tx,
            };
            match w.tx.try_send(msg) {
                Ok(()) => asked.push((i, id, reply_rx)),
                Err(TrySendError::Full(_)) => {
                    unasked.push((w.name.clone(), Miss::Missed("busy".into())));
                }
                Err(TrySendError::Disconnected(_)) => {
                    unasked.push((w.name.clone(), Miss::Missed("worker stopped".into())));
                }
            }
        }
        (asked, unasked)
    }

    /// Waits for the replies of `asked` until `due`.
    fn collect(
        &self,
        asked: Vec<Asked>,
        due: Instant,
    ) -> Vec<(String, Result<wit::Verdict, Miss>)> {
        asked
            .into_iter()
            .filter_map(|(i, id, rx)| {
                let name = self.workers.get(i)?.name.clone();
                let left = due.saturating_duration_since(Instant::now());
                let result = match rx.recv_timeout(left) {
                    Ok(reply) if reply.id == id => reply.result,
                    Ok(_) => Err(Miss::Missed("late".into())),
                    Err(RecvTimeoutError::Timeout) => Err(Miss::Missed("late".into())),
                    Err(RecvTimeoutError::Disconnected) => {
                        Err(Miss::Missed("worker stopped".into()))
                    }
                };
                Some((name, result))
            })
            .collect()
    }

    /// Answers one AUTH event that arrived at `arrival`: asks the enforcing workers that
    /// take it, concurrently, and decides by the answer's due time; then asks the shadow
    /// workers, whose denies are recorded, never answered.
    pub fn decide(&mut self, event: &wit::Event, arrival: Instant) -> AuthDecision {
        let due = self.answer_due(arrival);
        let mut event = event.clone();
        event.auth = Some(wit::AuthRequest {
            deadline_ms: u32::try_from(due.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(u32::MAX),
        });
        let event = Arc::new(event);
        let takes = |mode: Mode| -> Vec<usize> {
            self.workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.mode == mode && w.route.accepts(&event))
                .map(|(i, _)| i)
                .collect()
        };
        let (enforcing, shadow) = (takes(Mode::Enforce), takes(Mode::Shadow));

        let (asked, mut outcomes) = self.ask(&enforcing, &event, due);
        let mut replies: Vec<(String, Result<wit::Verdict, Miss>)> =
            outcomes.drain(..).map(|(n, m)| (n, Err(m))).collect();
        replies.extend(self.collect(asked, due));
        // Load order decides which deny is reported when several plugins deny.
        let order = |name: &str| self.workers.iter().position(|w| w.name == name);
        replies.sort_by_key(|(name, _)| order(name));
        let elapsed = arrival.elapsed();

        let mut denied = None;
        let mut missed = Vec::new();
        let mut skipped = Vec::new();
        for (name, result) in replies {
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
                Err(Miss::Missed(why)) => missed.push((name, why)),
            }
        }
        let deadline = self.policy.verdict_timeout;
        let (answer, decided_by) = match (denied, missed.is_empty()) {
            (Some((name, reason)), _) => (auth::Answer::Deny, DecidedBy::Plugin { name, reason }),
            (None, true) => (auth::Answer::Allow, DecidedBy::Plugins),
            (None, false) => (
                self.policy.default_for(&event.kind),
                DecidedBy::Default { missed },
            ),
        };

        // The answer is decided (a native source sends it now); shadow plugins are asked
        // only now, with the rest of the deadline, so they can never delay it.
        let mut shadow_denies = Vec::new();
        if !shadow.is_empty() {
            let shadow_due = arrival + deadline;
            let (asked, _) = self.ask(&shadow, &event, shadow_due);
            for (name, result) in self.collect(asked, shadow_due) {
                match result {
                    Ok(wit::Verdict::Deny(reason)) => shadow_denies.push((name, reason)),
                    Ok(_) => {}
                    Err(Miss::Quarantined | Miss::Missed(_)) => {
                        tracing::debug!(plugin = %name, "shadow plugin gave no verdict in time");
                    }
                }
            }
        }
        let decision = AuthDecision {
            answer,
            decided_by,
            shadow_denies,
            skipped,
            deadline,
            elapsed,
        };
        self.stats.record(&decision);
        decision
    }
}

impl Drop for AuthLane {
    fn drop(&mut self) {
        // Workers keep a sender of their own (for spare builders), so they are told to
        // stop rather than left to see their channel close.
        for w in &self.workers {
            let _ = w.tx.send(Msg::Stop);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Starts building a spare instance of `plugin` on its own thread; it arrives as
/// [`Msg::Spare`]. False if no thread could be started.
fn build_spare(rt: &Arc<Runtime>, plugin: &Plugin, tx: &SyncSender<Msg>) -> bool {
    let image = Arc::clone(plugin.image());
    let rt = Arc::clone(rt);
    let tx = tx.clone();
    std::thread::Builder::new()
        .name(format!("ward-spare-{}", plugin.name()))
        .spawn(move || {
            let built = image.instantiate(&rt);
            let _ = tx.send(Msg::Spare(built));
        })
        .is_ok()
}

/// One worker's verdict for `event`, due at `due`.
fn verdict(
    rt: &Runtime,
    plugin: &mut Plugin,
    event: &wit::Event,
    due: Instant,
) -> Result<wit::Verdict, Miss> {
    let now = Instant::now();
    if plugin.held_at(now) {
        return Err(Miss::Quarantined);
    }
    if now >= due {
        return Err(Miss::Missed("no time left".into()));
    }
    if !plugin.is_warm() {
        return Err(Miss::Missed("warming".into()));
    }
    // One epoch tick short of the due time, so an interrupted plugin's reply (a
    // timeout, which counts against it) still arrives before the lane stops waiting.
    let budget = (due - now)
        .saturating_sub(crate::engine::EPOCH_TICK)
        .max(crate::engine::EPOCH_TICK);
    let result = match plugin.authorize(rt, event, budget) {
        Ok(v) => Ok(v),
        Err(CallError::Quarantined) => Err(Miss::Quarantined),
        Err(CallError::Fault(f)) => Err(Miss::Missed(f.kind.as_str().into())),
        Err(e) => Err(Miss::Missed(e.to_string())),
    };
    match result {
        // An answer after the due time is one Endpoint Security never saw.
        Ok(_) if Instant::now() > due => Err(Miss::Missed("late".into())),
        other => other,
    }
}

fn run_worker(
    rt: Arc<Runtime>,
    mut plugin: Plugin,
    rx: Receiver<Msg>,
    tx: SyncSender<Msg>,
    stats: Arc<Mutex<PluginStats>>,
    ready: SyncSender<()>,
) {
    // The live instance first (the lane waits for it), then a spare in the background.
    plugin.warm(&rt);
    let _ = ready.send(());
    let mut spare: Option<Instance> = None;
    let mut building = build_spare(&rt, &plugin, &tx);
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Stop => break,
            Msg::Ask {
                id,
                event,
                due,
                reply,
            } => {
                plugin.release_if_due(Instant::now());
                let result = verdict(&rt, &mut plugin, &event, due);
                let _ = reply.send(Reply { id, result });
            }
            Msg::Spare(built) => {
                building = false;
                match built {
                    Ok(instance) => spare = Some(instance),
                    Err((kind, detail)) => {
                        tracing::warn!(plugin = %plugin.name(), fault = kind.as_str(), detail = %detail, "spare instance failed to start");
                    }
                }
            }
        }
        // A faulted instance is replaced by the spare now, outside any verdict window,
        // and a new spare is built on another thread.
        if !plugin.is_warm()
            && let Some(s) = spare.take()
        {
            plugin.adopt(s);
        }
        if spare.is_none() && !building && plugin.quarantined().is_none() {
            building = build_spare(&rt, &plugin, &tx);
        }
        *stats.lock().unwrap_or_else(PoisonError::into_inner) = plugin.stats.clone();
    }
}
