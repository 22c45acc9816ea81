//! A call layer for tests of the services above it: the real `Calls` over an in-memory SIP
//! wire (no sockets; what the services send arrives on `wire`), a store and a fragment store
//! in a temporary directory, and the event stream calls emit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::fragment_store::{FragmentStore, FragmentStoreConfig};
use ivm_media::port_pool::PortPool;
use tokio::sync::mpsc;

use super::context::{CallSettings, Calls};
use super::events::{CallEvent, CallEvents};
use crate::config::Config;
use crate::services::dial_plan::DialPlan;
use crate::services::registrar::auth::DigestAuth;
use crate::services::registrar::location::LocationService;
use crate::services::trunk::TrunkTable;
use crate::stack::dialog::DialogTable;
use crate::stack::endpoint;
use crate::stack::router::Router;
use crate::stack::transaction::Timers;
use crate::stack::transport::{Inbound, Peer, Transmitter};
use crate::store::writer::StoreHandle;

/// The call layer and what a test observes of it.
pub struct TestCalls {
    pub calls: Arc<Calls>,
    /// Every datagram the SIP stack sent, with its destination.
    pub wire: mpsc::UnboundedReceiver<(Peer, Bytes)>,
    /// What calls emitted.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub location: Arc<LocationService>,
    /// Keeps the endpoint's input open.
    pub inbound: mpsc::Sender<Inbound>,
    pub dir: tempfile::TempDir,
}

/// A call layer with the default configuration; panics when the temporary directory or the
/// stores cannot be made (a broken test machine, not a finding).
pub fn calls() -> TestCalls {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let config = Config::default();
    let store = StoreHandle::start(dir.path()).unwrap_or_else(|e| panic!("store: {e}"));
    let auth = Arc::new(DigestAuth::new(
        &config.registrar,
        config.sip.realm.clone(),
        store.clone(),
    ));
    let (transmitter, wire) = Transmitter::memory();
    let (inbound, inbound_rx) = mpsc::channel(16);
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!());
    let (core, core_loop) = endpoint::core(Timers::default(), transmitter, inbound_rx, local);
    let dialogs = DialogTable::default();
    tokio::spawn(core_loop.run(
        Router::new(core.clone(), dialogs.clone()).build(),
        std::future::pending(),
    ));
    let fcfg = FragmentStoreConfig::new(dir.path().join("fragments"), crate::store::db_path(dir.path()));
    let (fragments, _) = FragmentStore::open(fcfg).unwrap_or_else(|e| panic!("fragment store: {e}"));
    let location = Arc::new(LocationService::from_rows(Vec::new()));
    let (events, events_rx) = CallEvents::channel();
    let calls = Arc::new(Calls {
        core,
        dialogs,
        auth,
        location: location.clone(),
        trunks: TrunkTable::new(&[]).unwrap_or_else(|e| panic!("trunks: {e}")),
        dial_plan: DialPlan::from_config(&config.calls).unwrap_or_else(|e| panic!("dial plan: {e}")),
        store,
        fragments,
        ports: PortPool::new(46_000, 46_099).unwrap_or_else(|e| panic!("ports: {e}")),
        settings: CallSettings {
            ring_timeout: Duration::from_secs(2),
            beep_ms: 0,
            max_message: Duration::from_secs(10),
            ring_frames: 0,
            catch_up_speed: 2.0,
            domain: config.sip.realm.clone(),
            media_ip: local.ip(),
            callerid_ring: Duration::from_secs(1),
            max_calls: 100,
        },
        events,
        presence: Default::default(),
        live: Default::default(),
    });
    TestCalls {
        calls,
        wire,
        events: events_rx,
        location,
        inbound,
        dir,
    }
}
