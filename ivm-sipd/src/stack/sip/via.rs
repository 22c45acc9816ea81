//! The Via header (RFC 3261 §20.42, RFC 3581 `rport`): sent-protocol, sent-by and parameters.

use std::fmt;

use super::param::Params;
use super::scan::{Cursor, split_list};
use super::uri::Host;

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0` as written (version included; a message layer above checks it).
    pub protocol: String,
    /// The transport, upper-cased (`UDP`, `TCP`, `TLS`, `SCTP`, or any other token).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn branch(&self) -> Option<String> {
        self.params.get_str("branch")
    }

    /// `None` when absent, `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()))
    }

    pub fn received(&self) -> Option<String> {
        self.params.get_str("received")
    }

    /// Parses one via-parm.
    pub fn parse(value: &[u8]) -> Result<Via, &'static str> {
        let mut c = Cursor::new(value);
        c.skip_ws();
        let name = c.token().ok_or("Via: missing protocol name")?;
        if !c.eat_sep(b'/') {
            return Err("Via: malformed sent-protocol");
        }
        let version = c.token().ok_or("Via: missing protocol version")?;
        if !c.eat_sep(b'/') {
            return Err("Via: malformed sent-protocol");
        }
        let transport = c.token().ok_or("Via: missing transport")?;
        if !c.skip_ws() {
            return Err("Via: missing space before sent-by");
        }
        let host = Host::parse(&mut c).map_err(|_| "Via: bad sent-by host")?;
        let mut port = None;
        if c.eat_sep(b':') {
            let digits = c.take_while(|b| b.is_ascii_digit());
            let p = super::scan::parse_u64(digits)
                .filter(|p| *p <= 65535)
                .ok_or("Via: bad port")?;
            port = Some(p as u16);
        }
        let params = Params::parse_generic(&mut c).map_err(|_| "Via: malformed parameter")?;
        c.skip_ws();
        if !c.is_empty() {
            return Err("Via: unexpected characters");
        }
        Ok(Via {
            protocol: format!("{}/{}", String::from_utf8_lossy(name), String::from_utf8_lossy(version)),
            transport: String::from_utf8_lossy(transport).to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// Parses a comma-separated Via header value.
    pub fn parse_list(value: &[u8]) -> Result<Vec<Via>, &'static str> {
        split_list(value).into_iter().map(Via::parse).collect()
    }

    /// Whether the protocol is SIP/2.0 (case-insensitive, as RFC 3261 compares it).
    pub fn is_sip2(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("SIP/2.0")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tortuous_vias() {
        let v = Via::parse_list(b"SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap_or_default();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].transport, "UDP");
        let v = Via::parse_list(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap_or_default();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].branch().as_deref(), Some("z9hG4bK9ikj8"));
        assert_eq!(v[1].host.as_str(), "192.168.255.111");
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9:1]:5070;rport;received=2001:db8::9:255;branch=z9hG4bKas3")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.port, Some(5070));
        assert!(Via::parse_list(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
    }
}
