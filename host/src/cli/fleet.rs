//! `ward fleet send`: a signed response command to one device, one smart group or the
//! whole fleet over NATS JetStream, and (with `--wait N`) the first N results, each with
//! the time from publishing to its arrival.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;

use crate::operate::control::Request;
use crate::operate::fleet::{COMMAND_PREFIX, COMMAND_STREAM, Envelope, sign, subject_of};

/// What `ward fleet send` was given.
pub struct Send<'a> {
    /// `nats://host:port`.
    pub address: &'a str,
    /// NATS credentials.
    pub credentials: Option<&'a Path>,
    /// The fleet's secret key file (`ward plugin keygen`).
    pub key: &'a Path,
    /// `device:<id>`, `group:<name>` or `all`.
    pub to: &'a str,
    /// The request, as `ward ctl` would send it (`{"cmd":"mode",…}`).
    pub request: &'a str,
    /// Seconds the command stays valid.
    pub expires: u64,
    /// Results to wait for.
    pub wait: usize,
    /// Longest wait for them.
    pub timeout: Duration,
}

/// A command id: 16 random bytes in hex.
fn new_id() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(hex::encode(raw))
}

/// Publishes the command; prints its id, then the results as they come.
pub fn send(args: &Send<'_>) -> anyhow::Result<ExitCode> {
    let request: Request = serde_json::from_str(args.request).with_context(|| {
        format!(
            "the request {:?} (e.g. {{\"cmd\":\"mode\",\"name\":\"x\",\"mode\":\"shadow\"}})",
            args.request
        )
    })?;
    let subject = subject_of(args.to).map_err(anyhow::Error::msg)?;
    let secret = crate::config::secret::read_private_file(args.key).map_err(anyhow::Error::msg)?;
    let now = crate::clock::now_ms();
    let envelope = Envelope {
        id: new_id()?,
        issued_ms: now,
        expires_ms: now
            .saturating_add(i64::try_from(args.expires.saturating_mul(1000)).unwrap_or(i64::MAX)),
        target: args.to.to_owned(),
        request,
    };
    let (body, public, signature) = sign(&envelope, &secret).map_err(anyhow::Error::msg)?;
    let rt = crate::cli::tokio_runtime()?;
    rt.block_on(async {
        let mut connect =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(10));
        if let Some(path) = args.credentials {
            connect = connect
                .credentials_file(path)
                .await
                .with_context(|| path.display().to_string())?;
        }
        let client = connect
            .connect(args.address)
            .await
            .with_context(|| args.address.to_owned())?;
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: COMMAND_STREAM.into(),
            subjects: vec![format!("{COMMAND_PREFIX}.>")],
            ..Default::default()
        })
        .await?;
        let results_stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "WARD".into(),
                subjects: vec!["ward.>".into()],
                ..Default::default()
            })
            .await?;
        // Results from now on: an ordered consumer of ward.*.results started before the
        // command goes out.
        let results = results_stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: "ward.*.results".into(),
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = results.messages().await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Ward-Key", public.as_str());
        headers.insert("Ward-Signature", signature.as_str());
        let sent = Instant::now();
        js.send_publish(
            subject.clone(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(body.into())
                .headers(headers)
                .message_id(&envelope.id),
        )
        .await?
        .await?;
        println!(
            "{}",
            serde_json::json!({"command": envelope.id, "subject": subject})
        );
        let mut got = 0;
        let deadline = sent + args.timeout;
        while got < args.wait {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(message)) = tokio::time::timeout(left, messages.next()).await else {
                break;
            };
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut v: serde_json::Value =
                serde_json::from_slice(&message.payload).unwrap_or_default();
            if v.get("command").and_then(|c| c.as_str()) != Some(envelope.id.as_str()) {
                continue;
            }
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "after_ms".into(),
                    serde_json::json!(sent.elapsed().as_secs_f64() * 1e3),
                );
            }
            println!("{v}");
            let _ = std::io::stdout().flush();
            got += 1;
        }
        if got < args.wait {
            eprintln!(
                "ward fleet: {got} of {} result(s) within {:?}",
                args.wait, args.timeout
            );
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}
