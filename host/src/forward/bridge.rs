//! The response stage's audit records into the outbox: action outcomes, incidents opened,
//! tags, blocks, fleet commands and plugin loads reach the sinks (and `ward alerts list
//! --kind audit`) as `audit` records, each once, in the order of the hash chain.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::forward::outbox::Outbox;

/// How often the audit log is looked at.
const EVERY: Duration = Duration::from_millis(500);
/// Records moved per look.
const STEP: i64 = 1000;

/// The audit log, opened read-only once it exists and kept open between looks: opening
/// the database is most of what a look costs an idle agent.
struct Reader {
    dir: PathBuf,
    store: Option<crate::respond::store::Store>,
}

impl Reader {
    fn new(dir: PathBuf) -> Self {
        Self { dir, store: None }
    }

    /// Moves what is new into `outbox`; returns how many records.
    fn forward(&mut self, outbox: &mut Outbox) -> Result<usize, String> {
        let store = match &mut self.store {
            Some(store) => store,
            None if !self.dir.join("ward.db").exists() => return Ok(0),
            None => self.store.insert(
                crate::respond::store::Store::open_read_only(&self.dir)
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut moved = 0;
        loop {
            let after = outbox.audit_forwarded().map_err(|e| e.to_string())?;
            let records = match store.audit_after(after, STEP) {
                Ok(records) => records,
                Err(e) => {
                    // Opened afresh at the next look, in case the file was replaced.
                    self.store = None;
                    return Err(e.to_string());
                }
            };
            if records.is_empty() {
                return Ok(moved);
            }
            moved += records.len();
            outbox.append_audit(&records).map_err(|e| e.to_string())?;
        }
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
                let mut reader = Reader::new(dir);
                loop {
                    let last = stopping.load(Ordering::Acquire);
                    if let Err(e) = reader.forward(&mut outbox) {
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

    /// The bridge's reader keeps its connection: it starts before the log exists and
    /// still sees every record written after it opened it.
    #[test]
    fn a_kept_reader_sees_what_is_written_after_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), "mac", Default::default(), &[]).unwrap();
        let mut reader = Reader::new(dir.path().to_path_buf());
        assert_eq!(reader.forward(&mut outbox).unwrap(), 0, "no log yet");
        assert!(reader.store.is_none());
        let mut store = crate::respond::store::Store::open(dir.path()).unwrap();
        store.audit("test", serde_json::json!({"n": 0})).unwrap();
        assert_eq!(reader.forward(&mut outbox).unwrap(), 1);
        assert!(reader.store.is_some(), "the connection is kept");
        for i in 1..4 {
            store.audit("test", serde_json::json!({"n": i})).unwrap();
        }
        assert_eq!(reader.forward(&mut outbox).unwrap(), 3);
        assert_eq!(reader.forward(&mut outbox).unwrap(), 0);
        assert_eq!(outbox.after(0, 100).unwrap().len(), 4);
    }

    /// One look by a fresh reader, as after a restart.
    fn forward_once(dir: &std::path::Path, outbox: &mut Outbox) -> Result<usize, String> {
        Reader::new(dir.to_path_buf()).forward(outbox)
    }

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
