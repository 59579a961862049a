//! The detection stage run live: four threads joined by bounded channels — the reader
//! (read, parse, record in the process table, hand AUTH events to the AUTH lane), the
//! detection stage (the synchronous [`Pipeline`], driven by messages: items, plugin swaps,
//! mode changes, shutdown), the AUTH lane, and the writer of findings.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context as _;

use crate::detect::auth::Answer;
use crate::detect::auth_lane::{AuthLane, Inbox, Output as LaneOutput, Submitted};
use crate::detect::pipeline::{
    AUTH_ACTION, Parsed, Pipeline, Summary, auth_records, event_cost, shadow_records,
};
use crate::detect::swap::Change;
use crate::forward::finding::FindingRecord;
use crate::ingest::{EventSource, Item, Line, LineReader};
use ward_event::{ParseError, parse_line};

/// Items handed from the reader to the pipeline per message.
const CHUNK_LINES: usize = 256;
/// Bytes of events (their lines) per message: a chunk closes at this or at
/// [`CHUNK_LINES`], so what waits between the reader and the detection stage is bounded in
/// bytes, however large the lines.
const CHUNK_BYTES: usize = 1 << 20;
/// After a shutdown, how long the stage keeps taking what the source still hands over
/// (a source told to stop ends sooner; stdin cannot be told).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Chunks buffered between tasks.
const CHANNEL_DEPTH: usize = 8;
/// Bytes of AUTH events waiting for the AUTH lane; past it the reader waits (each event's
/// deadline keeps running from its arrival, so waiting here is never hidden). One event is
/// always let through, whatever its size.
const AUTH_QUEUE_BYTES: usize = 8 << 20;

/// Most findings committed to the outbox in one transaction.
const OUTBOX_COMMIT_MAX: usize = 4096;

/// What the detection stage and the AUTH lane hand the writer: findings, and the stream
/// position every event before which has been handled (committed with them).
pub struct Produced {
    /// Findings, in order.
    pub findings: Vec<FindingRecord>,
    /// The stream position they complete, if it moved.
    pub covered: Option<u64>,
}

/// The detection stage's clean position and when it was last handed on.
struct Clean {
    at: Option<u64>,
    sent: Option<u64>,
    last_sent: Instant,
    /// A position with no findings is handed on at most this often.
    every: std::time::Duration,
}

impl Default for Clean {
    fn default() -> Self {
        Self {
            at: None,
            sent: None,
            last_sent: Instant::now(),
            every: std::time::Duration::from_secs(1),
        }
    }
}

impl Clean {
    fn reached(&mut self, pushed: Option<u64>) {
        if pushed.is_some() {
            self.at = pushed;
        }
    }

    /// Hands `findings` on with the clean position (a moved position alone at most every
    /// [`Clean::every`]).
    fn send(
        &mut self,
        tx: &tokio::sync::mpsc::Sender<Produced>,
        findings: Vec<FindingRecord>,
    ) -> Result<(), StageClosed> {
        let moved = self.at != self.sent;
        if findings.is_empty() && !(moved && self.last_sent.elapsed() >= self.every) {
            return Ok(());
        }
        let covered = if moved { self.at } else { None };
        tx.blocking_send(Produced { findings, covered })
            .map_err(|_| StageClosed)?;
        self.sent = self.at;
        self.last_sent = Instant::now();
        Ok(())
    }
}

/// Tells the AUTH lane, when dropped, that its source has ended.
struct EndOnDrop(Option<std::sync::mpsc::Sender<Inbox>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(lane) = &self.0 {
            let _ = lane.send(Inbox::End);
        }
    }
}

/// A budget of bytes in flight between two threads: `acquire` waits for room.
struct ByteGate {
    /// Bytes in flight, and whether the consumer is gone.
    used: std::sync::Mutex<(usize, bool)>,
    freed: std::sync::Condvar,
    cap: usize,
}

impl ByteGate {
    fn new(cap: usize) -> Self {
        Self {
            used: std::sync::Mutex::new((0, false)),
            freed: std::sync::Condvar::new(),
            cap,
        }
    }

    fn acquire(&self, n: usize) {
        let mut state = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.1 && state.0 > 0 && state.0.saturating_add(n) > self.cap {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.0 = state.0.saturating_add(n);
    }

    fn release(&self, n: usize) {
        let mut state = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(n);
        self.freed.notify_all();
    }

    /// The consumer is gone: nothing waits for room again.
    fn close(&self) {
        let mut state = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 = true;
        self.freed.notify_all();
    }
}

/// What the detection stage is told: the reader's chunks and the end, in stream order;
/// and, ahead of any chunks still queued, a change of plugins (applied between chunks; the
/// answer goes back on `ack`) and the agent's own records.
pub enum StageMsg {
    /// Events, in stream order, with (for a source that has them) the stream position
    /// just past each.
    Items(Vec<Parsed>, Vec<u64>),
    /// A plugin swapped in or out, or a mode changed.
    Change(
        Change,
        Option<std::sync::mpsc::SyncSender<Result<String, String>>>,
    ),
    /// The agent's own records (a plugin refused, …).
    Records(Vec<FindingRecord>),
    /// Finish what came before, then stop (a signal: the source may still be open).
    Shutdown,
    /// The source has ended (sent by the reader, however it ended).
    End,
    /// A control message is waiting (wakes an idle stage).
    Wake,
}

impl StageMsg {
    /// Changes and records go ahead of queued chunks; the rest keeps its place.
    fn is_control(&self) -> bool {
        matches!(self, Self::Change(..) | Self::Records(_))
    }
}

/// The stage has stopped.
#[derive(Debug)]
pub struct StageClosed;

/// Tells the detection stage, when dropped, that the reader is done: the control side may
/// hold senders of its own, so the channel closing cannot be the signal.
struct EndStage(StageSender);

impl Drop for EndStage {
    fn drop(&mut self) {
        let _ = self.0.blocking_send(StageMsg::End);
    }
}

/// A sender to the detection stage: chunks on a bounded channel, control messages on a
/// channel of their own that the stage reads first, between chunks — so a swap waits for
/// the chunk in hand, not for every chunk queued behind it.
#[derive(Clone)]
pub struct StageSender {
    data: tokio::sync::mpsc::Sender<StageMsg>,
    control: tokio::sync::mpsc::UnboundedSender<StageMsg>,
}

/// The stage's end of [`StageSender`].
pub struct StageReceiver {
    data: tokio::sync::mpsc::Receiver<StageMsg>,
    control: tokio::sync::mpsc::UnboundedReceiver<StageMsg>,
}

impl StageSender {
    fn control(&self, msg: StageMsg) -> Result<(), StageClosed> {
        self.control.send(msg).map_err(|_| StageClosed)?;
        // Wake the stage if it waits for chunks; if chunks are queued it reads the
        // control channel before the next one anyway.
        let _ = self.data.try_send(StageMsg::Wake);
        Ok(())
    }

    /// Sends `msg`, waiting for room (call from a blocking thread).
    pub fn blocking_send(&self, msg: StageMsg) -> Result<(), StageClosed> {
        if msg.is_control() {
            return self.control(msg);
        }
        self.data.blocking_send(msg).map_err(|_| StageClosed)
    }

    /// Sends `msg`, waiting for room.
    pub async fn send(&self, msg: StageMsg) -> Result<(), StageClosed> {
        if msg.is_control() {
            return self.control(msg);
        }
        self.data.send(msg).await.map_err(|_| StageClosed)
    }

    /// Sends `msg` if there is room now.
    pub fn try_send(&self, msg: StageMsg) -> Result<(), StageClosed> {
        if msg.is_control() {
            return self.control(msg);
        }
        self.data.try_send(msg).map_err(|_| StageClosed)
    }
}

impl StageReceiver {
    /// The next message: a control message if one waits, else the next chunk (blocking).
    fn blocking_recv(&mut self) -> Option<StageMsg> {
        if let Ok(msg) = self.control.try_recv() {
            return Some(msg);
        }
        self.data.blocking_recv()
    }

    /// The next message, or `None` once `until` has passed (polling: used only while
    /// shutting down).
    fn recv_until(&mut self, until: Instant) -> Option<StageMsg> {
        loop {
            if let Ok(msg) = self.control.try_recv() {
                return Some(msg);
            }
            match self.data.try_recv() {
                Ok(msg) => return Some(msg),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The next message if one comes before `until` (`Err(())` if none did); `Ok(None)`
    /// once the channel is closed. Blocks without polling (call from a blocking thread
    /// inside the runtime).
    fn recv_before(&mut self, until: Instant) -> Result<Option<StageMsg>, ()> {
        if let Ok(msg) = self.control.try_recv() {
            return Ok(Some(msg));
        }
        let wait = until.saturating_duration_since(Instant::now());
        // A control message also sends a `Wake` on the data channel, so waiting on data
        // alone misses nothing.
        let data = &mut self.data;
        tokio::runtime::Handle::current()
            .block_on(async { tokio::time::timeout(wait, data.recv()).await })
            .map_err(|_| ())
    }

    /// A control message, if one waits.
    fn try_control(&mut self) -> Option<StageMsg> {
        self.control.try_recv().ok()
    }

    /// Nothing is waiting.
    fn is_empty(&self) -> bool {
        self.data.is_empty() && self.control.is_empty()
    }
}

/// Carries out a control message in the detection stage.
fn take_control(pipeline: &mut Pipeline, msg: StageMsg, out: &mut Vec<FindingRecord>) {
    match msg {
        StageMsg::Change(change, ack) => {
            let said = pipeline.apply(change, out);
            match &said {
                Ok(what) => tracing::info!(change = %what, "plugins changed"),
                Err(why) => tracing::warn!(error = %why, "plugin change refused"),
            }
            if let Some(ack) = ack {
                let _ = ack.send(said);
            }
        }
        StageMsg::Records(records) => {
            pipeline.count_own(records.len());
            out.extend(records);
        }
        _ => {}
    }
}

/// The stage's channel: one is made per run; the control side keeps a sender.
pub fn stage_channel() -> (StageSender, StageReceiver) {
    let (data, data_rx) = tokio::sync::mpsc::channel(CHANNEL_DEPTH);
    let (control, control_rx) = tokio::sync::mpsc::unbounded_channel();
    (
        StageSender { data, control },
        StageReceiver {
            data: data_rx,
            control: control_rx,
        },
    )
}

/// What a running agent shows of itself: the latest summary (published by the stage after
/// every chunk and change), and where to tell the AUTH lane things.
#[derive(Clone, Default)]
pub struct LiveView {
    /// The latest summary.
    pub summary: Arc<Mutex<Summary>>,
}

impl LiveView {
    /// The latest summary.
    pub fn summary(&self) -> Summary {
        self.summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Runs `pipeline` over every line of `input`, writing findings as NDJSON to `sink`.
/// Returns the summary; fails only if the input cannot be read or the sink written.
pub async fn run_stream<R, W>(pipeline: Pipeline, input: R, sink: W) -> anyhow::Result<Summary>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let lines = LineReader::new(input, pipeline.options().max_line_bytes);
    run_source(pipeline, Box::new(lines), sink).await
}

/// Runs `pipeline` over every item of `source`, writing findings as NDJSON to `sink`.
pub async fn run_source<W>(
    pipeline: Pipeline,
    source: Box<dyn EventSource>,
    sink: W,
) -> anyhow::Result<Summary>
where
    W: Write + Send + 'static,
{
    run_live(pipeline, source, sink, stage_channel(), LiveView::default()).await
}

/// Runs `pipeline` over every item of `source`, writing findings as NDJSON to `sink`, with
/// the stage listening on `channel` (whose sender the caller may keep, to change plugins
/// or shut down) and publishing itself in `view`.
///
/// Four threads joined by bounded channels: the reader reads, parses and records each
/// event in the process table (stamping it with its arrival), hands AUTH events straight to
/// the AUTH lane's thread, and everything, in order, to the detection stage; both send
/// findings to the writer. So an AUTH event never waits behind the batches in front of it,
/// and its verdict sees a process table that is up to date with it. A
/// [`StageMsg::Shutdown`] ends the run once everything before it is delivered and
/// written, whether or not the source has ended.
pub async fn run_live<W>(
    pipeline: Pipeline,
    source: Box<dyn EventSource>,
    sink: W,
    channel: (StageSender, StageReceiver),
    view: LiveView,
) -> anyhow::Result<Summary>
where
    W: Write + Send + 'static,
{
    run_with_response(pipeline, source, sink, channel, view, None, None).await
}

/// [`run_live`], committing each finding to the `outbox` before anything else sees it, and
/// handing each finding a playbook could answer to the response stage (`offer`) as it is
/// written.
pub async fn run_with_response<W>(
    mut pipeline: Pipeline,
    mut source: Box<dyn EventSource>,
    mut sink: W,
    channel: (StageSender, StageReceiver),
    view: LiveView,
    offer: Option<crate::respond::Offer>,
    mut outbox: Option<crate::forward::outbox::Committer>,
) -> anyhow::Result<Summary>
where
    W: Write + Send + 'static,
{
    let (item_tx, mut item_rx) = channel;
    let (finding_tx, mut finding_rx) = tokio::sync::mpsc::channel::<Produced>(CHANNEL_DEPTH);
    let lane = pipeline.take_auth_lane();
    let auth_tx = lane.as_ref().map(AuthLane::sender);
    let lane_end = auth_tx.clone();
    pipeline.lane_inbox = auth_tx.clone();
    pipeline.lane_view = lane.as_ref().map(AuthLane::view);
    let gate = Arc::new(ByteGate::new(AUTH_QUEUE_BYTES));
    let max_line = pipeline.options().max_line_bytes;
    let policy = pipeline.options().auth.clone();
    // The reader keeps the process table from here on.
    pipeline.observed_upstream = true;
    let table = Arc::clone(pipeline.processes());

    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(CHANNEL_DEPTH);
    let reader_gate = Arc::clone(&gate);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // However the reader ends (the source's end, an error, the stage gone), the lane
        // is told no more events will come.
        let auth_tx = EndOnDrop(auth_tx);
        let item_tx = EndStage(item_tx);
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        let mut positions: Vec<u64> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut responder = None;
        while let Some(item) = source.next_item().context("reading the event stream")? {
            let arrival = Instant::now();
            let parsed = match item {
                Item::Line(Line::Data(bytes)) => {
                    chunk_bytes += bytes.len();
                    match parse_line(&bytes, max_line) {
                        Ok(msg) => Parsed::Message(Box::new(msg), arrival),
                        Err(e) => Parsed::Malformed(e),
                    }
                }
                Item::Line(Line::TooLong(len)) => {
                    Parsed::Malformed(ParseError::TooLong { len, max: max_line })
                }
                Item::Message(msg) => {
                    chunk_bytes += event_cost(&msg);
                    Parsed::Message(msg, arrival)
                }
                Item::Auth(mut msg, mut r) => {
                    chunk_bytes += event_cost(&msg);
                    msg.action_type = Some(AUTH_ACTION);
                    // However it ends, it answers: by the default if nothing else.
                    r.set_fallback(policy.default_for(msg.event.kind()) == Answer::Allow);
                    responder = Some(r);
                    Parsed::Message(msg, arrival)
                }
            };
            if let Parsed::Message(msg, arrival) = &parsed {
                table
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .observe(msg);
                let responder = responder.take();
                if msg.action_type == Some(AUTH_ACTION) {
                    match &auth_tx.0 {
                        Some(lane) => {
                            let cost = event_cost(msg);
                            reader_gate.acquire(cost);
                            let submitted = Submitted {
                                message: msg.clone(),
                                arrival: *arrival,
                                cost,
                                responder,
                            };
                            if let Err(std::sync::mpsc::SendError(Inbox::Event(s))) =
                                lane.send(Inbox::Event(Box::new(submitted)))
                            {
                                // The lane is gone (shutting down): the policy's default.
                                reader_gate.release(cost);
                                if let Some(r) = s.responder {
                                    r.answer(policy.default_for(msg.event.kind()) == Answer::Allow);
                                }
                            }
                        }
                        // No plugin takes AUTH events: nobody objects.
                        None => {
                            if let Some(r) = responder {
                                r.answer(true);
                            }
                        }
                    }
                }
            }
            chunk.push(parsed);
            if let Some(at) = source.position() {
                positions.push(at);
            }
            // Hand over a full chunk, or whatever is in hand before a read that may block:
            // a live source must not sit on events waiting for more.
            if chunk.len() >= CHUNK_LINES || chunk_bytes >= CHUNK_BYTES || !source.has_buffered() {
                let items =
                    StageMsg::Items(std::mem::take(&mut chunk), std::mem::take(&mut positions));
                if item_tx.0.blocking_send(items).is_err() {
                    return Ok(());
                }
                chunk_bytes = 0;
                chunk.reserve(CHUNK_LINES);
                while let Ok(done) = recycle_rx.try_recv() {
                    drop(done);
                }
            }
        }
        if !chunk.is_empty() {
            let _ = item_tx.0.blocking_send(StageMsg::Items(chunk, positions));
        }
        Ok(())
    });

    let auth_findings = finding_tx.clone();
    let processes = Arc::clone(pipeline.processes());
    let auth = tokio::task::spawn_blocking(move || -> Option<(AuthLane, u64)> {
        let mut lane = lane?;
        let mut recorded = 0u64;
        let shown = lane.view();
        lane.run(|output| {
            let table = processes.read().unwrap_or_else(PoisonError::into_inner);
            let records = match output {
                LaneOutput::Decided(d) => {
                    gate.release(d.cost);
                    auth_records(&d.decision, &d.event, &table)
                }
                LaneOutput::Shadow(s) => shadow_records(vec![s], &table),
            };
            drop(table);
            recorded += records.len() as u64;
            shown
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .findings = recorded;
            records.is_empty()
                || auth_findings
                    .blocking_send(Produced {
                        findings: records,
                        covered: None,
                    })
                    .is_ok()
        });
        gate.close();
        Some((lane, recorded))
    });

    let published = Arc::clone(&view.summary);
    let processor = tokio::task::spawn_blocking(move || -> (Pipeline, bool) {
        let publish = |pipeline: &Pipeline| {
            *published.lock().unwrap_or_else(PoisonError::into_inner) = pipeline.summary();
        };
        // What runs is visible before the first event arrives.
        publish(&pipeline);
        let mut shut_down = false;
        let mut ended = false;
        // Told to shut down: the source has been told to stop too; what it still hands
        // over (up to its end, or for `SHUTDOWN_GRACE`) is delivered, not dropped.
        let mut draining_until: Option<Instant> = None;
        // A partial batch waits for more events until then (`agent.batch_linger_ms`).
        let linger = pipeline.options().linger;
        let mut deliver_by: Option<Instant> = None;
        // The stream position past the last event pushed, and the last one at which no
        // event was waiting in a partial batch: every event before it has been handled
        // and its findings are in what was sent (the checkpoint may move there).
        let mut pushed: Option<u64> = None;
        let mut clean = Clean::default();
        loop {
            let msg = match (draining_until, deliver_by) {
                (Some(until), _) => item_rx.recv_until(until),
                (None, Some(by)) => match item_rx.recv_before(by) {
                    Ok(msg) => msg,
                    Err(()) => {
                        // Nothing more came in time: deliver what waits.
                        deliver_by = None;
                        let mut out = Vec::new();
                        pipeline.flush(&mut out);
                        clean.reached(pushed);
                        publish(&pipeline);
                        if clean.send(&finding_tx, out).is_err() {
                            break;
                        }
                        continue;
                    }
                },
                (None, None) => item_rx.blocking_recv(),
            };
            let Some(msg) = msg else { break };
            let mut out = Vec::new();
            match msg {
                StageMsg::Items(chunk, positions) => {
                    for (i, item) in chunk.iter().enumerate() {
                        pipeline.push_parsed(item, &mut out);
                        if let Some(&at) = positions.get(i) {
                            pushed = Some(at);
                        }
                        if pipeline.pending() == 0 {
                            clean.reached(pushed);
                        }
                        // A change waits for the event in hand, not the whole chunk: it
                        // is as much between events here as between chunks.
                        while let Some(control) = item_rx.try_control() {
                            take_control(&mut pipeline, control, &mut out);
                        }
                    }
                    // Back to the reader to be freed where it was allocated (a free from
                    // another thread costs the system allocator several times more);
                    // dropped here if the reader is not keeping up.
                    let _ = recycle_tx.try_send(chunk);
                }
                control @ (StageMsg::Change(..) | StageMsg::Records(_)) => {
                    take_control(&mut pipeline, control, &mut out);
                }
                StageMsg::Shutdown => {
                    shut_down = true;
                    draining_until.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                }
                StageMsg::End => ended = true,
                StageMsg::Wake => {}
            }
            // Nothing more waiting: deliver the partial batch once it has waited its
            // linger (at once when draining or with no linger).
            if pipeline.pending() == 0 {
                deliver_by = None;
            } else if item_rx.is_empty() {
                let by = *deliver_by.get_or_insert_with(|| Instant::now() + linger);
                if draining_until.is_some() || Instant::now() >= by {
                    pipeline.flush(&mut out);
                    deliver_by = None;
                }
            }
            if pipeline.pending() == 0 {
                clean.reached(pushed);
            }
            publish(&pipeline);
            if clean.send(&finding_tx, out).is_err() {
                break;
            }
            if ended {
                break;
            }
        }
        let mut out = Vec::new();
        pipeline.flush(&mut out);
        clean.reached(pushed);
        clean.every = std::time::Duration::ZERO;
        let _ = clean.send(&finding_tx, out);
        publish(&pipeline);
        (pipeline, shut_down)
    });

    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut lines: Vec<String> = Vec::new();
        // Which findings the outbox had not seen: only those are offered to the response
        // stage, so events read again after a restart (the warm-up before a checkpoint)
        // never act twice. Without an outbox (or when it failed), all are.
        let mut fresh: Vec<bool> = Vec::new();
        while let Some(Produced {
            mut findings,
            mut covered,
        }) = finding_rx.blocking_recv()
        {
            if let Some(commit) = &mut outbox {
                // What else is waiting goes in the same commit.
                while findings.len() < OUTBOX_COMMIT_MAX {
                    match finding_rx.try_recv() {
                        Ok(more) => {
                            findings.extend(more.findings);
                            covered = more.covered.or(covered);
                        }
                        Err(_) => break,
                    }
                }
                // Committed before it counts as produced, with the place in the source
                // they take the agent to; a failing store loses nothing of the stream (the
                // line is still written) and is said, every time. Each line is rendered
                // once, for the outbox and the sink.
                lines.clear();
                lines.extend(findings.iter().map(FindingRecord::to_json_line));
                fresh = match commit.commit(&findings, &lines, covered) {
                    Ok(appended) => appended.fresh,
                    Err(e) => {
                        tracing::error!(error = %e, findings = findings.len(), "outbox: findings not committed");
                        Vec::new()
                    }
                };
            }
            for (i, f) in findings.into_iter().enumerate() {
                let rendered;
                let line = match lines.get(i) {
                    Some(line) if outbox.is_some() => line,
                    _ => {
                        rendered = f.to_json_line();
                        &rendered
                    }
                };
                sink.write_all(line.as_bytes())
                    .context("writing findings")?;
                sink.write_all(b"\n").context("writing findings")?;
                if let Some(offer) = &offer
                    && fresh.get(i).copied().unwrap_or(true)
                {
                    offer.offer(&f);
                }
            }
            sink.flush().context("writing findings")?;
        }
        Ok(())
    });

    let (mut pipeline, shut_down) = processor.await.context("pipeline task")?;
    // Told to stop: the source may still be open (a blocking read), so the reader is not
    // waited for; the lane finishes what it has.
    let read_result = if shut_down {
        if let Some(lane) = &lane_end {
            let _ = lane.send(Inbox::End);
        }
        Ok(())
    } else {
        reader.await.context("reader task")?
    };
    if let Some((lane, recorded)) = auth.await.context("AUTH lane task")? {
        pipeline.restore_auth_lane(lane, recorded);
    }
    pipeline.observed_upstream = false;
    pipeline.lane_inbox = None;
    pipeline.lane_view = None;
    writer.await.context("sink task")??;
    read_result?;
    let summary = pipeline.summary();
    *view.summary.lock().unwrap_or_else(PoisonError::into_inner) = summary.clone();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::pipeline::PipelineOptions;
    use crate::ingest::MessageSource;

    /// The AUTH queue's byte gate lets one oversized event through alone and holds the
    /// next until room is made.
    #[test]
    fn the_byte_gate_bounds_bytes_in_flight() {
        let gate = std::sync::Arc::new(ByteGate::new(100));
        gate.acquire(250);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let gate = std::sync::Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.acquire(10);
                tx.send(()).unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "admitted past the budget");
        gate.release(250);
        rx.recv().unwrap();
        waiter.join().unwrap();
        assert_eq!(gate.used.lock().unwrap().0, 10);
        // Once the consumer is gone nothing waits.
        gate.close();
        gate.acquire(1 << 40);
    }

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
            crate::sandbox::runtime::Runtime::new(crate::sandbox::engine::Limits::default(), None)
                .unwrap(),
        );
        let processes: crate::sandbox::state::SharedProcessTable = Default::default();
        let plugins = crate::registry::builtin::builtin_sources()
            .iter()
            .map(|s| {
                crate::registry::load::load(
                    &rt,
                    s,
                    &crate::registry::load::LoadOptions::default(),
                    &processes,
                )
                .unwrap()
            })
            .collect();
        let pipeline = Pipeline::new(rt, plugins, processes, PipelineOptions::default());
        let sink = SharedSink::default();
        let summary = run_source(pipeline, Box::new(MessageSource(messages)), sink.clone())
            .await
            .unwrap();
        assert_eq!(summary.parse.events, 31);
        // Each act once: the plist's create and close are one finding, and so are the
        // xattr exec and its deleteextattr.
        assert_eq!(summary.findings, 13);
        let lines = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        assert_eq!(lines, 13);
    }

    /// A native-style source hands AUTH messages with their own deadline and an answer
    /// handle: each handle is called once, with the verdict of the plugins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_native_source_hears_each_answer_through_its_responder() {
        struct NativeSource {
            messages: std::collections::VecDeque<ward_event::Message>,
            answers: std::sync::mpsc::Sender<(u64, bool)>,
        }
        impl EventSource for NativeSource {
            fn next_item(&mut self) -> std::io::Result<Option<Item>> {
                let Some(msg) = self.messages.pop_front() else {
                    return Ok(None);
                };
                let seq = msg.global_seq_num.unwrap_or_default();
                if !matches!(seq, 1002 | 1019) {
                    return Ok(Some(Item::Message(Box::new(msg))));
                }
                let answers = self.answers.clone();
                Ok(Some(Item::Auth(
                    Box::new(msg),
                    crate::ingest::Responder::new(
                        Some(Instant::now() + std::time::Duration::from_secs(30)),
                        Box::new(move |allow| {
                            let _ = answers.send((seq, allow));
                        }),
                    ),
                )))
            }
            fn has_buffered(&self) -> bool {
                !self.messages.is_empty()
            }
        }
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
            crate::sandbox::runtime::Runtime::new(crate::sandbox::engine::Limits::default(), None)
                .unwrap(),
        );
        let processes: crate::sandbox::state::SharedProcessTable = Default::default();
        let source = crate::registry::builtin::builtin_sources()
            .into_iter()
            .find(|s| s.origin == "builtin:prevent-list")
            .unwrap();
        let options = crate::registry::load::LoadOptions {
            config: [(
                "signing_id".to_owned(),
                "update-55554944a1b2c3d4".to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        let plugin = crate::registry::load::load(&rt, &source, &options, &processes).unwrap();
        let pipeline = Pipeline::new(rt, vec![plugin], processes, PipelineOptions::default());
        let (answers, heard) = std::sync::mpsc::channel();
        let summary = run_source(
            pipeline,
            Box::new(NativeSource { messages, answers }),
            SharedSink::default(),
        )
        .await
        .unwrap();
        let mut heard: Vec<(u64, bool)> = heard.try_iter().collect();
        heard.sort_unstable();
        assert_eq!(heard, [(1002, true), (1019, false)]);
        assert_eq!(summary.auth.requests, 2);
        assert_eq!(summary.auth.denied, 1);
        assert_eq!(summary.auth.latency_ns.count(), 2);
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
