//! Host-side bindings for the three plugin worlds, generated from `wit/`.
//!
//! The detector world's bindings own the shared interfaces (`types`, `host`,
//! `process-table`); the collector and remediator bindings reuse them, so one Rust type
//! stands for each WIT type everywhere in the host.

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

pub use detector::ward::plugin::host::LogLevel;
pub use detector::ward::plugin::types as wit;
