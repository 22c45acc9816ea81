//! Stored bans: the `bans` table the guard (`services::guard`) writes when it bans a source
//! and reads at start, and that `ivm-sipd security list|unban` shows and edits while the
//! server runs. One row per source address: its latest ban and how many it has had
//! (`strikes`, which makes the next ban longer). Lifting a ban forgives the strikes.

use rusqlite::{Connection, params};

use super::StoreError;

/// One source's ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRow {
    /// The source IP address, as text.
    pub address: String,
    /// Why: `auth failures`, `scanner`, `flood`.
    pub reason: String,
    /// Bans so far (the current one included), since the last lift.
    pub strikes: u32,
    pub banned_at: i64,
    /// Unix time the ban ends.
    pub until: i64,
    /// Unix time an operator lifted it, if one did.
    pub lifted_at: Option<i64>,
}

impl BanRow {
    /// In force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.lifted_at.is_none() && self.until > now
    }
}

/// Records a ban (a new one replaces the source's row, clearing any lift).
pub fn put(conn: &Connection, ban: &BanRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO bans (address, reason, strikes, banned_at, until, lifted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)
         ON CONFLICT (address) DO UPDATE SET reason = ?2, strikes = ?3, banned_at = ?4, until = ?5,
             lifted_at = NULL",
        params![ban.address, ban.reason, ban.strikes, ban.banned_at, ban.until],
    )?;
    Ok(())
}

/// Every row, the latest ban first.
pub fn list(conn: &Connection) -> Result<Vec<BanRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT address, reason, strikes, banned_at, until, lifted_at FROM bans ORDER BY banned_at DESC, address",
    )?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Lifts the ban of `address` (and forgives its strikes); `false` when it has no row.
pub fn lift(conn: &Connection, address: &str, now: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE bans SET lifted_at = ?2, strikes = 0 WHERE address = ?1",
        params![address, now],
    )?;
    Ok(n > 0)
}

/// The addresses lifted at or after `since`, with when.
pub fn lifted_since(conn: &Connection, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT address, lifted_at FROM bans WHERE lifted_at >= ?1")?;
    let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets rows whose ban ended before `before` (their strikes with them).
pub fn prune(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM bans WHERE until < ?1", [before])?)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BanRow> {
    Ok(BanRow {
        address: r.get(0)?,
        reason: r.get(1)?,
        strikes: r.get(2)?,
        banned_at: r.get(3)?,
        until: r.get(4)?,
        lifted_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::OptionalExtension;

    use super::*;

    /// The row of `address`, if it has one.
    fn get(conn: &Connection, address: &str) -> Result<Option<BanRow>, StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT address, reason, strikes, banned_at, until, lifted_at FROM bans WHERE address = ?1",
        )?;
        Ok(stmt.query_row([address], row).optional()?)
    }

    fn ban(address: &str, strikes: u32, until: i64) -> BanRow {
        BanRow {
            address: address.into(),
            reason: "auth failures".into(),
            strikes,
            banned_at: until - 600,
            until,
            lifted_at: None,
        }
    }

    #[test]
    fn a_ban_is_stored_replaced_lifted_and_pruned() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Export(e.to_string()))?;
        let conn = super::super::open(dir.path())?;
        put(&conn, &ban("192.0.2.7", 1, 1600))?;
        put(&conn, &ban("192.0.2.8", 1, 1700))?;
        assert_eq!(list(&conn)?.len(), 2);
        assert_eq!(list(&conn)?[0].address, "192.0.2.8", "latest first");

        assert!(lift(&conn, "192.0.2.7", 1100)?);
        assert!(!lift(&conn, "198.51.100.1", 1100)?, "no such row");
        let lifted = get(&conn, "192.0.2.7")?.ok_or(StoreError::CommitFailed)?;
        assert_eq!((lifted.lifted_at, lifted.strikes), (Some(1100), 0));
        assert!(!lifted.active(1200));
        assert_eq!(lifted_since(&conn, 1100)?, vec![("192.0.2.7".to_string(), 1100)]);
        assert!(lifted_since(&conn, 1101)?.is_empty());

        // Banned again: the lift is gone and the row is active.
        put(&conn, &ban("192.0.2.7", 1, 2600))?;
        let again = get(&conn, "192.0.2.7")?.ok_or(StoreError::CommitFailed)?;
        assert!(again.active(2000));
        assert!(!again.active(2600), "ends at until");

        assert_eq!(prune(&conn, 2000)?, 1);
        assert_eq!(list(&conn)?.len(), 1);
        Ok(())
    }
}
