//! The RFC 3261 §8.2 checks every new request passes before a service sees it: method
//! inspection (405, or 501 for a method we do not know, both with Allow), the URI scheme (416),
//! required extensions (420 with Unsupported), and for an INVITE the body's content type and
//! encoding (415) and what the caller accepts in answers (406).

use crate::stack::sip::fields::MediaType;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders, Uri};

/// Bodies the stack understands in an INVITE (the session description).
pub const ACCEPT: &str = "application/sdp";

/// What the server implements, as the checks need it.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Methods served, in the order of the `Allow` header.
    pub methods: Vec<Method>,
    /// Option tags of the extensions supported (RFC 3261 §20.37), from the services.
    pub supported: Vec<String>,
}

impl Capabilities {
    /// The `Allow` value.
    pub fn allow(&self) -> String {
        self.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
    }

    /// The `Supported` value.
    pub fn supported(&self) -> String {
        self.supported.join(", ")
    }

    /// The §8.2.1–§8.2.3 checks; `Some` is the error response to send.
    pub fn inspect(&self, req: &Request, tag: &str) -> Option<Response> {
        if !self.methods.contains(&req.method) {
            let status = if matches!(req.method, Method::Other(_)) {
                501
            } else {
                405
            };
            let mut resp = req.response(status, None, tag);
            resp.headers.push(HeaderName::Allow, self.allow());
            return Some(resp);
        }
        if !matches!(&req.uri, Uri::Sip(_)) {
            let mut resp = req.response(
                416,
                Some(&format!("Unsupported URI Scheme ({})", req.uri.scheme())),
                tag,
            );
            resp.headers.push(HeaderName::Accept, ACCEPT);
            return Some(resp);
        }
        let unsupported: Vec<String> = req
            .tokens(&HeaderName::Require)
            .into_iter()
            .filter(|t| !self.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let mut resp = req.response(420, None, tag);
            resp.headers.push(HeaderName::Unsupported, unsupported.join(", "));
            return Some(resp);
        }
        if req.method == Method::Invite {
            return inspect_invite(req, tag);
        }
        None
    }
}

/// §8.2.3: an INVITE's body must be a session description we can read, and the caller must
/// accept one in the answer.
fn inspect_invite(req: &Request, tag: &str) -> Option<Response> {
    if !req.body.is_empty() {
        let understood = req
            .content_type()
            .is_some_and(|ct| ct.matches("application", "sdp") || ct.matches("multipart", "mixed"));
        let encoded = req
            .headers
            .get(&HeaderName::ContentEncoding)
            .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        if !understood || encoded {
            let mut resp = req.response(415, None, tag);
            resp.headers.push(HeaderName::Accept, ACCEPT);
            return Some(resp);
        }
    }
    if req.headers.contains(&HeaderName::Accept) {
        let ok = req
            .headers
            .get_all(&HeaderName::Accept)
            .filter_map(|v| MediaType::parse_list(v).ok())
            .flatten()
            .any(|m| m.matches("application", "sdp"));
        if !ok {
            let mut resp = req.response(406, None, tag);
            resp.headers
                .push(HeaderName::Warning, "399 ivm \"answers carry application/sdp only\"");
            return Some(resp);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::sip::{Framing, Message, parse_message};

    fn request(text: &str) -> Request {
        match parse_message(bytes::Bytes::from(text.to_owned()), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn caps() -> Capabilities {
        Capabilities {
            methods: vec![Method::Invite, Method::Ack, Method::Cancel, Method::Options],
            supported: Vec::new(),
        }
    }

    fn req(method: &str, uri: &str, extra: &str) -> Request {
        request(&format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn unknown_and_unserved_methods_get_allow() {
        let r = caps().inspect(&req("FOO", "sip:b@x", ""), "t").expect("refused");
        assert_eq!(r.status, 501);
        assert_eq!(
            r.headers.get(&HeaderName::Allow).map(|v| &v[..]),
            Some(&b"INVITE, ACK, CANCEL, OPTIONS"[..])
        );
        let r = caps().inspect(&req("PUBLISH", "sip:b@x", ""), "t").expect("refused");
        assert_eq!(r.status, 405);
        assert!(caps().inspect(&req("OPTIONS", "sip:b@x", ""), "t").is_none());
    }

    #[test]
    fn scheme_extensions_and_invite_bodies() {
        assert_eq!(
            caps().inspect(&req("OPTIONS", "tel:+123", ""), "t").map(|r| r.status),
            Some(416)
        );
        let r = caps()
            .inspect(&req("OPTIONS", "sip:b@x", "Require: 100rel, foo\r\n"), "t")
            .expect("420");
        assert_eq!(r.status, 420);
        assert_eq!(
            r.headers.get(&HeaderName::Unsupported).map(|v| &v[..]),
            Some(&b"100rel, foo"[..])
        );
        let accept_text = req("INVITE", "sip:b@x", "Accept: text/plain\r\n");
        assert_eq!(caps().inspect(&accept_text, "t").map(|r| r.status), Some(406));
        let accept_sdp = req("INVITE", "sip:b@x", "Accept: text/plain, application/sdp\r\n");
        assert!(caps().inspect(&accept_sdp, "t").is_none());
    }
}
