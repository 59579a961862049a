//! `ward:plugin/files`: scoped, size-capped file access for collectors.
//!
//! Paths are resolved by handle under the admin's roots ([`crate::sandbox::grants`]); every read
//! comes from the handle the walk opened. A path that does not exist answers `none`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::sandbox::bindings::collector::ward::plugin::files::{
    DirEntry, FileError, FileMetadata, Host,
};
use crate::sandbox::grants::FileScope;
use crate::sandbox::grants::hash_file;
use crate::sandbox::grants::{Resolved, ScopeError};
use crate::sandbox::state::PluginState;

fn scope(state: &PluginState) -> Result<&FileScope, FileError> {
    state.ctx.files.as_deref().ok_or_else(|| {
        FileError::Denied("the admin has not granted this plugin `file-read`".into())
    })
}

fn from_scope(e: ScopeError) -> FileError {
    match e {
        ScopeError::Denied(m) => FileError::Denied(m),
        ScopeError::Io(m) => FileError::Io(m),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> FileError {
    FileError::Io(format!("{}: {e}", path.display()))
}

fn resolve(state: &PluginState, path: &str, follow: bool) -> Result<Option<Resolved>, FileError> {
    scope(state)?.resolve(path, follow).map_err(from_scope)
}

/// Most entries one `list-dir` answers: a directory an attacker filled with a million
/// files is an error, not a million-entry list lifted into the guest.
pub const MAX_LIST_ENTRIES: usize = 4096;

/// The WIT metadata of an `lstat`.
fn metadata_of(stat: &rustix::fs::Stat, birthtime: Option<i64>) -> FileMetadata {
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    // `st_mode` is a u16 on macOS, a u32 on Linux.
    #[allow(clippy::useless_conversion)]
    let mode = u32::from(stat.st_mode);
    FileMetadata {
        size: u64::try_from(stat.st_size).unwrap_or(0),
        mode,
        uid: stat.st_uid,
        gid: stat.st_gid,
        #[allow(clippy::useless_conversion)]
        mtime: i64::from(stat.st_mtime),
        birthtime,
        is_dir: kind.is_dir(),
        is_symlink: kind.is_symlink(),
    }
}

impl Host for PluginState {
    fn metadata(&mut self, path: String) -> Result<Option<FileMetadata>, FileError> {
        // Not following a final symlink: the entry itself is described.
        let Some(entry) = resolve(self, &path, false)? else {
            return Ok(None);
        };
        let stat = entry.lstat().map_err(from_scope)?;
        Ok(Some(metadata_of(&stat, entry.birthtime())))
    }

    fn sha256(&mut self, path: String) -> Result<Option<String>, FileError> {
        let max = scope(self)?.max_hash_bytes;
        let Some(entry) = resolve(self, &path, true)? else {
            return Ok(None);
        };
        let (file, meta) = entry.open_regular().map_err(from_scope)?;
        let len = meta.len();
        if len > max {
            return Err(FileError::Io(format!(
                "{path}: {len} bytes is over the {max}-byte hash cap"
            )));
        }
        hash_file(file, &entry.real, max, self.deadline())
            .map(Some)
            .map_err(FileError::Io)
    }

    fn read(
        &mut self,
        path: String,
        offset: u64,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, FileError> {
        let cap = u64::from(max_bytes.min(scope(self)?.max_read_bytes));
        let Some(entry) = resolve(self, &path, true)? else {
            return Ok(None);
        };
        let (mut file, _) = entry.open_for_contents().map_err(from_scope)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(&entry.real, e))?;
        let mut buf = Vec::new();
        file.take(cap)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&entry.real, e))?;
        Ok(Some(buf))
    }

    fn list_dir(&mut self, path: String) -> Result<Option<Vec<DirEntry>>, FileError> {
        let Some(entry) = resolve(self, &path, true)? else {
            return Ok(None);
        };
        if !entry.file_type.is_dir() {
            return Err(FileError::Io(format!("{path}: not a directory")));
        }
        let listed = entry
            .list(MAX_LIST_ENTRIES)
            .map_err(from_scope)?
            .into_iter()
            .map(|(name, stat, birthtime)| DirEntry {
                name,
                metadata: metadata_of(&stat, birthtime),
            })
            .collect();
        Ok(Some(listed))
    }
}
