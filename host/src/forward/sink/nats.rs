//! The NATS JetStream sink: each record published to `<prefix>.<device>.<kind>s` (e.g.
//! `ward.C02XYZ.findings`) with its key as `Nats-Msg-Id`, so the stream itself drops a
//! record sent twice within its duplicate window; a delivery counts only once the server
//! has acknowledged every message of it. Credentials (JWT + nkey seed) come from a NATS
//! `.creds` file; the stream is created (subjects `<prefix>.>`) if it does not exist.

use std::time::Duration;

use anyhow::Context as _;

use super::{Deliver, Rendered};
use crate::config::WardConfig;
use crate::config::sinks::SinkConfig;

/// A JetStream stream fed by this agent.
pub struct NatsSink {
    runtime: tokio::runtime::Runtime,
    servers: String,
    credentials: Option<std::path::PathBuf>,
    stream: String,
    prefix: String,
    device: String,
    timeout: Duration,
    jetstream: Option<async_nats::jetstream::Context>,
}

/// A subject token from free text: `.`, `*`, `>` and whitespace would change the subject's
/// shape, so they become `_`; empty becomes `unknown`.
pub fn subject_token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(128)
        .collect();
    if token.is_empty() {
        "unknown".into()
    } else {
        token
    }
}

impl NatsSink {
    /// A sink for `sink` (validated); it connects on its first delivery.
    pub fn new(sink: &SinkConfig, device: &str, config: &WardConfig) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for the NATS sink")?;
        Ok(Self {
            runtime,
            servers: sink.address.clone().unwrap_or_default(),
            credentials: sink.credentials_file.as_deref().map(|p| config.resolve(p)),
            stream: sink.stream.clone().unwrap_or_else(|| "WARD".into()),
            prefix: sink.subject_prefix.clone().unwrap_or_else(|| "ward".into()),
            device: subject_token(device),
            timeout: Duration::from_secs(sink.timeout_secs),
            jetstream: None,
        })
    }

    async fn connect(&self) -> Result<async_nats::jetstream::Context, String> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .name(format!("ward {}", self.device));
        if let Some(path) = &self.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let client = options
            .connect(self.servers.as_str())
            .await
            .map_err(|e| format!("{}: {e}", self.servers))?;
        let jetstream = async_nats::jetstream::new(client);
        jetstream
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))?;
        Ok(jetstream)
    }

    async fn publish(
        jetstream: &async_nats::jetstream::Context,
        subject_of: impl Fn(&Rendered<'_>) -> String,
        records: &[Rendered<'_>],
    ) -> Result<(), String> {
        let mut acks = Vec::with_capacity(records.len());
        for r in records {
            let message = async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes::Bytes::from(r.line.clone()))
                .message_id(&r.record.id);
            let ack = jetstream
                .send_publish(subject_of(r), message)
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Deliver for NatsSink {
    fn deliver(&mut self, records: &[Rendered<'_>]) -> Result<(), String> {
        if self.jetstream.is_none() {
            let connected = self
                .runtime
                .block_on(async { tokio::time::timeout(self.timeout, self.connect()).await });
            self.jetstream = Some(connected.map_err(|_| format!("{}: timed out", self.servers))??);
        }
        let Some(jetstream) = &self.jetstream else {
            return Err("not connected".into());
        };
        let (prefix, device) = (&self.prefix, &self.device);
        let subject_of =
            |r: &Rendered<'_>| format!("{prefix}.{device}.{}s", subject_token(&r.record.kind));
        let budget = self.timeout.saturating_mul(2);
        let result = self.runtime.block_on(async {
            tokio::time::timeout(budget, Self::publish(jetstream, subject_of, records)).await
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.jetstream = None;
                Err(format!("{}: {e}", self.servers))
            }
            Err(_) => {
                self.jetstream = None;
                Err(format!(
                    "{}: no acknowledgement in {budget:?}",
                    self.servers
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_name_cannot_change_the_subjects_shape() {
        assert_eq!(subject_token("mac.local"), "mac_local");
        assert_eq!(subject_token("a*b>c d"), "a_b_c_d");
        assert_eq!(subject_token(""), "unknown");
        assert_eq!(subject_token(&"x".repeat(300)).len(), 128);
    }
}
