//! `ward bench --suite content`: all default content over two streams — a busy, quiet Mac
//! (`ward gen`) and a Mac under attack (`ward gen --mix attack`) — each run the way a user
//! runs it (`ward replay FILE` as a child process) side by side with one jq filter (and
//! chainsaw with SigmaHQ's macOS rules, when one is installed) over the same file: events/s,
//! CPU µs per event, peak RSS. Then where the time goes, plugin by plugin, in process.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::synth::Mix;
use crate::sandbox::engine::Limits;
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;
use ward_event::ProcessTable;

/// One jq filter of the kind a responder writes by hand: exec events of binaries under
/// `/private/tmp`, printing the path.
pub const JQ_FILTER: &str = r#"select(.event.exec != null) | select(.event.exec.target.executable.path | startswith("/private/tmp/")) | .event.exec.target.executable.path"#;

/// What a child process cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildRun {
    /// Spawn to exit.
    pub wall: Duration,
    /// User plus system CPU.
    pub cpu: Duration,
    /// Peak resident memory, bytes.
    pub rss: u64,
    /// Lines it wrote on stdout.
    pub lines: u64,
}

/// Runs `command` to its end, counting its stdout lines; fails if it fails. On Linux the
/// peak RSS is read from `/proc/<pid>/status` (VmHWM) while it runs — `ru_maxrss` there
/// starts from the parent's size at fork — elsewhere it is `ru_maxrss`.
pub fn run_child(command: &mut Command) -> anyhow::Result<ChildRun> {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let counter = std::thread::spawn(move || {
        let mut reader = std::io::BufReader::with_capacity(1 << 16, stdout);
        let mut lines = 0u64;
        while let Ok(buf) = reader.fill_buf()
            && !buf.is_empty()
        {
            lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
            let n = buf.len();
            reader.consume(n);
        }
        lines
    });
    let pid = i32::try_from(child.id()).context("pid")?;
    let status_path = format!("/proc/{pid}/status");
    let mut peak = 0u64;
    let (status, usage) = loop {
        if cfg!(target_os = "linux")
            && let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib * 1024);
        }
        if let Some(done) = wait4(pid, true)? {
            break done;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    let lines = counter.join().unwrap_or(0);
    anyhow::ensure!(
        status.success(),
        "{:?} failed: {status}",
        command.get_program()
    );
    if !cfg!(target_os = "linux") {
        peak = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(ChildRun {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        rss: peak,
        lines,
    })
}

/// `wait4` for the child `pid`: its status and resource usage once it has exited, `None`
/// while it runs (with `nohang`).
fn wait4(pid: i32, nohang: bool) -> anyhow::Result<Option<(ExitStatus, libc::rusage)>> {
    use std::os::unix::process::ExitStatusExt as _;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `pid` is a child this process
    // spawned and has not reaped (std's `Child` is never waited on by the caller).
    #[allow(unsafe_code)]
    let (got, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let flags = if nohang { libc::WNOHANG } else { 0 };
        let got = libc::wait4(pid, &mut status, flags, &mut usage);
        (got, usage)
    };
    if got < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    Ok((got == pid).then(|| (ExitStatus::from_raw(status), usage)))
}

/// A generated stream of `n` events written to `path`.
fn write_stream(path: &Path, n: usize, mix: Mix) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    crate::cli::synth::write_mix(n as u64, 1, mix, &mut out)?;
    out.flush()?;
    Ok(())
}

fn row(label: &str, n: usize, run: &ChildRun, extra: &str) {
    println!(
        "  {label:<44} {:>10.0} events/s {:>7.2} CPU-µs/ev {:>6.1} MiB  {extra}",
        n as f64 / run.wall.as_secs_f64(),
        run.cpu.as_secs_f64() * 1e6 / n as f64,
        run.rss as f64 / f64::from(1 << 20),
    );
}

/// Best (least wall) of `runs` runs of `command`.
fn best_of(runs: usize, mut command: impl FnMut() -> Command) -> anyhow::Result<ChildRun> {
    let mut best: Option<ChildRun> = None;
    for _ in 0..runs {
        let run = run_child(&mut command())?;
        if best.is_none_or(|b| run.wall < b.wall) {
            best = Some(run);
        }
    }
    best.context("no run")
}

/// Chainsaw's command line from `WARD_BENCH_CHAINSAW`, `{file}` standing for the stream
/// (e.g. `chainsaw hunt {file} -s sigma/rules/macos --mapping macos.yml --json`): chainsaw
/// is GPL-3.0 and its eslogger mapping is the user's, so ward never ships either.
fn chainsaw() -> Result<Vec<String>, String> {
    match std::env::var("WARD_BENCH_CHAINSAW") {
        Ok(line) if !line.trim().is_empty() => {
            Ok(line.split_whitespace().map(str::to_owned).collect())
        }
        _ => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            if std::env::split_paths(&path).any(|d| d.join("chainsaw").is_file()) {
                Err("chainsaw is installed; set WARD_BENCH_CHAINSAW to its command line ({file} for the stream)".into())
            } else {
                Err("chainsaw is not installed (set WARD_BENCH_CHAINSAW to its command line, {file} for the stream)".into())
            }
        }
    }
}

/// The side-by-side table for both streams, then the per-plugin breakdown of each.
pub fn run(ward: &Path, n: usize, batch: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let cache = crate::config::WardConfig::default().cache_dir();
    let ward_replay = |path: &Path| {
        let mut c = Command::new(ward);
        c.arg("replay").arg(path);
        if let Some(dir) = &cache {
            c.env("WARD_CACHE_DIR", dir);
        }
        c
    };
    // Compiles land in the cache first: start-up is measured elsewhere.
    let warm = dir.path().join("warm.jsonl");
    write_stream(&warm, 10, Mix::Quiet)?;
    run_child(&mut ward_replay(&warm))?;
    let peer = chainsaw();
    let mut streams = Vec::new();
    for (mix, label) in [(Mix::Quiet, "quiet"), (Mix::Attack, "attack")] {
        let path = dir.path().join(format!("{label}.jsonl"));
        write_stream(&path, n, mix)?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "content, {label} Mac ({}): {n} events, {} MB",
            match mix {
                Mix::Quiet => "`ward gen`, seed 1",
                Mix::Attack => "`ward gen --mix attack`",
            },
            bytes / 1_000_000
        );
        let jq = best_of(3, || {
            let mut c = Command::new("jq");
            c.arg("-c").arg(JQ_FILTER).arg(&path);
            c
        });
        match &jq {
            Ok(run) => row("jq, one filter (exec from /private/tmp)", n, run, ""),
            Err(e) => println!("  jq: skipped: {e:#}"),
        }
        match &peer {
            Ok(argv) => match best_of(3, || {
                let file = path.display().to_string();
                let mut args = argv.iter().map(|a| a.replace("{file}", &file));
                let mut c = Command::new(args.next().unwrap_or_default());
                c.args(args);
                c
            }) {
                Ok(run) => row("chainsaw (WARD_BENCH_CHAINSAW)", n, &run, ""),
                Err(e) => println!("  chainsaw: skipped: {e:#}"),
            },
            Err(why) => println!("  chainsaw: skipped: {why}"),
        }
        let ward_run = best_of(3, || ward_replay(&path))?;
        row(
            "ward replay, all default content",
            n,
            &ward_run,
            &format!("{} findings", ward_run.lines),
        );
        if let Ok(jq) = &jq {
            println!(
                "  {:<44} {:>10.1}x",
                "ward all content / jq one filter",
                jq.wall.as_secs_f64() / ward_run.wall.as_secs_f64()
            );
        }
        if mix == Mix::Attack {
            // The same with every finding committed to the outbox first (a fresh state
            // directory each run).
            let mut runs = 0;
            let with_outbox = best_of(3, || {
                runs += 1;
                let state = dir.path().join(format!("state-{runs}"));
                let mut c = ward_replay(&path);
                c.arg("--state").arg(state);
                c
            })?;
            row(
                "ward replay --state (findings to the outbox)",
                n,
                &with_outbox,
                &format!("{} findings", with_outbox.lines),
            );
            println!(
                "  {:<44} {:>+10.1}% wall, {:+.1}% CPU",
                "outbox cost",
                100.0 * (with_outbox.wall.as_secs_f64() / ward_run.wall.as_secs_f64() - 1.0),
                100.0 * (with_outbox.cpu.as_secs_f64() / ward_run.cpu.as_secs_f64() - 1.0),
            );
        }
        streams.push((label, path, ward_run));
    }
    if let [(_, _, quiet), (_, _, attack)] = streams.as_slice() {
        println!(
            "  CPU per event, attack / quiet: {:.2}x",
            attack.cpu.as_secs_f64() / quiet.cpu.as_secs_f64()
        );
    }
    for (label, path, _) in &streams {
        let text = std::fs::read_to_string(path)?;
        let lines: Vec<&str> = text.lines().collect();
        per_plugin(label, &lines, batch)?;
    }
    Ok(())
}

/// The default content in process over `lines`: where the time goes, plugin by plugin.
fn per_plugin(label: &str, lines: &[&str], batch: usize) -> anyhow::Result<()> {
    let config = crate::config::WardConfig::default();
    let rt = Arc::new(Runtime::new(
        Limits::default(),
        config.cache_dir().as_deref(),
    )?);
    let processes: SharedProcessTable = Arc::new(RwLock::new(ProcessTable::default()));
    let loaded = crate::registry::load_all(&rt, &config, &processes);
    anyhow::ensure!(
        loaded.errors.is_empty(),
        "default content refused: {:?}",
        loaded.errors
    );
    let mut pipeline = crate::detect::pipeline::Pipeline::new(
        rt,
        loaded.plugins,
        processes,
        crate::detect::pipeline::PipelineOptions {
            batch_size: batch,
            // One thread, so each plugin's share of the wall time adds up.
            detect_threads: 1,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    let mut findings = 0usize;
    let start = Instant::now();
    for l in lines {
        pipeline.push_line(l.as_bytes(), &mut out);
        if out.len() >= 1024 {
            findings += out.len();
            for f in out.drain(..) {
                std::hint::black_box(f.to_json_line());
            }
        }
    }
    pipeline.flush(&mut out);
    findings += out.len();
    for f in out.drain(..) {
        std::hint::black_box(f.to_json_line());
    }
    let total = start.elapsed().as_secs_f64() * 1e6;
    println!(
        "where the time goes, {label} Mac, in process ({:.2} µs/event, {findings} findings):",
        total / lines.len().max(1) as f64
    );
    println!(
        "  {:<22} {:>10} {:>10} {:>12} {:>8}",
        "plugin", "events", "calls", "µs/event", "share"
    );
    for p in &pipeline.summary().plugins {
        let busy = p.busy.as_secs_f64() * 1e6;
        println!(
            "  {:<22} {:>10} {:>10} {:>12.2} {:>7.1}%",
            p.name,
            p.events,
            p.calls,
            busy / p.events.max(1) as f64,
            100.0 * busy / total
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
