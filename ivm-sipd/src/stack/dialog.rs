//! Dialogs (RFC 3261 §12): a dialog's identity (Call-ID and the two tags), what a leg needs
//! to send requests inside it (CSeq, route set, remote target, where to send), and the table
//! that routes an in-dialog request or ACK to the task of the call that owns the dialog.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::stack::sip::{HeaderName, Method, NameAddr, Request, Response, SipHeaders, Uri};
use crate::stack::transaction::{TsxKey, new_branch};
use crate::stack::transport::Peer;

pub use crate::stack::request::{new_tag, via_value};

/// A dialog's identity, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a received request belongs to (our tag is in To, theirs in From).
    pub fn of_request(req: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: String::from_utf8_lossy(req.call_id()?).into_owned(),
            local_tag: req.header_to()?.tag()?,
            remote_tag: req.header_from()?.tag().unwrap_or_default(),
        })
    }
}

/// What the dialog table delivers to a call.
#[derive(Debug)]
pub enum DialogEvent {
    /// A request inside the dialog (BYE, re-INVITE, INFO, UPDATE …) in its server transaction.
    Request {
        key: TsxKey,
        request: Request,
        source: Peer,
    },
    /// The ACK for our 2xx.
    Ack(Request),
}

/// Routes in-dialog requests to the owning call task.
#[derive(Clone, Default)]
pub struct DialogTable {
    dialogs: Arc<Mutex<HashMap<DialogId, mpsc::UnboundedSender<DialogEvent>>>>,
    /// INVITE server transactions not answered yet, each with the flag a CANCEL raises.
    invites: Arc<Mutex<HashMap<TsxKey, Arc<AtomicBool>>>>,
}

impl DialogTable {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: DialogId, tx: mpsc::UnboundedSender<DialogEvent>) {
        Self::lock(&self.dialogs).insert(id, tx);
    }

    pub fn remove(&self, id: &DialogId) {
        Self::lock(&self.dialogs).remove(id);
    }

    /// Delivers to the dialog's call; gives the event back when there is no such dialog.
    pub fn deliver(&self, id: &DialogId, event: DialogEvent) -> Result<(), Box<DialogEvent>> {
        let tx = Self::lock(&self.dialogs).get(id).cloned();
        match tx {
            Some(tx) => tx.send(event).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(event)),
        }
    }

    /// Watches a pending INVITE server transaction for a CANCEL: the flag is raised when one
    /// matches it.
    pub fn watch_invite(&self, key: TsxKey) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        Self::lock(&self.invites).insert(key, flag.clone());
        flag
    }

    pub fn unwatch_invite(&self, key: &TsxKey) {
        Self::lock(&self.invites).remove(key);
    }

    /// A CANCEL matched this INVITE; `false` when nobody watches it.
    pub fn cancel_invite(&self, key: &TsxKey) -> bool {
        let flag = Self::lock(&self.invites).remove(key);
        flag.inspect(|f| f.store(true, Ordering::Release)).is_some()
    }

    pub fn len(&self) -> usize {
        Self::lock(&self.dialogs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One side of a dialog, enough to send requests in it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    /// Our From (requests we send) value: `<uri>;tag=…`.
    pub local: String,
    /// Their address as To value: `<uri>;tag=…`.
    pub remote: String,
    /// Where requests go (their Contact).
    pub remote_target: Uri,
    /// Route headers, in the order to send them.
    pub route_set: Vec<Bytes>,
    pub local_cseq: u32,
    /// The flow to send on: the address the dialog-creating message came from or went to.
    pub peer: Peer,
    /// The address our Via and Contact carry.
    pub local_addr: SocketAddr,
}

/// The first Contact URI of a message.
pub fn contact_uri(headers: &impl SipHeaders) -> Option<Uri> {
    headers.contacts().into_iter().find_map(|c| match c {
        crate::stack::sip::Contact::Addrs(a) => a.into_iter().next().map(|a| a.uri),
        crate::stack::sip::Contact::Star => None,
    })
}

impl Dialog {
    /// The dialog created by an INVITE we received and answer with a 2xx carrying `local_tag`.
    pub fn as_uas(req: &Request, local_tag: &str, peer: Peer, local_addr: SocketAddr) -> Option<Dialog> {
        let from = req.headers.get(&HeaderName::From)?;
        let to = req.header_to()?;
        Some(Dialog {
            id: DialogId {
                call_id: String::from_utf8_lossy(req.call_id()?).into_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: req.header_from()?.tag().unwrap_or_default(),
            },
            local: format!(
                "{};tag={local_tag}",
                NameAddr {
                    params: Default::default(),
                    ..to
                }
            ),
            remote: String::from_utf8_lossy(from).into_owned(),
            remote_target: contact_uri(req).unwrap_or_else(|| req.uri.clone()),
            route_set: req.headers.get_all(&HeaderName::RecordRoute).cloned().collect(),
            local_cseq: rand::random::<u16>() as u32 + 1,
            peer,
            local_addr,
        })
    }

    /// The dialog created by the 2xx to an INVITE we sent.
    pub fn as_uac(invite: &Request, resp: &Response, peer: Peer, local_addr: SocketAddr) -> Option<Dialog> {
        let to = resp.headers.get(&HeaderName::To)?;
        let mut route_set: Vec<Bytes> = resp.headers.get_all(&HeaderName::RecordRoute).cloned().collect();
        route_set.reverse();
        Some(Dialog {
            id: DialogId {
                call_id: String::from_utf8_lossy(invite.call_id()?).into_owned(),
                local_tag: invite.header_from()?.tag()?,
                remote_tag: resp.header_to()?.tag().unwrap_or_default(),
            },
            local: String::from_utf8_lossy(invite.headers.get(&HeaderName::From)?).into_owned(),
            remote: String::from_utf8_lossy(to).into_owned(),
            remote_target: contact_uri(resp).unwrap_or_else(|| invite.uri.clone()),
            route_set,
            local_cseq: invite.cseq()?.seq,
            peer,
            local_addr,
        })
    }

    /// A new request inside the dialog (RFC 3261 §12.2.1.1), with a fresh branch.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_cseq += 1;
        self.build(method, self.local_cseq)
    }

    /// The ACK for a 2xx to our INVITE with sequence `cseq` (RFC 3261 §13.2.2.4).
    pub fn ack(&self, cseq: u32) -> Request {
        self.build(Method::Ack, cseq)
    }

    fn build(&self, method: Method, cseq: u32) -> Request {
        let mut req = Request::new(method.clone(), self.remote_target.clone());
        req.headers
            .push(HeaderName::Via, via_value(self.peer, self.local_addr, &new_branch()));
        req.headers
            .push(HeaderName::MaxForwards, crate::stack::sip::message::MAX_FORWARDS);
        for r in &self.route_set {
            req.headers.push(HeaderName::Route, r.clone());
        }
        req.headers.push(HeaderName::From, self.local.clone());
        req.headers.push(HeaderName::To, self.remote.clone());
        req.headers.push(HeaderName::CallId, self.id.call_id.clone());
        req.headers.push(HeaderName::CSeq, format!("{cseq} {method}"));
        req
    }
}

/// A Contact value for `user` at our address, reachable over `peer`'s transport: the far end
/// sends its requests in the dialog there, so a TCP dialog says `transport=tcp` (RFC 3261
/// §19.1.4; without it the far end would use UDP).
pub fn contact_value(user: &str, local: SocketAddr, peer: Peer) -> String {
    match peer.transport {
        crate::stack::transport::TransportKind::Udp => format!("<sip:{user}@{local}>"),
        crate::stack::transport::TransportKind::Tcp => format!("<sip:{user}@{local};transport=tcp>"),
        crate::stack::transport::TransportKind::Tls => format!("<sip:{user}@{local};transport=tls>"),
    }
}
