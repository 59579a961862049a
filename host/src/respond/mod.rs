//! The response stage: contain, eradicate, recover — on the Mac, in seconds, offline.
//!
//! Findings that a playbook could answer leave the finding writer for this stage, which
//! runs on two threads joined by a bounded channel:
//!
//! - **triage** ([`triage`]): match each finding against the playbooks within the device's
//!   smart groups, put it in its incident (one process tree within a window), apply
//!   suppression, and queue a playbook run. Fast; never waits for an action.
//! - **act** ([`act`]): run each playbook's steps in order — `collect` (collector plugins
//!   → the incident's evidence bundle, always before anything destructive), `remediate`
//!   (remediator plugins plan, the [`executor`] decides and carries out), `notify`,
//!   `tag` — and, between runs, release leases, time out approvals and run scheduled
//!   sweeps.
//!
//! Everything is recorded in the state store with a hash-chained audit log
//! ([`store`], [`audit`]). What is dropped for lack of room is counted and audited,
//! never lost silently.

pub mod act;
pub mod actions;
pub mod attack;
pub mod audit;
pub mod evidence;
pub mod executor;
pub mod groups;
pub mod incident;
pub mod invariants;
pub mod playbook;
pub mod store;
pub mod triage;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use crate::forward::finding::FindingRecord;
use crate::respond::playbook::Playbooks;
use crate::sandbox::stats::Histogram;

/// Findings waiting for triage, at most; past it the writer counts and drops (the triage
/// thread audits the count).
pub const TRIAGE_QUEUE: usize = 4096;
/// Bytes of findings (with their events) waiting in the stage, triage and act queues
/// together: a stream of findings about megabyte command lines fills this, not memory.
pub const QUEUE_BYTES: usize = 64 << 20;

/// About how many bytes a finding and its event hold: its strings and the event's
/// arguments and paths, plus a fixed overhead for the records around them.
pub fn approx_bytes(f: &FindingRecord) -> usize {
    let event = f.trigger.as_ref().map_or(0, |t| {
        let e = &t.event;
        let args = match &e.data {
            crate::sandbox::bindings::wit::EventData::Exec(x) => {
                x.args.iter().map(String::len).sum::<usize>() + x.target.executable.path.len()
            }
            _ => 0,
        };
        args + e.process.executable.path.len() + 2048
    });
    let evidence: usize = f.evidence.iter().map(|(k, v)| k.len() + v.len()).sum();
    f.message.len() + evidence + event + 1024
}

/// Bytes queued in the response stage (see [`QUEUE_BYTES`]).
#[derive(Debug, Clone, Default)]
pub struct QueuedBytes(Arc<std::sync::atomic::AtomicUsize>);

impl QueuedBytes {
    /// Takes `n` bytes of room; false (and nothing taken) when there is not enough.
    pub fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|t| *t <= QUEUE_BYTES)
            })
            .is_ok()
    }

    /// Gives `n` bytes back.
    pub fn give(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }
}

/// What the response stage counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Findings offered to triage.
    pub offered: AtomicU64,
    /// Findings the writer dropped because triage was full.
    pub dropped_findings: AtomicU64,
    /// Playbook runs queued.
    pub runs: AtomicU64,
    /// Playbook firings suppressed.
    pub suppressed: AtomicU64,
    /// Actions not planned again: the same act on the same target in the same incident.
    pub deduplicated: AtomicU64,
    /// Playbook runs refused because the act queue was full.
    pub dropped_runs: AtomicU64,
    /// Actions recorded (any status).
    pub actions: AtomicU64,
    /// Incidents opened.
    pub incidents: AtomicU64,
    /// Finding produced → first action recorded, ns.
    pub first_action_ns: Mutex<Histogram>,
    /// Collection time per collect step, ns.
    pub collect_ns: Mutex<Histogram>,
}

/// A snapshot of [`Counters`] for summaries and `ward ctl`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ResponseSummary {
    /// Findings offered.
    pub offered: u64,
    /// Findings dropped before triage.
    pub dropped_findings: u64,
    /// Playbook runs.
    pub runs: u64,
    /// Suppressed firings.
    pub suppressed: u64,
    /// Repeated acts skipped.
    pub deduplicated: u64,
    /// Runs dropped (act queue full).
    pub dropped_runs: u64,
    /// Actions recorded.
    pub actions: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Finding → first action, p50 / p99 / max µs.
    pub first_action_us: (f64, f64, f64),
    /// Collection, p50 / max ms.
    pub collect_ms: (f64, f64),
}

impl Counters {
    /// A snapshot.
    pub fn summary(&self) -> ResponseSummary {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let first = self
            .first_action_ns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let collect = self
            .collect_ns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ResponseSummary {
            offered: l(&self.offered),
            dropped_findings: l(&self.dropped_findings),
            runs: l(&self.runs),
            suppressed: l(&self.suppressed),
            deduplicated: l(&self.deduplicated),
            dropped_runs: l(&self.dropped_runs),
            actions: l(&self.actions),
            incidents: l(&self.incidents),
            first_action_us: (
                first.quantile(0.5) as f64 / 1e3,
                first.quantile(0.99) as f64 / 1e3,
                first.max() as f64 / 1e3,
            ),
            collect_ms: (
                collect.quantile(0.5) as f64 / 1e6,
                collect.max() as f64 / 1e6,
            ),
        }
    }
}

impl std::fmt::Display for ResponseSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "response: {} playbook run(s), {} action(s), {} incident(s), {} suppressed, {} repeated act(s) skipped",
            self.runs, self.actions, self.incidents, self.suppressed, self.deduplicated
        )?;
        if self.actions > 0 {
            write!(
                f,
                "; finding → first action p50 {:.0} µs, p99 {:.0} µs",
                self.first_action_us.0, self.first_action_us.1
            )?;
        }
        if self.dropped_findings + self.dropped_runs > 0 {
            write!(
                f,
                "; DROPPED {} finding(s) and {} run(s) for lack of room (audited)",
                self.dropped_findings, self.dropped_runs
            )?;
        }
        Ok(())
    }
}

/// The writer's side of the response stage: a cheap test and a bounded hand-over.
#[derive(Clone)]
pub struct Offer {
    playbooks: Arc<RwLock<Arc<Playbooks>>>,
    tx: std::sync::mpsc::SyncSender<(FindingRecord, Instant)>,
    counters: Arc<Counters>,
    queued: QueuedBytes,
}

impl Offer {
    /// Hands `f` to triage if a playbook could answer it; never blocks.
    pub fn offer(&self, f: &FindingRecord) {
        let could = self
            .playbooks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .could_match(f);
        if !could {
            return;
        }
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        let at = f.trigger.as_ref().map_or_else(Instant::now, |t| t.at);
        let bytes = approx_bytes(f);
        let sent = self.queued.take(bytes)
            && (self.tx.try_send((f.clone(), at)).is_ok() || {
                self.queued.give(bytes);
                false
            });
        if !sent {
            self.counters
                .dropped_findings
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The device's smart groups now (shared by the two threads and the agent).
pub type Membership = Arc<RwLock<BTreeSet<String>>>;

pub use act::{ActMsg, OnBlocklist, OnGroups, Response, ResponseOptions, start};
