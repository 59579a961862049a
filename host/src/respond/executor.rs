//! The action executor: every action — planned by a remediator, a playbook step or the
//! agent itself (a sweep) — goes through [`Executor::submit`], which decides and records:
//!
//! 1. capability: a remediator's action needs the grant of its kind, else `refused`;
//! 2. policy: the safety invariants, the script catalogue, Jamf and isolation settings,
//!    else `refused` (checked again on the Mac itself when it runs);
//! 3. mode: a replay without `--execute` records `dry-run`; `shadow` records `shadow`;
//!    `approve` records `pending-approval` until `ward actions approve` (or its timeout,
//!    which denies); `enforce` carries it out;
//! 4. blast radius: past the changes per minute or per incident, `refused`;
//! 5. carrying out: the undo record and the lease are stored with the row (`running`)
//!    before anything is touched; then `done` or `failed` with the outcome.
//!
//! Leases end in [`Executor::tick`] (`released`), approvals time out there, sweep kills
//! scheduled after their grace run there, and isolation's hostnames are refreshed there.
//! A restart finds `running` rows (`interrupted`: their undo and lease stand), resumes
//! every lease from the store and loads an isolation again that a reboot took down, so a
//! temporary containment never becomes permanent nor silently ends. Every status change
//! is conditional on the status it left (another process may have moved it first). A dry
//! run (`execute` off) changes nothing on the Mac, ever: no action, no undo, no lease.

use std::sync::Arc;
use std::time::Duration;

use crate::config::response::{IsolationBackend, ResponseConfig, ResponseMode, SweepAction};
use crate::respond::actions::isolation::{Firewall, Plan};
use crate::respond::actions::jamf::Jamf;
use crate::respond::actions::process::Image;
use crate::respond::actions::vault::{Target, Vault};
use crate::respond::actions::{
    BlockKind, HostAction, Outcome, Status, Undo, blocklist, isolation, launchd, notify, process,
    script, vault,
};
use crate::respond::groups::DeviceFacts;
use crate::respond::invariants::{Protected, Signer};
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
    /// The image the finding is about (`pid`, `pidversion`) and its effective uid: a file
    /// of another user is not acted on, a signing-id block takes its team.
    pub offender: Option<(i32, i32, u32)>,
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
            offender: None,
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
    /// Lease releases that failed, by action: how many times (the next try backs off).
    retries: std::collections::BTreeMap<i64, u32>,
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

/// Kinds that contain (and so take a lease): the rest eradicate or tell, and stay.
fn containment(action: &HostAction) -> bool {
    matches!(
        action,
        HostAction::IsolateNetwork
            | HostAction::TagDevice { .. }
            | HostAction::JamfPenaltyBox
            | HostAction::JamfStaticGroup { .. }
            | HostAction::Block { .. }
    )
}

/// The statuses in which an action holds what it did.
const HOLDING: &[Status] = &[Status::Done, Status::Interrupted, Status::Failed];

impl Executor {
    /// An executor over `store`. Carrying actions out, it marks what a stopped agent left
    /// `running` as `interrupted` and takes up (and if need be loads again) an isolation
    /// still in force; a dry run touches neither.
    pub fn new(mut store: Store, options: ExecutorOptions) -> Result<Self, StoreError> {
        let vault = Vault::open(store.dir()).map_err(|reason| StoreError::Dir {
            dir: store.dir().display().to_string(),
            reason,
        })?;
        if options.execute {
            for row in store.actions_in(Status::Running)? {
                store.change_action_if(
                    row.id,
                    Some(&[Status::Running]),
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
            retries: std::collections::BTreeMap::new(),
            store,
        };
        if executor.execute {
            executor.resume_isolation()?;
        }
        Ok(executor)
    }

    /// Takes up an isolation whose lease still runs; loads it again if it is gone (a
    /// reboot clears the firewall).
    fn resume_isolation(&mut self) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        let active = self.store.actions()?.into_iter().rev().find(|r| {
            r.action == "isolate-network"
                && matches!(r.status, Status::Done | Status::Interrupted)
                && r.lease_expires
                    .as_deref()
                    .and_then(crate::clock::parse_rfc3339_ms)
                    .is_none_or(|end| end > now)
        });
        let Some(row) = active else {
            return Ok(());
        };
        let Ok(plan) = isolation::plan(&self.config.isolation) else {
            return Ok(());
        };
        if let Some(firewall) = &self.firewall
            && !firewall.active()
        {
            let said = match firewall.apply(&plan) {
                Ok(_) => {
                    "isolation loaded again after a restart (the firewall had lost it)".to_owned()
                }
                Err(e) => format!("isolation could not be loaded again after a restart: {e}"),
            };
            tracing::warn!(action = row.id, "{said}");
            self.store.audit(
                "isolation-resumed",
                serde_json::json!({"id": row.id, "said": said}),
            )?;
        }
        self.isolated = Some(Isolated {
            plan,
            next_refresh_ms: now,
        });
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
                lease_secs: self.lease_for(req),
                ..NewAction::default()
            },
        )?;
        self.row(id)
    }

    fn row(&self, id: i64) -> Result<ActionRecord, StoreError> {
        self.store
            .action(id)?
            .ok_or_else(|| StoreError::NotFound(format!("action {id} vanished")))
    }

    /// Decides, records and (in enforce mode) carries out one action.
    pub fn submit(&mut self, mut req: Request) -> Result<ActionRecord, StoreError> {
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
        if let Err(why) = self.qualify(&mut req.action, req.offender) {
            return self.record(
                &req,
                Status::Refused,
                format!("refused: {why} ({})", req.reason),
                None,
            );
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

    /// Makes an action say exactly what it means: a signing-id block takes the team of the
    /// image it is about (an id alone is whatever a developer chose, and would block every
    /// signer's program of that name).
    fn qualify(
        &self,
        action: &mut HostAction,
        offender: Option<(i32, i32, u32)>,
    ) -> Result<(), String> {
        let HostAction::Block {
            entry: BlockKind::SigningId,
            value,
        } = action
        else {
            return Ok(());
        };
        if let Some((team, id)) = value.split_once(':') {
            if team == "platform" {
                return Err("a block of platform (Apple) code".into());
            }
            if team.len() != 10 || !team.bytes().all(|b| b.is_ascii_alphanumeric()) || id.is_empty()
            {
                return Err(format!("`{value}` is not TEAMID:signing-id"));
            }
            return Ok(());
        }
        let image = offender
            .map(|(pid, pv, _)| self.image(pid, pv))
            .unwrap_or_default();
        match (&image.team_id, image.platform, &image.signing_id) {
            (_, true, _) => Err("a block of platform (Apple) code".into()),
            (Some(team), false, Some(id)) if id == value => {
                *value = format!("{team}:{value}");
                Ok(())
            }
            _ => Err(format!(
                "signing id `{}` without the team that signed it (ward blocks ids as TEAMID:id)",
                crate::respond::actions::shown(value)
            )),
        }
    }

    /// Why policy refuses `action` whatever the Mac looks like now (checked before any
    /// mode, so a dry run shows refusals too).
    fn policy_refusal(&self, action: &HostAction) -> Option<String> {
        match action {
            HostAction::KillProcess {
                pid,
                pidversion,
                signal,
            } => {
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
                            image.signer(),
                        )
                    })
            }
            HostAction::QuarantineFile { path } | HostAction::RemoveFile { path } => {
                self.protected.refuse_file(std::path::Path::new(path))
            }
            HostAction::RemoveLaunchItem { path } => self
                .protected
                .refuse_file(std::path::Path::new(path))
                .or_else(|| {
                    (!launchd::in_launch_dir(std::path::Path::new(path), &self.config.launch_dirs))
                        .then(|| {
                            format!(
                                "{path} is not a plist in a launch directory ({})",
                                self.config.launch_dirs.join(", ")
                            )
                        })
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
            HostAction::RunScript { script_id, .. } => {
                (!self.config.scripts.contains_key(script_id)).then(|| {
                    format!(
                        "`{}` is not in the admin's script catalogue",
                        crate::respond::actions::shown(script_id)
                    )
                })
            }
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
            HostAction::Block { entry, value } => {
                if *entry == BlockKind::Sha256 && !self.sha256_blocks {
                    return Some("SHA-256 entries need the prevent-list plugin granted `file-hash` (with a file_scope)".to_owned());
                }
                let (team, id) = match (entry, value.split_once(':')) {
                    (BlockKind::SigningId, Some((t, i))) => (Some(t), Some(i)),
                    (BlockKind::TeamId, _) => (Some(value.as_str()), None),
                    _ => (None, None),
                };
                id.and_then(|id| {
                    self.protected.refuse_signer(Signer {
                        signing_id: Some(id),
                        team_id: team,
                        platform: false,
                    })
                })
                .or_else(|| {
                    (*entry == BlockKind::TeamId && value == "483DWKW443")
                        .then(|| "the Jamf team id is protected".to_owned())
                })
            }
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
                team_id: p.team_id.clone(),
                platform: p.is_platform_binary,
                start_time: p.start_time.clone(),
            })
            .unwrap_or_default()
    }

    /// The lease of a containment action: the step's, else the kind's default; none for
    /// the rest (eradication is not undone by a timer).
    fn lease_for(&self, req: &Request) -> Option<u64> {
        if !containment(&req.action) {
            return None;
        }
        let default = match req.action {
            HostAction::IsolateNetwork => self.config.leases.isolate_network_secs,
            HostAction::TagDevice { .. } => self.config.leases.tag_device_secs,
            HostAction::JamfPenaltyBox | HostAction::JamfStaticGroup { .. } => {
                self.config.leases.jamf_penalty_box_secs
            }
            HostAction::Block { .. } => self.config.leases.block_secs,
            _ => 0,
        };
        Some(req.lease_secs.unwrap_or(default)).filter(|s| *s > 0)
    }

    /// The undo record of `action` as item `id`, prepared before it runs.
    fn undo_for(&self, action: &HostAction, id: i64) -> Option<Undo> {
        match action {
            HostAction::QuarantineFile { path } | HostAction::RemoveLaunchItem { path } => {
                Some(Undo::Restore {
                    item: id.to_string(),
                    original: path.clone(),
                    launchd_domain: None,
                })
            }
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
                "blast radius: {recent} changes in the last minute (response.max_actions_per_minute = {})",
                self.config.max_actions_per_minute
            )));
        }
        if let Some(i) = incident {
            let n = self.store.count_acted(0, Some(i))?;
            if n >= i64::from(self.config.max_actions_per_incident) {
                return Ok(Some(format!(
                    "blast radius: {n} changes in incident {i} (response.max_actions_per_incident = {})",
                    self.config.max_actions_per_incident
                )));
            }
        }
        Ok(None)
    }

    /// Carries `req` out: as row `existing` (approved or scheduled, already moved to
    /// `running` by its caller) or a new row.
    fn carry_out(
        &mut self,
        existing: Option<i64>,
        req: &Request,
    ) -> Result<ActionRecord, StoreError> {
        let harmless = matches!(
            req.action,
            HostAction::Notify { .. } | HostAction::TagDevice { .. }
        );
        if !harmless && let Some(why) = self.within_blast_radius(req.incident)? {
            return match existing {
                Some(id) => {
                    self.finish(id, Status::Refused, Outcome::new(format!("refused: {why}")))
                }
                None => self.record(req, Status::Refused, format!("refused: {why}"), None),
            };
        }
        let lease = existing
            .and_then(|id| self.store.action(id).ok().flatten())
            .and_then(|r| r.lease_secs)
            .and_then(|s| u64::try_from(s).ok())
            .or_else(|| self.lease_for(req));
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
                    lease_secs: lease,
                    ..NewAction::default()
                },
            )?,
        };
        // The undo record and the lease are stored before anything is touched: a crash
        // from here on leaves what is needed to revert it, and when.
        let undo = self.undo_for(&req.action, id);
        self.store.change_action(
            id,
            &ActionChange {
                status: Some(Status::Running),
                undo: Some(undo.as_ref().and_then(|u| serde_json::to_value(u).ok())),
                lease_expires_ms: lease.map(|s| Some(crate::clock::now_ms() + ms(s))),
                ..ActionChange::default()
            },
            "action-running",
        )?;
        let result = self.perform(id, req);
        match result {
            Ok((outcome, undo_now)) => {
                let undo = undo_now.or(undo);
                self.store.change_action(
                    id,
                    &ActionChange {
                        status: Some(Status::Done),
                        outcome: Some(outcome.to_json()),
                        undo: Some(undo.as_ref().and_then(|u| serde_json::to_value(u).ok())),
                        ..ActionChange::default()
                    },
                    "action-done",
                )?;
                self.row(id)
            }
            Err(why) => {
                // The undo record stays: a half-done action may still hold something.
                let refused = why.starts_with("refused");
                self.finish(
                    id,
                    if refused {
                        Status::Refused
                    } else {
                        Status::Failed
                    },
                    Outcome::new(why),
                )
            }
        }
    }

    fn finish(
        &mut self,
        id: i64,
        status: Status,
        outcome: Outcome,
    ) -> Result<ActionRecord, StoreError> {
        self.store.change_action(
            id,
            &ActionChange {
                status: Some(status),
                outcome: Some(outcome.to_json()),
                ..ActionChange::default()
            },
            &format!("action-{status}"),
        )?;
        self.row(id)
    }

    fn target<'a>(
        &'a self,
        req: &Request,
        refuse: &'a dyn Fn(&std::path::Path) -> Option<String>,
    ) -> Target<'a> {
        Target {
            protected: &self.protected,
            owner: req.offender.map(|(_, _, uid)| uid),
            refuse,
        }
    }

    /// Does the action; the undo record again if running it refined it (pf's token).
    fn perform(&mut self, id: i64, req: &Request) -> Result<(Outcome, Option<Undo>), String> {
        let none = |r: Result<Outcome, String>| r.map(|o| (o, None));
        let nothing = |_: &std::path::Path| None;
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
                &self.target(req, &nothing),
                self.config.quarantine_max_bytes,
            )),
            HostAction::RemoveFile { path } => {
                none(vault::remove(path, &self.target(req, &nothing)))
            }
            HostAction::RemoveLaunchItem { path } => self.remove_launch_item(id, path, req),
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

    /// Resolves the plist once, checks it and its label, boots the job out, and moves that
    /// same entry into the vault.
    fn remove_launch_item(
        &mut self,
        id: i64,
        path: &str,
        req: &Request,
    ) -> Result<(Outcome, Option<Undo>), String> {
        let entry = vault::resolve(path, false)?;
        let dirs = self.config.launch_dirs.clone();
        let in_dir = move |real: &std::path::Path| {
            (!launchd::in_launch_dir(real, &dirs)).then(|| {
                format!(
                    "{} is not a plist directly in a launch directory",
                    real.display()
                )
            })
        };
        let stat = entry.lstat().map_err(|e| format!("{e:?}"))?;
        if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
            return Err(format!(
                "refused: {} is not a regular file",
                entry.real.display()
            ));
        }
        if let Some(why) = self
            .protected
            .refuse_file(&entry.real)
            .or_else(|| in_dir(&entry.real))
        {
            return Err(format!("refused: {why}"));
        }
        let label = launchd::label_of(&entry)?;
        if let Some(why) = self.protected.refuse_label(&label) {
            return Err(format!("refused: {why}"));
        }
        let domain = launchd::domain_of(&entry.real, stat.st_uid);
        let moved = self.vault.quarantine_entry(
            id,
            path,
            &entry,
            &self.target(req, &in_dir),
            self.config.quarantine_max_bytes,
        )?;
        // Booted out only once the plist is out of launchd's reach: it cannot come back.
        let unloaded = launchd::bootout(&domain, &label);
        Ok((
            Outcome::new(format!("{}; {}", moved.details, unloaded.details))
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
    /// each handling is an action of its own (parent: the block). The table is only read
    /// for a snapshot; hashing happens after.
    fn sweep(
        &mut self,
        block_id: i64,
        req: &Request,
        entry: BlockKind,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let live = {
            let table = self
                .processes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            table.live()
        };
        let targets = blocklist::sweep_targets(live, entry, value, &self.hash_cache);
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
            let reason = format!("sweep after blocking {} {value}", entry.as_str());
            let warn = Request {
                action: HostAction::Notify {
                    title: "A blocked program is running".into(),
                    body: format!(
                        "{} is now on the prevent list and will be stopped.",
                        p.executable.path
                    ),
                    to_user: true,
                },
                reason: reason.clone(),
                ..base.clone()
            };
            let kill = Request {
                action: HostAction::KillProcess {
                    pid,
                    pidversion,
                    signal: 9,
                },
                reason,
                ..base
            };
            match policy.action {
                SweepAction::None => {}
                SweepAction::Warn => {
                    self.submit(warn)?;
                }
                SweepAction::Kill => {
                    self.submit(kill)?;
                }
                SweepAction::WarnThenKill if policy.grace_secs == 0 => {
                    self.submit(warn)?;
                    self.submit(kill)?;
                }
                SweepAction::WarnThenKill => {
                    self.submit(warn)?;
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
            offender: row.finding.as_ref().and_then(|f| {
                let p = f.get("process")?;
                Some((
                    i32::try_from(p.get("pid")?.as_i64()?).ok()?,
                    i32::try_from(p.get("pidversion")?.as_i64()?).ok()?,
                    u32::try_from(p.get("euid")?.as_i64()?).ok()?,
                ))
            }),
            reason: row.reason.clone(),
            lease_secs: row.lease_secs.and_then(|s| u64::try_from(s).ok()),
            approval_timeout_secs: 0,
            parent: row.parent,
        })
    }

    /// `ward actions approve <id>`: carries out a pending action whose approval has not
    /// timed out (checked again now against policy).
    pub fn approve(&mut self, id: i64, who: &str) -> Result<ActionRecord, String> {
        let row = self.pending(id)?;
        let late = row
            .approval_deadline
            .as_deref()
            .and_then(crate::clock::parse_rfc3339_ms)
            .is_some_and(|d| crate::clock::now_ms() > d);
        if late {
            self.timed_out(id).map_err(|e| e.to_string())?;
            return Err(format!(
                "action {id}'s approval had timed out: denied by default"
            ));
        }
        let req = Self::request_of(&row).ok_or("the stored action cannot be read")?;
        if !self.execute {
            return Err("this is a dry run: nothing is carried out".into());
        }
        let why = self.policy_refusal(&req.action);
        let moved = self
            .store
            .change_action_if(
                id,
                Some(&[Status::PendingApproval]),
                &ActionChange {
                    status: Some(if why.is_some() {
                        Status::Refused
                    } else {
                        Status::Running
                    }),
                    outcome: why
                        .as_ref()
                        .map(|w| Outcome::new(format!("refused: {w}")).to_json()),
                    ..ActionChange::default()
                },
                "approval",
            )
            .map_err(|e| e.to_string())?;
        if !moved {
            return Err(format!(
                "action {id} is no longer pending (decided meanwhile)"
            ));
        }
        let _ = self
            .store
            .audit("approved", serde_json::json!({"id": id, "by": who}));
        if why.is_some() {
            return self.row(id).map_err(|e| e.to_string());
        }
        self.carry_out(Some(id), &req).map_err(|e| e.to_string())
    }

    /// `ward actions deny <id>`.
    pub fn deny(&mut self, id: i64, who: &str) -> Result<ActionRecord, String> {
        self.pending(id)?;
        let moved = self
            .store
            .change_action_if(
                id,
                Some(&[Status::PendingApproval]),
                &ActionChange {
                    status: Some(Status::Denied),
                    outcome: Some(Outcome::new(format!("denied by {who}")).to_json()),
                    ..ActionChange::default()
                },
                "denial",
            )
            .map_err(|e| e.to_string())?;
        if !moved {
            return Err(format!(
                "action {id} is no longer pending (decided meanwhile)"
            ));
        }
        self.row(id).map_err(|e| e.to_string())
    }

    fn timed_out(&mut self, id: i64) -> Result<bool, StoreError> {
        self.store.change_action_if(
            id,
            Some(&[Status::PendingApproval]),
            &ActionChange {
                status: Some(Status::Denied),
                outcome: Some(Outcome::new("the approval timed out: denied by default").to_json()),
                ..ActionChange::default()
            },
            "approval-timed-out",
        )
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

    /// Another action, not yet reverted, that holds the same thing as `row` (the same
    /// isolation, tag, block or penalty box), with a later lease or none: then `row`'s
    /// lease ends without taking the thing away.
    fn still_held(&self, row: &ActionRecord) -> Result<Option<i64>, StoreError> {
        if !matches!(
            row.action.as_str(),
            "isolate-network" | "tag-device" | "block" | "jamf-penalty-box"
        ) {
            return Ok(None);
        }
        let end = |r: &ActionRecord| {
            r.lease_expires
                .as_deref()
                .and_then(crate::clock::parse_rfc3339_ms)
        };
        let mine = end(row).unwrap_or(i64::MAX);
        Ok(self
            .store
            .actions()?
            .into_iter()
            .find(|r| {
                r.id != row.id
                    && r.action == row.action
                    && r.target == row.target
                    && matches!(r.status, Status::Done | Status::Interrupted)
                    && end(r).is_none_or(|e| e > mine)
            })
            .map(|r| r.id))
    }

    /// `ward actions undo <id>`, or a lease's end (`released`). Never in a dry run.
    pub fn undo(&mut self, id: i64, who: &str, released: bool) -> Result<ActionRecord, String> {
        if !self.execute {
            return Err("this is a dry run: nothing is reverted".into());
        }
        let row = self
            .store
            .action(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no action {id}"))?;
        if !HOLDING.contains(&row.status) {
            return Err(format!("action {id} is {}: nothing to undo", row.status));
        }
        let undo: Undo = row
            .undo
            .clone()
            .and_then(|u| serde_json::from_value(u).ok())
            .ok_or_else(|| format!("action {id} ({}) cannot be undone", row.action))?;
        let held = self.still_held(&row).map_err(|e| e.to_string())?;
        let result = match held {
            Some(other) if released => Ok(Outcome::new(format!(
                "lease ended; action {other} still holds {}",
                row.target
            ))),
            _ => self.perform_undo(&undo),
        };
        let status = if released {
            Status::Released
        } else {
            Status::Undone
        };
        match result {
            Ok(outcome) => {
                let moved = self
                    .store
                    .change_action_if(
                        id,
                        Some(HOLDING),
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
                if !moved {
                    return Err(format!("action {id} was reverted meanwhile"));
                }
                self.row(id).map_err(|e| e.to_string())
            }
            Err(why) => {
                if let Err(e) = self.store.audit(
                    "undo-failed",
                    serde_json::json!({"id": id, "by": who, "error": why}),
                ) {
                    tracing::error!(error = %e, "writing the audit log");
                }
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
                let mut out = self.vault.restore(item, &self.protected)?;
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
    /// ended are released (a failed release is tried again, backing off), scheduled sweep
    /// kills run, isolation is refreshed. Nothing at all in a dry run. Returns how many
    /// rows it changed.
    pub fn tick(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        if !self.execute {
            return Ok(0);
        }
        let mut changed = 0;
        for row in self.store.due_approvals(now_ms)? {
            changed += usize::from(self.timed_out(row.id)?);
        }
        for row in self.store.due_leases(now_ms)? {
            match self.undo(row.id, "lease", true) {
                Ok(_) => {
                    self.retries.remove(&row.id);
                    changed += 1;
                }
                Err(e) => {
                    // Tried again later, backing off from 30 s to about an hour.
                    let n = self.retries.get(&row.id).copied().unwrap_or(0);
                    let wait = 30_000i64.saturating_mul(1 << n.min(7));
                    tracing::error!(action = row.id, error = %e, retry_in_ms = wait, "lease release failed");
                    self.retries.insert(row.id, n + 1);
                    self.store.change_action(
                        row.id,
                        &ActionChange {
                            lease_expires_ms: Some(Some(now_ms + wait)),
                            ..ActionChange::default()
                        },
                        "lease-retry",
                    )?;
                }
            }
        }
        for row in self.store.due_scheduled(now_ms)? {
            let Some(req) = Self::request_of(&row) else {
                continue;
            };
            let moved = self.store.change_action_if(
                row.id,
                Some(&[Status::Scheduled]),
                &ActionChange {
                    status: Some(Status::Running),
                    ..ActionChange::default()
                },
                "scheduled-due",
            )?;
            if moved {
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
        if !self.execute {
            return Ok(None);
        }
        let store = self.store.next_deadline()?;
        let refresh = self.isolated.as_ref().map(|i| i.next_refresh_ms);
        Ok([store, refresh].into_iter().flatten().min())
    }
}
