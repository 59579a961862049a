#![allow(clippy::expect_used)] // a build script reports failure by panicking
//! Compiles the first-party plugins in `plugins/` to components and embeds them as the
//! agent's default content; also compiles the example plugins and the hostile test
//! fixtures, whose directory the tests find in `WARD_WASM_DIR`.

use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = ward_build::workspace_root(&manifest_dir);
    for dir in [
        "plugins",
        "examples/plugins",
        "tests/fixtures",
        "sdk",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // One nested build for the first-party plugins (embedded below), the example plugins
    // and the hostile test fixtures (used by the tests in `tests/`), so shared crates
    // compile once.
    let first_party = ward_build::packages_in(&root.join("plugins"));
    let mut packages = first_party.clone();
    packages.extend(ward_build::packages_in(&root.join("examples/plugins")));
    packages.extend(ward_build::packages_in(&root.join("tests/fixtures")));
    let built = ward_build::build_components(&root, &packages);
    if let Some((_, any)) = built.first() {
        let dir = any.parent().expect("wasm output dir");
        println!("cargo:rustc-env=WARD_WASM_DIR={}", dir.display());
    }
    let built: Vec<_> = built
        .into_iter()
        .filter(|(name, _)| first_party.contains(name))
        .collect();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut table = String::from(
        "/// First-party plugins compiled into the agent: (package, world, component bytes).\npub const BUILTIN_PLUGINS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (name, wasm) in built {
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &dest).expect("copying a built plugin");
        let kind = ward_build::kind_of(&root.join("plugins"), &name);
        table.push_str(&format!(
            "    ({name:?}, {kind:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), table).expect("writing builtin_plugins.rs");
}
