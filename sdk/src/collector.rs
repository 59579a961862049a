//! The collector world: gather evidence for a finding with scoped, size-capped file access.

use crate::{Artifact, PluginError, PluginInfo, Trigger};

/// Bindings generated for the contract's `collector` world.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod world {
    wit_bindgen::generate!({
        world: "ward:plugin/collector@0.1.0",
        path: "../wit",
        with: {
            "ward:plugin/types@0.1.0": crate::bindings::ward::plugin::types,
            "ward:plugin/host@0.1.0": crate::bindings::ward::plugin::host,
            "ward:plugin/process-table@0.1.0": crate::bindings::ward::plugin::process_table,
        },
        pub_export_macro: true,
        export_macro_name: "__export_collector_world",
        default_bindings_module: "ward_sdk::__collector_world",
    });
}

pub use world::ward::plugin::files::{FileError, FileMetadata};

/// File access granted to collectors (`file-read` capability, scoped by the admin).
pub mod files {
    pub use super::{FileError, FileMetadata};

    /// Metadata of `path`; `Ok(None)` if it does not exist.
    pub fn metadata(path: &str) -> Result<Option<FileMetadata>, FileError> {
        super::world::ward::plugin::files::metadata(path)
    }
    /// SHA-256 of `path` as lowercase hex; `Ok(None)` if it does not exist.
    pub fn sha256(path: &str) -> Result<Option<String>, FileError> {
        super::world::ward::plugin::files::sha256(path)
    }
    /// Up to `max_bytes` of `path` from `offset`; `Ok(None)` if it does not exist.
    pub fn read(path: &str, offset: u64, max_bytes: u32) -> Result<Option<Vec<u8>>, FileError> {
        super::world::ward::plugin::files::read(path, offset, max_bytes)
    }
}

/// A collector: implement this, then export it with [`crate::export_collector!`].
pub trait Collector: Default + 'static {
    /// Name, version and requested capabilities. Called once per instance.
    fn describe() -> PluginInfo;
    /// Gathers evidence about `trigger`.
    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError>;
}

#[doc(hidden)]
pub mod rt {
    use super::*;
    use crate::instance::with_instance;

    /// Builds the instance's value first: `describe()` runs under the host's start-up
    /// budget, so expensive set-up (compiling rules) does not count against a call.
    pub fn describe<T: Collector>() -> PluginInfo {
        with_instance::<T, _>(|_| ());
        T::describe()
    }

    pub fn collect<T: Collector>(trigger: Trigger) -> Result<Vec<Artifact>, PluginError> {
        with_instance::<T, _>(|value| value.collect(&trigger))
    }
}

/// Exports a [`Collector`] implementation as the component's `collector` world.
#[macro_export]
macro_rules! export_collector {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __WardCollectorExport;
        impl $crate::__collector_world::Guest for __WardCollectorExport {
            fn describe() -> $crate::PluginInfo {
                $crate::__collector_rt::describe::<$ty>()
            }
            fn collect(
                trigger: $crate::Trigger,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Artifact>, $crate::PluginError> {
                $crate::__collector_rt::collect::<$ty>(trigger)
            }
        }
        $crate::__collector_world::__export_collector_world!(__WardCollectorExport with_types_in $crate::__collector_world);
    };
}
