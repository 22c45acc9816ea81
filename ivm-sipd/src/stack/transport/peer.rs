//! The far end of a message — transport kind and address — and where the responses to a
//! request go (RFC 3261 §18.2.2, RFC 3581 §4).

use std::net::{IpAddr, SocketAddr};

use crate::stack::sip::Via;

/// The transport protocols we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// TCP with TLS (RFC 3261 §26.2.1; `sips:` and `transport=tls`).
    Tls,
}

impl TransportKind {
    /// Reliable transports get no retransmissions and zero wait timers (D, I, J, K).
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp | TransportKind::Tls)
    }

    /// The name used in Via and `transport=`.
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
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
