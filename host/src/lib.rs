//! ward: a macOS incident-response agent built as a WebAssembly plugin host.
//!
//! Data flows one way: a source yields eslogger lines → [`ward_event`] parses them and the
//! process table enriches them → the [`router`] picks subscribed detectors → plugins run
//! in the wasmtime sandbox ([`plugin`]) → findings go to the sink as NDJSON.

pub mod bindings;
pub mod convert;
pub mod engine;
pub mod host_api;
pub mod output;
pub mod state;
pub mod cache;
pub mod load;
pub mod plugin;
pub mod runtime;
pub mod finding;
pub mod pipeline;
pub mod router;
pub mod source;
pub mod default_content;
pub mod config;
pub mod registry;
pub mod bench;
pub mod cli;
pub mod plugin_test;
pub mod scaffold;
