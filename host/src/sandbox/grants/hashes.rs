//! SHA-256 of files for the `file-hash` and `file-read` grants: a cache shared by every
//! plugin of a runtime, keyed by path and checked against inode, size and times, and
//! hashing that respects the calling guest's deadline — a file that cannot be hashed
//! before it is handed, hasher state and open handle, to a background thread that
//! finishes it into the cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Digests the cache keeps; the oldest entry goes first beyond this.
pub const HASH_CACHE_ENTRIES: usize = 16_384;
/// Longest path whose digest is cached (longer ones are hashed every time): with
/// [`HASH_CACHE_ENTRIES`], keeps the cache's keys under 32 MiB however long the paths an
/// attacker makes.
pub const MAX_CACHED_PATH_BYTES: usize = 1024;
/// Bytes hashed between two looks at the clock: well under a millisecond of SHA-256.
const HASH_CHUNK_BYTES: usize = 64 << 10;
/// Time left to the guest after a hash stops for its deadline, to answer in.
pub const HASH_DEADLINE_MARGIN: Duration = Duration::from_millis(20);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::grants::open_regular;

    /// What `enrich.sha256` does after resolving: open, then hash through the cache.
    fn hash(cache: &Arc<HashCache>, path: &Path, max: u64) -> Result<Option<String>, String> {
        let Some((file, meta)) = open_regular(path)? else {
            return Ok(None);
        };
        cache.sha256(file, &meta, path, max, None).map(Some)
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

    /// A file too large to hash before the deadline is not hashed inside the call: the
    /// call answers an error at the deadline, the background thread finishes the digest,
    /// and the next call is a cache hit.
    #[test]
    fn a_hash_past_the_deadline_finishes_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![7u8; 64 << 20]).unwrap();
        let cache = Arc::new(HashCache::default());
        let (file, meta) = open_regular(&path).unwrap().unwrap();
        // A deadline already inside the margin: not a byte is hashed in the call.
        let err = cache
            .sha256(file, &meta, &path, 1 << 30, Some(Instant::now()))
            .unwrap_err();
        assert!(err.contains("before the call's deadline"), "{err}");
        assert!(err.contains("in the background"), "{err}");
        assert_eq!(cache.deferred(), 1);
        let expected = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
        // The background thread puts the digest in the cache (polled; never a timing).
        let mut found = None;
        for _ in 0..600 {
            if let Some(d) = cache.get(&path, FileVersion::of(&meta)) {
                found = Some(d);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(found.as_deref(), Some(expected.as_str()));
        let (hits, _) = cache.stats();
        let (file, meta) = open_regular(&path).unwrap().unwrap();
        assert_eq!(
            cache.sha256(file, &meta, &path, 1 << 30, Some(Instant::now())),
            Ok(expected)
        );
        assert_eq!(
            cache.stats().0,
            hits + 1,
            "served from the cache, past its deadline"
        );
    }
}
