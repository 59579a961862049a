//! The first-party plugins compiled into the agent: what a fresh build runs with no config.
//! Detectors are the default content; collectors and remediators load only when a
//! playbook names them.

use std::sync::Arc;

use crate::registry::load::PluginSource;
use crate::sandbox::plugin::Kind;

/// A first-party plugin compiled into the agent.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its package name.
    pub name: &'static str,
    /// Its world (`detector`, `collector`, `remediator`).
    pub kind: &'static str,
    /// The component.
    pub component: &'static [u8],
    /// The component precompiled for this target with `ward_engine::precompile_config`
    /// when the agent was built; empty if the build did not (`WARD_PRECOMPILE=0`).
    pub precompiled: &'static [u8],
    /// The component's sha-256, hex.
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The built-in plugins as load sources named `builtin:<package>`, with their world.
pub fn builtin_sources_with_kinds() -> Vec<(PluginSource, Kind)> {
    BUILTIN_PLUGINS
        .iter()
        .map(|b| {
            let bytes = Arc::from(b.component);
            // The copy is what is read from now on.
            release(b.component);
            (
                PluginSource {
                    origin: format!("builtin:{}", b.name),
                    bytes,
                },
                crate::config::parse_kind(b.kind).unwrap_or(Kind::Detector),
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
    BUILTIN_PLUGINS.iter().map(|b| b.name).collect()
}

/// The built-in plugin of world `kind` named `name`, if there is one.
pub fn builtin_of(name: &str, kind: Kind) -> bool {
    BUILTIN_PLUGINS
        .iter()
        .any(|b| b.name == name && crate::config::parse_kind(b.kind) == Some(kind))
}

/// The artifact the build precompiled for the built-in component whose sha-256 is `digest`
/// (whatever file it was loaded from), if there is one.
pub fn precompiled(digest: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|b| b.sha256.eq_ignore_ascii_case(digest))
        .map(|b| b.precompiled)
        .filter(|compiled| !compiled.is_empty())
}

/// Lets the kernel drop the pages of `bytes`, a part of this executable that was read once
/// and is not needed again (a precompiled artifact, copied into wasmtime's code memory):
/// they are clean pages of the file, read back from it if ever touched, and otherwise
/// count in the agent's resident memory for nothing. Only whole pages inside `bytes` are
/// released. A hint: failure changes nothing.
pub fn release(bytes: &'static [u8]) {
    let page = rustix::param::page_size();
    let start = bytes.as_ptr() as usize;
    let first = start.next_multiple_of(page);
    let end = (start + bytes.len()) / page * page;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    let advice = rustix::mm::Advice::LinuxDontNeed;
    #[cfg(not(target_os = "linux"))]
    let advice = rustix::mm::Advice::DontNeed;
    // SAFETY: the range is whole pages inside `bytes`, a read-only part of the executable's
    // image (`include_bytes!` data), never written. Dropping such pages of a private file
    // mapping only makes the next read fetch them from the file again, with the same
    // contents; no reference into them is invalidated.
    #[allow(unsafe_code)]
    let _ = unsafe { rustix::mm::madvise(first as *mut std::ffi::c_void, end - first, advice) };
}
