//! Subscribers: number, display name, MSISDN, retrieval PIN (stored hashed) and digest
//! credentials (stored as HA1 per algorithm, never the password); add, list, remove and CSV
//! import.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{StoreError, unix_now};
use crate::stack::digest::{Algorithm, ha1};

/// What an admin gives to create a subscriber.
#[derive(Debug, Clone, Default)]
pub struct NewSubscriber {
    pub number: String,
    pub password: String,
    pub name: Option<String>,
    pub msisdn: Option<String>,
    pub pin: Option<String>,
}

/// A subscriber as listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Subscriber {
    pub number: String,
    pub name: Option<String>,
    pub msisdn: Option<String>,
    pub has_pin: bool,
}

/// What digest authentication needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSecrets {
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

impl DigestSecrets {
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

fn invalid(field: &'static str, value: &str, why: &'static str) -> StoreError {
    StoreError::Invalid {
        field,
        value: value.to_owned(),
        why,
    }
}

/// A subscriber number: an extension, an E.164 number (`+` and digits) or a user name of
/// letters, digits and `. _ -`.
pub fn check_number(number: &str) -> Result<(), StoreError> {
    let body = number.strip_prefix('+').unwrap_or(number);
    let ok = !body.is_empty()
        && number.len() <= 64
        && if number.starts_with('+') {
            body.bytes().all(|b| b.is_ascii_digit())
        } else {
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "number",
            number,
            "use digits, an E.164 +number, or letters, digits and . _ -",
        ))
    }
}

fn check(s: &NewSubscriber) -> Result<(), StoreError> {
    check_number(&s.number)?;
    if s.password.is_empty() {
        return Err(invalid("password", "", "must not be empty"));
    }
    if let Some(m) = &s.msisdn {
        let body = m.strip_prefix('+').unwrap_or(m);
        if body.is_empty() || body.len() > 15 || !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "msisdn",
                m,
                "must be up to 15 digits, optionally with a leading +",
            ));
        }
    }
    if let Some(p) = &s.pin
        && (p.len() < 4 || p.len() > 12 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid("pin", p, "must be 4 to 12 digits"));
    }
    Ok(())
}

/// The stored form of a PIN: SHA-256 over the number and the PIN.
pub fn pin_hash(number: &str, pin: &str) -> String {
    hex::encode(Sha256::digest(format!("{number}:{pin}").as_bytes()))
}

fn insert(conn: &Connection, s: &NewSubscriber, realm: &str) -> Result<(), StoreError> {
    check(s)?;
    let res = conn.execute(
        "INSERT INTO subscribers (number, name, msisdn, pin_hash, realm, ha1_md5, ha1_sha256, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.number,
            s.name,
            s.msisdn,
            s.pin.as_deref().map(|p| pin_hash(&s.number, p)),
            realm,
            ha1(Algorithm::Md5, &s.number, realm, &s.password),
            ha1(Algorithm::Sha256, &s.number, realm, &s.password),
            unix_now()
        ],
    );
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::SubscriberExists(s.number.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds one subscriber.
pub fn add(conn: &Connection, s: &NewSubscriber, realm: &str) -> Result<(), StoreError> {
    insert(conn, s, realm)
}

/// All subscribers, by number.
pub fn list(conn: &Connection) -> Result<Vec<Subscriber>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT number, name, msisdn, pin_hash IS NOT NULL FROM subscribers ORDER BY number")?;
    let rows = stmt.query_map([], |r| {
        Ok(Subscriber {
            number: r.get(0)?,
            name: r.get(1)?,
            msisdn: r.get(2)?,
            has_pin: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes a subscriber and its registrations; false when there was none.
pub fn remove(conn: &mut Connection, number: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute("DELETE FROM subscribers WHERE number = ?1", [number])?;
    tx.execute("DELETE FROM registrations WHERE aor = ?1", [number])?;
    tx.commit()?;
    Ok(n > 0)
}

/// The digest secrets of a subscriber, if it exists.
pub fn digest_secrets(conn: &Connection, number: &str) -> Result<Option<DigestSecrets>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT realm, ha1_md5, ha1_sha256 FROM subscribers WHERE number = ?1")?;
    Ok(stmt
        .query_row([number], |r| {
            Ok(DigestSecrets {
                realm: r.get(0)?,
                ha1_md5: r.get(1)?,
                ha1_sha256: r.get(2)?,
            })
        })
        .optional()?)
}

/// The subscriber a caller is: its number, or the subscriber whose MSISDN it is (a leading `+`
/// or `00` ignored).
pub fn owner_of(conn: &Connection, caller: &str) -> Result<Option<String>, StoreError> {
    let norm = caller.trim_start_matches('+').trim_start_matches("00");
    Ok(conn
        .query_row(
            "SELECT number FROM subscribers WHERE number = ?1
             OR ltrim(ltrim(msisdn, '+'), '0') = ltrim(?2, '0') ORDER BY number = ?1 DESC LIMIT 1",
            params![caller, norm],
            |r| r.get(0),
        )
        .optional()?)
}

/// Imports a CSV file with the header `number,password,name,msisdn,pin` (the last three may be
/// empty) in one transaction: either every row is added or none, and an error names the line.
pub fn import_csv(conn: &mut Connection, path: &Path, realm: &str) -> Result<usize, StoreError> {
    let csv_err = |line: u64, why: String| StoreError::Csv {
        path: path.to_owned(),
        line,
        why,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_err(0, e.to_string()))?;
    let headers = reader.headers().map_err(|e| csv_err(1, e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(c_number), Some(c_password)) = (col("number"), col("password")) else {
        return Err(csv_err(
            1,
            "the header line must name the columns number,password[,name,msisdn,pin]".into(),
        ));
    };
    let (c_name, c_msisdn, c_pin) = (col("name"), col("msisdn"), col("pin"));
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut count = 0;
    for record in reader.records() {
        let record = record.map_err(|e| csv_err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let s = NewSubscriber {
            number: field(Some(c_number)).unwrap_or_default(),
            password: field(Some(c_password)).unwrap_or_default(),
            name: field(c_name),
            msisdn: field(c_msisdn),
            pin: field(c_pin),
        };
        insert(&tx, &s, realm).map_err(|e| csv_err(line, e.to_string()))?;
        count += 1;
    }
    tx.commit()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_remove_import() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::DataDir {
            path: "tmp".into(),
            source: e,
        })?;
        let mut conn = super::super::open(dir.path())?;
        add(
            &conn,
            &NewSubscriber {
                number: "1001".into(),
                password: "pw".into(),
                pin: Some("1234".into()),
                ..Default::default()
            },
            "r",
        )?;
        assert!(matches!(
            add(
                &conn,
                &NewSubscriber {
                    number: "1001".into(),
                    password: "x".into(),
                    ..Default::default()
                },
                "r"
            ),
            Err(StoreError::SubscriberExists(_))
        ));
        assert!(
            add(
                &conn,
                &NewSubscriber {
                    number: "10 01".into(),
                    password: "x".into(),
                    ..Default::default()
                },
                "r"
            )
            .is_err()
        );
        let secrets = digest_secrets(&conn, "1001")?.ok_or(StoreError::WriterGone)?;
        assert_eq!(secrets.ha1_md5, ha1(Algorithm::Md5, "1001", "r", "pw"));
        let csv = dir.path().join("s.csv");
        std::fs::write(
            &csv,
            "number,password,name,msisdn,pin\n2001,a,Alice,+4915112345678,\n2002,b,,,\n",
        )
        .map_err(|e| StoreError::DataDir {
            path: csv.clone(),
            source: e,
        })?;
        assert_eq!(import_csv(&mut conn, &csv, "r")?, 2);
        std::fs::write(&csv, "number,password\n3001,a\n3002,\n").map_err(|e| StoreError::DataDir {
            path: csv.clone(),
            source: e,
        })?;
        let err = import_csv(&mut conn, &csv, "r")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 3"), "{err}");
        assert_eq!(list(&conn)?.len(), 3, "the failed import added nothing");
        assert!(remove(&mut conn, "2002")?);
        assert!(!remove(&mut conn, "2002")?);
        Ok(())
    }
}
