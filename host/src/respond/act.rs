//! The act thread: runs each playbook's steps in order (collect, remediate, notify, tag)
//! through the collector and remediator plugins and the [`Executor`], answers approvals,
//! denials and undos, and between runs does what is due (leases, approval timeouts,
//! scheduled sweeps, isolation refresh). Also where the stage is started from a config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::WardConfig;
use crate::config::response::ResponseMode;
use crate::forward::finding::FindingRecord;
use crate::respond::actions::{HostAction, Outcome, Status};
use crate::respond::evidence::Evidence;
use crate::respond::executor::{Effect, Executor, ExecutorOptions, Request};
use crate::respond::groups::{DeviceFacts, SmartGroups};
use crate::respond::incident::{Incidents, Suppression};
use crate::respond::invariants::Protected;
use crate::respond::playbook::{Playbooks, Step, fill};
use crate::respond::store::{NewAction, Store, StoreError};
use crate::respond::triage::{Triage, finding_summary};
use crate::respond::{Counters, Membership, Offer, TRIAGE_QUEUE};
use crate::sandbox::bindings::wit;
use crate::sandbox::plugin::{Kind, Plugin};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;

/// One playbook run.
pub struct Job {
    /// The playbooks it was matched against.
    pub playbooks: Arc<Playbooks>,
    /// Which one.
    pub index: usize,
    /// The finding.
    pub finding: FindingRecord,
    /// Its incident.
    pub incident: i64,
    /// When the finding was produced.
    pub at: Instant,
}

/// The answer to a control request.
pub type Reply = std::sync::mpsc::SyncSender<Result<serde_json::Value, String>>;

/// What the act thread is told.
pub enum ActMsg {
    /// Run a playbook.
    Run(Box<Job>),
    /// Approve a pending action.
    Approve(i64, String, Reply),
    /// Deny a pending action.
    Deny(i64, String, Reply),
    /// Undo a done action.
    Undo(i64, String, Reply),
    /// A collector or remediator loaded (or replaced).
    Upsert(Box<Plugin>),
    /// A collector or remediator taken out, by name.
    Remove(String),
    /// A collector's or remediator's mode changed.
    Mode(String, crate::sandbox::plugin::Mode),
    /// Triage is done: finish what is queued and stop.
    Stop,
}

/// What the agent gives the response stage.
pub struct ResponseOptions {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Carry actions out (`ward run`, `ward replay --execute`), else dry-run.
    pub execute: bool,
    /// The config in force.
    pub config: WardConfig,
    /// The runtime plugins run in.
    pub rt: Arc<Runtime>,
    /// The process table.
    pub processes: SharedProcessTable,
    /// Collectors and remediators.
    pub plugins: Vec<Plugin>,
    /// The agent's own files (never acted on).
    pub own: Vec<PathBuf>,
    /// Called after the prevent list changed.
    pub on_blocklist: Option<OnBlocklist>,
    /// Called with the smart groups after they changed.
    pub on_groups: Option<OnGroups>,
}

/// What the agent does when the prevent list changed.
pub type OnBlocklist = Box<dyn Fn() + Send>;
/// What the agent does when the smart groups changed.
pub type OnGroups = Box<dyn Fn(&BTreeSet<String>) + Send>;

/// The running response stage.
pub struct Response {
    /// The writer's handle.
    pub offer: Offer,
    /// Control requests to the act thread.
    pub act: SyncSender<ActMsg>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The smart groups the device is in.
    pub membership: Membership,
    /// The playbooks (replace to reload).
    pub playbooks: Arc<RwLock<Arc<Playbooks>>>,
    /// The state directory.
    pub state_dir: PathBuf,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Response {
    /// Waits for both threads after the writer has let go of every [`Offer`]; call
    /// after the detection run ended.
    pub fn finish(self) -> crate::respond::ResponseSummary {
        let Self {
            offer,
            act,
            counters,
            threads,
            ..
        } = self;
        drop(offer);
        drop(act);
        for t in threads {
            let _ = t.join();
        }
        counters.summary()
    }
}

fn severity_of(name: &str) -> wit::Severity {
    match name {
        "critical" => wit::Severity::Critical,
        "high" => wit::Severity::High,
        "medium" => wit::Severity::Medium,
        "low" => wit::Severity::Low,
        _ => wit::Severity::Informational,
    }
}

/// The trigger collectors and remediators are given.
fn trigger_of(f: &FindingRecord) -> Option<wit::Trigger> {
    let event = f.trigger.as_ref()?.event.as_ref().clone();
    Some(wit::Trigger {
        detector: f.plugin.clone(),
        finding: wit::Finding {
            rule: f.rule.clone(),
            severity: severity_of(f.severity),
            attack: f.attack.clone(),
            message: f.message.clone(),
            evidence: f
                .evidence
                .iter()
                .map(|(name, value)| wit::Evidence {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        },
        event,
    })
}

/// The act thread's state.
struct Act {
    executor: Executor,
    evidence: Evidence,
    rt: Arc<Runtime>,
    plugins: BTreeMap<String, Plugin>,
    counters: Arc<Counters>,
    membership: Membership,
    groups: SmartGroups,
    approval_timeout: u64,
    on_blocklist: Option<OnBlocklist>,
    on_groups: Option<OnGroups>,
    /// Bytes queued in the stage (a job's are given back when it is done).
    queued: crate::respond::QueuedBytes,
    /// Acts already decided per incident (kind, target, mode): one act is taken once.
    acted: BTreeMap<i64, BTreeSet<(String, String, &'static str)>>,
    /// When each collector last gathered evidence for each incident (stream ms).
    collected: BTreeMap<(i64, String), i64>,
    /// How long a collection stands for its incident before it is gathered again (ms).
    refresh_ms: i64,
}

/// Incidents whose acts are remembered for de-duplication, most recent first.
const MAX_ACTED_INCIDENTS: usize = 1024;
/// Acts remembered per incident.
const MAX_ACTED_PER_INCIDENT: usize = 4096;

impl Act {
    /// Whether `action` was already decided in `incident` (then it is skipped); notes it
    /// otherwise. Bounded: the oldest incidents are forgotten first.
    fn repeated(&mut self, incident: Option<i64>, action: &HostAction, mode: ResponseMode) -> bool {
        let Some(incident) = incident else {
            return false;
        };
        let key = (
            action.kind().to_owned(),
            serde_json::to_string(action).unwrap_or_default(),
            mode.as_str(),
        );
        let acts = self.acted.entry(incident).or_default();
        if acts.contains(&key) {
            self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if acts.len() < MAX_ACTED_PER_INCIDENT {
            acts.insert(key);
        }
        while self.acted.len() > MAX_ACTED_INCIDENTS {
            self.acted.pop_first();
        }
        false
    }

    /// Submits `req` unless the same act was decided in its incident already. An act the
    /// blast radius refused is not remembered: a later finding may try it again.
    fn submit_once(
        &mut self,
        req: Request,
    ) -> Option<Result<crate::respond::store::ActionRecord, StoreError>> {
        if self.repeated(req.incident, &req.action, req.mode) {
            return None;
        }
        let (incident, action, mode) = (req.incident, req.action.clone(), req.mode);
        let result = self.executor.submit(req);
        if let Ok(r) = &result
            && r.status == Status::Refused
            && r.reason.contains("blast radius")
            && let Some(i) = incident
            && let Some(acts) = self.acted.get_mut(&i)
        {
            acts.remove(&(
                action.kind().to_owned(),
                serde_json::to_string(&action).unwrap_or_default(),
                mode.as_str(),
            ));
        }
        Some(result)
    }

    fn run(mut self, rx: Receiver<ActMsg>) {
        let mut stopping = false;
        loop {
            let wait = match self.executor.next_due() {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due - crate::clock::now_ms()).unwrap_or(0))
                }
                _ => Duration::from_secs(60),
            }
            .min(Duration::from_secs(60));
            let msg = if stopping {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            match msg {
                Some(ActMsg::Run(job)) => {
                    self.job(&job);
                    self.queued.give(crate::respond::approx_bytes(&job.finding));
                }
                Some(ActMsg::Approve(id, who, reply)) => {
                    let result = self.executor.approve(id, &who);
                    let _ = reply.send(self.answer(result));
                }
                Some(ActMsg::Deny(id, who, reply)) => {
                    let result = self.executor.deny(id, &who);
                    let _ = reply.send(self.answer(result));
                }
                Some(ActMsg::Undo(id, who, reply)) => {
                    let result = self.executor.undo(id, &who, false);
                    let _ = reply.send(self.answer(result));
                }
                Some(ActMsg::Upsert(plugin)) => {
                    let _ = self.executor.store.audit(
                        "plugin-loaded",
                        serde_json::json!({"plugin": plugin.name(), "sha256": plugin.digest(), "kind": plugin.kind().as_str(), "origin": plugin.origin(), "stage": "response"}),
                    );
                    self.plugins.insert(plugin.name().to_owned(), *plugin);
                }
                Some(ActMsg::Remove(name)) if self.plugins.remove(&name).is_some() => {
                    let _ = self.executor.store.audit(
                        "plugin-unloaded",
                        serde_json::json!({"plugin": name, "stage": "response"}),
                    );
                }
                Some(ActMsg::Remove(_)) => {}
                Some(ActMsg::Mode(name, mode)) => {
                    if let Some(plugin) = self.plugins.get_mut(&name) {
                        plugin.mode = mode;
                        let _ = self.executor.store.audit(
                            "plugin-mode",
                            serde_json::json!({"plugin": name, "mode": mode, "stage": "response"}),
                        );
                    }
                }
                Some(ActMsg::Stop) => stopping = true,
                None => {}
            }
            if let Err(e) = self.executor.tick(crate::clock::now_ms()) {
                tracing::error!(error = %e, "response housekeeping failed");
            }
            self.follow_up();
        }
    }

    fn answer(
        &mut self,
        result: Result<crate::respond::store::ActionRecord, String>,
    ) -> Result<serde_json::Value, String> {
        self.follow_up();
        result.and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string()))
    }

    /// Acts on what the executor's actions changed.
    fn follow_up(&mut self) {
        for effect in self.executor.take_effects() {
            match effect {
                Effect::Blocklist => {
                    if let Some(f) = &self.on_blocklist {
                        f();
                    }
                }
                Effect::Tags => self.regroup(),
            }
        }
    }

    /// Recomputes the smart groups after the tags changed; mirrors joins and leaves to
    /// Jamf Pro where a group says so, and tells the agent (plugin modes follow).
    fn regroup(&mut self) {
        let tags = self
            .executor
            .store
            .tags(crate::clock::now_ms())
            .unwrap_or_default();
        let now = self.groups.membership(self.executor.facts(), &tags);
        let before = self
            .membership
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if now == before {
            return;
        }
        let _ = self.executor.store.audit(
            "smart-groups",
            serde_json::json!({"groups": now, "tags": tags}),
        );
        for (group, add) in now
            .difference(&before)
            .map(|g| (g, true))
            .chain(before.difference(&now).map(|g| (g, false)))
        {
            if let Some(group_id) = self.groups.jamf_mirror(group) {
                let req = Request::host(
                    HostAction::JamfStaticGroup { group_id, add },
                    ResponseMode::Enforce,
                    format!(
                        "smart group {group} {}",
                        if add { "joined" } else { "left" }
                    ),
                );
                if let Err(e) = self.executor.submit(req) {
                    tracing::error!(error = %e, "recording a smart-group mirror failed");
                }
            }
        }
        *self
            .membership
            .write()
            .unwrap_or_else(PoisonError::into_inner) = now.clone();
        if let Some(f) = &self.on_groups {
            f(&now);
        }
    }

    fn note_first(&self, first: &mut bool, at: Instant) {
        if std::mem::take(first) {
            let ns = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counters
                .first_action_ns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record_n(ns, 1);
        }
    }

    /// Whether `collector` gathered evidence for `incident` less than the refresh period
    /// before stream time `ms` (then it is not gathered again); notes the collection
    /// otherwise. Bounded like the acts.
    fn fresh(&mut self, incident: i64, collector: &str, ms: i64) -> bool {
        let key = (incident, collector.to_owned());
        if let Some(last) = self.collected.get(&key)
            && ms.saturating_sub(*last) < self.refresh_ms
            && ms >= *last
        {
            self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.collected.insert(key, ms);
        while self.collected.len() > MAX_ACTED_INCIDENTS * 8 {
            self.collected.pop_first();
        }
        false
    }

    /// Rebuilds the incident's evidence bundle from what its collections staged.
    fn seal(&mut self, incident: i64) {
        match self.evidence.seal(incident) {
            Ok((bundle, _)) => {
                if let Err(e) = self.executor.store.set_bundle(incident, &bundle) {
                    tracing::error!(error = %e, "recording the evidence bundle");
                }
            }
            Err(e) => tracing::error!(incident, error = %e, "writing the evidence bundle"),
        }
    }

    fn job(&mut self, job: &Job) {
        let Some(pb) = job.playbooks.list.get(job.index) else {
            return;
        };
        let f = &job.finding;
        let summary = finding_summary(f);
        let trigger = trigger_of(f);
        let offender = f.trigger.as_ref().map(|t| {
            let p = crate::detect::router::actor(&t.event);
            (p.token.pid, p.token.pidversion, p.token.euid)
        });
        let stream_ms =
            crate::clock::parse_rfc3339_ms(&f.time).unwrap_or_else(crate::clock::now_ms);
        let mut first = true;
        let mut staged = false;
        let timeout = pb.approval_timeout_secs.unwrap_or(self.approval_timeout);
        for (step_index, step) in pb.steps.iter().enumerate() {
            let base = Request {
                playbook: Some(pb.name.clone()),
                step: i64::try_from(step_index).ok(),
                incident: Some(job.incident),
                finding: Some(summary.clone()),
                offender,
                lease_secs: step.lease_secs,
                approval_timeout_secs: timeout,
                ..Request::host(HostAction::LockScreen, step.mode, "")
            };
            if let Step::Collect(name) = &step.step {
                if !self.fresh(job.incident, name, stream_ms) {
                    self.note_first(&mut first, job.at);
                    staged |= self.collect(name, trigger.as_ref(), &base, &pb.name, &f.rule);
                }
                continue;
            }
            // Evidence first: the bundle is sealed before anything changes.
            if std::mem::take(&mut staged) {
                self.seal(job.incident);
            }
            self.note_first(&mut first, job.at);
            let recorded = match &step.step {
                Step::Collect(_) => None,
                Step::Remediate(name) => {
                    self.remediate(name, trigger.as_ref(), &base);
                    None
                }
                Step::Notify(n) => {
                    let host = self.executor.facts().hostname.clone();
                    let action = HostAction::Notify {
                        title: fill(&n.title, f, Some(job.incident), &pb.name, &host),
                        body: fill(&n.body, f, Some(job.incident), &pb.name, &host),
                        to_user: n.to_user,
                    };
                    self.submit_once(Request {
                        action,
                        reason: format!("playbook {} step {step_index}: notify", pb.name),
                        ..base
                    })
                }
                Step::Tag(tag) => self.submit_once(Request {
                    action: HostAction::TagDevice { tag: tag.clone() },
                    reason: format!("playbook {} step {step_index}: tag", pb.name),
                    ..base
                }),
            };
            if let Some(recorded) = recorded {
                self.count(recorded);
            }
            self.follow_up();
        }
        if staged {
            self.seal(job.incident);
        }
    }

    fn count(&self, recorded: Result<crate::respond::store::ActionRecord, StoreError>) {
        match recorded {
            Ok(_) => {
                self.counters.actions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "recording an action failed"),
        }
    }

    /// Records a step that could not even be tried.
    fn record_failed(&mut self, base: &Request, action: HostAction, status: Status, why: String) {
        let recorded = self
            .executor
            .store
            .insert_action(
                &action,
                &NewAction {
                    status: Some(status),
                    playbook: base.playbook.clone(),
                    incident: base.incident,
                    step: base.step,
                    plugin: base.plugin.clone(),
                    mode: base.mode.as_str().into(),
                    reason: why,
                    finding: base.finding.clone(),
                    ..NewAction::default()
                },
            )
            .and_then(|id| {
                self.executor
                    .store
                    .action(id)?
                    .ok_or_else(|| StoreError::NotFound(format!("action {id}")))
            });
        self.count(recorded);
    }

    /// Runs collector `name` and stages what it returns; true if anything was staged.
    fn collect(
        &mut self,
        name: &str,
        trigger: Option<&wit::Trigger>,
        base: &Request,
        playbook: &str,
        rule: &str,
    ) -> bool {
        let action = HostAction::Collect {
            plugin: name.to_owned(),
        };
        let base = Request {
            plugin: Some(name.to_owned()),
            ..base.clone()
        };
        let Some(trigger) = trigger else {
            self.record_failed(
                &base,
                action,
                Status::Failed,
                "no triggering event to collect about (an agent notice)".into(),
            );
            return false;
        };
        let Some(plugin) = self.plugins.get_mut(name) else {
            self.record_failed(
                &base,
                action,
                Status::Failed,
                format!("collector {name} is not loaded"),
            );
            return false;
        };
        if plugin.mode == crate::sandbox::plugin::Mode::Disabled {
            return false;
        }
        let started = Instant::now();
        let result = plugin.collect(&self.rt, trigger);
        let incident = base.incident.unwrap_or(0);
        let added =
            result.map(|artifacts| self.evidence.add(incident, name, playbook, rule, artifacts));
        let elapsed = started.elapsed();
        self.counters
            .collect_ns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_n(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), 1);
        let staged = matches!(&added, Ok(Ok(a)) if a.files > 0);
        let (status, outcome) = match added {
            Ok(added) => match added {
                Ok(added) => (
                    Status::Done,
                    Outcome::new(format!(
                        "{} artifact(s), {} bytes into {}",
                        added.files,
                        added.bytes,
                        added.bundle.display()
                    ))
                    .with("bundle", added.bundle.display().to_string())
                    .with("files", added.files)
                    .with("bytes", added.bytes)
                    .with("skipped", added.skipped)
                    .with(
                        "elapsed_ms",
                        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    ),
                ),
                Err(e) => (
                    Status::Failed,
                    Outcome::new(format!("writing the bundle: {e}")),
                ),
            },
            Err(e) => (
                Status::Failed,
                Outcome::new(format!("collector {name}: {e}")),
            ),
        };
        let recorded = self
            .executor
            .store
            .insert_action(
                &action,
                &NewAction {
                    status: Some(status),
                    playbook: base.playbook.clone(),
                    incident: base.incident,
                    step: base.step,
                    plugin: Some(name.to_owned()),
                    mode: base.mode.as_str().into(),
                    reason: format!("evidence before any change ({rule})"),
                    finding: base.finding.clone(),
                    outcome: Some(outcome.to_json()),
                    ..NewAction::default()
                },
            )
            .and_then(|id| {
                self.executor
                    .store
                    .action(id)?
                    .ok_or_else(|| StoreError::NotFound(format!("action {id}")))
            });
        self.count(recorded);
        staged
    }

    fn remediate(&mut self, name: &str, trigger: Option<&wit::Trigger>, base: &Request) {
        let base = Request {
            plugin: Some(name.to_owned()),
            ..base.clone()
        };
        let placeholder = HostAction::Collect {
            plugin: name.to_owned(),
        };
        let Some(trigger) = trigger else {
            return self.record_failed(
                &base,
                placeholder,
                Status::Failed,
                "no triggering event to plan for (an agent notice)".into(),
            );
        };
        let Some(plugin) = self.plugins.get_mut(name) else {
            return self.record_failed(
                &base,
                placeholder,
                Status::Failed,
                format!("remediator {name} is not loaded"),
            );
        };
        // The remediator's own mode (the admin's, or its smart group's) can only make the
        // step gentler: shadow records, disabled skips.
        let base = match plugin.mode {
            crate::sandbox::plugin::Mode::Disabled => return,
            crate::sandbox::plugin::Mode::Shadow => Request {
                mode: ResponseMode::Shadow,
                ..base
            },
            crate::sandbox::plugin::Mode::Enforce => base,
        };
        let granted = plugin.info().capabilities.clone();
        let planned = match plugin.plan(&self.rt, trigger) {
            Ok(p) => p,
            Err(e) => {
                return self.record_failed(
                    &base,
                    placeholder,
                    Status::Failed,
                    format!("remediator {name}: {e}"),
                );
            }
        };
        for p in planned {
            let recorded = match HostAction::from_planned(&p.action) {
                Ok(action) => {
                    match self.submit_once(Request {
                        action,
                        granted: Some(granted.clone()),
                        reason: crate::respond::actions::cut(&p.reason, 1024).to_owned(),
                        ..base.clone()
                    }) {
                        Some(r) => r,
                        None => continue,
                    }
                }
                Err(why) => {
                    self.record_failed(
                        &base,
                        placeholder.clone(),
                        Status::Refused,
                        format!("refused: {name} planned an action ward cannot take: {why}"),
                    );
                    continue;
                }
            };
            self.count(recorded);
            self.follow_up();
        }
    }
}

/// Starts the response stage: opens the store (twice: one connection per thread),
/// builds the executor, smart groups and incidents, and the two threads.
pub fn start(options: ResponseOptions) -> anyhow::Result<Response> {
    let config = &options.config;
    let store = Store::open(&options.state_dir)?;
    let triage_store = Store::open(&options.state_dir)?;
    let facts = DeviceFacts::read(&config.device);
    let groups = SmartGroups::build(&config.smart_groups);
    let tags = store.tags(crate::clock::now_ms())?;
    let membership: Membership = Arc::new(RwLock::new(groups.membership(&facts, &tags)));
    let prevent = config.builtin_options("prevent-list");
    let executor = Executor::new(
        store,
        ExecutorOptions {
            execute: options.execute,
            config: config.response.clone(),
            protected: Protected::new(&config.response.protect, options.own.clone()),
            processes: Arc::clone(&options.processes),
            hash_cache: Arc::clone(&options.rt.hash_cache),
            facts,
            sha256_blocks: prevent.grants.iter().any(|g| g == "file-hash"),
        },
    )?;
    let evidence = Evidence::open(&options.state_dir).map_err(anyhow::Error::msg)?;
    let counters = Arc::new(Counters::default());
    let queued = crate::respond::QueuedBytes::default();
    let playbooks = Arc::new(RwLock::new(Arc::new(Playbooks::build(&config.playbooks))));
    let (offer_tx, offer_rx) = std::sync::mpsc::sync_channel(TRIAGE_QUEUE);
    let (act_tx, act_rx) = std::sync::mpsc::sync_channel(config.response.queue);
    let plugins = options
        .plugins
        .into_iter()
        .filter(|p| p.kind() != Kind::Detector)
        .map(|p| (p.name().to_owned(), p))
        .collect();
    let act = Act {
        executor,
        evidence,
        rt: Arc::clone(&options.rt),
        plugins,
        counters: Arc::clone(&counters),
        membership: Arc::clone(&membership),
        groups,
        approval_timeout: config.response.approval_timeout_secs,
        on_blocklist: options.on_blocklist,
        on_groups: options.on_groups,
        queued: queued.clone(),
        acted: BTreeMap::new(),
        collected: BTreeMap::new(),
        refresh_ms: i64::try_from(config.response.evidence_refresh_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    };
    let triage = Triage {
        store: triage_store,
        playbooks: Arc::clone(&playbooks),
        membership: Arc::clone(&membership),
        processes: Arc::clone(&options.processes),
        incidents: Incidents::new(
            config.response.incident_window_secs,
            config.response.incident_boundaries.clone(),
        ),
        suppression: Suppression::default(),
        counters: Arc::clone(&counters),
        queued: queued.clone(),
    };
    let act_for_triage = act_tx.clone();
    let threads = vec![
        std::thread::Builder::new()
            .name("ward-respond-act".into())
            .spawn(move || act.run(act_rx))?,
        std::thread::Builder::new()
            .name("ward-respond-triage".into())
            .spawn(move || triage.run(offer_rx, act_for_triage))?,
    ];
    Ok(Response {
        offer: Offer {
            playbooks: Arc::clone(&playbooks),
            tx: offer_tx,
            counters: Arc::clone(&counters),
            queued,
        },
        act: act_tx,
        counters,
        membership,
        playbooks,
        state_dir: options.state_dir,
        threads,
    })
}
