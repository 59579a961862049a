//! The post-incident blocklist: prevent-list entries ward adds (SHA-256, CDHash, team id,
//! signing id of a detected binary), kept in the store and merged into the built-in
//! prevent-list plugin's lists when it loads, and the sweep: processes already running
//! an image a new entry names are found through the process table — a gap Santa leaves —
//! and warned, killed after a grace period, or killed, per the admin's policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::respond::actions::BlockKind;
use crate::sandbox::grants::HashCache;
use ward_event::model::Process;

/// Most running images one sweep handles.
pub const MAX_SWEEP: usize = 256;
/// Executables a SHA-256 sweep hashes at most (one per distinct path).
pub const MAX_SWEEP_HASHES: usize = 4096;

/// Whether `image` is what the entry names (`sha256` answers an executable's digest).
pub fn names(
    entry: BlockKind,
    value: &str,
    image: &Process,
    sha256: &mut dyn FnMut(&str) -> Option<String>,
) -> bool {
    match entry {
        BlockKind::Cdhash => image
            .cdhash
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(value)),
        BlockKind::TeamId => image.team_id.as_deref() == Some(value),
        BlockKind::SigningId => {
            let (team, id) = match value.split_once(':') {
                Some((t, i)) => (Some(t), i),
                None => (None, value),
            };
            image.signing_id.as_deref() == Some(id)
                && match team {
                    None => true,
                    Some("platform") => image.is_platform_binary,
                    Some(t) => image.team_id.as_deref() == Some(t),
                }
        }
        BlockKind::Sha256 => {
            sha256(&image.executable.path).is_some_and(|d| d.eq_ignore_ascii_case(value))
        }
    }
}

/// The live images (a snapshot of the process table's) the entry names, at most
/// [`MAX_SWEEP`]; a SHA-256 entry hashes each distinct executable once (through the shared
/// digest cache, [`MAX_SWEEP_HASHES`] at most).
pub fn sweep_targets(
    live: Vec<Arc<Process>>,
    entry: BlockKind,
    value: &str,
    cache: &Arc<HashCache>,
) -> Vec<Arc<Process>> {
    let mut digests: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut hash = |path: &str| -> Option<String> {
        if let Some(d) = digests.get(path) {
            return d.clone();
        }
        if digests.len() >= MAX_SWEEP_HASHES {
            return None;
        }
        let d = crate::respond::actions::vault::resolve(path, true)
            .ok()
            .and_then(|r| r.open_regular().ok())
            .and_then(|(file, meta)| {
                cache
                    .sha256(file, &meta, std::path::Path::new(path), 1 << 30, None)
                    .ok()
            });
        digests.insert(path.to_owned(), d.clone());
        d
    };
    live.into_iter()
        .filter(|p| names(entry, value, p, &mut hash))
        .take(MAX_SWEEP)
        .collect()
}

/// The built-in prevent-list's config with `blocks` added to its lists.
pub fn merged_config(
    config: &std::collections::BTreeMap<String, String>,
    blocks: &[(String, String)],
) -> std::collections::BTreeMap<String, String> {
    let mut out = config.clone();
    for (kind, value) in blocks {
        let Some(kind) = BlockKind::parse(kind) else {
            continue;
        };
        if !kind.valid(value) {
            continue;
        }
        let list = out.entry(kind.config_key().to_owned()).or_default();
        if !list.is_empty() {
            list.push('\n');
        }
        list.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_images_and_lists_merge() {
        let image: Process = serde_json::from_value(serde_json::json!({
            "audit_token": {"pid": 5, "pidversion": 50, "auid": 501, "euid": 501, "egid": 20,
                            "ruid": 501, "rgid": 20, "asid": 1},
            "cdhash": "0B9F2E61C4D3A2B1E0F9A8B7C6D5E4F3A2B1C0D9",
            "signing_id": "com.evil.agent",
            "team_id": "EQHXZ8M8AV",
        }))
        .unwrap();
        let mut none = |_: &str| None;
        assert!(names(
            BlockKind::Cdhash,
            "0b9f2e61c4d3a2b1e0f9a8b7c6d5e4f3a2b1c0d9",
            &image,
            &mut none
        ));
        assert!(names(
            BlockKind::SigningId,
            "com.evil.agent",
            &image,
            &mut none
        ));
        assert!(names(
            BlockKind::SigningId,
            "EQHXZ8M8AV:com.evil.agent",
            &image,
            &mut none
        ));
        assert!(!names(
            BlockKind::SigningId,
            "platform:com.evil.agent",
            &image,
            &mut none
        ));
        assert!(names(BlockKind::TeamId, "EQHXZ8M8AV", &image, &mut none));
        assert!(!names(
            BlockKind::Sha256,
            &"a".repeat(64),
            &image,
            &mut none
        ));
        let mut some = |_: &str| Some("a".repeat(64));
        assert!(names(BlockKind::Sha256, &"a".repeat(64), &image, &mut some));
        let merged = merged_config(
            &[(
                "cdhash".to_owned(),
                "1111111111111111111111111111111111111111".to_owned(),
            )]
            .into(),
            &[
                (
                    "cdhash".into(),
                    "0b9f2e61c4d3a2b1e0f9a8b7c6d5e4f3a2b1c0d9".into(),
                ),
                ("signing-id".into(), "com.evil.agent".into()),
                ("signing-id".into(), "bad, entry".into()),
            ],
        );
        assert_eq!(
            merged["cdhash"],
            "1111111111111111111111111111111111111111\n0b9f2e61c4d3a2b1e0f9a8b7c6d5e4f3a2b1c0d9"
        );
        assert_eq!(merged["signing_id"], "com.evil.agent");
    }
}
