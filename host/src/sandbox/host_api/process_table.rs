//! `ward:plugin/process-table`: read-only lookups in the host's process table.

use crate::ingest::convert;
use crate::sandbox::bindings::detector::ward::plugin::process_table::Host;
use crate::sandbox::bindings::wit::{AuditToken, Process};
use crate::sandbox::state::PluginState;

impl Host for PluginState {
    fn lookup(&mut self, token: AuditToken) -> Option<Process> {
        let table = self.ctx.processes.read().ok()?;
        table
            .get(&convert::model_token(&token))
            .map(|p| convert::process(&p))
    }

    fn ancestors(&mut self, token: AuditToken, max_depth: u32) -> Vec<Process> {
        let Ok(table) = self.ctx.processes.read() else {
            return Vec::new();
        };
        table
            .ancestors(&convert::model_token(&token), max_depth as usize)
            .iter()
            .map(|p| convert::process(p))
            .collect()
    }

    fn descendants(&mut self, token: AuditToken, max: u32) -> Vec<Process> {
        let Ok(table) = self.ctx.processes.read() else {
            return Vec::new();
        };
        let max = (max as usize).min(ward_event::process_table::MAX_DESCENDANTS);
        table
            .descendants(&convert::model_token(&token), max)
            .iter()
            .map(|p| convert::process(p))
            .collect()
    }
}
