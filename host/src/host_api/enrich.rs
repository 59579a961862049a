//! `ward:plugin/enrich`: file facts for detectors — SHA-256 (cached), extended attributes
//! and property lists — each behind its own capability and inside the granted file scope.
//!
//! Paths are resolved through [`FileScope`] exactly as for collectors: absolute, no `..`,
//! symlinks resolved before the scope check. A path that does not exist answers `none`.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::bindings::collector::ward::plugin::files::FileError;
use crate::bindings::detector::ward::plugin::enrich::{EnrichError, Host, Xattr};
use crate::host_api::files::FileScope;
use crate::state::PluginState;

/// Capability for `sha256`.
pub const CAP_HASH: &str = "file-hash";
/// Capability for `xattrs`.
pub const CAP_XATTR: &str = "file-xattr";
/// Capability for `plist`.
pub const CAP_PLIST: &str = "plist-read";

/// Largest property list `plist` parses.
pub const MAX_PLIST_BYTES: u64 = 1 << 20;
/// Attributes returned by `xattrs`.
pub const MAX_XATTRS: usize = 64;
/// Bytes kept of one attribute value.
pub const MAX_XATTR_VALUE_BYTES: usize = 64 << 10;
/// Deepest nesting of arrays and dictionaries `plist` converts.
pub const MAX_PLIST_DEPTH: usize = ward_plist_json::MAX_DEPTH;
/// Stack of the thread that parses and drops a property list: the parser builds values
/// iteratively, but dropping a deeply nested value recurses. Virtual size; only the pages
/// touched are committed.
const PLIST_STACK_BYTES: usize = 512 << 20;

/// Digests the cache keeps; the oldest entry goes first beyond this.
pub const HASH_CACHE_ENTRIES: usize = 16_384;

/// What identifies one version of a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    /// Status change time: set by the kernel on every write or `utimes`, so restoring the
    /// mtime after an in-place, same-size rewrite does not make a stale digest look fresh.
    ctime: i64,
    ctime_nsec: i64,
}

impl FileVersion {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// Digests by path with the version they were taken of, and insertion order for eviction.
type Digests = (HashMap<PathBuf, (FileVersion, String)>, VecDeque<PathBuf>);

/// SHA-256 digests keyed by path and checked against inode, size and mtime, shared by
/// every plugin of one runtime.
#[derive(Debug, Default)]
pub struct HashCache {
    entries: Mutex<Digests>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl HashCache {
    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn get(&self, path: &Path, version: FileVersion) -> Option<String> {
        let guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .0
            .get(path)
            .filter(|(v, _)| *v == version)
            .map(|(_, digest)| digest.clone())
    }

    fn put(&self, path: PathBuf, version: FileVersion, digest: String) {
        let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        if map.insert(path.clone(), (version, digest)).is_none() {
            order.push_back(path);
            if order.len() > HASH_CACHE_ENTRIES
                && let Some(old) = order.pop_front()
            {
                map.remove(&old);
            }
        }
    }

    /// The digest of `path` (already resolved and in scope), from the cache when the file
    /// has not changed since it was hashed.
    pub fn sha256(&self, path: &Path, max_bytes: u64) -> Result<Option<String>, String> {
        let Some((file, meta)) = open_regular(path)? else {
            return Ok(None);
        };
        let version = FileVersion::of(&meta);
        if version.size > max_bytes {
            return Err(format!(
                "{}: {} bytes is over the {max_bytes}-byte hash cap",
                path.display(),
                version.size
            ));
        }
        if let Some(digest) = self.get(path, version) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(digest));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut hasher = Sha256::new();
        std::io::copy(&mut file.take(max_bytes), &mut hasher)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let digest = hex::encode(hasher.finalize());
        self.put(path.to_path_buf(), version, digest.clone());
        Ok(Some(digest))
    }
}

/// Opens `path` for reading only if it is a regular file: `O_NONBLOCK` so a FIFO planted
/// at a watched path cannot hang the agent in `open`, `O_NOFOLLOW` so a symlink swapped in
/// after the scope check is refused. `Ok(None)` if it does not exist.
pub fn open_regular(path: &Path) -> Result<Option<(std::fs::File, std::fs::Metadata)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    Ok(Some((file, meta)))
}

/// What one plugin was granted: which functions, over which paths.
#[derive(Debug)]
pub struct EnrichScope {
    /// The paths answered.
    pub files: FileScope,
    /// `file-hash` granted.
    pub hash: bool,
    /// `file-xattr` granted.
    pub xattr: bool,
    /// `plist-read` granted.
    pub plist: bool,
    /// The runtime's digest cache.
    pub cache: Arc<HashCache>,
}

impl EnrichScope {
    /// The scope for `grants` over `roots`, or `None` when none of the enrichment
    /// capabilities is granted.
    pub fn from_grants(
        grants: &[String],
        roots: &[PathBuf],
        cache: &Arc<HashCache>,
    ) -> Option<Self> {
        let has = |c: &str| grants.iter().any(|g| g == c);
        let (hash, xattr, plist) = (has(CAP_HASH), has(CAP_XATTR), has(CAP_PLIST));
        (hash || xattr || plist).then(|| Self {
            files: FileScope::new(roots),
            hash,
            xattr,
            plist,
            cache: Arc::clone(cache),
        })
    }
}

fn from_file_error(e: FileError) -> EnrichError {
    match e {
        FileError::Denied(m) => EnrichError::Denied(m),
        FileError::Io(m) => EnrichError::Io(m),
    }
}

/// Resolves `path` for a call needing `capability`.
fn resolve(
    state: &PluginState,
    capability: &str,
    granted: impl Fn(&EnrichScope) -> bool,
    path: &str,
) -> Result<(Arc<EnrichScope>, Option<PathBuf>), EnrichError> {
    let scope = state
        .ctx
        .enrich
        .as_ref()
        .filter(|s| granted(s))
        .ok_or_else(|| {
            EnrichError::Denied(format!(
                "the admin has not granted this plugin `{capability}`"
            ))
        })?;
    let real = scope.files.resolve(path).map_err(from_file_error)?;
    Ok((Arc::clone(scope), real))
}

/// Reads and converts a property list, size-capped, on a thread whose stack can take
/// dropping whatever nesting fits in the size cap.
pub fn read_plist(path: &Path) -> Result<Option<String>, String> {
    let Some((file, meta)) = open_regular(path)? else {
        return Ok(None);
    };
    let size = meta.len();
    if size > MAX_PLIST_BYTES {
        return Err(format!(
            "{}: {size} bytes is over the {MAX_PLIST_BYTES}-byte property list cap",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLIST_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("ward-plist".into())
        .stack_size(PLIST_STACK_BYTES)
        .spawn(move || {
            let json = ward_plist_json::parse(&bytes, MAX_PLIST_DEPTH)
                .map_err(|e| format!("{shown}: {e}"))?;
            Ok(Some(json.to_string()))
        })
        .map_err(|e| format!("{}: cannot start the parser thread: {e}", path.display()))?
        .join()
        .map_err(|_| format!("{}: the property list parser panicked", path.display()))?
}

/// Reads up to [`MAX_XATTRS`] extended attributes, values capped.
pub fn read_xattrs(path: &Path) -> Result<Option<Vec<Xattr>>, String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let names = xattr::list(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for name in names.take(MAX_XATTRS) {
        let Some(text) = name.to_str() else { continue };
        let mut value = xattr::get(path, &name)
            .map_err(|e| format!("{}: {text}: {e}", path.display()))?
            .unwrap_or_default();
        value.truncate(MAX_XATTR_VALUE_BYTES);
        out.push(Xattr {
            name: text.to_owned(),
            value,
        });
    }
    Ok(Some(out))
}

impl Host for PluginState {
    fn sha256(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (scope, real) = resolve(self, CAP_HASH, |s| s.hash, &path)?;
        let Some(real) = real else { return Ok(None) };
        scope
            .cache
            .sha256(&real, scope.files.max_hash_bytes)
            .map_err(EnrichError::Io)
    }

    fn xattrs(&mut self, path: String) -> Result<Option<Vec<Xattr>>, EnrichError> {
        let (_, real) = resolve(self, CAP_XATTR, |s| s.xattr, &path)?;
        let Some(real) = real else { return Ok(None) };
        read_xattrs(&real).map_err(EnrichError::Io)
    }

    fn plist(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (_, real) = resolve(self, CAP_PLIST, |s| s.plist, &path)?;
        let Some(real) = real else { return Ok(None) };
        read_plist(&real).map_err(EnrichError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn digests_are_cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"abc").unwrap();
        let cache = HashCache::default();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(cache.sha256(&path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(cache.sha256(&path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(cache.stats(), (1, 1));
        // New content (new size) is hashed again, not served stale.
        std::fs::write(&path, b"abcd").unwrap();
        let abcd = "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589";
        assert_eq!(cache.sha256(&path, 1 << 20).unwrap().as_deref(), Some(abcd));
        assert_eq!(cache.stats(), (1, 2));
        // Replaced by another file at the same path (new inode).
        let other = dir.path().join("other");
        std::fs::write(&other, b"abc").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(cache.sha256(&path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(cache.stats(), (1, 3));
        // Missing: none; too big: an error naming the cap; a directory: an error.
        assert_eq!(
            cache.sha256(&dir.path().join("gone"), 1 << 20).unwrap(),
            None
        );
        assert!(cache.sha256(&path, 2).unwrap_err().contains("hash cap"));
        assert!(
            cache
                .sha256(dir.path(), 1 << 20)
                .unwrap_err()
                .contains("regular")
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let cache = HashCache::default();
        let meta = std::fs::metadata(&path).unwrap();
        for i in 0..HASH_CACHE_ENTRIES + 5 {
            cache.put(
                PathBuf::from(format!("/x/{i}")),
                FileVersion::of(&meta),
                String::new(),
            );
        }
        let guard = cache.entries.lock().unwrap();
        assert_eq!(guard.0.len(), HASH_CACHE_ENTRIES);
        assert!(!guard.0.contains_key(Path::new("/x/0")));
    }

    #[test]
    fn property_lists_convert_to_json_xml_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("a.plist");
        std::fs::write(
            &xml,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>Label</key><string>com.evil.agent</string>
  <key>ProgramArguments</key><array><string>/tmp/x</string><string>-d</string></array>
  <key>RunAtLoad</key><true/>
  <key>Nice</key><integer>-5</integer>
  <key>Blob</key><data>AAEC</data>
  <key>When</key><date>2026-10-07T14:00:00Z</date>
</dict></plist>"#,
        )
        .unwrap();
        let json: Value = serde_json::from_str(&read_plist(&xml).unwrap().unwrap()).unwrap();
        assert_eq!(json["Label"], "com.evil.agent");
        assert_eq!(json["ProgramArguments"][1], "-d");
        assert_eq!(json["RunAtLoad"], true);
        assert_eq!(json["Nice"], -5);
        assert_eq!(json["Blob"], "AAEC");
        assert_eq!(json["When"], "2026-10-07T14:00:00Z");
        // The same list in binary form.
        let value = plist::Value::from_file(&xml).unwrap();
        let bin = dir.path().join("b.plist");
        value.to_file_binary(&bin).unwrap();
        let again: Value = serde_json::from_str(&read_plist(&bin).unwrap().unwrap()).unwrap();
        assert_eq!(again, json);
        // Missing, not a plist, too big.
        assert_eq!(read_plist(&dir.path().join("gone")).unwrap(), None);
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a plist at all").unwrap();
        assert!(
            read_plist(&junk)
                .unwrap_err()
                .contains("not a property list")
        );
        let big = dir.path().join("big.plist");
        std::fs::write(&big, vec![b' '; MAX_PLIST_BYTES as usize + 1]).unwrap();
        assert!(read_plist(&big).unwrap_err().contains("cap"));
    }

    #[test]
    fn hostile_property_lists_and_special_files_are_errors_not_crashes() {
        let dir = tempfile::tempdir().unwrap();
        // 60,000 nested arrays in well under the size cap: refused by depth, no overflow.
        let deep = dir.path().join("deep.plist");
        let mut xml = String::from("<?xml version=\"1.0\"?><plist version=\"1.0\">");
        xml.push_str(&"<array>".repeat(60_000));
        xml.push_str(&"</array>".repeat(60_000));
        xml.push_str("</plist>");
        std::fs::write(&deep, xml).unwrap();
        assert!(
            read_plist(&deep)
                .unwrap_err()
                .contains("nested deeper than 128")
        );
        // A FIFO at a watched path: refused at once, not waited on.
        let fifo = dir.path().join("fifo.plist");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(
            read_plist(&fifo)
                .unwrap_err()
                .contains("not a regular file")
        );
        let cache = HashCache::default();
        assert!(
            cache
                .sha256(&fifo, 1 << 20)
                .unwrap_err()
                .contains("not a regular file")
        );
        // A symlink is not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&deep, &link).unwrap();
        assert!(cache.sha256(&link, 1 << 20).is_err());
    }

    #[test]
    fn extended_attributes_are_listed_with_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("download.dmg");
        std::fs::write(&path, b"x").unwrap();
        // Linux only allows the `user.` namespace; macOS names are free-form.
        let name = if cfg!(target_os = "macos") {
            "com.apple.quarantine"
        } else {
            "user.com.apple.quarantine"
        };
        if let Err(e) = xattr::set(&path, name, b"0081;6720f1c2;Safari;") {
            eprintln!("skipping: this file system does not take extended attributes ({e})");
            return;
        }
        let attrs = read_xattrs(&path).unwrap().unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].name, name);
        assert_eq!(attrs[0].value, b"0081;6720f1c2;Safari;");
        assert!(read_xattrs(&dir.path().join("gone")).unwrap().is_none());
    }
}
