//! Detector: runs Jamf Protect custom analytics — the YAML format of Jamf's public library,
//! NSPredicate filters over `$event` — on Endpoint Security events.
//!
//! The public corpus is bundled (MIT, see `analytics/NOTICE.md`). Each event is mapped once
//! to the Jamf event model (`GPProcessEvent` from exec/exit, `GPFSEvent` from
//! create/rename/unlink/close/write with Jamf's type codes, parent and responsible from the
//! agent's process table, `signerType` from the signer class), then every analytic of that
//! input type is evaluated in `level` order; an analytic that fires adds its name and tags
//! to `$tags` and its context values to `$context` for higher levels.
//!
//! ES gives a process's arguments only in its exec event, but Jamf's process object carries
//! `args` everywhere (exit, file events, relatives) and names the process-group leader
//! (`pgprocess`): the detector remembers the images it saw exec ([`Images`]) to fill them in.

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value, json};
use ward_predicate::{Analytic, Predicate, Vars};
use ward_sdk::prelude::*;
use ward_sdk::{AuditToken, Destination, File};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Jamf `signerType` codes: 0 Apple, 1 App Store, 2 Developer ID, 3 ad hoc, 4 unsigned.
fn signer_code(signer: SignerType) -> i64 {
    match signer {
        SignerType::Apple => 0,
        SignerType::AppStore => 1,
        SignerType::DeveloperId | SignerType::Development => 2,
        SignerType::Adhoc => 3,
        SignerType::Unsigned => 4,
    }
}

fn signing_info(p: &Process) -> Value {
    json!({
        "appid": p.signing_id.clone().unwrap_or_default(),
        "teamid": p.team_id.clone().unwrap_or_default(),
        "signerType": signer_code(p.signer),
        "cdhash": p.cdhash.clone().unwrap_or_default(),
    })
}

/// How many exec'd images [`Images`] remembers; the oldest are forgotten first.
const MAX_IMAGES: usize = 4096;

/// The process images this detector saw exec, with their arguments, until they exit (or
/// exec again). Bounded by [`MAX_IMAGES`]; lost when the host replaces the instance, after
/// which arguments of processes started before are unknown (empty) again.
#[derive(Debug, Default)]
pub struct Images {
    by_token: HashMap<(i32, i32), (Process, Vec<String>)>,
    /// The newest image of each pid (for the process-group leader, which ES names by pid).
    by_pid: HashMap<i32, i32>,
    /// Insertion order, for forgetting the oldest; may hold keys already forgotten.
    order: VecDeque<(i32, i32)>,
}

impl Images {
    /// Remembers `process`, started with `args`.
    pub fn record(&mut self, process: &Process, args: &[String]) {
        let key = (process.token.pid, process.token.pidversion);
        self.by_token.insert(key, (process.clone(), args.to_vec()));
        self.by_pid.insert(key.0, key.1);
        self.order.push_back(key);
        while self.by_token.len() > MAX_IMAGES {
            match self.order.pop_front() {
                Some(old) => self.forget_key(old),
                None => break,
            }
        }
        if self.order.len() > 2 * MAX_IMAGES {
            let live = &self.by_token;
            self.order.retain(|k| live.contains_key(k));
        }
    }

    /// Forgets the image with `token` (it exited or exec'd another).
    pub fn forget(&mut self, token: AuditToken) {
        self.forget_key((token.pid, token.pidversion));
    }

    fn forget_key(&mut self, key: (i32, i32)) {
        self.by_token.remove(&key);
        if self.by_pid.get(&key.0) == Some(&key.1) {
            self.by_pid.remove(&key.0);
        }
    }

    /// The arguments the image with `token` was started with, if it was seen.
    pub fn args(&self, token: AuditToken) -> &[String] {
        self.by_token
            .get(&(token.pid, token.pidversion))
            .map_or(&[], |(_, args)| args.as_slice())
    }

    /// The newest image seen for `pid`, with its arguments.
    fn by_pid(&self, pid: i32) -> Option<&(Process, Vec<String>)> {
        let pidversion = self.by_pid.get(&pid)?;
        self.by_token.get(&(pid, *pidversion))
    }

    /// Number of remembered images.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when none are remembered.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// A process in the Jamf model. `args` come from the exec (for the acting process) or from
/// [`Images`] (empty when the exec was not seen).
fn process(p: &Process, args: &[String]) -> Value {
    json!({
        "pid": p.token.pid,
        "path": p.path(),
        "name": p.name(),
        "args": args,
        "commandLine": args.join(" "),
        "tty": p.tty.as_ref().map(|t| Value::String(t.path.clone())).unwrap_or(Value::Null),
        "isShell": p.is_shell(),
        "signingInfo": signing_info(p),
    })
}

/// The acting process with `parent` and `responsible` resolved through the process table
/// (their arguments from `images`), and `pgprocess`, the process-group leader, from
/// `images` (ES names it only by pid; itself when it leads its group).
fn process_with_relatives(p: &Process, args: &[String], images: &Images) -> Value {
    let mut value = process(p, args);
    let relative = |token: Option<AuditToken>| {
        token
            .filter(|t| (t.pid, t.pidversion) != (p.token.pid, p.token.pidversion))
            .and_then(ward_sdk::process::lookup)
            .map_or(Value::Null, |q| process(&q, images.args(q.token)))
    };
    let leader = if p.group_id == p.token.pid {
        process(p, args)
    } else {
        images
            .by_pid(p.group_id)
            .map_or(Value::Null, |(q, q_args)| process(q, q_args))
    };
    if let Value::Object(map) = &mut value {
        map.insert("parent".into(), relative(p.parent_token));
        map.insert("responsible".into(), relative(p.responsible_token));
        map.insert("pgprocess".into(), leader);
    }
    value
}

fn is_dir(file: &File) -> bool {
    file.stat
        .as_ref()
        .is_some_and(|s| s.mode & 0o170000 == 0o040000)
}

/// Maps an event to (inputType, Jamf event), or `None` for kinds analytics do not see.
/// `images` supplies the arguments of processes whose exec was seen earlier (the acting
/// process of exit and file events, relatives) and the process-group leader.
pub fn jamf_event(event: &Event, images: &Images) -> Option<(&'static str, Value)> {
    let actor = || process_with_relatives(&event.process, images.args(event.process.token), images);
    let fs =
        |kind: i64, path: &str, prev: Option<&str>, new: bool, new_dir: bool, modified: bool| {
            json!({
                "type": kind,
                "path": path,
                "prevFile": prev,
                "isNew": new,
                "isNewFile": new && !new_dir,
                "isNewDirectory": new_dir,
                "isModified": modified,
                "file": {"path": path},
                "process": actor(),
            })
        };
    Some(match &event.data {
        EventData::Exec(exec) => (
            "GPProcessEvent",
            json!({
                "type": 1,
                "process": process_with_relatives(&exec.target, &exec.args, images),
            }),
        ),
        EventData::Exit(exit) => {
            let mut p = actor();
            if let Value::Object(map) = &mut p {
                map.insert(
                    "exitCode".into(),
                    exit.exit_code.map_or(Value::Null, Value::from),
                );
            }
            ("GPProcessEvent", json!({"type": 2, "process": p}))
        }
        EventData::Create(c) => {
            let dir = match &c.destination {
                Destination::NewPath(n) => n.mode.is_some_and(|m| m & 0o170000 == 0o040000),
                Destination::ExistingFile(f) => is_dir(f),
            };
            let mut jamf = fs(if dir { 7 } else { 0 }, &c.path, None, true, dir, false);
            // A new directory with the `app` extension is an application bundle to
            // LaunchServices (Jamf's `file.isAppBundle`); only a create tells ward it is one.
            let app = dir
                && std::path::Path::new(&c.path)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("app"));
            if let Some(Value::Object(file)) = jamf.get_mut("file") {
                file.insert("isAppBundle".into(), Value::Bool(app));
            }
            ("GPFSEvent", jamf)
        }
        // A rename changes the file at its destination: editors save by renaming a temporary
        // over the original, and Jamf's trash analytics expect moved bundles as modified.
        EventData::Rename(r) => (
            "GPFSEvent",
            fs(
                3,
                &r.destination_path,
                Some(&r.source.path),
                false,
                false,
                true,
            ),
        ),
        EventData::Unlink(u) => (
            "GPFSEvent",
            fs(1, &u.target.path, None, false, false, false),
        ),
        EventData::Close(c) if c.modified => {
            ("GPFSEvent", fs(4, &c.target.path, None, false, false, true))
        }
        EventData::Write(f) => ("GPFSEvent", fs(4, &f.path, None, false, false, true)),
        _ => return None,
    })
}

/// Finding severity from the analytic's.
fn severity(s: &str) -> Severity {
    match s.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Informational,
    }
}

/// ATT&CK technique ids among an analytic's tags and MITRE categories.
fn techniques(a: &Analytic) -> Vec<String> {
    a.tags
        .iter()
        .chain(&a.mitre)
        .filter(|t| {
            t.len() >= 5
                && t.starts_with('T')
                && t.get(1..5)
                    .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The detector: the loaded analytics, by level, and the images it saw exec.
pub struct JamfAnalytics {
    analytics: Vec<Analytic>,
    images: Images,
}

impl Default for JamfAnalytics {
    fn default() -> Self {
        let mut analytics = Vec::new();
        for (path, yaml) in BUNDLED {
            match ward_predicate::parse_analytic(yaml) {
                Ok(a) => analytics.push(a),
                Err(e) => ward_sdk::log::info(&format!("analytic {path} skipped: {e}")),
            }
        }
        Self::with(analytics)
    }
}

impl JamfAnalytics {
    /// A detector over `analytics` (sorted by level, stable).
    pub fn with(mut analytics: Vec<Analytic>) -> Self {
        analytics.sort_by_key(|a| a.level);
        Self {
            analytics,
            images: Images::default(),
        }
    }

    /// Number of loaded analytics.
    pub fn len(&self) -> usize {
        self.analytics.len()
    }

    /// True when none loaded.
    pub fn is_empty(&self) -> bool {
        self.analytics.is_empty()
    }
}

impl Detector for JamfAnalytics {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "jamf-analytics",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "Jamf Protect custom analytics (the public corpus is bundled)",
        )
        .subscribe(&[
            "exec", "exit", "create", "rename", "unlink", "close", "write",
        ])
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        if let EventData::Exec(exec) = &event.data {
            // The old image is gone; the new one is the acting process from now on.
            self.images.forget(event.process.token);
            self.images.record(&exec.target, &exec.args);
        }
        let mapped = jamf_event(event, &self.images);
        if let EventData::Exit(_) = &event.data {
            self.images.forget(event.process.token);
        }
        let Some((input_type, jamf)) = mapped else {
            return Ok(Vec::new());
        };
        let mut vars = Vars::new(&jamf);
        let mut tags: Vec<Value> = Vec::new();
        let mut context = Map::new();
        let mut findings = Vec::new();
        for a in &self.analytics {
            if a.input_type != input_type || !a.filter.eval(&vars) {
                continue;
            }
            let mut finding = Finding::new(
                &a.name,
                severity(&a.severity),
                format!("Jamf analytic {}: {}", a.name, a.description),
            )
            .attack(&techniques(a).iter().map(String::as_str).collect::<Vec<_>>())
            .evidence("input_type", input_type)
            .evidence("categories", a.categories.join(", "));
            for (label, exprs) in &a.context {
                let values: Vec<String> = exprs
                    .iter()
                    .map(|e| text(&Predicate::resolve(e, &vars)))
                    .filter(|v| !v.is_empty())
                    .collect();
                if let Some(first) = values.first() {
                    context.insert(label.clone(), json!({"value": first}));
                    finding = finding.evidence(label, values.join(" | "));
                }
            }
            tags.push(Value::String(a.name.clone()));
            tags.extend(a.tags.iter().cloned().map(Value::String));
            // Higher levels see what this one found; only rebuilt when something fired.
            vars.tags = std::borrow::Cow::Owned(Value::Array(tags.clone()));
            vars.context = std::borrow::Cow::Owned(Value::Object(context.clone()));
            findings.push(finding);
        }
        Ok(findings)
    }
}

ward_sdk::export_detector!(JamfAnalytics);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::OnceLock;
    use ward_sdk::{ExitEvent, testing};

    /// Loading compiles every filter's regular expressions: do it once per test binary.
    fn analytics() -> Vec<Analytic> {
        static LOADED: OnceLock<Vec<Analytic>> = OnceLock::new();
        LOADED
            .get_or_init(|| JamfAnalytics::default().analytics)
            .clone()
    }

    fn fired(event: &Event) -> Vec<String> {
        JamfAnalytics::with(analytics())
            .on_event(event)
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// An Apple-platform process at `path` with `signing_id`, as pid `pid` (its own group).
    fn proc_at(pid: i32, path: &str, signing_id: &str) -> Process {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        p.token = testing::token(pid, pid * 10);
        p.group_id = pid;
        p
    }

    fn exec(path: &str, signing_id: &str, args: &[&str]) -> Event {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        testing::exec_of(p, args)
    }

    fn with_tty(mut event: Event) -> Event {
        if let EventData::Exec(e) = &mut event.data {
            e.target.tty = Some(testing::file("/dev/ttys001"));
        }
        event
    }

    /// The exec'd image (or the acting process of other events), changed by `f`.
    fn target(mut event: Event, f: impl FnOnce(&mut Process)) -> Event {
        match &mut event.data {
            EventData::Exec(e) => f(&mut e.target),
            _ => f(&mut event.process),
        }
        event
    }

    fn with_parent(event: Event, parent: &Process) -> Event {
        target(event, |p| p.parent_token = Some(parent.token))
    }

    fn with_responsible(event: Event, responsible: &Process) -> Event {
        target(event, |p| p.responsible_token = Some(responsible.token))
    }

    fn exited(process: Process, code: u8) -> Event {
        let stat = i32::from(code) << 8;
        testing::event(
            "exit",
            process,
            EventData::Exit(ExitEvent {
                stat,
                exit_code: Some(code),
                signal: None,
            }),
        )
    }

    fn create_dir(by: Process, path: &str) -> Event {
        let mut event = testing::create(by, path);
        if let EventData::Create(c) = &mut event.data
            && let Destination::NewPath(n) = &mut c.destination
        {
            n.mode = Some(0o040755);
        }
        event
    }

    fn by(path: &str, signing_id: &str) -> Process {
        let mut p = testing::process(path);
        p.signing_id = Some(signing_id.into());
        p
    }

    fn zsh() -> Process {
        proc_at(600, "/bin/zsh", "com.apple.zsh")
    }

    fn launchd() -> Process {
        proc_at(1, "/sbin/launchd", "com.apple.xpc.launchd")
    }

    /// One analytic's case: an event that must fire it and a near miss that must not.
    struct Case {
        name: &'static str,
        hit: Event,
        miss: Event,
        /// Processes the host's process table knows (parents, responsible processes).
        table: Vec<Process>,
        /// Events the detector saw before each of `hit` and `miss` (execs whose arguments
        /// later events need).
        history: Vec<Event>,
        /// Extra analytics loaded with the corpus (stand-ins for Jamf-managed ones).
        extra: Vec<Analytic>,
    }

    fn case(name: &'static str, hit: Event, miss: Event) -> Case {
        Case {
            name,
            hit,
            miss,
            table: Vec::new(),
            history: Vec::new(),
            extra: Vec::new(),
        }
    }

    impl Case {
        fn table(mut self, processes: &[Process]) -> Self {
            self.table.extend_from_slice(processes);
            self
        }

        fn after(mut self, events: Vec<Event>) -> Self {
            self.history.extend(events);
            self
        }

        fn with_analytic(mut self, yaml: &str) -> Self {
            self.extra
                .push(ward_predicate::parse_analytic(yaml).unwrap());
            self
        }

        /// The rules a fresh detector raises on `event` after seeing the history.
        fn fired(&self, event: &Event) -> Vec<String> {
            testing::reset();
            for p in &self.table {
                testing::add_process(p.clone());
            }
            let mut all = analytics();
            all.extend(self.extra.iter().cloned());
            let mut detector = JamfAnalytics::with(all);
            for e in &self.history {
                detector.on_event(e).unwrap();
            }
            detector
                .on_event(event)
                .unwrap()
                .into_iter()
                .map(|f| f.rule)
                .collect()
        }
    }

    /// Analytics no ES event can fire, with why.
    const UNREACHABLE: &[(&str, &str)] = &[
        (
            "UsbInsertionNonWritable",
            "GPUSBEvent: ES has no device-attach event. A `mount` is the nearest, but its \
             MNT_REMOVABLE flag is also set for every virtual device (disk images: xnu's \
             vfs_init_io_attributes sets it when DKIOCISVIRTUAL), and MNT_RDONLY is how the \
             volume was mounted (NTFS, compressed DMGs), not whether the hardware is \
             writable: every read-only DMG would look like a write-protected USB stick",
        ),
        (
            "UnsignedKeyloggerRegistered",
            "GPKeylogRegisterEvent: ES has no event for registering a keyboard event tap or \
             HID listener",
        ),
        (
            "TerminalPersistency",
            "reads file.contentsAsDict (the Terminal preferences' CommandString): ES carries \
             no file contents and detectors may not read files",
        ),
        (
            "RootUserEnabledOrPasswordChanged",
            "compares file.contentsAsDict with file.snapshotData (root.plist before and \
             after): ES carries no file contents and detectors may not read files",
        ),
        (
            "UnsignedDmgDetected",
            "reads file.signingInfo and file.xattrs of the disk image: ES gives neither for a \
             file that is not executing, and detectors may not read files",
        ),
    ];

    #[test]
    fn the_bundled_corpus_loads_all_well_formed_analytics() {
        assert_eq!(BUNDLED.len(), 80);
        assert_eq!(JamfAnalytics::default().len(), 77);
    }

    /// Every loaded analytic: (analytic, event that must fire it, near miss that must not).
    #[test]
    fn analytics_fire_on_their_pattern_and_not_on_near_misses() {
        let cases = cases();
        for c in &cases {
            let hit = c.fired(&c.hit);
            assert!(
                hit.iter().any(|r| r == c.name),
                "{} did not fire: {hit:?}",
                c.name
            );
            let miss = c.fired(&c.miss);
            assert!(
                !miss.iter().any(|r| r == c.name),
                "{} fired on its near miss: {miss:?}",
                c.name
            );
        }
        testing::reset();

        // Every loaded analytic has a case or is named as unreachable, and nothing else.
        let mut covered: BTreeSet<&str> = BTreeSet::new();
        for c in &cases {
            assert!(covered.insert(c.name), "two cases for {}", c.name);
        }
        for (name, _why) in UNREACHABLE {
            assert!(covered.insert(name), "{name} has a case and is unreachable");
        }
        let loaded = analytics();
        let loaded: BTreeSet<&str> = loaded.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(covered, loaded);
        assert_eq!(cases.len() + UNREACHABLE.len(), 77);
    }

    fn cases() -> Vec<Case> {
        let xattr = "com.apple.xattr";
        let codesign = "com.apple.security.codesign";
        let security = "com.apple.security";
        let launchctl = "com.apple.xpc.launchctl";
        let osascript = "com.apple.osascript";
        let dscl = "com.apple.dscl";
        let ctkbind = "com.apple.ctkbind";
        let ctkbind_path = "/System/Library/Frameworks/CryptoTokenKit.framework/ctkbind.app/Contents/MacOS/ctkbind";
        let pivpin = "com.apple.pivpin";
        let sqlite3 = "com.apple.sqlite3";
        let vim = || testing::process("/usr/bin/vim");
        let node = proc_at(700, "/opt/homebrew/bin/node", "node");
        let installer = proc_at(
            710,
            "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer",
            "com.apple.installer",
        );
        let terminal = proc_at(
            711,
            "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal",
            "com.apple.Terminal",
        );
        let cupsd = proc_at(720, "/usr/sbin/cupsd", "com.apple.cupsd");
        let mut jamf_connect = proc_at(
            730,
            "/Applications/Jamf Connect.app/Contents/MacOS/Jamf Connect",
            "com.jamf.connect",
        );
        jamf_connect.team_id = Some("483DWKW443".into());
        jamf_connect.signer = SignerType::DeveloperId;
        let shells = [
            zsh(),
            launchd(),
            node.clone(),
            installer.clone(),
            terminal.clone(),
        ];
        let in_shell = |e: Event| with_parent(with_tty(e), &zsh());
        let launchctl_args = |verb: &'static str, plist: &'static str| {
            exec("/bin/launchctl", launchctl, &["launchctl", verb, plist])
        };
        let apache = "/System/Library/LaunchDaemons/org.apache.httpd.plist";
        let smbd = "/System/Library/LaunchDaemons/com.apple.smbd.plist";

        vec![
            case(
                "XattrExtendedAttributesActivity",
                exec(
                    "/usr/bin/xattr",
                    xattr,
                    &["xattr", "-d", "com.apple.quarantine", "/Users/a/Downloads/X.app"],
                ),
                exec(
                    "/usr/bin/xattr",
                    xattr,
                    &["xattr", "-p", "com.apple.quarantine", "/Users/a/Downloads/X.app"],
                ),
            ),
            case(
                "AdhocCodesigning",
                exec("/usr/bin/codesign", codesign, &["codesign", "--sign", "-", "/tmp/x"]),
                exec(
                    "/usr/bin/codesign",
                    codesign,
                    &["codesign", "--sign", "Developer ID", "/tmp/x"],
                ),
            ),
            case(
                "KeychainDumped",
                exec("/usr/bin/security", security, &["security", "dump-keychain"]),
                exec("/usr/bin/security", security, &["security", "list-keychains"]),
            ),
            case(
                "KeychainCopied",
                exec("/bin/cp", "com.apple.cp", &["cp", ".keychain-db", "/tmp/k"]),
                exec("/bin/cp", "com.apple.cp", &["cp", ".zshrc", "/tmp/zshrc.bak"]),
            ),
            case(
                "GatekeeperConfigChanges",
                exec("/usr/sbin/spctl", "com.apple.spctl", &["spctl", "--master-disable"]),
                exec("/usr/sbin/spctl", "com.apple.spctl", &["spctl", "--status"]),
            ),
            case(
                "LaunchctlUnloadAndBootout",
                exec(
                    "/bin/launchctl",
                    launchctl,
                    &["launchctl", "bootout", "system/com.jamf.protect.daemon"],
                ),
                exec("/bin/launchctl", launchctl, &["launchctl", "list"]),
            ),
            case(
                "BuiltinApacheDisabled",
                launchctl_args("unload", apache),
                launchctl_args("unload", "/Library/LaunchDaemons/org.apache.httpd.plist"),
            ),
            case(
                "BuiltinApacheEnabled",
                launchctl_args("load", apache),
                launchctl_args("load", "/Library/LaunchDaemons/org.apache.httpd.plist"),
            ),
            case(
                "FileSharingDisabled",
                launchctl_args("unload", smbd),
                launchctl_args("unload", "/Library/LaunchDaemons/com.apple.smbd.plist"),
            ),
            case(
                "FileSharingEnabled",
                launchctl_args("load", smbd),
                launchctl_args("load", "/Library/LaunchDaemons/com.apple.smbd.plist"),
            ),
            case(
                "HiddenAccountCreatedDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-create", "/Users/x", "IsHidden", "1"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-read", "/Users/x", "IsHidden"]),
            ),
            case(
                "UserCreatedbyDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-create", "/Users/bob"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-read", "/Users/bob"]),
            ),
            case(
                "UserDeletedbyDscl",
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-delete", "/Users/bob"]),
                exec("/usr/bin/dscl", dscl, &["dscl", ".", "-list", "/Users"]),
            ),
            case(
                "AllCurlActivity",
                exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]),
                exec("/usr/bin/wget", "wget", &["wget", "https://x"]),
            ),
            case(
                "UnsignedProcessExecFromVolumes",
                target(exec("/Volumes/Installer/Run", "Run", &["Run"]), |p| {
                    p.signer = SignerType::Unsigned;
                }),
                target(exec("/Volumes/Installer/Run", "Run", &["Run"]), |p| {
                    p.signer = SignerType::DeveloperId;
                }),
            ),
            case(
                "ProcessExecFromVolumes",
                exec(
                    "/Volumes/Installer/Install.app/Contents/MacOS/Install",
                    "com.example.install",
                    &["Install"],
                ),
                exec(
                    "/Applications/Install.app/Contents/MacOS/Install",
                    "com.example.install",
                    &["Install"],
                ),
            ),
            case(
                "SysctlActivity",
                with_tty(exec("/usr/sbin/sysctl", "com.apple.sysctl", &["sysctl", "-a"])),
                exec("/usr/sbin/sysctl", "com.apple.sysctl", &["sysctl", "-a"]),
            ),
            case(
                "AllCommandlineActivity",
                in_shell(exec("/bin/ls", "com.apple.ls", &["ls", "-la"])),
                with_parent(exec("/bin/ls", "com.apple.ls", &["ls", "-la"]), &zsh()),
            )
            .table(&shells),
            case(
                "AllSudoCommandlineActivity",
                with_tty(exec("/usr/bin/sudo", "com.apple.sudo", &["sudo", "-l"])),
                exec("/usr/bin/sudo", "com.apple.sudo", &["sudo", "-l"]),
            ),
            case(
                "UserSwitchedOnCommandline",
                with_tty(exec("/usr/bin/su", "com.apple.su", &["su", "-", "bob"])),
                exec("/usr/bin/su", "com.apple.su", &["su", "-", "bob"]),
            ),
            case(
                "CaffeinateOnInteractiveCommandline",
                in_shell(exec("/usr/bin/caffeinate", "com.apple.caffeinate", &["caffeinate", "-d"])),
                with_parent(
                    with_tty(exec("/usr/bin/caffeinate", "com.apple.caffeinate", &["caffeinate", "-d"])),
                    &launchd(),
                ),
            )
            .table(&shells),
            case(
                "BrewActivity",
                in_shell(exec(
                    "/bin/bash",
                    "com.apple.bash",
                    &["/bin/bash", "-p", "/opt/homebrew/bin/brew", "install", "wget"],
                )),
                in_shell(exec(
                    "/bin/bash",
                    "com.apple.bash",
                    &["/bin/bash", "-p", "/opt/homebrew/bin/brew", "--version"],
                )),
            )
            .table(&shells),
            case(
                "InstallerInitiatedNetworkConnection",
                with_responsible(
                    with_parent(exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]), &zsh()),
                    &installer,
                ),
                with_responsible(
                    with_parent(exec("/usr/bin/curl", "com.apple.curl", &["curl", "-O", "https://x"]), &zsh()),
                    &terminal,
                ),
            )
            .table(&shells),
            case(
                "JamfConnectAccPromoActivity",
                exec(
                    "/usr/local/bin/jamfconnect",
                    "com.jamf.connect.tool",
                    &["jamfconnect", "acc-promo", "--elevate"],
                ),
                with_responsible(
                    exec(
                        "/usr/local/bin/jamfconnect",
                        "com.jamf.connect.tool",
                        &["jamfconnect", "acc-promo", "--elevate"],
                    ),
                    &jamf_connect,
                ),
            )
            .table(&[jamf_connect.clone()]),
            case(
                "PrinterActivity",
                with_responsible(
                    exec("/usr/libexec/cups/backend/ipp", "com.apple.ipp", &["ipp", "1", "alice"]),
                    &cupsd,
                ),
                with_responsible(
                    exec("/usr/libexec/cups/backend/ipp", "com.apple.ipp", &["ipp", "1", "alice"]),
                    &terminal,
                ),
            )
            .table(&[cupsd.clone(), terminal.clone()]),
            case(
                "OpenClawInstallation",
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npm", "install", "-g", "openclaw@latest"],
                ),
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npm", "view", "openclaw"],
                ),
            ),
            case(
                "OpenClawOnboard",
                with_parent(
                    exec(
                        "/opt/homebrew/lib/node_modules/openclaw/bin/openclaw",
                        "openclaw",
                        &["openclaw", "onboard", "--install-daemon"],
                    ),
                    &node,
                ),
                with_parent(
                    exec(
                        "/opt/homebrew/lib/node_modules/openclaw/bin/openclaw",
                        "openclaw",
                        &["openclaw", "status"],
                    ),
                    &node,
                ),
            )
            .table(&shells),
            case(
                "OpenClawSkillsInstallClawhub",
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npx", "clawhub@latest", "install", "weather"],
                ),
                exec(
                    "/opt/homebrew/bin/node",
                    "node",
                    &["node", "/opt/homebrew/bin/npx", "clawhub@latest", "search", "weather"],
                ),
            ),
            case(
                "AppleScriptDialogActivity",
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "display dialog", "-e", "password"],
                ),
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "display dialog", "-e", "Backup finished"],
                ),
            ),
            case(
                "AppleScriptClipboardActivity",
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "return the clipboard"]),
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "return the date"]),
            ),
            case(
                "AppleScriptSystemInfoActivity",
                exec("/usr/bin/osascript", osascript, &["osascript", "-e", "system info"]),
                exec(
                    "/usr/bin/osascript",
                    osascript,
                    &["osascript", "-e", "system attribute \"HOME\""],
                ),
            ),
            case(
                "DnsServiceDiscovery",
                exec("/usr/bin/dns-sd", "com.apple.dns-sd", &["dns-sd", "-B", "_ssh._tcp"]),
                exec("/usr/bin/dns-sd", "com.apple.dns-sd", &["dns-sd", "-G", "v4", "nas.local"]),
            ),
            case(
                "ElectronAppCodeInjection",
                exec(
                    "/Applications/Slack.app/Contents/MacOS/Slack",
                    "com.tinyspeck.slackmacgap",
                    &["Slack", "--inspect="],
                ),
                exec(
                    "/Applications/Slack.app/Contents/MacOS/Slack",
                    "com.tinyspeck.slackmacgap",
                    &["Slack", "--enable-logging"],
                ),
            ),
            case(
                "FilevaultAuthRestart",
                exec("/usr/bin/fdesetup", "com.apple.fdesetup", &["fdesetup", "authrestart"]),
                exec("/usr/bin/fdesetup", "com.apple.fdesetup", &["fdesetup", "status"]),
            ),
            case(
                "MdfindSearchAwsKeys",
                exec(
                    "/usr/bin/mdfind",
                    "com.apple.mdfind",
                    &["mdfind", "kMDItemTextContent == '*AKIA*'"],
                ),
                exec(
                    "/usr/bin/mdfind",
                    "com.apple.mdfind",
                    &["mdfind", "kMDItemTextContent == '*invoice*'"],
                ),
            ),
            case(
                "MitmproxyActivity",
                exec("/opt/homebrew/bin/mitmproxy", "mitmproxy", &["mitmproxy", "-p", "8080"]),
                exec("/opt/homebrew/bin/mitmdump", "mitmdump", &["mitmdump", "-p", "8080"]),
            ),
            case(
                "NmapScanActivity",
                exec(
                    "/opt/homebrew/bin/nmap",
                    "nmap",
                    &["nmap", "-sS", "10.0.0.0/24", "-p", "22,80"],
                ),
                exec("/opt/homebrew/bin/nmap", "nmap", &["nmap", "-sS", "10.0.0.5", "-p", "22"]),
            ),
            case(
                "PacketFilterModification",
                exec("/sbin/pfctl", "com.apple.pfctl", &["pfctl", "-d"]),
                exec("/sbin/pfctl", "com.apple.pfctl", &["pfctl", "-s", "rules"]),
            ),
            case(
                "ScpFileCopiedRemoteDestination",
                exec("/usr/bin/scp", "com.apple.scp", &["scp", "f.txt", "bob@host:/tmp/"]),
                exec("/usr/bin/scp", "com.apple.scp", &["scp", "f.txt", "/Volumes/Backup/"]),
            ),
            case(
                "SfltoolActivity",
                exec("/usr/bin/sfltool", "com.apple.sfltool", &["sfltool", "dumpbtm"]),
                exec("/usr/bin/sfltool", "com.apple.sfltool", &["sfltool", "list"]),
            ),
            case(
                "SmartcardIdentityPaired",
                exec(ctkbind_path, ctkbind, &["ctkbind", "-p", "-h", "0A1B", "-u", "alice"]),
                exec(ctkbind_path, ctkbind, &["ctkbind", "-l"]),
            ),
            case(
                "SmartcardIdentityUnpaired",
                exec(ctkbind_path, ctkbind, &["ctkbind", "-r", "-u", "alice"]),
                exec(ctkbind_path, ctkbind, &["ctkbind", "-l"]),
            ),
            case(
                "SmartcardPinChanged",
                exec("/usr/bin/pivpin", pivpin, &["pivpin"]),
                exec("/usr/bin/pivpin", pivpin, &["pivpin", "-v"]),
            ),
            case(
                "SmartcardPinVerified",
                exec("/usr/bin/pivpin", pivpin, &["pivpin", "-v"]),
                exec("/usr/bin/pivpin", pivpin, &["pivpin"]),
            ),
            case(
                "SmbMountedFromCommandline",
                exec("/usr/bin/open", "com.apple.open", &["open", "smb://nas/share"]),
                exec("/usr/bin/open", "com.apple.open", &["open", "afp://nas/share"]),
            ),
            case(
                "Sqlite3Downloads",
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &[
                        "sqlite3",
                        "com.apple.LaunchServices.QuarantineEventsV",
                        ".schema",
                        "LSQuarantineEvent",
                    ],
                ),
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &["sqlite3", "com.apple.LaunchServices.QuarantineEventsV", ".tables"],
                ),
            ),
            case(
                "Sqlite3Fda",
                exec(
                    "/usr/bin/sqlite3",
                    sqlite3,
                    &["sqlite3", "tcc.db", "kTCCServiceSystemPolicyAllFiles"],
                ),
                exec("/usr/bin/sqlite3", sqlite3, &["sqlite3", "tcc.db", ".tables"]),
            ),
            case(
                "SwiftOnelineCommandExecution",
                exec("/usr/bin/swift", "com.apple.swift", &["swift", "-e", "print(1)"]),
                exec("/usr/bin/swift", "com.apple.swift", &["swift", "--version"]),
            ),
            case(
                "ApplicationFirewallConfigChanges",
                exec(
                    "/usr/libexec/ApplicationFirewall/socketfilterfw",
                    "com.apple.socketfilterfw",
                    &["socketfilterfw", "--setglobalstate", "off"],
                ),
                exec(
                    "/usr/libexec/ApplicationFirewall/socketfilterfw",
                    "com.apple.socketfilterfw",
                    &["socketfilterfw", "--getglobalstate"],
                ),
            ),
            case(
                "SystemsetupActivity",
                exec(
                    "/usr/sbin/systemsetup",
                    "com.apple.systemsetup",
                    &["systemsetup", "setremotelogin", "on"],
                ),
                exec(
                    "/usr/sbin/systemsetup",
                    "com.apple.systemsetup",
                    &["systemsetup", "-getremotelogin"],
                ),
            ),
            case(
                "TmutilActivity",
                exec(
                    "/usr/bin/tmutil",
                    "com.apple.timemachine.tmutil",
                    &["tmutil", "deletelocalsnapshots", "/"],
                ),
                exec(
                    "/usr/bin/tmutil",
                    "com.apple.timemachine.tmutil",
                    &["tmutil", "listlocalsnapshots", "/"],
                ),
            ),
            case(
                "SapPrivilegesElevation",
                target(
                    exec(
                        "/Applications/Privileges.app/Contents/MacOS/PrivilegesCLI",
                        "corp.sap.privileges",
                        &["PrivilegesCLI", "--add"],
                    ),
                    |p| p.team_id = Some("7R5ZEU67FQ".into()),
                ),
                target(
                    exec(
                        "/Applications/Privileges.app/Contents/MacOS/PrivilegesCLI",
                        "corp.sap.privileges",
                        &["PrivilegesCLI", "--add"],
                    ),
                    |p| p.team_id = Some("ABCDE12345".into()),
                ),
            ),
            // Arguments of earlier execs: the acting process of a file event, an exiting
            // process, a parent, a process-group leader.
            case(
                "FileDownloadCurlInsecure",
                testing::create(proc_at(800, "/usr/bin/curl", "com.apple.curl"), "/tmp/payload"),
                testing::create(proc_at(801, "/usr/bin/curl", "com.apple.curl"), "/tmp/payload"),
            )
            .after(vec![
                testing::exec_of(
                    proc_at(800, "/usr/bin/curl", "com.apple.curl"),
                    &["curl", "-k", "-o", "/tmp/payload", "https://x"],
                ),
                testing::exec_of(
                    proc_at(801, "/usr/bin/curl", "com.apple.curl"),
                    &["curl", "-o", "/tmp/payload", "https://x"],
                ),
            ]),
            case(
                "GenericFileCopiedRemoteDestination",
                exited(proc_at(810, "/usr/bin/scp", "com.apple.scp"), 0),
                exited(proc_at(810, "/usr/bin/scp", "com.apple.scp"), 1),
            )
            .after(vec![testing::exec_of(
                proc_at(810, "/usr/bin/scp", "com.apple.scp"),
                &["scp", "f.txt", "bob@host:/tmp/"],
            )]),
            {
                let policy = proc_at(820, "/bin/sh", "com.apple.sh");
                let own = proc_at(821, "/bin/sh", "com.apple.sh");
                let add = &["dseditgroup", "-o", "edit", "-a", "alice", "-t", "user", "admin"];
                case(
                    "UserPrivilegeEscalationByDseditgroupAndSelfService",
                    with_parent(exec("/usr/sbin/dseditgroup", "com.apple.dseditgroup", add), &policy),
                    with_parent(exec("/usr/sbin/dseditgroup", "com.apple.dseditgroup", add), &own),
                )
                .table(&[policy.clone(), own.clone()])
                .after(vec![
                    testing::exec_of(
                        policy.clone(),
                        &["sh", "/Library/Application Support/JAMF/tmp/MakeAdmin.sh"],
                    ),
                    testing::exec_of(own.clone(), &["sh", "/Users/alice/make_admin.sh"]),
                ])
            },
            {
                let ioreg = proc_at(830, "/usr/sbin/ioreg", "com.apple.ioreg");
                let log = proc_at(840, "/usr/bin/log", "com.apple.log");
                let grep = |leader: &Process| {
                    let mut p = proc_at(leader.token.pid + 1, "/usr/bin/grep", "com.apple.grep");
                    p.group_id = leader.token.pid;
                    testing::exec_of(p, &["grep", "CGSSession"])
                };
                case("LockscreenCheck", grep(&ioreg), grep(&log)).after(vec![
                    testing::exec_of(ioreg.clone(), &["ioreg", "-n", "Root", "-d1", "-a"]),
                    testing::exec_of(log.clone(), &["log", "show", "--last", "1h"]),
                ])
            },
            // File events.
            case(
                "ZshenvCreateModify",
                testing::create(vim(), "/Users/alice/.zshenv"),
                testing::create(vim(), "/Users/alice/.zshrc"),
            ),
            case(
                "HostFileModification",
                testing::close_modified(vim(), "/private/etc/hosts"),
                testing::close_modified(vim(), "/private/etc/hosts.bak"),
            ),
            case(
                "AppBundleTrashed",
                testing::rename(
                    by("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", "com.apple.finder"),
                    "/Applications/Evil.app",
                    "/Users/a/.Trash/Evil.app",
                ),
                testing::rename(
                    testing::process("/usr/bin/mv"),
                    "/Applications/Evil.app",
                    "/Users/a/.Trash/Evil.app",
                ),
            ),
            case(
                "AppBundleInstalled",
                create_dir(testing::process("/usr/bin/ditto"), "/Applications/Tool.app"),
                create_dir(testing::process("/usr/bin/ditto"), "/Users/alice/.Trash/Tool.app"),
            ),
            case(
                "AppBundleFirstOpen",
                create_dir(
                    testing::process("/usr/libexec/installd"),
                    "/Library/InstallerSandboxes/.PKInstallSandboxManager/1.activeSandbox/Root/Applications/Tool.app",
                ),
                create_dir(testing::process("/usr/libexec/installd"), "/Applications/Tool.app"),
            ),
            case(
                "WebappCreated",
                create_dir(
                    by("/System/Library/CoreServices/UIAgent", "com.apple.coreservices.uiagent"),
                    "/Users/alice/Applications/Mail Web.app",
                ),
                create_dir(
                    by("/System/Library/CoreServices/UIAgent", "com.apple.coreservices.uiagent"),
                    "/Users/alice/Applications/Mail Web",
                ),
            ),
            case(
                "OpenClawDirectoryCreated",
                create_dir(node.clone(), "/Users/alice/.openclaw"),
                create_dir(node.clone(), "/Users/alice/src/.openclaw"),
            ),
            // Jamf's managed persistence analytics (not public) tag launchd plists; a
            // stand-in that tags user LaunchAgents runs first.
            case(
                "OpenClawGatewayPersistence",
                testing::create(node.clone(), "/Users/alice/Library/LaunchAgents/ai.openclaw.gateway.plist"),
                testing::create(node.clone(), "/Users/alice/.openclaw/ai.openclaw.gateway.plist"),
            )
            .with_analytic(
                "name: LaunchAgentStandIn\ninputType: GPFSEvent\nlevel: -1\ntags:\n  - LaunchAgent\n\
                 filter: $event.isNewFile == 1 AND $event.path MATCHES \"/Users/[^/]+/Library/LaunchAgents/[^/]+\\\\.plist\"\n",
            ),
            case(
                "AirdropInbound",
                testing::rename(
                    by("/usr/libexec/sharingd", "com.apple.sharingd"),
                    "/private/var/folders/xy/abc/T/com.apple.sharingd/1/photo.jpg",
                    "/Users/alice/Downloads/photo.jpg",
                ),
                testing::rename(
                    by("/usr/libexec/sharingd", "com.apple.sharingd"),
                    "/private/var/folders/xy/abc/T/com.apple.sharingd/1/photo.jpg",
                    "/Users/alice/Library/Sharing/AirDrop/photo.jpg",
                ),
            ),
            case(
                "BleutoothFileExchangeInbound",
                testing::rename(
                    by("/System/Library/CoreServices/OBEXAgent.app/Contents/MacOS/OBEXAgent", "com.apple.OBEXAgent"),
                    "/private/var/folders/xy/abc/T/com.apple.OBEXAgent/TemporaryItems/NSIRD_OBEXAgent_1/f.pdf",
                    "/Users/alice/Downloads/f.pdf",
                ),
                testing::rename(
                    by("/System/Library/CoreServices/OBEXAgent.app/Contents/MacOS/OBEXAgent", "com.apple.OBEXAgent"),
                    "/private/var/folders/xy/abc/C/com.apple.OBEXAgent/f.pdf",
                    "/Users/alice/Downloads/f.pdf",
                ),
            ),
            case(
                "CrashReportCreation",
                testing::create(
                    by("/usr/libexec/ReportCrash", "com.apple.ReportCrash"),
                    "/Users/alice/Library/Logs/DiagnosticReports/Tool-2026-01-01-000000.ips",
                ),
                testing::create(
                    by("/usr/libexec/ReportCrash", "com.apple.ReportCrash"),
                    "/Users/alice/Desktop/Tool-2026-01-01-000000.ips",
                ),
            ),
            case(
                "KernelPanicOccured",
                testing::unlink(testing::process("/usr/libexec/osanalyticshelper"), "/private/var/db/PanicReporter/current.panic"),
                testing::unlink(testing::process("/usr/libexec/osanalyticshelper"), "/private/var/tmp/current.panic"),
            ),
            case(
                "LaunchDaemonDeleted",
                testing::unlink(testing::process("/bin/rm"), "/Library/LaunchDaemons/com.example.helper.plist"),
                testing::unlink(testing::process("/bin/rm"), "/Library/LaunchAgents/com.example.helper.plist"),
            ),
            case(
                "KnownVulnerableLog4jJarInstallation",
                testing::create(
                    testing::process("/usr/bin/unzip"),
                    "/opt/apache-log4j-2.14.1-bin/log4j-core-2.14.1.jar",
                ),
                testing::create(
                    testing::process("/usr/bin/unzip"),
                    "/opt/apache-log4j-2.17.1-bin/log4j-core-2.17.1.jar",
                ),
            ),
            case(
                "ThreatPreventionFileQuarantine",
                testing::create(
                    by("/Library/Application Support/JamfProtect/JamfProtect.app/Contents/MacOS/JamfProtect", "com.jamf.protect.daemon"),
                    "/Library/Application Support/JamfProtect/Quarantine/0f8e8d4c-1a2b-4c3d-9e8f-0123456789ab/payload",
                ),
                testing::create(
                    by("/Library/Application Support/JamfProtect/JamfProtect.app/Contents/MacOS/JamfProtect", "com.jamf.protect.daemon"),
                    "/Library/Application Support/JamfProtect/Quarantine/index.plist",
                ),
            ),
            // Fires on any write of the system Time Machine preferences: ward cannot read
            // the plist, and a missing LastKnownEncryptionState is not "Encrypted".
            case(
                "TimeMachineNotEncrypted",
                testing::close_modified(testing::process("/usr/libexec/cfprefsd"), "/Library/Preferences/com.apple.TimeMachine.plist"),
                testing::close_modified(
                    testing::process("/usr/libexec/cfprefsd"),
                    "/Users/alice/Library/Preferences/com.apple.TimeMachine.plist",
                ),
            ),
        ]
    }

    /// ES gives arguments only on exec; the Jamf process object has them on every event.
    #[test]
    fn arguments_and_group_leader_come_from_earlier_execs() {
        testing::reset();
        let mut images = Images::default();
        let shell = proc_at(600, "/bin/sh", "com.apple.sh");
        testing::add_process(shell.clone());
        images.record(&shell, &["sh".into(), "/tmp/run.sh".into()]);
        let mut scp = proc_at(610, "/usr/bin/scp", "com.apple.scp");
        scp.parent_token = Some(shell.token);
        scp.group_id = 600;
        let args = ["scp", "f", "bob@host:/tmp/"].map(String::from);
        images.record(&scp, &args);

        let (_, exit) = jamf_event(&exited(scp.clone(), 0), &images).unwrap();
        assert_eq!(exit["process"]["args"], json!(args));
        assert_eq!(exit["process"]["commandLine"], "scp f bob@host:/tmp/");
        assert_eq!(exit["process"]["exitCode"], 0);
        assert_eq!(exit["process"]["parent"]["commandLine"], "sh /tmp/run.sh");
        assert_eq!(exit["process"]["pgprocess"]["path"], "/bin/sh");

        let (_, write) =
            jamf_event(&testing::close_modified(scp.clone(), "/tmp/f"), &images).unwrap();
        assert_eq!(write["process"]["args"], json!(args));

        // A process leading its own group is its own `pgprocess`; an unseen leader is nil.
        let (_, own) = jamf_event(&testing::exec_of(shell.clone(), &["sh"]), &images).unwrap();
        assert_eq!(own["process"]["pgprocess"]["path"], "/bin/sh");
        scp.group_id = 999;
        let (_, unseen) = jamf_event(&exited(scp, 0), &images).unwrap();
        assert_eq!(unseen["process"]["pgprocess"], Value::Null);

        // Without the exec, arguments are unknown (empty), as before.
        let stranger = proc_at(620, "/usr/bin/scp", "com.apple.scp");
        let (_, exit) = jamf_event(&exited(stranger, 0), &Images::default()).unwrap();
        assert_eq!(exit["process"]["args"], json!([]));
        testing::reset();
    }

    #[test]
    fn the_detector_remembers_images_until_they_exit_or_exec_again() {
        let mut d = JamfAnalytics::with(Vec::new());
        let first = proc_at(700, "/bin/zsh", "com.apple.zsh");
        d.on_event(&testing::exec_of(first.clone(), &["zsh"]))
            .unwrap();
        assert_eq!(d.images.args(first.token), ["zsh"]);
        // exec_of replaces pidversion - 1: the zsh image is forgotten, the new one kept.
        let mut next = proc_at(700, "/usr/bin/env", "com.apple.env");
        next.token = testing::token(700, first.token.pidversion + 1);
        d.on_event(&testing::exec_of(next.clone(), &["env"]))
            .unwrap();
        assert!(d.images.args(first.token).is_empty());
        assert_eq!(d.images.args(next.token), ["env"]);
        d.on_event(&exited(next.clone(), 0)).unwrap();
        assert!(d.images.is_empty());

        let mut images = Images::default();
        for pid in 0..(MAX_IMAGES as i32 + 10) {
            images.record(&proc_at(pid + 1, "/bin/ls", "com.apple.ls"), &["ls".into()]);
        }
        assert_eq!(images.len(), MAX_IMAGES);
        assert!(
            images.args(testing::token(1, 10)).is_empty(),
            "the oldest go first"
        );
        assert!(images.order.len() <= 2 * MAX_IMAGES);
    }

    #[test]
    fn a_new_app_directory_is_an_app_bundle() {
        let bundle = |event: &Event| {
            jamf_event(event, &Images::default()).unwrap().1["file"]["isAppBundle"].clone()
        };
        let finder =
            || testing::process("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder");
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X.app")), true);
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X.APP")), true);
        assert_eq!(bundle(&create_dir(finder(), "/Applications/X")), false);
        assert_eq!(bundle(&testing::create(finder(), "/tmp/X.app")), false);
        // Other events do not say whether the path is a directory: unknown.
        assert_eq!(
            bundle(&testing::unlink(finder(), "/Applications/X.app")),
            Value::Null
        );
    }

    #[test]
    fn parent_and_responsible_come_from_the_process_table() {
        testing::reset();
        let mut shell = testing::process("/bin/zsh");
        shell.token = testing::token(600, 6000);
        testing::add_process(shell.clone());
        let mut caffeinate = testing::process("/usr/bin/caffeinate");
        caffeinate.signing_id = Some("com.apple.caffeinate".into());
        caffeinate.tty = Some(testing::file("/dev/ttys001"));
        caffeinate.parent_token = Some(shell.token);
        let ev = testing::exec_of(caffeinate.clone(), &["caffeinate", "-d"]);
        assert!(
            fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
        // Without the parent in the table, `parent.isShell` is nil and the analytic is quiet.
        testing::reset();
        assert!(
            !fired(&ev)
                .iter()
                .any(|r| r == "CaffeinateOnInteractiveCommandline")
        );
    }
}
