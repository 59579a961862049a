//! The collector world: gather evidence for a finding with scoped, size-capped file access.

use crate::{Artifact, PluginError, PluginInfo, Trigger};

/// Bindings generated for the contract's `collector` world.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod world {
    wit_bindgen::generate!({
        world: "ward:plugin/collector@0.2.1",
        path: "../wit",
        with: {
            "ward:plugin/types@0.2.1": crate::bindings::ward::plugin::types,
            "ward:plugin/host@0.2.1": crate::bindings::ward::plugin::host,
            "ward:plugin/process-table@0.2.1": crate::bindings::ward::plugin::process_table,
        },
        pub_export_macro: true,
        export_macro_name: "__export_collector_world",
        default_bindings_module: "ward_sdk::__collector_world",
    });
}

pub use world::ward::plugin::files::{DirEntry, FileError, FileMetadata};

/// File access granted to collectors (`file-read` capability, scoped by the admin).
///
/// In a `wasm32` build these call the host, which answers only inside the admin's
/// `file_scope`. In a native build (unit tests) they read the real file system with the
/// same shapes and caps, so a collector is tested on a temp dir laid out like a Mac.
pub mod files {
    pub use super::{DirEntry, FileError, FileMetadata};

    /// Metadata of `path` (a final symlink is not followed); `Ok(None)` if it does not exist.
    pub fn metadata(path: &str) -> Result<Option<FileMetadata>, FileError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::files::metadata(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            native::metadata(path)
        }
    }
    /// SHA-256 of `path` as lowercase hex; `Ok(None)` if it does not exist.
    pub fn sha256(path: &str) -> Result<Option<String>, FileError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::files::sha256(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            native::sha256(path)
        }
    }
    /// Up to `max_bytes` of `path` from `offset`; `Ok(None)` if it does not exist.
    pub fn read(path: &str, offset: u64, max_bytes: u32) -> Result<Option<Vec<u8>>, FileError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::files::read(path, offset, max_bytes)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            native::read(path, offset, max_bytes)
        }
    }
    /// The entries of the directory `path`, sorted by name; `Ok(None)` if it does not exist.
    pub fn list(path: &str) -> Result<Option<Vec<DirEntry>>, FileError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::world::ward::plugin::files::list_dir(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            native::list(path)
        }
    }

    /// The host's answers, played by the real file system in native tests.
    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        use super::{DirEntry, FileError, FileMetadata};
        use std::io::{Read as _, Seek as _};
        use std::os::unix::fs::MetadataExt as _;

        fn io(path: &str, e: std::io::Error) -> FileError {
            FileError::Io(format!("{path}: {e}"))
        }

        fn absent(e: &std::io::Error) -> bool {
            e.kind() == std::io::ErrorKind::NotFound
        }

        fn of(meta: &std::fs::Metadata) -> FileMetadata {
            FileMetadata {
                size: meta.len(),
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                birthtime: meta
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
                is_dir: meta.is_dir(),
                is_symlink: meta.file_type().is_symlink(),
            }
        }

        pub fn metadata(path: &str) -> Result<Option<FileMetadata>, FileError> {
            match std::fs::symlink_metadata(path) {
                Ok(meta) => Ok(Some(of(&meta))),
                Err(e) if absent(&e) => Ok(None),
                Err(e) => Err(io(path, e)),
            }
        }

        pub fn sha256(path: &str) -> Result<Option<String>, FileError> {
            use sha2::Digest as _;
            match std::fs::read(path) {
                Ok(bytes) => Ok(Some(
                    sha2::Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                )),
                Err(e) if absent(&e) => Ok(None),
                Err(e) => Err(io(path, e)),
            }
        }

        pub fn read(path: &str, offset: u64, max_bytes: u32) -> Result<Option<Vec<u8>>, FileError> {
            let mut file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if absent(&e) => return Ok(None),
                Err(e) => return Err(io(path, e)),
            };
            file.seek(std::io::SeekFrom::Start(offset))
                .map_err(|e| io(path, e))?;
            let mut out = Vec::new();
            file.take(u64::from(max_bytes.min(1 << 20)))
                .read_to_end(&mut out)
                .map_err(|e| io(path, e))?;
            Ok(Some(out))
        }

        pub fn list(path: &str) -> Result<Option<Vec<DirEntry>>, FileError> {
            let entries = match std::fs::read_dir(path) {
                Ok(e) => e,
                Err(e) if absent(&e) => return Ok(None),
                Err(e) => return Err(io(path, e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| io(path, e))?;
                let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| io(path, e))?;
                out.push(DirEntry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    metadata: of(&meta),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Some(out))
        }
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
