//! The sandbox contains hostile plugins: each fixture misbehaves in one way; the agent
//! counts the fault, replaces the instance, quarantines the plugin after repeated faults,
//! says so in a finding, and keeps processing events through the other plugins.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ward::config::{PluginConfig, WardConfig};
use ward::registry::load::{LoadError, LoadOptions, PluginSource, load};
use ward::sandbox::engine::Limits;
use ward::sandbox::plugin::{Kind, Mode};
use ward::sandbox::runtime::Runtime;

/// Findings of the first-party plugins alone on the attack chain.
fn baseline() -> Vec<(String, Option<u64>)> {
    let rt = runtime();
    let procs = processes();
    let plugins = first_party(&rt, &procs);
    let (findings, _) = run(rt, plugins, procs, &attack_chain());
    findings
        .iter()
        .map(|f| (f.rule.clone(), f.global_seq_num))
        .collect()
}

/// Runs the first-party plugins plus the hostile `fixture` and checks containment.
fn assert_contained(
    fixture: &str,
    plugin_name: &str,
    config: &[(&str, &str)],
    expected_fault: &str,
) {
    assert_contained_in(runtime(), fixture, plugin_name, config, expected_fault);
}

/// [`assert_contained`] in `rt`.
fn assert_contained_in(
    rt: Arc<Runtime>,
    fixture: &str,
    plugin_name: &str,
    config: &[(&str, &str)],
    expected_fault: &str,
) {
    let expected = baseline();
    assert_eq!(
        expected.len(),
        13,
        "the attack chain raises five ATT&CK and eight Jamf findings (each act once)"
    );

    let procs = processes();
    let mut plugins = first_party(&rt, &procs);
    plugins.push(load_with(&rt, fixture, config, &procs));
    let (findings, summary) = run(rt, plugins, procs, &attack_chain());

    // Everyone else carried on as if the hostile plugin were not there.
    let others: Vec<_> = findings
        .iter()
        .filter(|f| f.plugin != plugin_name && f.rule != "plugin-quarantined")
        .map(|f| (f.rule.clone(), f.global_seq_num))
        .collect();
    assert_eq!(
        others, expected,
        "first-party findings changed next to {fixture}"
    );
    assert_eq!(summary.parse.events, 31, "every event was processed");

    // The hostile plugin faulted on its first batch, which was split and retried on
    // fresh instances down to single events (a batch may fail for its size); three
    // faults on single events quarantined it, and it was never called again.
    let hostile = summary
        .plugins
        .iter()
        .find(|p| p.name == plugin_name)
        .unwrap();
    assert_eq!(hostile.faults, 3, "{fixture}: {hostile:?}");
    assert!(
        hostile.retried > 0,
        "{fixture}: the batch was split first: {hostile:?}"
    );
    assert_eq!(
        hostile.calls,
        hostile.faults + hostile.retried,
        "{fixture}: every call faulted and none came after the quarantine: {hostile:?}"
    );
    assert_eq!(hostile.quarantines, 1, "{fixture}: {hostile:?}");
    let reason = hostile
        .quarantined
        .as_deref()
        .unwrap_or_else(|| panic!("{fixture} not quarantined"));
    assert!(
        reason.contains(expected_fault),
        "{fixture}: quarantine reason `{reason}` lacks `{expected_fault}`"
    );
    assert_eq!(hostile.findings, 0);

    // …and the agent said so, once.
    let notices: Vec<_> = findings
        .iter()
        .filter(|f| f.rule == "plugin-quarantined")
        .collect();
    assert_eq!(notices.len(), 1, "{fixture}: one quarantine finding");
    assert_eq!(notices[0].plugin, "ward");
    assert_eq!(notices[0].severity, "high");
    assert!(
        notices[0]
            .evidence
            .iter()
            .any(|(k, v)| k == "quarantined_plugin" && v == plugin_name)
    );
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    within(Duration::from_secs(120), || {
        assert_contained("fixture-loop", "fixture-loop", &[], "timeout")
    });
}

/// A plugin that sleeps waits in the host (a WASI clock subscription), where no epoch
/// interrupts it: the call's deadline must end the wait too.
#[test]
fn a_plugin_that_sleeps_is_stopped_by_the_deadline() {
    within(Duration::from_secs(120), || {
        assert_contained(
            "fixture-loop",
            "fixture-loop",
            &[("spin_in", "sleep")],
            "timeout",
        )
    });
}

/// A clock subscription made under the start-up deadline (60 s here) and waited on in a
/// call waits no longer than the call may (100 ms): the wait reads the deadline of the
/// call that waits, not the one in force when the subscription was made.
#[test]
fn a_timer_kept_from_start_up_is_bounded_by_the_call_that_waits() {
    let rt = runtime_with(Limits {
        init_timeout: Duration::from_secs(60),
        ..test_limits()
    });
    within(Duration::from_secs(30), move || {
        assert_contained_in(
            rt,
            "fixture-loop",
            "fixture-loop",
            &[("spin_in", "held-timer")],
            "timeout",
        )
    });
}

/// Asking WASI for 64 MiB of random bytes is refused at the host's cap (a trap, at once)
/// rather than generated in one host call and then refused by the memory cap.
#[test]
fn a_plugin_asking_for_megabytes_of_random_bytes_is_refused() {
    assert_contained(
        "fixture-huge-output",
        "fixture-huge-output",
        &[("shape", "random")],
        "trap",
    );
}

/// Host resources are capped per instance: holding 100,000 clock subscriptions (a poll
/// over them would be one long host call) traps at the cap.
#[test]
fn a_plugin_holding_a_hundred_thousand_host_resources_is_refused() {
    assert_contained(
        "fixture-huge-output",
        "fixture-huge-output",
        &[("shape", "pollables")],
        "trap",
    );
}

/// The start-up budget holds too: a `describe()` that never returns, spinning or sleeping,
/// fails the load with a timeout (the epoch moves while an instance starts, not only
/// during calls, and a clock wait ends at the start-up deadline).
#[test]
fn a_describe_that_never_returns_fails_the_load() {
    for spin_in in ["describe", "describe-sleep"] {
        let rt = runtime_with(Limits {
            init_timeout: Duration::from_millis(200),
            ..test_limits()
        });
        let options = LoadOptions {
            config: [("spin_in".to_owned(), spin_in.to_owned())].into(),
            ..LoadOptions::default()
        };
        let source = PluginSource::from_file(&wasm("fixture-loop")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        within(Duration::from_secs(60), move || {
            let loaded = load(&rt, &source, &options, &processes()).map(|_| ());
            let _ = tx.send(loaded.map_err(|e| e.to_string()));
        });
        let err = rx
            .recv()
            .unwrap()
            .expect_err("a describe() that never returns was loaded");
        assert!(err.contains("describe() failed"), "{spin_in}: {err}");
        assert!(err.contains("time cap"), "{spin_in}: {err}");
    }
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    assert_contained("fixture-alloc", "fixture-alloc", &[], "memory-limit");
}

#[test]
fn panic_trap_is_contained() {
    assert_contained("fixture-trap", "fixture-trap", &[], "trap");
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_only() {
    assert_contained(
        "fixture-recursion",
        "fixture-recursion",
        &[],
        "stack-overflow",
    );
}

#[test]
fn too_many_findings_are_refused() {
    assert_contained(
        "fixture-huge-output",
        "fixture-huge-output",
        &[],
        "output-limit",
    );
}

/// A finding whose message is 4 MiB costs the host its 8 KiB field cap: the string is
/// cut (and marked) while it is lifted out of the guest, never copied whole.
#[test]
fn a_giant_finding_is_cut_while_lifted_not_copied() {
    // What is measured is bytes, not time: a generous call cap, so that building 4 MiB on
    // a busy machine is not a timeout (the 100 ms test cap once was, in CI).
    let rt = Arc::new(
        ward::sandbox::runtime::Runtime::new(
            ward::sandbox::engine::Limits {
                call_timeout: std::time::Duration::from_secs(10),
                ..test_limits()
            },
            None,
        )
        .unwrap(),
    );
    let procs = processes();
    let options = LoadOptions {
        config: BTreeMap::from([("shape".to_owned(), "big".to_owned())]),
        ..LoadOptions::default()
    };
    let mut plugin = load_wasm(&rt, "fixture-huge-output", &options, &procs);
    let line = String::from_utf8(attack_chain()).unwrap();
    let event = ward::ingest::convert::event(
        &ward_event::parse_line(line.lines().next().unwrap().as_bytes(), 1 << 20).unwrap(),
    );
    let detections = plugin.on_events(&rt, &[&event]).unwrap();
    assert_eq!(detections.len(), 1);
    let message = &detections[0].finding.message;
    let cap = rt.limits.max_field_bytes;
    assert!(message.len() <= cap + 32, "{} bytes kept", message.len());
    assert!(message.starts_with("yyyy"));
    assert!(
        message.ends_with(&format!("…[{} bytes cut]", (4 << 20) - cap)),
        "{}",
        &message[message.len() - 40..]
    );
    assert_eq!(plugin.stats.fields_cut, 1);
    assert_eq!(plugin.stats.faults, 0);
}

fn load_err(name_or_bytes: Result<&str, (&str, Vec<u8>)>, options: &LoadOptions) -> LoadError {
    let rt = runtime();
    let procs = processes();
    let source = match name_or_bytes {
        Ok(name) => PluginSource::from_file(&wasm(name)).unwrap(),
        Err((origin, bytes)) => PluginSource {
            origin: origin.into(),
            bytes: bytes.into(),
        },
    };
    match load(&rt, &source, options, &procs) {
        Ok(p) => panic!("{} loaded but should have been refused", p.name()),
        Err(e) => e,
    }
}

fn assert_one_line_naming(err: &LoadError, origin: &str, needle: &str) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "multi-line reason: {text}");
    assert!(
        text.contains(origin),
        "reason does not name the file: {text}"
    );
    assert!(text.contains(needle), "reason `{text}` lacks `{needle}`");
}

#[test]
fn corrupt_bytes_are_refused() {
    let err = load_err(
        Err(("evil.wasm", b"MZ\x90\x00 definitely not wasm".to_vec())),
        &LoadOptions::default(),
    );
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    assert_one_line_naming(&err, "evil.wasm", "not a WebAssembly file");

    // A real component cut in half: right header, broken body.
    let mut bytes = std::fs::read(wasm("untrusted-exec")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = load_err(Err(("half.wasm", bytes)), &LoadOptions::default());
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    assert_one_line_naming(&err, "half.wasm", "invalid component");
}

#[test]
fn a_core_module_is_refused() {
    // The smallest valid core module: magic + version 1.
    let err = load_err(
        Err(("core.wasm", b"\0asm\x01\0\0\0".to_vec())),
        &LoadOptions::default(),
    );
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    assert_one_line_naming(
        &err,
        "core.wasm",
        "core WebAssembly module, not a component",
    );
}

#[test]
fn the_wrong_world_is_refused() {
    let path = wasm("fixture-command").display().to_string();
    let err = load_err(Ok("fixture-command"), &LoadOptions::default());
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert_one_line_naming(&err, &path, "exports none of the ward worlds");

    let path = wasm("fixture-collector").display().to_string();
    let options = LoadOptions {
        expected_kind: Some(Kind::Detector),
        grants: vec!["file-read".into()],
        ..LoadOptions::default()
    };
    let err = load_err(Ok("fixture-collector"), &options);
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert_one_line_naming(&err, &path, "is a collector, expected a detector");
}

#[test]
fn imports_the_world_does_not_offer_are_refused() {
    let path = wasm("fixture-undeclared-import").display().to_string();
    let err = load_err(Ok("fixture-undeclared-import"), &LoadOptions::default());
    assert!(
        matches!(
            err,
            LoadError::Imports {
                kind: Kind::Detector,
                ..
            }
        ),
        "{err}"
    );
    assert_one_line_naming(&err, &path, "ward:plugin/files");
}

#[test]
fn a_pin_mismatch_is_refused_and_a_matching_pin_loads() {
    let path = wasm("untrusted-exec");
    let actual = ward::registry::load::sha256_hex(&std::fs::read(&path).unwrap());
    let wrong = "0".repeat(64);
    let err = load_err(
        Ok("untrusted-exec"),
        &LoadOptions {
            pin: Some(wrong.clone()),
            ..LoadOptions::default()
        },
    );
    assert!(matches!(err, LoadError::PinMismatch { .. }), "{err}");
    assert_one_line_naming(
        &err,
        &path.display().to_string(),
        &format!("pinned {wrong}, file is {actual}"),
    );

    let err = load_err(
        Ok("untrusted-exec"),
        &LoadOptions {
            require_pin: true,
            ..LoadOptions::default()
        },
    );
    assert!(matches!(err, LoadError::MissingPin { .. }), "{err}");

    let rt = runtime();
    let procs = processes();
    let ok = load_wasm(
        &rt,
        "untrusted-exec",
        &LoadOptions {
            pin: Some(actual.to_uppercase()),
            ..LoadOptions::default()
        },
        &procs,
    );
    assert_eq!(ok.name(), "untrusted-exec");
    assert_eq!(ok.digest(), actual);
}

#[test]
fn an_ungranted_capability_is_refused() {
    let err = load_err(Ok("fixture-collector"), &LoadOptions::default());
    assert!(
        matches!(err, LoadError::CapabilityNotGranted { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("file-read"));
}

#[test]
fn refused_plugins_leave_the_rest_running() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"garbage").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let whole = std::fs::read(wasm("untrusted-exec")).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 3]).unwrap();
    let entry = |path: std::path::PathBuf, sha256: Option<String>| PluginConfig {
        path: Some(path),
        name: None,
        selftest: None,
        sha256,
        kind: None,
        mode: Mode::Enforce,
        group_modes: Vec::new(),
        grants: Vec::new(),
        file_scope: Vec::new(),
        config: BTreeMap::new(),
        config_files: BTreeMap::new(),
        config_dirs: BTreeMap::new(),
    };
    let mut config = WardConfig::default();
    config.agent.cache_dir = Some("".into());
    config.plugins = vec![
        entry(corrupt, None),
        entry(core, None),
        entry(wasm("fixture-command"), None),
        entry(wasm("fixture-undeclared-import"), None),
        entry(wasm("quarantine-removal"), Some("f".repeat(64))),
        PluginConfig {
            kind: Some("detector".into()),
            grants: vec!["file-read".into()],
            ..entry(wasm("fixture-collector"), None)
        },
        entry(truncated, None),
        entry(wasm("osascript-prompt"), None),
    ];
    let rt = runtime();
    let procs = processes();
    let loaded = ward::registry::load_all(&rt, &config, &procs);
    assert_eq!(
        loaded.errors.len(),
        7,
        "{:?}",
        loaded
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    let names: Vec<_> = loaded.plugins.iter().map(|p| p.name().to_owned()).collect();
    assert_eq!(
        names,
        [
            "account-manipulation",
            "command-abuse",
            "jamf-analytics",
            "launch-persistence",
            "malware-activity",
            "prevent-list",
            "process-injection",
            "quarantine-removal",
            "sensitive-files",
            "untrusted-exec",
            "osascript-prompt"
        ]
    );
    let (findings, _) = run(rt, loaded.plugins, procs, &attack_chain());
    assert_eq!(findings.len(), 13);
}

#[test]
fn collectors_read_only_inside_their_scope() {
    use ward::sandbox::bindings::wit;
    let dir = tempfile::tempdir().unwrap();
    let inside = dir.path().join("com.evil.plist");
    std::fs::write(&inside, b"<?xml version=\"1.0\"?><plist/>").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();

    let rt = runtime();
    let procs = processes();
    let options = LoadOptions {
        grants: vec!["file-read".into()],
        file_scope: vec![dir.path().to_path_buf()],
        ..LoadOptions::default()
    };
    let mut collector = load_wasm(&rt, "fixture-collector", &options, &procs);
    assert_eq!(collector.kind(), Kind::Collector);

    let line = attack_chain()
        .split(|&b| b == b'\n')
        .find(|l| l.windows(8).any(|w| w == b"\"create\""))
        .unwrap()
        .to_vec();
    let msg = ward_event::parse_line(&line, 1 << 20).unwrap();
    let trigger_for = |path: &str| {
        let mut event = ward::ingest::convert::event(&msg);
        if let wit::EventData::Create(c) = &mut event.data {
            c.path = path.to_owned();
        }
        ward::cli::plugin_test::synthetic_trigger(event)
    };

    let artifacts = collector
        .collect(&rt, &trigger_for(inside.to_str().unwrap()))
        .unwrap();
    let sha = artifacts.iter().find(|a| a.name == "sha256").unwrap();
    let expected = ward::registry::load::sha256_hex(&std::fs::read(&inside).unwrap());
    assert_eq!(String::from_utf8(sha.content.clone()).unwrap(), expected);
    assert_eq!(
        artifacts.iter().find(|a| a.name == "head").unwrap().content,
        b"<?xml version=\"1.0\"?><plist/>"
    );

    let missing = collector
        .collect(
            &rt,
            &trigger_for(dir.path().join("gone.plist").to_str().unwrap()),
        )
        .unwrap();
    assert_eq!(missing[0].name, "absent");

    match collector.collect(&rt, &trigger_for(outside.path().to_str().unwrap())) {
        Err(ward::sandbox::plugin::CallError::Plugin(message)) => {
            assert!(message.contains("Denied"), "{message}")
        }
        other => panic!("read outside the scope was not denied: {other:?}"),
    }
}

/// An artifact's bytes are bounded by the byte budget, not the item cap of other lists:
/// a 64 KiB head is one artifact, not an output-limit fault.
#[test]
fn a_collector_returns_artifacts_larger_than_the_item_cap() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let content: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &content).unwrap();
    let rt = runtime();
    let procs = processes();
    let options = LoadOptions {
        grants: vec!["file-read".into()],
        file_scope: vec![dir.path().to_path_buf()],
        config: BTreeMap::from([("head_bytes".to_owned(), (64 << 10).to_string())]),
        ..LoadOptions::default()
    };
    let mut collector = load_wasm(&rt, "fixture-collector", &options, &procs);
    let line = attack_chain()
        .split(|&b| b == b'\n')
        .find(|l| l.windows(8).any(|w| w == b"\"create\""))
        .unwrap()
        .to_vec();
    let mut event = ward::ingest::convert::event(&ward_event::parse_line(&line, 1 << 20).unwrap());
    if let ward::sandbox::bindings::wit::EventData::Create(c) = &mut event.data {
        c.path = big.display().to_string();
    }
    let artifacts = collector
        .collect(&rt, &ward::cli::plugin_test::synthetic_trigger(event))
        .unwrap();
    let head = artifacts.iter().find(|a| a.name == "head").unwrap();
    assert_eq!(head.content, content);
    assert_eq!(collector.stats.faults, 0);
}

/// Every built-in plugin ships precompiled for this target with the agent's engine
/// configuration, and the agent's engine accepts each artifact; an engine configured
/// otherwise refuses them, and loading through it compiles instead.
#[test]
fn built_ins_are_precompiled_for_the_agents_engine_and_compiled_when_that_does_not_fit() {
    use ward::registry::builtin::{BUILTIN_PLUGINS, precompiled};
    use ward::registry::cache;
    let engine = ward::sandbox::engine::build_engine().unwrap();
    let mut other = ward_engine::config(false);
    other.epoch_interruption(false);
    let other = wasmtime::Engine::new(&other).unwrap();
    for builtin in BUILTIN_PLUGINS {
        let name = builtin.name;
        let digest = ward::registry::load::sha256_hex(builtin.component);
        assert_eq!(digest, builtin.sha256, "{name}");
        let compiled = precompiled(&digest).unwrap_or_else(|| panic!("{name}: not precompiled"));
        cache::builtin(&engine, compiled).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        // Released pages read back the same: the component still hashes to its digest and
        // the artifact still loads.
        ward::registry::builtin::release(builtin.component);
        ward::registry::builtin::release(compiled);
        assert_eq!(
            ward::registry::load::sha256_hex(builtin.component),
            builtin.sha256
        );
        cache::builtin(&engine, compiled).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(
            cache::builtin(&other, compiled).is_err(),
            "{name}: an engine without epoch interruption accepted it"
        );
    }
    assert!(precompiled(&"0".repeat(64)).is_none());

    // Concurrency support on: the artifacts do not fit, the built-ins compile and load.
    let engine = ward::sandbox::engine::build_engine_with(true).unwrap();
    let compiled = precompiled(BUILTIN_PLUGINS[0].sha256).unwrap();
    assert!(cache::builtin(&engine, compiled).is_err());
    let rt = ward::sandbox::runtime::Runtime::with_engine(
        engine,
        ward::sandbox::engine::Limits::default(),
        None,
    )
    .unwrap();
    let source = ward::registry::builtin::builtin_sources().remove(0);
    load(&rt, &source, &LoadOptions::default(), &processes()).unwrap();
}

#[test]
fn compiled_components_are_cached_and_corrupt_entries_recompiled() {
    use ward::registry::cache::{CacheOutcome, CompileCache};
    let dir = tempfile::tempdir().unwrap();
    let engine = ward::sandbox::engine::build_engine().unwrap();
    let cache = CompileCache::open(dir.path(), &engine).unwrap();
    let bytes = std::fs::read(wasm("untrusted-exec")).unwrap();
    let digest = ward::registry::load::sha256_hex(&bytes);
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::Miss
    );
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::Hit
    );

    // Flip a byte in the stored artifact: it must be detected and recompiled, not loaded.
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut stored = std::fs::read(&artifact).unwrap();
    let mid = stored.len() / 2;
    stored[mid] ^= 0xff;
    std::fs::write(&artifact, stored).unwrap();
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::Miss
    );
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::Hit
    );
}

#[test]
fn plugins_see_their_config_and_the_process_table() {
    // osascript-prompt reads `extra_bait` through the host config import.
    let rt = runtime();
    let procs = processes();
    let events =
        std::fs::read(root().join("examples/plugins/osascript-prompt/events.jsonl")).unwrap();
    let plain = load_wasm(&rt, "osascript-prompt", &LoadOptions::default(), &procs);
    let (without, _) = run(rt.clone(), vec![plain], procs.clone(), &events);
    let options = LoadOptions {
        config: [("extra_bait".to_owned(), "backup".to_owned())].into(),
        ..LoadOptions::default()
    };
    let configured = load_wasm(&rt, "osascript-prompt", &options, &procs);
    let (with, _) = run(rt, vec![configured], procs, &events);
    assert_eq!(without.len(), 2);
    assert_eq!(
        with.len(),
        3,
        "the configured bait word makes the `Backup finished` dialog fire"
    );
    assert!(
        with.iter()
            .any(|f| f.evidence.iter().any(|(k, v)| k == "bait" && v == "backup"))
    );

    // Findings carry the parent resolved through the process table.
    let rt = runtime();
    let procs = processes();
    let plugins = first_party(&rt, &procs);
    let (findings, _) = run(rt, plugins, procs, &attack_chain());
    let xattr = findings
        .iter()
        .find(|f| f.rule == "quarantine-attribute-removed-by-xattr")
        .unwrap();
    let parent = xattr.process.parent.as_ref().expect("parent resolved");
    assert_eq!(parent.path.as_deref(), Some("/private/tmp/update"));
    assert_eq!((parent.pid, parent.pidversion), (705, Some(7051)));
}

#[test]
fn calling_the_wrong_export_is_a_host_error_not_a_guest_fault() {
    let rt = runtime();
    let procs = processes();
    let mut detector = load_wasm(&rt, "untrusted-exec", &LoadOptions::default(), &procs);
    let line = attack_chain()
        .split(|&b| b == b'\n')
        .next()
        .unwrap()
        .to_vec();
    let event = ward::ingest::convert::event(&ward_event::parse_line(&line, 1 << 20).unwrap());
    let trigger = ward::cli::plugin_test::synthetic_trigger(event);
    assert!(matches!(
        detector.collect(&rt, &trigger),
        Err(ward::sandbox::plugin::CallError::Host(_))
    ));
    assert_eq!(detector.stats.faults, 0);
    assert!(detector.quarantined().is_none());
}

#[test]
fn authorize_answers_with_the_plugins_verdict() {
    use ward::sandbox::bindings::wit;
    let rt = runtime();
    let procs = processes();
    let mut detector = load_wasm(&rt, "untrusted-exec", &LoadOptions::default(), &procs);
    let line = attack_chain()
        .split(|&b| b == b'\n')
        .find(|l| l.windows(6).any(|w| w == b"update"))
        .unwrap()
        .to_vec();
    let mut event = ward::ingest::convert::event(&ward_event::parse_line(&line, 1 << 20).unwrap());
    event.auth = Some(wit::AuthRequest { deadline_ms: 50 });
    // untrusted-exec reports but does not prevent: the SDK default answers no opinion.
    assert!(matches!(
        detector.authorize(&rt, &event, std::time::Duration::from_millis(50), false),
        Ok(wit::Verdict::NoOpinion)
    ));
    assert_eq!(detector.stats.faults, 0);
}

/// The attack chain with the exec of `/private/tmp/update` turned into an AUTH event (what
/// a native ES client receives), and the cdhash of that image.
fn auth_chain() -> (Vec<u8>, String) {
    let text = String::from_utf8(attack_chain()).unwrap();
    let mut cdhash = String::new();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let target = &v["event"]["exec"]["target"];
            if target["executable"]["path"] == "/private/tmp/update" {
                cdhash = target["cdhash"].as_str().unwrap().to_owned();
                l.replace("\"action_type\":1", "\"action_type\":0")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(!cdhash.is_empty());
    (lines.join("\n").into_bytes(), cdhash)
}

fn auth_pipeline(
    order: &[(&str, Mode)],
    cdhash: &str,
    policy: ward::detect::auth::AuthPolicy,
    call_timeout: std::time::Duration,
) -> (
    ward::detect::pipeline::Pipeline,
    Arc<ward::sandbox::runtime::Runtime>,
) {
    let rt = runtime_with(Limits {
        call_timeout,
        ..test_limits()
    });
    let procs = processes();
    let plugins = order
        .iter()
        .map(|(name, mode)| {
            // Only the prevent list reads `cdhash` (a key a plugin does not read is refused).
            let config = if *name == "prevent-list" {
                BTreeMap::from([("cdhash".to_owned(), cdhash.to_owned())])
            } else {
                BTreeMap::new()
            };
            let options = LoadOptions {
                config,
                mode: *mode,
                ..LoadOptions::default()
            };
            load_wasm(&rt, name, &options, &procs)
        })
        .collect();
    let pipeline = ward::detect::pipeline::Pipeline::new(
        Arc::clone(&rt),
        plugins,
        procs,
        ward::detect::pipeline::PipelineOptions {
            auth: policy,
            ..Default::default()
        },
    );
    (pipeline, rt)
}

fn feed(
    pipeline: &mut ward::detect::pipeline::Pipeline,
    input: &[u8],
) -> Vec<ward::forward::finding::FindingRecord> {
    let mut out = Vec::new();
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        pipeline.push_line(line, &mut out);
    }
    pipeline.finish(&mut out);
    out
}

fn evidence<'a>(f: &'a ward::forward::finding::FindingRecord, key: &str) -> &'a str {
    f.evidence
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// A CDHash prevent list denies the AUTH exec in time; the deny is recorded, and the
/// same list raises a finding that says the exec was denied.
#[test]
fn a_prevent_list_denies_an_auth_exec_and_records_it() {
    let (input, cdhash) = auth_chain();
    let policy = ward::detect::auth::AuthPolicy::default();
    let (mut pipeline, _rt) = auth_pipeline(
        &[
            ("prevent-list", Mode::Enforce),
            ("untrusted-exec", Mode::Enforce),
        ],
        &cdhash,
        policy,
        std::time::Duration::from_millis(250),
    );
    let out = feed(&mut pipeline, &input);
    let denied: Vec<_> = out.iter().filter(|f| f.rule == "auth-denied").collect();
    assert_eq!(denied.len(), 1, "{out:?}");
    assert_eq!(denied[0].plugin, "ward");
    assert_eq!(denied[0].process.path, "/private/tmp/update");
    assert_eq!(evidence(denied[0], "decided_by"), "prevent-list");
    assert_eq!(
        evidence(denied[0], "reason"),
        format!("on the cdhash prevent list: {}", cdhash.to_lowercase())
    );
    let matched: Vec<_> = out
        .iter()
        .filter(|f| f.rule == "prevent-list-match")
        .collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(
        evidence(matched[0], "outcome"),
        "deny requested (AUTH event)"
    );
    // The other detectors still saw the event for their findings.
    assert!(
        out.iter()
            .any(|f| f.rule == "untrusted-exec-from-staging-path")
    );
    let auth = pipeline.summary().auth;
    assert_eq!((auth.requests, auth.denied, auth.defaulted), (1, 1, 0));

    // In shadow mode the same list reports what it would deny; the exec is allowed.
    let (mut pipeline, _rt) = auth_pipeline(
        &[("prevent-list", Mode::Shadow)],
        &cdhash,
        ward::detect::auth::AuthPolicy::default(),
        std::time::Duration::from_millis(250),
    );
    let out = feed(&mut pipeline, &input);
    let shadow: Vec<_> = out.iter().filter(|f| f.rule == "auth-denied").collect();
    assert_eq!(shadow.len(), 1);
    assert!(shadow[0].shadow);
    assert_eq!(evidence(shadow[0], "answer"), "allow");
    assert_eq!(evidence(shadow[0], "decided_by"), "prevent-list");
    let auth = pipeline.summary().auth;
    assert_eq!((auth.requests, auth.allowed, auth.denied), (1, 1, 0));
}

/// A plugin that never answers cannot hold the verdict: it is interrupted at the answer's
/// due time (the per-call cap here is an hour: if the host waited for it instead, this
/// test would hang until CI's time limit fails it), and because verdict plugins are asked
/// concurrently it costs the others nothing: a listed binary is still denied in time.
/// Without a deny, the policy default for the kind answers and says why.
#[test]
fn a_slow_plugin_cannot_hold_a_verdict_past_its_deadline() {
    within(Duration::from_secs(120), || {
        let (input, cdhash) = auth_chain();
        let hour = std::time::Duration::from_secs(3600);
        let fail_closed = || ward::detect::auth::AuthPolicy {
            verdict_timeout: std::time::Duration::from_millis(40),
            default: ward::detect::auth::Answer::Allow,
            kinds: BTreeMap::from([("exec".to_owned(), ward::detect::auth::Answer::Deny)]),
        };
        let slow_missed = |missed: &str| {
            missed == "fixture-slow-verdict (timeout)" || missed == "fixture-slow-verdict (late)"
        };

        // The slow plugin comes first in load order; the prevent list still denies in time.
        let (mut pipeline, _rt) = auth_pipeline(
            &[
                ("fixture-slow-verdict", Mode::Enforce),
                ("prevent-list", Mode::Enforce),
            ],
            &cdhash,
            fail_closed(),
            hour,
        );
        let out = feed(&mut pipeline, &input);
        let recorded: Vec<_> = out.iter().filter(|f| f.rule.starts_with("auth-")).collect();
        assert_eq!(recorded.len(), 1, "{out:?}");
        assert_eq!(recorded[0].rule, "auth-denied");
        assert_eq!(evidence(recorded[0], "decided_by"), "prevent-list");
        // The stream went on: the event reached on-events too.
        assert!(out.iter().any(|f| f.rule == "prevent-list-match"));

        // Nothing listed: the default for the kind answers — fail-closed for exec here,
        // fail-open by default — and the record names the slow plugin alone.
        for (kinds, answer) in [
            (
                BTreeMap::from([("exec".to_owned(), ward::detect::auth::Answer::Deny)]),
                "deny",
            ),
            (BTreeMap::new(), "allow"),
        ] {
            let policy = ward::detect::auth::AuthPolicy {
                kinds,
                ..fail_closed()
            };
            let (mut pipeline, _rt) = auth_pipeline(
                &[
                    ("fixture-slow-verdict", Mode::Enforce),
                    ("prevent-list", Mode::Enforce),
                ],
                &"0".repeat(40),
                policy,
                hour,
            );
            let out = feed(&mut pipeline, &input);
            let recorded: Vec<_> = out.iter().filter(|f| f.rule.starts_with("auth-")).collect();
            assert_eq!(recorded.len(), 1, "{out:?}");
            let r = recorded[0];
            assert_eq!(r.rule, "auth-default-answer");
            assert_eq!(evidence(r, "answer"), answer);
            assert_eq!(evidence(r, "decided_by"), "default");
            assert!(
                slow_missed(evidence(r, "missed")),
                "{}",
                evidence(r, "missed")
            );
            assert_eq!(evidence(r, "deadline_ms"), "40");
            let summary = pipeline.summary();
            assert_eq!(summary.auth.defaulted, 1);
        }

        // Three faults quarantine the slow plugin in the AUTH lane. A quarantine is not the
        // stream's to turn into "deny every exec": the quarantined plugin is skipped, the
        // others decide (allow: nothing is listed), and the answer says who was skipped.
        let (mut pipeline, _rt) = auth_pipeline(
            &[
                ("fixture-slow-verdict", Mode::Enforce),
                ("prevent-list", Mode::Enforce),
            ],
            &"0".repeat(40),
            fail_closed(),
            hour,
        );
        let auth_line = input
            .split(|&b| b == b'\n')
            .find(|l| l.windows(15).any(|w| w == b"\"action_type\":0"))
            .unwrap()
            .to_vec();
        let event =
            ward::ingest::convert::event(&ward_event::parse_line(&auth_line, 1 << 20).unwrap());
        for _ in 0..3 {
            let d = pipeline.authorize(&event);
            assert_eq!(d.answer, ward::detect::auth::Answer::Deny, "{d:?}");
        }
        let d = pipeline.authorize(&event);
        assert_eq!(d.answer, ward::detect::auth::Answer::Allow, "{d:?}");
        assert!(
            matches!(d.decided_by, ward::detect::auth::DecidedBy::Plugins),
            "{d:?}"
        );
        assert_eq!(
            d.skipped,
            [("fixture-slow-verdict".to_owned(), "quarantined".to_owned())]
        );
        let summary = pipeline.summary();
        let slow = summary
            .plugins
            .iter()
            .find(|p| p.name == "fixture-slow-verdict")
            .unwrap();
        assert_eq!((slow.faults, slow.quarantines), (3, 1), "{slow:?}");

        // After a timeout the spare instance takes over at once: the next verdict is asked of
        // a ready instance (it times out again, rather than finding none warm).
        let (mut pipeline, _rt) = auth_pipeline(
            &[("fixture-slow-verdict", Mode::Enforce)],
            &"0".repeat(40),
            ward::detect::auth::AuthPolicy {
                verdict_timeout: std::time::Duration::from_millis(40),
                ..Default::default()
            },
            hour,
        );
        for _ in 0..2 {
            let decision = pipeline.authorize(&event);
            match &decision.decided_by {
                ward::detect::auth::DecidedBy::Default { missed } => {
                    assert_eq!(missed.len(), 1);
                    assert!(
                        slow_missed(&format!("{} ({})", missed[0].0, missed[0].1)),
                        "{missed:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }

        // In shadow mode the slow plugin neither changes the answer nor takes the enforcing
        // plugins' time: it is asked only after the answer, and its miss is not a reason
        // for the default.
        let policy = ward::detect::auth::AuthPolicy {
            verdict_timeout: std::time::Duration::from_millis(40),
            default: ward::detect::auth::Answer::Deny,
            kinds: BTreeMap::new(),
        };
        let (mut pipeline, _rt) = auth_pipeline(
            &[
                ("fixture-slow-verdict", Mode::Shadow),
                ("prevent-list", Mode::Enforce),
            ],
            &"0".repeat(40),
            policy,
            hour,
        );
        let out = feed(&mut pipeline, &input);
        assert!(!out.iter().any(|f| f.rule.starts_with("auth-")), "{out:?}");
        let auth = pipeline.summary().auth;
        assert_eq!((auth.requests, auth.allowed, auth.defaulted), (1, 1, 0));
    });
}

/// Components built against the frozen `ward:plugin@0.1.0` contract (without ward-sdk)
/// keep loading beside 0.2.0 ones: a 0.1.0 detector's imports (config, log, process-table
/// lookups) answer as before, and a 0.1.0 remediator's actions lift through the old
/// variant into the current one.
#[test]
fn plugins_built_against_contract_0_1_0_keep_loading() {
    use ward::sandbox::bindings::wit;
    use ward::sandbox::plugin::Contract;
    let rt = runtime();
    let procs = processes();
    let options = LoadOptions {
        config: [("label".to_owned(), "old".to_owned())].into(),
        ..LoadOptions::default()
    };
    let detector = load_wasm(&rt, "fixture-v01-detector", &options, &procs);
    assert_eq!(detector.image().contract(), Contract::V0_1);
    let current = load_wasm(&rt, "untrusted-exec", &LoadOptions::default(), &procs);
    assert_eq!(current.image().contract(), Contract::V0_2_1);
    let (findings, summary) = run(
        rt.clone(),
        vec![detector, current],
        procs.clone(),
        &attack_chain(),
    );
    assert_eq!(summary.plugins[0].faults, 0);
    let payload = findings
        .iter()
        .find(|f| f.rule == "v01-exec" && f.process.path == "/private/tmp/update")
        .expect("the 0.1.0 detector saw the payload's exec");
    let ev = |k: &str| {
        payload
            .evidence
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(ev("parent"), Some("/bin/zsh"), "process-table.lookup@0.1.0");
    assert_eq!(ev("label"), Some("old"), "host.config@0.1.0");
    assert_ne!(ev("ancestors"), Some("0"), "process-table.ancestors@0.1.0");
    assert!(findings.iter().any(|f| f.plugin == "untrusted-exec"));

    let grants = LoadOptions {
        grants: vec![
            "kill-process".into(),
            "quarantine-file".into(),
            "notify".into(),
        ],
        ..LoadOptions::default()
    };
    let mut remediator = load_wasm(&rt, "fixture-v01-remediator", &grants, &procs);
    assert_eq!(remediator.kind(), Kind::Remediator);
    assert_eq!(remediator.image().contract(), Contract::V0_1);
    let line = attack_chain()
        .split(|&b| b == b'\n')
        .find(|l| l.windows(6).any(|w| w == b"\"exec\""))
        .unwrap()
        .to_vec();
    let msg = ward_event::parse_line(&line, 1 << 20).unwrap();
    let event = ward::ingest::convert::event(&msg);
    let pid = event.process.token.pid;
    let planned = remediator
        .plan(&rt, &ward::cli::plugin_test::synthetic_trigger(event))
        .unwrap();
    assert_eq!(planned.len(), 3);
    assert!(matches!(
        &planned[0].action,
        wit::Action::KillProcess(k) if k.pid == pid && k.signal == 9
    ));
    assert!(matches!(&planned[1].action, wit::Action::QuarantineFile(_)));
    assert!(matches!(&planned[2].action, wit::Action::Notify(n) if !n.to_user));
}

/// Runs fixture-echo alone over the attack chain with `config`; its evidence per event.
fn echo_saw(config: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
    let rt = runtime();
    let procs = processes();
    let echo = load_with(&rt, "fixture-echo", config, &procs);
    let (findings, summary) = run(rt, vec![echo], procs, &attack_chain());
    assert_eq!(summary.plugins[0].faults, 0);
    assert_eq!(findings.len(), 31, "one finding per event");
    findings
        .iter()
        .map(|f| f.evidence.iter().cloned().collect())
        .collect()
}

/// Contract 0.2.1: a detector gets only the event parts its `parts` export names. What it
/// left out arrives as `none` or empty, exactly as the SDK's `keep_parts` (which the
/// testing harness uses) drops it; what it named arrives whole. A detector built against
/// 0.2.0 has no such export, links through the 0.2.1 imports and gets whole events.
#[test]
fn detectors_get_only_the_event_parts_they_name() {
    let whole = echo_saw(&[("keep", "")]);
    let none = echo_saw(&[("parts", "")]);
    let some_kept = echo_saw(&[("keep", "args,process-session")]);
    let some = echo_saw(&[("parts", "args,process-session")]);
    let count = |saw: &[BTreeMap<String, String>], key: &str| {
        saw.iter()
            .filter(|e| !matches!(e[key].as_str(), "no" | "0"))
            .count()
    };
    // The stream carries every part, so leaving them out is visible.
    assert!(count(&whole, "stat") > 20, "{whole:?}");
    assert!(count(&whole, "args") >= 5);
    assert!(count(&whole, "cwd") >= 5);
    assert!(count(&whole, "tty") >= 1);
    for key in ["stat", "args", "cwd", "tty"] {
        assert_eq!(count(&none, key), 0, "{key} arrived unasked");
    }
    assert_eq!(count(&some, "args"), count(&whole, "args"));
    assert_eq!(count(&some, "tty"), count(&whole, "tty"));
    assert_eq!((count(&some, "stat"), count(&some, "cwd")), (0, 0));
    // The host's views and the SDK's walk agree field for field on every event.
    for (i, (host, sdk)) in none.iter().zip(&whole).enumerate() {
        assert_eq!(host["digest"], sdk["digest_kept"], "event {i}, no parts");
    }
    for (i, (host, sdk)) in some.iter().zip(&some_kept).enumerate() {
        assert_eq!(host["digest"], sdk["digest_kept"], "event {i}, some parts");
    }
    assert!(
        whole
            .iter()
            .zip(&none)
            .all(|(w, n)| w["digest"] != n["digest"]),
        "every event of the stream has a stat block to leave out"
    );

    use ward::sandbox::plugin::Contract;
    let rt = runtime();
    let procs = processes();
    let v02 = load_with(&rt, "fixture-v02-detector", &[("label", "older")], &procs);
    assert_eq!(v02.image().contract(), Contract::V0_2);
    let (findings, summary) = run(rt, vec![v02], procs, &attack_chain());
    assert_eq!(summary.plugins[0].faults, 0);
    let payload = findings
        .iter()
        .find(|f| f.rule == "v02-exec" && f.process.path == "/private/tmp/update")
        .expect("the 0.2.0 detector saw the payload's exec");
    let ev: BTreeMap<_, _> = payload.evidence.iter().cloned().collect();
    assert_eq!(
        ev["parent"], "/bin/zsh",
        "process-table.lookup through 0.2.1"
    );
    assert_eq!(ev["label"], "older", "host.config through 0.2.1");
    assert_eq!((ev["stat"].as_str(), ev["cwd"].as_str()), ("yes", "yes"));
    assert_ne!(ev["args"], "0");
}

/// A plugin's self-test runs over a process table of its own. The agent's table has seen
/// the whole attack chain, so a detector that looks up an exec's parent finds it there;
/// the test's events hold only the exec, so on trial it must find no parent. (Loaded with
/// the live table, the trial reported the live parent and failed its own expectation.)
#[test]
fn a_self_test_sees_its_own_processes_not_the_live_agents() {
    let rt = runtime();
    let live = processes();
    let chain = attack_chain();
    let watcher = load_with(&rt, "fixture-v02-detector", &[], &live);
    let (findings, _) = run(Arc::clone(&rt), vec![watcher], Arc::clone(&live), &chain);
    // An exec whose parent the chain started, so that the live table knows it.
    let known = findings
        .iter()
        .map(|f| serde_json::to_value(f).unwrap())
        .find(|f| {
            f["evidence"]["parent"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        })
        .expect("an exec whose parent the live table knows");
    let path = known["message"]
        .as_str()
        .unwrap()
        .trim_start_matches("exec of ");
    let text = String::from_utf8(chain).unwrap();
    let line = text
        .lines()
        .find(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"]["exec"]["target"]["executable"]["path"] == path
        })
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, format!("{line}\n")).unwrap();
    let expect = dir.path().join("expect.jsonl");
    std::fs::write(
        &expect,
        "{\"rule\":\"v02-exec\",\"evidence\":{\"parent\":\"\"}}\n",
    )
    .unwrap();
    let mut config = WardConfig::default();
    config.agent.cache_dir = Some("".into());
    config.agent.default_content = false;
    config.plugins = vec![PluginConfig {
        path: Some(wasm("fixture-v02-detector")),
        name: None,
        selftest: Some(ward::config::SelftestConfig { events, expect }),
        sha256: None,
        kind: None,
        mode: Mode::Enforce,
        group_modes: Vec::new(),
        grants: Vec::new(),
        file_scope: Vec::new(),
        config: BTreeMap::new(),
        config_files: BTreeMap::new(),
        config_dirs: BTreeMap::new(),
    }];
    let loaded = ward::registry::load_all(&rt, &config, &live);
    let errors: Vec<_> = loaded.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        loaded
            .plugins
            .iter()
            .any(|p| p.name() == "fixture-v02-detector")
    );
}
