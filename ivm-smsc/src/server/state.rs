//! What the accept loop and every connection of the built-in SMSC share: settings, the router,
//! counters, message ids, the log of accepted messages, and the shutdown signal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::config::{IdFormat, ReceiptIdFormat, ServerConfig};
use super::router::Router;
use crate::encoding::Concat;

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
pub(super) struct Counters {
    pub(super) binds: AtomicU64,
    pub(super) submits: AtomicU64,
    pub(super) delivers_sent: AtomicU64,
    pub(super) delivers_acked: AtomicU64,
    pub(super) generic_nacks: AtomicU64,
    pub(super) max_outstanding: AtomicUsize,
    pub(super) connections: AtomicUsize,
}

/// State shared by the accept loop and every connection.
#[derive(Debug)]
pub(super) struct ServerState {
    pub(super) cfg: ServerConfig,
    pub(super) router: Arc<Router>,
    pub(super) counters: Counters,
    pub(super) next_id: AtomicU64,
    pub(super) next_session: AtomicU64,
    pub(super) log: Mutex<VecDeque<ReceivedMessage>>,
    pub(super) logged: Notify,
}

impl ServerState {
    pub(super) fn next_message_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self.cfg.message_id_format {
            IdFormat::Decimal => n.to_string(),
            IdFormat::Hex => format!("{n:X}"),
        }
    }

    pub(super) fn receipt_id(&self, id: &str) -> String {
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

    pub(super) fn remember(&self, m: ReceivedMessage) {
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

/// Resolves when `ServerHandle::shutdown` is called; never when the handle is only dropped
/// (a dropped handle leaves the SMSC running for the life of the process).
pub(super) async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
