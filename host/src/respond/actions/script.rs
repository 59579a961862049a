//! Run a script from the admin's catalogue: by id only (a remediator never names a
//! program), only a file the agent's user or root owns and no one else can write, with
//! arguments passed as argv (never through a shell), a clean environment, its own
//! process group killed at the timeout, and stdout and stderr captured up to a cap (the
//! rest drained and counted, so a chatty script can neither block nor flood the agent).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::response::ScriptConfig;
use crate::respond::actions::Outcome;

/// What a bounded run gave.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Captured stdout (lossy UTF-8, at most the cap).
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Bytes of output beyond the caps, drained and dropped.
    pub dropped: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Reads `r` to its end, keeping the first `cap` bytes.
fn drain(mut r: impl std::io::Read, cap: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
                dropped += n.saturating_sub(room) as u64;
            }
        }
    }
    (kept, dropped)
}

/// Runs `program` with `args` and `env` (nothing else), killing its process group after
/// `timeout`; keeps `cap` bytes of each output stream.
pub fn run_bounded(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    cap: usize,
) -> Result<Run, String> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    // Each stream drained on a thread that hands its result back on a channel: a
    // grandchild that escaped the group and holds a pipe open cannot hold the agent.
    let drained = |s: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(s) = s {
            std::thread::spawn(move || {
                let _ = tx.send(drain(s, cap));
            });
        }
        rx
    };
    let out = drained(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let err = drained(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let pgid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                if let Some(pgid) = pgid {
                    let _ =
                        rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                break child.wait().map_err(|e| format!("waiting: {e}"))?;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting: {e}")),
        }
    };
    // The group is gone; whatever still holds the pipes was in it.
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    let join = |rx: std::sync::mpsc::Receiver<(Vec<u8>, u64)>| {
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    };
    let (stdout, d1) = join(out);
    let (stderr, d2) = join(err);
    Ok(Run {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        timed_out,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        dropped: d1 + d2,
        elapsed: started.elapsed(),
    })
}

/// Whether `path` is a program the agent may run for the admin: a regular file (links
/// not followed), owned by the agent's user or root, writable by no one else, executable,
/// in directories each owned by the agent's user or root and writable by no one else (a
/// sticky world-writable one, like `/tmp`, only holds it in place if what is in it is
/// theirs) — else whoever could write one of them could swap the program.
pub fn trusted_program(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if (meta.uid() != me && meta.uid() != 0) || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{}: its directory {} can be changed by others (uid {}, mode {:o})",
                path.display(),
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{}: owned by uid {}, not by the agent's user or root",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("{}: writable by group or others", path.display()));
    }
    if meta.mode() & 0o111 == 0 {
        return Err(format!("{}: not executable", path.display()));
    }
    Ok(())
}

/// Runs catalogued script `id` with `args`; `env` tells it which action, incident and
/// playbook it serves.
pub fn run_script(
    id: &str,
    script: Option<&ScriptConfig>,
    args: &[String],
    env: &[(&str, String)],
) -> Result<Outcome, String> {
    let script =
        script.ok_or_else(|| format!("refused: `{id}` is not in the admin's script catalogue"))?;
    if args.len() > script.max_args {
        return Err(format!(
            "refused: {} arguments (the catalogue allows {})",
            args.len(),
            script.max_args
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err("refused: an argument holds a NUL byte".into());
    }
    trusted_program(&script.path).map_err(|e| format!("refused: {e}"))?;
    let run = run_bounded(
        &script.path,
        args,
        env,
        Duration::from_secs(script.timeout_secs),
        script.max_output_bytes,
    )?;
    let details = if run.timed_out {
        format!("script {id} killed after {} s", script.timeout_secs)
    } else {
        match (run.code, run.signal) {
            (Some(code), _) => format!("script {id} exited {code}"),
            (None, Some(sig)) => format!("script {id} ended by signal {sig}"),
            _ => format!("script {id} ended"),
        }
    };
    let outcome = Outcome::new(details)
        .with("exit_code", run.code)
        .with("signal", run.signal)
        .with("timed_out", run.timed_out)
        .with("stdout", run.stdout)
        .with("stderr", run.stderr)
        .with("output_bytes_dropped", run.dropped)
        .with(
            "elapsed_ms",
            u64::try_from(run.elapsed.as_millis()).unwrap_or(u64::MAX),
        );
    if run.timed_out || run.code != Some(0) {
        return Err(serde_json::to_string(&outcome.to_json()).unwrap_or(outcome.details));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn script(dir: &Path, name: &str, body: &str) -> ScriptConfig {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        ScriptConfig {
            path,
            timeout_secs: 2,
            max_output_bytes: 1000,
            max_args: 4,
        }
    }

    #[test]
    fn scripts_run_bounded_by_time_output_and_catalogue() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let echo = script(
            dir.path(),
            "echo.sh",
            "#!/bin/sh\necho \"$1 $WARD_INCIDENT $HOME\"\n",
        );
        let out = run_script(
            "echo",
            Some(&echo),
            &["a; rm -rf /".into()],
            &[("WARD_INCIDENT", "7".into())],
        )
        .unwrap();
        assert_eq!(
            out.evidence["stdout"], "a; rm -rf / 7 \n",
            "argv, not a shell; no HOME"
        );
        assert_eq!(out.evidence["exit_code"], 0);

        let flood = script(
            dir.path(),
            "flood.sh",
            "#!/bin/sh\nhead -c 5000000 /dev/zero\nexit 3\n",
        );
        let err = run_script("flood", Some(&flood), &[], &[]).unwrap_err();
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["evidence"]["exit_code"], 3);
        assert_eq!(v["evidence"]["output_bytes_dropped"], 5_000_000 - 1000);

        // A sleeper and its child are killed at the timeout, pipes and all.
        let hang = script(dir.path(), "hang.sh", "#!/bin/sh\nsleep 100 &\nsleep 100\n");
        let err = run_script("hang", Some(&hang), &[], &[]).unwrap_err();
        assert!(err.contains("\"timed_out\":true"), "{err}");

        assert!(
            run_script("nope", None, &[], &[])
                .unwrap_err()
                .contains("catalogue")
        );
        let too_many: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert!(run_script("echo", Some(&echo), &too_many, &[]).is_err());
        std::fs::set_permissions(&echo.path, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            run_script("echo", Some(&echo), &[], &[])
                .unwrap_err()
                .contains("writable by group or others")
        );
    }
}
