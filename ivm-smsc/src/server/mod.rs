//! The built-in SMSC: a small SMPP 3.4 message centre so that a fresh machine shows SMS
//! notifications with no carrier, and so that tests have a peer they can look inside.
//!
//! It accepts `bind_transmitter` / `bind_receiver` / `bind_transceiver` (any credentials, or the
//! configured ones), answers `submit_sm` with a message id, and after
//! [`ServerConfig::receipt_delay`] sends a delivery receipt `deliver_sm` (`esm_class` 0x04, text
//! `id:X sub:001 dlvrd:001 submit date:… done date:… stat:DELIVRD err:000 text:…`, plus the
//! `receipted_message_id` and `message_state` TLVs) to the submitting session, or to another
//! receiver of the same `system_id`, or holds it until one binds. Each submitted message is also
//! delivered as a plain `deliver_sm` to sessions bound as receivers (and to transceivers whose
//! `address_range` is a prefix of the destination), so a test tool or a developer can watch
//! messages arrive like a handset. `enquire_link` and `unbind` are answered; an unknown or
//! malformed PDU gets `generic_nack`. Every message is logged at info with its decoded text and
//! the last [`ServerConfig::keep_messages`] are kept for [`ServerHandle::messages`].
//!
//! Modules: `codec` frames PDUs, `connection` runs one ESME connection, `router` knows the
//! bound sessions and where receipts go.

pub(crate) mod codec;
mod connection;
mod router;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::encoding::Concat;
use crate::error::ServerError;
use router::Router;

/// How the SMSC writes the message ids it gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Decimal digits.
    Decimal,
    /// Upper-case hex digits.
    Hex,
}

/// How the id is written inside a receipt (carriers differ; the client must cope with each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptIdFormat {
    /// The same string `submit_sm_resp` gave.
    AsSubmitted,
    /// The id's value in decimal (a hex id becomes its decimal value).
    Decimal,
    /// The same string left-padded with zeros to this width.
    ZeroPadded(usize),
}

/// Settings of the built-in SMSC.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accept only this `system_id` (`None`: any).
    pub system_id: Option<String>,
    /// Accept only this password (`None`: any).
    pub password: Option<String>,
    /// `system_id` the SMSC names itself in bind responses.
    pub smsc_system_id: String,
    /// Delay between `submit_sm_resp` and the delivery receipt.
    pub receipt_delay: Duration,
    /// Delay before answering each `submit_sm` (tests use it to see the client's window).
    pub submit_resp_delay: Duration,
    /// Format of message ids.
    pub message_id_format: IdFormat,
    /// Format of ids inside receipts.
    pub receipt_id_format: ReceiptIdFormat,
    /// Destinations starting with this get an `UNDELIV` receipt instead of `DELIVRD`.
    pub undeliverable_prefix: Option<String>,
    /// Messages kept for [`ServerHandle::messages`].
    pub keep_messages: usize,
    /// Log each message at info.
    pub log_messages: bool,
    /// Receipts held for `system_id`s with no receiver bound, in total.
    pub max_pending_receipts: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            system_id: None,
            password: None,
            smsc_system_id: "IVM-SMSC".into(),
            receipt_delay: Duration::from_millis(100),
            submit_resp_delay: Duration::ZERO,
            message_id_format: IdFormat::Decimal,
            receipt_id_format: ReceiptIdFormat::AsSubmitted,
            undeliverable_prefix: None,
            keep_messages: 10_000,
            log_messages: true,
            max_pending_receipts: 100_000,
        }
    }
}

/// One `submit_sm` the SMSC accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The id it was given.
    pub message_id: String,
    /// `system_id` of the session that sent it.
    pub system_id: String,
    /// `source_addr`.
    pub source: String,
    /// `source_addr_ton`.
    pub source_ton: u8,
    /// `destination_addr`.
    pub destination: String,
    /// `dest_addr_ton`.
    pub destination_ton: u8,
    /// Decoded text of this PDU (one part of a long message).
    pub text: String,
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class`.
    pub esm_class: u8,
    /// `registered_delivery`.
    pub registered_delivery: u8,
    /// Concatenation info from the UDH.
    pub concat: Option<Concat>,
}

/// Counters of the SMSC since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Successful binds.
    pub binds: u64,
    /// Accepted `submit_sm`.
    pub submits: u64,
    /// `deliver_sm` written (receipts and routed messages).
    pub delivers_sent: u64,
    /// `deliver_sm_resp` received.
    pub delivers_acked: u64,
    /// `generic_nack` sent.
    pub generic_nacks: u64,
    /// Most `submit_sm` one session had unanswered at once (with `submit_resp_delay`, this shows
    /// the client's window).
    pub max_outstanding_submits: usize,
    /// Connections open now.
    pub connections: usize,
}

#[derive(Debug, Default)]
struct Counters {
    binds: AtomicU64,
    submits: AtomicU64,
    delivers_sent: AtomicU64,
    delivers_acked: AtomicU64,
    generic_nacks: AtomicU64,
    max_outstanding: AtomicUsize,
    connections: AtomicUsize,
}

/// State shared by the accept loop and every connection.
#[derive(Debug)]
struct ServerState {
    cfg: ServerConfig,
    router: Arc<Router>,
    counters: Counters,
    next_id: AtomicU64,
    next_session: AtomicU64,
    log: Mutex<VecDeque<ReceivedMessage>>,
    logged: Notify,
}

impl ServerState {
    fn next_message_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self.cfg.message_id_format {
            IdFormat::Decimal => n.to_string(),
            IdFormat::Hex => format!("{n:X}"),
        }
    }

    fn receipt_id(&self, id: &str) -> String {
        match self.cfg.receipt_id_format {
            ReceiptIdFormat::AsSubmitted => id.to_string(),
            ReceiptIdFormat::Decimal => match self.cfg.message_id_format {
                IdFormat::Hex => u64::from_str_radix(id, 16)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| id.to_string()),
                IdFormat::Decimal => id.to_string(),
            },
            ReceiptIdFormat::ZeroPadded(w) => format!("{id:0>w$}"),
        }
    }

    fn remember(&self, m: ReceivedMessage) {
        if self.cfg.keep_messages == 0 {
            return;
        }
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= self.cfg.keep_messages {
                log.pop_front();
            }
            log.push_back(m);
        }
        self.logged.notify_waiters();
    }
}

/// A running built-in SMSC. Dropping the handle leaves it running (for the life of the process);
/// [`ServerHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    scheduler: JoinHandle<()>,
}

/// Starts the SMSC on `listener` and returns at once; it runs until [`ServerHandle::shutdown`].
pub async fn serve(listener: TcpListener, cfg: ServerConfig) -> Result<ServerHandle, ServerError> {
    let addr = listener.local_addr()?;
    let (router, scheduler) = Router::start(cfg.max_pending_receipts);
    // Ids stay unique across restarts: the high bits are the start time in seconds.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        << 20;
    let state = Arc::new(ServerState {
        cfg,
        router,
        counters: Counters::default(),
        next_id: AtomicU64::new(seed),
        next_session: AtomicU64::new(1),
        log: Mutex::new(VecDeque::new()),
        logged: Notify::new(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, state.clone(), shutdown_rx));
    tracing::info!(%addr, "built-in SMSC listening");
    Ok(ServerHandle {
        addr,
        state,
        shutdown,
        accept,
        scheduler,
    })
}

/// Resolves when [`ServerHandle::shutdown`] is called; never when the handle is only dropped
/// (a dropped handle leaves the SMSC running for the life of the process).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(connection::run(id, stream, peer, state.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SMSC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    // Connections see the same signal and close their sockets without unbinding, like a
    // crashed SMSC would.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The messages accepted so far (the most recent [`ServerConfig::keep_messages`]), oldest
    /// first, one entry per `submit_sm`.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.state
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The accepted messages as (destination, full text), concatenated parts joined once all
    /// parts are in; incomplete messages are left out.
    pub fn texts(&self) -> Vec<(String, String)> {
        assemble(&self.messages())
    }

    /// Forgets the kept messages.
    pub fn clear_messages(&self) {
        if let Ok(mut l) = self.state.log.lock() {
            l.clear();
        }
    }

    /// Waits until at least `n` messages are kept, or `timeout`; returns whether they are.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.logged.notified();
            if self.state.log.lock().map(|l| l.len()).unwrap_or(0) >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.state.log.lock().map(|l| l.len()).unwrap_or(0) >= n;
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        let c = &self.state.counters;
        ServerStats {
            binds: c.binds.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
            delivers_sent: c.delivers_sent.load(Ordering::Relaxed),
            delivers_acked: c.delivers_acked.load(Ordering::Relaxed),
            generic_nacks: c.generic_nacks.load(Ordering::Relaxed),
            max_outstanding_submits: c.max_outstanding.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }

    /// Stops listening and drops every connection (no unbind: to its clients it looks like a
    /// crash); pending receipts are lost.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
        self.scheduler.abort();
        tracing::info!(addr = %self.addr, "built-in SMSC stopped");
    }
}

/// Joins concatenated parts (same source, destination and reference) in part order.
fn assemble(messages: &[ReceivedMessage]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(c) = m.concat else {
            out.push((m.destination.clone(), m.text.clone()));
            continue;
        };
        let key = (m.source.clone(), m.destination.clone(), c.reference, c.total);
        if !seen.insert(key.clone()) {
            continue;
        }
        let mut parts: Vec<&ReceivedMessage> = messages[i..]
            .iter()
            .filter(|o| {
                o.concat
                    .is_some_and(|oc| (o.source.clone(), o.destination.clone(), oc.reference, oc.total) == key)
            })
            .collect();
        parts.sort_by_key(|p| p.concat.map(|c| c.seq));
        parts.dedup_by_key(|p| p.concat.map(|c| c.seq));
        if parts.len() == usize::from(c.total) {
            out.push((m.destination.clone(), parts.iter().map(|p| p.text.as_str()).collect()));
        }
    }
    out
}
