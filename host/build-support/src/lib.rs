//! Build-script helper shared by `ward` (first-party plugins) and the end-to-end tests
//! (hostile fixtures): compiles workspace packages to `wasm32-wasip2` components with a
//! nested cargo, its own target dir and a scrubbed environment, so `cargo build` and
//! `cargo test` on a fresh clone need no extra step.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // build scripts report by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Environment a nested cargo must not inherit: flags meant for the host build, wrappers
/// (clippy, coverage), the outer target dir and profile overrides.
const SCRUB: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "__CARGO_FIX_PLZ",
    "CARGO_LLVM_COV",
];

/// The workspace root: the nearest ancestor of `manifest_dir` holding `rust-toolchain.toml`.
pub fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|p| p.join("rust-toolchain.toml").exists())
        .unwrap_or_else(|| panic!("no workspace root above {}", manifest_dir.display()))
        .to_path_buf()
}

/// Package names of the crates directly under `dir` (one per sub-directory with a
/// `Cargo.toml`), sorted.
pub fn packages_in(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("name")
                    .map(str::trim)
                    .and_then(|r| r.strip_prefix('='))
            })
            .map(|v| v.trim().trim_matches('"').to_owned());
        if let Some(name) = name {
            names.push(name);
        }
    }
    names.sort();
    names
}

/// The world a package under `dir` declares in `[package.metadata.ward] kind = "…"`
/// (`detector` when it says nothing): response plugins load only when a playbook names
/// them.
pub fn kind_of(dir: &Path, package: &str) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return "detector".into();
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        let named = text.lines().map(str::trim).any(|l| {
            l.strip_prefix("name")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('='))
                .is_some_and(|v| v.trim().trim_matches('"') == package)
        });
        if !named {
            continue;
        }
        let mut in_ward = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_ward = line == "[package.metadata.ward]";
            } else if in_ward
                && let Some(v) = line
                    .strip_prefix("kind")
                    .map(str::trim)
                    .and_then(|r| r.strip_prefix('='))
            {
                return v.trim().trim_matches('"').to_owned();
            }
        }
    }
    "detector".into()
}

fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok();
    let installed = sysroot
        .map(|o| {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib")
                .join(TARGET)
                .exists()
        })
        .unwrap_or(false);
    if installed {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !added {
        panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed; install it and rebuild"
        );
    }
}

/// Builds `packages` of the workspace at `root` for wasm32-wasip2 (release, no debug info)
/// into `<root>/target/wasm-plugins`, and returns `(package, path to .wasm)` pairs.
pub fn build_components(root: &Path, packages: &[String]) -> Vec<(String, PathBuf)> {
    if packages.is_empty() {
        return Vec::new();
    }
    ensure_target();
    let target_dir = root.join("target").join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for var in SCRUB {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_CFG_") || key.starts_with("CARGO_FEATURE_") {
            cmd.env_remove(key);
        }
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {TARGET}: {e}"));
    if !status.success() {
        panic!("building plugins for {TARGET} failed ({status}); see the cargo output above");
    }
    packages
        .iter()
        .map(|p| {
            let dir = target_dir.join(TARGET).join("release");
            // Libraries get `_` in their file name, binaries keep `-`.
            let lib = dir.join(format!("{}.wasm", p.replace('-', "_")));
            let file = if lib.exists() {
                lib
            } else {
                dir.join(format!("{p}.wasm"))
            };
            assert!(
                file.exists(),
                "cargo reported success but {} is missing",
                file.display()
            );
            (p.clone(), file)
        })
        .collect()
}
