//! `ward:plugin/files`: scoped, size-capped file access for collectors.
//!
//! A path is allowed only if, after resolving symlinks, it lies under one of the
//! directories the admin granted. A path that does not exist answers `none`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bindings::collector::ward::plugin::files::{FileError, FileMetadata, Host};
use crate::host_api::enrich::open_regular;
use crate::state::PluginState;

/// Default cap on one `read`.
pub const DEFAULT_MAX_READ_BYTES: u32 = 1 << 20;
/// Default cap on the size of a file `sha256` will hash.
pub const DEFAULT_MAX_HASH_BYTES: u64 = 256 << 20;

/// The directories a collector may read, and its size caps.
#[derive(Debug, Clone)]
pub struct FileScope {
    roots: Vec<PathBuf>,
    /// Cap on one read.
    pub max_read_bytes: u32,
    /// Cap on hashed file size.
    pub max_hash_bytes: u64,
}

impl FileScope {
    /// A scope over `roots` (canonicalised where they exist).
    pub fn new(roots: &[PathBuf]) -> Self {
        let roots = roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect();
        Self {
            roots,
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
            max_hash_bytes: DEFAULT_MAX_HASH_BYTES,
        }
    }

    /// Resolves `path` for access: `Ok(Some(real))` inside the scope, `Ok(None)` when it
    /// does not exist (and would be inside), `Err(denied)` otherwise.
    pub fn resolve(&self, path: &str) -> Result<Option<PathBuf>, FileError> {
        let p = Path::new(path);
        if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(FileError::Denied(format!(
                "{path}: only absolute paths without `..` are allowed"
            )));
        }
        match p.canonicalize() {
            Ok(real) if self.contains(&real) => Ok(Some(real)),
            Ok(_) => Err(FileError::Denied(format!(
                "{path}: outside the granted scope"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.contains(p) {
                    Ok(None)
                } else {
                    Err(FileError::Denied(format!(
                        "{path}: outside the granted scope"
                    )))
                }
            }
            Err(e) => Err(FileError::Io(format!("{path}: {e}"))),
        }
    }

    fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }
}

fn scope(state: &PluginState) -> Result<&FileScope, FileError> {
    state.ctx.files.as_deref().ok_or_else(|| {
        FileError::Denied("the admin has not granted this plugin `file-read`".into())
    })
}

fn io_err(path: &Path, e: std::io::Error) -> FileError {
    FileError::Io(format!("{}: {e}", path.display()))
}

impl Host for PluginState {
    fn metadata(&mut self, path: String) -> Result<Option<FileMetadata>, FileError> {
        let Some(real) = scope(self)?.resolve(&path)? else {
            return Ok(None);
        };
        let meta = std::fs::symlink_metadata(&real).map_err(|e| io_err(&real, e))?;
        use std::os::unix::fs::MetadataExt;
        Ok(Some(FileMetadata {
            size: meta.len(),
            mode: meta.mode(),
            uid: meta.uid(),
            mtime: meta.mtime(),
            is_dir: meta.is_dir(),
            is_symlink: meta.file_type().is_symlink(),
        }))
    }

    fn sha256(&mut self, path: String) -> Result<Option<String>, FileError> {
        let scope = scope(self)?;
        let Some(real) = scope.resolve(&path)? else {
            return Ok(None);
        };
        let Some((file, meta)) = open_regular(&real).map_err(FileError::Io)? else {
            return Ok(None);
        };
        let len = meta.len();
        if len > scope.max_hash_bytes {
            return Err(FileError::Io(format!(
                "{path}: {len} bytes is over the {}-byte hash cap",
                scope.max_hash_bytes
            )));
        }
        let mut hasher = Sha256::new();
        let mut reader = file.take(scope.max_hash_bytes);
        std::io::copy(&mut reader, &mut hasher).map_err(|e| io_err(&real, e))?;
        Ok(Some(hex::encode(hasher.finalize())))
    }

    fn read(
        &mut self,
        path: String,
        offset: u64,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, FileError> {
        let scope = scope(self)?;
        let Some(real) = scope.resolve(&path)? else {
            return Ok(None);
        };
        let Some((mut file, _)) = open_regular(&real).map_err(FileError::Io)? else {
            return Ok(None);
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(&real, e))?;
        let cap = u64::from(max_bytes.min(scope.max_read_bytes));
        let mut buf = Vec::new();
        file.take(cap)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&real, e))?;
        Ok(Some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_allows_inside_denies_outside_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a.plist");
        std::fs::write(&inside, b"x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        let link = dir.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let scope = FileScope::new(&[dir.path().to_path_buf()]);

        assert!(scope.resolve(inside.to_str().unwrap()).unwrap().is_some());
        assert!(
            scope
                .resolve(dir.path().join("missing").to_str().unwrap())
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            scope.resolve(outside.path().to_str().unwrap()),
            Err(FileError::Denied(_))
        ));
        assert!(matches!(
            scope.resolve(link.to_str().unwrap()),
            Err(FileError::Denied(_))
        ));
        let dotdot = format!("{}/../etc/passwd", dir.path().display());
        assert!(matches!(scope.resolve(&dotdot), Err(FileError::Denied(_))));
        assert!(matches!(
            scope.resolve("relative/path"),
            Err(FileError::Denied(_))
        ));
    }
}
