//! Transaction keys: which transaction a message belongs to. Server side per RFC 3261
//! §17.2.3 (branch with the magic cookie + sent-by + method, ACK folded into INVITE), with the
//! RFC 2543 fallback for branches without the cookie; client side per §17.1.3 (branch + CSeq
//! method). A key is an `Arc`, so cloning one into every timer costs no allocation.

use std::fmt;
use std::sync::Arc;

use crate::stack::sip::via::MAGIC_COOKIE;
use crate::stack::sip::{Method, Request, Response, SipHeaders, Via};

/// The key of a transaction: equal keys mean the same transaction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TsxKey(Arc<Inner>);

#[derive(Debug, PartialEq, Eq, Hash)]
enum Inner {
    /// RFC 3261 server key: top Via branch (with the cookie) and sent-by, and the method.
    Server {
        branch: Box<str>,
        sent_by: Box<str>,
        method: Method,
    },
    /// RFC 2543 server key, for a top Via branch without the cookie (or none): the fields of
    /// §17.2.3 that stay equal between a request, its retransmissions, the ACK of a non-2xx
    /// final and a CANCEL (the To tag does not: the ACK carries the one our response added).
    Legacy {
        request_uri: Box<str>,
        from_tag: Box<str>,
        call_id: Box<[u8]>,
        cseq: u32,
        top_via: Box<str>,
        method: Method,
    },
    /// Client key: the branch we put in the top Via, and the CSeq method.
    Client { branch: Box<str>, method: Method },
}

/// ACK belongs to the INVITE transaction it acknowledges; every other method (CANCEL
/// included) has its own.
fn matched_method(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        m => m.clone(),
    }
}

impl TsxKey {
    /// The server transaction a received request belongs to; `None` when it lacks a
    /// parsable top Via (or, for the RFC 2543 key, CSeq or Call-ID).
    pub fn server(req: &Request) -> Option<TsxKey> {
        TsxKey::server_with_via(req, &req.top_via()?)
    }

    /// [`server`](Self::server) with the top Via already parsed.
    pub fn server_with_via(req: &Request, via: &Via) -> Option<TsxKey> {
        let method = matched_method(&req.method);
        let sent_by = match via.port {
            Some(port) => format!("{}:{port}", via.host.as_str().to_ascii_lowercase()),
            None => via.host.as_str().to_ascii_lowercase(),
        };
        let branch = via.branch().unwrap_or_default();
        if branch.starts_with(MAGIC_COOKIE) {
            return Some(TsxKey(Arc::new(Inner::Server {
                branch: branch.into(),
                sent_by: sent_by.into(),
                method,
            })));
        }
        let from_tag = req.header_from().and_then(|a| a.tag()).unwrap_or_default();
        let top_via = format!("{} {sent_by};branch={branch}", via.transport);
        Some(TsxKey(Arc::new(Inner::Legacy {
            request_uri: req.uri.to_string().into(),
            from_tag: from_tag.into(),
            call_id: req.call_id()?.into(),
            cseq: req.cseq()?.seq,
            top_via: top_via.into(),
            method,
        })))
    }

    /// The client transaction of a request we send with this top Via branch and CSeq method.
    pub fn client(branch: &str, method: &Method) -> TsxKey {
        TsxKey(Arc::new(Inner::Client {
            branch: branch.into(),
            method: method.clone(),
        }))
    }

    /// The client transaction a received response belongs to; `None` without a top Via
    /// branch or a CSeq.
    pub fn of_response(resp: &Response) -> Option<TsxKey> {
        let branch = resp.top_via()?.branch()?;
        Some(TsxKey::client(&branch, &resp.cseq()?.method))
    }

    /// The method of the transaction (INVITE for an ACK's key).
    pub fn method(&self) -> &Method {
        match &*self.0 {
            Inner::Server { method, .. } | Inner::Legacy { method, .. } | Inner::Client { method, .. } => method,
        }
    }

    /// Whether this is a server transaction's key.
    pub fn is_server(&self) -> bool {
        !matches!(&*self.0, Inner::Client { .. })
    }

    /// The same server key for another method: a CANCEL's key with INVITE finds the
    /// transaction it cancels. `None` for a client key.
    pub fn with_method(&self, method: Method) -> Option<TsxKey> {
        let inner = match &*self.0 {
            Inner::Server { branch, sent_by, .. } => Inner::Server {
                branch: branch.clone(),
                sent_by: sent_by.clone(),
                method,
            },
            Inner::Legacy {
                request_uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                ..
            } => Inner::Legacy {
                request_uri: request_uri.clone(),
                from_tag: from_tag.clone(),
                call_id: call_id.clone(),
                cseq: *cseq,
                top_via: top_via.clone(),
                method,
            },
            Inner::Client { .. } => return None,
        };
        Some(TsxKey(Arc::new(inner)))
    }
}

impl fmt::Display for TsxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Inner::Server {
                branch,
                sent_by,
                method,
            } => write!(f, "server {method} {branch}@{sent_by}"),
            Inner::Legacy {
                call_id,
                cseq,
                top_via,
                method,
                ..
            } => {
                write!(
                    f,
                    "server {method} rfc2543 {cseq} {} via {top_via}",
                    String::from_utf8_lossy(call_id)
                )
            }
            Inner::Client { branch, method } => write!(f, "client {method} {branch}"),
        }
    }
}

impl fmt::Debug for TsxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TsxKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::sip::{Framing, Message, parse_message};

    fn req(text: &str) -> Request {
        match parse_message(bytes::Bytes::from(text.replace('\n', "\r\n")), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn msg(method: &str, via: &str, to_tag: &str) -> Request {
        req(&format!(
            "{method} sip:bob@example.com SIP/2.0\nVia: {via}\nFrom: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>{to_tag}\nCall-ID: c1@host\nCSeq: 7 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
        ))
    }

    fn key(r: &Request) -> TsxKey {
        TsxKey::server(r).unwrap_or_else(|| panic!("no key"))
    }

    #[test]
    fn rfc3261_server_keys() {
        let via = "SIP/2.0/UDP Host.example.com:5062;branch=z9hG4bK776";
        let invite = key(&msg("INVITE", via, ""));
        assert_eq!(
            invite,
            key(&msg(
                "INVITE",
                "SIP/2.0/UDP host.example.com:5062;branch=z9hG4bK776;received=1.2.3.4",
                ""
            ))
        );
        assert_eq!(invite, key(&msg("ACK", via, ";tag=b")), "ACK matches its INVITE");
        let cancel = key(&msg("CANCEL", via, ""));
        assert_ne!(invite, cancel, "CANCEL is its own transaction");
        assert_eq!(cancel.with_method(Method::Invite), Some(invite.clone()));
        assert_ne!(
            invite,
            key(&msg(
                "INVITE",
                "SIP/2.0/UDP host.example.com:5063;branch=z9hG4bK776",
                ""
            ))
        );
        assert_ne!(
            invite,
            key(&msg(
                "INVITE",
                "SIP/2.0/UDP host.example.com:5062;branch=z9hG4bK777",
                ""
            ))
        );
        assert_ne!(invite, key(&msg("OPTIONS", via, "")));
        assert!(invite.is_server());
        assert_eq!(invite.method(), &Method::Invite);
    }

    #[test]
    fn rfc2543_server_keys() {
        let via = "SIP/2.0/UDP host.example.com;branch=1234";
        let invite = key(&msg("INVITE", via, ""));
        assert!(invite.to_string().contains("rfc2543"), "{invite}");
        assert_eq!(invite, key(&msg("ACK", via, ";tag=from-our-486")));
        assert_eq!(
            key(&msg("CANCEL", via, "")).with_method(Method::Invite),
            Some(invite.clone())
        );
        assert_ne!(
            invite,
            key(&msg("INVITE", "SIP/2.0/UDP host.example.com;branch=1235", ""))
        );
        let no_branch = key(&msg("INVITE", "SIP/2.0/UDP host.example.com", ""));
        assert_ne!(invite, no_branch);
        assert_eq!(no_branch, key(&msg("ACK", "SIP/2.0/UDP host.example.com", ";tag=x")));
        let mut other_uri = msg("INVITE", via, "");
        other_uri.uri = crate::stack::sip::Uri::parse(b"sip:carol@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(invite, key(&other_uri));
    }

    #[test]
    fn client_keys() {
        let k = TsxKey::client("z9hG4bKabc", &Method::Invite);
        assert!(!k.is_server());
        assert_ne!(k, TsxKey::client("z9hG4bKabc", &Method::Cancel));
        assert_eq!(k.with_method(Method::Cancel), None);
        let resp = msg("INVITE", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc", "").response(486, None, "t");
        assert_eq!(TsxKey::of_response(&resp), Some(k));
    }
}
