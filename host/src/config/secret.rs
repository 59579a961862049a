//! Secrets the config names by path (API tokens, client credentials): never inline in
//! ward.toml, and read only from a regular file the agent's user or root owns that no one
//! else may read or write.

use std::io::Read as _;
use std::path::Path;

/// Most bytes read from a secret file.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;

/// The text of the secret file at `path`, refusing one others may read or write, or
/// another user owns.
pub fn read_private_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt as _;
    let (file, meta) = crate::sandbox::grants::open_regular_following(path)?
        .ok_or_else(|| format!("{}: no such file", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{}: owned by uid {}, not by the agent's user or root",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable or writable by others (mode {:o}); make it 0600",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}
