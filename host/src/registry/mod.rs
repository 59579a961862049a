//! The plugin registry: turns policy into loaded plugins. Startup (and, later, hot reload)
//! goes through [`load_all`]; a plugin that fails to load is reported and skipped, and the
//! rest run.

pub mod builtin;
pub mod cache;
pub mod load;

use crate::config::WardConfig;
use crate::registry::load::{LoadError, PluginSource, load};
use crate::sandbox::plugin::{Mode, Plugin};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;

/// Loaded plugins plus the ones that were refused.
pub struct Loaded {
    /// Plugins ready to run.
    pub plugins: Vec<Plugin>,
    /// Refusals, each a one-line reason naming the file.
    pub errors: Vec<LoadError>,
}

/// Loads the built-in content (unless disabled) and every admin plugin.
pub fn load_all(rt: &Runtime, config: &WardConfig, processes: &SharedProcessTable) -> Loaded {
    let mut plugins = Vec::new();
    let mut errors = Vec::new();
    if config.agent.default_content {
        for source in builtin::builtin_sources() {
            let package = source.origin.trim_start_matches("builtin:").to_owned();
            let options = config.builtin_options(&package);
            if options.mode == Mode::Disabled {
                continue;
            }
            match load(rt, &source, &options, processes) {
                Ok(p) => plugins.push(p),
                Err(e) => errors.push(e),
            }
        }
    }
    for entry in &config.plugins {
        if entry.mode == Mode::Disabled {
            continue;
        }
        let options = config.plugin_options(entry);
        let result = PluginSource::from_file(&config.resolve(&entry.path))
            .and_then(|s| load(rt, &s, &options, processes));
        match result {
            Ok(p) => plugins.push(p),
            Err(e) => errors.push(e),
        }
    }
    for e in &errors {
        tracing::error!(error = %e, "plugin refused");
    }
    // Two plugins with one name would make findings ambiguous: keep the first.
    let mut seen = std::collections::HashSet::new();
    plugins.retain(|p| {
        let fresh = seen.insert(p.name().to_owned());
        if !fresh {
            tracing::error!(plugin = %p.name(), origin = %p.origin(), "duplicate plugin name; ignoring this copy");
        }
        fresh
    });
    Loaded { plugins, errors }
}
