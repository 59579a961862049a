//! The response stage's audit records into the outbox: action outcomes, incidents opened,
//! tags, blocks, fleet commands and plugin loads reach the sinks (and `ward alerts list
//! --kind audit`) as `audit` records, each once, in the order of the hash chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::forward::outbox::Outbox;

/// How often the audit log is looked at.
const EVERY: Duration = Duration::from_millis(500);
/// Records moved per look.
const STEP: i64 = 1000;

/// Moves what is new in `dir`'s audit log into `outbox`; returns how many records.
pub fn forward_once(dir: &Path, outbox: &mut Outbox) -> Result<usize, String> {
    if !dir.join("ward.db").exists() {
        return Ok(0);
    }
    let store = crate::respond::store::Store::open_read_only(dir).map_err(|e| e.to_string())?;
    let mut moved = 0;
    loop {
        let after = outbox.audit_forwarded().map_err(|e| e.to_string())?;
        let records = store.audit_after(after, STEP).map_err(|e| e.to_string())?;
        if records.is_empty() {
            return Ok(moved);
        }
        moved += records.len();
        outbox.append_audit(&records).map_err(|e| e.to_string())?;
    }
}

/// The bridge's thread.
pub struct Bridge {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Bridge {
    /// Starts moving `dir`'s audit records into `outbox` every half second.
    pub fn start(dir: PathBuf, mut outbox: Outbox) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ward-audit-bridge".into())
            .spawn(move || {
                loop {
                    let last = stopping.load(Ordering::Acquire);
                    if let Err(e) = forward_once(&dir, &mut outbox) {
                        tracing::warn!(error = %e, "audit records not forwarded yet");
                    }
                    if last {
                        return;
                    }
                    std::thread::sleep(EVERY);
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// A last pass, then stops.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_audit_record_reaches_the_outbox_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::respond::store::Store::open(dir.path()).unwrap();
        for i in 0..5 {
            store.audit("test", serde_json::json!({"n": i})).unwrap();
        }
        let mut outbox = Outbox::open(dir.path(), "mac", Default::default(), &[]).unwrap();
        assert_eq!(forward_once(dir.path(), &mut outbox).unwrap(), 5);
        assert_eq!(forward_once(dir.path(), &mut outbox).unwrap(), 0);
        store
            .audit("action", serde_json::json!({"id": 1, "status": "failed"}))
            .unwrap();
        assert_eq!(forward_once(dir.path(), &mut outbox).unwrap(), 1);
        let all = outbox.after(0, 100).unwrap();
        assert_eq!(all.len(), 6);
        assert!(
            all.iter()
                .all(|r| r.kind == "audit" && r.id.starts_with("audit-"))
        );
        let last: serde_json::Value = serde_json::from_str(&all[5].body).unwrap();
        assert_eq!(last["audit_kind"], "action");
        assert_eq!(all[5].severity, "medium", "a failed action stands out");
        let n: Vec<i64> = all[..5]
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["record"]["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(n, [0, 1, 2, 3, 4]);
        // Forgetting the position sends them again with the same keys: stored once.
        outbox
            .append_audit(&store.audit_after(0, 100).unwrap())
            .unwrap();
        assert_eq!(outbox.after(0, 100).unwrap().len(), 6);
    }
}
