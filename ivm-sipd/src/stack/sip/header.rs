//! Header fields: names (full and compact forms, case-insensitive) and the ordered list of a
//! message's headers with their values kept as received, unfolded.

use std::fmt;

use bytes::Bytes;

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are variants; any other keeps its spelling.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            Other(String),
        }

        impl HeaderName {
            /// The canonical spelling used when writing.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// Recognises a received name: case-insensitive, compact forms included.
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                $(
                    if name.eq_ignore_ascii_case($canon.as_bytes()) $( || name.eq_ignore_ascii_case($compact.as_bytes()) )? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(String::from_utf8_lossy(name).into_owned())
            }
        }
    };
}

header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    Contact => "Contact", "m";
    MaxForwards => "Max-Forwards";
    Route => "Route";
    RecordRoute => "Record-Route";
    Path => "Path";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    ContentEncoding => "Content-Encoding", "e";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    AuthenticationInfo => "Authentication-Info";
    Event => "Event", "o";
    AllowEvents => "Allow-Events", "u";
    Allow => "Allow";
    Accept => "Accept";
    Supported => "Supported", "k";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    Subject => "Subject", "s";
    ReferTo => "Refer-To", "r";
    Date => "Date";
    Server => "Server";
    UserAgent => "User-Agent";
    Warning => "Warning";
    RetryAfter => "Retry-After";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field: its name and its (unfolded) value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Bytes,
}

/// The header fields of a message, in the order received or added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a header field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Inserts a header field before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// The first value of a header.
    pub fn get(&self, name: &HeaderName) -> Option<&Bytes> {
        self.0.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// All values of a header, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0.iter().filter(move |h| &h.name == name).map(|h| &h.value)
    }

    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    /// Removes every field of that name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Replaces all fields of that name with one value, at the place of the first.
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut idx = 0;
                self.0.retain(|h| {
                    let keep = h.name != name || idx == i;
                    idx += 1;
                    keep
                });
            }
            None => self.0.push(Header { name, value }),
        }
    }

    /// Mutable access to the first field of that name.
    pub fn get_mut(&mut self, name: &HeaderName) -> Option<&mut Bytes> {
        self.0.iter_mut().find(|h| &h.name == name).map(|h| &mut h.value)
    }

    /// The fields a response copies from its request (RFC 3261 §8.2.6.2): every Via, From,
    /// To, Call-ID and CSeq, in that order.
    pub fn response_copy(&self) -> Headers {
        let mut out = Headers::new();
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            out.0.extend(self.0.iter().filter(|h| h.name == name).cloned());
        }
        out
    }

    /// Writes `Name: value\r\n` for every field.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for h in &self.0 {
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"k"), HeaderName::Supported);
        assert_eq!(
            HeaderName::from_bytes(b"C%6Fntact"),
            HeaderName::Other("C%6Fntact".into())
        );
    }

    #[test]
    fn set_replaces_all() {
        let mut h = Headers::new();
        h.push(HeaderName::Contact, "a");
        h.push(HeaderName::Via, "v");
        h.push(HeaderName::Contact, "b");
        h.set(HeaderName::Contact, "c");
        assert_eq!(h.get_all(&HeaderName::Contact).count(), 1);
        assert_eq!(h.get(&HeaderName::Contact).map(|b| &b[..]), Some(&b"c"[..]));
    }
}
