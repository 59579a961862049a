//! The public Jamf Protect analytic corpus: every well-formed analytic loads; the malformed
//! ones are reported with file, line and column.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use ward_predicate::parse_analytic;

/// The public corpus as the jamf-analytics plugin bundles it (unchanged, MIT notice kept).
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/jamf-analytics/analytics")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_well_formed_analytic_loads_and_the_broken_ones_are_pinpointed() {
    let dir = corpus();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    assert_eq!(files.len(), 80);
    let mut failures = Vec::new();
    let mut loaded = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        match parse_analytic(&text) {
            Ok(a) => {
                assert!(!a.name.is_empty());
                loaded += 1;
            }
            Err(e) => failures.push((file.file_name().unwrap().to_string_lossy().into_owned(), e)),
        }
    }
    let names: Vec<&str> = failures.iter().map(|(f, _)| f.as_str()).collect();
    // The three files SOURCES.md lists as missing an operator between predicates.
    assert_eq!(
        names,
        [
            "smartcard_filevault_disabled.yaml",
            "smartcard_filevault_enabled.yaml",
            "system_profiler_activity.yaml"
        ],
        "{failures:#?}"
    );
    assert_eq!(loaded, 77);
    for (file, e) in &failures {
        assert!(
            e.message
                .contains("expected AND, OR or the end of the filter, found `$event`"),
            "{file}: {e}"
        );
    }
    let (_, profiler) = &failures[2];
    assert_eq!(profiler.line, 12, "{profiler}");
}
