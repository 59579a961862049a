//! The plugin registry: turns policy into loaded plugins. Startup (and, later, hot reload)
//! goes through [`load_all`]; a plugin that fails to load is reported and skipped, and the
//! rest run.

pub mod builtin;
pub mod cache;
pub mod load;
pub mod signature;

use std::path::{Path, PathBuf};

use crate::config::{PluginConfig, WardConfig};
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
    /// Of the refusals, those of plugins the admin named explicitly (a `[[plugins]]`
    /// entry): their absence is a fatal error for `ward run` / `ward replay`.
    pub named_refused: usize,
}

/// The `*.wasm` files in `dir` (regular files, not followed into subdirectories), sorted.
pub fn dir_components(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "plugin_dir cannot be read");
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    out.sort();
    out
}

/// The `[[plugins]]` entry giving settings to the `plugin_dir` component at `path`: the one
/// whose `name` is the file's stem (`-` and `_` alike).
pub fn dir_entry<'a>(config: &'a WardConfig, path: &Path) -> Option<&'a PluginConfig> {
    let stem = path.file_stem()?.to_string_lossy().replace('-', "_");
    config.plugins.iter().find(|p| {
        p.path.is_none()
            && p.name
                .as_deref()
                .is_some_and(|n| n.replace('-', "_") == stem)
    })
}

/// Loads the `plugin_dir` component at `path` under `config`: its `[[plugins]]` entry (by
/// name) gives pin, grants, config and mode; with `trusted_keys`, an unpinned component
/// must carry a signature by one of them; a configured self-test must pass.
pub fn load_dir_component(
    rt: &Runtime,
    config: &WardConfig,
    path: &Path,
    processes: &SharedProcessTable,
) -> Result<Plugin, LoadError> {
    let entry = dir_entry(config, path);
    let mut options = match entry {
        Some(e) => config.plugin_options(e),
        None => crate::registry::load::LoadOptions {
            require_pin: config.agent.require_pins,
            ..Default::default()
        },
    };
    let source = PluginSource::from_file(path)?;
    if options.pin.is_none() && !config.agent.trusted_keys.is_empty() {
        let keys: Vec<_> = config
            .agent
            .trusted_keys
            .iter()
            .filter_map(|k| signature::parse_key(k).ok())
            .collect();
        signature::verify(path, &source.bytes, &keys).map_err(|e| LoadError::Signature {
            origin: source.origin.clone(),
            reason: e.to_string(),
        })?;
        // Signed by a trusted publisher: that stands in for a pin.
        options.require_pin = false;
    }
    let plugin = load(rt, &source, &options, processes)?;
    if let Some(test) = entry.and_then(|e| e.selftest.as_ref()) {
        let events = config.resolve(&test.events);
        let expect = config.resolve(&test.expect);
        let trial = load(rt, &source, &options, processes)?;
        crate::cli::plugin_test::self_test(rt, trial, &events, &expect).map_err(|reason| {
            LoadError::SelfTest {
                origin: source.origin.clone(),
                reason,
            }
        })?;
    }
    Ok(plugin)
}

/// Loads the built-in content (unless disabled), every admin plugin and every component
/// in `plugin_dir`.
pub fn load_all(rt: &Runtime, config: &WardConfig, processes: &SharedProcessTable) -> Loaded {
    let mut plugins = Vec::new();
    let mut errors = Vec::new();
    let mut named_refused = 0;
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
        let Some(path) = &entry.path else { continue };
        if entry.mode == Mode::Disabled {
            continue;
        }
        let options = config.plugin_options(entry);
        let result = PluginSource::from_file(&config.resolve(path))
            .and_then(|s| load(rt, &s, &options, processes));
        match result {
            Ok(p) => plugins.push(p),
            Err(e) => {
                named_refused += 1;
                errors.push(e);
            }
        }
    }
    if let Some(dir) = &config.agent.plugin_dir {
        for path in dir_components(&config.resolve(dir)) {
            if dir_entry(config, &path).is_some_and(|e| e.mode == Mode::Disabled) {
                continue;
            }
            match load_dir_component(rt, config, &path, processes) {
                Ok(p) => plugins.push(p),
                Err(e) => {
                    if dir_entry(config, &path).is_some() {
                        named_refused += 1;
                    }
                    errors.push(e);
                }
            }
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
    Loaded {
        plugins,
        errors,
        named_refused,
    }
}
