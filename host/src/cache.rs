//! On-disk cache of compiled components, keyed by the component's sha-256 and the engine's
//! compatibility hash, so restarts do not recompile.
//!
//! Each entry is `<key>.cwasm` plus `<key>.sha256` holding the digest of the compiled bytes.
//! The digest is checked before the bytes are deserialized: a corrupt or tampered entry is
//! deleted and recompiled, never loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
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
}

impl CompileCache {
    /// A cache in `dir` (created 0700 if missing) for components compiled by `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating cache dir {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn paths(&self, digest: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{digest}-{}", self.engine_key);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.sha256")),
        )
    }

    /// The compiled component for `bytes` (whose sha-256 is `digest`), from the cache or
    /// compiled now and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let (artifact, checksum) = self.paths(digest);
        if let Some(component) = self.try_load(engine, &artifact, &checksum) {
            return Ok((component, CacheOutcome::Hit));
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)?;
        let component = deserialize(engine, &compiled)?;
        let outcome = match self.store(&artifact, &checksum, &compiled) {
            Ok(()) => CacheOutcome::Miss,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not write the compile cache");
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }

    fn try_load(&self, engine: &Engine, artifact: &Path, checksum: &Path) -> Option<Component> {
        let expected = std::fs::read_to_string(checksum).ok()?;
        let bytes = std::fs::read(artifact).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %artifact.display(), "compile cache entry is corrupt; recompiling");
            let _ = std::fs::remove_file(artifact);
            let _ = std::fs::remove_file(checksum);
            return None;
        }
        match deserialize(engine, &bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %format!("{e:#}"), "compile cache entry unusable; recompiling");
                None
            }
        }
    }

    fn store(&self, artifact: &Path, checksum: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, compiled)?;
        tmp.persist(artifact)?;
        std::fs::write(checksum, hex::encode(Sha256::digest(compiled)))?;
        Ok(())
    }
}

/// Compiles `bytes` without a cache.
pub fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes).map_err(anyhow::Error::from)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, compiled: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `compiled` is either what `Engine::precompile_component` just produced in
    // this process, or a cache entry this agent wrote into its own 0700 directory whose
    // sha-256 was verified above against the digest stored beside it. wasmtime also checks
    // the engine compatibility header before using the bytes.
    unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)
}
