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

/// A `Read` over a file that never ends: it blocks at end of file until more data arrives
/// or `stop` is set (then it reports end of file).
pub struct FollowReader {
    path: PathBuf,
    file: Option<File>,
    identity: Option<(u64, u64)>,
    position: u64,
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
        }
        Ok(reader)
    }

    /// Opens the path afresh; `Ok(false)` if it does not exist (yet).
    fn reopen(&mut self) -> io::Result<bool> {
        match File::open(&self.path) {
            Ok(file) => {
                self.identity = Some(identity(&file.metadata()?));
                self.file = Some(file);
                self.position = 0;
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
