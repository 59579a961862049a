//! Turning eslogger lines into [`Message`]s, with every rejection classified.

use crate::model::Message;
use std::fmt;

/// Default cap on one line: real exec lines with large environments reach ~64 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Why a line was skipped. Each reason is counted separately in the replay summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line exceeds the configured cap.
    #[error("line is {len} bytes, over the {max}-byte cap")]
    TooLong {
        /// Length of the line.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// Valid JSON but not an object.
    #[error("line is not a JSON object")]
    NotAnObject,
    /// JSON ended early: a truncated line.
    #[error("truncated JSON: {0}")]
    Truncated(String),
    /// JSON syntax error.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// Valid JSON whose fields do not fit the eslogger model (missing or wrong-typed).
    #[error("unexpected shape: {0}")]
    Shape(String),
}

impl ParseError {
    /// Short, stable reason name for counters and summaries.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::TooLong { .. } => "too-long",
            ParseError::InvalidUtf8 => "invalid-utf8",
            ParseError::NotAnObject => "not-an-object",
            ParseError::Truncated(_) => "truncated",
            ParseError::Syntax(_) => "invalid-json",
            ParseError::Shape(_) => "bad-shape",
        }
    }
}

/// Parses one line (without its newline) into a [`Message`].
pub fn parse_line(line: &[u8], max_len: usize) -> Result<Message, ParseError> {
    if line.len() > max_len {
        return Err(ParseError::TooLong {
            len: line.len(),
            max: max_len,
        });
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        // Classify: valid JSON of another type, or garbage.
        return Err(
            match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => ParseError::NotAnObject,
                Err(e) => classify(e),
            },
        );
    }
    let mut msg = serde_json::from_str::<Message>(text).map_err(classify)?;
    msg.raw = std::sync::Arc::from(text);
    Ok(msg)
}

fn classify(e: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => ParseError::Truncated(e.to_string()),
        Category::Syntax | Category::Io => ParseError::Syntax(e.to_string()),
        Category::Data => ParseError::Shape(e.to_string()),
    }
}

/// Counts of lines read and skipped, by reason.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ParseStats {
    /// Lines read (including skipped ones, excluding blank lines).
    pub lines: u64,
    /// Lines parsed into events.
    pub events: u64,
    /// Skipped lines by reason, in first-seen order.
    pub skipped: Vec<(&'static str, u64)>,
}

impl ParseStats {
    /// Records one skipped line.
    pub fn skip(&mut self, reason: &'static str) {
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason, 1)),
        }
    }

    /// Total skipped lines.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for ParseStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines read, {} events, {} malformed lines skipped",
            self.lines,
            self.events,
            self.skipped_total()
        )?;
        if !self.skipped.is_empty() {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
