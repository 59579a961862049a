//! `wasi:clocks/monotonic-clock`'s subscriptions, bounded by the call's deadline.
//!
//! A guest that sleeps (`std::thread::sleep`, or any wait on a clock) waits inside the
//! host, in `wasi:io/poll`, where the epoch deadline cannot interrupt it: WASI's own
//! subscription would hold the detection thread for as long as the guest asked, an hour or
//! forever. These replace `subscribe-duration` and `subscribe-instant` with pollables that
//! are ready at the time asked or at the call's deadline, whichever comes first. A wait cut
//! short at the deadline marks the store ([`PluginState::take_wait_cut`]), and the call is
//! then a timeout fault whatever the guest returns: it ran out of time like any plugin
//! that spins past its epoch deadline, and is counted and quarantined alike. Outside a
//! call (no deadline) a subscription is ready at once.
//!
//! The monotonic clock the guest reads is [`Monotonic`], so an instant it subscribes to
//! can be turned back into a time here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, WasiView};

use crate::sandbox::state::PluginState;

/// The interface replaced; components importing an older 0.2 version resolve to it.
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

/// A clock subscription: ready at `at`, already bounded by the deadline.
struct Until {
    at: Instant,
    /// Set once ready when `at` is the deadline rather than the time the guest asked for.
    cut: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Until {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.at.into()).await;
        if let Some(cut) = &self.cut {
            cut.store(true, Ordering::Relaxed);
        }
    }
}

/// When a subscription for `wanted` is ready: then, or at the call's deadline if that is
/// sooner; at once outside a call.
fn bounded(wanted: Option<Instant>, deadline: Option<Instant>) -> Instant {
    let now = Instant::now();
    match (wanted, deadline) {
        (_, None) => now,
        (Some(wanted), Some(deadline)) => wanted.min(deadline),
        (None, Some(deadline)) => deadline,
    }
}

fn pollable(
    state: &mut PluginState,
    wanted: Option<Instant>,
) -> wasmtime::Result<Resource<DynPollable>> {
    let at = bounded(wanted, state.deadline);
    let cut = wanted
        .is_none_or(|wanted| at < wanted)
        .then(|| Arc::clone(&state.wait_cut));
    let table = WasiView::ctx(state).table;
    let until = table.push(Until { at, cut })?;
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
    fn a_subscription_is_ready_by_the_deadline_and_at_once_outside_a_call() {
        let now = Instant::now();
        let hour = now + Duration::from_secs(3600);
        let soon = now + Duration::from_millis(50);
        assert_eq!(bounded(Some(hour), Some(soon)), soon);
        assert_eq!(bounded(Some(soon), Some(hour)), soon);
        // An instant too far to represent waits for the deadline only.
        assert_eq!(bounded(None, Some(soon)), soon);
        assert!(bounded(Some(hour), None) <= Instant::now());
    }
}
