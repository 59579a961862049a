//! `ward bench`: events/s for parse only, a native-Rust detector, and the same rule as a
//! sandboxed component called once per event and in batches. Numbers go in the README.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::ingest::convert;
use crate::registry::builtin;
use crate::registry::load::{LoadOptions, load};
use crate::sandbox::bindings::wit;
use crate::sandbox::engine::Limits;
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;
use ward_event::{ProcessTable, parse_line};

const PATHS: &[(&str, &str, bool)] = &[
    ("/bin/ls", "com.apple.ls", true),
    ("/usr/bin/git", "com.apple.git", true),
    (
        "/Applications/Slack.app/Contents/MacOS/Slack",
        "com.tinyspeck.slackmacgap",
        false,
    ),
    ("/private/tmp/update", "update-5555494489", false),
    ("/usr/bin/curl", "com.apple.curl", true),
    ("/Users/alice/Downloads/Installer", "Installer-1234", false),
];

/// `n` exec lines shaped like real eslogger output (~2 KB each).
pub fn exec_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (path, signing_id, platform) = PATHS.get(i % PATHS.len()).copied().unwrap_or(("/bin/ls", "com.apple.ls", true));
            let pid = 1000 + (i % 30_000) as i64;
            let token = |pid: i64, pv: i64| json!({"asid":100013,"auid":501,"egid":20,"euid":501,"pid":pid,"pidversion":pv,"rgid":20,"ruid":501});
            let stat = json!({"st_dev":16777231,"st_ino":1000 + i,"st_mode":33261,"st_nlink":1,"st_uid":0,"st_gid":0,"st_rdev":0,"st_size":154624,"st_blocks":304,"st_blksize":4096,"st_flags":0,"st_gen":0,"st_atimespec":"2026-01-01T00:00:00.000000000Z","st_mtimespec":"2026-01-01T00:00:00.000000000Z","st_ctimespec":"2026-01-01T00:00:00.000000000Z","st_birthtimespec":"2026-01-01T00:00:00.000000000Z"});
            let process = |path: &str, sid: &str, platform: bool, pv: i64| {
                json!({
                    "audit_token": token(pid, pv), "parent_audit_token": token(1, 1), "responsible_audit_token": token(1, 1),
                    "ppid": 1, "original_ppid": 1, "group_id": pid, "session_id": pid,
                    "codesigning_flags": if platform { 637_618_689 } else { 570_556_931 },
                    "is_platform_binary": platform, "is_es_client": false,
                    "cdhash": "00112233445566778899AABBCCDDEEFF01234567", "signing_id": sid, "team_id": null,
                    "executable": {"path": path, "path_truncated": false, "stat": stat},
                    "tty": null, "start_time": "2026-01-01T00:00:00.000000Z", "cs_validation_category": if platform { 1 } else { 10 }
                })
            };
            json!({
                "schema_version": 1, "version": 10, "time": "2026-10-05T00:00:01.000000000Z", "mach_time": 2_000_000_000u64 + i as u64,
                "event_type": 9, "seq_num": i, "global_seq_num": i, "thread": {"thread_id": 900_101}, "action_type": 1,
                "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
                "process": process("/bin/zsh", "com.apple.zsh", true, 10),
                "event": {"exec": {
                    "target": process(path, signing_id, platform, 11),
                    "args": [path, "--verbose", "--config", "/Users/alice/.config/tool/config.toml", "--output", format!("/tmp/out-{i}")],
                    "env": ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/Users/alice", "SHELL=/bin/zsh", "TERM=xterm-256color", "LANG=en_US.UTF-8"],
                    "cwd": {"path": "/Users/alice", "path_truncated": false, "stat": {}},
                    "script": null, "dyld_exec_path": path, "last_fd": 3,
                    "fds": [{"fd": 0, "fdtype": 1}, {"fd": 1, "fdtype": 1}, {"fd": 2, "fdtype": 1}],
                    "image_cputype": 16_777_228, "image_cpusubtype": 2
                }}
            })
            .to_string()
        })
        .collect()
}

/// The untrusted-exec rule written natively against the host's WIT types, for comparison.
pub fn native_untrusted_exec(event: &wit::Event) -> Option<wit::Finding> {
    let wit::EventData::Exec(exec) = &event.data else {
        return None;
    };
    let t = &exec.target;
    let untrusted = matches!(t.signer, wit::SignerType::Adhoc | wit::SignerType::Unsigned);
    let p = t.executable.path.as_str();
    let staging = [
        "/tmp/",
        "/private/tmp/",
        "/private/var/tmp/",
        "/private/var/folders/",
        "/Users/Shared/",
    ]
    .iter()
    .any(|s| p.starts_with(s))
        || (p.starts_with("/Users/") && p.split('/').nth(3) == Some("Downloads"));
    (untrusted && staging).then(|| wit::Finding {
        rule: "untrusted-exec-from-staging-path".into(),
        severity: wit::Severity::High,
        attack: vec!["T1204.002".into()],
        message: format!("binary {p} executed from a staging path"),
        evidence: vec![wit::Evidence {
            name: "path".into(),
            value: p.into(),
        }],
    })
}

fn report(name: &str, events: usize, start: Instant, findings: usize) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<44} {:>12.0} events/s   ({events} events in {secs:.3}s, {findings} findings)",
        events as f64 / secs
    );
}

/// The untrusted-exec component called once per event, then `batch` events per call.
fn component_runs(rt: &Runtime, lines: &[String], batch: usize, label: &str) -> anyhow::Result<()> {
    let n = lines.len();
    let processes: SharedProcessTable = Arc::new(RwLock::new(ProcessTable::default()));
    let source = builtin::builtin_sources()
        .into_iter()
        .find(|s| s.origin == "builtin:untrusted-exec")
        .context("the untrusted-exec plugin is not built in")?;
    let mut plugin = load(rt, &source, &LoadOptions::default(), &processes)?;
    let call = |plugin: &mut crate::sandbox::plugin::Plugin, events: &[wit::Event]| {
        let events: Vec<&wit::Event> = events.iter().collect();
        plugin
            .on_events(rt, &events)
            .map(|d| d.len())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };

    // Pure call overhead: an empty batch crosses the boundary and back with nothing to do.
    let start = Instant::now();
    for _ in 0..n {
        call(&mut plugin, &[])?;
    }
    let per_call = start.elapsed().as_secs_f64() / n.max(1) as f64;
    println!(
        "{:<56} {:>12.2} µs/call  ({n} calls)",
        format!("empty call (overhead only), {label}"),
        per_call * 1e6
    );

    let start = Instant::now();
    let mut found = 0;
    for l in lines {
        let msg = parse_line(l.as_bytes(), usize::MAX).context("parse")?;
        found += call(&mut plugin, std::slice::from_ref(&convert::event(&msg)))?;
    }
    report(
        &format!("component, 1 event/call, {label}"),
        n,
        start,
        found,
    );

    let start = Instant::now();
    let mut found = 0;
    let mut pending = Vec::with_capacity(batch);
    for l in lines {
        let msg = parse_line(l.as_bytes(), usize::MAX).context("parse")?;
        pending.push(convert::event(&msg));
        if pending.len() >= batch {
            found += call(&mut plugin, &pending)?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        found += call(&mut plugin, &pending)?;
    }
    report(
        &format!("component, {batch} events/call, {label}"),
        n,
        start,
        found,
    );
    Ok(())
}

/// Ingestion over a `ward gen` stream: untyped `serde_json::Value` as the baseline, typed
/// parsing, and the full ingest path (parse + process table + WIT normalisation).
fn ingestion(n: usize) -> anyhow::Result<()> {
    let mut generator = crate::cli::synth::Generator::new(1);
    let lines: Vec<String> = (0..n).map(|_| generator.next_line()).collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "ingestion: {n} `ward gen` events (seed 1), {} bytes per line on average",
        bytes / n.max(1)
    );
    let mb = bytes as f64 / 1e6;
    let rate = |name: &str, start: Instant| {
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:<56} {:>12.0} events/s   {:>6.0} MB/s",
            n as f64 / secs,
            mb / secs
        );
    };

    let start = Instant::now();
    let mut ok = 0usize;
    for l in &lines {
        ok += usize::from(serde_json::from_str::<serde_json::Value>(l).is_ok());
    }
    rate("serde_json::Value (untyped baseline)", start);
    anyhow::ensure!(ok == n, "baseline parsed {ok} of {n}");

    let start = Instant::now();
    for l in &lines {
        std::hint::black_box(parse_line(l.as_bytes(), usize::MAX).context("parse")?);
    }
    rate("typed parse (ward-event)", start);

    let mut table = ProcessTable::default();
    let start = Instant::now();
    for l in &lines {
        let msg = parse_line(l.as_bytes(), usize::MAX).context("parse")?;
        table.observe(&msg);
        std::hint::black_box(convert::event(&msg));
    }
    rate("typed parse + process table + normalise to WIT", start);
    println!(
        "process table: {} images tracked, ~{} bytes per image",
        table.len(),
        table.approx_bytes() / table.len().max(1)
    );
    Ok(())
}

/// Runs `lines` through a pipeline holding only the jamf-analytics component with
/// `config`; returns the seconds spent inside the component (parsing excluded: less
/// noise to subtract).
fn time_jamf(
    rt: &Arc<Runtime>,
    source: &crate::registry::load::PluginSource,
    config: std::collections::BTreeMap<String, String>,
    lines: &[String],
    batch: usize,
) -> anyhow::Result<f64> {
    let processes: SharedProcessTable = Arc::new(RwLock::new(ProcessTable::default()));
    let options = LoadOptions {
        config,
        ..LoadOptions::default()
    };
    let plugin = load(rt, source, &options, &processes)?;
    let mut pipeline = crate::detect::pipeline::Pipeline::new(
        Arc::clone(rt),
        vec![plugin],
        processes,
        crate::detect::pipeline::PipelineOptions {
            batch_size: batch,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    for l in lines {
        pipeline.push_line(l.as_bytes(), &mut out);
        out.clear();
    }
    pipeline.flush(&mut out);
    let summary = pipeline.summary();
    Ok(summary
        .plugins
        .first()
        .map_or(0.0, |p| p.busy.as_secs_f64()))
}

/// Cost of each bundled Jamf analytic: the jamf-analytics component with that analytic
/// alone, minus the component with none (mapping and call cost), over the same events.
fn per_analytic(lines: &[String], batch: usize) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/jamf-analytics/analytics");
    if !dir.is_dir() {
        println!(
            "per-analytic cost: skipped: {} not found (run from a source checkout)",
            dir.display()
        );
        return Ok(());
    }
    let mut files = Vec::new();
    crate::config::walk::yaml_files(&dir, &mut files)?;
    files.sort();
    let source = builtin::builtin_sources()
        .into_iter()
        .find(|s| s.origin == "builtin:jamf-analytics")
        .context("jamf-analytics is not built in")?;
    // The component is loaded once per analytic: compile it once, then hit the cache.
    let cache = crate::config::WardConfig::default().cache_dir();
    let rt = Arc::new(Runtime::new(Limits::default(), cache.as_deref())?);
    let n = lines.len() as f64;
    let config = |analytics: Option<(&str, &str)>| {
        let mut c = std::collections::BTreeMap::from([("bundled".to_owned(), "false".to_owned())]);
        if let Some((name, yaml)) = analytics {
            c.insert("analytics".into(), json!({ name: yaml }).to_string());
        }
        c
    };
    // Best of five for the baseline (it is subtracted from every row), best of two per
    // analytic: on a shared machine the minimum is the stable figure. (Once each on a
    // stream too small to time, where only the run itself is being checked.)
    let (base_runs, runs) = if lines.len() >= 5_000 { (5, 2) } else { (1, 1) };
    let mut base = f64::MAX;
    for _ in 0..base_runs {
        base = base.min(time_jamf(&rt, &source, config(None), lines, batch)?);
    }
    let mut costs: Vec<(String, f64)> = Vec::new();
    for file in &files {
        let yaml = std::fs::read_to_string(file)?;
        let Ok(analytic) = ward_predicate::parse_analytic(&yaml) else {
            continue;
        };
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(file)
            .display()
            .to_string();
        let mut secs = f64::MAX;
        for _ in 0..runs {
            let run = time_jamf(&rt, &source, config(Some((&name, &yaml))), lines, batch)?;
            secs = secs.min(run);
        }
        costs.push((analytic.name, ((secs - base) / n * 1e9).max(0.0)));
    }
    costs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = costs.iter().map(|(_, c)| c).sum();
    let median = costs.get(costs.len() / 2).map_or(0.0, |(_, c)| *c);
    println!(
        "per analytic ({} analytics, {} events): in the component with no analytic (copy in, mapping) {:.2} µs/event; \
         analytics add {:.0} ns/event together, median {median:.0} ns",
        costs.len(),
        lines.len(),
        base / n * 1e6,
        total
    );
    for (name, cost) in costs.iter().take(10) {
        println!("  {name:<52} {cost:>8.0} ns/event");
    }
    Ok(())
}

/// What `ward bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Everything below.
    All,
    /// Parsing, process table and normalisation.
    Ingestion,
    /// The sandbox: native rule vs component, call overhead.
    Sandbox,
    /// All default content on a quiet and an attacked Mac vs one jq filter, and per-plugin cost.
    Content,
    /// The live agent: hot swap, cold start with 20 plugins, AUTH latency under load.
    Live,
    /// The response stage: finding → first action, evidence collection and bundle size.
    Respond,
    /// An agent's CPU and memory over time: idle, and following 2,000 events/s.
    Steady,
    /// Findings through the outbox to each kind of sink.
    Forward,
}

/// Runs the measurements of `suite` over `n` generated events (the steady suite for
/// `seconds`).
pub fn run(n: usize, batch: usize, suite: Suite, seconds: u64) -> anyhow::Result<()> {
    if matches!(suite, Suite::All | Suite::Forward) {
        let ward = std::env::current_exe().context("finding the ward executable")?;
        crate::cli::bench_forward::run(&ward, n.min(30_000))?;
        if matches!(suite, Suite::Forward) {
            return Ok(());
        }
    }
    if matches!(suite, Suite::All | Suite::Steady) {
        let ward = std::env::current_exe().context("finding the ward executable")?;
        crate::cli::bench_steady::run(&ward, seconds)?;
        if matches!(suite, Suite::Steady) {
            return Ok(());
        }
    }
    if matches!(suite, Suite::All | Suite::Respond) {
        crate::cli::bench_respond::run()?;
        if matches!(suite, Suite::Respond) {
            return Ok(());
        }
    }
    if matches!(suite, Suite::All | Suite::Live) {
        let ward = std::env::current_exe().context("finding the ward executable")?;
        crate::cli::bench_live::run(&ward)?;
        if matches!(suite, Suite::Live) {
            return Ok(());
        }
    }
    if matches!(suite, Suite::All | Suite::Content) {
        let ward = std::env::current_exe().context("finding the ward executable")?;
        crate::cli::bench_content::run(&ward, n, batch)?;
        let mut generator = crate::cli::synth::Generator::new(2);
        let lines: Vec<String> = (0..n.min(20_000)).map(|_| generator.next_line()).collect();
        per_analytic(&lines, batch)?;
    }
    if matches!(suite, Suite::All | Suite::Ingestion) {
        ingestion(n)?;
    }
    if !matches!(suite, Suite::All | Suite::Sandbox) {
        return Ok(());
    }
    let lines = exec_lines(n);
    let avg = lines.iter().map(String::len).sum::<usize>() / lines.len().max(1);
    println!("ward bench: {n} exec events, {avg} bytes per line on average, batch {batch}");

    let start = Instant::now();
    let mut parsed = 0;
    for l in &lines {
        if parse_line(l.as_bytes(), usize::MAX).is_ok() {
            parsed += 1;
        }
    }
    report("parse only", n, start, 0);
    anyhow::ensure!(parsed == n, "only {parsed} of {n} generated lines parsed");

    let start = Instant::now();
    let mut found = 0;
    for l in &lines {
        let msg = parse_line(l.as_bytes(), usize::MAX).context("parse")?;
        found += usize::from(native_untrusted_exec(&convert::event(&msg)).is_some());
    }
    report("native detector (parse + convert + rule)", n, start, found);

    for concurrency_support in [false, true] {
        let engine = crate::sandbox::engine::build_engine_with(concurrency_support)?;
        let rt = Runtime::with_engine(engine, Limits::default(), None)?;
        let label = if concurrency_support {
            "concurrency_support on"
        } else {
            "concurrency_support off"
        };
        component_runs(&rt, &lines, batch, label)?;
    }
    Ok(())
}
