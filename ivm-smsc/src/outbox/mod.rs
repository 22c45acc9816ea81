//! The persistent SMS outbox: owns the SQLite tables `sms_outbox`, `sms_outbox_part` and
//! `sms_receipt_unmatched`, and every state change of a notification:
//! `queued` → `submitted` (every part accepted by the SMSC) → `delivered` | `failed`.
//!
//! A notification is written (committed) before anything is sent; a part is recorded with the
//! SMSC's message id when `submit_sm_resp` says OK; a row is only picked for sending while it
//! is `queued`, and only its parts without an id are sent. So a restart or an SMSC outage loses
//! nothing and, under normal operation, sends nothing twice. The one window for a duplicate is a
//! crash (or a lost connection) after the SMSC accepted a part and before its id was committed:
//! that part is sent again on the next session (at-least-once). The `dedupe_key` makes a second
//! enqueue of the same notification a no-op.
//!
//! The database file is shared with the application: the tables are created with
//! `CREATE TABLE IF NOT EXISTS` and prefixed `sms_`; this module never touches `user_version`.
//! It uses its own connection in WAL mode with a busy timeout and `synchronous=FULL`, so a
//! committed enqueue survives a power cut; the `worker` thread groups many operations per commit.

pub(crate) mod worker;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::address::Address;
use crate::encoding;
use crate::error::SmsError;
use crate::receipt::{MessageIdKey, ReceiptOutcome};

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    /// Unique key of this notification, e.g. `notify:<message_id>:<target>`; a second enqueue
    /// with the same key returns the first row's id and sends nothing.
    pub dedupe_key: String,
    /// Destination MSISDN (`+` and digits, or national digits).
    pub to: String,
    /// The text; long texts go as concatenated parts.
    pub text: String,
    /// The caller's id, echoed in [`SmsEvent`]s.
    pub reference: Option<String>,
}

/// Where a notification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsStatus {
    /// Written to the outbox, not yet accepted by the SMSC (or only some of its parts).
    Queued,
    /// Accepted by the SMSC; `smsc_id` is its message id (ids of all parts joined by `,`).
    Submitted {
        /// The SMSC's message id(s).
        smsc_id: String,
    },
    /// The SMSC's receipt(s) said delivered.
    Delivered,
    /// Refused by the SMSC or a receipt said it failed; the reason.
    Failed(String),
}

/// A state change of one notification, broadcast after it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsEvent {
    /// Outbox row id (what [`crate::SmsClient::enqueue`] returned).
    pub id: i64,
    /// The request's dedupe key.
    pub dedupe_key: String,
    /// The request's reference.
    pub reference: Option<String>,
    /// The new status: `Submitted`, `Delivered` or `Failed`.
    pub status: SmsStatus,
}

/// A queued row as the sender needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSms {
    /// Row id.
    pub id: i64,
    /// Destination as enqueued.
    pub to: String,
    /// Text as enqueued.
    pub text: String,
    /// UDH reference for its parts (fixed at enqueue so a resent part joins the others).
    pub concat_ref: u8,
    /// Number of parts.
    pub parts: u32,
    /// Parts (from 1) the SMSC already accepted.
    pub submitted_parts: Vec<u32>,
}

/// Rows per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    /// `queued` rows.
    pub queued: u64,
    /// `submitted` rows.
    pub submitted: u64,
    /// `delivered` rows.
    pub delivered: u64,
    /// `failed` rows.
    pub failed: u64,
}

/// What a receipt did to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// Matched a part; `event` when the notification reached a final state.
    Matched {
        /// Row id.
        id: i64,
        /// The final-state event, if this receipt completed the row.
        event: Option<SmsEvent>,
    },
    /// No part has that id yet; kept to be matched when the part is recorded.
    Unmatched,
}

/// Transient refusals of one notification before it is marked failed.
pub const MAX_ATTEMPTS: i64 = 5;
/// Unmatched receipts older than this are dropped when the outbox is opened.
const UNMATCHED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sms_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT NOT NULL UNIQUE,
    to_addr         TEXT NOT NULL,
    text            TEXT NOT NULL,
    reference       TEXT,
    concat_ref      INTEGER NOT NULL,
    parts           INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'submitted', 'delivered', 'failed')),
    smsc_id         TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    submitted_ms    INTEGER,
    done_ms         INTEGER
);
CREATE INDEX IF NOT EXISTS sms_outbox_state ON sms_outbox (state, id);
CREATE TABLE IF NOT EXISTS sms_outbox_part (
    outbox_id INTEGER NOT NULL REFERENCES sms_outbox (id) ON DELETE CASCADE,
    part      INTEGER NOT NULL,
    smsc_id   TEXT NOT NULL,
    id_text   TEXT NOT NULL,
    id_dec    TEXT,
    id_hex    TEXT,
    state     TEXT NOT NULL CHECK (state IN ('submitted', 'delivered', 'failed')),
    error     TEXT,
    PRIMARY KEY (outbox_id, part)
);
CREATE INDEX IF NOT EXISTS sms_outbox_part_text ON sms_outbox_part (id_text);
CREATE INDEX IF NOT EXISTS sms_outbox_part_dec ON sms_outbox_part (id_dec) WHERE id_dec IS NOT NULL;
CREATE INDEX IF NOT EXISTS sms_outbox_part_hex ON sms_outbox_part (id_hex) WHERE id_hex IS NOT NULL;
CREATE TABLE IF NOT EXISTS sms_receipt_unmatched (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    smsc_id     TEXT NOT NULL,
    id_text     TEXT NOT NULL,
    id_dec      TEXT,
    id_hex      TEXT,
    outcome     TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_receipt_unmatched_text ON sms_receipt_unmatched (id_text);
CREATE INDEX IF NOT EXISTS sms_receipt_unmatched_dec ON sms_receipt_unmatched (id_dec) WHERE id_dec IS NOT NULL;
CREATE INDEX IF NOT EXISTS sms_receipt_unmatched_hex ON sms_receipt_unmatched (id_hex) WHERE id_hex IS NOT NULL;
CREATE INDEX IF NOT EXISTS sms_receipt_unmatched_age ON sms_receipt_unmatched (received_ms);
";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The outbox on one SQLite connection. Methods are synchronous; [`crate::SmsClient`] runs them
/// on a dedicated thread.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    unmatched: u64,
}

impl Outbox {
    /// Opens (creating if needed) the outbox tables in the database file at `path`.
    pub fn open(path: &Path) -> Result<Outbox, SmsError> {
        let err = |source| SmsError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let cutoff = now_ms() - UNMATCHED_TTL.as_millis() as i64;
        conn.execute("DELETE FROM sms_receipt_unmatched WHERE received_ms < ?1", [cutoff])
            .map_err(err)?;
        let unmatched: i64 = conn
            .query_row("SELECT count(*) FROM sms_receipt_unmatched", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
            unmatched: unmatched as u64,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction (the worker commits many operations at once).
    pub fn begin(&self) -> Result<(), SmsError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the transaction.
    pub fn commit(&self) -> Result<(), SmsError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Rolls the transaction back (ignoring "no transaction").
    pub fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    /// Checks `req` and writes it as `queued`. Returns the row id and whether it is new (`false`:
    /// a row with this dedupe key existed and nothing was written).
    pub fn enqueue(&mut self, req: &SmsRequest) -> Result<(i64, bool), SmsError> {
        if req.dedupe_key.trim().is_empty() {
            return Err(SmsError::InvalidRequest("dedupe_key is empty".into()));
        }
        Address::destination(&req.to).map_err(SmsError::InvalidRequest)?;
        let (_, parts) = encoding::count_parts(&req.text);
        if req.text.is_empty() {
            return Err(encoding::EncodingError::Empty.into());
        }
        if parts > encoding::MAX_PARTS {
            return Err(encoding::EncodingError::TooLong { parts }.into());
        }
        // Concatenation references go round 0..=255 from row to row, so two long texts queued
        // one after the other never share one (a phone reassembles parts by sender and
        // reference; random references collided one time in 256).
        let last: Option<i64> = self
            .conn
            .prepare_cached("SELECT concat_ref FROM sms_outbox ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let concat_ref: u8 = match last {
            Some(r) => (r as u8).wrapping_add(1),
            None => rand::random(),
        };
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO sms_outbox (dedupe_key, to_addr, text, reference, concat_ref, parts, state, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7) ON CONFLICT (dedupe_key) DO NOTHING",
            )?
            .execute(params![
                req.dedupe_key,
                req.to,
                req.text,
                req.reference,
                concat_ref,
                parts as i64,
                now_ms()
            ])?;
        if inserted == 1 {
            return Ok((self.conn.last_insert_rowid(), true));
        }
        let id = self
            .conn
            .prepare_cached("SELECT id FROM sms_outbox WHERE dedupe_key = ?1")?
            .query_row([&req.dedupe_key], |r| r.get(0))?;
        Ok((id, false))
    }

    /// Queued rows due now with `id > after_id`, oldest first, at most `limit`.
    pub fn pending(&self, after_id: i64, limit: usize) -> Result<Vec<PendingSms>, SmsError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, to_addr, text, concat_ref, parts FROM sms_outbox
             WHERE state = 'queued' AND id > ?1 AND next_attempt_ms <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut rows = stmt
            .query_map(params![after_id, now_ms(), limit as i64], |r| {
                Ok(PendingSms {
                    id: r.get(0)?,
                    to: r.get(1)?,
                    text: r.get(2)?,
                    concat_ref: r.get::<_, i64>(3)? as u8,
                    parts: r.get::<_, i64>(4)? as u32,
                    submitted_parts: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts = self
            .conn
            .prepare_cached("SELECT part FROM sms_outbox_part WHERE outbox_id = ?1")?;
        for row in rows.iter_mut().filter(|r| r.parts > 1) {
            row.submitted_parts = parts
                .query_map([row.id], |r| r.get::<_, i64>(0))?
                .map(|p| p.map(|p| p as u32))
                .collect::<Result<_, _>>()?;
        }
        Ok(rows)
    }

    /// Records that the SMSC accepted `part` (from 1) of row `id` as `smsc_id`. When that was the
    /// last part, the row becomes `submitted` and its event is returned; a receipt that arrived
    /// before the id was recorded is applied now (its event returned too).
    pub fn mark_part_submitted(&mut self, id: i64, part: u32, smsc_id: &str) -> Result<Vec<SmsEvent>, SmsError> {
        let key = MessageIdKey::new(smsc_id);
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO sms_outbox_part (outbox_id, part, smsc_id, id_text, id_dec, id_hex, state)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'submitted' WHERE EXISTS (SELECT 1 FROM sms_outbox WHERE id = ?1)
                 ON CONFLICT (outbox_id, part) DO NOTHING",
            )?
            .execute(params![id, part, smsc_id, key.text, key.dec, key.hex])?;
        let mut events = Vec::new();
        if changed == 0 {
            return Ok(events);
        }
        let (parts, state): (i64, String) = self
            .conn
            .prepare_cached("SELECT parts, state FROM sms_outbox WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let done: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM sms_outbox_part WHERE outbox_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        if state == "queued" && done >= parts {
            let ids: Vec<String> = self
                .conn
                .prepare_cached("SELECT smsc_id FROM sms_outbox_part WHERE outbox_id = ?1 ORDER BY part")?
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let smsc_id = ids.join(",");
            self.conn
                .prepare_cached(
                    "UPDATE sms_outbox SET state = 'submitted', smsc_id = ?2, submitted_ms = ?3, error = NULL WHERE id = ?1",
                )?
                .execute(params![id, smsc_id, now_ms()])?;
            events.push(self.event(id, SmsStatus::Submitted { smsc_id })?);
        }
        if self.unmatched > 0
            && let Some((rid, outcome)) = self.take_unmatched_for(&key)?
        {
            if let Some(ev) = self.apply_part_outcome(id, part, &outcome)? {
                events.push(ev);
            }
            tracing::debug!(id, part, receipt = rid, "early receipt matched");
        }
        Ok(events)
    }

    /// Applies a receipt for SMSC message id `smsc_id`. Matching prefers the same id text
    /// (ignoring case and leading zeros), then the same number written in hex versus decimal,
    /// and among several candidates a part still waiting for its receipt, most recent first.
    pub fn record_receipt(&mut self, smsc_id: &str, outcome: &ReceiptOutcome) -> Result<ReceiptMatch, SmsError> {
        let key = MessageIdKey::new(smsc_id);
        let found = self.find_part(&key)?;
        let Some((id, part)) = found else {
            if matches!(outcome, ReceiptOutcome::Pending) {
                return Ok(ReceiptMatch::Unmatched);
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO sms_receipt_unmatched (smsc_id, id_text, id_dec, id_hex, outcome, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    smsc_id,
                    key.text,
                    key.dec,
                    key.hex,
                    outcome_to_db(outcome),
                    now_ms()
                ])?;
            self.unmatched += 1;
            return Ok(ReceiptMatch::Unmatched);
        };
        let event = self.apply_part_outcome(id, part, outcome)?;
        Ok(ReceiptMatch::Matched { id, event })
    }

    fn find_part(&self, key: &MessageIdKey) -> Result<Option<(i64, u32)>, SmsError> {
        const PICK: &str = "ORDER BY (state = 'submitted') DESC, rowid DESC LIMIT 1";
        let by_text = format!("SELECT outbox_id, part FROM sms_outbox_part WHERE id_text = ?1 {PICK}");
        let hex_submitted = format!("SELECT outbox_id, part FROM sms_outbox_part WHERE id_hex = ?1 {PICK}");
        let dec_submitted = format!("SELECT outbox_id, part FROM sms_outbox_part WHERE id_dec = ?1 {PICK}");
        let get = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u32));
        if let Some(hit) = self
            .conn
            .prepare_cached(&by_text)?
            .query_row([&key.text], get)
            .optional()?
        {
            return Ok(Some(hit));
        }
        // A decimal receipt id for a hex submit id, then a hex receipt id for a decimal one.
        if let Some(dec) = &key.dec
            && let Some(hit) = self
                .conn
                .prepare_cached(&hex_submitted)?
                .query_row([dec], get)
                .optional()?
        {
            return Ok(Some(hit));
        }
        if let Some(hex) = &key.hex
            && let Some(hit) = self
                .conn
                .prepare_cached(&dec_submitted)?
                .query_row([hex], get)
                .optional()?
        {
            return Ok(Some(hit));
        }
        Ok(None)
    }

    /// An unmatched receipt whose id names the part just submitted as `key`.
    fn take_unmatched_for(&mut self, key: &MessageIdKey) -> Result<Option<(i64, ReceiptOutcome)>, SmsError> {
        // The same id text, then a decimal receipt id for this hex id, then a hex receipt id
        // for this decimal id (each lookup on its own index).
        let lookups = [
            (
                "SELECT id, outcome FROM sms_receipt_unmatched WHERE id_text = ?1 ORDER BY id LIMIT 1",
                Some(&key.text),
            ),
            (
                "SELECT id, outcome FROM sms_receipt_unmatched WHERE id_dec = ?1 ORDER BY id LIMIT 1",
                key.hex.as_ref(),
            ),
            (
                "SELECT id, outcome FROM sms_receipt_unmatched WHERE id_hex = ?1 ORDER BY id LIMIT 1",
                key.dec.as_ref(),
            ),
        ];
        for (sql, value) in lookups {
            let Some(value) = value else { continue };
            let hit: Option<(i64, String)> = self
                .conn
                .prepare_cached(sql)?
                .query_row([value], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((rid, outcome)) = hit {
                self.conn
                    .prepare_cached("DELETE FROM sms_receipt_unmatched WHERE id = ?1")?
                    .execute([rid])?;
                self.unmatched = self.unmatched.saturating_sub(1);
                return Ok(Some((rid, outcome_from_db(&outcome))));
            }
        }
        Ok(None)
    }

    /// Sets one part's receipt outcome and moves the row to `delivered` (all parts delivered) or
    /// `failed` (any part failed); returns the row's event when it reached a final state now.
    fn apply_part_outcome(
        &mut self,
        id: i64,
        part: u32,
        outcome: &ReceiptOutcome,
    ) -> Result<Option<SmsEvent>, SmsError> {
        let (part_state, error) = match outcome {
            ReceiptOutcome::Delivered => ("delivered", None),
            ReceiptOutcome::Failed(why) => ("failed", Some(why.as_str())),
            ReceiptOutcome::Pending => return Ok(None),
        };
        self.conn
            .prepare_cached(
                "UPDATE sms_outbox_part SET state = ?3, error = ?4 WHERE outbox_id = ?1 AND part = ?2 AND state = 'submitted'",
            )?
            .execute(params![id, part, part_state, error])?;
        let (parts, state): (i64, String) = self
            .conn
            .prepare_cached("SELECT parts, state FROM sms_outbox WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if state == "delivered" || state == "failed" {
            return Ok(None);
        }
        if let Some(why) = error {
            self.conn
                .prepare_cached("UPDATE sms_outbox SET state = 'failed', error = ?2, done_ms = ?3 WHERE id = ?1")?
                .execute(params![id, why, now_ms()])?;
            return Ok(Some(self.event(id, SmsStatus::Failed(why.to_string()))?));
        }
        let delivered: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM sms_outbox_part WHERE outbox_id = ?1 AND state = 'delivered'")?
            .query_row([id], |r| r.get(0))?;
        if delivered >= parts {
            self.conn
                .prepare_cached("UPDATE sms_outbox SET state = 'delivered', done_ms = ?2 WHERE id = ?1")?
                .execute(params![id, now_ms()])?;
            return Ok(Some(self.event(id, SmsStatus::Delivered)?));
        }
        Ok(None)
    }

    /// A transient refusal: try again after `delay`; after [`MAX_ATTEMPTS`] the row fails and
    /// its event is returned.
    pub fn retry_later(&mut self, id: i64, error: &str, delay: Duration) -> Result<Option<SmsEvent>, SmsError> {
        let attempts: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE sms_outbox SET attempts = attempts + 1, error = ?2, next_attempt_ms = ?3
                 WHERE id = ?1 AND state = 'queued' RETURNING attempts",
            )?
            .query_row(params![id, error, now_ms() + delay.as_millis() as i64], |r| r.get(0))
            .optional()?;
        match attempts {
            Some(n) if n >= MAX_ATTEMPTS => self.fail(id, &format!("{error} (after {n} attempts)")),
            _ => Ok(None),
        }
    }

    /// A permanent refusal: the row fails; its event is returned (none if it was already final).
    pub fn fail(&mut self, id: i64, error: &str) -> Result<Option<SmsEvent>, SmsError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE sms_outbox SET state = 'failed', error = ?2, done_ms = ?3 WHERE id = ?1 AND state IN ('queued', 'submitted')",
            )?
            .execute(params![id, error, now_ms()])?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(self.event(id, SmsStatus::Failed(error.to_string()))?))
    }

    /// The status of row `id`.
    pub fn status(&self, id: i64) -> Result<SmsStatus, SmsError> {
        let row: Option<(String, Option<String>, Option<String>)> = self
            .conn
            .prepare_cached("SELECT state, smsc_id, error FROM sms_outbox WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((state, smsc_id, error)) = row else {
            return Err(SmsError::NotFound(id));
        };
        Ok(match state.as_str() {
            "submitted" => SmsStatus::Submitted {
                smsc_id: smsc_id.unwrap_or_default(),
            },
            "delivered" => SmsStatus::Delivered,
            "failed" => SmsStatus::Failed(error.unwrap_or_default()),
            _ => SmsStatus::Queued,
        })
    }

    /// Rows per state.
    pub fn counts(&self) -> Result<OutboxCounts, SmsError> {
        let mut c = OutboxCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM sms_outbox GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "queued" => c.queued = n,
                "submitted" => c.submitted = n,
                "delivered" => c.delivered = n,
                "failed" => c.failed = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Deletes delivered and failed rows (and their parts) finished before `older_than` ago;
    /// returns how many rows went.
    pub fn purge_finished(&self, older_than: Duration) -> Result<usize, SmsError> {
        let cutoff = now_ms() - older_than.as_millis() as i64;
        self.conn.execute(
            "DELETE FROM sms_outbox_part WHERE outbox_id IN
             (SELECT id FROM sms_outbox WHERE state IN ('delivered', 'failed') AND done_ms < ?1)",
            [cutoff],
        )?;
        Ok(self.conn.execute(
            "DELETE FROM sms_outbox WHERE state IN ('delivered', 'failed') AND done_ms < ?1",
            [cutoff],
        )?)
    }

    fn event(&self, id: i64, status: SmsStatus) -> Result<SmsEvent, SmsError> {
        let (dedupe_key, reference) = self
            .conn
            .prepare_cached("SELECT dedupe_key, reference FROM sms_outbox WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(SmsEvent {
            id,
            dedupe_key,
            reference,
            status,
        })
    }
}

fn outcome_to_db(o: &ReceiptOutcome) -> String {
    match o {
        ReceiptOutcome::Delivered => "delivered".into(),
        ReceiptOutcome::Failed(why) => format!("failed:{why}"),
        ReceiptOutcome::Pending => "pending".into(),
    }
}

fn outcome_from_db(s: &str) -> ReceiptOutcome {
    match s.strip_prefix("failed:") {
        Some(why) => ReceiptOutcome::Failed(why.to_string()),
        None if s == "delivered" => ReceiptOutcome::Delivered,
        None => ReceiptOutcome::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, text: &str) -> SmsRequest {
        SmsRequest {
            dedupe_key: key.into(),
            to: "+491701234567".into(),
            text: text.into(),
            reference: Some(format!("ref-{key}")),
        }
    }

    fn open() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob = Outbox::open(&dir.path().join("app.db")).expect("open");
        (dir, ob)
    }

    #[test]
    fn consecutive_rows_never_share_a_concatenation_reference() {
        let (_dir, mut ob) = open();
        let mut refs = Vec::new();
        for i in 0..300 {
            ob.enqueue(&req(&format!("k{i}"), &"x".repeat(200))).expect("enqueue");
            let r: i64 = ob
                .conn
                .query_row("SELECT concat_ref FROM sms_outbox ORDER BY id DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .expect("row");
            refs.push(r);
        }
        assert!(refs.windows(2).all(|w| w[0] != w[1]), "{refs:?}");
        assert!(
            refs.windows(256)
                .all(|w| w.iter().collect::<std::collections::HashSet<_>>().len() == 256)
        );
    }

    #[test]
    fn enqueue_dedupes_by_key() {
        let (_dir, mut ob) = open();
        let (a, new_a) = ob.enqueue(&req("notify:1:100", "hello")).expect("enqueue");
        let (b, new_b) = ob.enqueue(&req("notify:1:100", "hello again")).expect("enqueue");
        let (c, new_c) = ob.enqueue(&req("notify:1:101", "hello")).expect("enqueue");
        assert!(new_a && !new_b && new_c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ob.pending(0, 10).expect("pending").len(), 2);
        assert_eq!(
            ob.pending(0, 10).expect("pending")[0].text,
            "hello",
            "the first text is kept"
        );
        assert_eq!(ob.counts().expect("counts").queued, 2);
    }

    #[test]
    fn rejects_bad_requests() {
        let (_dir, mut ob) = open();
        assert!(matches!(ob.enqueue(&req("", "x")), Err(SmsError::InvalidRequest(_))));
        assert!(matches!(ob.enqueue(&req("k", "")), Err(SmsError::Encoding(_))));
        let bad_to = SmsRequest {
            to: "call me".into(),
            ..req("k2", "x")
        };
        assert!(matches!(ob.enqueue(&bad_to), Err(SmsError::InvalidRequest(_))));
        assert_eq!(ob.counts().expect("counts"), OutboxCounts::default());
    }

    #[test]
    fn submit_then_receipt_with_other_radix() {
        let (_dir, mut ob) = open();
        let (id, _) = ob.enqueue(&req("k", "hello")).expect("enqueue");
        let ev = ob.mark_part_submitted(id, 1, "0A1B2C").expect("mark");
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].status,
            SmsStatus::Submitted {
                smsc_id: "0A1B2C".into()
            }
        );
        assert_eq!(ev[0].reference.as_deref(), Some("ref-k"));
        assert!(
            ob.pending(0, 10).expect("pending").is_empty(),
            "a submitted row is not sent again"
        );
        // The same id again (a duplicate response) changes nothing.
        assert!(ob.mark_part_submitted(id, 1, "0A1B2C").expect("mark").is_empty());
        let m = ob
            .record_receipt("0000662316", &ReceiptOutcome::Delivered)
            .expect("receipt");
        assert!(
            matches!(&m, ReceiptMatch::Matched { id: i, event: Some(e) } if *i == id && e.status == SmsStatus::Delivered)
        );
        assert_eq!(ob.status(id).expect("status"), SmsStatus::Delivered);
        // A repeated receipt is matched but changes nothing.
        assert_eq!(
            ob.record_receipt("a1b2c", &ReceiptOutcome::Delivered).expect("receipt"),
            ReceiptMatch::Matched { id, event: None }
        );
    }

    #[test]
    fn multipart_row_is_delivered_when_every_part_is() {
        let (_dir, mut ob) = open();
        let (id, _) = ob.enqueue(&req("long", &"x".repeat(300))).expect("enqueue");
        let p = ob.pending(0, 10).expect("pending");
        assert_eq!(p[0].parts, 2);
        assert!(ob.mark_part_submitted(id, 1, "101").expect("mark").is_empty());
        assert_eq!(ob.pending(0, 10).expect("pending")[0].submitted_parts, vec![1]);
        assert_eq!(ob.status(id).expect("status"), SmsStatus::Queued);
        let ev = ob.mark_part_submitted(id, 2, "102").expect("mark");
        assert_eq!(
            ev[0].status,
            SmsStatus::Submitted {
                smsc_id: "101,102".into()
            }
        );
        assert!(matches!(
            ob.record_receipt("101", &ReceiptOutcome::Delivered),
            Ok(ReceiptMatch::Matched { event: None, .. })
        ));
        assert!(matches!(
            ob.record_receipt("102", &ReceiptOutcome::Delivered),
            Ok(ReceiptMatch::Matched { event: Some(_), .. })
        ));
        assert_eq!(ob.status(id).expect("status"), SmsStatus::Delivered);
    }

    #[test]
    fn receipt_before_submit_id_is_kept_and_applied() {
        let (_dir, mut ob) = open();
        let (id, _) = ob.enqueue(&req("k", "hello")).expect("enqueue");
        assert_eq!(
            ob.record_receipt("255", &ReceiptOutcome::Failed("UNDELIV err:001".into()))
                .expect("r"),
            ReceiptMatch::Unmatched
        );
        let ev = ob.mark_part_submitted(id, 1, "FF").expect("mark");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].status, SmsStatus::Failed("UNDELIV err:001".into()));
        assert_eq!(
            ob.status(id).expect("status"),
            SmsStatus::Failed("UNDELIV err:001".into())
        );
    }

    #[test]
    fn prefers_the_exact_id_and_the_waiting_part() {
        let (_dir, mut ob) = open();
        let (a, _) = ob.enqueue(&req("a", "a")).expect("enqueue");
        let (b, _) = ob.enqueue(&req("b", "b")).expect("enqueue");
        // "10" (decimal 10 or hex 16) and "16": a receipt "16" is b, the exact text.
        ob.mark_part_submitted(a, 1, "10").expect("mark");
        ob.mark_part_submitted(b, 1, "16").expect("mark");
        assert!(
            matches!(ob.record_receipt("16", &ReceiptOutcome::Delivered), Ok(ReceiptMatch::Matched { id, .. }) if id == b)
        );
        assert_eq!(
            ob.status(a).expect("status"),
            SmsStatus::Submitted { smsc_id: "10".into() }
        );
    }

    #[test]
    fn transient_refusals_fail_after_max_attempts() {
        let (_dir, mut ob) = open();
        let (id, _) = ob.enqueue(&req("k", "hello")).expect("enqueue");
        for _ in 0..MAX_ATTEMPTS - 1 {
            assert!(
                ob.retry_later(id, "throttled", Duration::ZERO)
                    .expect("retry")
                    .is_none()
            );
        }
        let ev = ob
            .retry_later(id, "throttled", Duration::ZERO)
            .expect("retry")
            .expect("failed");
        assert!(matches!(ev.status, SmsStatus::Failed(ref m) if m.contains("throttled")));
        let (id2, _) = ob.enqueue(&req("k2", "hello")).expect("enqueue");
        ob.retry_later(id2, "throttled", Duration::from_secs(60))
            .expect("retry");
        assert!(ob.pending(0, 10).expect("pending").is_empty(), "not due yet");
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.db");
        let id = {
            let mut ob = Outbox::open(&path).expect("open");
            ob.enqueue(&req("k", "persist me")).expect("enqueue").0
        };
        let ob = Outbox::open(&path).expect("reopen");
        assert_eq!(ob.pending(0, 10).expect("pending")[0].id, id);
        assert_eq!(ob.purge_finished(Duration::ZERO).expect("purge"), 0);
    }
}
