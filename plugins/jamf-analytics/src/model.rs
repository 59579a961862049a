//! The Jamf event as analytics see it, answered from ward's typed event: no JSON object is
//! built per event, and a key path is a few matches on its names, not a walk through
//! string-keyed maps. Each value an analytic reads is built once per event, when first
//! read ([`OnceCell`]); what no analytic reads is never built. An object read whole
//! (`$event`, `$event.process`, a relative, `$event.file`) is read from the JSON model
//! ([`crate::jamf_event_with`] with the relatives and file contents attached so far),
//! built once per event when first needed and again only after something is attached.
//!
//! Every key path answers what that JSON model would. The test
//! `the_typed_model_answers_every_key_path_as_the_json_one` holds them equal over every
//! key path of the JSON model, with the NSString keys and counts on them, on the corpus's
//! events.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;
use ward_predicate::{Key, Model};
use ward_sdk::prelude::*;
use ward_sdk::{AuditToken, Destination};

use crate::{Images, bounded_args, is_dir, signer_code, string};

/// A process of the Jamf event: the acting (or exec'd) process, or one of its relatives.
#[derive(Debug)]
pub struct JamfProcess<'e> {
    process: Cow<'e, Process>,
    args: Cow<'e, [String]>,
    /// `exitCode`, on an exit event's process only.
    exit_code: Option<Value>,
    /// `parent`, `responsible`, `pgprocess`, once attached ([`JamfEvent::attach_relatives`]).
    relatives: Option<Box<[Option<JamfProcess<'e>>; 3]>>,
    path: OnceCell<Value>,
    last_path_component: OnceCell<Value>,
    name: OnceCell<Value>,
    arg_list: OnceCell<Value>,
    command_line: OnceCell<Value>,
    tty: OnceCell<Value>,
    appid: OnceCell<Value>,
    teamid: OnceCell<Value>,
    cdhash: OnceCell<Value>,
}

/// The relatives' keys, in [`JamfProcess::relatives`] order.
const RELATIVE_KEYS: [&str; 3] = ["parent", "responsible", "pgprocess"];

fn cell<'c>(cell: &'c OnceCell<Value>, init: impl FnOnce() -> Value) -> Cow<'c, Value> {
    Cow::Borrowed(cell.get_or_init(init))
}

impl<'e> JamfProcess<'e> {
    fn new(process: Cow<'e, Process>, args: Cow<'e, [String]>) -> Self {
        Self {
            process,
            args,
            exit_code: None,
            relatives: None,
            path: OnceCell::new(),
            last_path_component: OnceCell::new(),
            name: OnceCell::new(),
            arg_list: OnceCell::new(),
            command_line: OnceCell::new(),
            tty: OnceCell::new(),
            appid: OnceCell::new(),
            teamid: OnceCell::new(),
            cdhash: OnceCell::new(),
        }
    }

    /// `process.keys…` as far as answered here (see [`Model::walk`]); `None` for the
    /// object itself (or a relative) read whole, which the JSON model answers.
    fn walk(&self, keys: &[Key]) -> Option<(Cow<'_, Value>, usize)> {
        let p = &self.process;
        let Some((Key::Name(first), rest)) = keys.split_first() else {
            return None;
        };
        let value = match first.as_str() {
            "pid" => Cow::Owned(Value::from(p.token.pid)),
            "path" => {
                let path = cell(&self.path, || string(Some(p.path())));
                if let Some(Key::Name(key)) = rest.first()
                    && key == "lastPathComponent"
                {
                    let last = cell(&self.last_path_component, || {
                        ward_predicate::key_of(&path, key)
                    });
                    return Some((last, 2));
                }
                path
            }
            "name" => cell(&self.name, || string(Some(p.name()))),
            "args" => cell(&self.arg_list, || {
                Value::Array(self.args.iter().cloned().map(Value::String).collect())
            }),
            "commandLine" => cell(&self.command_line, || Value::String(self.args.join(" "))),
            "tty" => cell(&self.tty, || {
                p.tty
                    .as_ref()
                    .map_or(Value::Null, |t| Value::String(t.path.clone()))
            }),
            "isShell" => Cow::Owned(Value::Bool(p.is_shell())),
            "signingInfo" => {
                let Some((Key::Name(key), _)) = rest.split_first() else {
                    return None;
                };
                let value = match key.as_str() {
                    "appid" => cell(&self.appid, || string(p.signing_id.as_deref())),
                    "teamid" => cell(&self.teamid, || string(p.team_id.as_deref())),
                    "cdhash" => cell(&self.cdhash, || string(p.cdhash.as_deref())),
                    "signerType" => Cow::Owned(Value::from(signer_code(p.signer))),
                    _ => Cow::Owned(Value::Null),
                };
                return Some((value, 2));
            }
            "exitCode" => self
                .exit_code
                .as_ref()
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            relative => match RELATIVE_KEYS.iter().position(|k| *k == relative) {
                Some(i) => match self.relatives.as_ref().and_then(|r| r.get(i)?.as_ref()) {
                    Some(relative) => {
                        let (value, taken) = relative.walk(rest)?;
                        return Some((value, taken + 1));
                    }
                    None => Cow::Owned(Value::Null),
                },
                None => Cow::Owned(Value::Null),
            },
        };
        Some((value, 1))
    }
}

/// The file-event half of a `GPFSEvent`.
#[derive(Debug)]
struct FsEvent<'e> {
    path: &'e str,
    prev_file: Option<&'e str>,
    new: bool,
    new_directory: bool,
    modified: bool,
    /// `file.isAppBundle`: creates only.
    app_bundle: Option<bool>,
    contents: Option<Value>,
    snapshot: Option<Value>,
    path_value: OnceCell<Value>,
}

impl FsEvent<'_> {
    /// `file.keys…` as far as answered here; `None` for `file` read whole.
    fn walk_file(&self, keys: &[Key]) -> Option<(Cow<'_, Value>, usize)> {
        let Some((Key::Name(first), _)) = keys.split_first() else {
            return None;
        };
        let value = match first.as_str() {
            "path" => cell(&self.path_value, || string(Some(self.path))),
            "isAppBundle" => self
                .app_bundle
                .map_or(Cow::Owned(Value::Null), |b| Cow::Owned(Value::Bool(b))),
            crate::CONTENTS => self
                .contents
                .as_ref()
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            crate::SNAPSHOT => self
                .snapshot
                .as_ref()
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            _ => Cow::Owned(Value::Null),
        };
        Some((value, 1))
    }
}

/// The Jamf event of one ES event.
#[derive(Debug)]
pub struct JamfEvent<'e> {
    /// `GPProcessEvent` or `GPFSEvent`.
    pub input_type: &'static str,
    /// `type`: Jamf's event type code.
    pub type_code: i64,
    /// `process`.
    pub process: JamfProcess<'e>,
    fs: Option<FsEvent<'e>>,
    event: &'e Event,
    images: &'e Images,
    /// `$event` as JSON, once something read an object whole.
    whole: OnceCell<Value>,
}

impl<'e> JamfEvent<'e> {
    /// The Jamf event of `event`, or `None` for kinds analytics do not see; `images`
    /// supplies remembered arguments (see [`crate::jamf_event_with`], which this answers
    /// as). Relatives are attached later, if needed.
    pub fn new(event: &'e Event, images: &'e Images) -> Option<Self> {
        let actor = || {
            JamfProcess::new(
                Cow::Borrowed(&event.process),
                Cow::Borrowed(images.args(event.process.token)),
            )
        };
        let fs = |kind: i64, path: &'e str, prev_file: Option<&'e str>, modified: bool| {
            let fs = FsEvent {
                path,
                prev_file,
                new: false,
                new_directory: false,
                modified,
                app_bundle: None,
                contents: None,
                snapshot: None,
                path_value: OnceCell::new(),
            };
            (kind, Some(fs))
        };
        let (input_type, process, (type_code, fs)) = match &event.data {
            EventData::Exec(exec) => (
                "GPProcessEvent",
                JamfProcess::new(
                    Cow::Borrowed(&exec.target),
                    Cow::Owned(bounded_args(&exec.args)),
                ),
                (1, None),
            ),
            EventData::Exit(exit) => {
                let mut p = actor();
                p.exit_code = Some(exit.exit_code.map_or(Value::Null, Value::from));
                ("GPProcessEvent", p, (2, None))
            }
            EventData::Create(c) => {
                let dir = match &c.destination {
                    Destination::NewPath(n) => n.mode.is_some_and(|m| m & 0o170000 == 0o040000),
                    Destination::ExistingFile(f) => is_dir(f),
                };
                let (kind, mut fs) = fs(if dir { 7 } else { 0 }, &c.path, None, false);
                if let Some(fs) = &mut fs {
                    fs.new = true;
                    fs.new_directory = dir;
                    fs.app_bundle = Some(
                        dir && std::path::Path::new(&c.path)
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("app")),
                    );
                }
                ("GPFSEvent", actor(), (kind, fs))
            }
            EventData::Rename(r) => (
                "GPFSEvent",
                actor(),
                fs(3, &r.destination_path, Some(&r.source.path), true),
            ),
            EventData::Unlink(u) => ("GPFSEvent", actor(), fs(1, &u.target.path, None, false)),
            EventData::Close(c) if c.modified => {
                ("GPFSEvent", actor(), fs(4, &c.target.path, None, true))
            }
            EventData::Write(f) => ("GPFSEvent", actor(), fs(4, &f.path, None, true)),
            _ => return None,
        };
        Some(Self {
            input_type,
            type_code,
            process,
            fs,
            event,
            images,
            whole: OnceCell::new(),
        })
    }

    /// The event's file path (file events).
    pub fn path(&self) -> Option<&'e str> {
        self.fs.as_ref().map(|fs| fs.path)
    }

    /// Sets `file.contentsAsDict` and `file.snapshotData` (file events).
    pub fn set_contents(&mut self, contents: Option<Value>, snapshot: Option<Value>) {
        if let Some(fs) = &mut self.fs {
            fs.contents = contents;
            fs.snapshot = snapshot;
        }
        self.whole.take();
    }

    /// True once the acting process's relatives are attached.
    pub fn has_relatives(&self) -> bool {
        self.process.relatives.is_some()
    }

    /// Attaches the acting process's `parent` and `responsible`, resolved through the
    /// process table (their arguments from `images`), and `pgprocess`, the process-group
    /// leader, from `images` (ES names it only by pid; itself when it leads its group).
    pub fn attach_relatives(&mut self, images: &'e Images) {
        let p = &self.process;
        let own = (p.process.token.pid, p.process.token.pidversion);
        // Relatives the detector saw exec are at hand; only the others cost a host lookup.
        let relative = |token: Option<AuditToken>| {
            let token = token.filter(|t| (t.pid, t.pidversion) != own)?;
            match images.get(token) {
                Some((q, q_args)) => {
                    Some(JamfProcess::new(Cow::Borrowed(q), Cow::Borrowed(q_args)))
                }
                None => ward_sdk::process::lookup(token).map(|q| {
                    let args = images.args(q.token);
                    JamfProcess::new(Cow::Owned(q), Cow::Borrowed(args))
                }),
            }
        };
        let leader = if p.process.group_id == p.process.token.pid {
            Some(JamfProcess::new(p.process.clone(), p.args.clone()))
        } else {
            images
                .by_pid(p.process.group_id)
                .map(|(q, q_args)| JamfProcess::new(Cow::Borrowed(q), Cow::Borrowed(q_args)))
        };
        let relatives = [
            relative(p.process.parent_token),
            relative(p.process.responsible_token),
            leader,
        ];
        self.process.relatives = Some(Box::new(relatives));
        self.whole.take();
    }

    /// The JSON model of the same event, with what was attached to this one.
    fn json(&self) -> Value {
        let relatives = self.process.relatives.is_some();
        let Some((_, mut value)) = crate::jamf_event_with(self.event, self.images, relatives)
        else {
            return Value::Null;
        };
        if let (Some(fs), Some(Value::Object(file))) = (&self.fs, value.get_mut("file")) {
            if let Some(contents) = &fs.contents {
                file.insert(crate::CONTENTS.into(), contents.clone());
            }
            if let Some(snapshot) = &fs.snapshot {
                file.insert(crate::SNAPSHOT.into(), snapshot.clone());
            }
        }
        value
    }

    /// `key` of the JSON model (an object the typed model does not answer whole).
    fn whole_at(&self, key: &str) -> (Cow<'_, Value>, usize) {
        let whole = self.whole.get_or_init(|| self.json());
        (
            whole
                .get(key)
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            0,
        )
    }
}

impl Model for JamfEvent<'_> {
    fn walk(&self, first: &str, rest: &[Key]) -> (Cow<'_, Value>, usize) {
        if first == "type" {
            return (Cow::Owned(Value::from(self.type_code)), 0);
        }
        if first == "process" {
            return self
                .process
                .walk(rest)
                .unwrap_or_else(|| self.whole_at("process"));
        }
        let Some(fs) = &self.fs else {
            return (Cow::Owned(Value::Null), 0);
        };
        let value = match first {
            "path" => cell(&fs.path_value, || string(Some(fs.path))),
            "prevFile" => Cow::Owned(fs.prev_file.map_or(Value::Null, |p| string(Some(p)))),
            "isNew" => Cow::Owned(Value::Bool(fs.new)),
            "isNewFile" => Cow::Owned(Value::Bool(fs.new && !fs.new_directory)),
            "isNewDirectory" => Cow::Owned(Value::Bool(fs.new_directory)),
            "isModified" => Cow::Owned(Value::Bool(fs.modified)),
            "file" => return fs.walk_file(rest).unwrap_or_else(|| self.whole_at("file")),
            _ => Cow::Owned(Value::Null),
        };
        (value, 0)
    }

    fn whole(&self) -> Cow<'_, Value> {
        cell(&self.whole, || self.json())
    }
}
