//! Sources of eslogger lines. Reading is bounded: a line over the cap is consumed and
//! reported as too long without ever being held whole in memory.

pub mod convert;
pub mod eslogger;
pub mod follow;

use std::io::{self, Read};

/// What a source yields: raw eslogger lines (every source today), or messages already typed
/// by a native Endpoint Security client, which skip the parser.
#[derive(Debug)]
pub enum Item {
    /// A line to parse (or one that was too long to keep).
    Line(Line),
    /// An event the source typed itself.
    Message(Box<ward_event::Message>),
    /// An AUTH event a native client must answer: the message and how to answer it.
    Auth(Box<ward_event::Message>, Responder),
}

/// How a native Endpoint Security source answers one AUTH message: its own deadline
/// (from the ES client) and a handle called exactly once with the answer, as soon as it
/// is decided — before the event's findings are written. A responder dropped unanswered
/// (the agent stopping, an event it could not hand on) answers its fallback: the policy's
/// default for the event's kind once the agent has seen it. Endpoint Security kills a
/// client that lets a deadline pass, so an AUTH message is never left unanswered.
pub struct Responder {
    deadline: Option<std::time::Instant>,
    respond: Option<Box<dyn FnOnce(bool) + Send>>,
    fallback: bool,
}

impl Responder {
    /// `respond` is called once: `true` to allow, `false` to deny. `deadline`: when
    /// Endpoint Security stops waiting; the answer is due by the earlier of this and the
    /// policy's own deadline.
    pub fn new(
        deadline: Option<std::time::Instant>,
        respond: Box<dyn FnOnce(bool) + Send>,
    ) -> Self {
        Self {
            deadline,
            respond: Some(respond),
            fallback: true,
        }
    }

    /// The message's own deadline.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    /// What a drop unanswered answers.
    pub fn set_fallback(&mut self, allow: bool) {
        self.fallback = allow;
    }

    /// Answers.
    pub fn answer(mut self, allow: bool) {
        if let Some(respond) = self.respond.take() {
            respond(allow);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(respond) = self.respond.take() {
            respond(self.fallback);
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("deadline", &self.deadline)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// A source of events. Implemented for every line reader; a native Endpoint Security
/// source (with AUTH events and their deadlines) implements it directly.
pub trait EventSource: Send {
    /// The next item, or `None` at the end of the source.
    fn next_item(&mut self) -> io::Result<Option<Item>>;

    /// True when the next item is already in hand; a live source returns false before a
    /// call that may block, so the pipeline hands over what it has first.
    fn has_buffered(&self) -> bool;

    /// Bytes of the underlying stream consumed up to the end of the last item returned,
    /// for sources whose place can be checkpointed.
    fn position(&self) -> Option<u64> {
        None
    }
}

impl<R: Read + Send> EventSource for LineReader<R> {
    fn next_item(&mut self) -> io::Result<Option<Item>> {
        Ok(self.next_line()?.map(Item::Line))
    }

    fn has_buffered(&self) -> bool {
        LineReader::has_buffered(self)
    }

    fn position(&self) -> Option<u64> {
        Some(self.consumed)
    }
}

/// A source of messages already in memory (tests, and the shape of a native source).
pub struct MessageSource(pub std::collections::VecDeque<ward_event::Message>);

impl EventSource for MessageSource {
    fn next_item(&mut self) -> io::Result<Option<Item>> {
        Ok(self.0.pop_front().map(|m| Item::Message(Box::new(m))))
    }

    fn has_buffered(&self) -> bool {
        !self.0.is_empty()
    }
}

/// One line from a source.
#[derive(Debug)]
pub enum Line {
    /// A complete line (without its newline), at most the cap.
    Data(Vec<u8>),
    /// A line over the cap; only its length is known.
    TooLong(usize),
}

/// Reads lines from `reader`, holding at most `max` bytes of any one line.
///
/// It does its own buffering so the caller can ask whether more input is already in hand
/// ([`LineReader::has_buffered`]): a live source must hand over what it has before a read
/// that may block.
pub struct LineReader<R> {
    reader: R,
    max: usize,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of input consumed by the lines returned (newlines and skipped blank lines
    /// included).
    consumed: u64,
}

/// Read buffer size.
const BUFFER: usize = 1 << 16;

impl<R: Read> LineReader<R> {
    /// Wraps `reader`.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            consumed: 0,
        }
    }

    /// True when bytes are buffered, so the next [`LineReader::next_line`] starts without
    /// reading (it may still read to complete the line).
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    fn fill(&mut self) -> io::Result<usize> {
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line, or `None` at end of input. Blank lines are skipped.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let mut line = Vec::new();
            let mut len = 0usize;
            let mut saw_any = false;
            loop {
                if self.start >= self.end && self.fill()? == 0 {
                    break;
                }
                saw_any = true;
                let chunk = self.buf.get(self.start..self.end).unwrap_or_default();
                let (piece, done) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (chunk.get(..i).unwrap_or_default(), Some(i + 1)),
                    None => (chunk, None),
                };
                len += piece.len();
                if len <= self.max {
                    line.extend_from_slice(piece);
                }
                let advanced = done.unwrap_or(chunk.len());
                self.start += advanced;
                self.consumed += advanced as u64;
                if done.is_some() {
                    break;
                }
            }
            if !saw_any {
                return Ok(None);
            }
            if len > self.max {
                return Ok(Some(Line::TooLong(len)));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line::Data(line)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most 4 bytes per read, like a slow pipe.
    struct ChunkedReader<'a>(&'a [u8]);
    impl Read for ChunkedReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(4).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn splits_lines_and_caps_long_ones() {
        let input = b"{\"a\":1}\n\n  \n0123456789abcdef\r\nlast".to_vec();
        let mut r = LineReader::new(ChunkedReader(&input[..]), 10);
        assert!(matches!(r.next_line().unwrap(), Some(Line::Data(d)) if d == b"{\"a\":1}"));
        assert!(matches!(r.next_line().unwrap(), Some(Line::TooLong(17))));
        assert!(matches!(r.next_line().unwrap(), Some(Line::Data(d)) if d == b"last"));
        assert!(r.next_line().unwrap().is_none());
    }

    /// A responder answers exactly once: with the answer given, or, dropped unanswered,
    /// with its fallback.
    #[test]
    fn a_responder_always_answers_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        let make = || {
            let tx = tx.clone();
            Responder::new(None, Box::new(move |allow| tx.send(allow).unwrap()))
        };
        make().answer(false);
        let mut dropped = make();
        dropped.set_fallback(false);
        drop(dropped);
        drop(make());
        drop(tx);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [false, false, true]);
    }
}
