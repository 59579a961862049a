//! `wasi:clocks/monotonic-clock`'s subscriptions, bounded by the call's deadline.
//!
//! A guest that sleeps (`std::thread::sleep`, or any wait on a clock) waits inside the
//! host, in `wasi:io/poll`, where the epoch deadline cannot interrupt it: WASI's own
//! subscription would hold the detection thread for as long as the guest asked, an hour or
//! forever. These replace `subscribe-duration` and `subscribe-instant` with pollables that
//! are ready at the time asked or at the deadline of the call that waits, whichever comes
//! first (a subscription made at start-up and waited on in a call waits no longer than
//! the call may). A wait cut short at the deadline marks the store
//! ([`PluginState::take_wait_cut`]), and the call is then a timeout fault whatever the
//! guest returns: it ran out of time like any plugin that spins past its epoch deadline,
//! and is counted and quarantined alike. Outside a call (no deadline) a subscription is
//! ready at once.
//!
//! The monotonic clock the guest reads is [`Monotonic`], so an instant it subscribes to
//! can be turned back into a time here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, WasiView};

use crate::sandbox::state::PluginState;

/// The interface replaced: the version wasmtime-wasi 48 defines, which every 0.2 import
/// resolves to. Were wasmtime-wasi to define a later one, this would add a second instance
/// that imports do not reach; `a_plugin_that_sleeps_is_stopped_by_the_deadline`
/// (tests/sandbox.rs) fails then.
const INTERFACE: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// What a guest's monotonic clock counts from.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The monotonic clock guests read: nanoseconds since [`START`].
pub struct Monotonic;

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(START.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The deadline of the call in progress, shared with the store's clock subscriptions: a
/// subscription may be made in one call (or at start-up) and waited on in a later one,
/// so each wait reads the deadline of the call that waits. Nanoseconds since [`START`],
/// plus one; zero when no call is in progress.
#[derive(Debug, Default)]
pub struct DeadlineCell(AtomicU64);

impl DeadlineCell {
    /// Sets (or, with `None`, clears) the deadline.
    pub fn set(&self, deadline: Option<Instant>) {
        let nanos = deadline.map_or(0, |d| {
            let since = d.saturating_duration_since(*START).as_nanos();
            u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
        });
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// The deadline, if one is set.
    pub fn get(&self) -> Option<Instant> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            nanos => START.checked_add(Duration::from_nanos(nanos - 1)),
        }
    }
}

/// A clock subscription: ready at the time the guest asked for, or at the deadline of the
/// call that waits on it.
struct Until {
    /// `None` when the time asked for cannot be represented: it waits for the deadline.
    wanted: Option<Instant>,
    deadline: Arc<DeadlineCell>,
    /// Set when a wait ends at the deadline rather than the time asked for.
    cut: Arc<AtomicBool>,
}

/// When a wait for `wanted` ends under `deadline`, and whether the deadline ended it.
/// With no call in progress (no deadline) it ends at once: no guest code waits then.
fn wait_end(wanted: Option<Instant>, deadline: Option<Instant>) -> (Instant, bool) {
    match (wanted, deadline) {
        (_, None) => (Instant::now(), false),
        (Some(wanted), Some(deadline)) if wanted <= deadline => (wanted, false),
        (_, Some(deadline)) => (deadline, true),
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Until {
    async fn ready(&mut self) {
        let (at, cut) = wait_end(self.wanted, self.deadline.get());
        tokio::time::sleep_until(at.into()).await;
        if cut {
            self.cut.store(true, Ordering::Relaxed);
        }
    }
}

fn pollable(
    state: &mut PluginState,
    wanted: Option<Instant>,
) -> wasmtime::Result<Resource<DynPollable>> {
    let until = Until {
        wanted,
        deadline: Arc::clone(&state.deadline),
        cut: Arc::clone(&state.wait_cut),
    };
    let table = WasiView::ctx(state).table;
    let until = table.push(until)?;
    subscribe(table, until)
}

/// Replaces the two subscriptions in `linker`, which already holds WASI's (shadowing
/// must be allowed).
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    let mut clock = linker.instance(INTERFACE)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut cx: wasmtime::StoreContextMut<'_, PluginState>, (nanos,): (u64,)| {
            let wanted = Instant::now().checked_add(Duration::from_nanos(nanos));
            Ok((pollable(cx.data_mut(), wanted)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut cx: wasmtime::StoreContextMut<'_, PluginState>, (when,): (u64,)| {
            let wanted = START.checked_add(Duration::from_nanos(when));
            Ok((pollable(cx.data_mut(), wanted)?,))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_at_the_deadline_of_the_call_that_waits() {
        let now = Instant::now();
        let hour = now + Duration::from_secs(3600);
        let soon = now + Duration::from_millis(50);
        assert_eq!(wait_end(Some(hour), Some(soon)), (soon, true));
        assert_eq!(wait_end(Some(soon), Some(hour)), (soon, false));
        // A time too far to represent waits for the deadline only.
        assert_eq!(wait_end(None, Some(soon)), (soon, true));
        let (at, cut) = wait_end(Some(hour), None);
        assert!(at <= Instant::now() && !cut);
    }

    #[test]
    fn the_cell_holds_the_deadline_it_was_given() {
        let cell = DeadlineCell::default();
        assert_eq!(cell.get(), None);
        let deadline = Instant::now() + Duration::from_millis(250);
        cell.set(Some(deadline));
        let got = cell.get().unwrap();
        assert!(got.max(deadline) - got.min(deadline) < Duration::from_micros(1));
        cell.set(None);
        assert_eq!(cell.get(), None);
    }
}
