//! RFC 3261 §17 transactions, with the RFC 6026 Accepted states, as a sans-IO state machine:
//! messages and a caller-supplied monotonic clock (`now`, ms) go in, [`Action`]s come out. No
//! sockets, tasks or clock reads, so tests drive it with a fake clock.
//!
//! Ours rather than rsipstack's (see DEPENDENCIES.md): rsipstack keeps Timers D, I, J and K
//! running on TCP, keeps its timers in a mutex-guarded map and runs a task per transaction.
//! Here every transaction lives in one `HashMap` and every timer in one [`TimerWheel`], which
//! is what 100,000 live transactions need. On reliable transports there are no
//! retransmission timers (A, E, G) and D, I, J, K are zero: the transaction ends at once.

mod client;
mod key;
mod server;
mod timer_wheel;
mod timers;

#[cfg(test)]
mod test_support;

use std::collections::HashMap;

use bytes::Bytes;

pub use key::TsxKey;
pub use timer_wheel::{TimerId, TimerWheel};
pub use timers::Timers;

use crate::sip::message::random_token;
use crate::sip::via::MAGIC_COOKIE;
use crate::sip::{Method, Request, Response, SipHeaders};
use crate::transport::{Peer, response_target};

use client::{InviteClient, NonInviteClient};
use server::{AckOutcome, InviteServer, NonInviteServer};
use timers::{TimerKind, TimerSlot};

/// What the transaction layer asks of its caller: send bytes, or hand something to the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (a request, response or ACK, serialized once) to this peer.
    Send { to: Peer, data: Bytes },
    /// A new request for the TU, which answers it with [`TransactionLayer::respond`].
    Request { key: TsxKey, request: Request, source: Peer },
    /// An ACK for the TU: one for a 2xx (it matched no transaction, or an INVITE server
    /// transaction in Accepted), or one that matched nothing.
    Ack { request: Request, source: Peer },
    /// A CANCEL matched this INVITE server transaction before its final response; the layer
    /// has answered the CANCEL with 200 and the TU should now answer the INVITE with 487.
    Cancelled { invite: TsxKey },
    /// A response for the TU's client transaction (provisional, final, and in Accepted each
    /// retransmitted 2xx).
    Response { key: TsxKey, response: Response },
    /// The transaction failed for lack of an answer: Timer B or F (client), Timer H (INVITE
    /// server without ACK). The transaction is gone.
    Timeout { key: TsxKey },
}

/// Why the TU's call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("no live transaction {0}")]
    Unknown(TsxKey),
    #[error("{0} is a client transaction")]
    NotServer(TsxKey),
    #[error("{key}: a {status} response is not allowed in state {state}")]
    InvalidState { key: TsxKey, status: u16, state: &'static str },
    #[error("{0} is not a SIP status code")]
    InvalidStatus(u16),
    #[error("the request's top Via has no branch starting with {MAGIC_COOKIE}")]
    NoBranch,
    #[error("the request has no CSeq, or its method is not the request's")]
    BadCSeq,
    #[error("an ACK is not sent in a client transaction (send it to the transport directly)")]
    AckNotTransaction,
    #[error("a transaction {0} already exists")]
    Duplicate(TsxKey),
}

/// A fresh RFC 3261 branch: the magic cookie and 96 random bits.
pub fn new_branch() -> String {
    format!("{MAGIC_COOKIE}{}", random_token(12))
}

/// What a timer carries: whose it is and which one. `serial` tells a transaction from a
/// later one under the same key.
struct Fire {
    key: TsxKey,
    serial: u64,
    kind: TimerKind,
}

/// The running timers of one transaction, one per [`TimerSlot`].
#[derive(Default)]
struct Armed {
    retransmit: Option<TimerId>,
    timeout: Option<TimerId>,
    linger: Option<TimerId>,
}

impl Armed {
    fn slot(&mut self, slot: TimerSlot) -> &mut Option<TimerId> {
        match slot {
            TimerSlot::Retransmit => &mut self.retransmit,
            TimerSlot::Timeout => &mut self.timeout,
            TimerSlot::Linger => &mut self.linger,
        }
    }
}

/// What every transaction has: its key, its serial, the peer it talks to (the request's
/// destination, or where responses go) and its running timers.
struct Core {
    key: TsxKey,
    serial: u64,
    peer: Peer,
    armed: Armed,
}

impl Core {
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// Whether a transaction lives on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

/// What a state machine may touch while it handles one event.
struct Ctx<'a> {
    now: u64,
    timers: &'a Timers,
    wheel: &'a mut TimerWheel<Fire>,
    out: &'a mut Vec<Action>,
}

impl Ctx<'_> {
    /// Starts `kind` to fire `after` ms from now, replacing the timer in its slot.
    fn arm(&mut self, core: &mut Core, kind: TimerKind, after: u64) {
        let fire = Fire { key: core.key.clone(), serial: core.serial, kind };
        let id = self.wheel.insert(self.now + after, fire);
        if let Some(old) = core.armed.slot(kind.slot()).replace(id) {
            self.wheel.cancel(old);
        }
    }

    fn disarm(&mut self, core: &mut Core, slot: TimerSlot) {
        if let Some(id) = core.armed.slot(slot).take() {
            self.wheel.cancel(id);
        }
    }

    fn send(&mut self, to: Peer, data: Bytes) {
        self.out.push(Action::Send { to, data });
    }
}

enum Transaction {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
}

impl Transaction {
    fn core_mut(&mut self) -> &mut Core {
        match self {
            Transaction::InviteServer(t) => &mut t.core,
            Transaction::NonInviteServer(t) => &mut t.core,
            Transaction::InviteClient(t) => &mut t.core,
            Transaction::NonInviteClient(t) => &mut t.core,
        }
    }
}

/// Every live transaction and the one timer wheel that drives them.
pub struct TransactionLayer {
    timers: Timers,
    map: HashMap<TsxKey, Transaction>,
    wheel: TimerWheel<Fire>,
    next_serial: u64,
    /// Reused buffer for the timers of one `on_tick`.
    fired: Vec<Fire>,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        TransactionLayer::new(Timers::default())
    }
}

impl TransactionLayer {
    pub fn new(timers: Timers) -> Self {
        TransactionLayer { timers, map: HashMap::new(), wheel: TimerWheel::default(), next_serial: 0, fired: Vec::new() }
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The timer values in use.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// When `on_tick` next has something to do (`None`: no timer running).
    pub fn next_deadline(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    fn new_core(&mut self, key: TsxKey, peer: Peer) -> Core {
        self.next_serial += 1;
        Core { key, serial: self.next_serial, peer, armed: Armed::default() }
    }

    fn remove(&mut self, key: &TsxKey) {
        if let Some(mut tsx) = self.map.remove(key) {
            let armed = &mut tsx.core_mut().armed;
            for id in [armed.retransmit.take(), armed.timeout.take(), armed.linger.take()].into_iter().flatten() {
                self.wheel.cancel(id);
            }
        }
    }

    /// A request from the network (already stamped with `received`/`rport`).
    pub fn on_request(&mut self, req: Request, source: Peer, now: u64, out: &mut Vec<Action>) {
        let Some(via) = req.top_via() else {
            tracing::debug!(%source, "request without a top Via dropped");
            return;
        };
        let Some(key) = TsxKey::server_with_via(&req, &via) else {
            tracing::debug!(%source, "request without CSeq or Call-ID dropped");
            return;
        };
        let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
        match (&req.method, self.map.get_mut(&key)) {
            (Method::Ack, Some(Transaction::InviteServer(tsx))) => match tsx.on_ack(&mut ctx) {
                AckOutcome::Absorbed => {}
                AckOutcome::ToTu => out.push(Action::Ack { request: req, source }),
                AckOutcome::Terminated => self.remove(&key),
            },
            (Method::Ack, _) => out.push(Action::Ack { request: req, source }),
            (_, Some(Transaction::InviteServer(tsx))) => tsx.on_retransmission(&mut ctx),
            (_, Some(Transaction::NonInviteServer(tsx))) => tsx.on_retransmission(&mut ctx),
            (_, Some(_)) => {} // unreachable: server keys never equal client keys
            (Method::Cancel, None) => self.on_cancel(req, key, response_target(&via, source), now, out),
            (Method::Invite, None) => {
                let core = self.new_core(key.clone(), response_target(&via, source));
                let trying = Bytes::from(req.response(100, None, "").to_bytes());
                let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
                let tsx = InviteServer::new(core, trying, &mut ctx);
                self.map.insert(key.clone(), Transaction::InviteServer(tsx));
                out.push(Action::Request { key, request: req, source });
            }
            (_, None) => {
                let core = self.new_core(key.clone(), response_target(&via, source));
                self.map.insert(key.clone(), Transaction::NonInviteServer(NonInviteServer::new(core)));
                out.push(Action::Request { key, request: req, source });
            }
        }
    }

    /// A new CANCEL (RFC 3261 §9.2): answered here, 200 when it matches an INVITE server
    /// transaction (and [`Action::Cancelled`] when that has no final response yet), 481
    /// otherwise. It gets its own server transaction so retransmissions get the same answer.
    fn on_cancel(&mut self, req: Request, key: TsxKey, reply_to: Peer, now: u64, out: &mut Vec<Action>) {
        let invite = key.with_method(Method::Invite);
        let (status, to_tag, cancelled) = match invite.as_ref().and_then(|k| self.map.get(k)) {
            Some(Transaction::InviteServer(inv)) => (200, inv.to_tag().map(str::to_owned), inv.final_sent().not_then(invite)),
            _ => (481, None, None),
        };
        let resp = req.response(status, None, &to_tag.unwrap_or_else(|| random_token(8)));
        let core = self.new_core(key.clone(), reply_to);
        let mut tsx = NonInviteServer::new(core);
        let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
        match tsx.respond(&resp, &mut ctx) {
            Ok(Flow::Continue) => {
                self.map.insert(key, Transaction::NonInviteServer(tsx));
            }
            Ok(Flow::Terminate) => {}
            Err(e) => tracing::debug!("answering CANCEL: {e}"),
        }
        if let Some(invite) = cancelled {
            out.push(Action::Cancelled { invite });
        }
    }

    /// The TU's response for server transaction `key`. 1xx/final per the state machines; a
    /// 2xx to INVITE moves it to Accepted, where the TU's 2xx retransmissions pass through.
    pub fn respond(&mut self, key: &TsxKey, resp: Response, now: u64, out: &mut Vec<Action>) -> Result<(), TransactionError> {
        if !(100..=699).contains(&resp.status) {
            return Err(TransactionError::InvalidStatus(resp.status));
        }
        let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
        let flow = match self.map.get_mut(key) {
            None => return Err(TransactionError::Unknown(key.clone())),
            Some(Transaction::InviteServer(tsx)) => tsx.respond(&resp, &mut ctx)?,
            Some(Transaction::NonInviteServer(tsx)) => tsx.respond(&resp, &mut ctx)?,
            Some(_) => return Err(TransactionError::NotServer(key.clone())),
        };
        if flow == Flow::Terminate {
            self.remove(key);
        }
        Ok(())
    }

    /// Starts a client transaction: sends `req` to `dest` and retransmits it as needed. The
    /// request must carry its top Via with a branch from [`new_branch`], and a CSeq.
    pub fn send_request(&mut self, req: Request, dest: Peer, now: u64, out: &mut Vec<Action>) -> Result<TsxKey, TransactionError> {
        if req.method == Method::Ack {
            return Err(TransactionError::AckNotTransaction);
        }
        let branch = req.top_via().and_then(|v| v.branch()).filter(|b| b.starts_with(MAGIC_COOKIE)).ok_or(TransactionError::NoBranch)?;
        let cseq = req.cseq().filter(|c| c.method == req.method).ok_or(TransactionError::BadCSeq)?;
        let key = TsxKey::client(&branch, &cseq.method);
        if self.map.contains_key(&key) {
            return Err(TransactionError::Duplicate(key));
        }
        let core = self.new_core(key.clone(), dest);
        let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
        let tsx = if req.method == Method::Invite {
            Transaction::InviteClient(InviteClient::start(core, &req, cseq.seq, &mut ctx))
        } else {
            Transaction::NonInviteClient(NonInviteClient::start(core, &req, &mut ctx))
        };
        self.map.insert(key.clone(), tsx);
        Ok(key)
    }

    /// A response from the network. One matching no client transaction is dropped.
    pub fn on_response(&mut self, resp: Response, source: Peer, now: u64, out: &mut Vec<Action>) {
        let Some(key) = TsxKey::of_response(&resp) else {
            tracing::debug!(%source, "response without a top Via branch or CSeq dropped");
            return;
        };
        let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
        let (to_tu, flow) = match self.map.get_mut(&key) {
            Some(Transaction::InviteClient(tsx)) => tsx.on_response(&resp, &mut ctx),
            Some(Transaction::NonInviteClient(tsx)) => tsx.on_response(&resp, &mut ctx),
            _ => {
                tracing::debug!(%source, status = resp.status, "response matching no transaction dropped");
                return;
            }
        };
        if to_tu {
            out.push(Action::Response { key: key.clone(), response: resp });
        }
        if flow == Flow::Terminate {
            self.remove(&key);
        }
    }

    /// Fires every timer due at `now`: retransmissions, timeouts, terminations.
    pub fn on_tick(&mut self, now: u64, out: &mut Vec<Action>) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.expire(now, &mut fired);
        for fire in fired.drain(..) {
            let mut ctx = Ctx { now, timers: &self.timers, wheel: &mut self.wheel, out };
            let Some(tsx) = self.map.get_mut(&fire.key) else { continue };
            let core = tsx.core_mut();
            if core.serial != fire.serial {
                continue;
            }
            // The timer has fired: nothing to cancel in its slot any more.
            let slot = core.armed.slot(fire.kind.slot());
            if slot.is_some_and(|id| id.deadline() > now) {
                continue; // superseded by a later timer in the same slot (cancel missed)
            }
            *slot = None;
            let flow = match tsx {
                Transaction::InviteServer(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::NonInviteServer(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::InviteClient(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::NonInviteClient(t) => t.on_timer(fire.kind, &mut ctx),
            };
            if flow == Flow::Terminate {
                self.remove(&fire.key);
            }
        }
        self.fired = fired;
    }
}

/// `Some(value)` when false: a small helper for "cancel only if no final was sent".
trait NotThen {
    fn not_then<T>(self, value: Option<T>) -> Option<T>;
}

impl NotThen for bool {
    fn not_then<T>(self, value: Option<T>) -> Option<T> {
        if self { None } else { value }
    }
}
