//! The response state in the state directory: one SQLite database (`ward.db`, WAL) with
//! the actions (and their undo records and leases), the incidents, the device tags, the
//! prevent-list entries ward added, and the audit log ([`crate::respond::audit`]). Every
//! change commits with its audit record in one transaction. The agent and the `ward
//! actions` / `ward incidents` / `ward audit` commands open it side by side (SQLite's
//! locking, a busy timeout); evidence bundles and the quarantine vault sit beside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use crate::respond::actions::{HostAction, Status};
use crate::respond::audit;

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory cannot be made or trusted.
    #[error("state directory {dir}: {reason}")]
    Dir {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// SQLite failed.
    #[error("state store {path}: {source}")]
    Sql {
        /// The database file.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// No such action or incident.
    #[error("{0}")]
    NotFound(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    playbook TEXT,
    incident INTEGER,
    step INTEGER,
    plugin TEXT,
    target TEXT NOT NULL,
    mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    params TEXT NOT NULL,
    finding TEXT,
    outcome TEXT,
    undo TEXT,
    lease_expires_ms INTEGER,
    deadline_ms INTEGER,
    parent INTEGER,
    lease_secs INTEGER
);
CREATE INDEX IF NOT EXISTS actions_status ON actions (status);
CREATE INDEX IF NOT EXISTS actions_incident ON actions (incident);
CREATE INDEX IF NOT EXISTS actions_created ON actions (created_ms);
CREATE INDEX IF NOT EXISTS actions_lease ON actions (lease_expires_ms) WHERE lease_expires_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS actions_deadline ON actions (deadline_ms) WHERE deadline_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    opened_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    root TEXT NOT NULL,
    first_time TEXT NOT NULL,
    last_time TEXT NOT NULL,
    severity TEXT NOT NULL,
    findings INTEGER NOT NULL,
    suppressed INTEGER NOT NULL,
    summary TEXT NOT NULL,
    bundle TEXT
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    set_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    action INTEGER
);
CREATE TABLE IF NOT EXISTS blocks (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    action INTEGER,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
";

/// An exclusive lock on a state directory, held while an agent or a replay writes it, so
/// two never mix their records (released when dropped).
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock on `dir` (created if missing), failing at once if it is held.
    pub fn take(dir: &Path) -> Result<Self, StoreError> {
        prepare_dir(dir)?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Dir {
                dir: dir.display().to_string(),
                reason: format!("lock file: {e}"),
            })?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            StoreError::Dir {
                dir: dir.display().to_string(),
                reason: "in use by another ward (a running agent or a replay); give --state another directory".into(),
            }
        })?;
        Ok(Self { _file: file })
    }
}

/// One action as `ward actions list --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActionRecord {
    /// Its id.
    pub id: i64,
    /// The kind (`kill-process`, `quarantine-file`, …, `collect`).
    pub action: String,
    /// Where it stands.
    pub status: Status,
    /// The playbook that planned it.
    pub playbook: Option<String>,
    /// The incident it belongs to.
    pub incident: Option<i64>,
    /// The step of the playbook.
    pub step: Option<i64>,
    /// The plugin that planned it (remediator, collector), if any.
    pub plugin: Option<String>,
    /// What it acts on, in words.
    pub target: String,
    /// The mode it was decided in.
    pub mode: String,
    /// Why (the plugin's reason, the refusal).
    pub reason: String,
    /// The action itself.
    pub params: serde_json::Value,
    /// The finding that led to it.
    pub finding: Option<serde_json::Value>,
    /// What happened.
    pub outcome: Option<serde_json::Value>,
    /// How to revert it (written before it ran).
    pub undo: Option<serde_json::Value>,
    /// When its lease ends (RFC 3339).
    pub lease_expires: Option<String>,
    /// When its approval times out (RFC 3339).
    pub approval_deadline: Option<String>,
    /// The action that led to this one (a sweep's kill after a block).
    pub parent: Option<i64>,
    /// Its lease, seconds, once carried out.
    pub lease_secs: Option<i64>,
    /// Created (RFC 3339).
    pub created: String,
    /// Last changed (RFC 3339).
    pub updated: String,
}

impl ActionRecord {
    /// The action, typed.
    pub fn host_action(&self) -> Option<HostAction> {
        serde_json::from_value(self.params.clone()).ok()
    }
}

/// A new action row.
#[derive(Debug, Clone, Default)]
pub struct NewAction {
    /// Status to start in.
    pub status: Option<Status>,
    /// Playbook.
    pub playbook: Option<String>,
    /// Incident.
    pub incident: Option<i64>,
    /// Step.
    pub step: Option<i64>,
    /// Plugin.
    pub plugin: Option<String>,
    /// Mode.
    pub mode: String,
    /// Reason.
    pub reason: String,
    /// The finding (summary).
    pub finding: Option<serde_json::Value>,
    /// Outcome so far.
    pub outcome: Option<serde_json::Value>,
    /// Undo record.
    pub undo: Option<serde_json::Value>,
    /// Approval deadline (ms).
    pub deadline_ms: Option<i64>,
    /// The action that led to it.
    pub parent: Option<i64>,
    /// Its lease, seconds, when it is carried out (containment only).
    pub lease_secs: Option<u64>,
}

/// A change to an action row.
#[derive(Debug, Clone, Default)]
pub struct ActionChange {
    /// New status.
    pub status: Option<Status>,
    /// New outcome.
    pub outcome: Option<serde_json::Value>,
    /// New undo record (`Some(None)` clears it).
    pub undo: Option<Option<serde_json::Value>>,
    /// New lease end (`Some(None)` clears it).
    pub lease_expires_ms: Option<Option<i64>>,
    /// New reason.
    pub reason: Option<String>,
}

/// One incident as `ward incidents --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncidentRecord {
    /// Its id.
    pub id: i64,
    /// The root of the process tree (`pid/pidversion path`).
    pub root: String,
    /// Stream time of its first finding.
    pub first_time: String,
    /// Stream time of its last finding.
    pub last_time: String,
    /// Highest severity.
    pub severity: String,
    /// Findings that matched a playbook.
    pub findings: i64,
    /// Playbook firings suppressed.
    pub suppressed: i64,
    /// Rules, techniques, processes and acts (bounded).
    pub summary: serde_json::Value,
    /// Its evidence bundle, if any.
    pub bundle: Option<String>,
    /// Opened (RFC 3339).
    pub opened: String,
    /// Last changed (RFC 3339).
    pub updated: String,
}

/// The open store.
pub struct Store {
    conn: Connection,
    dir: PathBuf,
}

/// Makes `dir` (0700) if missing, and refuses one that another user owns or others may
/// write: whoever could write it could forge undo records or the audit log.
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let err = |reason: String| StoreError::Dir {
        dir: dir.display().to_string(),
        reason,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create: {e}")))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory (symlinks are not followed)".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(err(format!(
            "owned by uid {}, not by the agent's user or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(err(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

fn rfc(ms: i64) -> String {
    crate::clock::rfc3339_of_ms(ms)
}

fn json_col(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

const ACTION_COLUMNS: &str = "id, kind, status, playbook, incident, step, plugin, target, mode, \
     reason, params, finding, outcome, undo, lease_expires_ms, deadline_ms, parent, created_ms, \
     updated_ms, lease_secs";

fn action_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRecord> {
    let status: String = r.get(2)?;
    let params: String = r.get(10)?;
    Ok(ActionRecord {
        id: r.get(0)?,
        action: r.get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        playbook: r.get(3)?,
        incident: r.get(4)?,
        step: r.get(5)?,
        plugin: r.get(6)?,
        target: r.get(7)?,
        mode: r.get(8)?,
        reason: r.get(9)?,
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        finding: json_col(r.get(11)?),
        outcome: json_col(r.get(12)?),
        undo: json_col(r.get(13)?),
        lease_expires: r.get::<_, Option<i64>>(14)?.map(rfc),
        approval_deadline: r.get::<_, Option<i64>>(15)?.map(rfc),
        parent: r.get(16)?,
        created: rfc(r.get(17)?),
        updated: rfc(r.get(18)?),
        lease_secs: r.get(19)?,
    })
}

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRecord> {
    Ok(IncidentRecord {
        id: r.get(0)?,
        root: r.get(1)?,
        first_time: r.get(2)?,
        last_time: r.get(3)?,
        severity: r.get(4)?,
        findings: r.get(5)?,
        suppressed: r.get(6)?,
        summary: json_col(r.get(7)?).unwrap_or(serde_json::Value::Null),
        bundle: r.get(8)?,
        opened: rfc(r.get(9)?),
        updated: rfc(r.get(10)?),
    })
}

/// Opens (creating) the SQLite file at `path` the way the agent's stores are kept:
/// owner-only, WAL, a 10 s busy timeout, `synchronous` as given (`FULL` for the state
/// store, `NORMAL` for the outbox).
pub(crate) fn open_db(path: &Path, synchronous: &str) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sql {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(sql)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(sql)?;
    Ok(conn)
}

/// Opens the SQLite file at `path` read-only, with the same busy timeout (a reader beside
/// the agent's writes).
pub(crate) fn open_db_read_only(path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sql {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    Ok(conn)
}

impl Store {
    /// Opens an existing store read-only (`ward audit verify` changes nothing it checks).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let conn = open_db_read_only(&dir.join("ward.db"))?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        prepare_dir(dir)?;
        let path = dir.join("ward.db");
        let sql = |source| StoreError::Sql {
            path: path.display().to_string(),
            source,
        };
        let conn = open_db(&path, "FULL")?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(audit::SCHEMA).map_err(sql)?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.dir.join("ward.db").display().to_string(),
            source,
        }
    }

    /// Runs `f` in one immediate transaction (the write lock taken at once, so two
    /// processes never interleave an audit append).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.sql(e))
    }

    /// Appends an audit record on its own.
    pub fn audit(&mut self, kind: &str, record: serde_json::Value) -> Result<i64, StoreError> {
        self.write(|tx| audit::append(tx, kind, &record))
    }

    /// Records a new action (and its audit record); returns its id.
    pub fn insert_action(
        &mut self,
        action: &HostAction,
        new: &NewAction,
    ) -> Result<i64, StoreError> {
        let now = crate::clock::now_ms();
        let status = new.status.unwrap_or(Status::Running);
        let params = serde_json::to_string(action).unwrap_or_default();
        let target = action.target();
        let kind = action.kind();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO actions (created_ms, updated_ms, kind, status, playbook, incident,
                 step, plugin, target, mode, reason, params, finding, outcome, undo, deadline_ms,
                 parent, lease_secs) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                 ?13, ?14, ?15, ?16, ?17)",
                params![
                    now,
                    kind,
                    status.as_str(),
                    new.playbook,
                    new.incident,
                    new.step,
                    new.plugin,
                    target,
                    new.mode,
                    new.reason,
                    params,
                    new.finding.as_ref().map(|v| v.to_string()),
                    new.outcome.as_ref().map(|v| v.to_string()),
                    new.undo.as_ref().map(|v| v.to_string()),
                    new.deadline_ms,
                    new.parent,
                    new.lease_secs.and_then(|s| i64::try_from(s).ok()),
                ],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                tx,
                "action",
                &serde_json::json!({
                    "id": id,
                    "action": kind,
                    "status": status.as_str(),
                    "playbook": new.playbook,
                    "incident": new.incident,
                    "plugin": new.plugin,
                    "mode": new.mode,
                    "target": target,
                    "reason": new.reason,
                    "params": action,
                    "finding": new.finding,
                    "outcome": new.outcome,
                    "undo": new.undo,
                    "parent": new.parent,
                }),
            )?;
            Ok(id)
        })
    }

    /// Changes an action (and audits the change).
    pub fn change_action(
        &mut self,
        id: i64,
        change: &ActionChange,
        audit_kind: &str,
    ) -> Result<(), StoreError> {
        self.change_action_if(id, None, change, audit_kind)
            .map(|_| ())
    }

    /// Changes an action only while it is in one of `from` (any status when `None`), in
    /// one transaction with its audit record: false, and nothing written, when another
    /// process moved it on first (a race between the agent and `ward actions`, or a
    /// timeout and an approval).
    pub fn change_action_if(
        &mut self,
        id: i64,
        from: Option<&[Status]>,
        change: &ActionChange,
        audit_kind: &str,
    ) -> Result<bool, StoreError> {
        let now = crate::clock::now_ms();
        self.write(|tx| {
            let current: Option<String> = tx
                .query_row(
                    "SELECT status FROM actions WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(current) = current else {
                return Ok(false);
            };
            if let Some(from) = from
                && !from.iter().any(|s| s.as_str() == current)
            {
                return Ok(false);
            }
            if let Some(s) = change.status {
                tx.execute(
                    "UPDATE actions SET status = ?2 WHERE id = ?1",
                    params![id, s.as_str()],
                )?;
            }
            if let Some(o) = &change.outcome {
                tx.execute(
                    "UPDATE actions SET outcome = ?2 WHERE id = ?1",
                    params![id, o.to_string()],
                )?;
            }
            if let Some(u) = &change.undo {
                tx.execute(
                    "UPDATE actions SET undo = ?2 WHERE id = ?1",
                    params![id, u.as_ref().map(|v| v.to_string())],
                )?;
            }
            if let Some(l) = change.lease_expires_ms {
                tx.execute(
                    "UPDATE actions SET lease_expires_ms = ?2 WHERE id = ?1",
                    params![id, l],
                )?;
            }
            if let Some(r) = &change.reason {
                tx.execute(
                    "UPDATE actions SET reason = ?2 WHERE id = ?1",
                    params![id, r],
                )?;
            }
            tx.execute(
                "UPDATE actions SET updated_ms = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            audit::append(
                tx,
                audit_kind,
                &serde_json::json!({
                    "id": id,
                    "from": current,
                    "status": change.status.map(Status::as_str),
                    "outcome": change.outcome,
                    "undo": change.undo,
                    "lease_expires": change.lease_expires_ms.map(|l| l.map(rfc)),
                    "reason": change.reason,
                }),
            )?;
            Ok(true)
        })
    }

    /// One action.
    pub fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {ACTION_COLUMNS} FROM actions WHERE id = ?1"),
                params![id],
                action_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    fn actions_where(
        &self,
        clause: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let run = || -> rusqlite::Result<Vec<ActionRecord>> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {ACTION_COLUMNS} FROM actions {clause} ORDER BY id"
            ))?;
            let rows = stmt.query_map(values, action_row)?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// Every action, oldest first.
    pub fn actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        self.actions_where("", &[])
    }

    /// Actions in `status`.
    pub fn actions_in(&self, status: Status) -> Result<Vec<ActionRecord>, StoreError> {
        self.actions_where("WHERE status = ?1", &[&status.as_str()])
    }

    /// Actions whose lease ended by `now_ms` and that still hold something.
    pub fn due_leases(&self, now_ms: i64) -> Result<Vec<ActionRecord>, StoreError> {
        self.actions_where(
            "WHERE lease_expires_ms IS NOT NULL AND lease_expires_ms <= ?1 AND status IN ('done', 'interrupted', 'failed') AND undo IS NOT NULL",
            &[&now_ms],
        )
    }

    /// The next lease end or approval deadline after now, if any (ms).
    pub fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(t) FROM (
                    SELECT lease_expires_ms AS t FROM actions
                        WHERE lease_expires_ms IS NOT NULL AND undo IS NOT NULL
                        AND status IN ('done', 'interrupted', 'failed')
                    UNION ALL
                    SELECT deadline_ms AS t FROM actions
                        WHERE deadline_ms IS NOT NULL AND status IN ('pending-approval', 'scheduled'))",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Approvals whose deadline passed by `now_ms`.
    pub fn due_approvals(&self, now_ms: i64) -> Result<Vec<ActionRecord>, StoreError> {
        self.actions_where(
            "WHERE status = 'pending-approval' AND deadline_ms IS NOT NULL AND deadline_ms <= ?1",
            &[&now_ms],
        )
    }

    /// Scheduled actions whose time came by `now_ms`.
    pub fn due_scheduled(&self, now_ms: i64) -> Result<Vec<ActionRecord>, StoreError> {
        self.actions_where(
            "WHERE status = 'scheduled' AND deadline_ms IS NOT NULL AND deadline_ms <= ?1",
            &[&now_ms],
        )
    }

    /// Changes carried out (or under way) since `since_ms`, optionally of one incident:
    /// for the blast-radius limits. Evidence, notices and tags change nothing on the Mac
    /// and failed attempts changed nothing: neither counts.
    pub fn count_acted(&self, since_ms: i64, incident: Option<i64>) -> Result<i64, StoreError> {
        let acted = "('running', 'done', 'interrupted', 'undone', 'released') \
                     AND kind NOT IN ('notify', 'tag-device')";
        let result = match incident {
            Some(i) => self.conn.query_row(
                &format!(
                    "SELECT COUNT(*) FROM actions WHERE status IN {acted} AND incident = ?1 AND kind != 'collect'"
                ),
                params![i],
                |r| r.get(0),
            ),
            None => self.conn.query_row(
                &format!(
                    "SELECT COUNT(*) FROM actions WHERE status IN {acted} AND created_ms >= ?1 AND kind != 'collect'"
                ),
                params![since_ms],
                |r| r.get(0),
            ),
        };
        result.map_err(|e| self.sql(e))
    }

    /// Opens an incident; returns its id.
    pub fn open_incident(
        &mut self,
        root: &str,
        time: &str,
        severity: &str,
        summary: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let now = crate::clock::now_ms();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO incidents (opened_ms, updated_ms, root, first_time, last_time,
                 severity, findings, suppressed, summary) VALUES (?1, ?1, ?2, ?3, ?3, ?4, 1, 0, ?5)",
                params![now, root, time, severity, summary.to_string()],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(
                tx,
                "incident-opened",
                &serde_json::json!({"id": id, "root": root, "time": time, "severity": severity, "summary": summary}),
            )?;
            Ok(id)
        })
    }

    /// Updates an incident's counters and summary (not audited: the decisions are).
    #[allow(clippy::too_many_arguments)]
    pub fn update_incident(
        &mut self,
        id: i64,
        last_time: &str,
        severity: &str,
        findings: i64,
        suppressed: i64,
        summary: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        self.conn
            .execute(
                "UPDATE incidents SET updated_ms = ?2, last_time = ?3, severity = ?4, findings = ?5,
                 suppressed = ?6, summary = ?7 WHERE id = ?1",
                params![id, now, last_time, severity, findings, suppressed, summary.to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Records an incident's evidence bundle.
    pub fn set_bundle(&mut self, id: i64, bundle: &Path) -> Result<(), StoreError> {
        let shown = bundle.display().to_string();
        self.write(|tx| {
            tx.execute(
                "UPDATE incidents SET bundle = ?2 WHERE id = ?1",
                params![id, shown],
            )?;
            Ok(())
        })
    }

    /// Every incident, oldest first.
    pub fn incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        let run = || -> rusqlite::Result<Vec<IncidentRecord>> {
            let mut stmt = self.conn.prepare(
                "SELECT id, root, first_time, last_time, severity, findings, suppressed, summary,
                 bundle, opened_ms, updated_ms FROM incidents ORDER BY id",
            )?;
            let rows = stmt.query_map([], incident_row)?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// One incident.
    pub fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, root, first_time, last_time, severity, findings, suppressed, summary,
                 bundle, opened_ms, updated_ms FROM incidents WHERE id = ?1",
                params![id],
                incident_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Sets a device tag until `expires_ms` (none: until cleared).
    pub fn set_tag(
        &mut self,
        name: &str,
        expires_ms: Option<i64>,
        action: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tags (name, set_ms, expires_ms, action) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET set_ms = excluded.set_ms,
                 expires_ms = excluded.expires_ms, action = excluded.action",
                params![name, now, expires_ms, action],
            )?;
            audit::append(
                tx,
                "tag-set",
                &serde_json::json!({"tag": name, "expires": expires_ms.map(rfc), "action": action}),
            )?;
            Ok(())
        })
    }

    /// Clears a device tag.
    pub fn clear_tag(&mut self, name: &str, why: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM tags WHERE name = ?1", params![name])?;
            if n > 0 {
                audit::append(
                    tx,
                    "tag-cleared",
                    &serde_json::json!({"tag": name, "why": why}),
                )?;
            }
            Ok(n > 0)
        })
    }

    /// The device's tags at `now_ms` (expired ones are left out).
    pub fn tags(&self, now_ms: i64) -> Result<BTreeSet<String>, StoreError> {
        let run = || -> rusqlite::Result<BTreeSet<String>> {
            let mut stmt = self
                .conn
                .prepare("SELECT name FROM tags WHERE expires_ms IS NULL OR expires_ms > ?1")?;
            let rows = stmt.query_map(params![now_ms], |r| r.get::<_, String>(0))?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// Adds a prevent-list entry; false if it was there already.
    pub fn add_block(
        &mut self,
        kind: &str,
        value: &str,
        action: Option<i64>,
    ) -> Result<bool, StoreError> {
        let now = crate::clock::now_ms();
        self.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO blocks (kind, value, action, added_ms) VALUES (?1, ?2, ?3, ?4)",
                params![kind, value, action, now],
            )?;
            Ok(n > 0)
        })
    }

    /// Removes a prevent-list entry; false if it was not there.
    pub fn remove_block(&mut self, kind: &str, value: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM blocks WHERE kind = ?1 AND value = ?2",
                params![kind, value],
            )?;
            Ok(n > 0)
        })
    }

    /// Every prevent-list entry ward added: (kind, value).
    pub fn blocks(&self) -> Result<Vec<(String, String)>, StoreError> {
        let run = || -> rusqlite::Result<Vec<(String, String)>> {
            let mut stmt = self
                .conn
                .prepare("SELECT kind, value FROM blocks ORDER BY kind, value")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// Verifies the audit chain.
    pub fn verify_audit(&self) -> Result<audit::Verdict, StoreError> {
        audit::verify(&self.conn).map_err(|e| self.sql(e))
    }

    /// Every audit record.
    pub fn audit_records(&self) -> Result<Vec<audit::AuditRecord>, StoreError> {
        audit::list(&self.conn).map_err(|e| self.sql(e))
    }

    /// Up to `limit` audit records after `seq`.
    pub fn audit_after(&self, seq: i64, limit: i64) -> Result<Vec<audit::AuditRecord>, StoreError> {
        audit::after(&self.conn, seq, limit).map_err(|e| self.sql(e))
    }
}
