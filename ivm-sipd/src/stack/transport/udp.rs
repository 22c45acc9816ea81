//! The UDP transport: one socket on the listen address; each datagram is one message
//! (RFC 3261 §18.3), parsed here and handed on; datagrams that do not parse are answered
//! statelessly (`400`/`505`) when they are requests with a Via and CSeq, and dropped otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::inbound::{Inbound, stamp_received, stateless_error};
use super::peer::{Peer, TransportKind};
use crate::stack::sip::{Framing, Message, parse_message};

/// Binds the UDP socket with large kernel buffers (a burst of REGISTERs must not be dropped).
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(8 << 20);
    let _ = sock.set_send_buffer_size(8 << 20);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// Sends one datagram; a full socket buffer waits rather than drops.
pub async fn send(sock: &UdpSocket, to: SocketAddr, data: &[u8]) {
    match sock.try_send_to(data, to) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            if let Err(e) = sock.send_to(data, to).await {
                tracing::warn!(%to, error = %e, "udp: send failed");
            }
        }
        Err(e) => tracing::warn!(%to, error = %e, "udp: send failed"),
    }
}

/// Receives datagrams until the socket fails or the receiver side is gone.
pub async fn receive_loop(sock: Arc<UdpSocket>, max_message_bytes: usize, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable surfaces here on some systems; it is not fatal.
                tracing::debug!(error = %e, "udp: receive error");
                continue;
            }
        };
        let source = Peer {
            transport: TransportKind::Udp,
            addr: src,
        };
        if n > max_message_bytes {
            tracing::info!(%source, bytes = n, "udp: datagram over the size limit dropped");
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..n]);
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue; // keep-alive
        }
        tracing::debug!(%source, message = %String::from_utf8_lossy(&data), "udp: received");
        match parse_message(data, Framing::Datagram) {
            Ok(mut msg) => {
                if let Message::Request(req) = &mut msg {
                    stamp_received(req, source);
                }
                if inbound.send(Inbound { message: msg, source }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::info!(%source, reason = %e.reason, "udp: malformed message");
                if let Some(resp) = stateless_error(&e) {
                    send(&sock, src, &resp).await;
                }
            }
        }
    }
}
