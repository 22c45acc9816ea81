//! Reading a message's committed audio without opening the store for writing: no recovery, no
//! writer thread, a read-only look at the index and the segment files. This is what admin
//! commands use while a server owns the store (recovery would cut a tail the server is still
//! writing).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use super::error::{FragmentStoreError, io_err};
use super::seal::Keyring;
use super::shared::segment_path;
use super::{index, record};
use crate::codec::Codec;

/// The codec and every committed frame (gaps as silence) of one message, sealed records
/// opened with `keys`; `None` when the store holds no audio for it.
pub fn read_committed(
    dir: &Path,
    index_db: &Path,
    keys: Option<&Keyring>,
    message_id: i64,
) -> Result<Option<(Codec, Vec<Bytes>)>, FragmentStoreError> {
    if !index_db.exists() {
        return Ok(None);
    }
    let conn = index::open_reader(index_db)?;
    let has_index: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fragment_messages'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .unwrap_or(false);
    if !has_index {
        return Ok(None);
    }
    let Some(stored) = index::message(&conn, index_db, message_id)? else {
        return Ok(None);
    };
    let rows = index::rows_starting_in(&conn, index_db, message_id, 0, stored.frames)?;
    let silence = Bytes::from(vec![
        stored.codec.silence();
        stored.codec.implementation().frame_bytes()
    ]);
    let mut frames: Vec<Bytes> = vec![silence; stored.frames as usize];
    for row in rows {
        let path = segment_path(dir, row.segment);
        let corrupt = |reason| FragmentStoreError::Corrupt {
            path: path.clone(),
            offset: row.offset,
            reason,
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut buf = vec![0u8; row.length as usize];
        file.read_exact_at(&mut buf, row.offset).map_err(io_err(&path))?;
        let header = record::verify(&buf).map_err(corrupt)?;
        let body = record::frames(Bytes::from(buf), &header, keys).map_err(corrupt)?;
        for k in 0..header.frame_count {
            let index = (header.first_frame + k) as usize;
            if let Some(slot) = frames.get_mut(index) {
                let frame = record::frame(&body, &header, k);
                *slot = if header.codec == stored.codec {
                    frame
                } else {
                    Bytes::from(header.codec.transcode(stored.codec, &frame))
                };
            }
        }
    }
    Ok(Some((stored.codec, frames)))
}
