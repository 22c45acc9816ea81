//! Registration rows: the persistent copy of the location service, written when a REGISTER
//! changes a binding and read back on start so a restart keeps every registration.

use rusqlite::{Connection, params};

use super::StoreError;

/// One binding of an address-of-record to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    pub aor: String,
    pub contact: String,
    pub expires_at: i64,
    pub q: Option<f32>,
    pub call_id: String,
    pub cseq: u32,
    pub transport: String,
    pub source: String,
    /// The REGISTER's Path values (RFC 3327), comma-separated, first hop first; empty without.
    pub path: String,
}

/// A change to the registration rows.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingChange {
    Upsert(BindingRow),
    Remove { aor: String, contact: String },
}

/// Applies changes (inside the caller's transaction).
pub fn apply(conn: &Connection, changes: &[BindingChange], now: i64) -> Result<(), StoreError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO registrations (aor, contact, expires_at, q, call_id, cseq, transport, source, updated_at, path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (aor, contact) DO UPDATE SET expires_at = ?3, q = ?4, call_id = ?5, cseq = ?6,
             transport = ?7, source = ?8, updated_at = ?9, path = ?10",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM registrations WHERE aor = ?1 AND contact = ?2")?;
    for c in changes {
        match c {
            BindingChange::Upsert(b) => {
                upsert.execute(params![
                    b.aor,
                    b.contact,
                    b.expires_at,
                    b.q,
                    b.call_id,
                    b.cseq,
                    b.transport,
                    b.source,
                    now,
                    b.path
                ])?;
            }
            BindingChange::Remove { aor, contact } => {
                delete.execute(params![aor, contact])?;
            }
        }
    }
    Ok(())
}

/// Every unexpired binding; expired rows are deleted.
pub fn load(conn: &Connection, now: i64) -> Result<Vec<BindingRow>, StoreError> {
    conn.execute("DELETE FROM registrations WHERE expires_at <= ?1", [now])?;
    let mut stmt = conn.prepare(
        "SELECT aor, contact, expires_at, q, call_id, cseq, transport, source, path FROM registrations ORDER BY aor",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(BindingRow {
            aor: r.get(0)?,
            contact: r.get(1)?,
            expires_at: r.get(2)?,
            q: r.get(3)?,
            call_id: r.get(4)?,
            cseq: r.get(5)?,
            transport: r.get(6)?,
            source: r.get(7)?,
            path: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
