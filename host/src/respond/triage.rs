//! Triage: finding → playbooks in scope → incident → suppression → a queued playbook run.
//! Runs on a thread of its own with its own store connection, so it keeps pace with the
//! detection stage whatever the actions cost.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use crate::forward::finding::FindingRecord;
use crate::respond::act::{ActMsg, Job};
use crate::respond::incident::{Incidents, Suppression};
use crate::respond::playbook::Playbooks;
use crate::respond::store::Store;
use crate::respond::{Counters, Membership};
use crate::sandbox::state::SharedProcessTable;

/// A finding as recorded with an action or audit record: enough to find it in the
/// findings stream, never its whole evidence.
pub fn finding_summary(f: &FindingRecord) -> serde_json::Value {
    serde_json::json!({
        "rule": f.rule,
        "plugin": f.plugin,
        "severity": f.severity,
        "attack": f.attack,
        "global_seq_num": f.global_seq_num,
        "event_type": f.event_type,
        "time": f.time,
        "message": crate::respond::actions::cut(&f.message, 512),
        "process": {
            "pid": f.process.pid,
            "pidversion": f.process.pidversion,
            "path": f.process.path,
            "signing_id": f.process.signing_id,
            "euid": f.trigger.as_ref().map(|t| crate::detect::router::actor(&t.event).token.euid),
        },
    })
}

/// What the triage thread holds.
pub struct Triage {
    /// Its store connection.
    pub store: Store,
    /// The playbooks (replaced on a config reload).
    pub playbooks: Arc<RwLock<Arc<Playbooks>>>,
    /// The smart groups the device is in.
    pub membership: Membership,
    /// The process table.
    pub processes: SharedProcessTable,
    /// Open incidents.
    pub incidents: Incidents,
    /// Suppression windows.
    pub suppression: Suppression,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Bytes queued in the stage.
    pub queued: crate::respond::QueuedBytes,
}

impl Triage {
    /// Triages findings until the writer is done, then tells the act thread to stop once
    /// it has run what is queued.
    pub fn run(mut self, rx: Receiver<(FindingRecord, Instant)>, act: SyncSender<ActMsg>) {
        let mut dropped_audited = 0u64;
        while let Ok((finding, at)) = rx.recv() {
            let bytes = crate::respond::approx_bytes(&finding);
            let dropped = self.counters.dropped_findings.load(Ordering::Relaxed);
            if dropped > dropped_audited {
                let _ = self.store.audit(
                    "findings-dropped",
                    serde_json::json!({
                        "count": dropped - dropped_audited,
                        "why": "the response stage's triage queue was full",
                    }),
                );
                dropped_audited = dropped;
            }
            if let Err(e) = self.one(&finding, at, &act) {
                tracing::error!(error = %e, rule = %finding.rule, "triage failed; the finding is not acted on");
            }
            self.queued.give(bytes);
        }
        let _ = act.send(ActMsg::Stop);
    }

    fn one(
        &mut self,
        f: &FindingRecord,
        at: Instant,
        act: &SyncSender<ActMsg>,
    ) -> Result<(), crate::respond::store::StoreError> {
        let playbooks = Arc::clone(
            &self
                .playbooks
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let groups = self
            .membership
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let ms = crate::clock::parse_rfc3339_ms(&f.time).unwrap_or_else(crate::clock::now_ms);
        let mut incident = None;
        for (index, pb) in playbooks.list.iter().enumerate() {
            if !pb.matches(f) || !pb.in_scope(&groups) {
                continue;
            }
            let (id, root) = match incident {
                Some(found) => found,
                None => {
                    // The table is read for the tree's root only; the store is written
                    // after it is let go (every event needs it for writing).
                    let root = {
                        let table = self
                            .processes
                            .read()
                            .unwrap_or_else(PoisonError::into_inner);
                        self.incidents.root_of(f, &table)
                    };
                    let key = root.0;
                    let assigned = self.incidents.assign_root(&mut self.store, f, ms, root)?;
                    if assigned.new {
                        self.counters.incidents.fetch_add(1, Ordering::Relaxed);
                    }
                    incident = Some((assigned.id, key));
                    (assigned.id, key)
                }
            };
            if !self.suppression.allow(pb, f, id, ms) {
                self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
                self.incidents.note_suppressed(&mut self.store, root)?;
                continue;
            }
            let summary = finding_summary(f);
            self.store.audit(
                "playbook-matched",
                serde_json::json!({"playbook": pb.name, "incident": id, "finding": summary}),
            )?;
            let job = Job {
                playbooks: Arc::clone(&playbooks),
                index,
                finding: f.clone(),
                incident: id,
                at,
            };
            let bytes = crate::respond::approx_bytes(f);
            let room = self.queued.take(bytes);
            let sent = room
                && (act.try_send(ActMsg::Run(Box::new(job))).is_ok() || {
                    self.queued.give(bytes);
                    false
                });
            if sent {
                self.counters.runs.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.dropped_runs.fetch_add(1, Ordering::Relaxed);
                self.store.audit(
                    "playbook-run-dropped",
                    serde_json::json!({
                        "playbook": pb.name,
                        "incident": id,
                        "finding": summary,
                        "why": "the response queue was full (response.queue, or its bytes)",
                    }),
                )?;
            }
        }
        Ok(())
    }
}
