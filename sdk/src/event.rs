//! Convenience accessors on the generated event types.

use crate::{Destination, Event, EventData, EventParts, File, Process, SignerType};

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

/// Leaves out of `event` the parts `parts` does not name, as the agent does before it
/// delivers the event to a detector whose [`crate::Detector::parts`] is `parts`: an
/// `option` becomes `None`, a list empty. The testing harness applies it too, so a native
/// test sees what the sandbox will show.
pub fn keep_parts(event: &mut Event, parts: EventParts) {
    let keep = Keep(parts);
    keep.process(&mut event.process);
    match &mut event.data {
        EventData::Exec(e) => {
            keep.process(&mut e.target);
            if !parts.contains(EventParts::ARGS) {
                e.args.clear();
            }
            if parts.contains(EventParts::EXEC_CONTEXT) {
                keep.files(&mut e.cwd);
                keep.files(&mut e.script);
            } else {
                e.cwd = None;
                e.script = None;
                e.dyld_exec_path = None;
            }
        }
        EventData::Fork(p) => keep.process(p),
        EventData::Signal(s) => {
            keep.process(&mut s.target);
            keep.processes(&mut s.instigator);
        }
        EventData::Open(o) => keep.file(&mut o.file),
        EventData::Close(c) => keep.file(&mut c.target),
        EventData::Create(c) => keep.destination(&mut c.destination),
        EventData::Rename(r) => {
            keep.file(&mut r.source);
            keep.destination(&mut r.destination);
        }
        EventData::Unlink(u) => {
            keep.file(&mut u.target);
            keep.files(&mut u.parent_dir);
        }
        EventData::Write(f) => keep.file(f),
        EventData::Setextattr(x) | EventData::Deleteextattr(x) => keep.file(&mut x.target),
        EventData::Setmode(m) => keep.file(&mut m.target),
        EventData::Mmap(m) => keep.file(&mut m.source),
        EventData::UipcConnect(u) => keep.file(&mut u.file),
        EventData::RemoteThreadCreate(r) => keep.process(&mut r.target),
        EventData::BtmLaunchItem(b) => {
            keep.processes(&mut b.instigator);
            keep.processes(&mut b.app);
        }
        EventData::Authentication(a) => keep.processes(&mut a.instigator),
        EventData::Su(s) => {
            if !parts.contains(EventParts::ARGS) {
                s.argv.clear();
            }
        }
        EventData::ProfileAdd(p) => keep.processes(&mut p.instigator),
        EventData::TccModify(t) => {
            keep.processes(&mut t.instigator);
            keep.processes(&mut t.responsible);
        }
        EventData::Od(o) => keep.processes(&mut o.instigator),
        EventData::Exit(_)
        | EventData::CsInvalidated
        | EventData::Mount(_)
        | EventData::Kextload(_)
        | EventData::XpMalwareDetected(_)
        | EventData::LoginLogin(_)
        | EventData::OpensshLogin(_)
        | EventData::ScreensharingAttach(_)
        | EventData::Sudo(_)
        | EventData::Other(_) => {}
    }
}

/// [`keep_parts`]'s walk over the files and processes of an event.
#[derive(Clone, Copy)]
struct Keep(EventParts);

impl Keep {
    fn file(self, f: &mut File) {
        if !self.0.contains(EventParts::FILE_STATS) {
            f.stat = None;
        }
    }

    fn files(self, f: &mut Option<File>) {
        if let Some(f) = f {
            self.file(f);
        }
    }

    fn process(self, p: &mut Process) {
        self.file(&mut p.executable);
        if self.0.contains(EventParts::PROCESS_SESSION) {
            self.files(&mut p.tty);
        } else {
            p.tty = None;
            p.start_time = None;
        }
    }

    fn processes(self, p: &mut Option<Process>) {
        if let Some(p) = p {
            self.process(p);
        }
    }

    fn destination(self, d: &mut Destination) {
        match d {
            Destination::ExistingFile(f) => self.file(f),
            Destination::NewPath(n) => self.file(&mut n.dir),
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
    fn keep_parts_leaves_out_exactly_the_unnamed_parts() {
        let stat = crate::FileStat {
            dev: 1,
            ino: 2,
            mode: 0o100755,
            uid: 0,
            gid: 0,
            size: 3,
            flags: 0,
            mtime: Some("t".into()),
            birthtime: None,
        };
        let mut target = testing::process("/usr/bin/curl");
        target.executable.stat = Some(stat.clone());
        target.tty = Some(testing::file("/dev/ttys001"));
        let mut whole = testing::exec_of(target, &["curl", "-O", "x"]);
        if let EventData::Exec(e) = &mut whole.data {
            e.cwd = Some(File {
                stat: Some(stat.clone()),
                ..testing::file("/tmp")
            });
            e.script = Some(testing::file("/tmp/s.sh"));
            e.dyld_exec_path = Some("/usr/bin/curl".into());
        }
        let kept = |parts: EventParts| {
            let mut e = whole.clone();
            keep_parts(&mut e, parts);
            e
        };
        assert_eq!(
            format!("{:?}", kept(EventParts::all())),
            format!("{whole:?}")
        );

        let none = kept(EventParts::empty());
        let exec = none.as_exec().unwrap();
        assert!(exec.args.is_empty() && exec.cwd.is_none() && exec.script.is_none());
        assert!(exec.dyld_exec_path.is_none());
        assert!(exec.target.executable.stat.is_none() && exec.target.tty.is_none());
        assert!(exec.target.start_time.is_none() && none.process.start_time.is_none());
        // What always arrives.
        assert_eq!(exec.target.executable.path, "/usr/bin/curl");
        assert_eq!(exec.target.signing_id, whole.actor().signing_id);
        assert_eq!(
            format!("{:?}", exec.target.parent_token),
            format!("{:?}", whole.actor().parent_token)
        );

        let stats = kept(EventParts::FILE_STATS | EventParts::EXEC_CONTEXT);
        let exec = stats.as_exec().unwrap();
        assert!(exec.target.executable.stat.is_some());
        assert!(exec.cwd.as_ref().is_some_and(|c| c.stat.is_some()));
        assert!(exec.args.is_empty() && exec.target.tty.is_none());
        let cwd_without_stat = kept(EventParts::EXEC_CONTEXT);
        let exec = cwd_without_stat.as_exec().unwrap();
        assert!(exec.cwd.as_ref().is_some_and(|c| c.stat.is_none()));
    }

    #[test]
    fn the_harness_delivers_only_the_named_parts() {
        #[derive(Default)]
        struct ArgvCounter;
        impl crate::Detector for ArgvCounter {
            fn describe() -> crate::PluginInfo {
                crate::PluginInfo::new("argv", "0", crate::PluginKind::Detector, "")
            }
            fn parts() -> EventParts {
                EventParts::FILE_STATS
            }
            fn on_event(
                &mut self,
                event: &Event,
            ) -> Result<Vec<crate::Finding>, crate::PluginError> {
                Ok((0..event.args().len())
                    .map(|_| crate::Finding::new("arg", crate::Severity::Low, ""))
                    .collect())
            }
        }
        use crate::{Detector as _, FindingExt as _};
        let exec = testing::exec("/usr/bin/curl", &["curl", "x"]);
        assert_eq!(ArgvCounter.on_event(&exec).unwrap().len(), 2);
        assert!(
            testing::deliver(&mut ArgvCounter, &exec)
                .unwrap()
                .is_empty()
        );
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
