//! Server transactions: the INVITE machine of RFC 3261 §17.2.1 with the RFC 6026 Accepted
//! state (Timers G, H, I, L), and the non-INVITE machine of §17.2.2 (Timer J). Responses are
//! serialized once; retransmissions resend the stored bytes.

use bytes::Bytes;

use super::action::{Action, TransactionError};
use super::machine::{Core, Ctx, Flow};
use super::timers::{TimerKind, TimerSlot};
use crate::stack::sip::{Response, SipHeaders};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

impl InviteState {
    fn name(self) -> &'static str {
        match self {
            InviteState::Proceeding => "Proceeding",
            InviteState::Completed => "Completed",
            InviteState::Confirmed => "Confirmed",
            InviteState::Accepted => "Accepted",
        }
    }
}

/// What became of an ACK that matched an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// Taken by the transaction (the ACK of a non-2xx final, or a retransmission of it).
    Absorbed,
    /// Taken, and the transaction ended (reliable transport: Timer I is zero).
    Terminated,
    /// For the TU: the ACK of a 2xx (RFC 6026 Accepted).
    ToTu,
}

/// An INVITE server transaction.
pub(super) struct InviteServer {
    pub(super) core: Core,
    state: InviteState,
    /// What a retransmitted INVITE gets: the latest provisional in Proceeding (100 Trying at
    /// first), the final in Completed.
    last: Bytes,
    /// The To tag of the latest response sent, for the 200 answering a CANCEL.
    to_tag: Option<String>,
    /// The next Timer G interval.
    g_interval: u64,
}

impl InviteServer {
    /// Creates the transaction in Proceeding and sends `trying` (the 100 Trying).
    pub(super) fn new(core: Core, trying: Bytes, ctx: &mut Ctx<'_>) -> Self {
        ctx.send(core.peer, trying.clone());
        InviteServer {
            core,
            state: InviteState::Proceeding,
            last: trying,
            to_tag: None,
            g_interval: ctx.timers.t1,
        }
    }

    /// Whether a final response has been sent.
    pub(super) fn final_sent(&self) -> bool {
        self.state != InviteState::Proceeding
    }

    pub(super) fn to_tag(&self) -> Option<&str> {
        self.to_tag.as_deref()
    }

    /// A retransmitted INVITE: the last response again (Proceeding, Completed); absorbed
    /// otherwise (Confirmed, and Accepted where the TU retransmits its 2xx itself).
    pub(super) fn on_retransmission(&self, ctx: &mut Ctx<'_>) {
        if matches!(self.state, InviteState::Proceeding | InviteState::Completed) {
            ctx.send(self.core.peer, self.last.clone());
        }
    }

    pub(super) fn on_ack(&mut self, ctx: &mut Ctx<'_>) -> AckOutcome {
        match self.state {
            InviteState::Completed => {
                self.state = InviteState::Confirmed;
                ctx.disarm(&mut self.core, TimerSlot::Retransmit);
                ctx.disarm(&mut self.core, TimerSlot::Timeout);
                if self.core.reliable() {
                    return AckOutcome::Terminated;
                }
                let t4 = ctx.timers.t4;
                ctx.arm(&mut self.core, TimerKind::I, t4);
                AckOutcome::Absorbed
            }
            InviteState::Accepted => AckOutcome::ToTu,
            // Confirmed: a retransmitted ACK. Proceeding: nothing to acknowledge yet.
            InviteState::Confirmed | InviteState::Proceeding => AckOutcome::Absorbed,
        }
    }

    /// The TU's response: provisionals in Proceeding; a 2xx moves to Accepted (Timer L) and
    /// later 2xx pass through there; a 300–699 moves to Completed (Timers G and H).
    pub(super) fn respond(&mut self, resp: &Response, ctx: &mut Ctx<'_>) -> Result<Flow, TransactionError> {
        let status = resp.status;
        match (self.state, status) {
            (InviteState::Proceeding, 100..=199) => {}
            (InviteState::Proceeding | InviteState::Accepted, 200..=299) => {}
            (InviteState::Proceeding, 300..) => {}
            (state, _) => {
                return Err(TransactionError::InvalidState {
                    key: self.core.key.clone(),
                    status,
                    state: state.name(),
                });
            }
        }
        let data = Bytes::from(resp.to_bytes());
        ctx.send(self.core.peer, data.clone());
        if let Some(tag) = resp.header_to().and_then(|a| a.tag()) {
            self.to_tag = Some(tag);
        }
        match (self.state, status) {
            (InviteState::Proceeding, 100..=199) => self.last = data,
            (InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                let l = ctx.timers.timeout();
                ctx.arm(&mut self.core, TimerKind::L, l);
            }
            (InviteState::Proceeding, _) => {
                self.state = InviteState::Completed;
                self.last = data;
                if !self.core.reliable() {
                    let g = self.g_interval;
                    ctx.arm(&mut self.core, TimerKind::G, g);
                }
                let h = ctx.timers.timeout();
                ctx.arm(&mut self.core, TimerKind::H, h);
            }
            _ => {} // a 2xx retransmission in Accepted
        }
        Ok(Flow::Continue)
    }

    pub(super) fn on_timer(&mut self, kind: TimerKind, ctx: &mut Ctx<'_>) -> Flow {
        match (kind, self.state) {
            (TimerKind::G, InviteState::Completed) => {
                ctx.send(self.core.peer, self.last.clone());
                self.g_interval = (self.g_interval * 2).min(ctx.timers.t2);
                let g = self.g_interval;
                ctx.arm(&mut self.core, TimerKind::G, g);
                Flow::Continue
            }
            (TimerKind::H, InviteState::Completed) => {
                ctx.out.push(Action::Timeout {
                    key: self.core.key.clone(),
                });
                Flow::Terminate
            }
            (TimerKind::I, InviteState::Confirmed) | (TimerKind::L, InviteState::Accepted) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
}

/// A non-INVITE server transaction (also the one the layer gives each CANCEL).
pub(super) struct NonInviteServer {
    pub(super) core: Core,
    state: NonInviteState,
    /// The latest response sent, for retransmitted requests.
    last: Option<Bytes>,
}

impl NonInviteServer {
    pub(super) fn new(core: Core) -> Self {
        NonInviteServer {
            core,
            state: NonInviteState::Trying,
            last: None,
        }
    }

    /// A retransmitted request: the last response again; absorbed in Trying.
    pub(super) fn on_retransmission(&self, ctx: &mut Ctx<'_>) {
        if let Some(last) = &self.last {
            ctx.send(self.core.peer, last.clone());
        }
    }

    /// The TU's response: a provisional moves to Proceeding, a final to Completed (Timer J;
    /// zero on a reliable transport, so the transaction ends at once).
    pub(super) fn respond(&mut self, resp: &Response, ctx: &mut Ctx<'_>) -> Result<Flow, TransactionError> {
        if self.state == NonInviteState::Completed {
            return Err(TransactionError::InvalidState {
                key: self.core.key.clone(),
                status: resp.status,
                state: "Completed",
            });
        }
        let data = Bytes::from(resp.to_bytes());
        ctx.send(self.core.peer, data.clone());
        self.last = Some(data);
        if resp.status < 200 {
            self.state = NonInviteState::Proceeding;
            return Ok(Flow::Continue);
        }
        self.state = NonInviteState::Completed;
        if self.core.reliable() {
            return Ok(Flow::Terminate);
        }
        let j = ctx.timers.timeout();
        ctx.arm(&mut self.core, TimerKind::J, j);
        Ok(Flow::Continue)
    }

    pub(super) fn on_timer(&mut self, kind: TimerKind, _ctx: &mut Ctx<'_>) -> Flow {
        match (kind, self.state) {
            (TimerKind::J, NonInviteState::Completed) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    fn invite_layer(t: TransportKind) -> (TransactionLayer, TsxKey) {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        layer.on_request(request("INVITE", t, BRANCH, ""), peer(t), 0, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let trying = sent_response(&out[0]);
        assert_eq!(trying.status, 100);
        assert!(
            trying.header_to().and_then(|a| a.tag()).is_none(),
            "100 Trying carries no To tag"
        );
        let Action::Request { key, request, source } = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(request.method, Method::Invite);
        assert_eq!(*source, peer(t));
        (layer, key.clone())
    }

    #[test]
    fn invite_non_2xx_udp_timer_g_ack_timer_i() {
        let (mut layer, key) = invite_layer(TransportKind::Udp);
        let mut out = Vec::new();
        // A retransmitted INVITE gets the 100 Trying again, and the TU does not see it.
        layer.on_request(
            request("INVITE", TransportKind::Udp, BRANCH, ""),
            peer(TransportKind::Udp),
            100,
            &mut out,
        );
        assert_eq!(statuses(&out), [100]);
        out.clear();
        let ringing = request("INVITE", TransportKind::Udp, BRANCH, "").response(180, None, "tt");
        layer
            .respond(&key, ringing, 150, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        layer.on_request(
            request("INVITE", TransportKind::Udp, BRANCH, ""),
            peer(TransportKind::Udp),
            160,
            &mut out,
        );
        assert_eq!(statuses(&out), [180, 180], "the latest provisional is resent");
        out.clear();

        let busy = request("INVITE", TransportKind::Udp, BRANCH, "").response(486, None, "tt");
        layer
            .respond(&key, busy, 1_000, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [486]);
        let first = out.remove(0);
        // Timer G: 500, 1000, 2000, 4000, 4000 ms apart.
        let times = send_times(&mut layer, 1_000, 13_000);
        assert_eq!(times, [1_500, 2_500, 4_500, 8_500, 12_500]);
        // A retransmitted INVITE gets the 486 again (the same bytes).
        layer.on_request(
            request("INVITE", TransportKind::Udp, BRANCH, ""),
            peer(TransportKind::Udp),
            13_000,
            &mut out,
        );
        assert_eq!(out, [first]);
        out.clear();
        let err = layer.respond(
            &key,
            request("INVITE", TransportKind::Udp, BRANCH, "").response(500, None, "tt"),
            13_000,
            &mut out,
        );
        assert!(
            matches!(
                err,
                Err(TransactionError::InvalidState {
                    status: 500,
                    state: "Completed",
                    ..
                })
            ),
            "{err:?}"
        );

        // The ACK is absorbed; G stops; Timer I (T4) ends the transaction.
        layer.on_request(
            request("ACK", TransportKind::Udp, BRANCH, ";tag=tt"),
            peer(TransportKind::Udp),
            13_100,
            &mut out,
        );
        layer.on_request(
            request("ACK", TransportKind::Udp, BRANCH, ";tag=tt"),
            peer(TransportKind::Udp),
            13_200,
            &mut out,
        );
        layer.on_tick(18_099, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(layer.len(), 1);
        layer.on_tick(18_100, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(layer.len(), 0);
        assert_eq!(layer.next_deadline(), None, "H and G were cancelled");
        // A late ACK now goes to the TU (it matches nothing).
        layer.on_request(
            request("ACK", TransportKind::Udp, BRANCH, ";tag=tt"),
            peer(TransportKind::Udp),
            18_200,
            &mut out,
        );
        assert!(matches!(&out[..], [Action::Ack { .. }]), "{out:?}");
    }

    #[test]
    fn invite_timer_h_without_ack() {
        let (mut layer, key) = invite_layer(TransportKind::Udp);
        let mut out = Vec::new();
        let busy = request("INVITE", TransportKind::Udp, BRANCH, "").response(486, None, "tt");
        layer.respond(&key, busy, 0, &mut out).unwrap_or_else(|e| panic!("{e}"));
        out.clear();
        layer.on_tick(31_999, &mut out);
        assert!(out.iter().all(|a| matches!(a, Action::Send { .. })));
        out.clear();
        layer.on_tick(32_000, &mut out);
        assert_eq!(out, [Action::Timeout { key }]);
        assert_eq!(layer.len(), 0);
    }

    #[test]
    fn invite_non_2xx_tcp_no_g_and_zero_i() {
        let (mut layer, key) = invite_layer(TransportKind::Tcp);
        let mut out = Vec::new();
        let busy = request("INVITE", TransportKind::Tcp, BRANCH, "").response(486, None, "tt");
        layer.respond(&key, busy, 0, &mut out).unwrap_or_else(|e| panic!("{e}"));
        out.clear();
        assert_eq!(
            send_times(&mut layer, 0, 20_000),
            Vec::<u64>::new(),
            "no Timer G on TCP"
        );
        layer.on_request(
            request("ACK", TransportKind::Tcp, BRANCH, ";tag=tt"),
            peer(TransportKind::Tcp),
            20_000,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(layer.len(), 0, "Timer I is zero on TCP");
        assert_eq!(layer.next_deadline(), None);
    }

    #[test]
    fn invite_2xx_accepted_timer_l() {
        let (mut layer, key) = invite_layer(TransportKind::Udp);
        let mut out = Vec::new();
        let ok = request("INVITE", TransportKind::Udp, BRANCH, "").response(200, None, "tt");
        layer
            .respond(&key, ok.clone(), 1_000, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [200]);
        out.clear();
        // Retransmitted INVITEs are absorbed; the layer does not retransmit the 2xx itself.
        layer.on_request(
            request("INVITE", TransportKind::Udp, BRANCH, ""),
            peer(TransportKind::Udp),
            1_500,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(send_times(&mut layer, 1_500, 20_000), Vec::<u64>::new());
        // The TU's own 2xx retransmissions pass through; a non-2xx is refused.
        layer
            .respond(&key, ok, 20_000, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [200]);
        out.clear();
        let late = request("INVITE", TransportKind::Udp, BRANCH, "").response(486, None, "tt");
        assert!(layer.respond(&key, late, 20_000, &mut out).is_err());
        // An ACK in Accepted (same branch: RFC 2543 style or a proxy's) goes to the TU.
        layer.on_request(
            request("ACK", TransportKind::Udp, BRANCH, ";tag=tt"),
            peer(TransportKind::Udp),
            20_100,
            &mut out,
        );
        assert!(matches!(&out[..], [Action::Ack { .. }]), "{out:?}");
        out.clear();
        // Timer L: 64·T1 after the 2xx.
        layer.on_tick(32_999, &mut out);
        assert_eq!(layer.len(), 1);
        layer.on_tick(33_000, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(layer.len(), 0);
        let err = layer.respond(
            &key,
            request("INVITE", TransportKind::Udp, BRANCH, "").response(200, None, "tt"),
            33_000,
            &mut out,
        );
        assert_eq!(err, Err(TransactionError::Unknown(key)));
    }

    #[test]
    fn non_invite_udp_timer_j() {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        let t = TransportKind::Udp;
        layer.on_request(request("OPTIONS", t, BRANCH, ""), peer(t), 0, &mut out);
        let [Action::Request { key, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        let key = key.clone();
        out.clear();
        // Retransmission before any response: absorbed.
        layer.on_request(request("OPTIONS", t, BRANCH, ""), peer(t), 500, &mut out);
        assert!(out.is_empty(), "{out:?}");
        layer
            .respond(
                &key,
                request("OPTIONS", t, BRANCH, "").response(200, None, "x"),
                600,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [200]);
        let first = out.remove(0);
        layer.on_request(request("OPTIONS", t, BRANCH, ""), peer(t), 1_000, &mut out);
        assert_eq!(out, [first], "a retransmission gets the same final response");
        out.clear();
        assert!(
            layer
                .respond(
                    &key,
                    request("OPTIONS", t, BRANCH, "").response(200, None, "x"),
                    1_000,
                    &mut out
                )
                .is_err()
        );
        layer.on_tick(32_599, &mut out);
        assert_eq!(layer.len(), 1);
        layer.on_tick(32_600, &mut out);
        assert_eq!(layer.len(), 0, "Timer J = 64·T1 on UDP");
        assert!(out.is_empty());
        // After J, the same request is new again.
        layer.on_request(request("OPTIONS", t, BRANCH, ""), peer(t), 32_700, &mut out);
        assert!(matches!(&out[..], [Action::Request { .. }]), "{out:?}");
    }

    #[test]
    fn non_invite_tcp_timer_j_zero_and_provisional() {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        let t = TransportKind::Tcp;
        layer.on_request(request("REGISTER", t, BRANCH, ""), peer(t), 0, &mut out);
        let [Action::Request { key, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        let key = key.clone();
        out.clear();
        layer
            .respond(
                &key,
                request("REGISTER", t, BRANCH, "").response(100, None, ""),
                10,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        layer.on_request(request("REGISTER", t, BRANCH, ""), peer(t), 20, &mut out);
        assert_eq!(statuses(&out), [100, 100]);
        out.clear();
        layer
            .respond(
                &key,
                request("REGISTER", t, BRANCH, "").response(200, None, "x"),
                30,
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(statuses(&out), [200]);
        assert_eq!(layer.len(), 0, "Timer J is zero on TCP");
        assert_eq!(layer.next_deadline(), None);
    }

    #[test]
    fn responses_go_to_the_via_target() {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        let mut req = request("OPTIONS", TransportKind::Udp, BRANCH, "");
        req.headers
            .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKvia");
        layer.on_request(req.clone(), peer(TransportKind::Udp), 0, &mut out);
        let [Action::Request { key, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        let key = key.clone();
        out.clear();
        layer
            .respond(&key, req.response(404, None, "x"), 0, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        let [Action::Send { to, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(to.addr.to_string(), "192.0.2.1:5070");
    }

    #[test]
    fn respond_errors() {
        let (mut layer, key) = invite_layer(TransportKind::Udp);
        let mut out = Vec::new();
        let mut bad = request("INVITE", TransportKind::Udp, BRANCH, "").response(200, None, "t");
        bad.status = 99;
        assert_eq!(
            layer.respond(&key, bad, 0, &mut out),
            Err(TransactionError::InvalidStatus(99))
        );
        let client = TsxKey::client(BRANCH, &Method::Invite);
        let ok = request("INVITE", TransportKind::Udp, BRANCH, "").response(200, None, "t");
        assert_eq!(
            layer.respond(&client, ok, 0, &mut out),
            Err(TransactionError::Unknown(client))
        );
        assert!(out.is_empty());
    }
}
