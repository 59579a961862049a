//! `ward plugin new`: a plugin crate a customer can build right away.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Writes `<dir>/<name>/{Cargo.toml, src/lib.rs, events.jsonl}` for a plugin of `kind`.
pub fn new_plugin(
    name: &str,
    kind: &str,
    dir: &Path,
    sdk_path: Option<&Path>,
) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("plugin name `{name}` must be kebab-case: lowercase letters, digits and `-`");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    let sdk = match sdk_path {
        Some(p) => format!("ward-sdk = {{ path = {:?} }}", p.display().to_string()),
        None => {
            "ward-sdk = { path = \"../ward/sdk\" } # point this at your ward checkout".to_owned()
        }
    };
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\n{sdk}\n\n[workspace]\n"
    );
    let ty = to_camel(name);
    let body = match kind {
        "detector" => format!(
            r#"//! {name}: a ward detector.

use ward_sdk::prelude::*;

/// The detector. One value lives per plugin instance.
#[derive(Default)]
pub struct {ty};

impl Detector for {ty} {{
    fn describe() -> PluginInfo {{
        PluginInfo::new("{name}", env!("CARGO_PKG_VERSION"), PluginKind::Detector, "describe what it detects")
            .subscribe(&["exec"])
    }}

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {{
        let Some(exec) = event.as_exec() else {{ return Ok(Vec::new()) }};
        if exec.target.name() != "curl" {{
            return Ok(Vec::new());
        }}
        Ok(vec![Finding::new("{name}", Severity::Low, format!("curl ran: {{}}", exec.args.join(" ")))
            .attack(&["T1105"])
            .evidence("path", exec.target.path())])
    }}
}}

ward_sdk::export_detector!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use ward_sdk::testing;

    #[test]
    fn fires_on_curl_and_not_on_ls() {{
        let mut d = {ty};
        assert_eq!(d.on_event(&testing::exec("/usr/bin/curl", &["curl", "-O", "x"])).unwrap().len(), 1);
        assert!(d.on_event(&testing::exec("/bin/ls", &["ls"])).unwrap().is_empty());
    }}
}}
"#
        ),
        "collector" => format!(
            r#"//! {name}: a ward collector.

use ward_sdk::prelude::*;

/// The collector.
#[derive(Default)]
pub struct {ty};

impl Collector for {ty} {{
    fn describe() -> PluginInfo {{
        PluginInfo::new("{name}", env!("CARGO_PKG_VERSION"), PluginKind::Collector, "describe what it collects")
            .capability("file-read")
    }}

    fn collect(&mut self, trigger: &Trigger) -> Result<Vec<Artifact>, PluginError> {{
        let path = trigger.event.primary_path().to_owned();
        let hash = files::sha256(&path).map_err(|e| PluginError::new(format!("{{e:?}}")))?;
        Ok(vec![Artifact {{
            name: "sha256".into(),
            content_type: "text/plain".into(),
            content: hash.unwrap_or_default().into_bytes(),
        }}])
    }}
}}

ward_sdk::export_collector!({ty});
"#
        ),
        _ => format!(
            r#"//! {name}: a ward remediator.

use ward_sdk::prelude::*;

/// The remediator.
#[derive(Default)]
pub struct {ty};

impl Remediator for {ty} {{
    fn describe() -> PluginInfo {{
        PluginInfo::new("{name}", env!("CARGO_PKG_VERSION"), PluginKind::Remediator, "describe the response")
    }}

    fn plan(&mut self, trigger: &Trigger) -> Result<Vec<PlannedAction>, PluginError> {{
        let p = trigger.event.actor();
        Ok(vec![PlannedAction {{
            action: Action::KillProcess(ward_sdk::KillProcess {{ pid: p.token.pid, pidversion: p.token.pidversion, signal: 9 }}),
            reason: format!("{{}} raised {{}}", trigger.detector, trigger.finding.rule),
        }}])
    }}
}}

ward_sdk::export_remediator!({ty});
"#
        ),
    };
    std::fs::write(root.join("Cargo.toml"), manifest)?;
    std::fs::write(root.join("src/lib.rs"), body)?;
    println!("created {} ({kind})", root.display());
    println!(
        "build:  cargo build --release --target wasm32-wasip2 --manifest-path {}/Cargo.toml",
        root.display()
    );
    println!(
        "test:   ward plugin test {}/target/wasm32-wasip2/release/{}.wasm --events <eslogger.jsonl>",
        root.display(),
        name.replace('-', "_")
    );
    Ok(())
}

fn to_camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
