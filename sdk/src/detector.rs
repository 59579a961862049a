//! The detector world: read events, raise findings, answer AUTH events.

use crate::{Detection, Event, EventParts, Finding, PluginError, PluginInfo, Verdict};

/// Bindings generated for the contract's `detector` world.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod world {
    wit_bindgen::generate!({
        world: "ward:plugin/detector@0.2.1",
        path: "../wit",
        with: {
            "ward:plugin/types@0.2.1": crate::bindings::ward::plugin::types,
            "ward:plugin/host@0.2.1": crate::bindings::ward::plugin::host,
            "ward:plugin/process-table@0.2.1": crate::bindings::ward::plugin::process_table,
        },
        pub_export_macro: true,
        export_macro_name: "__export_detector_world",
        default_bindings_module: "ward_sdk::__detector_world",
    });
}

pub use world::ward::plugin::enrich::{EnrichError, Xattr};

/// Facts about files named in events, read on the agent's machine. Each function needs its
/// capability in [`PluginInfo::capability`] and granted by the admin: `file-hash`,
/// `file-xattr`, `plist-read`. A path that does not exist answers `Ok(None)`.
///
/// In native unit tests the answers come from [`crate::testing::set_file`].
pub mod enrich {
    pub use super::{EnrichError, Xattr};

    /// The quarantine attribute Gatekeeper checks.
    pub const QUARANTINE: &str = "com.apple.quarantine";

    /// SHA-256 of the file as lowercase hex (cached by the host per path, inode, size and
    /// modification time).
    pub fn sha256(path: &str) -> Result<Option<String>, EnrichError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::enrich::sha256(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::enrich_answer(path, |f| f.sha256.clone())
        }
    }

    /// The file's extended attributes.
    pub fn xattrs(path: &str) -> Result<Option<Vec<Xattr>>, EnrichError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::enrich::xattrs(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::enrich_answer(path, |f| {
                Some(
                    f.xattrs
                        .iter()
                        .map(|(name, value)| Xattr {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                )
            })
        }
    }

    /// True if the file carries `com.apple.quarantine` (checking needs `file-xattr`).
    pub fn quarantined(path: &str) -> Result<Option<bool>, EnrichError> {
        Ok(xattrs(path)?.map(|attrs| {
            attrs
                .iter()
                .any(|a| a.name == QUARANTINE || a.name.ends_with(".com.apple.quarantine"))
        }))
    }

    /// The property list at `path` as JSON text (objects for dictionaries).
    pub fn plist(path: &str) -> Result<Option<String>, EnrichError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::enrich::plist(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::enrich_answer(path, |f| f.plist.clone())
        }
    }
}

/// A detector: implement this, then export it with [`crate::export_detector!`].
///
/// One value of the type lives per plugin instance; the host replaces the instance (and so
/// the value) after a fault, so keep nothing in it you cannot lose.
pub trait Detector: Default + 'static {
    /// Name, version, subscriptions and prefilter. Called once per instance.
    fn describe() -> PluginInfo;

    /// The parts of each event this detector reads beyond what always arrives (see
    /// [`EventParts`]); the agent leaves the others out, which makes each delivery cheaper.
    /// Called once per instance, after [`Self::describe`]. The default is every part: name
    /// fewer only when no code path reads them, since a left-out part reads as absent
    /// (`None`, an empty list), never as an error.
    fn parts() -> EventParts {
        EventParts::all()
    }

    /// Looks at one event; returns the findings it raises (usually none).
    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError>;

    /// Answers an AUTH event. The default has no opinion.
    fn authorize(&mut self, event: &Event) -> Verdict {
        let _ = event;
        Verdict::NoOpinion
    }
}

#[doc(hidden)]
pub mod rt {
    use super::*;
    use crate::instance::with_instance;

    /// Builds the instance's value first: `describe()` runs under the host's start-up
    /// budget, so expensive set-up (compiling rules) does not count against a call.
    pub fn describe<T: Detector>() -> PluginInfo {
        with_instance::<T, _>(|_| ());
        T::describe()
    }

    pub fn on_events<T: Detector>(events: Vec<Event>) -> Result<Vec<Detection>, PluginError> {
        with_instance::<T, _>(|detector| {
            let mut out = Vec::new();
            for (index, event) in events.iter().enumerate() {
                for finding in detector.on_event(event)? {
                    out.push(Detection {
                        event_index: index as u32,
                        finding,
                    });
                }
            }
            Ok(out)
        })
    }

    pub fn authorize<T: Detector>(event: Event) -> Verdict {
        with_instance::<T, _>(|detector| detector.authorize(&event))
    }
}

/// Exports a [`Detector`] implementation as the component's `detector` world.
///
/// ```ignore
/// #[derive(Default)]
/// struct MyDetector;
/// impl ward_sdk::Detector for MyDetector { /* … */ }
/// ward_sdk::export_detector!(MyDetector);
/// ```
#[macro_export]
macro_rules! export_detector {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WardDetectorExport;
        impl $crate::__detector_world::Guest for __WardDetectorExport {
            fn describe() -> $crate::PluginInfo {
                $crate::__detector_rt::describe::<$ty>()
            }
            fn parts() -> $crate::EventParts {
                <$ty as $crate::Detector>::parts()
            }
            fn on_events(
                events: ::std::vec::Vec<$crate::Event>,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Detection>, $crate::PluginError> {
                $crate::__detector_rt::on_events::<$ty>(events)
            }
            fn authorize(event: $crate::Event) -> $crate::Verdict {
                $crate::__detector_rt::authorize::<$ty>(event)
            }
        }
        $crate::__detector_world::__export_detector_world!(__WardDetectorExport with_types_in $crate::__detector_world);
    };
}
