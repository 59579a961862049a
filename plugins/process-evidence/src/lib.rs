//! Collector: the offending process tree and its binaries.
//!
//! The offending process is the new image of an `exec`, otherwise the event's process.
//! Artifacts:
//! - `process-tree.json`: the offender, its ancestors (nearest first, at most 16) and its
//!   descendants (breadth first, at most 256), from the agent's process table;
//! - `binaries.json`: one entry per distinct executable path in that tree, with its file
//!   metadata, SHA-256 and code-signing facts, plus `errors` and `truncated`;
//! - `binary/<sha256>`: the offender's executable itself, unless it is Apple's code, larger
//!   than `max_binary_bytes` or over the call's budget (its entry says why it was left out).
//!
//! Config: `root` (prefix for every Mac path read, for tests), `max_total_bytes`,
//! `max_binary_bytes`. Needs `file-read` over the binaries' folders.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use ward_collect::{Reader, config_u64, json_artifact, summary_cost};
use ward_sdk::collector_files::FileMetadata;
use ward_sdk::prelude::*;

/// Parents listed above the offender.
const MAX_ANCESTORS: u32 = 16;
/// Descendants listed: bounds the tree (and the binaries hashed) when the offender forks
/// a swarm.
const MAX_DESCENDANTS: u32 = 256;
/// Default of `max_binary_bytes`: larger executables are described, not copied.
const DEFAULT_MAX_BINARY_BYTES: u64 = 8 << 20;

/// The collector; keeps nothing between calls.
#[derive(Default)]
pub struct ProcessEvidence;

fn process_json(p: &Process) -> Value {
    json!({
        "pid": p.token.pid,
        "pidversion": p.token.pidversion,
        "ppid": p.ppid,
        "path": p.path(),
        "signing_id": p.signing_id,
        "team_id": p.team_id,
        "cdhash": p.cdhash,
        "signer": p.signer.as_str(),
        "platform_binary": p.is_platform_binary,
        "start_time": p.start_time,
    })
}

/// The `binaries.json` entry of one executable; `content` (what became of the copy of
/// the offender's executable) is filled in later, `null` for the other images.
fn binary_json(p: &Process, meta: Option<&FileMetadata>, sha256: Option<&str>) -> Value {
    json!({
        "path": p.path(),
        "present": meta.is_some(),
        "sha256": sha256,
        "size": meta.map(|m| m.size),
        "mode": meta.map(|m| format!("{:o}", m.mode)),
        "uid": meta.map(|m| m.uid),
        "mtime": meta.map(|m| m.mtime),
        "birthtime": meta.and_then(|m| m.birthtime),
        "signing_id": p.signing_id,
        "team_id": p.team_id,
        "cdhash": p.cdhash,
        "signer": p.signer.as_str(),
        "platform_binary": p.is_platform_binary,
        "codesigning_flags": format!("{:#x}", p.codesigning_flags),
        "path_truncated": p.executable.path_truncated,
        "content": null,
    })
}

/// The offender's executable as an artifact, or why it is left out.
fn offender_binary(
    reader: &mut Reader,
    offender: &Process,
    meta: Option<&FileMetadata>,
    sha256: Option<&str>,
    max_binary: u64,
) -> Result<Artifact, String> {
    let path = offender.path();
    if offender.is_apple_code() {
        return Err("skipped: Apple code".into());
    }
    let (Some(meta), Some(sha256)) = (meta, sha256) else {
        return Err("skipped: absent, unreadable or its path truncated".into());
    };
    if meta.size > max_binary {
        return Err(format!(
            "skipped: {} bytes is over max_binary_bytes ({max_binary})",
            meta.size
        ));
    }
    if !reader.take(meta.size) {
        reader.left_out(format!(
            "{path}: executable ({} bytes) over the budget",
            meta.size
        ));
        return Err("skipped: over the budget of this collection".into());
    }
    let content = reader
        .read(path, meta.size)
        .ok_or_else(|| "skipped: could not be read".to_owned())?;
    Ok(Artifact {
        name: format!("binary/{sha256}"),
        content_type: "application/octet-stream".into(),
        content,
    })
}

impl Collector for ProcessEvidence {
    fn describe() -> PluginInfo {
        Reader::describe_config(
            PluginInfo::new(
                "process-evidence",
                env!("CARGO_PKG_VERSION"),
                PluginKind::Collector,
                "the offending process tree, its binaries' facts and the offender's executable",
            )
            .capability("file-read")
            .config_option(
                "max_binary_bytes",
                "largest executable copied (default 8 MiB); larger ones are only described",
            ),
        )
    }

    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError> {
        let mut reader = Reader::from_config()?;
        let max_binary = config_u64("max_binary_bytes", DEFAULT_MAX_BINARY_BYTES)?;
        let offender = trigger.offender();
        let ancestors = process::ancestors(offender.token, MAX_ANCESTORS);
        let descendants = process::descendants(offender.token, MAX_DESCENDANTS);

        let mut tree = json!({
            "offender": process_json(offender),
            "ancestors": ancestors.iter().map(process_json).collect::<Vec<_>>(),
            "descendants": descendants.iter().map(process_json).collect::<Vec<_>>(),
        });
        if !reader.take(summary_cost(&tree)) {
            // Only a tiny `max_total_bytes` gets here: keep the offender.
            tree =
                json!({ "offender": process_json(offender), "ancestors": [], "descendants": [] });
            reader.take(summary_cost(&tree));
            reader.left_out("process-tree.json: ancestors and descendants over the budget".into());
        }

        // One entry per executable path; the offender's own facts win for its path.
        let mut images: BTreeMap<&str, &Process> = BTreeMap::new();
        for p in ancestors.iter().chain(&descendants) {
            images.entry(p.path()).or_insert(p);
        }
        images.insert(offender.path(), offender);

        // The entries first, so the executable's copy cannot crowd them out of the budget.
        let mut entries = Vec::new();
        let mut offender_facts = None;
        for (path, p) in images {
            // A path the kernel cut short names some other file, if any.
            let meta = (!p.executable.path_truncated)
                .then(|| reader.metadata(path))
                .flatten();
            let sha256 = meta.as_ref().and_then(|_| reader.sha256(path));
            let entry = binary_json(p, meta.as_ref(), sha256.as_deref());
            if !reader.take(summary_cost(&entry)) {
                reader.left_out(format!("{path}: binaries.json entry over the budget"));
                continue;
            }
            if path == offender.path() {
                offender_facts = Some((entries.len(), meta, sha256));
            }
            entries.push(entry);
        }
        let mut artifacts = Vec::new();
        if let Some((index, meta, sha256)) = offender_facts {
            let content = match offender_binary(
                &mut reader,
                offender,
                meta.as_ref(),
                sha256.as_deref(),
                max_binary,
            ) {
                Ok(artifact) => {
                    let name = artifact.name.clone();
                    artifacts.push(artifact);
                    name
                }
                Err(why) => why,
            };
            if let Some(entry) = entries.get_mut(index).and_then(Value::as_object_mut) {
                entry.insert("content".into(), json!(content));
            }
        }
        let mut binaries = json!({ "binaries": entries });
        reader.add_notes(&mut binaries);
        artifacts.insert(0, json_artifact("binaries.json", &binaries));
        artifacts.insert(0, json_artifact("process-tree.json", &tree));
        Ok(artifacts)
    }
}

ward_sdk::export_collector!(ProcessEvidence);

#[cfg(test)]
mod tests;
