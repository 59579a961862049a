//! `ward plugin test`: one plugin, the real sandbox, recorded events, optional expectations.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use serde_json::Value;

use crate::detect::pipeline::{Pipeline, PipelineOptions};
use crate::forward::finding::{FindingRecord, severity_name};
use crate::ingest::convert;
use crate::ingest::{Line, LineReader};
use crate::registry::load::{LoadError, LoadOptions, PluginSource, load};
use crate::sandbox::bindings::wit;
use crate::sandbox::engine::Limits;
use crate::sandbox::plugin::{CallError, Kind, Plugin};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;
use ward_event::{ProcessTable, parse_line};

/// Runs the plugin test; exit 0 on success, 1 on a mismatch or a plugin fault.
pub fn run(
    plugin: &Path,
    events: &Path,
    expect: Option<&Path>,
    bless: bool,
    options: LoadOptions,
) -> anyhow::Result<ExitCode> {
    // The agent's compile cache (keyed by the component's sha-256): re-testing a plugin
    // after editing its events does not recompile it.
    let cache = crate::config::WardConfig::default().cache_dir();
    let rt = Arc::new(Runtime::new(Limits::default(), cache.as_deref())?);
    let processes = empty_table();
    let source = PluginSource::from_file(plugin)?;
    let loaded = load(&rt, &source, &options, &processes)?;
    eprintln!(
        "ward plugin test: loaded {} {} ({}) sha256 {}",
        loaded.kind(),
        loaded.name(),
        loaded.info().version,
        loaded.digest()
    );
    let file =
        std::fs::File::open(events).with_context(|| format!("cannot open {}", events.display()))?;
    let reader = file;

    let (lines, faults) = match loaded.kind() {
        Kind::Detector => run_detector(rt, loaded, processes, reader),
        Kind::Collector | Kind::Remediator => run_responder(&rt, loaded, &processes, reader)?,
    };

    let mut stdout = std::io::stdout().lock();
    for line in &lines {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    if faults > 0 {
        eprintln!(
            "ward plugin test: FAILED: the plugin faulted {faults} time(s) (see the log above)"
        );
        return Ok(ExitCode::from(1));
    }
    let Some(expect) = expect else {
        eprintln!("ward plugin test: {} result line(s)", lines.len());
        return Ok(ExitCode::SUCCESS);
    };
    if bless {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(expect, text).with_context(|| format!("writing {}", expect.display()))?;
        eprintln!(
            "ward plugin test: wrote {} line(s) to {}",
            lines.len(),
            expect.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let expected_text = std::fs::read_to_string(expect)
        .with_context(|| format!("cannot read {}", expect.display()))?;
    let mut expected = Vec::new();
    for (i, line) in expected_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", expect.display(), i + 1))?;
        expected.push(value);
    }
    let actual: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let differences = compare(&expected, &actual);
    if differences.is_empty() {
        eprintln!(
            "ward plugin test: ok: {} result line(s) match {}",
            actual.len(),
            expect.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for d in &differences {
            eprintln!("ward plugin test: MISMATCH: {d}");
        }
        eprintln!(
            "ward plugin test: FAILED: {} difference(s) from {}",
            differences.len(),
            expect.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// A new version loaded for its self-test: a fresh instance over a process table of its
/// own, which only the test's events fill, so the test's events never become the running
/// plugin's state and the live agent's processes never reach the test's lookups.
pub struct Trial {
    plugin: Plugin,
    processes: SharedProcessTable,
}

impl Trial {
    /// Loads `source` on trial.
    pub fn load(
        rt: &Runtime,
        source: &PluginSource,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let processes = empty_table();
        let plugin = load(rt, source, options, &processes)?;
        Ok(Self { plugin, processes })
    }
}

fn empty_table() -> SharedProcessTable {
    Arc::new(RwLock::new(ProcessTable::default()))
}

/// The self-test of a new version before it is swapped in: the plugin on trial over
/// `events` must fault nowhere and give what `expect` names, line for line. `Err` says
/// what differed.
pub fn self_test(rt: &Runtime, trial: Trial, events: &Path, expect: &Path) -> Result<(), String> {
    let Trial { plugin, processes } = trial;
    let rt = Arc::new(rt.sibling_without_cache());
    let file = std::fs::File::open(events).map_err(|e| format!("{}: {e}", events.display()))?;
    let (lines, faults) = match plugin.kind() {
        Kind::Detector => run_detector(rt, plugin, processes, file),
        other => return Err(format!("self-tests run detectors; this is a {other}")),
    };
    if faults > 0 {
        return Err(format!(
            "the plugin faulted {faults} time(s) on {}",
            events.display()
        ));
    }
    let text = std::fs::read_to_string(expect).map_err(|e| format!("{}: {e}", expect.display()))?;
    let mut expected = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        expected.push(
            serde_json::from_str::<Value>(line)
                .map_err(|e| format!("{}:{}: not JSON: {e}", expect.display(), i + 1))?,
        );
    }
    let actual: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let differences = compare(&expected, &actual);
    match differences.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} difference(s) from {}; first: {first}",
            differences.len(),
            expect.display()
        )),
    }
}

fn run_detector(
    rt: Arc<Runtime>,
    plugin: Plugin,
    processes: SharedProcessTable,
    reader: impl std::io::Read,
) -> (Vec<String>, u64) {
    let mut pipeline = Pipeline::new(rt, vec![plugin], processes, PipelineOptions::default());
    let mut lines = LineReader::new(reader, ward_event::DEFAULT_MAX_LINE_BYTES);
    let mut out: Vec<FindingRecord> = Vec::new();
    loop {
        match lines.next_line() {
            Ok(Some(Line::Data(bytes))) => pipeline.push_line(&bytes, &mut out),
            Ok(Some(Line::TooLong(len))) => pipeline.skip_too_long(len),
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "reading events");
                break;
            }
        }
    }
    pipeline.finish(&mut out);
    let summary = pipeline.summary();
    eprintln!("ward plugin test: {summary}");
    let faults = summary.plugins.iter().map(|p| p.faults).sum();
    (
        out.iter().map(FindingRecord::to_json_line).collect(),
        faults,
    )
}

/// Collectors and remediators: one trigger per event, with a synthetic finding.
fn run_responder(
    rt: &Runtime,
    mut plugin: Plugin,
    processes: &SharedProcessTable,
    reader: impl std::io::Read,
) -> anyhow::Result<(Vec<String>, u64)> {
    let mut lines = LineReader::new(reader, ward_event::DEFAULT_MAX_LINE_BYTES);
    let mut out = Vec::new();
    let mut index = 0u64;
    while let Some(line) = lines.next_line()? {
        let Line::Data(bytes) = line else { continue };
        let Ok(msg) = parse_line(&bytes, ward_event::DEFAULT_MAX_LINE_BYTES) else {
            continue;
        };
        processes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(&msg);
        let trigger = synthetic_trigger(convert::event(&msg));
        let result = match plugin.kind() {
            Kind::Collector => plugin.collect(rt, &trigger).map(|artifacts| {
                let items: Vec<Value> = artifacts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "name": a.name,
                            "content_type": a.content_type,
                            "size": a.content.len(),
                            "sha256": crate::registry::load::sha256_hex(&a.content),
                        })
                    })
                    .collect();
                serde_json::json!({ "event_index": index, "artifacts": items })
            }),
            _ => plugin.plan(rt, &trigger).map(|actions| {
                let items: Vec<Value> =
                    actions.iter().map(|a| serde_json::json!({ "action": format!("{:?}", a.action), "reason": a.reason })).collect();
                serde_json::json!({ "event_index": index, "actions": items, "severity": severity_name(trigger.finding.severity) })
            }),
        };
        match result {
            Ok(value) => out.push(value.to_string()),
            Err(CallError::Plugin(message)) => {
                out.push(serde_json::json!({ "event_index": index, "error": message }).to_string())
            }
            Err(e) => tracing::error!(event_index = index, error = %e, "plugin call failed"),
        }
        index += 1;
    }
    Ok((out, plugin.stats.faults))
}

/// A trigger with a placeholder finding about `event`, for exercising collectors and
/// remediators outside a playbook.
pub fn synthetic_trigger(event: wit::Event) -> wit::Trigger {
    wit::Trigger {
        detector: "ward-plugin-test".into(),
        finding: wit::Finding {
            rule: "plugin-test".into(),
            severity: wit::Severity::Informational,
            attack: Vec::new(),
            message: "synthetic finding for ward plugin test".into(),
            evidence: Vec::new(),
        },
        event,
    }
}

/// Differences between expected and actual lines: each expected line must match the actual
/// line at the same position on every field it names (recursively); counts must agree.
pub fn compare(expected: &[Value], actual: &[Value]) -> Vec<String> {
    let mut diffs = Vec::new();
    if expected.len() != actual.len() {
        diffs.push(format!(
            "expected {} line(s), got {}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if let Some(d) = subset_mismatch(e, a, "") {
            diffs.push(format!("line {}: {d}", i + 1));
        }
    }
    diffs
}

fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| {
            let here = format!("{path}.{k}");
            match a.get(k) {
                Some(av) => subset_mismatch(ev, av, &here),
                None => Some(format!("{here}: missing (expected {ev})")),
            }
        }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| subset_mismatch(ev, av, &format!("{path}[{i}]"))),
        _ if expected == actual => None,
        _ => Some(format!(
            "{}: expected {expected}, got {actual}",
            if path.is_empty() { "." } else { path }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching_reports_the_first_difference() {
        let actual =
            vec![json!({"rule": "a", "severity": "high", "process": {"pid": 1, "path": "/x"}})];
        assert!(compare(&[json!({"rule": "a", "process": {"pid": 1}})], &actual).is_empty());
        let diffs = compare(&[json!({"rule": "a", "process": {"pid": 2}})], &actual);
        assert_eq!(diffs, vec!["line 1: .process.pid: expected 2, got 1"]);
        assert_eq!(compare(&[], &actual), vec!["expected 0 line(s), got 1"]);
        assert!(compare(&[json!({"missing": 1})], &actual)[0].contains("missing"));
    }
}
