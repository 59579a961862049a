//! The load path: read with a size cap → sha-256 → pin check → header check → compile (or
//! take from the cache) → link against the world's imports → typed pre-instance (rejects the
//! wrong world) → `describe()` → capability check. Every rejection is a [`LoadError`] whose
//! message is one line naming the file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::detect::router::Route;
use crate::registry::cache::{self, CacheOutcome};
use crate::sandbox::bindings::collector::CollectorPre;
use crate::sandbox::bindings::detector::DetectorPre;
use crate::sandbox::bindings::remediator::RemediatorPre;
use crate::sandbox::bindings::{v0_1, v0_2};
use crate::sandbox::grants::FileScope;
pub use crate::sandbox::grants::KNOWN_CAPABILITIES;
use crate::sandbox::grants::{CAP_FILE_READ, EnrichScope};
use crate::sandbox::plugin::{Contract, Instance, Kind, Mode, Plugin, PluginImage};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::{PluginContext, SharedProcessTable};

/// Largest component file accepted.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Why a plugin was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("plugin {origin}: cannot read: {reason}")]
    Read {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Over [`MAX_PLUGIN_BYTES`].
    #[error("plugin {origin}: file is over the {max}-byte cap")]
    TooLarge {
        /// File.
        origin: String,
        /// Cap.
        max: u64,
    },
    /// The admin's pin does not match.
    #[error("plugin {origin}: sha-256 mismatch: pinned {pinned}, file is {actual}")]
    PinMismatch {
        /// File.
        origin: String,
        /// Pinned digest.
        pinned: String,
        /// Actual digest.
        actual: String,
    },
    /// Policy requires a pin and there is none.
    #[error("plugin {origin}: no sha-256 pin and the policy requires one (sha-256 is {actual})")]
    MissingPin {
        /// File.
        origin: String,
        /// Actual digest.
        actual: String,
    },
    /// Not WebAssembly at all.
    #[error("plugin {origin}: not a WebAssembly file (bad magic number: corrupt or wrong file)")]
    NotWasm {
        /// File.
        origin: String,
    },
    /// A core module, not a component.
    #[error(
        "plugin {origin}: is a core WebAssembly module, not a component; build it for wasm32-wasip2 with ward-sdk"
    )]
    CoreModule {
        /// File.
        origin: String,
    },
    /// Failed validation or compilation.
    #[error("plugin {origin}: invalid component: {reason}")]
    Invalid {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Exports none of the ward worlds, or the wrong one.
    #[error("plugin {origin}: wrong world: {reason}")]
    WrongWorld {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Imports something its world does not offer.
    #[error("plugin {origin}: imports what the {kind} world does not offer: {reason}")]
    Imports {
        /// File.
        origin: String,
        /// World.
        kind: Kind,
        /// Why.
        reason: String,
    },
    /// `describe()` trapped or returned nonsense.
    #[error("plugin {origin}: describe() failed: {reason}")]
    Describe {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A `plugin_dir` component without a pin has no valid signature by a trusted key.
    #[error("plugin {origin}: {reason}")]
    Signature {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A new version failed the self-test the admin configured for it.
    #[error("plugin {origin}: self-test failed: {reason}")]
    SelfTest {
        /// File.
        origin: String,
        /// What differed.
        reason: String,
    },
    /// A `file_scope` root the admin named cannot be trusted.
    #[error("plugin {origin}: {reason}")]
    Scope {
        /// File.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The admin set a config key the plugin does not declare in `describe()`.
    #[error("plugin {origin}: `{key}` is not a config key {plugin} reads (it reads: {known})")]
    UnknownConfigKey {
        /// File.
        origin: String,
        /// The plugin's name.
        plugin: String,
        /// The key.
        key: String,
        /// The keys it declares.
        known: String,
    },
    /// Requests a capability the admin did not grant.
    #[error("plugin {origin}: requests capability `{capability}` which the admin has not granted")]
    CapabilityNotGranted {
        /// File.
        origin: String,
        /// Capability.
        capability: String,
    },
}

impl LoadError {
    /// The file (or `builtin:<name>`) refused.
    pub fn origin(&self) -> &str {
        match self {
            Self::Read { origin, .. }
            | Self::TooLarge { origin, .. }
            | Self::PinMismatch { origin, .. }
            | Self::MissingPin { origin, .. }
            | Self::NotWasm { origin }
            | Self::CoreModule { origin }
            | Self::Invalid { origin, .. }
            | Self::WrongWorld { origin, .. }
            | Self::Imports { origin, .. }
            | Self::Describe { origin, .. }
            | Self::Signature { origin, .. }
            | Self::SelfTest { origin, .. }
            | Self::Scope { origin, .. }
            | Self::UnknownConfigKey { origin, .. }
            | Self::CapabilityNotGranted { origin, .. } => origin,
        }
    }
}

/// The component bytes and where they came from.
pub struct PluginSource {
    /// `path` or `builtin:<name>`.
    pub origin: String,
    /// Component bytes.
    pub bytes: Arc<[u8]>,
}

impl PluginSource {
    /// Reads `path` with the size cap. Opened non-blocking and read only if it is a
    /// regular file: a FIFO in a plugin's place is an error, not a hang.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let origin = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| LoadError::Read {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(LoadError::Read {
                origin,
                reason: "not a regular file".into(),
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_PLUGIN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| LoadError::Read {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        if bytes.len() as u64 > MAX_PLUGIN_BYTES {
            return Err(LoadError::TooLarge {
                origin,
                max: MAX_PLUGIN_BYTES,
            });
        }
        Ok(Self {
            origin,
            bytes: bytes.into(),
        })
    }
}

/// Admin policy for one plugin.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Expected sha-256 (lowercase hex).
    pub pin: Option<String>,
    /// Refuse unpinned plugins.
    pub require_pin: bool,
    /// The world the admin expects, if stated.
    pub expected_kind: Option<Kind>,
    /// Granted capabilities.
    pub grants: Vec<String>,
    /// Directories a `file-read` grant covers.
    pub file_scope: Vec<PathBuf>,
    /// Plugin config values.
    pub config: BTreeMap<String, String>,
    /// Mode.
    pub mode: Mode,
}

/// Sha-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads the component's exports to tell which world it implements.
fn world_of(component: &Component, rt: &Runtime) -> Option<Kind> {
    let ty = component.component_type();
    let mut names: Vec<String> = Vec::new();
    for (name, item) in ty.exports(&rt.engine) {
        if matches!(item.ty, ComponentItem::ComponentFunc(_)) {
            names.push(name.to_owned());
        }
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("on-events") || has("authorize") {
        Some(Kind::Detector)
    } else if has("collect") {
        Some(Kind::Collector)
    } else if has("plan") {
        Some(Kind::Remediator)
    } else {
        None
    }
}

/// Which contract version the component was built against, from the `ward:plugin/…`
/// interfaces it imports: all at one version, or none (a component that imports nothing of
/// the contract is taken as current).
fn contract_of(component: &Component, rt: &Runtime) -> Result<Contract, String> {
    let ty = component.component_type();
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in ty.imports(&rt.engine) {
        let Some(rest) = name.strip_prefix("ward:plugin/") else {
            continue;
        };
        let version = rest.split_once('@').map_or("", |(_, v)| v);
        seen.insert(version.to_owned());
    }
    let mut contracts = seen.iter().map(|v| match v.as_str() {
        "0.1.0" => Ok(Contract::V0_1),
        "0.2.0" => Ok(Contract::V0_2),
        "0.2.1" => Ok(Contract::V0_2_1),
        other => Err(format!(
            "imports ward:plugin@{other}; this agent speaks 0.2.1, 0.2.0 and 0.1.0"
        )),
    });
    let first = contracts.next().transpose()?.unwrap_or_default();
    for other in contracts {
        if other? != first {
            return Err(format!(
                "imports two versions of ward:plugin ({})",
                seen.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(first)
}

fn header_check(origin: &str, bytes: &[u8]) -> Result<(), LoadError> {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => Err(LoadError::CoreModule {
            origin: origin.to_owned(),
        }),
        Some([0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00]) => Ok(()),
        Some([0x00, 0x61, 0x73, 0x6d, ..]) => Err(LoadError::Invalid {
            origin: origin.to_owned(),
            reason: "unsupported WebAssembly version or layer".into(),
        }),
        _ => Err(LoadError::NotWasm {
            origin: origin.to_owned(),
        }),
    }
}

/// Loads one plugin.
pub fn load(
    rt: &Runtime,
    source: &PluginSource,
    options: &LoadOptions,
    processes: &SharedProcessTable,
) -> Result<Plugin, LoadError> {
    let origin = source.origin.clone();
    let digest = sha256_hex(&source.bytes);
    match &options.pin {
        Some(pin) if !pin.eq_ignore_ascii_case(&digest) => {
            return Err(LoadError::PinMismatch {
                origin,
                pinned: pin.to_lowercase(),
                actual: digest,
            });
        }
        None if options.require_pin => {
            return Err(LoadError::MissingPin {
                origin,
                actual: digest,
            });
        }
        _ => {}
    }
    header_check(&origin, &source.bytes)?;

    let builtin = crate::registry::builtin::precompiled(&digest).and_then(|compiled| {
        let component = cache::builtin(&rt.engine, compiled);
        crate::registry::builtin::release(compiled);
        component
            .inspect_err(|e| {
                tracing::info!(plugin = %origin, error = %format!("{e:#}"), "the precompiled built-in does not fit this machine; compiling it");
            })
            .ok()
    });
    let compiled = match (builtin, &rt.cache) {
        (Some(component), _) => Ok((component, CacheOutcome::Builtin)),
        (None, Some(cache)) => cache.load_or_compile(&rt.engine, &digest, &source.bytes),
        (None, None) => {
            cache::compile(&rt.engine, &source.bytes).map(|c| (c, CacheOutcome::Uncached))
        }
    };
    let (component, outcome) = compiled.map_err(|e| LoadError::Invalid {
        origin: origin.clone(),
        reason: first_line(&format!("{e:#}")),
    })?;
    tracing::debug!(plugin = %origin, digest = %digest.get(..12).unwrap_or(""), cache = ?outcome, "component compiled");

    let Some(kind) = world_of(&component, rt) else {
        return Err(LoadError::WrongWorld {
            origin,
            reason: "exports none of the ward worlds (detector: on-events/authorize, collector: collect, remediator: plan)".into(),
        });
    };
    if let Some(expected) = options.expected_kind
        && expected != kind
    {
        return Err(LoadError::WrongWorld {
            origin,
            reason: format!("is a {kind}, expected a {expected}"),
        });
    }
    let contract = contract_of(&component, rt).map_err(|reason| LoadError::Imports {
        origin: origin.clone(),
        kind,
        reason,
    })?;
    let linker = match kind {
        Kind::Detector => &rt.detector_linker,
        Kind::Collector => &rt.collector_linker,
        Kind::Remediator => &rt.remediator_linker,
    };
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Imports {
            origin: origin.clone(),
            kind,
            reason: first_line(&format!("{e:#}")),
        })?;
    let wrong_shape = |e: wasmtime::Error| LoadError::WrongWorld {
        origin: origin.clone(),
        reason: format!(
            "exports do not match the {kind} world: {}",
            first_line(&format!("{e:#}"))
        ),
    };
    // The typed pre-instance of the world names an export of the wrong shape precisely;
    // calls then go through `crate::sandbox::lift`'s bounded types on the untyped pre-instance.
    let checked = match (kind, contract) {
        (Kind::Detector, Contract::V0_2_1) => DetectorPre::new(instance_pre.clone()).map(|_| ()),
        (Kind::Detector, Contract::V0_2) => {
            v0_2::detector::DetectorPre::new(instance_pre.clone()).map(|_| ())
        }
        (Kind::Collector, Contract::V0_2 | Contract::V0_2_1) => {
            CollectorPre::new(instance_pre.clone()).map(|_| ())
        }
        (Kind::Remediator, Contract::V0_2 | Contract::V0_2_1) => {
            RemediatorPre::new(instance_pre.clone()).map(|_| ())
        }
        (Kind::Detector, Contract::V0_1) => {
            v0_1::detector::DetectorPre::new(instance_pre.clone()).map(|_| ())
        }
        (Kind::Collector, Contract::V0_1) => {
            v0_1::collector::CollectorPre::new(instance_pre.clone()).map(|_| ())
        }
        (Kind::Remediator, Contract::V0_1) => {
            v0_1::remediator::RemediatorPre::new(instance_pre.clone()).map(|_| ())
        }
    };
    checked.map_err(wrong_shape)?;

    FileScope::check_roots(&options.file_scope).map_err(|reason| LoadError::Scope {
        origin: origin.clone(),
        reason,
    })?;
    let file_scope = options
        .grants
        .iter()
        .any(|g| g == CAP_FILE_READ)
        .then(|| Arc::new(FileScope::new(&options.file_scope)));
    let ctx = PluginContext {
        name: Arc::from(origin.as_str()),
        config: Arc::new(options.config.clone()),
        processes: Arc::clone(processes),
        files: file_scope,
        enrich: EnrichScope::from_grants(&options.grants, &options.file_scope, &rt.hash_cache)
            .map(Arc::new),
    };
    let (mut instance, info) = Instance::start(rt, &instance_pre, kind, contract, ctx.clone())
        .map_err(|(_, reason)| LoadError::Describe {
            origin: origin.clone(),
            reason,
        })?;
    if Kind::from_wit(info.kind) != kind {
        return Err(LoadError::Describe {
            origin,
            reason: format!(
                "says it is a {} but implements the {kind} world",
                Kind::from_wit(info.kind)
            ),
        });
    }
    if info.name.is_empty() || info.name.len() > 128 || info.subscriptions.len() > 256 {
        return Err(LoadError::Describe {
            origin,
            reason: "name empty or over 128 bytes, or over 256 subscriptions".into(),
        });
    }
    let route = Route::new(&info).map_err(|reason| LoadError::Describe {
        origin: origin.clone(),
        reason,
    })?;
    for capability in &info.capabilities {
        if !options.grants.iter().any(|g| g == capability) {
            return Err(LoadError::CapabilityNotGranted {
                origin,
                capability: capability.clone(),
            });
        }
    }
    // A key the plugin does not read is a typo or a misunderstanding: either way the
    // admin's intent is not what runs.
    if let Some(key) = options
        .config
        .keys()
        .find(|k| !info.config.iter().any(|c| &c.name == *k))
    {
        let known: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
        return Err(LoadError::UnknownConfigKey {
            origin,
            plugin: info.name.clone(),
            key: key.clone(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    // From here on logs carry the plugin's own name, and enrichment answers only for the
    // capabilities the plugin declared (granted ∩ requested; `describe()` itself, where a
    // plugin builds its state, ran with the admin's grants).
    let declared: Vec<String> = options
        .grants
        .iter()
        .filter(|g| info.capabilities.contains(g))
        .cloned()
        .collect();
    let ctx = PluginContext {
        name: Arc::from(info.name.as_str()),
        enrich: EnrichScope::from_grants(&declared, &options.file_scope, &rt.hash_cache)
            .map(Arc::new),
        ..ctx
    };
    instance.set_context(ctx.clone());
    tracing::info!(plugin = %info.name, version = %info.version, kind = %kind, contract = contract.as_str(), digest = %digest.get(..12).unwrap_or(""), origin = %origin, "plugin loaded");
    let image = PluginImage::new(
        info,
        digest,
        origin,
        kind,
        contract,
        route,
        ctx,
        instance_pre,
    );
    Ok(Plugin::new(Arc::new(image), options.mode, Some(instance)))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}
