//! `ward actions`, `ward incidents` and `ward audit`: the state directory read directly
//! (with the agent running or not); approvals, denials and undos go to the running
//! agent over its control socket, or, when none answers, are carried out here through the
//! same executor, invariants and audit log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::WardConfig;
use crate::operate::control::{Request, ask};
use crate::respond::audit::Verdict;
use crate::respond::executor::{Executor, ExecutorOptions};
use crate::respond::groups::DeviceFacts;
use crate::respond::invariants::Protected;
use crate::respond::store::{ActionRecord, IncidentRecord, Store};

/// Where the state is: `--state`, else the config's; absolute, so that records name
/// their bundles and vault items wherever they are read from.
pub fn state_dir(state: Option<&Path>, config: &WardConfig) -> PathBuf {
    let dir = state.map_or_else(|| config.state_dir(), Path::to_path_buf);
    std::path::absolute(&dir).unwrap_or(dir)
}

fn open(dir: &Path) -> anyhow::Result<Store> {
    if !dir.join("ward.db").exists() {
        anyhow::bail!(
            "{} holds no ward state (no ward.db): nothing has been recorded there",
            dir.display()
        );
    }
    Ok(Store::open_read_only(dir)?)
}

fn row(a: &ActionRecord) -> String {
    format!(
        "{:>5}  {:<17} {:<18} {:<22} {:>8}  {}",
        a.id,
        a.status.as_str(),
        a.action,
        a.playbook.as_deref().unwrap_or("-"),
        a.incident.map_or_else(|| "-".into(), |i| i.to_string()),
        a.target
    )
}

/// `ward actions list`.
pub fn list(dir: &Path, json: bool, status: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let actions: Vec<ActionRecord> = store
        .actions()?
        .into_iter()
        .filter(|a| status.is_none_or(|s| a.status.as_str() == s))
        .collect();
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    if json {
        for a in &actions {
            writeln!(out, "{}", serde_json::to_string(a)?)?;
        }
    } else {
        writeln!(
            out,
            "{:>5}  {:<17} {:<18} {:<22} {:>8}  target",
            "id", "status", "action", "playbook", "incident"
        )?;
        for a in &actions {
            writeln!(out, "{}", row(a))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ward incidents`.
pub fn incidents(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let incidents: Vec<IncidentRecord> = store.incidents()?;
    let actions = store.actions()?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for i in &incidents {
        let mine: Vec<&ActionRecord> = actions
            .iter()
            .filter(|a| a.incident == Some(i.id))
            .collect();
        if json {
            let mut v = serde_json::to_value(i)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "actions".into(),
                    serde_json::json!(mine
                        .iter()
                        .map(|a| serde_json::json!({"id": a.id, "action": a.action, "status": a.status, "target": a.target}))
                        .collect::<Vec<_>>()),
                );
            }
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "incident {} [{}] {} finding(s), {} suppressed, {} → {}\n  root: {}\n  rules: {}\n  bundle: {}",
                i.id,
                i.severity,
                i.findings,
                i.suppressed,
                i.first_time,
                i.last_time,
                i.root,
                i.summary
                    .get("rules")
                    .and_then(|r| r.as_array())
                    .map(|r| r
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                i.bundle.as_deref().unwrap_or("-")
            )?;
            for a in mine {
                writeln!(out, "  {}", row(a))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ward audit verify`: exit 0 on an intact log, 1 naming the first broken record.
pub fn verify(dir: &Path) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    match store.verify_audit()? {
        Verdict::Intact { records, head } => {
            println!("audit log intact: {records} records, head sha256 {head}");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken { seq, reason } => {
            println!("audit log broken at record {seq}: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `ward audit list`.
pub fn audit_list(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for r in store.audit_records()? {
        if json {
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        } else {
            writeln!(out, "{:>6} {} {:<20} {}", r.seq, r.time, r.kind, r.record)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What to do to an action.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// Carry out a pending action.
    Approve,
    /// Deny a pending action.
    Deny,
    /// Revert a done action.
    Undo,
}

/// `ward actions approve|deny|undo <id>`: through the running agent, or here.
pub fn act(
    verb: Verb,
    id: i64,
    dir: &Path,
    config: &WardConfig,
    socket: Option<&Path>,
    config_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let socket = socket.map_or_else(
        || match &config.agent.control_socket {
            Some(s) => config.resolve(s),
            None => dir.join("ward.sock"),
        },
        Path::to_path_buf,
    );
    let request = match verb {
        Verb::Approve => Request::Approve { id },
        Verb::Deny => Request::Deny { id },
        Verb::Undo => Request::Undo { id },
    };
    // An agent listening answers; only when none listens (no socket, or nobody behind
    // it) is the action decided here — holding the state lock, so never beside an agent.
    let listening = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ),
    };
    let result = if listening {
        match ask(&socket, &request) {
            Ok(answer) if answer.ok => Ok(answer.result),
            Ok(answer) => Err(answer.error.unwrap_or_else(|| "refused".into())),
            Err(e) => Err(format!("{e:#}")),
        }
    } else {
        {
            let _lock = crate::respond::store::StateLock::take(dir)?;
            if !dir.join("ward.db").exists() {
                anyhow::bail!("{} holds no ward state (no ward.db)", dir.display());
            }
            let store = Store::open(dir)?;
            let own = crate::agent::response::own_files(dir, config_path);
            let prevent = config.builtin_options("prevent-list");
            let mut executor = Executor::new(
                store,
                ExecutorOptions {
                    execute: true,
                    config: config.response.clone(),
                    protected: Protected::new(&config.response.protect, own),
                    processes: std::sync::Arc::default(),
                    hash_cache: std::sync::Arc::default(),
                    facts: DeviceFacts::read(&config.device),
                    sha256_blocks: prevent.grants.iter().any(|g| g == "file-hash"),
                },
            )
            .context("opening the state store")?;
            let who = format!("ward actions (uid {})", rustix::process::geteuid().as_raw());
            let done = match verb {
                Verb::Approve => executor.approve(id, &who),
                Verb::Deny => executor.deny(id, &who),
                Verb::Undo => executor.undo(id, &who, false),
            };
            done.and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string()))
        }
    };
    match result {
        Ok(value) => {
            println!("{value}");
            let status = value.get("status").and_then(|s| s.as_str()).unwrap_or("");
            Ok(if matches!(status, "failed" | "refused") {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("ward actions: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
