//! `ward bench --suite respond`: what answering an incident costs. The intrusion example
//! runs through all default content and a playbook that gathers evidence with the three
//! first-party collectors (over a temp dir laid out like a Mac: launchd folders, BTM,
//! shell profiles, sudoers, cron, applications, install history, local accounts, a 2 MiB
//! payload), then notifies and tags — once as a burst (a replay), once paced as events
//! arrive on a live Mac. It reports the finding → first action latency (the action itself
//! excluded), the time of each collection (plugin call and bundle rewrite), and the
//! incident's evidence bundle: files, bytes, size on disk.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::WardConfig;

/// Lines handed over one at a time, `gap` apart (a live Mac's pace).
struct Paced {
    lines: VecDeque<Vec<u8>>,
    gap: Duration,
    current: Vec<u8>,
    at: usize,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.current.len() {
            let Some(next) = self.lines.pop_front() else {
                return Ok(0);
            };
            std::thread::sleep(self.gap);
            self.current = next;
            self.at = 0;
        }
        let rest = self.current.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}

fn write(root: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn plist(label: &str, program: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\"><dict><key>Label</key><string>{label}</string><key>ProgramArguments</key><array><string>{program}</string><string>--daemon</string></array><key>RunAtLoad</key><true/><key>KeepAlive</key><true/></dict></plist>\n"
    )
}

/// A temp dir laid out like a Mac a user has used for a while.
fn populate(root: &Path) -> anyhow::Result<()> {
    let noise = |n: usize, seed: u64| -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    for i in 0..25 {
        write(
            root,
            &format!("Users/bob/Library/LaunchAgents/com.vendor{i}.helper.plist"),
            plist(
                &format!("com.vendor{i}.helper"),
                "/Applications/Vendor.app/Contents/MacOS/helper",
            )
            .as_bytes(),
        )?;
    }
    write(
        root,
        "Users/bob/Library/LaunchAgents/com.apple.sysupdate.plist",
        plist("com.apple.sysupdate", "/Users/Shared/.u").as_bytes(),
    )?;
    for i in 0..15 {
        write(
            root,
            &format!("Library/LaunchAgents/com.corp{i}.agent.plist"),
            plist(&format!("com.corp{i}.agent"), "/usr/local/bin/agent").as_bytes(),
        )?;
    }
    for i in 0..30 {
        write(
            root,
            &format!("Library/LaunchDaemons/com.corp{i}.daemon.plist"),
            plist(&format!("com.corp{i}.daemon"), "/usr/local/bin/daemon").as_bytes(),
        )?;
    }
    write(
        root,
        "private/var/db/com.apple.backgroundtaskmanagement/BackgroundItems-v9.btm",
        &noise(200 << 10, 7),
    )?;
    write(root, "etc/sudoers", &noise(4 << 10, 8))?;
    for f in ["zz-maint", "corp", "admins"] {
        write(
            root,
            &format!("etc/sudoers.d/{f}"),
            b"%admin ALL=(ALL) ALL\n",
        )?;
    }
    for f in [
        "etc/zshrc",
        "etc/zprofile",
        "etc/profile",
        "etc/bashrc",
        "Users/bob/.zshrc",
        "Users/bob/.zprofile",
        "Users/bob/.bash_profile",
    ] {
        write(root, f, &noise(2 << 10, 9))?;
    }
    write(
        root,
        "Users/bob/.ssh/authorized_keys",
        b"ssh-ed25519 AAAAC3Nza attacker@evil\n",
    )?;
    write(
        root,
        "usr/lib/cron/tabs/bob",
        b"*/5 * * * * /Users/Shared/.u --beacon\n",
    )?;
    write(root, "etc/crontab", b"# empty\n")?;
    for i in 0..10 {
        write(
            root,
            &format!("etc/periodic/daily/{i:03}.task"),
            &noise(1 << 10, 10 + i),
        )?;
    }
    for i in 0..40 {
        std::fs::create_dir_all(root.join(format!("Applications/App{i}.app/Contents/MacOS")))?;
    }
    let mut history = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><array>\n",
    );
    for i in 0..200 {
        history.push_str(&format!(
            "<dict><key>date</key><date>2026-{:02}-{:02}T10:00:00Z</date><key>displayName</key><string>Package {i}</string><key>displayVersion</key><string>1.{i}</string><key>packageIdentifiers</key><array><string>com.vendor.pkg{i}</string></array><key>processName</key><string>installer</string></dict>\n",
            1 + i % 10,
            1 + i % 28
        ));
    }
    history.push_str("</array></plist>\n");
    write(
        root,
        "Library/Receipts/InstallHistory.plist",
        history.as_bytes(),
    )?;
    for user in [
        "_www",
        "_spotlight",
        "_mbsetupuser",
        "daemon",
        "nobody",
        "root",
        "bob",
        "support",
    ] {
        write(
            root,
            &format!("private/var/db/dslocal/nodes/Default/users/{user}.plist"),
            format!("<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>name</key><array><string>{user}</string></array><key>uid</key><array><string>501</string></array><key>home</key><array><string>/Users/{user}</string></array><key>shell</key><array><string>/bin/zsh</string></array></dict></plist>").as_bytes(),
        )?;
    }
    write(root, "Users/Shared/.u", &noise(2 << 20, 11))?;
    Ok(())
}

fn config_text(root: &Path) -> String {
    let root = root.display();
    format!(
        "[builtin.process-evidence]\ngrants = [\"file-read\"]\nfile_scope = [\"{root}\"]\nconfig = {{ root = \"{root}\" }}\n\
         [builtin.persistence-evidence]\ngrants = [\"file-read\"]\nfile_scope = [\"{root}\"]\nconfig = {{ root = \"{root}\" }}\n\
         [builtin.system-evidence]\ngrants = [\"file-read\"]\nfile_scope = [\"{root}\"]\nconfig = {{ root = \"{root}\" }}\n\
         [[playbooks]]\nname = \"investigate\"\nmatch = {{ severity = \"high\" }}\n\
         steps = [{{ collect = \"process-evidence\" }}, {{ collect = \"persistence-evidence\" }}, {{ collect = \"system-evidence\" }}, {{ notify = {{ title = \"ward\", body = \"{{rule}} on {{hostname}}\" }} }}, {{ tag = \"investigating\" }}]\n"
    )
}

/// One run over the intrusion stream; `gap` paces it.
fn one(dir: &Path, label: &str, gap: Option<Duration>) -> anyhow::Result<()> {
    let mac = dir.join("mac");
    let state = dir.join(format!("state-{label}"));
    let path = dir.join("ward.toml");
    std::fs::write(&path, config_text(&mac))?;
    let config = WardConfig::load(&path)?;
    let stream = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/streams/intrusion.jsonl"),
    )
    .or_else(|_| std::fs::read("examples/streams/intrusion.jsonl"))
    .context("reading examples/streams/intrusion.jsonl (run from the repository)")?;
    let mut startup = crate::agent::start(&config, &[])?;
    let response = crate::agent::response::start(
        &config,
        &mut startup,
        state.clone(),
        true,
        Some(&path),
        None,
        None,
    )?;
    let lines: VecDeque<Vec<u8>> = stream
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let events = lines.len();
    let reader: Box<dyn Read + Send> = match gap {
        Some(gap) => Box::new(Paced {
            lines,
            gap,
            current: Vec::new(),
            at: 0,
        }),
        None => Box::new(std::io::Cursor::new(stream)),
    };
    let source = crate::ingest::LineReader::new(reader, startup.pipeline.options().max_line_bytes);
    let started = Instant::now();
    let summary = crate::cli::tokio_runtime()?.block_on(crate::detect::run::run_with_response(
        startup.pipeline,
        Box::new(source),
        std::io::sink(),
        crate::detect::run::stage_channel(),
        crate::detect::run::LiveView::default(),
        Some(response.offer.clone()),
        None,
    ))?;
    let responded = response.finish();
    let wall = started.elapsed();
    let store = crate::respond::store::Store::open(&state)?;
    let incidents = store.incidents()?;
    let bundle = incidents
        .first()
        .and_then(|i| i.bundle.clone())
        .unwrap_or_default();
    let bundle_bytes = std::fs::metadata(&bundle).map(|m| m.len()).unwrap_or(0);
    let manifest = crate::respond::evidence::Evidence::open(&state)
        .ok()
        .and_then(|_| std::fs::read(state.join("evidence/incident-1/manifest.json")).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    println!(
        "  {label:<34} {events} events, {} findings, {} playbook runs, {} actions in {:.2} s\n    finding → first action: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n    one collection (plugin + bundle rewrite): p50 {:.1} ms, max {:.1} ms\n    evidence bundle: {} files, {} bytes of evidence, {} bytes on disk (tar.gz)",
        summary.findings,
        responded.runs,
        responded.actions,
        wall.as_secs_f64(),
        responded.first_action_us.0 / 1e3,
        responded.first_action_us.1 / 1e3,
        responded.first_action_us.2 / 1e3,
        responded.collect_ms.0,
        responded.collect_ms.1,
        manifest
            .get("files")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len),
        manifest.get("bytes").cloned().unwrap_or_default(),
        bundle_bytes,
    );
    Ok(())
}

/// Runs the suite.
pub fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    populate(&dir.path().join("mac"))?;
    println!(
        "ward bench respond: the intrusion example, all default content, a playbook of three collections, a notice and a tag on every high finding (no peer tool answers incidents on this machine, so there is no side-by-side row)"
    );
    one(dir.path(), "burst (as a replay delivers it)", None)?;
    one(
        dir.path(),
        "paced (an event every 20 ms, live)",
        Some(Duration::from_millis(20)),
    )?;
    Ok(())
}
