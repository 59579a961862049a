//! ward-event: the eslogger event model, the line parser and the process table.
//!
//! Kept free of wasmtime so it builds and tests in seconds. The host converts these types
//! into the WIT `event` record once per event and hands that to every subscribed plugin.
#![deny(missing_docs)]

pub mod model;
pub mod parse;
pub mod process_table;
mod untyped;

pub use model::{AuditToken, EventPayload, Message, Process, Signer};
pub use parse::{DEFAULT_MAX_LINE_BYTES, ParseError, ParseStats, parse_line};
pub use process_table::ProcessTable;
pub use untyped::MAX_UNTYPED_NODES;
