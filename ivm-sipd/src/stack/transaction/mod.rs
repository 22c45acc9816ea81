//! RFC 3261 §17 transactions, with the RFC 6026 Accepted states, as a sans-IO state machine:
//! messages and a caller-supplied monotonic clock (`now`, ms) go in, [`Action`]s come out. No
//! sockets, tasks or clock reads, so tests drive it with a fake clock.
//!
//! Ours rather than rsipstack's (see DEPENDENCIES.md): rsipstack keeps Timers D, I, J and K
//! running on TCP, keeps its timers in a mutex-guarded map and runs a task per transaction.
//! Here every transaction lives in one `HashMap` and every timer in one [`TimerWheel`], which
//! is what 100,000 live transactions need. On reliable transports there are no
//! retransmission timers (A, E, G) and D, I, J, K are zero: the transaction ends at once.

mod action;
mod client;
mod key;
mod machine;
mod server;
mod timer_wheel;
mod timers;

#[cfg(test)]
mod test_support;

use std::collections::HashMap;

use bytes::Bytes;

pub use action::{Action, TransactionError};
pub use key::TsxKey;
pub use timer_wheel::{TimerId, TimerWheel};
pub use timers::Timers;

use crate::stack::sip::message::random_token;
use crate::stack::sip::via::MAGIC_COOKIE;
use crate::stack::sip::{Method, Request, Response, SipHeaders};
use crate::stack::transport::{Peer, response_target};

use client::{InviteClient, NonInviteClient};
use machine::{Armed, Core, Ctx, Fire, Flow};
use server::{AckOutcome, InviteServer, NonInviteServer};

/// A fresh RFC 3261 branch: the magic cookie and 96 random bits.
pub fn new_branch() -> String {
    format!("{MAGIC_COOKIE}{}", random_token(12))
}

/// A [`Ctx`] over the layer's timers and wheel (a macro: a method would borrow all of the
/// layer, map included).
macro_rules! ctx {
    ($layer:ident, $now:expr, $out:expr) => {
        Ctx {
            now: $now,
            timers: &$layer.timers,
            wheel: &mut $layer.wheel,
            out: $out,
        }
    };
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
        TransactionLayer {
            timers,
            map: HashMap::new(),
            wheel: TimerWheel::default(),
            next_serial: 0,
            fired: Vec::new(),
        }
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
        Core {
            key,
            serial: self.next_serial,
            peer,
            armed: Armed::default(),
        }
    }

    /// Ends a transaction at once, silently: for the caller when its transport failed
    /// (RFC 3261 §17.1.4, §17.2.4). Returns whether it was live.
    pub fn terminate(&mut self, key: &TsxKey) -> bool {
        let Some(mut tsx) = self.map.remove(key) else {
            return false;
        };
        let armed = &mut tsx.core_mut().armed;
        for id in [armed.retransmit.take(), armed.timeout.take(), armed.linger.take()]
            .into_iter()
            .flatten()
        {
            self.wheel.cancel(id);
        }
        true
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
        let mut ctx = ctx!(self, now, out);
        match (&req.method, self.map.get_mut(&key)) {
            (Method::Ack, Some(Transaction::InviteServer(tsx))) => match tsx.on_ack(&mut ctx) {
                AckOutcome::Absorbed => {}
                AckOutcome::ToTu => out.push(Action::Ack { request: req, source }),
                AckOutcome::Terminated => {
                    self.terminate(&key);
                }
            },
            (Method::Ack, _) => out.push(Action::Ack { request: req, source }),
            (_, Some(Transaction::InviteServer(tsx))) => tsx.on_retransmission(&mut ctx),
            (_, Some(Transaction::NonInviteServer(tsx))) => tsx.on_retransmission(&mut ctx),
            (_, Some(_)) => {} // unreachable: server keys never equal client keys
            (Method::Cancel, None) => self.on_cancel(req, key, response_target(&via, source), now, out),
            (Method::Invite, None) => {
                let core = self.new_core(key.clone(), response_target(&via, source));
                let trying = Bytes::from(req.response(100, None, "").to_bytes());
                let mut ctx = ctx!(self, now, out);
                let tsx = InviteServer::new(core, trying, &mut ctx);
                self.map.insert(key.clone(), Transaction::InviteServer(tsx));
                out.push(Action::Request {
                    key,
                    request: req,
                    source,
                });
            }
            (_, None) => {
                let core = self.new_core(key.clone(), response_target(&via, source));
                self.map
                    .insert(key.clone(), Transaction::NonInviteServer(NonInviteServer::new(core)));
                out.push(Action::Request {
                    key,
                    request: req,
                    source,
                });
            }
        }
    }

    /// A new CANCEL (RFC 3261 §9.2): answered here, 200 when it matches an INVITE server
    /// transaction (and [`Action::Cancelled`] when that has no final response yet), 481
    /// otherwise. It gets its own server transaction so retransmissions get the same answer.
    fn on_cancel(&mut self, req: Request, key: TsxKey, reply_to: Peer, now: u64, out: &mut Vec<Action>) {
        let invite = key.with_method(Method::Invite);
        let (status, to_tag, cancelled) = match invite.as_ref().and_then(|k| self.map.get(k)) {
            Some(Transaction::InviteServer(inv)) => {
                let cancelled = if inv.final_sent() { None } else { invite.clone() };
                (200, inv.to_tag().map(str::to_owned), cancelled)
            }
            _ => (481, None, None),
        };
        let resp = req.response(status, None, &to_tag.unwrap_or_else(|| random_token(8)));
        let core = self.new_core(key.clone(), reply_to);
        let mut tsx = NonInviteServer::new(core);
        let mut ctx = ctx!(self, now, out);
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
    pub fn respond(
        &mut self,
        key: &TsxKey,
        resp: Response,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), TransactionError> {
        if !(100..=699).contains(&resp.status) {
            return Err(TransactionError::InvalidStatus(resp.status));
        }
        let mut ctx = ctx!(self, now, out);
        let flow = match self.map.get_mut(key) {
            None => return Err(TransactionError::Unknown(key.clone())),
            Some(Transaction::InviteServer(tsx)) => tsx.respond(&resp, &mut ctx)?,
            Some(Transaction::NonInviteServer(tsx)) => tsx.respond(&resp, &mut ctx)?,
            Some(_) => return Err(TransactionError::NotServer(key.clone())),
        };
        if flow == Flow::Terminate {
            self.terminate(key);
        }
        Ok(())
    }

    /// Starts a client transaction: sends `req` to `dest` and retransmits it as needed. The
    /// request must carry its top Via with a branch from [`new_branch`], and a CSeq.
    pub fn send_request(
        &mut self,
        req: Request,
        dest: Peer,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<TsxKey, TransactionError> {
        if req.method == Method::Ack {
            return Err(TransactionError::AckNotTransaction);
        }
        let via = req.top_via().ok_or(TransactionError::NoBranch)?;
        let branch = via
            .branch()
            .filter(|b| b.starts_with(MAGIC_COOKIE))
            .ok_or(TransactionError::NoBranch)?;
        let cseq = req
            .cseq()
            .filter(|c| c.method == req.method)
            .ok_or(TransactionError::BadCSeq)?;
        let key = TsxKey::client(&branch, &cseq.method);
        if self.map.contains_key(&key) {
            return Err(TransactionError::Duplicate(key));
        }
        let core = self.new_core(key.clone(), dest);
        let mut ctx = ctx!(self, now, out);
        let tsx = if req.method == Method::Invite {
            Transaction::InviteClient(InviteClient::start(core, &req, &via, cseq.seq, &mut ctx))
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
        let mut ctx = ctx!(self, now, out);
        let (to_tu, flow) = match self.map.get_mut(&key) {
            Some(Transaction::InviteClient(tsx)) => tsx.on_response(&resp, &mut ctx),
            Some(Transaction::NonInviteClient(tsx)) => tsx.on_response(&resp, &mut ctx),
            _ => {
                tracing::debug!(%source, status = resp.status, "response matching no transaction dropped");
                return;
            }
        };
        if to_tu {
            out.push(Action::Response {
                key: key.clone(),
                response: resp,
            });
        }
        if flow == Flow::Terminate {
            self.terminate(&key);
        }
    }

    /// Fires every timer due at `now`: retransmissions, timeouts, terminations.
    pub fn on_tick(&mut self, now: u64, out: &mut Vec<Action>) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.expire(now, &mut fired);
        for fire in fired.drain(..) {
            let mut ctx = ctx!(self, now, out);
            let Some(tsx) = self.map.get_mut(&fire.key) else {
                continue;
            };
            let core = tsx.core_mut();
            if core.serial != fire.serial {
                continue;
            }
            // The timer has fired: nothing left to cancel in its slot. (An empty slot would
            // mean it had been disarmed, and so cancelled: never delivered.)
            if core.armed.slot(fire.kind.slot()).take().is_none() {
                continue;
            }
            let flow = match tsx {
                Transaction::InviteServer(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::NonInviteServer(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::InviteClient(t) => t.on_timer(fire.kind, &mut ctx),
                Transaction::NonInviteClient(t) => t.on_timer(fire.kind, &mut ctx),
            };
            if flow == Flow::Terminate {
                self.terminate(&fire.key);
            }
        }
        self.fired = fired;
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn new_request(layer: &mut TransactionLayer, req: Request, t: TransportKind, now: u64) -> TsxKey {
        let mut out = Vec::new();
        layer.on_request(req, peer(t), now, &mut out);
        match out.last() {
            Some(Action::Request { key, .. }) => key.clone(),
            _ => panic!("{out:?}"),
        }
    }

    #[test]
    fn cancel_matching_a_pending_invite() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let invite = new_request(&mut layer, request("INVITE", t, BRANCH, ""), t, 0);
        let mut out = Vec::new();
        layer
            .respond(
                &invite,
                request("INVITE", t, BRANCH, "").response(180, None, "uas1"),
                10,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        out.clear();
        layer.on_request(request("CANCEL", t, BRANCH, ""), peer(t), 100, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let ok = sent_response(&out[0]);
        assert_eq!(ok.status, 200);
        assert_eq!(ok.cseq().map(|c| c.method), Some(Method::Cancel));
        assert_eq!(
            ok.header_to().and_then(|a| a.tag()).as_deref(),
            Some("uas1"),
            "the To tag of the 180"
        );
        assert_eq!(out[1], Action::Cancelled { invite: invite.clone() });
        let first = out.remove(0);
        out.clear();
        // A retransmitted CANCEL gets the same 200, and the TU hears nothing more.
        layer.on_request(request("CANCEL", t, BRANCH, ""), peer(t), 600, &mut out);
        assert_eq!(out, [first]);
        out.clear();
        // The TU ends the INVITE with 487.
        layer
            .respond(
                &invite,
                request("INVITE", t, BRANCH, "").response(487, None, "uas1"),
                700,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [487]);
        assert_eq!(layer.len(), 2);
        out.clear();
        layer.on_request(request("CANCEL", t, BRANCH, ""), peer(t), 800, &mut out);
        assert_eq!(statuses(&out), [200], "a late retransmission of the CANCEL");
        layer.on_request(request("ACK", t, BRANCH, ";tag=uas1"), peer(t), 900, &mut out);
        layer.on_tick(40_000, &mut out);
        assert_eq!(layer.len(), 0);
    }

    #[test]
    fn cancel_after_the_final_response_has_no_effect() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Tcp;
        let invite = new_request(&mut layer, request("INVITE", t, BRANCH, ""), t, 0);
        let mut out = Vec::new();
        layer
            .respond(
                &invite,
                request("INVITE", t, BRANCH, "").response(200, None, "uas2"),
                10,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        out.clear();
        layer.on_request(request("CANCEL", t, BRANCH, ""), peer(t), 100, &mut out);
        let ok = sent_response(&out[0]);
        assert_eq!((ok.status, out.len()), (200, 1), "{out:?}");
        assert_eq!(ok.header_to().and_then(|a| a.tag()).as_deref(), Some("uas2"));
        assert_eq!(layer.len(), 1, "the CANCEL's transaction ended at once (TCP)");
    }

    #[test]
    fn cancel_matching_nothing_gets_481() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let mut out = Vec::new();
        // An OPTIONS with that branch is not an INVITE to cancel.
        new_request(&mut layer, request("OPTIONS", t, BRANCH, ""), t, 0);
        layer.on_request(request("CANCEL", t, BRANCH, ""), peer(t), 0, &mut out);
        assert_eq!(statuses(&out), [481]);
        assert_eq!(out.len(), 1);
        out.clear();
        layer.on_request(request("CANCEL", t, "z9hG4bKother", ""), peer(t), 0, &mut out);
        let resp = sent_response(&out[0]);
        assert_eq!(resp.status, 481);
        assert!(resp.header_to().and_then(|a| a.tag()).is_some());
        out.clear();
        layer.on_request(request("CANCEL", t, "z9hG4bKother", ""), peer(t), 500, &mut out);
        assert_eq!(statuses(&out), [481], "retransmissions get the same answer");
        layer.on_tick(32_500, &mut out);
        assert_eq!(
            layer.len(),
            1,
            "Timer J ended the CANCEL transactions; the OPTIONS awaits its answer"
        );
    }

    #[test]
    fn rfc2543_transactions_without_magic_cookie() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let mut out = Vec::new();
        let invite = new_request(&mut layer, request("INVITE", t, "", ""), t, 0);
        let old_branch = new_request(&mut layer, request("INVITE", t, "1234", ""), t, 0);
        assert_ne!(invite, old_branch);
        assert_eq!(layer.len(), 2);
        // Retransmission: the 100 again, nothing for the TU.
        layer.on_request(request("INVITE", t, "", ""), peer(t), 100, &mut out);
        assert_eq!(statuses(&out), [100]);
        assert_eq!(out.len(), 1);
        out.clear();
        // CANCEL matches the INVITE by Request-URI, From tag, Call-ID, CSeq number and Via.
        layer.on_request(request("CANCEL", t, "1234", ""), peer(t), 200, &mut out);
        assert_eq!(statuses(&out), [200]);
        assert_eq!(
            out.last(),
            Some(&Action::Cancelled {
                invite: old_branch.clone()
            })
        );
        out.clear();
        layer
            .respond(
                &invite,
                request("INVITE", t, "", "").response(486, None, "busy"),
                300,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        out.clear();
        // The ACK carries the To tag of our 486 and still matches: absorbed.
        layer.on_request(request("ACK", t, "", ";tag=busy"), peer(t), 400, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(
            send_times(&mut layer, 400, 10_000),
            Vec::<u64>::new(),
            "the ACK stopped Timer G"
        );
    }

    #[test]
    fn unmatched_ack_goes_to_the_tu_and_broken_requests_are_dropped() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let mut out = Vec::new();
        let ack = request("ACK", t, "z9hG4bK2xxack", ";tag=x");
        layer.on_request(ack.clone(), peer(t), 0, &mut out);
        assert_eq!(
            out,
            [Action::Ack {
                request: ack,
                source: peer(t)
            }]
        );
        assert!(layer.is_empty());
        out.clear();
        let mut no_via = request("OPTIONS", t, BRANCH, "");
        no_via.headers.remove(&HeaderName::Via);
        layer.on_request(no_via, peer(t), 0, &mut out);
        assert!(out.is_empty());
        assert!(layer.is_empty());
    }

    #[test]
    fn rfc4475_bcast_response_is_dropped() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/rfc4475/bcast.dat");
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Ok(Message::Response(resp)) = parse_message(data.into(), Framing::Datagram) else {
            panic!("bcast.dat")
        };
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        layer.on_response(resp, peer(TransportKind::Udp), 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_new_transaction_under_an_old_key_is_not_hit_by_old_timers() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let key = new_request(&mut layer, request("OPTIONS", t, BRANCH, ""), t, 0);
        let mut out = Vec::new();
        layer
            .respond(
                &key,
                request("OPTIONS", t, BRANCH, "").response(200, None, "a"),
                0,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        layer.on_tick(32_000, &mut out);
        assert!(layer.is_empty());
        let again = new_request(&mut layer, request("OPTIONS", t, BRANCH, ""), t, 32_001);
        assert_eq!(again, key);
        out.clear();
        layer.on_tick(100_000, &mut out);
        assert!(out.is_empty());
        assert_eq!(layer.len(), 1, "no final response yet: no Timer J");
        assert!(layer.terminate(&again));
        assert!(!layer.terminate(&again));
        assert!(layer.is_empty());
    }

    #[test]
    fn terminate_cancels_the_timers() {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        let req = outgoing("INVITE", TransportKind::Udp, &new_branch());
        let key = layer
            .send_request(req, peer(TransportKind::Udp), 0, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(layer.next_deadline(), Some(500));
        assert!(layer.terminate(&key));
        assert_eq!(layer.next_deadline(), None);
        out.clear();
        layer.on_tick(60_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn hundred_thousand_non_invite_server_transactions() {
        let mut layer = TransactionLayer::default();
        let t = TransportKind::Udp;
        let template = request("OPTIONS", t, BRANCH, "");
        let mut out = Vec::new();
        let mut keys = Vec::with_capacity(100_000);
        for i in 0..100_000u64 {
            let mut req = template.clone();
            req.headers.set(
                HeaderName::Via,
                format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i:x}"),
            );
            let now = i / 10; // 10 new transactions a millisecond
            layer.on_request(req, peer(t), now, &mut out);
            let Some(Action::Request { key, request, .. }) = out.pop() else {
                panic!("{i}")
            };
            let resp = request.response(200, None, "t");
            layer
                .respond(&key, resp, now, &mut out)
                .unwrap_or_else(|e| panic!("{e}"));
            keys.push(key);
        }
        assert_eq!(out.len(), 100_000);
        assert_eq!(layer.len(), 100_000);
        out.clear();
        // Every 10 ms, the transactions answered 32 s earlier end.
        let mut now = 10_000;
        while !layer.is_empty() {
            now += 10;
            layer.on_tick(now, &mut out);
            let expected_ended = if now < 32_000 {
                0
            } else {
                ((now - 32_000 + 1) * 10).min(100_000) as usize
            };
            assert_eq!(layer.len(), 100_000 - expected_ended, "at {now}");
        }
        assert!(out.is_empty(), "Timer J emits nothing");
        assert_eq!(now, 42_000);
        assert_eq!(layer.next_deadline(), None);
    }
}
