//! Walking a directory of analytics (`config_dirs`, `ward analytics check`) without
//! following it into a loop or reading without end.

use std::path::{Path, PathBuf};

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
/// [`super::MAX_CONFIG_DIR_FILES`].
pub fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    yaml_files_capped(dir, super::MAX_CONFIG_DIR_FILES, out)
}
