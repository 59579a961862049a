//! Detector: a thread created in another process (`remote_thread_create`), the classic way
//! to run code inside a trusted process (MITRE ATT&CK T1055 Process Injection).
//!
//! Apple's debuggers (`debugserver`, `lldb`) do this for a living: from them it is a
//! low-severity note, so a debugging session on a server still leaves a trace. Injection into
//! an Apple platform process by anything else is critical; otherwise high.

use ward_sdk::RemoteThreadCreateEvent;
use ward_sdk::prelude::*;

const RULE: &str = "remote-thread-created";

/// Apple's debugger signing ids.
const DEBUGGERS: &[&str] = &[
    "com.apple.debugserver",
    "com.apple.lldb",
    "com.apple.dt.lldb",
];

/// The detector; stateless.
#[derive(Default)]
pub struct ProcessInjection;

fn is_apple_debugger(p: &Process) -> bool {
    p.is_platform_binary && DEBUGGERS.contains(&p.signing_id_or_empty())
}

fn severity(source: &Process, target: &Process) -> Severity {
    if is_apple_debugger(source) {
        Severity::Low
    } else if target.is_platform_binary {
        Severity::Critical
    } else {
        Severity::High
    }
}

fn finding(event: &Event, rtc: &RemoteThreadCreateEvent) -> Finding {
    let source = &event.process;
    let target = &rtc.target;
    Finding::new(
        RULE,
        severity(source, target),
        format!(
            "{} created a thread in {} (pid {})",
            source.path(),
            target.path(),
            target.token.pid
        ),
    )
    .attack(&["T1055"])
    .evidence("source_path", source.path())
    .evidence("source_signing_id", source.signing_id_or_empty())
    .evidence("source_signer", source.signer.as_str())
    .evidence("target_path", target.path())
    .evidence("target_signing_id", target.signing_id_or_empty())
    .evidence(
        "target_pid",
        format!("{}/{}", target.token.pid, target.token.pidversion),
    )
    .evidence(
        "thread_state_flavor",
        rtc.thread_state_flavor
            .map_or_else(|| "none".to_owned(), |f| f.to_string()),
    )
}

impl Detector for ProcessInjection {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "process-injection",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "a thread created in another process (remote_thread_create)",
        )
        .subscribe(&["remote_thread_create"])
    }

    /// Only what it reads: tokens and signing data only.
    fn parts() -> EventParts {
        EventParts::empty()
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        match &event.data {
            EventData::RemoteThreadCreate(rtc) => Ok(vec![finding(event, rtc)]),
            _ => Ok(Vec::new()),
        }
    }
}

ward_sdk::export_detector!(ProcessInjection);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn inject(source: Process, target: Process) -> Vec<Finding> {
        let event = testing::event(
            "remote_thread_create",
            source,
            EventData::RemoteThreadCreate(RemoteThreadCreateEvent {
                target,
                thread_state_flavor: Some(6),
            }),
        );
        ProcessInjection.on_event(&event).unwrap()
    }

    fn third_party(path: &str) -> Process {
        let mut p = testing::process(path);
        p.is_platform_binary = false;
        p.signing_id = Some("com.example.tool".into());
        p.team_id = Some("ABCDE12345".into());
        p.signer = SignerType::DeveloperId;
        p
    }

    #[test]
    fn injection_into_an_apple_process_is_critical() {
        let f = inject(
            third_party("/usr/local/bin/injector"),
            testing::process("/bin/sleep"),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RULE);
        assert_eq!(f[0].attack, vec!["T1055"]);
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].evidence_value("target_path"), Some("/bin/sleep"));
        assert_eq!(f[0].evidence_value("thread_state_flavor"), Some("6"));
        assert_eq!(f[0].evidence_value("source_signer"), Some("developer-id"));
    }

    #[test]
    fn injection_into_a_third_party_process_is_high() {
        let f = inject(
            third_party("/usr/local/bin/injector"),
            third_party("/Applications/Slack.app/Contents/MacOS/Slack"),
        );
        assert_eq!(f[0].severity, Severity::High);
    }

    #[test]
    fn apple_debugger_is_low_but_a_lookalike_is_not() {
        let mut debugserver = testing::process(
            "/Library/Developer/CommandLineTools/Library/PrivateFrameworks/LLDB.framework/Resources/debugserver",
        );
        debugserver.signing_id = Some("com.apple.debugserver".into());
        let target = third_party("/Users/alice/src/app/target/debug/app");
        assert_eq!(
            inject(debugserver.clone(), target.clone())[0].severity,
            Severity::Low
        );
        // Same signing id, but not Apple-signed: a fake debugger.
        let mut fake = debugserver;
        fake.is_platform_binary = false;
        fake.signer = SignerType::Adhoc;
        assert_eq!(inject(fake, target)[0].severity, Severity::High);
    }

    #[test]
    fn other_events_are_quiet() {
        let event = testing::exec("/bin/ls", &["ls"]);
        assert!(ProcessInjection.on_event(&event).unwrap().is_empty());
    }
}
