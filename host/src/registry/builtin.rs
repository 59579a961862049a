//! The first-party plugins compiled into the agent: what a fresh build runs with no config.
//! Detectors are the default content; collectors and remediators load only when a
//! playbook names them.

use std::sync::Arc;

use crate::registry::load::PluginSource;
use crate::sandbox::plugin::Kind;

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The built-in plugins as load sources named `builtin:<package>`, with their world.
pub fn builtin_sources_with_kinds() -> Vec<(PluginSource, Kind)> {
    BUILTIN_PLUGINS
        .iter()
        .map(|(name, kind, bytes)| {
            (
                PluginSource {
                    origin: format!("builtin:{name}"),
                    bytes: Arc::from(*bytes),
                },
                crate::config::parse_kind(kind).unwrap_or(Kind::Detector),
            )
        })
        .collect()
}

/// The built-in detectors (the default content) as load sources.
pub fn builtin_sources() -> Vec<PluginSource> {
    builtin_sources_with_kinds()
        .into_iter()
        .filter(|(_, k)| *k == Kind::Detector)
        .map(|(s, _)| s)
        .collect()
}

/// The package names of the built-in plugins (what `[builtin.<name>]` may name).
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_PLUGINS.iter().map(|(name, _, _)| *name).collect()
}

/// The built-in plugin of world `kind` named `name`, if there is one.
pub fn builtin_of(name: &str, kind: Kind) -> bool {
    BUILTIN_PLUGINS
        .iter()
        .any(|(n, k, _)| *n == name && crate::config::parse_kind(k) == Some(kind))
}
