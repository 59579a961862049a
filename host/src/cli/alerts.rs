//! `ward alerts list|show`: the findings committed to the outbox of a state directory,
//! read with the agent running or not (the outbox is opened read-only; SQLite's WAL lets
//! a reader in beside the agent's writes).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::forward::format::field;
use crate::forward::outbox::{Outbox, Query, SEVERITIES, StoredRecord, severity_rank};

/// Parses `--since`: an RFC 3339 time, or a duration back from now (`30s`, `15m`, `2h`,
/// `7d`).
pub fn parse_since(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Some(ms) = crate::clock::parse_rfc3339_ms(text) {
        return Ok(ms);
    }
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|_| !digits.is_empty())
        .with_context(|| {
            format!("--since {text:?}: an RFC 3339 time or a duration like 15m, 2h, 7d")
        })?;
    let per: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("--since {text:?}: the unit is s, m, h or d"),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(per)))
}

/// Parses `--severity`: the least severity shown.
pub fn parse_severity(text: &str) -> anyhow::Result<u8> {
    if SEVERITIES.contains(&text) {
        Ok(severity_rank(text))
    } else {
        anyhow::bail!("--severity {text:?}: one of {}", SEVERITIES.join(", "))
    }
}

fn open(dir: &Path) -> anyhow::Result<Outbox> {
    Ok(Outbox::open_read_only(dir)?)
}

fn line(r: &StoredRecord) -> String {
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    let process = field(&body, "/process/path").as_str().unwrap_or("");
    let pid = field(&body, "/process/pid").as_i64().unwrap_or(0);
    format!(
        "{:>6} {} [{}] {} ({}) {} pid {pid} {process}: {}",
        r.seq,
        r.time,
        r.severity,
        r.rule,
        r.plugin,
        r.global_seq_num
            .map_or_else(|| "-".to_owned(), |n| format!("#{n}")),
        field(&body, "/message").as_str().unwrap_or(""),
    )
}

/// `ward alerts list`.
pub fn list(dir: &Path, query: &Query, json: bool) -> anyhow::Result<ExitCode> {
    let outbox = open(dir)?;
    let records = outbox.query(query)?;
    let mut out = std::io::stdout().lock();
    for r in &records {
        if json {
            writeln!(out, "{}", r.json_line())?;
        } else {
            writeln!(out, "{}", line(r))?;
        }
    }
    if !json {
        let stats = outbox.stats()?;
        let dropped: u64 = stats.dropped.values().sum();
        eprintln!(
            "ward alerts: {} shown; the outbox holds {} record(s), {} bytes{}",
            records.len(),
            stats.records,
            stats.bytes,
            if dropped > 0 {
                format!(
                    "; {dropped} undelivered dropped when it was full ({:?})",
                    stats.dropped
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ward alerts show ID`: one record by key or sequence number, whole.
pub fn show(dir: &Path, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let outbox = open(dir)?;
    let Some(r) = outbox.get(key)? else {
        eprintln!("ward alerts: no record {key:?} in {}", dir.display());
        return Ok(ExitCode::from(1));
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", r.json_line())?;
    } else {
        let v: serde_json::Value = serde_json::from_str(&r.json_line())?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_since("15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_since("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z", now).unwrap(), 1_000);
        for bad in ["", "m", "15", "15w", "-3h", "99999999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert!(parse_severity("high").is_ok());
        assert!(parse_severity("urgent").is_err());
    }
}
