//! Detector: the admin's prevent lists. An `exec` whose new image matches a listed
//! SHA-256, CDHash, Team ID or Signing ID is denied when the event is AUTH (the host
//! enforces the verdict's deadline and default), and raises a `prevent-list-match`
//! finding either way: `deny requested` on AUTH events (the host's own `auth-denied` /
//! `auth-default-answer` record says what was answered) and `observed (NOTIFY event: not
//! blocked)` on NOTIFY-only streams such as eslogger's. When the SHA-256 list cannot be
//! checked (the image is outside the granted scope, over the host's hash cap) and nothing
//! else matched, `authorize` answers `undecided`, so the host applies the admin's default
//! for exec (fail-closed denies it); such failures are also counted and logged at the 1st,
//! 10th, 100th….
//!
//! Config (each a list: a TOML array, or entries separated by commas, spaces or new lines;
//! `#` starts a comment; give large lists with the host's `config_files`):
//! - `sha256`: 64 hex digits. Needs the `file-hash` capability (requested only when this
//!   list is not empty); the host caches digests per path, inode, size and mtime.
//! - `cdhash`: 40 hex digits, as ES reports the code directory hash.
//! - `team_id`: 10 characters, e.g. `EQHXZ8M8AV`.
//! - `signing_id`: a signing identifier, alone (`com.evil.tool`) or qualified by its team
//!   as Santa writes it (`EQHXZ8M8AV:com.evil.tool`, `platform:com.apple.osascript`).
//!
//! Lookups are hash-set probes: constant time whatever the list sizes (tested with
//! 100,000 entries). Malformed entries are skipped, counted and logged with their list.

use std::collections::HashSet;

use ward_sdk::prelude::*;

/// The four lists, normalised.
#[derive(Debug, Default)]
pub struct Lists {
    sha256: HashSet<String>,
    cdhash: HashSet<String>,
    team_id: HashSet<String>,
    signing_id: HashSet<String>,
    /// Entries skipped as malformed, per list.
    pub rejected: Vec<(&'static str, String)>,
    /// Images the SHA-256 list could not be checked against.
    pub hash_failures: std::cell::Cell<u64>,
}

/// Why an exec matched: (list, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// `sha256`, `cdhash`, `team_id` or `signing_id`.
    pub list: &'static str,
    /// The listed value that matched.
    pub value: String,
}

fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .map(|e| e.trim_matches(|c| c == '"' || c == '\'' || c == '[' || c == ']'))
        .filter(|e| !e.is_empty())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Lists {
    /// Parses the four lists from their config texts.
    pub fn parse(sha256: &str, cdhash: &str, team_id: &str, signing_id: &str) -> Self {
        let mut lists = Self::default();
        for e in entries(sha256) {
            if is_hex(e, 64) {
                lists.sha256.insert(e.to_ascii_lowercase());
            } else {
                lists.rejected.push(("sha256", e.to_owned()));
            }
        }
        for e in entries(cdhash) {
            if is_hex(e, 40) {
                lists.cdhash.insert(e.to_ascii_lowercase());
            } else {
                lists.rejected.push(("cdhash", e.to_owned()));
            }
        }
        for e in entries(team_id) {
            if e.len() == 10 && e.bytes().all(|b| b.is_ascii_alphanumeric()) {
                lists.team_id.insert(e.to_ascii_uppercase());
            } else {
                lists.rejected.push(("team_id", e.to_owned()));
            }
        }
        for e in entries(signing_id) {
            let (qualifier, id) = e.split_once(':').unwrap_or(("-", e));
            if qualifier.is_empty() || id.is_empty() || id.contains(':') {
                lists.rejected.push(("signing_id", e.to_owned()));
            } else {
                lists.signing_id.insert(e.to_owned());
            }
        }
        lists
    }

    fn from_config() -> Self {
        let get = |k: &str| ward_sdk::config(k).unwrap_or_default();
        let lists = Self::parse(
            &get("sha256"),
            &get("cdhash"),
            &get("team_id"),
            &get("signing_id"),
        );
        if !lists.rejected.is_empty() {
            for (list, entry) in lists.rejected.iter().take(5) {
                ward_sdk::log::error(&format!(
                    "prevent list `{list}`: skipping malformed entry {entry:?}"
                ));
            }
            ward_sdk::log::error(&format!(
                "prevent lists: {} malformed entries skipped",
                lists.rejected.len()
            ));
        }
        lists
    }

    /// Entries loaded, all lists together.
    pub fn len(&self) -> usize {
        self.sha256.len() + self.cdhash.len() + self.team_id.len() + self.signing_id.len()
    }

    /// True when every list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first list entry `image` matches; `sha256` asks the host only when needed.
    pub fn check(&self, image: &Process) -> Option<Match> {
        self.check_or_why(image).ok().flatten()
    }

    /// [`Self::check`], or why the SHA-256 list could not be checked (and nothing else
    /// matched).
    pub fn check_or_why(&self, image: &Process) -> Result<Option<Match>, String> {
        let hit = |list: &'static str, value: &str| {
            Ok(Some(Match {
                list,
                value: value.to_owned(),
            }))
        };
        if let Some(cd) = image.cdhash.as_deref().map(str::to_ascii_lowercase)
            && self.cdhash.contains(&cd)
        {
            return hit("cdhash", &cd);
        }
        if let Some(team) = image.team_id.as_deref().filter(|t| !t.is_empty())
            && self.team_id.contains(&team.to_ascii_uppercase())
        {
            return hit("team_id", team);
        }
        if let Some(id) = image.signing_id.as_deref().filter(|s| !s.is_empty()) {
            let qualifier = match image.team_id.as_deref().filter(|t| !t.is_empty()) {
                Some(team) => team.to_owned(),
                None if image.signer == SignerType::Apple => "platform".to_owned(),
                None => String::new(),
            };
            let qualified = format!("{qualifier}:{id}");
            if self.signing_id.contains(id) {
                return hit("signing_id", id);
            }
            if !qualifier.is_empty() && self.signing_id.contains(&qualified) {
                return hit("signing_id", &qualified);
            }
        }
        if !self.sha256.is_empty() {
            match ward_sdk::enrich::sha256(image.path()) {
                Ok(Some(digest)) if self.sha256.contains(&digest) => return hit("sha256", &digest),
                Ok(_) => {}
                Err(e) => {
                    self.hash_failed(image.path(), &e);
                    return Err(format!("cannot hash {}: {e:?}", image.path()));
                }
            }
        }
        Ok(None)
    }

    /// An image the SHA-256 list could not be checked against (outside the granted scope,
    /// over the host's hash cap, unreadable): counted, and logged at the 1st, 10th, 100th…
    /// failure so a narrow scope cannot flood the log.
    fn hash_failed(&self, path: &str, error: &ward_sdk::EnrichError) {
        let n = self.hash_failures.get() + 1;
        self.hash_failures.set(n);
        let power_of_ten = n
            .to_string()
            .strip_prefix('1')
            .is_some_and(|rest| rest.chars().all(|c| c == '0'));
        if power_of_ten {
            ward_sdk::log::warn(&format!(
                "prevent list: {n} image(s) could not be hashed, so the sha256 list did not \
                 apply to them (latest {path}: {error:?})"
            ));
        }
    }
}

/// The detector.
pub struct PreventList {
    lists: Lists,
}

impl Default for PreventList {
    fn default() -> Self {
        Self {
            lists: Lists::from_config(),
        }
    }
}

impl PreventList {
    /// A detector over `lists`.
    pub fn with(lists: Lists) -> Self {
        Self { lists }
    }
}

impl Detector for PreventList {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new(
            "prevent-list",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "admin prevent lists: SHA-256, CDHash, Team ID and Signing ID deny exec",
        )
        .subscribe(&["exec"])
        .config_option(
            "sha256",
            "SHA-256 digests of executables to block (needs file-hash)",
        )
        .config_option("cdhash", "code directory hashes to block")
        .config_option("team_id", "Team IDs whose code is blocked")
        .config_option(
            "signing_id",
            "signing IDs to block, optionally TEAMID:id or platform:id",
        );
        if ward_sdk::config("sha256").is_some_and(|v| entries(&v).next().is_some()) {
            info.capability("file-hash")
        } else {
            info
        }
    }

    /// Only what it reads: argv, for the finding's command line.
    fn parts() -> EventParts {
        EventParts::ARGS
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let Some(exec) = event.as_exec() else {
            return Ok(Vec::new());
        };
        let Some(m) = self.lists.check(&exec.target) else {
            return Ok(Vec::new());
        };
        // The host decides the answer (and records it as `auth-denied` or
        // `auth-default-answer`); this finding says what the list asked for.
        let outcome = if event.auth.is_some() {
            "deny requested (AUTH event)"
        } else {
            "observed (NOTIFY event: not blocked)"
        };
        Ok(vec![
            Finding::new(
                "prevent-list-match",
                Severity::High,
                format!(
                    "{} is on the {} prevent list; exec {outcome}",
                    exec.target.path(),
                    m.list
                ),
            )
            .evidence("list", m.list)
            .evidence("value", m.value.as_str())
            .evidence("outcome", outcome)
            .evidence("command_line", exec.args.join(" ")),
        ])
    }

    fn authorize(&mut self, event: &Event) -> Verdict {
        let Some(exec) = event.as_exec() else {
            return Verdict::NoOpinion;
        };
        match self.lists.check_or_why(&exec.target) {
            Ok(Some(m)) => Verdict::Deny(format!("on the {} prevent list: {}", m.list, m.value)),
            Ok(None) => Verdict::NoOpinion,
            // The SHA-256 list could not be checked: the admin's default decides.
            Err(why) => Verdict::Undecided(why),
        }
    }
}

ward_sdk::export_detector!(PreventList);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn image(path: &str, team: Option<&str>, id: &str, cdhash: &str) -> Process {
        let mut p = testing::process(path);
        p.team_id = team.map(str::to_owned);
        p.signing_id = Some(id.to_owned());
        p.cdhash = Some(cdhash.to_owned());
        if team.is_some() {
            p.signer = SignerType::DeveloperId;
            p.is_platform_binary = false;
        }
        p
    }

    fn auth(mut e: Event) -> Event {
        e.auth = Some(ward_sdk::AuthRequest { deadline_ms: 50 });
        e
    }

    const CD: &str = "5E2C1A0B9F8E7D6C5B4A39281706F5E4D3C2B1A0";
    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn each_list_denies_its_match_and_nothing_else() {
        testing::reset();
        testing::set_file(
            "/Users/a/Downloads/tool",
            testing::FakeFile {
                sha256: Some(SHA.into()),
                ..Default::default()
            },
        );
        let lists = Lists::parse(
            &SHA.to_uppercase(),
            &CD.to_lowercase(),
            "[\"EQHXZ8M8AV\"]",
            "com.evil.agent, platform:com.apple.osascript\n# comment line\nABCDE12345:com.acme.tool",
        );
        assert!(lists.rejected.is_empty(), "{:?}", lists.rejected);
        assert_eq!(lists.len(), 6);
        let mut d = PreventList::with(lists);
        let cases = [
            (
                image("/Users/a/Downloads/tool", None, "tool", "00"),
                Some("sha256"),
            ),
            (image("/tmp/x", None, "x", CD), Some("cdhash")),
            (
                image(
                    "/Applications/Z.app/Contents/MacOS/Z",
                    Some("EQHXZ8M8AV"),
                    "com.z",
                    "01",
                ),
                Some("team_id"),
            ),
            (
                image("/tmp/agent", None, "com.evil.agent", "02"),
                Some("signing_id"),
            ),
            (
                image("/usr/bin/osascript", None, "com.apple.osascript", "03"),
                Some("signing_id"),
            ),
            (
                image("/opt/acme/tool", Some("ABCDE12345"), "com.acme.tool", "04"),
                Some("signing_id"),
            ),
            // Near misses: same id under another team, unlisted hash and team.
            (
                image("/opt/other/tool", Some("ZZZZZ99999"), "com.acme.tool", "05"),
                None,
            ),
            (image("/Users/a/Downloads/other", None, "other", "06"), None),
            (
                image(
                    "/Applications/Y.app/Contents/MacOS/Y",
                    Some("QQQQQ11111"),
                    "com.y",
                    "07",
                ),
                None,
            ),
        ];
        for (target, want) in cases {
            let path = target.path().to_owned();
            let ev = auth(testing::exec_of(target, &[&path]));
            match (d.authorize(&ev), want) {
                (Verdict::Deny(reason), Some(list)) => {
                    assert!(
                        reason.starts_with(&format!("on the {list} prevent list")),
                        "{reason}"
                    )
                }
                (Verdict::NoOpinion, None) => {}
                (other, want) => panic!("{path}: {other:?}, wanted {want:?}"),
            }
            let findings = testing::deliver(&mut d, &ev).unwrap();
            assert_eq!(findings.len(), usize::from(want.is_some()), "{path}");
            if let Some(f) = findings.first() {
                assert_eq!(f.rule, "prevent-list-match");
                assert_eq!(f.evidence_value("list"), want);
                assert_eq!(
                    f.evidence_value("outcome"),
                    Some("deny requested (AUTH event)")
                );
            }
        }
    }

    #[test]
    fn an_image_the_sha256_list_cannot_hash_is_undecided_not_allowed() {
        testing::reset();
        testing::set_file(
            "/opt/elsewhere/tool",
            testing::FakeFile {
                denied: Some("outside the granted scope".into()),
                ..Default::default()
            },
        );
        let mut d = PreventList::with(Lists::parse(SHA, "", "EQHXZ8M8AV", ""));
        let ev = auth(testing::exec_of(
            image("/opt/elsewhere/tool", None, "tool", "00"),
            &["tool"],
        ));
        match d.authorize(&ev) {
            Verdict::Undecided(why) => {
                assert!(why.contains("cannot hash /opt/elsewhere/tool"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Another list matching still denies.
        let listed = auth(testing::exec_of(
            image("/opt/elsewhere/tool", Some("EQHXZ8M8AV"), "tool", "00"),
            &["tool"],
        ));
        assert!(matches!(d.authorize(&listed), Verdict::Deny(_)));
        testing::reset();
    }

    #[test]
    fn hash_failures_are_counted_and_logged_sparingly() {
        testing::reset();
        let d = PreventList::with(Lists::parse(SHA, "", "", ""));
        for _ in 0..120 {
            d.lists.hash_failed(
                "/opt/outside",
                &ward_sdk::EnrichError::Denied("outside".into()),
            );
        }
        assert_eq!(d.lists.hash_failures.get(), 120);
        let warned: Vec<String> = testing::logs().into_iter().map(|(_, m)| m).collect();
        assert_eq!(warned.len(), 3, "{warned:?}");
        assert!(warned[2].starts_with("prevent list: 100 image(s) could not be hashed"));
        testing::reset();
    }

    #[test]
    fn notify_streams_get_a_finding_that_says_not_blocked() {
        let mut d = PreventList::with(Lists::parse("", CD, "", ""));
        let ev = testing::exec_of(image("/tmp/x", None, "x", CD), &["/tmp/x"]);
        let f = testing::deliver(&mut d, &ev).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].evidence_value("outcome"),
            Some("observed (NOTIFY event: not blocked)")
        );
    }

    #[test]
    fn malformed_entries_are_skipped_and_counted() {
        let lists = Lists::parse(
            "abc, zz",
            "12345",
            "toolongteamid, EQHX",
            ":x, team:, a:b:c, ok.id",
        );
        assert_eq!(lists.len(), 1);
        let lists_rejected: Vec<_> = lists.rejected.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            lists_rejected,
            [
                "sha256",
                "sha256",
                "cdhash",
                "team_id",
                "team_id",
                "signing_id",
                "signing_id",
                "signing_id"
            ]
        );
        testing::reset();
        testing::set_config("team_id", "bad");
        let d = PreventList::default();
        assert!(d.lists.is_empty());
        assert!(
            testing::logs()
                .iter()
                .any(|(level, m)| level == "error" && m.contains("1 malformed"))
        );
    }

    #[test]
    fn a_hundred_thousand_entries_load_and_match() {
        let hashes: Vec<String> = (0..100_000u32).map(|i| format!("{i:040x}")).collect();
        let lists = Lists::parse("", &hashes.join("\n"), "", "");
        assert_eq!(lists.len(), 100_000);
        let d = PreventList::with(lists);
        let hit = image("/tmp/x", None, "x", &format!("{:040x}", 99_999));
        assert_eq!(d.lists.check(&hit).map(|m| m.list), Some("cdhash"));
        let miss = image("/tmp/x", None, "x", &format!("{:040x}", 100_000));
        assert_eq!(d.lists.check(&miss), None);
    }

    #[test]
    fn file_hash_is_requested_only_for_a_sha256_list() {
        testing::reset();
        assert!(PreventList::describe().capabilities.is_empty());
        testing::set_config("sha256", SHA);
        assert_eq!(PreventList::describe().capabilities, vec!["file-hash"]);
        testing::reset();
    }
}
