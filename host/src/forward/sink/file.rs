//! The file sink: one rendered record per line, appended to a file that rotates at a size
//! (`file` → `file.1` → … → `file.N`, the oldest removed). Each delivery is written and
//! flushed to the OS before the cursor moves.

use std::io::Write as _;
use std::path::PathBuf;

use super::{Deliver, Rendered};

/// A rotating NDJSON file.
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
}

impl FileSink {
    /// Appends to `path`, rotating past `max_bytes`, keeping `max_files` rotated files.
    pub fn new(path: PathBuf, max_bytes: u64, max_files: u32) -> Self {
        Self {
            path,
            max_bytes,
            max_files,
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.max_files));
        for n in (1..self.max_files).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    fn write(&mut self, records: &[Rendered<'_>]) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let mut pending: Vec<u8> = Vec::new();
        for r in records {
            let line_len = r.line.len() as u64 + 1;
            let held = size + pending.len() as u64;
            // A line alone over the size still goes in (a file of its own).
            if held > 0 && held + line_len > self.max_bytes {
                self.append(&pending)?;
                pending.clear();
                self.rotate()?;
                size = 0;
            }
            pending.extend_from_slice(r.line.as_bytes());
            pending.push(b'\n');
        }
        self.append(&pending)
    }

    fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(bytes)?;
        file.flush()
    }
}

impl Deliver for FileSink {
    fn deliver(&mut self, records: &[Rendered<'_>]) -> Result<(), String> {
        self.write(records)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::outbox::StoredRecord;

    fn record(seq: i64) -> StoredRecord {
        StoredRecord {
            seq,
            id: format!("k{seq}"),
            kind: "finding".into(),
            severity: "low",
            rule: "r".into(),
            plugin: "p".into(),
            time: "t".into(),
            global_seq_num: None,
            body: "{}".into(),
        }
    }

    #[test]
    fn it_rotates_at_the_size_and_keeps_so_many_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out").join("f.ndjson");
        let mut sink = FileSink::new(path.clone(), 100, 2);
        let records: Vec<StoredRecord> = (1..=20).map(record).collect();
        for chunk in records.chunks(3) {
            let rendered: Vec<Rendered<'_>> = chunk
                .iter()
                .map(|r| Rendered {
                    record: r,
                    line: format!("{{\"n\":\"{:028}\"}}", r.seq),
                })
                .collect();
            sink.deliver(&rendered).unwrap();
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        for p in [path.clone(), sink.rotated(1), sink.rotated(2)] {
            let text = read(&p);
            assert!(text.len() <= 100, "{} is {} bytes", p.display(), text.len());
            assert!(
                text.lines()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            );
        }
        assert!(!sink.rotated(3).exists());
        // The newest lines are in the live file, in order, ending with the last.
        let live = read(&path);
        assert!(live.ends_with(&format!("{:028}\"}}\n", 20)), "{live}");
    }
}
