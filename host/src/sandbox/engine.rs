//! The one wasmtime `Engine`, its limits and the epoch ticker that enforces per-call time
//! caps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::Engine;

/// How often the epoch advances; a call's deadline is rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Resource caps applied to every plugin call and instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Table elements per table.
    pub table_elements: usize,
    /// Instances, memories and tables per store (a component has a few core instances).
    pub instances: usize,
    /// Wall-clock cap per call.
    pub call_timeout: Duration,
    /// Wall-clock cap for a fresh instance to start: instantiation plus `describe()`, where
    /// the SDK builds the plugin's state (e.g. compiles its rules).
    pub init_timeout: Duration,
    /// Guest stdout/stderr bytes kept per call.
    pub max_output_bytes: usize,
    /// Findings (or artifacts, or actions) accepted from one call.
    pub max_results_per_call: usize,
    /// Bytes kept of any one string a plugin returns (a message, an evidence value, a
    /// deny reason); longer text is cut and marked without being read.
    pub max_field_bytes: usize,
    /// Bytes one `on-events` call may return in all (strings kept plus the host's size of
    /// each list element); past it the call is an `output-limit` fault.
    pub max_output_bytes_per_call: usize,
    /// Bytes of artifacts one `collect` call may return.
    pub max_artifact_bytes_per_call: usize,
    /// Faults within `fault_window` that quarantine a plugin.
    pub max_faults: u32,
    /// Window for counting faults.
    pub fault_window: Duration,
    /// First quarantine; each repeat doubles it.
    pub quarantine_base: Duration,
    /// Longest quarantine.
    pub quarantine_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            instances: 64,
            call_timeout: Duration::from_millis(250),
            init_timeout: Duration::from_secs(2),
            max_output_bytes: 64 << 10,
            max_results_per_call: 1024,
            max_field_bytes: 8 << 10,
            max_output_bytes_per_call: 4 << 20,
            max_artifact_bytes_per_call: 16 << 20,
            max_faults: 3,
            fault_window: Duration::from_secs(60),
            quarantine_base: Duration::from_secs(60),
            quarantine_max: Duration::from_secs(3600),
        }
    }
}

impl Limits {
    /// The per-call deadline in epoch ticks (at least 1).
    pub fn deadline_ticks(&self) -> u64 {
        ticks(self.call_timeout)
    }

    /// The start-up deadline in epoch ticks (at least 1).
    pub fn init_deadline_ticks(&self) -> u64 {
        ticks(self.init_timeout)
    }
}

/// `d` in epoch ticks, rounded up, at least 1.
pub fn ticks(d: Duration) -> u64 {
    let ticks = d.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Builds the engine: Cranelift, epoch interruption, component model, no async, no
/// concurrency support (component calls are much cheaper without it; `ward bench`
/// measures both).
pub fn build_engine() -> anyhow::Result<Engine> {
    build_engine_with(false)
}

/// [`build_engine`] with a choice of `Config::concurrency_support`, for measurement. The
/// configuration is `ward_engine::config`, the one the build script precompiles the
/// built-in plugins with.
pub fn build_engine_with(concurrency_support: bool) -> anyhow::Result<Engine> {
    Engine::new(&ward_engine::config(concurrency_support))
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ward-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
