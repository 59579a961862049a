//! `ward analytics check`: load a directory of Jamf Protect analytics and report precisely
//! which ones do not parse. The others still load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// Directories deep a walk of analytics goes below its root.
pub const MAX_WALK_DEPTH: usize = 32;
/// Entries (files and directories) a walk looks at before giving up: a bound on the work
/// a directory tree can ask for, whatever its links.
pub const MAX_WALK_ENTRIES: usize = 100_000;

/// Every `*.yaml` / `*.yml` file under `dir`, recursively (unsorted), at most `max_files`
/// (one more is an error). Symlinks are followed, but each directory is entered once (by
/// device and inode), so a link loop ends; depth and the entries looked at are counted as
/// the walk goes, so a huge tree fails fast instead of filling memory.
pub fn yaml_files_capped(
    dir: &Path,
    max_files: usize,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut looked = 0usize;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((here, depth)) = stack.pop() {
        let meta =
            std::fs::metadata(&here).with_context(|| format!("cannot read {}", here.display()))?;
        if !seen.insert((meta.dev(), meta.ino())) {
            tracing::warn!(dir = %here.display(), "directory already walked (a symlink loop or a second link); skipped");
            continue;
        }
        for entry in
            std::fs::read_dir(&here).with_context(|| format!("cannot read {}", here.display()))?
        {
            looked += 1;
            if looked > MAX_WALK_ENTRIES {
                anyhow::bail!(
                    "{}: more than {MAX_WALK_ENTRIES} entries under it",
                    dir.display()
                );
            }
            let path = entry?.path();
            // Follows a symlink to see what it names; a dangling one is skipped.
            let Ok(target) = std::fs::metadata(&path) else {
                continue;
            };
            if target.is_dir() {
                if depth + 1 > MAX_WALK_DEPTH {
                    anyhow::bail!(
                        "{}: nested deeper than {MAX_WALK_DEPTH} directories",
                        path.display()
                    );
                }
                stack.push((path, depth + 1));
            } else if target.is_file()
                && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            {
                out.push(path);
                if out.len() > max_files {
                    anyhow::bail!("{}: more than {max_files} analytics files", dir.display());
                }
            }
        }
    }
    Ok(())
}

/// Every `*.yaml` / `*.yml` file under `dir` (see [`yaml_files_capped`]), at most
/// [`crate::config::MAX_CONFIG_DIR_FILES`].
pub fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    yaml_files_capped(dir, crate::config::MAX_CONFIG_DIR_FILES, out)
}

/// Largest analytic file read (the loader refuses anything past its own, smaller cap).
const MAX_ANALYTIC_FILE_BYTES: u64 = 1 << 20;

fn read_analytic(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let (file, meta) = crate::host_api::enrich::open_regular_following(path)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("no such file"))?;
    if meta.len() > MAX_ANALYTIC_FILE_BYTES {
        anyhow::bail!(
            "{} bytes is over the {MAX_ANALYTIC_FILE_BYTES}-byte cap",
            meta.len()
        );
    }
    let mut text = String::new();
    file.take(MAX_ANALYTIC_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Checks every analytic under `dir`; exit 0 when all load, 1 when any does not.
pub fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    files.sort();
    let mut failed = 0usize;
    for file in &files {
        let text = match read_analytic(file) {
            Ok(t) => t,
            Err(e) => {
                println!("{}: error: cannot read: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        match ward_predicate::parse_analytic(&text) {
            Ok(a) => println!(
                "{}: ok: {} ({}, {})",
                file.display(),
                a.name,
                a.input_type,
                a.severity
            ),
            Err(e) => {
                println!(
                    "{}:{}:{}: error: {}",
                    file.display(),
                    e.line,
                    e.column,
                    e.message
                );
                failed += 1;
            }
        }
    }
    eprintln!(
        "ward analytics check: {} analytics, {} loaded, {failed} failed",
        files.len(),
        files.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
