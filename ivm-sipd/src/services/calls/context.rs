//! What every leg of every call shares: the [`Calls`] context (SIP core, dialogs, registrar
//! lookups, trunks, dial plan, store, fragment store, RTP ports, settings, the event sink and
//! the messages being recorded now) and the codecs we offer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ivm_media::codec::Codec;
use ivm_media::fanout::{FrameSource, StreamHandle};
use ivm_media::fragment_store::FragmentStore;
use ivm_media::port_pool::PortPool;

use super::events::{CallEvent, CallEvents};
use crate::services::dial_plan::{DialPlan, RetrievalKind};
use crate::services::presence::Presence;
use crate::services::registrar::auth::DigestAuth;
use crate::services::registrar::location::LocationService;
use crate::services::trunk::TrunkTable;
use crate::stack::dialog::DialogTable;
use crate::stack::endpoint::SipCore;
use crate::store::StoreError;
use crate::store::cdrs::{self, Cdr};
use crate::store::writer::StoreHandle;
use crate::store::{mailbox, messages};

/// Codecs we offer and accept, in order of preference.
pub const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// The payload type we offer for RFC 4733 telephone-events.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The knobs of the call layer (from `[calls]` and `[media]`).
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub ring_timeout: Duration,
    pub beep_ms: u32,
    pub max_message: Duration,
    pub ring_frames: u32,
    pub catch_up_speed: f64,
    /// The SIP domain used in the From of outbound legs.
    pub domain: String,
    /// The address of RTP sockets and SDP.
    pub media_ip: IpAddr,
    /// How long the smart caller-ID call rings before it is cancelled.
    pub callerid_ring: Duration,
    /// Calls taken at once; a new INVITE beyond is answered `503`.
    pub max_calls: usize,
}

/// Everything a call needs; shared by every leg task.
pub struct Calls {
    pub core: SipCore,
    pub dialogs: DialogTable,
    pub auth: Arc<DigestAuth>,
    pub location: Arc<LocationService>,
    pub trunks: TrunkTable,
    pub dial_plan: DialPlan,
    pub store: StoreHandle,
    pub fragments: FragmentStore,
    pub ports: PortPool,
    pub settings: CallSettings,
    /// What calls report (deliveries ended, mailboxes changed); notifications listen.
    pub events: CallEvents,
    /// What subscribers published about themselves: a busy or closed target is not rung.
    pub presence: Presence,
    /// Messages being recorded now, by id: retrieval and store-and-forward listen live.
    pub live: Mutex<HashMap<i64, StreamHandle>>,
}

impl Calls {
    /// Sets a delivery's state, logging (not failing) on store trouble.
    pub(crate) async fn set_delivery(&self, message_id: i64, target: &str, state: &'static str, status: Option<u16>) {
        let target_owned = target.to_owned();
        let res = self
            .store
            .run(move |conn| messages::set_delivery(conn, message_id, &target_owned, state, status))
            .await;
        if let Err(e) = res {
            tracing::error!(message_id, target, state, error = %e, "delivery state not saved");
        }
        tracing::info!(message_id, target, state, "delivery");
    }

    pub(crate) async fn write_cdr(&self, cdr: Cdr) {
        if let Err(e) = self.store.run(move |conn| cdrs::insert(conn, &cdr)).await {
            tracing::error!(error = %e, "CDR not saved");
        }
    }

    /// The retrieval number of a message in this dial plan (`98` + 6-digit id + type 1).
    pub fn retrieval_number(&self, message_id: i64) -> Option<String> {
        let id = u32::try_from(message_id.rem_euclid(1_000_000)).ok()?;
        self.dial_plan.retrieval_number(id, RetrievalKind::Ivm)
    }

    /// A message's row (sender, state, duration), or `None` when it does not exist or the
    /// store is unavailable (logged).
    pub async fn message(&self, message_id: i64) -> Option<mailbox::Entry> {
        match self.store.run(move |conn| mailbox::message(conn, message_id)).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(message_id, error = %e, "message unavailable");
                None
            }
        }
    }

    /// A subscriber's notification profile, or `None` when it is no subscriber (or the store
    /// is unavailable, logged).
    pub async fn profile(&self, number: &str) -> Option<mailbox::Profile> {
        let n = number.to_owned();
        match self.store.run(move |conn| mailbox::profile(conn, &n)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(number, error = %e, "subscriber profile unavailable");
                None
            }
        }
    }

    /// The live stream of a message being recorded.
    pub fn live_stream(&self, message_id: i64) -> Option<StreamHandle> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&message_id)
            .cloned()
    }

    /// Reports what happened (see [`CallEvent`]).
    pub(crate) fn emit(&self, event: CallEvent) {
        self.events.emit(event);
    }

    pub(crate) fn set_live(&self, message_id: i64, stream: Option<StreamHandle>) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match stream {
            Some(s) => live.insert(message_id, s),
            None => live.remove(&message_id),
        };
    }

    /// The address SIP is reached at over `transport` (Via, Contact).
    pub fn sip_addr(&self, transport: crate::stack::transport::TransportKind) -> SocketAddr {
        self.core.local_addr_for(transport)
    }
}

/// Lets late listeners read frames that fell out of a stream's memory from the fragment store.
pub struct StoreFrames(pub FragmentStore);

impl FrameSource for StoreFrames {
    fn read_range(&self, message_id: i64, from: u32, max: u32) -> Result<Vec<Bytes>, String> {
        self.0.read_range(message_id, from, max).map_err(|e| e.to_string())
    }
}

/// Store errors of the call layer are logged where they happen; this keeps the type in one place.
pub type CallResult<T> = Result<T, StoreError>;
