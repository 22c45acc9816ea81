//! A call we receive and answer (the sender's leg, a retrieval call): the SDP answer and its
//! RTP endpoint (`488` when nothing is common, `503` without a port), the `200 OK` retransmitted
//! until the ACK comes (RFC 3261 §13.3.1.4; the call ends after 64·T1 without one), and the
//! answers to requests inside the dialog (BYE, re-INVITE/UPDATE for hold and refresh, INFO).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use ivm_media::endpoint::RtpEndpoint;
use ivm_media::sdp::{self, Direction, Negotiated, SessionVersion};
use tokio::sync::{Notify, mpsc};

use super::media_session::MediaSession;
use super::{CODECS, Calls, TELEPHONE_EVENT_PT};
use crate::stack::dialog::{Dialog, DialogEvent, contact_value};
use crate::stack::sip::{HeaderName, Method, Request, Response};
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

/// An answered call.
pub struct Answered {
    pub media: Media,
    pub ok: Response,
    pub dialog: Dialog,
    pub events: mpsc::UnboundedReceiver<DialogEvent>,
    acked: Arc<AtomicBool>,
    ack_timeout: Arc<Notify>,
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

/// Sends `200 OK` with our SDP, registers the dialog and retransmits the 200 until the ACK.
pub fn answer(
    calls: &Arc<Calls>,
    key: &TsxKey,
    req: &Request,
    source: Peer,
    tag: &str,
    media: Media,
) -> Option<Answered> {
    let session = SessionVersion::new();
    let mut ok = req.response(200, None, tag);
    ok.headers
        .push(HeaderName::Contact, contact_value("ivm", calls.sip_addr(), source));
    ok.headers.push(HeaderName::Allow, calls.core.allow().to_owned());
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = Bytes::from(sdp::answer(media.endpoint.local_addr(), &media.neg, &session));
    let dialog = Dialog::as_uas(req, tag, source, calls.sip_addr())?;
    let (events_tx, events) = mpsc::unbounded_channel();
    calls.dialogs.insert(dialog.id.clone(), events_tx);
    calls.answer(key, req, ok.clone(), source);
    let acked = Arc::new(AtomicBool::new(false));
    let ack_timeout = Arc::new(Notify::new());
    let (calls2, bytes, acked2, timeout2) = (
        calls.clone(),
        Bytes::from(ok.to_bytes()),
        acked.clone(),
        ack_timeout.clone(),
    );
    tokio::spawn(async move {
        let mut interval = calls2.settings.t1;
        let deadline = tokio::time::Instant::now() + calls2.settings.t1 * 64;
        loop {
            tokio::time::sleep(interval).await;
            if acked2.load(Ordering::Acquire) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                timeout2.notify_one();
                return;
            }
            calls2.core.send_raw(source, bytes.clone()).await;
            interval = (interval * 2).min(calls2.settings.t2);
        }
    });
    let sdp = ok.body.clone();
    Some(Answered {
        media,
        ok,
        dialog,
        events,
        acked,
        ack_timeout,
        sdp: MediaSession::new(session, sdp),
    })
}

/// Answers an INVITE that carried no offer (RFC 3261 §13.2.1, RFC 3264 §5): our offer goes in
/// the 200 and the caller's answer comes in the ACK. Returns once the ACK arrived with a usable
/// answer. `Err((0, _))`: the call was answered but ended without media (already hung up);
/// any other `Err` is the status to refuse the INVITE with.
pub async fn answer_delayed_offer(
    calls: &Arc<Calls>,
    key: &TsxKey,
    req: &Request,
    source: Peer,
    tag: &str,
) -> Result<Answered, (u16, String)> {
    let endpoint = match calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) {
        Ok(Ok(ep)) => Arc::new(ep),
        _ => return Err((503, "Service Unavailable (no RTP port)".into())),
    };
    let session = SessionVersion::new();
    let offer = sdp::offer(
        endpoint.local_addr(),
        &CODECS,
        TELEPHONE_EVENT_PT,
        Direction::SendRecv,
        &session,
    );
    let mut ok = req.response(200, None, tag);
    ok.headers
        .push(HeaderName::Contact, contact_value("ivm", calls.sip_addr(), source));
    ok.headers.push(HeaderName::Allow, calls.core.allow().to_owned());
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = Bytes::from(offer);
    let Some(dialog) = Dialog::as_uas(req, tag, source, calls.sip_addr()) else {
        return Err((400, "Bad Request (cannot form a dialog)".into()));
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    calls.dialogs.insert(dialog.id.clone(), events_tx);
    calls.answer(key, req, ok.clone(), source);
    let bytes = Bytes::from(ok.to_bytes());
    let mut interval = calls.settings.t1;
    let deadline = tokio::time::Instant::now() + calls.settings.t1 * 64;
    let mut next = tokio::time::Instant::now() + interval;
    let ack = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(DialogEvent::Ack(ack)) => break Some(ack),
                Some(DialogEvent::Request { key, request, source }) if request.method == Method::Bye => {
                    calls.answer(&key, &request, request.response(200, None, ""), source);
                    break None;
                }
                Some(_) => {}
                None => break None,
            },
            _ = tokio::time::sleep_until(next) => {
                if tokio::time::Instant::now() >= deadline {
                    break None;
                }
                calls.core.send_raw(source, bytes.clone()).await;
                interval = (interval * 2).min(calls.settings.t2);
                next = tokio::time::Instant::now() + interval;
            }
        }
    };
    let acked = Arc::new(AtomicBool::new(true));
    let sdp = ok.body.clone();
    let mut call = Answered {
        media: Media {
            endpoint: endpoint.clone(),
            neg: placeholder_negotiated(&endpoint),
        },
        ok,
        dialog,
        events,
        acked,
        ack_timeout: Arc::new(Notify::new()),
        sdp: MediaSession::new(session, sdp),
    };
    let Some(ack) = ack else {
        call.hang_up(calls);
        return Err((0, "no ACK".into()));
    };
    match sdp::accept_answer(&ack.body, &CODECS, TELEPHONE_EVENT_PT) {
        Ok(neg) => {
            endpoint.set_remote(neg.remote);
            endpoint.set_telephone_event(neg.telephone_event);
            call.media.neg = neg;
            Ok(call)
        }
        Err(e) => {
            tracing::info!(error = %e, "delayed offer: no usable answer in the ACK");
            call.hang_up(calls);
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
    /// The ACK arrived: stop retransmitting.
    pub fn acked(&self) {
        self.acked.store(true, Ordering::Release);
    }

    /// Notified if the ACK never comes.
    pub fn ack_timeout(&self) -> Arc<Notify> {
        self.ack_timeout.clone()
    }

    /// Whether the far end has put the call on hold (then nothing is to be sent to it).
    pub fn held(&self) -> bool {
        self.sdp.held()
    }

    /// Answers a request inside the dialog.
    pub fn on_request(&mut self, calls: &Calls, key: &TsxKey, request: &Request, source: Peer) -> InDialog {
        match request.method {
            Method::Bye => {
                calls.answer(key, request, request.response(200, None, ""), source);
                InDialog::Hangup
            }
            Method::Invite | Method::Update => {
                let local = self.media.endpoint.local_addr();
                let resp = self
                    .sdp
                    .reinvite_ok(calls, request, self.dialog.peer, &self.media.neg, local);
                calls.answer(key, request, resp, source);
                InDialog::Handled
            }
            Method::Info => {
                calls.answer(key, request, request.response(200, None, ""), source);
                info_digit(&request.body).map_or(InDialog::Handled, InDialog::Digit)
            }
            _ => {
                calls.answer(key, request, request.response(200, None, ""), source);
                InDialog::Handled
            }
        }
    }

    /// Hangs up from our side and forgets the dialog.
    pub fn hang_up(&mut self, calls: &Calls) {
        calls.dialogs.remove(&self.dialog.id);
        let bye = self.dialog.request(Method::Bye);
        calls.core.send_and_forget(bye, self.dialog.peer);
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
