//! SIP transport (RFC 3261 §18): the UDP socket and TCP connections on one listen address,
//! where responses go (§18.2.2 with RFC 3581 `rport`), and the `received`/`rport` stamps on
//! incoming requests.

pub mod tcp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};

use crate::stack::sip::parse::{ErrorKind, ParseError};
use crate::stack::sip::scan::split_list;
use crate::stack::sip::{HeaderName, Message, Request, Via};

/// A parsed message and where it came from, on its way to the transaction layer.
#[derive(Debug)]
pub struct Inbound {
    pub message: Message,
    pub source: Peer,
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr} ({proto}): port {port} is already in use")]
    InUse {
        addr: SocketAddr,
        port: u16,
        proto: &'static str,
    },
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Other {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
}

/// Binds UDP and TCP on the same address (port 0 picks one free port for both).
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
    let err = |proto, source: std::io::Error, addr: SocketAddr| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BindError::InUse {
                addr,
                port: addr.port(),
                proto,
            }
        } else {
            BindError::Other { addr, proto, source }
        }
    };
    let udp = udp::bind(addr).map_err(|e| err("UDP", e, addr))?;
    let local = udp.local_addr().map_err(|e| err("UDP", e, addr))?;
    let tcp = TcpListener::bind(local).await.map_err(|e| err("TCP", e, local))?;
    Ok((udp, tcp))
}

/// Sends bytes to a peer over its transport.
#[derive(Clone)]
pub struct Transmitter {
    pub udp: Arc<UdpSocket>,
    pub tcp: tcp::TcpConnections,
}

impl Transmitter {
    pub async fn send(&self, to: Peer, data: Bytes) {
        match to.transport {
            TransportKind::Udp => udp::send(&self.udp, to.addr, &data).await,
            TransportKind::Tcp => self.tcp.send(to.addr, data),
        }
    }
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: adds `received` to the top Via when its host is not the
/// source address, and fills in an empty `rport`. Only the first via-parm of the first Via
/// header is rewritten; the rest is kept as received.
pub fn stamp_received(req: &mut Request, source: Peer) {
    let Some(first) = req.headers.get_mut(&HeaderName::Via) else {
        return;
    };
    let parts = split_list(first);
    let Some(top) = parts.first() else { return };
    let Ok(mut via) = Via::parse(top) else { return };
    let src_ip = source.addr.ip();
    let mut changed = false;
    if via.host.ip() != Some(src_ip) {
        via.params.set("received", Some(&src_ip.to_string()));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.params.set("rport", Some(&source.addr.port().to_string()));
        changed = true;
    }
    if changed {
        let mut value = via.to_string().into_bytes();
        for rest in &parts[1..] {
            value.extend_from_slice(b", ");
            value.extend_from_slice(rest);
        }
        *first = Bytes::from(value);
    }
}

/// The stateless answer to a request that did not parse: `505` for another SIP version,
/// `400` with the reason otherwise; `None` when the request cannot be answered (no Via/CSeq).
pub fn stateless_error(e: &ParseError) -> Option<Vec<u8>> {
    let headers = e.answerable.as_ref()?;
    let (status, reason) = match e.kind {
        ErrorKind::VersionNotSupported => (505, "Version Not Supported".to_owned()),
        ErrorKind::Malformed => {
            let clean: String = e.reason.chars().filter(|c| !c.is_control()).collect();
            (400, format!("Bad Request ({clean})"))
        }
    };
    let resp = crate::stack::sip::Response {
        status,
        reason: Bytes::from(reason),
        headers: (**headers).clone(),
        body: Bytes::new(),
    };
    Some(resp.to_bytes())
}

/// The transport protocols we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    /// Reliable transports get no retransmissions and zero wait timers (D, I, J, K).
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp)
    }

    /// The name used in Via and `transport=`.
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

/// The far end of a message: the transport and the address (source of what we received, or
/// destination of what we send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport.via_name().to_ascii_lowercase(), self.addr)
    }
}

/// Where the responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4). On TCP, back over
/// the connection it came on (the transport finds it by address). On UDP, to the source
/// address and port when the top Via asked for `rport`; otherwise to `received` (the source
/// IP when the sent-by differs) and the sent-by port (5060 when absent).
pub fn response_target(top_via: &Via, source: Peer) -> Peer {
    if source.transport.is_reliable() || top_via.rport().is_some() {
        return source;
    }
    let ip: IpAddr = top_via
        .received()
        .and_then(|r| r.trim_matches(|c| c == '[' || c == ']').parse().ok())
        .or_else(|| top_via.host.ip())
        .unwrap_or(source.addr.ip());
    // A sent-by host name we would have to resolve: the source address is where it is.
    let ip = if top_via.host.ip().is_none() && top_via.received().is_none() {
        source.addr.ip()
    } else {
        ip
    };
    Peer {
        transport: source.transport,
        addr: SocketAddr::new(ip, top_via.port.unwrap_or(5060)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Via {
        Via::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn responses_follow_rport_received_and_sent_by() {
        let src = Peer {
            transport: TransportKind::Udp,
            addr: "192.0.2.9:40000".parse().unwrap_or_else(|_| unreachable!()),
        };
        assert_eq!(
            response_target(&via("SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bKa"), src).addr,
            src.addr
        );
        assert_eq!(
            response_target(
                &via("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;received=192.0.2.9"),
                src
            )
            .addr
            .to_string(),
            "192.0.2.9:5062"
        );
        assert_eq!(
            response_target(&via("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa"), src)
                .addr
                .to_string(),
            "192.0.2.9:5060"
        );
        let tcp = Peer {
            transport: TransportKind::Tcp,
            ..src
        };
        assert_eq!(
            response_target(&via("SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKa"), tcp),
            tcp
        );
    }
}
