//! The server side of an INVITE session: the INVITE a service took from the router, watched
//! for a CANCEL until it is answered; once answered with a 2xx, the dialog and the 2xx
//! retransmitted until its ACK (RFC 3261 §13.3.1.4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::SessionEvent;
use crate::stack::dialog::{Dialog, DialogEvent, DialogTable, contact_value, new_tag};
use crate::stack::endpoint::SipCore;
use crate::stack::router::Incoming;
use crate::stack::sip::{HeaderName, Request, Response};
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;

/// Why an INVITE could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// A CANCEL came first; the INVITE has been answered `487`.
    #[error("the INVITE was cancelled")]
    Cancelled,
    /// The INVITE lacks what a dialog needs (Call-ID, From); it has been answered `400`.
    #[error("the INVITE cannot form a dialog")]
    NoDialog,
}

/// An INVITE received and not answered yet.
pub struct ServerInvite {
    core: SipCore,
    dialogs: DialogTable,
    key: TsxKey,
    request: Request,
    source: Peer,
    /// Our To tag, in every response.
    tag: String,
    cancelled: Arc<AtomicBool>,
}

impl ServerInvite {
    /// Takes an INVITE from the router and watches it for a CANCEL. Call it in
    /// [`crate::stack::router::Service::handle`], before anything is awaited, so that no CANCEL
    /// can slip in unseen.
    pub fn new(core: &SipCore, dialogs: &DialogTable, incoming: Incoming) -> ServerInvite {
        let cancelled = dialogs.watch_invite(incoming.key.clone());
        ServerInvite {
            core: core.clone(),
            dialogs: dialogs.clone(),
            key: incoming.key,
            request: incoming.request,
            source: incoming.source,
            tag: new_tag(),
            cancelled,
        }
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn key(&self) -> &TsxKey {
        &self.key
    }

    /// Where the INVITE came from (and responses go).
    pub fn source(&self) -> Peer {
        self.source
    }

    /// Whether a CANCEL has matched the INVITE.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// A response with our To tag, to fill in and [`respond`](Self::respond) with.
    pub fn response(&self, status: u16, reason: Option<&str>) -> Response {
        self.request.response(status, reason, &self.tag)
    }

    /// Sends a response (a provisional, a challenge, a refusal): `487` instead of a final one
    /// when a CANCEL came first.
    pub fn respond(&self, response: Response) {
        let response = if response.status >= 200 && self.cancelled() {
            self.response(487, None)
        } else {
            response
        };
        self.core.reply(self.key.clone(), &self.request, response, self.source);
    }

    /// Refuses the INVITE with `status` and `reason`.
    pub fn refuse(&self, status: u16, reason: &str) {
        self.respond(self.response(status, Some(reason)));
    }

    /// A `200 OK` with our tag, a Contact for `contact_user` reachable over the INVITE's
    /// transport and our `Allow`: add the SDP and [`accept`](Self::accept) with it.
    pub fn ok(&self, contact_user: &str) -> Response {
        let mut ok = self.response(200, None);
        ok.headers.push(
            HeaderName::Contact,
            contact_value(
                contact_user,
                self.core.local_addr_for(self.source.transport),
                self.source,
            ),
        );
        ok.headers.push(HeaderName::Allow, self.core.allow().to_owned());
        ok
    }

    /// Answers with the 2xx `ok` (from [`ok`](Self::ok)) and starts the session: the dialog is
    /// registered and the 2xx retransmitted until the ACK comes.
    pub fn accept(&self, ok: Response) -> Result<ServerSession, AcceptError> {
        if self.cancelled() {
            self.respond(self.response(487, None));
            return Err(AcceptError::Cancelled);
        }
        let Some(dialog) = Dialog::as_uas(
            &self.request,
            &self.tag,
            self.source,
            self.core.local_addr_for(self.source.transport),
        ) else {
            self.refuse(400, "Bad Request (cannot form a dialog)");
            return Err(AcceptError::NoDialog);
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        self.dialogs.insert(dialog.id.clone(), events_tx);
        self.dialogs.unwatch_invite(&self.key);
        let bytes = Bytes::from(ok.to_bytes());
        let sdp = ok.body.clone();
        self.core.reply(self.key.clone(), &self.request, ok, self.source);
        let done = Arc::new(AtomicBool::new(false));
        let ack_timeout = Arc::new(Notify::new());
        let timers = self.core.timers();
        tokio::spawn(retransmit(
            self.core.clone(),
            self.source,
            bytes,
            Duration::from_millis(timers.t1),
            Duration::from_millis(timers.t2),
            done.clone(),
            ack_timeout.clone(),
        ));
        Ok(ServerSession {
            dialog,
            answer: sdp,
            core: self.core.clone(),
            dialogs: self.dialogs.clone(),
            events,
            done,
            ack_timeout,
            closed: false,
        })
    }
}

impl Drop for ServerInvite {
    fn drop(&mut self) {
        self.dialogs.unwatch_invite(&self.key);
    }
}

/// Sends the 2xx again at T1, 2·T1, 4·T1 … (at most T2 apart) until `done`; after 64·T1
/// without it, `ack_timeout` is notified.
async fn retransmit(
    core: SipCore,
    to: Peer,
    bytes: Bytes,
    t1: Duration,
    t2: Duration,
    done: Arc<AtomicBool>,
    ack_timeout: Arc<Notify>,
) {
    let deadline = tokio::time::Instant::now() + t1 * 64;
    let mut interval = t1;
    loop {
        // The last wait ends at the deadline, not at the next retransmission after it.
        let wake = (tokio::time::Instant::now() + interval).min(deadline);
        tokio::time::sleep_until(wake).await;
        if done.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            ack_timeout.notify_one();
            return;
        }
        core.send_raw(to, bytes.clone()).await;
        interval = (interval * 2).min(t2);
    }
}

/// An INVITE session we answered with a 2xx: its dialog and what happens in it.
pub struct ServerSession {
    pub dialog: Dialog,
    /// The body of our 2xx (our SDP answer, or our offer for an INVITE without one).
    pub answer: Bytes,
    core: SipCore,
    dialogs: DialogTable,
    events: mpsc::UnboundedReceiver<DialogEvent>,
    /// The ACK came (or the session ended): the 2xx is no longer retransmitted.
    done: Arc<AtomicBool>,
    ack_timeout: Arc<Notify>,
    closed: bool,
}

impl ServerSession {
    /// Whether the ACK has come.
    pub fn confirmed(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The next event of the dialog. Cancel-safe: nothing is taken from a queue that a dropped
    /// call could lose.
    pub async fn next(&mut self) -> SessionEvent {
        if self.closed {
            return SessionEvent::Closed;
        }
        tokio::select! {
            event = self.events.recv() => match event {
                Some(DialogEvent::Ack(ack)) => {
                    self.done.store(true, Ordering::Release);
                    SessionEvent::Ack(ack)
                }
                Some(DialogEvent::Request { key, request, source }) => SessionEvent::Request { key, request, source },
                None => {
                    self.closed = true;
                    SessionEvent::Closed
                }
            },
            _ = self.ack_timeout.notified() => SessionEvent::AckTimeout,
        }
    }

    /// Answers a request of the dialog (and logs the transaction's line).
    pub fn reply(&self, key: TsxKey, request: &Request, response: Response, source: Peer) {
        self.core.reply(key, request, response, source);
    }

    /// Hangs up from our side: a BYE, and the dialog is forgotten.
    pub fn hang_up(&mut self) {
        let bye = self.dialog.request(crate::stack::sip::Method::Bye);
        self.core.send_and_forget(bye, self.dialog.peer);
        self.close();
    }

    /// Forgets the dialog (the far end hung up, or it is over).
    pub fn close(&mut self) {
        self.done.store(true, Ordering::Release);
        self.dialogs.remove(&self.dialog.id);
        self.closed = true;
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        self.dialogs.remove(&self.dialog.id);
    }
}
