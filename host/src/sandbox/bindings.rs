//! Host-side bindings for the three plugin worlds, generated from `wit/`, and for the
//! frozen `ward:plugin@0.1.0` contract in `wit/v0.1.0/`, which the host still links so
//! that components built against it keep loading. Components built against 0.2.0 need no
//! links of their own (0.2.1 only added to it); [`v0_2`] checks their exports.
//!
//! The detector world's bindings own the shared interfaces (`types`, `host`,
//! `process-table`); the collector and remediator bindings reuse them, so one Rust type
//! stands for each WIT type everywhere in the host. The 0.1.0 bindings are a world of
//! their own ([`v0_1`]): the host implements their imports by delegating to the current
//! ones ([`crate::sandbox::host_api::v0_1`]), and calls a 0.1.0 component's exports with
//! the current types where their shapes are the same (every event and trigger type) and
//! with [`crate::sandbox::lift`]'s 0.1.0 types where they differ (`action`).

#![allow(missing_docs, clippy::all)]

pub mod detector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ward:plugin/detector",
    });
}

pub mod collector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ward:plugin/collector",
        with: {
            "ward:plugin/types": super::detector::ward::plugin::types,
            "ward:plugin/host": super::detector::ward::plugin::host,
            "ward:plugin/process-table": super::detector::ward::plugin::process_table,
        },
    });
}

pub mod remediator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ward:plugin/remediator",
        with: {
            "ward:plugin/types": super::detector::ward::plugin::types,
            "ward:plugin/host": super::detector::ward::plugin::host,
            "ward:plugin/process-table": super::detector::ward::plugin::process_table,
        },
    });
}

/// `ward:plugin@0.2.0`, frozen: only its detector world differs from 0.2.1 (no `parts`
/// export), and only its export check needs bindings of its own. Its imports resolve to the
/// 0.2.1 definitions (wasmtime's semver-compatible lookup), and its types are the current
/// ones.
pub mod v0_2 {
    pub mod detector {
        wasmtime::component::bindgen!({
            path: "../wit/v0.2.0",
            world: "ward:plugin/detector",
            with: {
                "ward:plugin/types": crate::sandbox::bindings::detector::ward::plugin::types,
                "ward:plugin/host": crate::sandbox::bindings::detector::ward::plugin::host,
                "ward:plugin/process-table": crate::sandbox::bindings::detector::ward::plugin::process_table,
                "ward:plugin/enrich": crate::sandbox::bindings::detector::ward::plugin::enrich,
            },
        });
    }
}

/// `ward:plugin@0.1.0`, frozen.
pub mod v0_1 {
    pub mod detector {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "ward:plugin/detector",
        });
    }

    pub mod collector {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "ward:plugin/collector",
            with: {
                "ward:plugin/types": super::detector::ward::plugin::types,
                "ward:plugin/host": super::detector::ward::plugin::host,
                "ward:plugin/process-table": super::detector::ward::plugin::process_table,
            },
        });
    }

    pub mod remediator {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "ward:plugin/remediator",
            with: {
                "ward:plugin/types": super::detector::ward::plugin::types,
                "ward:plugin/host": super::detector::ward::plugin::host,
                "ward:plugin/process-table": super::detector::ward::plugin::process_table,
            },
        });
    }
}

pub use detector::ward::plugin::host::LogLevel;
pub use detector::ward::plugin::types as wit;
