//! Client transactions: the INVITE machine of RFC 3261 §17.1.1 with the RFC 6026 Accepted
//! state (Timers A, B, D, M; the ACK for a 300–699 final built here), and the non-INVITE
//! machine of §17.1.2 (Timers E, F, K). The request is serialized once; retransmissions
//! resend the stored bytes.

use bytes::Bytes;

use super::action::Action;
use super::machine::{Core, Ctx, Flow};
use super::timers::{TimerKind, TimerSlot};
use crate::stack::sip::{HeaderName, Method, Request, Response, Uri, Via};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
}

/// What the ACK of a non-2xx final copies from the INVITE (§17.1.1.3).
struct AckParts {
    uri: Uri,
    /// The INVITE's top Via, the ACK's only one.
    via: Bytes,
    routes: Vec<Bytes>,
    from: Bytes,
    call_id: Bytes,
    seq: u32,
}

/// An INVITE client transaction.
pub(super) struct InviteClient {
    pub(super) core: Core,
    state: InviteState,
    request: Bytes,
    /// The next Timer A interval.
    a_interval: u64,
    parts: Box<AckParts>,
    /// The ACK sent for the final, resent for each retransmission of it.
    ack: Option<Bytes>,
}

impl InviteClient {
    /// Sends the INVITE and starts Timers A (UDP) and B.
    pub(super) fn start(core: Core, req: &Request, top_via: &Via, seq: u32, ctx: &mut Ctx<'_>) -> Self {
        let header = |name: HeaderName| req.headers.get(&name).cloned().unwrap_or_default();
        let parts = Box::new(AckParts {
            uri: req.uri.clone(),
            via: match req.headers.get(&HeaderName::Via) {
                // One Via per field (the usual case): copied as written.
                Some(raw) if !raw.contains(&b',') => raw.clone(),
                _ => Bytes::from(top_via.to_string()),
            },
            routes: req.headers.get_all(&HeaderName::Route).cloned().collect(),
            from: header(HeaderName::From),
            call_id: header(HeaderName::CallId),
            seq,
        });
        let mut tsx = InviteClient {
            core,
            state: InviteState::Calling,
            request: Bytes::from(req.to_bytes()),
            a_interval: ctx.timers.t1,
            parts,
            ack: None,
        };
        ctx.send(tsx.core.peer, tsx.request.clone());
        if !tsx.core.reliable() {
            let a = tsx.a_interval;
            ctx.arm(&mut tsx.core, TimerKind::A, a);
        }
        let b = ctx.timers.timeout();
        ctx.arm(&mut tsx.core, TimerKind::B, b);
        tsx
    }

    /// A response: whether it goes to the TU, and whether the transaction ends.
    pub(super) fn on_response(&mut self, resp: &Response, ctx: &mut Ctx<'_>) -> (bool, Flow) {
        let calling_or_proceeding = matches!(self.state, InviteState::Calling | InviteState::Proceeding);
        if calling_or_proceeding {
            // Any response stops retransmissions, and Timer B only runs in Calling.
            ctx.disarm(&mut self.core, TimerSlot::Retransmit);
            ctx.disarm(&mut self.core, TimerSlot::Timeout);
        }
        match (self.state, resp.status) {
            (InviteState::Calling | InviteState::Proceeding, 100..=199) => {
                self.state = InviteState::Proceeding;
                (true, Flow::Continue)
            }
            (InviteState::Calling | InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                let m = ctx.timers.timeout();
                ctx.arm(&mut self.core, TimerKind::M, m);
                (true, Flow::Continue)
            }
            (InviteState::Calling | InviteState::Proceeding, _) => {
                self.state = InviteState::Completed;
                let ack = self.build_ack(resp);
                ctx.send(self.core.peer, ack.clone());
                self.ack = Some(ack);
                if self.core.reliable() {
                    return (true, Flow::Terminate);
                }
                let d = ctx.timers.timeout();
                ctx.arm(&mut self.core, TimerKind::D, d);
                (true, Flow::Continue)
            }
            // RFC 6026: every 2xx (retransmissions, other forks) goes to the TU, which ACKs it.
            (InviteState::Accepted, 200..=299) => (true, Flow::Continue),
            (InviteState::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    ctx.send(self.core.peer, ack.clone());
                }
                (false, Flow::Continue)
            }
            _ => (false, Flow::Continue),
        }
    }

    pub(super) fn on_timer(&mut self, kind: TimerKind, ctx: &mut Ctx<'_>) -> Flow {
        match (kind, self.state) {
            (TimerKind::A, InviteState::Calling) => {
                ctx.send(self.core.peer, self.request.clone());
                self.a_interval *= 2;
                let a = self.a_interval;
                ctx.arm(&mut self.core, TimerKind::A, a);
                Flow::Continue
            }
            (TimerKind::B, InviteState::Calling) => {
                ctx.out.push(Action::Timeout {
                    key: self.core.key.clone(),
                });
                Flow::Terminate
            }
            (TimerKind::D, InviteState::Completed) | (TimerKind::M, InviteState::Accepted) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }

    /// The ACK for a 300–699 final (§17.1.1.3): the INVITE's Request-URI, top Via, Route,
    /// From, Call-ID and CSeq number; the response's To.
    fn build_ack(&self, resp: &Response) -> Bytes {
        let p = &*self.parts;
        let mut ack = Request::new(Method::Ack, p.uri.clone());
        ack.headers.push(HeaderName::Via, p.via.clone());
        for route in &p.routes {
            ack.headers.push(HeaderName::Route, route.clone());
        }
        ack.headers
            .push(HeaderName::MaxForwards, crate::stack::sip::message::MAX_FORWARDS);
        ack.headers.push(HeaderName::From, p.from.clone());
        if let Some(to) = resp.headers.get(&HeaderName::To) {
            ack.headers.push(HeaderName::To, to.clone());
        }
        ack.headers.push(HeaderName::CallId, p.call_id.clone());
        ack.headers.push(HeaderName::CSeq, format!("{} ACK", p.seq));
        ack.headers.push(HeaderName::ContentLength, "0");
        Bytes::from(ack.to_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
}

/// A non-INVITE client transaction.
pub(super) struct NonInviteClient {
    pub(super) core: Core,
    state: NonInviteState,
    request: Bytes,
    /// The next Timer E interval.
    e_interval: u64,
}

impl NonInviteClient {
    /// Sends the request and starts Timers E (UDP) and F.
    pub(super) fn start(core: Core, req: &Request, ctx: &mut Ctx<'_>) -> Self {
        let mut tsx = NonInviteClient {
            core,
            state: NonInviteState::Trying,
            request: Bytes::from(req.to_bytes()),
            e_interval: ctx.timers.t1,
        };
        ctx.send(tsx.core.peer, tsx.request.clone());
        if !tsx.core.reliable() {
            let e = tsx.e_interval;
            ctx.arm(&mut tsx.core, TimerKind::E, e);
        }
        let f = ctx.timers.timeout();
        ctx.arm(&mut tsx.core, TimerKind::F, f);
        tsx
    }

    /// A response: whether it goes to the TU, and whether the transaction ends.
    pub(super) fn on_response(&mut self, resp: &Response, ctx: &mut Ctx<'_>) -> (bool, Flow) {
        if self.state == NonInviteState::Completed {
            return (false, Flow::Continue);
        }
        if resp.status < 200 {
            self.state = NonInviteState::Proceeding;
            return (true, Flow::Continue);
        }
        self.state = NonInviteState::Completed;
        ctx.disarm(&mut self.core, TimerSlot::Retransmit);
        ctx.disarm(&mut self.core, TimerSlot::Timeout);
        if self.core.reliable() {
            return (true, Flow::Terminate);
        }
        let k = ctx.timers.t4;
        ctx.arm(&mut self.core, TimerKind::K, k);
        (true, Flow::Continue)
    }

    pub(super) fn on_timer(&mut self, kind: TimerKind, ctx: &mut Ctx<'_>) -> Flow {
        match (kind, self.state) {
            (TimerKind::E, NonInviteState::Trying | NonInviteState::Proceeding) => {
                ctx.send(self.core.peer, self.request.clone());
                self.e_interval = match self.state {
                    NonInviteState::Trying => (self.e_interval * 2).min(ctx.timers.t2),
                    _ => ctx.timers.t2,
                };
                let e = self.e_interval;
                ctx.arm(&mut self.core, TimerKind::E, e);
                Flow::Continue
            }
            (TimerKind::F, NonInviteState::Trying | NonInviteState::Proceeding) => {
                ctx.out.push(Action::Timeout {
                    key: self.core.key.clone(),
                });
                Flow::Terminate
            }
            (TimerKind::K, NonInviteState::Completed) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::stack::sip::{HeaderName, Message};

    fn start(layer: &mut TransactionLayer, method: &str, t: TransportKind) -> (TsxKey, Request) {
        let req = outgoing(method, t, &new_branch());
        let mut out = Vec::new();
        let key = layer
            .send_request(req.clone(), dest(t), 0, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len(), 1);
        assert_eq!(sent_request(&out[0]), req);
        (key, req)
    }

    fn reply(layer: &mut TransactionLayer, req: &Request, status: u16, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        layer.on_response(
            req.response(status, None, "callee"),
            dest(TransportKind::Udp),
            now,
            &mut out,
        );
        out
    }

    #[test]
    fn invite_timer_a_doubles_until_timer_b() {
        let mut layer = TransactionLayer::default();
        let (key, _) = start(&mut layer, "INVITE", TransportKind::Udp);
        assert_eq!(
            send_times(&mut layer, 0, 31_999),
            [500, 1_500, 3_500, 7_500, 15_500, 31_500]
        );
        let mut out = Vec::new();
        layer.on_tick(32_000, &mut out);
        assert_eq!(out, [Action::Timeout { key }]);
        assert!(layer.is_empty());
    }

    #[test]
    fn invite_tcp_has_no_timer_a() {
        let mut layer = TransactionLayer::default();
        let (key, _) = start(&mut layer, "INVITE", TransportKind::Tcp);
        let mut out = Vec::new();
        layer.on_tick(31_999, &mut out);
        assert!(out.is_empty());
        layer.on_tick(32_000, &mut out);
        assert_eq!(out, [Action::Timeout { key }]);
    }

    #[test]
    fn invite_486_gets_an_ack_and_timer_d() {
        let mut layer = TransactionLayer::default();
        let (key, req) = start(&mut layer, "INVITE", TransportKind::Udp);
        let out = reply(&mut layer, &req, 180, 200);
        assert!(
            matches!(&out[..], [Action::Response { response, .. }] if response.status == 180),
            "{out:?}"
        );
        assert_eq!(
            send_times(&mut layer, 200, 10_000),
            Vec::<u64>::new(),
            "a provisional stops Timer A"
        );

        let out = reply(&mut layer, &req, 486, 10_000);
        let [Action::Send { to, data }, Action::Response { key: k, response }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((k, response.status, *to), (&key, 486, dest(TransportKind::Udp)));
        let ack = match parse_message(data.clone(), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, req.uri);
        assert_eq!(
            ack.headers.get_all(&HeaderName::Via).collect::<Vec<_>>(),
            req.headers.get(&HeaderName::Via).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            ack.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
            req.headers.get_all(&HeaderName::Route).collect::<Vec<_>>()
        );
        assert_eq!(ack.headers.get(&HeaderName::From), req.headers.get(&HeaderName::From));
        assert_eq!(ack.call_id(), req.call_id());
        assert_eq!(ack.header_to().and_then(|a| a.tag()).as_deref(), Some("callee"));
        assert_eq!(ack.cseq().map(|c| (c.seq, c.method)), Some((41, Method::Ack)));
        assert_eq!(ack.content_length(), Some(0));
        assert!(ack.body.is_empty());
        let first_ack = out[0].clone();

        // A retransmitted 486 gets the same ACK and is not passed up.
        assert_eq!(reply(&mut layer, &req, 486, 11_000), [first_ack]);
        // Timer D: 32 s on UDP.
        let mut out = Vec::new();
        layer.on_tick(41_999, &mut out);
        assert_eq!(layer.len(), 1);
        layer.on_tick(42_000, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(layer.is_empty());
        assert!(
            reply(&mut layer, &req, 486, 42_001).is_empty(),
            "a late 486 matches nothing"
        );
    }

    #[test]
    fn invite_486_over_tcp_ends_at_once() {
        let mut layer = TransactionLayer::default();
        let (_, req) = start(&mut layer, "INVITE", TransportKind::Tcp);
        let out = reply(&mut layer, &req, 603, 100);
        assert!(
            matches!(&out[..], [Action::Send { .. }, Action::Response { .. }]),
            "{out:?}"
        );
        assert!(layer.is_empty(), "Timer D is zero on TCP");
        assert_eq!(layer.next_deadline(), None);
    }

    #[test]
    fn invite_2xx_accepted_timer_m() {
        let mut layer = TransactionLayer::default();
        let (key, req) = start(&mut layer, "INVITE", TransportKind::Udp);
        let out = reply(&mut layer, &req, 200, 700);
        assert!(
            matches!(&out[..], [Action::Response { response, .. }] if response.status == 200),
            "{out:?}"
        );
        // Retransmitted 2xx go to the TU (it ACKs them); the layer sends no ACK itself.
        let out = reply(&mut layer, &req, 200, 1_200);
        assert!(
            matches!(&out[..], [Action::Response { key: k, .. }] if *k == key),
            "{out:?}"
        );
        assert!(reply(&mut layer, &req, 180, 1_300).is_empty());
        assert_eq!(
            send_times(&mut layer, 1_300, 32_699),
            Vec::<u64>::new(),
            "no Timer A in Accepted"
        );
        assert_eq!(layer.len(), 1);
        let mut out = Vec::new();
        layer.on_tick(32_700, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(layer.is_empty(), "Timer M = 64·T1");
    }

    #[test]
    fn non_invite_timer_e_until_timer_f() {
        let mut layer = TransactionLayer::default();
        let (key, _) = start(&mut layer, "OPTIONS", TransportKind::Udp);
        // 500, 1000, 2000, 4000, 4000 … apart.
        let times = send_times(&mut layer, 0, 31_999);
        assert_eq!(
            times,
            [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        let mut out = Vec::new();
        layer.on_tick(32_000, &mut out);
        assert_eq!(out, [Action::Timeout { key }]);
        assert!(layer.is_empty());
    }

    #[test]
    fn non_invite_provisional_sets_timer_e_to_t2_then_timer_k() {
        let mut layer = TransactionLayer::default();
        let (key, req) = start(&mut layer, "REGISTER", TransportKind::Udp);
        assert_eq!(send_times(&mut layer, 0, 600), [500]);
        let out = reply(&mut layer, &req, 100, 600);
        assert!(
            matches!(&out[..], [Action::Response { response, .. }] if response.status == 100),
            "{out:?}"
        );
        // The E already running (due at 1500) fires, then every T2.
        assert_eq!(send_times(&mut layer, 600, 10_000), [1_500, 5_500, 9_500]);
        let out = reply(&mut layer, &req, 200, 10_000);
        assert!(
            matches!(&out[..], [Action::Response { key: k, response }] if *k == key && response.status == 200),
            "{out:?}"
        );
        assert!(
            reply(&mut layer, &req, 200, 10_100).is_empty(),
            "a retransmitted final is absorbed"
        );
        assert_eq!(send_times(&mut layer, 10_000, 14_999), Vec::<u64>::new());
        assert_eq!(layer.len(), 1);
        let mut out = Vec::new();
        layer.on_tick(15_000, &mut out);
        assert!(layer.is_empty(), "Timer K = T4 on UDP");
        assert_eq!(layer.next_deadline(), None, "Timer F was cancelled");
    }

    #[test]
    fn non_invite_tcp_no_timer_e_and_zero_k() {
        let mut layer = TransactionLayer::default();
        let (_, req) = start(&mut layer, "OPTIONS", TransportKind::Tcp);
        assert_eq!(send_times(&mut layer, 0, 20_000), Vec::<u64>::new());
        let out = reply(&mut layer, &req, 200, 20_000);
        assert!(matches!(&out[..], [Action::Response { .. }]), "{out:?}");
        assert!(layer.is_empty());
    }

    #[test]
    fn stray_responses_are_dropped() {
        let mut layer = TransactionLayer::default();
        let (_, req) = start(&mut layer, "OPTIONS", TransportKind::Udp);
        let mut other = req.clone();
        other
            .headers
            .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKnotours");
        assert!(reply(&mut layer, &other, 200, 10).is_empty());
        let mut wrong_method = req.response(200, None, "x");
        wrong_method.headers.set(HeaderName::CSeq, "41 INVITE");
        let mut out = Vec::new();
        layer.on_response(wrong_method, dest(TransportKind::Udp), 10, &mut out);
        let mut no_via = req.response(200, None, "x");
        no_via.headers.remove(&HeaderName::Via);
        layer.on_response(no_via, dest(TransportKind::Udp), 10, &mut out);
        assert!(out.is_empty());
        assert_eq!(layer.len(), 1);
    }

    #[test]
    fn send_request_errors() {
        let mut layer = TransactionLayer::default();
        let mut out = Vec::new();
        let d = dest(TransportKind::Udp);
        let branch = new_branch();
        assert!(branch.starts_with("z9hG4bK") && branch.len() > 20, "{branch}");
        assert_eq!(
            layer.send_request(outgoing("OPTIONS", TransportKind::Udp, "old-style"), d, 0, &mut out),
            Err(TransactionError::NoBranch)
        );
        assert_eq!(
            layer.send_request(outgoing("ACK", TransportKind::Udp, &branch), d, 0, &mut out),
            Err(TransactionError::AckNotTransaction)
        );
        let mut bad_cseq = outgoing("OPTIONS", TransportKind::Udp, &branch);
        bad_cseq.headers.set(HeaderName::CSeq, "41 INFO");
        assert_eq!(
            layer.send_request(bad_cseq, d, 0, &mut out),
            Err(TransactionError::BadCSeq)
        );
        assert!(out.is_empty());
        let key = layer.send_request(outgoing("OPTIONS", TransportKind::Udp, &branch), d, 0, &mut out);
        assert!(key.is_ok());
        let again = layer.send_request(outgoing("OPTIONS", TransportKind::Udp, &branch), d, 0, &mut out);
        assert!(matches!(again, Err(TransactionError::Duplicate(_))), "{again:?}");
        // The same branch with CANCEL is a different transaction.
        assert!(
            layer
                .send_request(outgoing("CANCEL", TransportKind::Udp, &branch), d, 0, &mut out)
                .is_ok()
        );
        assert_eq!(layer.len(), 2);
    }
}
