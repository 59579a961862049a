//! The control socket: `ward ctl` talks to a running agent over a Unix-domain socket,
//! one JSON request line, one JSON answer line.
//!
//! The socket is created owner-only (0600) in a directory of its own, and every
//! connection's peer must be the agent's own user or root (checked on the connection's
//! credentials, not trusted from the request).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::sandbox::plugin::Mode;

/// Longest request line read.
const MAX_REQUEST_BYTES: usize = 64 << 10;
/// How long a client has to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Uptime, source, counts.
    Status,
    /// The plugins running, with version, mode and digest.
    Plugins,
    /// Per-plugin accounting.
    Stats,
    /// Load (or swap in) the component at `path`.
    Load {
        /// The component.
        path: PathBuf,
    },
    /// Take a plugin out.
    Unload {
        /// Its name.
        name: String,
    },
    /// Re-read the config and apply it.
    Reload,
    /// Set a plugin's mode.
    Mode {
        /// Its name.
        name: String,
        /// The mode.
        mode: Mode,
    },
    /// Carry out an action waiting for approval.
    Approve {
        /// The action.
        id: i64,
    },
    /// Deny an action waiting for approval.
    Deny {
        /// The action.
        id: i64,
    },
    /// Revert a reversible action.
    Undo {
        /// The action.
        id: i64,
    },
}

/// An answer: `ok` with a result, or an error in one line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// True if the request was carried out.
    pub ok: bool,
    /// What it gave (a document for status, plugins and stats; a sentence otherwise).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub result: serde_json::Value,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Answer {
    fn from(result: Result<serde_json::Value, String>) -> Self {
        match result {
            Ok(result) => Self {
                ok: true,
                result,
                error: None,
            },
            Err(e) => Self {
                ok: false,
                result: serde_json::Value::Null,
                error: Some(e),
            },
        }
    }
}

/// What answers the requests: the running agent.
pub trait Controller: Send + Sync + 'static {
    /// Carries out `request` (may block: it may compile a component or wait for the
    /// detection stage to take a change).
    fn handle(&self, request: Request) -> Result<serde_json::Value, String>;
}

/// The agent's effective user id.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Binds the socket at `path`: its directory is created 0700 if missing, a stale socket
/// left by a previous run is replaced, and the socket itself is made 0600.
pub fn bind(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent()
        && std::fs::symlink_metadata(dir).is_err()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        // A socket someone answers on is another agent's, not a stale one.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another agent is running on {} (set [agent] control_socket or state_dir to run a second one)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} owner-only", path.display()))?;
    Ok(listener)
}

/// Serves `listener` until the task is dropped: each connection's peer is checked, its one
/// request carried out by `controller` on a blocking thread, and the answer written.
pub async fn serve(listener: tokio::net::UnixListener, controller: Arc<dyn Controller>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let controller = Arc::clone(&controller);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, controller).await {
                tracing::warn!(error = %format!("{e:#}"), "control connection failed");
            }
        });
    }
}

async fn connection(
    stream: tokio::net::UnixStream,
    controller: Arc<dyn Controller>,
) -> anyhow::Result<()> {
    let peer = stream
        .peer_cred()
        .context("reading the peer's credentials")?;
    let (read, mut write) = stream.into_split();
    let answer = if peer.uid() != euid() && peer.uid() != 0 {
        tracing::warn!(
            uid = peer.uid(),
            "control connection from another user refused"
        );
        Answer::from(Err(format!(
            "uid {} may not control this agent (uid {})",
            peer.uid(),
            euid()
        )))
    } else {
        let mut line = Vec::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64 + 1);
        let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        if read.is_err() {
            Answer::from(Err(format!(
                "no request line within {} s",
                REQUEST_TIMEOUT.as_secs()
            )))
        } else if line.len() > MAX_REQUEST_BYTES {
            Answer::from(Err(format!("request over {MAX_REQUEST_BYTES} bytes")))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => {
                    let result = tokio::task::spawn_blocking(move || controller.handle(request))
                        .await
                        .unwrap_or_else(|e| Err(format!("the request failed: {e}")));
                    Answer::from(result)
                }
                Err(e) => Answer::from(Err(format!("not a request: {e}"))),
            }
        }
    };
    let mut text = serde_json::to_string(&answer)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// Sends `request` to the agent at `socket` and returns its answer (`ward ctl`).
pub fn ask(socket: &Path, request: &Request) -> anyhow::Result<Answer> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the agent at {} (is `ward run` running with this control_socket?)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .take(16 << 20)
        .read_line(&mut reply)
        .context("reading the agent's answer")?;
    serde_json::from_str(&reply).context("the agent's answer is not JSON")
}
