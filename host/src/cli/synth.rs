//! `ward gen`: a seeded synthetic eslogger stream shaped like a busy Mac, for load and
//! soak tests and benchmarks.
//!
//! Shape follows real eslogger output (message version 10): every key of the envelope and of
//! process objects in the order-free JSON eslogger writes, escaped slashes, full `stat`
//! blocks, `env` on execs (which is why real exec lines run to several KB). The mix of kinds,
//! the process trees (launchd → apps and shells → helpers and tools), file churn in realistic
//! paths and the split between Apple, Developer ID and ad-hoc code are fixed by the seed, so
//! the same seed always yields the same stream.

use std::io::Write;

use serde_json::{Value, json};

/// A small, fast, stable PRNG (SplitMix64): same seed, same stream, on every platform and
/// every version of ward.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// (path, signing id, team id, platform) of programs a busy Mac runs.
const PROGRAMS: &[(&str, &str, Option<&str>, bool)] = &[
    ("/bin/zsh", "com.apple.zsh", None, true),
    ("/bin/bash", "com.apple.bash", None, true),
    ("/bin/ls", "com.apple.ls", None, true),
    ("/bin/cat", "com.apple.cat", None, true),
    ("/usr/bin/git", "com.apple.git", None, true),
    ("/usr/bin/curl", "com.apple.curl", None, true),
    ("/usr/bin/xattr", "com.apple.xattr", None, true),
    ("/usr/bin/osascript", "com.apple.osascript", None, true),
    (
        "/usr/bin/codesign",
        "com.apple.security.codesign",
        None,
        true,
    ),
    (
        "/usr/sbin/system_profiler",
        "com.apple.system_profiler",
        None,
        true,
    ),
    ("/usr/libexec/xpcproxy", "com.apple.xpc.proxy", None, true),
    ("/usr/bin/mdfind", "com.apple.mdfind", None, true),
    ("/bin/launchctl", "com.apple.xpc.launchctl", None, true),
    (
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
        "com.google.Chrome",
        Some("EQHXZ8M8AV"),
        false,
    ),
    (
        "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Helpers/Google Chrome Helper (Renderer).app/Contents/MacOS/Google Chrome Helper (Renderer)",
        "com.google.Chrome.helper.renderer",
        Some("EQHXZ8M8AV"),
        false,
    ),
    (
        "/Applications/Slack.app/Contents/MacOS/Slack",
        "com.tinyspeck.slackmacgap",
        Some("BQR82RBBHL"),
        false,
    ),
    (
        "/Applications/Visual Studio Code.app/Contents/MacOS/Electron",
        "com.microsoft.VSCode",
        Some("UBF8T346G9"),
        false,
    ),
    (
        "/Applications/zoom.us.app/Contents/MacOS/zoom.us",
        "us.zoom.xos",
        Some("BJ4HAAB9B3"),
        false,
    ),
    (
        "/opt/homebrew/bin/python3.12",
        "python3.12-55554944",
        None,
        false,
    ),
    (
        "/Users/alice/src/app/target/debug/app",
        "app-7f3a1c9e2b",
        None,
        false,
    ),
];

const USERS: &[&str] = &["alice", "bob"];
const FILE_DIRS: &[&str] = &[
    "/Users/{u}/Library/Caches/com.google.Chrome/Cache_Data",
    "/Users/{u}/Library/Application Support/Slack/IndexedDB",
    "/Users/{u}/src/app/src",
    "/Users/{u}/Documents",
    "/Users/{u}/Downloads",
    "/private/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T",
    "/private/tmp",
    "/Library/Preferences",
    "/Users/{u}/Library/Preferences",
];
const FILE_NAMES: &[&str] = &[
    "data_0",
    "index",
    "f_000a3c",
    "main.rs",
    "lib.rs",
    "Cargo.toml",
    "report.pdf",
    "notes.txt",
    "000003.log",
    "LOCK",
    "com.apple.finder.plist",
    "tmp.XXXX1a2b",
    "invoice.zip",
    "installer.pkg",
];

/// Kinds and their weights (per 1000 events), roughly a developer laptop's mix.
const MIX: &[(&str, usize)] = &[
    ("open", 260),
    ("close", 220),
    ("write", 100),
    ("exec", 60),
    ("fork", 60),
    ("exit", 60),
    ("create", 60),
    ("rename", 40),
    ("unlink", 40),
    ("mmap", 30),
    ("setextattr", 20),
    ("signal", 15),
    ("deleteextattr", 5),
    ("uipc_connect", 10),
    ("btm_launch_item_add", 2),
    ("xp_malware_detected", 1),
];

/// The `es_event_type_t` of a generated kind.
fn event_type(kind: &str) -> u32 {
    ward_event::model::TYPED_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| *n)
}

struct Proc {
    pid: i64,
    pidversion: i64,
    program: usize,
    parent: (i64, i64),
    uid: i64,
}

/// Generates events; holds the simulated process tree.
pub struct Generator {
    rng: Rng,
    procs: Vec<Proc>,
    next_pid: i64,
    seq: u64,
    clock_ns: u64,
}

fn token(pid: i64, pidversion: i64, uid: i64) -> Value {
    json!({"asid": 100_013, "auid": uid, "egid": 20, "euid": uid, "pid": pid, "pidversion": pidversion, "rgid": 20, "ruid": uid})
}

fn time(ns: u64) -> String {
    // 2026-10-05T09:00:00Z plus ns, formatted like eslogger (9 fractional digits, UTC).
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (9 + secs / 3600 % 15, secs / 60 % 60, secs % 60);
    format!("2026-10-05T{h:02}:{m:02}:{s:02}.{frac:09}Z")
}

impl Generator {
    /// A generator for `seed`, starting from launchd and a login shell per user.
    pub fn new(seed: u64) -> Self {
        let mut g = Self {
            rng: Rng::new(seed),
            procs: Vec::new(),
            next_pid: 400,
            seq: 0,
            clock_ns: 0,
        };
        g.procs.push(Proc {
            pid: 1,
            pidversion: 1,
            program: 10,
            parent: (0, 0),
            uid: 0,
        });
        for (i, _) in USERS.iter().enumerate() {
            let pid = g.alloc_pid();
            g.procs.push(Proc {
                pid,
                pidversion: pid * 10,
                program: 0,
                parent: (1, 1),
                uid: 501 + i as i64,
            });
        }
        g
    }

    fn alloc_pid(&mut self) -> i64 {
        self.next_pid += 1 + self.rng.below(3) as i64;
        if self.next_pid > 99_000 {
            self.next_pid = 400;
        }
        self.next_pid
    }

    fn stat(&mut self, ino: u64, mode: u32, size: u64) -> Value {
        let t = time(self.clock_ns.saturating_sub(3_600_000_000_000));
        json!({"st_dev": 16_777_231, "st_ino": ino, "st_mode": mode, "st_nlink": 1, "st_uid": 501, "st_gid": 20,
               "st_rdev": 0, "st_size": size, "st_blocks": size.div_ceil(512), "st_blksize": 4096, "st_flags": 0,
               "st_gen": 0, "st_atimespec": t, "st_mtimespec": t, "st_ctimespec": t, "st_birthtimespec": t})
    }

    fn file(&mut self, path: &str) -> Value {
        let ino = 20_000_000 + self.rng.below(5_000_000) as u64;
        let size = 64 + self.rng.below(2_000_000) as u64;
        json!({"path": path, "path_truncated": false, "stat": self.stat(ino, 33_188, size)})
    }

    fn process_json(&mut self, index: usize) -> Value {
        let Some(p) = self.procs.get(index) else {
            return Value::Null;
        };
        let (pid, pv, parent, uid, program) = (p.pid, p.pidversion, p.parent, p.uid, p.program);
        let (path, sid, team, platform) =
            PROGRAMS
                .get(program)
                .copied()
                .unwrap_or(("/bin/zsh", "com.apple.zsh", None, true));
        let adhoc = !platform && team.is_none();
        let flags = if platform {
            0x2601_4a01
        } else if adhoc {
            0x2202_0203
        } else {
            0x2201_0301
        };
        let category = if platform {
            1
        } else if adhoc {
            7
        } else {
            6
        };
        let exe_ino = 1_152_921_500_312_000_000u64 + program as u64;
        json!({
            "audit_token": token(pid, pv, uid),
            "parent_audit_token": token(parent.0, parent.1, uid),
            "responsible_audit_token": token(parent.0, parent.1, uid),
            "ppid": parent.0, "original_ppid": parent.0, "group_id": pid, "session_id": 400,
            "codesigning_flags": flags, "is_platform_binary": platform, "is_es_client": false,
            "cdhash": format!("{:040X}", u128::from(exe_ino) * 0x9E37_79B9),
            "signing_id": sid, "team_id": team,
            "executable": {"path": path, "path_truncated": false, "stat": self.stat(exe_ino, 33_261, 1_234_567)},
            "tty": if program <= 1 { json!({"path": "/dev/ttys003", "path_truncated": false, "stat": self.stat(1031, 8592, 0)}) } else { Value::Null },
            "start_time": "2026-10-05T08:59:59.000000Z",
            "cs_validation_category": category,
        })
    }

    fn user_of(&self, index: usize) -> &'static str {
        let uid = self.procs.get(index).map_or(501, |p| p.uid);
        USERS
            .get((uid - 501).clamp(0, 1) as usize)
            .copied()
            .unwrap_or("alice")
    }

    fn path_for(&mut self, index: usize) -> String {
        let user = self.user_of(index);
        let dir = self
            .rng
            .pick(FILE_DIRS)
            .copied()
            .unwrap_or("/private/tmp")
            .replace("{u}", user);
        let name = self.rng.pick(FILE_NAMES).copied().unwrap_or("data");
        format!("{dir}/{name}")
    }

    fn kind(&mut self) -> &'static str {
        let total: usize = MIX.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total);
        for (kind, weight) in MIX {
            if roll < *weight {
                return kind;
            }
            roll -= weight;
        }
        "open"
    }

    /// The next event as one eslogger JSON line (without newline).
    pub fn next_line(&mut self) -> String {
        self.seq += 1;
        self.clock_ns += 50_000 + self.rng.below(400_000) as u64;
        let mut kind = self.kind();
        // Keep the tree alive: never let it shrink to the roots, cap it at a realistic size.
        if kind == "exit" && self.procs.len() <= 3 {
            kind = "fork";
        }
        if kind == "fork" && self.procs.len() > 400 {
            kind = "exit";
        }
        let actor = 1 + self.rng.below(self.procs.len().saturating_sub(1).max(1));
        // The subject is captured before the payload changes the tree: for `exec` it is the
        // old image, for `exit` the process that is about to go.
        let subject = if matches!(kind, "btm_launch_item_add" | "xp_malware_detected") {
            0
        } else {
            actor
        };
        let process = self.process_json(subject);
        let (name, payload) = self.payload(kind, actor);
        let mut line = json!({
            "schema_version": 1, "version": 10, "time": time(self.clock_ns), "mach_time": 9_000_000_000u64 + self.clock_ns / 42,
            "event_type": event_type(name), "seq_num": self.seq, "global_seq_num": self.seq,
            "thread": {"thread_id": 1_000_000 + self.rng.below(50_000)}, "action_type": 1,
            "action": {"result": {"result": {"auth": 0}, "result_type": 0}},
            "process": process,
            "event": {name: payload},
        })
        .to_string();
        // eslogger escapes every slash.
        line = line.replace('/', "\\/");
        line
    }

    fn payload(&mut self, kind: &'static str, actor: usize) -> (&'static str, Value) {
        match kind {
            "fork" => {
                let Some(parent) = self.procs.get(actor) else {
                    return ("cs_invalidated", json!({}));
                };
                let (program, uid, parent_key) =
                    (parent.program, parent.uid, (parent.pid, parent.pidversion));
                let pid = self.alloc_pid();
                self.procs.push(Proc {
                    pid,
                    pidversion: pid * 10 + 1,
                    program,
                    parent: parent_key,
                    uid,
                });
                let child = self.process_json(self.procs.len() - 1);
                ("fork", json!({"child": child}))
            }
            "exec" => {
                let program = self.rng.below(PROGRAMS.len());
                if let Some(p) = self.procs.get_mut(actor) {
                    p.pidversion += 1;
                    p.program = program;
                }
                let target = self.process_json(actor);
                let path = PROGRAMS.get(program).map_or("/bin/ls", |p| p.0);
                let user = self.user_of(actor);
                let arg = self.path_for(actor);
                let env = [
                    "PATH=/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
                        .to_owned(),
                    format!("HOME=/Users/{user}"),
                    format!("USER={user}"),
                    "SHELL=/bin/zsh".to_owned(),
                    "TERM=xterm-256color".to_owned(),
                    "LANG=en_US.UTF-8".to_owned(),
                    "TMPDIR=/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/".to_owned(),
                    "__CFBundleIdentifier=com.apple.Terminal".to_owned(),
                    "XPC_FLAGS=0x0".to_owned(),
                    format!(
                        "SSH_AUTH_SOCK=/private/tmp/com.apple.launchd.{:010}/Listeners",
                        self.rng.below(1 << 30)
                    ),
                ];
                let payload = json!({
                    "target": target, "args": [path, "--flag", arg], "env": env,
                    "cwd": {"path": format!("/Users/{user}"), "path_truncated": false, "stat": {}},
                    "script": null, "dyld_exec_path": path, "last_fd": 3,
                    "fds": [{"fd": 0, "fdtype": 1}, {"fd": 1, "fdtype": 1}, {"fd": 2, "fdtype": 1}, {"fd": 3, "fdtype": 6, "pipe": {"pipe_id": 1234}}],
                    "image_cputype": 16_777_228, "image_cpusubtype": 2
                });
                ("exec", payload)
            }
            "exit" => {
                let stat = if self.rng.below(10) == 0 { 9 } else { 0 };
                self.procs.remove(actor);
                ("exit", json!({"stat": stat}))
            }
            "create" => {
                let path = self.path_for(actor);
                let (dir, name) = path.rsplit_once('/').unwrap_or(("/private/tmp", "x"));
                let dir = dir.to_owned();
                let name = name.to_owned();
                let dir_file =
                    json!({"path": dir, "path_truncated": false, "stat": self.stat(7, 16_877, 96)});
                (
                    "create",
                    json!({"destination_type": 1, "destination": {"new_path": {"dir": dir_file, "filename": name, "mode": 420}}, "acl": null}),
                )
            }
            "rename" => {
                let from = self.path_for(actor);
                let to = self.path_for(actor);
                let source = self.file(&from);
                let existing = self.file(&to);
                (
                    "rename",
                    json!({"source": source, "destination_type": 0, "destination": {"existing_file": existing}}),
                )
            }
            "unlink" => {
                let path = self.path_for(actor);
                let dir = path.rsplit_once('/').map_or("/", |(d, _)| d).to_owned();
                let target = self.file(&path);
                let parent = self.file(&dir);
                ("unlink", json!({"target": target, "parent_dir": parent}))
            }
            "open" => {
                let path = self.path_for(actor);
                let file = self.file(&path);
                (
                    "open",
                    json!({"fflag": if self.rng.below(3) == 0 { 3 } else { 1 }, "file": file}),
                )
            }
            "close" => {
                let path = self.path_for(actor);
                let target = self.file(&path);
                (
                    "close",
                    json!({"modified": self.rng.below(4) == 0, "target": target, "was_mapped_writable": false}),
                )
            }
            "write" => {
                let path = self.path_for(actor);
                ("write", json!({"target": self.file(&path)}))
            }
            "mmap" => {
                let lib = self.file("/usr/lib/libobjc.A.dylib");
                (
                    "mmap",
                    json!({"protection": 5, "max_protection": 7, "flags": 2, "file_pos": 0, "source": lib}),
                )
            }
            "setextattr" | "deleteextattr" => {
                let path = self.path_for(actor);
                let attr = if self.rng.below(3) == 0 {
                    "com.apple.quarantine"
                } else {
                    "com.apple.lastuseddate#PS"
                };
                (kind, json!({"target": self.file(&path), "extattr": attr}))
            }
            "signal" => {
                let target_index = 1 + self.rng.below(self.procs.len().saturating_sub(1).max(1));
                let target = self.process_json(target_index);
                (
                    "signal",
                    json!({"sig": 15, "target": target, "instigator": null}),
                )
            }
            "uipc_connect" => {
                let sock = self.file("/private/var/run/mDNSResponder");
                (
                    "uipc_connect",
                    json!({"file": sock, "domain": 1, "type": 1, "protocol": 0}),
                )
            }
            "btm_launch_item_add" => {
                let user = self.user_of(actor);
                let instigator = self.process_json(actor);
                (
                    "btm_launch_item_add",
                    json!({
                        "instigator": instigator, "app": null, "executable_path": format!("/Users/{user}/Library/Application Support/Helper/helper"),
                        "item": {"item_type": 3, "legacy": true, "managed": false, "uid": 501,
                                 "item_url": format!("file:///Users/{user}/Library/LaunchAgents/com.vendor.helper.plist"), "app_url": null}
                    }),
                )
            }
            _ => {
                let path = self.path_for(actor);
                (
                    "xp_malware_detected",
                    json!({"signature_version": "5287", "malware_identifier": "Adload",
                    "incident_identifier": "6F1A2B3C-1111-2222-3333-444455556666", "detected_path": path,
                    "detected_executable": null}),
                )
            }
        }
    }
}

/// What a generated stream looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// A busy, quiet Mac: apps, shells and file churn, where analytics rarely fire.
    #[default]
    Quiet,
    /// A Mac under attack: the example attack streams (attack chain, account takeover,
    /// intrusion — attack steps and their look-alikes) cycled with fresh process
    /// generations and moving time, so most events fire some analytic.
    Attack,
}

/// The example attack streams, in the order a cycle plays them. The short two play three
/// times a cycle, so the intrusion's 90 renames (a ransomware burst and its look-alike)
/// do not make most of the stream.
const ATTACK_STREAMS: &[&str] = &[
    include_str!("../../../examples/streams/attack-chain.jsonl"),
    include_str!("../../../examples/streams/account-takeover.jsonl"),
    include_str!("../../../examples/streams/attack-chain.jsonl"),
    include_str!("../../../examples/streams/account-takeover.jsonl"),
    include_str!("../../../examples/streams/attack-chain.jsonl"),
    include_str!("../../../examples/streams/account-takeover.jsonl"),
    include_str!("../../../examples/streams/intrusion.jsonl"),
];
/// Each stream's slot in a cycle (every stream spans under a minute).
const ATTACK_SLOT_MS: i64 = 120_000;
/// Added to every `pidversion` per play of a stream: each play is a fresh generation of
/// the same pids, as on a Mac that reuses pids (the examples' own pidversions are below
/// it).
const ATTACK_GENERATION: i64 = 100_000;
/// Plays before generations start over, keeping every `pidversion` an `i32` (as the
/// audit token holds it): 20,000 plays, 760,000 events, long after any detector or the
/// process table has forgotten the first.
const ATTACK_GENERATIONS: i64 = i32::MAX as i64 / ATTACK_GENERATION - 1;
/// The first cycle's start, 2026-10-05T09:00:00Z.
const ATTACK_EPOCH_MS: i64 = 1_791_190_800_000;
/// Nesting walked when renumbering (the examples nest 6 deep).
const ATTACK_MAX_DEPTH: usize = 32;

/// Generates the attack mix: the example attack streams cycled with fresh process
/// generations and moving time.
pub struct AttackGenerator {
    /// Each event parsed once, with its slot in the cycle and its time in the cycle.
    events: Vec<(Value, i64, i64)>,
    next: usize,
    cycle: i64,
    seq: u64,
}

impl AttackGenerator {
    /// The cycle of the bundled example streams.
    pub fn new() -> Self {
        let mut events = Vec::new();
        for (slot, text) in (0i64..).zip(ATTACK_STREAMS) {
            let parsed: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let first = parsed
                .first()
                .and_then(|v| {
                    v.get("time")?
                        .as_str()
                        .and_then(crate::clock::parse_rfc3339_ms)
                })
                .unwrap_or(0);
            for v in parsed {
                let at = v
                    .get("time")
                    .and_then(Value::as_str)
                    .and_then(crate::clock::parse_rfc3339_ms)
                    .map_or(0, |t| t - first);
                events.push((v, slot, slot * ATTACK_SLOT_MS + at));
            }
        }
        Self {
            events,
            next: 0,
            cycle: 0,
            seq: 0,
        }
    }

    /// Events in one cycle.
    pub fn cycle_len(&self) -> usize {
        self.events.len()
    }

    /// The next event as one eslogger JSON line (without newline).
    pub fn next_line(&mut self) -> String {
        if self.next >= self.events.len() {
            self.next = 0;
            self.cycle += 1;
        }
        let Some((template, slot, at)) = self.events.get(self.next) else {
            return String::new();
        };
        self.next += 1;
        self.seq += 1;
        let mut v = template.clone();
        let slots = ATTACK_STREAMS.len() as i64;
        let play = (self.cycle * slots + slot) % ATTACK_GENERATIONS;
        renumber(&mut v, play * ATTACK_GENERATION, 0);
        let cycle_ms = ATTACK_SLOT_MS * slots;
        let when = ATTACK_EPOCH_MS + self.cycle * cycle_ms + at;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "time".into(),
                Value::from(crate::clock::rfc3339_of_ms(when)),
            );
            o.insert("global_seq_num".into(), Value::from(self.seq));
            o.insert("seq_num".into(), Value::from(self.seq));
        }
        v.to_string().replace('/', "\\/")
    }
}

impl Default for AttackGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves every audit token (an object with `pid` and `pidversion`) of a process other than
/// launchd to generation `+ by`.
fn renumber(v: &mut Value, by: i64, depth: usize) {
    if depth > ATTACK_MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(o) => {
            let pid = o.get("pid").and_then(Value::as_i64);
            if let (Some(pid), Some(version)) = (pid, o.get("pidversion").and_then(Value::as_i64))
                && pid > 1
            {
                o.insert("pidversion".into(), Value::from(version + by));
            }
            for child in o.values_mut() {
                renumber(child, by, depth + 1);
            }
        }
        Value::Array(items) => {
            for child in items {
                renumber(child, by, depth + 1);
            }
        }
        _ => {}
    }
}

/// Writes `events` lines of `mix` (`seed` for the quiet mix) to `out`, one per line.
pub fn write_stream(events: u64, seed: u64, out: &mut impl Write) -> std::io::Result<()> {
    write_mix(events, seed, Mix::Quiet, out)
}

/// Writes `events` lines of `mix` (`seed` for the quiet mix; the attack mix is fixed) to
/// `out`, one per line.
pub fn write_mix(events: u64, seed: u64, mix: Mix, out: &mut impl Write) -> std::io::Result<()> {
    let mut quiet = Generator::new(seed);
    let mut attack = (mix == Mix::Attack).then(AttackGenerator::new);
    for _ in 0..events {
        let line = match &mut attack {
            Some(g) => g.next_line(),
            None => quiet.next_line(),
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Generations wrap before a `pidversion` leaves `i32` (the audit token's width):
    /// past it they were cut, identities of different plays collided, and a long attack
    /// stream fired fewer findings per cycle than a short one.
    #[test]
    fn attack_generations_stay_within_an_audit_tokens_pidversion() {
        let mut g = AttackGenerator::new();
        let plays = ATTACK_STREAMS.len() as i64;
        for cycle in [
            0,
            ATTACK_GENERATIONS / plays,
            ATTACK_GENERATIONS / plays + 1,
            1 << 20,
        ] {
            g.cycle = cycle;
            g.next = 0;
            for _ in 0..g.cycle_len() {
                let line: Value = serde_json::from_str(&g.next_line()).unwrap();
                let version = line["process"]["audit_token"]["pidversion"]
                    .as_i64()
                    .unwrap();
                assert!(i32::try_from(version).is_ok(), "cycle {cycle}: {version}");
            }
        }
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<String> = {
            let mut g = Generator::new(9);
            (0..200).map(|_| g.next_line()).collect()
        };
        let b: Vec<String> = {
            let mut g = Generator::new(9);
            (0..200).map(|_| g.next_line()).collect()
        };
        let c: Vec<String> = {
            let mut g = Generator::new(10);
            (0..200).map(|_| g.next_line()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn shape_matches_real_eslogger_records() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/macmonitor/eslogger-lineage.jsonl");
        let text = std::fs::read_to_string(&fixture).unwrap();
        let real: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let real_envelope = keys(&real[0]);
        let real_process = keys(&real[0]["process"]);
        let real_exec = real.iter().find_map(|r| r["event"].get("exec")).unwrap();

        let mut g = Generator::new(1);
        let mut kinds: HashMap<String, usize> = HashMap::new();
        let mut sizes = Vec::new();
        for _ in 0..5000 {
            let line = g.next_line();
            assert!(line.contains("\\/"), "slashes are escaped as eslogger does");
            let msg = ward_event::parse_line(line.as_bytes(), 1 << 20)
                .unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(!matches!(msg.event, ward_event::EventPayload::Other { .. }));
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(keys(&v), real_envelope, "envelope keys");
            assert_eq!(keys(&v["process"]), real_process, "process keys");
            assert_eq!(
                keys(&v["process"]["executable"]["stat"]),
                keys(&real[0]["process"]["executable"]["stat"])
            );
            let kind = v["event"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone();
            if kind == "exec" {
                for k in keys(real_exec) {
                    assert!(v["event"]["exec"].get(&k).is_some(), "exec lacks {k}");
                }
            }
            *kinds.entry(kind).or_default() += 1;
            sizes.push(line.len());
        }
        // A busy Mac: file events dominate, process lifecycle is a steady tenth or so.
        let share = |k: &str| kinds.get(k).copied().unwrap_or(0) as f64 / 5000.0;
        assert!(
            share("open") + share("close") + share("write") > 0.45,
            "{kinds:?}"
        );
        assert!((0.03..0.10).contains(&share("exec")), "{kinds:?}");
        assert!(kinds.len() >= 14, "kind variety: {kinds:?}");
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((1500..4500).contains(&mean), "mean line {mean} bytes");
        let execs: Vec<usize> = sizes.iter().copied().filter(|&s| s > 3000).collect();
        assert!(!execs.is_empty(), "exec lines carry env and run past 3 KB");
    }
}
