//! The live agent, end to end: `ward run` started as a process with a follow source in a
//! temp dir, changed while events stream through it — config reloads, `plugin_dir`
//! changes, `ward ctl` — and stopped with SIGTERM. Every wait polls the agent for a state
//! (never a timing) with a generous limit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use ward::operate::control::{Request, ask};

/// The attack chain's AUTH exec: `/private/tmp/update`, which the prevent list names.
const LISTED_SEQ: u64 = 1019;
/// Lines in the attack chain.
const CHAIN: u64 = 31;

/// Every built-in but prevent-list is off, to keep a debug build quick.
const QUIET_BUILTINS: &str = "[builtin.account-manipulation]\nmode = \"disabled\"\n[builtin.command-abuse]\nmode = \"disabled\"\n[builtin.jamf-analytics]\nmode = \"disabled\"\n[builtin.launch-persistence]\nmode = \"disabled\"\n[builtin.malware-activity]\nmode = \"disabled\"\n[builtin.process-injection]\nmode = \"disabled\"\n[builtin.quarantine-removal]\nmode = \"disabled\"\n[builtin.sensitive-files]\nmode = \"disabled\"\n[builtin.untrusted-exec]\nmode = \"disabled\"\n";

/// `ward run` in a temp dir: config, events file it follows, findings and log files.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Agent {
    /// Starts `ward run` with `[agent]` settings `agent` and the rest of the config `rest`.
    fn start(agent: &str, rest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("events.jsonl"), b"").unwrap();
        let socket = dir.path().join("state/ward.sock");
        write_config(dir.path(), agent, rest);
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
        let child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["run", "--config"])
            .arg(dir.path().join("ward.toml"))
            .env("WARD_CACHE_DIR", cache)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out.ndjson")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err.txt")).unwrap())
            .spawn()
            .unwrap();
        let mut agent = Self { child, dir, socket };
        let start = Instant::now();
        while agent.try_ask(&Request::Status).is_none() {
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("ward run exited ({status}) before serving\n{}", agent.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn try_ask(&self, request: &Request) -> Option<Value> {
        let answer = ask(&self.socket, request).ok()?;
        answer.ok.then_some(answer.result)
    }

    /// Asks the agent; panics with its error if refused.
    fn ask(&self, request: &Request) -> Value {
        let answer = ask(&self.socket, request).unwrap();
        assert!(answer.ok, "{request:?}: {:?}\n{}", answer.error, self.log());
        answer.result
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("err.txt")).unwrap_or_default()
    }

    fn findings(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("out.ndjson"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Polls until `done` (up to two minutes: a state, not a timing, is awaited).
    fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "gave up waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn events_seen(&self) -> u64 {
        self.try_ask(&Request::Status)
            .and_then(|s| s["events"].as_u64())
            .unwrap_or(0)
    }

    /// Appends `lines` to the followed file.
    fn append(&self, lines: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("events.jsonl"))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }

    fn plugin(&self, name: &str) -> Option<Value> {
        self.ask(&Request::Stats)
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// SIGTERM; waits for the exit. Returns the exit code, the findings and the log.
    fn stop(mut self) -> (Option<i32>, Vec<Value>, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a pid this test spawned and still owns.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        (status.code(), self.findings(), self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, agent: &str, rest: &str) {
    let text = format!(
        "[agent]\nplugin_dir = \"plugins\"\nstate_dir = \"state\"\n{agent}\n\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = true\n\n{QUIET_BUILTINS}\n{rest}"
    );
    // Written whole and renamed in, as an admin's tooling would.
    let tmp = dir.join("ward.toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("ward.toml")).unwrap();
}

/// The attack chain, `generation`-th copy: sequence numbers made unique, the listed
/// binary's exec made an AUTH event.
fn chain(generation: u64) -> String {
    let text = String::from_utf8(attack_chain()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let seq = v["global_seq_num"].as_u64().unwrap();
        if seq == LISTED_SEQ {
            v["action_type"] = Value::from(0);
        }
        v["global_seq_num"] = Value::from(generation * 10_000 + seq);
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// The echo plugin's entry, tagging its findings with `tag`.
fn echo_entry(tag: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {:?}\nconfig = {{ tag = {tag:?} {extra} }}\n",
        wasm("fixture-echo").display().to_string()
    )
}

/// The prevent list denies the listed binary's exec; `salt` changes its config (and so
/// makes a reload swap it) without changing what it denies.
fn prevent(salt: u64) -> String {
    format!(
        "[builtin.prevent-list]\nconfig = {{ signing_id = \"update-55554944a1b2c3d4\\nnot-a-real-id-{salt}\" }}\n"
    )
}

fn text_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn echo_seen(findings: &[Value]) -> Vec<(u64, u64)> {
    findings
        .iter()
        .filter(|f| f["rule"] == "echo")
        .map(|f| {
            let seq = f["evidence"]["seq"].as_str().unwrap().parse().unwrap();
            let tag = f["evidence"]["tag"]
                .as_str()
                .unwrap()
                .trim_start_matches('v')
                .parse()
                .unwrap_or(0);
            (seq, tag)
        })
        .collect()
}

/// The soak: a detector swapped 100 times by config reloads while events
/// stream; every event is seen exactly once, by exactly one version, versions in order.
/// The verdict plugin is swapped too, each time, and every AUTH event is still answered
/// by it: none by the default, no deadline missed.
#[test]
fn a_hundred_hot_swaps_lose_no_event_and_see_none_twice() {
    let settings = "probation_secs = 1\nprobation_max_us_per_event = 10000000";
    let auth = "[auth]\nverdict_timeout_ms = 250\nkinds = { exec = \"allow\" }\n";
    let agent = Agent::start(
        settings,
        &format!("{auth}{}{}", echo_entry("v0", ""), prevent(0)),
    );
    let swaps = 100;
    for i in 1..=swaps {
        agent.append(&chain(i));
        write_config(
            agent.dir.path(),
            settings,
            &format!("{auth}{}{}", echo_entry(&format!("v{i}"), ""), prevent(i)),
        );
        let said = agent.ask(&Request::Reload);
        // The watcher may have applied this config first; then the reload has nothing
        // to do.
        let said = said.as_str().unwrap();
        assert!(
            said.contains("swapped in fixture-echo") || said == "nothing to change",
            "{said}"
        );
    }
    let total = swaps * CHAIN;
    agent.wait_for("every event", |a| a.events_seen() >= total);
    let status = agent.ask(&Request::Status);
    let prevent_stats = agent.plugin("prevent-list").unwrap();
    let (code, findings, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");

    let mut seen = echo_seen(&findings);
    assert_eq!(seen.len() as u64, total, "{log}");
    seen.sort_unstable();
    seen.dedup_by_key(|(seq, _)| *seq);
    assert_eq!(seen.len() as u64, total, "an event was seen twice");
    // In stream order, versions only go forward: no event went back to an old one.
    let tags: Vec<u64> = seen.iter().map(|(_, tag)| *tag).collect();
    assert!(tags.windows(2).all(|w| w[0] <= w[1]), "{tags:?}");
    assert!(
        tags.last().copied() > Some(1),
        "the swaps took effect: {tags:?}"
    );

    // Verdicts: every AUTH exec of the listed binary was denied by the prevent list.
    let denied = findings
        .iter()
        .filter(|f| f["rule"] == "auth-denied")
        .count() as u64;
    assert_eq!(denied, swaps, "{log}");
    assert_eq!(status["auth"]["requests"], swaps);
    assert_eq!(status["auth"]["defaulted"], 0, "{status}");
    assert_eq!(
        prevent_stats["stats"]["deadlines_missed"], 0,
        "{prevent_stats}"
    );
    assert!(
        !findings.iter().any(|f| f["rule"] == "plugin-rolled-back"),
        "{log}"
    );
}

/// A new version that traps on probation is rolled back to the one it replaced (the
/// rollback recorded and counted); an invalid config is refused with file, line and
/// column, and the running one keeps going.
#[test]
fn a_failing_version_is_rolled_back_and_an_invalid_config_is_kept_out() {
    let settings = "probation_secs = 600";
    let agent = Agent::start(settings, &echo_entry("v1", ""));
    agent.append(&chain(1));
    agent.wait_for("the first events", |a| a.events_seen() >= CHAIN);

    write_config(
        agent.dir.path(),
        settings,
        &echo_entry("v2", ", trap = \"true\""),
    );
    agent.ask(&Request::Reload);
    agent.append(&chain(2));
    agent.wait_for("the rollback", |a| {
        a.findings()
            .iter()
            .any(|f| f["rule"] == "plugin-rolled-back")
    });
    agent.append(&chain(3));
    agent.wait_for("the third chain", |a| {
        echo_seen(&a.findings())
            .iter()
            .any(|(seq, _)| *seq / 10_000 == 3)
    });
    let echo = agent.plugin("fixture-echo").unwrap();
    assert_eq!(echo["rollbacks"], 1, "{echo}");

    // Broken TOML: refused, naming the file, line and column; v1 still runs.
    let config = agent.path("ward.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[plugins]\n");
    std::fs::write(&config, text).unwrap();
    let answer = ask(&agent.socket, &Request::Reload).unwrap();
    assert!(!answer.ok);
    let error = answer.error.unwrap();
    // `…/ward.toml:LINE:COLUMN: …`, pointing at the broken table header.
    let lines = text_lines(&agent.path("ward.toml"));
    let at: Vec<usize> = error
        .split("ward.toml:")
        .nth(1)
        .unwrap()
        .split(':')
        .take(2)
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(lines[at[0] - 1], "[[plugins]", "{error}");
    assert!(at[1] >= 1, "{error}");
    assert!(error.contains("running config is kept"), "{error}");
    agent.append(&chain(4));
    agent.wait_for("the fourth chain", |a| a.events_seen() >= 4 * CHAIN);
    let status = agent.ask(&Request::Status);
    assert!(status["reloads_refused"].as_u64() >= Some(1), "{status}");
    let (code, findings, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");

    let rolled: Vec<&Value> = findings
        .iter()
        .filter(|f| f["rule"] == "plugin-rolled-back")
        .collect();
    assert_eq!(rolled.len(), 1, "{log}");
    assert_eq!(rolled[0]["plugin"], "ward");
    assert_eq!(rolled[0]["evidence"]["rolled_back_plugin"], "fixture-echo");
    assert!(
        rolled[0]["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("fault"),
        "{}",
        rolled[0]
    );
    // Chains 3 and 4 were seen by the version rolled back to, once each.
    for generation in [3, 4] {
        let tags: Vec<u64> = echo_seen(&findings)
            .into_iter()
            .filter(|(seq, _)| seq / 10_000 == generation)
            .map(|(_, tag)| tag)
            .collect();
        assert_eq!(tags.len() as u64, CHAIN, "chain {generation}");
        assert!(tags.iter().all(|t| *t == 1), "chain {generation}: {tags:?}");
    }
}

/// A component with a custom section appended: other bytes (another digest), same code.
fn with_custom_section(bytes: &[u8], payload: &str) -> Vec<u8> {
    let name = b"ward-test";
    let mut body = vec![u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(u8::try_from(body.len()).unwrap());
    out.extend_from_slice(&body);
    out
}

/// `plugin_dir` with a trusted publisher: a component without a signature is refused
/// (and says so on the findings stream); signed, it is loaded without a restart; a
/// tampered copy is refused and the signed version keeps running; removed, it is
/// unloaded. A pinned component whose bytes do not match its pin is refused.
#[test]
fn plugin_dir_components_are_verified_loaded_and_unloaded_while_running() {
    // The publisher's side, as a publisher does it: `ward plugin keygen`, `ward plugin sign`.
    let keys = tempfile::tempdir().unwrap();
    let secret = keys.path().join("publisher.key");
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["plugin", "keygen", "--out"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let settings = format!("trusted_keys = [{public:?}]");
    let pin_entry = format!(
        "[[plugins]]\nname = \"pinned\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    let agent = Agent::start(&settings, &pin_entry);
    let echo = std::fs::read(wasm("fixture-echo")).unwrap();
    let target = agent.path("plugins/echo.wasm");
    let refusals = |a: &Agent| {
        a.findings()
            .into_iter()
            .filter(|f| f["rule"] == "plugin-refused")
            .collect::<Vec<_>>()
    };
    let running = |a: &Agent| {
        a.ask(&Request::Plugins)
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fixture-echo")
            .map(|p| p["sha256"].as_str().unwrap().to_owned())
    };

    std::fs::write(&target, &echo).unwrap();
    agent.wait_for("the unsigned refusal", |a| !refusals(a).is_empty());
    let first = &refusals(&agent)[0];
    assert!(
        first["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{first}"
    );
    assert!(running(&agent).is_none());

    // Signed elsewhere and the signature copied in beside it.
    let staged = keys.path().join("echo.wasm");
    std::fs::write(&staged, &echo).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["plugin", "sign", "--key"])
        .arg(&secret)
        .arg(&staged)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), public);
    std::fs::copy(
        keys.path().join("echo.wasm.sig"),
        ward::registry::signature::signature_path(&target),
    )
    .unwrap();
    agent.wait_for("the signed component", |a| running(a).is_some());
    let digest = ward::registry::load::sha256_hex(&echo);
    assert_eq!(running(&agent).as_deref(), Some(digest.as_str()));

    std::fs::write(&target, with_custom_section(&echo, "tampered")).unwrap();
    agent.wait_for("the tampered refusal", |a| refusals(a).len() >= 2);
    assert!(
        refusals(&agent)[1]["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{}",
        refusals(&agent)[1]
    );
    assert_eq!(
        running(&agent).as_deref(),
        Some(digest.as_str()),
        "the signed version runs on"
    );
    agent.append(&chain(1));
    agent.wait_for("events through the signed version", |a| {
        echo_seen(&a.findings()).len() as u64 == CHAIN
    });

    std::fs::remove_file(&target).unwrap();
    agent.wait_for("the unload", |a| running(a).is_none());

    // Pinned by name: the pin, not a signature, decides; a mismatch is refused.
    std::fs::write(agent.path("plugins/pinned.wasm"), &echo).unwrap();
    agent.wait_for("the pin refusal", |a| refusals(a).len() >= 3);
    let third = &refusals(&agent)[2];
    assert!(
        third["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("sha-256 mismatch"),
        "{third}"
    );
    let (code, _, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A `plugin_dir` others can write would let any local user put code into the agent: the
/// agent refuses to start on it, and says so on the findings stream.
#[test]
fn a_plugin_dir_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(wasm("fixture-echo"), plugins.join("echo.wasm")).unwrap();
    std::fs::write(
        dir.path().join("ward.toml"),
        "[agent]\nplugin_dir = \"plugins\"\nstate_dir = \"state\"\n[source]\nkind = \"stdin\"\n",
    )
    .unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config"])
        .arg(dir.path().join("ward.toml"))
        .env("WARD_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("writable by group or others"), "{err}");
    let record: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(record["rule"], "plugin-refused");

    // The directory is the agent's, but a component in it others can write is refused
    // (so is a symlink, and a FIFO in a component's place is an error, not a hang).
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        plugins.join("echo.wasm"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::os::unix::fs::symlink(wasm("fixture-echo"), plugins.join("linked.wasm")).unwrap();
    let fifo = plugins.join("fifo.wasm");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    #[allow(unsafe_code)]
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(made, 0);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config"])
        .arg(dir.path().join("ward.toml"))
        .env("WARD_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // No [[plugins]] entry names them, so the agent runs, on the built-ins.
    assert_eq!(out.status.code(), Some(0), "{err}");
    let reasons: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|f| f["rule"] == "plugin-refused")
        .map(|f| format!("{} {}", f["evidence"]["origin"], f["evidence"]["reason"]))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for (file, why) in [
        ("echo.wasm", "writable by group or others"),
        ("linked.wasm", "symlinks are not followed"),
        ("fifo.wasm", "not a regular file"),
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(file) && r.contains(why)),
            "{file}: {reasons:?}"
        );
    }
}

/// A `plugin_dir` component with a self-test: a version whose output differs from the
/// expectation is refused (one line, the first difference) and the one running is kept;
/// a version that passes is swapped in.
#[test]
fn a_version_that_fails_its_self_test_is_not_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("sample.jsonl");
    std::fs::write(&events, chain(9).lines().next().unwrap()).unwrap();
    let expect = dir.path().join("sample.expect.jsonl");
    std::fs::write(
        &expect,
        "{\"rule\":\"echo\",\"evidence\":{\"tag\":\"good\"}}\n",
    )
    .unwrap();
    let entry = |tag: &str| {
        format!(
            "[[plugins]]\nname = \"echo\"\nconfig = {{ tag = {tag:?} }}\nselftest = {{ events = {:?}, expect = {:?} }}\n",
            events.display().to_string(),
            expect.display().to_string()
        )
    };
    let agent = Agent::start("", &entry("bad"));
    std::fs::copy(wasm("fixture-echo"), agent.path("plugins/echo.wasm")).unwrap();
    agent.wait_for("the self-test refusal", |a| {
        a.findings().iter().any(|f| f["rule"] == "plugin-refused")
    });
    let refusal = agent
        .findings()
        .into_iter()
        .find(|f| f["rule"] == "plugin-refused")
        .unwrap();
    let reason = refusal["evidence"]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("self-test failed") && reason.contains("expected \"good\", got \"bad\""),
        "{reason}"
    );
    assert!(agent.plugin("fixture-echo").is_none());

    write_config(agent.dir.path(), "", &entry("good"));
    agent.wait_for("the version that passes", |a| {
        a.plugin("fixture-echo").is_some()
    });
    agent.append(&chain(1));
    agent.wait_for("its findings", |a| {
        echo_seen(&a.findings()).len() as u64 == CHAIN
    });
    let (code, _, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
}

fn ward_ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// Every `ward ctl` command against a running agent, as an admin types it, and the
/// metrics endpoint scraped by an HTTP client.
#[test]
fn ward_ctl_and_the_metrics_endpoint_operate_a_running_agent() {
    let agent = Agent::start("metrics_addr = \"127.0.0.1:0\"", "");
    let socket = agent.socket.clone();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let out = ward_ctl(&socket, &["--json", "status"]);
    assert!(out.status.success(), "{:?}", out);
    let status: Value = serde_json::from_str(&text(&out)).unwrap();
    assert_eq!(status["pid"], agent.child.id());
    // At start, at default verbosity, each plugin with its full sha-256.
    let prevent = ward::registry::builtin::builtin_sources()
        .into_iter()
        .find(|s| s.origin == "builtin:prevent-list")
        .unwrap();
    let listed = format!(
        "loaded prevent-list 0.1.0 detector enforce grants=none sha256={}",
        ward::registry::load::sha256_hex(&prevent.bytes)
    );
    assert!(agent.log().contains(&listed), "{}", agent.log());
    let out = ward_ctl(&socket, &["plugins"]);
    assert!(text(&out).starts_with("plugin"), "{}", text(&out));
    assert!(text(&out).contains("prevent-list"), "{}", text(&out));

    let echo = wasm("fixture-echo");
    let out = ward_ctl(&socket, &["load", echo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(&out).contains("loaded fixture-echo"), "{}", text(&out));
    let out = ward_ctl(&socket, &["--json", "plugins"]);
    let plugins: Value = serde_json::from_str(&text(&out)).unwrap();
    let row = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fixture-echo")
        .unwrap()
        .clone();
    assert_eq!(
        row["sha256"],
        ward::registry::load::sha256_hex(&std::fs::read(&echo).unwrap())
    );
    assert_eq!(row["on_probation"], true);

    agent.append(&chain(1));
    agent.wait_for("the first chain", |a| {
        echo_seen(&a.findings()).len() as u64 == CHAIN
    });
    let out = ward_ctl(&socket, &["mode", "fixture-echo", "shadow"]);
    assert!(out.status.success());
    agent.append(&chain(2));
    agent.wait_for("the second chain", |a| {
        echo_seen(&a.findings()).len() as u64 == 2 * CHAIN
    });
    let shadowed = agent
        .findings()
        .iter()
        .filter(|f| f["rule"] == "echo" && f["shadow"] == true)
        .count() as u64;
    assert_eq!(shadowed, CHAIN);

    let out = ward_ctl(&socket, &["--json", "stats"]);
    let stats: Value = serde_json::from_str(&text(&out)).unwrap();
    let echo_stats = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fixture-echo")
        .unwrap();
    // Every event on the bulk path, and the AUTH events again in the AUTH lane (whose
    // count is published as its answers are recorded).
    let events = echo_stats["stats"]["events"].as_u64().unwrap();
    assert!(
        (2 * CHAIN..=2 * CHAIN + 2).contains(&events),
        "{echo_stats}"
    );
    assert!(echo_stats["stats"]["ns_per_event"]["p99_ns"].as_u64() > Some(0));
    let out = ward_ctl(&socket, &["stats"]);
    assert!(text(&out).contains("ns/ev p99"), "{}", text(&out));

    // Metrics, scraped over HTTP.
    let log = agent.log();
    let addr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    let body = ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let events_line = body
        .lines()
        .find(|l| l.starts_with("ward_plugin_events_total{plugin=\"fixture-echo\""))
        .unwrap_or_else(|| panic!("{body}"));
    let scraped: u64 = events_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(scraped >= 2 * CHAIN, "{events_line}");
    assert!(
        body.contains(&format!("ward_events_total {}", 2 * CHAIN)),
        "{body}"
    );
    assert!(body.contains("# TYPE ward_plugin_ns_per_event summary"));
    let missing = ureq::get(&format!("http://{addr}/nothing")).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    // Any local user reaches a loopback port: idle connections are capped (16) and
    // dropped after 5 s, and the endpoint serves again once they are gone.
    use std::io::Read as _;
    let idle: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    let _ = extra.read_to_end(&mut got);
    assert!(got.is_empty(), "a 17th connection was served");
    // An idle one is closed by the agent (EOF), not left open (a read timeout here).
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let closed = first.read_to_end(&mut got);
    assert!(closed.is_ok() && got.is_empty(), "{closed:?}");
    agent.wait_for("the endpoint to serve again", |_| {
        ureq::get(&format!("http://{addr}/metrics")).call().is_ok()
    });

    // The control socket: a request over 64 KiB, or none at all, gets a one-line error
    // and never holds the agent.
    let huge = serde_json::json!({"cmd": "load", "path": "x".repeat(100 << 10)}).to_string();
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    // The agent answers and closes before reading the rest: the write or the read may
    // then see a reset, after the answer.
    let _ = stream.write_all(huge.as_bytes());
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("request over 65536 bytes"), "{reply}");
    let mut silent = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    assert!(
        agent.try_ask(&Request::Status).is_some(),
        "a silent client held the agent"
    );
    let mut reply = String::new();
    silent.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("no request line within 5 s"), "{reply}");

    let out = ward_ctl(&socket, &["unload", "fixture-echo"]);
    assert!(out.status.success());
    let out = ward_ctl(&socket, &["unload", "fixture-echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no plugin named `fixture-echo`"),
        "{out:?}"
    );
    let out = ward_ctl(&socket, &["reload"]);
    assert!(out.status.success(), "{out:?}");
    let out = ward_ctl(&socket, &["mode", "nothing-here", "enforce"]);
    assert_eq!(out.status.code(), Some(1));

    // A second agent on the same socket refuses to start; the first keeps its socket.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
    let second = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config"])
        .arg(agent.path("ward.toml"))
        .env("WARD_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    // The state directory's lock stops it first (same state dir); the socket check
    // stands behind it for agents that share only a socket.
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("in use by another ward") || said.contains("another agent is running on"),
        "{second:?}"
    );
    assert_eq!(agent.ask(&Request::Status)["pid"], agent.child.id());

    // The socket is the owner's alone: another user cannot even connect.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    if rustix_is_root() {
        use std::os::unix::process::CommandExt as _;
        let out = Command::new(env!("CARGO_BIN_EXE_ward"))
            .arg("ctl")
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .uid(65_534)
            .gid(65_534)
            .output()
            .unwrap();
        assert!(!out.status.success(), "another user reached the agent");
    } else {
        eprintln!("skipped the other-user check: the test does not run as root");
    }
    let (code, _, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// SIGTERM while a stream is flowing: the agent drains what it has read to the sink
/// and exits 0; every finding it counts is on stdout, whole.
#[test]
fn sigterm_mid_stream_drains_every_finding_to_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ward.toml");
    std::fs::write(&config, "[source]\nkind = \"stdin\"\n").unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config"])
        .arg(&config)
        .env("WARD_CACHE_DIR", cache)
        .env("WARD_STATE_DIR", dir.path().join("state"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(dir.path().join("out.ndjson")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.txt")).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A long attack, streamed; the writer is left blocked on a full pipe when the
    // signal comes.
    let writer = std::thread::spawn(move || {
        for generation in 1..=2_000 {
            if stdin.write_all(chain(generation).as_bytes()).is_err() {
                return;
            }
        }
    });
    let out = dir.path().join("out.ndjson");
    let start = Instant::now();
    while std::fs::read_to_string(&out).unwrap().lines().count() < 100 {
        assert!(start.elapsed() < Duration::from_secs(120), "no findings");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    drop(writer);
    let log = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("signal received, draining"), "{log}");
    let counted: u64 = log
        .split("; ")
        .find_map(|part| {
            part.strip_suffix(" findings")
                .or_else(|| part.split_once(" findings\n").map(|(n, _)| n))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no findings count in {log}"));
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("cut line {line}: {e}"));
    }
    assert_eq!(text.lines().count() as u64, counted, "{log}");
    assert!(counted >= 100);
}

/// A live agent holds a partial batch for `agent.batch_linger_ms` before delivering it:
/// four writes that each come well within the linger reach a detector in one call; with
/// no linger each write is delivered on its own, in four. (Counts of calls, not times.)
#[test]
fn partial_batches_wait_out_the_linger_and_go_at_once_without_one() {
    let lines: Vec<String> = chain(1).lines().take(4).map(|l| format!("{l}\n")).collect();
    assert!(lines.iter().all(|l| !l.contains("\"action_type\":0")));
    for (linger, calls) in [(1_000, 1), (0, 4)] {
        let agent = Agent::start(&format!("batch_linger_ms = {linger}"), &echo_entry("t", ""));
        for (i, line) in lines.iter().enumerate() {
            agent.append(line);
            agent.wait_for("the event read", |a| a.events_seen() > i as u64);
        }
        agent.wait_for("every event delivered", |a| {
            a.plugin("fixture-echo")
                .is_some_and(|p| p["stats"]["events"].as_u64() == Some(4))
        });
        let echo = agent.plugin("fixture-echo").unwrap();
        assert_eq!(
            echo["stats"]["calls"].as_u64(),
            Some(calls),
            "linger {linger} ms: {echo}"
        );
    }
}
