//! Message and delivery rows: one row per recorded voice message (sender, codec, state,
//! duration, retrieval number) and one per target (its delivery state), written by the call
//! layer as a message is recorded and delivered, read by `ivm-sipd messages list`.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::StoreError;

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The state of a message.
pub const RECORDING: &str = "recording";
pub const COMPLETE: &str = "complete";

/// Delivery states (SPEC §2).
pub mod delivery {
    pub const PENDING: &str = "pending";
    pub const ALERTING: &str = "alerting";
    pub const LIVE: &str = "live";
    pub const CATCHING_UP: &str = "catching_up";
    pub const DELIVERED: &str = "delivered";
    pub const REJECTED: &str = "rejected";
    pub const UNANSWERED: &str = "unanswered";
    /// States that mean the delivery is still in progress (a crash ends them as unanswered).
    pub const IN_PROGRESS: [&str; 4] = [PENDING, ALERTING, LIVE, CATCHING_UP];
}

/// The retrieval number of a message (SPEC §3): `98` + 6-digit id + type (1 = IVM).
pub fn retrieval_number(id: i64, kind_digit: u8) -> String {
    format!("98{:06}{kind_digit}", id.rem_euclid(1_000_000))
}

/// A new message as the call layer creates it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: String,
    pub kind: String,
    pub codec: String,
    pub call_id: String,
    pub targets: Vec<String>,
}

/// Inserts a message in state `recording` with a `pending` delivery per target; returns its id.
pub fn create(conn: &Connection, m: &NewMessage) -> Result<i64, StoreError> {
    let now = unix_now_ms();
    conn.execute(
        "INSERT INTO messages (sender, kind, codec, state, created_at, duration_ms, retrieval_number, call_id)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, '', ?6)",
        params![m.sender, m.kind, m.codec, RECORDING, now, m.call_id],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute(
        "UPDATE messages SET retrieval_number = ?1 WHERE id = ?2",
        params![retrieval_number(id, 1), id],
    )?;
    let mut ins = conn.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (message_id, target, state, updated_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for t in &m.targets {
        ins.execute(params![id, t, delivery::PENDING, now])?;
    }
    Ok(id)
}

/// Marks a message complete with its duration.
pub fn complete(conn: &Connection, id: i64, duration_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE messages SET state = ?1, completed_at = ?2, duration_ms = ?3 WHERE id = ?4",
        params![COMPLETE, unix_now_ms(), duration_ms, id],
    )?;
    Ok(())
}

/// Sets a delivery's state (and the SIP status that caused it, if any). A delivery that was
/// already notified stays `notified` when a later attempt (store and forward) is unanswered.
pub fn set_delivery(
    conn: &Connection,
    id: i64,
    target: &str,
    state: &str,
    status: Option<u16>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries
         SET state = CASE WHEN ?1 = 'unanswered' AND notified_at IS NOT NULL THEN 'notified' ELSE ?1 END,
             sip_status = COALESCE(?2, sip_status), updated_at = ?3
         WHERE message_id = ?4 AND target = ?5",
        params![state, status, unix_now_ms(), id, target],
    )?;
    Ok(())
}

/// After a crash: messages still `recording` become `complete` with the duration the store
/// holds (`frames_of` gives the committed frames of a message), and deliveries that were in
/// progress become `unanswered`. Returns how many messages were closed.
pub fn recover(conn: &Connection, frames_of: impl Fn(i64) -> u32, frame_ms: i64) -> Result<usize, StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT id FROM messages WHERE state = ?1")?;
        stmt.query_map([RECORDING], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for id in &ids {
        complete(conn, *id, i64::from(frames_of(*id)) * frame_ms)?;
    }
    let placeholders = delivery::IN_PROGRESS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    conn.execute(
        &format!("UPDATE deliveries SET state = ?1, updated_at = ?2 WHERE state IN ({placeholders})"),
        params![delivery::UNANSWERED, unix_now_ms()],
    )?;
    Ok(ids.len())
}

/// A message as listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub sender: String,
    pub kind: String,
    pub codec: String,
    pub state: String,
    pub created_at: i64,
    pub duration_ms: i64,
    pub retrieval_number: String,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveryRow {
    pub target: String,
    pub state: String,
    pub sip_status: Option<u16>,
    /// `new`, `saved` or `deleted` (the target's mailbox).
    pub folder: String,
    /// What the SMSC said about the SMS announcing it, if one was sent.
    pub sms_state: Option<String>,
}

/// Every message, oldest first, with its deliveries.
pub fn list(conn: &Connection) -> Result<Vec<MessageRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, sender, kind, codec, state, created_at, duration_ms, retrieval_number FROM messages ORDER BY id",
    )?;
    let mut rows: Vec<MessageRow> = stmt
        .query_map([], |r| {
            Ok(MessageRow {
                id: r.get(0)?,
                sender: r.get(1)?,
                kind: r.get(2)?,
                codec: r.get(3)?,
                state: r.get(4)?,
                created_at: r.get(5)?,
                duration_ms: r.get(6)?,
                retrieval_number: r.get(7)?,
                deliveries: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut d = conn.prepare_cached(
        "SELECT target, state, sip_status, folder, sms_state FROM deliveries WHERE message_id = ?1 ORDER BY target",
    )?;
    for m in &mut rows {
        m.deliveries = d
            .query_map([m.id], |r| {
                Ok(DeliveryRow {
                    target: r.get(0)?,
                    state: r.get(1)?,
                    sip_status: r.get(2)?,
                    folder: r.get(3)?,
                    sms_state: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(rows)
}

/// One message's codec name, if it exists.
pub fn codec_of(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT codec FROM messages WHERE id = ?1", [id], |r| r.get(0))
        .optional()?)
}
