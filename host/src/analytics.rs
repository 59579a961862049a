//! `ward analytics check`: load a directory of Jamf Protect analytics and report precisely
//! which ones do not parse. The others still load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// Every `*.yaml` / `*.yml` file under `dir`, recursively (unsorted).
pub fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks every analytic under `dir`; exit 0 when all load, 1 when any does not.
pub fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    files.sort();
    let mut failed = 0usize;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
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
