//! The one wasmtime `Engine`, its limits and the epoch ticker that enforces per-call time
//! caps.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread while guest code
/// runs (while some [`GuestRunning`] is held), until dropped.
///
/// Between calls the thread sleeps on a condition variable instead of waking 200 times a
/// second: an agent with nothing to do costs no wakeups. The epoch only needs to move
/// while a deadline can be reached, and every way into guest code (an instance's start, a
/// call) holds a [`GuestRunning`] for as long as it runs; a deadline is set as "this many
/// ticks from now", so the epoch standing still between calls shortens none.
pub struct EpochTicker {
    shared: Arc<Ticking>,
    handle: Option<JoinHandle<()>>,
}

/// What the ticker and the callers share.
#[derive(Default)]
struct Ticking {
    state: Mutex<TickState>,
    wake: Condvar,
}

#[derive(Default)]
struct TickState {
    /// Guest calls in progress, on any thread.
    running: usize,
    stop: bool,
}

impl Ticking {
    fn state(&self) -> MutexGuard<'_, TickState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held while guest code runs: the epoch advances until the last one is dropped.
#[must_use = "the epoch advances only while this is held"]
pub struct GuestRunning {
    shared: Arc<Ticking>,
}

impl Drop for GuestRunning {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.running = state.running.saturating_sub(1);
    }
}

impl EpochTicker {
    /// Starts the thread, advancing `engine`'s epoch.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let engine = engine.clone();
        Self::start_with(move || engine.increment_epoch())
    }

    /// Starts the thread, calling `tick` every [`EPOCH_TICK`] while guest code runs.
    fn start_with(tick: impl Fn() + Send + 'static) -> anyhow::Result<Self> {
        let shared = Arc::new(Ticking::default());
        let ticking = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("ward-epoch".into())
            .spawn(move || {
                loop {
                    let mut parked = false;
                    {
                        let mut state = ticking.state();
                        while state.running == 0 && !state.stop {
                            parked = true;
                            state = ticking
                                .wake
                                .wait(state)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                        if state.stop {
                            return;
                        }
                    }
                    // A free-running ticker's first tick came anywhere in the tick after a
                    // deadline was set; after a wake it comes half-way, so a deadline of
                    // `n` ticks still lands inside its last tick, not past it.
                    std::thread::sleep(if parked { EPOCH_TICK / 2 } else { EPOCH_TICK });
                    tick();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self {
            shared,
            handle: Some(handle),
        })
    }

    /// Marks guest code as running until the guard is dropped.
    pub fn guest_running(&self) -> GuestRunning {
        let mut state = self.shared.state();
        state.running += 1;
        if state.running == 1 {
            self.shared.wake.notify_one();
        }
        GuestRunning {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.state().stop = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Ticks counted once they have stopped coming (the thread may finish one sleep after
    /// the last guard is dropped).
    fn settled(ticks: &AtomicU64) -> u64 {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < give_up,
                "the epoch kept moving with nothing running"
            );
            let before = ticks.load(Ordering::SeqCst);
            std::thread::sleep(EPOCH_TICK * 10);
            let after = ticks.load(Ordering::SeqCst);
            if after == before {
                return after;
            }
        }
    }

    /// Waits for the count to reach `n`; fails rather than hangs if it never does.
    fn reaches(ticks: &AtomicU64, n: u64) {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while ticks.load(Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < give_up,
                "the epoch did not move"
            );
            std::thread::sleep(EPOCH_TICK);
        }
    }

    #[test]
    fn the_epoch_moves_only_while_guest_code_runs() {
        let ticks = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&ticks);
        let ticker = EpochTicker::start_with(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        std::thread::sleep(EPOCH_TICK * 20);
        assert_eq!(settled(&ticks), 0, "ticked with nothing running");

        // Two overlapping calls, on two threads: ticking until the last one ends.
        let first = ticker.guest_running();
        let second =
            std::thread::scope(|scope| scope.spawn(|| ticker.guest_running()).join().unwrap());
        reaches(&ticks, 2);
        drop(first);
        reaches(&ticks, ticks.load(Ordering::SeqCst) + 2);
        drop(second);
        let idle = settled(&ticks);
        std::thread::sleep(EPOCH_TICK * 20);
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            idle,
            "ticked after the last call ended"
        );

        // And it wakes again for the next call.
        let _again = ticker.guest_running();
        reaches(&ticks, idle + 1);
        drop(ticker);
    }
}
