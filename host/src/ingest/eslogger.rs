//! The `eslogger` subprocess: the live source on a Mac (macOS 13+, root, Full Disk Access).
//!
//! `ward run` starts `eslogger <kinds…>` with the event kinds the loaded detectors subscribe
//! to (plus `fork`, `exec` and `exit`, which feed the process table), reads its stdout, and
//! restarts it with backoff if it dies. Missing binary, missing root or missing Full Disk
//! Access are reported in one clear sentence and end the source: restarting cannot fix them.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kinds the process table needs whatever the plugins subscribe to.
pub const ALWAYS: &[&str] = &["exec", "fork", "exit"];

/// Quick deaths in a row after which ward gives up.
const MAX_QUICK_DEATHS: u32 = 5;
/// A run shorter than this counts as a quick death.
const QUICK: Duration = Duration::from_secs(2);
/// Lines of eslogger's stderr kept for the error message.
const STDERR_LINES: usize = 20;

/// Why eslogger cannot run at all.
fn diagnose(program: &str, stderr: &str) -> Option<String> {
    let s = stderr.to_lowercase();
    if s.contains("full disk access") || s.contains("not_permitted") || s.contains("not permitted")
    {
        return Some(format!(
            "{program} lacks Full Disk Access: grant it to ward (or the terminal running it) in System Settings > Privacy & Security > Full Disk Access"
        ));
    }
    if s.contains("run as root")
        || s.contains("be root")
        || s.contains("not_privileged")
        || s.contains("not privileged")
    {
        return Some(format!(
            "{program} must run as root: start ward with sudo or as a launch daemon"
        ));
    }
    if s.contains("too many clients") || s.contains("too_many_clients") {
        return Some(format!(
            "{program}: the system has too many Endpoint Security clients"
        ));
    }
    None
}

/// Configuration of the subprocess.
#[derive(Debug, Clone)]
pub struct EsloggerConfig {
    /// Program to run (default `eslogger`, found on PATH).
    pub program: PathBuf,
    /// Event kinds to ask for.
    pub kinds: Vec<String>,
}

/// A `Read` over eslogger's stdout that survives eslogger restarts.
pub struct EsloggerReader {
    config: EsloggerConfig,
    /// The running eslogger, shared with the thread that kills it when `stop` is set.
    current: Arc<Mutex<Option<Child>>>,
    child: Option<(BufReader<ChildStdout>, Instant)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stop: Arc<AtomicBool>,
    quick_deaths: u32,
    backoff: Duration,
    /// Times eslogger was (re)started.
    pub starts: u64,
}

impl EsloggerReader {
    /// Starts eslogger; fails at once if it cannot be started.
    pub fn start(mut config: EsloggerConfig, stop: Arc<AtomicBool>) -> io::Result<Self> {
        for k in ALWAYS {
            if !config.kinds.iter().any(|x| x == k) {
                config.kinds.push((*k).to_owned());
            }
        }
        config.kinds.sort();
        config.kinds.dedup();
        let mut reader = Self {
            config,
            current: Arc::new(Mutex::new(None)),
            child: None,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            stop,
            quick_deaths: 0,
            backoff: Duration::from_millis(250),
            starts: 0,
        };
        reader.spawn()?;
        reader.watch_stop();
        Ok(reader)
    }

    /// A read blocked on eslogger's stdout cannot see `stop`; this thread kills eslogger when
    /// `stop` is set, which ends the read.
    fn watch_stop(&self) {
        let stop = Arc::clone(&self.stop);
        let current = Arc::downgrade(&self.current);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(current) = current.upgrade() else {
                    return;
                };
                if stop.load(Ordering::Relaxed) {
                    if let Ok(mut slot) = current.lock()
                        && let Some(child) = slot.as_mut()
                    {
                        let _ = child.kill();
                    }
                    return;
                }
            }
        });
    }

    fn program(&self) -> String {
        self.config.program.display().to_string()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut child = Command::new(&self.config.program)
            .args(&self.config.kinds)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} not found: eslogger ships with macOS 13 and later; elsewhere replay a recorded stream with `ward replay`",
                        self.program()
                    ),
                ),
                _ => io::Error::new(e.kind(), format!("cannot start {}: {e}", self.program())),
            })?;
        let Some(stdout) = child.stdout.take() else {
            return Err(io::Error::other("eslogger stdout was not captured"));
        };
        if let Some(stderr) = child.stderr.take() {
            let sink = Arc::clone(&self.stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    tracing::warn!(source = "eslogger", "{line}");
                    if let Ok(mut lines) = sink.lock() {
                        if lines.len() >= STDERR_LINES {
                            lines.pop_front();
                        }
                        lines.push_back(line);
                    }
                }
            });
        }
        self.starts += 1;
        tracing::info!(program = %self.program(), kinds = %self.config.kinds.join(" "), "eslogger started");
        if let Ok(mut slot) = self.current.lock() {
            *slot = Some(child);
        }
        self.child = Some((BufReader::with_capacity(1 << 16, stdout), Instant::now()));
        Ok(())
    }

    /// eslogger's stdout ended: decide whether to restart it.
    fn on_exit(&mut self) -> io::Result<()> {
        let Some((_, started)) = self.child.take() else {
            return Ok(());
        };
        let child = self.current.lock().ok().and_then(|mut slot| slot.take());
        let Some(mut child) = child else {
            return Ok(());
        };
        let status = child.wait()?;
        if self.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Give the stderr thread a moment to collect the last words.
        std::thread::sleep(Duration::from_millis(50));
        let stderr: String = self
            .stderr
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        if let Some(reason) = diagnose(&self.program(), &stderr) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
        }
        if started.elapsed() < QUICK {
            self.quick_deaths += 1;
        } else {
            self.quick_deaths = 0;
            self.backoff = Duration::from_millis(250);
        }
        if self.quick_deaths >= MAX_QUICK_DEATHS {
            let last = stderr.lines().last().unwrap_or("no output");
            return Err(io::Error::other(format!(
                "{} keeps exiting ({status}, {MAX_QUICK_DEATHS} times within {}s of starting); last words: {last}",
                self.program(),
                QUICK.as_secs()
            )));
        }
        tracing::warn!(program = %self.program(), %status, backoff_ms = self.backoff.as_millis() as u64, "eslogger exited; restarting");
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
        if let Ok(mut lines) = self.stderr.lock() {
            lines.clear();
        }
        self.spawn()
    }
}

impl Read for EsloggerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            let Some((stdout, _)) = self.child.as_mut() else {
                return Ok(0);
            };
            let n = stdout.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.on_exit()?;
        }
    }
}

impl Drop for EsloggerReader {
    fn drop(&mut self) {
        if let Some(mut child) = self.current.lock().ok().and_then(|mut slot| slot.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;

    /// Writes an executable shell script standing in for eslogger.
    fn fake(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("eslogger");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(program: PathBuf) -> EsloggerConfig {
        EsloggerConfig {
            program,
            kinds: vec!["create".into()],
        }
    }

    #[test]
    fn restarts_eslogger_when_it_dies_and_asks_for_the_right_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let args = dir.path().join("args");
        // First run: two lines, then exit. Second run: one line, then stay alive.
        let program = fake(
            dir.path(),
            &format!(
                "echo \"$@\" > {args}\necho run >> {runs}\nif [ $(wc -l < {runs}) -eq 1 ]; then echo '{{\"a\":1}}'; echo '{{\"a\":2}}'; exit 0; fi\necho '{{\"a\":3}}'\nexec sleep 30",
                args = args.display(),
                runs = runs.display()
            ),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let reader = EsloggerReader::start(config(program), stop).unwrap();
        let mut lines = std::io::BufReader::new(reader).lines();
        let got: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
        assert_eq!(got, ["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        assert_eq!(
            std::fs::read_to_string(&runs).unwrap().lines().count(),
            2,
            "restarted once"
        );
        assert_eq!(
            std::fs::read_to_string(&args).unwrap().trim(),
            "create exec exit fork"
        );
    }

    #[test]
    fn missing_full_disk_access_ends_the_source_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let program = fake(
            dir.path(),
            "echo 'ERROR: ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED (Full Disk Access)' >&2\nexit 70",
        );
        let mut reader =
            EsloggerReader::start(config(program), Arc::new(AtomicBool::new(false))).unwrap();
        let mut buf = [0u8; 64];
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("Full Disk Access"), "{err}");
        assert_eq!(reader.starts, 1, "no pointless restarts");
    }

    #[test]
    fn a_missing_eslogger_is_named() {
        let err = EsloggerReader::start(
            config("/nonexistent/eslogger".into()),
            Arc::new(AtomicBool::new(false)),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("not found") && err.to_string().contains("macOS 13"),
            "{err}"
        );
    }

    #[test]
    fn an_eslogger_that_keeps_crashing_is_given_up_on() {
        let dir = tempfile::tempdir().unwrap();
        let program = fake(dir.path(), "echo 'boom' >&2\nexit 3");
        let mut reader =
            EsloggerReader::start(config(program), Arc::new(AtomicBool::new(false))).unwrap();
        let mut buf = [0u8; 64];
        let err = reader.read(&mut buf).unwrap_err();
        assert!(
            err.to_string().contains("keeps exiting") && err.to_string().contains("boom"),
            "{err}"
        );
        assert_eq!(reader.starts, u64::from(MAX_QUICK_DEATHS));
    }

    #[test]
    fn permission_problems_get_one_clear_sentence() {
        let fda = diagnose(
            "eslogger",
            "ERROR: ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED: Full Disk Access required",
        )
        .unwrap();
        assert!(
            fda.contains("Full Disk Access") && fda.contains("System Settings"),
            "{fda}"
        );
        let root = diagnose("eslogger", "eslogger: must be run as root").unwrap();
        assert!(root.contains("must run as root"), "{root}");
        assert!(diagnose("eslogger", "segmentation fault").is_none());
    }
}
