//! Capability policy: the names of the capabilities an admin grants, what each grant
//! covers ([`EnrichScope`], [`FileScope`]), the digest cache the hashing grants share
//! ([`HashCache`]), and how the host opens the files a grant lets it read. The WIT
//! implementations in [`crate::sandbox::host_api`] ask this module; it asks none of them.

pub mod hashes;
pub mod scope;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use hashes::{HashCache, hash_file};
pub use scope::{DEFAULT_MAX_HASH_BYTES, DEFAULT_MAX_READ_BYTES, FileScope, Resolved, ScopeError};

/// Capability for `files.metadata` / `sha256` / `read` (collectors).
pub const CAP_FILE_READ: &str = "file-read";
/// Capability for `sha256`.
pub const CAP_HASH: &str = "file-hash";
/// Capability for `xattrs`.
pub const CAP_XATTR: &str = "file-xattr";
/// Capability for `plist`.
pub const CAP_PLIST: &str = "plist-read";

/// The actions a remediator may plan, each a capability of its own named like the
/// `action` case: a planned action whose capability the admin did not grant the
/// remediator is refused and recorded, never run.
pub const ACTION_CAPABILITIES: &[&str] = &[
    "kill-process",
    "quarantine-file",
    "remove-file",
    "remove-launch-item",
    "isolate-network",
    "lock-screen",
    "notify",
    "run-script",
    "jamf-lock",
    "jamf-erase",
    "jamf-penalty-box",
    "jamf-policy",
    "block",
    "tag-device",
];

/// Capabilities a plugin may request and an admin may grant.
pub const KNOWN_CAPABILITIES: &[&str] = &[
    CAP_FILE_READ,
    CAP_HASH,
    CAP_XATTR,
    CAP_PLIST,
    "kill-process",
    "quarantine-file",
    "remove-file",
    "remove-launch-item",
    "isolate-network",
    "lock-screen",
    "notify",
    "run-script",
    "jamf-lock",
    "jamf-erase",
    "jamf-penalty-box",
    "jamf-policy",
    "block",
    "tag-device",
];

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
