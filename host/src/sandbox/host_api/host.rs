//! `ward:plugin/host`: logging and plugin configuration.

use crate::sandbox::bindings::detector::ward::plugin::host::{Host, LogLevel};
use crate::sandbox::state::{MAX_LOG_MESSAGE_BYTES, PluginState};

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_LOG_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_LOG_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.get(..end).unwrap_or("")
}

impl Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.log_budget == 0 {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        self.log_budget -= 1;
        let plugin = &*self.ctx.name;
        let message = truncate(&message);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.ctx.config.get(&key).cloned()
    }
}
