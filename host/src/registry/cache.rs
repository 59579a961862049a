//! On-disk cache of compiled components, so restarts do not recompile.
//!
//! A compiled component is native code that wasmtime runs without checking, so an entry is
//! trusted only if this agent wrote it: each is `<digest>-<engine>.cwasm` holding a magic,
//! an HMAC-SHA-256 tag and the compiled bytes, the tag taken with a key the agent keeps
//! *outside* the cache (`<cache dir>.key`, 0600) over the source component's sha-256, the
//! engine's compatibility hash and the bytes. Whoever can write the cache but not the key
//! cannot forge an entry, nor pass one component's entry off as another's: a mismatch is
//! deleted and recompiled, never loaded. The bytes checked are the bytes deserialized (read
//! into memory once, not mapped).
//!
//! The directory must be a real directory owned by the agent's user and writable by no
//! one else, and so must each directory above it (unless sticky, like `/tmp`); otherwise
//! the cache is refused with a warning and components are compiled uncached.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of an entry; bump the version when the layout or the tagged data changes.
const MAGIC: &[u8; 8] = b"wardcw01";
/// Bytes of the HMAC-SHA-256 tag.
const TAG_BYTES: usize = 32;
/// Bytes of the key.
const KEY_BYTES: usize = 32;
/// Largest entry read back (a compiled component is a few times its source, which is
/// capped at [`crate::registry::load::MAX_PLUGIN_BYTES`]).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

type Tagger = Hmac<Sha256>;

/// A directory of compiled components.
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    /// The engine's full compatibility description, bound into every tag.
    engine_id: Vec<u8>,
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

/// Where a component came from on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled and stored.
    Miss,
    /// Compiled; caching is off or failed.
    Uncached,
    /// Precompiled into the agent when it was built (a built-in plugin).
    Builtin,
}

/// The effective user id of this process.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `path` must be owned by us (or root) and writable by no one else, unless sticky.
fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    must_be_ours: bool,
) -> anyhow::Result<()> {
    let me = euid();
    let owner = meta.uid();
    let ours = owner == me;
    if must_be_ours && !ours {
        bail!(
            "{} is owned by uid {owner}, not by this agent's uid {me}",
            path.display()
        );
    }
    if !ours && owner != 0 {
        bail!(
            "{} is owned by uid {owner}, neither root nor this agent's uid {me}",
            path.display()
        );
    }
    let mode = meta.permissions().mode();
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky && meta.is_dir() && !must_be_ours) {
        bail!(
            "{} can be written by others (mode {:o})",
            path.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Checks that nobody but this agent (and root) can change what `dir` holds: `dir` itself
/// and every directory above it.
fn check_directory(dir: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symlink is not accepted)",
            dir.display()
        );
    }
    check_owner_and_mode(dir, &meta, true)?;
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    for ancestor in real.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .with_context(|| format!("cannot stat {}", ancestor.display()))?;
        check_owner_and_mode(ancestor, &meta, false)?;
    }
    Ok(())
}

/// Reads the key at `path`, creating it (32 random bytes, 0600) if it does not exist. A
/// new key is written whole to a temporary file and then linked into place, so a crash
/// never leaves a short key behind, and two agents starting at once agree on one key.
fn load_key(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    if std::fs::symlink_metadata(path).is_err() {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut key = [0u8; KEY_BYTES];
        File::open("/dev/urandom")
            .and_then(|mut r| r.read_exact(&mut key))
            .context("reading /dev/urandom for the compile-cache key")?;
        let mut tmp = tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .with_context(|| format!("creating a key in {}", dir.display()))?;
        tmp.write_all(&key)
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("writing a key in {}", dir.display()))?;
        match std::fs::hard_link(tmp.path(), path) {
            Ok(()) => return Ok(key),
            // Another agent made one first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    check_owner_and_mode(path, &meta, true)?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); it must be 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let mut key = [0u8; KEY_BYTES];
    let mut rest = Vec::new();
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .with_context(|| format!("reading {}", path.display()))?;
    if !rest.is_empty() {
        bail!("{} is not a {KEY_BYTES}-byte key", path.display());
    }
    Ok(key)
}

/// Where the key for the cache in `dir` lives: beside it, never inside it.
pub fn key_path(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".key");
    dir.with_file_name(name)
}

impl CompileCache {
    /// A cache in `dir` (created 0700 if missing) for components compiled by `engine`,
    /// keyed with `<dir>.key` (created 0600 if missing). Refused if the directory, its
    /// parents or the key could be changed by another user.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        if std::fs::symlink_metadata(dir).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating cache dir {}", dir.display()))?;
        }
        check_directory(dir).context("refusing the compile cache")?;
        let key = load_key(&key_path(dir)).context("refusing the compile cache")?;
        let mut engine_id = Vec::new();
        std::hash::Hash::hash(
            &engine.precompile_compatibility_hash(),
            &mut IdHasher(&mut engine_id),
        );
        engine_id.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        let short = hex::encode(sha2::Digest::finalize(
            <Sha256 as sha2::Digest>::new_with_prefix(&engine_id),
        ));
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: short.get(..16).unwrap_or(&short).to_owned(),
            engine_id,
            key,
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    fn tag(&self, digest: &str, compiled: &[u8]) -> Tagger {
        let mut mac = match <Tagger as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(MAGIC);
        mac.update(&(digest.len() as u64).to_le_bytes());
        mac.update(digest.as_bytes());
        mac.update(&(self.engine_id.len() as u64).to_le_bytes());
        mac.update(&self.engine_id);
        mac.update(compiled);
        mac
    }

    /// The compiled component for `bytes` (whose sha-256 is `digest`), from the cache or
    /// compiled now and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let path = self.path(digest);
        if let Some(component) = self.try_load(engine, digest, &path) {
            return Ok((component, CacheOutcome::Hit));
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)?;
        let component = deserialize(engine, &compiled)?;
        let outcome = match self.store(digest, &path, &compiled) {
            Ok(()) => CacheOutcome::Miss,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not write the compile cache");
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }

    /// The entry's compiled bytes if its tag is this agent's for `digest`; a bad entry is
    /// deleted.
    fn verified(&self, digest: &str, path: &Path) -> Option<Vec<u8>> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        let reject = |why: &str| {
            tracing::warn!(path = %path.display(), why, "compile cache entry refused; recompiling");
            let _ = std::fs::remove_file(path);
            None
        };
        if !meta.is_file() || meta.len() > MAX_ENTRY_BYTES {
            return reject("not a regular file of a sane size");
        }
        let mut stored = Vec::new();
        if (&mut file)
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut stored)
            .is_err()
        {
            return reject("unreadable");
        }
        let header = MAGIC.len() + TAG_BYTES;
        let (Some(magic), Some(tag), Some(compiled)) = (
            stored.get(..MAGIC.len()),
            stored.get(MAGIC.len()..header),
            stored.get(header..),
        ) else {
            return reject("too short");
        };
        if magic != MAGIC {
            return reject("not an entry of this agent's format");
        }
        if self.tag(digest, compiled).verify_slice(tag).is_err() {
            return reject("its tag does not match: not written by this agent for this component");
        }
        stored.drain(..header);
        Some(stored)
    }

    fn try_load(&self, engine: &Engine, digest: &str, path: &Path) -> Option<Component> {
        let compiled = self.verified(digest, path)?;
        match deserialize(engine, &compiled) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "compile cache entry unusable; recompiling");
                None
            }
        }
    }

    fn store(&self, digest: &str, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        let tag = self.tag(digest, compiled).finalize().into_bytes();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&tag)?;
        tmp.write_all(compiled)?;
        tmp.persist(path)?;
        Ok(())
    }
}

/// Collects what `Hash` feeds it, to bind the engine's compatibility hash into tags
/// exactly (a `DefaultHasher` output would be a lossy, unstable summary).
struct IdHasher<'a>(&'a mut Vec<u8>);

impl std::hash::Hasher for IdHasher<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// The component a built-in plugin was precompiled to when the agent was built; an error
/// if this engine cannot run it (another CPU without a feature it uses, or an engine
/// configured otherwise), and the caller compiles instead.
#[allow(unsafe_code)]
pub fn builtin(engine: &Engine, compiled: &'static [u8]) -> anyhow::Result<Component> {
    // SAFETY: `compiled` is part of this executable: the build script produced it with
    // `Engine::precompile_component` from the very component bytes whose sha-256 selected
    // it, under `ward_engine::precompile_config`. Whoever can change it can change the
    // agent itself. wasmtime checks the engine compatibility header (target, flags, CPU
    // features, tunables) before using the bytes.
    unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)
}

/// Compiles `bytes` without a cache.
pub fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes).map_err(anyhow::Error::from)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, compiled: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `compiled` is either what `Engine::precompile_component` just produced in
    // this process, or an entry whose HMAC-SHA-256 tag — under a key only this agent can
    // read, over the source digest, the engine and these very bytes (read into memory,
    // not mapped) — was verified above. wasmtime also checks the engine compatibility
    // header before using the bytes.
    unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)
}
