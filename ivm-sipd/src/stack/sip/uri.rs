//! URIs of RFC 3261 §19 and RFC 3966: `sip:`/`sips:` parsed into parts, `tel:` numbers, and any
//! other scheme kept opaque. Every part keeps the bytes it was received with (`%` escapes
//! included) so a URI is written back exactly; comparison helpers unescape.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::param::{Param, Params};
use super::scan::{Cursor, is_unreserved};

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URI: {0}")]
pub struct UriError(pub &'static str);

/// A host: a domain name, an IPv4 address or an IPv6 reference, with its text as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    raw: String,
    kind: HostKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    Domain,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    pub fn kind(&self) -> &HostKind {
        &self.kind
    }

    /// The host as received (IPv6 with its brackets).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The IP address when the host is a literal.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self.kind {
            HostKind::Domain => None,
            HostKind::V4(a) => Some(a.into()),
            HostKind::V6(a) => Some(a.into()),
        }
    }

    pub fn from_ip(ip: std::net::IpAddr) -> Host {
        match ip {
            std::net::IpAddr::V4(a) => Host {
                raw: a.to_string(),
                kind: HostKind::V4(a),
            },
            std::net::IpAddr::V6(a) => Host {
                raw: format!("[{a}]"),
                kind: HostKind::V6(a),
            },
        }
    }

    /// Parses a host at the cursor: `[IPv6]`, dotted IPv4 or a hostname.
    pub(crate) fn parse(c: &mut Cursor<'_>) -> Result<Host, UriError> {
        if c.peek() == Some(b'[') {
            let start = c.pos();
            c.bump();
            let inner = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if !c.eat(b']') {
                return Err(UriError("unterminated IPv6 reference"));
            }
            let text = std::str::from_utf8(inner).map_err(|_| UriError("bad IPv6 reference"))?;
            let addr: Ipv6Addr = text.parse().map_err(|_| UriError("bad IPv6 reference"))?;
            let raw = String::from_utf8_lossy(c.slice(start, c.pos())).into_owned();
            return Ok(Host {
                raw,
                kind: HostKind::V6(addr),
            });
        }
        let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if name.is_empty() {
            return Err(UriError("missing host"));
        }
        let raw = String::from_utf8_lossy(name).into_owned();
        if name.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            let addr: Ipv4Addr = raw.parse().map_err(|_| UriError("bad IPv4 address"))?;
            return Ok(Host {
                raw,
                kind: HostKind::V4(addr),
            });
        }
        if name.starts_with(b".") || name.starts_with(b"-") || name.windows(2).any(|w| w == b"..") {
            return Err(UriError("bad host name"));
        }
        Ok(Host {
            raw,
            kind: HostKind::Domain,
        })
    }

    /// Parses a whole string as a host.
    pub fn parse_str(s: &str) -> Result<Host, UriError> {
        let mut c = Cursor::new(s.as_bytes());
        let h = Host::parse(&mut c)?;
        if c.is_empty() {
            Ok(h)
        } else {
            Err(UriError("junk after host"))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The user part as received (escapes kept).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?` headers part, without the `?`.
    pub headers: Option<String>,
}

impl SipUri {
    /// A plain `sip:user@host[:port]`.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    /// The user part with `%` escapes decoded (for comparison and lookup).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(|u| unescape(u.as_bytes()))
    }

    /// The `transport` URI parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.params
            .get("transport")
            .flatten()
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
    }
}

/// A `tel:` URI (RFC 3966): the number and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Params,
}

/// Any URI a SIP message can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// A scheme we do not interpret (`soap.beep:`, `http:`, `isbn:` …), kept whole.
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Parses one complete URI; `stop_at_semicolon` is for an addr-spec outside `<>`, where a
    /// `;` starts the header's own parameters.
    pub fn parse(s: &[u8]) -> Result<Uri, UriError> {
        let mut c = Cursor::new(s);
        let uri = Uri::parse_at(&mut c, false)?;
        if !c.is_empty() {
            return Err(UriError("unexpected characters after URI"));
        }
        Ok(uri)
    }

    pub(crate) fn parse_at(c: &mut Cursor<'_>, in_addr_spec: bool) -> Result<Uri, UriError> {
        let scheme = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if scheme.is_empty() || !scheme[0].is_ascii_alphabetic() || !c.eat(b':') {
            return Err(UriError("missing or invalid scheme"));
        }
        let scheme_lc = String::from_utf8_lossy(scheme).to_ascii_lowercase();
        match scheme_lc.as_str() {
            "sip" | "sips" => parse_sip(c, scheme_lc == "sips", in_addr_spec).map(Uri::Sip),
            "tel" => parse_tel(c, in_addr_spec).map(Uri::Tel),
            _ => {
                let rest = c.take_while(|b| {
                    b > 0x20
                        && b < 0x7f
                        && !matches!(b, b'<' | b'>' | b'"')
                        && !(in_addr_spec && matches!(b, b';' | b','))
                });
                if rest.is_empty() {
                    return Err(UriError("empty URI after scheme"));
                }
                Ok(Uri::Other {
                    scheme: String::from_utf8_lossy(scheme).into_owned(),
                    rest: String::from_utf8_lossy(rest).into_owned(),
                })
            }
        }
    }
}

fn is_escape_at(s: &[u8], i: usize) -> bool {
    s[i] == b'%' && i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()
}

/// Checks that every byte is allowed by `ok` or is part of a valid `%HH` escape.
fn check_escaped(s: &[u8], ok: impl Fn(u8) -> bool, what: &'static str) -> Result<(), UriError> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !is_escape_at(s, i) {
                return Err(UriError(what));
            }
            i += 3;
        } else if ok(s[i]) {
            i += 1;
        } else {
            return Err(UriError(what));
        }
    }
    Ok(())
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

pub(crate) fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&')
}

fn parse_sip(c: &mut Cursor<'_>, secure: bool, in_addr_spec: bool) -> Result<SipUri, UriError> {
    // The userinfo ends at the only '@' that can appear before the host.
    let rest = c.rest();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'>' | b' ' | b'\t') || (in_addr_spec && b == b','))
        .unwrap_or(rest.len());
    let (mut user, mut password) = (None, None);
    if let Some(at) = rest[..end].iter().position(|&b| b == b'@') {
        let userinfo = &rest[..at];
        let (u, p) = match userinfo.iter().position(|&b| b == b':') {
            Some(i) => (&userinfo[..i], Some(&userinfo[i + 1..])),
            None => (userinfo, None),
        };
        if u.is_empty() {
            return Err(UriError("empty user part"));
        }
        check_escaped(u, is_user_char, "bad character in user part")?;
        user = Some(String::from_utf8_lossy(u).into_owned());
        if let Some(p) = p {
            check_escaped(p, is_password_char, "bad character in password")?;
            password = Some(String::from_utf8_lossy(p).into_owned());
        }
        for _ in 0..=at {
            c.bump();
        }
    }
    let host = Host::parse(c)?;
    let mut port = None;
    if c.eat(b':') {
        let digits = c.take_while(|b| b.is_ascii_digit());
        let p = super::scan::parse_u64(digits)
            .filter(|p| *p <= 65535)
            .ok_or(UriError("bad port"))?;
        port = Some(p as u16);
    }
    let mut params = Params::default();
    if !in_addr_spec {
        while c.eat(b';') {
            let name = c.take_while(|b| is_param_char(b) || b == b'%');
            if name.is_empty() {
                return Err(UriError("empty URI parameter"));
            }
            check_escaped(name, is_param_char, "bad character in URI parameter")?;
            let value = if c.eat(b'=') {
                let v = c.take_while(|b| is_param_char(b) || b == b'%');
                check_escaped(v, is_param_char, "bad character in URI parameter value")?;
                Some(v.to_vec())
            } else {
                None
            };
            params.push(Param {
                name: String::from_utf8_lossy(name).into_owned(),
                value,
            });
        }
    }
    let mut headers = None;
    if !in_addr_spec && c.eat(b'?') {
        let h = c.take_while(|b| is_header_char(b) || b == b'%');
        check_escaped(h, is_header_char, "bad character in URI headers")?;
        if h.is_empty() {
            return Err(UriError("empty URI headers"));
        }
        headers = Some(String::from_utf8_lossy(h).into_owned());
    }
    if in_addr_spec && matches!(c.peek(), Some(b'?')) {
        return Err(UriError("URI with headers must be enclosed in <>"));
    }
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_tel(c: &mut Cursor<'_>, in_addr_spec: bool) -> Result<TelUri, UriError> {
    let number = c.take_while(|b| b.is_ascii_hexdigit() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#'));
    if number.is_empty() {
        return Err(UriError("empty telephone number"));
    }
    let mut params = Params::default();
    if !in_addr_spec {
        while c.eat(b';') {
            let name = c.take_while(|b| is_param_char(b) || b == b'%');
            if name.is_empty() {
                return Err(UriError("empty tel parameter"));
            }
            let value = if c.eat(b'=') {
                Some(c.take_while(|b| is_param_char(b) || b == b'%').to_vec())
            } else {
                None
            };
            params.push(Param {
                name: String::from_utf8_lossy(name).into_owned(),
                value,
            });
        }
    }
    Ok(TelUri {
        number: String::from_utf8_lossy(number).into_owned(),
        params,
    })
}

/// Decodes `%HH` escapes; anything else is copied.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if is_escape_at(s, i) {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Tel(t) => write!(f, "tel:{}{}", t.number, t.params),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s.as_bytes()) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sip_uri_parts_and_round_trip() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user.as_deref(), Some("sips%3Auser%40example.com"));
        assert_eq!(u.user_unescaped(), Some(b"sips:user@example.com".to_vec()));
        assert_eq!(u.host.as_str(), "example.net");
        for s in [
            "sip:user;par=u%40example.net@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "sips:alice@[2001:db8::10]:5061;transport=tcp;lr",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "sip:192.0.2.7",
        ] {
            assert_eq!(sip(s).to_string(), s);
        }
        assert_eq!(
            sip("sips:alice@[2001:db8::10]:5061").host.ip(),
            Some("2001:db8::10".parse().unwrap_or_else(|_| unreachable!()))
        );
    }

    #[test]
    fn other_schemes_and_errors() {
        assert_eq!(
            Uri::parse(b"soap.beep://192.0.2.103:3002").map(|u| u.scheme().to_owned()),
            Ok("soap.beep".into())
        );
        assert!(matches!(
            Uri::parse(b"tel:+1-201-555-0123;phone-context=x"),
            Ok(Uri::Tel(_))
        ));
        assert!(Uri::parse(b"<sip:user@example.com>").is_err());
        assert!(Uri::parse(b"sip:user@example.com; lr").is_err());
        assert!(Uri::parse(b"sip:us%zzer@example.com").is_err());
        assert!(Uri::parse(b"sip:user@[::1").is_err());
        assert!(Uri::parse(b"sip:user@host:99999").is_err());
    }
}
