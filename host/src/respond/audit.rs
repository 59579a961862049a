//! The audit log: an append-only, SHA-256 hash-chained table in the state store. Every
//! playbook decision, action, outcome, approval, undo, lease release and plugin change is
//! one record, appended in the same transaction as the change it records, so the log and
//! the state never disagree.
//!
//! Record `n` carries the hash of record `n - 1` (`prev`) and its own hash over
//! `prev`, `n`, its time, kind and JSON body; the last record's `(seq, hash)` is kept
//! apart as the head. [`verify`] walks the chain and names the first record that was
//! edited, removed or moved, or a tail cut off after the head. Triggers refuse `UPDATE`
//! and `DELETE` on the table; anyone who drops them to tamper leaves a broken chain.

use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema of the audit tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// The hash of one record.
pub fn hash(prev: &str, seq: i64, time: &str, kind: &str, record: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), time, kind, record] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Appends one record (call inside the transaction of the change it records). Returns its
/// sequence number.
pub fn append(conn: &Connection, kind: &str, record: &serde_json::Value) -> rusqlite::Result<i64> {
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (last, prev) = head.unwrap_or((0, GENESIS.to_owned()));
    let seq = last + 1;
    let time = crate::clock::now_rfc3339();
    let body = record.to_string();
    let digest = hash(&prev, seq, &time, kind, &body);
    conn.execute(
        "INSERT INTO audit (seq, time, kind, record, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![seq, time, kind, body, prev, digest],
    )?;
    conn.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq, digest],
    )?;
    Ok(seq)
}

/// One audit record as `ward audit list --json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it was written.
    pub time: String,
    /// What it records.
    pub kind: String,
    /// The record.
    pub record: serde_json::Value,
    /// The previous record's hash.
    pub prev: String,
    /// Its own hash.
    pub hash: String,
}

/// Every record, in order.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<AuditRecord>> {
    after(conn, 0, i64::MAX)
}

/// Up to `limit` records after `seq`, in order.
pub fn after(conn: &Connection, seq: i64, limit: i64) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare(
        "SELECT seq, time, kind, record, prev, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![seq, limit], |r| {
        let record: String = r.get(3)?;
        Ok(AuditRecord {
            seq: r.get(0)?,
            time: r.get(1)?,
            kind: r.get(2)?,
            record: serde_json::from_str(&record).unwrap_or(serde_json::Value::String(record)),
            prev: r.get(4)?,
            hash: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record chains, and the last one is the head.
    Intact {
        /// Records.
        records: i64,
        /// The head's hash.
        head: String,
    },
    /// The first broken record and what is wrong with it.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the chain from the first record.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verdict> {
    let mut stmt =
        conn.prepare("SELECT seq, time, kind, record, prev, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_owned();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let time: String = row.get(1)?;
        let kind: String = row.get(2)?;
        let record: String = row.get(3)?;
        let claimed_prev: String = row.get(4)?;
        let claimed: String = row.get(5)?;
        if seq != expected_seq {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                reason: format!(
                    "record {expected_seq} is missing (the next one is {seq}): removed"
                ),
            });
        }
        if claimed_prev != prev {
            return Ok(Verdict::Broken {
                seq,
                reason: format!(
                    "record {seq} does not follow record {}: records were removed or reordered",
                    seq - 1
                ),
            });
        }
        if hash(&prev, seq, &time, &kind, &record) != claimed {
            return Ok(Verdict::Broken {
                seq,
                reason: format!("record {seq} does not match its hash: edited"),
            });
        }
        prev = claimed;
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match head {
        None if last == 0 => Ok(Verdict::Intact {
            records: 0,
            head: GENESIS.to_owned(),
        }),
        Some((seq, hash)) if seq == last && hash == prev => Ok(Verdict::Intact {
            records: last,
            head: prev,
        }),
        Some((seq, _)) if seq > last => Ok(Verdict::Broken {
            seq: last + 1,
            reason: format!(
                "the log ends at record {last} but its head names record {seq}: records {}..={seq} were removed",
                last + 1
            ),
        }),
        _ => Ok(Verdict::Broken {
            seq: last,
            reason: format!("record {last} is not the head the store recorded"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for i in 1..=n {
            append(&conn, "test", &serde_json::json!({ "n": i })).unwrap();
        }
        conn
    }

    fn untrigger(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn broken_at(conn: &Connection) -> (i64, String) {
        match verify(conn).unwrap() {
            Verdict::Broken { seq, reason } => (seq, reason),
            v => panic!("not broken: {v:?}"),
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_tampering_names_the_first_broken_record() {
        let conn = log(5);
        assert!(matches!(
            verify(&conn).unwrap(),
            Verdict::Intact { records: 5, .. }
        ));
        // Append-only unless the triggers are dropped.
        assert!(conn.execute("DELETE FROM audit WHERE seq = 2", []).is_err());
        assert!(
            conn.execute("UPDATE audit SET kind = 'x' WHERE seq = 2", [])
                .is_err()
        );

        let conn = log(5);
        untrigger(&conn);
        conn.execute("UPDATE audit SET record = '{\"n\":99}' WHERE seq = 3", [])
            .unwrap();
        let (seq, reason) = broken_at(&conn);
        assert_eq!(seq, 3);
        assert!(reason.contains("edited"), "{reason}");

        let conn = log(5);
        untrigger(&conn);
        conn.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
        let (seq, reason) = broken_at(&conn);
        assert_eq!(seq, 3);
        assert!(reason.contains("missing"), "{reason}");

        // Swap records 2 and 3 whole (each keeps its hash): the chain breaks at 2.
        let conn = log(5);
        untrigger(&conn);
        conn.execute_batch(
            "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;
             UPDATE audit SET seq = 3 WHERE seq = -2;",
        )
        .unwrap();
        let (seq, reason) = broken_at(&conn);
        assert_eq!(seq, 2);
        assert!(reason.contains("reordered"), "{reason}");

        // The tail cut off: the head still names record 5.
        let conn = log(5);
        untrigger(&conn);
        conn.execute("DELETE FROM audit WHERE seq >= 4", [])
            .unwrap();
        let (seq, reason) = broken_at(&conn);
        assert_eq!(seq, 4);
        assert!(reason.contains("removed"), "{reason}");
    }
}
