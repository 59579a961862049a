//! What an attacker on the Mac controls — its own command lines, file names and file
//! contents — must never blind ward, flip a verdict, exhaust its memory or run code. One
//! test per class of attack, each building its own hostile input (generated, sized to
//! prove the bound in seconds). Each fails on the code before the hardening issue.

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
use serde_json::Value;
use ward::detect::auth::{Answer, AuthPolicy, DecidedBy};
use ward::detect::pipeline::{Pipeline, PipelineOptions};
use ward::forward::finding::FindingRecord;
use ward::registry::load::LoadOptions;
use ward::sandbox::engine::Limits;
use ward::sandbox::plugin::{Mode, Plugin};
use ward::sandbox::runtime::Runtime;

fn lines(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The attack chain's records, as JSON values.
fn chain() -> Vec<Value> {
    lines(&attack_chain())
}

/// An exec of `/usr/bin/true` by a fresh process whose one argument is `bytes` long,
/// shaped like the attack chain's first exec.
fn huge_exec(template: &Value, n: i64, bytes: usize) -> String {
    let mut v = template.clone();
    let pid = 20_000 + n;
    v["process"]["audit_token"]["pid"] = Value::from(pid);
    v["process"]["audit_token"]["pidversion"] = Value::from(1);
    let target = &mut v["event"]["exec"]["target"];
    target["audit_token"]["pid"] = Value::from(pid);
    target["audit_token"]["pidversion"] = Value::from(2);
    target["executable"]["path"] = Value::from("/usr/bin/true");
    v["event"]["exec"]["args"] = Value::from(vec!["true".to_owned(), "A".repeat(bytes)]);
    v["global_seq_num"] = Value::from(90_000 + n);
    v.to_string()
}

fn first_exec(records: &[Value]) -> Value {
    records
        .iter()
        .find(|v| v["event"]["exec"].is_object())
        .unwrap()
        .clone()
}

fn push_all(pipeline: &mut Pipeline, lines: &[String], out: &mut Vec<FindingRecord>) {
    for l in lines {
        pipeline.push_line(l.as_bytes(), out);
    }
    pipeline.finish(out);
}

fn text_lines(records: &[Value]) -> Vec<String> {
    records.iter().map(Value::to_string).collect()
}

/// Class 1. Batches sized by count alone put 40 events of ~1 MB into one call, past the
/// detectors' 32 MiB of memory: three such batches quarantined jamf-analytics for good
/// and the attack that followed lost findings. Byte-bounded batches (that split and retry
/// before blaming anyone) keep every finding of the attack.
#[test]
fn a_flood_of_huge_command_lines_does_not_blind_the_detectors() {
    let records = chain();
    let template = first_exec(&records);
    let options = PipelineOptions {
        batch_size: 40,
        ..PipelineOptions::default()
    };
    let run = |flood: usize| {
        let rt = runtime_with(test_limits());
        let procs = processes();
        let plugins = first_party(&rt, &procs);
        let mut pipeline = Pipeline::new(rt, plugins, procs, options.clone());
        let mut input: Vec<String> = (0..flood as i64)
            .map(|n| huge_exec(&template, n, 1_000_000))
            .collect();
        input.extend(text_lines(&records));
        let mut out = Vec::new();
        push_all(&mut pipeline, &input, &mut out);
        (out, pipeline.summary())
    };
    let attack = |out: &[FindingRecord]| -> Vec<(String, Option<u64>)> {
        out.iter()
            .filter(|f| f.global_seq_num.is_some_and(|s| s < 90_000))
            .map(|f| (f.rule.clone(), f.global_seq_num))
            .collect()
    };
    let (quiet, _) = run(0);
    let (flooded, summary) = run(120);
    assert_eq!(
        attack(&flooded),
        attack(&quiet),
        "the flood changed the attack's findings"
    );
    assert!(
        !flooded.iter().any(|f| f.rule == "plugin-quarantined"),
        "{:?}",
        summary.plugins
    );
    for p in &summary.plugins {
        assert_eq!((p.faults, p.quarantines), (0, 0), "{p:?}");
    }
    assert_eq!(summary.parse.events, 120 + 31);
}

/// Class 1. A quarantine ends: after its period the plugin is called again on probation,
/// and a repeat doubles the next period.
#[test]
fn quarantine_backs_off_and_is_released() {
    let rt = runtime_with(Limits {
        quarantine_base: Duration::from_millis(300),
        quarantine_max: Duration::from_secs(10),
        ..test_limits()
    });
    let procs = processes();
    let plugins = vec![load_wasm(
        &rt,
        "fixture-trap",
        &LoadOptions::default(),
        &procs,
    )];
    let mut pipeline = Pipeline::new(
        rt,
        plugins,
        procs,
        PipelineOptions {
            batch_size: 1,
            ..PipelineOptions::default()
        },
    );
    let input = text_lines(&chain());
    let mut out = Vec::new();
    push_all(&mut pipeline, &input[..6], &mut out);
    let s = &pipeline.summary().plugins[0];
    assert_eq!((s.faults, s.quarantines, s.releases), (3, 1, 0), "{s:?}");
    let first = s.quarantined.clone().unwrap();
    assert!(first.contains("quarantined for 300ms"), "{first}");
    // While quarantined: not called at all.
    let calls = s.calls;
    push_all(&mut pipeline, &input[6..10], &mut out);
    assert_eq!(pipeline.summary().plugins[0].calls, calls);
    // After the period: released, called, faulting again: quarantined for twice as long.
    std::thread::sleep(Duration::from_millis(400));
    push_all(&mut pipeline, &input[10..20], &mut out);
    let s = &pipeline.summary().plugins[0];
    assert_eq!((s.faults, s.quarantines, s.releases), (6, 2, 1), "{s:?}");
    assert!(
        s.quarantined
            .as_deref()
            .unwrap()
            .contains("quarantined for 600ms")
    );
    let notices = out
        .iter()
        .filter(|f| f.rule == "plugin-quarantined")
        .count();
    assert_eq!(notices, 2);
}

/// The attack chain's exec of `/private/tmp/update` as an AUTH event, and its cdhash.
fn auth_exec_of_update(records: &[Value]) -> (String, String) {
    let v = records
        .iter()
        .find(|v| v["event"]["exec"]["target"]["executable"]["path"] == "/private/tmp/update")
        .unwrap();
    let cdhash = v["event"]["exec"]["target"]["cdhash"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut auth = v.clone();
    auth["action_type"] = Value::from(0);
    (auth.to_string(), cdhash)
}

/// Class 2. Under fail-closed exec, after a flood of huge events and with a plugin
/// quarantined by what the stream did to it: the listed binary is still denied by the
/// prevent list, and an ordinary exec is still allowed. (Before: the quarantined plugin
/// "could not vouch" for any exec, so every later exec was denied; and a flood could get
/// the prevent list itself no time.)
#[test]
fn prevent_list_verdicts_hold_whatever_came_before() {
    let records = chain();
    let template = first_exec(&records);
    let (listed, cdhash) = auth_exec_of_update(&records);
    let mut ordinary = template.clone();
    ordinary["action_type"] = Value::from(0);
    let rt = runtime_with(test_limits());
    let procs = processes();
    let plugins = vec![
        load_with(&rt, "fixture-trap", &[], &procs),
        load_with(&rt, "jamf-analytics", &[], &procs),
        load_with(&rt, "prevent-list", &[("cdhash", &cdhash)], &procs),
    ];
    let mut pipeline = Pipeline::new(
        rt,
        plugins,
        procs,
        PipelineOptions {
            auth: AuthPolicy {
                kinds: BTreeMap::from([("exec".to_owned(), Answer::Deny)]),
                ..AuthPolicy::default()
            },
            ..PipelineOptions::default()
        },
    );
    let mut input: Vec<String> = (0..40)
        .map(|n| huge_exec(&template, n, 1_000_000))
        .collect();
    input.extend(text_lines(&records));
    let mut out = Vec::new();
    push_all(&mut pipeline, &input, &mut out);
    let trap = pipeline
        .summary()
        .plugins
        .into_iter()
        .find(|p| p.name == "fixture-trap")
        .unwrap();
    assert!(trap.quarantined.is_some(), "{trap:?}");

    let decide = |pipeline: &mut Pipeline, line: &str| {
        let event = ward::ingest::convert::event(
            &ward_event::parse_line(line.as_bytes(), 1 << 20).unwrap(),
        );
        pipeline.authorize(&event)
    };
    let d = decide(&mut pipeline, &listed);
    assert_eq!(d.answer, Answer::Deny, "{d:?}");
    assert!(
        matches!(&d.decided_by, DecidedBy::Plugin { name, .. } if name == "prevent-list"),
        "{d:?}"
    );
    let d = decide(&mut pipeline, &ordinary.to_string());
    assert_eq!(d.answer, Answer::Allow, "{d:?}");
    assert!(matches!(d.decided_by, DecidedBy::Plugins), "{d:?}");
}

/// Class 2. A binary too large to hash within the verdict deadline: hashing stops at the
/// deadline (not inside an uninterruptible call that outlives it), the list answers
/// `undecided` — the default decides — and the hash finishes in the background, so the
/// next exec of the same binary is denied from the cache. Unlisted large binaries never
/// fault the prevent list.
#[test]
fn a_binary_too_large_to_hash_in_time_is_undecided_then_denied_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let big = root.join("big-payload");
    // 160 MiB of pseudo-random bytes: hashing them takes well over the 60 ms deadline.
    let mut data = vec![0u8; 160 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&big, &data).unwrap();
    let digest = ward::registry::load::sha256_hex(&data);
    drop(data);
    let records = chain();
    let template = first_exec(&records);
    let exec_of = |path: &std::path::Path, n: i64| {
        let mut v = template.clone();
        v["action_type"] = Value::from(0);
        v["process"]["audit_token"]["pid"] = Value::from(30_000 + n);
        v["event"]["exec"]["target"]["audit_token"]["pid"] = Value::from(30_000 + n);
        v["event"]["exec"]["target"]["executable"]["path"] =
            Value::from(path.display().to_string());
        v.to_string()
    };
    let rt = runtime_with(test_limits());
    let procs = processes();
    let options = LoadOptions {
        config: BTreeMap::from([("sha256".to_owned(), digest.clone())]),
        grants: vec!["file-hash".into()],
        file_scope: vec![root.clone()],
        ..LoadOptions::default()
    };
    let plugins = vec![load_wasm(&rt, "prevent-list", &options, &procs)];
    let mut pipeline = Pipeline::new(
        Arc::clone(&rt),
        plugins,
        procs,
        PipelineOptions {
            auth: AuthPolicy {
                // 80 ms to answer; hashing stops 20 ms before, so a thread held off the
                // CPU that long by a busy machine still answers in time. 160 MiB would
                // need 2.9 GB/s of SHA-256 to finish inside it.
                verdict_timeout: Duration::from_millis(100),
                ..AuthPolicy::default()
            },
            ..PipelineOptions::default()
        },
    );
    let decide = |pipeline: &mut Pipeline, line: &str| {
        let event = ward::ingest::convert::event(
            &ward_event::parse_line(line.as_bytes(), 1 << 20).unwrap(),
        );
        pipeline.authorize(&event)
    };
    let first = decide(&mut pipeline, &exec_of(&big, 0));
    match &first.decided_by {
        DecidedBy::Default { missed } => {
            assert_eq!(missed.len(), 1, "{missed:?}");
            assert!(missed[0].1.starts_with("undecided"), "{missed:?}");
        }
        other => panic!("the first exec was decided without its hash: {other:?}"),
    }
    assert!(rt.hash_cache.deferred() >= 1);
    // The background hash lands in the cache; then the same binary is denied in time.
    let mut denied = None;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        let d = decide(&mut pipeline, &exec_of(&big, 1));
        if d.answer == Answer::Deny {
            denied = Some(d);
            break;
        }
    }
    let denied = denied.expect("the background hash never reached the cache");
    assert!(
        matches!(denied.decided_by, DecidedBy::Plugin { ref name, .. } if name == "prevent-list")
    );
    // Three more large binaries, unlisted: undecided each time, never a fault.
    for n in 0..3 {
        let other = root.join(format!("other-{n}"));
        std::fs::write(&other, vec![n as u8 + 1; 96 << 20]).unwrap();
        let d = decide(&mut pipeline, &exec_of(&other, 10 + n));
        assert!(
            matches!(d.decided_by, DecidedBy::Default { .. } | DecidedBy::Plugins),
            "{d:?}"
        );
    }
    let list = &pipeline.summary().plugins[0];
    assert_eq!((list.faults, list.quarantines), (0, 0), "{list:?}");
}

/// Class 2. The AUTH lane does not wait behind the bulk stage: with a detector stuck in
/// `on-events` for up to 6 s (its per-call cap), an AUTH exec read right after it is
/// answered by the prevent list within its 2 s deadline, clocked from its arrival.
#[test]
fn auth_answers_do_not_wait_behind_a_stalled_batch() {
    // A plugin that nothing stopped would hang the run: fail it instead.
    within_async(Duration::from_secs(120), || async {
        let records = chain();
        let (listed, cdhash) = auth_exec_of_update(&records);
        let (rt, procs, plugins) = stalled_beside_prevent_list(Duration::from_secs(6), &cdhash);
        let input = format!("{}\n{listed}\n", records[0]);
        let options = PipelineOptions {
            auth: AuthPolicy {
                verdict_timeout: Duration::from_secs(2),
                kinds: BTreeMap::from([("exec".to_owned(), Answer::Deny)]),
                ..AuthPolicy::default()
            },
            ..PipelineOptions::default()
        };
        let (out, summary) = replay(rt, plugins, procs, options, input).await;
        let answer: Vec<&Value> = out.iter().filter(|f| f["rule"] == "auth-denied").collect();
        assert_eq!(answer.len(), 1, "{out:?}");
        assert_eq!(answer[0]["evidence"]["decided_by"], "prevent-list");
        assert_eq!(summary.auth.defaulted, 0, "{:?}", summary.auth);
        let looped = summary
            .plugins
            .iter()
            .find(|p| p.name == "fixture-loop")
            .unwrap();
        assert!(
            looped.retried + looped.faults >= 1,
            "the batch was stalled: {looped:?}"
        );
    });
}

/// A detector that spins in every call (`fixture-loop`, stopped at `call_timeout`) beside
/// the prevent list, which denies `cdhash`.
fn stalled_beside_prevent_list(
    call_timeout: Duration,
    cdhash: &str,
) -> (
    Arc<Runtime>,
    ward::sandbox::state::SharedProcessTable,
    Vec<Plugin>,
) {
    let rt = runtime_with(Limits {
        call_timeout,
        ..test_limits()
    });
    let procs = processes();
    let plugins = vec![
        load_with(&rt, "fixture-loop", &[], &procs),
        load_with(&rt, "prevent-list", &[("cdhash", cdhash)], &procs),
    ];
    (rt, procs, plugins)
}

#[derive(Clone, Default)]
struct SharedSink(Arc<std::sync::Mutex<Vec<u8>>>);
impl SharedSink {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}
impl std::io::Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Class 3. Every finding about one event shares one process summary, whose arguments
/// are capped in bytes: many findings about an exec with a megabyte argv cost one capped
/// copy, not a megabyte each.
#[test]
fn findings_share_one_capped_process_summary() {
    let mut records = chain();
    let curl = records
        .iter_mut()
        .find(|v| v["event"]["exec"]["target"]["executable"]["path"] == "/usr/bin/curl")
        .unwrap();
    let mut args: Vec<Value> = curl["event"]["exec"]["args"].as_array().unwrap().clone();
    args.push(Value::from("B".repeat(900_000)));
    curl["event"]["exec"]["args"] = Value::from(args);
    let rt = runtime();
    let procs = processes();
    let plugins = first_party(&rt, &procs);
    let mut pipeline = Pipeline::new(rt, plugins, procs, PipelineOptions::default());
    let mut out = Vec::new();
    push_all(&mut pipeline, &text_lines(&records), &mut out);
    let about_curl: Vec<&FindingRecord> = out
        .iter()
        .filter(|f| f.process.path == "/usr/bin/curl")
        .collect();
    assert!(about_curl.len() >= 2, "{about_curl:?}");
    for f in &about_curl {
        assert!(
            Arc::ptr_eq(&f.process, &about_curl[0].process),
            "copied, not shared"
        );
        let bytes: usize = f
            .process
            .args
            .as_ref()
            .unwrap()
            .iter()
            .map(String::len)
            .sum();
        assert!(
            bytes <= ward::forward::finding::MAX_SUMMARY_ARGS_BYTES + 64,
            "{bytes} bytes of args"
        );
        assert!(f.process.args_total.is_some());
    }
}

/// Class 3. A deny reason of 8 MiB (from a shadow plugin, so it is only recorded) is cut
/// to the field cap while it is lifted out of the guest.
#[test]
fn a_huge_deny_reason_is_cut_to_the_field_cap() {
    let records = chain();
    let (listed, _) = auth_exec_of_update(&records);
    let rt = runtime();
    let procs = processes();
    let options = LoadOptions {
        config: BTreeMap::from([("shape".to_owned(), "reason".to_owned())]),
        mode: Mode::Shadow,
        ..LoadOptions::default()
    };
    let plugins = vec![load_wasm(&rt, "fixture-huge-output", &options, &procs)];
    let mut pipeline = Pipeline::new(rt, plugins, procs, PipelineOptions::default());
    let mut out = Vec::new();
    pipeline.push_line(listed.as_bytes(), &mut out);
    pipeline.finish(&mut out);
    let shadow: Vec<_> = out.iter().filter(|f| f.rule == "auth-denied").collect();
    assert_eq!(shadow.len(), 1, "{out:?}");
    let reason = &shadow[0]
        .evidence
        .iter()
        .find(|(k, _)| k == "reason")
        .unwrap()
        .1;
    assert!(
        reason.len() < 9 << 10,
        "{} bytes of reason kept",
        reason.len()
    );
    assert!(reason.ends_with("bytes cut]"));
}

/// Class 4. One pid exec'ing itself thousands of times between the attacker's steps no
/// longer evicts the attacker's older images: the account created and hidden by tools
/// that descend from the ad-hoc dropper stay high severity, the dropper named.
#[test]
fn lineage_survives_an_exec_loop() {
    let text =
        std::fs::read_to_string(root().join("examples/streams/account-takeover.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let template = first_exec(&records);
    let mut input: Vec<String> = text_lines(&records[..6]);
    for n in 0..3_000 {
        let mut v = template.clone();
        v["process"]["audit_token"]["pid"] = Value::from(4_242);
        v["process"]["audit_token"]["pidversion"] = Value::from(n);
        v["process"]["executable"]["path"] = Value::from("/usr/bin/true");
        let target = &mut v["event"]["exec"]["target"];
        target["audit_token"]["pid"] = Value::from(4_242);
        target["audit_token"]["pidversion"] = Value::from(n + 1);
        target["executable"]["path"] = Value::from("/usr/bin/true");
        v["event"]["exec"]["args"] = Value::from(vec!["true"]);
        input.push(v.to_string());
    }
    input.extend(text_lines(&records[6..]));
    let rt = runtime();
    let procs: ward::sandbox::state::SharedProcessTable =
        Arc::new(std::sync::RwLock::new(ward_event::ProcessTable::new(256)));
    let plugins = vec![load_wasm(
        &rt,
        "account-manipulation",
        &LoadOptions::default(),
        &procs,
    )];
    let mut pipeline = Pipeline::new(rt, plugins, procs, PipelineOptions::default());
    let mut out = Vec::new();
    push_all(&mut pipeline, &input, &mut out);
    let hidden = out.iter().find(|f| f.rule == "account-hidden").unwrap();
    assert_eq!(hidden.severity, "high", "{hidden:?}");
    assert!(
        hidden
            .evidence
            .iter()
            .any(|(k, v)| k == "untrusted_code" && v == "/private/tmp/.helper"),
        "{hidden:?}"
    );
}

/// Class 5. A `describe()` with a 100,000-entry prefilter (which the router scanned
/// linearly per event) is refused at load, before any list is read past the cap.
#[test]
fn a_huge_prefilter_is_refused_at_load() {
    let rt = runtime();
    let procs = processes();
    let options = LoadOptions {
        config: BTreeMap::from([("shape".to_owned(), "prefilter".to_owned())]),
        ..LoadOptions::default()
    };
    let source =
        ward::registry::load::PluginSource::from_file(&wasm("fixture-huge-output")).unwrap();
    let err = ward::registry::load::load(&rt, &source, &options, &procs)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("describe() failed"), "{err}");
    assert!(err.contains("a list of 100000 items"), "{err}");
}

/// Class 9. A compile-cache entry is native code: it runs only if this agent wrote it for
/// this component. An entry rewritten with a matching checksum (the old scheme's only
/// check), an entry of one component put in place of another's, and `int3` bytes are all
/// refused and recompiled — never executed.
#[test]
fn a_forged_compile_cache_entry_is_never_executed() {
    use ward::registry::cache::{CacheOutcome, CompileCache};
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let engine = ward::sandbox::engine::build_engine().unwrap();
    let cache = CompileCache::open(&cache_dir, &engine).unwrap();
    let prevent = std::fs::read(wasm("prevent-list")).unwrap();
    let untrusted = std::fs::read(wasm("untrusted-exec")).unwrap();
    let (p_digest, u_digest) = (
        ward::registry::load::sha256_hex(&prevent),
        ward::registry::load::sha256_hex(&untrusted),
    );
    for (d, b) in [(&p_digest, &prevent), (&u_digest, &untrusted)] {
        assert_eq!(
            cache.load_or_compile(&engine, d, b).unwrap().1,
            CacheOutcome::Miss
        );
    }
    let entry = |digest: &str| {
        std::fs::read_dir(&cache_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(digest))
            .unwrap()
    };
    let (p_entry, u_entry) = (entry(&p_digest), entry(&u_digest));

    // untrusted-exec's (validly tagged) entry in prevent-list's place.
    std::fs::copy(&u_entry, &p_entry).unwrap();
    let (component, outcome) = cache.load_or_compile(&engine, &p_digest, &prevent).unwrap();
    assert_eq!(outcome, CacheOutcome::Miss, "a swapped entry was loaded");
    let exports: Vec<String> = component
        .component_type()
        .exports(&engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    assert!(exports.iter().any(|e| e == "authorize"), "{exports:?}");
    assert_eq!(
        cache
            .load_or_compile(&engine, &p_digest, &prevent)
            .unwrap()
            .1,
        CacheOutcome::Hit
    );

    // `int3` bytes with a fresh sha-256 sidecar, as the old cache would have accepted, and
    // the same bytes under this format's magic with a made-up tag.
    let int3 = vec![0xccu8; 4096];
    for forged in [
        int3.clone(),
        [b"wardcw01".as_slice(), &[0u8; 32], &int3].concat(),
    ] {
        std::fs::write(&p_entry, &forged).unwrap();
        std::fs::write(
            p_entry.with_extension("sha256"),
            ward::registry::load::sha256_hex(&forged),
        )
        .unwrap();
        assert_eq!(
            cache
                .load_or_compile(&engine, &p_digest, &prevent)
                .unwrap()
                .1,
            CacheOutcome::Miss
        );
    }

    // A key readable by others, or a cache directory others can write, is refused; so is
    // a cache directory owned by another user (checked where this test runs as root).
    let key = ward::registry::cache::key_path(&cache_dir);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CompileCache::open(&cache_dir, &engine).unwrap_err();
    assert!(format!("{err:#}").contains("readable by others"), "{err:#}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = CompileCache::open(&cache_dir, &engine).unwrap_err();
    assert!(
        format!("{err:#}").contains("can be written by others"),
        "{err:#}"
    );
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(CompileCache::open(&cache_dir, &engine).is_ok());
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&cache_dir, Some(65534), None).unwrap();
        let err = CompileCache::open(&cache_dir, &engine).unwrap_err();
        assert!(format!("{err:#}").contains("owned by uid 65534"), "{err:#}");
    } else {
        eprintln!("skipping the other-owner case: changing a directory's owner needs root");
    }
    // The runtime carries on without a cache it refused: components compile uncached.
    let rt = Runtime::new(test_limits(), Some(&cache_dir)).unwrap();
    assert!(rt.cache.is_none());
}

/// Runs `plugins` over `input` with the threaded pipeline (reader, AUTH lane, detection
/// stage, writer), as `ward replay` does.
async fn replay(
    rt: Arc<Runtime>,
    plugins: Vec<Plugin>,
    procs: ward::sandbox::state::SharedProcessTable,
    options: PipelineOptions,
    input: String,
) -> (Vec<Value>, ward::detect::pipeline::Summary) {
    let pipeline = Pipeline::new(rt, plugins, procs, options);
    let sink = SharedSink::default();
    let summary = ward::detect::run::run_stream(
        pipeline,
        std::io::Cursor::new(input.into_bytes()),
        sink.clone(),
    )
    .await
    .unwrap();
    (lines(&sink.bytes()), summary)
}

/// Class 2. A burst of AUTH events read at once is decided side by side: each listed exec
/// is denied by the prevent list within its own window, although a slow plugin takes each
/// window whole; and the slow plugin is blamed only for the time it was given in full
/// (once), never for the windows the burst cut short, so the burst cannot get it
/// quarantined. A slow shadow plugin delays none of it.
#[test]
fn a_burst_of_auth_events_is_decided_side_by_side() {
    // A plugin that nothing stopped would hang the run: fail it instead.
    within_async(Duration::from_secs(120), || async {
        let records = chain();
        let (listed, cdhash) = auth_exec_of_update(&records);
        let burst: String = (0..6).map(|_| format!("{listed}\n")).collect();
        let policy = AuthPolicy {
            verdict_timeout: Duration::from_millis(200),
            kinds: BTreeMap::from([("exec".to_owned(), Answer::Deny)]),
            ..AuthPolicy::default()
        };
        for slow_mode in [Mode::Enforce, Mode::Shadow] {
            let rt = runtime_with(Limits {
                call_timeout: Duration::from_secs(3600),
                ..test_limits()
            });
            let procs = processes();
            let slow = load_wasm(
                &rt,
                "fixture-slow-verdict",
                &LoadOptions {
                    mode: slow_mode,
                    ..LoadOptions::default()
                },
                &procs,
            );
            let list = load_with(&rt, "prevent-list", &[("cdhash", &cdhash)], &procs);
            let options = PipelineOptions {
                auth: policy.clone(),
                ..PipelineOptions::default()
            };
            let (out, summary) = replay(rt, vec![slow, list], procs, options, burst.clone()).await;
            let denied = out
                .iter()
                .filter(|f| f["rule"] == "auth-denied" && f["shadow"].is_null())
                .filter(|f| f["evidence"]["decided_by"] == "prevent-list")
                .count();
            assert_eq!(denied, 6, "{slow_mode:?}: {out:?}");
            assert_eq!(
                summary.auth.defaulted, 0,
                "{slow_mode:?}: {:?}",
                summary.auth
            );
            let slow = summary
                .plugins
                .iter()
                .find(|p| p.name == "fixture-slow-verdict")
                .unwrap();
            assert!(
                slow.faults <= 1,
                "{slow_mode:?}: blamed for windows cut short: {slow:?}"
            );
            assert_eq!(slow.quarantines, 0, "{slow_mode:?}: {slow:?}");
        }
    });
}

/// Class 2. The AUTH lane decides with a process table that is up to date with the event:
/// the reader records every event before handing AUTH ones on, so a stalled detection
/// stage does not leave the verdict's record without the parent forked just before.
#[test]
fn the_auth_lane_sees_the_process_table_up_to_date() {
    // A plugin that nothing stopped would hang the run: fail it instead.
    within_async(Duration::from_secs(120), || async {
        let records = chain();
        let (listed, cdhash) = auth_exec_of_update(&records);
        let v: Value = serde_json::from_str(&listed).unwrap();
        let parent = v["process"]["parent_audit_token"].clone();
        // The fork that made the exec's process, from its parent, just before it.
        let fork = records
            .iter()
            .find(|r| {
                r["event"]["fork"]["child"]["audit_token"]["pid"]
                    == v["process"]["audit_token"]["pid"]
            })
            .unwrap()
            .clone();
        let (rt, procs, plugins) = stalled_beside_prevent_list(Duration::from_secs(1), &cdhash);
        // The detection stage takes events one at a time and stalls a second on each (the
        // loop); two large fillers close the reader's first chunk, so the fork and the AUTH
        // exec reach the stage only after its stall, and the lane long before.
        let template = first_exec(&records);
        let input = format!(
            "{}\n{}\n{}\n{fork}\n{listed}\n",
            records[0],
            huge_exec(&template, 1, 600_000),
            huge_exec(&template, 2, 600_000)
        );
        let options = PipelineOptions {
            batch_size: 1,
            auth: AuthPolicy {
                verdict_timeout: Duration::from_millis(500),
                ..AuthPolicy::default()
            },
            ..PipelineOptions::default()
        };
        let (out, _) = replay(rt, plugins, procs, options, input).await;
        let denied = out.iter().find(|f| f["rule"] == "auth-denied").unwrap();
        assert_eq!(
            denied["process"]["parent"]["pid"], parent["pid"],
            "{denied}"
        );
    });
}
