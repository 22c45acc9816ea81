//! INVITE sessions over the real endpoint, transaction layer and router on an in-memory wire
//! (no sockets), with T1 shrunk to 20 ms: the test plays the phone.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::SessionEvent;
use super::client::{ClientInvite, RingOutcome};
use super::server::{AcceptError, ServerInvite};
use crate::stack::dialog::DialogTable;
use crate::stack::endpoint::{self, SipCore};
use crate::stack::request;
use crate::stack::router::{Incoming, Router, Service};
use crate::stack::sip::{Framing, HeaderName, Message, Method, Request, Response, SipHeaders, Uri, parse_message};
use crate::stack::transaction::Timers;
use crate::stack::transport::{Inbound, Peer, TransportKind};

const PHONE: &str = "127.0.0.1:5070";
const T1: u64 = 20;

fn phone() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: PHONE.parse().unwrap_or_else(|_| unreachable!()),
    }
}

/// Hands every INVITE to the test as a [`ServerInvite`].
struct Invites {
    core: SipCore,
    dialogs: DialogTable,
    tx: mpsc::UnboundedSender<ServerInvite>,
}

impl Service for Invites {
    fn name(&self) -> &'static str {
        "invites"
    }
    fn methods(&self) -> &'static [Method] {
        &[Method::Invite, Method::Bye]
    }
    fn claims(&self, request: &Request) -> bool {
        request.method == Method::Invite
    }
    fn handle(&self, incoming: Incoming) {
        let _ = self.tx.send(ServerInvite::new(&self.core, &self.dialogs, incoming));
    }
}

struct Stack {
    core: SipCore,
    dialogs: DialogTable,
    inbound: mpsc::Sender<Inbound>,
    wire: mpsc::UnboundedReceiver<(Peer, Bytes)>,
    invites: mpsc::UnboundedReceiver<ServerInvite>,
}

fn stack() -> Stack {
    let (transmitter, wire) = crate::stack::transport::Transmitter::memory();
    let (inbound, inbound_rx) = mpsc::channel(64);
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!());
    let timers = Timers {
        t1: T1,
        t2: 4 * T1,
        t4: 5 * T1,
    };
    let (core, core_loop) = endpoint::core(timers, transmitter, inbound_rx, local);
    let dialogs = DialogTable::default();
    let (tx, invites) = mpsc::unbounded_channel();
    let router = Router::new(core.clone(), dialogs.clone())
        .register(std::sync::Arc::new(Invites {
            core: core.clone(),
            dialogs: dialogs.clone(),
            tx,
        }))
        .build();
    tokio::spawn(core_loop.run(router, std::future::pending()));
    Stack {
        core,
        dialogs,
        inbound,
        wire,
        invites,
    }
}

fn parse(text: &[u8]) -> Message {
    match parse_message(Bytes::copy_from_slice(text), Framing::Datagram) {
        Ok(m) => m,
        Err(e) => panic!("does not parse: {e}\n{}", String::from_utf8_lossy(text)),
    }
}

fn header(headers: &impl SipHeaders, name: HeaderName) -> String {
    headers
        .headers()
        .get(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

impl Stack {
    /// The phone sends `text`.
    async fn send(&self, text: &str) {
        let message = parse(text.as_bytes());
        let _ = self
            .inbound
            .send(Inbound {
                message,
                source: phone(),
            })
            .await;
    }

    /// The next message on the wire, if one comes within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, self.wire.recv()).await {
            Ok(Some((to, bytes))) => {
                assert_eq!(to, phone(), "everything goes to the phone");
                Some(parse(&bytes))
            }
            _ => None,
        }
    }

    async fn next(&mut self) -> Message {
        match self.next_within(Duration::from_secs(2)).await {
            Some(m) => m,
            None => panic!("nothing on the wire"),
        }
    }

    /// The next final response (the transaction layer may send `100 Trying` first).
    async fn response(&mut self) -> Response {
        loop {
            match self.next().await {
                Message::Response(r) if r.status == 100 => {}
                Message::Response(r) => return r,
                Message::Request(r) => panic!("a {} instead of a response", r.method),
            }
        }
    }

    async fn request(&mut self) -> Request {
        match self.next().await {
            Message::Request(r) => r,
            Message::Response(r) => panic!("a {} instead of a request", r.status),
        }
    }

    /// Every message on the wire for `span`.
    async fn drain(&mut self, span: Duration) -> Vec<Message> {
        let end = tokio::time::Instant::now() + span;
        let mut seen = Vec::new();
        while let Ok(Some((_, bytes))) = tokio::time::timeout_at(end, self.wire.recv()).await {
            seen.push(parse(&bytes));
        }
        seen
    }

    /// Our INVITE to the phone, ringing (up to `timeout`) in a task of its own.
    fn ring_in_background(&self, timeout: Duration) -> tokio::task::JoinHandle<RingOutcome> {
        let (core, dialogs) = (self.core.clone(), self.dialogs.clone());
        tokio::spawn(async move {
            ClientInvite::send(&core, &dialogs, our_invite(), phone())
                .ring(timeout)
                .await
        })
    }

    async fn invite_from_phone(&mut self, branch: &str) -> ServerInvite {
        self.send(&phone_invite(branch)).await;
        match tokio::time::timeout(Duration::from_secs(2), self.invites.recv()).await {
            Ok(Some(i)) => i,
            _ => panic!("the INVITE did not reach the service"),
        }
    }
}

fn phone_invite(branch: &str) -> String {
    format!(
        "INVITE sip:555@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@ivm.local>;tag=ph\r\nTo: <sip:555@ivm.local>\r\n\
         Call-ID: {branch}@phone\r\nCSeq: 7 INVITE\r\nContact: <sip:1001@{PHONE}>\r\n\
         Record-Route: <sip:proxy.example;lr>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// An in-dialog request from the phone for a session we answered with `to_tag`.
fn phone_in_dialog(method: &str, branch: &str, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:ivm@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@ivm.local>;tag=ph\r\nTo: <sip:555@ivm.local>;tag={to_tag}\r\n\
         Call-ID: inv1@phone\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn count_status(messages: &[Message], status: u16) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, Message::Response(r) if r.status == status))
        .count()
}

#[tokio::test]
async fn the_2xx_is_retransmitted_until_the_ack_and_then_stops() {
    let mut s = stack();
    let invite = s.invite_from_phone("inv1").await;
    let mut ok = invite.ok("svc");
    ok.body = Bytes::from_static(b"v=0\r\n");
    let Ok(mut session) = invite.accept(ok) else {
        panic!("not accepted")
    };
    let first = s.response().await;
    assert_eq!(first.status, 200);
    let to_tag = first.header_to().and_then(|t| t.tag()).unwrap_or_default();
    assert_eq!(Some(to_tag.clone()), Some(session.dialog.id.local_tag.clone()));
    assert!(header(&first, HeaderName::Contact).starts_with("<sip:svc@127.0.0.1:5060"));
    assert_eq!(
        header(&first, HeaderName::RecordRoute),
        "<sip:proxy.example;lr>",
        "Record-Route copied (RFC 3261 §12.1.1)"
    );
    // No ACK yet: again at T1, 2·T1, 4·T1, then every T2 (= 4·T1): ~20, 60, 140, 220 ms.
    let before_ack = s.drain(Duration::from_millis(10 * T1)).await;
    assert!(
        count_status(&before_ack, 200) >= 3,
        "{} retransmissions in {} ms",
        count_status(&before_ack, 200),
        10 * T1
    );
    s.send(&phone_in_dialog("ACK", "inv1", &to_tag, 7)).await;
    match tokio::time::timeout(Duration::from_secs(1), session.next()).await {
        Ok(SessionEvent::Ack(ack)) => assert_eq!(ack.method, Method::Ack),
        _ => panic!("the ACK did not reach the session"),
    }
    assert!(session.confirmed());
    // Allow one retransmission already under way, then silence.
    let _ = s.next_within(Duration::from_millis(T1)).await;
    let after = s.drain(Duration::from_millis(20 * T1)).await;
    assert_eq!(count_status(&after, 200), 0, "retransmitted after the ACK");

    // A BYE reaches the session; the dialog goes when it is closed.
    s.send(&phone_in_dialog("BYE", "bye1", &to_tag, 8)).await;
    match tokio::time::timeout(Duration::from_secs(1), session.next()).await {
        Ok(SessionEvent::Request { key, request, source }) => {
            assert_eq!(request.method, Method::Bye);
            session.reply(key, &request, request.response(200, None, ""), source);
        }
        _ => panic!("the BYE did not reach the session"),
    }
    assert_eq!(s.response().await.status, 200);
    session.close();
    assert!(s.dialogs.is_empty());
}

#[tokio::test]
async fn without_an_ack_the_session_ends_after_64_t1() {
    let mut s = stack();
    let invite = s.invite_from_phone("inv1").await;
    let started = tokio::time::Instant::now();
    let Ok(mut session) = invite.accept(invite.ok("svc")) else {
        panic!("not accepted")
    };
    match tokio::time::timeout(Duration::from_millis(100 * T1), session.next()).await {
        Ok(SessionEvent::AckTimeout) => {}
        Ok(other) => panic!("{other:?} instead of the ACK timeout"),
        Err(_) => panic!("no ACK timeout within 100·T1"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(64 * T1),
        "{:?}",
        started.elapsed()
    );
    let sent = s.drain(Duration::from_millis(5 * T1)).await;
    // 1 + retransmissions at 20, 60, 140, 220, … up to 64·T1 = 1,280 ms: 19 in all.
    assert!(count_status(&sent, 200) >= 15, "{} 200s", count_status(&sent, 200));
    session.hang_up();
    assert!(s.dialogs.is_empty());
}

#[tokio::test]
async fn a_cancel_before_the_answer_gets_487_and_no_session() {
    let mut s = stack();
    let invite = s.invite_from_phone("inv2").await;
    s.send(
        &phone_invite("inv2")
            .replacen("INVITE sip:", "CANCEL sip:", 1)
            .replace("7 INVITE", "7 CANCEL"),
    )
    .await;
    let cancel_ok = s.response().await;
    assert_eq!(
        (cancel_ok.status, cancel_ok.cseq().map(|c| c.method)),
        (200, Some(Method::Cancel))
    );
    // Let the router raise the flag.
    tokio::time::sleep(Duration::from_millis(T1)).await;
    assert!(invite.cancelled());
    assert!(matches!(invite.accept(invite.ok("svc")), Err(AcceptError::Cancelled)));
    let r = s.response().await;
    assert_eq!((r.status, r.cseq().map(|c| c.method)), (487, Some(Method::Invite)));
    assert!(s.dialogs.is_empty(), "no dialog for a cancelled INVITE");
}

// ---- the client side

fn our_invite() -> Request {
    let uri = Uri::parse(format!("sip:1002@{PHONE}").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let local = "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!());
    let mut invite = request::out_of_dialog(
        Method::Invite,
        uri,
        "<sip:1001@ivm.local>",
        "<sip:1002@ivm.local>",
        phone(),
        local,
    );
    invite.headers.push(HeaderName::Contact, "<sip:svc@127.0.0.1:5060>");
    invite
}

/// The phone's response to the request it received, with the phone's To tag.
fn phone_response(req: &Request, status: u16, extra: &[(HeaderName, &str)]) -> String {
    let mut r = req.response(status, None, "phonetag");
    if (200..300).contains(&status) {
        r.headers.push(HeaderName::Contact, format!("<sip:1002@{PHONE}>"));
    }
    for (name, value) in extra {
        r.headers.push(name.clone(), value.to_string());
    }
    String::from_utf8_lossy(&r.to_bytes()).into_owned()
}

#[tokio::test]
async fn an_answered_invite_is_acked_with_its_cseq_and_a_retransmitted_2xx_again() {
    let mut s = stack();
    let ringing = s.ring_in_background(Duration::from_secs(5));
    let invite = s.request().await;
    assert_eq!(invite.method, Method::Invite);
    s.send(&phone_response(&invite, 180, &[])).await;
    let ok = phone_response(
        &invite,
        200,
        &[
            (HeaderName::RecordRoute, "<sip:p2.example;lr>"),
            (HeaderName::RecordRoute, "<sip:p1.example;lr>"),
        ],
    );
    s.send(&ok).await;
    let Ok(RingOutcome::Answered(mut session)) = ringing.await else {
        panic!("not answered")
    };
    let ack = s.request().await;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.cseq().map(|c| (c.seq, c.method)),
        invite.cseq().map(|c| (c.seq, Method::Ack))
    );
    assert_eq!(ack.uri.to_string(), format!("sip:1002@{PHONE}"), "to the remote target");
    let routes: Vec<String> = ack
        .headers
        .get_all(&HeaderName::Route)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert_eq!(
        routes,
        ["<sip:p1.example;lr>", "<sip:p2.example;lr>"],
        "route set reversed"
    );

    // The phone did not get the ACK and sends its 2xx again: ACKed again.
    s.send(&ok).await;
    let pump = tokio::time::timeout(Duration::from_millis(10 * T1), session.next());
    let (again, _) = tokio::join!(s.request(), pump);
    assert_eq!(again.method, Method::Ack);

    session.hang_up();
    let bye = s.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert!(bye.cseq().is_some_and(|c| c.seq > 1), "a new CSeq in the dialog");
    assert!(s.dialogs.is_empty());
}

#[tokio::test]
async fn a_ringing_invite_is_cancelled_at_the_ring_timeout() {
    let mut s = stack();
    let ringing = s.ring_in_background(Duration::from_millis(5 * T1));
    let invite = s.request().await;
    s.send(&phone_response(&invite, 180, &[])).await;
    let cancel = loop {
        let r = s.request().await;
        if r.method == Method::Cancel {
            break r;
        }
    };
    assert_eq!(
        header(&cancel, HeaderName::Via),
        header(&invite, HeaderName::Via),
        "same branch"
    );
    assert_eq!(cancel.cseq().map(|c| c.seq), invite.cseq().map(|c| c.seq));
    s.send(&phone_response(&cancel, 200, &[])).await;
    s.send(&phone_response(&invite, 487, &[])).await;
    match ringing.await {
        Ok(RingOutcome::Refused { status, cancelled }) => assert_eq!((status, cancelled), (487, true)),
        _ => panic!("not refused with our 487"),
    }
}

#[tokio::test]
async fn an_invite_that_never_rang_is_not_cancelled_and_a_late_2xx_is_hung_up() {
    let mut s = stack();
    let outcome = ClientInvite::send(&s.core, &s.dialogs, our_invite(), phone())
        .ring(Duration::from_millis(3 * T1))
        .await;
    assert!(matches!(outcome, RingOutcome::NoAnswer));
    let invite = s.request().await;
    // Only INVITE retransmissions so far: no CANCEL without a provisional (RFC 3261 §9.1).
    let sent = s.drain(Duration::from_millis(2 * T1)).await;
    assert!(
        sent.iter()
            .all(|m| matches!(m, Message::Request(r) if r.method == Method::Invite)),
        "{sent:?}"
    );
    s.send(&phone_response(&invite, 200, &[])).await;
    let mut methods = Vec::new();
    while methods.len() < 2 {
        match s.next().await {
            Message::Request(r) if r.method != Method::Invite => methods.push(r.method),
            _ => {}
        }
    }
    assert_eq!(methods, [Method::Ack, Method::Bye]);
}

#[tokio::test]
async fn an_invite_given_up_before_it_rang_is_cancelled_once_it_rings() {
    let mut s = stack();
    let outcome = ClientInvite::send(&s.core, &s.dialogs, our_invite(), phone())
        .ring(Duration::from_millis(3 * T1))
        .await;
    assert!(matches!(outcome, RingOutcome::NoAnswer));
    let invite = s.request().await;
    s.send(&phone_response(&invite, 180, &[])).await;
    let cancel = loop {
        let r = s.request().await;
        if r.method == Method::Cancel {
            break r;
        }
    };
    assert_eq!(header(&cancel, HeaderName::Via), header(&invite, HeaderName::Via));
}

#[tokio::test]
async fn a_busy_target_refuses() {
    let mut s = stack();
    let ringing = s.ring_in_background(Duration::from_secs(5));
    let invite = s.request().await;
    s.send(&phone_response(&invite, 486, &[])).await;
    match ringing.await {
        Ok(RingOutcome::Refused { status, cancelled }) => assert_eq!((status, cancelled), (486, false)),
        _ => panic!("not refused"),
    }
    let ack = s.request().await;
    assert_eq!(ack.method, Method::Ack, "the transaction ACKs a non-2xx itself");
}

#[tokio::test]
async fn a_branch_that_lost_the_fork_is_cancelled_and_its_late_2xx_hung_up() {
    let mut s = stack();
    let (won_elsewhere, stop) = tokio::sync::oneshot::channel::<()>();
    let ringing = tokio::spawn({
        let (core, dialogs) = (s.core.clone(), s.dialogs.clone());
        async move {
            ClientInvite::send(&core, &dialogs, our_invite(), phone())
                .ring_until(Duration::from_secs(60), async move {
                    let _ = stop.await;
                })
                .await
        }
    });
    let invite = s.request().await;
    s.send(&phone_response(&invite, 180, &[])).await;
    tokio::time::sleep(Duration::from_millis(T1)).await;
    let _ = won_elsewhere.send(());
    let cancel = loop {
        let r = s.request().await;
        if r.method == Method::Cancel {
            break r;
        }
    };
    s.send(&phone_response(&cancel, 200, &[])).await;
    // The phone answered just before the CANCEL reached it.
    s.send(&phone_response(&invite, 200, &[])).await;
    assert!(matches!(ringing.await, Ok(RingOutcome::NoAnswer)), "the branch lost");
    let mut methods = Vec::new();
    while methods.len() < 2 {
        match s.next().await {
            Message::Request(r) if r.method == Method::Ack || r.method == Method::Bye => methods.push(r.method),
            _ => {}
        }
    }
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    assert!(s.dialogs.is_empty());
}
