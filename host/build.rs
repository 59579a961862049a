#![allow(clippy::expect_used, clippy::panic)] // a build script reports failure by panicking
//! Compiles the first-party plugins in `plugins/` to components and embeds them as the
//! agent's default content; also compiles the example plugins and the hostile test
//! fixtures, whose directory the tests find in `WARD_WASM_DIR`.

use std::path::PathBuf;

use sha2::Digest as _;

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
    // The built-ins precompiled for the target with the agent's own engine configuration,
    // so that a fresh Mac starts without compiling them.
    println!("cargo:rerun-if-env-changed=WARD_PRECOMPILE");
    // A target this build's Cranelift has no backend for (a cross build) gets none: the
    // agent compiles the built-ins on first start there, as it does admin plugins.
    let engine = match std::env::var("WARD_PRECOMPILE").as_deref() {
        Ok("0") => None,
        _ => {
            let target = std::env::var("TARGET").expect("TARGET");
            match ward_engine::precompile_config(&target)
                .and_then(|config| wasmtime::Engine::new(&config))
            {
                Ok(engine) => Some(engine),
                Err(e) => {
                    println!("cargo:warning=built-in plugins not precompiled for {target}: {e:#}");
                    None
                }
            }
        }
    };
    let mut table = String::from(
        "/// First-party plugins compiled into the agent.\npub const BUILTIN_PLUGINS: &[Builtin] = &[\n",
    );
    for (name, wasm) in built {
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &dest).expect("copying a built plugin");
        let precompiled = out_dir.join(format!("{name}.cwasm"));
        let bytes = std::fs::read(&dest).expect("reading a built plugin");
        let digest: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let compiled = engine.as_ref().map_or_else(Vec::new, |engine| {
            engine
                .precompile_component(&bytes)
                .unwrap_or_else(|e| panic!("precompiling {name}: {e:#}"))
        });
        std::fs::write(&precompiled, compiled).expect("writing a precompiled plugin");
        let kind = ward_build::kind_of(&root.join("plugins"), &name);
        table.push_str(&format!(
            "    Builtin {{ name: {name:?}, kind: {kind:?}, component: include_bytes!({:?}), precompiled: include_bytes!({:?}), sha256: {digest:?} }},\n",
            dest.display().to_string(),
            precompiled.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), table).expect("writing builtin_plugins.rs");
}
