//! `ward:plugin/enrich`: file facts for detectors — SHA-256 (cached), extended attributes
//! and property lists — each behind its own capability and inside the granted file scope.
//!
//! Paths are resolved by handle through [`FileScope`] exactly as for collectors (see
//! [`crate::scope`]): absolute, no `..`, symlinks resolved by the host, the scope checked
//! on the real path, and the file read from the handle the walk opened. A path that does
//! not exist answers `none`.
//!
//! Hashing respects the calling guest's deadline: a file that cannot be hashed before it
//! is handed, hasher state and all, to a background thread that finishes it into the
//! cache, and the call answers an `io` error saying so (a verdict plugin then answers
//! `undecided`; the next exec of the same file is a cache hit).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bindings::detector::ward::plugin::enrich::{EnrichError, Host, Xattr};
use crate::scope::{FileScope, ScopeError};
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
/// Bytes of JSON one `plist` answer may hold: what jamf-analytics accepts, and a bound on
/// what a small binary list whose objects share references can expand to.
pub const MAX_PLIST_JSON_BYTES: usize = 2 << 20;
/// The conversion's budgets: depth, values and output bytes, enforced while reading.
pub const PLIST_LIMITS: ward_plist_json::Limits = ward_plist_json::Limits {
    max_depth: MAX_PLIST_DEPTH,
    max_nodes: ward_plist_json::MAX_NODES,
    max_output_bytes: MAX_PLIST_JSON_BYTES,
};
/// Stack of the thread that parses and drops a property list: the parser builds values
/// iteratively, but dropping a deeply nested value recurses. Virtual size; only the pages
/// touched are committed.
const PLIST_STACK_BYTES: usize = 512 << 20;

/// Digests the cache keeps; the oldest entry goes first beyond this.
pub const HASH_CACHE_ENTRIES: usize = 16_384;
/// Longest path whose digest is cached (longer ones are hashed every time): with
/// [`HASH_CACHE_ENTRIES`], keeps the cache's keys under 32 MiB however long the paths an
/// attacker makes.
pub const MAX_CACHED_PATH_BYTES: usize = 1024;
/// Bytes hashed between two looks at the clock: well under a millisecond of SHA-256.
const HASH_CHUNK_BYTES: usize = 64 << 10;
/// Time left to the guest after a hash stops for its deadline, to answer in.
pub const HASH_DEADLINE_MARGIN: Duration = Duration::from_millis(10);
/// Hashes waiting for the background thread; past that a request is dropped and hashed
/// on a later one.
pub const HASH_BACKLOG: usize = 16;

/// What identifies one version of a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A hash stopped at a deadline, to be finished in the background.
struct Unfinished {
    file: std::fs::File,
    path: PathBuf,
    version: FileVersion,
    hasher: Sha256,
    max_bytes: u64,
    done: u64,
}

/// SHA-256 digests keyed by path and checked against inode, size and times, shared by
/// every plugin of one runtime, with the thread that finishes hashes stopped at a
/// deadline.
#[derive(Debug, Default)]
pub struct HashCache {
    entries: Mutex<Digests>,
    hits: AtomicU64,
    misses: AtomicU64,
    deferred: AtomicU64,
    background: OnceLock<Mutex<Option<SyncSender<Unfinished>>>>,
    in_flight: Arc<Mutex<HashSet<(PathBuf, FileVersion)>>>,
}

impl std::fmt::Debug for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Unfinished({}, {} bytes done)",
            self.path.display(),
            self.done
        )
    }
}

/// How far a hash got.
enum Hashed {
    Digest(String),
    /// The deadline came first.
    Stopped(Sha256, u64),
}

/// Hashes `file` from byte `done` (at most `max_bytes` in all), stopping when `deadline`
/// (less the margin) comes first.
fn hash_until(
    file: &mut std::fs::File,
    mut hasher: Sha256,
    mut done: u64,
    max_bytes: u64,
    deadline: Option<Instant>,
) -> std::io::Result<Hashed> {
    let mut buf = vec![0u8; HASH_CHUNK_BYTES];
    loop {
        if let Some(deadline) = deadline
            && Instant::now() + HASH_DEADLINE_MARGIN >= deadline
        {
            return Ok(Hashed::Stopped(hasher, done));
        }
        let room = usize::try_from(max_bytes.saturating_sub(done))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if room == 0 {
            break;
        }
        let n = match file.read(buf.get_mut(..room).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        done += n as u64;
    }
    Ok(Hashed::Digest(hex::encode(hasher.finalize())))
}

impl HashCache {
    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Hashes handed to the background thread so far.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
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
        put_into(&self.entries, path, version, digest);
    }

    /// The digest of the regular file `file` (opened by handle at real path `path`), from
    /// the cache when it has not changed since it was hashed. Past `deadline` the rest is
    /// hashed in the background and this answers an error saying so.
    pub fn sha256(
        self: &Arc<Self>,
        mut file: std::fs::File,
        meta: &std::fs::Metadata,
        path: &Path,
        max_bytes: u64,
        deadline: Option<Instant>,
    ) -> Result<String, String> {
        let version = FileVersion::of(meta);
        if version.size > max_bytes {
            return Err(format!(
                "{}: {} bytes is over the {max_bytes}-byte hash cap",
                path.display(),
                version.size
            ));
        }
        if let Some(digest) = self.get(path, version) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(digest);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let hashed = hash_until(&mut file, Sha256::new(), 0, max_bytes, deadline)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match hashed {
            Hashed::Digest(digest) => {
                // A digest of a file that changed while it was read is of no version.
                if !unchanged(&file, version) {
                    return Err(format!("{}: changed while it was hashed", path.display()));
                }
                self.put(path.to_path_buf(), version, digest.clone());
                Ok(digest)
            }
            Hashed::Stopped(hasher, done) => {
                let queued = self.defer(Unfinished {
                    file,
                    path: path.to_path_buf(),
                    version,
                    hasher,
                    max_bytes,
                    done,
                });
                Err(format!(
                    "{}: {} bytes could not be hashed before the call's deadline ({done} done); {}",
                    path.display(),
                    version.size,
                    if queued {
                        "finishing it in the background for next time"
                    } else {
                        "the background hasher is busy; a later request will hash it"
                    }
                ))
            }
        }
    }

    /// Hands an unfinished hash to the background thread (started on first use). False if
    /// its backlog is full.
    fn defer(self: &Arc<Self>, job: Unfinished) -> bool {
        let key = (job.path.clone(), job.version);
        {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if in_flight.contains(&key) {
                return true;
            }
            if in_flight.len() >= HASH_BACKLOG {
                return false;
            }
            in_flight.insert(key.clone());
        }
        let slot = self
            .background
            .get_or_init(|| Mutex::new(self.start_background()));
        let sender = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let sent = match sender {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if sent {
            self.deferred.fetch_add(1, Ordering::Relaxed);
        } else {
            self.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
        sent
    }

    fn start_background(self: &Arc<Self>) -> Option<SyncSender<Unfinished>> {
        let (tx, rx) = mpsc::sync_channel::<Unfinished>(HASH_BACKLOG);
        // The thread holds the cache weakly: it ends with the runtime that owns the cache.
        let cache = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ward-hash".into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    let result = hash_until(
                        &mut job.file,
                        job.hasher.clone(),
                        job.done,
                        job.max_bytes,
                        None,
                    );
                    let Some(cache) = cache.upgrade() else { break };
                    if let Ok(Hashed::Digest(digest)) = result
                        && unchanged(&job.file, job.version)
                    {
                        cache.put(job.path.clone(), job.version, digest);
                    }
                    cache
                        .in_flight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&(job.path, job.version));
                }
            })
            .ok()
            .map(|_| tx)
    }
}

/// True if the open file is still the version that was hashed.
fn unchanged(file: &std::fs::File, version: FileVersion) -> bool {
    file.metadata()
        .is_ok_and(|m| FileVersion::of(&m) == version)
}

fn put_into(entries: &Mutex<Digests>, path: PathBuf, version: FileVersion, digest: String) {
    if path.as_os_str().len() > MAX_CACHED_PATH_BYTES {
        return;
    }
    let mut guard = entries.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Hashes a file for a collector (no cache), stopping with an error at `deadline`.
pub fn hash_file(
    mut file: std::fs::File,
    path: &Path,
    max_bytes: u64,
    deadline: Option<Instant>,
) -> Result<String, String> {
    let version = file.metadata().map(|m| FileVersion::of(&m)).ok();
    match hash_until(&mut file, Sha256::new(), 0, max_bytes, deadline)
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        Hashed::Digest(_) if version.is_none_or(|v| !unchanged(&file, v)) => {
            Err(format!("{}: changed while it was hashed", path.display()))
        }
        Hashed::Digest(d) => Ok(d),
        Hashed::Stopped(_, done) => Err(format!(
            "{}: not hashed before the call's deadline ({done} bytes done)",
            path.display()
        )),
    }
}

/// Opens `path` for reading only if it is a regular file: `O_NONBLOCK` so a FIFO planted
/// at a configured path cannot hang the agent in `open`, `O_NOFOLLOW` so a final symlink
/// is refused. Plugin paths go through [`FileScope::resolve`] instead. `Ok(None)` if it
/// does not exist.
pub fn open_regular(path: &Path) -> Result<Option<(std::fs::File, std::fs::Metadata)>, String> {
    open_regular_with(path, libc::O_NONBLOCK | libc::O_NOFOLLOW)
}

/// [`open_regular`] following symlinks: for the admin's own files (config files,
/// analytics), which an admin may well link into place.
pub fn open_regular_following(
    path: &Path,
) -> Result<Option<(std::fs::File, std::fs::Metadata)>, String> {
    open_regular_with(path, libc::O_NONBLOCK)
}

fn open_regular_with(
    path: &Path,
    flags: i32,
) -> Result<Option<(std::fs::File, std::fs::Metadata)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
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

fn from_scope_error(e: ScopeError) -> EnrichError {
    match e {
        ScopeError::Denied(m) => EnrichError::Denied(m),
        ScopeError::Io(m) => EnrichError::Io(m),
    }
}

/// Resolves `path` for a call needing `capability`.
fn resolve(
    state: &PluginState,
    capability: &str,
    granted: impl Fn(&EnrichScope) -> bool,
    path: &str,
) -> Result<(Arc<EnrichScope>, Option<crate::scope::Resolved>), EnrichError> {
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
    let resolved = scope.files.resolve(path, true).map_err(from_scope_error)?;
    Ok((Arc::clone(scope), resolved))
}

/// Reads and converts a property list from an open regular file, size-capped, on a
/// thread whose stack can take dropping whatever nesting fits in the size cap.
pub fn read_plist_from(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    shown: &Path,
) -> Result<String, String> {
    let size = meta.len();
    if size > MAX_PLIST_BYTES {
        return Err(format!(
            "{}: {size} bytes is over the {MAX_PLIST_BYTES}-byte property list cap",
            shown.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLIST_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    let label = shown.display().to_string();
    std::thread::Builder::new()
        .name("ward-plist".into())
        .stack_size(PLIST_STACK_BYTES)
        .spawn(move || {
            let json = ward_plist_json::parse_with(&bytes, &PLIST_LIMITS)
                .map_err(|e| format!("{label}: {e}"))?;
            Ok(json.to_string())
        })
        .map_err(|e| format!("{}: cannot start the parser thread: {e}", shown.display()))?
        .join()
        .map_err(|_| format!("{}: the property list parser panicked", shown.display()))?
}

/// Reads and converts the property list at `path` (the admin's own files and tests;
/// plugin paths go through the scope). `Ok(None)` if it does not exist.
pub fn read_plist(path: &Path) -> Result<Option<String>, String> {
    let Some((file, meta)) = open_regular(path)? else {
        return Ok(None);
    };
    read_plist_from(file, &meta, path).map(Some)
}

/// Bytes of attribute names read (the list itself can be long on some file systems).
const MAX_XATTR_NAMES_BYTES: usize = 64 << 10;

/// Reads up to [`MAX_XATTRS`] extended attributes of an open file. Each value's size is
/// asked first and only a value within [`MAX_XATTR_VALUE_BYTES`] is read; a larger one
/// (a resource fork of gigabytes, say) is answered empty, never read into memory.
pub fn read_xattrs_from(file: &std::fs::File, shown: &Path) -> Result<Vec<Xattr>, String> {
    read_xattrs_capped(file, shown, MAX_XATTR_VALUE_BYTES)
}

fn read_xattrs_capped(
    file: &std::fs::File,
    shown: &Path,
    max_value: usize,
) -> Result<Vec<Xattr>, String> {
    let fail = |e: rustix::io::Errno| format!("{}: {}", shown.display(), std::io::Error::from(e));
    let listed = rustix::fs::flistxattr_query(file).map_err(fail)?;
    let mut names = vec![0u8; listed.min(MAX_XATTR_NAMES_BYTES)];
    let got = match rustix::fs::flistxattr(file, &mut names[..]) {
        Ok(n) => n,
        // Grew past the buffer since the query (or is over the cap): read none rather
        // than a cut list.
        Err(rustix::io::Errno::RANGE) => 0,
        Err(e) => return Err(fail(e)),
    };
    let mut out = Vec::new();
    for raw in names.get(..got).unwrap_or_default().split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        if out.len() >= MAX_XATTRS {
            break;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            continue;
        };
        let name = std::ffi::OsStr::from_bytes(raw);
        let size = match rustix::fs::fgetxattr_query(file, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(fail(e)),
        };
        let value = if size > max_value {
            Vec::new()
        } else {
            let mut buf = vec![0u8; size];
            match rustix::fs::fgetxattr(file, name, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    buf
                }
                // Changed since the query: grew (answered as oversize) or went away.
                Err(rustix::io::Errno::RANGE) => Vec::new(),
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => return Err(fail(e)),
            }
        };
        out.push(Xattr {
            name: text.to_owned(),
            value,
        });
    }
    Ok(out)
}

impl Host for PluginState {
    fn sha256(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (scope, resolved) = resolve(self, CAP_HASH, |s| s.hash, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let (file, meta) = resolved.open_regular().map_err(from_scope_error)?;
        scope
            .cache
            .sha256(
                file,
                &meta,
                &resolved.real,
                scope.files.max_hash_bytes,
                self.deadline,
            )
            .map(Some)
            .map_err(EnrichError::Io)
    }

    fn xattrs(&mut self, path: String) -> Result<Option<Vec<Xattr>>, EnrichError> {
        let (_, resolved) = resolve(self, CAP_XATTR, |s| s.xattr, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let file = resolved.open().map_err(from_scope_error)?;
        read_xattrs_from(&file, &resolved.real)
            .map(Some)
            .map_err(EnrichError::Io)
    }

    fn plist(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (_, resolved) = resolve(self, CAP_PLIST, |s| s.plist, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let (file, meta) = resolved.open_for_contents().map_err(from_scope_error)?;
        read_plist_from(file, &meta, &resolved.real)
            .map(Some)
            .map_err(EnrichError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What `enrich.sha256` does after resolving: open, then hash through the cache.
    fn hash(cache: &Arc<HashCache>, path: &Path, max: u64) -> Result<Option<String>, String> {
        let Some((file, meta)) = open_regular(path)? else {
            return Ok(None);
        };
        cache.sha256(file, &meta, path, max, None).map(Some)
    }

    fn read_xattrs(path: &Path) -> Result<Option<Vec<Xattr>>, String> {
        match std::fs::File::open(path) {
            Ok(f) => read_xattrs_from(&f, path).map(Some),
            Err(_) => Ok(None),
        }
    }

    #[test]
    fn digests_are_cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"abc").unwrap();
        let cache = Arc::new(HashCache::default());
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash(&cache, &path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(hash(&cache, &path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(cache.stats(), (1, 1));
        // New content (new size) is hashed again, not served stale.
        std::fs::write(&path, b"abcd").unwrap();
        let abcd = "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589";
        assert_eq!(hash(&cache, &path, 1 << 20).unwrap().as_deref(), Some(abcd));
        assert_eq!(cache.stats(), (1, 2));
        // Replaced by another file at the same path (new inode).
        let other = dir.path().join("other");
        std::fs::write(&other, b"abc").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(hash(&cache, &path, 1 << 20).unwrap().as_deref(), Some(abc));
        assert_eq!(cache.stats(), (1, 3));
        // Missing: none; too big: an error naming the cap; a directory: an error.
        assert_eq!(
            hash(&cache, &dir.path().join("gone"), 1 << 20).unwrap(),
            None
        );
        assert!(hash(&cache, &path, 2).unwrap_err().contains("hash cap"));
        assert!(
            hash(&cache, dir.path(), 1 << 20)
                .unwrap_err()
                .contains("regular")
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let cache = Arc::new(HashCache::default());
        let meta = std::fs::metadata(&path).unwrap();
        for i in 0..HASH_CACHE_ENTRIES + 5 {
            cache.put(
                PathBuf::from(format!("/x/{i}")),
                FileVersion::of(&meta),
                String::new(),
            );
        }
        let long = PathBuf::from(format!("/{}", "p".repeat(MAX_CACHED_PATH_BYTES)));
        cache.put(long.clone(), FileVersion::of(&meta), String::new());
        let guard = cache.entries.lock().unwrap();
        assert_eq!(guard.0.len(), HASH_CACHE_ENTRIES);
        assert!(!guard.0.contains_key(Path::new("/x/0")));
        assert!(
            !guard.0.contains_key(&long),
            "a key over the path cap was kept"
        );
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
        let cache = Arc::new(HashCache::default());
        assert!(
            hash(&cache, &fifo, 1 << 20)
                .unwrap_err()
                .contains("not a regular file")
        );
        // A symlink is not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&deep, &link).unwrap();
        assert!(hash(&cache, &link, 1 << 20).is_err());
    }

    /// A binary property list of a few hundred bytes whose arrays each hold 16 references
    /// to the next expands to 16^10 values; it once took 15 GB before being killed. The
    /// conversion's budgets stop it while reading.
    pub(crate) fn billion_laughs() -> Vec<u8> {
        let levels = 10u8;
        let mut out = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for i in 0..levels {
            offsets.push(out.len() as u32);
            out.push(0xa0 | 0x0f);
            out.extend_from_slice(&[0x10, 16]);
            out.extend(std::iter::repeat_n(i + 1, 16));
        }
        offsets.push(out.len() as u32);
        out.extend_from_slice(&[0x5f, 0x10, 200]);
        out.extend(std::iter::repeat_n(b'A', 200));
        let table = out.len() as u64;
        for o in &offsets {
            out.extend_from_slice(&o.to_be_bytes());
        }
        out.extend_from_slice(&[0; 6]);
        out.push(4);
        out.push(1);
        out.extend_from_slice(&u64::from(levels + 1).to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&table.to_be_bytes());
        out
    }

    #[test]
    fn a_billion_laughs_property_list_is_refused_while_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("com.apple.Terminal.plist");
        let bytes = billion_laughs();
        assert!(bytes.len() < 1024, "{}", bytes.len());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_plist(&path).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
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
        // A value over the cap is not read at all (a resource fork can be gigabytes): its
        // size is asked first and it is answered empty.
        let file = std::fs::File::open(&path).unwrap();
        let capped = read_xattrs_capped(&file, &path, 8).unwrap();
        assert_eq!(capped.len(), 1);
        assert!(capped[0].value.is_empty());
    }
}
