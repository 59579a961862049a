//! Evidence bundles: one `tar.gz` per incident in `<state_dir>/evidence/`, holding every
//! artifact its collectors returned and a `manifest.json` of paths, sizes, SHA-256s and
//! where each came from. Artifacts are staged as files (`incident-<id>/…`, written once)
//! and the bundle is rebuilt from them after each collection into a temporary file that
//! is synced and renamed into place: a reader never sees a half-written bundle. An
//! incident's evidence is capped in bytes and files; what is over is listed, not kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::sandbox::bindings::wit;

/// Bytes of evidence kept per incident.
pub const MAX_INCIDENT_BYTES: u64 = 256 << 20;
/// Files kept per incident.
pub const MAX_INCIDENT_FILES: usize = 10_000;
/// Components of an artifact's name kept, and bytes per component.
const MAX_NAME_PARTS: usize = 8;
const MAX_PART_BYTES: usize = 128;

/// One file in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path inside the bundle.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: String,
    /// The collector's content type.
    pub content_type: String,
    /// The collector.
    pub collector: String,
    /// The playbook that asked.
    pub playbook: String,
    /// The finding's rule.
    pub rule: String,
    /// When it was collected (RFC 3339).
    pub collected: String,
}

/// An incident's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The incident.
    pub incident: i64,
    /// The files.
    pub files: Vec<Entry>,
    /// Artifacts left out (over the caps): `collector/name: why`.
    pub skipped: Vec<String>,
    /// Bytes kept.
    pub bytes: u64,
}

/// What one collection added (staged; [`Evidence::seal`] puts it in the bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The bundle it will be in.
    pub bundle: PathBuf,
    /// Files added.
    pub files: usize,
    /// Bytes added.
    pub bytes: u64,
    /// Artifacts left out.
    pub skipped: usize,
}

/// The evidence directory.
#[derive(Debug, Clone)]
pub struct Evidence {
    dir: PathBuf,
}

/// An artifact name as a relative path: safe characters, no `.`/`..`, bounded.
pub fn safe_name(name: &str) -> String {
    let parts: Vec<String> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .take(MAX_NAME_PARTS)
        .map(|p| {
            let clean: String = p
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            crate::respond::actions::cut(&clean, MAX_PART_BYTES).to_owned()
        })
        .filter(|p| !p.is_empty() && p != "." && p != "..")
        .collect();
    if parts.is_empty() {
        "artifact".into()
    } else {
        parts.join("/")
    }
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Evidence {
    /// The evidence directory in `state_dir` (created 0700).
    pub fn open(state_dir: &Path) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = state_dir.join("evidence");
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io(dir.display(), e))?;
        }
        Ok(Self { dir })
    }

    /// Where incident `id`'s bundle is.
    pub fn bundle_path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("incident-{id}.tar.gz"))
    }

    fn staging(&self, id: i64) -> PathBuf {
        self.dir.join(format!("incident-{id}"))
    }

    fn manifest(&self, id: i64) -> Manifest {
        std::fs::read(self.staging(id).join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Manifest {
                incident: id,
                ..Manifest::default()
            })
    }

    /// Stages `artifacts` from `collector` for incident `id` (written once each, listed in
    /// the staged manifest); [`Self::seal`] then rebuilds the bundle.
    pub fn add(
        &self,
        id: i64,
        collector: &str,
        playbook: &str,
        rule: &str,
        artifacts: Vec<wit::Artifact>,
    ) -> Result<Added, String> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let staging = self.staging(id);
        let mut manifest = self.manifest(id);
        let (mut files, mut bytes, mut skipped) = (0usize, 0u64, 0usize);
        let now = crate::clock::now_rfc3339();
        for a in artifacts {
            let base = format!("{}/{}", safe_name(collector), safe_name(&a.name));
            let size = a.content.len() as u64;
            if manifest.files.len() >= MAX_INCIDENT_FILES
                || manifest.bytes.saturating_add(size) > MAX_INCIDENT_BYTES
            {
                manifest
                    .skipped
                    .push(format!("{base}: over the incident's evidence cap"));
                skipped += 1;
                continue;
            }
            let taken: std::collections::BTreeSet<&str> =
                manifest.files.iter().map(|f| f.path.as_str()).collect();
            let mut path = base.clone();
            let mut n = 2;
            // Not a name listed, nor one a failed collection left behind.
            while taken.contains(path.as_str()) || staging.join(&path).exists() {
                path = format!("{base}-{n}");
                n += 1;
            }
            let file = staging.join(&path);
            if let Some(parent) = file.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| io(parent.display(), e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| io(file.display(), e))?;
            f.write_all(&a.content).map_err(|e| io(file.display(), e))?;
            manifest.files.push(Entry {
                path,
                size,
                sha256: hex::encode(Sha256::digest(&a.content)),
                content_type: crate::respond::actions::cut(&a.content_type, 128).to_owned(),
                collector: collector.to_owned(),
                playbook: playbook.to_owned(),
                rule: crate::respond::actions::cut(rule, 256).to_owned(),
                collected: now.clone(),
            });
            manifest.bytes += size;
            files += 1;
            bytes += size;
        }
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| io("manifest", e))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .map_err(|e| io(staging.display(), e))?;
        let tmp = staging.join("manifest.json.tmp");
        std::fs::write(&tmp, &text).map_err(|e| io("manifest", e))?;
        std::fs::rename(&tmp, staging.join("manifest.json")).map_err(|e| io("manifest", e))?;
        Ok(Added {
            bundle: self.bundle_path(id),
            files,
            bytes,
            skipped,
        })
    }

    /// Rebuilds incident `id`'s bundle from what is staged; returns it and its size.
    pub fn seal(&self, id: i64) -> Result<(PathBuf, u64), String> {
        let staging = self.staging(id);
        let manifest = self.manifest(id);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| io("manifest", e))?;
        let bundle = self.bundle_path(id);
        let size = self.build(&manifest, &text, &staging, &bundle)?;
        Ok((bundle, size))
    }

    /// Writes the bundle: manifest first, then every file, into a temporary file that is
    /// synced and renamed over the old bundle.
    fn build(
        &self,
        manifest: &Manifest,
        manifest_text: &[u8],
        staging: &Path,
        bundle: &Path,
    ) -> Result<u64, String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = bundle.with_extension("tmp");
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io(tmp.display(), e))?;
        // Fast compression: evidence is rebuilt after each run, and binaries (the bulk)
        // hardly compress.
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mtime = u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0);
        let mut add = |name: &str, data: &mut dyn std::io::Read, size: u64| {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o600);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, data)
                .map_err(|e| io(format!("bundling {name}"), e))
        };
        add(
            "manifest.json",
            &mut &manifest_text[..],
            manifest_text.len() as u64,
        )?;
        for entry in &manifest.files {
            let path = staging.join(&entry.path);
            let mut f = std::fs::File::open(&path).map_err(|e| io(path.display(), e))?;
            add(&entry.path, &mut f, entry.size)?;
        }
        let gz = tar.into_inner().map_err(|e| io("bundle", e))?;
        let out = gz.finish().map_err(|e| io("bundle", e))?;
        out.sync_all().map_err(|e| io("bundle", e))?;
        let size = out.metadata().map(|m| m.len()).unwrap_or(0);
        drop(out);
        std::fs::rename(&tmp, bundle).map_err(|e| io(bundle.display(), e))?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn artifact(name: &str, content: &[u8]) -> wit::Artifact {
        wit::Artifact {
            name: name.into(),
            content_type: "text/plain".into(),
            content: content.to_vec(),
        }
    }

    #[test]
    fn names_cannot_leave_the_bundle() {
        assert_eq!(safe_name("../../etc/passwd"), "etc/passwd");
        assert_eq!(safe_name("/abs/./x y"), "abs/x_y");
        assert_eq!(safe_name(".."), "artifact");
        assert_eq!(
            safe_name("files/Users/a b/.zshrc"),
            "files/Users/a_b/.zshrc"
        );
        assert!(safe_name(&"a/".repeat(100)).split('/').count() <= MAX_NAME_PARTS);
    }

    #[test]
    fn bundles_hold_what_the_manifest_lists() {
        let dir = tempfile::tempdir().unwrap();
        let ev = Evidence::open(dir.path()).unwrap();
        ev.add(
            3,
            "process-evidence",
            "p",
            "r",
            vec![artifact("tree.json", b"{}")],
        )
        .unwrap();
        ev.seal(3).unwrap();
        let added = ev
            .add(
                3,
                "process-evidence",
                "p",
                "r",
                vec![
                    artifact("tree.json", b"{\"again\":1}"),
                    artifact("../x", b"x"),
                ],
            )
            .unwrap();
        assert_eq!(added.files, 2);
        let (bundle, size) = ev.seal(3).unwrap();
        assert_eq!(bundle, added.bundle);
        assert_eq!(size, std::fs::metadata(&bundle).unwrap().len());
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&added.bundle).unwrap(),
        ));
        let mut seen = std::collections::BTreeMap::new();
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.insert(name, data);
        }
        let manifest: Manifest = serde_json::from_slice(&seen["manifest.json"]).unwrap();
        assert_eq!(manifest.files.len(), 3);
        for f in &manifest.files {
            let data = &seen[&f.path];
            assert_eq!(data.len() as u64, f.size);
            assert_eq!(hex::encode(Sha256::digest(data)), f.sha256);
        }
        assert!(seen.contains_key("process-evidence/tree.json-2"));
        assert!(seen.contains_key("process-evidence/x"));
    }
}
