//! `ward bench --suite live`: the figures of a live agent — a hot swap with a cached
//! compile, a cold start with 20 cached plugins and its resident memory, and AUTH verdict
//! latency while bulk traffic flows.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::WardConfig;
use crate::detect::pipeline::{Pipeline, PipelineOptions};
use crate::detect::run::{LiveView, StageMsg, run_live, stage_channel};
use crate::detect::swap::Change;
use crate::ingest::{EventSource, Item};
use crate::registry::load::{LoadOptions, load, sha256_hex};
use crate::registry::{Planned, load_planned};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;

/// The built-in whose copies make up plugins 11 to 20.
const COPIED: &str = "untrusted-exec";
/// Copies of it, renamed.
const COPIES: usize = 10;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// Runs the live suite; `ward` is this executable (for the cold starts).
pub fn run(ward: &Path) -> anyhow::Result<()> {
    let config = WardConfig::default();
    let rt = Arc::new(Runtime::new(
        config.limits(),
        config.cache_dir().as_deref(),
    )?);
    println!("ward bench --suite live");
    swaps(&rt)?;
    cold_start(ward, &config)?;
    auth_under_load(&rt)?;
    Ok(())
}

fn builtin(name: &str) -> anyhow::Result<crate::registry::load::PluginSource> {
    crate::registry::builtin::builtin_sources()
        .into_iter()
        .find(|s| s.origin == format!("builtin:{name}"))
        .with_context(|| format!("no built-in {name}"))
}

/// A stream of `n` generated events, as a never-blocking source.
struct Lines(std::vec::IntoIter<Vec<u8>>);

impl EventSource for Lines {
    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        Ok(self
            .0
            .next()
            .map(|l| Item::Line(crate::ingest::Line::Data(l))))
    }
    fn has_buffered(&self) -> bool {
        self.0.len() > 0
    }
}

/// Swap a detector into a running stage while a generated stream flows through it: the
/// load (compile from the cache, instantiate, describe) and the stage's taking it.
fn swaps(rt: &Arc<Runtime>) -> anyhow::Result<()> {
    let processes: SharedProcessTable = Default::default();
    let plugins = crate::registry::builtin::builtin_sources()
        .iter()
        .map(|s| load(rt, s, &LoadOptions::default(), &processes))
        .collect::<Result<Vec<_>, _>>()?;
    let pipeline = Pipeline::new(
        Arc::clone(rt),
        plugins,
        Arc::clone(&processes),
        PipelineOptions::default(),
    );
    let mut generator = crate::cli::synth::Generator::new(7);
    let lines: Vec<Vec<u8>> = (0..200_000)
        .map(|_| generator.next_line().into_bytes())
        .collect();
    let (tx, rx) = stage_channel();
    let control = tx.clone();
    let tokio = crate::cli::tokio_runtime()?;
    let work = tokio.spawn(run_live(
        pipeline,
        Box::new(Lines(lines.into_iter())),
        std::io::sink(),
        (tx, rx),
        LiveView::default(),
    ));
    let source = builtin(COPIED)?;
    let planned = Planned {
        source,
        options: LoadOptions::default(),
        named: false,
        dir: false,
        selftest: None,
    };
    let config = WardConfig::default();
    let rt2 = Arc::clone(rt);
    let (loads, applies) = tokio.block_on(async move {
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
            let mut loads = Vec::new();
            let mut applies = Vec::new();
            for _ in 0..30 {
                let start = Instant::now();
                let plugin = load_planned(&rt2, &config, &planned, &processes)?;
                loads.push(start.elapsed());
                let (ack, answer) = std::sync::mpsc::sync_channel(1);
                let start = Instant::now();
                control
                    .blocking_send(StageMsg::Change(
                        Change::Upsert(Box::new(plugin)),
                        Some(ack),
                    ))
                    .map_err(|_| anyhow::anyhow!("the stage ended"))?;
                answer
                    .recv()
                    .context("the stage did not answer")?
                    .map_err(|e| anyhow::anyhow!(e))?;
                applies.push(start.elapsed());
            }
            let _ = control.blocking_send(StageMsg::Shutdown);
            Ok((loads, applies))
        })
        .await
    })??;
    let summary = tokio.block_on(work)??;
    let mut loads = loads;
    let mut applies = applies;
    loads.sort();
    applies.sort();
    let totals: Vec<Duration> = {
        let mut t: Vec<Duration> = loads.iter().zip(&applies).map(|(a, b)| *a + *b).collect();
        t.sort();
        t
    };
    println!(
        "{:<56} p50 {:>6.2} ms   max {:>6.2} ms",
        "swap: load with a cached compile (off the event path)",
        ms(quantile(&loads, 0.5)),
        ms(quantile(&loads, 1.0))
    );
    println!(
        "{:<56} p50 {:>6.2} ms   max {:>6.2} ms",
        "swap: into the running stage (sent → applied)",
        ms(quantile(&applies, 0.5)),
        ms(quantile(&applies, 1.0))
    );
    println!(
        "{:<56} p50 {:>6.2} ms   max {:>6.2} ms   ({} swaps, {} events flowing)",
        "swap: total",
        ms(quantile(&totals, 0.5)),
        ms(quantile(&totals, 1.0)),
        totals.len(),
        summary.parse.events
    );
    Ok(())
}

/// `bytes` with every `from` replaced by `to` (same length).
fn renamed(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while let Some(at) = out
        .get(i..)
        .and_then(|rest| rest.windows(from.len()).position(|w| w == from))
    {
        if let Some(slot) = out.get_mut(i + at..i + at + to.len()) {
            slot.copy_from_slice(to);
        }
        i += at + from.len();
    }
    out
}

/// `ward replay` of a short stream with the 10 built-ins and 10 more plugins (renamed
/// copies of one), every compile cached: process start to exit, and peak RSS.
fn cold_start(ward: &Path, config: &WardConfig) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = builtin(COPIED)?;
    let mut toml = String::new();
    for i in 0..COPIES {
        // Same length as the original name, so the component stays valid.
        let name = format!("{}{i:02}", &COPIED[..COPIED.len() - 2]);
        let bytes = renamed(&source.bytes, COPIED.as_bytes(), name.as_bytes());
        let path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, &bytes)?;
        toml.push_str(&format!(
            "[[plugins]]\npath = {:?}\nsha256 = \"{}\"\n",
            path.display().to_string(),
            sha256_hex(&bytes)
        ));
    }
    let config_path = dir.path().join("ward.toml");
    std::fs::write(&config_path, toml)?;
    let stream = dir.path().join("stream.jsonl");
    crate::cli::synth::write_stream(
        200,
        3,
        &mut std::io::BufWriter::new(std::fs::File::create(&stream)?),
    )?;
    let cache = config.cache_dir();
    let once_in =
        |config: Option<&Path>, cache: Option<&Path>| -> anyhow::Result<(Duration, u64)> {
            let mut command = std::process::Command::new(ward);
            command.arg("replay").arg(&stream);
            if let Some(c) = config {
                command.arg("--config").arg(c);
            }
            if let Some(dir) = cache {
                command.env("WARD_CACHE_DIR", dir);
            }
            let run = crate::cli::bench_content::run_child(&mut command)?;
            Ok((run.wall, run.rss))
        };
    let once = |config: Option<&Path>| once_in(config, cache.as_deref());
    // A fresh Mac: an empty compile cache (a new one each run).
    let mut runs = Vec::new();
    for i in 0..3 {
        let empty = dir.path().join(format!("empty-cache-{i}"));
        runs.push(once_in(None, Some(&empty))?);
        let compiled = std::fs::read_dir(&empty).map_or(0, |d| d.count());
        anyhow::ensure!(compiled == 0, "a first start compiled {compiled} built-ins");
    }
    runs.sort();
    let (took, rss) = runs.get(runs.len() / 2).copied().unwrap_or_default();
    println!(
        "{:<56} {:>8.1} ms   peak RSS {:>5.1} MiB",
        "first start, empty compile cache, 10 built-ins (start → exit)",
        ms(took),
        rss as f64 / f64::from(1 << 20)
    );
    // The first run compiles the copies into the cache; it is not measured.
    once(Some(&config_path))?;
    for (label, config) in [
        ("10 built-in plugins", None),
        ("20 plugins", Some(config_path.as_path())),
    ] {
        let mut runs: Vec<(Duration, u64)> =
            (0..5).map(|_| once(config)).collect::<Result<_, _>>()?;
        runs.sort();
        let (took, rss) = runs.get(runs.len() / 2).copied().unwrap_or_default();
        println!(
            "{:<56} {:>8.1} ms   peak RSS {:>5.1} MiB",
            format!("cold start, cached compiles, {label} (process start → exit)"),
            ms(took),
            rss as f64 / f64::from(1 << 20)
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// A generated stream at a steady rate. AUTH events come as a native source hands them:
/// typed, with a responder, which times each answer from the event's arrival.
struct Paced {
    lines: std::vec::IntoIter<(Vec<u8>, bool)>,
    start: Instant,
    sent: u64,
    per_sec: u64,
    latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl EventSource for Paced {
    fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.per_sec as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.sent += 1;
        let Some((line, auth)) = self.lines.next() else {
            return Ok(None);
        };
        if !auth {
            return Ok(Some(Item::Line(crate::ingest::Line::Data(line))));
        }
        let msg = ward_event::parse_line(&line, usize::MAX)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let arrival = Instant::now();
        let latencies = Arc::clone(&self.latencies);
        Ok(Some(Item::Auth(
            Box::new(msg),
            crate::ingest::Responder::new(
                None,
                Box::new(move |_| {
                    let took = arrival.elapsed();
                    latencies
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(took);
                }),
            ),
        )))
    }
    fn has_buffered(&self) -> bool {
        // A live source: what is in hand goes to the stage before the next wait.
        false
    }
}

/// AUTH verdict latency with 4 detectors subscribed to exec while 20,000 events/s of bulk
/// traffic flow.
fn auth_under_load(rt: &Arc<Runtime>) -> anyhow::Result<()> {
    let per_sec = 20_000u64;
    let seconds = 10u64;
    let auth_every = 5usize;
    let processes: SharedProcessTable = Default::default();
    let mut plugins = Vec::new();
    for name in [
        "prevent-list",
        "untrusted-exec",
        "command-abuse",
        "malware-activity",
    ] {
        let options = if name == "prevent-list" {
            LoadOptions {
                config: [("signing_id".to_owned(), "update-5555494489".to_owned())].into(),
                ..Default::default()
            }
        } else {
            LoadOptions::default()
        };
        plugins.push(load(rt, &builtin(name)?, &options, &processes)?);
    }
    let mut generator = crate::cli::synth::Generator::new(11);
    let mut execs = 0usize;
    let lines: Vec<(Vec<u8>, bool)> = (0..per_sec * seconds)
        .map(|_| {
            let line = generator.next_line();
            let mut auth = false;
            if line.contains("\"event_type\":9,") {
                execs += 1;
                auth = execs.is_multiple_of(auth_every);
            }
            (line.into_bytes(), auth)
        })
        .collect();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let options = PipelineOptions {
        auth: crate::detect::auth::AuthPolicy {
            verdict_timeout: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    };
    let pipeline = Pipeline::new(Arc::clone(rt), plugins, processes, options);
    let tokio = crate::cli::tokio_runtime()?;
    let start = Instant::now();
    let summary = tokio.block_on(run_live(
        pipeline,
        Box::new(Paced {
            lines: lines.into_iter(),
            start: Instant::now(),
            sent: 0,
            per_sec,
            latencies: Arc::clone(&latencies),
        }),
        std::io::sink(),
        stage_channel(),
        LiveView::default(),
    ))?;
    let took = start.elapsed().as_secs_f64();
    let mut heard = latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    heard.sort();
    let missed: u64 = summary
        .plugins
        .iter()
        .map(|p| p.stats.deadlines_missed)
        .sum();
    println!(
        "{:<56} p50 {:>6.3} ms   p99 {:>6.3} ms   max {:>6.3} ms",
        format!(
            "AUTH verdict, 4 detectors, {:.0} bulk events/s",
            summary.parse.events as f64 / took
        ),
        ms(quantile(&heard, 0.5)),
        ms(quantile(&heard, 0.99)),
        ms(quantile(&heard, 1.0)),
    );
    println!(
        "{:<56} {} AUTH events, {} answered by the default, {} deadlines missed",
        "", summary.auth.requests, summary.auth.defaulted, missed
    );
    Ok(())
}
