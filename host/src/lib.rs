//! ward: a macOS incident-response agent built as a WebAssembly plugin host.
//!
//! The folders are the stages of the data flow, and data moves one way through them:
//!
//! - [`ingest`]: sources of eslogger lines (file, stdin, follow, `eslogger`) and the
//!   conversion of each event to the WIT record, once;
//! - [`sandbox`]: the wasmtime engine, limits, bindings, plugin state and instances, the
//!   capability policy ([`sandbox::grants`]) and the host side of each WIT import;
//! - [`registry`]: the verified load path, the compile cache and the built-in content;
//! - [`detect`]: the detection stage (batches, routing, the AUTH lane);
//! - [`respond`]: playbooks, smart groups, incidents, collectors and remediators, the
//!   action executor with its invariants, leases and undo, and the audit log;
//! - [`forward`]: the finding records that leave the agent;
//! - [`operate`]: the control socket and the metrics endpoint of a running agent;
//! - [`cli`]: the command line and the developer tools (bench, gen, scaffold, plugin
//!   test, analytics check);
//!
//! with [`config`] (`ward.toml`) and [`agent`], the composition root that builds a running
//! pipeline from a config.

pub mod agent;
pub mod cli;
pub mod clock;
pub mod config;
pub mod detect;
pub mod forward;
pub mod ingest;
pub mod operate;
pub mod registry;
pub mod respond;
pub mod sandbox;
