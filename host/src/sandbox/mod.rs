//! The sandbox: one wasmtime engine and its limits, the bindings of the three worlds,
//! per-instance state, plugin images and instances with fault accounting, bounded lifting
//! of what guests return, guest stdio, the capability policy ([`grants`]) and the host
//! implementations of the WIT imports ([`host_api`]).

pub mod bindings;
pub mod engine;
pub mod grants;
pub mod host_api;
pub mod lift;
pub mod output;
pub mod parts;
pub mod plugin;
pub mod runtime;
pub mod state;
pub mod stats;
