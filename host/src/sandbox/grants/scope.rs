//! The admin's file scope, and paths opened by handle under it.
//!
//! A plugin names a file by path; the host must answer only for files under the roots the
//! admin granted. Checking a name and then opening it again by name lets whoever can
//! write a directory on the way swap it for a symlink in between. So nothing here opens a
//! path by name: [`FileScope::resolve`] walks it one component at a time from a handle on
//! `/`, opening each directory relative to the previous one with `O_NOFOLLOW` (so a
//! component swapped for a symlink fails the open instead of being followed), reading
//! each symlink it meets with `readlinkat` and resolving it itself, at most
//! [`MAX_SYMLINK_HOPS`] of them. What it tracks as it goes is the real path of the file the
//! final handle names — exactly what `realpath` would give at that moment, without the
//! race — and that is what is checked against the roots. The file is then opened relative
//! to its directory's handle (again `O_NOFOLLOW`, and `O_NONBLOCK` so a FIFO cannot hang
//! the agent), and every operation reads from that handle.
//!
//! Each step names one component, so `O_NOFOLLOW` on each step gives what `O_NOFOLLOW_ANY`
//! (macOS) or `openat2(RESOLVE_BENEATH)` (Linux) give for a whole path.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Symlinks one resolution follows before giving up (the kernel's own limit is 32-40).
pub const MAX_SYMLINK_HOPS: usize = 32;
/// Components one resolution walks, symlink targets included: a bound on the work a
/// hostile tree of links can ask for.
pub const MAX_COMPONENTS: usize = 4096;
/// Longest real path a resolution builds (Linux's `PATH_MAX`; macOS's is 1024).
pub const MAX_REAL_PATH_BYTES: usize = 4096;

/// Default cap on one `read`.
pub const DEFAULT_MAX_READ_BYTES: u32 = 1 << 20;
/// Default cap on the size of a file `sha256` will hash.
pub const DEFAULT_MAX_HASH_BYTES: u64 = 256 << 20;

/// Why a path was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// Outside the granted roots, or not an absolute path without `..`.
    Denied(String),
    /// The host could not read it.
    Io(String),
}

/// The directories a plugin may read, and its size caps.
#[derive(Debug, Clone)]
pub struct FileScope {
    /// The roots, canonical: what the resolved real path must lie under.
    roots: Vec<PathBuf>,
    /// The roots as configured and canonical: what a walk may pass on its way.
    reach: Vec<PathBuf>,
    /// Cap on one read.
    pub max_read_bytes: u32,
    /// Cap on hashed file size.
    pub max_hash_bytes: u64,
}

/// A resolved path: the handle of its directory, its last component, its real path and
/// what `lstat` said of it.
pub struct Resolved {
    dir: OwnedFd,
    name: OsString,
    /// The real path (symlinks resolved, except a final one that was not followed).
    pub real: PathBuf,
    /// The entry's type.
    pub file_type: FileType,
}

impl Resolved {
    /// Opens the entry for reading (a regular file or a directory), relative to its
    /// directory's handle, never following a symlink put there since.
    pub fn open(&self) -> Result<std::fs::File, ScopeError> {
        if !(self.file_type.is_file() || self.file_type.is_dir()) {
            return Err(ScopeError::Io(format!(
                "{}: not a regular file or directory",
                self.real.display()
            )));
        }
        let fd = rustix::fs::openat(
            &self.dir,
            self.name.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(&self.real, e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Opens the entry as a regular file and returns it with its metadata.
    pub fn open_regular(&self) -> Result<(std::fs::File, std::fs::Metadata), ScopeError> {
        let file = self.open()?;
        let meta = file
            .metadata()
            .map_err(|e| ScopeError::Io(format!("{}: {e}", self.real.display())))?;
        if !meta.is_file() {
            return Err(ScopeError::Io(format!(
                "{}: not a regular file",
                self.real.display()
            )));
        }
        Ok((file, meta))
    }

    /// [`Self::open_regular`] for reading contents: also refuses a hard link whose owner
    /// is not the owner of the directory it sits in — a user may hard-link a file it
    /// cannot read (root's) into a directory of its own, inside a scope, for the agent to
    /// read for it.
    pub fn open_for_contents(&self) -> Result<(std::fs::File, std::fs::Metadata), ScopeError> {
        use std::os::unix::fs::MetadataExt;
        let (file, meta) = self.open_regular()?;
        if meta.nlink() > 1 {
            let dir = rustix::fs::fstat(&self.dir).map_err(|e| io_err(&self.real, e))?;
            if dir.st_uid != meta.uid() {
                return Err(ScopeError::Denied(format!(
                    "{}: a hard link to a file of uid {} in a directory of uid {}",
                    self.real.display(),
                    meta.uid(),
                    dir.st_uid
                )));
            }
        }
        Ok((file, meta))
    }

    /// `lstat` of the entry, relative to its directory's handle.
    pub fn lstat(&self) -> Result<rustix::fs::Stat, ScopeError> {
        rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&self.real, e))
    }

    /// The handle of the directory the entry is in.
    pub fn parent(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.dir.as_fd()
    }

    /// The entry's name in its directory.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// When the entry was created, where the file system keeps it.
    pub fn birthtime(&self) -> Option<i64> {
        birthtime_at(&self.dir, self.name.as_os_str())
    }

    /// The entries of this directory (opened relative to its parent's handle, never
    /// through a symlink), each with its `lstat` and birth time, sorted by name; more than
    /// `max` entries is an error.
    pub fn list(
        &self,
        max: usize,
    ) -> Result<Vec<(String, rustix::fs::Stat, Option<i64>)>, ScopeError> {
        let fd = rustix::fs::openat(
            &self.dir,
            self.name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(&self.real, e))?;
        let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| io_err(&self.real, e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_err(&self.real, e))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if out.len() >= max {
                return Err(ScopeError::Io(format!(
                    "{}: more than {max} entries",
                    self.real.display()
                )));
            }
            let stat = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(&self.real, e))?;
            let born = birthtime_at(&fd, OsStr::from_bytes(name.to_bytes()));
            out.push((
                String::from_utf8_lossy(name.to_bytes()).into_owned(),
                stat,
                born,
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The birth time of `name` in `dir` (not following a final symlink): `statx` on Linux,
/// `st_birthtime` on macOS; `None` where the file system does not keep one.
fn birthtime_at<Fd: std::os::fd::AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> Option<i64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let stx = rustix::fs::statx(
            dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::BTIME,
        )
        .ok()?;
        (stx.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0).then_some(stx.stx_btime.tv_sec)
    }
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    {
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some(stat.st_birthtime)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios"
    )))]
    {
        let _ = (dir, name);
        None
    }
}

fn io_err(path: &Path, e: Errno) -> ScopeError {
    ScopeError::Io(format!("{}: {}", path.display(), std::io::Error::from(e)))
}

/// Flags for a directory handle used only to resolve names beneath it.
fn dir_flags() -> OFlags {
    // `O_PATH` needs only search permission on Linux; elsewhere a read-only open.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let base = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let base = OFlags::RDONLY;
    base | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl FileScope {
    /// A scope over `roots` (canonicalised where they exist: the admin's configuration,
    /// read once at load; see [`Self::check_roots`]).
    pub fn new(roots: &[PathBuf]) -> Self {
        let mut all: Vec<PathBuf> = Vec::new();
        for r in roots {
            if let Ok(real) = r.canonicalize() {
                all.push(real);
            }
            all.push(r.clone());
        }
        all.sort();
        all.dedup();
        let canonical = roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect();
        Self {
            roots: canonical,
            reach: all,
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
            max_hash_bytes: DEFAULT_MAX_HASH_BYTES,
        }
    }

    /// Refuses a root that reaches its directory through a symlink someone other than
    /// root could change: canonicalising it at load would otherwise follow that user's
    /// link (`~/Library/LaunchAgents` swapped for a link to `/` makes the scope the whole
    /// disk). System links (`/tmp`, `/var`, `/etc` on macOS) live in root-owned
    /// directories and pass.
    pub fn check_roots(roots: &[PathBuf]) -> Result<(), String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        for root in roots {
            let mut prefix = PathBuf::new();
            for c in root.components() {
                prefix.push(c);
                let Ok(meta) = std::fs::symlink_metadata(&prefix) else {
                    break;
                };
                if !meta.file_type().is_symlink() {
                    continue;
                }
                let parent = prefix.parent().unwrap_or(Path::new("/"));
                let dir = std::fs::metadata(parent).map_err(|e| {
                    format!("file_scope {}: {}: {e}", root.display(), parent.display())
                })?;
                if dir.uid() != 0 || dir.permissions().mode() & 0o022 != 0 {
                    return Err(format!(
                        "file_scope {}: {} is a symlink in {}, which uid {} (mode {:o}) can change; \
                         name the directory it points to instead",
                        root.display(),
                        prefix.display(),
                        parent.display(),
                        dir.uid(),
                        dir.permissions().mode() & 0o7777
                    ));
                }
            }
        }
        Ok(())
    }

    /// True if `path` (a real path) lies under a root.
    pub fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// True if a walk that has got as far as `path` can still end inside the scope: it is
    /// inside a root, or on the way to one (as written or as resolved). One component below
    /// `/` is always allowed, for the system's own links (`/var` → `/private/var`).
    fn may_reach(&self, path: &Path) -> bool {
        path.components().count() <= 2
            || self
                .reach
                .iter()
                .any(|r| path.starts_with(r) || r.starts_with(path))
    }

    /// Opens the directory whose real path is `real` by walking it from `/`, each step
    /// `O_NOFOLLOW` (a real path holds no symlink; one swapped in since fails the open).
    fn open_real(real: &[OsString]) -> Result<OwnedFd, ScopeError> {
        let mut fd = rustix::fs::openat(rustix::fs::CWD, "/", dir_flags(), Mode::empty())
            .map_err(|e| io_err(Path::new("/"), e))?;
        for (i, name) in real.iter().enumerate() {
            fd = rustix::fs::openat(&fd, name.as_os_str(), dir_flags(), Mode::empty())
                .map_err(|e| io_err(&real_path(real.get(..=i).unwrap_or_default(), None), e))?;
        }
        Ok(fd)
    }

    /// Resolves `path` by handle: `Ok(Some(_))` for an entry inside the scope, `Ok(None)`
    /// when it does not exist (and would lie inside), `Denied` otherwise. With
    /// `follow_final`, a final symlink is resolved too (for reading what it points at);
    /// without, the link itself is the entry (for metadata). The walk holds one directory
    /// handle at a time and stops as soon as it can no longer end inside the scope, so a
    /// path through `/net/<host>` or a deep tree costs no mount and no pile of handles.
    pub fn resolve(&self, path: &str, follow_final: bool) -> Result<Option<Resolved>, ScopeError> {
        let p = Path::new(path);
        if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(ScopeError::Denied(format!(
                "{path}: only absolute paths without `..` are allowed"
            )));
        }
        let denied = || ScopeError::Denied(format!("{path}: outside the granted scope"));
        // `dir` is the handle of the directory whose real path is `real`.
        let mut dir = Self::open_real(&[])?;
        let mut real: Vec<OsString> = Vec::new();
        let mut real_bytes = 0usize;
        let mut todo: Vec<OsString> = names(p);
        todo.reverse();
        let (mut hops, mut walked) = (0usize, 0usize);
        while let Some(name) = todo.pop() {
            walked += 1;
            if walked > MAX_COMPONENTS {
                return Err(ScopeError::Io(format!("{path}: too many path components")));
            }
            if name == "." {
                continue;
            }
            if name == ".." {
                // Only symlink targets get here (the request itself has no `..`).
                if let Some(up) = real.pop() {
                    real_bytes = real_bytes.saturating_sub(up.len() + 1);
                    dir = Self::open_real(&real)?;
                }
                continue;
            }
            let here = real_path(&real, Some(&name));
            if real_bytes + name.len() + 1 > MAX_REAL_PATH_BYTES {
                return Err(ScopeError::Io(format!(
                    "{path}: resolves to a path over {MAX_REAL_PATH_BYTES} bytes"
                )));
            }
            if !self.may_reach(&here) {
                return Err(denied());
            }
            let last = todo.is_empty();
            let stat = match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                    // Missing: answer `none` only for a path that would lie inside.
                    let mut rest = here;
                    for n in todo.iter().rev() {
                        rest.push(n);
                    }
                    return if self.contains(&rest) {
                        Ok(None)
                    } else {
                        Err(denied())
                    };
                }
                Err(e) => return Err(io_err(&here, e)),
            };
            let file_type = FileType::from_raw_mode(stat.st_mode);
            if file_type.is_symlink() && (follow_final || !last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ScopeError::Io(format!("{path}: too many symbolic links")));
                }
                let target = rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())
                    .map_err(|e| io_err(&here, e))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    real.clear();
                    real_bytes = 0;
                    dir = Self::open_real(&real)?;
                }
                let mut more = names(&target);
                more.reverse();
                todo.extend(more);
                continue;
            }
            if last {
                if !self.contains(&here) {
                    return Err(denied());
                }
                return Ok(Some(Resolved {
                    dir,
                    name,
                    real: here,
                    file_type,
                }));
            }
            if !file_type.is_dir() {
                return Err(ScopeError::Io(format!(
                    "{}: not a directory",
                    here.display()
                )));
            }
            // Swapped for a symlink since the `lstat`? `O_NOFOLLOW` refuses it.
            dir = rustix::fs::openat(&dir, name.as_os_str(), dir_flags(), Mode::empty()).map_err(
                |e| match e {
                    Errno::LOOP | Errno::NOTDIR => ScopeError::Io(format!(
                        "{}: changed while it was being resolved",
                        here.display()
                    )),
                    e => io_err(&here, e),
                },
            )?;
            real_bytes += name.len() + 1;
            real.push(name);
        }
        // The path was `/` itself (or resolved to it).
        let root = PathBuf::from("/");
        if self.contains(&root) {
            Ok(Some(Resolved {
                dir: Self::open_real(&[])?,
                name: OsString::from("."),
                real: root,
                file_type: FileType::Directory,
            }))
        } else {
            Err(denied())
        }
    }
}

/// The normal components of `path`, as names.
fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir => Some(OsString::from(".")),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn real_path(real: &[OsString], last: Option<&OsString>) -> PathBuf {
    let mut p = PathBuf::from("/");
    for n in real {
        p.push(n);
    }
    if let Some(n) = last {
        p.push(n);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(dir: &Path) -> FileScope {
        FileScope::new(&[dir.to_path_buf()])
    }

    #[test]
    fn inside_is_answered_outside_and_escapes_are_denied() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.plist"), b"x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("sub/a.plist", root.join("inner")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../../etc/passwd", root.join("up")).unwrap();
        let s = scope(&root);
        let at = |p: &str| format!("{}/{p}", root.display());

        let r = s.resolve(&at("sub/a.plist"), true).unwrap().unwrap();
        assert_eq!(r.real, root.join("sub/a.plist"));
        let (mut f, _) = r.open_regular().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!(text, "x");
        // A symlink that stays inside is followed; its own entry is what metadata sees.
        assert_eq!(
            s.resolve(&at("inner"), true).unwrap().unwrap().real,
            root.join("sub/a.plist")
        );
        assert!(
            s.resolve(&at("inner"), false)
                .unwrap()
                .unwrap()
                .file_type
                .is_symlink()
        );
        // Missing inside: none.
        assert!(s.resolve(&at("sub/missing"), true).unwrap().is_none());
        assert!(s.resolve(&at("gone/deeper/x"), true).unwrap().is_none());
        // Outside, through a link, up with `..` in a link, `..` in the request, relative.
        for p in [
            outside.path().to_str().unwrap().to_owned(),
            at("escape"),
            at("up"),
            at("sub/../sub/a.plist"),
        ] {
            assert!(
                matches!(s.resolve(&p, true), Err(ScopeError::Denied(_))),
                "{p}"
            );
        }
        assert!(matches!(
            s.resolve("relative/path", true),
            Err(ScopeError::Denied(_))
        ));
        assert!(matches!(
            s.resolve("/etc/passwd", true),
            Err(ScopeError::Denied(_))
        ));
    }

    #[test]
    fn symlink_loops_and_fifos_end_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink("b", root.join("a")).unwrap();
        std::os::unix::fs::symlink("a", root.join("b")).unwrap();
        let s = scope(&root);
        let err = s
            .resolve(&format!("{}/a", root.display()), true)
            .err()
            .unwrap();
        assert!(
            matches!(err, ScopeError::Io(ref m) if m.contains("too many symbolic links")),
            "{err:?}"
        );
        let fifo = root.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let r = s.resolve(fifo.to_str().unwrap(), true).unwrap().unwrap();
        assert!(matches!(r.open(), Err(ScopeError::Io(ref m)) if m.contains("not a regular file")));
    }

    /// A root reached through a symlink in a directory its owner (not root) can change is
    /// refused at load: the owner could point it at `/` before the agent starts.
    #[test]
    fn a_root_through_a_user_writable_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        // As root, hand the directory holding the link to another user; otherwise it is
        // this (non-root) user's already.
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&base, Some(65534), None).unwrap();
        }
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = FileScope::check_roots(&[base.join("link")]).unwrap_err();
        assert!(err.contains("is a symlink in"), "{err}");
        assert!(FileScope::check_roots(&[base.join("real")]).is_ok());
    }

    /// A path that resolves to more than a real path's worth of bytes is an error, and a
    /// walk holds one directory handle at a time however deep it goes.
    #[test]
    fn deep_paths_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let name = "d".repeat(200);
        let mut deep = root.clone();
        // Past PATH_MAX a tree can only be made (and walked) one directory at a time.
        let mut fd =
            rustix::fs::openat(rustix::fs::CWD, &root, dir_flags(), Mode::empty()).unwrap();
        for _ in 0..22 {
            deep.push(&name);
            rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, name.as_str(), dir_flags(), Mode::empty()).unwrap();
        }
        let s = scope(&root);
        let err = s
            .resolve(&format!("{}/x", deep.display()), true)
            .err()
            .unwrap();
        assert!(
            matches!(err, ScopeError::Io(ref m) if m.contains("bytes")),
            "{err:?}"
        );
        let fds = || {
            std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let before = fds();
        let shallow = root.join(&name).join(&name);
        std::fs::write(shallow.join("f"), b"x").unwrap();
        let r = s
            .resolve(&format!("{}/f", shallow.display()), true)
            .unwrap()
            .unwrap();
        assert!(fds() <= before + 2, "handles held: {} -> {}", before, fds());
        drop(r);
    }

    /// A hard link a user made to someone else's file, in a directory of its own, is not
    /// read for contents (the agent, as root, would read it for them).
    #[test]
    fn a_hard_link_to_another_users_file_is_not_read() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: making a file of another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let secret = root.join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        std::os::unix::fs::chown(&secret, Some(65534), None).unwrap();
        std::fs::hard_link(&secret, root.join("linked")).unwrap();
        let s = scope(&root);
        let r = s
            .resolve(&format!("{}/linked", root.display()), true)
            .unwrap()
            .unwrap();
        assert!(
            matches!(r.open_for_contents(), Err(ScopeError::Denied(ref m)) if m.contains("hard link"))
        );
        // Hashing (which reveals nothing) still may.
        assert!(r.open_regular().is_ok());
    }

    /// The race the walk exists for: while one thread reads a file inside the scope
    /// through `inside/d/secret`, another swaps the directory `d` for a symlink to a
    /// directory outside the scope holding a file of the same name. Opening by name after
    /// a check would read the outside file some of the time; by handle it never does.
    #[test]
    fn swapping_a_directory_for_a_symlink_never_reads_outside() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let inside = base.join("inside");
        let outside = base.join("outside");
        std::fs::create_dir_all(inside.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("d/secret"), b"inside").unwrap();
        std::fs::write(outside.join("secret"), b"OUTSIDE").unwrap();
        let s = scope(&inside);
        let target = format!("{}/d/secret", inside.display());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (inside, outside, stop) = (inside.clone(), outside.clone(), stop.clone());
            std::thread::spawn(move || {
                let (d, parked, link) = (
                    inside.join("d"),
                    inside.join("d.real"),
                    inside.join("d.link"),
                );
                let _ = std::os::unix::fs::symlink(&outside, &link);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // d → symlink to outside, then back to the real directory.
                    let _ = std::fs::rename(&d, &parked);
                    let _ = std::fs::rename(&link, &d);
                    let _ = std::fs::rename(&d, &link);
                    let _ = std::fs::rename(&parked, &d);
                }
            })
        };
        let (mut read_inside, mut refused) = (0, 0);
        for _ in 0..20_000 {
            match s.resolve(&target, true) {
                Ok(Some(r)) => match r.open_regular() {
                    Ok((mut f, _)) => {
                        let mut text = String::new();
                        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
                        assert_eq!(text, "inside", "read a file outside the scope");
                        read_inside += 1;
                    }
                    Err(_) => refused += 1,
                },
                Ok(None) | Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(read_inside > 0, "the race never let a read through at all");
        assert!(
            refused > 0,
            "the swap never raced the walk: the test proves nothing"
        );
    }
}
