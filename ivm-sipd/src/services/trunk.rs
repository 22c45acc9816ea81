//! Trunks: the SIP peers (PSTN gateways, PBXs, other IVM servers) that external numbers are
//! routed to and whose requests are trusted by source address. The trunk definition
//! ([`TrunkSpec`], as written in `[[trunk]]` config tables and by `ivm-sipd trunk add`) and its
//! validation live with the store that keeps it ([`crate::store::trunk_spec`]); this module
//! owns the resolved [`Trunk`] and the runtime [`TrunkTable`]: config trunks merged with the stored ones,
//! re-read while the server runs when `ivm-sipd trunk add|remove` changes the store.
//!
//! **Config wins on a name clash**: a stored trunk with the name of a `[[trunk]]` table in the
//! config file is ignored (and `trunk list` says so). Order: config trunks in file order, then
//! stored trunks in the order they were added; routing takes the first trunk that matches.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use rusqlite::Connection;
use serde::Serialize;

use crate::stack::transport::TransportKind;
pub use crate::store::trunk_spec::{TrunkError, TrunkSpec, TrunkTransport, parse_network, validate_all};
use crate::store::{self, StoreError};

/// How often the table checks the store for changes made by the admin commands.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

impl From<TrunkTransport> for TransportKind {
    fn from(t: TrunkTransport) -> TransportKind {
        match t {
            TrunkTransport::Udp => TransportKind::Udp,
            TrunkTransport::Tcp => TransportKind::Tcp,
        }
    }
}

/// Where a trunk was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkOrigin {
    Config,
    Store,
}

/// A usable trunk: address resolved, routes compiled (anchored), networks parsed.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// The address as configured (`host:port`): the host part for Request-URIs.
    pub host: String,
    pub address: SocketAddr,
    pub transport: TransportKind,
    /// Anchored: `^(?:route)$`.
    pub routes: Vec<Regex>,
    pub trusted: Vec<IpNet>,
    /// Its caller identity names a subscriber (see [`TrunkSpec::asserts_identity`]).
    pub asserts_identity: bool,
    pub origin: TrunkOrigin,
}

impl Trunk {
    /// Whether any route matches the whole number.
    pub fn routes_number(&self, number: &str) -> bool {
        self.routes.iter().any(|r| r.is_match(number))
    }

    /// Whether `ip` lies in a trusted network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }
}

impl TrunkSpec {
    /// Validates and resolves the address (a blocking DNS lookup for host names).
    pub fn compile(&self, origin: TrunkOrigin) -> Result<Trunk, TrunkError> {
        let (routes, trusted) = self.parts()?;
        let address = match self.address.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let resolve_err = |error: String| TrunkError::Resolve {
                    trunk: self.name.clone(),
                    address: self.address.clone(),
                    error,
                };
                self.address
                    .to_socket_addrs()
                    .map_err(|e| resolve_err(e.to_string()))?
                    .next()
                    .ok_or_else(|| resolve_err("no address".into()))?
            }
        };
        Ok(Trunk {
            name: self.name.clone(),
            host: self.address.clone(),
            address,
            transport: self.transport.into(),
            routes,
            trusted,
            asserts_identity: self.asserts_identity,
            origin,
        })
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Config trunks, then the usable stored ones.
    trunks: Vec<Trunk>,
    /// The stored rows this snapshot was built from (to skip rebuilding when unchanged).
    stored: Vec<TrunkSpec>,
}

#[derive(Debug)]
struct Inner {
    config: Vec<Trunk>,
    current: RwLock<Arc<Snapshot>>,
}

/// The runtime trunk table: cheap to clone and share (one `Arc`); lookups take a read lock
/// and never touch SQLite. [`TrunkTable::open`] starts a thread that re-reads the stored
/// trunks when SQLite's `data_version` shows another connection committed (checked every
/// [`RELOAD_CHECK`]), so `ivm-sipd trunk add|remove` takes effect within about a second.
#[derive(Debug, Clone)]
pub struct TrunkTable {
    inner: Arc<Inner>,
}

impl TrunkTable {
    /// A table of the config trunks only; errors when one of them is invalid or does not resolve.
    pub fn new(config: &[TrunkSpec]) -> Result<TrunkTable, TrunkError> {
        validate_all(config).map_err(|(_, e)| e)?;
        let config = config
            .iter()
            .map(|s| s.compile(TrunkOrigin::Config))
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = Snapshot {
            trunks: config.clone(),
            stored: Vec::new(),
        };
        Ok(TrunkTable {
            inner: Arc::new(Inner {
                config,
                current: RwLock::new(Arc::new(snapshot)),
            }),
        })
    }

    /// The config trunks merged with those stored in the data directory's database, kept up
    /// to date by a watcher thread that ends when the last clone of the table is dropped.
    pub fn open(config: &[TrunkSpec], data_dir: &Path) -> Result<TrunkTable, TrunkError> {
        let table = TrunkTable::new(config)?;
        let conn = store::open(data_dir)?;
        let seen = data_version(&conn);
        table.reload(&conn)?;
        let weak = Arc::downgrade(&table.inner);
        std::thread::Builder::new()
            .name("ivm-trunks".into())
            .spawn(move || watch(weak, conn, seen))
            .map_err(|e| {
                TrunkError::from(StoreError::DataDir {
                    path: data_dir.to_owned(),
                    source: e,
                })
            })?;
        Ok(table)
    }

    /// Re-reads the stored trunks from `conn`. Stored trunks that are invalid or do not
    /// resolve, and those whose name a config trunk has, are skipped with a warning.
    /// Returns whether the table changed.
    pub fn reload(&self, conn: &Connection) -> Result<bool, TrunkError> {
        let stored = store::trunks::list(conn)?;
        if self.snapshot().stored == stored {
            return Ok(false);
        }
        let mut trunks = self.inner.config.clone();
        for spec in &stored {
            if trunks.iter().any(|t| t.name == spec.name) {
                tracing::warn!(trunk = %spec.name, "stored trunk ignored: the config file defines a trunk of that name");
                continue;
            }
            match spec.compile(TrunkOrigin::Store) {
                Ok(t) => trunks.push(t),
                Err(e) => tracing::warn!("stored trunk ignored: {e}"),
            }
        }
        tracing::info!(trunks = trunks.len(), "trunk table loaded");
        *self.inner.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot { trunks, stored });
        Ok(true)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first trunk (config first, then stored in order of addition) one of whose routes
    /// matches the whole `number`.
    pub fn route(&self, number: &str) -> Option<Trunk> {
        self.snapshot().trunks.iter().find(|t| t.routes_number(number)).cloned()
    }

    /// The first trunk that trusts the source address `ip`.
    pub fn trusted(&self, ip: IpAddr) -> Option<Trunk> {
        self.snapshot().trunks.iter().find(|t| t.trusts(ip)).cloned()
    }

    /// Whether a trunk trusts the source address `ip`.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.snapshot().trunks.iter().any(|t| t.trusts(ip))
    }

    /// The trunk called `name`.
    pub fn get(&self, name: &str) -> Option<Trunk> {
        self.snapshot().trunks.iter().find(|t| t.name == name).cloned()
    }

    /// Every usable trunk, in lookup order.
    pub fn all(&self) -> Vec<Trunk> {
        self.snapshot().trunks.clone()
    }
}

/// SQLite's `data_version` of `conn`: it changes when another connection commits.
fn data_version(conn: &Connection) -> Option<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
        .map_err(|e| tracing::warn!("trunk table: reading data_version: {e}"))
        .ok()
}

/// The watcher thread: polls `PRAGMA data_version` and reloads when it changed.
fn watch(table: Weak<Inner>, conn: Connection, mut seen: Option<i64>) {
    loop {
        std::thread::sleep(RELOAD_CHECK);
        let Some(inner) = table.upgrade() else { return };
        let now = data_version(&conn);
        if now != seen {
            let t = TrunkTable { inner };
            match t.reload(&conn) {
                Ok(_) => seen = now,
                Err(e) => tracing::warn!("trunk table: reload failed, keeping the old one: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, address: &str, routes: &[&str], trusted: &[&str]) -> TrunkSpec {
        TrunkSpec {
            name: name.into(),
            address: address.into(),
            transport: TrunkTransport::Udp,
            routes: routes.iter().map(|s| s.to_string()).collect(),
            trusted: trusted.iter().map(|s| s.to_string()).collect(),
            asserts_identity: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn validation_errors_are_clear() {
        let e = |s: TrunkSpec| s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e(spec("a b", "192.0.2.1:5060", &[], &[])).contains("trunk name \"a b\""));
        for bad in [
            "192.0.2.1",
            "host",
            "host:0",
            "host:99999",
            ":5060",
            "ho st:5060",
            "[::1]",
            "::1:5060x",
        ] {
            let msg = e(spec("gw", bad, &[], &[]));
            assert!(msg.contains("address") && msg.contains(bad), "{bad}: {msg}");
        }
        for good in [
            "192.0.2.1:5060",
            "[2001:db8::1]:5080",
            "gw.example.com:5060",
            "localhost:5070",
        ] {
            assert!(spec("gw", good, &[], &[]).validate().is_ok(), "{good}");
        }
        let msg = e(spec("gw", "192.0.2.1:5060", &["\\+49.*", "(unclosed"], &[]));
        assert!(msg.contains("route \"(unclosed\"") && msg.contains("unclosed"), "{msg}");
        let msg = e(spec("gw", "192.0.2.1:5060", &[], &["10.0.0.0/33"]));
        assert!(msg.contains("trusted \"10.0.0.0/33\""), "{msg}");
        assert_eq!(
            TrunkError::Route {
                trunk: String::new(),
                regex: String::new(),
                error: String::new()
            }
            .key(),
            "routes"
        );
        let dup = validate_all(&[spec("a", "h:1", &[], &[]), spec("a", "h:2", &[], &[])]);
        assert!(matches!(dup, Err((1, TrunkError::Duplicate(_)))));
    }

    #[test]
    fn routing_is_anchored_and_ordered() -> Result<(), TrunkError> {
        let table = TrunkTable::new(&[
            spec("de", "192.0.2.1:5060", &["\\+49\\d+", "0049\\d+"], &["192.0.2.0/24"]),
            spec(
                "any",
                "[2001:db8::1]:5060",
                &["\\+\\d+"],
                &["2001:db8::/32", "198.51.100.7"],
            ),
        ])?;
        assert_eq!(table.route("+4930123456").map(|t| t.name), Some("de".into()));
        assert_eq!(table.route("+3312345").map(|t| t.name), Some("any".into()));
        assert_eq!(table.route("1001").map(|t| t.name), None);
        assert_eq!(table.route("x+4930").map(|t| t.name), None, "anchored at the start");
        assert_eq!(table.route("+49301x").map(|t| t.name), None, "anchored at the end");
        assert_eq!(table.trusted(ip("192.0.2.77")).map(|t| t.name), Some("de".into()));
        assert_eq!(
            table.trusted(ip("::ffff:192.0.2.77")).map(|t| t.name),
            Some("de".into())
        );
        assert_eq!(table.trusted(ip("198.51.100.7")).map(|t| t.name), Some("any".into()));
        assert_eq!(table.trusted(ip("198.51.100.8")).map(|t| t.name), None);
        assert_eq!(table.trusted(ip("2001:db8:1::5")).map(|t| t.name), Some("any".into()));
        let de = table.get("de").ok_or(TrunkError::Duplicate("missing".into()))?;
        assert_eq!(de.address, SocketAddr::from(([192, 0, 2, 1], 5060)));
        assert_eq!(de.transport, TransportKind::Udp);
        assert_eq!(de.origin, TrunkOrigin::Config);
        Ok(())
    }

    #[test]
    fn host_names_resolve_at_load() -> Result<(), TrunkError> {
        let t = spec("lo", "localhost:5070", &[], &[]).compile(TrunkOrigin::Config)?;
        assert_eq!(t.address.port(), 5070);
        assert!(t.address.ip().is_loopback());
        assert_eq!(t.host, "localhost:5070");
        let e = spec("x", "no-such-host.invalid:5060", &[], &[]).compile(TrunkOrigin::Config);
        assert!(matches!(e, Err(TrunkError::Resolve { .. })));
        Ok(())
    }

    #[test]
    fn stored_trunks_merge_and_reload_while_running() -> Result<(), TrunkError> {
        let dir = tempfile::tempdir().map_err(|e| {
            TrunkError::from(StoreError::DataDir {
                path: "tmp".into(),
                source: e,
            })
        })?;
        let table = TrunkTable::open(&[spec("gw", "192.0.2.1:5060", &["\\+49.*"], &[])], dir.path())?;
        assert_eq!(table.all().len(), 1);
        // An admin command on its own connection, as `ivm-sipd trunk add` does.
        let admin = store::open(dir.path())?;
        store::trunks::add(&admin, &spec("pstn", "192.0.2.9:5060", &["\\+.*"], &["192.0.2.9"]))?;
        store::trunks::add(&admin, &spec("gw", "192.0.2.2:5060", &[".*"], &[]))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while table.get("pstn").is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            table.route("+3312").map(|t| t.name),
            Some("pstn".into()),
            "seen without a restart"
        );
        assert_eq!(table.route("+4930").map(|t| t.name), Some("gw".into()), "config first");
        let gw = table.get("gw").map(|t| (t.address, t.origin));
        assert_eq!(
            gw,
            Some((SocketAddr::from(([192, 0, 2, 1], 5060)), TrunkOrigin::Config)),
            "config wins"
        );
        assert_eq!(
            table.trusted(ip("192.0.2.9")).map(|t| t.origin),
            Some(TrunkOrigin::Store)
        );
        assert!(store::trunks::remove(&admin, "pstn")?);
        assert!(table.reload(&admin)?, "explicit reload");
        assert!(table.get("pstn").is_none());
        assert!(!table.reload(&admin)?, "unchanged rows do not rebuild");
        Ok(())
    }
}
