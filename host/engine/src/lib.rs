//! The wasmtime configuration ward runs plugins with. The agent builds its engine from
//! [`config`], and its build script precompiles the built-in plugins with the same
//! configuration ([`precompile_config`]), so that a fresh Mac loads them without compiling:
//! a compiled artifact is only accepted by an engine whose settings match the ones it was
//! compiled with, and keeping both in one function is what keeps them matching.

use wasmtime::Config;

/// Wasm stack per call.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Cranelift, epoch interruption (the per-call deadlines), the component model, a 512 KiB
/// wasm stack, whole backtraces; `concurrency_support` off outside measurements (component
/// calls are much cheaper without it).
pub fn config(concurrency_support: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.concurrency_support(concurrency_support);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.wasm_backtrace_max_frames(None);
    config
}

/// [`config`] for compiling ahead of time for the target `triple` with its baseline CPU
/// features, not the build machine's: the artifact then loads on every machine of that
/// architecture and OS (wasmtime checks each feature the artifact uses against the host).
pub fn precompile_config(triple: &str) -> wasmtime::Result<Config> {
    let mut config = config(false);
    config.target(triple)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own triple gets an engine; a target without a Cranelift backend in this
    /// build is an error the build script can report, not a panic.
    #[test]
    fn the_host_target_precompiles_and_a_foreign_one_is_an_error() {
        let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        if cfg!(target_os = "linux") {
            let config = precompile_config(&host).unwrap();
            assert!(wasmtime::Engine::new(&config).is_ok());
        }
        let foreign = if cfg!(target_arch = "s390x") {
            "riscv64gc-unknown-linux-gnu"
        } else {
            "s390x-unknown-linux-gnu"
        };
        let engine = precompile_config(foreign).and_then(|c| wasmtime::Engine::new(&c));
        assert!(engine.is_err());
    }
}
