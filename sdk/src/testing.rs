//! Building events and host state for native unit tests of plugin logic.
//!
//! ```
//! use ward_sdk::{testing, EventExt, SignerType};
//! let mut target = testing::process("/tmp/payload");
//! target.signer = SignerType::Adhoc;
//! let event = testing::exec_of(target, &["/tmp/payload", "--run"]);
//! assert_eq!(event.primary_path(), "/tmp/payload");
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use crate::bindings::ward::plugin::host::LogLevel;
use crate::{
    AuditToken, CloseEvent, CreateEvent, Destination, Event, EventData, ExecEvent, ExtattrEvent,
    File, NewPath, Process, RenameEvent, SignerType, UnlinkEvent,
};

thread_local! {
    static CONFIG: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    static PROCESSES: RefCell<HashMap<(i32, i32), Process>> = RefCell::new(HashMap::new());
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
    static FILES: RefCell<HashMap<String, FakeFile>> = RefCell::new(HashMap::new());
}

/// What [`crate::enrich`] answers for one path in native tests.
#[derive(Debug, Clone, Default)]
pub struct FakeFile {
    /// Its SHA-256 (lowercase hex); `None` answers as if the file were absent.
    pub sha256: Option<String>,
    /// Its extended attributes.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Its property-list content as JSON text; `None` answers as if absent.
    pub plist: Option<String>,
    /// When set, every enrichment call on this path fails with `denied(…)` (outside the
    /// scope, not granted), whatever the other fields say.
    pub denied: Option<String>,
}

/// Makes `path` exist for [`crate::enrich`] in native tests; other paths answer `None`.
pub fn set_file(path: &str, file: FakeFile) {
    FILES.with(|f| f.borrow_mut().insert(path.to_owned(), file));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn enrich_answer<T>(
    path: &str,
    answer: impl Fn(&FakeFile) -> Option<T>,
) -> Result<Option<T>, crate::EnrichError> {
    FILES.with(|f| match f.borrow().get(path) {
        Some(FakeFile {
            denied: Some(why), ..
        }) => Err(crate::EnrichError::Denied(why.clone())),
        Some(file) => Ok(answer(file)),
        None => Ok(None),
    })
}

/// Sets a config value that [`crate::config`] returns in native tests.
pub fn set_config(key: &str, value: &str) {
    CONFIG.with(|c| c.borrow_mut().insert(key.to_owned(), value.to_owned()));
}

/// Adds a process that [`crate::process::lookup`] finds in native tests.
pub fn add_process(process: Process) {
    PROCESSES.with(|p| {
        p.borrow_mut()
            .insert((process.token.pid, process.token.pidversion), process)
    });
}

/// Forgets all test config, processes and logs of this thread.
pub fn reset() {
    CONFIG.with(|c| c.borrow_mut().clear());
    PROCESSES.with(|p| p.borrow_mut().clear());
    LOGS.with(|l| l.borrow_mut().clear());
    FILES.with(|f| f.borrow_mut().clear());
}

/// The messages logged on this thread so far, with their level names.
pub fn logs() -> Vec<(String, String)> {
    LOGS.with(|l| {
        l.borrow()
            .iter()
            .map(|(level, msg)| (level_name(*level).to_owned(), msg.clone()))
            .collect()
    })
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn config_value(key: &str) -> Option<String> {
    CONFIG.with(|c| c.borrow().get(key).cloned())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn lookup_process(token: AuditToken) -> Option<Process> {
    PROCESSES.with(|p| p.borrow().get(&(token.pid, token.pidversion)).cloned())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn descendants(token: AuditToken, max: usize) -> Vec<Process> {
    PROCESSES.with(|p| {
        let table = p.borrow();
        let mut sorted: Vec<&Process> = table.values().collect();
        sorted.sort_by_key(|p| (p.token.pid, p.token.pidversion));
        let mut out: Vec<Process> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut frontier = std::collections::VecDeque::from([(token.pid, token.pidversion)]);
        while let Some(parent) = frontier.pop_front() {
            for child in &sorted {
                let key = (child.token.pid, child.token.pidversion);
                let named = child
                    .parent_token
                    .is_some_and(|t| (t.pid, t.pidversion) == parent);
                if named && out.len() < max && seen.insert(key) {
                    frontier.push_back(key);
                    out.push((*child).clone());
                }
            }
        }
        out
    })
}

/// An audit token for `pid` / `pidversion`, owned by uid 501.
pub fn token(pid: i32, pidversion: i32) -> AuditToken {
    AuditToken {
        pid,
        pidversion,
        auid: 501,
        euid: 501,
        egid: 20,
        ruid: 501,
        rgid: 20,
        asid: 100_001,
    }
}

/// A file at `path` without stat data.
pub fn file(path: &str) -> File {
    File {
        path: path.to_owned(),
        path_truncated: false,
        stat: None,
    }
}

/// An Apple platform process running `path` (pid 500, pidversion 1), signing id
/// `com.apple.<file name>`. Change fields to make it something else.
pub fn process(path: &str) -> Process {
    let name = path.rsplit('/').next().unwrap_or(path);
    Process {
        token: token(500, 1),
        ppid: 1,
        original_ppid: 1,
        group_id: 500,
        session_id: 500,
        codesigning_flags: 0x2601_4a01,
        is_platform_binary: true,
        is_es_client: false,
        cdhash: Some("0".repeat(40)),
        signing_id: Some(format!("com.apple.{name}")),
        team_id: None,
        executable: file(path),
        tty: None,
        start_time: Some("2026-01-01T00:00:00.000000Z".to_owned()),
        parent_token: Some(token(1, 1)),
        responsible_token: Some(token(1, 1)),
        cs_validation_category: Some(1),
        signer: SignerType::Apple,
    }
}

/// An event of `data` caused by `process`.
pub fn event(kind: &str, process: Process, data: EventData) -> Event {
    Event {
        kind: kind.to_owned(),
        version: 10,
        time: "2026-01-01T00:00:00.000000000Z".to_owned(),
        global_seq_num: Some(1),
        process,
        data,
        auth: None,
    }
}

/// Delivers `event` to `detector` as the agent would: with only the parts
/// [`Detector::parts`](crate::Detector::parts) names ([`crate::keep_parts`]). A test that
/// goes through here fails when the detector reads a part it did not ask for.
pub fn deliver<D: crate::Detector>(
    detector: &mut D,
    event: &Event,
) -> Result<Vec<crate::Finding>, crate::PluginError> {
    let mut delivered = event.clone();
    crate::keep_parts(&mut delivered, D::parts());
    detector.on_event(&delivered)
}

/// An `exec` of an Apple binary at `path` with `args`, from `/bin/zsh`.
pub fn exec(path: &str, args: &[&str]) -> Event {
    exec_of(process(path), args)
}

/// An `exec` whose new image is `target`, from `/bin/zsh` (same pid, older pidversion).
pub fn exec_of(target: Process, args: &[&str]) -> Event {
    let mut old = process("/bin/zsh");
    old.token = token(target.token.pid, target.token.pidversion - 1);
    event(
        "exec",
        old,
        EventData::Exec(ExecEvent {
            target,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd: Some(file("/Users/alice")),
            script: None,
            dyld_exec_path: None,
            image_cputype: Some(16_777_228),
            image_cpusubtype: Some(2),
        }),
    )
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", path.get(1..).unwrap_or("")),
        Some(i) => (path.get(..i).unwrap_or(""), path.get(i + 1..).unwrap_or("")),
        None => ("", path),
    }
}

/// A `create` of a new file at `path` by `by`.
pub fn create(by: Process, path: &str) -> Event {
    let (dir, filename) = split(path);
    event(
        "create",
        by,
        EventData::Create(CreateEvent {
            destination: Destination::NewPath(NewPath {
                dir: file(dir),
                filename: filename.to_owned(),
                mode: Some(0o644),
            }),
            path: path.to_owned(),
            acl: None,
        }),
    )
}

/// A `rename` of `from` to the new path `to` by `by`.
pub fn rename(by: Process, from: &str, to: &str) -> Event {
    let (dir, filename) = split(to);
    event(
        "rename",
        by,
        EventData::Rename(RenameEvent {
            source: file(from),
            destination: Destination::NewPath(NewPath {
                dir: file(dir),
                filename: filename.to_owned(),
                mode: None,
            }),
            destination_path: to.to_owned(),
        }),
    )
}

/// An `unlink` of `path` by `by`.
pub fn unlink(by: Process, path: &str) -> Event {
    let (dir, _) = split(path);
    event(
        "unlink",
        by,
        EventData::Unlink(UnlinkEvent {
            target: file(path),
            parent_dir: Some(file(dir)),
        }),
    )
}

/// A `close` of `path` after it was modified, by `by`.
pub fn close_modified(by: Process, path: &str) -> Event {
    event(
        "close",
        by,
        EventData::Close(CloseEvent {
            modified: true,
            target: file(path),
            was_mapped_writable: Some(false),
        }),
    )
}

/// A `deleteextattr` of `name` on `path` by `by`.
pub fn deleteextattr(by: Process, path: &str, name: &str) -> Event {
    event(
        "deleteextattr",
        by,
        EventData::Deleteextattr(ExtattrEvent {
            target: file(path),
            extattr: name.to_owned(),
        }),
    )
}
