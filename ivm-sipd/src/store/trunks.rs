//! Stored trunks: the `trunks` table that `ivm-sipd trunk add|list|remove` edits while the
//! server runs (the runtime table, `TrunkTable` of `services::trunk`, re-reads it). Rows are
//! validated before they are written; routes and trusted networks are JSON arrays.

use rusqlite::{Connection, params};

use super::trunk_spec::{TrunkSpec, TrunkTransport};
use super::{StoreError, unix_now};

/// Adds a trunk after checking its syntax (the address is resolved only when the table is built).
pub fn add(conn: &Connection, spec: &TrunkSpec) -> Result<(), StoreError> {
    spec.validate()?;
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let res = conn.execute(
        "INSERT INTO trunks (name, address, transport, routes, trusted, created_at, asserts_identity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            spec.name,
            spec.address,
            spec.transport.as_str(),
            json(&spec.routes),
            json(&spec.trusted),
            unix_now(),
            spec.asserts_identity
        ],
    );
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::TrunkExists(spec.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// All stored trunks in the order they were added.
pub fn list(conn: &Connection) -> Result<Vec<TrunkSpec>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, address, transport, routes, trusted, asserts_identity FROM trunks ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, bool>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, address, transport, routes, trusted, asserts_identity) = row?;
        let list = |field: &'static str, text: String| {
            serde_json::from_str::<Vec<String>>(&text).map_err(|_| StoreError::Invalid {
                field,
                value: text,
                why: "is not a JSON array of strings",
            })
        };
        out.push(TrunkSpec {
            transport: TrunkTransport::parse(&transport).ok_or_else(|| StoreError::Invalid {
                field: "trunk transport",
                value: transport.clone(),
                why: "must be udp or tcp",
            })?,
            routes: list("trunk routes", routes)?,
            trusted: list("trunk trusted networks", trusted)?,
            name,
            address,
            asserts_identity,
        });
    }
    Ok(out)
}

/// Removes a stored trunk; false when there was none.
pub fn remove(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM trunks WHERE name = ?1", [name])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::trunk_spec::TrunkError;

    #[test]
    fn add_list_remove() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::DataDir {
            path: "tmp".into(),
            source: e,
        })?;
        let conn = super::super::open(dir.path())?;
        let gw = TrunkSpec {
            name: "gw".into(),
            address: "gw.example.com:5060".into(),
            transport: TrunkTransport::Tcp,
            routes: vec!["\\+49.*".into()],
            trusted: vec!["192.0.2.0/24".into()],
            asserts_identity: false,
        };
        add(&conn, &gw)?;
        let pstn = TrunkSpec {
            name: "pstn".into(),
            address: "192.0.2.1:5060".into(),
            transport: TrunkTransport::Udp,
            routes: Vec::new(),
            trusted: Vec::new(),
            asserts_identity: true,
        };
        add(&conn, &pstn)?;
        assert!(matches!(add(&conn, &gw), Err(StoreError::TrunkExists(n)) if n == "gw"));
        let bad = TrunkSpec {
            routes: vec!["(".into()],
            name: "bad".into(),
            ..pstn.clone()
        };
        let err = add(&conn, &bad);
        assert!(
            matches!(err, Err(StoreError::Trunk(TrunkError::Route { .. }))),
            "{err:?}"
        );
        assert_eq!(list(&conn)?, vec![gw, pstn]);
        assert!(remove(&conn, "gw")?);
        assert!(!remove(&conn, "gw")?);
        assert_eq!(list(&conn)?.len(), 1);
        Ok(())
    }
}
