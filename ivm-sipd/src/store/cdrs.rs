//! Call detail records (SPEC §6, claim 003-42): one row per leg — who called whom, for which
//! message, when it started, was answered and ended, how long it lasted and how it ended — and
//! their export as CSV.

use std::io::Write;

use rusqlite::{Connection, params};

use super::StoreError;

/// One leg's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    pub message_id: Option<i64>,
    /// `sender` or `target`.
    pub leg: String,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
    /// `answered`, `rejected`, `unanswered`, `cancelled`, `failed`.
    pub outcome: String,
    pub sip_status: Option<u16>,
}

impl Cdr {
    /// Talk time: from answer to end.
    pub fn duration_ms(&self) -> i64 {
        self.answered_at.map_or(0, |a| (self.ended_at - a).max(0))
    }
}

pub fn insert(conn: &Connection, c: &Cdr) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO cdrs (message_id, leg, call_id, caller, callee, started_at, answered_at, ended_at, duration_ms,
                           outcome, sip_status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            c.message_id,
            c.leg,
            c.call_id,
            c.caller,
            c.callee,
            c.started_at,
            c.answered_at,
            c.ended_at,
            c.duration_ms(),
            c.outcome,
            c.sip_status
        ],
    )?;
    Ok(())
}

/// Writes every CDR as CSV (header line first), oldest first; returns the count.
pub fn export_csv(conn: &Connection, out: impl Write) -> Result<usize, StoreError> {
    let mut w = csv::Writer::from_writer(out);
    let csv_err = |e: csv::Error| StoreError::Export(e.to_string());
    w.write_record([
        "id",
        "message_id",
        "leg",
        "call_id",
        "caller",
        "callee",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_ms",
        "outcome",
        "sip_status",
    ])
    .map_err(csv_err)?;
    let mut stmt = conn.prepare(
        "SELECT id, message_id, leg, call_id, caller, callee, started_at, answered_at, ended_at, duration_ms, outcome,
                sip_status FROM cdrs ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let record = [
            r.get::<_, i64>(0)?.to_string(),
            opt(r.get(1)?),
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get::<_, i64>(6)?.to_string(),
            opt(r.get(7)?),
            r.get::<_, i64>(8)?.to_string(),
            r.get::<_, i64>(9)?.to_string(),
            r.get(10)?,
            opt(r.get(11)?),
        ];
        w.write_record(&record).map_err(csv_err)?;
        n += 1;
    }
    w.flush().map_err(|e| StoreError::Export(e.to_string()))?;
    Ok(n)
}
