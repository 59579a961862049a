//! Example detector, written the way the SDK README teaches: AppleScript asking the user
//! for a password through `display dialog` — a classic macOS credential phish (MITRE ATT&CK
//! T1056.002 GUI Input Capture, via T1059.002 AppleScript).

use ward_sdk::prelude::*;

/// Words that make a dialog a credential prompt.
const BAIT: &[&str] = &["password", "passcode", "keychain", "credentials"];

/// The detector. `Default` builds it; one value lives per plugin instance.
#[derive(Default)]
pub struct OsascriptPrompt;

impl Detector for OsascriptPrompt {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "osascript-prompt",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "osascript shows a dialog asking for a password",
        )
        // Only execs, and only of osascript: the host filters before calling us.
        .subscribe(&["exec"])
        .prefilter(Prefilter::any().signing_ids(&["com.apple.osascript"]))
        .config_option(
            "extra_bait",
            "comma-separated extra words that mark a credential prompt",
        )
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let Some(exec) = event.as_exec() else {
            return Ok(Vec::new());
        };
        let script = exec.args.join(" ").to_lowercase();
        if !script.contains("display dialog") {
            return Ok(Vec::new());
        }
        let extra = ward_sdk::config("extra_bait")
            .unwrap_or_default()
            .to_lowercase();
        let bait = BAIT
            .iter()
            .copied()
            .chain(extra.split(',').map(str::trim).filter(|w| !w.is_empty()))
            .find(|word| script.contains(word));
        let Some(bait) = bait else {
            return Ok(Vec::new());
        };
        let hidden = script.contains("hidden answer");
        ward_sdk::log::info(&format!(
            "credential prompt from pid {}",
            exec.target.token.pid
        ));
        Ok(vec![
            Finding::new(
                "osascript-password-prompt",
                if hidden {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!("osascript displayed a dialog asking for a {bait}"),
            )
            .attack(&["T1056.002", "T1059.002"])
            .evidence("command_line", exec.args.join(" "))
            .evidence("bait", bait)
            .evidence("hidden_answer", hidden.to_string())
            .evidence("parent_path", event.process.path()),
        ])
    }
}

ward_sdk::export_detector!(OsascriptPrompt);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn osascript(script: &str) -> Event {
        testing::exec("/usr/bin/osascript", &["osascript", "-e", script])
    }

    #[test]
    fn fake_password_dialog_fires() {
        let ev = osascript(
            r#"display dialog "macOS needs your password" default answer "" with hidden answer"#,
        );
        let findings = OsascriptPrompt.on_event(&ev).unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::High);
        assert_eq!(findings[0].evidence_value("bait"), Some("password"));
    }

    #[test]
    fn ordinary_dialog_is_quiet() {
        assert!(
            OsascriptPrompt
                .on_event(&osascript(r#"display dialog "Backup finished""#))
                .unwrap()
                .is_empty()
        );
        assert!(
            OsascriptPrompt
                .on_event(&osascript("get volume settings"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn config_adds_bait_words() {
        testing::reset();
        let ev = osascript(r#"display dialog "Enter your PIN""#);
        assert!(OsascriptPrompt.on_event(&ev).unwrap().is_empty());
        testing::set_config("extra_bait", "pin, token");
        assert_eq!(OsascriptPrompt.on_event(&ev).unwrap().len(), 1);
        testing::reset();
    }
}
