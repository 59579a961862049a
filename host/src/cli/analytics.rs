//! `ward analytics check`: load a directory of Jamf Protect analytics and report precisely
//! which ones do not parse. The others still load.

use std::path::Path;
use std::process::ExitCode;

/// Largest analytic file read (the loader refuses anything past its own, smaller cap).
const MAX_ANALYTIC_FILE_BYTES: u64 = 1 << 20;

fn read_analytic(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let (file, meta) = crate::sandbox::grants::open_regular_following(path)
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
    crate::config::walk::yaml_files(dir, &mut files)?;
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
