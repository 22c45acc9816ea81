//! A subscriber's view of the messages addressed to it: the counts MWI reports (new/old), the
//! mailbox order (unheard first, then saved), the heard/saved/deleted marks retrieval sets,
//! notification and store-and-forward marks (so each happens once), expiry, and the
//! notification rules of a subscriber.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::messages::{delivery, unix_now_ms};

/// Mailbox folders of a delivery.
pub mod folder {
    pub const NEW: &str = "new";
    pub const SAVED: &str = "saved";
    pub const DELETED: &str = "deleted";
}

/// Delivery states added by notification and retrieval.
pub const NOTIFIED: &str = "notified";
pub const HEARD: &str = "heard";
pub const EXPIRED: &str = "expired";

/// How a subscriber wants to learn about missed messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub number: String,
    pub msisdn: Option<String>,
    pub pin_hash: Option<String>,
    pub notify_sms: bool,
    pub notify_callerid: bool,
    pub notify_mwi: bool,
    /// On registering again with pending messages: call and play them (`true`) or notify only.
    pub forward_by_call: bool,
    pub unsolicited_mwi: bool,
}

pub fn profile(conn: &Connection, number: &str) -> Result<Option<Profile>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, msisdn, pin_hash, notify, store_forward, unsolicited_mwi FROM subscribers WHERE number = ?1",
    )?;
    Ok(stmt
        .query_row([number], |r| {
            let notify: String = r.get(3)?;
            let has = |k: &str| notify.split(',').any(|n| n.trim().eq_ignore_ascii_case(k));
            Ok(Profile {
                number: r.get(0)?,
                msisdn: r.get(1)?,
                pin_hash: r.get(2)?,
                notify_sms: has("sms"),
                notify_callerid: has("callerid"),
                notify_mwi: has("mwi"),
                forward_by_call: r.get::<_, String>(4)? == "call",
                unsolicited_mwi: r.get::<_, i64>(5)? != 0,
            })
        })
        .optional()?)
}

/// Sets a subscriber's rules (`notify`: comma list of sms, callerid, mwi; `store_forward`:
/// call or notify).
pub fn set_rules(
    conn: &Connection,
    number: &str,
    notify: &str,
    store_forward: &str,
    unsolicited_mwi: bool,
) -> Result<bool, StoreError> {
    for n in notify.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !["sms", "callerid", "mwi"].contains(&n) {
            return Err(StoreError::Invalid {
                field: "notify",
                value: n.into(),
                why: "use sms, callerid, mwi",
            });
        }
    }
    if !["call", "notify"].contains(&store_forward) {
        return Err(StoreError::Invalid {
            field: "store_forward",
            value: store_forward.into(),
            why: "use call or notify",
        });
    }
    let n = conn.execute(
        "UPDATE subscribers SET notify = ?1, store_forward = ?2, unsolicited_mwi = ?3 WHERE number = ?4",
        params![notify, store_forward, unsolicited_mwi as i64, number],
    )?;
    Ok(n > 0)
}

/// MWI counts of a target: new (not yet heard: missed, notified, or being delivered again right
/// now — a store-and-forward call in progress is not heard yet, and a NOTIFY sent meanwhile
/// must not say 0) and old (heard and kept) messages.
pub fn counts(conn: &Connection, target: &str) -> Result<(u32, u32), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(SUM(state IN ('unanswered', 'notified', 'pending', 'alerting', 'live', 'catching_up')
                             AND folder = 'new'), 0),
                COALESCE(SUM(state = 'heard'), 0)
         FROM deliveries WHERE target = ?1 AND folder != 'deleted'",
    )?;
    Ok(stmt.query_row([target], |r| {
        Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32))
    })?)
}

/// One entry of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub message_id: i64,
    pub sender: String,
    pub state: String,
    pub folder: String,
    pub recording: bool,
    pub duration_ms: i64,
    pub created_at: i64,
}

/// An entry from a row of (id, sender, state, folder, recording, duration_ms, created_at).
fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        message_id: r.get(0)?,
        sender: r.get(1)?,
        state: r.get(2)?,
        folder: r.get(3)?,
        recording: r.get(4)?,
        duration_ms: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// A target's messages to play: unheard first (oldest first), then saved/heard ones.
pub fn entries(conn: &Connection, target: &str) -> Result<Vec<Entry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.sender, d.state, d.folder, m.state = 'recording', m.duration_ms, m.created_at
         FROM deliveries d JOIN messages m ON m.id = d.message_id
         WHERE d.target = ?1 AND d.folder != 'deleted' AND d.state NOT IN ('rejected', 'expired')
         ORDER BY (d.state = 'heard' OR d.state = 'delivered' OR d.folder = 'saved'), m.id",
    )?;
    let rows = stmt.query_map([target], entry)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The targets of a message.
pub fn targets(conn: &Connection, message_id: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT target FROM deliveries WHERE message_id = ?1 ORDER BY target")?;
    Ok(stmt.query_map([message_id], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

/// A message's sender, state and duration.
pub fn message(conn: &Connection, message_id: i64) -> Result<Option<Entry>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, sender, state, 'new', state = 'recording', duration_ms, created_at FROM messages WHERE id = ?1",
            [message_id],
            entry,
        )
        .optional()?)
}

/// Marks a delivery heard; true when this is the first time its target heard it (it was neither
/// heard from the store nor delivered live before), which is when the sender is told.
pub fn mark_heard(conn: &Connection, message_id: i64, target: &str) -> Result<bool, StoreError> {
    let before: Option<String> = conn
        .query_row(
            "SELECT state FROM deliveries WHERE message_id = ?1 AND target = ?2",
            params![message_id, target],
            |r| r.get(0),
        )
        .optional()?;
    conn.execute(
        "UPDATE deliveries SET state = ?1, heard_at = ?2, updated_at = ?2
         WHERE message_id = ?3 AND target = ?4 AND state != ?1",
        params![HEARD, unix_now_ms(), message_id, target],
    )?;
    Ok(before.is_some_and(|s| s != HEARD && s != delivery::DELIVERED))
}

pub fn set_folder(conn: &Connection, message_id: i64, target: &str, folder: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET folder = ?1, updated_at = ?2 WHERE message_id = ?3 AND target = ?4",
        params![folder, unix_now_ms(), message_id, target],
    )?;
    Ok(())
}

/// Records what the SMSC said about the SMS that announced a delivery.
pub fn set_sms_state(conn: &Connection, message_id: i64, target: &str, state: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET sms_state = ?1, updated_at = ?2 WHERE message_id = ?3 AND target = ?4",
        params![state, unix_now_ms(), message_id, target],
    )?;
    Ok(())
}

/// Marks a delivery notified, once; true when this call did it.
pub fn mark_notified(conn: &Connection, message_id: i64, target: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE deliveries SET state = ?1, notified_at = ?2, updated_at = ?2
         WHERE message_id = ?3 AND target = ?4 AND notified_at IS NULL AND state = ?5",
        params![NOTIFIED, unix_now_ms(), message_id, target, delivery::UNANSWERED],
    )?;
    Ok(n > 0)
}

/// The notice claimed by [`mark_notified`] was handed to every channel that wanted it.
pub fn mark_notice_done(conn: &Connection, message_id: i64, target: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET notice_done_at = ?1
         WHERE message_id = ?2 AND target = ?3 AND notified_at IS NOT NULL AND notice_done_at IS NULL",
        params![unix_now_ms(), message_id, target],
    )?;
    Ok(())
}

/// A missed delivery whose notice a crash may have lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsentNotice {
    pub message_id: i64,
    pub target: String,
    /// Whether the notice was claimed (and perhaps partly sent) before the crash.
    pub claimed: bool,
}

/// After a crash, the missed deliveries of complete messages whose notice was never claimed
/// (crash recovery closed them as unanswered) or claimed but not finished, oldest first.
pub fn unsent_notices(conn: &Connection) -> Result<Vec<UnsentNotice>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT d.message_id, d.target, d.notified_at IS NOT NULL FROM deliveries d
         JOIN messages m ON m.id = d.message_id
         WHERE m.state = ?3 AND d.folder = 'new' AND d.notice_done_at IS NULL
           AND ((d.state = ?1 AND d.notified_at IS NULL) OR (d.state = ?2 AND d.notified_at IS NOT NULL))
         ORDER BY d.message_id, d.target",
    )?;
    let rows = stmt
        .query_map(
            params![delivery::UNANSWERED, NOTIFIED, super::messages::COMPLETE],
            |r| {
                Ok(UnsentNotice {
                    message_id: r.get(0)?,
                    target: r.get(1)?,
                    claimed: r.get(2)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A delivery whose target was on the call but did not hear all of it (it joined the sender
/// live, passing over the backlog): new in the mailbox, counted as notified and forwarded, so
/// neither a notification nor a store-and-forward call follows.
pub fn mark_partly_heard(conn: &Connection, message_id: i64, target: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deliveries SET state = ?1, notified_at = COALESCE(notified_at, ?2),
             notice_done_at = COALESCE(notice_done_at, ?2), forwarded_at = COALESCE(forwarded_at, ?2), updated_at = ?2
         WHERE message_id = ?3 AND target = ?4",
        params![NOTIFIED, unix_now_ms(), message_id, target],
    )?;
    Ok(())
}

/// Deliveries of a target that are still waiting to be heard and were not forwarded yet; each
/// returned one is marked forwarded (so store-and-forward happens once).
pub fn take_pending(conn: &Connection, target: &str) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id FROM deliveries
         WHERE target = ?1 AND forwarded_at IS NULL AND folder = 'new' AND state IN ('unanswered', 'notified')
         ORDER BY message_id",
    )?;
    let ids: Vec<i64> = stmt.query_map([target], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut mark =
        conn.prepare_cached("UPDATE deliveries SET forwarded_at = ?1 WHERE message_id = ?2 AND target = ?3")?;
    for id in &ids {
        mark.execute(params![unix_now_ms(), id, target])?;
    }
    Ok(ids)
}

/// Expires deliveries of messages older than `max_age_ms` that were never saved; returns the
/// targets whose counts changed.
pub fn expire(conn: &Connection, max_age_ms: i64) -> Result<Vec<String>, StoreError> {
    let cutoff = unix_now_ms() - max_age_ms;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT d.target FROM deliveries d JOIN messages m ON m.id = d.message_id
         WHERE m.created_at < ?1 AND d.folder != 'saved' AND d.state != ?2",
    )?;
    let targets: Vec<String> = stmt
        .query_map(params![cutoff, EXPIRED], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.execute(
        "UPDATE deliveries SET state = ?2, updated_at = ?3
         WHERE folder != 'saved' AND state != ?2 AND message_id IN (SELECT id FROM messages WHERE created_at < ?1)",
        params![cutoff, EXPIRED, unix_now_ms()],
    )?;
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::{self, NewMessage};

    /// A fresh store holding one message from 1002 to `targets`.
    fn one_message(targets: &[&str]) -> Result<(tempfile::TempDir, Connection, i64), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::DataDir {
            path: "tmp".into(),
            source: e,
        })?;
        let conn = super::super::open(dir.path())?;
        let id = messages::create(
            &conn,
            &NewMessage {
                sender: "1002".into(),
                kind: "ivm".into(),
                codec: "PCMU".into(),
                call_id: "c1".into(),
                targets: targets.iter().map(|t| t.to_string()).collect(),
            },
        )?;
        Ok((dir, conn, id))
    }

    #[test]
    fn a_message_being_forwarded_is_still_new_until_it_is_heard() -> Result<(), StoreError> {
        let (_dir, conn, id) = one_message(&["1001"])?;
        messages::set_delivery(&conn, id, "1001", delivery::UNANSWERED, Some(480))?;
        assert_eq!(counts(&conn, "1001")?, (1, 0), "missed");
        // The phone registered again: store-and-forward calls it.
        for state in [delivery::ALERTING, delivery::CATCHING_UP] {
            messages::set_delivery(&conn, id, "1001", state, None)?;
            assert_eq!(counts(&conn, "1001")?, (1, 0), "while {state}");
        }
        messages::set_delivery(&conn, id, "1001", delivery::DELIVERED, Some(200))?;
        assert_eq!(counts(&conn, "1001")?, (0, 0), "heard in full");
        Ok(())
    }

    #[test]
    fn a_notice_lost_to_a_crash_is_found_until_it_is_done() -> Result<(), StoreError> {
        let (_dir, conn, id) = one_message(&["1001", "1003", "1004"])?;
        messages::set_delivery(&conn, id, "1001", delivery::ALERTING, None)?;
        messages::set_delivery(&conn, id, "1003", delivery::UNANSWERED, Some(480))?;
        messages::set_delivery(&conn, id, "1004", delivery::DELIVERED, Some(200))?;
        assert!(unsent_notices(&conn)?.is_empty(), "nothing while the message records");
        // The crash: recovery closes the message and the ringing delivery.
        messages::recover(&conn, |_| 10, 20)?;
        let unclaimed = |t: &str| UnsentNotice {
            message_id: id,
            target: t.into(),
            claimed: false,
        };
        assert_eq!(unsent_notices(&conn)?, vec![unclaimed("1001"), unclaimed("1003")]);
        // 1001's notice is claimed, and the process dies before the channels are done.
        assert!(mark_notified(&conn, id, "1001")?);
        let pending = unsent_notices(&conn)?;
        assert_eq!(pending.first().map(|n| n.claimed), Some(true), "{pending:?}");
        mark_notice_done(&conn, id, "1001")?;
        assert!(mark_notified(&conn, id, "1003")?);
        mark_notice_done(&conn, id, "1003")?;
        assert!(unsent_notices(&conn)?.is_empty());
        assert!(!mark_notified(&conn, id, "1003")?, "claimed once");
        Ok(())
    }
}
