//! Host implementations of the WIT import interfaces, one file per interface.

pub mod clocks;
pub mod enrich;
pub mod files;
pub mod host;
pub mod process_table;
pub mod v0_1;

use crate::sandbox::bindings::detector::ward::plugin::types;
use crate::sandbox::state::PluginState;

/// `ward:plugin/types` has no functions; the generated trait is empty.
impl types::Host for PluginState {}
