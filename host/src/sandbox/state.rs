//! Per-plugin store state: WASI context (no preopens, no env, no sockets), resource table,
//! memory limits, identity, config, the shared process table and captured guest output.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::sandbox::engine::Limits;
use crate::sandbox::grants::EnrichScope;
use crate::sandbox::grants::FileScope;
use crate::sandbox::host_api::clocks::DeadlineCell;
use crate::sandbox::output::GuestOutput;
use ward_event::ProcessTable;

/// The process table shared between the pipeline (writer) and plugin calls (readers).
pub type SharedProcessTable = Arc<RwLock<ProcessTable>>;

/// What a plugin's host calls may see, shared by all instances of one plugin.
#[derive(Clone)]
pub struct PluginContext {
    /// Plugin name used in logs (file name until `describe()` has answered).
    pub name: Arc<str>,
    /// Admin-set config values.
    pub config: Arc<BTreeMap<String, String>>,
    /// The process table.
    pub processes: SharedProcessTable,
    /// File scope for collectors granted `file-read`; `None` denies all file access.
    pub files: Option<Arc<FileScope>>,
    /// Enrichment grants (`file-hash`, `file-xattr`, `plist-read`) for detectors; `None`
    /// denies all enrichment.
    pub enrich: Option<Arc<EnrichScope>>,
}

/// The store's limits, and what they saw: the memory high-water mark and whether a growth
/// was refused.
struct Limiter {
    limits: StoreLimits,
    high_water: usize,
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        match &allowed {
            Ok(true) => self.high_water = self.high_water.max(desired),
            Ok(false) | Err(_) => self.refused = true,
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.refused = true;
        }
        allowed
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Store data of one plugin instance.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    /// Who this is and what it may see.
    pub ctx: PluginContext,
    /// Guest stdout, drained into the log after each call.
    pub stdout: GuestOutput,
    /// Guest stderr, drained into the log after each call.
    pub stderr: GuestOutput,
    /// Log messages left before the host starts dropping them for this call.
    pub log_budget: u32,
    /// Log messages dropped over budget during this call.
    pub logs_dropped: u32,
    /// When the current call's time is up; host imports that may take long (hashing a
    /// file) stop by then rather than outlive the guest's deadline.
    /// Shared with the clock subscriptions, which read it when they wait (see
    /// [`crate::sandbox::host_api::clocks`]).
    pub(crate) deadline: Arc<DeadlineCell>,
    /// Set when a clock wait of the guest's was cut short at its deadline (see
    /// [`crate::sandbox::host_api::clocks`]): the call then ran out of time, whatever it
    /// returned.
    pub(crate) wait_cut: Arc<AtomicBool>,
}

/// Most random bytes one WASI call hands a plugin.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Most WASI resources one instance holds at once.
pub const MAX_RESOURCES: usize = 4096;

/// Log messages a plugin may write per call before the host drops the rest.
pub const LOG_MESSAGES_PER_CALL: u32 = 64;
/// Longest log message kept; longer ones are truncated.
pub const MAX_LOG_MESSAGE_BYTES: usize = 4096;

impl PluginState {
    /// Fresh state: WASI builder defaults (no preopens, env, args or network) with guest
    /// stdio captured.
    pub fn new(ctx: PluginContext, limits: &Limits) -> Self {
        let stdout = GuestOutput::new(limits.max_output_bytes);
        let stderr = GuestOutput::new(limits.max_output_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .monotonic_clock(crate::sandbox::host_api::clocks::Monotonic)
            // WASI's default is 64 MiB per call, generated in one host call the epoch
            // cannot interrupt; a plugin needs a few bytes for a seed.
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        // Each WASI resource (a stream, a clock subscription) is an entry; polling a
        // million of them would be one long host call.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .instances(limits.instances)
            .tables(limits.instances)
            .memories(limits.instances)
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            table,
            limits: Limiter {
                limits: store_limits,
                high_water: 0,
                refused: false,
            },
            ctx,
            stdout,
            stderr,
            log_budget: LOG_MESSAGES_PER_CALL,
            logs_dropped: 0,
            deadline: Arc::default(),
            wait_cut: Arc::default(),
        }
    }

    /// When the current call's (or start-up's) time is up; `None` between calls.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline.get()
    }

    /// Sets (or clears) the deadline host imports and clock waits honour.
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline.set(deadline);
    }

    /// True if a clock wait was cut short at the deadline since the last call of this.
    pub fn take_wait_cut(&self) -> bool {
        self.wait_cut.swap(false, Ordering::Relaxed)
    }

    /// The limiter wasmtime consults on every memory/table growth.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// The largest linear memory the instance has asked for, bytes.
    pub fn memory_high_water(&self) -> usize {
        self.limits.high_water
    }

    /// True if a growth of memory or a table was refused since the last call of this: the
    /// typed sign of a `memory-limit` fault (not a message to search).
    pub fn take_growth_refused(&mut self) -> bool {
        std::mem::take(&mut self.limits.refused)
    }

    /// Sends captured guest output to the log, one event per line, and resets the per-call
    /// log budget.
    pub fn flush_output(&mut self) {
        let name = &self.ctx.name;
        self.stdout.drain_to_log(name, "stdout");
        self.stderr.drain_to_log(name, "stderr");
        if self.logs_dropped > 0 {
            tracing::warn!(plugin = %name, dropped = self.logs_dropped, "plugin log messages over budget dropped");
        }
        self.log_budget = LOG_MESSAGES_PER_CALL;
        self.logs_dropped = 0;
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
