//! The trunk definition as config files and the store keep it ([`TrunkSpec`], its transport,
//! and [`TrunkError`]), with its syntax check; no DNS here. It sits on the store's floor because
//! the store validates what it writes; [`crate::services::trunk`] resolves it into a usable trunk.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use regex::Regex;
use serde::{Deserialize, Serialize};

pub use super::error::TrunkError;

/// The transport of a trunk, as written in config files and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    #[serde(alias = "UDP")]
    Udp,
    #[serde(alias = "TCP")]
    Tcp,
}

impl TrunkTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkTransport::Udp => "udp",
            TrunkTransport::Tcp => "tcp",
        }
    }

    /// Parses the stored form (`udp`, `tcp`, any case).
    pub fn parse(s: &str) -> Option<TrunkTransport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(TrunkTransport::Udp),
            "tcp" => Some(TrunkTransport::Tcp),
            _ => None,
        }
    }
}

/// A trunk as configured: a `[[trunk]]` table or a stored row. Unvalidated until
/// [`TrunkSpec::validate`] or [`TrunkSpec::compile`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSpec {
    /// Letters, digits and `. _ -`.
    pub name: String,
    /// `IP:PORT`, `[IPv6]:PORT` or `host:port` (resolved when the table is built).
    pub address: String,
    #[serde(default)]
    pub transport: TrunkTransport,
    /// Regular expressions over the dialed number (as the dial plan gives it, e.g.
    /// `+4930123456`); each must match the whole number.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Source networks (CIDR, or a bare IP address) whose requests are accepted as this trunk.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Whether the caller identity this trunk presents (P-Asserted-Identity, RFC 3325, else
    /// the From user) identifies a subscriber — so its calls open that subscriber's mailbox
    /// without a PIN. Off: the trunk may place calls, but never claims to be a subscriber.
    #[serde(default)]
    pub asserts_identity: bool,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A DNS host name (or IPv4 literal): dot-separated labels of letters, digits and `-`.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits `host:port` (or `[v6]:port`); `None` when it is neither.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return (sa.port() != 0).then_some((address.rsplit_once(':')?.0, sa.port()));
    }
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    valid_host(host).then_some((host, port))
}

/// Parses a network: `a.b.c.d/len`, `v6/len`, or a bare address (a /32 or /128).
pub fn parse_network(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

impl TrunkSpec {
    /// Checks the syntax of every field (no DNS lookup).
    pub fn validate(&self) -> Result<(), TrunkError> {
        self.parts().map(|_| ())
    }

    pub(crate) fn parts(&self) -> Result<(Vec<Regex>, Vec<IpNet>), TrunkError> {
        if !valid_name(&self.name) {
            return Err(TrunkError::Name(self.name.clone()));
        }
        if split_host_port(&self.address).is_none() {
            return Err(TrunkError::Address {
                trunk: self.name.clone(),
                address: self.address.clone(),
            });
        }
        let routes = self
            .routes
            .iter()
            .map(|r| {
                Regex::new(&format!("^(?:{r})$")).map_err(|e| TrunkError::Route {
                    trunk: self.name.clone(),
                    regex: r.clone(),
                    error: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trusted = self
            .trusted
            .iter()
            .map(|c| {
                parse_network(c).ok_or_else(|| TrunkError::Trusted {
                    trunk: self.name.clone(),
                    cidr: c.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((routes, trusted))
    }
}

/// Validates a list of trunk definitions together: each one, and no name twice.
pub fn validate_all(specs: &[TrunkSpec]) -> Result<(), (usize, TrunkError)> {
    for (i, spec) in specs.iter().enumerate() {
        spec.validate().map_err(|e| (i, e))?;
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err((i, TrunkError::Duplicate(spec.name.clone())));
        }
    }
    Ok(())
}
