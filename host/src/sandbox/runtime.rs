//! The runtime: one engine, one linker per world, limits, the compile cache and the epoch
//! ticker. Built once at startup; loading and calling plugins goes through it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};

use crate::registry::cache::CompileCache;
use crate::sandbox::bindings::{collector, detector, remediator, v0_1};
use crate::sandbox::engine::{EpochTicker, GuestRunning, Limits, build_engine};
use crate::sandbox::grants::HashCache;
use crate::sandbox::state::{PluginContext, PluginState};

/// Shared machinery for loading and running plugins.
pub struct Runtime {
    /// The engine every plugin is compiled with.
    pub engine: Engine,
    /// Imports of the detector world plus WASI.
    pub detector_linker: Linker<PluginState>,
    /// Imports of the collector world plus WASI.
    pub collector_linker: Linker<PluginState>,
    /// Imports of the remediator world plus WASI.
    pub remediator_linker: Linker<PluginState>,
    /// Caps applied to every plugin.
    pub limits: Limits,
    /// Compiled-component cache, if enabled.
    pub cache: Option<CompileCache>,
    /// SHA-256 digests of files, shared by every plugin granted `file-hash`.
    pub hash_cache: Arc<HashCache>,
    ticker: Arc<EpochTicker>,
}

fn wasi_linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
    // A guest's clock waits end at its deadline (see `host_api::clocks`).
    linker.allow_shadowing(true);
    crate::sandbox::host_api::clocks::add_to_linker(&mut linker)
        .map_err(anyhow::Error::from)
        .context("bounding the WASI clock subscriptions")?;
    linker.allow_shadowing(false);
    Ok(linker)
}

impl Runtime {
    /// Builds the engine and linkers. `cache_dir` enables the on-disk compile cache.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        Self::with_engine(build_engine()?, limits, cache_dir)
    }

    /// Like [`Runtime::new`] with a caller-built engine (epoch interruption must be on).
    pub fn with_engine(
        engine: Engine,
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        // Each world's linker offers its imports at both contract versions: a component
        // built against 0.1.0 imports `ward:plugin/…@0.1.0` and gets those.
        let mut detector_linker = wasi_linker(&engine)?;
        detector::Detector::add_to_linker::<_, HasSelf<_>>(&mut detector_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the detector world")?;
        v0_1::detector::Detector::add_to_linker::<_, HasSelf<_>>(&mut detector_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the 0.1.0 detector world")?;
        let mut collector_linker = wasi_linker(&engine)?;
        collector::Collector::add_to_linker::<_, HasSelf<_>>(&mut collector_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the collector world")?;
        v0_1::collector::Collector::add_to_linker::<_, HasSelf<_>>(&mut collector_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the 0.1.0 collector world")?;
        let mut remediator_linker = wasi_linker(&engine)?;
        remediator::Remediator::add_to_linker::<_, HasSelf<_>>(&mut remediator_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the remediator world")?;
        v0_1::remediator::Remediator::add_to_linker::<_, HasSelf<_>>(&mut remediator_linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the 0.1.0 remediator world")?;
        let cache = match cache_dir {
            Some(dir) => match CompileCache::open(dir, &engine) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "compile cache disabled");
                    None
                }
            },
            None => None,
        };
        let ticker = Arc::new(EpochTicker::start(&engine)?);
        Ok(Self {
            engine,
            detector_linker,
            collector_linker,
            remediator_linker,
            limits,
            cache,
            hash_cache: Arc::default(),
            ticker,
        })
    }

    /// A fresh store for one instance of a plugin, with its limiter and the start-up
    /// deadline (instantiation and `describe()`); calls then get the per-call deadline.
    /// Guest code runs in it only under [`Runtime::guest_running`], or no deadline passes.
    pub(crate) fn new_store(&self, ctx: PluginContext) -> Store<PluginState> {
        let mut store = Store::new(&self.engine, PluginState::new(ctx, &self.limits));
        store.limiter(|s| s.limiter());
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.limits.init_deadline_ticks());
        let start_up = Instant::now().checked_add(self.limits.init_timeout);
        store.data_mut().set_deadline(start_up);
        store
    }

    /// A runtime like this one without its compile cache, sharing its engine and epoch
    /// ticker (a second ticker on the same engine would advance the epoch twice as fast,
    /// halving every deadline while both run).
    pub fn sibling_without_cache(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            detector_linker: self.detector_linker.clone(),
            collector_linker: self.collector_linker.clone(),
            remediator_linker: self.remediator_linker.clone(),
            limits: self.limits.clone(),
            cache: None,
            hash_cache: Arc::clone(&self.hash_cache),
            ticker: Arc::clone(&self.ticker),
        }
    }

    /// Held while guest code runs (an instance's start, a call): the epoch, and with it
    /// every deadline, advances only while one is held somewhere.
    pub fn guest_running(&self) -> GuestRunning {
        self.ticker.guest_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ticker per engine: a second would advance the shared epoch twice as fast.
    #[test]
    fn a_sibling_shares_the_engine_and_its_ticker() {
        let rt = Runtime::new(Limits::default(), None).unwrap();
        let sibling = rt.sibling_without_cache();
        assert!(Engine::same(&rt.engine, &sibling.engine));
        assert!(Arc::ptr_eq(&rt.ticker, &sibling.ticker));
        assert!(sibling.cache.is_none());
    }
}
