//! The response stage in the agent: where its state lives, what it must never touch
//! (the agent's own files), the prevent-list entries it added merged into the built-in
//! prevent list, and plugin modes that follow the device's smart groups.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::agent::Startup;
use crate::config::WardConfig;
use crate::respond::store::Store;
use crate::respond::{Response, ResponseOptions};
use crate::sandbox::plugin::Mode;

/// The agent's own files: its executable, the state directory and the config file.
pub fn own_files(state_dir: &Path, config_path: Option<&Path>) -> Vec<PathBuf> {
    let mut own = vec![state_dir.to_path_buf()];
    if let Ok(exe) = std::env::current_exe() {
        own.push(std::fs::canonicalize(&exe).unwrap_or(exe));
    }
    if let Some(c) = config_path {
        own.push(std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf()));
    }
    if let Ok(real) = std::fs::canonicalize(state_dir) {
        own.push(real);
    }
    own
}

/// The prevent-list entries ward added, from the store in `state_dir` (none when there
/// is no store yet).
pub fn stored_blocks(state_dir: &Path) -> Vec<(String, String)> {
    if !state_dir.join("ward.db").exists() {
        return Vec::new();
    }
    match Store::open(state_dir).and_then(|s| s.blocks()) {
        Ok(blocks) => blocks,
        Err(e) => {
            tracing::error!(error = %e, "reading the prevent-list entries ward added");
            Vec::new()
        }
    }
}

/// Starts the response stage over `startup`'s collectors and remediators.
pub fn start(
    config: &WardConfig,
    startup: &mut Startup,
    state_dir: PathBuf,
    execute: bool,
    config_path: Option<&Path>,
    on_blocklist: Option<crate::respond::OnBlocklist>,
    on_groups: Option<crate::respond::OnGroups>,
) -> anyhow::Result<Response> {
    let own = own_files(&state_dir, config_path);
    let plugins = std::mem::take(&mut startup.responders);
    let response = crate::respond::start(ResponseOptions {
        state_dir,
        execute,
        config: config.clone(),
        rt: std::sync::Arc::clone(&startup.rt),
        processes: std::sync::Arc::clone(&startup.processes),
        plugins,
        own,
        on_blocklist,
        on_groups,
    })?;
    Ok(response)
}

/// The modes plugins with `group_modes` should run in while the device is in `groups`:
/// (plugin name, mode). Built-ins are named by their package; `[[plugins]]` entries by
/// `running` (origin → name).
pub fn group_modes(
    config: &WardConfig,
    groups: &BTreeSet<String>,
    running: &std::collections::BTreeMap<String, crate::agent::Running>,
) -> Vec<(String, Mode)> {
    let mut out = Vec::new();
    for (package, b) in &config.builtin {
        if !b.group_modes.is_empty() {
            out.push((
                package.clone(),
                crate::config::mode_in(b.mode, &b.group_modes, groups),
            ));
        }
    }
    for p in &config.plugins {
        if p.group_modes.is_empty() {
            continue;
        }
        let origin = match (&p.path, &p.name) {
            (Some(path), _) => config.resolve(path).display().to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => continue,
        };
        let name = running
            .iter()
            .find(|(o, r)| **o == origin || r.name == origin)
            .map(|(_, r)| r.name.clone());
        if let Some(name) = name {
            out.push((name, crate::config::mode_in(p.mode, &p.group_modes, groups)));
        }
    }
    out
}
