//! `ward bench --suite forward`: findings through the outbox to each kind of sink. An
//! outbox is filled once with the attack stream's findings (`ward replay --state`); then
//! each sink, started alone on a copy of it, delivers everything to a receiver in this
//! process (a file, a TCP or UDP socket read to the end, a minimal HTTP server answering
//! 200) and is timed from start to its cursor reaching the last record.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::synth::Mix;
use crate::forward::outbox::{Bell, Outbox};
use crate::forward::sink::Sinks;

/// A TCP server that reads every connection to its end, counting bytes.
fn tcp_drain() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut conn = conn;
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Ok((port, bytes))
}

/// A UDP socket read forever.
fn udp_drain() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = socket.local_addr()?.port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while socket.recv(&mut buf).is_ok() {}
    });
    Ok(port)
}

/// A minimal HTTP/1.1 server: reads each request's body and answers 200 with an Elastic-
/// and Splunk-shaped success, keeping the connection.
fn http_drain() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let _ = conn.set_nodelay(true);
                let mut reader = std::io::BufReader::new(conn.try_clone()?);
                let mut conn = conn;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            return Ok(());
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body)?;
                    let answer = r#"{"errors":false,"items":[],"code":0}"#;
                    // One write: headers and body apart would wait out a delayed ACK.
                    conn.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        )
                        .as_bytes(),
                    )?;
                }
            });
        }
    });
    Ok(port)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The measurements.
pub fn run(ward: &Path, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let stream = dir.path().join("attack.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&stream)?);
        crate::cli::synth::write_mix(n as u64, 1, Mix::Attack, &mut out)?;
        out.flush()?;
    }
    let filled = dir.path().join("filled");
    let status = Command::new(ward)
        .arg("replay")
        .arg("--state")
        .arg(&filled)
        .arg(&stream)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "ward replay --state failed");
    let head = Outbox::open_read_only(&filled)?.stats()?;
    println!(
        "forwarding: {} findings of {n} attack events in the outbox ({} bytes)",
        head.records, head.bytes
    );
    let (tcp, tcp_bytes) = tcp_drain()?;
    let udp = udp_drain()?;
    let http = http_drain()?;
    let file = dir.path().join("out").join("findings.ndjson");
    // A nats-server with JetStream, when one is installed.
    let nats = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .find(|p| Path::new(p).is_file())
    .and_then(|bin| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Some((child, port))
    });
    let mut cases: Vec<(&str, String)> = vec![
        (
            "file, ward format",
            format!(
                "type = \"file\"\npath = \"{}\"\nmax_bytes = 1073741824",
                file.display()
            ),
        ),
        (
            "file, OCSF",
            format!(
                "type = \"file\"\npath = \"{}.ocsf\"\nformat = \"ocsf\"\nmax_bytes = 1073741824",
                file.display()
            ),
        ),
        (
            "syslog TCP (octet counted)",
            format!("type = \"syslog\"\nprotocol = \"tcp\"\naddress = \"127.0.0.1:{tcp}\""),
        ),
        (
            "syslog UDP",
            format!("type = \"syslog\"\nprotocol = \"udp\"\naddress = \"127.0.0.1:{udp}\""),
        ),
        (
            "HTTP Splunk HEC, OCSF, gzip",
            format!(
                "type = \"http\"\napi = \"splunk-hec\"\nformat = \"ocsf\"\nurl = \"http://127.0.0.1:{http}/services/collector/event\""
            ),
        ),
        (
            "HTTP Elastic _bulk, ECS, gzip",
            format!(
                "type = \"http\"\napi = \"elastic-bulk\"\nformat = \"ecs\"\nurl = \"http://127.0.0.1:{http}/_bulk\""
            ),
        ),
    ];
    match &nats {
        Some((_, port)) => cases.push((
            "NATS JetStream, ward format",
            format!("type = \"nats\"\naddress = \"nats://127.0.0.1:{port}\""),
        )),
        None => println!("  NATS: skipped: nats-server is not installed"),
    }
    for (i, (label, sink)) in cases.iter().enumerate() {
        let state = dir.path().join(format!("state-{i}"));
        copy_dir(&filled, &state)?;
        let path = dir.path().join(format!("ward-{i}.toml"));
        std::fs::write(&path, format!("[[sinks]]\nname = \"bench\"\n{sink}\n"))?;
        let config = crate::config::WardConfig::load(&path)?;
        let start = Instant::now();
        let sinks = Sinks::start(&config, &state, Bell::default())?;
        let stats = sinks
            .stats
            .first()
            .map(|(_, s)| Arc::clone(s))
            .context("no sink")?;
        let target = u64::try_from(head.head).unwrap_or(0);
        while stats.cursor.load(Ordering::Relaxed) < target
            && start.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = start.elapsed();
        sinks.finish(Duration::ZERO);
        let delivered = stats.delivered.load(Ordering::Relaxed);
        println!(
            "  {label:<32} {:>9.0} findings/s  ({delivered} in {:.0} ms)",
            delivered as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e3
        );
    }
    if let Some((mut child, _)) = nats {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "  (the TCP receiver read {} bytes in all)",
        tcp_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
