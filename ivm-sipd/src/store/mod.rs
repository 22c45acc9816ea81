//! The SQLite store (rusqlite, bundled SQLite): opening the data directory's database with the
//! schema migrated, and the tables the daemon and the admin commands share. WAL mode and a
//! busy timeout let `ivm-sipd subscriber …` write while the server runs; the server reads
//! subscribers on every authentication, so a change is seen at once.

mod error;

pub mod bans;
pub mod cdrs;
pub mod mailbox;
pub mod messages;
pub mod registrations;
pub mod secret_file;
pub mod subscribers;
pub mod trunk_spec;
pub mod trunks;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use error::StoreError;

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ivm.sqlite")
}

const MIGRATIONS: &[&str] = &[
    // 1: subscribers and registrations
    "CREATE TABLE subscribers (
        number TEXT PRIMARY KEY,
        name TEXT,
        msisdn TEXT,
        pin_hash TEXT,
        realm TEXT NOT NULL,
        ha1_md5 TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE registrations (
        aor TEXT NOT NULL,
        contact TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        q REAL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        transport TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (aor, contact)
    );",
    // 2: trunks added with `ivm-sipd trunk add` (routes and trusted: JSON arrays of strings)
    "CREATE TABLE trunks (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        transport TEXT NOT NULL,
        routes TEXT NOT NULL,
        trusted TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 3: voice messages, their deliveries, and call detail records
    "CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        codec TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        completed_at INTEGER,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        retrieval_number TEXT NOT NULL,
        call_id TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        message_id INTEGER NOT NULL REFERENCES messages(id),
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        sip_status INTEGER,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (message_id, target)
    );
    CREATE TABLE cdrs (
        id INTEGER PRIMARY KEY,
        message_id INTEGER,
        leg TEXT NOT NULL,
        call_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        answered_at INTEGER,
        ended_at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        sip_status INTEGER
    );",
    // 4: notification rules per subscriber; mailbox folders and notification marks per delivery
    "ALTER TABLE subscribers ADD COLUMN notify TEXT NOT NULL DEFAULT 'sms,callerid,mwi';
    ALTER TABLE subscribers ADD COLUMN store_forward TEXT NOT NULL DEFAULT 'call';
    ALTER TABLE subscribers ADD COLUMN unsolicited_mwi INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN folder TEXT NOT NULL DEFAULT 'new';
    ALTER TABLE deliveries ADD COLUMN heard_at INTEGER;
    ALTER TABLE deliveries ADD COLUMN notified_at INTEGER;
    ALTER TABLE deliveries ADD COLUMN forwarded_at INTEGER;
    CREATE INDEX deliveries_by_target ON deliveries (target, folder);",
    // 5: what the SMSC reported for the SMS announcing a delivery
    "ALTER TABLE deliveries ADD COLUMN sms_state TEXT;",
    // 6: the Path of a registration (RFC 3327): the proxies a request to the phone goes through
    "ALTER TABLE registrations ADD COLUMN path TEXT NOT NULL DEFAULT '';",
    // 7: whether a stored trunk's caller identity is trusted to name a subscriber
    "ALTER TABLE trunks ADD COLUMN asserts_identity INTEGER NOT NULL DEFAULT 0;",
    // 8: when the notice of a missed delivery was handed to every channel (`notified_at` is
    // when it was claimed); a claim without this is redone after a crash
    "ALTER TABLE deliveries ADD COLUMN notice_done_at INTEGER;
    UPDATE deliveries SET notice_done_at = notified_at WHERE notified_at IS NOT NULL;",
    // 9: sources banned by the guard (services::guard); `ivm-sipd security unban` lifts one
    "CREATE TABLE bans (
        address TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        strikes INTEGER NOT NULL,
        banned_at INTEGER NOT NULL,
        until INTEGER NOT NULL,
        lifted_at INTEGER
    );",
];

/// Opens (creating when needed) the database of a data directory and migrates its schema.
pub fn open(data_dir: &Path) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = db_path(data_dir);
    let open_err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    let mut conn = Connection::open(&path).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(open_err)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(conn)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
