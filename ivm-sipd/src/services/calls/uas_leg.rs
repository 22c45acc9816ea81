//! A call we receive and answer (the sender's leg, a retrieval call): the SDP answer and its
//! RTP endpoint (`488` when nothing is common, `503` without a port), the `200 OK` through the
//! stack's INVITE session ([`crate::stack::invite::server`]: retransmitted until the ACK,
//! over after 64·T1 without one), and the answers to requests inside the dialog (BYE,
//! re-INVITE/UPDATE for hold and refresh, INFO).

use std::sync::Arc;

use bytes::Bytes;
use ivm_media::endpoint::RtpEndpoint;
use ivm_media::sdp::{self, Direction, Negotiated, SessionVersion};

use super::media_session::MediaSession;
use super::{CODECS, Calls, TELEPHONE_EVENT_PT};
use crate::stack::invite::SessionEvent;
use crate::stack::invite::server::{AcceptError, ServerInvite, ServerSession};
use crate::stack::sip::{HeaderName, Method, Request};
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;

/// The negotiated media of a call.
pub struct Media {
    pub endpoint: Arc<RtpEndpoint>,
    pub neg: Negotiated,
}

/// Answers the offer of `req` on a fresh RTP endpoint; `Err` is the status and reason to refuse with.
pub async fn prepare_media(calls: &Calls, req: &Request) -> Result<Media, (u16, String)> {
    let offer = sdp::parse(&req.body).map_err(|e| (488, format!("Not Acceptable Here ({e})")))?;
    let neg = sdp::negotiate(&offer, &CODECS).map_err(|e| (e.sip_status(), format!("Not Acceptable Here ({e})")))?;
    if neg.remote.is_ipv6() != calls.settings.media_ip.is_ipv6() && neg.remote.port() != 0 {
        let (theirs, ours) = match neg.remote.is_ipv6() {
            true => ("IPv6", "IPv4"),
            false => ("IPv4", "IPv6"),
        };
        return Err((
            488,
            format!("Not Acceptable Here (the media address is {theirs}; IVM's media is on {ours})"),
        ));
    }
    let endpoint = match calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) {
        Ok(Ok(ep)) => Arc::new(ep),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "call: RTP endpoint failed");
            return Err((503, "Service Unavailable (no RTP port)".into()));
        }
        Err(e) => {
            tracing::error!(error = %e, "call: no RTP port");
            return Err((503, "Service Unavailable (no RTP port)".into()));
        }
    };
    endpoint.set_remote(neg.remote);
    endpoint.set_telephone_event(neg.telephone_event);
    Ok(Media { endpoint, neg })
}

/// An answered call: its media and its INVITE session (the stack retransmits our 2xx until
/// the ACK and reports the dialog's events).
pub struct Answered {
    pub media: Media,
    pub session: ServerSession,
    /// Our SDP session: what we last sent, and whether the far end holds the call.
    sdp: MediaSession,
}

/// What a request inside the dialog meant for the call.
pub enum InDialog {
    /// The far end hung up (already answered `200`).
    Hangup,
    /// A key pressed, sent as SIP INFO (already answered `200`).
    Digit(char),
    /// Handled; nothing for the call to do.
    Handled,
}

/// Answers `invite` with `200 OK` and our SDP answer: the stack registers the dialog and
/// retransmits the 200 until the ACK.
pub fn answer(invite: &ServerInvite, media: Media) -> Result<Answered, AcceptError> {
    let session = SessionVersion::new();
    let mut ok = invite.ok("ivm");
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = Bytes::from(sdp::answer(media.endpoint.local_addr(), &media.neg, &session));
    let call = invite.accept(ok)?;
    let sdp = MediaSession::new(session, call.answer.clone());
    Ok(Answered {
        media,
        session: call,
        sdp,
    })
}

/// Answers an INVITE that carried no offer (RFC 3261 §13.2.1, RFC 3264 §5): our offer goes in
/// the 200 and the caller's answer comes in the ACK. Returns once the ACK arrived with a usable
/// answer. `Err((0, _))`: the call was answered but ended without media (already hung up, or
/// cancelled); any other `Err` is the status to refuse the INVITE with.
pub async fn answer_delayed_offer(calls: &Arc<Calls>, invite: &ServerInvite) -> Result<Answered, (u16, String)> {
    let endpoint = match calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) {
        Ok(Ok(ep)) => Arc::new(ep),
        _ => return Err((503, "Service Unavailable (no RTP port)".into())),
    };
    let session = SessionVersion::new();
    let mut ok = invite.ok("ivm");
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = Bytes::from(sdp::offer(
        endpoint.local_addr(),
        &CODECS,
        TELEPHONE_EVENT_PT,
        Direction::SendRecv,
        &session,
    ));
    let mut call = invite.accept(ok).map_err(|e| (0, e.to_string()))?;
    let ack = loop {
        match call.next().await {
            SessionEvent::Ack(ack) => break Some(ack),
            SessionEvent::Request { key, request, source } if request.method == Method::Bye => {
                call.reply(key, &request, request.response(200, None, ""), source);
                call.close();
                return Err((0, "hung up before the ACK".into()));
            }
            SessionEvent::Request { key, request, source } => {
                call.reply(key, &request, request.response(491, None, ""), source);
            }
            SessionEvent::AckTimeout | SessionEvent::Closed => break None,
        }
    };
    let sdp = MediaSession::new(session, call.answer.clone());
    let mut answered = Answered {
        media: Media {
            endpoint: endpoint.clone(),
            neg: placeholder_negotiated(&endpoint),
        },
        session: call,
        sdp,
    };
    let Some(ack) = ack else {
        answered.hang_up();
        return Err((0, "no ACK".into()));
    };
    match sdp::accept_answer(&ack.body, &CODECS, TELEPHONE_EVENT_PT) {
        Ok(neg) => {
            endpoint.set_remote(neg.remote);
            endpoint.set_telephone_event(neg.telephone_event);
            answered.media.neg = neg;
            Ok(answered)
        }
        Err(e) => {
            tracing::info!(error = %e, "delayed offer: no usable answer in the ACK");
            answered.hang_up();
            Err((0, format!("no usable answer in the ACK ({e})")))
        }
    }
}

/// The negotiated state before the answer is known (replaced as soon as it is).
fn placeholder_negotiated(endpoint: &RtpEndpoint) -> Negotiated {
    Negotiated {
        codec: CODECS[0],
        payload_type: CODECS[0].payload_type(),
        telephone_event: None,
        remote: endpoint.local_addr(),
        direction: Direction::SendRecv,
        media_lines: Vec::new(),
        media_index: 0,
    }
}

impl Answered {
    /// The next event of the call's dialog (cancel-safe).
    pub async fn next(&mut self) -> SessionEvent {
        self.session.next().await
    }

    /// Whether the far end has put the call on hold (then nothing is to be sent to it).
    pub fn held(&self) -> bool {
        self.sdp.held()
    }

    /// Answers a request inside the dialog.
    pub fn on_request(&mut self, calls: &Calls, key: TsxKey, request: &Request, source: Peer) -> InDialog {
        let ok = request.response(200, None, "");
        match request.method {
            Method::Bye => {
                self.session.reply(key, request, ok, source);
                self.session.close();
                InDialog::Hangup
            }
            Method::Invite | Method::Update => {
                let local = self.media.endpoint.local_addr();
                let resp = self
                    .sdp
                    .reinvite_ok(calls, request, self.session.dialog.peer, &self.media.neg, local);
                self.session.reply(key, request, resp, source);
                InDialog::Handled
            }
            Method::Info => {
                self.session.reply(key, request, ok, source);
                info_digit(&request.body).map_or(InDialog::Handled, InDialog::Digit)
            }
            _ => {
                self.session.reply(key, request, ok, source);
                InDialog::Handled
            }
        }
    }

    /// Hangs up from our side (BYE) and forgets the dialog.
    pub fn hang_up(&mut self) {
        self.session.hang_up();
    }
}

/// The digit of a SIP INFO body (`application/dtmf-relay` `Signal=1`, or `application/dtmf` `1`).
pub fn info_digit(body: &[u8]) -> Option<char> {
    let text = String::from_utf8_lossy(body);
    for line in text.lines() {
        if let Some(v) = line
            .trim()
            .strip_prefix("Signal")
            .map(str::trim_start)
            .and_then(|v| v.strip_prefix('='))
        {
            return v.trim().chars().next();
        }
    }
    let t = text.trim();
    if t.len() == 1 { t.chars().next() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        assert_eq!(info_digit(b"Signal=1\r\nDuration=160\r\n"), Some('1'));
        assert_eq!(info_digit(b"Signal = #\r\n"), Some('#'));
        assert_eq!(info_digit(b"7"), Some('7'));
        assert_eq!(info_digit(b""), None);
    }
}
