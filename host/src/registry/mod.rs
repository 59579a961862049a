//! The plugin registry: turns policy into loaded plugins. Startup (and, later, hot reload)
//! goes through [`load_all`]; a plugin that fails to load is reported and skipped, and the
//! rest run.

pub mod builtin;
pub mod cache;
pub mod load;
pub mod signature;

use std::path::{Path, PathBuf};

use crate::config::{PluginConfig, WardConfig};
use crate::registry::load::{LoadError, LoadOptions, PluginSource, load};
use crate::sandbox::plugin::{Kind, Mode, Plugin};
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
    /// `(origin, fingerprint)` of each plugin, in the order of `plugins`.
    pub fingerprints: Vec<(String, String)>,
}

/// Whether `dir` can be trusted as a source of plugins: a directory (not a symlink to
/// one), owned by the agent's user or root, that no one else can write — or any local
/// user could put code into the agent.
pub fn check_plugin_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| format!("plugin_dir {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("plugin_dir {} is not a directory", dir.display()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "plugin_dir {} is owned by uid {}, not by the agent's user or root",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "plugin_dir {} is writable by group or others (mode {:o}): refused",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Whether the `plugin_dir` component at `path` can be trusted like its directory: a
/// regular file (not a symlink out of the directory), owned by the agent's user or root,
/// writable by no one else.
pub fn check_dir_component(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file (symlinks are not followed in plugin_dir)".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by the agent's user or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The `*.wasm` names in `dir` (not followed into subdirectories), sorted.
pub fn dir_components(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "plugin_dir cannot be read");
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
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

/// A plugin the policy asks for, read and checked for nothing yet: its bytes, the admin's
/// options, and what else its load must pass. Startup and every reload go through
/// [`plan`] and [`load_planned`].
pub struct Planned {
    /// The bytes and where they came from.
    pub source: PluginSource,
    /// Pin, grants, config, mode.
    pub options: LoadOptions,
    /// The admin named it (a `[[plugins]]` entry): its refusal is fatal at startup.
    pub named: bool,
    /// A `plugin_dir` component (or one loaded by `ward ctl load`): with `trusted_keys`, an
    /// unpinned one must carry a publisher's signature.
    pub dir: bool,
    /// Self-test to pass first.
    pub selftest: Option<(PathBuf, PathBuf)>,
}

impl Planned {
    /// What the running plugin must match to be kept as it is on a reload: the bytes and
    /// every option.
    pub fn fingerprint(&self) -> String {
        format!(
            "{} {:?} {:?}",
            load::sha256_hex(&self.source.bytes),
            self.options,
            self.selftest
        )
    }
}

/// The plan for the `plugin_dir` (or `ward ctl load`) component at `path` under `config`:
/// its `[[plugins]]` entry (by name) gives pin, grants, config, mode and self-test.
pub fn plan_component(config: &WardConfig, path: &Path) -> Result<Planned, LoadError> {
    check_dir_component(path).map_err(|reason| LoadError::Read {
        origin: path.display().to_string(),
        reason,
    })?;
    let entry = dir_entry(config, path);
    let options = match entry {
        Some(e) => config.plugin_options(e),
        None => LoadOptions {
            require_pin: config.agent.require_pins,
            ..Default::default()
        },
    };
    Ok(Planned {
        source: PluginSource::from_file(path)?,
        options,
        named: entry.is_some(),
        dir: true,
        selftest: entry
            .and_then(|e| e.selftest.as_ref())
            .map(|t| (config.resolve(&t.events), config.resolve(&t.expect))),
    })
}

/// Everything `config` asks for, in order: the built-in content (unless disabled), every
/// `[[plugins]]` entry with a path, and every component in `plugin_dir`. Disabled plugins
/// are left out; a file that cannot be read is a refusal.
pub fn plan(config: &WardConfig) -> (Vec<Planned>, Vec<(LoadError, bool)>) {
    let mut planned = Vec::new();
    let mut refused = Vec::new();
    // Collectors and remediators built in load when a playbook names them, default
    // content or not; the built-in detectors are the default content.
    let named = config.playbook_plugins();
    for (source, kind) in builtin::builtin_sources_with_kinds() {
        let package = source.origin.trim_start_matches("builtin:").to_owned();
        let wanted = match kind {
            Kind::Detector => config.agent.default_content,
            _ => named.contains(&package),
        };
        if wanted {
            let options = config.builtin_options(&package);
            if options.mode == Mode::Disabled {
                continue;
            }
            planned.push(Planned {
                source,
                options,
                named: false,
                dir: false,
                selftest: None,
            });
        }
    }
    for entry in &config.plugins {
        let Some(path) = &entry.path else { continue };
        if entry.mode == Mode::Disabled {
            continue;
        }
        match PluginSource::from_file(&config.resolve(path)) {
            Ok(source) => planned.push(Planned {
                source,
                options: config.plugin_options(entry),
                named: true,
                dir: false,
                selftest: entry
                    .selftest
                    .as_ref()
                    .map(|t| (config.resolve(&t.events), config.resolve(&t.expect))),
            }),
            Err(e) => refused.push((e, true)),
        }
    }
    if let Some(dir) = &config.agent.plugin_dir {
        let dir = config.resolve(dir);
        if let Err(reason) = check_plugin_dir(&dir) {
            refused.push((
                LoadError::Read {
                    origin: dir.display().to_string(),
                    reason,
                },
                true,
            ));
            return (planned, refused);
        }
        for path in dir_components(&dir) {
            let entry = dir_entry(config, &path);
            if entry.is_some_and(|e| e.mode == Mode::Disabled) {
                continue;
            }
            match plan_component(config, &path) {
                Ok(p) => planned.push(p),
                Err(e) => refused.push((e, entry.is_some())),
            }
        }
    }
    (planned, refused)
}

/// Loads one planned plugin: signature (for a `plugin_dir` component without a pin, when
/// publishers are trusted), pin, compile (cached), describe, self-test.
pub fn load_planned(
    rt: &Runtime,
    config: &WardConfig,
    planned: &Planned,
    processes: &SharedProcessTable,
) -> Result<Plugin, LoadError> {
    let source = &planned.source;
    let mut options = planned.options.clone();
    if planned.dir && options.pin.is_none() && !config.agent.trusted_keys.is_empty() {
        let keys: Vec<_> = config
            .agent
            .trusted_keys
            .iter()
            .filter_map(|k| signature::parse_key(k).ok())
            .collect();
        signature::verify(Path::new(&source.origin), &source.bytes, &keys).map_err(|e| {
            LoadError::Signature {
                origin: source.origin.clone(),
                reason: e.to_string(),
            }
        })?;
        // Signed by a trusted publisher: that stands in for a pin.
        options.require_pin = false;
    }
    let plugin = load(rt, source, &options, processes)?;
    if let Some((events, expect)) = &planned.selftest {
        let trial = crate::cli::plugin_test::Trial::load(rt, source, &options)?;
        crate::cli::plugin_test::self_test(rt, trial, events, expect).map_err(|reason| {
            LoadError::SelfTest {
                origin: source.origin.clone(),
                reason,
            }
        })?;
    }
    Ok(plugin)
}

/// Loads what `config` asks for ([`plan`], then [`load_planned`] each). Returns, beside
/// the plugins, the fingerprint of each (by origin) for the next reload.
pub fn load_all(rt: &Runtime, config: &WardConfig, processes: &SharedProcessTable) -> Loaded {
    let (planned, refused) = plan(config);
    let mut ready = Vec::new();
    let mut errors = Vec::new();
    let mut named_refused = 0;
    for (e, named) in refused {
        named_refused += usize::from(named);
        errors.push(e);
    }
    for p in &planned {
        match load_planned(rt, config, p, processes) {
            Ok(plugin) => ready.push((plugin, (p.source.origin.clone(), p.fingerprint()))),
            Err(e) => {
                named_refused += usize::from(p.named);
                errors.push(e);
            }
        }
    }
    for e in &errors {
        tracing::error!(error = %e, "plugin refused");
    }
    // Two plugins with one name would make findings ambiguous: keep the first.
    let mut seen = std::collections::HashSet::new();
    let mut plugins = Vec::new();
    let mut fingerprints = Vec::new();
    for (plugin, fingerprint) in ready {
        if seen.insert(plugin.name().to_owned()) {
            plugins.push(plugin);
            fingerprints.push(fingerprint);
        } else {
            tracing::error!(plugin = %plugin.name(), origin = %plugin.origin(), "duplicate plugin name; ignoring this copy");
        }
    }
    Loaded {
        plugins,
        fingerprints,
        errors,
        named_refused,
    }
}
