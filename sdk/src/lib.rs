//! # ward-sdk
//!
//! Write ward plugins — detectors, collectors and remediators — as WebAssembly components
//! for `wasm32-wasip2`, against the `ward:plugin@0.2.1` contract in `wit/`.
//!
//! A plugin crate (a `cdylib`) implements one of the traits ([`Detector`], [`Collector`],
//! [`Remediator`]) and exports it with [`export_detector!`], [`export_collector!`] or
//! [`export_remediator!`]. The same code compiles natively, so plugin logic is unit-tested
//! with plain `cargo test`: build events with [`testing`], call the trait methods, assert.
//! Host services ([`log`], [`config`], [`process`]) work natively too, backed by
//! thread-local test doubles you fill through [`testing`].
//!
//! See the crate README for a walk-through from `cargo new` to `ward plugin test`.
#![deny(missing_docs)]

/// The README's code blocks compile as doctests, so the quick start cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Raw bindings generated from the contract's `plugin-base` world: the shared types and the
/// imports every plugin kind has. Prefer the re-exports at the crate root.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "ward:plugin/plugin-base@0.2.1",
        path: "../wit",
    });
}

mod actions;
mod event;
mod finding;
pub mod host;
mod instance;
pub mod testing;

mod collector;
mod detector;
mod remediator;

pub use bindings::ward::plugin::types::Evidence;
pub use bindings::ward::plugin::types::{
    Action, Artifact, AuditToken, AuthRequest, AuthenticationEvent, BlockEntry, BtmItemType,
    BtmLaunchItemEvent, CloseEvent, ConfigOption, CreateEvent, Destination, Detection, Event,
    EventData, EventParts, ExecEvent, ExitEvent, ExtattrEvent, File, FileStat, Finding, JamfLock,
    KillProcess, LoginEvent, MmapEvent, MountEvent, NewPath, Notification, OdEvent, OdOperation,
    OpenEvent, OpensshLoginEvent, OtherEvent, PlannedAction, PluginError, PluginInfo, PluginKind,
    Prefilter, Process, ProfileAddEvent, RemoteThreadCreateEvent, RenameEvent, RunScript,
    ScreensharingAttachEvent, SetmodeEvent, Severity, SignalEvent, SignerType, SuEvent, SudoEvent,
    TccModifyEvent, Trigger, UipcConnectEvent, UnlinkEvent, XpMalwareDetectedEvent,
};
pub use event::{EventExt, ProcessExt, keep_parts};
pub use finding::FindingExt;
pub use host::{config, config_bool, config_u64, log, process};

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary: for bounding what a plugin keeps (argv, URLs) without splitting a character.
///
/// ```
/// assert_eq!(ward_sdk::truncated("héllo", 2), "h");
/// assert_eq!(ward_sdk::truncated("héllo", 3), "hé");
/// assert_eq!(ward_sdk::truncated("hi", 64), "hi");
/// ```
pub fn truncated(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

pub use collector::{Collector, files as collector_files};
pub use detector::{Detector, EnrichError, Xattr, enrich};
pub use remediator::Remediator;

/// Everything a plugin usually needs: `use ward_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::Detector;
    pub use crate::Remediator;
    pub use crate::{Action, Artifact, BlockEntry, PlannedAction, Trigger};
    pub use crate::{Collector, collector_files as files};
    pub use crate::{
        Event, EventData, EventExt, EventParts, Finding, FindingExt, PluginError, PluginInfo,
        PluginKind, Prefilter, Process, ProcessExt, Severity, SignerType, Verdict, config,
        config_bool, config_u64, log, process,
    };
}

pub use bindings::ward::plugin::types::Verdict;

impl PluginInfo {
    /// Starts a description: name, version and kind; no subscriptions, no prefilter, no
    /// capabilities, no config keys.
    pub fn new(name: &str, version: &str, kind: PluginKind, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            kind,
            description: description.to_owned(),
            subscriptions: Vec::new(),
            prefilter: None,
            capabilities: Vec::new(),
            config: Vec::new(),
        }
    }

    /// Subscribes to these eslogger event kinds (`exec`, `create`, …; `*` for all).
    pub fn subscribe(mut self, kinds: &[&str]) -> Self {
        self.subscriptions
            .extend(kinds.iter().map(|k| (*k).to_owned()));
        self
    }

    /// Sets a host-side prefilter so the plugin is only called for matching events.
    pub fn prefilter(mut self, prefilter: Prefilter) -> Self {
        self.prefilter = Some(prefilter);
        self
    }

    /// Requests capabilities the admin must grant (e.g. `file-read`).
    pub fn capability(mut self, name: &str) -> Self {
        self.capabilities.push(name.to_owned());
        self
    }

    /// Documents one configuration key.
    pub fn config_option(mut self, name: &str, help: &str) -> Self {
        self.config.push(ConfigOption {
            name: name.to_owned(),
            help: help.to_owned(),
        });
        self
    }
}

impl Prefilter {
    /// A prefilter that matches everything; narrow it with the builder methods.
    pub fn any() -> Self {
        Self {
            path_prefixes: Vec::new(),
            path_contains: Vec::new(),
            signing_ids: Vec::new(),
        }
    }

    /// Only events whose primary path starts with one of `prefixes`.
    pub fn path_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.path_prefixes
            .extend(prefixes.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Only events whose primary path contains one of `parts`.
    pub fn path_contains(mut self, parts: &[&str]) -> Self {
        self.path_contains
            .extend(parts.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Only events whose acting process has one of these signing ids.
    pub fn signing_ids(mut self, ids: &[&str]) -> Self {
        self.signing_ids.extend(ids.iter().map(|p| (*p).to_owned()));
        self
    }
}

impl Verdict {
    /// Deny, with the reason the host records and reports.
    pub fn deny(reason: impl Into<String>) -> Self {
        Verdict::Deny(reason.into())
    }
}

impl PluginError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

#[doc(hidden)]
pub use collector::{rt as __collector_rt, world as __collector_world};
#[doc(hidden)]
pub use detector::{rt as __detector_rt, world as __detector_world};
#[doc(hidden)]
pub use remediator::{rt as __remediator_rt, world as __remediator_world};
