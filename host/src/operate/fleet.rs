//! The fleet over NATS JetStream: response commands published to one device, one smart
//! group or the whole fleet reach the agents that match, durably — an agent that was off
//! gets them when it comes back — and pass through the same controls as `ward ctl` (the
//! same code, the same audit log). The result of each is published back on
//! `ward.<device>.results`.
//!
//! A command is a signed envelope on the `WARD_CMD` stream:
//! `wardcmd.device.<device>`, `wardcmd.group.<group>` or `wardcmd.all`; the body is JSON
//! `{"id", "issued_ms", "expires_ms", "target", "request"}` and the headers carry the
//! publisher's Ed25519 key (`Ward-Key`) and its signature over the body
//! (`Ward-Signature`). An agent carries a command out only when the key is one of
//! `[fleet] trusted_keys`, the signature verifies, it has not expired, its `target` is
//! the subject it came on and names this Mac (or a smart group it is in now), the request
//! is one a fleet may make, and its id has not been carried out here before. NATS
//! credentials (`.creds`: JWT + nkey) authenticate the connection; the fleet key
//! authenticates the command, so a compromised NATS account cannot command Macs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::forward::sink::nats::subject_token;
use crate::operate::control::{Controller, Request};

/// The stream commands are published on.
pub const COMMAND_STREAM: &str = "WARD_CMD";
/// The first subject token of commands.
pub const COMMAND_PREFIX: &str = "wardcmd";
/// Longest a command may claim to live.
pub const MAX_LIFETIME_MS: i64 = 7 * 86_400_000;
/// Clock skew allowed between the publisher and the Mac.
const SKEW_MS: i64 = 300_000;

/// A command as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (carried out at most once per Mac).
    pub id: String,
    /// When it was issued (ms since the epoch).
    pub issued_ms: i64,
    /// After this it is refused.
    pub expires_ms: i64,
    /// `device:<id>`, `group:<name>` or `all`.
    pub target: String,
    /// What to do.
    pub request: Request,
}

/// The subject a target is published on.
pub fn subject_of(target: &str) -> Result<String, String> {
    if target == "all" {
        return Ok(format!("{COMMAND_PREFIX}.all"));
    }
    match target.split_once(':') {
        Some(("device", id)) if !id.is_empty() => {
            Ok(format!("{COMMAND_PREFIX}.device.{}", subject_token(id)))
        }
        Some(("group", name)) if !name.is_empty() => {
            Ok(format!("{COMMAND_PREFIX}.group.{}", subject_token(name)))
        }
        _ => Err(format!(
            "target {target:?}: device:<id>, group:<name> or all"
        )),
    }
}

/// Requests a fleet may make: the response controls and read-only views. Loading a
/// component by a path on the Mac is not one.
fn allowed(request: &Request) -> bool {
    matches!(
        request,
        Request::Status
            | Request::Plugins
            | Request::Stats
            | Request::Reload
            | Request::Mode { .. }
            | Request::Approve { .. }
            | Request::Deny { .. }
            | Request::Undo { .. }
    )
}

/// Why a command is not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not for this Mac (acknowledged silently).
    NotForMe,
    /// Refused, with the reason (recorded and answered).
    Refused(String),
}

/// What the agent checks a command against.
pub struct Checks<'a> {
    /// Trusted publisher keys.
    pub keys: &'a [ed25519_dalek::VerifyingKey],
    /// This Mac's id (as in subjects).
    pub device: &'a str,
    /// The smart groups it is in now.
    pub groups: &'a BTreeSet<String>,
    /// Now, ms.
    pub now_ms: i64,
}

/// Checks a command that came on `subject` with `body`, signed `signature` by `key` (hex).
pub fn check(
    checks: &Checks<'_>,
    subject: &str,
    body: &[u8],
    key: Option<&str>,
    signature: Option<&str>,
) -> Result<Envelope, Refusal> {
    let refuse = |why: String| Refusal::Refused(why);
    let key = key.ok_or_else(|| refuse("unsigned (no Ward-Key)".into()))?;
    let signature = signature.ok_or_else(|| refuse("unsigned (no Ward-Signature)".into()))?;
    let key = crate::registry::signature::parse_key(key).map_err(refuse)?;
    if !checks.keys.contains(&key) {
        return Err(refuse("signed by a key not in [fleet] trusted_keys".into()));
    }
    let raw: [u8; 64] = hex::decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refuse("the signature is not 64 bytes of hex".into()))?;
    key.verify_strict(body, &ed25519_dalek::Signature::from_bytes(&raw))
        .map_err(|_| refuse("the signature does not verify".into()))?;
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| refuse(format!("not a command: {e}")))?;
    if subject_of(&envelope.target).as_deref() != Ok(subject) {
        return Err(refuse(format!(
            "target {:?} does not match the subject {subject}",
            envelope.target
        )));
    }
    if envelope.expires_ms < checks.now_ms {
        return Err(refuse("expired".into()));
    }
    if envelope.issued_ms > checks.now_ms + SKEW_MS
        || envelope.expires_ms - envelope.issued_ms > MAX_LIFETIME_MS
    {
        return Err(refuse("issued in the future or valid for too long".into()));
    }
    let mine = match envelope.target.split_once(':') {
        None => envelope.target == "all",
        Some(("device", id)) => subject_token(id) == checks.device,
        Some(("group", name)) => checks.groups.contains(name),
        Some(_) => false,
    };
    if !mine {
        return Err(Refusal::NotForMe);
    }
    if !allowed(&envelope.request) {
        return Err(refuse("a request the fleet may not make".into()));
    }
    Ok(envelope)
}

/// Signs `envelope` with the secret key (hex): (body, public key hex, signature hex).
pub fn sign(envelope: &Envelope, secret_hex: &str) -> Result<(Vec<u8>, String, String), String> {
    let body = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
    let (signature, public) = crate::registry::signature::sign(secret_hex, &body)?;
    Ok((body, public, signature))
}

/// Writes one record (kind, record) to the agent's audit log.
pub type AuditFn = Box<dyn Fn(&str, serde_json::Value) + Send>;

/// What the fleet thread needs.
pub struct FleetOptions {
    /// `nats://host:port`.
    pub address: String,
    /// NATS credentials.
    pub credentials: Option<PathBuf>,
    /// Trusted command keys.
    pub keys: Vec<ed25519_dalek::VerifyingKey>,
    /// This Mac's id.
    pub device: String,
    /// Its smart groups now.
    pub groups: Box<dyn Fn() -> BTreeSet<String> + Send>,
    /// Records a command in the audit log.
    pub audit: AuditFn,
    /// Whether a command id is new here (and remembers it).
    pub first_time: Box<dyn Fn(&str) -> bool + Send>,
}

/// The running fleet connection.
pub struct Fleet {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Fleet {
    /// Connects in the background and carries out commands through `controller`;
    /// reconnects with backoff while the agent runs.
    pub fn start(options: FleetOptions, controller: Arc<dyn Controller>) -> anyhow::Result<Self> {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("ward-fleet".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build()
                else {
                    tracing::error!("fleet: no runtime");
                    return;
                };
                rt.block_on(async move {
                    let mut failures = 0u32;
                    loop {
                        tokio::select! {
                            result = serve(&options, &controller) => {
                                failures = failures.saturating_add(1);
                                let wait = crate::forward::sink::backoff(failures, crate::clock::now_ms().unsigned_abs());
                                if let Err(e) = result {
                                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "fleet: connection lost");
                                }
                                tokio::select! {
                                    () = tokio::time::sleep(wait) => {}
                                    _ = stopped.changed() => return,
                                }
                            }
                            _ = stopped.changed() => return,
                        }
                    }
                });
            })
            .context("starting the fleet thread")?;
        Ok(Self { stop, thread })
    }

    /// Disconnects.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// One connection's life: consumers made (durable, one per subject), commands carried out
/// in order until the connection fails.
async fn serve(options: &FleetOptions, controller: &Arc<dyn Controller>) -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{self, pull};
    let mut connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .name(format!("ward {} fleet", options.device));
    if let Some(path) = &options.credentials {
        connect = connect
            .credentials_file(path)
            .await
            .with_context(|| path.display().to_string())?;
    }
    let client = connect.connect(options.address.as_str()).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: COMMAND_STREAM.into(),
            subjects: vec![format!("{COMMAND_PREFIX}.>")],
            ..Default::default()
        })
        .await?;
    // Results go to ward.<device>.results, beside the findings.
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "WARD".into(),
        subjects: vec!["ward.>".into()],
        ..Default::default()
    })
    .await?;
    let device = subject_token(&options.device);
    let mut feeds = Vec::new();
    for (name, filter) in [
        ("direct", format!("{COMMAND_PREFIX}.device.{device}")),
        ("groups", format!("{COMMAND_PREFIX}.group.*")),
        ("all", format!("{COMMAND_PREFIX}.all")),
    ] {
        // Durable: what arrives while the agent is off waits for it. New: a Mac that
        // joins the fleet does not run its history.
        let durable = format!("ward_{device}_{name}");
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: filter,
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(60),
                    ..Default::default()
                },
            )
            .await?;
        feeds.push(consumer.messages().await?);
    }
    eprintln!("ward run: fleet: listening for commands to {device}");
    let mut merged = futures_util::stream::select_all(feeds);
    while let Some(message) = merged.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let checks = Checks {
            keys: &options.keys,
            device: &device,
            groups: &(options.groups)(),
            now_ms: crate::clock::now_ms(),
        };
        let subject = message.subject.as_str().to_owned();
        let outcome = check(
            &checks,
            &subject,
            &message.payload,
            header("Ward-Key").as_deref(),
            header("Ward-Signature").as_deref(),
        );
        let id = serde_json::from_slice::<serde_json::Value>(&message.payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let answer = match outcome {
            Err(Refusal::NotForMe) => None,
            Err(Refusal::Refused(why)) => {
                (options.audit)(
                    "fleet-command-refused",
                    serde_json::json!({"id": id, "subject": subject, "why": why}),
                );
                Some(serde_json::json!({"ok": false, "error": why}))
            }
            Ok(envelope) if !(options.first_time)(&envelope.id) => {
                Some(serde_json::json!({"ok": false, "error": "already carried out on this Mac"}))
            }
            Ok(envelope) => {
                let controller = Arc::clone(controller);
                let request = envelope.request.clone();
                // The controls may block (a reload compiles): off the runtime.
                let result = tokio::task::spawn_blocking(move || controller.handle(request))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                (options.audit)(
                    "fleet-command",
                    serde_json::json!({
                        "id": envelope.id,
                        "target": envelope.target,
                        "request": envelope.request,
                        "ok": result.is_ok(),
                        "result": result.as_ref().ok(),
                        "error": result.as_ref().err(),
                    }),
                );
                Some(match result {
                    Ok(v) => serde_json::json!({"ok": true, "result": v}),
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                })
            }
        };
        if let Some(mut answer) = answer {
            if let Some(a) = answer.as_object_mut() {
                a.insert("command".into(), serde_json::json!(id));
                a.insert("device".into(), serde_json::json!(options.device));
                a.insert("at".into(), serde_json::json!(crate::clock::now_rfc3339()));
            }
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes::Bytes::from(answer.to_string()))
                .message_id(format!("{id}.{device}"));
            match js
                .send_publish(format!("ward.{device}.results"), publish)
                .await
            {
                Ok(ack) => {
                    if let Err(e) = ack.await {
                        tracing::warn!(error = %e, "fleet: result not stored (no stream for ward.*.results?)");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "fleet: result not published"),
            }
        }
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging a command: {e}"))?;
    }
    anyhow::bail!("the command feed ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(target: &str, request: Request) -> Envelope {
        Envelope {
            id: "c1".into(),
            issued_ms: 1_000,
            expires_ms: 61_000,
            target: target.into(),
            request,
        }
    }

    #[test]
    fn only_signed_current_commands_for_this_mac_pass() {
        let (secret, public) = crate::registry::signature::generate().unwrap();
        let (other_secret, _) = crate::registry::signature::generate().unwrap();
        let keys = vec![crate::registry::signature::parse_key(&public).unwrap()];
        let groups: BTreeSet<String> = ["finance".to_owned()].into();
        let checks = Checks {
            keys: &keys,
            device: "MAC-A",
            groups: &groups,
            now_ms: 2_000,
        };
        let mode = Request::Mode {
            name: "x".into(),
            mode: crate::sandbox::plugin::Mode::Shadow,
        };
        let run = |e: &Envelope, secret: &str, subject: &str| {
            let (body, key, sig) = sign(e, secret).unwrap();
            check(&checks, subject, &body, Some(&key), Some(&sig))
        };
        let mine = envelope("device:MAC-A", mode.clone());
        assert!(run(&mine, &secret, "wardcmd.device.MAC-A").is_ok());
        assert!(
            run(
                &envelope("group:finance", mode.clone()),
                &secret,
                "wardcmd.group.finance"
            )
            .is_ok()
        );
        assert!(run(&envelope("all", mode.clone()), &secret, "wardcmd.all").is_ok());
        assert_eq!(
            run(
                &envelope("device:MAC-B", mode.clone()),
                &secret,
                "wardcmd.device.MAC-B"
            ),
            Err(Refusal::NotForMe)
        );
        assert_eq!(
            run(
                &envelope("group:hr", mode.clone()),
                &secret,
                "wardcmd.group.hr"
            ),
            Err(Refusal::NotForMe)
        );
        let refused = |r: Result<Envelope, Refusal>| matches!(r, Err(Refusal::Refused(_)));
        // Another key; a device command re-published to everyone; expired; a load.
        assert!(refused(run(&mine, &other_secret, "wardcmd.device.MAC-A")));
        assert!(refused(run(&mine, &secret, "wardcmd.all")));
        let old = Envelope {
            expires_ms: 1_500,
            ..mine.clone()
        };
        assert!(refused(run(&old, &secret, "wardcmd.device.MAC-A")));
        let forever = Envelope {
            expires_ms: MAX_LIFETIME_MS * 2,
            ..mine.clone()
        };
        assert!(refused(run(&forever, &secret, "wardcmd.device.MAC-A")));
        let load = envelope(
            "device:MAC-A",
            Request::Load {
                path: "/tmp/x.wasm".into(),
            },
        );
        assert!(refused(run(&load, &secret, "wardcmd.device.MAC-A")));
        // A body changed after signing.
        let (mut body, key, sig) = sign(&mine, &secret).unwrap();
        body[10] ^= 1;
        assert!(refused(check(
            &checks,
            "wardcmd.device.MAC-A",
            &body,
            Some(&key),
            Some(&sig)
        )));
        assert!(refused(check(
            &checks,
            "wardcmd.device.MAC-A",
            &body,
            None,
            None
        )));
        assert_eq!(subject_of("device:a.b").unwrap(), "wardcmd.device.a_b");
        assert!(subject_of("somewhere").is_err());
    }
}
