//! The syslog sink: RFC 5424 messages over UDP, TCP with octet-counted framing (RFC 6587
//! §3.4.1) or TLS (RFC 5425). The message is the rendered record (one JSON object); the
//! structured data carries its key, rule and severity so a receiver can route and
//! de-duplicate without parsing JSON.

use std::net::{TcpStream, ToSocketAddrs as _, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use super::{Deliver, Rendered};
use crate::config::WardConfig;
use crate::config::sinks::{SinkConfig, SyslogProtocol, facility_code};

/// The SD-ID of ward's structured data (32473 is the private enterprise number RFC 5612
/// reserves for documentation and examples).
pub const SD_ID: &str = "ward@32473";
/// Longest UDP message; longer ones are cut (and counted in the log).
pub const MAX_UDP: usize = 8192;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A connection, when there is one.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// A syslog receiver.
pub struct SyslogSink {
    address: String,
    protocol: SyslogProtocol,
    facility: u8,
    hostname: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
}

/// A header field: printable US-ASCII without spaces, at most `max`, `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn param_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// RFC 5424 TIMESTAMP from an RFC 3339 time: at most six fractional digits.
fn timestamp(time: &str) -> String {
    let Some((head, rest)) = time.split_once('.') else {
        return header_field(time, 40);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let zone = &rest[digits.len()..];
    let frac: String = digits.chars().take(6).collect();
    header_field(&format!("{head}.{frac}{zone}"), 40)
}

/// The syslog severity for a finding's severity.
fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        "low" => 5,
        _ => 6,
    }
}

/// One RFC 5424 message for `r`.
pub fn message(r: &Rendered<'_>, facility: u8, hostname: &str) -> String {
    let rec = r.record;
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(rec.severity));
    format!(
        "<{pri}>1 {} {} ward {} {} [{SD_ID} id=\"{}\" rule=\"{}\" plugin=\"{}\" severity=\"{}\" seq=\"{}\"] {}",
        timestamp(&rec.time),
        header_field(hostname, 255),
        std::process::id(),
        header_field(&rec.kind, 32),
        param_value(&rec.id),
        param_value(&rec.rule),
        param_value(&rec.plugin),
        rec.severity,
        rec.seq,
        r.line,
    )
}

impl SyslogSink {
    /// A sink for `sink` (validated), naming this Mac `device` unless it has a host name.
    pub fn new(sink: &SinkConfig, device: &str, config: &WardConfig) -> anyhow::Result<Self> {
        let protocol = sink.protocol.unwrap_or(SyslogProtocol::Udp);
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            address: sink.address.clone().unwrap_or_default(),
            protocol,
            facility: facility_code(&sink.facility).unwrap_or(16),
            hostname: if hostname.is_empty() {
                device.to_owned()
            } else {
                hostname
            },
            tls: (protocol == SyslogProtocol::Tls)
                .then(|| super::tls_config(sink, config))
                .transpose()?,
            conn: None,
        })
    }

    fn connect(&self) -> Result<Conn, String> {
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.address))?;
        match self.protocol {
            SyslogProtocol::Udp => {
                let bind = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
                socket.connect(addr).map_err(|e| format!("{addr}: {e}"))?;
                Ok(Conn::Udp(socket))
            }
            SyslogProtocol::Tcp | SyslogProtocol::Tls => {
                let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
                    .map_err(|e| format!("{addr}: {e}"))?;
                stream
                    .set_write_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                stream
                    .set_read_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                match &self.tls {
                    None => Ok(Conn::Tcp(stream)),
                    Some(tls) => {
                        let host = self
                            .address
                            .rsplit_once(':')
                            .map_or(self.address.as_str(), |(h, _)| h)
                            .trim_matches(|c| c == '[' || c == ']')
                            .to_owned();
                        let name = rustls::pki_types::ServerName::try_from(host)
                            .map_err(|e| format!("{}: {e}", self.address))?;
                        let conn = rustls::ClientConnection::new(Arc::clone(tls), name)
                            .map_err(|e| e.to_string())?;
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        // The handshake now, so a bad certificate fails here.
                        while tls.conn.is_handshaking() {
                            tls.conn
                                .complete_io(&mut tls.sock)
                                .map_err(|e| format!("{addr}: TLS: {e}"))?;
                        }
                        Ok(Conn::Tls(Box::new(tls)))
                    }
                }
            }
        }
    }

    fn send(&mut self, records: &[Rendered<'_>]) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let Some(conn) = &mut self.conn else {
            return Err("not connected".into());
        };
        match conn {
            Conn::Udp(socket) => {
                let mut cut = 0;
                for r in records {
                    let msg = message(r, self.facility, &self.hostname);
                    let bytes = msg.as_bytes();
                    let bytes = if bytes.len() > MAX_UDP {
                        cut += 1;
                        bytes.get(..MAX_UDP).unwrap_or(bytes)
                    } else {
                        bytes
                    };
                    socket.send(bytes).map_err(|e| e.to_string())?;
                }
                if cut > 0 {
                    tracing::warn!(
                        cut,
                        max = MAX_UDP,
                        "syslog over UDP: messages cut to the datagram cap"
                    );
                }
                Ok(())
            }
            Conn::Tcp(stream) => write_framed(stream, records, self.facility, &self.hostname),
            Conn::Tls(stream) => {
                write_framed(stream.as_mut(), records, self.facility, &self.hostname)
            }
        }
    }
}

/// Octet-counted frames (`LEN SP MSG`), written at once.
fn write_framed(
    out: &mut impl std::io::Write,
    records: &[Rendered<'_>],
    facility: u8,
    hostname: &str,
) -> Result<(), String> {
    let mut buf = Vec::new();
    for r in records {
        let msg = message(r, facility, hostname);
        buf.extend_from_slice(format!("{} ", msg.len()).as_bytes());
        buf.extend_from_slice(msg.as_bytes());
    }
    out.write_all(&buf).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

impl Drop for SyslogSink {
    /// Ends a TLS session properly (close_notify), so the receiver logs no truncation.
    fn drop(&mut self) {
        if let Some(Conn::Tls(tls)) = &mut self.conn {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
    }
}

impl Deliver for SyslogSink {
    fn deliver(&mut self, records: &[Rendered<'_>]) -> Result<(), String> {
        let result = self.send(records);
        if result.is_err() {
            // Reconnect on the next try.
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::outbox::StoredRecord;

    #[test]
    fn a_message_is_rfc_5424_with_escaped_structured_data() {
        let record = StoredRecord {
            seq: 9,
            id: "abc".into(),
            kind: "finding".into(),
            severity: "high",
            rule: "evil\"]rule\\".into(),
            plugin: "p".into(),
            time: "2026-10-05T09:00:19.123456789Z".into(),
            global_seq_num: Some(1),
            body: "{}".into(),
        };
        let r = Rendered {
            record: &record,
            line: "{\"a\":1}".into(),
        };
        let msg = message(&r, 16, "mac one");
        // local0 (16) * 8 + err (3) = 131.
        assert!(
            msg.starts_with("<131>1 2026-10-05T09:00:19.123456Z macone ward "),
            "{msg}"
        );
        assert!(msg.contains(r#"rule="evil\"\]rule\\""#), "{msg}");
        assert!(msg.ends_with("] {\"a\":1}"), "{msg}");
        assert_eq!(timestamp("2026-10-05T09:00:19Z"), "2026-10-05T09:00:19Z");
        assert_eq!(
            timestamp("2026-10-05T09:00:19.1+02:00"),
            "2026-10-05T09:00:19.1+02:00"
        );
        assert_eq!(header_field("", 5), "-");
    }
}
