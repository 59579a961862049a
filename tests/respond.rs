//! The response stage end to end: `ward replay` and `ward run` over streams that name
//! real processes and files the test made, playbooks carried out (or not) on them, the
//! state directory read back with `ward actions`, `ward incidents` and `ward audit`. No
//! timings are asserted; waits poll for a state with generous limits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{root, wasm};
use serde_json::{Value, json};

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache")
}

fn ward_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(dir)
        .env("WARD_CACHE_DIR", cache())
        .env("WARD_STATE_DIR", dir.join("default-state"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temp dir with `ward.toml` (the text given), a state dir and a stream file.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.path().join("ward.toml"), config).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> String {
        self.path("state").display().to_string()
    }

    fn ward(&self, args: &[&str]) -> Output {
        ward_in(self.dir.path(), args)
    }

    /// `ward replay <stream> --config ward.toml --state state [--execute]`.
    fn replay(&self, stream: &[String], execute: bool) -> Output {
        let file = self.path("stream.jsonl");
        std::fs::write(&file, stream.join("\n") + "\n").unwrap();
        let mut args = vec![
            "replay",
            file.to_str().unwrap(),
            "--config",
            "ward.toml",
            "--state",
            "state",
        ];
        if execute {
            args.push("--execute");
        }
        let out = self.ward(&args);
        assert!(out.status.success(), "{}", text(&out));
        out
    }

    fn actions(&self) -> Vec<Value> {
        let out = self.ward(&["actions", "list", "--state", &self.state(), "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The actions of kind `action`.
fn of<'a>(actions: &'a [Value], action: &str) -> Vec<&'a Value> {
    actions.iter().filter(|a| a["action"] == action).collect()
}

/// The exec event of the attack chain (`/private/tmp/update`, ad-hoc signed, which
/// untrusted-exec reports) rewritten to name the image `(pid, pidversion)` at `path`.
fn exec_of(pid: i32, pidversion: i64, path: &str, seq: u64) -> String {
    let line = std::fs::read_to_string(root().join("examples/streams/attack-chain.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("\"global_seq_num\":1019"))
        .unwrap()
        .to_owned();
    let mut v: Value = serde_json::from_str(&line).unwrap();
    v["global_seq_num"] = json!(seq);
    v["process"]["audit_token"]["pid"] = json!(pid);
    v["process"]["audit_token"]["pidversion"] = json!(pidversion - 1);
    let target = &mut v["event"]["exec"]["target"];
    target["audit_token"]["pid"] = json!(pid);
    target["audit_token"]["pidversion"] = json!(pidversion);
    target["executable"]["path"] = json!(path);
    v["event"]["exec"]["args"] = json!([path, "--install"]);
    v.to_string()
}

/// A process that lives until killed, and its generation as ward sees it on Linux (the
/// start time in clock ticks).
struct Victim {
    child: std::process::Child,
    pid: i32,
    generation: i64,
}

impl Victim {
    fn start() -> Self {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        let generation = rest.split_whitespace().nth(19).unwrap().parse().unwrap();
        Self {
            child,
            pid,
            generation,
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn killed_by(&mut self) -> Option<i32> {
        let status = self.child.wait().unwrap();
        std::os::unix::process::ExitStatusExt::signal(&status)
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every built-in detector but untrusted-exec off, to keep debug runs quick.
const ONLY_UNTRUSTED_EXEC: &str = "[builtin.account-manipulation]\nmode = \"disabled\"\n[builtin.command-abuse]\nmode = \"disabled\"\n[builtin.jamf-analytics]\nmode = \"disabled\"\n[builtin.launch-persistence]\nmode = \"disabled\"\n[builtin.malware-activity]\nmode = \"disabled\"\n[builtin.process-injection]\nmode = \"disabled\"\n[builtin.quarantine-removal]\nmode = \"disabled\"\n[builtin.sensitive-files]\nmode = \"disabled\"\n[builtin.prevent-list]\nmode = \"disabled\"\n";

/// A config: the quiet built-ins, contain-process (kill, and quarantine if asked), one
/// playbook with `steps` in `mode`.
fn contain(mode: &str, quarantine: bool, extra: &str) -> String {
    format!(
        "{ONLY_UNTRUSTED_EXEC}[builtin.contain-process]\ngrants = [\"kill-process\", \"quarantine-file\"]\nconfig = {{ quarantine_binary = \"{quarantine}\" }}\n{extra}\n[[playbooks]]\nname = \"contain\"\nmode = \"{mode}\"\nmatch = {{ rules = [\"untrusted-exec-from-staging-path\"] }}\nsteps = [{{ remediate = \"contain-process\" }}]\n"
    )
}

/// A payload file in a staging path (`/tmp/…`), executable.
fn payload(dir: &Path) -> PathBuf {
    let file = dir.join("update");
    std::fs::write(&file, b"#!/bin/sh\necho pretend payload\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    file
}

/// The shipped example: every kind of step on the intrusion stream, as a dry run; the
/// playbooks fire once per key (a repeat is suppressed), findings of the chain are one
/// incident, nothing is carried out, and the audit log verifies.
#[test]
fn the_example_response_plan_dry_runs_on_the_intrusion_stream() {
    let case = Case::new("");
    let out = case.ward(&[
        "replay",
        root()
            .join("examples/streams/intrusion.jsonl")
            .to_str()
            .unwrap(),
        "--config",
        root()
            .join("examples/configs/response.toml")
            .to_str()
            .unwrap(),
        "--state",
        &case.state(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dry run: nothing was changed"), "{err}");
    assert!(err.contains("1 suppressed"), "{err}");
    let actions = case.actions();
    // Every action is a dry run or evidence gathered; nothing was carried out.
    for a in &actions {
        let status = a["status"].as_str().unwrap();
        if a["action"] == "collect" {
            assert_eq!(status, "done", "{a}");
        } else {
            assert_eq!(status, "dry-run", "{a}");
        }
        for key in ["id", "action", "status", "playbook", "incident", "target"] {
            assert!(!a[key].is_null(), "{key} in {a}");
        }
    }
    let kinds: std::collections::BTreeSet<&str> = actions
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for kind in [
        "collect",
        "kill-process",
        "quarantine-file",
        "remove-launch-item",
        "isolate-network",
        "notify",
        "jamf-lock",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    // The payload is killed and quarantined once, however many findings name it.
    let payload_kills: Vec<_> = of(&actions, "kill-process")
        .into_iter()
        .filter(|a| a["target"].as_str().unwrap().starts_with("pid 706 "))
        .collect();
    assert_eq!(payload_kills.len(), 1, "{payload_kills:?}");
    assert_eq!(
        of(&actions, "quarantine-file")
            .iter()
            .filter(|a| a["target"] == "/Users/Shared/.u")
            .count(),
        1
    );
    // Collection comes before anything destructive in each playbook run.
    let first_collect = actions
        .iter()
        .position(|a| a["action"] == "collect")
        .unwrap();
    let first_change = actions
        .iter()
        .position(|a| a["action"] != "collect")
        .unwrap();
    assert!(first_collect < first_change);
    // One chain, one incident, with its evidence bundle.
    let out = case.ward(&["incidents", "--state", &case.state(), "--json"]);
    let incidents: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["severity"], "critical");
    assert!(
        incidents[0]["bundle"]
            .as_str()
            .unwrap()
            .ends_with("incident-1.tar.gz")
    );
    let out = case.ward(&["audit", "verify", "--state", &case.state()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact"));
}

/// A replay without `--execute` touches nothing: the process it names keeps running and
/// the file stays, however the playbook is set; the records say what would have been done.
#[test]
fn replay_without_execute_touches_nothing() {
    let work = tempfile::tempdir().unwrap();
    let file = payload(work.path());
    let mut victim = Victim::start();
    let case = Case::new(&contain("enforce", true, ""));
    case.replay(
        &[exec_of(
            victim.pid,
            victim.generation,
            file.to_str().unwrap(),
            1,
        )],
        false,
    );
    assert!(victim.alive());
    assert!(file.exists());
    let actions = case.actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    for a in &actions {
        assert_eq!(a["status"], "dry-run", "{a}");
        assert!(
            a["outcome"]["details"]
                .as_str()
                .unwrap()
                .starts_with("dry run")
        );
    }
}

/// A real process is killed by its identity; a look-alike (the same pid, another
/// generation: a reused pid) is spared and the refusal recorded.
#[test]
fn a_process_is_killed_by_identity_and_a_reused_pid_is_spared() {
    let work = tempfile::tempdir().unwrap();
    let file = payload(work.path());
    let mut victim = Victim::start();
    let path = file.to_str().unwrap();
    let case = Case::new(&contain("enforce", false, ""));
    case.replay(&[exec_of(victim.pid, victim.generation + 1, path, 1)], true);
    assert!(victim.alive(), "the look-alike was spared");
    let kill = &of(&case.actions(), "kill-process")[0].clone();
    assert_eq!(kill["status"], "failed", "{kill}");
    assert!(
        kill["outcome"]["details"]
            .as_str()
            .unwrap()
            .contains("reused"),
        "{kill}"
    );
    case.replay(&[exec_of(victim.pid, victim.generation, path, 2)], true);
    assert_eq!(victim.killed_by(), Some(9));
    let kills = of(&case.actions(), "kill-process")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(kills[1]["status"], "done", "{kills:?}");
    assert!(
        kills[1]["outcome"]["details"]
            .as_str()
            .unwrap()
            .starts_with("killed")
    );
}

/// A real file is quarantined into the vault and `ward actions undo` restores it byte for
/// byte with its mode, owner, times and extended attributes.
#[test]
fn a_file_is_quarantined_and_restored_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let file = payload(work.path());
    std::fs::write(&file, (0..=255u8).cycle().take(70_000).collect::<Vec<u8>>()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o741)).unwrap();
    let xattrs = xattr::set(&file, "user.ward.case", b"kept").is_ok();
    let before = std::fs::metadata(&file).unwrap();
    let content = std::fs::read(&file).unwrap();
    let case = Case::new(&contain("enforce", true, ""));
    // No such process: the kill fails, the quarantine still happens.
    case.replay(&[exec_of(4_000_000, 1, file.to_str().unwrap(), 1)], true);
    assert!(!file.exists(), "quarantined");
    let actions = case.actions();
    let q = of(&actions, "quarantine-file")[0];
    assert_eq!(q["status"], "done", "{q}");
    assert_eq!(q["undo"]["kind"], "restore");
    let item = case
        .path("state/vault")
        .join(q["id"].as_i64().unwrap().to_string());
    assert_eq!(std::fs::read(item.join("content")).unwrap(), content);
    let id = q["id"].to_string();
    let out = case.ward(&["actions", "undo", &id, "--state", &case.state()]);
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), content);
    assert_eq!(after.mode(), before.mode());
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    if xattrs {
        assert_eq!(
            xattr::get(&file, "user.ward.case").unwrap().unwrap(),
            b"kept"
        );
    }
    let q = case
        .actions()
        .into_iter()
        .find(|a| a["action"] == "quarantine-file")
        .unwrap();
    assert_eq!(q["status"], "undone", "{q}");
    // Undone once: a second undo is refused.
    let out = case.ward(&["actions", "undo", &id, "--state", &case.state()]);
    assert!(!out.status.success());
}

/// Shadow mode records what it would have done and does nothing.
#[test]
fn shadow_mode_records_without_acting() {
    let work = tempfile::tempdir().unwrap();
    let file = payload(work.path());
    let mut victim = Victim::start();
    let case = Case::new(&contain("shadow", true, ""));
    case.replay(
        &[exec_of(
            victim.pid,
            victim.generation,
            file.to_str().unwrap(),
            1,
        )],
        true,
    );
    assert!(victim.alive());
    assert!(file.exists());
    let actions = case.actions();
    assert_eq!(actions.len(), 2);
    for a in &actions {
        assert_eq!(a["status"], "shadow", "{a}");
        assert_eq!(a["mode"], "shadow");
    }
}

/// Evidence comes before any change, into a tar.gz whose manifest lists every file with
/// its size and SHA-256 — checked here against the files in the bundle.
#[test]
fn the_evidence_bundle_matches_its_manifest() {
    let mac = tempfile::tempdir().unwrap();
    let agents = mac.path().join("Users/alice/Library/LaunchAgents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("com.apple.updater.plist"),
        b"<plist>evil</plist>",
    )
    .unwrap();
    std::fs::create_dir_all(mac.path().join("etc/sudoers.d")).unwrap();
    std::fs::write(
        mac.path().join("etc/sudoers.d/zz"),
        b"alice ALL=(ALL) NOPASSWD: ALL\n",
    )
    .unwrap();
    let root_dir = mac.path().display().to_string();
    let config = format!(
        "{ONLY_UNTRUSTED_EXEC}[builtin.persistence-evidence]\ngrants = [\"file-read\"]\nfile_scope = [\"{root_dir}\"]\nconfig = {{ root = \"{root_dir}\" }}\n[builtin.process-evidence]\ngrants = [\"file-read\"]\nfile_scope = [\"{root_dir}\"]\nconfig = {{ root = \"{root_dir}\" }}\n[[playbooks]]\nname = \"evidence\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ collect = \"process-evidence\" }}, {{ collect = \"persistence-evidence\" }}]\n"
    );
    let case = Case::new(&config);
    case.replay(&[exec_of(4_000_001, 1, "/private/tmp/update", 1)], false);
    let collects = of(&case.actions(), "collect")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(collects.len(), 2);
    let bundle = PathBuf::from(
        collects[1]["outcome"]["evidence"]["bundle"]
            .as_str()
            .unwrap(),
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&bundle).unwrap(),
    ));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(
        listed.len() + 1,
        files.len(),
        "every file listed: {:?}",
        files.keys()
    );
    for f in listed {
        let data = &files[f["path"].as_str().unwrap()];
        assert_eq!(data.len() as u64, f["size"].as_u64().unwrap());
        use sha2::Digest as _;
        assert_eq!(hex::encode(sha2::Sha256::digest(data)), f["sha256"]);
    }
    let all = files
        .values()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect::<String>();
    assert!(
        all.contains("<plist>evil</plist>"),
        "the launch agent is in the bundle"
    );
    assert!(
        all.contains("NOPASSWD"),
        "the sudoers drop-in is in the bundle"
    );
}

/// An action outside the remediator's granted capabilities is refused and recorded; so
/// is everything the invariants forbid, whatever the playbook's mode.
#[test]
fn every_safety_invariant_refuses() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let greedy = wasm("fixture-greedy-remediator").display().to_string();
    let case_dir_config = format!(
        "{ONLY_UNTRUSTED_EXEC}[[plugins]]\npath = \"{greedy}\"\ngrants = [\"notify\"]\n[builtin.contain-process]\ngrants = [\"kill-process\", \"quarantine-file\"]\n[[playbooks]]\nname = \"greedy\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ remediate = \"fixture-greedy-remediator\" }}, {{ remediate = \"contain-process\" }}]\n"
    );
    let case = Case::new(&case_dir_config);
    // The finding names ward's own process, running a file in ward's own state: ward
    // reads the stream from stdin, so the test knows its pid before writing the event.
    let own = case.path("state").join("ward.db");
    let mut replay = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "replay",
            "-",
            "--config",
            "ward.toml",
            "--state",
            "state",
            "--execute",
        ])
        .current_dir(case.dir.path())
        .env("WARD_CACHE_DIR", cache())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ward_pid = i32::try_from(replay.id()).unwrap();
    {
        use std::io::Write as _;
        let mut stdin = replay.stdin.take().unwrap();
        writeln!(stdin, "{}", exec_of(ward_pid, 1, own.to_str().unwrap(), 1)).unwrap();
    }
    let out = replay.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let actions = case.actions();
    let status_of = |kind: &str| -> Vec<(String, String)> {
        of(&actions, kind)
            .iter()
            .map(|a| {
                (
                    a["status"].as_str().unwrap().to_owned(),
                    format!("{} {}", a["reason"], a["outcome"]),
                )
            })
            .collect()
    };
    // Not granted: isolation, a kill of launchd, an erase.
    for kind in ["isolate-network", "jamf-erase"] {
        let s = status_of(kind);
        assert_eq!(s.len(), 1, "{kind}: {s:?}");
        assert_eq!(s[0].0, "refused", "{kind}: {s:?}");
        assert!(s[0].1.contains("was not granted"), "{kind}: {s:?}");
    }
    let kills = status_of("kill-process");
    assert!(kills.iter().all(|(s, _)| s == "refused"), "{kills:?}");
    assert!(
        kills.iter().any(|(_, r)| r.contains("not granted")),
        "{kills:?}"
    );
    // contain-process may kill, but not ward itself …
    assert!(
        kills.iter().any(|(_, r)| r.contains("ward itself")),
        "{kills:?}"
    );
    // … nor quarantine ward's own state.
    let q = status_of("quarantine-file");
    assert_eq!(q[0].0, "refused", "{q:?}");
    assert!(q[0].1.contains("ward's own"), "{q:?}");
    assert!(own.exists());
    // The notify it was granted ran.
    assert_eq!(status_of("notify")[0].0, "done");
    // The blast radius: two changes a minute; the third payload's quarantine is refused
    // (and a kill that found nothing to kill changed nothing: it does not count).
    let work = tempfile::tempdir().unwrap();
    let payloads: Vec<PathBuf> = (0..3)
        .map(|i| {
            let dir = work.path().join(i.to_string());
            std::fs::create_dir(&dir).unwrap();
            payload(&dir)
        })
        .collect();
    let case = Case::new(&contain(
        "enforce",
        true,
        "[response]\nmax_actions_per_minute = 2\n",
    ));
    case.replay(
        &payloads
            .iter()
            .enumerate()
            .map(|(i, p)| exec_of(4_000_030 + i as i32, 1, p.to_str().unwrap(), i as u64 + 1))
            .collect::<Vec<_>>(),
        true,
    );
    let actions = case.actions();
    let q: Vec<Value> = of(&actions, "quarantine-file")
        .into_iter()
        .cloned()
        .collect();
    let statuses: Vec<&str> = q.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["done", "done", "refused"], "{actions:?}");
    assert!(
        q[2]["reason"].as_str().unwrap().contains("blast radius"),
        "{}",
        q[2]
    );
    assert!(payloads[2].exists(), "the third stayed");
    // Isolation with no management host is refused at the policy check.
    let config = format!(
        "{ONLY_UNTRUSTED_EXEC}[builtin.isolate-host]\ngrants = [\"isolate-network\"]\n[[playbooks]]\nname = \"isolate\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ remediate = \"isolate-host\" }}]\n"
    );
    let case = Case::new(&config);
    case.replay(&[exec_of(4_000_002, 1, "/private/tmp/update", 1)], true);
    let iso = of(&case.actions(), "isolate-network")[0].clone();
    assert_eq!(iso["status"], "refused", "{iso}");
    assert!(
        iso["reason"]
            .as_str()
            .unwrap()
            .contains("no management host"),
        "{iso}"
    );
}

/// `ward audit verify` exits 0 on an intact log and 1, naming the first broken record, on
/// an edited, a removed and a reordered one.
#[test]
fn audit_verify_catches_edits_removals_and_reorders() {
    let case = Case::new(&contain("enforce", false, ""));
    case.replay(
        &[
            exec_of(4_000_003, 1, "/private/tmp/update", 1),
            exec_of(4_000_004, 1, "/private/tmp/update2", 2),
        ],
        false,
    );
    let verify = |state: &Path| {
        let out = case.ward(&["audit", "verify", "--state", state.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = verify(&case.path("state"));
    assert_eq!(code, Some(0), "{said}");
    let copy = |name: &str| {
        let to = case.path(name);
        std::fs::create_dir(&to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o700)).unwrap();
        // The database is consistent on disk once the replay exited (WAL checkpointed or
        // not: the WAL file travels with it).
        for f in ["ward.db", "ward.db-wal", "ward.db-shm"] {
            let from = case.path("state").join(f);
            if from.exists() {
                std::fs::copy(&from, to.join(f)).unwrap();
            }
        }
        let db = rusqlite::Connection::open(to.join("ward.db")).unwrap();
        db.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
        (to, db)
    };
    let (edited, db) = copy("edited");
    db.execute(
        "UPDATE audit SET time = '2000-01-01T00:00:00Z' WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(db);
    let (code, said) = verify(&edited);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("record 3") && said.contains("edited"),
        "{said}"
    );

    let (removed, db) = copy("removed");
    db.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    drop(db);
    let (code, said) = verify(&removed);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("record 2") && said.contains("removed"),
        "{said}"
    );

    let (reordered, db) = copy("reordered");
    db.execute_batch(
        "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = -1;",
    )
    .unwrap();
    drop(db);
    let (code, said) = verify(&reordered);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("record 2") && said.contains("reordered"),
        "{said}"
    );
}

/// A minimal HTTP/1.1 server playing Jamf Pro: it checks each request and answers like
/// the API; it keeps what it saw.
struct JamfServer {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// One request the server saw: method, target, headers, body.
type Seen = (String, String, Vec<(String, String)>, String);

impl JamfServer {
    fn start() -> Self {
        use std::io::{BufRead as _, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let log = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let target = parts.next().unwrap_or("").to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end().to_owned();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let bearer = headers
                    .iter()
                    .any(|(k, v)| k == "authorization" && v == "Bearer tok-123");
                let (status, answer) = match (method.as_str(), target.split('?').next().unwrap()) {
                    ("POST", "/api/oauth/token")
                        if body.contains("client_id=ward-client")
                            && body.contains("client_secret=s3cr%21t")
                            && body.contains("grant_type=client_credentials") =>
                    {
                        ("200 OK", r#"{"access_token":"tok-123","token_type":"Bearer","expires_in":1200}"#.to_owned())
                    }
                    ("GET", "/api/v1/computers-inventory") if bearer && target.contains("C02TEST") => (
                        "200 OK",
                        r#"{"totalCount":1,"results":[{"id":"77","general":{"managementId":"mgmt-77"}}]}"#.to_owned(),
                    ),
                    ("POST", "/api/v2/mdm/commands") if bearer => {
                        ("201 Created", r#"[{"id":"cmd-1","href":"/api/v2/mdm/commands/cmd-1"}]"#.to_owned())
                    }
                    ("PATCH", "/api/v1/computers-inventory-detail/77") if bearer => {
                        ("200 OK", r#"{"id":"77"}"#.to_owned())
                    }
                    _ => ("401 Unauthorized", r#"{"error":"refused by the test"}"#.to_owned()),
                };
                log.lock().unwrap().push((method, target, headers, body));
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Self { addr, seen }
    }
}

/// A Jamf Pro lock and penalty box go to the server with the credentials only the host
/// holds (a 0600 file); the PIN stays with the action's outcome; the secret appears in no
/// record.
#[test]
fn a_jamf_pro_lock_is_sent_with_host_held_credentials() {
    let server = JamfServer::start();
    let case = Case::new("");
    let creds = case.path("jamf.json");
    std::fs::write(
        &creds,
        r#"{"client_id":"ward-client","client_secret":"s3cr!t"}"#,
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        "{ONLY_UNTRUSTED_EXEC}[device]\nserial = \"C02TEST\"\n[response.jamf]\nurl = \"http://{}\"\ncredentials = \"jamf.json\"\npenalty_box = {{ extension_attribute_id = 42, value = \"boxed\" }}\n[builtin.jamf-lockdown]\ngrants = [\"jamf-lock\", \"jamf-penalty-box\", \"jamf-policy\"]\nconfig = {{ message = \"Locked by security\" }}\n[[playbooks]]\nname = \"lock\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ remediate = \"jamf-lockdown\" }}]\n",
        server.addr
    );
    std::fs::write(case.path("ward.toml"), config).unwrap();
    case.replay(&[exec_of(4_000_005, 1, "/private/tmp/update", 1)], true);
    let actions = case.actions();
    let lock = of(&actions, "jamf-lock")[0];
    assert_eq!(lock["status"], "done", "{lock}");
    let pin = lock["outcome"]["evidence"]["pin"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pin.len(), 6);
    assert_eq!(of(&actions, "jamf-penalty-box")[0]["status"], "done");
    let seen = server.seen.lock().unwrap().clone();
    let paths: Vec<(&str, &str)> = seen
        .iter()
        .map(|(m, t, _, _)| (m.as_str(), t.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/api/oauth/token"),
            ("GET", "/api/v1/computers-inventory"),
            ("POST", "/api/v2/mdm/commands"),
            ("PATCH", "/api/v1/computers-inventory-detail/77"),
        ]
    );
    let command: Value = serde_json::from_str(&seen[2].3).unwrap();
    assert_eq!(command["clientData"][0]["managementId"], "mgmt-77");
    assert_eq!(command["commandData"]["commandType"], "DEVICE_LOCK");
    assert_eq!(command["commandData"]["pin"], pin);
    assert_eq!(command["commandData"]["message"], "Locked by security");
    let patch: Value = serde_json::from_str(&seen[3].3).unwrap();
    assert_eq!(patch["extensionAttributes"][0]["definitionId"], "42");
    assert_eq!(patch["extensionAttributes"][0]["values"][0], "boxed");
    // The secret is in no record, log or answer ward keeps.
    let out = case.ward(&["audit", "list", "--state", &case.state(), "--json"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        !audit.contains("s3cr"),
        "the secret leaked into the audit log"
    );
    assert!(!serde_json::to_string(&actions).unwrap().contains("s3cr"));
}

/// Blocking an image's cdhash sweeps the processes already running it: found through the
/// process table, killed per the sweep policy, each kill an action of its own.
#[test]
fn a_new_block_sweeps_processes_already_running() {
    let mut victim = Victim::start();
    let config = format!(
        "{ONLY_UNTRUSTED_EXEC}[response.sweep]\naction = \"kill\"\n[builtin.block-offender]\ngrants = [\"block\"]\n[[playbooks]]\nname = \"block\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ remediate = \"block-offender\" }}]\n"
    );
    let case = Case::new(&config);
    case.replay(
        &[exec_of(
            victim.pid,
            victim.generation,
            "/private/tmp/update",
            1,
        )],
        true,
    );
    assert_eq!(victim.killed_by(), Some(9));
    let actions = case.actions();
    let block = of(&actions, "block")
        .into_iter()
        .find(|a| a["target"].as_str().unwrap().starts_with("cdhash"))
        .unwrap();
    assert_eq!(block["status"], "done", "{block}");
    let kill = of(&actions, "kill-process")[0];
    assert_eq!(kill["parent"], block["id"], "{kill}");
    assert_eq!(kill["status"], "done", "{kill}");
    // Undo takes the entry out again.
    let out = case.ward(&[
        "actions",
        "undo",
        &block["id"].to_string(),
        "--state",
        &case.state(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A playbook that names a plugin that is not loaded is refused at load, naming the file,
/// line and key; so is a collect step after a remediate step.
#[test]
fn config_errors_name_the_file_line_and_key() {
    let case = Case::new(&format!(
        "{ONLY_UNTRUSTED_EXEC}\n[[playbooks]]\nname = \"p\"\nsteps = [\n  {{ notify = {{ title = \"t\", body = \"b\" }} }},\n  {{ remediate = \"nope\" }},\n]\n"
    ));
    let out = case.ward(&["replay", "-", "--config", "ward.toml", "--state", "state"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let config = std::fs::read_to_string(case.path("ward.toml")).unwrap();
    let line = config.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    let column = config
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("\"nope\"")
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "ward.toml:{line}:{column}: playbooks[0] (p).steps[1].remediate: no remediator `nope` is loaded"
        )),
        "{err}"
    );
    let case = Case::new(&format!(
        "{ONLY_UNTRUSTED_EXEC}[builtin.contain-process]\ngrants = [\"kill-process\", \"quarantine-file\"]\n[[playbooks]]\nname = \"p\"\nsteps = [{{ remediate = \"contain-process\" }}, {{ collect = \"process-evidence\" }}]\n"
    ));
    let out = case.ward(&["replay", "-", "--config", "ward.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("collect comes after a remediate step"),
        "{}",
        text(&out)
    );
}

/// The live agent: an `approve` action waits for `ward actions approve` (through the
/// control socket) and is carried out; one nobody approves is denied at its timeout; the
/// tag it set puts the Mac in a smart group, which scopes the next playbook.
#[test]
fn approvals_time_out_to_deny_and_tags_drive_smart_groups() {
    let config = format!(
        "{ONLY_UNTRUSTED_EXEC}[agent]\nstate_dir = \"state\"\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = true\n[[smart_groups]]\nname = \"suspect\"\ntags = [\"suspect\"]\n[[playbooks]]\nname = \"ask\"\nmode = \"approve\"\napproval_timeout_secs = 3\nmatch = {{ evidence = {{ path = \"/private/tmp/first\" }} }}\nsteps = [{{ tag = \"suspect\" }}, {{ tag = \"watched\" }}]\n[[playbooks]]\nname = \"in-group\"\nscope = [\"suspect\"]\nmatch = {{ evidence = {{ path = \"/private/tmp/second\" }} }}\nsteps = [{{ tag = \"confirmed\" }}]\n"
    );
    let case = Case::new(&config);
    std::fs::write(case.path("events.jsonl"), "").unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config", "ward.toml"])
        .current_dir(case.dir.path())
        .env("WARD_CACHE_DIR", cache())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(case.path("out.ndjson")).unwrap())
        .stderr(std::fs::File::create(case.path("err.txt")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(case.path("err.txt")).unwrap_or_default();
    let wait_for = |what: &str, ok: &dyn Fn(&[Value]) -> bool| {
        let start = Instant::now();
        loop {
            if case.path("state/ward.db").exists() {
                let actions = case.actions();
                if ok(&actions) {
                    return actions;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "waiting for {what}\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let append = |line: String| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(case.path("events.jsonl"))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    };
    // Out of the group, the second playbook does not fire.
    append(exec_of(4_000_010, 1, "/private/tmp/second", 1));
    append(exec_of(4_000_011, 1, "/private/tmp/first", 2));
    let pending = wait_for("two pending approvals", &|a| {
        a.iter()
            .filter(|x| x["status"] == "pending-approval")
            .count()
            == 2
    });
    assert!(
        pending.iter().all(|a| a["playbook"] == "ask"),
        "{pending:?}"
    );
    let first = pending[0]["id"].to_string();
    let out = case.ward(&["actions", "approve", &first, "--state", &case.state()]);
    assert!(out.status.success(), "{}\n{}", text(&out), log());
    let after = wait_for("the approved tag and the timed-out one", &|a| {
        a.iter().any(|x| x["status"] == "done") && a.iter().any(|x| x["status"] == "denied")
    });
    let denied = after.iter().find(|x| x["status"] == "denied").unwrap();
    assert!(
        denied["outcome"]["details"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{denied}"
    );
    // Tagged `suspect`: the Mac is in the group; the same finding now fires `in-group`.
    append(exec_of(4_000_012, 1, "/private/tmp/second", 3));
    wait_for("the scoped playbook", &|a| {
        a.iter()
            .any(|x| x["playbook"] == "in-group" && x["status"] == "done")
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(agent.id()).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(agent.wait().unwrap().success(), "{}", log());
    let out = case.ward(&["audit", "verify", "--state", &case.state()]);
    assert!(out.status.success(), "{}", text(&out));
    let audit = String::from_utf8_lossy(
        &case
            .ward(&["audit", "list", "--state", &case.state(), "--json"])
            .stdout,
    )
    .into_owned();
    for kind in [
        "plugin-loaded",
        "playbook-matched",
        "approval",
        "tag-set",
        "smart-groups",
    ] {
        assert!(
            audit.contains(&format!("\"kind\":\"{kind}\"")),
            "{kind} not audited"
        );
    }
}

/// Network namespaces for the isolation test: `a` plays the Mac, `b` the network with a
/// management host (`.2`) and another host (`.3`), joined by a veth pair. Removed on drop.
struct Netns {
    a: String,
    b: String,
    net: String,
    listener: Option<std::process::Child>,
}

fn run_ok(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn make() -> Result<Self, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        run_ok(&["nft", "--version"]).map_err(|e| format!("no nft: {e}"))?;
        run_ok(&["ip", "-V"]).map_err(|e| format!("no ip: {e}"))?;
        run_ok(&["python3", "--version"]).map_err(|e| format!("no python3: {e}"))?;
        let tag = format!("w{}", std::process::id() % 100_000);
        let octet = 20 + std::process::id() % 200;
        let ns = Self {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
            net: format!("10.77.{octet}"),
            listener: None,
        };
        let (va, vb) = (format!("{tag}va"), format!("{tag}vb"));
        let (a, b, net) = (ns.a.as_str(), ns.b.as_str(), ns.net.as_str());
        for cmd in [
            vec!["ip", "netns", "add", a],
            vec!["ip", "netns", "add", b],
            vec![
                "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
            ],
            vec!["ip", "link", "set", &va, "netns", a],
            vec!["ip", "link", "set", &vb, "netns", b],
        ] {
            run_ok(&cmd)?;
        }
        let (one, two, three) = (
            format!("{net}.1/24"),
            format!("{net}.2/24"),
            format!("{net}.3/24"),
        );
        for cmd in [
            vec!["ip", "-n", a, "addr", "add", &one, "dev", &va],
            vec!["ip", "-n", a, "link", "set", &va, "up"],
            vec!["ip", "-n", a, "link", "set", "lo", "up"],
            vec!["ip", "-n", b, "addr", "add", &two, "dev", &vb],
            vec!["ip", "-n", b, "addr", "add", &three, "dev", &vb],
            vec!["ip", "-n", b, "link", "set", &vb, "up"],
            vec!["ip", "-n", b, "link", "set", "lo", "up"],
        ] {
            run_ok(&cmd)?;
        }
        Ok(ns)
    }

    /// Listeners on `.2:8443` (the management host) and `.3:8443` in `b`.
    fn listen(&mut self) {
        let script = format!(
            "import socket, threading\n\
             def serve(addr):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    s.bind((addr, 8443)); s.listen(64)\n    while True:\n        c, _ = s.accept(); c.close()\n\
             for a in ['{0}.2', '{0}.3']:\n    threading.Thread(target=serve, args=(a,), daemon=True).start()\n\
             threading.Event().wait()\n",
            self.net
        );
        self.listener = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.b, "python3", "-c", &script])
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while !(self.reachable(2) && self.reachable(3)) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "listeners never came up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `a` can connect to `.host:8443`.
    fn reachable(&self, host: u8) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.a,
                "python3",
                "-c",
                "import socket, sys; socket.create_connection((sys.argv[1], 8443), timeout=1)",
                &format!("{}.{host}", self.net),
            ])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `ward <args>` inside `a`.
    fn ward(&self, case: &Case, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.a, env!("CARGO_BIN_EXE_ward")])
            .args(args)
            .current_dir(case.dir.path())
            .env("WARD_CACHE_DIR", cache())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ward_run(&self, case: &Case, log: &str) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.a, env!("CARGO_BIN_EXE_ward")])
            .args(["run", "--config", "ward.toml"])
            .current_dir(case.dir.path())
            .env("WARD_CACHE_DIR", cache())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(case.path(log)).unwrap())
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(l) = &mut self.listener {
            let _ = l.kill();
            let _ = l.wait();
        }
        let _ = run_ok(&["ip", "netns", "del", &self.a]);
        let _ = run_ok(&["ip", "netns", "del", &self.b]);
    }
}

/// Isolation inside a network namespace the test makes: the management host stays
/// reachable and another host does not; undo restores both; a rule set that cut the
/// management host off is rolled back at once; and an isolation whose agent was killed is
/// released by its lease when the agent starts again.
#[test]
fn isolation_keeps_the_management_host_and_releases_by_undo_and_lease() {
    let mut ns = match Netns::make() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!(
                "skipped: cannot make network namespaces here ({why}); CI installs nftables and runs as root"
            );
            return;
        }
    };
    ns.listen();
    let isolate = |extra: &str, lease: u64| {
        format!(
            "{ONLY_UNTRUSTED_EXEC}{extra}[response.isolation]\nbackend = \"nftables\"\nallow = [\"{}.2:8443\"]\ndns = [\"{}.53\"]\napple_push = false\nselftest_timeout_ms = 1000\n[builtin.isolate-host]\ngrants = [\"isolate-network\"]\n[[playbooks]]\nname = \"isolate\"\nmatch = {{ severity = \"high\" }}\nsteps = [{{ remediate = \"isolate-host\", lease_secs = {lease} }}]\n",
            ns.net, ns.net
        )
    };
    // Isolate, check, undo.
    let case = Case::new(&isolate("", 600));
    std::fs::write(
        case.path("stream.jsonl"),
        exec_of(4_000_020, 1, "/private/tmp/update", 1) + "\n",
    )
    .unwrap();
    let out = ns.ward(
        &case,
        &[
            "replay",
            "stream.jsonl",
            "--config",
            "ward.toml",
            "--state",
            "state",
            "--execute",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let iso = of(&case.actions(), "isolate-network")[0].clone();
    assert_eq!(iso["status"], "done", "{iso}");
    assert!(!iso["lease_expires"].is_null(), "{iso}");
    assert!(ns.reachable(2), "the management host stays reachable");
    assert!(!ns.reachable(3), "another host is cut off");
    let out = ns.ward(
        &case,
        &[
            "actions",
            "undo",
            &iso["id"].to_string(),
            "--state",
            &case.state(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(ns.reachable(2) && ns.reachable(3), "released");

    // A rule set that cuts the management host off is rolled back at once.
    let broken = Case::new("");
    let dropall = broken.path("dropall.nft");
    std::fs::write(
        &dropall,
        "table inet ward_isolation {\n  chain output { type filter hook output priority -300; policy drop; }\n}\n",
    )
    .unwrap();
    let wrapper = broken.path("nft-broken");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# Checks the real rules, loads a drop-all table instead, lets the rest through.\nif [ \"$1\" = \"-f\" ]; then exec nft -f {}; fi\nexec nft \"$@\"\n",
            dropall.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        broken.path("ward.toml"),
        isolate("", 600).replace(
            "backend = \"nftables\"",
            &format!(
                "backend = \"nftables\"\nprogram = \"{}\"",
                wrapper.display()
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        broken.path("stream.jsonl"),
        exec_of(4_000_021, 1, "/private/tmp/update", 1) + "\n",
    )
    .unwrap();
    let out = ns.ward(
        &broken,
        &[
            "replay",
            "stream.jsonl",
            "--config",
            "ward.toml",
            "--state",
            "state",
            "--execute",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let iso = of(&broken.actions(), "isolate-network")[0].clone();
    assert_eq!(iso["status"], "failed", "{iso}");
    assert!(
        iso["outcome"]["details"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{iso}"
    );
    assert!(ns.reachable(2) && ns.reachable(3), "rolled back");

    // The agent isolates, is killed, and the lease ends while it is down: the next start
    // releases it.
    let live = Case::new(&isolate(
        "[agent]\nstate_dir = \"state\"\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = false\n",
        4,
    ));
    std::fs::write(live.path("events.jsonl"), "").unwrap();
    let mut agent = ns.ward_run(&live, "run1.txt");
    let wait = |what: &str, ok: &dyn Fn() -> bool, log: &str| {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "waiting for {what}\n{}",
                std::fs::read_to_string(live.path(log)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(
        "the agent's control socket",
        &|| live.path("state/ward.sock").exists(),
        "run1.txt",
    );
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(live.path("events.jsonl"))
            .unwrap();
        writeln!(f, "{}", exec_of(4_000_022, 1, "/private/tmp/update", 1)).unwrap();
    }
    let done = || {
        live.path("state/ward.db").exists()
            && of(&live.actions(), "isolate-network")
                .first()
                .is_some_and(|a| a["status"] == "done")
    };
    wait("the isolation", &done, "run1.txt");
    assert!(!ns.reachable(3));
    agent.kill().unwrap();
    agent.wait().unwrap();
    let iso = of(&live.actions(), "isolate-network")[0].clone();
    let expires = iso["lease_expires"].as_str().unwrap().to_owned();
    wait(
        "the lease to end",
        &|| ward::clock::now_ms() > ward::clock::parse_rfc3339_ms(&expires).unwrap(),
        "run1.txt",
    );
    assert!(
        !ns.reachable(3),
        "no agent: the isolation stays until released"
    );
    let mut agent = ns.ward_run(&live, "run2.txt");
    wait(
        "the release",
        &|| {
            of(&live.actions(), "isolate-network")
                .first()
                .is_some_and(|a| a["status"] == "released")
        },
        "run2.txt",
    );
    assert!(ns.reachable(2) && ns.reachable(3));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(agent.id()).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    agent.wait().unwrap();
}
