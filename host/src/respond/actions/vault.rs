//! The quarantine vault (`<state_dir>/vault`): a quarantined file keeps its content,
//! hash, owner, mode, timestamps and extended attributes, and is restored exactly.
//!
//! Every path is resolved by handle from `/` ([`FileScope::resolve`]), so the real path
//! checked is the file that is then moved, and [`Target`]'s checks hold: the path reached
//! no symbolic link but the system's own (`/tmp`, `/var`, `/etc` → `/private/…`), so a
//! link the attacker planted cannot aim ward at another file; nothing protected is it or
//! under it (case-insensitively); it is not another user's file; a directory is an app
//! bundle. A file is moved into the vault with `renameat` (same volume: content, inode,
//! metadata and xattrs travel untouched; a running binary keeps running) and the moved
//! inode is checked to be the one hashed, or, across volumes, copied (up to the admin's
//! cap), checked against its hash, then unlinked. `meta.json` beside it records what it
//! was and which directory it came from; restore puts it back only into that same
//! directory. `index.jsonl` lists the items for the quarantine-retrieval collector.

use std::io::{Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::respond::actions::Outcome;
use crate::respond::invariants::Protected;
use crate::sandbox::grants::{FileScope, Resolved, hash_file};

/// Largest file whose SHA-256 the vault computes (it hashes on the response path).
pub const MAX_HASH_BYTES: u64 = 1 << 30;
/// Extended attributes kept in a record (a moved file keeps all of its own anyway), bytes
/// per value and in all.
const MAX_XATTRS: usize = 128;
const MAX_XATTR_BYTES: usize = 64 << 10;
const MAX_XATTRS_TOTAL: usize = 512 << 10;
/// Largest `meta.json` read back.
const MAX_META_BYTES: u64 = 4 << 20;

/// What a vault item was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The action that put it here.
    pub id: i64,
    /// The real path it had.
    pub original: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// `moved` or `copied`.
    pub method: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of a regular file (none past [`MAX_HASH_BYTES`]).
    pub sha256: Option<String>,
    /// Mode bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time (s, ns).
    pub atime: (i64, i64),
    /// Modification time (s, ns).
    pub mtime: (i64, i64),
    /// Extended attributes: (name, value as hex).
    pub xattrs: Vec<(String, String)>,
    /// A symlink's target.
    pub link_target: Option<String>,
    /// When it was quarantined (RFC 3339).
    pub quarantined: String,
    /// The directory it was in: (device, inode); restore goes back only there.
    #[serde(default)]
    pub parent: Option<(u64, u64)>,
    /// Extended attributes over the record's caps, by name (a moved file keeps them).
    #[serde(default)]
    pub xattrs_not_recorded: Vec<String>,
}

/// The vault.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
}

fn io(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// `path` resolved by handle from `/`.
pub fn resolve(path: &str, follow: bool) -> Result<Resolved, String> {
    FileScope::new(&[PathBuf::from("/")])
        .resolve(path, follow)
        .map_err(|e| match e {
            crate::sandbox::grants::ScopeError::Denied(m)
            | crate::sandbox::grants::ScopeError::Io(m) => m,
        })?
        .ok_or_else(|| format!("{path}: no such file"))
}

/// (device, inode) of a `stat` (`st_dev` is an `i32` on macOS, a `u64` on Linux).
#[allow(clippy::useless_conversion)]
fn dev_ino(stat: &rustix::fs::Stat) -> (u64, u64) {
    (
        u64::try_from(stat.st_dev).unwrap_or(0),
        u64::try_from(stat.st_ino).unwrap_or(0),
    )
}

#[allow(clippy::useless_conversion)]
fn times(stat: &rustix::fs::Stat) -> ((i64, i64), (i64, i64)) {
    (
        (
            i64::from(stat.st_atime),
            i64::try_from(stat.st_atime_nsec).unwrap_or(0),
        ),
        (
            i64::from(stat.st_mtime),
            i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
        ),
    )
}

/// The xattrs of an open file within the record's caps, and the names of those over them.
fn read_xattrs(fd: std::os::fd::BorrowedFd<'_>) -> (Vec<(String, String)>, Vec<String>) {
    let mut names = vec![0u8; 64 << 10];
    let Ok(n) = rustix::fs::flistxattr(fd, &mut names[..]) else {
        return (Vec::new(), Vec::new());
    };
    let (mut kept, mut over, mut total) = (Vec::new(), Vec::new(), 0usize);
    for name in names.get(..n).unwrap_or_default().split(|&b| b == 0) {
        if name.is_empty() {
            continue;
        }
        let shown = String::from_utf8_lossy(name).into_owned();
        let size = rustix::fs::fgetxattr_query(fd, name).unwrap_or(usize::MAX);
        if kept.len() >= MAX_XATTRS || size > MAX_XATTR_BYTES || total + size > MAX_XATTRS_TOTAL {
            over.push(shown);
            continue;
        }
        let mut value = vec![0u8; size];
        if let Ok(len) = rustix::fs::fgetxattr(fd, name, &mut value[..]) {
            value.truncate(len);
            total += len;
            kept.push((shown, hex::encode(value)));
        }
    }
    (kept, over)
}

/// What a path names once macOS's own links are followed: `/tmp`, `/var` and `/etc` are
/// `/private/tmp`, `/private/var` and `/private/etc`.
fn system_real(path: &str) -> String {
    for link in ["/tmp", "/var", "/etc"] {
        if path == link || path.starts_with(&format!("{link}/")) {
            return format!("/private{path}");
        }
    }
    path.to_owned()
}

/// The checks a target must pass before ward moves or deletes it.
pub struct Target<'a> {
    /// The protected set.
    pub protected: &'a Protected,
    /// The offender's effective uid: a file of another (non-root) user is refused.
    pub owner: Option<u32>,
    /// A further check of the real path (a launch item stays in its launch directory).
    pub refuse: &'a dyn Fn(&Path) -> Option<String>,
}

/// Lowest uid of a person's account (on macOS; Linux's are 1000 up).
const FIRST_USER_UID: u32 = 500;

impl Target<'_> {
    /// Why `entry` (asked for as `requested`, `lstat` `stat`) must be left alone.
    fn refusal(
        &self,
        requested: &str,
        entry: &Resolved,
        stat: &rustix::fs::Stat,
    ) -> Option<String> {
        let real = entry.real.display().to_string();
        if real != requested && real != system_real(requested) {
            return Some(format!(
                "{requested} reaches {real} through a symbolic link: ward acts only on the file the event named"
            ));
        }
        if let Some(why) = self
            .protected
            .refuse_file(&entry.real)
            .or_else(|| (self.refuse)(&entry.real))
        {
            return Some(why);
        }
        if let Some(owner) = self.owner
            && owner != 0
            && stat.st_uid >= FIRST_USER_UID
            && stat.st_uid != owner
        {
            return Some(format!(
                "{real} belongs to uid {}, not to the offender (uid {owner})",
                stat.st_uid
            ));
        }
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        if kind.is_dir()
            && !entry
                .real
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("app"))
        {
            return Some(format!("{real} is a directory and not an app bundle"));
        }
        None
    }
}

impl Vault {
    /// The vault in `state_dir` (created 0700).
    pub fn open(state_dir: &Path) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = state_dir.join("vault");
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io(&dir.display().to_string(), e))?;
        }
        Ok(Self { dir })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn item(&self, item: &str) -> Result<PathBuf, String> {
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{item}` is not a vault item"));
        }
        Ok(self.dir.join(item))
    }

    fn index(&self, line: serde_json::Value) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.join("index.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("vault index", e))?;
        writeln!(f, "{line}").map_err(|e| io("vault index", e))
    }

    /// Moves `path` into the vault as item `id`, after [`Target`]'s checks (see the module
    /// documentation).
    pub fn quarantine(
        &self,
        id: i64,
        path: &str,
        target: &Target<'_>,
        max_copy: u64,
    ) -> Result<Outcome, String> {
        let entry = resolve(path, false)?;
        self.quarantine_entry(id, path, &entry, target, max_copy)
    }

    /// [`Self::quarantine`] of an entry already resolved (asked for as `requested`).
    pub fn quarantine_entry(
        &self,
        id: i64,
        requested: &str,
        entry: &Resolved,
        target: &Target<'_>,
        max_copy: u64,
    ) -> Result<Outcome, String> {
        let stat = entry.lstat().map_err(|e| format!("{e:?}"))?;
        if let Some(why) = target.refusal(requested, entry, &stat) {
            return Err(format!("refused: {why}"));
        }
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        let kind_name = if kind.is_file() {
            "file"
        } else if kind.is_dir() {
            "dir"
        } else if kind.is_symlink() {
            "symlink"
        } else {
            return Err(format!(
                "{}: not a file, directory or link",
                entry.real.display()
            ));
        };
        let (mut sha256, mut xattrs, mut over, mut link_target) =
            (None, Vec::new(), Vec::new(), None);
        // What is hashed is what must arrive in the vault: (device, inode).
        let mut hashed = None;
        if kind.is_file() || kind.is_dir() {
            let file = entry.open().map_err(|e| format!("{e:?}"))?;
            let fst = rustix::fs::fstat(&file).map_err(|e| io("fstat", e))?;
            hashed = Some(dev_ino(&fst));
            (xattrs, over) = read_xattrs(file.as_fd());
            if kind.is_file() && u64::try_from(stat.st_size).unwrap_or(u64::MAX) <= MAX_HASH_BYTES {
                sha256 = Some(hash_file(file, &entry.real, MAX_HASH_BYTES, None)?);
            }
        } else {
            link_target = rustix::fs::readlinkat(entry.parent(), entry.name(), Vec::new())
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
        }
        let parent = rustix::fs::fstat(entry.parent()).ok().map(|p| dev_ino(&p));
        let (atime, mtime) = times(&stat);
        #[allow(clippy::useless_conversion)]
        let mut meta = Meta {
            id,
            original: entry.real.display().to_string(),
            kind: kind_name.into(),
            method: "moved".into(),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            sha256,
            mode: u32::from(stat.st_mode),
            uid: stat.st_uid,
            gid: stat.st_gid,
            atime,
            mtime,
            xattrs,
            link_target,
            quarantined: crate::clock::now_rfc3339(),
            parent,
            xattrs_not_recorded: over,
        };
        let item = self.item(&id.to_string())?;
        std::fs::create_dir(&item).map_err(|e| io(&item.display().to_string(), e))?;
        let item_fd = rustix::fs::open(
            &item,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("vault item", e))?;
        // The record first: a crash after the move still leaves what is needed to restore.
        write_replace(&item_fd, "meta.json", &to_json(&meta)?)?;
        let moved = rustix::fs::renameat(entry.parent(), entry.name(), &item_fd, "content");
        match moved {
            Ok(()) => {
                let now = rustix::fs::statat(&item_fd, "content", AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io("vault content", e))?;
                if hashed.is_some_and(|h| h != dev_ino(&now)) {
                    // Swapped between the hash and the move: put it back, report.
                    let _ = rustix::fs::renameat(&item_fd, "content", entry.parent(), entry.name());
                    let _ = std::fs::remove_file(item.join("meta.json"));
                    let _ = std::fs::remove_dir(&item);
                    return Err(format!(
                        "{} was replaced between its hash and the move; left in place",
                        entry.real.display()
                    ));
                }
            }
            Err(rustix::io::Errno::XDEV) if kind.is_file() && meta.size <= max_copy => {
                self.copy_in(entry, &item_fd, &meta)?;
                meta.method = "copied".into();
                write_replace(&item_fd, "meta.json", &to_json(&meta)?)?;
                rustix::fs::unlinkat(entry.parent(), entry.name(), AtFlags::empty())
                    .map_err(|e| io(&format!("unlinking {}", entry.real.display()), e))?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(item.join("meta.json"));
                let _ = std::fs::remove_file(item.join("content"));
                let _ = std::fs::remove_dir(&item);
                return Err(if e == rustix::io::Errno::XDEV {
                    format!(
                        "{} is on another volume and is a directory or over the {max_copy}-byte copy cap",
                        entry.real.display()
                    )
                } else {
                    io(
                        &format!("moving {} into the vault", entry.real.display()),
                        e,
                    )
                });
            }
        }
        self.index(serde_json::json!({
            "id": id, "original": meta.original, "sha256": meta.sha256, "size": meta.size,
            "item": id.to_string(),
        }))?;
        let mut out = Outcome::new(format!(
            "quarantined {} into the vault ({})",
            meta.original, meta.method
        ))
        .with("item", id.to_string())
        .with("size", meta.size)
        .with("method", meta.method.clone());
        if let Some(sha) = &meta.sha256 {
            out = out.with("sha256", sha.clone());
        }
        Ok(out)
    }

    /// Copies a regular file into the item (across volumes), checking the hash.
    fn copy_in(
        &self,
        entry: &Resolved,
        item: &std::os::fd::OwnedFd,
        meta: &Meta,
    ) -> Result<(), String> {
        let mut src = entry.open().map_err(|e| format!("{e:?}"))?;
        let fd = rustix::fs::openat(
            item,
            "content",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("vault content", e))?;
        let mut dst = std::fs::File::from(fd);
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = src.read(&mut buf).map_err(|e| io("copying", e))?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            sha2::Digest::update(&mut hasher, chunk);
            dst.write_all(chunk).map_err(|e| io("copying", e))?;
        }
        dst.sync_all().map_err(|e| io("copying", e))?;
        let copied = hex::encode(sha2::Digest::finalize(hasher));
        if meta.sha256.as_deref().is_some_and(|s| s != copied) {
            return Err("the file changed while it was copied; left in place".into());
        }
        Ok(())
    }

    /// Reads an item's record.
    pub fn meta(&self, item: &str) -> Result<Meta, String> {
        let path = self.item(item)?.join("meta.json");
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_META_BYTES).read_to_string(&mut text))
            .map_err(|e| io(&path.display().to_string(), e))?;
        serde_json::from_str(&text).map_err(|e| io(&path.display().to_string(), e))
    }

    /// Puts item `item` back where it was, exactly — only into the very directory it came
    /// from (same real path, same device and inode), never over anything there now, never
    /// onto a protected path — and checks it is what was quarantined. The item stays in
    /// the vault if the check fails.
    pub fn restore(&self, item: &str, protected: &Protected) -> Result<Outcome, String> {
        let meta = self.meta(item)?;
        let original = Path::new(&meta.original);
        let (Some(parent), Some(name)) = (original.parent(), original.file_name()) else {
            return Err(format!("{}: no directory to restore into", meta.original));
        };
        if let Some(why) = protected.refuse_file(original) {
            return Err(format!("refused: {why}"));
        }
        let dir = resolve(&parent.display().to_string(), false)?;
        if !dir.file_type.is_dir() || dir.real != parent {
            return Err(format!(
                "refused: {} is no longer the directory {} came from",
                parent.display(),
                meta.original
            ));
        }
        let dir_fd = dir.open().map_err(|e| format!("{e:?}"))?;
        let here = dev_ino(&rustix::fs::fstat(&dir_fd).map_err(|e| io("fstat", e))?);
        if meta.parent.is_some_and(|p| p != here) {
            return Err(format!(
                "refused: {} was replaced since {} was quarantined",
                parent.display(),
                meta.original
            ));
        }
        let item_dir = self.item(item)?;
        let item_fd = rustix::fs::open(
            &item_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("vault item", e))?;
        if meta.method == "moved" {
            #[cfg(target_os = "linux")]
            let flags = rustix::fs::RenameFlags::NOREPLACE;
            #[cfg(not(target_os = "linux"))]
            let flags = rustix::fs::RenameFlags::EXCL;
            rustix::fs::renameat_with(&item_fd, "content", &dir_fd, name, flags).map_err(|e| {
                if e == rustix::io::Errno::EXIST {
                    format!("something is at {} now: not overwritten", meta.original)
                } else {
                    io(&format!("restoring {}", meta.original), e)
                }
            })?;
        } else {
            self.copy_out(&item_fd, &dir_fd, name, &meta)?;
        }
        let restored = resolve(&meta.original, false)?;
        self.check(&restored, &meta)?;
        let _ = std::fs::remove_file(item_dir.join("meta.json"));
        let _ = std::fs::remove_dir(&item_dir);
        let _ = self.index(serde_json::json!({"id": meta.id, "restored": true}));
        let mut out = Outcome::new(format!(
            "restored {} (content, owner, mode, times and {} extended attributes as quarantined)",
            meta.original,
            meta.xattrs.len()
        ))
        .with("size", meta.size);
        if let Some(sha) = &meta.sha256 {
            out = out.with("sha256", sha.clone());
        }
        Ok(out)
    }

    /// Recreates a copied item at `name` in `dir`: content, owner, mode, xattrs, times.
    fn copy_out(
        &self,
        item: &std::os::fd::OwnedFd,
        dir: &std::fs::File,
        name: &std::ffi::OsStr,
        meta: &Meta,
    ) -> Result<(), String> {
        let src = rustix::fs::openat(
            item,
            "content",
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("vault content", e))?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                format!("something is at {} now: not overwritten", meta.original)
            } else {
                io(&format!("creating {}", meta.original), e)
            }
        })?;
        let mut dst = std::fs::File::from(fd);
        std::io::copy(&mut std::fs::File::from(src), &mut dst).map_err(|e| io("restoring", e))?;
        rustix::fs::fchown(
            &dst,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io("restoring the owner", e))?;
        rustix::fs::fchmod(&dst, Mode::from_raw_mode((meta.mode & 0o7777) as _))
            .map_err(|e| io("restoring the mode", e))?;
        for (name, value) in &meta.xattrs {
            let value = hex::decode(value).unwrap_or_default();
            rustix::fs::fsetxattr(&dst, name.as_str(), &value, rustix::fs::XattrFlags::empty())
                .map_err(|e| io(&format!("restoring xattr {name}"), e))?;
        }
        dst.sync_all().map_err(|e| io("restoring", e))?;
        let ts = |(s, ns): (i64, i64)| rustix::fs::Timespec {
            tv_sec: s as _,
            tv_nsec: ns as _,
        };
        rustix::fs::futimens(
            &dst,
            &rustix::fs::Timestamps {
                last_access: ts(meta.atime),
                last_modification: ts(meta.mtime),
            },
        )
        .map_err(|e| io("restoring the times", e))
    }

    /// Whether the restored entry is what was quarantined.
    fn check(&self, entry: &Resolved, meta: &Meta) -> Result<(), String> {
        let stat = entry.lstat().map_err(|e| format!("{e:?}"))?;
        let (_, mtime) = times(&stat);
        #[allow(clippy::useless_conversion)]
        let same = u32::from(stat.st_mode) == meta.mode
            && stat.st_uid == meta.uid
            && stat.st_gid == meta.gid
            && mtime == meta.mtime
            && u64::try_from(stat.st_size).unwrap_or(0) == meta.size;
        if !same {
            return Err(format!(
                "{} was restored but its metadata differs from the record",
                meta.original
            ));
        }
        if let Some(sha) = &meta.sha256 {
            let file = entry.open().map_err(|e| format!("{e:?}"))?;
            let now = hash_file(file, &entry.real, MAX_HASH_BYTES, None)?;
            if &now != sha {
                return Err(format!(
                    "{} was restored but its content differs",
                    meta.original
                ));
            }
        }
        Ok(())
    }
}

fn to_json(meta: &Meta) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(meta).map_err(|e| io("meta", e))
}

/// Writes `name` in `dir` (0600) with `bytes`, synced, replacing it atomically.
fn write_replace(dir: &std::os::fd::OwnedFd, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = format!("{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io(name, e))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(|e| io(name, e))?;
    f.sync_all().map_err(|e| io(name, e))?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(|e| io(name, e))
}

/// Deletes `path` (a regular file or a link; never a directory) after [`Target`]'s
/// checks, recording what it was.
pub fn remove(path: &str, target: &Target<'_>) -> Result<Outcome, String> {
    let entry = resolve(path, false)?;
    let stat = entry.lstat().map_err(|e| format!("{e:?}"))?;
    if let Some(why) = target.refusal(path, &entry, &stat) {
        return Err(format!("refused: {why}"));
    }
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    if !(kind.is_file() || kind.is_symlink()) {
        return Err(format!(
            "{} is not a regular file or link: not removed (quarantine it instead)",
            entry.real.display()
        ));
    }
    let mut out = Outcome::new(format!("removed {}", entry.real.display()))
        .with("size", u64::try_from(stat.st_size).unwrap_or(0))
        .with("uid", stat.st_uid);
    if kind.is_file() && u64::try_from(stat.st_size).unwrap_or(u64::MAX) <= MAX_HASH_BYTES {
        let file = entry.open().map_err(|e| format!("{e:?}"))?;
        out = out.with(
            "sha256",
            hash_file(file, &entry.real, MAX_HASH_BYTES, None)?,
        );
    }
    rustix::fs::unlinkat(entry.parent(), entry.name(), AtFlags::empty())
        .map_err(|e| io(&format!("removing {}", entry.real.display()), e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn protected() -> Protected {
        Protected::new(&Default::default(), Vec::new())
    }

    fn no_more(_: &Path) -> Option<String> {
        None
    }

    fn target(p: &Protected) -> Target<'_> {
        Target {
            protected: p,
            owner: None,
            refuse: &no_more,
        }
    }

    #[test]
    fn a_file_is_quarantined_and_restored_exactly() {
        let state = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let vault = Vault::open(state.path()).unwrap();
        let file = work.path().join("payload");
        std::fs::write(&file, b"\x7fELF pretend payload").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4751)).unwrap();
        let _ = xattr::set(&file, "user.ward.test", b"marker");
        let before = std::fs::metadata(&file).unwrap();
        let out = vault
            .quarantine(7, file.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap();
        assert!(!file.exists());
        assert_eq!(out.evidence["item"], "7");
        let index = std::fs::read_to_string(vault.dir().join("index.jsonl")).unwrap();
        assert!(index.contains("\"original\""), "{index}");
        // Nothing may take its place unnoticed.
        std::fs::write(&file, b"imposter").unwrap();
        let err = vault.restore("7", &protected()).unwrap_err();
        assert!(err.contains("not overwritten"), "{err}");
        std::fs::remove_file(&file).unwrap();
        vault.restore("7", &protected()).unwrap();
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"\x7fELF pretend payload");
        assert_eq!(after.mode(), before.mode());
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_eq!(after.mtime(), before.mtime());
        assert_eq!(after.mtime_nsec(), before.mtime_nsec());
        if let Ok(Some(v)) = xattr::get(&file, "user.ward.test") {
            assert_eq!(v, b"marker");
        }
        assert!(
            vault.restore("7", &protected()).is_err(),
            "an item is restored once"
        );
        // Quarantined again; its directory replaced by a link elsewhere: not restored.
        vault
            .quarantine(8, file.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap();
        let moved = work.path().with_extension("moved");
        std::fs::rename(work.path(), &moved).unwrap();
        let decoy = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(decoy.path(), work.path()).unwrap();
        let err = vault.restore("8", &protected()).unwrap_err();
        assert!(err.contains("refused"), "{err}");
        assert!(!decoy.path().join("payload").exists());
        std::fs::remove_file(work.path()).unwrap();
        std::fs::rename(&moved, work.path()).unwrap();
        vault.restore("8", &protected()).unwrap();
    }

    #[test]
    fn protected_links_and_directories_are_handled() {
        let state = tempfile::tempdir().unwrap();
        let vault = Vault::open(state.path()).unwrap();
        let err = vault
            .quarantine(1, "/usr/bin/env", &target(&protected()), 1 << 20)
            .unwrap_err();
        assert!(err.starts_with("refused"), "{err}");
        // A link to a protected file quarantines the link, never what it points to.
        let work = tempfile::tempdir().unwrap();
        let link = work.path().join("innocent");
        std::os::unix::fs::symlink("/usr/bin/env", &link).unwrap();
        vault
            .quarantine(2, link.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap();
        assert!(Path::new("/usr/bin/env").exists());
        assert!(std::fs::symlink_metadata(&link).is_err());
        vault.restore("2", &protected()).unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/usr/bin/env")
        );
        // A directory (an app bundle) moves whole.
        let app = work.path().join("Evil.app");
        std::fs::create_dir_all(app.join("Contents/MacOS")).unwrap();
        std::fs::write(app.join("Contents/MacOS/evil"), b"x").unwrap();
        vault
            .quarantine(3, app.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap();
        assert!(!app.exists());
        vault.restore("3", &protected()).unwrap();
        assert!(app.join("Contents/MacOS/evil").exists());
        assert!(vault.restore("../etc", &protected()).is_err());
        // A directory that is not an app bundle is refused.
        let plain = work.path().join("Documents");
        std::fs::create_dir(&plain).unwrap();
        let err = vault
            .quarantine(4, plain.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap_err();
        assert!(err.contains("not an app bundle"), "{err}");
        // A path through a planted symlink is refused: ward acts on the named file only.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("precious"), b"keep").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), work.path().join("l")).unwrap();
        let via = work.path().join("l/precious");
        let err = vault
            .quarantine(5, via.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(elsewhere.path().join("precious").exists());
        // Another user's file is refused when the offender is a user.
        let theirs = work.path().join("theirs");
        std::fs::write(&theirs, b"x").unwrap();
        rustix::fs::chown(&theirs, Some(rustix::fs::Uid::from_raw(502)), None).unwrap();
        let p = protected();
        let as_501 = Target {
            protected: &p,
            owner: Some(501),
            refuse: &no_more,
        };
        let err = vault
            .quarantine(6, theirs.to_str().unwrap(), &as_501, 1 << 20)
            .unwrap_err();
        assert!(err.contains("belongs to uid 502"), "{err}");
        // remove-file: a file goes, a directory is refused.
        let gone = work.path().join("gone");
        std::fs::write(&gone, b"bye").unwrap();
        let out = remove(gone.to_str().unwrap(), &target(&protected())).unwrap();
        assert!(out.evidence.contains_key("sha256"));
        assert!(!gone.exists());
        assert!(remove(app.to_str().unwrap(), &target(&protected())).is_err());
    }

    /// Across volumes (tmpfs in /dev/shm against the state dir's disk) the file is copied,
    /// checked and restored with owner, mode, times and xattrs set back.
    #[test]
    fn across_volumes_the_copy_is_restored_exactly() {
        let shm = Path::new("/dev/shm");
        let state = tempfile::tempdir().unwrap();
        let Ok(work) = tempfile::tempdir_in(shm) else {
            eprintln!("skipped: no /dev/shm to put a file on another volume");
            return;
        };
        if std::fs::metadata(work.path()).unwrap().dev()
            == std::fs::metadata(state.path()).unwrap().dev()
        {
            eprintln!("skipped: /dev/shm is on the state directory's volume");
            return;
        }
        let vault = Vault::open(state.path()).unwrap();
        let file = work.path().join("payload");
        std::fs::write(&file, vec![7u8; 100_000]).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o750)).unwrap();
        let _ = xattr::set(&file, "user.ward.test", b"kept");
        let before = std::fs::metadata(&file).unwrap();
        let err = vault
            .quarantine(9, file.to_str().unwrap(), &target(&protected()), 10)
            .unwrap_err();
        assert!(err.contains("copy cap"), "{err}");
        assert!(file.exists());
        let out = vault
            .quarantine(10, file.to_str().unwrap(), &target(&protected()), 1 << 20)
            .unwrap();
        assert_eq!(out.evidence["method"], "copied");
        assert!(!file.exists());
        vault.restore("10", &protected()).unwrap();
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), vec![7u8; 100_000]);
        assert_eq!(after.mode(), before.mode());
        assert_eq!(
            (after.mtime(), after.mtime_nsec()),
            (before.mtime(), before.mtime_nsec())
        );
        if xattr::SUPPORTED_PLATFORM
            && let Ok(Some(v)) = xattr::get(&file, "user.ward.test")
        {
            assert_eq!(v, b"kept");
        }
    }
}
