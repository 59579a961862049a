//! The detection pipeline: parse → process table → convert once → route → batch → call
//! detectors → findings. The core is synchronous ([`Pipeline`]); [`run_stream`] drives it
//! with a reader task, the pipeline task and a sink task joined by bounded channels.

use std::io::{Read, Write};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use anyhow::Context as _;

use crate::auth::{self, AuthDecision, AuthPolicy, AuthStats, DecidedBy};
use crate::bindings::wit;
use crate::convert;
use crate::finding::FindingRecord;
use crate::plugin::{CallError, Kind, Mode, Plugin};
use crate::router::Route;
use crate::runtime::Runtime;
use crate::source::{EventSource, Item, Line, LineReader};
use crate::state::SharedProcessTable;
use ward_event::{ParseError, ParseStats, parse_line};

/// Pipeline tuning.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Events per detector call.
    pub batch_size: usize,
    /// Longest accepted line.
    pub max_line_bytes: usize,
    /// How AUTH events are answered.
    pub auth: AuthPolicy,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            max_line_bytes: ward_event::DEFAULT_MAX_LINE_BYTES,
            auth: AuthPolicy::default(),
        }
    }
}

struct Routed {
    plugin: Plugin,
    route: Route,
}

/// Per-plugin results for the summary.
#[derive(Debug, Clone)]
pub struct PluginSummary {
    /// Name.
    pub name: String,
    /// Events delivered.
    pub events: u64,
    /// Calls made.
    pub calls: u64,
    /// Findings accepted.
    pub findings: u64,
    /// Guest faults.
    pub faults: u64,
    /// Plugin errors.
    pub errors: u64,
    /// Quarantine reason.
    pub quarantined: Option<String>,
    /// Wall time inside the plugin's calls.
    pub busy: std::time::Duration,
    /// Instances built: the one from load, plus one per replacement after a fault.
    pub instantiations: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Lines and parse failures.
    pub parse: ParseStats,
    /// Findings emitted (including the agent's own).
    pub findings: u64,
    /// Per plugin.
    pub plugins: Vec<PluginSummary>,
    /// AUTH events and their answers.
    pub auth: AuthStats,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {} findings", self.parse, self.findings)?;
        if self.auth.requests > 0 {
            write!(f, "; {}", self.auth)?;
        }
        for p in &self.plugins {
            write!(
                f,
                "\n  {}: {} events, {} calls, {} findings, {} errors, {} faults",
                p.name, p.events, p.calls, p.findings, p.errors, p.faults
            )?;
            if let Some(reason) = &p.quarantined {
                write!(f, ", QUARANTINED ({reason})")?;
            }
        }
        Ok(())
    }
}

/// `action_type` of an AUTH message.
const AUTH: u32 = 0;

/// Samples of each skip reason logged before going quiet.
const SAMPLES_PER_REASON: u64 = 3;

/// The synchronous pipeline core.
pub struct Pipeline {
    rt: Arc<Runtime>,
    detectors: Vec<Routed>,
    processes: SharedProcessTable,
    batch: Vec<wit::Event>,
    options: PipelineOptions,
    stats: ParseStats,
    findings: u64,
    selection: Vec<usize>,
    auth: AuthStats,
}

impl Pipeline {
    /// A pipeline over the given plugins; non-detectors and disabled plugins are ignored.
    pub fn new(
        rt: Arc<Runtime>,
        plugins: Vec<Plugin>,
        processes: SharedProcessTable,
        options: PipelineOptions,
    ) -> Self {
        let detectors = plugins
            .into_iter()
            .filter(|p| p.kind() == Kind::Detector && p.mode != Mode::Disabled)
            .map(|plugin| Routed {
                route: Route::new(&plugin.info),
                plugin,
            })
            .collect();
        Self {
            rt,
            detectors,
            processes,
            batch: Vec::with_capacity(options.batch_size),
            options,
            stats: ParseStats::default(),
            findings: 0,
            selection: Vec::new(),
            auth: AuthStats::default(),
        }
    }

    /// The event kinds any detector subscribes to; `None` if some detector takes all.
    pub fn subscribed_kinds(&self) -> Option<Vec<String>> {
        let mut all = Vec::new();
        for d in &self.detectors {
            match d.route.kinds() {
                None => return None,
                Some(kinds) => all.extend(kinds.iter().cloned()),
            }
        }
        all.sort();
        all.dedup();
        Some(all)
    }

    /// Counts a line that was too long to even read.
    pub fn skip_too_long(&mut self, len: usize) {
        self.record_skip(&ParseError::TooLong {
            len,
            max: self.options.max_line_bytes,
        });
    }

    fn record_skip(&mut self, err: &ParseError) {
        self.stats.lines += 1;
        let reason = err.reason();
        self.stats.skip(reason);
        let seen = self
            .stats
            .skipped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n);
        if seen <= SAMPLES_PER_REASON {
            tracing::warn!(line = self.stats.lines, reason, error = %err, "skipping malformed line");
        }
    }

    /// Feeds one line; findings from any batch this completes are appended to `out`.
    pub fn push_line(&mut self, line: &[u8], out: &mut Vec<FindingRecord>) {
        match parse_line(line, self.options.max_line_bytes) {
            Ok(msg) => self.push_message(&msg, out),
            Err(err) => self.record_skip(&err),
        }
    }

    /// Feeds one typed message (from the parser or a native source).
    pub fn push_message(&mut self, msg: &ward_event::Message, out: &mut Vec<FindingRecord>) {
        self.stats.lines += 1;
        self.stats.events += 1;
        self.processes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(msg);
        if msg.action_type == Some(AUTH) {
            // Plugins that keep state see everything before this event first.
            self.flush(out);
            let mut event = convert::event(msg);
            let decision = self.authorize(&mut event);
            self.record_decision(decision, &event, out);
            // Then the event goes on to `on-events` like any other, for findings.
            if self
                .detectors
                .iter()
                .any(|d| d.route.subscribes(&event.kind))
            {
                self.batch.push(event);
                self.flush(out);
            }
            return;
        }
        if self
            .detectors
            .iter()
            .any(|d| d.route.subscribes(msg.event.kind()))
        {
            self.batch.push(convert::event(msg));
            if self.batch.len() >= self.options.batch_size {
                self.flush(out);
            }
        }
    }

    /// Answers one AUTH event: asks each subscribed detector in turn within what is left
    /// of the deadline; the first in-time deny decides, a missed deadline or a fault means
    /// the policy default for the kind (see [`crate::auth`]).
    pub fn authorize(&mut self, event: &mut wit::Event) -> AuthDecision {
        let started = Instant::now();
        let deadline = self.options.auth.verdict_timeout;
        let mut budget = deadline;
        let mut missed: Vec<(String, String)> = Vec::new();
        let mut denied: Option<(String, String)> = None;
        let mut shadow_denies: Vec<(String, String)> = Vec::new();
        // Enforcing plugins first (a stable sort keeps load order within each group): a
        // shadow plugin must not spend their time.
        let mut order: Vec<usize> = (0..self.detectors.len()).collect();
        order.sort_by_key(|&i| {
            self.detectors
                .get(i)
                .is_some_and(|d| d.plugin.mode == Mode::Shadow)
        });
        for i in order {
            let Some(routed) = self.detectors.get_mut(i) else {
                continue;
            };
            if !routed.route.accepts(event) {
                continue;
            }
            let name = routed.plugin.name().to_owned();
            let shadow = routed.plugin.mode == Mode::Shadow;
            // What a shadow plugin misses never changes the answer; it is only logged.
            let mut miss = |name: String, why: String| {
                if shadow {
                    tracing::debug!(plugin = %name, why = %why, "shadow plugin gave no verdict in time");
                } else {
                    missed.push((name, why));
                }
            };
            // A quarantined plugin that would have been asked cannot vouch for the event.
            if routed.plugin.quarantined().is_some() {
                miss(name, "quarantined".into());
                continue;
            }
            let Some(left) = budget
                .checked_sub(started.elapsed())
                .filter(|d| !d.is_zero())
            else {
                miss(name, "no time left".into());
                continue;
            };
            event.auth = Some(wit::AuthRequest {
                deadline_ms: u32::try_from(left.as_millis()).unwrap_or(u32::MAX),
            });
            let answer = routed.plugin.authorize(&self.rt, event, left);
            let late = started.elapsed() > deadline;
            match answer {
                // An answer after the deadline is one Endpoint Security never saw.
                Ok(_) if late => miss(name, "late".into()),
                // Shadow mode reports, never acts: the deny is recorded, not answered.
                Ok(wit::Verdict::Deny(reason)) if shadow => shadow_denies.push((name, reason)),
                Ok(wit::Verdict::Deny(reason)) => {
                    denied = Some((name, reason));
                    break;
                }
                Ok(wit::Verdict::Allow | wit::Verdict::NoOpinion) => {}
                Ok(wit::Verdict::Undecided(why)) => miss(name, format!("undecided: {why}")),
                Err(CallError::Fault(fault)) => {
                    // A plugin stopped at its budget used all that was left: the epoch
                    // tick may have fired a few milliseconds early, not given time back.
                    if fault.kind == crate::plugin::FaultKind::Timeout && !shadow {
                        budget = started.elapsed();
                    }
                    miss(name, fault.kind.as_str().into());
                }
                Err(CallError::Quarantined) => miss(name, "quarantined".into()),
                Err(e) => miss(name, e.to_string()),
            }
        }
        let elapsed = started.elapsed();
        // Plugins that faulted get their fresh instance now, after the answer is decided,
        // so the next verdict does not pay for start-up inside its deadline.
        for routed in &mut self.detectors {
            routed.plugin.warm(&self.rt);
        }
        event.auth = Some(wit::AuthRequest {
            deadline_ms: u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
        });
        let (answer, decided_by) = match (denied, missed.is_empty()) {
            (Some((name, reason)), _) => (auth::Answer::Deny, DecidedBy::Plugin { name, reason }),
            (None, true) => (auth::Answer::Allow, DecidedBy::Plugins),
            (None, false) => (
                self.options.auth.default_for(&event.kind),
                DecidedBy::Default { missed },
            ),
        };
        AuthDecision {
            answer,
            decided_by,
            shadow_denies,
            deadline,
            elapsed,
        }
    }

    /// Counts `decision` and records a deny or a default answer as a finding of the agent.
    /// (A native ES source will also send `decision.answer` back to the kernel here.)
    pub fn record_decision(
        &mut self,
        decision: AuthDecision,
        event: &wit::Event,
        out: &mut Vec<FindingRecord>,
    ) {
        self.auth.record(&decision);
        let table = self
            .processes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(finding) = auth::record(&decision) {
            out.push(FindingRecord::new("ward", false, finding, event, &table));
            self.findings += 1;
        }
        for finding in auth::shadow_records(&decision) {
            out.push(FindingRecord::new("ward", true, finding, event, &table));
            self.findings += 1;
        }
        tracing::debug!(kind = %event.kind, answer = decision.answer.as_str(), elapsed_us = decision.elapsed.as_micros() as u64, "AUTH answered");
    }

    /// Runs the pending batch through the detectors.
    pub fn flush(&mut self, out: &mut Vec<FindingRecord>) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        // (position in the batch, finding): sorted before output so findings follow the
        // stream's order whatever the plugin order.
        let mut produced: Vec<(usize, FindingRecord)> = Vec::new();
        for routed in &mut self.detectors {
            if routed.plugin.quarantined().is_some() {
                continue;
            }
            self.selection.clear();
            self.selection.extend(
                batch
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| routed.route.accepts(e))
                    .map(|(i, _)| i),
            );
            if self.selection.is_empty() {
                continue;
            }
            // Deliver the batch itself when every event passes; copy the subset otherwise.
            let subset: Vec<wit::Event>;
            let whole = self.selection.len() == batch.len();
            let events: &[wit::Event] = if whole {
                &batch
            } else {
                subset = self
                    .selection
                    .iter()
                    .filter_map(|&i| batch.get(i).cloned())
                    .collect();
                &subset
            };
            match routed.plugin.on_events(&self.rt, events) {
                Ok(detections) => {
                    let table = self
                        .processes
                        .read()
                        .unwrap_or_else(PoisonError::into_inner);
                    let shadow = routed.plugin.mode == Mode::Shadow;
                    for d in detections {
                        let index = d.event_index as usize;
                        if let Some(event) = events.get(index) {
                            let position = if whole {
                                index
                            } else {
                                self.selection.get(index).copied().unwrap_or(index)
                            };
                            produced.push((
                                position,
                                FindingRecord::new(
                                    routed.plugin.name(),
                                    shadow,
                                    d.finding,
                                    event,
                                    &table,
                                ),
                            ));
                        }
                    }
                }
                Err(CallError::Fault(fault)) if fault.quarantined_now => {
                    if let Some(first) = events.first() {
                        let reason = routed.plugin.quarantined().unwrap_or("repeated faults");
                        let position = self.selection.first().copied().unwrap_or(0);
                        produced.push((
                            position,
                            FindingRecord::plugin_quarantined(
                                routed.plugin.name(),
                                &routed.plugin.digest,
                                reason,
                                first,
                            ),
                        ));
                    }
                }
                Err(_) => {}
            }
        }
        produced.sort_by_key(|(position, _)| *position);
        self.findings += produced.len() as u64;
        out.extend(produced.into_iter().map(|(_, f)| f));
        self.batch = batch;
        self.batch.clear();
    }

    /// Counts so far.
    pub fn summary(&self) -> Summary {
        Summary {
            parse: self.stats.clone(),
            findings: self.findings,
            plugins: self
                .detectors
                .iter()
                .map(|d| PluginSummary {
                    name: d.plugin.name().to_owned(),
                    events: d.plugin.stats.events,
                    calls: d.plugin.stats.calls,
                    findings: d.plugin.stats.results,
                    faults: d.plugin.stats.faults,
                    errors: d.plugin.stats.plugin_errors,
                    quarantined: d.plugin.quarantined().map(str::to_owned),
                    busy: d.plugin.stats.busy,
                    instantiations: d.plugin.stats.instantiations,
                })
                .collect(),
            auth: self.auth,
        }
    }
}

/// Lines handed from the reader to the pipeline per message.
const CHUNK_LINES: usize = 256;
/// Chunks buffered between tasks.
const CHANNEL_DEPTH: usize = 8;

/// Runs `pipeline` over every line of `input`, writing findings as NDJSON to `sink`.
/// Returns the summary; fails only if the input cannot be read or the sink written.
pub async fn run_stream<R, W>(pipeline: Pipeline, input: R, sink: W) -> anyhow::Result<Summary>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let lines = LineReader::new(input, pipeline.options.max_line_bytes);
    run_source(pipeline, Box::new(lines), sink).await
}

/// Runs `pipeline` over every item of `source`, writing findings as NDJSON to `sink`.
pub async fn run_source<W>(
    mut pipeline: Pipeline,
    mut source: Box<dyn EventSource>,
    mut sink: W,
) -> anyhow::Result<Summary>
where
    W: Write + Send + 'static,
{
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<Vec<Item>>(CHANNEL_DEPTH);
    let (finding_tx, mut finding_rx) =
        tokio::sync::mpsc::channel::<Vec<FindingRecord>>(CHANNEL_DEPTH);

    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        while let Some(item) = source.next_item().context("reading the event stream")? {
            chunk.push(item);
            // Hand over a full chunk, or whatever is in hand before a read that may block:
            // a live source must not sit on events waiting for more.
            if chunk.len() >= CHUNK_LINES || !source.has_buffered() {
                if line_tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    return Ok(());
                }
                chunk.reserve(CHUNK_LINES);
            }
        }
        if !chunk.is_empty() {
            let _ = line_tx.blocking_send(chunk);
        }
        Ok(())
    });

    let processor = tokio::task::spawn_blocking(move || -> Summary {
        while let Some(chunk) = line_rx.blocking_recv() {
            let mut out = Vec::new();
            for item in chunk {
                match item {
                    Item::Line(Line::Data(bytes)) => pipeline.push_line(&bytes, &mut out),
                    Item::Line(Line::TooLong(len)) => pipeline.skip_too_long(len),
                    Item::Message(msg) => pipeline.push_message(&msg, &mut out),
                }
            }
            // Nothing more waiting: deliver the partial batch now rather than sit on it.
            if line_rx.is_empty() {
                pipeline.flush(&mut out);
            }
            if !out.is_empty() && finding_tx.blocking_send(out).is_err() {
                break;
            }
        }
        let mut out = Vec::new();
        pipeline.flush(&mut out);
        if !out.is_empty() {
            let _ = finding_tx.blocking_send(out);
        }
        pipeline.summary()
    });

    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        while let Some(findings) = finding_rx.blocking_recv() {
            for f in findings {
                sink.write_all(f.to_json_line().as_bytes())
                    .context("writing findings")?;
                sink.write_all(b"\n").context("writing findings")?;
            }
            sink.flush().context("writing findings")?;
        }
        Ok(())
    });

    let read_result = reader.await.context("reader task")?;
    let summary = processor.await.context("pipeline task")?;
    writer.await.context("sink task")??;
    read_result?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MessageSource;

    /// A source that yields typed messages (as a native ES client would) skips the parser
    /// and reaches the same detectors with the same results.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typed_messages_from_a_native_style_source_reach_the_detectors() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/streams/attack-chain.jsonl"
        ))
        .unwrap();
        let messages = text
            .lines()
            .map(|l| ward_event::parse_line(l.as_bytes(), 1 << 20).unwrap())
            .collect();
        let rt = std::sync::Arc::new(
            crate::runtime::Runtime::new(crate::engine::Limits::default(), None).unwrap(),
        );
        let processes: crate::state::SharedProcessTable = Default::default();
        let plugins = crate::default_content::builtin_sources()
            .iter()
            .map(|s| {
                crate::load::load(&rt, s, &crate::load::LoadOptions::default(), &processes).unwrap()
            })
            .collect();
        let pipeline = Pipeline::new(rt, plugins, processes, PipelineOptions::default());
        let sink = SharedSink::default();
        let summary = run_source(pipeline, Box::new(MessageSource(messages)), sink.clone())
            .await
            .unwrap();
        assert_eq!(summary.parse.events, 31);
        assert_eq!(summary.findings, 15);
        let lines = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        assert_eq!(lines, 15);
    }

    #[derive(Clone, Default)]
    struct SharedSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
