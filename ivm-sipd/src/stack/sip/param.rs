//! Parameters: the `;name[=value]` lists of URIs and of header fields (RFC 3261 `generic-param`),
//! kept in order with their values as received (quotes included).

use std::fmt;

use super::scan::{Cursor, is_token_char, unquote};

/// One parameter. Names are compared case-insensitively; values keep their received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

/// An ordered parameter list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<Param>);

impl Params {
    pub fn push(&mut self, p: Param) {
        self.0.push(p);
    }

    /// `Some(Some(v))` for `name=v`, `Some(None)` for a bare `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value with any quotes removed, as text.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .flatten()
            .map(|v| String::from_utf8_lossy(&unquote(v)).into_owned())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets or replaces a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(|v| v.as_bytes().to_vec());
        match self.0.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: name.to_owned(),
                value,
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `*( SEMI generic-param )` of a header value at the cursor, stopping at a comma or
    /// the end. Empty parameters (`;;`) are an error.
    pub(crate) fn parse_generic(c: &mut Cursor<'_>) -> Result<Params, &'static str> {
        let mut params = Params::default();
        while c.eat_sep(b';') {
            let name = c.token().ok_or("empty or malformed parameter")?;
            let value = if c.eat_sep(b'=') {
                if c.peek() == Some(b'"') {
                    Some(c.quoted_string().ok_or("unterminated quoted parameter value")?.to_vec())
                } else {
                    // token / host (IPv6 references included)
                    let v = c.take_while(|b| is_token_char(b) || matches!(b, b':' | b'[' | b']'));
                    if v.is_empty() {
                        return Err("empty parameter value");
                    }
                    Some(v.to_vec())
                }
            } else {
                None
            };
            params.push(Param {
                name: String::from_utf8_lossy(name).into_owned(),
                value,
            });
        }
        Ok(params)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={}", String::from_utf8_lossy(v))?;
            }
        }
        Ok(())
    }
}
