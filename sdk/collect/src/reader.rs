//! Reading Mac paths for a collector: under the configured `root`, within a byte budget for
//! everything the call returns, recording failures and what was left out instead of failing.

use serde_json::{Value, json};
use ward_sdk::collector_files::{self as files, DirEntry, FileError, FileMetadata};
use ward_sdk::{PluginError, config_u64};

/// Bytes asked for in one `files::read`: the host's default cap for one read.
pub const CHUNK: u64 = 1 << 20;
/// Default of `max_total_bytes`: the host refuses more than 4 MiB of artifacts per call.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 3 << 20;
/// Failure and left-out notes kept in the output; more are only counted. Bounds the
/// summary when every path of a large tree fails.
pub const MAX_NOTES: usize = 256;
/// Bytes of one note kept (it names an attacker-chosen path).
const MAX_NOTE_BYTES: usize = 512;
/// Part of the budget set aside for the notes (at most a quarter of it), so that running
/// out of budget is still recorded.
const NOTES_RESERVE: u64 = 32 << 10;

/// What a summary costs in the budget: compact JSON, pretty-printed at most doubles.
pub fn summary_cost(value: &Value) -> u64 {
    let len = serde_json::to_vec(value).map_or(0, |v| v.len());
    u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(2) + 64
}

/// `value` pretty-printed as an artifact.
pub fn json_artifact(name: &str, value: &Value) -> ward_sdk::Artifact {
    ward_sdk::Artifact {
        name: name.to_owned(),
        content_type: "application/json".to_owned(),
        content: serde_json::to_vec_pretty(value).unwrap_or_default(),
    }
}

/// Reads Mac paths under a root within a byte budget.
pub struct Reader {
    /// Prepended to every Mac path (`""` reads `/` itself), without a trailing `/`.
    root: String,
    /// Bytes of artifacts the call may still return.
    left: u64,
    /// Bytes set aside for the notes.
    notes_left: u64,
    errors: Vec<String>,
    truncated: Vec<String>,
    /// Notes past [`MAX_NOTES`] or past the budget, only counted.
    dropped_notes: u64,
}

impl Reader {
    /// `info` with the two config options [`Reader::from_config`] reads.
    pub fn describe_config(info: ward_sdk::PluginInfo) -> ward_sdk::PluginInfo {
        info.config_option(
            "root",
            "prefix for every Mac path read (default: none, i.e. /)",
        )
        .config_option(
            "max_total_bytes",
            "bytes of artifacts one collection returns at most (default 3 MiB)",
        )
    }

    /// A reader for config `root` (default `""`) and `max_total_bytes` (default 3 MiB).
    pub fn from_config() -> Result<Self, PluginError> {
        let root = ward_sdk::config("root").unwrap_or_default();
        Ok(Self::new(
            &root,
            config_u64("max_total_bytes", DEFAULT_MAX_TOTAL_BYTES)?,
        ))
    }

    /// A reader under `root` returning at most `max_total_bytes`.
    pub fn new(root: &str, max_total_bytes: u64) -> Self {
        let notes_left = NOTES_RESERVE.min(max_total_bytes / 4);
        Self {
            root: root.trim_end_matches('/').to_owned(),
            left: max_total_bytes - notes_left,
            notes_left,
            errors: Vec::new(),
            truncated: Vec::new(),
            dropped_notes: 0,
        }
    }

    fn host_path(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    /// Takes `bytes` from the budget if it has them.
    pub fn take(&mut self, bytes: u64) -> bool {
        if bytes <= self.left {
            self.left -= bytes;
            true
        } else {
            false
        }
    }

    fn note(&mut self, errors: bool, mut text: String) {
        let kept = if errors {
            self.errors.len()
        } else {
            self.truncated.len()
        };
        if text.len() > MAX_NOTE_BYTES {
            text = format!("{}…", ward_sdk::truncated(&text, MAX_NOTE_BYTES));
        }
        let cost = u64::try_from(text.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(2)
            + 16;
        if kept >= MAX_NOTES || cost > self.notes_left {
            self.dropped_notes += 1;
            return;
        }
        self.notes_left -= cost;
        if errors {
            self.errors.push(text);
        } else {
            self.truncated.push(text);
        }
    }

    /// Records that `path` could not be collected, and why.
    pub fn error(&mut self, path: &str, why: &str) {
        self.note(true, format!("{path}: {why}"));
    }

    fn file_error(&mut self, path: &str, e: &FileError) {
        match e {
            FileError::Denied(m) => self.error(path, &format!("denied: {m}")),
            FileError::Io(m) => self.error(path, &format!("io: {m}")),
        }
    }

    /// Records something left out of the output.
    pub fn left_out(&mut self, what: String) {
        self.note(false, what);
    }

    /// Adds `errors`, `truncated` and `notes_dropped` (the count of notes that did not
    /// fit) to the summary object `summary`.
    pub fn add_notes(&self, summary: &mut Value) {
        if let Some(object) = summary.as_object_mut() {
            object.insert("errors".into(), json!(self.errors));
            object.insert("truncated".into(), json!(self.truncated));
            object.insert("notes_dropped".into(), json!(self.dropped_notes));
        }
    }

    fn answer<T>(&mut self, path: &str, result: Result<Option<T>, FileError>) -> Option<T> {
        result.unwrap_or_else(|e| {
            self.file_error(path, &e);
            None
        })
    }

    /// Metadata of the Mac path `path`; `None` when absent or failed (recorded).
    pub fn metadata(&mut self, path: &str) -> Option<FileMetadata> {
        let answer = files::metadata(&self.host_path(path));
        self.answer(path, answer)
    }

    /// SHA-256 of `path`; `None` when absent or failed (recorded).
    pub fn sha256(&mut self, path: &str) -> Option<String> {
        let answer = files::sha256(&self.host_path(path));
        self.answer(path, answer)
    }

    /// The entries of directory `path`; `None` when absent or failed (recorded).
    pub fn list(&mut self, path: &str) -> Option<Vec<DirEntry>> {
        let answer = files::list(&self.host_path(path));
        self.answer(path, answer)
    }

    /// Up to `max` bytes of `path` in chunks (the host may cap a read below [`CHUNK`]; an
    /// empty read is the end). Not charged to the budget: the caller takes what it keeps.
    pub fn read(&mut self, path: &str, max: u64) -> Option<Vec<u8>> {
        let host_path = self.host_path(path);
        let mut out: Vec<u8> = Vec::new();
        loop {
            let have = u64::try_from(out.len()).unwrap_or(u64::MAX);
            let want = CHUNK.min(max.saturating_sub(have));
            if want == 0 {
                return Some(out);
            }
            let want = u32::try_from(want).unwrap_or(u32::MAX);
            match files::read(&host_path, have, want) {
                Ok(Some(chunk)) if chunk.is_empty() => return Some(out),
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) if out.is_empty() => return None,
                // Removed while being read: keep what was read.
                Ok(None) => return Some(out),
                Err(e) => {
                    self.file_error(path, &e);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_chunks_up_to_max_and_records_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 3 * (1 << 20) + 5]).unwrap();
        let root = format!("{}/", dir.path().display());
        let mut r = Reader::new(&root, 10_000);
        r.error(&"/long".repeat(1_000), "fails");
        assert_eq!(r.read("/f", u64::MAX).unwrap().len(), 3 * (1 << 20) + 5);
        assert_eq!(r.read("/f", 10).unwrap().len(), 10);
        assert!(r.read("/absent", 10).is_none());
        assert!(r.metadata("/absent").is_none());
        assert!(r.list("/f").is_none());
        let mut summary = json!({});
        r.add_notes(&mut summary);
        assert_eq!(summary["errors"].as_array().unwrap().len(), 2, "{summary}");
        let long = summary["errors"][0].as_str().unwrap();
        assert!(
            long.ends_with('…') && long.len() <= MAX_NOTE_BYTES + 3,
            "{long}"
        );
        assert!(
            summary["errors"][1]
                .as_str()
                .unwrap()
                .starts_with("/f: io: ")
        );
        // A quarter of the budget is the notes' reserve.
        assert!(r.take(7_500) && !r.take(1));
        assert_eq!(config_u64("unset", 7).unwrap(), 7);
    }
}
