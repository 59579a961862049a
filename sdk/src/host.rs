//! Host services: logging, the plugin's configuration and process-table lookups.
//!
//! In a `wasm32` build these call the host. In a native build (unit tests) they use
//! thread-local doubles that [`crate::testing`] fills, so plugin logic runs unchanged.

/// Logging into the agent's log, tagged with the plugin's name.
pub mod log {
    use crate::bindings::ward::plugin::host::LogLevel;

    fn emit(level: LogLevel, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::ward::plugin::host::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::record_log(level, message);
    }

    /// Logs at debug level.
    pub fn debug(message: &str) {
        emit(LogLevel::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        emit(LogLevel::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        emit(LogLevel::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        emit(LogLevel::Error, message);
    }
}

/// The value the admin configured for `key` in this plugin's config table.
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::ward::plugin::host::config(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::config_value(key)
    }
}

/// A boolean config key: `true` or `false`, `default` when unset or empty.
pub fn config_bool(key: &str, default: bool) -> Result<bool, crate::PluginError> {
    match config(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(crate::PluginError::new(format!(
            "config `{key}`: expected true or false, got {other:?}"
        ))),
    }
}

/// A whole-number config key, `default` when unset or empty.
pub fn config_u64(key: &str, default: u64) -> Result<u64, crate::PluginError> {
    match config(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            crate::PluginError::new(format!("config `{key}`: expected a number, got {text:?}"))
        }),
    }
}

/// Process-table lookups.
pub mod process {
    use crate::{AuditToken, Process};

    /// The process image with this `(pid, pidversion)`, if the host's table knows it.
    pub fn lookup(token: AuditToken) -> Option<Process> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::ward::plugin::process_table::lookup(token)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::lookup_process(token)
        }
    }

    /// The parent chain of `token`, nearest first, at most `max_depth` long.
    pub fn ancestors(token: AuditToken, max_depth: u32) -> Vec<Process> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::ward::plugin::process_table::ancestors(token, max_depth)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut chain = Vec::new();
            let mut current = lookup(token).and_then(|p| p.parent_token);
            while let Some(parent) = current {
                if chain.len() >= max_depth.min(32) as usize {
                    break;
                }
                match lookup(parent) {
                    Some(p) => {
                        current = p.parent_token;
                        chain.push(p);
                    }
                    None => break,
                }
            }
            chain
        }
    }

    /// The images descending from `token` (children first, then theirs), at most `max`.
    pub fn descendants(token: AuditToken, max: u32) -> Vec<Process> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::ward::plugin::process_table::descendants(token, max)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::descendants(token, max.min(1024) as usize)
        }
    }

    /// The parent of `process`, if known.
    pub fn parent(process: &Process) -> Option<Process> {
        process.parent_token.and_then(lookup)
    }
}
