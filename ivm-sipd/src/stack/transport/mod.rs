//! SIP transport (RFC 3261 §18): the UDP socket and TCP connections on one listen address,
//! TLS connections on another,
//! where responses go (§18.2.2 with RFC 3581 `rport`), and the `received`/`rport` stamps on
//! incoming requests.

mod inbound;
mod peer;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};

pub use inbound::{Inbound, stamp_received, stateless_error};
pub use peer::{Peer, TransportKind, response_target};

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

/// Sends bytes to a peer over its transport: the sockets, or (for tests of the layers above,
/// pjsip-style) an in-memory wire that hands every datagram to the test.
#[derive(Clone)]
pub struct Transmitter {
    wire: Wire,
}

#[derive(Clone)]
enum Wire {
    Sockets {
        udp: Arc<UdpSocket>,
        tcp: tcp::TcpConnections,
        tls: Option<tcp::TcpConnections>,
    },
    Memory(tokio::sync::mpsc::UnboundedSender<(Peer, Bytes)>),
}

impl Transmitter {
    /// Over the UDP socket and the TCP (and TLS) connections.
    pub fn sockets(udp: Arc<UdpSocket>, tcp: tcp::TcpConnections, tls: Option<tcp::TcpConnections>) -> Transmitter {
        Transmitter {
            wire: Wire::Sockets { udp, tcp, tls },
        }
    }

    /// An in-memory wire: what is sent arrives on the receiver, with its destination.
    pub fn memory() -> (Transmitter, tokio::sync::mpsc::UnboundedReceiver<(Peer, Bytes)>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Transmitter { wire: Wire::Memory(tx) }, rx)
    }

    pub async fn send(&self, to: Peer, data: Bytes) {
        match &self.wire {
            Wire::Sockets { udp, tcp, tls } => match to.transport {
                TransportKind::Udp => udp::send(udp, to.addr, &data).await,
                TransportKind::Tcp => tcp.send(to.addr, data),
                TransportKind::Tls => match tls {
                    Some(tls) => tls.send(to.addr, data),
                    None => tracing::info!(%to, "no TLS listener: dropped"),
                },
            },
            Wire::Memory(tx) => {
                let _ = tx.send((to, data));
            }
        }
    }
}
