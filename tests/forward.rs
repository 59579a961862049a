//! Forwarding end to end: findings committed to the outbox of a state directory, read back
//! with `ward alerts`, and delivered by sinks to a real rsyslog (UDP, TCP with octet
//! counting, TLS) that the test starts — including a receiver that is down while findings
//! are made and comes back. Tests that need rsyslog install nothing themselves: `.ci/run`
//! installs it; without it they say so and skip. Waits poll with generous limits; no
//! timing is asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache")
}

fn ward(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(dir)
        .env("WARD_CACHE_DIR", cache())
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

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A private temp dir (the state dir must not be group/other writable).
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn alerts(dir: &Path, state: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "alerts",
        "list",
        "--json",
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = ward(dir, &args);
    assert!(out.status.success(), "{}", text(&out));
    ndjson(&out.stdout)
}

/// How many findings a plain replay of `stream` makes: what an agent's outbox must reach.
fn findings_of(stream: &Path) -> usize {
    let out = ward(Path::new("."), &["replay", stream.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    ndjson(&out.stdout).len()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ward alerts list --json` gives one record per line with at least `rule`, `plugin`,
/// `global_seq_num`, `time` and its idempotency key `id`; replaying the same stream into
/// the same state stores nothing twice; the filters select what they say.
#[test]
fn alerts_list_keeps_the_contract_and_a_replayed_stream_adds_nothing() {
    let dir = private_dir();
    let state = dir.path().join("state");
    let stream = root().join("examples/streams/intrusion.jsonl");
    let replay = |d: &Path| {
        let out = ward(
            d,
            &[
                "replay",
                "--state",
                state.to_str().unwrap(),
                stream.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        ndjson(&out.stdout)
    };
    let printed = replay(dir.path());
    let stored = alerts(dir.path(), &state, &[]);
    assert_eq!(stored.len(), printed.len());
    assert!(stored.len() >= 20, "{}", stored.len());
    for (s, p) in stored.iter().zip(&printed) {
        for key in ["rule", "plugin", "global_seq_num", "time"] {
            assert!(!s[key].is_null() || key == "global_seq_num", "{key}: {s}");
            assert_eq!(s[key], p[key], "{key}");
        }
        assert_eq!(s["id"].as_str().unwrap().len(), 32, "{s}");
    }
    let ids: BTreeSet<&str> = stored.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), stored.len(), "keys are unique");
    // The same events again: the same keys, nothing stored twice.
    replay(dir.path());
    let again = alerts(dir.path(), &state, &[]);
    assert_eq!(again, stored);
    // Filters.
    let high = alerts(dir.path(), &state, &["--severity", "high"]);
    assert!(!high.is_empty() && high.len() < stored.len());
    assert!(
        high.iter()
            .all(|h| matches!(h["severity"].as_str(), Some("high" | "critical")))
    );
    let rule = stored[0]["rule"].as_str().unwrap();
    let by_rule = alerts(dir.path(), &state, &["--rule", rule]);
    assert!(by_rule.iter().all(|r| r["rule"] == rule) && !by_rule.is_empty());
    assert!(
        alerts(dir.path(), &state, &["--since", "1h"]).is_empty(),
        "the stream is from October"
    );
    let one = ward(
        dir.path(),
        &[
            "alerts",
            "show",
            stored[3]["id"].as_str().unwrap(),
            "--json",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(ndjson(&one.stdout), vec![stored[3].clone()]);
    // Bad arguments: a clear error, exit 2.
    for bad in [["--severity", "urgent"], ["--since", "yesterday"]] {
        let mut args = vec!["alerts", "list", "--state", state.to_str().unwrap()];
        args.extend_from_slice(&bad);
        let out = ward(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(bad[0]),
            "{}",
            text(&out)
        );
    }
    let none = ward(
        dir.path(),
        &[
            "alerts",
            "list",
            "--state",
            dir.path().join("nothing").to_str().unwrap(),
        ],
    );
    assert_eq!(none.status.code(), Some(2));
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // The UDP port of the same number must be free too.
    std::net::UdpSocket::bind(("127.0.0.1", port)).map_or_else(|_| free_port(), |_| port)
}

/// A server process a test started, killed and reaped when the test is done with it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An rsyslogd of the test's own: TCP, UDP and (when its TLS driver is installed) TLS
/// inputs on the given ports, every message's raw text written to one file.
struct Rsyslog {
    _child: Running,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    fn binary() -> Option<PathBuf> {
        ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    /// Starts it; `None` (with the reason printed) when rsyslogd is not installed.
    fn start(tcp: u16, udp: u16, tls: Option<(u16, &Path)>) -> Option<Self> {
        let Some(bin) = Self::binary() else {
            eprintln!("skipped: rsyslogd is not installed (.ci/run installs the rsyslog package)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let out = dir.path().join("out.log");
        let (tls_global, tls_input) = match tls {
            Some((port, certs)) => (
                format!(
                    "DefaultNetstreamDriverCAFile=\"{0}/ca.pem\" DefaultNetstreamDriverCertFile=\"{0}/server.pem\" DefaultNetstreamDriverKeyFile=\"{0}/server.key\"",
                    certs.display()
                ),
                format!(
                    "input(type=\"imtcp\" port=\"{port}\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")"
                ),
            ),
            None => (String::new(), String::new()),
        };
        let conf = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\" {tls_global})\n\
             module(load=\"imtcp\")\nmodule(load=\"imudp\")\n\
             input(type=\"imtcp\" port=\"{tcp}\")\n\
             input(type=\"imudp\" port=\"{udp}\" address=\"127.0.0.1\")\n\
             {tls_input}\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{out}\" template=\"raw\")\n",
            work = work.display(),
            out = out.display(),
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("rsyslog.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let me = Self {
            _child: Running(child),
            dir,
        };
        let mut ports = vec![tcp];
        ports.extend(tls.map(|(p, _)| p));
        for port in ports {
            wait_until("rsyslog to listen", Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        Some(me)
    }

    /// The messages received so far.
    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// One received RFC 5424 message: PRI, the structured data's parameters and the JSON.
struct Received {
    pri: u16,
    params: BTreeMap<String, String>,
    json: Value,
}

fn parse_5424(line: &str) -> Received {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest
        .split_once(">1 ")
        .unwrap_or_else(|| panic!("not RFC 5424: {line}"));
    // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
    let mut fields = rest.splitn(6, ' ');
    let time = fields.next().unwrap();
    assert!(time.len() <= 32 && time.contains('T'), "timestamp {time}");
    let _host = fields.next().unwrap();
    assert_eq!(fields.next(), Some("ward"));
    let _pid = fields.next().unwrap();
    assert_eq!(fields.next(), Some("finding"));
    let sd_and_msg = fields.next().unwrap();
    let sd = sd_and_msg
        .strip_prefix("[ward@32473 ")
        .unwrap_or_else(|| panic!("no SD: {line}"));
    // Parameters: name="value" with \" \\ \] escaped; the element ends at an unescaped ].
    let mut params = BTreeMap::new();
    let mut chars = sd.char_indices().peekable();
    let end;
    loop {
        let mut name = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break,
                c => value.push(c),
            }
        }
        params.insert(name, value);
        match chars.next() {
            Some((i, ']')) => {
                end = i + 1;
                break;
            }
            Some((_, ' ')) => continue,
            other => panic!("bad SD at {other:?}: {line}"),
        }
    }
    let msg = sd[end..].strip_prefix(' ').unwrap();
    Received {
        pri: pri.parse().unwrap(),
        params,
        json: serde_json::from_str(msg).unwrap_or_else(|e| panic!("{e}: {msg}")),
    }
}

/// A CA and a server certificate for `localhost`, made with openssl; `None` (printed)
/// without it.
fn certificates(dir: &Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ok = run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ward test CA"])
        && run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"])
        && run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"])
        // Another CA, which did not sign the server's certificate.
        && run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=not the CA"]);
    if !ok {
        eprintln!("skipped TLS: openssl could not make test certificates");
        return None;
    }
    // rsyslog may run as another user; the key must be readable to it.
    let _ = std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    );
    Some(())
}

fn tls_driver_installed() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
        "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
        "/usr/lib/rsyslog/lmnsd_gtls.so",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

/// Three sinks to one real rsyslog — TCP in ward's format for medium and above, UDP in
/// ECS, TLS in OCSF — each receive exactly what their filters select, every message an
/// RFC 5424 message whose structured data carries the record's key, rule and severity; a
/// TLS sink that does not trust the server's certificate delivers nothing and says so.
#[test]
fn syslog_sinks_deliver_what_they_select_to_a_real_rsyslog() {
    let dir = private_dir();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let tls = (tls_driver_installed() && certificates(&certs).is_some()).then(free_port);
    if tls.is_none() {
        eprintln!("note: TLS not checked (rsyslog-gnutls or openssl missing)");
    }
    let (tcp, udp) = (free_port(), free_port());
    let Some(rsyslog) = Rsyslog::start(tcp, udp, tls.map(|p| (p, certs.as_path()))) else {
        return;
    };
    let mut config = format!(
        "[agent]\nsink_drain_secs = 3\n\n\
         [[sinks]]\nname = \"tcp\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{tcp}\"\nprotocol = \"tcp\"\nmin_severity = \"medium\"\nfacility = \"security\"\n\n\
         [[sinks]]\nname = \"udp\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{udp}\"\nprotocol = \"udp\"\nformat = \"ecs\"\nplugins = [\"command-abuse\"]\n\n"
    );
    if let Some(port) = tls {
        config.push_str(&format!(
            "[[sinks]]\nname = \"tls\"\ntype = \"syslog\"\naddress = \"localhost:{port}\"\nprotocol = \"tls\"\nformat = \"ocsf\"\nca_file = \"certs/ca.pem\"\n\n\
             [[sinks]]\nname = \"untrusted\"\ntype = \"syslog\"\naddress = \"localhost:{port}\"\nprotocol = \"tls\"\nca_file = \"certs/other.pem\"\n"
        ));
    }
    std::fs::write(dir.path().join("ward.toml"), config).unwrap();
    let stream = root().join("examples/streams/intrusion.jsonl");
    let out = ward(
        dir.path(),
        &[
            "replay",
            "--config",
            "ward.toml",
            "--state",
            "state",
            stream.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stored = alerts(dir.path(), &dir.path().join("state"), &[]);
    let rank = |s: &str| {
        ["informational", "low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    let ids = |pred: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        stored
            .iter()
            .filter(|s| pred(s))
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let want_tcp = ids(&|s| rank(s["severity"].as_str().unwrap()) >= 2);
    let want_udp = ids(&|s| s["plugin"] == "command-abuse");
    let want_tls = ids(&|_| true);
    assert!(!want_tcp.is_empty() && want_tcp.len() < stored.len());
    let expected = want_tcp.len() + want_udp.len() + tls.map_or(0, |_| want_tls.len());
    wait_until(
        "rsyslog to write every message",
        Duration::from_secs(30),
        || rsyslog.messages().len() >= expected,
    );
    let (mut got_tcp, mut got_udp, mut got_tls) = (Vec::new(), Vec::new(), Vec::new());
    for line in rsyslog.messages() {
        let m = parse_5424(&line);
        let id = m.params["id"].clone();
        let severity = m.params["severity"].clone();
        let syslog_severity = match severity.as_str() {
            "critical" => 2,
            "high" => 3,
            "medium" => 4,
            "low" => 5,
            _ => 6,
        };
        if m.json["class_uid"] == 2004 {
            assert_eq!(m.json["finding_info"]["uid"], id.as_str());
            assert_eq!(m.pri, 16 * 8 + syslog_severity);
            got_tls.push(id);
        } else if m.json["event"]["kind"] == "alert" {
            assert_eq!(m.json["event"]["id"], id.as_str());
            assert_eq!(m.pri, 16 * 8 + syslog_severity, "local0 by default");
            got_udp.push(id);
        } else {
            assert_eq!(m.json["id"], id.as_str());
            assert_eq!(m.json["rule"], m.params["rule"].as_str());
            assert_eq!(m.pri, 13 * 8 + syslog_severity, "security facility");
            got_tcp.push(id);
        }
    }
    let set = |v: &Vec<String>| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(got_tcp.len(), want_tcp.len(), "each once");
    assert_eq!(set(&got_tcp), want_tcp);
    assert_eq!(set(&got_udp), want_udp);
    if tls.is_some() {
        assert_eq!(set(&got_tls), want_tls);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("untrusted delivered 0"),
            "the untrusted TLS sink must deliver nothing: {stderr}"
        );
    }
}

/// The receiver is down while the agent makes findings: they wait in the outbox, the
/// sink retries with backoff, and once rsyslog is up every finding arrives.
#[test]
fn a_sink_that_was_down_receives_everything_once_it_is_back() {
    if Rsyslog::binary().is_none() {
        eprintln!("skipped: rsyslogd is not installed (.ci/run installs the rsyslog package)");
        return;
    }
    let dir = private_dir();
    let (tcp, udp) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("ward.toml"),
        format!(
            "[agent]\nstate_dir = \"state\"\nsink_drain_secs = 5\n\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = true\n\n\
             [[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{tcp}\"\nprotocol = \"tcp\"\n"
        ),
    )
    .unwrap();
    let stream = std::fs::read(root().join("examples/streams/attack-chain.jsonl")).unwrap();
    std::fs::write(dir.path().join("events.jsonl"), &stream).unwrap();
    let agent = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config", "ward.toml"])
        .current_dir(dir.path())
        .env("WARD_CACHE_DIR", cache())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("agent.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let state = dir.path().join("state");
    let expected = findings_of(&root().join("examples/streams/attack-chain.jsonl"));
    let mut stored = Vec::new();
    wait_until(
        "the findings in the outbox",
        Duration::from_secs(120),
        || {
            if !state.join("outbox.db").exists() {
                return false;
            }
            let out = ward(
                dir.path(),
                &["alerts", "list", "--json", "--state", "state"],
            );
            stored = ndjson(&out.stdout);
            stored.len() >= expected
        },
    );
    // Down long enough for a few failed tries.
    std::thread::sleep(Duration::from_secs(2));
    let rsyslog = Rsyslog::start(tcp, udp, None).unwrap();
    let want: BTreeSet<String> = stored
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    wait_until(
        "every finding at the receiver",
        Duration::from_secs(90),
        || rsyslog.messages().len() >= want.len(),
    );
    terminate(agent);
    let got: BTreeSet<String> = rsyslog
        .messages()
        .iter()
        .map(|l| parse_5424(l).params["id"].clone())
        .collect();
    assert_eq!(got, want);
    let log = std::fs::read_to_string(dir.path().join("agent.err")).unwrap();
    assert!(log.contains("siem delivered"), "{log}");
    assert!(!log.contains("failed tries, at 0"), "{log}");
    let failures: u64 = log
        .split("siem delivered")
        .nth(1)
        .and_then(|s| s.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        failures >= 1,
        "the sink must have failed while rsyslog was down: {log}"
    );
}

fn outbox_ids(dir: &Path, state: &str) -> BTreeSet<String> {
    let out = ward(
        dir,
        &[
            "alerts", "list", "--json", "--limit", "10000000", "--state", state,
        ],
    );
    if !out.status.success() {
        return BTreeSet::new();
    }
    ndjson(&out.stdout)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// SIGTERM to an agent this test started; it must drain and exit 0.
fn terminate(mut agent: Child) {
    // SAFETY: a child this test spawned (its pid is still ours: not yet waited for).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(agent.id() as i32, libc::SIGTERM);
    }
    assert!(agent.wait().unwrap().success());
}

fn spawn_agent(dir: &Path, log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config", "ward.toml"])
        .current_dir(dir)
        .env("WARD_CACHE_DIR", cache())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join(log)).unwrap()))
        .spawn()
        .unwrap()
}

/// `ward run` following a growing file, killed with SIGKILL at three points while the
/// stream is written, restarted each time: in the end the outbox holds exactly the
/// findings a single replay of the whole stream makes — none lost, none stored twice —
/// because each restart resumes at the checkpoint committed with the last findings.
#[test]
fn an_agent_killed_while_streaming_loses_no_finding() {
    let dir = private_dir();
    let generated = ward(dir.path(), &["gen", "--mix", "attack", "--events", "6000"]);
    assert!(generated.status.success());
    let stream = generated.stdout;
    std::fs::write(dir.path().join("full.jsonl"), &stream).unwrap();
    let reference = ward(
        dir.path(),
        &["replay", "--state", "reference", "full.jsonl"],
    );
    assert!(reference.status.success(), "{}", text(&reference));
    let want = outbox_ids(dir.path(), "reference");
    assert!(want.len() > 1000, "{}", want.len());
    std::fs::write(
        dir.path().join("ward.toml"),
        // from_start = false: without its checkpoint a restart would skip what was written
        // while the agent was down.
        "[agent]\nstate_dir = \"state\"\nbatch_linger_ms = 5\n\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = false\n",
    )
    .unwrap();
    // The stream is written in pieces (cut mid-line too) while the agent is killed.
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, b"").unwrap();
    let pieces: Vec<&[u8]> = stream.chunks(stream.len() / 24 + 1).collect();
    let mut agent = spawn_agent(dir.path(), "agent-0.err");
    let mut kills = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        std::io::Write::write_all(&mut f, piece).unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(150));
        if i % 7 == 3 {
            agent.kill().unwrap();
            agent.wait().unwrap();
            kills += 1;
            agent = spawn_agent(dir.path(), &format!("agent-{kills}.err"));
        }
    }
    assert_eq!(kills, 3);
    let mut got = BTreeSet::new();
    wait_until(
        "every finding in the outbox",
        Duration::from_secs(180),
        || {
            got = outbox_ids(dir.path(), "state");
            got.len() >= want.len()
        },
    );
    terminate(agent);
    let got = outbox_ids(dir.path(), "state");
    let missing: Vec<&String> = want.difference(&got).take(5).collect();
    let extra: Vec<&String> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    let resumed = (1..=3)
        .filter(|k| {
            std::fs::read_to_string(dir.path().join(format!("agent-{k}.err")))
                .unwrap()
                .contains("resuming")
        })
        .count();
    assert!(resumed >= 2, "the restarts must resume at a checkpoint");
}

/// A local HTTP receiver (python3's http.server) standing in for Splunk HEC, Elastic
/// `_bulk` and a webhook. Told over `POST /control` to answer 503 (`fail`), to hang past
/// the client's timeout (`slow`) or to accept (`ok`); with `reject_once`, the first
/// `_bulk` request has its last item refused (429) so the sink must send the batch again.
/// Each accepted request is written as one JSON line: path, headers and the body
/// (gunzipped).
const RECEIVER: &str = r#"
import gzip, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
state = {"mode": "fail", "delay": 2.5, "reject_once": True}
seen = set()
out = open(sys.argv[1], "a", buffering=1)
def note(**kw):
    out.write(json.dumps(kw) + "\n")
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            state.update(json.loads(body))
            return self.reply(200, "{}")
        mode = state["mode"]
        if mode == "slow":
            time.sleep(state["delay"])
            note(refused=self.path, why="slow")
            return self.reply(503, "{}")
        if mode == "fail":
            note(refused=self.path, why="down")
            return self.reply(503, '{"text":"down"}')
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        answer = "{}"
        if self.path == "/_bulk":
            lines = text.strip("\n").split("\n")
            items, errors, stored = [], False, []
            for i in range(0, len(lines), 2):
                _id = json.loads(lines[i])["create"]["_id"]
                if state["reject_once"] and i == len(lines) - 2:
                    state["reject_once"] = False
                    items.append({"create": {"_id": _id, "status": 429, "error": {"type": "es_rejected_execution_exception"}}})
                    errors = True
                elif _id in seen:
                    items.append({"create": {"_id": _id, "status": 409, "error": {"type": "version_conflict_engine_exception"}}})
                    errors = True
                    note(conflict=_id)
                else:
                    seen.add(_id)
                    stored.append(i)
                    items.append({"create": {"_id": _id, "status": 201}})
            text = "\n".join(lines[j] + "\n" + lines[j + 1] for j in stored)
            answer = json.dumps({"errors": errors, "items": items})
        elif self.path.startswith("/services/collector"):
            answer = '{"text":"Success","code":0}'
        note(path=self.path, auth=self.headers.get("Authorization"), encoding=self.headers.get("Content-Encoding"), ctype=self.headers.get("Content-Type"), body=text)
        self.reply(200, answer)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Receiver {
    _child: Running,
    port: u16,
    log: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Option<Self> {
        let script = dir.join("receiver.py");
        std::fs::write(&script, RECEIVER).unwrap();
        let log = dir.join("received.ndjson");
        let Ok(mut child) = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        else {
            eprintln!("skipped: python3 is not installed (the HTTP receiver is a python3 script)");
            return None;
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        Some(Self {
            _child: Running(child),
            port: line.trim().parse().unwrap(),
            log,
        })
    }

    fn control(&self, body: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let req = format!(
            "POST /control HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
    }

    fn notes(&self) -> Vec<Value> {
        ndjson(&std::fs::read(&self.log).unwrap_or_default())
    }
}

/// Three HTTP sinks — Splunk HEC (OCSF, gzip, HEC token), Elastic `_bulk` (ECS, API
/// key, no compression) and a webhook (ward's lines, bearer token, high and above) — to
/// a receiver that is first down, then too slow for the sinks' one-second timeout, then
/// up and refusing one bulk item once: every selected finding arrives, each request
/// carries its credentials, and the retried bulk batch stores nothing twice.
#[test]
fn http_sinks_deliver_everything_through_outage_slowness_and_a_refused_item() {
    let dir = private_dir();
    let Some(receiver) = Receiver::start(dir.path()) else {
        return;
    };
    for (file, token) in [
        ("hec.token", "hec-s3cret"),
        ("es.key", "es-key"),
        ("hook.token", "hook-t0ken"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = receiver.port;
    std::fs::write(
        dir.path().join("ward.toml"),
        format!(
            "[agent]\nstate_dir = \"state\"\nsink_drain_secs = 5\n\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\nfrom_start = true\n\n\
             [[sinks]]\nname = \"splunk\"\ntype = \"http\"\napi = \"splunk-hec\"\nurl = \"http://127.0.0.1:{port}/services/collector/event\"\nauth = \"splunk\"\ntoken_file = \"hec.token\"\nformat = \"ocsf\"\ntimeout_secs = 1\nbatch = 7\n\n\
             [[sinks]]\nname = \"elastic\"\ntype = \"http\"\napi = \"elastic-bulk\"\nurl = \"http://127.0.0.1:{port}/_bulk\"\nauth = \"apikey\"\ntoken_file = \"es.key\"\nformat = \"ecs\"\ncompress = false\nindex = \"ward-test\"\ntimeout_secs = 1\n\n\
             [[sinks]]\nname = \"hook\"\ntype = \"http\"\napi = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nauth = \"bearer\"\ntoken_file = \"hook.token\"\nmin_severity = \"high\"\ntimeout_secs = 1\n"
        ),
    )
    .unwrap();
    std::fs::copy(
        root().join("examples/streams/intrusion.jsonl"),
        dir.path().join("events.jsonl"),
    )
    .unwrap();
    let agent = spawn_agent(dir.path(), "agent.err");
    let expected = findings_of(&root().join("examples/streams/intrusion.jsonl"));
    let mut stored = Vec::new();
    wait_until(
        "the findings in the outbox",
        Duration::from_secs(120),
        || {
            let out = ward(
                dir.path(),
                &["alerts", "list", "--json", "--state", "state"],
            );
            stored = ndjson(&out.stdout);
            stored.len() >= expected
        },
    );
    wait_until("refusals while down", Duration::from_secs(30), || {
        receiver
            .notes()
            .iter()
            .filter(|n| n["why"] == "down")
            .count()
            >= 3
    });
    receiver.control(r#"{"mode": "slow"}"#);
    wait_until("timeouts while slow", Duration::from_secs(30), || {
        receiver
            .notes()
            .iter()
            .filter(|n| n["why"] == "slow")
            .count()
            >= 2
    });
    receiver.control(r#"{"mode": "ok"}"#);
    let ids = |pred: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        stored
            .iter()
            .filter(|s| pred(s))
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ids(&|_| true);
    let high = ids(&|s| matches!(s["severity"].as_str(), Some("high" | "critical")));
    let received = |path: &str| -> Vec<Value> {
        receiver
            .notes()
            .into_iter()
            .filter(|n| n["path"] == path)
            .collect()
    };
    let hec_ids = || -> Vec<String> {
        received("/services/collector/event")
            .iter()
            .flat_map(|n| {
                n["body"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let e: Value = serde_json::from_str(l).unwrap();
                        assert_eq!(e["sourcetype"], "ocsf:detection_finding");
                        assert_eq!(e["event"]["class_uid"], 2004);
                        assert_eq!(e["fields"]["ward_id"], e["event"]["finding_info"]["uid"]);
                        e["fields"]["ward_id"].as_str().unwrap().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let bulk_ids = || -> Vec<String> {
        received("/_bulk")
            .iter()
            .flat_map(|n| {
                let lines: Vec<Value> = n["body"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                lines
                    .chunks(2)
                    .map(|pair| {
                        assert_eq!(pair[0]["create"]["_index"], "ward-test");
                        assert_eq!(pair[0]["create"]["_id"], pair[1]["event"]["id"]);
                        pair[1]["event"]["id"].as_str().unwrap().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let hook_ids = || -> Vec<String> {
        received("/hook")
            .iter()
            .flat_map(|n| {
                let batch: Vec<Value> = serde_json::from_str(n["body"].as_str().unwrap()).unwrap();
                batch
                    .into_iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until(
        "every finding at the receiver",
        Duration::from_secs(90),
        || {
            hec_ids().len() >= all.len()
                && bulk_ids().len() >= all.len()
                && hook_ids().len() >= high.len()
        },
    );
    terminate(agent);
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(set(hec_ids()), all);
    let bulk = bulk_ids();
    assert_eq!(
        bulk.len(),
        all.len(),
        "stored once each, the retried batch included"
    );
    assert_eq!(set(bulk), all);
    assert_eq!(set(hook_ids()), high);
    assert!(
        receiver.notes().iter().any(|n| !n["conflict"].is_null()),
        "the refused bulk batch was sent again"
    );
    for (path, auth, encoding) in [
        (
            "/services/collector/event",
            "Splunk hec-s3cret",
            Some("gzip"),
        ),
        ("/_bulk", "ApiKey es-key", None),
        ("/hook", "Bearer hook-t0ken", Some("gzip")),
    ] {
        for n in received(path) {
            assert_eq!(n["auth"], auth, "{path}");
            assert_eq!(n["encoding"].as_str(), encoding, "{path}");
        }
    }
    assert_eq!(received("/_bulk")[0]["ctype"], "application/x-ndjson");
    let log = std::fs::read_to_string(dir.path().join("agent.err")).unwrap();
    for sink in ["splunk", "elastic", "hook"] {
        assert!(log.contains(&format!("{sink} delivered")), "{log}");
    }
}

/// A token file others may read stops the agent at start with the reason.
#[test]
fn an_http_token_others_can_read_is_refused() {
    let dir = private_dir();
    std::fs::write(dir.path().join("t"), "x").unwrap();
    std::fs::set_permissions(dir.path().join("t"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        dir.path().join("ward.toml"),
        "[[sinks]]\nname = \"h\"\ntype = \"http\"\napi = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nauth = \"bearer\"\ntoken_file = \"t\"\n",
    )
    .unwrap();
    let stream = root().join("examples/streams/attack-chain.jsonl");
    let out = ward(
        dir.path(),
        &[
            "replay",
            "--config",
            "ward.toml",
            "--state",
            "s",
            stream.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0600"),
        "{}",
        text(&out)
    );
}

/// A nats-server of the test's own, with JetStream, on a free port.
struct NatsServer {
    _child: Running,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Option<Self> {
        let Some(bin) = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file()) else {
            eprintln!(
                "skipped: nats-server is not installed (.ci/run installs the nats-server package)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("nats-server to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Self {
            _child: Running(child),
            port,
            _dir: dir,
        })
    }
}

/// Findings published to a real nats-server's JetStream, one message per finding on
/// `ward.<device>.findings` with its key as `Nats-Msg-Id`; the same stream replayed into
/// a fresh state directory (everything sent again) adds no message: the stream drops what
/// it already holds by key.
#[test]
fn the_nats_sink_publishes_each_finding_once_to_jetstream() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = private_dir();
    std::fs::write(
        dir.path().join("ward.toml"),
        format!(
            "[agent]\nsink_drain_secs = 10\n\n[device]\nserial = \"TESTMAC.1\"\n\n\
             [[sinks]]\nname = \"fleet\"\ntype = \"nats\"\naddress = \"nats://127.0.0.1:{}\"\nformat = \"ocsf\"\n",
            nats.port
        ),
    )
    .unwrap();
    let stream = root().join("examples/streams/intrusion.jsonl");
    for state in ["first", "second"] {
        let out = ward(
            dir.path(),
            &[
                "replay",
                "--config",
                "ward.toml",
                "--state",
                state,
                stream.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("fleet delivered"),
            "{}",
            text(&out)
        );
    }
    let want: BTreeSet<String> = alerts(dir.path(), &dir.path().join("first"), &[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (count, got) = rt.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream("WARD").await.unwrap();
        let count = s.info().await.unwrap().state.messages;
        let mut got = BTreeSet::new();
        for seq in 1..=count {
            let m = s.get_raw_message(seq).await.unwrap();
            assert_eq!(m.subject.as_str(), "ward.TESTMAC_1.findings");
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["class_uid"], 2004);
            let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
            assert_eq!(v["finding_info"]["uid"], id.as_str());
            got.insert(id);
        }
        (count, got)
    });
    assert_eq!(
        count as usize,
        want.len(),
        "one message per finding, none twice"
    );
    assert_eq!(got, want);
}

fn mode_of(dir: &Path, plugin: &str) -> String {
    let out = ward(dir, &["ctl", "--config", "ward.toml", "--json", "plugins"]);
    assert!(out.status.success(), "{}", text(&out));
    let plugins: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    plugins
        .iter()
        .find(|p| p["name"] == plugin)
        .map(|p| p["mode"].as_str().unwrap().to_owned())
        .unwrap()
}

fn send(dir: &Path, port: u16, key: &str, to: &str, request: &str, wait: usize) -> Vec<Value> {
    let out = ward(
        dir,
        &[
            "fleet",
            "send",
            "--address",
            &format!("nats://127.0.0.1:{port}"),
            "--key",
            key,
            "--to",
            to,
            "--wait",
            &wait.to_string(),
            "--timeout",
            "60",
            request,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines = ndjson(&out.stdout);
    assert_eq!(lines.len(), wait + 1, "{}", text(&out));
    lines[1..].to_vec()
}

/// Two agents and one nats-server: a signed command to one device reaches only it; to a
/// smart group, only its members; one signed by a key the Macs do not trust is refused by
/// both (and answered as refused); a command to the fleet sent while an agent is off
/// reaches it when it comes back (its durable consumer kept it). Each carried-out command
/// is in the Mac's audit log.
#[test]
fn fleet_commands_reach_the_macs_they_name_even_when_they_were_off() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = private_dir();
    let keygen = |name: &str| {
        let out = ward(dir.path(), &["plugin", "keygen", "--out", name]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let public = keygen("fleet.key");
    keygen("rogue.key");
    let start = |mac: &str| {
        let home = dir.path().join(mac);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(home.join("events.jsonl"), b"").unwrap();
        std::fs::write(
            home.join("ward.toml"),
            format!(
                "[agent]\nstate_dir = \"state\"\n\n[source]\nkind = \"follow\"\npath = \"events.jsonl\"\n\n\
                 [device]\nserial = \"{mac}\"\n\n[[smart_groups]]\nname = \"finance\"\nserial = [\"MAC-B\"]\n\n\
                 [fleet]\naddress = \"nats://127.0.0.1:{}\"\ntrusted_keys = [\"{public}\"]\n",
                nats.port
            ),
        )
        .unwrap();
        let log = format!("agent-{}.err", std::fs::read_dir(&home).unwrap().count());
        let child = spawn_agent(&home, &log);
        wait_until(
            "the agent to listen for commands",
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(home.join(&log))
                    .unwrap_or_default()
                    .contains("fleet: listening for commands")
            },
        );
        (child, home)
    };
    let (a, home_a) = start("MAC-A");
    let (b, home_b) = start("MAC-B");
    let port = nats.port;
    let mode =
        |plugin: &str, m: &str| format!(r#"{{"cmd":"mode","name":"{plugin}","mode":"{m}"}}"#);

    // To one device.
    let results = send(
        dir.path(),
        port,
        "fleet.key",
        "device:MAC-A",
        &mode("command-abuse", "shadow"),
        1,
    );
    assert_eq!(results[0]["device"], "MAC-A");
    assert_eq!(results[0]["ok"], true, "{results:?}");
    assert_eq!(mode_of(&home_a, "command-abuse"), "shadow");
    assert_eq!(mode_of(&home_b, "command-abuse"), "enforce");

    // To a smart group: MAC-B is in finance, MAC-A is not.
    let results = send(
        dir.path(),
        port,
        "fleet.key",
        "group:finance",
        &mode("malware-activity", "shadow"),
        1,
    );
    assert_eq!(results[0]["device"], "MAC-B");
    assert_eq!(mode_of(&home_b, "malware-activity"), "shadow");
    assert_eq!(mode_of(&home_a, "malware-activity"), "enforce");

    // Signed by a key no Mac trusts: refused by both, nothing changes.
    let results = send(
        dir.path(),
        port,
        "rogue.key",
        "all",
        &mode("prevent-list", "disabled"),
        2,
    );
    for r in &results {
        assert_eq!(r["ok"], false);
        assert!(r["error"].as_str().unwrap().contains("trusted_keys"), "{r}");
    }
    assert_eq!(mode_of(&home_a, "prevent-list"), "enforce");
    assert_eq!(mode_of(&home_b, "prevent-list"), "enforce");

    // MAC-A is off while the fleet is told something; it gets it when it is back.
    terminate(a);
    let results = send(
        dir.path(),
        port,
        "fleet.key",
        "all",
        &mode("launch-persistence", "shadow"),
        1,
    );
    assert_eq!(results[0]["device"], "MAC-B");
    let (a, home_a) = start("MAC-A");
    wait_until(
        "MAC-A to run the command it missed",
        Duration::from_secs(60),
        || mode_of(&home_a, "launch-persistence") == "shadow",
    );
    terminate(a);
    terminate(b);
    let audit = ward(&home_a, &["audit", "list", "--json", "--state", "state"]);
    let kinds: Vec<String> = ndjson(&audit.stdout)
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "fleet-command").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k == "fleet-command-refused"),
        "{kinds:?}"
    );
    // The same records reached the outbox (for the sinks), each once.
    let forwarded = alerts(&home_a, &home_a.join("state"), &["--kind", "audit"]);
    let rules: Vec<&str> = forwarded
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), kinds.len(), "{rules:?} against {kinds:?}");
    assert_eq!(
        rules.iter().filter(|k| **k == "fleet-command").count(),
        2,
        "{rules:?}"
    );
}

/// A 1 MiB tmpfs mounted for a test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a small tmpfs (needs root)");
            return None;
        }
        Some(Self { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The state directory on a disk that fills while findings are committed: the replay
/// still writes every finding to stdout and exits 0, says how many it could not commit
/// and why, and the outbox it leaves passes SQLite's integrity check and reads back.
#[test]
fn a_full_disk_is_reported_and_leaves_the_outbox_sound() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let dir = private_dir();
    let generated = ward(dir.path(), &["gen", "--mix", "attack", "--events", "6000"]);
    std::fs::write(dir.path().join("a.jsonl"), &generated.stdout).unwrap();
    let clean = ward(dir.path(), &["replay", "a.jsonl"]);
    let all = ndjson(&clean.stdout).len();
    let state = disk.dir.path().join("state");
    let out = ward(
        dir.path(),
        &["replay", "--state", state.to_str().unwrap(), "a.jsonl"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ndjson(&out.stdout).len(), all, "stdout loses nothing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not committed to the outbox") && stderr.contains("full"),
        "{stderr}"
    );
    let conn = rusqlite::Connection::open_with_flags(
        state.join("outbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let kept = alerts(dir.path(), &state, &[]);
    assert!(
        !kept.is_empty() && kept.len() < all,
        "{} of {all}",
        kept.len()
    );
}
