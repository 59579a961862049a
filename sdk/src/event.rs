//! Convenience accessors on the generated event types.

use crate::{Destination, Event, EventData, File, Process, SignerType};

/// Accessors every detector ends up writing; implemented for [`Event`].
pub trait EventExt {
    /// The process that did what the event describes: for `exec` the new image, otherwise
    /// the event's process.
    fn actor(&self) -> &Process;

    /// The path the event is about: the new image for `exec`, the file for file events
    /// (the destination for `create` and `rename`), the acting process's executable
    /// otherwise. Host prefilters use the same definition.
    fn primary_path(&self) -> &str;

    /// The argv of an `exec`, empty for other kinds.
    fn args(&self) -> &[String];

    /// The `exec` payload, if this is an exec.
    fn as_exec(&self) -> Option<&crate::ExecEvent>;

    /// The file whose content this event creates or changes: the path of a `create`, the
    /// destination of a `rename`, a `close` after writing, a `write`. `None` otherwise.
    fn written_path(&self) -> Option<&str>;
}

impl EventExt for Event {
    fn actor(&self) -> &Process {
        match &self.data {
            EventData::Exec(exec) => &exec.target,
            _ => &self.process,
        }
    }

    fn primary_path(&self) -> &str {
        match &self.data {
            EventData::Exec(exec) => &exec.target.executable.path,
            EventData::Open(e) => &e.file.path,
            EventData::Close(e) => &e.target.path,
            EventData::Create(e) => &e.path,
            EventData::Rename(e) => &e.destination_path,
            EventData::Unlink(e) => &e.target.path,
            EventData::Write(f) => &f.path,
            EventData::Setextattr(e) | EventData::Deleteextattr(e) => &e.target.path,
            EventData::Setmode(e) => &e.target.path,
            EventData::Mmap(e) => &e.source.path,
            EventData::UipcConnect(e) => &e.file.path,
            EventData::XpMalwareDetected(e) => &e.detected_path,
            EventData::BtmLaunchItem(e) => &e.item_url,
            _ => &self.process.executable.path,
        }
    }

    fn args(&self) -> &[String] {
        match &self.data {
            EventData::Exec(exec) => &exec.args,
            _ => &[],
        }
    }

    fn as_exec(&self) -> Option<&crate::ExecEvent> {
        match &self.data {
            EventData::Exec(exec) => Some(exec),
            _ => None,
        }
    }

    fn written_path(&self) -> Option<&str> {
        match &self.data {
            EventData::Create(c) => Some(&c.path),
            EventData::Rename(r) => Some(&r.destination_path),
            EventData::Close(c) if c.modified => Some(&c.target.path),
            EventData::Write(f) => Some(&f.path),
            _ => None,
        }
    }
}

/// Accessors on [`Process`].
pub trait ProcessExt {
    /// The executable's path.
    fn path(&self) -> &str;
    /// The executable's file name (after the last `/`).
    fn name(&self) -> &str;
    /// The signing id, or `""` when unsigned.
    fn signing_id_or_empty(&self) -> &str;
    /// True for ad-hoc signed or unsigned code: what Gatekeeper would not vouch for.
    fn is_untrusted_code(&self) -> bool;
    /// True for a shell (`sh`, `bash`, `zsh`, `dash`, `ksh`, `tcsh`, `csh`, `fish`, `pwsh`).
    fn is_shell(&self) -> bool;
}

impl ProcessExt for Process {
    fn path(&self) -> &str {
        &self.executable.path
    }

    fn name(&self) -> &str {
        let path = self.executable.path.as_str();
        path.rsplit('/').next().unwrap_or(path)
    }

    fn signing_id_or_empty(&self) -> &str {
        self.signing_id.as_deref().unwrap_or("")
    }

    fn is_untrusted_code(&self) -> bool {
        matches!(self.signer, SignerType::Adhoc | SignerType::Unsigned)
    }

    fn is_shell(&self) -> bool {
        [
            "sh", "bash", "zsh", "dash", "ksh", "tcsh", "csh", "fish", "pwsh",
        ]
        .contains(&self.name())
    }
}

impl Destination {
    /// The full path this destination names.
    pub fn path(&self) -> String {
        match self {
            Destination::ExistingFile(file) => file.path.clone(),
            Destination::NewPath(new) => join(&new.dir, &new.filename),
        }
    }
}

fn join(dir: &File, name: &str) -> String {
    if dir.path.ends_with('/') {
        format!("{}{}", dir.path, name)
    } else {
        format!("{}/{}", dir.path, name)
    }
}

impl SignerType {
    /// The contract's name for this signer class (`apple`, `app-store`, `developer-id`,
    /// `development`, `adhoc`, `unsigned`), as findings print it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignerType::Apple => "apple",
            SignerType::AppStore => "app-store",
            SignerType::DeveloperId => "developer-id",
            SignerType::Development => "development",
            SignerType::Adhoc => "adhoc",
            SignerType::Unsigned => "unsigned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn primary_path_and_actor_follow_the_contract() {
        let exec = testing::exec("/usr/bin/curl", &["curl"]);
        assert_eq!(exec.primary_path(), "/usr/bin/curl");
        assert_eq!(exec.actor().path(), "/usr/bin/curl");
        assert_eq!(exec.process.path(), "/bin/zsh");
        assert_eq!(exec.args(), ["curl"]);

        let by = testing::process("/bin/cp");
        assert_eq!(
            testing::create(by.clone(), "/Library/LaunchDaemons/x.plist").primary_path(),
            "/Library/LaunchDaemons/x.plist"
        );
        assert_eq!(
            testing::rename(by.clone(), "/tmp/a", "/tmp/b").primary_path(),
            "/tmp/b"
        );
        let unlink = testing::unlink(by, "/tmp/gone");
        assert_eq!(unlink.primary_path(), "/tmp/gone");
        assert!(unlink.args().is_empty());
        assert_eq!(unlink.actor().name(), "cp");
        assert!(!unlink.actor().is_shell());
        assert!(exec.process.is_shell());
    }

    #[test]
    fn destinations_join_dir_and_name() {
        let new = Destination::NewPath(crate::NewPath {
            dir: testing::file("/tmp/"),
            filename: "x".into(),
            mode: None,
        });
        assert_eq!(new.path(), "/tmp/x");
        let new = Destination::NewPath(crate::NewPath {
            dir: testing::file("/tmp"),
            filename: "x".into(),
            mode: None,
        });
        assert_eq!(new.path(), "/tmp/x");
        assert_eq!(
            Destination::ExistingFile(testing::file("/etc/hosts")).path(),
            "/etc/hosts"
        );
    }

    #[test]
    fn native_host_doubles_answer_config_processes_and_logs() {
        testing::reset();
        assert_eq!(crate::config("k"), None);
        testing::set_config("k", "v");
        assert_eq!(crate::config("k").as_deref(), Some("v"));

        let mut grandparent = testing::process("/sbin/launchd");
        grandparent.token = testing::token(1, 1);
        grandparent.parent_token = None;
        let mut parent = testing::process("/bin/zsh");
        parent.token = testing::token(10, 2);
        parent.parent_token = Some(grandparent.token);
        let mut child = testing::process("/usr/bin/curl");
        child.token = testing::token(20, 3);
        child.parent_token = Some(parent.token);
        testing::add_process(grandparent);
        testing::add_process(parent);
        testing::add_process(child.clone());
        let chain = crate::process::ancestors(child.token, 8);
        assert_eq!(
            chain.iter().map(|p| p.path()).collect::<Vec<_>>(),
            ["/bin/zsh", "/sbin/launchd"]
        );
        assert_eq!(crate::process::ancestors(child.token, 1).len(), 1);
        assert_eq!(
            crate::process::parent(&child).map(|p| p.token.pid),
            Some(10)
        );

        crate::log::warn("careful");
        assert_eq!(testing::logs(), [("warn".to_owned(), "careful".to_owned())]);
        testing::reset();
        assert!(testing::logs().is_empty());
    }
}
