//! The lexical layer of RFC 3261 §25: a byte cursor over one unfolded header value (or start
//! line) with the token, quoted-string and whitespace rules every typed header parser shares.

/// Characters of an RFC 3261 `token`.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// `unreserved` of RFC 3261 §25.1 (alphanum / mark).
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}

/// Characters of a Call-ID `word`.
pub fn is_word_char(b: u8) -> bool {
    is_token_char(b)
        || matches!(
            b,
            b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}'
        )
}

/// Whether `s` is a non-empty `token`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// A forward-only cursor over bytes.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.s[self.pos..]
    }

    pub fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        &self.s[from..to]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips linear white space (the value is already unfolded, so SP and HTAB only).
    pub fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skips white space, then consumes `b` and the white space after it (SEMI, COMMA, EQUAL,
    /// SLASH, COLON of §25.1). Leaves the cursor where it was when `b` is not there.
    pub fn eat_sep(&mut self, b: u8) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.eat(b) {
            self.skip_ws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !f(b) {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A non-empty token, or `None` (cursor unchanged).
    pub fn token(&mut self) -> Option<&'a [u8]> {
        let t = self.take_while(is_token_char);
        if t.is_empty() { None } else { Some(t) }
    }

    /// A quoted-string, returned raw with its quotes and escapes; `None` when unterminated or
    /// holding a bare CR/LF.
    pub fn quoted_string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.bump() {
                None | Some(b'\r') | Some(b'\n') => {
                    self.pos = start;
                    return None;
                }
                Some(b'"') => return Some(&self.s[start..self.pos]),
                Some(b'\\') => match self.bump() {
                    Some(b'\r') | Some(b'\n') | None => {
                        self.pos = start;
                        return None;
                    }
                    Some(_) => {}
                },
                Some(_) => {}
            }
        }
    }
}

/// Removes the quotes and `\` escapes of a raw quoted-string; other input is returned as is.
pub fn unquote(raw: &[u8]) -> Vec<u8> {
    if raw.len() < 2 || raw[0] != b'"' || raw[raw.len() - 1] != b'"' {
        return raw.to_vec();
    }
    let inner = &raw[1..raw.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            out.push(inner[i + 1]);
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    out
}

/// Quotes `s` as a quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a header value on the commas that separate list elements, ignoring commas inside
/// quoted strings and `<...>`.
pub fn split_list(value: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut depth, mut in_quote, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, &b) in value.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                parts.push(trim(&value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(trim(&value[start..]));
    parts
}

/// Trims SP/HTAB on both ends.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Parses a run of ASCII digits into a u64, `None` on overflow or non-digits.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_and_lists() {
        let mut c = Cursor::new(br#""a \"b\", c" rest"#);
        assert_eq!(c.quoted_string(), Some(&br#""a \"b\", c""#[..]));
        assert_eq!(unquote(br#""a \"b\", c""#), br#"a "b", c"#.to_vec());
        assert!(Cursor::new(b"\"open").quoted_string().is_none());
        let parts = split_list(br#"<sip:a@b>;x="1,2" , "x,y" <sip:c>"#);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], br#""x,y" <sip:c>"#);
        assert_eq!(parse_u64(b"36893488147419103232"), None);
        assert_eq!(parse_u64(b"0068"), Some(68));
    }
}
