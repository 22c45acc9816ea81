//! The small header values the server reads: numbers (Max-Forwards, Content-Length, Expires),
//! token lists (Allow, Supported, Require …), media types (Content-Type, Accept), Call-ID,
//! Event, Date, and the auth-param lists of Authorization and WWW-Authenticate (RFC 3261 §20,
//! RFC 8760).

use super::param::Params;
use super::scan::{Cursor, is_word_char, parse_u64, split_list, trim, unquote};

/// A decimal number with no sign and at most `max`.
pub fn parse_number(value: &[u8], max: u64) -> Result<u64, &'static str> {
    parse_u64(trim(value))
        .filter(|n| *n <= max)
        .ok_or("not a number in range")
}

/// Expires / delta-seconds: overlarge values are clamped (RFC 4475 §3.1.2.4 lets an element
/// treat them as "very long" rather than fail).
pub fn parse_delta_seconds(value: &[u8]) -> Result<u32, &'static str> {
    let v = trim(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err("not a number of seconds");
    }
    Ok(parse_u64(v).map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32))
}

/// A comma-separated token list; an empty value is an empty list.
pub fn parse_token_list(value: &[u8]) -> Result<Vec<String>, &'static str> {
    if trim(value).is_empty() {
        return Ok(Vec::new());
    }
    split_list(value)
        .into_iter()
        .map(|t| {
            if super::scan::is_token(t) {
                Ok(String::from_utf8_lossy(t).into_owned())
            } else {
                Err("malformed token list")
            }
        })
        .collect()
}

/// Validates a Call-ID (`word ["@" word]`).
pub fn check_call_id(value: &[u8]) -> Result<(), &'static str> {
    let v = trim(value);
    let mut parts = v.splitn(2, |b| *b == b'@');
    let ok_word = |w: &[u8]| !w.is_empty() && w.iter().all(|&b| is_word_char(b));
    match (parts.next(), parts.next()) {
        (Some(a), None) if ok_word(a) => Ok(()),
        (Some(a), Some(b)) if ok_word(a) && ok_word(b) => Ok(()),
        _ => Err("malformed Call-ID"),
    }
}

/// A media type or range: `type/subtype;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub kind: String,
    pub subtype: String,
    pub params: Params,
}

impl MediaType {
    pub fn parse(value: &[u8]) -> Result<MediaType, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let kind = c.token().ok_or("media type: missing type")?;
        if !c.eat_sep(b'/') {
            return Err("media type: missing /");
        }
        let subtype = c.token().ok_or("media type: missing subtype")?;
        let params = Params::parse_generic(&mut c)?;
        c.skip_ws();
        if !c.is_empty() {
            return Err("media type: unexpected characters");
        }
        Ok(MediaType {
            kind: String::from_utf8_lossy(kind).to_ascii_lowercase(),
            subtype: String::from_utf8_lossy(subtype).to_ascii_lowercase(),
            params,
        })
    }

    /// Whether this type (or range, with `*`) covers `kind/subtype`.
    pub fn matches(&self, kind: &str, subtype: &str) -> bool {
        (self.kind == "*" || self.kind == kind) && (self.subtype == "*" || self.subtype == subtype)
    }

    pub fn parse_list(value: &[u8]) -> Result<Vec<MediaType>, &'static str> {
        if trim(value).is_empty() {
            return Ok(Vec::new());
        }
        split_list(value).into_iter().map(MediaType::parse).collect()
    }
}

/// The Event header (RFC 6665): the package and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub package: String,
    pub params: Params,
}

impl Event {
    pub fn parse(value: &[u8]) -> Result<Event, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let package = c.token().ok_or("Event: missing package")?;
        let params = Params::parse_generic(&mut c)?;
        c.skip_ws();
        if !c.is_empty() {
            return Err("Event: unexpected characters");
        }
        Ok(Event {
            package: String::from_utf8_lossy(package).into_owned(),
            params,
        })
    }
}

/// Checks an rfc1123-date in GMT (`Sat, 13 Nov 2010 23:29:00 GMT`), the only form RFC 3261
/// §20.17 allows.
pub fn check_date(value: &[u8]) -> Result<(), &'static str> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let v = trim(value);
    let ok = v.len() == 29
        && DAYS.contains(&&v[0..3])
        && &v[3..5] == b", "
        && v[5..7].iter().all(u8::is_ascii_digit)
        && v[7] == b' '
        && MONTHS.contains(&&v[8..11])
        && v[11] == b' '
        && v[12..16].iter().all(u8::is_ascii_digit)
        && v[16] == b' '
        && v[17..19].iter().all(u8::is_ascii_digit)
        && v[19] == b':'
        && v[20..22].iter().all(u8::is_ascii_digit)
        && v[22] == b':'
        && v[23..25].iter().all(u8::is_ascii_digit)
        && &v[25..29] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err("Date is not an RFC 1123 date in GMT")
    }
}

/// The value of Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate:
/// a scheme and its comma-separated `name=value` auth-params (values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    pub fn parse(value: &[u8]) -> Result<AuthParams, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let scheme = c.token().ok_or("auth: missing scheme")?;
        let scheme = String::from_utf8_lossy(scheme).into_owned();
        c.skip_ws();
        let mut params = Vec::new();
        if !c.is_empty() {
            for item in split_list(c.rest()) {
                let mut p = Cursor::new(item);
                let name = p.token().ok_or("auth: malformed parameter")?;
                if !p.eat_sep(b'=') {
                    return Err("auth: parameter without value");
                }
                let raw = if p.peek() == Some(b'"') {
                    p.quoted_string().ok_or("auth: unterminated quoted value")?
                } else {
                    p.token().ok_or("auth: empty value")?
                };
                p.skip_ws();
                if !p.is_empty() {
                    return Err("auth: unexpected characters");
                }
                params.push((
                    String::from_utf8_lossy(name).to_ascii_lowercase(),
                    String::from_utf8_lossy(&unquote(raw)).into_owned(),
                ));
            }
        }
        Ok(AuthParams { scheme, params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values() {
        assert_eq!(parse_number(b" 0068", 255), Ok(68));
        assert!(parse_number(b"300", 255).is_err());
        assert!(parse_number(b"-999", u64::MAX).is_err());
        assert_eq!(
            parse_delta_seconds(b"10000000000000000000000000000000000000"),
            Ok(u32::MAX)
        );
        assert_eq!(
            parse_token_list(b"nothingSupportsThis, nothingSupportsThisEither").map(|v| v.len()),
            Ok(2)
        );
        assert!(check_call_id(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id(b"a b").is_err());
        assert!(check_date(b"Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert!(check_date(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
        let a = AuthParams::parse(br#"Digest username="1001", realm="ivm", nonce="abc", uri="sip:ivm", response="0f", algorithm=MD5, qop=auth, nc=00000001, cnonce="x,y""#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.get("cnonce"), Some("x,y"));
        assert_eq!(a.get("qop"), Some("auth"));
        assert!(MediaType::parse(b"application/sdp").is_ok_and(|m| m.matches("application", "sdp")));
    }
}
