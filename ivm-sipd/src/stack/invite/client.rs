//! The client side of an INVITE session: the INVITE we sent, ringing until a final answer or
//! a timeout — then CANCEL, which RFC 3261 §9.1 allows only after a provisional response; a
//! 2xx confirmed with an ACK of the INVITE's CSeq (§13.2.2.4), that ACK sent again for each
//! retransmission of the 2xx; and a 2xx that arrives after we gave up ACKed and hung up.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::SessionEvent;
use crate::stack::dialog::{Dialog, DialogEvent, DialogTable};
use crate::stack::endpoint::{ClientEvent, SipCore};
use crate::stack::request::MAX_FORWARDS;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders};
use crate::stack::transport::Peer;

/// How long to wait for the INVITE's final response after a CANCEL (Timer C would be
/// > 3 min; a CANCELled INVITE that is not answered `487` within 64·T1 is not coming back).
const CANCEL_WAIT: Duration = Duration::from_secs(32);

/// How ringing ended.
pub enum RingOutcome {
    /// A 2xx: the dialog is confirmed, the ACK sent.
    Answered(Box<ClientSession>),
    /// A final non-2xx response; `cancelled` when we had sent a CANCEL (a `487` is then ours).
    Refused { status: u16, cancelled: bool },
    /// No final answer in time: no response at all (Timer B), the ring timeout before any
    /// provisional (a CANCEL may not be sent; a late 2xx is ACKed and hung up), or nothing
    /// after our CANCEL.
    NoAnswer,
    /// The INVITE could not be sent, or its 2xx could not form a dialog.
    Failed(String),
}

/// An INVITE we sent, until it is answered.
pub struct ClientInvite {
    core: SipCore,
    dialogs: DialogTable,
    invite: Request,
    peer: Peer,
    responses: mpsc::UnboundedReceiver<ClientEvent>,
}

impl ClientInvite {
    /// Sends `invite` to `peer` in its own client transaction.
    pub fn send(core: &SipCore, dialogs: &DialogTable, invite: Request, peer: Peer) -> ClientInvite {
        let responses = core.send_request(invite.clone(), peer);
        ClientInvite {
            core: core.clone(),
            dialogs: dialogs.clone(),
            invite,
            peer,
            responses,
        }
    }

    /// The INVITE's Call-ID.
    pub fn call_id(&self) -> String {
        String::from_utf8_lossy(self.invite.call_id().unwrap_or_default()).into_owned()
    }

    /// Waits for the final response; CANCELs at `ring_timeout` once the far end has rung.
    pub async fn ring(self, ring_timeout: Duration) -> RingOutcome {
        self.ring_until(ring_timeout, std::future::pending()).await
    }

    /// Like [`ring`](Self::ring), but also gives up when `stop` completes — another branch of
    /// a fork was answered (RFC 3261 §16.7 step 10: CANCEL the others). It then still waits
    /// (up to 32 s) for the branch's final answer, which it returns; a 2xx that arrives after
    /// that is ACKed and hung up, and the outcome is [`RingOutcome::NoAnswer`].
    pub async fn ring_until(mut self, ring_timeout: Duration, stop: impl Future<Output = ()>) -> RingOutcome {
        let ring_deadline = tokio::time::Instant::now() + ring_timeout;
        let mut cancel_deadline = ring_deadline + CANCEL_WAIT;
        let mut provisional = false;
        let mut stopped = false;
        // The CANCEL's own transaction; its answer changes nothing.
        let mut cancel: Option<mpsc::UnboundedReceiver<ClientEvent>> = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = self.responses.recv() => match event {
                    Some(ClientEvent::Response(r)) if r.status < 200 => {
                        provisional = true;
                        if stopped && cancel.is_none() {
                            // Given up before it rang: CANCEL now that we may (§9.1).
                            cancel = Some(self.core.send_request(cancel_of(&self.invite), self.peer));
                        }
                    }
                    Some(ClientEvent::Response(r)) if r.status < 300 && stopped => {
                        if let RingOutcome::Answered(mut late) = self.confirm(r) {
                            tracing::info!(to = %late.dialog.peer, "answered after another branch won: hanging up");
                            late.hang_up();
                        }
                        return RingOutcome::NoAnswer;
                    }
                    Some(ClientEvent::Response(r)) if r.status < 300 => return self.confirm(r),
                    Some(ClientEvent::Response(r)) => {
                        return RingOutcome::Refused { status: r.status, cancelled: cancel.is_some() };
                    }
                    Some(ClientEvent::Timeout) => return RingOutcome::NoAnswer,
                    Some(ClientEvent::Failed(e)) => return RingOutcome::Failed(e),
                    None => return RingOutcome::Failed("the transaction layer is gone".into()),
                },
                _ = tokio::time::sleep_until(ring_deadline), if cancel.is_none() => {
                    if !provisional {
                        // The INVITE client transaction times out on its own (Timer B).
                        self.hang_up_if_answered_late();
                        return RingOutcome::NoAnswer;
                    }
                    cancel = Some(self.core.send_request(cancel_of(&self.invite), self.peer));
                }
                _ = &mut stop, if !stopped => {
                    // Another branch won. The caller is not waiting on this one any more, so it
                    // waits here for its final answer (a 404 still tells which binding is dead):
                    // CANCELled now if it rang, or as soon as it does.
                    stopped = true;
                    cancel_deadline = tokio::time::Instant::now() + CANCEL_WAIT;
                    if provisional && cancel.is_none() {
                        cancel = Some(self.core.send_request(cancel_of(&self.invite), self.peer));
                    }
                }
                _ = tokio::time::sleep_until(cancel_deadline), if cancel.is_some() || stopped => return RingOutcome::NoAnswer,
                Some(_) = async {
                    match cancel.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// The dialog of a 2xx, confirmed with its ACK.
    fn confirm(self, ok: Response) -> RingOutcome {
        let Some(dialog) = Dialog::as_uac(
            &self.invite,
            &ok,
            self.peer,
            self.core.local_addr_for(self.peer.transport),
        ) else {
            return RingOutcome::Failed(format!("{} without a usable To tag", ok.status));
        };
        let ack = Bytes::from(dialog.ack(dialog.local_cseq).to_bytes());
        send_now(&self.core, self.peer, ack.clone());
        let (events_tx, events) = mpsc::unbounded_channel();
        self.dialogs.insert(dialog.id.clone(), events_tx);
        RingOutcome::Answered(Box::new(ClientSession {
            dialog,
            response: ok,
            core: self.core,
            dialogs: self.dialogs,
            events,
            responses: Some(self.responses),
            ack,
            closed: false,
        }))
    }

    /// After giving up on an INVITE that had not rung yet: once it rings, it is CANCELled
    /// (RFC 3261 §9.1: not before), and a 2xx that still comes is ACKed and followed by a BYE,
    /// so the far end neither rings on nor stays in a silent call.
    fn hang_up_if_answered_late(self) {
        tokio::spawn(async move {
            let ClientInvite {
                core,
                invite,
                peer,
                mut responses,
                ..
            } = self;
            let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            let mut cancelled = false;
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, responses.recv()).await {
                match event {
                    ClientEvent::Response(r) if r.status < 200 => {
                        if !std::mem::replace(&mut cancelled, true) {
                            core.send_and_forget(cancel_of(&invite), peer);
                        }
                    }
                    ClientEvent::Response(r) if r.status < 300 => {
                        if let Some(mut dialog) = Dialog::as_uac(&invite, &r, peer, core.local_addr_for(peer.transport))
                        {
                            tracing::info!(status = r.status, to = %peer, "answered after we gave up: hanging up");
                            core.send_raw(peer, Bytes::from(dialog.ack(dialog.local_cseq).to_bytes()))
                                .await;
                            core.send_and_forget(dialog.request(Method::Bye), peer);
                        }
                        return;
                    }
                    _ => return,
                }
            }
        });
    }
}

/// The CANCEL of an INVITE we sent (RFC 3261 §9.1): the same Request-URI, Call-ID, From, To,
/// CSeq number, Route set and top Via (so the same branch).
pub fn cancel_of(invite: &Request) -> Request {
    let mut req = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(via) = invite.headers.get(&HeaderName::Via) {
        req.headers.push(HeaderName::Via, via.clone());
    }
    req.headers.push(HeaderName::MaxForwards, MAX_FORWARDS);
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            req.headers.push(name, v.clone());
        }
    }
    let seq = invite.cseq().map_or(1, |c| c.seq);
    req.headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    for r in invite.headers.get_all(&HeaderName::Route) {
        req.headers.push(HeaderName::Route, r.clone());
    }
    req
}

/// Sends bytes without making the caller wait (so no await is left half done when the
/// caller's future is dropped).
fn send_now(core: &SipCore, to: Peer, data: Bytes) {
    let core = core.clone();
    tokio::spawn(async move { core.send_raw(to, data).await });
}

/// An INVITE session whose 2xx we ACKed: its dialog and what happens in it.
pub struct ClientSession {
    pub dialog: Dialog,
    /// The 2xx (its body is the far end's SDP answer).
    pub response: Response,
    core: SipCore,
    dialogs: DialogTable,
    events: mpsc::UnboundedReceiver<DialogEvent>,
    /// The INVITE transaction's responses: retransmissions of the 2xx (our ACK was lost).
    responses: Option<mpsc::UnboundedReceiver<ClientEvent>>,
    ack: Bytes,
    closed: bool,
}

impl ClientSession {
    /// The next request inside the dialog; a retransmitted 2xx is ACKed again on the way.
    /// Cancel-safe.
    pub async fn next(&mut self) -> SessionEvent {
        loop {
            if self.closed {
                return SessionEvent::Closed;
            }
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(DialogEvent::Request { key, request, source }) => {
                        return SessionEvent::Request { key, request, source };
                    }
                    Some(DialogEvent::Ack(_)) => {}
                    None => self.closed = true,
                },
                response = async {
                    match self.responses.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match response {
                    Some(ClientEvent::Response(r)) if (200..300).contains(&r.status) => {
                        send_now(&self.core, self.dialog.peer, self.ack.clone());
                    }
                    Some(_) => {}
                    None => self.responses = None,
                },
            }
        }
    }

    /// Answers a request of the dialog (and logs the transaction's line).
    pub fn reply(&self, key: crate::stack::transaction::TsxKey, request: &Request, response: Response, source: Peer) {
        self.core.reply(key, request, response, source);
    }

    /// Hangs up from our side: a BYE, and the dialog is forgotten.
    pub fn hang_up(&mut self) {
        let bye = self.dialog.request(Method::Bye);
        self.core.send_and_forget(bye, self.dialog.peer);
        self.close();
    }

    /// Forgets the dialog (the far end hung up).
    pub fn close(&mut self) {
        self.dialogs.remove(&self.dialog.id);
        self.responses = None;
        self.closed = true;
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.dialogs.remove(&self.dialog.id);
    }
}
