//! `name-addr` / `addr-spec` with header parameters: the value of From, To, Contact, Route,
//! Record-Route and Reply-To (RFC 3261 §20, §25.1).

use std::fmt;

use super::param::Params;
use super::scan::{Cursor, is_token_char, split_list};
use super::uri::Uri;

/// An address with optional display name and header parameters (`tag`, `expires`, `q` …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as received: a quoted-string with its quotes, or the token words.
    pub display: Option<Vec<u8>>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn tag(&self) -> Option<String> {
        self.params.get_str("tag")
    }

    /// Parses one value (not a list).
    pub fn parse(value: &[u8]) -> Result<NameAddr, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let mut display = None;
        let bracketed;
        if c.peek() == Some(b'"') {
            display = Some(c.quoted_string().ok_or("unterminated quoted display name")?.to_vec());
            c.skip_ws();
            if !c.eat(b'<') {
                return Err("display name not followed by <URI>");
            }
            bracketed = true;
        } else if c.peek() == Some(b'<') {
            c.bump();
            bracketed = true;
        } else {
            // *(token LWS) before '<' is a display name; otherwise this is an addr-spec.
            let save = c.clone();
            let start = c.pos();
            let mut end = start;
            while c.token().is_some() {
                end = c.pos();
                c.skip_ws();
            }
            if end > start && c.peek() == Some(b'<') {
                display = Some(c.slice(start, end).to_vec());
                c.bump();
                bracketed = true;
            } else {
                c = save;
                bracketed = false;
            }
        }
        let uri = Uri::parse_at(&mut c, !bracketed).map_err(|e| e.0)?;
        if bracketed && !c.eat(b'>') {
            return Err("URI not closed by > (or white space inside <>)");
        }
        let params = Params::parse_generic(&mut c)?;
        c.skip_ws();
        if !c.is_empty() {
            return Err(if bracketed {
                "unexpected characters after address"
            } else {
                "malformed address (URI with ; , or ? must be in <>)"
            });
        }
        Ok(NameAddr { display, uri, params })
    }

    /// Parses a comma-separated list of addresses.
    pub fn parse_list(value: &[u8]) -> Result<Vec<NameAddr>, &'static str> {
        split_list(value).into_iter().map(NameAddr::parse).collect()
    }

    /// The display name without quotes, as text.
    pub fn display_text(&self) -> Option<String> {
        self.display
            .as_ref()
            .map(|d| String::from_utf8_lossy(&super::scan::unquote(d)).into_owned())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", String::from_utf8_lossy(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The Contact header value: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addrs(Vec<NameAddr>),
}

impl Contact {
    pub fn parse(value: &[u8]) -> Result<Contact, &'static str> {
        if super::scan::trim(value) == b"*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse_list(value).map(Contact::Addrs)
    }
}

/// Whether a display name made of tokens is well formed (used by tests and callers building one).
pub fn is_token_display(s: &[u8]) -> bool {
    s.split(|b| *b == b' ')
        .all(|w| !w.is_empty() && w.iter().all(|&b| is_token_char(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = NameAddr::parse(br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.tag().as_deref(), Some("98asjd8"));
        assert_eq!(a.display_text().as_deref(), Some(r#"J Rosenberg \""#));
        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.display.as_deref(), Some(&b"caller"[..]));
        let a = NameAddr::parse(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap_or_else(|e| panic!("{e}"));
        assert!(a.params.has("unknownparam"));
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse(br#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse(br#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(matches!(Contact::parse(b" * "), Ok(Contact::Star)));
        assert!(is_token_display(b"A. Bell"));
    }
}
