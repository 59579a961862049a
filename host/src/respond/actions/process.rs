//! Kill a process image by its identity `(pid, pidversion)`, never by pid alone: a pid the
//! kernel has since given to another process is spared.
//!
//! On macOS the generation is the audit token's pidversion; the live process is checked
//! against the image the stream showed (its start time and executable path). On Linux,
//! where the tests run, the process start time (`/proc/<pid>/stat`, clock ticks since
//! boot) stands in for the generation: an image is `(pid, starttime)`. There the process
//! is pinned with a pidfd before it is checked, so the signal reaches exactly the process
//! that was checked.

use std::path::PathBuf;

use crate::respond::actions::Outcome;
use crate::respond::invariants::Protected;

/// A live process, as the kernel describes it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveProcess {
    /// Its pid.
    pub pid: i32,
    /// Its generation (Linux: start time in ticks; macOS: start time in µs).
    pub generation: i64,
    /// The executable it runs, if readable.
    pub exe: Option<PathBuf>,
}

/// What the process table says of the image to kill (macOS checks against it).
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// Executable path.
    pub path: Option<String>,
    /// Signing id.
    pub signing_id: Option<String>,
    /// Team id.
    pub team_id: Option<String>,
    /// An Apple platform binary.
    pub platform: bool,
    /// Start time, RFC 3339.
    pub start_time: Option<String>,
}

impl Image {
    /// Its signer.
    pub fn signer(&self) -> crate::respond::invariants::Signer<'_> {
        crate::respond::invariants::Signer {
            signing_id: self.signing_id.as_deref(),
            team_id: self.team_id.as_deref(),
            platform: self.platform,
        }
    }
}

/// The live process with this pid, if any.
#[cfg(target_os = "linux")]
pub fn live(pid: i32) -> Result<Option<LiveProcess>, String> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("/proc/{pid}/stat: {e}")),
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unreadable"))?;
    // After ")": state is field 3; starttime is field 22 → index 19 here.
    let start = rest
        .split_whitespace()
        .nth(19)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("/proc/{pid}/stat: no start time"))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    Ok(Some(LiveProcess {
        pid,
        generation: start,
        exe,
    }))
}

/// The live process with this pid, if any.
#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
pub fn live(pid: i32) -> Result<Option<LiveProcess>, String> {
    // SAFETY: `proc_pidinfo` writes at most `size_of::<proc_bsdinfo>()` bytes into the
    // zeroed struct we own; `proc_pidpath` at most the buffer's length.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return Ok(None);
    }
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    let len = unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
    let exe = (len > 0).then(|| {
        buf.truncate(len as usize);
        PathBuf::from(String::from_utf8_lossy(&buf).into_owned())
    });
    Ok(Some(LiveProcess {
        pid,
        generation: info.pbi_start_tvsec as i64 * 1_000_000 + info.pbi_start_tvusec as i64,
        exe,
    }))
}

/// The live process with this pid, if any.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn live(_pid: i32) -> Result<Option<LiveProcess>, String> {
    Err("killing by identity is not supported on this system".into())
}

/// Whether `process` is the image `(pid, pidversion)` the stream showed (`image`).
pub fn same_image(process: &LiveProcess, pidversion: i32, image: &Image) -> Result<(), String> {
    if cfg!(target_os = "macos") {
        let start = image
            .start_time
            .as_deref()
            .and_then(crate::clock::parse_rfc3339_ms)
            .ok_or("the process table has no start time for the image")?;
        if process.generation / 1000 != start {
            return Err(format!(
                "pid {} now belongs to a process started at another time (the pid was reused)",
                process.pid
            ));
        }
        if let (Some(exe), Some(path)) = (&process.exe, &image.path)
            && exe.as_os_str() != path.as_str()
        {
            return Err(format!(
                "pid {} now runs {} (the image the finding named, {path}, is gone)",
                process.pid,
                exe.display()
            ));
        }
        Ok(())
    } else if i64::from(pidversion) == process.generation {
        Ok(())
    } else {
        Err(format!(
            "pid {} is now another process (generation {} ≠ pidversion {pidversion}): the pid was reused",
            process.pid, process.generation
        ))
    }
}

/// The signal a plan may send: SIGKILL (9) or SIGTERM (15) as macOS numbers them.
fn signal(number: i32) -> Result<rustix::process::Signal, String> {
    match number {
        9 => Ok(rustix::process::Signal::KILL),
        15 => Ok(rustix::process::Signal::TERM),
        other => Err(format!("signal {other} is not sent (only 9 and 15)")),
    }
}

/// Kills `(pid, pidversion)` after checking the live process is that image and is not
/// protected. Waits up to a second to see it gone.
pub fn kill(
    pid: i32,
    pidversion: i32,
    number: i32,
    image: &Image,
    protected: &Protected,
) -> Result<Outcome, String> {
    let sig = signal(number)?;
    let raw = rustix::process::Pid::from_raw(pid).ok_or("pid 0 is not a process")?;
    // Pin the process first (Linux): from here the signal can only reach it.
    #[cfg(target_os = "linux")]
    let pinned = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::SRCH) => {
            return Err(format!("pid {pid} is not running (nothing to kill)"));
        }
        Err(_) => None,
    };
    let process =
        live(pid)?.ok_or_else(|| format!("pid {pid} is not running (nothing to kill)"))?;
    same_image(&process, pidversion, image)?;
    if let Some(why) = protected.refuse_kill(pid, process.exe.as_deref(), image.signer()) {
        return Err(format!("refused: {why}"));
    }
    #[cfg(target_os = "linux")]
    let sent = match &pinned {
        Some(fd) => rustix::process::pidfd_send_signal(fd, sig),
        None => rustix::process::kill_process(raw, sig),
    };
    #[cfg(not(target_os = "linux"))]
    let sent = rustix::process::kill_process(raw, sig);
    sent.map_err(|e| format!("kill({pid}, {number}): {e}"))?;
    let exe = process
        .exe
        .as_ref()
        .map(|e| e.display().to_string())
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        match live(pid) {
            Ok(Some(now)) if now.generation == process.generation && !zombie(pid) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => {
                return Ok(
                    Outcome::new(format!("killed pid {pid} ({exe}) with signal {number}"))
                        .with("exe", exe)
                        .with("generation", process.generation),
                );
            }
        }
    }
    Ok(Outcome::new(format!(
        "signal {number} sent to pid {pid} ({exe}); still running after 1 s"
    ))
    .with("exe", exe)
    .with("still_running", true))
}

/// A process that died but was not reaped yet is gone for our purposes.
fn zombie(pid: i32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected::new(&Default::default(), Vec::new())
    }

    #[test]
    fn a_process_is_killed_by_identity_and_a_reused_pid_is_spared() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let now = live(pid).unwrap().unwrap();
        let generation = i32::try_from(now.generation).unwrap();
        // A look-alike: the same pid, another generation (as if the pid were reused).
        let err = kill(pid, generation + 1, 9, &Image::default(), &protected()).unwrap_err();
        assert!(err.contains("reused"), "{err}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the look-alike was spared"
        );
        let err = kill(pid, generation, 2, &Image::default(), &protected()).unwrap_err();
        assert!(err.contains("only 9 and 15"), "{err}");
        let done = kill(pid, generation, 9, &Image::default(), &protected()).unwrap();
        assert!(done.details.starts_with("killed"), "{}", done.details);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        // Gone: nothing to kill.
        assert!(kill(pid, generation, 9, &Image::default(), &protected()).is_err());
        // Never ward itself, never pid 1.
        let me = i32::try_from(std::process::id()).unwrap();
        let mine = i32::try_from(live(me).unwrap().unwrap().generation).unwrap();
        assert!(
            kill(me, mine, 9, &Image::default(), &protected())
                .unwrap_err()
                .contains("ward itself")
        );
        let init = live(1).unwrap().map(|p| p.generation).unwrap_or(0);
        assert!(
            kill(
                1,
                i32::try_from(init).unwrap(),
                9,
                &Image::default(),
                &protected()
            )
            .is_err()
        );
    }
}
