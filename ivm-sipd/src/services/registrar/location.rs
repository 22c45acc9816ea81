//! The location service (RFC 3261 §10.3): address-of-record → contact bindings in memory,
//! updated by REGISTER under one lock so concurrent registrations of one AOR apply in order,
//! and mirrored to the store as binding changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::stack::transport::TransportKind;
use crate::store::registrations::{BindingChange, BindingRow};

/// One contact bound to an AOR.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The contact URI as the phone registered it (no `<>`).
    pub contact: String,
    pub expires_at: i64,
    pub q: Option<f32>,
    pub call_id: String,
    pub cseq: u32,
    pub transport: TransportKind,
    /// Where the REGISTER came from (the flow to reach a phone behind NAT).
    pub source: SocketAddr,
    /// The proxies between us and the phone (the REGISTER's Path, RFC 3327), first hop
    /// first, as one comma-separated value; empty when the phone registered directly.
    pub path: String,
}

/// One contact of a REGISTER, already checked: `expires` 0 removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpdate {
    pub contact: String,
    pub expires: u32,
    pub q: Option<f32>,
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOp {
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    Update(Vec<ContactUpdate>),
    /// No Contact: just list the bindings.
    Query,
}

/// A REGISTER the location service refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// RFC 3261 §10.3 step 7: same Call-ID with a CSeq not above the stored one.
    #[error("REGISTER out of order (CSeq not above the binding's)")]
    OutOfOrder,
}

/// The bindings of every AOR.
#[derive(Debug, Default)]
pub struct LocationService {
    bindings: Mutex<HashMap<String, Vec<Binding>>>,
}

impl LocationService {
    /// Rebuilds the service from stored rows.
    pub fn from_rows(rows: Vec<BindingRow>) -> LocationService {
        let mut map: HashMap<String, Vec<Binding>> = HashMap::new();
        for r in rows {
            let transport = if r.transport.eq_ignore_ascii_case("tcp") {
                TransportKind::Tcp
            } else if r.transport.eq_ignore_ascii_case("tls") {
                TransportKind::Tls
            } else {
                TransportKind::Udp
            };
            let Ok(source) = r.source.parse() else { continue };
            map.entry(r.aor).or_default().push(Binding {
                contact: r.contact,
                expires_at: r.expires_at,
                q: r.q,
                call_id: r.call_id,
                cseq: r.cseq,
                transport,
                source,
                path: r.path,
            });
        }
        LocationService {
            bindings: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Binding>>> {
        self.bindings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The unexpired bindings of an AOR.
    pub fn lookup(&self, aor: &str, now: i64) -> Vec<Binding> {
        self.lock()
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// The live bindings of `aor` in the order to try them: highest q first and, among equal
    /// q, the one registered (or refreshed) last first — a phone that restarted and registered
    /// a new Contact is reached at that one, not at the binding its crash left behind.
    pub fn lookup_ordered(&self, aor: &str, now: i64) -> Vec<Binding> {
        let mut bindings = self.lookup(aor, now);
        bindings.sort_by(|a, b| {
            let (qa, qb) = (a.q.unwrap_or(1.0), b.q.unwrap_or(1.0));
            qb.total_cmp(&qa).then(b.expires_at.cmp(&a.expires_at))
        });
        bindings
    }

    /// Drops one binding (its phone answered that the contact does not exist); the change
    /// for the store, if there was such a binding.
    pub fn drop_contact(&self, aor: &str, contact: &str) -> Option<BindingChange> {
        let mut map = self.lock();
        let list = map.get_mut(aor)?;
        let before = list.len();
        list.retain(|b| b.contact != contact);
        if list.is_empty() {
            map.remove(aor);
        }
        (map.get(aor).map_or(0, Vec::len) < before).then(|| BindingChange::Remove {
            aor: aor.to_owned(),
            contact: contact.to_owned(),
        })
    }

    /// Number of AORs with at least one binding.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a REGISTER. Calls `persist` with the changes while still holding the lock, so
    /// the store sees changes of one AOR in the order they were made. Returns the bindings now
    /// current.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        aor: &str,
        op: &RegisterOp,
        call_id: &str,
        cseq: u32,
        transport: TransportKind,
        source: SocketAddr,
        path: &str,
        now: i64,
        persist: impl FnOnce(Vec<BindingChange>),
    ) -> Result<Vec<Binding>, LocationError> {
        let mut map = self.lock();
        let list = map.entry(aor.to_owned()).or_default();
        let mut changes = Vec::new();
        for b in list.iter().filter(|b| b.expires_at <= now) {
            changes.push(BindingChange::Remove {
                aor: aor.to_owned(),
                contact: b.contact.clone(),
            });
        }
        list.retain(|b| b.expires_at > now);
        let stale = |b: &Binding| b.call_id == call_id && b.cseq >= cseq;
        match op {
            RegisterOp::Query => {}
            RegisterOp::RemoveAll => {
                if list.iter().any(stale) {
                    return Err(LocationError::OutOfOrder);
                }
                for b in list.drain(..) {
                    changes.push(BindingChange::Remove {
                        aor: aor.to_owned(),
                        contact: b.contact,
                    });
                }
            }
            RegisterOp::Update(updates) => {
                for u in updates {
                    if list.iter().any(|b| b.contact == u.contact && stale(b)) {
                        return Err(LocationError::OutOfOrder);
                    }
                }
                for u in updates {
                    let pos = list.iter().position(|b| b.contact == u.contact);
                    if u.expires == 0 {
                        if let Some(i) = pos {
                            list.remove(i);
                            changes.push(BindingChange::Remove {
                                aor: aor.to_owned(),
                                contact: u.contact.clone(),
                            });
                        }
                        continue;
                    }
                    let b = Binding {
                        contact: u.contact.clone(),
                        expires_at: now + i64::from(u.expires),
                        q: u.q,
                        call_id: call_id.to_owned(),
                        cseq,
                        transport,
                        source,
                        path: path.to_owned(),
                    };
                    changes.push(BindingChange::Upsert(BindingRow {
                        aor: aor.to_owned(),
                        contact: b.contact.clone(),
                        expires_at: b.expires_at,
                        q: b.q,
                        call_id: b.call_id.clone(),
                        cseq,
                        transport: transport.via_name().to_ascii_lowercase(),
                        source: source.to_string(),
                        path: path.to_owned(),
                    }));
                    match pos {
                        Some(i) => list[i] = b,
                        None => list.push(b),
                    }
                }
            }
        }
        let current = list.clone();
        if list.is_empty() {
            map.remove(aor);
        }
        if !changes.is_empty() {
            persist(changes);
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(contact: &str, expires: u32) -> RegisterOp {
        RegisterOp::Update(vec![ContactUpdate {
            contact: contact.into(),
            expires,
            q: None,
        }])
    }

    #[test]
    fn the_contact_registered_last_is_tried_first_and_a_dead_one_can_be_dropped() {
        let loc = LocationService::default();
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap_or_else(|_| unreachable!());
        let reg = |contact: &str, cid: &str, now: i64| {
            loc.register(
                "1001",
                &upd(contact, 600),
                cid,
                1,
                TransportKind::Udp,
                src,
                "",
                now,
                |_| {},
            )
        };
        assert!(reg("sip:1001@old", "run-1", 1000).is_ok());
        assert!(reg("sip:1001@new", "run-2", 1005).is_ok());
        let order: Vec<String> = loc
            .lookup_ordered("1001", 1010)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(order, ["sip:1001@new", "sip:1001@old"]);
        assert_eq!(
            loc.drop_contact("1001", "sip:1001@old"),
            Some(BindingChange::Remove {
                aor: "1001".into(),
                contact: "sip:1001@old".into()
            })
        );
        assert_eq!(loc.drop_contact("1001", "sip:1001@old"), None, "only once");
        assert_eq!(loc.lookup("1001", 1010).len(), 1);
    }

    #[test]
    fn bindings_add_refresh_remove_and_order() {
        let loc = LocationService::default();
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap_or_else(|_| unreachable!());
        let mut persisted = Vec::new();
        let reg = |op: &RegisterOp, cid: &str, cseq: u32, now: i64, persisted: &mut Vec<BindingChange>| {
            loc.register("1001", op, cid, cseq, TransportKind::Udp, src, "", now, |c| {
                persisted.extend(c)
            })
        };
        assert_eq!(
            reg(&upd("sip:a@h", 60), "c1", 1, 1000, &mut persisted).map(|v| v.len()),
            Ok(1)
        );
        assert_eq!(
            reg(&upd("sip:b@h", 60), "c2", 1, 1000, &mut persisted).map(|v| v.len()),
            Ok(2)
        );
        assert_eq!(
            reg(&upd("sip:a@h", 60), "c1", 1, 1001, &mut persisted),
            Err(LocationError::OutOfOrder)
        );
        assert_eq!(
            reg(&upd("sip:a@h", 0), "c1", 2, 1001, &mut persisted).map(|v| v.len()),
            Ok(1)
        );
        assert_eq!(loc.lookup("1001", 1001).len(), 1);
        assert!(loc.lookup("1001", 1061).is_empty(), "expired");
        assert_eq!(
            reg(&RegisterOp::RemoveAll, "c3", 1, 1002, &mut persisted).map(|v| v.len()),
            Ok(0)
        );
        assert!(loc.is_empty());
        assert_eq!(persisted.len(), 4);
    }
}
