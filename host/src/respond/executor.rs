//! The action executor: every action — planned by a remediator, a playbook step or the
//! agent itself (a sweep) — goes through [`Executor::submit`], which decides and records:
//!
//! 1. capability: a remediator's action needs the grant of its kind, else `refused`;
//! 2. policy: the safety invariants, the script catalogue, Jamf and isolation settings,
//!    else `refused` (checked again on the Mac itself when it runs);
//! 3. mode: a replay without `--execute` records `dry-run`; `shadow` records `shadow`;
//!    `approve` records `pending-approval` until `ward actions approve` (or its timeout,
//!    which denies); `enforce` carries it out;
//! 4. blast radius: past the actions per minute or per incident, `refused`;
//! 5. carrying out: the undo record is stored with the row (`running`) before anything is
//!    touched; then `done` or `failed` with the outcome, and a lease for containment.
//!
//! Leases end in [`Executor::tick`] (`released`), approvals time out there, sweep kills
//! scheduled after their grace run there, and isolation's hostnames are refreshed there.
//! A restart finds `running` rows (`interrupted`: their undo and lease stand) and resumes
//! every lease from the store, so a temporary containment never becomes permanent.

use std::sync::Arc;
use std::time::Duration;

use crate::config::response::{IsolationBackend, ResponseConfig, ResponseMode, SweepAction};
use crate::respond::actions::isolation::{Firewall, Plan};
use crate::respond::actions::jamf::Jamf;
use crate::respond::actions::process::Image;
use crate::respond::actions::vault::Vault;
use crate::respond::actions::{
    HostAction, Outcome, Status, Undo, blocklist, isolation, launchd, notify, process, script,
    vault,
};
use crate::respond::groups::DeviceFacts;
use crate::respond::invariants::Protected;
use crate::respond::store::{ActionChange, ActionRecord, NewAction, Store, StoreError};
use crate::sandbox::grants::HashCache;
use crate::sandbox::state::SharedProcessTable;
use ward_event::model::AuditToken;

/// Something the response stage must follow up after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The prevent list changed: reload the prevent-list plugin.
    Blocklist,
    /// The device's tags changed: smart groups may have changed.
    Tags,
}

/// One action to decide.
#[derive(Debug, Clone)]
pub struct Request {
    /// The action.
    pub action: HostAction,
    /// The step's mode.
    pub mode: ResponseMode,
    /// The playbook.
    pub playbook: Option<String>,
    /// The step.
    pub step: Option<i64>,
    /// The remediator or collector that planned it.
    pub plugin: Option<String>,
    /// The remediator's grants (`None`: planned by the host, by a playbook step).
    pub granted: Option<Vec<String>>,
    /// The incident.
    pub incident: Option<i64>,
    /// The finding, summarised.
    pub finding: Option<serde_json::Value>,
    /// Why.
    pub reason: String,
    /// The step's lease (`None`: the default for the kind).
    pub lease_secs: Option<u64>,
    /// How long an approval waits.
    pub approval_timeout_secs: u64,
    /// The action this one follows from.
    pub parent: Option<i64>,
}

impl Request {
    /// A host-planned request in `mode` with `reason`.
    pub fn host(action: HostAction, mode: ResponseMode, reason: impl Into<String>) -> Self {
        Self {
            action,
            mode,
            playbook: None,
            step: None,
            plugin: None,
            granted: None,
            incident: None,
            finding: None,
            reason: reason.into(),
            lease_secs: None,
            approval_timeout_secs: 900,
            parent: None,
        }
    }
}

/// Isolation in force.
#[derive(Debug, Clone)]
struct Isolated {
    plan: Plan,
    next_refresh_ms: i64,
}

/// The executor.
pub struct Executor {
    /// The state store (actions, incidents, tags, audit).
    pub store: Store,
    vault: Vault,
    config: ResponseConfig,
    protected: Protected,
    execute: bool,
    processes: SharedProcessTable,
    hash_cache: Arc<HashCache>,
    firewall: Option<Firewall>,
    isolated: Option<Isolated>,
    jamf: Option<Jamf>,
    facts: DeviceFacts,
    /// Whether the prevent-list plugin can check SHA-256 entries (has `file-hash`).
    sha256_blocks: bool,
    effects: Vec<Effect>,
}

/// Options the agent builds an executor with.
pub struct ExecutorOptions {
    /// Carry actions out (else every one is `dry-run`).
    pub execute: bool,
    /// The response config.
    pub config: ResponseConfig,
    /// The protected set.
    pub protected: Protected,
    /// The process table.
    pub processes: SharedProcessTable,
    /// The digest cache.
    pub hash_cache: Arc<HashCache>,
    /// This Mac.
    pub facts: DeviceFacts,
    /// Whether SHA-256 prevent-list entries can work.
    pub sha256_blocks: bool,
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Executor {
    /// An executor over `store`; marks what a stopped agent left `running` as
    /// `interrupted` and takes up an isolation still in force.
    pub fn new(mut store: Store, options: ExecutorOptions) -> Result<Self, StoreError> {
        let vault = Vault::open(store.dir()).map_err(|reason| StoreError::Dir {
            dir: store.dir().display().to_string(),
            reason,
        })?;
        for row in store.actions_in(Status::Running)? {
            store.change_action(
                row.id,
                &ActionChange {
                    status: Some(Status::Interrupted),
                    reason: Some(format!(
                        "{}; the agent stopped while it ran: it may or may not have happened (its undo and lease stand)",
                        row.reason
                    )),
                    ..ActionChange::default()
                },
                "action-interrupted",
            )?;
        }
        let firewall = Firewall::new(&options.config.isolation, store.dir());
        let jamf = options
            .config
            .jamf
            .as_ref()
            .map(|j| Jamf::new(j, &options.facts.serial));
        let mut executor = Self {
            vault,
            firewall,
            isolated: None,
            jamf,
            execute: options.execute,
            config: options.config,
            protected: options.protected,
            processes: options.processes,
            hash_cache: options.hash_cache,
            facts: options.facts,
            sha256_blocks: options.sha256_blocks,
            effects: Vec::new(),
            store,
        };
        executor.resume_isolation()?;
        Ok(executor)
    }

    fn resume_isolation(&mut self) -> Result<(), StoreError> {
        let active = self.store.actions()?.into_iter().rev().find(|r| {
            r.action == "isolate-network" && matches!(r.status, Status::Done | Status::Interrupted)
        });
        if active.is_some()
            && let Ok(plan) = isolation::plan(&self.config.isolation)
        {
            self.isolated = Some(Isolated {
                plan,
                next_refresh_ms: crate::clock::now_ms(),
            });
        }
        Ok(())
    }

    /// Whether actions are carried out (else dry-run).
    pub fn executes(&self) -> bool {
        self.execute
    }

    /// What the stage must follow up since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The device facts.
    pub fn facts(&self) -> &DeviceFacts {
        &self.facts
    }

    fn record(
        &mut self,
        req: &Request,
        status: Status,
        reason: String,
        outcome: Option<Outcome>,
    ) -> Result<ActionRecord, StoreError> {
        let id = self.store.insert_action(
            &req.action,
            &NewAction {
                status: Some(status),
                playbook: req.playbook.clone(),
                incident: req.incident,
                step: req.step,
                plugin: req.plugin.clone(),
                mode: req.mode.as_str().into(),
                reason,
                finding: req.finding.clone(),
                outcome: outcome.map(|o| o.to_json()),
                deadline_ms: (status == Status::PendingApproval)
                    .then(|| crate::clock::now_ms() + ms(req.approval_timeout_secs)),
                parent: req.parent,
                ..NewAction::default()
            },
        )?;
        self.store
            .action(id)?
            .ok_or_else(|| StoreError::NotFound(format!("action {id} vanished")))
    }

    /// Decides, records and (in enforce mode) carries out one action.
    pub fn submit(&mut self, req: Request) -> Result<ActionRecord, StoreError> {
        let kind = req.action.kind();
        if let Some(granted) = &req.granted
            && !granted.iter().any(|g| g == kind)
        {
            let why = format!(
                "refused: {} was not granted `{kind}` ({})",
                req.plugin.as_deref().unwrap_or("the plugin"),
                req.reason
            );
            return self.record(&req, Status::Refused, why, None);
        }
        if let Some(why) = self.policy_refusal(&req.action) {
            return self.record(
                &req,
                Status::Refused,
                format!("refused: {why} ({})", req.reason),
                None,
            );
        }
        if !self.execute {
            let note = Outcome::new(format!(
                "dry run ({} mode): would {} {}",
                req.mode.as_str(),
                req.action.kind(),
                req.action.target()
            ));
            return self.record(&req, Status::DryRun, req.reason.clone(), Some(note));
        }
        match req.mode {
            ResponseMode::Shadow => {
                let note = Outcome::new(format!(
                    "shadow: would {} {}",
                    req.action.kind(),
                    req.action.target()
                ));
                self.record(&req, Status::Shadow, req.reason.clone(), Some(note))
            }
            ResponseMode::Approve => {
                self.record(&req, Status::PendingApproval, req.reason.clone(), None)
            }
            ResponseMode::Enforce => self.carry_out(None, &req),
        }
    }

    /// Why policy refuses `action` whatever the Mac looks like now (checked before any
    /// mode, so a dry run shows refusals too).
    fn policy_refusal(&self, action: &HostAction) -> Option<String> {
        match action {
            HostAction::KillProcess { pid, pidversion, signal } => {
                if !matches!(signal, 9 | 15) {
                    return Some(format!("signal {signal} is not sent (only 9 and 15)"));
                }
                let token = AuditToken {
                    pid: *pid,
                    pidversion: *pidversion,
                    ..AuditToken::default()
                };
                let gone = {
                    let table = self
                        .processes
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if table.has_exited(&token) {
                        Some("the image has exited")
                    } else if table.is_retired(&token) {
                        Some("the image was replaced by an exec (kill the new image)")
                    } else {
                        None
                    }
                };
                let image = self.image(*pid, *pidversion);
                gone.map(|g| format!("pid {pid} / pidversion {pidversion}: {g}"))
                    .or_else(|| {
                        self.protected.refuse_kill(
                            *pid,
                            image.path.as_deref().map(std::path::Path::new),
                            image.signing_id.as_deref(),
                        )
                    })
            }
            HostAction::QuarantineFile { path } | HostAction::RemoveFile { path } => self
                .protected
                .refuse_file(std::path::Path::new(path), None),
            HostAction::RemoveLaunchItem { path } => self
                .protected
                .refuse_file(std::path::Path::new(path), None)
                .or_else(|| {
                    (!launchd::in_launch_dir(std::path::Path::new(path), &self.config.launch_dirs))
                        .then(|| format!("{path} is not a plist in a launch directory ({})", self.config.launch_dirs.join(", ")))
                }),
            HostAction::IsolateNetwork => {
                if isolation::backend_of(&self.config.isolation).is_none()
                    || self.config.isolation.backend == IsolationBackend::None
                {
                    Some("isolation is off ([response.isolation] backend = \"none\")".into())
                } else if self.config.isolation.allow.is_empty() {
                    Some("[response.isolation] allow names no management host; isolating would cut this Mac off its management".into())
                } else {
                    None
                }
            }
            HostAction::RunScript { script_id, .. } => (!self.config.scripts.contains_key(script_id))
                .then(|| format!("`{}` is not in the admin's script catalogue", crate::respond::actions::shown(script_id))),
            HostAction::JamfLock { .. }
            | HostAction::JamfPenaltyBox
            | HostAction::JamfPolicy { .. }
            | HostAction::JamfStaticGroup { .. } => self
                .config
                .jamf
                .is_none()
                .then(|| "Jamf Pro is not configured ([response.jamf])".to_owned()),
            HostAction::JamfErase { .. } => match &self.config.jamf {
                None => Some("Jamf Pro is not configured ([response.jamf])".into()),
                Some(j) if !j.allow_erase => Some("[response.jamf] allow_erase is false".into()),
                Some(_) => None,
            },
            HostAction::Block { entry, .. } => (*entry == crate::respond::actions::BlockKind::Sha256
                && !self.sha256_blocks)
                .then(|| "SHA-256 entries need the prevent-list plugin granted `file-hash` (with a file_scope)".to_owned()),
            HostAction::LockScreen
            | HostAction::Notify { .. }
            | HostAction::TagDevice { .. }
            | HostAction::Collect { .. } => None,
        }
    }

    /// What the process table says of `(pid, pidversion)`.
    fn image(&self, pid: i32, pidversion: i32) -> Image {
        let token = AuditToken {
            pid,
            pidversion,
            ..AuditToken::default()
        };
        let table = self
            .processes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table
            .get(&token)
            .map(|p| Image {
                path: Some(p.executable.path.clone()),
                signing_id: p.signing_id.clone(),
                start_time: p.start_time.clone(),
            })
            .unwrap_or_default()
    }

    fn lease_for(&self, req: &Request) -> Option<u64> {
        let default = match req.action {
            HostAction::IsolateNetwork => self.config.leases.isolate_network_secs,
            HostAction::TagDevice { .. } => self.config.leases.tag_device_secs,
            HostAction::JamfPenaltyBox => self.config.leases.jamf_penalty_box_secs,
            HostAction::Block { .. } => self.config.leases.block_secs,
            _ => 0,
        };
        Some(req.lease_secs.unwrap_or(default)).filter(|s| *s > 0 && req.action.reversible())
    }

    /// The undo record of `action` as item `id`, prepared before it runs.
    fn undo_for(&self, action: &HostAction, id: i64) -> Option<Undo> {
        match action {
            HostAction::QuarantineFile { path } => Some(Undo::Restore {
                item: id.to_string(),
                original: path.clone(),
                launchd_domain: None,
            }),
            HostAction::RemoveLaunchItem { path } => Some(Undo::Restore {
                item: id.to_string(),
                original: path.clone(),
                launchd_domain: None,
            }),
            HostAction::IsolateNetwork => Some(Undo::ReleaseIsolation {
                backend: self
                    .firewall
                    .as_ref()
                    .map(|f| f.name())
                    .unwrap_or("none")
                    .into(),
                token: None,
            }),
            HostAction::JamfPenaltyBox => Some(Undo::LeavePenaltyBox),
            HostAction::JamfStaticGroup { group_id, add } => Some(Undo::StaticGroup {
                group_id: *group_id,
                add: !add,
            }),
            HostAction::Block { entry, value } => Some(Undo::Unblock {
                entry: *entry,
                value: value.clone(),
            }),
            HostAction::TagDevice { tag } => Some(Undo::ClearTag { tag: tag.clone() }),
            _ => None,
        }
    }

    fn within_blast_radius(&self, incident: Option<i64>) -> Result<Option<String>, StoreError> {
        let minute_ago = crate::clock::now_ms() - 60_000;
        let recent = self.store.count_acted(minute_ago, None)?;
        if recent >= i64::from(self.config.max_actions_per_minute) {
            return Ok(Some(format!(
                "blast radius: {recent} actions in the last minute (response.max_actions_per_minute = {})",
                self.config.max_actions_per_minute
            )));
        }
        if let Some(i) = incident {
            let n = self.store.count_acted(0, Some(i))?;
            if n >= i64::from(self.config.max_actions_per_incident) {
                return Ok(Some(format!(
                    "blast radius: {n} actions in incident {i} (response.max_actions_per_incident = {})",
                    self.config.max_actions_per_incident
                )));
            }
        }
        Ok(None)
    }

    /// Carries `req` out: as row `existing` (an approved or scheduled one) or a new row.
    fn carry_out(
        &mut self,
        existing: Option<i64>,
        req: &Request,
    ) -> Result<ActionRecord, StoreError> {
        if let Some(why) = self.within_blast_radius(req.incident)? {
            return match existing {
                Some(id) => self.finish(
                    id,
                    Status::Refused,
                    Outcome::new(format!("refused: {why}")),
                    None,
                ),
                None => self.record(req, Status::Refused, format!("refused: {why}"), None),
            };
        }
        let id = match existing {
            Some(id) => id,
            None => self.store.insert_action(
                &req.action,
                &NewAction {
                    status: Some(Status::Running),
                    playbook: req.playbook.clone(),
                    incident: req.incident,
                    step: req.step,
                    plugin: req.plugin.clone(),
                    mode: req.mode.as_str().into(),
                    reason: req.reason.clone(),
                    finding: req.finding.clone(),
                    parent: req.parent,
                    ..NewAction::default()
                },
            )?,
        };
        // The undo record is stored before anything is touched.
        let undo = self.undo_for(&req.action, id);
        self.store.change_action(
            id,
            &ActionChange {
                status: Some(Status::Running),
                undo: Some(undo.as_ref().and_then(|u| serde_json::to_value(u).ok())),
                ..ActionChange::default()
            },
            "action-running",
        )?;
        let result = self.perform(id, req);
        match result {
            Ok((outcome, undo_now)) => {
                let lease = self.lease_for(req);
                let undo = undo_now.or(undo);
                self.store.change_action(
                    id,
                    &ActionChange {
                        status: Some(Status::Done),
                        outcome: Some(outcome.to_json()),
                        undo: Some(undo.as_ref().and_then(|u| serde_json::to_value(u).ok())),
                        lease_expires_ms: lease.map(|s| Some(crate::clock::now_ms() + ms(s))),
                        ..ActionChange::default()
                    },
                    "action-done",
                )?;
                self.store
                    .action(id)?
                    .ok_or_else(|| StoreError::NotFound(format!("action {id}")))
            }
            Err(why) => {
                let refused = why.starts_with("refused");
                self.finish(
                    id,
                    if refused {
                        Status::Refused
                    } else {
                        Status::Failed
                    },
                    Outcome::new(why),
                    Some(None),
                )
            }
        }
    }

    fn finish(
        &mut self,
        id: i64,
        status: Status,
        outcome: Outcome,
        undo: Option<Option<serde_json::Value>>,
    ) -> Result<ActionRecord, StoreError> {
        self.store.change_action(
            id,
            &ActionChange {
                status: Some(status),
                outcome: Some(outcome.to_json()),
                undo,
                ..ActionChange::default()
            },
            &format!("action-{status}"),
        )?;
        self.store
            .action(id)?
            .ok_or_else(|| StoreError::NotFound(format!("action {id}")))
    }

    /// Does the action; the undo record again if running it refined it (pf's token).
    fn perform(&mut self, id: i64, req: &Request) -> Result<(Outcome, Option<Undo>), String> {
        let none = |r: Result<Outcome, String>| r.map(|o| (o, None));
        match &req.action {
            HostAction::KillProcess {
                pid,
                pidversion,
                signal,
            } => {
                let image = self.image(*pid, *pidversion);
                if image.path.is_none() {
                    return Err(format!(
                        "refused: ward has not seen the image pid {pid} / pidversion {pidversion} in the stream; it kills only processes it has seen"
                    ));
                }
                none(process::kill(
                    *pid,
                    *pidversion,
                    *signal,
                    &image,
                    &self.protected,
                ))
            }
            HostAction::QuarantineFile { path } => none(self.vault.quarantine(
                id,
                path,
                &self.protected,
                self.config.quarantine_max_bytes,
            )),
            HostAction::RemoveFile { path } => none(vault::remove(path, &self.protected)),
            HostAction::RemoveLaunchItem { path } => self.remove_launch_item(id, path),
            HostAction::IsolateNetwork => {
                let firewall = self.firewall.as_ref().ok_or("refused: isolation is off")?;
                let plan = isolation::plan(&self.config.isolation)?;
                let (outcome, token) = firewall.isolate(
                    &plan,
                    Duration::from_millis(self.config.isolation.selftest_timeout_ms),
                )?;
                let undo = Undo::ReleaseIsolation {
                    backend: firewall.name().into(),
                    token,
                };
                self.isolated = Some(Isolated {
                    plan,
                    next_refresh_ms: crate::clock::now_ms()
                        + ms(self.config.isolation.refresh_secs),
                });
                Ok((outcome, Some(undo)))
            }
            HostAction::LockScreen => {
                if !cfg!(target_os = "macos") {
                    return Err("lock-screen is not supported on this system".into());
                }
                let run = script::run_bounded(
                    std::path::Path::new("/usr/bin/pmset"),
                    &["displaysleepnow".into()],
                    &[],
                    Duration::from_secs(10),
                    4096,
                )?;
                if run.code == Some(0) {
                    Ok((
                        Outcome::new("display put to sleep (locks with the screen-saver password)"),
                        None,
                    ))
                } else {
                    Err(format!("pmset displaysleepnow answered {:?}", run.code))
                }
            }
            HostAction::Notify {
                title,
                body,
                to_user,
            } => none(notify::notify(title, body, *to_user)),
            HostAction::RunScript { script_id, args } => {
                let env = [
                    ("WARD_ACTION_ID", id.to_string()),
                    (
                        "WARD_INCIDENT",
                        req.incident.map(|i| i.to_string()).unwrap_or_default(),
                    ),
                    ("WARD_PLAYBOOK", req.playbook.clone().unwrap_or_default()),
                ];
                none(script::run_script(
                    script_id,
                    self.config.scripts.get(script_id),
                    args,
                    &env,
                ))
            }
            HostAction::JamfLock { message } => none(self.jamf()?.lock(message)),
            HostAction::JamfErase { .. } => none(self.jamf()?.erase()),
            HostAction::JamfPenaltyBox => none(self.jamf()?.penalty_box(true)),
            HostAction::JamfPolicy { trigger } => none(self.jamf()?.policy(trigger)),
            HostAction::JamfStaticGroup { group_id, add } => {
                none(self.jamf()?.static_group(*group_id, *add))
            }
            HostAction::Block { entry, value } => {
                let added = self
                    .store
                    .add_block(entry.as_str(), value, Some(id))
                    .map_err(|e| e.to_string())?;
                self.effects.push(Effect::Blocklist);
                let swept = self
                    .sweep(id, req, *entry, value)
                    .map_err(|e| e.to_string())?;
                Ok((
                    Outcome::new(format!(
                        "{} {} {} to the prevent list; {} running process(es) swept",
                        if added { "added" } else { "kept" },
                        entry.as_str(),
                        value,
                        swept.len()
                    ))
                    .with("swept", swept),
                    None,
                ))
            }
            HostAction::TagDevice { tag } => {
                let lease = self.lease_for(req);
                self.store
                    .set_tag(tag, lease.map(|s| crate::clock::now_ms() + ms(s)), Some(id))
                    .map_err(|e| e.to_string())?;
                self.effects.push(Effect::Tags);
                Ok((Outcome::new(format!("tagged {tag}")), None))
            }
            HostAction::Collect { .. } => {
                Err("collection is carried out by the response stage".into())
            }
        }
    }

    fn jamf(&mut self) -> Result<&mut Jamf, String> {
        self.jamf
            .as_mut()
            .ok_or_else(|| "refused: Jamf Pro is not configured ([response.jamf])".to_owned())
    }

    fn remove_launch_item(
        &mut self,
        id: i64,
        path: &str,
    ) -> Result<(Outcome, Option<Undo>), String> {
        use std::os::unix::fs::MetadataExt as _;
        let entry = vault::resolve(path, false)?;
        if !launchd::in_launch_dir(&entry.real, &self.config.launch_dirs) {
            return Err(format!(
                "refused: {} is not a plist directly in a launch directory",
                entry.real.display()
            ));
        }
        let label = launchd::label_of(&entry)?;
        let owner = entry.lstat().map(|s| s.st_uid).unwrap_or_else(|_| {
            std::fs::symlink_metadata(&entry.real)
                .map(|m| m.uid())
                .unwrap_or(0)
        });
        let domain = launchd::domain_of(&entry.real, owner);
        let unloaded = launchd::bootout(&domain, &label);
        let dirs = self.config.launch_dirs.clone();
        let moved = self.vault.quarantine_if(
            id,
            &entry.real.display().to_string(),
            &self.protected,
            self.config.quarantine_max_bytes,
            &|real| {
                (!launchd::in_launch_dir(real, &dirs))
                    .then(|| format!("{} left its launch directory", real.display()))
            },
        )?;
        Ok((
            Outcome::new(format!("{}; {}", unloaded.details, moved.details))
                .with("label", label)
                .with("domain", domain.clone())
                .with("item", id.to_string()),
            Some(Undo::Restore {
                item: id.to_string(),
                original: entry.real.display().to_string(),
                launchd_domain: Some(domain),
            }),
        ))
    }

    /// Finds running processes the new entry names and handles them per the sweep policy;
    /// each handling is an action of its own (parent: the block).
    fn sweep(
        &mut self,
        block_id: i64,
        req: &Request,
        entry: crate::respond::actions::BlockKind,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let targets = {
            let table = self
                .processes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            blocklist::sweep_targets(&table, entry, value, &self.hash_cache)
        };
        let mut said = Vec::new();
        let policy = self.config.sweep.clone();
        for p in targets {
            let (pid, pidversion) = p.audit_token.key();
            said.push(format!("{pid}/{pidversion} {}", p.executable.path));
            let base = Request {
                parent: Some(block_id),
                incident: req.incident,
                playbook: req.playbook.clone(),
                finding: req.finding.clone(),
                ..Request::host(HostAction::IsolateNetwork, ResponseMode::Enforce, "")
            };
            let warn = || Request {
                action: HostAction::Notify {
                    title: "A blocked program is running".into(),
                    body: format!(
                        "{} is now on the prevent list and will be stopped.",
                        p.executable.path
                    ),
                    to_user: true,
                },
                reason: format!("sweep after blocking {} {value}", entry.as_str()),
                ..base.clone()
            };
            let kill = Request {
                action: HostAction::KillProcess {
                    pid,
                    pidversion,
                    signal: 9,
                },
                reason: format!("sweep after blocking {} {value}", entry.as_str()),
                ..base.clone()
            };
            match policy.action {
                SweepAction::None => {}
                SweepAction::Warn => {
                    self.submit(warn())?;
                }
                SweepAction::Kill => {
                    self.submit(kill)?;
                }
                SweepAction::WarnThenKill => {
                    self.submit(warn())?;
                    if policy.grace_secs == 0 {
                        self.submit(kill)?;
                    } else {
                        let id = self.store.insert_action(
                            &kill.action,
                            &NewAction {
                                status: Some(Status::Scheduled),
                                playbook: kill.playbook.clone(),
                                incident: kill.incident,
                                mode: "enforce".into(),
                                reason: format!(
                                    "{} (after a {} s grace)",
                                    kill.reason, policy.grace_secs
                                ),
                                finding: kill.finding.clone(),
                                deadline_ms: Some(crate::clock::now_ms() + ms(policy.grace_secs)),
                                parent: Some(block_id),
                                ..NewAction::default()
                            },
                        )?;
                        said.push(format!("kill scheduled as action {id}"));
                    }
                }
            }
        }
        Ok(said)
    }

    fn request_of(row: &ActionRecord) -> Option<Request> {
        Some(Request {
            action: row.host_action()?,
            mode: ResponseMode::Enforce,
            playbook: row.playbook.clone(),
            step: row.step,
            plugin: row.plugin.clone(),
            granted: None,
            incident: row.incident,
            finding: row.finding.clone(),
            reason: row.reason.clone(),
            lease_secs: None,
            approval_timeout_secs: 0,
            parent: row.parent,
        })
    }

    /// `ward actions approve <id>`: carries out a pending action (checked again now).
    pub fn approve(&mut self, id: i64, who: &str) -> Result<ActionRecord, String> {
        let row = self.pending(id)?;
        self.store
            .audit(
                "approval",
                serde_json::json!({"id": id, "by": who, "answer": "approve"}),
            )
            .map_err(|e| e.to_string())?;
        let mut req = Self::request_of(&row).ok_or("the stored action cannot be read")?;
        if !self.execute {
            return self
                .finish(
                    id,
                    Status::DryRun,
                    Outcome::new("approved in a dry run: not carried out"),
                    None,
                )
                .map_err(|e| e.to_string());
        }
        if let Some(why) = self.policy_refusal(&req.action) {
            return self
                .finish(
                    id,
                    Status::Refused,
                    Outcome::new(format!("refused: {why}")),
                    None,
                )
                .map_err(|e| e.to_string());
        }
        req.mode = ResponseMode::Enforce;
        req.lease_secs = None;
        self.carry_out(Some(id), &req).map_err(|e| e.to_string())
    }

    /// `ward actions deny <id>`.
    pub fn deny(&mut self, id: i64, who: &str) -> Result<ActionRecord, String> {
        self.pending(id)?;
        self.store
            .audit(
                "approval",
                serde_json::json!({"id": id, "by": who, "answer": "deny"}),
            )
            .map_err(|e| e.to_string())?;
        self.finish(
            id,
            Status::Denied,
            Outcome::new(format!("denied by {who}")),
            None,
        )
        .map_err(|e| e.to_string())
    }

    fn pending(&self, id: i64) -> Result<ActionRecord, String> {
        let row = self
            .store
            .action(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no action {id}"))?;
        if row.status != Status::PendingApproval {
            return Err(format!(
                "action {id} is {}, not pending approval",
                row.status
            ));
        }
        Ok(row)
    }

    /// `ward actions undo <id>`, or a lease's end (`released`).
    pub fn undo(&mut self, id: i64, who: &str, released: bool) -> Result<ActionRecord, String> {
        let row = self
            .store
            .action(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no action {id}"))?;
        if !matches!(row.status, Status::Done | Status::Interrupted) {
            return Err(format!("action {id} is {}: nothing to undo", row.status));
        }
        let undo: Undo = row
            .undo
            .clone()
            .and_then(|u| serde_json::from_value(u).ok())
            .ok_or_else(|| format!("action {id} ({}) cannot be undone", row.action))?;
        let result = self.perform_undo(&undo);
        let status = if released {
            Status::Released
        } else {
            Status::Undone
        };
        match result {
            Ok(outcome) => {
                self.store
                    .change_action(
                        id,
                        &ActionChange {
                            status: Some(status),
                            outcome: Some(
                                outcome
                                    .with("undone_by", who)
                                    .with("before", row.outcome.clone().unwrap_or_default())
                                    .to_json(),
                            ),
                            lease_expires_ms: Some(None),
                            ..ActionChange::default()
                        },
                        if released { "lease-released" } else { "undo" },
                    )
                    .map_err(|e| e.to_string())?;
                self.store
                    .action(id)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no action {id}"))
            }
            Err(why) => {
                let _ = self.store.audit(
                    "undo-failed",
                    serde_json::json!({"id": id, "by": who, "error": why}),
                );
                Err(format!("undo of action {id} failed: {why}"))
            }
        }
    }

    fn perform_undo(&mut self, undo: &Undo) -> Result<Outcome, String> {
        match undo {
            Undo::Restore {
                item,
                original,
                launchd_domain,
            } => {
                let mut out = self.vault.restore(item)?;
                if let Some(domain) = launchd_domain {
                    out.details =
                        format!("{}; {}", out.details, launchd::bootstrap(domain, original));
                }
                Ok(out)
            }
            Undo::ReleaseIsolation { token, .. } => {
                let firewall = self
                    .firewall
                    .as_ref()
                    .ok_or("isolation is off: nothing to release")?;
                let said = firewall.release(token.as_deref())?;
                self.isolated = None;
                Ok(Outcome::new(said))
            }
            Undo::LeavePenaltyBox => self.jamf()?.penalty_box(false),
            Undo::StaticGroup { group_id, add } => self.jamf()?.static_group(*group_id, *add),
            Undo::Unblock { entry, value } => {
                let removed = self
                    .store
                    .remove_block(entry.as_str(), value)
                    .map_err(|e| e.to_string())?;
                self.effects.push(Effect::Blocklist);
                Ok(Outcome::new(format!(
                    "{} {} {value} from the prevent list",
                    if removed { "removed" } else { "(already gone)" },
                    entry.as_str()
                )))
            }
            Undo::ClearTag { tag } => {
                self.store
                    .clear_tag(tag, "undone")
                    .map_err(|e| e.to_string())?;
                self.effects.push(Effect::Tags);
                Ok(Outcome::new(format!("tag {tag} cleared")))
            }
        }
    }

    /// Does what is due at `now_ms`: approvals that timed out are denied, leases that
    /// ended are released, scheduled sweep kills run, isolation is refreshed. Returns how
    /// many rows it changed.
    pub fn tick(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let mut changed = 0;
        for row in self.store.due_approvals(now_ms)? {
            self.finish(
                row.id,
                Status::Denied,
                Outcome::new("the approval timed out: denied by default"),
                None,
            )?;
            changed += 1;
        }
        for row in self.store.due_leases(now_ms)? {
            if let Err(e) = self.undo(row.id, "lease", true) {
                tracing::error!(action = row.id, error = %e, "lease release failed; retried at the next tick");
                // Push the lease a little so a failing release does not spin.
                self.store.change_action(
                    row.id,
                    &ActionChange {
                        lease_expires_ms: Some(Some(now_ms + 30_000)),
                        ..ActionChange::default()
                    },
                    "lease-retry",
                )?;
            }
            changed += 1;
        }
        for row in self.store.due_scheduled(now_ms)? {
            if let Some(req) = Self::request_of(&row) {
                self.carry_out(Some(row.id), &req)?;
                changed += 1;
            }
        }
        if let Some(iso) = &self.isolated
            && now_ms >= iso.next_refresh_ms
        {
            let next = isolation::refreshed(&self.config.isolation, &iso.plan);
            if next != iso.plan
                && let Some(f) = &self.firewall
                && let Err(e) = f.refresh(&next)
            {
                tracing::error!(error = %e, "refreshing the isolation's management addresses failed");
            }
            self.isolated = Some(Isolated {
                plan: next,
                next_refresh_ms: now_ms + ms(self.config.isolation.refresh_secs),
            });
        }
        Ok(changed)
    }

    /// When [`Self::tick`] next has something to do (ms), if ever.
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let store = self.store.next_deadline()?;
        let refresh = self.isolated.as_ref().map(|i| i.next_refresh_ms);
        Ok(match (store, refresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
