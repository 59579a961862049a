//! Incidents and suppression.
//!
//! Findings of one process tree within a window (stream time) are one incident. The tree
//! is named by its root: from the finding's process, up through parents the process
//! table knows, stopping below launchd and below an admin-named boundary (sshd, login:
//! processes that start trees of their own). One chain of an attack — a downloader, the
//! payload it ran, the children that payload spawned — is one incident however many
//! findings it raises.
//!
//! Suppression caps how often a playbook fires per key (by default: once per incident
//! per hour), so one chain does not fire a playbook 500 times. Both are bounded in
//! memory whatever the stream does: open incidents and suppression keys are evicted
//! oldest first past their caps, in O(log n).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest as _, Sha256};

use crate::forward::finding::FindingRecord;
use crate::respond::playbook::{Playbook, severity_rank};
use crate::respond::store::{Store, StoreError};
use ward_event::ProcessTable;
use ward_event::model::AuditToken;

/// Open incidents kept in memory; past it the least recently active is closed (its
/// record stays in the store; a later finding of its tree opens a new one).
pub const MAX_OPEN_INCIDENTS: usize = 10_000;
/// Suppression keys kept; past it the least recently used is forgotten.
pub const MAX_SUPPRESSION_KEYS: usize = 100_000;
/// Rules, techniques, processes and acts listed in an incident's summary, each.
pub const MAX_SUMMARY_ITEMS: usize = 64;

/// `(pid, pidversion)` of a tree's root.
pub type Root = (i32, i32);

#[derive(Debug)]
struct Open {
    id: i64,
    root_label: String,
    last_ms: i64,
    last_time: String,
    severity: usize,
    findings: i64,
    suppressed: i64,
    rules: BTreeSet<String>,
    techniques: BTreeSet<String>,
    processes: BTreeSet<String>,
    acts: BTreeSet<String>,
    /// Key in the recency index.
    stamp: (i64, u64),
}

impl Open {
    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "rules": self.rules,
            "techniques": self.techniques,
            "processes": self.processes,
            "acts": self.acts,
        })
    }
}

fn add_bounded(set: &mut BTreeSet<String>, value: String) {
    if set.len() < MAX_SUMMARY_ITEMS || set.contains(&value) {
        set.insert(value);
    }
}

/// The open incidents.
#[derive(Debug)]
pub struct Incidents {
    open: HashMap<Root, Open>,
    /// (last active ms, tiebreak) → root, for eviction.
    recency: BTreeMap<(i64, u64), Root>,
    tick: u64,
    window_ms: i64,
    boundaries: Vec<String>,
}

/// Which incident a finding belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The incident.
    pub id: i64,
    /// Opened by this finding.
    pub new: bool,
}

impl Incidents {
    /// Incidents joining findings `window_secs` apart at most; `boundaries` are the
    /// executables that start trees of their own.
    pub fn new(window_secs: u64, boundaries: Vec<String>) -> Self {
        Self {
            open: HashMap::new(),
            recency: BTreeMap::new(),
            tick: 0,
            window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            boundaries,
        }
    }

    /// The root of the finding's process tree, and how it is shown.
    pub fn root_of(&self, f: &FindingRecord, table: &ProcessTable) -> (Root, String) {
        let mut current = (f.process.pid, f.process.pidversion);
        let mut label = format!("{}/{} {}", current.0, current.1, f.process.path);
        for _ in 0..ward_event::process_table::MAX_ANCESTRY {
            let token = AuditToken {
                pid: current.0,
                pidversion: current.1,
                ..AuditToken::default()
            };
            let Some(image) = table.get(&token) else {
                break;
            };
            let Some(parent) = table.parent(&image) else {
                break;
            };
            let key = parent.audit_token.key();
            let path = &parent.executable.path;
            if key.0 <= 1
                || key == current
                || path == "/sbin/launchd"
                || self.boundaries.iter().any(|b| b == path)
            {
                break;
            }
            current = key;
            label = format!("{}/{} {}", key.0, key.1, path);
        }
        (current, label)
    }

    fn touch(&mut self, root: Root, ms: i64) {
        self.tick += 1;
        if let Some(open) = self.open.get_mut(&root) {
            self.recency.remove(&open.stamp);
            open.stamp = (ms, self.tick);
            self.recency.insert(open.stamp, root);
        }
    }

    /// Puts `f` (stream time `ms`) into its incident, opening one if its tree has none
    /// open within the window.
    pub fn assign(
        &mut self,
        store: &mut Store,
        f: &FindingRecord,
        ms: i64,
        table: &ProcessTable,
    ) -> Result<Assigned, StoreError> {
        let root = self.root_of(f, table);
        self.assign_root(store, f, ms, root)
    }

    /// [`Self::assign`] with the tree's root already found ([`Self::root_of`]): the
    /// process table need not be held while the store is written.
    pub fn assign_root(
        &mut self,
        store: &mut Store,
        f: &FindingRecord,
        ms: i64,
        (root, label): (Root, String),
    ) -> Result<Assigned, StoreError> {
        let rank = severity_rank(f.severity).unwrap_or(0);
        let joined = self.open.get(&root).is_some_and(|o| {
            ms.saturating_sub(o.last_ms) <= self.window_ms && ms >= o.last_ms - self.window_ms
        });
        if !joined {
            if let Some(old) = self.open.remove(&root) {
                self.recency.remove(&old.stamp);
            }
            let mut open = Open {
                id: 0,
                root_label: label,
                last_ms: ms,
                last_time: f.time.clone(),
                severity: rank,
                findings: 1,
                suppressed: 0,
                rules: BTreeSet::new(),
                techniques: BTreeSet::new(),
                processes: BTreeSet::new(),
                acts: BTreeSet::new(),
                stamp: (ms, 0),
            };
            note(&mut open, f);
            open.id = store.open_incident(
                &open.root_label,
                &f.time,
                crate::config::response::SEVERITIES
                    .get(rank)
                    .copied()
                    .unwrap_or("informational"),
                &open.summary(),
            )?;
            let id = open.id;
            self.open.insert(root, open);
            self.touch(root, ms);
            self.evict();
            return Ok(Assigned { id, new: true });
        }
        let Some(open) = self.open.get_mut(&root) else {
            return Err(StoreError::NotFound("incident vanished".into()));
        };
        open.last_ms = open.last_ms.max(ms);
        open.last_time = f.time.clone();
        open.severity = open.severity.max(rank);
        open.findings += 1;
        note(open, f);
        let id = open.id;
        persist(store, open)?;
        self.touch(root, ms);
        Ok(Assigned { id, new: false })
    }

    /// Counts a suppressed firing on the incident of tree `root`.
    pub fn note_suppressed(&mut self, store: &mut Store, root: Root) -> Result<(), StoreError> {
        if let Some(open) = self.open.get_mut(&root) {
            open.suppressed += 1;
            persist(store, open)?;
        }
        Ok(())
    }

    fn evict(&mut self) {
        while self.open.len() > MAX_OPEN_INCIDENTS {
            let Some((_, root)) = self.recency.pop_first() else {
                break;
            };
            self.open.remove(&root);
        }
    }

    /// Incidents open in memory.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

fn note(open: &mut Open, f: &FindingRecord) {
    add_bounded(&mut open.rules, f.rule.clone());
    for t in &f.attack {
        add_bounded(&mut open.techniques, t.clone());
    }
    add_bounded(
        &mut open.processes,
        format!(
            "{}/{} {}",
            f.process.pid, f.process.pidversion, f.process.path
        ),
    );
    add_bounded(
        &mut open.acts,
        format!(
            "{}: {}",
            f.rule,
            crate::respond::actions::cut(&f.message, 512)
        ),
    );
}

fn persist(store: &mut Store, open: &Open) -> Result<(), StoreError> {
    store.update_incident(
        open.id,
        &open.last_time,
        crate::config::response::SEVERITIES
            .get(open.severity)
            .copied()
            .unwrap_or("informational"),
        open.findings,
        open.suppressed,
        &open.summary(),
    )
}

/// How often each playbook fired per key, in fixed windows of its period.
#[derive(Debug, Default)]
pub struct Suppression {
    /// key digest → (window start ms, firings in it, recency stamp).
    windows: HashMap<[u8; 32], (i64, u32, (i64, u64))>,
    recency: BTreeMap<(i64, u64), [u8; 32]>,
    tick: u64,
}

/// The value of one suppression key field for `f`.
fn key_field(field: &str, f: &FindingRecord, incident: i64) -> String {
    match field {
        "rule" => f.rule.clone(),
        "plugin" => f.plugin.clone(),
        "incident" => incident.to_string(),
        "process" => format!("{}/{}", f.process.pid, f.process.pidversion),
        "process.path" => f.process.path.clone(),
        "process.signing_id" => f.process.signing_id.clone().unwrap_or_default(),
        "device" => String::new(),
        other => other
            .strip_prefix("evidence.")
            .and_then(|name| f.evidence.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    }
}

impl Suppression {
    /// Whether `playbook` may fire for `f` (in `incident`, at stream time `ms`); counts
    /// the firing when it may.
    pub fn allow(
        &mut self,
        playbook: &Playbook,
        f: &FindingRecord,
        incident: i64,
        ms: i64,
    ) -> bool {
        let mut h = Sha256::new();
        h.update(playbook.name.as_bytes());
        for field in &playbook.suppress.key {
            h.update([0u8]);
            h.update(key_field(field, f, incident).as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        let period =
            i64::try_from(playbook.suppress.period_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.tick += 1;
        let stamp = (ms, self.tick);
        let entry = self.windows.entry(key).or_insert((ms, 0, stamp));
        self.recency.remove(&entry.2);
        // A new window once the period is over (an older finding, out of order, counts
        // in the window it falls after: it never resets one).
        if ms.saturating_sub(entry.0) >= period {
            *entry = (ms, 0, stamp);
        }
        entry.2 = stamp;
        self.recency.insert(stamp, key);
        let allowed = entry.1 < playbook.suppress.count;
        if allowed {
            entry.1 += 1;
        }
        while self.windows.len() > MAX_SUPPRESSION_KEYS {
            let Some((_, old)) = self.recency.pop_first() else {
                break;
            };
            self.windows.remove(&old);
        }
        allowed
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::response::{PlaybookConfig, ResponseMode, SuppressConfig};

    fn playbook(key: &[&str], count: u32, period_secs: u64) -> Playbook {
        Playbook::build(&PlaybookConfig {
            name: "p".into(),
            description: String::new(),
            mode: ResponseMode::Enforce,
            approval_timeout_secs: None,
            scope: Vec::new(),
            matcher: Default::default(),
            suppress: SuppressConfig {
                key: key.iter().map(|k| (*k).to_owned()).collect(),
                count,
                period_secs,
            },
            steps: Vec::new(),
        })
    }

    fn finding(rule: &str, pid: i32) -> FindingRecord {
        let mut f = FindingRecord::agent_notice(rule, "high", "m".into(), Vec::new());
        let mut p = (*f.process).clone();
        p.pid = pid;
        p.pidversion = pid * 10;
        f.process = std::sync::Arc::new(p);
        f
    }

    #[test]
    fn suppression_counts_per_key_and_period_and_stays_bounded() {
        let mut s = Suppression::default();
        let p = playbook(&["rule", "process"], 2, 60);
        let a = finding("r", 1);
        assert!(s.allow(&p, &a, 1, 0));
        assert!(s.allow(&p, &a, 1, 1_000));
        assert!(!s.allow(&p, &a, 1, 2_000), "third in the period");
        assert!(s.allow(&p, &finding("r", 2), 1, 2_000), "another process");
        assert!(s.allow(&p, &a, 1, 61_000), "a new period");
        for i in 0..(MAX_SUPPRESSION_KEYS as i32 + 10) {
            s.allow(&p, &finding("r", i + 10), 1, 70_000);
        }
        assert_eq!(s.len(), MAX_SUPPRESSION_KEYS);
    }

    #[test]
    fn a_tree_within_the_window_is_one_incident() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state")).unwrap();
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/streams/intrusion.jsonl"
        ))
        .unwrap();
        let mut table = ProcessTable::default();
        for line in text.lines() {
            table.observe(&ward_event::parse_line(line.as_bytes(), 1 << 20).unwrap());
        }
        let mut incidents = Incidents::new(600, Vec::new());
        // The payload (706) and the osascript it spawned (708) share a root; so does the
        // curl that fetched it (705): both are children of the user's shell (400).
        let at = |pid: i32, pidversion: i32| {
            let mut f = finding("r", pid);
            let mut p = (*f.process).clone();
            p.pidversion = pidversion;
            f.process = std::sync::Arc::new(p);
            f
        };
        let payload = table
            .live()
            .into_iter()
            .find(|p| p.executable.path == "/Users/Shared/.u")
            .unwrap();
        let (pid, pv) = payload.audit_token.key();
        let first = incidents
            .assign(&mut store, &at(pid, pv), 0, &table)
            .unwrap();
        assert!(first.new);
        let osa = table
            .descendants(&payload.audit_token, 10)
            .into_iter()
            .next()
            .unwrap();
        let (opid, opv) = osa.audit_token.key();
        let second = incidents
            .assign(&mut store, &at(opid, opv), 1_000, &table)
            .unwrap();
        assert_eq!(
            second,
            Assigned {
                id: first.id,
                new: false
            }
        );
        // Past the window: a new incident for the same tree.
        let later = incidents
            .assign(&mut store, &at(pid, pv), 700_000, &table)
            .unwrap();
        assert!(later.new);
        assert_ne!(later.id, first.id);
        // An unrelated process (not in the table) is its own root.
        let other = incidents
            .assign(&mut store, &finding("r", 9999), 1_000, &table)
            .unwrap();
        assert!(other.new);
        let records = store.incidents().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].findings, 2);
        assert!(records[0].root.contains("/bin/zsh"), "{}", records[0].root);
    }
}
