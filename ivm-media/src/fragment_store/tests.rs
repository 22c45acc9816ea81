//! Unit tests of the fragment store on real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;

use super::record::{HEADER_LEN, TRAILER_LEN, encoded_len};
use super::shared::segment_path;
use super::*;

/// A commit interval so long that only `sync` (and drop) commit.
const NEVER: u64 = 3_600_000;

fn config(dir: &Path, commit_ms: u64, fpf: u32, segment_bytes: u64) -> FragmentStoreConfig {
    FragmentStoreConfig {
        dir: dir.join("fragments"),
        index_db: dir.join("ivm.sqlite"),
        commit_interval: Duration::from_millis(commit_ms),
        frames_per_fragment: fpf,
        segment_bytes,
        keys: None,
    }
}

fn open(cfg: &FragmentStoreConfig) -> (FragmentStore, Recovery) {
    FragmentStore::open(cfg.clone()).expect("open store")
}

/// A frame whose bytes depend on the message and the index.
fn frame(message: i64, index: u32) -> Bytes {
    let seed = (message as u32).wrapping_mul(97).wrapping_add(index.wrapping_mul(31));
    Bytes::from(
        (0..FRAME_BYTES as u32)
            .map(|i| seed.wrapping_add(i * 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn frames(message: i64, range: std::ops::Range<u32>) -> Vec<Bytes> {
    range.map(|i| frame(message, i)).collect()
}

fn append_range(store: &FragmentStore, message: i64, codec: Codec, range: std::ops::Range<u32>) {
    for i in range {
        store.append(message, codec, i, frame(message, i));
    }
}

fn silence(codec: Codec) -> Bytes {
    Bytes::from(vec![codec.silence(); FRAME_BYTES])
}

fn segments(cfg: &FragmentStoreConfig) -> Vec<PathBuf> {
    recovery::list_segments(&cfg.dir)
        .expect("list")
        .into_iter()
        .map(|n| segment_path(&cfg.dir, n))
        .collect()
}

fn record_len(frames: usize) -> u64 {
    encoded_len(frames, FRAME_BYTES, false) as u64
}

fn all(store: &FragmentStore, message: i64) -> Vec<Bytes> {
    store.read_range(message, 0, u32::MAX).expect("read")
}

#[test]
fn round_trip_across_fragments_and_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 5-frame records of 836 bytes: two per 2000-byte segment.
    let cfg = config(dir.path(), 15, 5, 2000);
    let (store, recovery) = open(&cfg);
    assert_eq!(recovery.messages, vec![]);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));

    append_range(&store, 1, Codec::Pcmu, 0..63);
    store.finish(1);
    store.sync().expect("sync");

    assert_eq!(all(&store, 1), frames(1, 0..63));
    assert_eq!(store.read_range(1, 7, 11).expect("read"), frames(1, 7..18));
    assert_eq!(store.read_range(1, 60, 10).expect("read"), frames(1, 60..63));
    assert_eq!(store.read_range(1, 63, 5).expect("read"), Vec::<Bytes>::new());
    assert_eq!(store.read_range(1, 3, 0).expect("read"), Vec::<Bytes>::new());
    assert_eq!(store.read_range(99, 0, 5).expect("read"), Vec::<Bytes>::new());
    assert_eq!(store.committed_frames(1).expect("committed"), 63);
    assert_eq!(store.committed_frames(99).expect("committed"), 0);
    assert_eq!(store.codec(1).expect("codec"), Some(Codec::Pcmu));
    assert_eq!(store.codec(99).expect("codec"), None);
    assert_eq!(
        store.messages().expect("messages"),
        vec![RecoveredMessage {
            message_id: 1,
            frames: 63,
            codec: Codec::Pcmu,
            finished: true,
        }]
    );
    let segs = segments(&cfg);
    assert!(segs.len() >= 7, "{segs:?}");
    for seg in &segs {
        assert!(std::fs::metadata(seg).expect("stat").len() <= 2000);
    }
}

#[test]
fn pending_frames_are_read_before_they_are_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 5, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 7, Codec::Pcma, 0..3);
    assert_eq!(all(&store, 7), frames(7, 0..3));
    assert_eq!(store.codec(7).expect("codec"), Some(Codec::Pcma));
    assert_eq!(store.committed_frames(7).expect("committed"), 0);
    assert_eq!(store.messages().expect("messages"), vec![]);

    // Full fragments are written at once but not committed: still read from memory.
    append_range(&store, 7, Codec::Pcma, 3..12);
    assert_eq!(all(&store, 7), frames(7, 0..12));
    assert_eq!(store.committed_frames(7).expect("committed"), 0);

    store.sync().expect("sync");
    assert_eq!(store.committed_frames(7).expect("committed"), 12);
    append_range(&store, 7, Codec::Pcma, 12..14);
    // Committed and pending frames together.
    assert_eq!(store.read_range(7, 9, 100).expect("read"), frames(7, 9..14));
}

#[test]
fn gaps_read_as_silence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 4, 1 << 20);
    let (store, _) = open(&cfg);
    for i in [0, 1, 2, 5, 6, 10] {
        store.append(3, Codec::Pcma, i, frame(3, i));
    }
    let s = silence(Codec::Pcma);
    let expected: Vec<Bytes> = (0..11)
        .map(|i| {
            if [3, 4, 7, 8, 9].contains(&i) {
                s.clone()
            } else {
                frame(3, i)
            }
        })
        .collect();
    assert_eq!(all(&store, 3), expected);
    store.sync().expect("sync");
    assert_eq!(all(&store, 3), expected);
    assert_eq!(store.read_range(3, 3, 2).expect("read"), vec![s.clone(), s]);
    assert_eq!(store.committed_frames(3).expect("committed"), 11);
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 15, 10, 4096);
    {
        let (store, _) = open(&cfg);
        append_range(&store, 1, Codec::Pcmu, 0..37);
        append_range(&store, 2, Codec::Pcma, 0..5);
        store.finish(1);
        // Dropping the last handle commits what is pending.
    }
    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    assert_eq!(
        recovery.messages,
        vec![
            RecoveredMessage {
                message_id: 1,
                frames: 37,
                codec: Codec::Pcmu,
                finished: true,
            },
            RecoveredMessage {
                message_id: 2,
                frames: 5,
                codec: Codec::Pcma,
                finished: false,
            },
        ]
    );
    assert_eq!(all(&store, 1), frames(1, 0..37));
    assert_eq!(all(&store, 2), frames(2, 0..5));

    // The unfinished message goes on after the restart, appended to the same log.
    append_range(&store, 2, Codec::Pcma, 5..23);
    store.finish(2);
    store.sync().expect("sync");
    drop(store);
    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    assert_eq!(all(&store, 2), frames(2, 0..23));
    assert!(recovery.messages.iter().all(|m| m.finished));
}

#[test]
fn crash_loses_only_what_was_not_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 5, Codec::Pcmu, 0..35);
    store.sync().expect("sync");
    append_range(&store, 5, Codec::Pcmu, 35..80);
    store.crash(false);

    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    assert_eq!(store.committed_frames(5).expect("committed"), 35);
    assert_eq!(all(&store, 5), frames(5, 0..35));
    assert!(!recovery.messages[0].finished);
}

#[test]
fn crash_recovers_written_records_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 5, Codec::Pcmu, 0..35);
    store.sync().expect("sync");
    // Full fragments are written as they close: [35,40) [40,50) … [70,80), none committed.
    append_range(&store, 5, Codec::Pcmu, 35..80);
    // The process dies after the OS got the records, and the last one is torn.
    store.crash(true);
    let segs = segments(&cfg);
    let last = segs.last().expect("a segment");
    let len = std::fs::metadata(last).expect("stat").len();
    let file = std::fs::OpenOptions::new().write(true).open(last).expect("open");
    file.set_len(len - 100).expect("truncate");

    let (store, recovery) = open(&cfg);
    assert_eq!(recovery.recovered_records, 4);
    assert_eq!(recovery.truncated_bytes, record_len(10) - 100);
    assert_eq!(store.committed_frames(5).expect("committed"), 70);
    assert_eq!(all(&store, 5), frames(5, 0..70));

    // The writer appends after the cut; the next start finds nothing to repair.
    append_range(&store, 5, Codec::Pcmu, 70..90);
    store.sync().expect("sync");
    drop(store);
    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    assert_eq!(all(&store, 5), frames(5, 0..90));
}

/// The index position and row count, read behind the store's back.
fn index_state(db: &Path) -> (u32, u64, i64) {
    let conn = Connection::open(db).expect("db");
    let (segment, offset): (u32, i64) = conn
        .query_row("SELECT segment, byte_offset FROM fragment_log_state", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("state");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM fragment_index", [], |r| r.get(0))
        .expect("count");
    (segment, offset as u64, rows)
}

#[test]
fn a_lost_index_commit_is_redone_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 8, Codec::Pcma, 0..35);
    store.sync().expect("sync");
    let (segment, offset, _) = index_state(&cfg.index_db);
    append_range(&store, 8, Codec::Pcma, 35..60);
    store.sync().expect("sync");
    drop(store);

    // A power cut took the last SQLite commit (synchronous=NORMAL) and left half a record
    // that was being written in the log.
    let conn = Connection::open(&cfg.index_db).expect("db");
    conn.execute(
        "DELETE FROM fragment_index WHERE segment > ?1 OR (segment = ?1 AND byte_offset >= ?2)",
        rusqlite::params![segment, offset as i64],
    )
    .expect("delete");
    conn.execute(
        "UPDATE fragment_log_state SET segment = ?1, byte_offset = ?2",
        rusqlite::params![segment, offset as i64],
    )
    .expect("state");
    conn.execute("UPDATE fragment_messages SET frames = 35", [])
        .expect("messages");
    drop(conn);
    let last = segments(&cfg).pop().expect("segment");
    let mut log = std::fs::read(&last).expect("read");
    let torn = log[..50].to_vec();
    log.extend_from_slice(&torn);
    std::fs::write(&last, &log).expect("write");

    let (store, recovery) = open(&cfg);
    // [35,40) [40,50) [50,60) came back from the log; the half record was cut.
    assert_eq!(recovery.recovered_records, 3);
    assert_eq!(recovery.truncated_bytes, 50);
    assert_eq!(store.committed_frames(8).expect("committed"), 60);
    assert_eq!(all(&store, 8), frames(8, 0..60));
}

#[test]
fn the_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 15, 10, 3000);
    {
        let (store, _) = open(&cfg);
        append_range(&store, 1, Codec::Pcmu, 0..44);
        append_range(&store, 2, Codec::Pcma, 0..9);
        store.finish(2);
    }
    let conn = Connection::open(&cfg.index_db).expect("db");
    conn.execute_batch("DROP TABLE fragment_index; DROP TABLE fragment_messages; DROP TABLE fragment_log_state;")
        .expect("drop");
    drop(conn);
    let (store, recovery) = open(&cfg);
    assert_eq!(recovery.truncated_bytes, 0);
    assert!(recovery.recovered_records >= 6);
    assert_eq!(all(&store, 1), frames(1, 0..44));
    assert_eq!(all(&store, 2), frames(2, 0..9));
    assert_eq!(
        recovery
            .messages
            .iter()
            .map(|m| (m.frames, m.finished))
            .collect::<Vec<_>>(),
        vec![(44, false), (9, true)]
    );
}

#[test]
fn corruption_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 4, Codec::Pcmu, 0..30);
    store.sync().expect("sync");
    append_range(&store, 4, Codec::Pcmu, 30..50);
    store.crash(true);

    // A flipped bit in an unindexed record: recovery cuts the log there.
    let seg = segments(&cfg).pop().expect("segment");
    let mut log = std::fs::read(&seg).expect("read");
    let unindexed = 3 * record_len(10) as usize;
    assert_eq!(log.len(), unindexed + 2 * record_len(10) as usize);
    log[unindexed + HEADER_LEN + 17] ^= 0x40;
    // And one in an indexed record: its reads fail.
    log[HEADER_LEN + 5] ^= 0x01;
    std::fs::write(&seg, &log).expect("write");

    let (store, recovery) = open(&cfg);
    assert_eq!(recovery.recovered_records, 0);
    assert_eq!(recovery.truncated_bytes, 2 * record_len(10));
    assert_eq!(store.committed_frames(4).expect("committed"), 30);
    match store.read_range(4, 0, 10) {
        Err(FragmentStoreError::Corrupt { offset, reason, .. }) => {
            assert_eq!((offset, reason), (0, "CRC mismatch"));
        }
        other => panic!("expected a CRC error, got {other:?}"),
    }
    assert_eq!(store.read_range(4, 10, 20).expect("read"), frames(4, 10..30));
    assert_eq!(record_len(10), (HEADER_LEN + 1600 + TRAILER_LEN) as u64);
}

#[test]
fn twenty_messages_interleaved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 10, 50, 64 * 1024);
    let (store, _) = open(&cfg);
    let ids: Vec<i64> = (1000..1020).collect();
    let len = |id: i64| 60 + 7 * (id - 1000) as u32;
    let codec = |id: i64| if id % 2 == 0 { Codec::Pcmu } else { Codec::Pcma };
    for round in 0..len(1019) {
        for &id in &ids {
            if round < len(id) {
                store.append(id, codec(id), round, frame(id, round));
            }
            if round + 1 == len(id) && id % 2 == 0 {
                store.finish(id);
            }
        }
        if round % 40 == 0 {
            std::thread::sleep(Duration::from_millis(12));
            let id = ids[(round as usize / 40) % ids.len()];
            assert_eq!(all(&store, id), frames(id, 0..(round + 1).min(len(id))));
        }
    }
    store.sync().expect("sync");
    let check = |store: &FragmentStore, listed: Vec<RecoveredMessage>| {
        assert_eq!(listed.len(), 20);
        for (m, &id) in listed.iter().zip(&ids) {
            assert_eq!(
                *m,
                RecoveredMessage {
                    message_id: id,
                    frames: len(id),
                    codec: codec(id),
                    finished: id % 2 == 0,
                }
            );
            assert_eq!(all(store, id), frames(id, 0..len(id)));
        }
    };
    check(&store, store.messages().expect("messages"));
    assert!(segments(&cfg).len() > 3);
    drop(store);
    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    check(&store, recovery.messages);
}

#[test]
fn readers_are_never_behind_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Commits every millisecond and tiny fragments: frames move from memory to the index all
    // the time while they are read.
    let cfg = config(dir.path(), 1, 4, 1 << 20);
    let (store, _) = open(&cfg);
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 300 {
                let got = all(&store, 9);
                assert!(got.len() >= seen, "went back from {seen} to {}", got.len());
                assert_eq!(got, frames(9, 0..got.len() as u32));
                seen = got.len();
            }
        })
    };
    for i in 0..300 {
        store.append(9, Codec::Pcmu, i, frame(9, i));
        let from = i.saturating_sub(2);
        assert_eq!(store.read_range(9, from, 3).expect("read"), frames(9, from..i + 1));
    }
    reader.join().expect("reader");
}

#[test]
fn odd_frames_are_fixed_or_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 50, 1 << 20);
    let (store, _) = open(&cfg);
    store.append(6, Codec::Pcmu, 0, frame(6, 0));
    store.append(6, Codec::Pcmu, 1, frame(6, 1));
    store.append(6, Codec::Pcmu, 1, frame(6, 99)); // duplicate: dropped
    store.append(6, Codec::Pcmu, 0, frame(6, 98)); // older: dropped
    store.append(6, Codec::Pcmu, 2, Bytes::from(vec![0x11; 100])); // short: padded
    store.append(6, Codec::Pcmu, 3, Bytes::from(vec![0x22; 200])); // long: cut
    let a = Codec::Pcma.encode(&[1000; FRAME_BYTES]);
    store.append(6, Codec::Pcma, 4, Bytes::from(a.clone())); // other law: converted
    store.sync().expect("sync");

    let got = all(&store, 6);
    assert_eq!(got.len(), 5);
    assert_eq!(got[..2], frames(6, 0..2));
    assert_eq!(got[2][..100], [0x11; 100]);
    assert!(got[2][100..].iter().all(|&b| b == Codec::Pcmu.silence()));
    assert_eq!(got[3][..], [0x22; FRAME_BYTES]);
    assert_eq!(got[4][..], Codec::Pcma.transcode(Codec::Pcmu, &a)[..]);
}

#[test]
fn finish_after_a_restart_marks_the_stored_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    {
        let (store, _) = open(&cfg);
        append_range(&store, 2, Codec::Pcmu, 0..10);
    }
    let (store, recovery) = open(&cfg);
    assert!(!recovery.messages[0].finished);
    store.finish(2);
    store.finish(404); // unknown: nothing to do
    store.sync().expect("sync");
    assert_eq!(
        store.messages().expect("messages"),
        vec![RecoveredMessage {
            message_id: 2,
            frames: 10,
            codec: Codec::Pcmu,
            finished: true,
        }]
    );
    assert_eq!(all(&store, 2), frames(2, 0..10));
}

#[test]
fn a_failed_commit_keeps_the_audio_and_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), NEVER, 10, 1 << 20);
    let (store, _) = open(&cfg);
    append_range(&store, 3, Codec::Pcmu, 0..10);
    store.sync().expect("sync");

    let conn = Connection::open(&cfg.index_db).expect("db");
    conn.execute_batch(
        "CREATE TRIGGER fail_index BEFORE INSERT ON fragment_index BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .expect("trigger");
    append_range(&store, 3, Codec::Pcmu, 10..25);
    assert!(matches!(store.sync(), Err(FragmentStoreError::Index { .. })));
    assert!(matches!(store.sync(), Err(FragmentStoreError::Index { .. })));
    // Nothing is lost for readers, nothing new is durable.
    assert_eq!(all(&store, 3), frames(3, 0..25));
    assert_eq!(store.committed_frames(3).expect("committed"), 10);

    conn.execute_batch("DROP TRIGGER fail_index;").expect("drop trigger");
    store.sync().expect("sync");
    assert_eq!(store.committed_frames(3).expect("committed"), 25);
    assert_eq!(all(&store, 3), frames(3, 0..25));
    // The failed writes were cut back: the log holds each record once.
    let seg = segments(&cfg).pop().expect("segment");
    assert_eq!(
        std::fs::metadata(&seg).expect("stat").len(),
        2 * record_len(10) + record_len(5)
    );
    drop(store);
    let (store, recovery) = open(&cfg);
    assert_eq!((recovery.truncated_bytes, recovery.recovered_records), (0, 0));
    assert_eq!(all(&store, 3), frames(3, 0..25));
}

#[test]
fn bad_configuration_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cfg in [
        config(dir.path(), 10, 0, 1 << 20),
        config(dir.path(), 10, 5000, 1 << 20),
        config(dir.path(), 0, 50, 1 << 20),
        config(dir.path(), 10, 50, 0),
    ] {
        assert!(matches!(FragmentStore::open(cfg), Err(FragmentStoreError::Config(_))));
    }
}

#[test]
fn the_store_is_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<FragmentStore>();
}

fn keyring(byte: u8) -> Keyring {
    Keyring::new(MasterKey::new(&[byte; KEY_BYTES]), Vec::new())
}

#[test]
fn sealed_records_hold_no_plaintext_survive_a_crash_and_open_only_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), NEVER, 10, 1 << 20);
    cfg.keys = Some(keyring(3));
    let (store, _) = open(&cfg);
    append_range(&store, 5, Codec::Pcmu, 0..35);
    store.sync().expect("sync");
    // Written (full fragments) but never indexed: recovery must find them without the index.
    append_range(&store, 5, Codec::Pcmu, 35..60);
    store.crash(true);

    let log: Vec<u8> = segments(&cfg)
        .iter()
        .flat_map(|p| std::fs::read(p).expect("read"))
        .collect();
    for i in 0..60 {
        let f = frame(5, i);
        assert!(!log.windows(32).any(|w| w == &f[..32]), "frame {i} in clear in the log");
    }
    let (store, recovery) = open(&cfg);
    assert_eq!(recovery.recovered_records, 3, "[35,40) [40,50) [50,60)");
    assert_eq!(all(&store, 5), frames(5, 0..60));
    let offline = read_committed(&cfg.dir, &cfg.index_db, cfg.keys.as_ref(), 5).expect("offline read");
    assert_eq!(offline.map(|(_, f)| f), Some(frames(5, 0..60)));
    drop(store);

    // Without the key, or with another one, the audio does not come back.
    for keys in [None, Some(keyring(4))] {
        let mut other = cfg.clone();
        other.keys = keys;
        let (store, _) = open(&other);
        assert!(
            matches!(store.read_range(5, 0, 10), Err(FragmentStoreError::Corrupt { .. })),
            "sealed audio read without its key"
        );
    }
    // A rotated keyring (new key first, the old one behind) reads it and seals new audio anew.
    let mut rotated = cfg.clone();
    rotated.keys = Some(Keyring::new(
        MasterKey::new(&[9; KEY_BYTES]),
        vec![MasterKey::new(&[3; KEY_BYTES])],
    ));
    let (store, _) = open(&rotated);
    assert_eq!(all(&store, 5), frames(5, 0..60));
    append_range(&store, 6, Codec::Pcmu, 0..10);
    store.sync().expect("sync");
    assert_eq!(all(&store, 6), frames(6, 0..10));
    drop(store);
    let (store, _) = open(&cfg);
    assert!(store.read_range(6, 0, 10).is_err(), "sealed under the new key");
}

#[test]
fn the_backlog_warning_scales_with_the_messages_being_written() {
    use super::shared::backlog_limit;
    // One call: five minutes of its audio. 2,000 calls hold 20,000 frames between two 200 ms
    // commits, nothing late: no warning until ten seconds of each are waiting.
    assert_eq!(backlog_limit(1), 15_000);
    assert!(backlog_limit(2_000) > 2_000 * 50 / 5);
    assert_eq!(backlog_limit(2_000), 2_000 * 50 * 10);
}
