//! Following a growing eslogger file across rotation (`tail -F` semantics).
//!
//! At end of file the reader waits for the file to grow (woken by `notify`, with a polling
//! fallback). If the path now names a different file (rotated: renamed away and recreated)
//! it drains what is left of the old one, then continues at the start of the new one; if the
//! file shrank (truncated in place) it starts again from the top.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// How long to wait for a change notification before checking anyway.
const POLL: Duration = Duration::from_millis(250);

/// Bytes before a checkpoint read again on resuming, so detectors that correlate events
/// (a download, then its execution) see what led up to it; what they find again carries
/// the same keys, and the outbox stores nothing twice.
pub const WARM_BYTES: u64 = 4 << 20;

/// A place in a followed file: its identity and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Offset just past the last line handled.
    pub offset: u64,
}

/// One stretch of the stream: from `stream` bytes on, the bytes come from the file
/// `identity`, starting at `offset` in it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    stream: u64,
    identity: (u64, u64),
    offset: u64,
}

/// Segments kept: enough for every byte still in flight between the reader and the
/// outbox (a rotation per segment).
const SEGMENTS: usize = 64;

/// Where the bytes a [`FollowReader`] returned came from: for a count of bytes read from
/// it, the file and the offset in it. Shared with whoever commits checkpoints.
#[derive(Debug, Default)]
pub struct Locator {
    segments: std::sync::Mutex<std::collections::VecDeque<Segment>>,
}

impl Locator {
    fn start(&self, stream: u64, identity: (u64, u64), offset: u64) {
        let mut segments = self
            .segments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if segments.len() >= SEGMENTS {
            segments.pop_front();
        }
        segments.push_back(Segment {
            stream,
            identity,
            offset,
        });
    }

    /// The file and offset of the byte `stream` bytes into what the reader returned.
    pub fn locate(&self, stream: u64) -> Option<Checkpoint> {
        let segments = self
            .segments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = segments.iter().rev().find(|s| s.stream <= stream)?;
        Some(Checkpoint {
            dev: s.identity.0,
            ino: s.identity.1,
            offset: s.offset + (stream - s.stream),
        })
    }
}

/// A `Read` over a file that never ends: it blocks at end of file until more data arrives
/// or `stop` is set (then it reports end of file).
pub struct FollowReader {
    path: PathBuf,
    file: Option<File>,
    identity: Option<(u64, u64)>,
    position: u64,
    /// Bytes returned so far.
    streamed: u64,
    locator: Arc<Locator>,
    stop: Arc<AtomicBool>,
    events: Option<Receiver<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
    /// Times the file was found rotated or truncated.
    pub rotations: u64,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl FollowReader {
    /// Follows `path` from its current end (`from_start` = false) or from its beginning.
    /// The file need not exist yet.
    pub fn open(path: &Path, from_start: bool, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let (tx, rx) = channel();
        let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.send(());
        })
        .ok()
        .and_then(|mut w| {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            w.watch(dir, RecursiveMode::NonRecursive).ok().map(|()| w)
        });
        let mut reader = Self {
            path: path.to_path_buf(),
            file: None,
            identity: None,
            position: 0,
            streamed: 0,
            locator: Arc::default(),
            stop,
            events: watcher.as_ref().map(|_| rx),
            _watcher: watcher,
            rotations: 0,
        };
        if reader.reopen()?
            && !from_start
            && let Some(file) = reader.file.as_mut()
        {
            reader.position = file.seek(SeekFrom::End(0))?;
            reader.mark();
        }
        Ok(reader)
    }

    /// Follows `path` from `checkpoint` when the file there is still the one it names (a
    /// little before it: [`WARM_BYTES`], from a line's start); from its start when the
    /// file is another (rotated while the agent was down: all of it is new); as
    /// [`FollowReader::open`] without a checkpoint.
    pub fn resume(
        path: &Path,
        checkpoint: Option<Checkpoint>,
        from_start: bool,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let Some(at) = checkpoint else {
            return Self::open(path, from_start, stop);
        };
        let mut reader = Self::open(path, true, stop)?;
        let same = reader.identity == Some((at.dev, at.ino));
        let len = reader
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        if !same || len < at.offset {
            tracing::warn!(path = %path.display(), "the followed file is not the one the checkpoint names (rotated or truncated while stopped): reading it from its start");
            return Ok(reader);
        }
        let warm = at.offset.saturating_sub(WARM_BYTES);
        if let Some(file) = reader.file.as_mut() {
            reader.position = file.seek(SeekFrom::Start(warm))?;
            if warm > 0 {
                // From the start of the next line.
                let mut byte = [0u8; 1];
                while file.read(&mut byte)? == 1 {
                    reader.position += 1;
                    if byte[0] == b'\n' {
                        break;
                    }
                }
            }
            reader.mark();
        }
        Ok(reader)
    }

    /// What maps bytes read from this reader to places in files.
    pub fn locator(&self) -> Arc<Locator> {
        Arc::clone(&self.locator)
    }

    /// A new segment starts here.
    fn mark(&self) {
        if let Some(identity) = self.identity {
            self.locator.start(self.streamed, identity, self.position);
        }
    }

    /// Opens the path afresh; `Ok(false)` if it does not exist (yet).
    fn reopen(&mut self) -> io::Result<bool> {
        match File::open(&self.path) {
            Ok(file) => {
                self.identity = Some(identity(&file.metadata()?));
                self.file = Some(file);
                self.position = 0;
                self.mark();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.file = None;
                self.identity = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn wait(&self) {
        match &self.events {
            Some(rx) => match rx.recv_timeout(POLL) {
                Ok(()) => while rx.try_recv().is_ok() {},
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            },
            None => std::thread::sleep(POLL),
        }
    }

    /// At end of the current file: has it been replaced or truncated?
    fn check_rotation(&mut self) -> io::Result<bool> {
        let now = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if Some(identity(&now)) != self.identity {
            self.rotations += 1;
            tracing::info!(path = %self.path.display(), "followed file was rotated; reopening");
            return self.reopen();
        }
        if now.len() < self.position {
            self.rotations += 1;
            tracing::info!(path = %self.path.display(), "followed file was truncated; reading from the start");
            if let Some(file) = self.file.as_mut() {
                self.position = file.seek(SeekFrom::Start(0))?;
            }
            self.mark();
            return Ok(true);
        }
        Ok(false)
    }
}

impl Read for FollowReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(file) = self.file.as_mut() {
                let n = file.read(buf)?;
                if n > 0 {
                    self.position += n as u64;
                    self.streamed += n as u64;
                    return Ok(n);
                }
            } else if self.reopen()? {
                continue;
            }
            if self.check_rotation()? {
                continue;
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            self.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Line, LineReader};
    use std::io::Write;

    fn next(lines: &mut LineReader<FollowReader>) -> String {
        match lines.next_line().unwrap() {
            Some(Line::Data(d)) => String::from_utf8(d).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn follows_growth_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.jsonl");
        append(&path, "old\n");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = FollowReader::open(&path, false, Arc::clone(&stop)).unwrap();
        let mut lines = LineReader::new(reader, 1 << 20);

        // Starts at the end: `old` is not replayed. A line written in two pieces arrives whole.
        append(&path, "one\ntw");
        assert_eq!(next(&mut lines), "one");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                append(&path, "o\n");
            })
        };
        assert_eq!(next(&mut lines), "two");
        writer.join().unwrap();

        // Rotation: the old file is renamed away, a new one appears at the path.
        append(&path, "last-of-old\n");
        std::fs::rename(&path, dir.path().join("es.jsonl.1")).unwrap();
        append(&path, "first-of-new\n");
        assert_eq!(next(&mut lines), "last-of-old");
        assert_eq!(next(&mut lines), "first-of-new");

        // Truncation in place (copytruncate): read again from the top.
        std::fs::write(&path, "").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(POLL * 3);
                append(&path, "after-truncate\n");
            })
        };
        assert_eq!(next(&mut lines), "after-truncate");
        writer.join().unwrap();

        stop.store(true, Ordering::Relaxed);
        assert!(lines.next_line().unwrap().is_none(), "stop ends the stream");
    }

    #[test]
    fn positions_map_to_files_and_a_resume_starts_at_a_line_before_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.jsonl");
        append(&path, "aaaa\nbbbb\n");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = FollowReader::open(&path, true, Arc::clone(&stop)).unwrap();
        let locator = reader.locator();
        let mut lines = LineReader::new(reader, 1 << 20);
        assert_eq!(next(&mut lines), "aaaa");
        assert_eq!(next(&mut lines), "bbbb");
        let first = locator.locate(10).unwrap();
        assert_eq!(first.offset, 10);
        // Rotated: positions past the switch name the new file from its start.
        std::fs::rename(&path, dir.path().join("es.jsonl.1")).unwrap();
        append(&path, "cc\n");
        assert_eq!(next(&mut lines), "cc");
        let second = locator.locate(13).unwrap();
        assert_ne!((second.dev, second.ino), (first.dev, first.ino));
        assert_eq!(second.offset, 3);
        assert_eq!(
            locator.locate(9).unwrap(),
            Checkpoint { offset: 9, ..first }
        );

        // Resuming at the checkpoint of the file still there: from it (a small file is
        // warmed from its start), positions counted from there.
        append(&path, "dd\n");
        let at = Checkpoint {
            offset: 3,
            ..second
        };
        let reader = FollowReader::resume(&path, Some(at), false, Arc::clone(&stop)).unwrap();
        let mut lines = LineReader::new(reader, 1 << 20);
        assert_eq!(next(&mut lines), "cc", "warmed from before the checkpoint");
        assert_eq!(next(&mut lines), "dd");
        // A checkpoint of a file no longer there: the new file from its start.
        let gone = Checkpoint {
            ino: second.ino + 1,
            ..at
        };
        let reader = FollowReader::resume(&path, Some(gone), false, Arc::clone(&stop)).unwrap();
        let mut lines = LineReader::new(reader, 1 << 20);
        assert_eq!(next(&mut lines), "cc");
        // Past WARM_BYTES the warm-up starts at the next whole line.
        let big = dir.path().join("big.jsonl");
        let line = format!("{}\n", "x".repeat(999));
        let mut text = String::new();
        for _ in 0..(WARM_BYTES / 1000 + 10) {
            text.push_str(&line);
        }
        text.push_str("last\n");
        std::fs::write(&big, &text).unwrap();
        let meta = std::fs::metadata(&big).unwrap();
        let at = Checkpoint {
            dev: meta.dev(),
            ino: meta.ino(),
            offset: meta.len() - 5,
        };
        let reader = FollowReader::resume(&big, Some(at), false, stop).unwrap();
        let mut lines = LineReader::new(reader, 1 << 20);
        let mut n = 0;
        loop {
            let l = next(&mut lines);
            if l == "last" {
                break;
            }
            assert_eq!(l.len(), 999, "whole lines only");
            n += 1;
        }
        assert!(
            n as u64 >= WARM_BYTES / 1000 - 1 && (n as u64) < WARM_BYTES / 1000 + 2,
            "{n}"
        );
    }

    #[test]
    fn waits_for_a_file_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.jsonl");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = FollowReader::open(&path, true, stop).unwrap();
        let mut lines = LineReader::new(reader, 1 << 20);
        let creator = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                append(&path, "hello\n");
            })
        };
        assert_eq!(next(&mut lines), "hello");
        creator.join().unwrap();
    }
}
