//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ward::detect::pipeline::{Pipeline, PipelineOptions, Summary};
use ward::forward::finding::FindingRecord;
use ward::registry::load::{LoadOptions, PluginSource, load};
use ward::sandbox::engine::Limits;
use ward::sandbox::plugin::Plugin;
use ward::sandbox::runtime::Runtime;
use ward::sandbox::state::SharedProcessTable;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A component built by the host's build script (`fixture_loop`, `untrusted_exec`, …).
pub fn wasm(name: &str) -> PathBuf {
    let dir = Path::new(env!("WARD_WASM_DIR"));
    let lib = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if lib.exists() {
        lib
    } else {
        dir.join(format!("{name}.wasm"))
    }
}

/// The example attack-chain stream.
pub fn attack_chain() -> Vec<u8> {
    std::fs::read(root().join("examples/streams/attack-chain.jsonl")).unwrap()
}

/// Limits small enough to make faults quick: 100 ms per call, 32 MiB, 3 faults quarantine.
pub fn test_limits() -> Limits {
    Limits {
        call_timeout: Duration::from_millis(100),
        memory_bytes: 32 << 20,
        max_faults: 3,
        ..Limits::default()
    }
}

/// A runtime with [`test_limits`], sharing one compile cache across tests and runs.
pub fn runtime() -> Arc<Runtime> {
    runtime_with(test_limits())
}

/// A runtime with `limits`, sharing the same compile cache.
pub fn runtime_with(limits: Limits) -> Arc<Runtime> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-compile-cache");
    Arc::new(Runtime::new(limits, Some(&cache)).unwrap())
}

pub fn processes() -> SharedProcessTable {
    Arc::new(RwLock::new(ward_event::ProcessTable::default()))
}

/// Loads a built component with `options`.
pub fn load_wasm(
    rt: &Runtime,
    name: &str,
    options: &LoadOptions,
    processes: &SharedProcessTable,
) -> Plugin {
    let source = PluginSource::from_file(&wasm(name)).unwrap();
    load(rt, &source, options, processes).unwrap_or_else(|e| panic!("{e}"))
}

/// Loads a built component with `config` as its `[plugins.config]`.
pub fn load_with(
    rt: &Runtime,
    name: &str,
    config: &[(&str, &str)],
    procs: &SharedProcessTable,
) -> Plugin {
    let options = LoadOptions {
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..LoadOptions::default()
    };
    load_wasm(rt, name, &options, procs)
}

/// The three first-party detectors, loaded from the embedded default content.
pub fn first_party(rt: &Runtime, processes: &SharedProcessTable) -> Vec<Plugin> {
    ward::registry::builtin::builtin_sources()
        .iter()
        .map(|s| load(rt, s, &LoadOptions::default(), processes).unwrap())
        .collect()
}

/// Runs `plugins` over `input` with small batches (so a plugin is called several times).
pub fn run(
    rt: Arc<Runtime>,
    plugins: Vec<Plugin>,
    processes: SharedProcessTable,
    input: &[u8],
) -> (Vec<FindingRecord>, Summary) {
    let mut pipeline = Pipeline::new(
        rt,
        plugins,
        processes,
        PipelineOptions {
            batch_size: 4,
            ..PipelineOptions::default()
        },
    );
    let mut out = Vec::new();
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        pipeline.push_line(line, &mut out);
    }
    pipeline.finish(&mut out);
    let summary = pipeline.summary();
    (out, summary)
}

/// Runs `f` on its own thread: a deadline that never comes (a guest nothing stops) fails
/// the test after `limit` instead of hanging the whole run. The stuck thread is left
/// running, on a core, until the test binary exits.
pub fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {}
        // `f` panicked: its thread's message is already on stderr.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test failed"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no deadline stopped the guest within {limit:?}")
        }
    }
}

/// [`within`] for an async test, on a two-worker runtime of its own: the runtime is
/// left behind with the thread on a timeout (dropping it would wait for the stuck
/// blocking task it runs).
pub fn within_async<F>(limit: Duration, test: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    within(limit, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
    });
}
