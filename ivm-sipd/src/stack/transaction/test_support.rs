//! Test helpers for the transaction layer: messages as a peer would send them, and a fake
//! clock stepping the layer a millisecond at a time.

pub(super) use crate::stack::sip::{
    Framing, HeaderName, Message, Method, Request, Response, SipHeaders, parse_message,
};
pub(super) use crate::stack::transport::{Peer, TransportKind};

use super::{Action, TransactionLayer};

pub(super) const BRANCH: &str = "z9hG4bKtest1";

/// The remote UA sending us requests.
pub(super) fn peer(t: TransportKind) -> Peer {
    Peer {
        transport: t,
        addr: "192.0.2.10:5060".parse().unwrap_or_else(|e| panic!("{e}")),
    }
}

/// Where our client transactions send.
pub(super) fn dest(t: TransportKind) -> Peer {
    Peer {
        transport: t,
        addr: "198.51.100.7:5060".parse().unwrap_or_else(|e| panic!("{e}")),
    }
}

pub(super) fn parse_request(text: &str) -> Request {
    match parse_message(bytes::Bytes::from(text.replace('\n', "\r\n")), Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// A request from `peer(t)`: `branch` empty means a Via without branch (RFC 2543).
pub(super) fn request(method: &str, t: TransportKind, branch: &str, to_tag: &str) -> Request {
    let branch = if branch.is_empty() {
        String::new()
    } else {
        format!(";branch={branch}")
    };
    parse_request(&format!(
        "{method} sip:bob@192.0.2.1 SIP/2.0\n\
         Via: SIP/2.0/{} 192.0.2.10:5060{branch}\n\
         Max-Forwards: 70\n\
         From: Alice <sip:alice@example.com>;tag=1928301774\n\
         To: Bob <sip:bob@example.com>{to_tag}\n\
         Call-ID: a84b4c76e66710@pc33.example.com\n\
         CSeq: 314159 {method}\n\
         Contact: <sip:alice@192.0.2.10>\n\
         Content-Length: 0\n\n",
        t.via_name()
    ))
}

/// A request we send, with Route headers.
pub(super) fn outgoing(method: &str, t: TransportKind, branch: &str) -> Request {
    parse_request(&format!(
        "{method} sip:carol@198.51.100.9 SIP/2.0\n\
         Via: SIP/2.0/{} 192.0.2.1:5060;branch={branch};rport\n\
         Route: <sip:p1.example.com;lr>\n\
         Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\n\
         Max-Forwards: 70\n\
         From: <sip:ivm@example.com>;tag=ivm1\n\
         To: <sip:carol@example.com>\n\
         Call-ID: out-1@192.0.2.1\n\
         CSeq: 41 {method}\n\
         Content-Type: application/sdp\n\
         Content-Length: 4\n\nv=0\n",
        t.via_name()
    ))
}

fn parse(action: &Action) -> Message {
    let Action::Send { data, .. } = action else {
        panic!("not a Send: {action:?}")
    };
    parse_message(data.clone(), Framing::Datagram).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn sent_response(action: &Action) -> Response {
    match parse(action) {
        Message::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

pub(super) fn sent_request(action: &Action) -> Request {
    match parse(action) {
        Message::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// The status codes of the responses sent.
pub(super) fn statuses(out: &[Action]) -> Vec<u16> {
    out.iter()
        .filter(|a| matches!(a, Action::Send { .. }))
        .map(|a| sent_response(a).status)
        .collect()
}

/// Ticks the layer every millisecond after `from` up to `to`; the times at which it sent
/// something. Anything but `Send` fails the test.
pub(super) fn send_times(layer: &mut TransactionLayer, from: u64, to: u64) -> Vec<u64> {
    let mut times = Vec::new();
    let mut out = Vec::new();
    for now in from + 1..=to {
        layer.on_tick(now, &mut out);
        for action in out.drain(..) {
            assert!(matches!(action, Action::Send { .. }), "at {now}: {action:?}");
            times.push(now);
        }
    }
    times
}
