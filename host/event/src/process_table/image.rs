//! One process image as the table keeps it: its facts and argv cut to per-image byte caps,
//! and what they cost. The stream (command lines, file names, signing ids) is written by
//! whoever runs on the Mac, so nothing here is kept at the size it arrived.

use crate::model::{File, Process, Stat};
use std::mem::size_of;
use std::sync::Arc;

/// Arguments kept per process image.
pub const MAX_ARGS: usize = 256;

/// Bytes of argv kept per process image (the sum of the kept arguments' lengths). Protects
/// the table from command lines of up to a line's size (1 MiB by default) per image: the
/// first arguments are kept, the last kept one is cut on a char boundary.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

/// Bytes kept of the executable and tty paths. Four times macOS's `PATH_MAX` (1,024): real
/// paths are never cut, a path an attacker pads to a line's size is.
pub const MAX_PATH_BYTES: usize = 4 * 1024;

/// Bytes kept of each short identity string: signing id, team id, cdhash, start time and
/// the stat timestamps. Real values are under 256 bytes (a cdhash is 40, a team id 10).
pub const MAX_FIELD_BYTES: usize = 1024;

/// Strings of at most [`MAX_FIELD_BYTES`] in one [`Process`]: cdhash, signing id, team id,
/// start time, and two stat timestamps for each of the executable and the tty.
const FIELDS_PER_PROCESS: usize = 8;

/// What an `Arc` adds to the value it holds (two reference counts).
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Bookkeeping per image beyond its heap: the map slot, its place in an eviction order.
pub(super) const ENTRY_OVERHEAD: usize =
    size_of::<((i32, i32), super::Entry)>() + 1 + 2 * size_of::<((u64, u64), (i32, i32))>();

/// The most one image can cost in the table's accounting: its record and bookkeeping, both
/// paths, every identity field and argv at their caps. A byte budget is never below this,
/// so one image always fits.
pub const MAX_IMAGE_BYTES: usize = ENTRY_OVERHEAD
    + ARC_HEADER
    + size_of::<Process>()
    + 2 * MAX_PATH_BYTES
    + FIELDS_PER_PROCESS * MAX_FIELD_BYTES
    + ARC_HEADER
    + MAX_ARGS * size_of::<String>()
    + MAX_ARGS_BYTES;

/// The argv the table keeps for an image: the first arguments within [`MAX_ARGS`] and
/// [`MAX_ARGS_BYTES`], with the true count so a consumer can say how many were cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// The arguments kept, in order; the last one may be cut short.
    pub kept: Arc<[String]>,
    /// How many arguments the exec had.
    pub total: usize,
    /// True when an argument was dropped or cut.
    pub truncated: bool,
}

impl Argv {
    /// The first arguments of `args` within the per-image caps.
    pub fn new(args: &[String]) -> Self {
        let mut kept = Vec::with_capacity(args.len().min(MAX_ARGS));
        let mut room = MAX_ARGS_BYTES;
        let mut truncated = args.len() > MAX_ARGS;
        for arg in args.iter().take(MAX_ARGS) {
            if arg.len() <= room {
                room -= arg.len();
                kept.push(arg.clone());
                continue;
            }
            truncated = true;
            let cut = prefix(arg, room);
            if !cut.is_empty() {
                kept.push(cut.to_owned());
            }
            break;
        }
        Self {
            kept: kept.into(),
            total: args.len(),
            truncated,
        }
    }

    /// Heap bytes held: the slice of strings and their buffers.
    pub(super) fn bytes(&self) -> usize {
        ARC_HEADER
            + self
                .kept
                .iter()
                .map(|a| size_of::<String>() + a.capacity())
                .sum::<usize>()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn capped(s: &str, max: usize) -> String {
    prefix(s, max).to_owned()
}

fn capped_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|s| capped(s, MAX_FIELD_BYTES))
}

fn capped_file(f: &File) -> File {
    File {
        path: capped(&f.path, MAX_PATH_BYTES),
        path_truncated: f.path_truncated || f.path.len() > MAX_PATH_BYTES,
        stat: f.stat.as_ref().map(capped_stat),
    }
}

fn capped_stat(s: &Stat) -> Stat {
    Stat {
        st_dev: s.st_dev,
        st_ino: s.st_ino,
        st_mode: s.st_mode,
        st_uid: s.st_uid,
        st_gid: s.st_gid,
        st_size: s.st_size,
        st_flags: s.st_flags,
        st_mtimespec: capped_opt(&s.st_mtimespec),
        st_birthtimespec: capped_opt(&s.st_birthtimespec),
    }
}

/// A copy of `p` with every string within its cap. A cut path sets `path_truncated`, as
/// the kernel does for a path it cut. Copies only the kept bytes, never the whole input.
pub(super) fn capped_process(p: &Process) -> Process {
    Process {
        audit_token: p.audit_token,
        ppid: p.ppid,
        original_ppid: p.original_ppid,
        group_id: p.group_id,
        session_id: p.session_id,
        codesigning_flags: p.codesigning_flags,
        is_platform_binary: p.is_platform_binary,
        is_es_client: p.is_es_client,
        cdhash: capped_opt(&p.cdhash),
        signing_id: capped_opt(&p.signing_id),
        team_id: capped_opt(&p.team_id),
        executable: capped_file(&p.executable),
        tty: p.tty.as_ref().map(capped_file),
        start_time: capped_opt(&p.start_time),
        parent_audit_token: p.parent_audit_token,
        responsible_audit_token: p.responsible_audit_token,
        cs_validation_category: p.cs_validation_category,
    }
}

/// Heap bytes held by an `Arc<Process>`: the record (files and stats are inline) and its
/// strings.
pub(super) fn process_bytes(p: &Process) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    let file = |f: &File| {
        f.path.capacity()
            + f.stat
                .as_ref()
                .map_or(0, |s| opt(&s.st_mtimespec) + opt(&s.st_birthtimespec))
    };
    ARC_HEADER
        + size_of::<Process>()
        + file(&p.executable)
        + p.tty.as_ref().map_or(0, file)
        + opt(&p.cdhash)
        + opt(&p.signing_id)
        + opt(&p.team_id)
        + opt(&p.start_time)
}
