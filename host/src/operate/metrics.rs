//! Prometheus text exposition of a running agent (`[agent] metrics_addr`, loopback only):
//! per-plugin accounting and the agent's own counts, rendered from the stage's latest
//! summary on each scrape.

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::detect::pipeline::Summary;
use crate::detect::run::LiveView;

/// A per-plugin metric: name, type, help, and its value in a plugin's summary.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::detect::pipeline::PluginSummary) -> f64,
);

/// Scrapes served at once; more connections are closed at once (any local user can
/// reach a loopback port).
const MAX_CONNECTIONS: usize = 16;
/// How long one scrape may take, request to answer.
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest request head read.
const MAX_REQUEST_HEAD_BYTES: usize = 8 << 10;

/// A label value as the exposition format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `summary`.
pub fn render(summary: &Summary) -> String {
    let mut text = String::new();
    let head = |text: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let totals = [
        ("ward_lines_total", "Lines read.", summary.parse.lines),
        ("ward_events_total", "Events parsed.", summary.parse.events),
        (
            "ward_findings_total",
            "Findings emitted, the agent's own included.",
            summary.findings,
        ),
        (
            "ward_auth_requests_total",
            "AUTH events answered.",
            summary.auth.requests,
        ),
        (
            "ward_auth_denied_total",
            "AUTH events answered deny.",
            summary.auth.denied,
        ),
        (
            "ward_auth_defaulted_total",
            "AUTH events answered by the policy default.",
            summary.auth.defaulted,
        ),
    ];
    for (name, help, value) in totals {
        head(&mut text, name, "counter", help);
        let _ = writeln!(text, "{name} {value}");
    }
    head(
        &mut text,
        "ward_malformed_lines_total",
        "counter",
        "Lines skipped, by reason.",
    );
    for (reason, n) in &summary.parse.skipped {
        let _ = writeln!(
            text,
            "ward_malformed_lines_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    let per_plugin: [Metric; 12] = [
        (
            "ward_plugin_events_total",
            "counter",
            "Events delivered to the plugin.",
            |p| p.stats.events as f64,
        ),
        (
            "ward_plugin_calls_total",
            "counter",
            "Calls made to the plugin.",
            |p| p.stats.calls as f64,
        ),
        (
            "ward_plugin_findings_total",
            "counter",
            "Findings the plugin raised.",
            |p| p.stats.results as f64,
        ),
        (
            "ward_plugin_errors_total",
            "counter",
            "Plugin errors returned.",
            |p| p.stats.plugin_errors as f64,
        ),
        (
            "ward_plugin_faults_total",
            "counter",
            "Faults blamed on the plugin.",
            |p| p.stats.faults as f64,
        ),
        (
            "ward_plugin_timeouts_total",
            "counter",
            "Calls stopped at the time cap.",
            |p| p.stats.timeouts as f64,
        ),
        (
            "ward_plugin_traps_total",
            "counter",
            "Traps (panics, aborts, stack overflows).",
            |p| p.stats.traps as f64,
        ),
        (
            "ward_plugin_memory_limit_total",
            "counter",
            "Memory growths refused.",
            |p| p.stats.memory_limits as f64,
        ),
        (
            "ward_plugin_verdict_deadlines_missed_total",
            "counter",
            "AUTH verdicts not given in time.",
            |p| p.stats.deadlines_missed as f64,
        ),
        (
            "ward_plugin_rollbacks_total",
            "counter",
            "New versions rolled back on probation.",
            |p| p.rollbacks as f64,
        ),
        (
            "ward_plugin_memory_high_water_bytes",
            "gauge",
            "Largest linear memory an instance asked for.",
            |p| p.stats.memory_high_water as f64,
        ),
        (
            "ward_plugin_quarantined",
            "gauge",
            "1 while the plugin is quarantined.",
            |p| f64::from(u8::from(p.quarantined.is_some())),
        ),
    ];
    for (name, kind, help, value) in per_plugin {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in &summary.plugins {
            let _ = writeln!(
                text,
                "{name}{{plugin=\"{}\",version=\"{}\",sha256=\"{}\"}} {}",
                label(&p.name),
                label(&p.version),
                label(&p.sha256),
                value(p)
            );
        }
    }
    let name = "ward_auth_latency_ns";
    let _ = writeln!(
        text,
        "# HELP {name} Nanoseconds from an AUTH event's arrival to its answer.\n# TYPE {name} summary"
    );
    for q in [0.5, 0.99] {
        let _ = writeln!(
            text,
            "{name}{{quantile=\"{q}\"}} {}",
            summary.auth.latency_ns.quantile(q)
        );
    }
    let _ = writeln!(text, "{name}_sum {}", summary.auth.latency_ns.sum());
    let _ = writeln!(text, "{name}_count {}", summary.auth.latency_ns.count());
    let name = "ward_plugin_ns_per_event";
    let _ = writeln!(
        text,
        "# HELP {name} Nanoseconds per event, one sample per call.\n# TYPE {name} summary"
    );
    for p in &summary.plugins {
        let h = &p.stats.ns_per_event;
        let id = format!("plugin=\"{}\"", label(&p.name));
        for q in [0.5, 0.99] {
            let _ = writeln!(text, "{name}{{{id},quantile=\"{q}\"}} {}", h.quantile(q));
        }
        let _ = writeln!(text, "{name}_sum{{{id}}} {}", h.sum());
        let _ = writeln!(text, "{name}_count{{{id}}} {}", h.count());
    }
    text
}

/// Serves the exposition on `listener` until the task is dropped: `GET /metrics` answers
/// it; anything else is 404.
pub async fn serve(listener: tokio::net::TcpListener, view: LiveView) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let view = view.clone();
        // One deadline for the whole exchange: a client trickling bytes or never reading
        // the answer holds its slot no longer than this.
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, scrape(&mut stream, &view)).await;
        });
    }
}

/// Reads one request head from `stream` and answers it.
async fn scrape(stream: &mut tokio::net::TcpStream, view: &LiveView) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let response = if first.starts_with(b"GET /metrics ") || first.starts_with(b"GET /metrics\r") {
        let body = render(&view.summary());
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
