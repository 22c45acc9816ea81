//! The one place that builds a request we send outside a dialog (RFC 3261 §8.1.1): a Via with
//! a fresh branch for the transport it goes over, Max-Forwards, From with a fresh tag, To, a
//! fresh Call-ID and CSeq 1. Requests inside a dialog come from [`crate::stack::dialog::Dialog`],
//! which builds on the same [`MAX_FORWARDS`].

use std::net::SocketAddr;

use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Uri};
use crate::stack::transaction::new_branch;
use crate::stack::transport::Peer;

pub use crate::stack::sip::message::MAX_FORWARDS;

/// A new out-of-dialog request to `uri` over `peer`'s transport, from `local`. `from` and
/// `to` are name-addrs without tags (`"IVM" <sip:ivm@example>`); From gets a fresh tag.
pub fn out_of_dialog(method: Method, uri: Uri, from: &str, to: &str, peer: Peer, local: SocketAddr) -> Request {
    let cseq = format!("1 {method}");
    let mut req = Request::new(method, uri);
    req.headers.push(HeaderName::Via, via_value(peer, local, &new_branch()));
    req.headers.push(HeaderName::MaxForwards, MAX_FORWARDS);
    req.headers.push(HeaderName::From, format!("{from};tag={}", new_tag()));
    req.headers.push(HeaderName::To, to.to_owned());
    req.headers
        .push(HeaderName::CallId, format!("{}@ivm", random_token(12)));
    req.headers.push(HeaderName::CSeq, cseq);
    req
}

/// A Via value for a request we send on `peer`'s transport.
pub fn via_value(peer: Peer, local: SocketAddr, branch: &str) -> String {
    format!("SIP/2.0/{} {};branch={branch};rport", peer.transport.via_name(), local)
}

/// A fresh tag.
pub fn new_tag() -> String {
    random_token(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::sip::SipHeaders;
    use crate::stack::transport::TransportKind;

    #[test]
    fn every_mandatory_header_once_and_fresh_identifiers() {
        let peer = Peer {
            transport: TransportKind::Tcp,
            addr: "192.0.2.7:5060".parse().unwrap_or_else(|_| unreachable!()),
        };
        let local = "192.0.2.1:5060".parse().unwrap_or_else(|_| unreachable!());
        let uri = Uri::parse(b"sip:1001@192.0.2.7").unwrap_or_else(|e| panic!("{e}"));
        let make = || {
            out_of_dialog(
                Method::Message,
                uri.clone(),
                "\"IVM\" <sip:ivm@ivm.local>",
                "<sip:1001@ivm.local>",
                peer,
                local,
            )
        };
        let (a, b) = (make(), make());
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            assert_eq!(a.headers.get_all(&name).count(), 1, "{name:?}");
        }
        let via =
            String::from_utf8_lossy(a.headers.get(&HeaderName::Via).map(|v| &v[..]).unwrap_or_default()).into_owned();
        assert!(via.starts_with("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK"), "{via}");
        assert_eq!(a.cseq().map(|c| (c.seq, c.method)), Some((1, Method::Message)));
        assert!(a.header_from().and_then(|f| f.tag()).is_some());
        assert_ne!(a.call_id(), b.call_id());
        assert_ne!(
            a.header_from().and_then(|f| f.tag()),
            b.header_from().and_then(|f| f.tag())
        );
    }
}
