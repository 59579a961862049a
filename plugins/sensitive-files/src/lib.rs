//! Detector: files an attacker changes to keep access or raise privileges.
//!
//! | rule | files | ATT&CK |
//! |---|---|---|
//! | `shell-profile-modified` | `~/.zshrc`, `~/.zshenv`, `~/.bash_profile`, … and `/etc/zshrc`, `/etc/profile`, … | T1546.004 Unix Shell Configuration Modification |
//! | `ssh-authorized-keys-modified` | `~/.ssh/authorized_keys`, `authorized_keys2` | T1098.004 SSH Authorized Keys |
//! | `sudoers-modified` | `/etc/sudoers`, `/etc/sudoers.d/*` | T1548.003 Sudo and Sudo Caching |
//! | `tcc-database-modified` | `…/com.apple.TCC/TCC.db` (and its journal) written by anything but `tccd` | T1548.006 TCC Manipulation |
//!
//! A change is a `create`, a `rename` onto the file (how editors and `visudo` save) or a
//! `close` after writing (not each `write`, so one edit is one finding). File names compare
//! case-insensitively, as APFS does; `tccd` is exempt only when Apple-signed. Severity rises to high when the writer is ad-hoc
//! signed or unsigned. The host prefilter keeps the file-event firehose out of the guest.

use ward_sdk::prelude::*;

/// Per-user shell start-up files (zsh and bash), relative to a home directory.
const USER_PROFILES: &[&str] = &[
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".profile",
];
/// System-wide shell start-up files, under `/etc` (also reached as `/private/etc`).
const SYSTEM_PROFILES: &[&str] = &["zshrc", "zshenv", "zprofile", "zlogin", "profile", "bashrc"];

/// Writers that own the TCC database.
const TCC_OWNERS: &[&str] = &["com.apple.tccd"];

/// What a sensitive file is, with its rule, technique and base severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitive {
    /// A shell start-up file (user or system).
    ShellProfile,
    /// An SSH `authorized_keys` file.
    AuthorizedKeys,
    /// `sudoers` or a file under `sudoers.d`.
    Sudoers,
    /// The TCC privacy database.
    TccDatabase,
}

impl Sensitive {
    fn rule(self) -> &'static str {
        match self {
            Self::ShellProfile => "shell-profile-modified",
            Self::AuthorizedKeys => "ssh-authorized-keys-modified",
            Self::Sudoers => "sudoers-modified",
            Self::TccDatabase => "tcc-database-modified",
        }
    }

    fn technique(self) -> &'static str {
        match self {
            Self::ShellProfile => "T1546.004",
            Self::AuthorizedKeys => "T1098.004",
            Self::Sudoers => "T1548.003",
            Self::TccDatabase => "T1548.006",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ShellProfile => "shell start-up file",
            Self::AuthorizedKeys => "SSH authorized_keys",
            Self::Sudoers => "sudoers policy",
            Self::TccDatabase => "TCC privacy database",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Self::ShellProfile => Severity::Medium,
            Self::AuthorizedKeys | Self::Sudoers | Self::TccDatabase => Severity::High,
        }
    }
}

/// `/private/etc/x` and `/etc/x` are the same file.
fn etc_relative(path: &str) -> Option<&str> {
    path.strip_prefix("/private/etc/")
        .or_else(|| path.strip_prefix("/etc/"))
}

/// True if `dir` is a home directory: `/Users/<name>` or root's `/var/root`.
fn is_home(dir: &str) -> bool {
    match dir.strip_prefix("/users/") {
        Some(name) => !name.is_empty() && !name.contains('/'),
        None => dir == "/var/root" || dir == "/private/var/root",
    }
}

/// Classifies `path`, or `None` if it is not one of the watched files. Names compare
/// case-insensitively: APFS is case-insensitive by default, so a new `~/.ZSHRC` is the
/// file zsh reads.
pub fn classify(path: &str) -> Option<Sensitive> {
    let lower = path.to_ascii_lowercase();
    let path = lower.as_str();
    let (dir, name) = path.rsplit_once('/')?;
    if let Some(rel) = etc_relative(path) {
        if rel == "sudoers"
            || rel
                .strip_prefix("sudoers.d/")
                .is_some_and(|f| !f.is_empty())
        {
            return Some(Sensitive::Sudoers);
        }
        if SYSTEM_PROFILES.contains(&rel) {
            return Some(Sensitive::ShellProfile);
        }
        return None;
    }
    if USER_PROFILES.contains(&name) && is_home(dir) {
        return Some(Sensitive::ShellProfile);
    }
    if matches!(name, "authorized_keys" | "authorized_keys2") && dir.ends_with("/.ssh") {
        return Some(Sensitive::AuthorizedKeys);
    }
    if dir.ends_with("/com.apple.tcc") && matches!(name, "tcc.db" | "tcc.db-wal" | "tcc.db-journal")
    {
        return Some(Sensitive::TccDatabase);
    }
    None
}

/// The detector; stateless.
#[derive(Default)]
pub struct SensitiveFiles;

impl Detector for SensitiveFiles {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "sensitive-files",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "shell profiles, SSH authorized_keys, sudoers or the TCC database changed",
        )
        // `write` is left out: every change ends in a modified `close`, and one edit
        // would otherwise be reported once per write call and again at the close.
        .subscribe(&["create", "rename", "close"])
        // Case variants of the first letters, for names created in another case.
        .prefilter(Prefilter::any().path_contains(&[
            "/.z",
            "/.Z",
            "/.b",
            "/.B",
            "/.p",
            "/.P",
            "/.s",
            "/.S",
            "/.bash",
            "/.profile",
            "/etc/z",
            "/etc/profile",
            "/etc/bashrc",
            "/.ssh/authorized_keys",
            "/etc/sudoers",
            "/com.apple.TCC/",
        ]))
    }

    /// Only what it reads: paths and signing data only.
    fn parts() -> EventParts {
        EventParts::empty()
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let Some(path) = event.written_path() else {
            return Ok(Vec::new());
        };
        let Some(kind) = classify(path) else {
            return Ok(Vec::new());
        };
        let writer = &event.process;
        // tccd itself, by its signing id and an Apple signature (an ad-hoc binary can claim
        // any identifier).
        if kind == Sensitive::TccDatabase
            && writer.signer == SignerType::Apple
            && TCC_OWNERS.contains(&writer.signing_id_or_empty())
        {
            return Ok(Vec::new());
        }
        let untrusted = writer.is_untrusted_code();
        let severity = if untrusted {
            Severity::High
        } else {
            kind.severity()
        };
        Ok(vec![
            Finding::new(
                kind.rule(),
                severity,
                format!("{} changed the {} {path}", writer.path(), kind.what()),
            )
            .attack(&[kind.technique()])
            .evidence("file", path)
            .evidence("operation", event.kind.as_str())
            .evidence("writer_path", writer.path())
            .evidence("writer_signing_id", writer.signing_id_or_empty())
            .evidence("writer_signer", writer.signer.as_str()),
        ])
    }
}

ward_sdk::export_detector!(SensitiveFiles);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn rules(event: &Event) -> Vec<String> {
        SensitiveFiles
            .on_event(event)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    fn unsigned(path: &str) -> Process {
        let mut p = testing::process(path);
        p.signing_id = None;
        p.cdhash = None;
        p.is_platform_binary = false;
        p.signer = SignerType::Unsigned;
        p
    }

    #[test]
    fn classifies_the_watched_files_and_nothing_next_to_them() {
        let cases = [
            ("/Users/alice/.zshrc", Some(Sensitive::ShellProfile)),
            ("/Users/alice/.bash_profile", Some(Sensitive::ShellProfile)),
            ("/var/root/.profile", Some(Sensitive::ShellProfile)),
            ("/etc/zshrc", Some(Sensitive::ShellProfile)),
            ("/private/etc/profile", Some(Sensitive::ShellProfile)),
            (
                "/Users/alice/.ssh/authorized_keys",
                Some(Sensitive::AuthorizedKeys),
            ),
            (
                "/var/root/.ssh/authorized_keys2",
                Some(Sensitive::AuthorizedKeys),
            ),
            ("/etc/sudoers", Some(Sensitive::Sudoers)),
            (
                "/private/etc/sudoers.d/99-backdoor",
                Some(Sensitive::Sudoers),
            ),
            (
                "/Users/alice/Library/Application Support/com.apple.TCC/TCC.db",
                Some(Sensitive::TccDatabase),
            ),
            (
                "/Library/Application Support/com.apple.TCC/TCC.db-wal",
                Some(Sensitive::TccDatabase),
            ),
            // Near misses: history, backups, other homes' subfolders, other ssh files.
            ("/Users/alice/.zsh_history", None),
            ("/Users/alice/.zshrc.bak", None),
            ("/Users/alice/project/.zshrc", None),
            ("/Users/alice/.ssh/known_hosts", None),
            ("/Users/alice/.ssh/authorized_keys.old", None),
            ("/etc/sudoers.tmp", None),
            ("/etc/sudoers.d/", None),
            ("/etc/zshrc_Apple_Terminal", None),
            (
                "/Library/Application Support/com.apple.TCC/AdminClients",
                None,
            ),
            ("/tmp/TCC.db", None),
            // APFS is case-insensitive: a new name in another case is the same file to zsh.
            ("/Users/alice/.ZSHRC", Some(Sensitive::ShellProfile)),
            (
                "/Users/alice/.SSH/Authorized_Keys",
                Some(Sensitive::AuthorizedKeys),
            ),
            ("/private/etc/SUDOERS", Some(Sensitive::Sudoers)),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), want, "{path}");
        }
    }

    #[test]
    fn each_rule_fires_with_its_technique_and_evidence() {
        let shell = testing::process("/bin/zsh");
        let cases = [
            (
                testing::close_modified(shell.clone(), "/Users/alice/.zshrc"),
                "shell-profile-modified",
                "T1546.004",
            ),
            (
                testing::create(shell.clone(), "/Users/alice/.ssh/authorized_keys"),
                "ssh-authorized-keys-modified",
                "T1098.004",
            ),
            (
                testing::rename(
                    testing::process("/usr/sbin/visudo"),
                    "/etc/sudoers.tmp",
                    "/etc/sudoers",
                ),
                "sudoers-modified",
                "T1548.003",
            ),
            (
                testing::close_modified(
                    testing::process("/usr/bin/sqlite3"),
                    "/Library/Application Support/com.apple.TCC/TCC.db",
                ),
                "tcc-database-modified",
                "T1548.006",
            ),
        ];
        for (event, rule, technique) in cases {
            let f = SensitiveFiles.on_event(&event).unwrap();
            assert_eq!(f.len(), 1, "{rule}");
            assert_eq!(f[0].rule, rule);
            assert_eq!(f[0].attack, vec![technique]);
            assert_eq!(f[0].evidence_value("file"), Some(event.primary_path()));
            assert_eq!(f[0].evidence_value("operation"), Some(event.kind.as_str()));
        }
    }

    #[test]
    fn untrusted_writers_raise_severity() {
        let apple = testing::close_modified(testing::process("/bin/zsh"), "/Users/a/.zshenv");
        assert_eq!(
            SensitiveFiles.on_event(&apple).unwrap()[0].severity,
            Severity::Medium
        );
        let implant = testing::close_modified(unsigned("/tmp/.x/implant"), "/Users/a/.zshenv");
        let f = SensitiveFiles.on_event(&implant).unwrap();
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(f[0].evidence_value("writer_signer"), Some("unsigned"));
    }

    #[test]
    fn an_adhoc_binary_claiming_to_be_tccd_is_not_exempt() {
        let mut fake = unsigned("/tmp/tccd");
        fake.signing_id = Some("com.apple.tccd".into());
        fake.signer = SignerType::Adhoc;
        let ev = testing::close_modified(fake, "/Library/Application Support/com.apple.TCC/TCC.db");
        assert_eq!(rules(&ev), ["tcc-database-modified"]);
    }

    #[test]
    fn near_misses_are_quiet() {
        let shell = testing::process("/bin/zsh");
        let mut tccd =
            testing::process("/System/Library/PrivateFrameworks/TCC.framework/Support/tccd");
        tccd.signing_id = Some("com.apple.tccd".into());
        let quiet = [
            // The shell appending to its history.
            testing::close_modified(shell.clone(), "/Users/alice/.zsh_history"),
            // Reading a profile (close without a write).
            {
                let mut e = testing::close_modified(shell.clone(), "/Users/alice/.zshrc");
                if let EventData::Close(c) = &mut e.data {
                    c.modified = false;
                }
                e
            },
            // Deleting is not changing content.
            testing::unlink(shell.clone(), "/Users/alice/.ssh/authorized_keys"),
            // ssh updating known_hosts.
            testing::close_modified(shell.clone(), "/Users/alice/.ssh/known_hosts"),
            // visudo's temporary file.
            testing::create(testing::process("/usr/sbin/visudo"), "/etc/sudoers.tmp"),
            // tccd maintaining its own database.
            testing::close_modified(tccd, "/Library/Application Support/com.apple.TCC/TCC.db"),
        ];
        for event in quiet {
            assert!(rules(&event).is_empty(), "{event:?}");
        }
    }
}
