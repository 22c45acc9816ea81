//! SIP transport (RFC 3261 §18): the UDP socket and TCP connections on one listen address,
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
