//! Sources of eslogger lines. Reading is bounded: a line over the cap is consumed and
//! reported as too long without ever being held whole in memory.

pub mod eslogger;
pub mod follow;

use std::io::{self, BufRead};

/// One line from a source.
#[derive(Debug)]
pub enum Line {
    /// A complete line (without its newline), at most the cap.
    Data(Vec<u8>),
    /// A line over the cap; only its length is known.
    TooLong(usize),
}

/// Reads lines from `reader`, holding at most `max` bytes of any one line.
pub struct LineReader<R> {
    reader: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `reader`.
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader, max }
    }

    /// The next line, or `None` at end of input. Blank lines are skipped.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let mut buf = Vec::new();
            let mut len = 0usize;
            let mut saw_any = false;
            loop {
                let chunk = match self.reader.fill_buf() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    break;
                }
                saw_any = true;
                let (piece, done) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (chunk.get(..i).unwrap_or_default(), Some(i + 1)),
                    None => (chunk, None),
                };
                len += piece.len();
                if len <= self.max {
                    buf.extend_from_slice(piece);
                }
                let consumed = done.unwrap_or(chunk.len());
                self.reader.consume(consumed);
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
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line::Data(buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_caps_long_ones() {
        let input = b"{\"a\":1}\n\n  \n0123456789abcdef\r\nlast".to_vec();
        let mut r = LineReader::new(std::io::BufReader::with_capacity(4, &input[..]), 10);
        assert!(matches!(r.next_line().unwrap(), Some(Line::Data(d)) if d == b"{\"a\":1}"));
        assert!(matches!(r.next_line().unwrap(), Some(Line::TooLong(17))));
        assert!(matches!(r.next_line().unwrap(), Some(Line::Data(d)) if d == b"last"));
        assert!(r.next_line().unwrap().is_none());
    }
}
