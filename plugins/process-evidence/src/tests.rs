use super::*;
use ward_sdk::testing;

/// A Mac-like tree under a temp dir: `/private/tmp/payload` (100 KB, ad-hoc) run from
/// `/bin/zsh` under launchd, with a child `/private/tmp/child`.
struct Mac {
    dir: tempfile::TempDir,
    offender: Process,
}

fn mac() -> Mac {
    testing::reset();
    let dir = tempfile::tempdir().unwrap();
    for (path, len) in [
        ("private/tmp/payload", 100_000),
        ("bin/zsh", 1_000),
        ("private/tmp/child", 10),
    ] {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, vec![0x5a; len]).unwrap();
    }
    testing::set_config("root", dir.path().to_str().unwrap());

    let mut launchd = testing::process("/sbin/launchd");
    launchd.token = testing::token(1, 1);
    launchd.parent_token = None;
    let mut zsh = testing::process("/bin/zsh");
    zsh.token = testing::token(600, 6000);
    zsh.parent_token = Some(launchd.token);
    let mut offender = testing::process("/private/tmp/payload");
    offender.token = testing::token(705, 7051);
    offender.parent_token = Some(zsh.token);
    offender.signer = SignerType::Adhoc;
    offender.is_platform_binary = false;
    offender.signing_id = Some("payload-55554944".into());
    let mut child = testing::process("/private/tmp/child");
    child.token = testing::token(706, 7061);
    child.parent_token = Some(offender.token);
    for p in [launchd, zsh, offender.clone(), child] {
        testing::add_process(p);
    }
    Mac { dir, offender }
}

fn trigger(event: Event) -> Trigger {
    Trigger {
        detector: "untrusted-exec".into(),
        finding: Finding::new("untrusted-exec-from-staging-path", Severity::High, "m"),
        event,
    }
}

fn json_of(artifacts: &[Artifact], name: &str) -> Value {
    let a = artifacts.iter().find(|a| a.name == name).unwrap();
    assert_eq!(a.content_type, "application/json");
    serde_json::from_slice(&a.content).unwrap()
}

fn total(artifacts: &[Artifact]) -> usize {
    artifacts.iter().map(|a| a.content.len()).sum()
}

#[test]
fn describes_itself_with_every_config_key() {
    let info = ProcessEvidence::describe();
    assert_eq!(info.name, "process-evidence");
    assert_eq!(info.kind, PluginKind::Collector);
    assert_eq!(info.capabilities, ["file-read"]);
    let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(keys, ["max_binary_bytes", "root", "max_total_bytes"]);
}

#[test]
fn collects_the_tree_the_binaries_and_the_offenders_executable() {
    let mac = mac();
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::exec_of(
            mac.offender.clone(),
            &["/tmp/payload"],
        )))
        .unwrap();
    let tree = json_of(&artifacts, "process-tree.json");
    assert_eq!(tree["offender"]["pid"], 705);
    assert_eq!(tree["offender"]["signer"], "adhoc");
    let ancestors: Vec<&str> = tree["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(ancestors, ["/bin/zsh", "/sbin/launchd"]);
    assert_eq!(tree["descendants"][0]["path"], "/private/tmp/child");

    let binaries = json_of(&artifacts, "binaries.json");
    let entries = binaries["binaries"].as_array().unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|b| b["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/bin/zsh",
            "/private/tmp/child",
            "/private/tmp/payload",
            "/sbin/launchd"
        ]
    );
    // launchd is not in the temp dir: described, not an error.
    assert_eq!(entries[3]["present"], false);
    assert_eq!(binaries["errors"], json!([]));

    let payload = &entries[2];
    let sha = ward_sdk::collector_files::sha256(&format!(
        "{}/private/tmp/payload",
        mac.dir.path().display()
    ))
    .unwrap()
    .unwrap();
    assert_eq!(payload["sha256"], sha.as_str());
    assert_eq!(payload["size"], 100_000);
    assert_eq!(payload["content"], format!("binary/{sha}"));
    let copy = artifacts
        .iter()
        .find(|a| a.name == format!("binary/{sha}"))
        .unwrap();
    assert_eq!(copy.content.len(), 100_000);
    assert_eq!(copy.content_type, "application/octet-stream");
    assert!(total(&artifacts) <= 3 << 20);
}

#[test]
fn apple_code_and_large_binaries_are_described_not_copied() {
    let mac = mac();
    // A non-exec event: the offender is the event's process.
    let zsh = testing::process("/bin/zsh");
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::create(zsh, "/tmp/x")))
        .unwrap();
    assert_eq!(artifacts.len(), 2);
    let binaries = json_of(&artifacts, "binaries.json");
    assert_eq!(binaries["binaries"][0]["content"], "skipped: Apple code");

    testing::set_config("max_binary_bytes", "50000");
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::create(mac.offender.clone(), "/tmp/x")))
        .unwrap();
    assert_eq!(artifacts.len(), 2);
    let binaries = json_of(&artifacts, "binaries.json");
    let payload = binaries["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"] == "/private/tmp/payload")
        .unwrap();
    assert!(
        payload["content"]
            .as_str()
            .unwrap()
            .contains("over max_binary_bytes"),
        "{payload}"
    );
}

#[test]
fn a_binary_over_the_budget_is_recorded_as_truncated() {
    let mac = mac();
    testing::set_config("max_total_bytes", "60000");
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::exec_of(
            mac.offender.clone(),
            &["payload"],
        )))
        .unwrap();
    assert_eq!(artifacts.len(), 2, "no copy of the binary");
    let binaries = json_of(&artifacts, "binaries.json");
    let truncated = binaries["truncated"].as_array().unwrap();
    assert_eq!(truncated.len(), 1, "{binaries}");
    assert!(truncated[0].as_str().unwrap().contains("over the budget"));
    assert!(total(&artifacts) <= 60_000);

    // A budget too small for the tree keeps the offender and says so.
    testing::set_config("max_total_bytes", "1000");
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::exec_of(
            mac.offender.clone(),
            &["payload"],
        )))
        .unwrap();
    let tree = json_of(&artifacts, "process-tree.json");
    assert_eq!(tree["offender"]["pid"], 705);
    assert_eq!(tree["ancestors"], json!([]));
}

#[test]
fn a_truncated_path_is_not_read() {
    let mac = mac();
    let mut cut = mac.offender.clone();
    cut.executable.path_truncated = true;
    let artifacts = ProcessEvidence
        .collect(&trigger(testing::create(cut, "/tmp/x")))
        .unwrap();
    assert_eq!(artifacts.len(), 2);
    let binaries = json_of(&artifacts, "binaries.json");
    let payload = binaries["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"] == "/private/tmp/payload")
        .unwrap();
    assert_eq!(payload["path_truncated"], true);
    assert_eq!(payload["sha256"], Value::Null);
}

#[test]
fn bad_config_is_an_error() {
    let mac = mac();
    testing::set_config("max_binary_bytes", "lots");
    let err = ProcessEvidence
        .collect(&trigger(testing::create(mac.offender.clone(), "/tmp/x")))
        .unwrap_err();
    assert!(err.message.contains("max_binary_bytes"), "{}", err.message);
}
