//! The composition root: builds the runtime, the process table, the registry's plugins
//! and the detection pipeline from a config, and opens the configured source. `ward
//! replay` starts here; `ward run` starts here and stays: [`LiveAgent`] is the running
//! agent the control socket, the `plugin_dir` watcher and SIGHUP change, through the same
//! plan-and-load path ([`crate::registry::plan`], [`crate::registry::load_planned`]) as
//! startup. [`response`] wires the response stage (playbooks, the action executor, the
//! state store) to both.

pub mod response;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::config::{SourceConfig, WardConfig};
use crate::detect::pipeline::Pipeline;
use crate::detect::run::{LiveView, StageMsg, StageSender};
use crate::detect::swap::Change;
use crate::forward::finding::FindingRecord;
use crate::ingest::eslogger::{EsloggerConfig, EsloggerReader};
use crate::ingest::follow::FollowReader;
use crate::operate::control::{Controller, Request};
use crate::registry::load::{LoadError, LoadOptions, PluginSource};
use crate::registry::{Planned, load_planned, plan, plan_component};
use crate::sandbox::plugin::{Kind, Mode, Plugin};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;

/// Quiet time after the last file event before the watcher acts (editors and `cp` write
/// in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What startup built: the pipeline, what it runs and what it refused.
pub struct Startup {
    /// The runtime every plugin is compiled and run by.
    pub rt: Arc<Runtime>,
    /// The process table the reader keeps and plugins read.
    pub processes: SharedProcessTable,
    /// The detection pipeline.
    pub pipeline: Pipeline,
    /// Each plugin loaded, by origin: its name and fingerprint.
    pub running: BTreeMap<String, Running>,
    /// What was refused, and whether the admin named it explicitly.
    pub refused: Vec<(LoadError, bool)>,
    /// The one-line listing of each plugin loaded (version, mode, grants, full sha-256).
    pub listing: Vec<String>,
    /// The collectors and remediators loaded, for the response stage.
    pub responders: Vec<Plugin>,
}

impl Startup {
    /// Refusals of plugins the admin named explicitly: fatal for `ward run`, an exit
    /// status for `ward replay`.
    pub fn named_refused(&self) -> usize {
        self.refused.iter().filter(|(_, named)| *named).count()
    }

    /// A `plugin-refused` record for each refusal, for the findings stream.
    pub fn refused_records(&self) -> Vec<FindingRecord> {
        self.refused
            .iter()
            .map(|(e, _)| FindingRecord::plugin_refused(e.origin(), &e.to_string()))
            .collect()
    }
}

/// A plugin the agent runs, as the registry loaded it.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its name (`describe()`).
    pub name: String,
    /// Bytes and options it was loaded with ([`Planned::fingerprint`]).
    pub fingerprint: String,
    /// Its world.
    pub kind: Kind,
}

/// One line about a loaded plugin: name, version, kind, mode, grants, full sha-256, origin.
pub fn listing_line(p: &Plugin) -> String {
    let grants = if p.info().capabilities.is_empty() {
        "none".to_owned()
    } else {
        p.info().capabilities.join(",")
    };
    format!(
        "{} {} {} {} grants={} sha256={} from {}",
        p.name(),
        p.info().version,
        p.kind(),
        mode_name(p.mode),
        grants,
        p.digest(),
        p.origin()
    )
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
        Mode::Disabled => "disabled",
    }
}

/// Builds the runtime and pipeline from `config`, plus `extra` components (named by the
/// admin on the command line, unpinned). Fails when no detector would run.
pub fn start(config: &WardConfig, extra: &[PathBuf]) -> anyhow::Result<Startup> {
    let rt = Arc::new(Runtime::new(
        config.limits(),
        config.cache_dir().as_deref(),
    )?);
    let processes: SharedProcessTable = Arc::new(RwLock::new(
        ward_event::ProcessTable::new(config.agent.process_table_capacity)
            .with_byte_budget(config.agent.process_table_bytes),
    ));
    let (mut planned, mut refused) = plan(config);
    for path in extra {
        match PluginSource::from_file(path) {
            Ok(source) => planned.push(Planned {
                source,
                options: LoadOptions::default(),
                named: true,
                dir: false,
                selftest: None,
            }),
            Err(e) => refused.push((e, true)),
        }
    }
    let mut plugins: Vec<Plugin> = Vec::new();
    let mut running = BTreeMap::new();
    for p in &planned {
        match load_planned(&rt, config, p, &processes) {
            Ok(plugin) if plugins.iter().any(|q| q.name() == plugin.name()) => {
                // Two plugins with one name would make findings ambiguous: keep the first.
                tracing::error!(plugin = %plugin.name(), origin = %plugin.origin(), "duplicate plugin name; ignoring this copy");
            }
            Ok(plugin) => {
                running.insert(
                    p.source.origin.clone(),
                    Running {
                        name: plugin.name().to_owned(),
                        fingerprint: p.fingerprint(),
                        kind: plugin.kind(),
                    },
                );
                plugins.push(plugin);
            }
            Err(e) => refused.push((e, p.named)),
        }
    }
    for (e, _) in &refused {
        tracing::error!(error = %e, "plugin refused");
    }
    // An agent that detects nothing must not look like one that found nothing.
    if !plugins.iter().any(|p| p.kind() == Kind::Detector) {
        for (e, _) in &refused {
            eprintln!("ward: {e}");
        }
        if refused.is_empty() {
            bail!("no detector to run: the default content is off and no detector is configured");
        }
        bail!(
            "no detector to run: every one was refused ({} refused, see above)",
            refused.len()
        );
    }
    let listing = plugins.iter().map(listing_line).collect();
    // A playbook naming a plugin that is not loaded (or of the wrong world) is refused.
    let loaded = plugins
        .iter()
        .map(|p| (p.name().to_owned(), p.kind()))
        .collect();
    config.check_playbook_plugins(&loaded)?;
    let (plugins, responders): (Vec<Plugin>, Vec<Plugin>) = plugins
        .into_iter()
        .partition(|p| p.kind() == Kind::Detector);
    let pipeline = Pipeline::new(
        Arc::clone(&rt),
        plugins,
        Arc::clone(&processes),
        config.pipeline(),
    );
    Ok(Startup {
        rt,
        processes,
        pipeline,
        running,
        refused,
        listing,
        responders,
    })
}

/// The stream at `input` (`-` for standard input).
pub fn open_input(input: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if input.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        bail!("{} is a directory, not an eslogger stream", input.display());
    }
    Ok(Box::new(file))
}

/// Opens the configured source; `stop` ends the never-ending ones (follow, eslogger).
pub fn open_source(
    config: &WardConfig,
    pipeline: &Pipeline,
    stop: Arc<AtomicBool>,
    outbox: &crate::forward::outbox::Outbox,
) -> anyhow::Result<(Box<dyn Read + Send>, Option<SourcePlace>)> {
    Ok(match &config.source {
        Some(SourceConfig::File { path }) => (open_input(&config.resolve(path))?, None),
        Some(SourceConfig::Stdin) | None => (open_input(Path::new("-"))?, None),
        Some(SourceConfig::Follow { path, from_start }) => {
            let path = config.resolve(path);
            // Resumed where the last run's committed findings end, whatever from_start says.
            let name = format!(
                "follow:{}",
                std::path::absolute(&path).unwrap_or(path.clone()).display()
            );
            let checkpoint = outbox.checkpoint(&name)?;
            if let Some(at) = checkpoint {
                eprintln!(
                    "ward run: resuming {} at byte {} (its checkpoint; {} bytes before it read again to warm the detectors)",
                    path.display(),
                    at.offset,
                    at.offset.min(crate::ingest::follow::WARM_BYTES)
                );
            }
            let reader = FollowReader::resume(&path, checkpoint, *from_start, stop)
                .with_context(|| format!("cannot follow {}", path.display()))?;
            let locator = reader.locator();
            (Box::new(reader), Some((name, locator)))
        }
        Some(SourceConfig::Eslogger { program, kinds }) => {
            let kinds = match kinds {
                Some(k) => k.clone(),
                None => pipeline.subscribed_kinds().unwrap_or_else(|| {
                    ward_event::model::TYPED_KINDS
                        .iter()
                        .map(|(k, _)| (*k).to_owned())
                        .collect()
                }),
            };
            let program = program.clone().unwrap_or_else(|| PathBuf::from("eslogger"));
            (
                Box::new(EsloggerReader::start(
                    EsloggerConfig { program, kinds },
                    stop,
                )?),
                None,
            )
        }
    })
}

/// A source's checkpoint name and what maps its stream positions to places in files.
pub type SourcePlace = (String, Arc<crate::ingest::follow::Locator>);

/// What the live agent remembers between changes.
struct AgentState {
    /// The config in force (the last one that loaded).
    config: WardConfig,
    /// Each plugin running, by origin.
    running: BTreeMap<String, Running>,
    /// Components loaded with `ward ctl load` (kept across reloads, until unloaded).
    /// Components loaded with `ward ctl load`, with the sha-256 they had then: a reload
    /// keeps exactly those bytes (a file changed since is refused, not loaded).
    ctl_loaded: Vec<(PathBuf, String)>,
    /// Plugins taken out with `ward ctl unload`, by origin, with the fingerprint they had:
    /// not brought back by a `plugin_dir` change unless their bytes or options change.
    unloaded: BTreeMap<String, String>,
    /// The last refusal said of each origin (fingerprint and reason): the same refusal is
    /// not repeated on every file event.
    refusals: BTreeMap<String, String>,
}

/// The running agent: what `ward ctl`, the `plugin_dir` watcher and SIGHUP act on.
pub struct LiveAgent {
    config_path: PathBuf,
    rt: Arc<Runtime>,
    processes: SharedProcessTable,
    stage: StageSender,
    view: LiveView,
    started: Instant,
    plugin_dir: Option<PathBuf>,
    /// Config reloads carried out, and refused.
    reloads: AtomicU64,
    reloads_refused: AtomicU64,
    state: Mutex<AgentState>,
    /// The response stage, when one runs.
    response: Option<ResponseLink>,
    /// Where plugin changes are audited (the state store).
    audit_store: Mutex<Option<crate::respond::store::Store>>,
}

/// What the live agent holds of the response stage.
pub struct ResponseLink {
    /// Its act thread.
    pub act: std::sync::mpsc::SyncSender<crate::respond::ActMsg>,
    /// Its playbooks (replaced on a reload).
    pub playbooks: Arc<RwLock<Arc<crate::respond::playbook::Playbooks>>>,
    /// Its state directory.
    pub state_dir: PathBuf,
}

/// Settings that only a restart changes: a reload that changes one says so.
fn restart_only(config: &WardConfig) -> [(&'static str, String); 7] {
    [
        ("[limits]", format!("{:?}", config.limits)),
        ("[source]", format!("{:?}", config.source)),
        ("[auth]", format!("{:?}", config.auth)),
        (
            "agent batch and table sizes",
            format!(
                "{} {} {} {} {}",
                config.agent.batch_size,
                config.agent.batch_bytes,
                config.agent.max_line_bytes,
                config.agent.process_table_capacity,
                config.agent.process_table_bytes
            ),
        ),
        (
            "agent.control_socket / metrics_addr / state_dir",
            format!(
                "{:?} {:?} {:?}",
                config.agent.control_socket, config.agent.metrics_addr, config.agent.state_dir
            ),
        ),
        ("agent.cache_dir", format!("{:?}", config.agent.cache_dir)),
        (
            "[response], [device] and [[smart_groups]]",
            format!(
                "{:?} {:?} {:?}",
                config.response, config.device, config.smart_groups
            ),
        ),
    ]
}

impl LiveAgent {
    /// The agent for a started pipeline whose stage listens on `stage`.
    pub fn new(
        config_path: &Path,
        config: WardConfig,
        startup: &Startup,
        stage: StageSender,
        view: LiveView,
        response: Option<ResponseLink>,
    ) -> Self {
        let audit_store = response
            .as_ref()
            .and_then(|r| crate::respond::store::Store::open(&r.state_dir).ok());
        Self {
            response,
            audit_store: Mutex::new(audit_store),
            config_path: config_path.to_path_buf(),
            rt: Arc::clone(&startup.rt),
            processes: Arc::clone(&startup.processes),
            stage,
            view,
            started: Instant::now(),
            plugin_dir: config.agent.plugin_dir.as_ref().map(|d| config.resolve(d)),
            reloads: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            state: Mutex::new(AgentState {
                config,
                running: startup.running.clone(),
                ctl_loaded: Vec::new(),
                unloaded: BTreeMap::new(),
                refusals: BTreeMap::new(),
            }),
        }
    }

    /// What the running agent shows of itself.
    pub fn view(&self) -> &LiveView {
        &self.view
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `change` to the detection stage and waits for its answer. Blocking: call it
    /// from a thread of its own, never from an async task.
    fn change(&self, change: Change) -> Result<String, String> {
        let (ack, answer) = std::sync::mpsc::sync_channel(1);
        self.stage
            .blocking_send(StageMsg::Change(change, Some(ack)))
            .map_err(|_| "the agent is shutting down".to_owned())?;
        // No timeout: a change given up on would still be applied later, and the agent's
        // record of what runs would no longer match the stage. The stage takes changes
        // between events, and every call it makes is time-capped.
        answer
            .recv()
            .unwrap_or_else(|_| Err("the agent is shutting down".to_owned()))
    }

    /// Puts the agent's own records on the findings stream.
    fn notice(&self, records: Vec<FindingRecord>) {
        if !records.is_empty() {
            let _ = self.stage.blocking_send(StageMsg::Records(records));
        }
    }

    /// Says a refusal once per (origin, bytes, reason): logged, and a `plugin-refused`
    /// record on the findings stream.
    fn refuse(
        &self,
        state: &mut AgentState,
        origin: &str,
        fingerprint: &str,
        reason: &str,
    ) -> bool {
        let key = format!("{fingerprint} {reason}");
        if state.refusals.get(origin) == Some(&key) {
            return false;
        }
        state.refusals.insert(origin.to_owned(), key);
        tracing::error!(origin = %origin, reason = %reason, "plugin refused; the running version (if any) is kept");
        self.audit(
            "plugin-refused",
            serde_json::json!({"origin": origin, "reason": reason}),
        );
        self.notice(vec![FindingRecord::plugin_refused(origin, reason)]);
        true
    }

    /// Re-reads the config file and applies it: the same plan-and-load path as startup.
    /// An invalid config is refused with its reason, and the running one is kept.
    pub fn reload(&self) -> Result<String, String> {
        // Read under the lock: two reloads at once apply the newer file last.
        let mut state = self.lock();
        let config = match WardConfig::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                self.reloads_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "config reload refused; the running config is kept");
                return Err(format!("{e}; the running config is kept"));
            }
        };
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let mut said = Vec::new();
        for ((what, old), (_, new)) in restart_only(&state.config)
            .iter()
            .zip(restart_only(&config).iter())
        {
            if old != new {
                said.push(format!("{what} changed: takes effect at the next restart"));
            }
        }
        let mut config = config;
        if let Some(link) = &self.response {
            config.blocks = response::stored_blocks(&link.state_dir);
        }
        state.config = config;
        state.unloaded.clear();
        state.refusals.clear();
        said.extend(self.reconcile(&mut state));
        if let Some(link) = &self.response {
            let loaded = state
                .running
                .values()
                .map(|r| (r.name.clone(), r.kind))
                .collect();
            match state.config.check_playbook_plugins(&loaded) {
                Ok(()) => {
                    *link
                        .playbooks
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Arc::new(
                        crate::respond::playbook::Playbooks::build(&state.config.playbooks),
                    );
                }
                Err(e) => {
                    self.reloads_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("{e}; the running playbooks are kept"));
                }
            }
        }
        Ok(summarise(said))
    }

    /// Applies the config in force again after `plugin_dir` changed.
    pub fn rescan(&self) -> String {
        let mut state = self.lock();
        summarise(self.reconcile(&mut state))
    }

    /// Brings the running plugins to what the config (plus `ward ctl load`s) asks for:
    /// loads what is new or changed (bytes or options), swaps it in, takes out what is
    /// gone. A plugin that fails to load keeps its running version. Returns a line per
    /// thing done or refused.
    fn reconcile(&self, state: &mut AgentState) -> Vec<String> {
        let config = state.config.clone();
        let (mut planned, refused) = plan(&config);
        let mut said = Vec::new();
        let mut refused_origins = Vec::new();
        for (e, _) in refused {
            refused_origins.push(e.origin().to_owned());
            if self.refuse(state, e.origin(), "", &e.to_string()) {
                said.push(format!("refused: {e}"));
            }
        }
        for (path, digest) in &state.ctl_loaded {
            let origin = path.display().to_string();
            if planned.iter().any(|p| p.source.origin == origin) {
                continue;
            }
            match plan_component(&config, path) {
                Ok(mut p) => {
                    p.options.pin.get_or_insert_with(|| digest.clone());
                    planned.push(p);
                }
                Err(e) => refused_origins.push(e.origin().to_owned()),
            }
        }
        let mut wanted = std::collections::BTreeSet::new();
        for p in &planned {
            let origin = p.source.origin.clone();
            wanted.insert(origin.clone());
            let fingerprint = p.fingerprint();
            if state
                .running
                .get(&origin)
                .is_some_and(|r| r.fingerprint == fingerprint)
                || state.unloaded.get(&origin) == Some(&fingerprint)
            {
                continue;
            }
            state.unloaded.remove(&origin);
            match self.put_in(state, p) {
                Ok(line) => {
                    state.refusals.remove(&origin);
                    said.push(line);
                }
                Err(reason) => {
                    if self.refuse(state, &origin, &fingerprint, &reason) {
                        said.push(format!("refused {origin}: {reason}"));
                    }
                }
            }
        }
        // Gone from the plan (file removed, entry deleted or disabled): taken out. One
        // whose file (or plugin_dir) can no longer be read or trusted is kept until it can
        // be judged again.
        let gone: Vec<(String, Running)> = state
            .running
            .iter()
            .filter(|(o, _)| {
                !wanted.contains(*o)
                    && !refused_origins
                        .iter()
                        .any(|r| *o == r || Path::new(o.as_str()).starts_with(r))
            })
            .map(|(o, r)| (o.clone(), r.clone()))
            .collect();
        for (origin, running) in gone {
            let name = running.name.clone();
            state.running.remove(&origin);
            match self.take_out(&running) {
                Ok(line) => said.push(line),
                Err(e) => tracing::info!(plugin = %name, error = %e, "already out of the stage"),
            }
        }
        said
    }

    /// Loads `p` (off the event path) and swaps it into the stage.
    fn put_in(&self, state: &mut AgentState, p: &Planned) -> Result<String, String> {
        let origin = &p.source.origin;
        let plugin =
            load_planned(&self.rt, &state.config, p, &self.processes).map_err(|e| e.to_string())?;
        let name = plugin.name().to_owned();
        if let Some((other, _)) = state
            .running
            .iter()
            .find(|(o, r)| r.name == name && *o != origin)
        {
            return Err(format!("its name `{name}` is taken by {other}"));
        }
        let running = Running {
            name,
            fingerprint: p.fingerprint(),
            kind: plugin.kind(),
        };
        let swapped = state.running.contains_key(origin);
        let audit = serde_json::json!({
            "plugin": running.name, "sha256": plugin.digest(), "kind": plugin.kind().as_str(),
            "origin": origin, "version": plugin.info().version,
        });
        let line = if plugin.kind() == Kind::Detector {
            self.change(Change::Upsert(Box::new(plugin)))?
        } else {
            let Some(link) = &self.response else {
                return Err("no response stage to run it".into());
            };
            let name = running.name.clone();
            link.act
                .send(crate::respond::ActMsg::Upsert(Box::new(plugin)))
                .map_err(|_| "the response stage has stopped".to_owned())?;
            format!("{name} swapped into the response stage")
        };
        self.audit(
            if swapped {
                "plugin-swapped"
            } else {
                "plugin-loaded"
            },
            audit,
        );
        // New bytes at the same place may describe another name: the old one goes.
        let renamed = state.running.insert(origin.clone(), running).filter(|old| {
            state
                .running
                .get(origin)
                .is_some_and(|r| r.name != old.name)
        });
        if let Some(old) = renamed {
            let gone = self.take_out(&old);
            tracing::info!(origin = %origin, old = %old.name, result = ?gone, "renamed: the old name is taken out");
        }
        Ok(line)
    }

    /// Takes a running plugin out of whichever stage runs it.
    fn take_out(&self, running: &Running) -> Result<String, String> {
        let said = if running.kind == Kind::Detector {
            self.change(Change::Remove(running.name.clone()))
        } else {
            match &self.response {
                Some(link) => link
                    .act
                    .send(crate::respond::ActMsg::Remove(running.name.clone()))
                    .map(|()| format!("{} taken out of the response stage", running.name))
                    .map_err(|_| "the response stage has stopped".to_owned()),
                None => Ok(format!("{} was not running", running.name)),
            }
        };
        if said.is_ok() {
            self.audit(
                "plugin-unloaded",
                serde_json::json!({"plugin": running.name, "kind": running.kind.as_str()}),
            );
        }
        said
    }

    /// Appends an audit record (plugin loads, unloads, swaps, refusals).
    pub(crate) fn audit(&self, kind: &str, record: serde_json::Value) {
        let mut store = self
            .audit_store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = store.as_mut()
            && let Err(e) = store.audit(kind, record)
        {
            tracing::error!(error = %e, "writing the audit log");
        }
    }

    /// Asks the response stage to approve, deny or undo action `id`.
    fn act_on(
        &self,
        id: i64,
        make: fn(i64, String, crate::respond::act::Reply) -> crate::respond::ActMsg,
    ) -> Result<serde_json::Value, String> {
        let link = self
            .response
            .as_ref()
            .ok_or("this agent runs no response stage")?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        link.act
            .send(make(id, "ward ctl".into(), reply))
            .map_err(|_| "the response stage has stopped".to_owned())?;
        answer
            .recv()
            .unwrap_or_else(|_| Err("the response stage has stopped".into()))
    }

    /// The prevent-list entries ward added changed: reload the prevent list with them.
    pub fn refresh_blocks(&self) -> String {
        let mut state = self.lock();
        if let Some(link) = &self.response {
            state.config.blocks = response::stored_blocks(&link.state_dir);
        }
        summarise(self.reconcile(&mut state))
    }

    /// Sets a plugin's mode in whichever stage runs it.
    fn set_mode(&self, name: &str, mode: Mode) -> Result<String, String> {
        let responder = self
            .lock()
            .running
            .values()
            .any(|r| r.name == name && r.kind != Kind::Detector);
        match (&self.response, responder) {
            (Some(link), true) => {
                link.act
                    .send(crate::respond::ActMsg::Mode(name.to_owned(), mode))
                    .map_err(|_| "the response stage has stopped".to_owned())?;
                self.audit(
                    "plugin-mode",
                    serde_json::json!({"plugin": name, "mode": mode}),
                );
                Ok(format!("{name} is now {}", mode_name(mode)))
            }
            _ => self.change(Change::Mode(name.to_owned(), mode)),
        }
    }

    /// The smart groups changed: plugins with `group_modes` take the mode for them.
    pub fn apply_groups(&self, groups: &std::collections::BTreeSet<String>) -> String {
        let state = self.lock();
        let modes = response::group_modes(&state.config, groups, &state.running);
        drop(state);
        let mut said = Vec::new();
        for (name, mode) in modes {
            match self.set_mode(&name, mode) {
                Ok(line) => said.push(line),
                Err(e) => said.push(format!("{name}: {e}")),
            }
        }
        summarise(said)
    }

    /// `ward ctl load PATH`: loads (or swaps in) the component at `path`, settings from its
    /// `[[plugins]]` entry by name.
    pub fn load_path(&self, path: &Path) -> Result<String, String> {
        let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut state = self.lock();
        let p = plan_component(&state.config, &path).map_err(|e| e.to_string())?;
        let origin = p.source.origin.clone();
        state.unloaded.remove(&origin);
        let digest = crate::registry::load::sha256_hex(&p.source.bytes);
        let mut p = p;
        p.options.pin.get_or_insert_with(|| digest.clone());
        let line = self.put_in(&mut state, &p).inspect_err(|reason| {
            tracing::error!(origin = %origin, reason = %reason, "ward ctl load refused");
        })?;
        state.ctl_loaded.retain(|(q, _)| *q != path);
        state.ctl_loaded.push((path, digest));
        Ok(line)
    }

    /// `ward ctl unload NAME`.
    pub fn unload(&self, name: &str) -> Result<String, String> {
        let mut state = self.lock();
        let running = state
            .running
            .values()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or(Running {
                name: name.to_owned(),
                fingerprint: String::new(),
                kind: Kind::Detector,
            });
        let line = self.take_out(&running)?;
        let origins: Vec<String> = state
            .running
            .iter()
            .filter(|(_, r)| r.name == name)
            .map(|(o, _)| o.clone())
            .collect();
        for origin in origins {
            if let Some(r) = state.running.remove(&origin) {
                state
                    .ctl_loaded
                    .retain(|(p, _)| p.display().to_string() != origin);
                state.unloaded.insert(origin, r.fingerprint);
            }
        }
        Ok(line)
    }

    /// `ward ctl status`.
    pub fn status(&self) -> serde_json::Value {
        let summary = self.view.summary();
        serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "config": self.config_path.display().to_string(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "lines": summary.parse.lines,
            "events": summary.parse.events,
            "malformed": summary.parse.skipped.iter().map(|(_, n)| n).sum::<u64>(),
            "findings": summary.findings,
            "plugins": summary.plugins.len(),
            "auth": {
                "requests": summary.auth.requests,
                "denied": summary.auth.denied,
                "defaulted": summary.auth.defaulted,
                "latency_ns": summary.auth.latency_ns,
            },
            "reloads": self.reloads.load(Ordering::Relaxed),
            "reloads_refused": self.reloads_refused.load(Ordering::Relaxed),
            "plugin_dir": self.plugin_dir.as_ref().map(|d| d.display().to_string()),
        })
    }
}

fn summarise(said: Vec<String>) -> String {
    if said.is_empty() {
        "nothing to change".to_owned()
    } else {
        said.join("; ")
    }
}

impl Controller for LiveAgent {
    fn handle(&self, request: Request) -> Result<serde_json::Value, String> {
        let text = |r: Result<String, String>| r.map(serde_json::Value::String);
        match request {
            Request::Status => Ok(self.status()),
            Request::Plugins => {
                let summary = self.view.summary();
                let plugins: Vec<serde_json::Value> = summary
                    .plugins
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name,
                            "version": p.version,
                            "mode": p.mode,
                            "sha256": p.sha256,
                            "origin": p.origin,
                            "on_probation": p.on_probation,
                            "quarantined": p.quarantined,
                            "rollbacks": p.rollbacks,
                        })
                    })
                    .collect();
                Ok(serde_json::Value::Array(plugins))
            }
            Request::Stats => {
                serde_json::to_value(self.view.summary().plugins).map_err(|e| e.to_string())
            }
            Request::Load { path } => text(self.load_path(&path)),
            Request::Unload { name } => text(self.unload(&name)),
            Request::Reload => text(self.reload()),
            Request::Mode { name, mode } => text(self.set_mode(&name, mode)),
            Request::Approve { id } => self.act_on(id, crate::respond::ActMsg::Approve),
            Request::Deny { id } => self.act_on(id, crate::respond::ActMsg::Deny),
            Request::Undo { id } => self.act_on(id, crate::respond::ActMsg::Undo),
        }
    }
}

/// Watches `plugin_dir` and the config file; after a quiet [`DEBOUNCE`], a change to the
/// config reloads it and a change in `plugin_dir` rescans it. The watcher lives as long as
/// the returned guard.
pub fn watch(agent: Arc<LiveAgent>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher as _};
    let (dir, config_file) = (agent.plugin_dir.clone(), agent.config_path.clone());
    let config_dir = config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config_name = config_file.file_name().map(|n| n.to_os_string());
    let (tx, rx) = std::sync::mpsc::channel::<(bool, bool)>();
    let in_dir = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let config = event.paths.iter().any(|p| {
            p.file_name().map(|n| n.to_os_string()) == config_name
                && p.parent().is_some_and(|d| same_dir(d, &config_dir))
        });
        let plugins = in_dir.as_ref().is_some_and(|d| {
            event
                .paths
                .iter()
                .any(|p| p.parent().is_some_and(|q| same_dir(q, d)))
        });
        if config || plugins {
            let _ = tx.send((config, plugins));
        }
    })
    .context("starting the file watcher")?;
    if let Some(d) = &dir {
        watcher
            .watch(d, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching plugin_dir {}", d.display()))?;
    }
    let parent = config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher
        .watch(parent, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", parent.display()))?;
    std::thread::Builder::new()
        .name("ward-watch".into())
        .spawn(move || {
            while let Ok((mut config, mut plugins)) = rx.recv() {
                // Debounce: act once things have been quiet for a moment.
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok((c, p)) => {
                            config |= c;
                            plugins |= p;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let said = if config {
                    agent.reload()
                } else if plugins {
                    Ok(agent.rescan())
                } else {
                    continue;
                };
                match said {
                    Ok(line) => eprintln!("ward run: {line}"),
                    Err(e) => eprintln!("ward run: {e}"),
                }
            }
        })
        .context("starting the watcher thread")?;
    Ok(watcher)
}

/// Whether `a` and `b` name one directory (the watcher reports canonical paths on macOS).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// `ward run --config C`: starts the agent and runs it until the source ends or
/// SIGTERM/SIGINT, which drain every queued event and finding to the sink before exit;
/// SIGHUP reloads the config. Says at start what it loaded and what it refused; a refusal
/// of a plugin the admin named is fatal (exit 2).
pub fn run(config_path: &Path) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write as _;
    let mut config = WardConfig::load(config_path)?;
    let state_dir = config.state_dir();
    // One agent (or replay) writes a state directory at a time.
    let _lock = crate::respond::store::StateLock::take(&state_dir)?;
    config.blocks = response::stored_blocks(&state_dir);
    let bell = crate::forward::outbox::Bell::default();
    let outbox = config.open_outbox(&state_dir)?.with_bell(bell.clone());
    let sinks = crate::forward::sink::Sinks::start(&config, &state_dir, bell.clone())?;
    let bridge = crate::forward::bridge::Bridge::start(
        state_dir.clone(),
        config.open_outbox(&state_dir)?.with_bell(bell),
    )?;
    let sink_drain = std::time::Duration::from_secs(config.agent.sink_drain_secs);
    let mut startup = start(&config, &[])?;
    for line in &startup.listing {
        eprintln!("ward run: loaded {line}");
    }
    for (e, _) in &startup.refused {
        eprintln!("ward run: refused {e}");
    }
    let records = startup.refused_records();
    if startup.named_refused() > 0 {
        let mut out = std::io::stdout().lock();
        for r in &records {
            writeln!(out, "{}", r.to_json_line()).context("writing findings")?;
        }
        eprintln!(
            "ward run: {} plugin(s) the config names were refused; not starting",
            startup.named_refused()
        );
        return Ok(std::process::ExitCode::from(2));
    }
    if let Some(kinds) = startup.pipeline.subscribed_kinds() {
        tracing::info!(kinds = %kinds.join(" "), "event kinds the loaded detectors subscribe to");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (reader, place) = open_source(&config, &startup.pipeline, Arc::clone(&stop), &outbox)?;
    let committer = crate::forward::outbox::Committer {
        outbox,
        source: place,
        failed: Arc::default(),
    };
    let outbox_failed = Arc::clone(&committer.failed);
    let socket = config.control_socket();
    let metrics_addr = config.agent.metrics_addr.clone();
    let (tx, rx) = crate::detect::run::stage_channel();
    if !records.is_empty() {
        let _ = tx.try_send(StageMsg::Records(records));
    }
    let view = LiveView::default();
    // The response stage calls back into the agent (the prevent list changed, the smart
    // groups changed); the agent is made after it, so the calls find it through this.
    let found: Arc<std::sync::OnceLock<std::sync::Weak<LiveAgent>>> = Arc::default();
    let on_blocklist = {
        let found = Arc::clone(&found);
        Box::new(move || {
            if let Some(agent) = found.get().and_then(std::sync::Weak::upgrade) {
                std::thread::spawn(move || {
                    eprintln!("ward run: prevent list: {}", agent.refresh_blocks());
                });
            }
        }) as Box<dyn Fn() + Send>
    };
    let on_groups = {
        let found = Arc::clone(&found);
        Box::new(move |groups: &std::collections::BTreeSet<String>| {
            if let Some(agent) = found.get().and_then(std::sync::Weak::upgrade) {
                let groups = groups.clone();
                std::thread::spawn(move || {
                    eprintln!(
                        "ward run: smart groups {groups:?}: {}",
                        agent.apply_groups(&groups)
                    );
                });
            }
        }) as Box<dyn Fn(&std::collections::BTreeSet<String>) + Send>
    };
    let responders: Vec<String> = startup
        .responders
        .iter()
        .map(|p| format!("{}:{}", p.name(), p.kind()))
        .collect();
    let response = response::start(
        &config,
        &mut startup,
        state_dir.clone(),
        true,
        Some(config_path),
        Some(on_blocklist),
        Some(on_groups),
    )?;
    let link = ResponseLink {
        act: response.act.clone(),
        playbooks: Arc::clone(&response.playbooks),
        state_dir: state_dir.clone(),
    };
    let fleet_config = config.fleet.clone();
    let fleet_view = config.clone();
    let agent = Arc::new(LiveAgent::new(
        config_path,
        config,
        &startup,
        tx.clone(),
        view.clone(),
        Some(link),
    ));
    let _ = found.set(Arc::downgrade(&agent));
    let fleet = match &fleet_config {
        Some(fleet) => Some(start_fleet(fleet, &fleet_view, &state_dir, &agent)?),
        None => None,
    };
    for line in &startup.listing {
        agent.audit("plugin-loaded", serde_json::json!({"listing": line}));
    }
    if !responders.is_empty() {
        eprintln!("ward run: response plugins {}", responders.join(", "));
    }
    let offer = response.offer.clone();
    let Startup { pipeline, .. } = startup;
    let lines = crate::ingest::LineReader::new(reader, pipeline.options().max_line_bytes);
    let rt = crate::cli::tokio_runtime()?;
    // Set once the socket is ours: only then is it removed at exit.
    let mut bound = false;
    let result = rt.block_on(async {
        let listener = crate::operate::control::bind(&socket)?;
        bound = true;
        eprintln!("ward run: control socket {}", socket.display());
        tokio::spawn(crate::operate::control::serve(
            listener,
            Arc::clone(&agent) as Arc<dyn Controller>,
        ));
        if let Some(addr) = &metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics_addr {addr}"))?;
            eprintln!(
                "ward run: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            tokio::spawn(crate::operate::metrics::serve(listener, view.clone()));
        }
        let _watcher = watch(Arc::clone(&agent))?;
        let mut work = tokio::spawn(crate::detect::run::run_with_response(
            pipeline,
            Box::new(lines),
            std::io::stdout(),
            (tx.clone(), rx),
            view.clone(),
            Some(offer),
            Some(committer),
        ));
        let mut signals = Signals::new()?;
        loop {
            tokio::select! {
                result = &mut work => break result.context("the agent's task")?,
                signal = signals.next() => match signal {
                    Signal::Reload => {
                        let agent = Arc::clone(&agent);
                        tokio::task::spawn_blocking(move || match agent.reload() {
                            Ok(line) => eprintln!("ward run: SIGHUP: {line}"),
                            Err(e) => eprintln!("ward run: SIGHUP: {e}"),
                        });
                    }
                    Signal::Stop => {
                        eprintln!("ward run: signal received, draining");
                        stop.store(true, Ordering::Relaxed);
                        let _ = tx.send(StageMsg::Shutdown).await;
                    }
                }
            }
        }
    });
    if bound {
        let _ = std::fs::remove_file(&socket);
    }
    let summary = result?;
    eprintln!("ward run: {summary}");
    if let Some(line) = outbox_failed.summary() {
        eprintln!("ward run: {line}");
    }
    let responded = response.finish();
    eprintln!("ward run: {responded}");
    if let Some(fleet) = fleet {
        fleet.stop();
    }
    bridge.stop();
    if !sinks.is_empty() {
        eprintln!("ward run: {}", sinks.finish(sink_drain));
    }
    // Blocking reader threads may still wait on input; do not hold the exit for them.
    rt.shutdown_background();
    Ok(std::process::ExitCode::SUCCESS)
}

/// Connects this Mac to the fleet: commands through `agent`'s controls, recorded in its
/// audit log, each carried out once (remembered in the outbox database).
fn start_fleet(
    fleet: &crate::config::FleetConfig,
    config: &WardConfig,
    state_dir: &Path,
    agent: &Arc<LiveAgent>,
) -> anyhow::Result<crate::operate::fleet::Fleet> {
    let keys = fleet
        .trusted_keys
        .iter()
        .map(|k| crate::registry::signature::parse_key(k).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let facts = crate::respond::groups::DeviceFacts::read(&config.device);
    let groups = crate::respond::groups::SmartGroups::build(&config.smart_groups);
    let dir = state_dir.to_path_buf();
    let seen = crate::forward::outbox::Outbox::open(
        state_dir,
        &config.device_id(),
        config.outbox_limits(),
        &[],
    )?;
    let audit_agent = Arc::downgrade(agent);
    let options = crate::operate::fleet::FleetOptions {
        address: fleet.address.clone(),
        credentials: fleet.credentials_file.as_deref().map(|p| config.resolve(p)),
        keys,
        device: config.device_id(),
        groups: Box::new(move || {
            let tags = crate::respond::store::Store::open_read_only(&dir)
                .and_then(|s| s.tags(crate::clock::now_ms()))
                .unwrap_or_default();
            groups.membership(&facts, &tags)
        }),
        audit: Box::new(move |kind, record| {
            if let Some(agent) = audit_agent.upgrade() {
                agent.audit(kind, record);
            }
        }),
        first_time: Box::new(move |id| seen.first_time(id)),
    };
    eprintln!(
        "ward run: fleet commands from {} as {}",
        fleet.address, options.device
    );
    crate::operate::fleet::Fleet::start(options, Arc::clone(agent) as Arc<dyn Controller>)
}

/// What a signal asks of the agent.
enum Signal {
    /// SIGHUP: reload the config.
    Reload,
    /// SIGTERM / SIGINT: drain and exit.
    Stop,
}

/// The signals `ward run` acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("handling SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            hup: signal(SignalKind::hangup()).context("handling SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
