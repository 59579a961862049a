//! ward: a macOS incident-response agent built as a WebAssembly plugin host.
//!
//! Data flows one way: a source yields eslogger lines → [`ward_event`] parses them and the
//! process table enriches them → the [`router`] picks subscribed detectors → plugins run
//! in the wasmtime sandbox ([`plugin`]) → findings go to the sink as NDJSON.

pub mod analytics;
pub mod auth;
pub mod auth_lane;
pub mod bench;
pub mod bindings;
pub mod cache;
pub mod cli;
pub mod config;
pub mod convert;
pub mod default_content;
pub mod engine;
pub mod finding;
pub mod host_api;
pub mod lift;
pub mod load;
pub mod output;
pub mod pipeline;
pub mod plugin;
pub mod plugin_test;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod scope;
pub mod source;
pub mod state;
pub mod synth;
