//! The outbox: every finding the agent produces is committed to an SQLite database in the
//! state directory (`outbox.db`, WAL) before it counts as produced — before it is printed,
//! offered to the response stage or handed to a sink. Each sink reads it with a cursor of
//! its own and advances the cursor only after delivery, so delivery is at least once; each
//! record carries an idempotency key (`id`) that is the same however often the agent
//! re-reads the event that caused it, so receivers can de-duplicate.
//!
//! The outbox is bounded (records and bytes). Past a bound it first prunes what every sink
//! has delivered, oldest first; if that is not enough it drops undelivered records, the
//! least severe first and, within one severity, the oldest first. Drops are counted per
//! severity in the database, returned to the caller and logged, never silent.
//!
//! Durability: `synchronous = NORMAL` in WAL mode: a committed record survives the agent
//! being killed at any point (SIGKILL, a crash); a power loss may take the last commits.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use crate::forward::finding::FindingRecord;
pub use crate::ingest::follow::Checkpoint;
use crate::respond::store::{StoreError, prepare_dir};

/// The database file in the state directory.
pub const FILE: &str = "outbox.db";

/// Records kept by default.
pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;
/// Bytes of record bodies kept by default.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// Severity names, least severe first: their index is the stored rank.
pub const SEVERITIES: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// The rank of a severity name (unknown names rank as informational).
pub fn severity_rank(name: &str) -> u8 {
    SEVERITIES
        .iter()
        .position(|s| *s == name)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity INTEGER NOT NULL,
    rule TEXT NOT NULL,
    plugin TEXT NOT NULL,
    time TEXT NOT NULL,
    time_ms INTEGER,
    global_seq_num INTEGER,
    body TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_severity ON records (severity, seq);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_commands (
    id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records kept.
    pub max_records: u64,
    /// Most bytes of record bodies kept.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// Idempotency key.
    pub id: String,
    /// `finding` (later: `incident`, `action`).
    pub kind: &'static str,
    /// Severity name.
    pub severity: String,
    /// Rule id.
    pub rule: String,
    /// Plugin name.
    pub plugin: String,
    /// Time of the event (RFC 3339).
    pub time: String,
    /// Of the triggering event.
    pub global_seq_num: Option<u64>,
    /// The record's JSON object (the finding line).
    pub body: String,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredRecord {
    /// Position in the outbox (grows; never reused).
    pub seq: i64,
    /// Idempotency key.
    pub id: String,
    /// Record kind.
    pub kind: String,
    /// Severity name.
    pub severity: &'static str,
    /// Rule id.
    pub rule: String,
    /// Plugin name.
    pub plugin: String,
    /// Event time.
    pub time: String,
    /// Of the triggering event.
    pub global_seq_num: Option<i64>,
    /// The record's JSON object.
    pub body: String,
}

impl StoredRecord {
    /// The record's JSON object with its `id` (and outbox `seq`) first: what `ward alerts
    /// list --json` prints and the `ward` format sends.
    pub fn json_line(&self) -> String {
        let rest = self.body.strip_prefix('{').unwrap_or("}");
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        format!(
            "{{\"id\":{},\"seq\":{},\"kind\":{}{sep}{rest}",
            serde_json::Value::String(self.id.clone()),
            self.seq,
            serde_json::Value::String(self.kind.clone()),
        )
    }
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// New records stored.
    pub inserted: usize,
    /// Records whose key was already stored (a re-read event): not stored twice.
    pub duplicates: usize,
    /// Delivered records pruned to stay within bounds.
    pub pruned: u64,
    /// Undelivered records dropped to stay within bounds, by severity rank.
    pub dropped: [u64; 5],
    /// For each record given, whether it was new (false: its key was already stored).
    pub fresh: Vec<bool>,
}

impl Appended {
    /// Undelivered records dropped, in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Totals for metrics and `ward alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Records held.
    pub records: u64,
    /// Bytes of bodies held.
    pub bytes: u64,
    /// Highest sequence number stored.
    pub head: i64,
    /// Undelivered records dropped since the outbox was made, by severity name.
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Delivered records pruned.
    pub pruned: u64,
    /// Appends whose key was already stored.
    pub duplicates: u64,
    /// Each sink's cursor.
    pub cursors: std::collections::BTreeMap<String, i64>,
}

/// What `ward alerts list` asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Events at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At least this severity rank.
    pub min_severity: Option<u8>,
    /// Exactly this rule.
    pub rule: Option<String>,
    /// Exactly this plugin.
    pub plugin: Option<String>,
    /// Only this kind of record (`finding`, `audit`); all when `None`.
    pub kind: Option<String>,
    /// Most records (the newest that match, printed oldest first).
    pub limit: usize,
}

/// The outbox.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    device: String,
    limits: Limits,
    /// The sinks that read it (their cursors bound what may be pruned).
    sinks: Vec<String>,
    /// Rung after each commit that stored something.
    bell: Option<Bell>,
}

/// Wakes the sinks when records are committed (they also look every few seconds).
#[derive(Debug, Clone, Default)]
pub struct Bell(std::sync::Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>);

impl Bell {
    /// Says something was committed.
    pub fn ring(&self) {
        let (count, cv) = &*self.0;
        let mut n = count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n = n.wrapping_add(1);
        cv.notify_all();
    }

    /// The number of rings so far.
    pub fn rung(&self) -> u64 {
        *self
            .0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until it rings after `seen` rings, or `timeout` passes; returns the count.
    pub fn wait(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let (count, cv) = &*self.0;
        let guard = count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |n| *n == seen)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish()
    }
}

/// The writer's side of the outbox: findings committed with, for a source that can
/// resume, the place in it they complete.
pub struct Committer {
    /// The outbox.
    pub outbox: Outbox,
    /// The source's checkpoint name and how to turn a stream position into a place.
    pub source: Option<(String, std::sync::Arc<crate::ingest::follow::Locator>)>,
    /// Findings that could not be committed (a full disk, a broken store), and the last
    /// reason: said at exit, never silent.
    pub failed: std::sync::Arc<Failed>,
}

/// Findings the outbox could not take.
#[derive(Debug, Default)]
pub struct Failed {
    /// How many.
    pub findings: std::sync::atomic::AtomicU64,
    /// The last reason.
    pub reason: std::sync::Mutex<String>,
}

impl Failed {
    /// One line for the summary, if any failed.
    pub fn summary(&self) -> Option<String> {
        let n = self.findings.load(std::sync::atomic::Ordering::Relaxed);
        (n > 0).then(|| {
            format!(
                "{n} finding(s) not committed to the outbox (they were still written to stdout): {}",
                self.reason
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            )
        })
    }
}

impl Committer {
    /// Findings only (no checkpoint: a replay, stdin, a file read once).
    pub fn new(outbox: Outbox) -> Self {
        Self {
            outbox,
            source: None,
            failed: std::sync::Arc::default(),
        }
    }

    /// Commits `findings` and, when `covered` says how far the source has been handled,
    /// its checkpoint, in one transaction. Nothing to commit, nothing done.
    /// `lines` are the findings rendered (`FindingRecord::to_json_line`), one each.
    pub fn commit(
        &mut self,
        findings: &[FindingRecord],
        lines: &[String],
        covered: Option<u64>,
    ) -> Result<Appended, StoreError> {
        let at = match (&self.source, covered) {
            (Some((name, locator)), Some(stream)) => {
                locator.locate(stream).map(|cp| (name.as_str(), cp))
            }
            _ => None,
        };
        if findings.is_empty() && at.is_none() {
            return Ok(Appended::default());
        }
        let records = finding_records(&self.outbox.device, findings, Some(lines));
        let result = self.outbox.append_at(&records, at);
        if let Err(e) = &result {
            self.failed
                .findings
                .fetch_add(findings.len() as u64, std::sync::atomic::Ordering::Relaxed);
            *self
                .failed
                .reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = e.to_string();
        }
        result
    }
}

/// The idempotency key of the `ordinal`-th finding by `plugin` for `rule` about one event
/// on `device`: the same whenever the same event is handled again, so a receiver can
/// de-duplicate what an at-least-once delivery sends twice.
pub fn finding_key(device: &str, f: &FindingRecord, ordinal: usize) -> String {
    let mut h = Sha256::new();
    for part in [device, f.plugin.as_str(), f.rule.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    match f.global_seq_num {
        Some(n) => h.update(format!("gsn:{n}")),
        None => h.update(format!(
            "t:{}:{}:{}:{}",
            f.time, f.process.pid, f.process.pidversion, f.event_type
        )),
    }
    h.update([0]);
    h.update(ordinal.to_le_bytes());
    let digest = h.finalize();
    hex::encode(digest.get(..16).unwrap_or(&digest))
}

/// The records for `findings` (in order), each with its key; identical (plugin, rule,
/// event) triples are numbered in order so each gets a key of its own. `lines`, when
/// given, are the findings already rendered (one each).
pub fn finding_records(
    device: &str,
    findings: &[FindingRecord],
    lines: Option<&[String]>,
) -> Vec<NewRecord> {
    let mut seen: std::collections::HashMap<(&str, &str, Option<u64>, &str), usize> =
        std::collections::HashMap::new();
    findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let n = seen
                .entry((
                    f.plugin.as_str(),
                    f.rule.as_str(),
                    f.global_seq_num,
                    f.time.as_str(),
                ))
                .or_insert(0);
            let ordinal = *n;
            *n += 1;
            NewRecord {
                id: finding_key(device, f, ordinal),
                kind: "finding",
                severity: f.severity.to_owned(),
                rule: f.rule.clone(),
                plugin: f.plugin.clone(),
                time: f.time.clone(),
                global_seq_num: f.global_seq_num,
                body: lines
                    .and_then(|l| l.get(i))
                    .cloned()
                    .unwrap_or_else(|| f.to_json_line()),
            }
        })
        .collect()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let rank: i64 = r.get(3)?;
    Ok(StoredRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        severity: usize::try_from(rank)
            .ok()
            .and_then(|i| SEVERITIES.get(i).copied())
            .unwrap_or("informational"),
        rule: r.get(4)?,
        plugin: r.get(5)?,
        time: r.get(6)?,
        global_seq_num: r.get(7)?,
        body: r.get(8)?,
    })
}

const COLUMNS: &str = "seq, id, kind, severity, rule, plugin, time, global_seq_num, body";

impl Outbox {
    /// Opens (creating) the outbox in `dir` for a device, read by `sinks`.
    pub fn open(
        dir: &Path,
        device: &str,
        limits: Limits,
        sinks: &[String],
    ) -> Result<Self, StoreError> {
        prepare_dir(dir)?;
        let path = dir.join(FILE);
        let sql = |source| StoreError::Sql {
            path: path.display().to_string(),
            source,
        };
        let conn = crate::respond::store::open_db(&path, "NORMAL")?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        // The running totals, recounted once (a file from an older agent, or edited).
        conn.execute_batch(
            "INSERT OR REPLACE INTO counters (name, value) \
             SELECT 'held_records', count(*) FROM records; \
             INSERT OR REPLACE INTO counters (name, value) \
             SELECT 'held_bytes', coalesce(sum(bytes), 0) FROM records;",
        )
        .map_err(sql)?;
        Ok(Self {
            conn,
            path,
            device: device.to_owned(),
            limits,
            sinks: sinks.to_vec(),
            bell: None,
        })
    }

    /// Rings `bell` after each commit that stores something.
    pub fn with_bell(mut self, bell: Bell) -> Self {
        self.bell = Some(bell);
        self
    }

    /// Opens an existing outbox read-only (`ward alerts`, with the agent running or not).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(format!(
                "{} holds no outbox ({FILE}): no finding has been recorded there",
                dir.display()
            )));
        }
        let conn = crate::respond::store::open_db_read_only(&path)?;
        Ok(Self {
            conn,
            path,
            device: String::new(),
            limits: Limits::default(),
            sinks: Vec::new(),
            bell: None,
        })
    }

    /// The device its keys are made for.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Commits `findings` (one transaction), returning what it stored, skipped as already
    /// stored, pruned and dropped.
    pub fn append_findings(&mut self, findings: &[FindingRecord]) -> Result<Appended, StoreError> {
        let records = finding_records(&self.device, findings, None);
        self.append(&records)
    }

    /// Commits `records` in one transaction, then keeps the bounds.
    pub fn append(&mut self, records: &[NewRecord]) -> Result<Appended, StoreError> {
        self.append_at(records, None)
    }

    /// Where `source` was when the agent last committed: every line before it has been
    /// handled and its findings committed.
    pub fn checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.conn
            .query_row(
                "SELECT dev, ino, offset FROM checkpoints WHERE source = ?1",
                params![source],
                |r| {
                    Ok(Checkpoint {
                        dev: r.get::<_, i64>(0)?.cast_unsigned(),
                        ino: r.get::<_, i64>(1)?.cast_unsigned(),
                        offset: r.get::<_, i64>(2)?.cast_unsigned(),
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Commits `records` and, in the same transaction, `source`'s checkpoint: the records
    /// of every line before it are in, so a restart that resumes there loses none.
    pub fn append_at(
        &mut self,
        records: &[NewRecord],
        checkpoint: Option<(&str, Checkpoint)>,
    ) -> Result<Appended, StoreError> {
        let limits = self.limits;
        let sinks = self.sinks.clone();
        let now = crate::clock::now_ms();
        let result = (|| -> rusqlite::Result<Appended> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut out = Appended::default();
            let mut added_bytes = 0i64;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO records (id, kind, severity, rule, plugin, time, \
                     time_ms, global_seq_num, body, bytes, stored_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for r in records {
                    let changed = insert.execute(params![
                        r.id,
                        r.kind,
                        severity_rank(&r.severity),
                        r.rule,
                        r.plugin,
                        r.time,
                        crate::clock::parse_rfc3339_ms(&r.time),
                        r.global_seq_num.and_then(|n| i64::try_from(n).ok()),
                        r.body,
                        r.body.len() as i64,
                        now,
                    ])?;
                    out.fresh.push(changed == 1);
                    if changed == 1 {
                        out.inserted += 1;
                        added_bytes += r.body.len() as i64;
                    } else {
                        out.duplicates += 1;
                    }
                }
            }
            if out.duplicates > 0 {
                bump(&tx, "duplicates", out.duplicates as u64)?;
            }
            add_held(&tx, out.inserted as i64, added_bytes)?;
            if let Some((source, at)) = checkpoint {
                tx.execute(
                    "INSERT INTO checkpoints (source, dev, ino, offset, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source) DO UPDATE SET \
                     dev = excluded.dev, ino = excluded.ino, offset = excluded.offset, \
                     updated_ms = excluded.updated_ms",
                    params![
                        source,
                        at.dev.cast_signed(),
                        at.ino.cast_signed(),
                        at.offset.cast_signed(),
                        now
                    ],
                )?;
            }
            keep_bounds(&tx, limits, &sinks, &mut out)?;
            tx.commit()?;
            Ok(out)
        })();
        let out = result.map_err(|e| self.sql(e))?;
        if out.inserted > 0
            && let Some(bell) = &self.bell
        {
            bell.ring();
        }
        if out.dropped_total() > 0 {
            tracing::warn!(
                dropped = out.dropped_total(),
                informational = out.dropped[0],
                low = out.dropped[1],
                medium = out.dropped[2],
                high = out.dropped[3],
                critical = out.dropped[4],
                "outbox full: undelivered records dropped, least severe and oldest first"
            );
        }
        Ok(out)
    }

    /// The last audit record of the response store already in the outbox.
    pub fn audit_forwarded(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM counters WHERE name = 'audit_forwarded'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.sql(e))
    }

    /// Commits audit records of the response store (action outcomes, incidents opened,
    /// fleet commands, …) as `audit` records, with how far they go, in one transaction:
    /// each is in the outbox once. Their key is `audit-` and the record's chain hash.
    pub fn append_audit(
        &mut self,
        records: &[crate::respond::audit::AuditRecord],
    ) -> Result<Appended, StoreError> {
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(Appended::default());
        };
        let new: Vec<NewRecord> = records
            .iter()
            .map(|r| {
                let failed = r
                    .record
                    .get("status")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| matches!(s, "failed" | "interrupted" | "refused"));
                NewRecord {
                    id: format!("audit-{}", r.hash.get(..32).unwrap_or(&r.hash)),
                    kind: "audit",
                    severity: if failed { "medium" } else { "low" }.into(),
                    rule: r.kind.clone(),
                    plugin: "ward".into(),
                    time: r.time.clone(),
                    global_seq_num: None,
                    body: serde_json::json!({
                        "rule": r.kind,
                        "plugin": "ward",
                        "severity": if failed { "medium" } else { "low" },
                        "global_seq_num": null,
                        "audit_seq": r.seq,
                        "audit_kind": r.kind,
                        "time": r.time,
                        "record": r.record,
                        "hash": r.hash,
                        "prev": r.prev,
                    })
                    .to_string(),
                }
            })
            .collect();
        let out = self.append(&new)?;
        // The position moves in a transaction of its own after the records: a crash
        // between the two sends the same records again, with the same keys (stored once).
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES ('audit_forwarded', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                params![last],
            )
            .map_err(|e| self.sql(e))?;
        Ok(out)
    }

    /// True the first time fleet command `id` is seen here (it is remembered); false
    /// after, and when the store cannot say (a command is not run twice on doubt).
    pub fn first_time(&self, id: &str) -> bool {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO fleet_commands (id, at_ms) VALUES (?1, ?2)",
                params![id, crate::clock::now_ms()],
            )
            .map(|n| n == 1)
            .unwrap_or(false)
    }

    /// Up to `limit` records after `seq`, oldest first.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<StoredRecord>, StoreError> {
        let run = || -> rusqlite::Result<Vec<StoredRecord>> {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![seq, limit as i64], row)?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// A sink's cursor: the last sequence number it delivered (0 before any).
    pub fn cursor(&self, sink: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT seq FROM cursors WHERE sink = ?1",
                params![sink],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.sql(e))
    }

    /// Moves a sink's cursor to `seq` (it delivered everything up to it).
    pub fn advance(&mut self, sink: &str, seq: i64) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        self.conn
            .execute(
                "INSERT INTO cursors (sink, seq, updated_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq), \
                 updated_ms = excluded.updated_ms",
                params![sink, seq, now],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The newest records matching `q`, oldest first.
    pub fn query(&self, q: &Query) -> Result<Vec<StoredRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM records WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(since) = q.since_ms {
            sql.push_str(" AND time_ms >= ?");
            args.push(since.into());
        }
        if let Some(min) = q.min_severity {
            sql.push_str(" AND severity >= ?");
            args.push(i64::from(min).into());
        }
        if let Some(rule) = &q.rule {
            sql.push_str(" AND rule = ?");
            args.push(rule.clone().into());
        }
        if let Some(plugin) = &q.plugin {
            sql.push_str(" AND plugin = ?");
            args.push(plugin.clone().into());
        }
        if let Some(kind) = &q.kind {
            sql.push_str(" AND kind = ?");
            args.push(kind.clone().into());
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
        let run = || -> rusqlite::Result<Vec<StoredRecord>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row)?;
            let mut out: Vec<StoredRecord> = rows.collect::<rusqlite::Result<_>>()?;
            out.reverse();
            Ok(out)
        };
        run().map_err(|e| self.sql(e))
    }

    /// One record by key or sequence number.
    pub fn get(&self, key: &str) -> Result<Option<StoredRecord>, StoreError> {
        let by_seq = key.parse::<i64>().ok();
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM records WHERE id = ?1 OR seq = ?2"),
                params![key, by_seq],
                row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Totals.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let run = || -> rusqlite::Result<Stats> {
            let (records, bytes, head): (i64, i64, i64) = self.conn.query_row(
                "SELECT count(*), coalesce(sum(bytes), 0), coalesce(max(seq), 0) FROM records",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let mut stats = Stats {
                records: records.unsigned_abs(),
                bytes: bytes.unsigned_abs(),
                head,
                ..Stats::default()
            };
            let mut stmt = self.conn.prepare("SELECT name, value FROM counters")?;
            for item in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (name, value) = item?;
                let value = value.unsigned_abs();
                if let Some(severity) = name.strip_prefix("dropped_") {
                    if let Some(s) = SEVERITIES.iter().find(|s| **s == severity) {
                        stats.dropped.insert(s, value);
                    }
                } else if name == "pruned" {
                    stats.pruned = value;
                } else if name == "duplicates" {
                    stats.duplicates = value;
                }
            }
            let mut stmt = self.conn.prepare("SELECT sink, seq FROM cursors")?;
            for item in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (sink, seq) = item?;
                stats.cursors.insert(sink, seq);
            }
            Ok(stats)
        };
        run().map_err(|e| self.sql(e))
    }
}

fn bump(tx: &rusqlite::Transaction<'_>, name: &str, by: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, i64::try_from(by).unwrap_or(i64::MAX)],
    )
    .map(drop)
}

/// Records looked at per step while keeping the bounds.
const PRUNE_STEP: i64 = 512;

/// The records and bytes held, kept in `counters` in the same transaction as each change
/// (so keeping the bounds never counts the whole table).
fn held(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<(u64, u64)> {
    let get = |name: &str| -> rusqlite::Result<u64> {
        tx.query_row(
            "SELECT value FROM counters WHERE name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0).unsigned_abs())
    };
    Ok((get("held_records")?, get("held_bytes")?))
}

fn add_held(tx: &rusqlite::Transaction<'_>, records: i64, bytes: i64) -> rusqlite::Result<()> {
    for (name, by) in [("held_records", records), ("held_bytes", bytes)] {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = max(0, value + excluded.value)",
            params![name, by],
        )?;
    }
    Ok(())
}

/// Removes, oldest first, the records `filter` selects until the outbox is within
/// `limits` or none is left; returns how many it removed.
fn remove_until_within(
    tx: &rusqlite::Transaction<'_>,
    limits: Limits,
    filter: &str,
    arg: i64,
) -> rusqlite::Result<u64> {
    let mut removed = 0u64;
    loop {
        let (mut n, mut b) = held(tx)?;
        if n <= limits.max_records && b <= limits.max_bytes {
            return Ok(removed);
        }
        let rows: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT seq, bytes FROM records WHERE {filter} ORDER BY seq LIMIT ?2"
            ))?;
            stmt.query_map(params![arg, PRUNE_STEP], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let Some(&(first, _)) = rows.first() else {
            return Ok(removed);
        };
        // Just enough of this step's rows to get within the bounds.
        let mut last = first;
        let (mut count, mut bytes) = (0i64, 0i64);
        for (seq, size) in rows {
            if n <= limits.max_records && b <= limits.max_bytes {
                break;
            }
            last = seq;
            count += 1;
            bytes += size;
            n = n.saturating_sub(1);
            b = b.saturating_sub(size.unsigned_abs());
        }
        tx.execute(
            &format!("DELETE FROM records WHERE {filter} AND seq <= ?2"),
            params![arg, last],
        )?;
        add_held(tx, -count, -bytes)?;
        removed += count.unsigned_abs();
    }
}

/// Brings the outbox within `limits`: first what every sink has delivered (oldest first),
/// then undelivered records, least severe and oldest first, each counted.
fn keep_bounds(
    tx: &rusqlite::Transaction<'_>,
    limits: Limits,
    sinks: &[String],
    out: &mut Appended,
) -> rusqlite::Result<()> {
    let (n, b) = held(tx)?;
    if n <= limits.max_records && b <= limits.max_bytes {
        return Ok(());
    }
    // Delivered everywhere: at or below every configured sink's cursor (everything, when
    // no sink reads the outbox: it is then local history only).
    let mut delivered = i64::MAX;
    for sink in sinks {
        let seq: Option<i64> = tx
            .query_row(
                "SELECT seq FROM cursors WHERE sink = ?1",
                params![sink],
                |r| r.get(0),
            )
            .optional()?;
        delivered = delivered.min(seq.unwrap_or(0));
    }
    let pruned = remove_until_within(tx, limits, "seq <= ?1", delivered)?;
    if pruned > 0 {
        out.pruned += pruned;
        bump(tx, "pruned", pruned)?;
    }
    for (rank, name) in SEVERITIES.iter().enumerate() {
        let dropped = remove_until_within(tx, limits, "severity = ?1", rank as i64)?;
        if dropped > 0 {
            if let Some(d) = out.dropped.get_mut(rank) {
                *d += dropped;
            }
            bump(tx, &format!("dropped_{name}"), dropped)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, severity: &str, body_len: usize) -> NewRecord {
        NewRecord {
            id: id.into(),
            kind: "finding",
            severity: severity.into(),
            rule: "r".into(),
            plugin: "p".into(),
            time: "2026-12-05T00:00:00.000000000Z".into(),
            global_seq_num: Some(1),
            body: format!("{{\"pad\":\"{}\"}}", "x".repeat(body_len)),
        }
    }

    #[test]
    fn a_key_already_stored_is_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), "mac", Limits::default(), &[]).unwrap();
        let a = outbox
            .append(&[record("a", "high", 1), record("b", "low", 1)])
            .unwrap();
        assert_eq!((a.inserted, a.duplicates), (2, 0));
        let b = outbox
            .append(&[record("b", "low", 1), record("c", "low", 1)])
            .unwrap();
        assert_eq!((b.inserted, b.duplicates), (1, 1));
        let all = outbox.after(0, 100).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(outbox.stats().unwrap().duplicates, 1);
    }

    #[test]
    fn past_its_bound_it_drops_the_least_severe_oldest_first_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_records: 4,
            max_bytes: u64::MAX,
        };
        let sinks = vec!["siem".to_owned()];
        let mut outbox = Outbox::open(dir.path(), "mac", limits, &sinks).unwrap();
        outbox
            .append(&[
                record("i1", "informational", 1),
                record("h1", "high", 1),
                record("i2", "informational", 1),
                record("c1", "critical", 1),
            ])
            .unwrap();
        let r = outbox
            .append(&[record("m1", "medium", 1), record("i3", "informational", 1)])
            .unwrap();
        // Nothing delivered yet: two undelivered informational records go, the oldest.
        assert_eq!(r.dropped, [2, 0, 0, 0, 0]);
        let ids: Vec<String> = outbox
            .after(0, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["h1", "c1", "m1", "i3"]);
        // Once the sink has delivered up to c1, what it delivered is pruned first.
        let c1 = outbox.get("c1").unwrap().unwrap().seq;
        outbox.advance("siem", c1).unwrap();
        let r = outbox.append(&[record("l1", "low", 1)]).unwrap();
        assert_eq!((r.pruned, r.dropped_total()), (1, 0));
        let ids: Vec<String> = outbox
            .after(0, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["c1", "m1", "i3", "l1"]);
        let stats = outbox.stats().unwrap();
        assert_eq!(stats.dropped.get("informational"), Some(&2));
        assert_eq!(stats.pruned, 1);
        assert_eq!(stats.cursors.get("siem"), Some(&c1));
    }

    #[test]
    fn bytes_are_bounded_as_well_as_records() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_records: u64::MAX,
            max_bytes: 10_000,
        };
        let mut outbox = Outbox::open(dir.path(), "mac", limits, &[]).unwrap();
        for i in 0..50 {
            outbox
                .append(&[record(&format!("r{i}"), "high", 1_000)])
                .unwrap();
        }
        let stats = outbox.stats().unwrap();
        assert!(stats.bytes <= 10_000, "{stats:?}");
        assert!(stats.records >= 9, "{stats:?}");
        // The newest survive.
        assert!(outbox.get("r49").unwrap().is_some());
    }

    #[test]
    fn a_cursor_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), "mac", Limits::default(), &[]).unwrap();
        outbox.advance("s", 10).unwrap();
        outbox.advance("s", 4).unwrap();
        assert_eq!(outbox.cursor("s").unwrap(), 10);
        assert_eq!(outbox.cursor("other").unwrap(), 0);
    }

    #[test]
    fn the_json_line_leads_with_the_key() {
        let r = StoredRecord {
            seq: 7,
            id: "abc".into(),
            kind: "finding".into(),
            severity: "high",
            rule: "r".into(),
            plugin: "p".into(),
            time: "t".into(),
            global_seq_num: None,
            body: "{\"rule\":\"r\"}".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["id"], "abc");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["rule"], "r");
        let empty = StoredRecord {
            body: "{}".into(),
            ..r
        };
        let v: serde_json::Value = serde_json::from_str(&empty.json_line()).unwrap();
        assert_eq!(v["id"], "abc");
    }
}
