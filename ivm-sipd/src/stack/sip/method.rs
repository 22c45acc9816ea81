//! Request methods (case-sensitive tokens, RFC 3261 §7.1) and the CSeq header that carries one.

use std::fmt;

use super::scan::{Cursor, is_token, parse_u64};

/// A SIP method. Unknown methods keep their spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Subscribe,
    Notify,
    Info,
    Prack,
    Update,
    Refer,
    Publish,
    Other(String),
}

impl Method {
    pub fn from_bytes(b: &[u8]) -> Option<Method> {
        if !is_token(b) {
            return None;
        }
        Some(match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(String::from_utf8_lossy(other).into_owned()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSeq header: a sequence number below 2^31 and a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &[u8]) -> Result<CSeq, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_u64(digits)
            .filter(|n| *n < (1 << 31))
            .ok_or("CSeq: sequence number missing or not below 2^31")?;
        if !c.skip_ws() {
            return Err("CSeq: missing method");
        }
        let method = Method::from_bytes(c.token().ok_or("CSeq: missing method")?).ok_or("CSeq: bad method")?;
        c.skip_ws();
        if !c.is_empty() {
            return Err("CSeq: unexpected characters");
        }
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse(b"0009 INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse(b"2147483648 REGISTER").is_err());
        assert_eq!(
            CSeq::parse(b"139122385 !interesting-Method0123456789_*+`.%indeed'~").map(|c| c.method),
            Ok(Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into()))
        );
        assert_eq!(Method::from_bytes(b"invite"), Some(Method::Other("invite".into())));
    }
}
