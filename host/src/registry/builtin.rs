//! The first-party plugins compiled into the agent: what a fresh build runs with no config.

use std::sync::Arc;

use crate::registry::load::PluginSource;

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The built-in plugins as load sources named `builtin:<package>`.
pub fn builtin_sources() -> Vec<PluginSource> {
    BUILTIN_PLUGINS
        .iter()
        .map(|(name, bytes)| PluginSource {
            origin: format!("builtin:{name}"),
            bytes: Arc::from(*bytes),
        })
        .collect()
}

/// The package names of the built-in plugins (what `[builtin.<name>]` may name).
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_PLUGINS.iter().map(|(name, _)| *name).collect()
}
