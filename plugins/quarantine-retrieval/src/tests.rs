use super::*;
use ward_sdk::testing;

const VAULT: &str = "/var/db/ward/vault";

/// A vault under a temp dir, written item by item.
struct Vault {
    dir: tempfile::TempDir,
    index: String,
}

impl Vault {
    fn new() -> Self {
        testing::reset();
        let dir = tempfile::tempdir().unwrap();
        testing::set_config("root", dir.path().to_str().unwrap());
        testing::set_config("vault", VAULT);
        Vault {
            dir,
            index: String::new(),
        }
    }

    fn host(&self, path: &str) -> std::path::PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// Quarantines `content` taken from `original` as item `item`; its SHA-256.
    fn add(&mut self, id: u64, original: &str, item: &str, content: &[u8]) -> String {
        let dir = self.host(&format!("{VAULT}/{item}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("content"), content).unwrap();
        std::fs::write(
            dir.join("meta.json"),
            format!("{{\"id\":{id},\"by\":\"contain-process\"}}"),
        )
        .unwrap();
        let sha = ward_sdk::collector_files::sha256(dir.join("content").to_str().unwrap())
            .unwrap()
            .unwrap();
        self.line(&json!({"id": id, "original": original, "sha256": sha, "size": content.len(), "item": item}).to_string());
        sha
    }

    fn line(&mut self, line: &str) {
        self.index.push_str(line);
        self.index.push('\n');
        std::fs::create_dir_all(self.host(VAULT)).unwrap();
        std::fs::write(self.host(&format!("{VAULT}/index.jsonl")), &self.index).unwrap();
    }
}

/// A launch-persistence finding about a plist written by `/private/tmp/update`.
fn trigger() -> Trigger {
    let mut writer = testing::process("/private/tmp/update");
    writer.signer = SignerType::Adhoc;
    let plist = "/Users/alice/Library/LaunchAgents/com.apple.updater.plist";
    Trigger {
        detector: "launch-persistence".into(),
        finding: Finding::new("launch-item-plist-written", Severity::Medium, "m")
            .evidence("plist", plist)
            .evidence("executable_path", "/Users/alice/.updater/agent")
            .evidence("scope", "user agent"),
        event: testing::create(writer, plist),
    }
}

fn collect() -> (Value, Vec<Artifact>) {
    let artifacts = QuarantineRetrieval.collect(&trigger()).unwrap();
    let first = artifacts.first().unwrap();
    assert_eq!(first.name, "retrieved.json");
    (serde_json::from_slice(&first.content).unwrap(), artifacts)
}

#[test]
fn describes_itself_with_every_config_key() {
    let info = QuarantineRetrieval::describe();
    assert_eq!(info.name, "quarantine-retrieval");
    assert_eq!(info.capabilities, ["file-read"]);
    let keys: Vec<&str> = info.config.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(keys, ["vault", "root", "max_total_bytes"]);
}

#[test]
fn retrieves_what_the_trigger_names_and_counts_malformed_lines() {
    let mut vault = Vault::new();
    let update = vault.add(1, "/private/tmp/update", "1-update", b"MZ update");
    let agent = vault.add(2, "/Users/alice/.updater/agent", "2-agent", b"agent bytes");
    vault.add(3, "/Applications/Other.app", "3-other", b"other");
    vault.line("not json");
    vault.line(r#"{"id":"four","original":"/x","sha256":"00","size":1,"item":"4"}"#);
    vault.line(&format!(
        r#"{{"id":5,"original":"/private/tmp/update","sha256":"{update}","size":9,"item":"../../etc"}}"#
    ));
    vault.line("   ");
    // Tampered: the content no longer matches the index.
    let tampered = vault.add(6, "/private/tmp/update", "6-update", b"first");
    std::fs::write(vault.host(&format!("{VAULT}/6-update/content")), b"changed").unwrap();

    let (summary, artifacts) = collect();
    assert_eq!(summary["malformed_lines"], 3);
    let found: Vec<(u64, bool)> = summary["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_u64().unwrap(),
                f["content_included"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [(2, true), (1, true), (6, false)]);
    assert_eq!(
        summary["missing"],
        json!(["/Users/alice/Library/LaunchAgents/com.apple.updater.plist"])
    );
    let names: Vec<&str> = artifacts.iter().skip(1).map(|a| a.name.as_str()).collect();
    let mut expected = vec![
        format!("quarantined/{agent}"),
        format!("quarantined/{agent}.meta.json"),
        format!("quarantined/{update}"),
        format!("quarantined/{update}.meta.json"),
        format!("quarantined/{tampered}.meta.json"),
    ];
    expected.sort();
    assert_eq!(names, expected);
    let copy = artifacts
        .iter()
        .find(|a| a.name == format!("quarantined/{update}"))
        .unwrap();
    assert_eq!(copy.content, b"MZ update");
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("6-update/content: does not match its index SHA-256")
    );
}

#[test]
fn content_over_the_budget_is_recorded_as_truncated() {
    let mut vault = Vault::new();
    vault.add(1, "/private/tmp/update", "1-update", &vec![0u8; 200_000]);
    testing::set_config("max_total_bytes", "100000");
    let (summary, artifacts) = collect();
    assert_eq!(summary["found"][0]["content_included"], false);
    assert_eq!(summary["found"][0]["meta_included"], true);
    assert_eq!(artifacts.len(), 2);
    let truncated = summary["truncated"][0].as_str().unwrap();
    assert!(
        truncated.ends_with("1-update/content: 200000 bytes over the budget"),
        "{truncated}"
    );
}

#[test]
fn a_large_index_is_read_up_to_its_cap() {
    let mut vault = Vault::new();
    let sha = vault.add(1, "/private/tmp/update", "1-update", b"x");
    let padding = json!({"id": 9, "original": "/pad", "sha256": sha, "size": 1, "item": "pad"});
    let mut index = vault.index.clone();
    while index.len() <= 2 << 20 {
        index.push_str(&padding.to_string());
        index.push('\n');
    }
    std::fs::write(vault.host(&format!("{VAULT}/index.jsonl")), index).unwrap();
    let (summary, _) = collect();
    assert_eq!(summary["found"][0]["id"], 1);
    assert_eq!(
        summary["malformed_lines"], 0,
        "the cut line is not malformed"
    );
    assert_eq!(
        summary["truncated"][0],
        format!("{VAULT}/index.jsonl: only the first 1048576 bytes read")
    );
}

#[test]
fn an_absent_vault_is_empty_and_a_missing_config_an_error() {
    let _vault = Vault::new();
    let (summary, artifacts) = collect();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(summary["found"], json!([]));
    assert_eq!(summary["errors"], json!([]));
    assert_eq!(summary["missing"].as_array().unwrap().len(), 3);

    testing::reset();
    let err = QuarantineRetrieval.collect(&trigger()).unwrap_err();
    assert!(err.message.contains("vault"), "{}", err.message);
}
