//! The HTTP sink: records POSTed in batches to Splunk's HTTP Event Collector, an
//! Elasticsearch `_bulk` endpoint or a webhook, gzip-compressed, with a token read from a
//! private file. Any failure — a refused connection, a timeout, a non-2xx status, an
//! Elastic item that was not created — fails the whole delivery, which the sink retries
//! with backoff: every record carries its key (Elastic: as `_id`, with `create`, so a
//! retried batch stores nothing twice).

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;

use super::{Deliver, Rendered};
use crate::config::WardConfig;
use crate::config::sinks::{Format, HttpApi, HttpAuth, SinkConfig};

/// Most bytes of a receiver's answer read.
const MAX_ANSWER: u64 = 4 << 20;

/// An HTTP receiver.
pub struct HttpSink {
    agent: ureq::Agent,
    url: String,
    api: HttpApi,
    auth: Option<String>,
    compress: bool,
    index: Option<String>,
    hostname: String,
    sourcetype: &'static str,
}

impl HttpSink {
    /// A sink for `sink` (validated); the token file is read now, so a bad one stops the
    /// agent at start with the reason.
    pub fn new(sink: &SinkConfig, device: &str, config: &WardConfig) -> anyhow::Result<Self> {
        let url = sink.url.clone().unwrap_or_default();
        let mut builder = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(sink.timeout_secs))
            .redirects(0);
        if url.starts_with("https://") {
            builder = builder.tls_config(super::tls_config(sink, config)?);
        }
        let token = match &sink.token_file {
            Some(path) if sink.auth != HttpAuth::None => {
                let path = config.resolve(path);
                let text = crate::config::secret::read_private_file(&path)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("sinks[{}].token_file", sink.name))?;
                Some(text.trim().to_owned())
            }
            _ => None,
        };
        let auth = token.map(|t| match sink.auth {
            HttpAuth::Bearer | HttpAuth::None => format!("Bearer {t}"),
            HttpAuth::Splunk => format!("Splunk {t}"),
            HttpAuth::Apikey => format!("ApiKey {t}"),
            HttpAuth::Basic => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(t.as_bytes())
            ),
        });
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            agent: builder.build(),
            url,
            api: sink.api.unwrap_or(HttpApi::Webhook),
            auth,
            compress: sink.compress,
            index: sink.index.clone(),
            hostname: if hostname.is_empty() {
                device.to_owned()
            } else {
                hostname
            },
            sourcetype: match sink.format {
                Format::Ward => "ward:finding",
                Format::Ocsf => "ocsf:detection_finding",
                Format::Ecs => "ecs:alert",
            },
        })
    }

    /// The request body and its content type.
    fn body(&self, records: &[Rendered<'_>]) -> (Vec<u8>, &'static str) {
        let mut out = Vec::new();
        match self.api {
            HttpApi::SplunkHec => {
                for r in records {
                    let time = crate::clock::parse_rfc3339_ms(&r.record.time)
                        .map_or(0.0, |ms| ms as f64 / 1000.0);
                    let mut meta = serde_json::json!({
                        "time": time,
                        "host": self.hostname,
                        "source": "ward",
                        "sourcetype": self.sourcetype,
                        "fields": {"ward_id": r.record.id},
                    });
                    if let (Some(index), Some(m)) = (&self.index, meta.as_object_mut()) {
                        m.insert("index".into(), serde_json::json!(index));
                    }
                    // `{…meta…,"event":<the record>}` without parsing the record again.
                    let meta = meta.to_string();
                    out.extend_from_slice(meta.get(..meta.len() - 1).unwrap_or("{").as_bytes());
                    out.extend_from_slice(b",\"event\":");
                    out.extend_from_slice(r.line.as_bytes());
                    out.extend_from_slice(b"}\n");
                }
                (out, "application/json")
            }
            HttpApi::ElasticBulk => {
                let index = self.index.as_deref().unwrap_or("ward-findings");
                for r in records {
                    let action =
                        serde_json::json!({"create": {"_index": index, "_id": r.record.id}});
                    out.extend_from_slice(action.to_string().as_bytes());
                    out.push(b'\n');
                    out.extend_from_slice(r.line.as_bytes());
                    out.push(b'\n');
                }
                (out, "application/x-ndjson")
            }
            HttpApi::Webhook => {
                out.push(b'[');
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(r.line.as_bytes());
                }
                out.push(b']');
                (out, "application/json")
            }
        }
    }

    fn post(&self, records: &[Rendered<'_>]) -> Result<(), String> {
        let (body, content_type) = self.body(records);
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", content_type)
            .set("User-Agent", concat!("ward/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &self.auth {
            request = request.set("Authorization", auth);
        }
        let body = if self.compress {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).map_err(|e| e.to_string())?;
            request = request.set("Content-Encoding", "gzip");
            gz.finish().map_err(|e| e.to_string())?
        } else {
            body
        };
        let answer = match request.send_bytes(&body) {
            Ok(response) => read_answer(response),
            Err(ureq::Error::Status(code, response)) => {
                let text = read_answer(response);
                return Err(format!(
                    "{}: HTTP {code}: {}",
                    self.url,
                    text.chars().take(300).collect::<String>()
                ));
            }
            Err(ureq::Error::Transport(t)) => return Err(format!("{}: {t}", self.url)),
        };
        if self.api == HttpApi::ElasticBulk {
            elastic_items_ok(&answer).map_err(|why| format!("{}: {why}", self.url))?;
        }
        Ok(())
    }
}

fn read_answer(response: ureq::Response) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    let _ = response
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_string(&mut text);
    text
}

/// An Elastic `_bulk` answer: every item created, or already there (409: a retried
/// batch); anything else fails the delivery.
pub fn elastic_items_ok(answer: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| format!("not a _bulk answer: {e}"))?;
    if v.get("errors").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(());
    }
    let items = v
        .get("items")
        .and_then(serde_json::Value::as_array)
        .ok_or("a _bulk answer with errors and no items")?;
    for item in items {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .ok_or("a _bulk item without a result")?;
        let status = result
            .get("status")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if !(200..300).contains(&status) && status != 409 {
            let reason = result
                .pointer("/error/type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            return Err(format!("an item was refused: status {status} ({reason})"));
        }
    }
    Ok(())
}

impl Deliver for HttpSink {
    fn deliver(&mut self, records: &[Rendered<'_>]) -> Result<(), String> {
        self.post(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elastic_answers_pass_only_when_every_item_is_created_or_already_there() {
        assert!(elastic_items_ok(r#"{"errors":false,"items":[]}"#).is_ok());
        assert!(
            elastic_items_ok(
                r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}"#
            )
            .is_ok()
        );
        let refused = elastic_items_ok(
            r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}"#,
        );
        assert!(refused.unwrap_err().contains("429"));
        assert!(elastic_items_ok("<html>").is_err());
    }
}
