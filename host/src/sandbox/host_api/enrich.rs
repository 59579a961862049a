//! `ward:plugin/enrich`: file facts for detectors — SHA-256 (cached), extended attributes
//! and property lists — each behind its own capability and inside the granted file scope.
//!
//! Paths are resolved by handle through [`FileScope`](crate::sandbox::grants::FileScope) exactly as for collectors (see
//! [`crate::sandbox::grants::scope`]): absolute, no `..`, symlinks resolved by the host,
//! the scope checked on the real path, and the file read from the handle the walk opened.
//! A path that does not exist answers `none`. Hashing goes through the runtime's
//! [`crate::sandbox::grants::HashCache`] under the caller's deadline.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::sandbox::bindings::detector::ward::plugin::enrich::{EnrichError, Host, Xattr};
use crate::sandbox::grants::{
    CAP_HASH, CAP_PLIST, CAP_XATTR, EnrichScope, ScopeError, open_regular,
};
use crate::sandbox::state::PluginState;

/// Largest property list `plist` parses.
pub const MAX_PLIST_BYTES: u64 = 1 << 20;
/// Attributes returned by `xattrs`.
pub const MAX_XATTRS: usize = 64;
/// Bytes kept of one attribute value.
pub const MAX_XATTR_VALUE_BYTES: usize = 64 << 10;
/// Deepest nesting of arrays and dictionaries `plist` converts.
pub const MAX_PLIST_DEPTH: usize = ward_plist_json::MAX_DEPTH;
/// Bytes of JSON one `plist` answer may hold: what jamf-analytics accepts, and a bound on
/// what a small binary list whose objects share references can expand to.
pub const MAX_PLIST_JSON_BYTES: usize = 2 << 20;
/// The conversion's budgets: depth, values and output bytes, enforced while reading.
pub const PLIST_LIMITS: ward_plist_json::Limits = ward_plist_json::Limits {
    max_depth: MAX_PLIST_DEPTH,
    max_nodes: ward_plist_json::MAX_NODES,
    max_output_bytes: MAX_PLIST_JSON_BYTES,
};
/// Stack of the thread that parses and drops a property list: the parser builds values
/// iteratively, but dropping a deeply nested value recurses. Virtual size; only the pages
/// touched are committed.
const PLIST_STACK_BYTES: usize = 512 << 20;

fn from_scope_error(e: ScopeError) -> EnrichError {
    match e {
        ScopeError::Denied(m) => EnrichError::Denied(m),
        ScopeError::Io(m) => EnrichError::Io(m),
    }
}

/// Resolves `path` for a call needing `capability`.
fn resolve(
    state: &PluginState,
    capability: &str,
    granted: impl Fn(&EnrichScope) -> bool,
    path: &str,
) -> Result<(Arc<EnrichScope>, Option<crate::sandbox::grants::Resolved>), EnrichError> {
    let scope = state
        .ctx
        .enrich
        .as_ref()
        .filter(|s| granted(s))
        .ok_or_else(|| {
            EnrichError::Denied(format!(
                "the admin has not granted this plugin `{capability}`"
            ))
        })?;
    let resolved = scope.files.resolve(path, true).map_err(from_scope_error)?;
    Ok((Arc::clone(scope), resolved))
}

/// Reads and converts a property list from an open regular file, size-capped, on a
/// thread whose stack can take dropping whatever nesting fits in the size cap.
pub fn read_plist_from(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    shown: &Path,
) -> Result<String, String> {
    let size = meta.len();
    if size > MAX_PLIST_BYTES {
        return Err(format!(
            "{}: {size} bytes is over the {MAX_PLIST_BYTES}-byte property list cap",
            shown.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLIST_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    let label = shown.display().to_string();
    std::thread::Builder::new()
        .name("ward-plist".into())
        .stack_size(PLIST_STACK_BYTES)
        .spawn(move || {
            let json = ward_plist_json::parse_with(&bytes, &PLIST_LIMITS)
                .map_err(|e| format!("{label}: {e}"))?;
            Ok(json.to_string())
        })
        .map_err(|e| format!("{}: cannot start the parser thread: {e}", shown.display()))?
        .join()
        .map_err(|_| format!("{}: the property list parser panicked", shown.display()))?
}

/// Reads and converts the property list at `path` (the admin's own files and tests;
/// plugin paths go through the scope). `Ok(None)` if it does not exist.
pub fn read_plist(path: &Path) -> Result<Option<String>, String> {
    let Some((file, meta)) = open_regular(path)? else {
        return Ok(None);
    };
    read_plist_from(file, &meta, path).map(Some)
}

/// Bytes of attribute names read (the list itself can be long on some file systems).
const MAX_XATTR_NAMES_BYTES: usize = 64 << 10;

/// Reads up to [`MAX_XATTRS`] extended attributes of an open file. Each value's size is
/// asked first and only a value within [`MAX_XATTR_VALUE_BYTES`] is read; a larger one
/// (a resource fork of gigabytes, say) is answered empty, never read into memory.
pub fn read_xattrs_from(file: &std::fs::File, shown: &Path) -> Result<Vec<Xattr>, String> {
    read_xattrs_capped(file, shown, MAX_XATTR_VALUE_BYTES)
}

fn read_xattrs_capped(
    file: &std::fs::File,
    shown: &Path,
    max_value: usize,
) -> Result<Vec<Xattr>, String> {
    let fail = |e: rustix::io::Errno| format!("{}: {}", shown.display(), std::io::Error::from(e));
    let listed = rustix::fs::flistxattr_query(file).map_err(fail)?;
    let mut names = vec![0u8; listed.min(MAX_XATTR_NAMES_BYTES)];
    let got = match rustix::fs::flistxattr(file, &mut names[..]) {
        Ok(n) => n,
        // Grew past the buffer since the query (or is over the cap): read none rather
        // than a cut list.
        Err(rustix::io::Errno::RANGE) => 0,
        Err(e) => return Err(fail(e)),
    };
    let mut out = Vec::new();
    for raw in names.get(..got).unwrap_or_default().split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        if out.len() >= MAX_XATTRS {
            break;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            continue;
        };
        let name = std::ffi::OsStr::from_bytes(raw);
        let size = match rustix::fs::fgetxattr_query(file, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(fail(e)),
        };
        let value = if size > max_value {
            Vec::new()
        } else {
            let mut buf = vec![0u8; size];
            match rustix::fs::fgetxattr(file, name, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    buf
                }
                // Changed since the query: grew (answered as oversize) or went away.
                Err(rustix::io::Errno::RANGE) => Vec::new(),
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => return Err(fail(e)),
            }
        };
        out.push(Xattr {
            name: text.to_owned(),
            value,
        });
    }
    Ok(out)
}

impl Host for PluginState {
    fn sha256(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (scope, resolved) = resolve(self, CAP_HASH, |s| s.hash, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let (file, meta) = resolved.open_regular().map_err(from_scope_error)?;
        scope
            .cache
            .sha256(
                file,
                &meta,
                &resolved.real,
                scope.files.max_hash_bytes,
                self.deadline(),
            )
            .map(Some)
            .map_err(EnrichError::Io)
    }

    fn xattrs(&mut self, path: String) -> Result<Option<Vec<Xattr>>, EnrichError> {
        let (_, resolved) = resolve(self, CAP_XATTR, |s| s.xattr, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let file = resolved.open().map_err(from_scope_error)?;
        read_xattrs_from(&file, &resolved.real)
            .map(Some)
            .map_err(EnrichError::Io)
    }

    fn plist(&mut self, path: String) -> Result<Option<String>, EnrichError> {
        let (_, resolved) = resolve(self, CAP_PLIST, |s| s.plist, &path)?;
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let (file, meta) = resolved.open_for_contents().map_err(from_scope_error)?;
        read_plist_from(file, &meta, &resolved.real)
            .map(Some)
            .map_err(EnrichError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn read_xattrs(path: &Path) -> Result<Option<Vec<Xattr>>, String> {
        match std::fs::File::open(path) {
            Ok(f) => read_xattrs_from(&f, path).map(Some),
            Err(_) => Ok(None),
        }
    }

    #[test]
    fn property_lists_convert_to_json_xml_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("a.plist");
        std::fs::write(
            &xml,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>Label</key><string>com.evil.agent</string>
  <key>ProgramArguments</key><array><string>/tmp/x</string><string>-d</string></array>
  <key>RunAtLoad</key><true/>
  <key>Nice</key><integer>-5</integer>
  <key>Blob</key><data>AAEC</data>
  <key>When</key><date>2026-10-07T14:00:00Z</date>
</dict></plist>"#,
        )
        .unwrap();
        let json: Value = serde_json::from_str(&read_plist(&xml).unwrap().unwrap()).unwrap();
        assert_eq!(json["Label"], "com.evil.agent");
        assert_eq!(json["ProgramArguments"][1], "-d");
        assert_eq!(json["RunAtLoad"], true);
        assert_eq!(json["Nice"], -5);
        assert_eq!(json["Blob"], "AAEC");
        assert_eq!(json["When"], "2026-10-07T14:00:00Z");
        // The same list in binary form.
        let value = plist::Value::from_file(&xml).unwrap();
        let bin = dir.path().join("b.plist");
        value.to_file_binary(&bin).unwrap();
        let again: Value = serde_json::from_str(&read_plist(&bin).unwrap().unwrap()).unwrap();
        assert_eq!(again, json);
        // Missing, not a plist, too big.
        assert_eq!(read_plist(&dir.path().join("gone")).unwrap(), None);
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a plist at all").unwrap();
        assert!(
            read_plist(&junk)
                .unwrap_err()
                .contains("not a property list")
        );
        let big = dir.path().join("big.plist");
        std::fs::write(&big, vec![b' '; MAX_PLIST_BYTES as usize + 1]).unwrap();
        assert!(read_plist(&big).unwrap_err().contains("cap"));
    }

    #[test]
    fn hostile_property_lists_and_special_files_are_errors_not_crashes() {
        let dir = tempfile::tempdir().unwrap();
        // 60,000 nested arrays in well under the size cap: refused by depth, no overflow.
        let deep = dir.path().join("deep.plist");
        let mut xml = String::from("<?xml version=\"1.0\"?><plist version=\"1.0\">");
        xml.push_str(&"<array>".repeat(60_000));
        xml.push_str(&"</array>".repeat(60_000));
        xml.push_str("</plist>");
        std::fs::write(&deep, xml).unwrap();
        assert!(
            read_plist(&deep)
                .unwrap_err()
                .contains("nested deeper than 128")
        );
        // A FIFO at a watched path: refused at once, not waited on.
        let fifo = dir.path().join("fifo.plist");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(
            read_plist(&fifo)
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            crate::sandbox::grants::open_regular(&fifo)
                .unwrap_err()
                .contains("not a regular file")
        );
        // A symlink is not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&deep, &link).unwrap();
        assert!(crate::sandbox::grants::open_regular(&link).is_err());
    }

    /// A binary property list of a few hundred bytes whose arrays each hold 16 references
    /// to the next expands to 16^10 values; it once took 15 GB before being killed. The
    /// conversion's budgets stop it while reading.
    pub(crate) fn billion_laughs() -> Vec<u8> {
        let levels = 10u8;
        let mut out = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for i in 0..levels {
            offsets.push(out.len() as u32);
            out.push(0xa0 | 0x0f);
            out.extend_from_slice(&[0x10, 16]);
            out.extend(std::iter::repeat_n(i + 1, 16));
        }
        offsets.push(out.len() as u32);
        out.extend_from_slice(&[0x5f, 0x10, 200]);
        out.extend(std::iter::repeat_n(b'A', 200));
        let table = out.len() as u64;
        for o in &offsets {
            out.extend_from_slice(&o.to_be_bytes());
        }
        out.extend_from_slice(&[0; 6]);
        out.push(4);
        out.push(1);
        out.extend_from_slice(&u64::from(levels + 1).to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&table.to_be_bytes());
        out
    }

    #[test]
    fn a_billion_laughs_property_list_is_refused_while_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("com.apple.Terminal.plist");
        let bytes = billion_laughs();
        assert!(bytes.len() < 1024, "{}", bytes.len());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_plist(&path).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
    }

    #[test]
    fn extended_attributes_are_listed_with_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("download.dmg");
        std::fs::write(&path, b"x").unwrap();
        // Linux only allows the `user.` namespace; macOS names are free-form.
        let name = if cfg!(target_os = "macos") {
            "com.apple.quarantine"
        } else {
            "user.com.apple.quarantine"
        };
        if let Err(e) = xattr::set(&path, name, b"0081;6720f1c2;Safari;") {
            eprintln!("skipping: this file system does not take extended attributes ({e})");
            return;
        }
        let attrs = read_xattrs(&path).unwrap().unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].name, name);
        assert_eq!(attrs[0].value, b"0081;6720f1c2;Safari;");
        assert!(read_xattrs(&dir.path().join("gone")).unwrap().is_none());
        // A value over the cap is not read at all (a resource fork can be gigabytes): its
        // size is asked first and it is answered empty.
        let file = std::fs::File::open(&path).unwrap();
        let capped = read_xattrs_capped(&file, &path, 8).unwrap();
        assert_eq!(capped.len(), 1);
        assert!(capped[0].value.is_empty());
    }
}
