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
//! Modules: `codec` frames PDUs, `config` holds the settings, `state` what every connection
//! shares, `connection` runs one ESME connection, `router` knows the bound sessions and where
//! receipts go.

pub mod codec;
mod config;
mod connection;
mod router;
mod state;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::ServerError;
use router::Router;
use state::{Counters, ServerState, stopped};

pub use config::{IdFormat, ReceiptIdFormat, ServerConfig};
pub use state::{ReceivedMessage, ServerStats};

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
