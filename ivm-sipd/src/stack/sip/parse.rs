//! Parsing one SIP message from bytes (RFC 3261 §7, §25): start line, header lines with
//! folding and compact names, body by Content-Length, then the checks that make a message
//! well formed (single-valued headers once, CSeq method = request method, scalar ranges,
//! every typed header parsable). A rejected request carries what is needed to answer it.

use bytes::{Bytes, BytesMut};

use super::fields::{MediaType, check_call_id, check_date, parse_delta_seconds, parse_number, parse_token_list};
use super::header::{HeaderName, Headers};
use super::message::{Message, Request, Response};
use super::method::{CSeq, Method};
use super::name_addr::{Contact, NameAddr};
use super::scan::{is_token_char, parse_u64, trim};
use super::uri::Uri;
use super::via::Via;

/// How a message arrived, which decides how its body is delimited (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram: octets past Content-Length are ignored; no Content-Length means the
    /// body runs to the end of the datagram.
    Datagram,
    /// One message cut from a stream by the stream framer: Content-Length is required.
    Stream,
}

/// What kind of failure, which decides the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Answer `400` (requests) or drop (responses).
    Malformed,
    /// The request line names another SIP version: answer `505`.
    VersionNotSupported,
}

/// A message that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    pub kind: ErrorKind,
    pub reason: String,
    /// For a request whose Via and CSeq could be read: the headers to answer with (Via, From,
    /// To, Call-ID, CSeq as received), so the caller can send `400`/`505` statelessly.
    pub answerable: Option<Box<Headers>>,
}

impl ParseError {
    fn malformed(reason: impl Into<String>) -> Self {
        ParseError {
            kind: ErrorKind::Malformed,
            reason: reason.into(),
            answerable: None,
        }
    }
}

enum StartLine {
    Request { method: Method, uri: Uri, version_ok: bool },
    Response { status: u16, reason: Bytes },
}

/// Finds the end of the header block: the offset just past the empty line.
pub fn find_header_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if data.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if data.get(next) == Some(&b'\r') && data.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

/// Parses one message.
pub fn parse_message(data: Bytes, framing: Framing) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let skip = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let data = data.slice(skip..);
    if data.is_empty() {
        return Err(ParseError::malformed("empty message"));
    }
    let (head_end, body_start) = match find_header_end(&data) {
        Some(end) => (end, end),
        None if framing == Framing::Datagram => (data.len(), data.len()),
        None => return Err(ParseError::malformed("headers not terminated by an empty line")),
    };
    let mut lines = split_lines(&data, head_end);
    let (s, e) = lines.next().ok_or_else(|| ParseError::malformed("empty message"))?;
    let start = parse_start_line(&data[s..e]);
    let headers = parse_header_lines(&data, lines)?;
    let start = match start {
        Ok(start) => start,
        // A request line that does not parse still gets its 400 when the headers allow one.
        Err(mut err) if !data[s..e].starts_with(b"SIP/") => {
            err.answerable = answer_headers(&headers);
            return Err(err);
        }
        Err(err) => return Err(err),
    };

    let is_request = matches!(start, StartLine::Request { .. });
    let answerable = || if is_request { answer_headers(&headers) } else { None };
    let fail = |kind: ErrorKind, reason: String| ParseError {
        kind,
        reason,
        answerable: answerable(),
    };

    if let StartLine::Request { version_ok: false, .. } = start {
        return Err(fail(ErrorKind::VersionNotSupported, "SIP version not supported".into()));
    }
    let body = body_of(&data, body_start, &headers, framing).map_err(|r| fail(ErrorKind::Malformed, r.into()))?;
    let method = match &start {
        StartLine::Request { method, .. } => Some(method),
        StartLine::Response { .. } => None,
    };
    check_headers(&headers, method).map_err(|r| fail(ErrorKind::Malformed, r))?;
    Ok(match start {
        StartLine::Request { method, uri, .. } => {
            if let Uri::Sip(u) = &uri
                && u.headers.is_some()
            {
                return Err(fail(
                    ErrorKind::Malformed,
                    "Request-URI must not contain headers".into(),
                ));
            }
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        }
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

/// The headers a stateless answer copies (Via, From, To, Call-ID, CSeq), when there is a Via
/// and a CSeq to answer to.
fn answer_headers(headers: &Headers) -> Option<Box<Headers>> {
    if !headers.contains(&HeaderName::Via) || !headers.contains(&HeaderName::CSeq) {
        return None;
    }
    Some(Box::new(headers.response_copy()))
}

/// Yields (start, end) of each line before `end`, without its CR/LF.
fn split_lines(data: &[u8], end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let nl = data[pos..end].iter().position(|&b| b == b'\n').map_or(end, |o| pos + o);
        let mut line_end = nl;
        if line_end > pos && data[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let item = (pos, line_end);
        pos = nl + 1;
        if item.0 == item.1 && pos >= end {
            None
        } else {
            Some(item)
        }
    })
}

fn parse_version(v: &[u8]) -> Option<bool> {
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let rest = &v[4..];
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    if major.is_empty() || minor.is_empty() || !major.iter().chain(minor).all(u8::is_ascii_digit) {
        return None;
    }
    Some(major == b"2" && minor == b"0")
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let version = parts.next().unwrap_or_default();
        let code = parts
            .next()
            .ok_or_else(|| ParseError::malformed("status line without status code"))?;
        let reason = parts
            .next()
            .ok_or_else(|| ParseError::malformed("status line without reason phrase"))?;
        if parse_version(version) != Some(true) {
            return Err(ParseError::malformed("response with unsupported SIP version"));
        }
        let status = parse_u64(code)
            .filter(|c| code.len() == 3 && (100..700).contains(c))
            .ok_or_else(|| ParseError::malformed("bad status code"))?;
        return Ok(StartLine::Response {
            status: status as u16,
            reason: Bytes::copy_from_slice(reason),
        });
    }
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(ParseError::malformed(
            "request line must be: Method SP Request-URI SP SIP-Version",
        ));
    }
    let method = Method::from_bytes(parts[0]).ok_or_else(|| ParseError::malformed("bad method"))?;
    let uri = Uri::parse(parts[1]).map_err(|e| ParseError::malformed(format!("bad Request-URI: {}", e.0)))?;
    let version_ok = parse_version(parts[2]).ok_or_else(|| ParseError::malformed("bad SIP version"))?;
    Ok(StartLine::Request {
        method,
        uri,
        version_ok,
    })
}

fn parse_header_lines(data: &Bytes, lines: impl Iterator<Item = (usize, usize)>) -> Result<Headers, ParseError> {
    // Collect (name, value ranges) first, joining folded continuation lines.
    let mut raw: Vec<(HeaderName, Vec<(usize, usize)>)> = Vec::new();
    for (s, e) in lines {
        let line = &data[s..e];
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let last = raw
                .last_mut()
                .ok_or_else(|| ParseError::malformed("continuation line before any header"))?;
            last.1.push((s, e));
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| ParseError::malformed("header line without ':'"))?;
        let name = trim(&line[..colon]);
        if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
            return Err(ParseError::malformed("bad header name"));
        }
        raw.push((HeaderName::from_bytes(name), vec![(s + colon + 1, e)]));
    }
    let mut headers = Headers::new();
    for (name, ranges) in raw {
        let value = if ranges.len() == 1 {
            let (s, e) = ranges[0];
            let t = trim(&data[s..e]);
            let off = s + (t.as_ptr() as usize - data[s..e].as_ptr() as usize);
            data.slice(off..off + t.len())
        } else {
            let mut buf = BytesMut::new();
            for (s, e) in ranges {
                let t = trim(&data[s..e]);
                if t.is_empty() {
                    continue;
                }
                if !buf.is_empty() {
                    buf.extend_from_slice(b" ");
                }
                buf.extend_from_slice(t);
            }
            buf.freeze()
        };
        headers.push(name, value);
    }
    Ok(headers)
}

fn body_of(data: &Bytes, start: usize, headers: &Headers, framing: Framing) -> Result<Bytes, &'static str> {
    let available = data.len() - start;
    let mut lengths = headers.get_all(&HeaderName::ContentLength);
    let declared = match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => return Err("more than one Content-Length"),
        (Some(v), None) => {
            Some(parse_number(v, u32::MAX.into()).map_err(|_| "Content-Length is not a non-negative number")? as usize)
        }
        (None, _) => None,
    };
    match (declared, framing) {
        (Some(n), _) if n > available => Err("Content-Length larger than the message"),
        (Some(n), _) => Ok(data.slice(start..start + n)),
        (None, Framing::Datagram) => Ok(data.slice(start..)),
        (None, Framing::Stream) => Err("Content-Length is required on a stream transport"),
    }
}

fn once<'a>(headers: &'a Headers, name: &'a HeaderName, required: bool) -> Result<Option<&'a Bytes>, String> {
    let mut it = headers.get_all(name);
    match (it.next(), it.next()) {
        (Some(_), Some(_)) => Err(format!("more than one {name} header")),
        (Some(v), None) => Ok(Some(v)),
        (None, _) if required => Err(format!("missing {name} header")),
        (None, _) => Ok(None),
    }
}

fn check_headers(headers: &Headers, method: Option<&Method>) -> Result<(), String> {
    let ctx = |name: &HeaderName, e: &str| format!("bad {name} header: {e}");
    let mut vias = 0;
    for v in headers.get_all(&HeaderName::Via) {
        vias += Via::parse_list(v).map_err(|e| ctx(&HeaderName::Via, e))?.len();
    }
    if vias == 0 {
        return Err("missing Via header".into());
    }
    for name in [HeaderName::From, HeaderName::To] {
        if let Some(v) = once(headers, &name, true)? {
            NameAddr::parse(v).map_err(|e| ctx(&name, e))?;
        }
    }
    if let Some(v) = once(headers, &HeaderName::CallId, true)? {
        check_call_id(v).map_err(|e| ctx(&HeaderName::CallId, e))?;
    }
    let cseq = once(headers, &HeaderName::CSeq, true)?
        .map(|v| CSeq::parse(v))
        .transpose()
        .map_err(|e| ctx(&HeaderName::CSeq, e))?;
    if let (Some(m), Some(c)) = (method, &cseq)
        && &c.method != m
    {
        return Err("CSeq method does not match the request method".into());
    }
    if let Some(v) = once(headers, &HeaderName::MaxForwards, false)? {
        parse_number(v, 255).map_err(|_| ctx(&HeaderName::MaxForwards, "not a number from 0 to 255"))?;
    }
    if let Some(v) = once(headers, &HeaderName::Expires, false)? {
        parse_delta_seconds(v).map_err(|e| ctx(&HeaderName::Expires, e))?;
    }
    if let Some(v) = once(headers, &HeaderName::ContentType, false)? {
        MediaType::parse(v).map_err(|e| ctx(&HeaderName::ContentType, e))?;
    }
    if let Some(v) = once(headers, &HeaderName::Date, false)? {
        check_date(v).map_err(|e| ctx(&HeaderName::Date, e))?;
    }
    for v in headers.get_all(&HeaderName::Contact) {
        if let Contact::Addrs(addrs) = Contact::parse(v).map_err(|e| ctx(&HeaderName::Contact, e))? {
            for a in addrs {
                if let Some(Some(exp)) = a.params.get("expires") {
                    parse_delta_seconds(exp).map_err(|e| ctx(&HeaderName::Contact, e))?;
                }
            }
        }
    }
    for name in [HeaderName::Route, HeaderName::RecordRoute] {
        for v in headers.get_all(&name) {
            NameAddr::parse_list(v).map_err(|e| ctx(&name, e))?;
        }
    }
    for name in [
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Supported,
        HeaderName::Allow,
        HeaderName::Unsupported,
    ] {
        for v in headers.get_all(&name) {
            parse_token_list(v).map_err(|e| ctx(&name, e))?;
        }
    }
    Ok(())
}
