//! The fragment index in SQLite: where each record of each message lives in the segment log,
//! a per-message summary (codec, durable frames, finished) and the log position up to which
//! everything is indexed. Only the writer thread (and recovery before it starts) writes here;
//! readers use their own connections, which WAL lets run beside the writer.
//!
//! The index can always be rebuilt from the log: rows are keyed by their (segment, offset), so
//! indexing a record twice is harmless.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::FragmentStoreError;
use crate::codec::Codec;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fragment_index (
    message_id INTEGER NOT NULL,
    first_frame INTEGER NOT NULL,
    frame_count INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    byte_length INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    PRIMARY KEY (segment, byte_offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fragment_index_by_message ON fragment_index (message_id, first_frame);
CREATE TABLE IF NOT EXISTS fragment_messages (
    message_id INTEGER PRIMARY KEY,
    codec INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    finished INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fragment_log_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    segment INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    max_frames INTEGER NOT NULL
);";

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One record as the index knows it. A bare FINISHED marker has `frame_count == 0` and only
/// updates the message summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexRow {
    pub message_id: i64,
    pub first_frame: u32,
    pub frame_count: u32,
    pub segment: u32,
    pub offset: u64,
    pub length: u32,
    pub codec: Codec,
    pub finished: bool,
}

/// A position in the segment log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct LogPosition {
    pub segment: u32,
    pub offset: u64,
}

/// What the index says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoredMessage {
    pub message_id: i64,
    pub codec: Codec,
    pub frames: u32,
    pub finished: bool,
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> FragmentStoreError + '_ {
    move |source| FragmentStoreError::Index {
        path: path.to_owned(),
        source,
    }
}

fn codec_of(path: &Path, pt: u8) -> Result<Codec, FragmentStoreError> {
    Codec::from_payload_type(pt).ok_or_else(|| FragmentStoreError::BadIndex {
        path: path.to_owned(),
        reason: format!("unknown codec payload type {pt}"),
    })
}

/// A byte offset as SQLite stores it (segments never get near 2^63 bytes).
fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn offset_of(path: &Path, offset: i64) -> Result<u64, FragmentStoreError> {
    u64::try_from(offset).map_err(|_| FragmentStoreError::BadIndex {
        path: path.to_owned(),
        reason: format!("negative byte offset {offset}"),
    })
}

/// Opens the writer's connection: WAL, busy timeout, the schema created when missing.
/// `synchronous=NORMAL` is enough: a commit lost to a power cut is redone from the log.
pub(super) fn open_writer(path: &Path) -> Result<Connection, FragmentStoreError> {
    let err = sql_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(&err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(&err)?;
    conn.execute_batch(SCHEMA).map_err(&err)?;
    Ok(conn)
}

/// Opens a reader's connection (the schema exists: the writer made it).
pub(super) fn open_reader(path: &Path) -> Result<Connection, FragmentStoreError> {
    let err = sql_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    conn.pragma_update(None, "query_only", true).map_err(&err)?;
    Ok(conn)
}

/// The indexed end of the log and the longest record indexed (in frames).
pub(super) fn load_state(conn: &Connection, path: &Path) -> Result<(Option<LogPosition>, u32), FragmentStoreError> {
    let row = conn
        .query_row(
            "SELECT segment, byte_offset, max_frames FROM fragment_log_state WHERE id = 1",
            [],
            |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?, r.get::<_, u32>(2)?)),
        )
        .optional()
        .map_err(sql_err(path))?;
    Ok(match row {
        Some((segment, offset, max_frames)) => (
            Some(LogPosition {
                segment,
                offset: offset_of(path, offset)?,
            }),
            max_frames,
        ),
        None => (None, 0),
    })
}

/// Indexes `rows` and moves the indexed end to `end`, in one transaction.
pub(super) fn commit_rows(
    conn: &mut Connection,
    path: &Path,
    rows: &[IndexRow],
    end: LogPosition,
) -> Result<(), FragmentStoreError> {
    let err = sql_err(path);
    let mut summary: HashMap<i64, (Codec, u32, bool)> = HashMap::new();
    let mut max_frames = 0;
    for r in rows {
        let s = summary.entry(r.message_id).or_insert((r.codec, 0, false));
        s.1 = s.1.max(r.first_frame.saturating_add(r.frame_count));
        s.2 |= r.finished;
        max_frames = max_frames.max(r.frame_count);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO fragment_index
                 (message_id, first_frame, frame_count, segment, byte_offset, byte_length, codec)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(&err)?;
        for r in rows.iter().filter(|r| r.frame_count > 0) {
            insert
                .execute(params![
                    r.message_id,
                    r.first_frame,
                    r.frame_count,
                    r.segment,
                    sql_offset(r.offset),
                    r.length,
                    r.codec.payload_type()
                ])
                .map_err(&err)?;
        }
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO fragment_messages (message_id, codec, frames, finished) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id) DO UPDATE SET
                    frames = max(frames, excluded.frames),
                    finished = (finished OR excluded.finished)",
            )
            .map_err(&err)?;
        for (id, (codec, frames, finished)) in &summary {
            upsert
                .execute(params![id, codec.payload_type(), frames, finished])
                .map_err(&err)?;
        }
        tx.execute(
            "INSERT INTO fragment_log_state (id, segment, byte_offset, max_frames) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET
                segment = excluded.segment,
                byte_offset = excluded.byte_offset,
                max_frames = max(max_frames, excluded.max_frames)",
            params![end.segment, sql_offset(end.offset), max_frames],
        )
        .map_err(&err)?;
    }
    tx.commit().map_err(&err)
}

/// The summary of one message, if it has anything indexed.
pub(super) fn message(conn: &Connection, path: &Path, id: i64) -> Result<Option<StoredMessage>, FragmentStoreError> {
    let row = conn
        .prepare_cached("SELECT codec, frames, finished FROM fragment_messages WHERE message_id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((r.get::<_, u8>(0)?, r.get::<_, u32>(1)?, r.get::<_, bool>(2)?))
            })
            .optional()
        })
        .map_err(sql_err(path))?;
    row.map(|(pt, frames, finished)| {
        Ok(StoredMessage {
            message_id: id,
            codec: codec_of(path, pt)?,
            frames,
            finished,
        })
    })
    .transpose()
}

/// Every message with something indexed, by id.
pub(super) fn messages(conn: &Connection, path: &Path) -> Result<Vec<StoredMessage>, FragmentStoreError> {
    let err = sql_err(path);
    let mut stmt = conn
        .prepare_cached("SELECT message_id, codec, frames, finished FROM fragment_messages ORDER BY message_id")
        .map_err(&err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u8>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .map_err(&err)?;
    let mut out = Vec::new();
    for row in rows {
        let (message_id, pt, frames, finished) = row.map_err(&err)?;
        out.push(StoredMessage {
            message_id,
            codec: codec_of(path, pt)?,
            frames,
            finished,
        });
    }
    Ok(out)
}

/// The records of a message that start in `[start_from, start_before)`, in log order (so a
/// frame written twice resolves to its last copy).
pub(super) fn rows_starting_in(
    conn: &Connection,
    path: &Path,
    id: i64,
    start_from: u32,
    start_before: u32,
) -> Result<Vec<IndexRow>, FragmentStoreError> {
    let err = sql_err(path);
    let mut stmt = conn
        .prepare_cached(
            "SELECT first_frame, frame_count, segment, byte_offset, byte_length, codec FROM fragment_index
             WHERE message_id = ?1 AND first_frame >= ?2 AND first_frame < ?3
             ORDER BY segment, byte_offset",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(params![id, start_from, start_before], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, u8>(5)?,
            ))
        })
        .map_err(&err)?;
    let mut out = Vec::new();
    for row in rows {
        let (first_frame, frame_count, segment, offset, length, pt) = row.map_err(&err)?;
        out.push(IndexRow {
            message_id: id,
            first_frame,
            frame_count,
            segment,
            offset: offset_of(path, offset)?,
            length,
            codec: codec_of(path, pt)?,
            finished: false,
        });
    }
    Ok(out)
}
