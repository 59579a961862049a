//! Collector: retrieves the files ward already quarantined for a finding from the agent's
//! vault.
//!
//! The vault (config `vault`, e.g. `/var/db/ward/vault`) holds `index.jsonl`, one JSON
//! object per quarantined file (`id`, `original` path, `sha256`, `size`, `item`), and per
//! item `<vault>/<item>/content` and `<vault>/<item>/meta.json`. The candidates are the
//! event's primary path, the offending process's executable and every finding evidence
//! value that is an absolute path. Artifacts:
//! - `quarantined/<sha256>`: each matching file (its SHA-256 checked against the index);
//! - `quarantined/<sha256>.meta.json`: its vault metadata;
//! - `retrieved.json`: what was found, which candidates had nothing, malformed index
//!   lines, `errors` and `truncated`.
//!
//! Config: `vault` (required), `root`, `max_total_bytes`. Needs `file-read` over the vault.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use ward_collect::{Reader, json_artifact, summary_cost};
use ward_sdk::prelude::*;

/// Bytes of `index.jsonl` read: the index of a long-running vault is cut here, the rest
/// noted as left out.
const MAX_INDEX_BYTES: u64 = 1 << 20;
/// Bytes of one `meta.json` read.
const MAX_META_BYTES: u64 = 64 << 10;
/// Candidate paths looked up per call.
const MAX_CANDIDATES: usize = 64;
/// Longest candidate path looked up.
const MAX_PATH_BYTES: usize = 4096;
/// Index entries retrieved per call: bounds the hashing and the summary when a path was
/// quarantined over and over.
const MAX_MATCHES: usize = 64;

/// The collector; keeps nothing between calls.
#[derive(Default)]
pub struct QuarantineRetrieval;

/// One valid line of `index.jsonl`.
#[derive(Debug, Clone, PartialEq)]
struct IndexEntry {
    id: u64,
    original: String,
    sha256: String,
    size: u64,
    item: String,
}

impl IndexEntry {
    /// The entry a line describes; `None` when it is malformed (not JSON, a field missing
    /// or of the wrong type, an `item` that is not a plain name inside the vault).
    fn parse(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let entry = Self {
            id: v.get("id")?.as_u64()?,
            original: text("original").filter(|p| p.starts_with('/'))?,
            sha256: text("sha256")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?
                .to_ascii_lowercase(),
            size: v.get("size")?.as_u64()?,
            item: text("item")?,
        };
        let plain = !entry.item.is_empty()
            && entry.item != "."
            && entry.item != ".."
            && !entry.item.contains(['/', '\0']);
        plain.then_some(entry)
    }
}

/// The valid entries of `text` and how many non-blank lines were malformed.
fn parse_index(text: &str) -> (Vec<IndexEntry>, u64) {
    let mut entries = Vec::new();
    let mut malformed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match IndexEntry::parse(line) {
            Some(entry) => entries.push(entry),
            None => malformed += 1,
        }
    }
    (entries, malformed)
}

/// The paths the trigger names that may have been quarantined: at most
/// [`MAX_CANDIDATES`], each at most [`MAX_PATH_BYTES`] long (a finding's evidence is the
/// detector's, its values often the attacker's).
fn candidates(trigger: &Trigger, reader: &mut Reader) -> BTreeSet<String> {
    let named = [trigger.event.primary_path(), trigger.offender().path()]
        .into_iter()
        .chain(trigger.finding.evidence.iter().map(|e| e.value.as_str()))
        .filter(|p| p.starts_with('/'));
    let mut paths = BTreeSet::new();
    let mut left_out = 0;
    for path in named {
        if path.len() > MAX_PATH_BYTES || (paths.len() >= MAX_CANDIDATES && !paths.contains(path)) {
            left_out += 1;
        } else {
            paths.insert(path.to_owned());
        }
    }
    if left_out > 0 {
        reader.left_out(format!(
            "{left_out} candidate paths left out (too many or too long)"
        ));
    }
    paths
}

/// Reads `index.jsonl`, within [`MAX_INDEX_BYTES`].
fn read_index(reader: &mut Reader, vault: &str) -> (Vec<IndexEntry>, u64) {
    let path = format!("{vault}/index.jsonl");
    let Some(bytes) = reader.read(&path, MAX_INDEX_BYTES) else {
        return (Vec::new(), 0);
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) >= MAX_INDEX_BYTES {
        // Cut at the cap: the last line may be a fragment.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(whole);
        reader.left_out(format!(
            "{path}: only the first {MAX_INDEX_BYTES} bytes read"
        ));
    }
    parse_index(&text)
}

/// The `found` record of `entry`.
fn found_json(entry: &IndexEntry, content: bool, meta: bool) -> Value {
    json!({
        "id": entry.id,
        "original": entry.original,
        "sha256": entry.sha256,
        "size": entry.size,
        "item": entry.item,
        "content_included": content,
        "meta_included": meta,
    })
}

/// Retrieves one entry's file and metadata into `artifacts`; its `found` record, or
/// `None` when even the record is over the budget.
fn retrieve(
    reader: &mut Reader,
    vault: &str,
    entry: &IndexEntry,
    artifacts: &mut BTreeMap<String, Artifact>,
) -> Option<Value> {
    // The record first ("false" is the longer spelling), so content cannot crowd it out.
    if !reader.take(summary_cost(&found_json(entry, false, false))) {
        reader.left_out(format!("index entry {}: over the budget", entry.id));
        return None;
    }
    let name = format!("quarantined/{}", entry.sha256);
    let content = format!("{vault}/{}/content", entry.item);
    let included = if artifacts.contains_key(&name) {
        true
    } else {
        match reader.sha256(&content) {
            None => false,
            Some(actual) if actual != entry.sha256 => {
                reader.error(&content, "does not match its index SHA-256; not retrieved");
                false
            }
            Some(_) => {
                let size = reader.metadata(&content).map_or(0, |m| m.size);
                if !reader.take(size) {
                    reader.left_out(format!("{content}: {size} bytes over the budget"));
                    false
                } else if let Some(bytes) = reader.read(&content, size) {
                    artifacts.insert(
                        name.clone(),
                        Artifact {
                            name: name.clone(),
                            content_type: "application/octet-stream".into(),
                            content: bytes,
                        },
                    );
                    true
                } else {
                    false
                }
            }
        }
    };
    let meta_name = format!("{name}.meta.json");
    let meta = format!("{vault}/{}/meta.json", entry.item);
    let meta_included = artifacts.contains_key(&meta_name)
        || match reader.metadata(&meta) {
            Some(m) if m.size > MAX_META_BYTES => {
                reader.left_out(format!("{meta}: {} bytes over the meta.json cap", m.size));
                false
            }
            Some(m) if reader.take(m.size) => match reader.read(&meta, m.size) {
                Some(bytes) => {
                    artifacts.insert(
                        meta_name.clone(),
                        Artifact {
                            name: meta_name,
                            content_type: "application/json".into(),
                            content: bytes,
                        },
                    );
                    true
                }
                None => false,
            },
            Some(m) => {
                reader.left_out(format!("{meta}: {} bytes over the budget", m.size));
                false
            }
            None => false,
        };
    Some(found_json(entry, included, meta_included))
}

impl Collector for QuarantineRetrieval {
    fn describe() -> PluginInfo {
        Reader::describe_config(
            PluginInfo::new(
                "quarantine-retrieval",
                env!("CARGO_PKG_VERSION"),
                PluginKind::Collector,
                "the files ward quarantined for a finding, from the agent's vault",
            )
            .capability("file-read")
            .config_option(
                "vault",
                "the agent's quarantine vault directory, e.g. /var/db/ward/vault (required)",
            ),
        )
    }

    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError> {
        let vault = ward_sdk::config("vault")
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| v.starts_with('/'))
            .ok_or_else(|| {
                PluginError::new("config `vault` must name the vault directory (an absolute path)")
            })?;
        let mut reader = Reader::from_config()?;
        let candidates = candidates(trigger, &mut reader);
        let (index, malformed) = read_index(&mut reader, &vault);

        let mut matches: Vec<&IndexEntry> = index
            .iter()
            .filter(|e| candidates.contains(&e.original))
            .collect();
        matches.sort_by(|a, b| (&a.original, a.id).cmp(&(&b.original, b.id)));
        if matches.len() > MAX_MATCHES {
            reader.left_out(format!(
                "{} index entries past the first {MAX_MATCHES} not retrieved",
                matches.len() - MAX_MATCHES
            ));
            matches.truncate(MAX_MATCHES);
        }
        let missing: Vec<&String> = candidates
            .iter()
            .filter(|c| !matches.iter().any(|e| &&e.original == c))
            .collect();
        let mut summary = json!({
            "vault": vault,
            "candidates": candidates,
            "missing": missing,
            "malformed_lines": malformed,
        });
        // Bounded by the candidate caps; paid for before any content.
        reader.take(summary_cost(&summary));
        let mut artifacts = BTreeMap::new();
        let found: Vec<Value> = matches
            .iter()
            .filter_map(|entry| retrieve(&mut reader, &vault, entry, &mut artifacts))
            .collect();
        if let Some(object) = summary.as_object_mut() {
            object.insert("found".into(), Value::Array(found));
        }
        reader.add_notes(&mut summary);
        let mut out = vec![json_artifact("retrieved.json", &summary)];
        out.extend(artifacts.into_values());
        Ok(out)
    }
}

ward_sdk::export_collector!(QuarantineRetrieval);

#[cfg(test)]
mod tests;
