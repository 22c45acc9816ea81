//! What arrives: a parsed message with its source, the `received`/`rport` stamps on an
//! incoming request's top Via (RFC 3261 §18.2.1, RFC 3581 §4), and the stateless answer to a
//! request that did not parse.

use bytes::Bytes;

use super::peer::Peer;
use crate::stack::sip::parse::{ErrorKind, ParseError};
use crate::stack::sip::scan::split_list;
use crate::stack::sip::{HeaderName, Message, Request, Via};

/// A parsed message and where it came from, on its way to the transaction layer.
#[derive(Debug)]
pub struct Inbound {
    pub message: Message,
    pub source: Peer,
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: adds `received` to the top Via when its host is not the
/// source address, and fills in an empty `rport`. Only the first via-parm of the first Via
/// header is rewritten; the rest is kept as received.
pub fn stamp_received(req: &mut Request, source: Peer) {
    let Some(first) = req.headers.get_mut(&HeaderName::Via) else {
        return;
    };
    let parts = split_list(first);
    let Some(top) = parts.first() else { return };
    let Ok(mut via) = Via::parse(top) else { return };
    let src_ip = source.addr.ip();
    let mut changed = false;
    if via.host.ip() != Some(src_ip) {
        via.params.set("received", Some(&src_ip.to_string()));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.params.set("rport", Some(&source.addr.port().to_string()));
        changed = true;
    }
    if changed {
        let mut value = via.to_string().into_bytes();
        for rest in &parts[1..] {
            value.extend_from_slice(b", ");
            value.extend_from_slice(rest);
        }
        *first = Bytes::from(value);
    }
}

/// The stateless answer to a request that did not parse: `505` for another SIP version,
/// `400` with the reason otherwise; `None` when the request cannot be answered (no Via/CSeq).
pub fn stateless_error(e: &ParseError) -> Option<Vec<u8>> {
    let headers = e.answerable.as_ref()?;
    let (status, reason) = match e.kind {
        ErrorKind::VersionNotSupported => (505, "Version Not Supported".to_owned()),
        ErrorKind::Malformed => {
            let clean: String = e.reason.chars().filter(|c| !c.is_control()).collect();
            (400, format!("Bad Request ({clean})"))
        }
    };
    let resp = crate::stack::sip::Response {
        status,
        reason: Bytes::from(reason),
        headers: (**headers).clone(),
        body: Bytes::new(),
    };
    Some(resp.to_bytes())
}
