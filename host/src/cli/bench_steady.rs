//! `ward bench --suite steady`: what an agent costs a Mac over time. `ward run` follows a
//! file that a writer appends `ward gen` events to at 2,000 events/s, as eslogger would;
//! CPU is read from `/proc/<pid>/stat` over an idle window (nothing written) and a busy
//! one, after start-up, beside the peer a responder would run by hand on the same file
//! (`tail -F | jq` with one filter). Linux only: it reads `/proc`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Events per second written while busy.
pub const RATE: u64 = 2_000;
/// Lines written per tick.
const TICK: Duration = Duration::from_millis(10);

/// User plus system CPU of `pid` so far, from `/proc/<pid>/stat`.
fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("malformed stat")
    };
    let hz = rustix::param::clock_ticks_per_second();
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / hz.max(1),
    ))
}

/// Resident memory of `pid` now and at its peak, bytes.
fn rss_of(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The processes measured as one: ward, or tail and jq.
struct Measured {
    label: &'static str,
    children: Vec<Child>,
}

impl Measured {
    fn cpu(&self) -> anyhow::Result<Duration> {
        self.children.iter().map(|c| cpu_of(c.id())).sum()
    }

    fn rss(&self) -> (u64, u64) {
        self.children
            .iter()
            .map(|c| rss_of(c.id()))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Appends `lines` to `file` at [`RATE`] for `secs`.
fn write_paced(file: &mut std::fs::File, lines: &[String], secs: u64) -> anyhow::Result<()> {
    let per_tick = usize::try_from(RATE * TICK.as_millis() as u64 / 1000).unwrap_or(20);
    let start = Instant::now();
    let mut sent = 0usize;
    let total = usize::try_from(RATE * secs).unwrap_or(usize::MAX);
    let mut buf = Vec::new();
    while sent < total {
        buf.clear();
        for line in lines
            .iter()
            .cycle()
            .skip(sent % lines.len().max(1))
            .take(per_tick)
        {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        sent += per_tick;
        let due = start + TICK * u32::try_from(sent / per_tick).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    file.flush()?;
    Ok(())
}

/// Runs the steady-state measurement for `busy_secs` at [`RATE`] events/s (and an idle
/// window of a sixth of that, at least a second).
pub fn run(ward: &Path, busy_secs: u64) -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        println!("steady: skipped: reads /proc (Linux only)");
        return Ok(());
    }
    let idle_secs = (busy_secs / 6).max(1);
    let dir = tempfile::tempdir().context("temporary directory")?;
    // The followed file and the config in directories of their own, as on a Mac
    // (`/var/log`, `/etc/ward`): each has a watcher on its directory, and one directory
    // would wake the config's watcher at every write to the stream too.
    let (log, etc) = (dir.path().join("log"), dir.path().join("etc"));
    std::fs::create_dir(&log).context("the followed file's directory")?;
    std::fs::create_dir(&etc).context("the config's directory")?;
    let events = log.join("events.jsonl");
    let mut file = std::fs::File::create(&events)?;
    let config = etc.join("ward.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\n\n[source]\nkind = \"follow\"\npath = {:?}\nfrom_start = true\n",
            dir.path().join("state").display().to_string(),
            events.display().to_string()
        ),
    )?;
    let mut agent = Command::new(ward);
    agent
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cache) = crate::config::WardConfig::default().cache_dir() {
        agent.env("WARD_CACHE_DIR", cache);
    }
    let mut measured = vec![Measured {
        label: "ward run, all default content",
        children: vec![agent.spawn().context("starting ward run")?],
    }];
    let peer = (|| -> anyhow::Result<Measured> {
        let mut tail = Command::new("tail")
            .args(["-F", "-n", "+1"])
            .arg(&events)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("tail")?;
        let pipe = tail.stdout.take().context("tail stdout")?;
        let jq = Command::new("jq")
            .arg("-c")
            .arg(crate::cli::bench_content::JQ_FILTER)
            .stdin(pipe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let jq = match jq {
            Ok(jq) => jq,
            Err(e) => {
                let _ = tail.kill();
                let _ = tail.wait();
                return Err(e).context("jq not runnable; install jq to compare");
            }
        };
        Ok(Measured {
            label: "tail -F | jq, one filter",
            children: vec![tail, jq],
        })
    })();
    match peer {
        Ok(p) => measured.push(p),
        Err(e) => println!("steady: peer skipped: {e:#}"),
    }
    let mut generator = crate::cli::synth::Generator::new(4);
    let lines: Vec<String> = (0..RATE * 10).map(|_| generator.next_line()).collect();
    // Start-up is not what is measured.
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "steady: `ward gen` events appended to a followed file at {RATE} events/s for {busy_secs} s, after {idle_secs} s idle"
    );
    let before: Vec<Duration> = measured
        .iter()
        .map(Measured::cpu)
        .collect::<Result<_, _>>()?;
    let idle_start = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_wall = idle_start.elapsed();
    let idle: Vec<Duration> = measured
        .iter()
        .map(Measured::cpu)
        .collect::<Result<_, _>>()?;
    let busy_start = Instant::now();
    write_paced(&mut file, &lines, busy_secs)?;
    // What was written is read: let the readers drain.
    std::thread::sleep(Duration::from_millis(500));
    let busy_wall = busy_start.elapsed();
    let busy: Vec<Duration> = measured
        .iter()
        .map(Measured::cpu)
        .collect::<Result<_, _>>()?;
    for (i, m) in measured.iter().enumerate() {
        let (Some(b), Some(i_), Some(u)) = (before.get(i), idle.get(i), busy.get(i)) else {
            continue;
        };
        let (rss, peak) = m.rss();
        println!(
            "  {:<36} idle {:>5.2}% of a core   busy {:>5.2}% of a core ({:.1} µs/event)   RSS {:.1} MiB, peak {:.1} MiB",
            m.label,
            100.0 * i_.saturating_sub(*b).as_secs_f64() / idle_wall.as_secs_f64(),
            100.0 * u.saturating_sub(*i_).as_secs_f64() / busy_wall.as_secs_f64(),
            u.saturating_sub(*i_).as_secs_f64() * 1e6 / (RATE * busy_secs) as f64,
            rss as f64 / f64::from(1 << 20),
            peak as f64 / f64::from(1 << 20),
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
