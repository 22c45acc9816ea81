//! Our side of a call's SDP session once the first offer/answer is done (RFC 3264 §8): what we
//! last sent, its `o=` version, and whether the far end holds the call. Every leg answers a
//! re-INVITE or UPDATE through it: the codec as negotiated, the direction RFC 3264 §6.1 asks
//! for (`sendonly` → `recvonly`, `inactive` → `inactive`, `recvonly` → `sendonly`), the version
//! bumped only when the SDP changes.

use std::net::SocketAddr;

use bytes::Bytes;
use ivm_media::sdp::{self, Negotiated, SessionVersion};

use super::context::Calls;
use crate::stack::dialog::contact_value;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders};
use crate::stack::transport::Peer;

/// The SDP state of one leg.
#[derive(Debug)]
pub struct MediaSession {
    version: SessionVersion,
    /// Our last SDP (the answer, or our offer for a call we placed).
    last: Bytes,
    /// The far end's last offer does not let it receive: send it nothing.
    held: bool,
}

impl MediaSession {
    /// After we sent `last` with `version`.
    pub fn new(version: SessionVersion, last: Bytes) -> MediaSession {
        MediaSession {
            version,
            last,
            held: false,
        }
    }

    /// Whether the far end has put the call on hold.
    pub fn held(&self) -> bool {
        self.held
    }

    /// Our answer to a new `offer` for the media negotiated as `neg` at `local`; an offer that
    /// does not parse keeps the last SDP (and the hold state).
    fn answer(&mut self, neg: &Negotiated, local: SocketAddr, offer: &[u8]) -> Bytes {
        let Ok(remote) = sdp::parse(offer) else {
            return self.last.clone();
        };
        let mut ours = neg.clone();
        ours.direction = remote.direction.reversed();
        self.held = !remote.direction.receives();
        let mut body = sdp::answer(local, &ours, &self.version);
        if !sdp::same_content(&body, &String::from_utf8_lossy(&self.last)) {
            self.version.bump();
            body = sdp::answer(local, &ours, &self.version);
        }
        self.last = Bytes::from(body);
        self.last.clone()
    }

    /// The `200` to a re-INVITE or UPDATE in the dialog with `peer` (hold, resume, refresh):
    /// an answer to its offer, or our last SDP to a re-INVITE without one.
    pub fn reinvite_ok(
        &mut self,
        calls: &Calls,
        request: &Request,
        peer: Peer,
        neg: &Negotiated,
        local: SocketAddr,
    ) -> Response {
        let mut resp = request.response(200, None, "");
        resp.headers.push(
            HeaderName::Contact,
            contact_value("ivm", calls.sip_addr(peer.transport), peer),
        );
        if !request.body.is_empty() {
            resp.headers.push(HeaderName::ContentType, "application/sdp");
            resp.body = self.answer(neg, local, &request.body);
        } else if request.method == Method::Invite {
            resp.headers.push(HeaderName::ContentType, "application/sdp");
            resp.body = self.last.clone();
        }
        let call_id = String::from_utf8_lossy(request.call_id().unwrap_or_default()).into_owned();
        tracing::info!(%call_id, held = self.held, "session changed by the far end");
        resp
    }
}
