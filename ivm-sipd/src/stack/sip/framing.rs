//! Cutting SIP messages out of a TCP byte stream (RFC 3261 §18.3): the header block, then
//! exactly Content-Length octets of body; CRLF keep-alives (RFC 5626 §3.5.1) recognised; a
//! size limit so a peer cannot make us buffer without bound.

use bytes::{Bytes, BytesMut};

use super::parse::find_header_end;
use super::scan::{parse_u64, trim};

/// What the stream yielded.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// One complete message (headers and body).
    Message(Bytes),
    /// A double-CRLF keep-alive ping; answer with a single CRLF.
    Ping,
}

/// Why the stream cannot go on; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("message on a stream without Content-Length")]
    NoContentLength,
    #[error("bad Content-Length on a stream")]
    BadContentLength,
}

/// Accumulates stream bytes and yields whole messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max: usize,
}

impl StreamFramer {
    pub fn new(max_message_bytes: usize) -> Self {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            max: max_message_bytes,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether part of a message is waiting for the rest.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Framed>, FramingError> {
        let lead = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if lead > 0 {
            let ping = self.buf[..lead].windows(4).any(|w| w == b"\r\n\r\n");
            let _ = self.buf.split_to(lead);
            if ping {
                return Ok(Some(Framed::Ping));
            }
        }
        let Some(head_end) = find_header_end(&self.buf) else {
            return if self.buf.len() > self.max {
                Err(FramingError::TooLarge(self.max))
            } else {
                Ok(None)
            };
        };
        let cl = content_length(&self.buf[..head_end])?;
        let total = head_end.checked_add(cl).ok_or(FramingError::BadContentLength)?;
        if total > self.max {
            return Err(FramingError::TooLarge(self.max));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Framed::Message(self.buf.split_to(total).freeze())))
    }
}

fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found = None;
    for line in head.split(|&b| b == b'\n') {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found.is_some() {
                return Err(FramingError::BadContentLength);
            }
            let v = trim(line[colon + 1..].strip_suffix(b"\r").unwrap_or(&line[colon + 1..]));
            found = Some(parse_u64(v).ok_or(FramingError::BadContentLength)? as usize);
        }
    }
    found.ok_or(FramingError::NoContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_messages() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";
        let mut f = StreamFramer::new(65536);
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_item(), Ok(Some(Framed::Ping)));
        f.push(&msg[..10]);
        assert_eq!(f.next_item(), Ok(None));
        f.push(&msg[10..]);
        f.push(msg);
        assert_eq!(f.next_item(), Ok(Some(Framed::Message(Bytes::from_static(msg)))));
        assert_eq!(f.next_item(), Ok(Some(Framed::Message(Bytes::from_static(msg)))));
        assert_eq!(f.next_item(), Ok(None));
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_item(), Err(FramingError::NoContentLength));
        let mut f = StreamFramer::new(100);
        f.push(&[b'a'; 200]);
        assert_eq!(f.next_item(), Err(FramingError::TooLarge(100)));
    }
}
