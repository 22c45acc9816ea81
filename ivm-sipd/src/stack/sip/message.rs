//! SIP requests and responses as values: start line, ordered headers, body; typed reads of
//! the headers the server uses; writing to bytes; and building a response from a request
//! (RFC 3261 §8.2.6).

use std::fmt;

use bytes::Bytes;

use super::fields::{AuthParams, Event, MediaType, parse_delta_seconds, parse_number, parse_token_list};
use super::header::{HeaderName, Headers};
use super::method::{CSeq, Method};
use super::name_addr::{Contact, NameAddr};
use super::uri::Uri;
use super::via::Via;

/// The Max-Forwards of every request we originate (RFC 3261 §8.1.1.6).
pub const MAX_FORWARDS: &str = "70";

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: Bytes,
    pub headers: Headers,
    pub body: Bytes,
}

/// Either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Typed reads shared by requests and responses. Each parses the raw value on demand; a
/// message that came from the parser has already been validated, so `None` means absent.
pub trait SipHeaders {
    fn headers(&self) -> &Headers;

    fn call_id(&self) -> Option<&[u8]> {
        self.headers().get(&HeaderName::CallId).map(|v| super::scan::trim(v))
    }

    fn cseq(&self) -> Option<CSeq> {
        self.headers().get(&HeaderName::CSeq).and_then(|v| CSeq::parse(v).ok())
    }

    fn header_from(&self) -> Option<NameAddr> {
        self.headers()
            .get(&HeaderName::From)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    fn header_to(&self) -> Option<NameAddr> {
        self.headers()
            .get(&HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// Every Via value, top first.
    fn vias(&self) -> Vec<Via> {
        self.headers()
            .get_all(&HeaderName::Via)
            .filter_map(|v| Via::parse_list(v).ok())
            .flatten()
            .collect()
    }

    fn top_via(&self) -> Option<Via> {
        let first = self.headers().get(&HeaderName::Via)?;
        Via::parse_list(first).ok()?.into_iter().next()
    }

    /// All Contact values; `Contact::Star` appears as its own element.
    fn contacts(&self) -> Vec<Contact> {
        self.headers()
            .get_all(&HeaderName::Contact)
            .filter_map(|v| Contact::parse(v).ok())
            .collect()
    }

    fn expires(&self) -> Option<u32> {
        self.headers()
            .get(&HeaderName::Expires)
            .and_then(|v| parse_delta_seconds(v).ok())
    }

    fn max_forwards(&self) -> Option<u8> {
        self.headers()
            .get(&HeaderName::MaxForwards)
            .and_then(|v| parse_number(v, 255).ok())
            .map(|n| n as u8)
    }

    fn content_type(&self) -> Option<MediaType> {
        self.headers()
            .get(&HeaderName::ContentType)
            .and_then(|v| MediaType::parse(v).ok())
    }

    fn content_length(&self) -> Option<usize> {
        self.headers()
            .get(&HeaderName::ContentLength)
            .and_then(|v| parse_number(v, u32::MAX.into()).ok())
            .map(|n| n as usize)
    }

    fn event(&self) -> Option<Event> {
        self.headers()
            .get(&HeaderName::Event)
            .and_then(|v| Event::parse(v).ok())
    }

    /// The tokens of every field of a list header (Allow, Supported, Require …).
    fn tokens(&self, name: &HeaderName) -> Vec<String> {
        self.headers()
            .get_all(name)
            .filter_map(|v| parse_token_list(v).ok())
            .flatten()
            .collect()
    }

    /// Every value of an auth header (Authorization, WWW-Authenticate …) that parses.
    fn auth(&self, name: &HeaderName) -> Vec<AuthParams> {
        self.headers()
            .get_all(name)
            .filter_map(|v| AuthParams::parse(v).ok())
            .collect()
    }
}

impl SipHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl SipHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl SipHeaders for Message {
    fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// Random hex, for tags and branches.
pub fn random_token(len_bytes: usize) -> String {
    let mut buf = vec![0u8; len_bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn write_message(start: &[u8], headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(start.len() + 64 * headers.len() + body.len() + 32);
    out.extend_from_slice(start);
    out.extend_from_slice(b"\r\n");
    headers.write_to(&mut out);
    if !headers.contains(&HeaderName::ContentLength) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        write_message(
            format!("{} {} SIP/2.0", self.method, self.uri).as_bytes(),
            &self.headers,
            &self.body,
        )
    }

    /// A response to this request: Via, From, To, Call-ID and CSeq copied; a To tag added to
    /// anything but 100 when the request had none (`to_tag` lets a transaction reuse one).
    /// A response that establishes a dialog (101–299 to an INVITE or SUBSCRIBE outside one)
    /// carries the request's Record-Route values, in order (RFC 3261 §12.1.1, RFC 6665 §4.2.1),
    /// so that the proxies that asked to stay in the path see the ACK and BYE.
    pub fn response(&self, status: u16, reason: Option<&str>, to_tag: &str) -> Response {
        let mut headers = self.headers.response_copy();
        let creates_dialog = matches!(self.method, Method::Invite | Method::Subscribe)
            && (101..300).contains(&status)
            && self.header_to().is_some_and(|t| t.tag().is_none());
        if creates_dialog {
            for rr in self.headers.get_all(&HeaderName::RecordRoute) {
                headers.push(HeaderName::RecordRoute, rr.clone());
            }
        }
        if status > 100
            && !to_tag.is_empty()
            && let Some(to) = headers.get_mut(&HeaderName::To)
            && !has_tag(to)
        {
            let mut with_tag = to.to_vec();
            with_tag.extend_from_slice(format!(";tag={to_tag}").as_bytes());
            *to = Bytes::from(with_tag);
        }
        Response {
            status,
            reason: Bytes::from(reason.unwrap_or(reason_phrase(status)).to_owned()),
            headers,
            body: Bytes::new(),
        }
    }
}

fn has_tag(to_value: &[u8]) -> bool {
    NameAddr::parse(to_value).map(|a| a.tag().is_some()).unwrap_or(false)
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut start = format!("SIP/2.0 {} ", self.status).into_bytes();
        start.extend_from_slice(&self.reason);
        write_message(&start, &self.headers, &self.body)
    }

    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Framing, Message, parse_message};
    use super::*;

    fn request(method: &str, to_tag: &str) -> Request {
        let text = format!(
            "{method} sip:1001@ivm.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\r\n\
             Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr;ftag=x>\r\n\
             From: <sip:7001@ivm.local>;tag=a\r\nTo: <sip:1001@ivm.local>{to_tag}\r\nCall-ID: c\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_message(Bytes::from(text), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn record_route(r: &Response) -> Vec<String> {
        r.headers
            .get_all(&HeaderName::RecordRoute)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn responses_that_create_a_dialog_keep_the_record_route_in_order() {
        let want = ["<sip:p2.example;lr>", "<sip:p1.example;lr;ftag=x>"];
        assert_eq!(record_route(&request("INVITE", "").response(200, None, "t")), want);
        assert_eq!(record_route(&request("INVITE", "").response(180, None, "t")), want);
        assert_eq!(record_route(&request("SUBSCRIBE", "").response(202, None, "t")), want);
        assert!(record_route(&request("INVITE", "").response(100, None, "t")).is_empty());
        assert!(record_route(&request("INVITE", "").response(486, None, "t")).is_empty());
        assert!(
            record_route(&request("INVITE", ";tag=b").response(200, None, "t")).is_empty(),
            "re-INVITE"
        );
        assert!(record_route(&request("OPTIONS", "").response(200, None, "t")).is_empty());
    }
}
