//! The TCP transport: accepted and outbound connections kept in one table by remote address,
//! so requests and responses reuse a connection in both directions; each connection is cut
//! into messages by the stream framer, answers CRLF keep-alives, and is closed when idle, when a
//! message it began does not complete in time (a client trickling a byte now and then), or when
//! it breaks framing (RFC 3261 §18.3). One remote IP address may hold only so many connections.
//! The same table serves TLS (RFC 3261 §26.2.1; rustls through tokio-rustls): a listener with
//! an acceptor hands each connection to the same framing once its handshake is done. IVM does
//! not open TLS connections itself: requests to a phone go over the connection it registered
//! on (phones keep it open, RFC 5626 style).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::inbound::{Inbound, stamp_received};
use super::peer::{Peer, TransportKind};
use crate::stack::sip::framing::{Framed, StreamFramer};
use crate::stack::sip::{Framing, Message, parse_message};

/// The open connections, by remote address.
#[derive(Clone)]
pub struct TcpConnections {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>,
    inbound: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    /// For TLS connections: the handshake of each accepted one.
    tls: Option<TlsAcceptor>,
}

/// How long a TLS client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection may do.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_message_bytes: usize,
    /// Closed after this long without traffic.
    pub idle: Duration,
    /// A message must be complete this long after its first byte.
    pub message: Duration,
    /// Connections with one remote IP address, both ways; past it, new ones are refused.
    pub per_ip: usize,
}

impl TcpConnections {
    pub fn new(inbound: mpsc::Sender<Inbound>, limits: TcpLimits) -> Self {
        TcpConnections {
            inner: Arc::new(Inner {
                conns: Mutex::new(HashMap::new()),
                inbound,
                limits,
                tls: None,
            }),
        }
    }

    /// The TLS table: accepted connections do the handshake first.
    pub fn tls(inbound: mpsc::Sender<Inbound>, limits: TcpLimits, acceptor: TlsAcceptor) -> Self {
        TcpConnections {
            inner: Arc::new(Inner {
                conns: Mutex::new(HashMap::new()),
                inbound,
                limits,
                tls: Some(acceptor),
            }),
        }
    }

    fn kind(&self) -> TransportKind {
        if self.inner.tls.is_some() {
            TransportKind::Tls
        } else {
            TransportKind::Tcp
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>> {
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends over the connection to `to`, opening one when there is none.
    pub fn send(&self, to: SocketAddr, data: Bytes) {
        let existing = self.lock().get(&to).cloned();
        if let Some(tx) = existing
            && tx.send(data.clone()).is_ok()
        {
            return;
        }
        if self.inner.tls.is_some() {
            tracing::info!(%to, "tls: no connection to this address, and IVM opens none: dropped");
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to)).await {
                Ok(Ok(stream)) => {
                    let tx = this.adopt(stream, to);
                    let _ = tx.send(data);
                }
                Ok(Err(e)) => tracing::info!(%to, error = %e, "tcp: connect failed"),
                Err(_) => tracing::info!(%to, "tcp: connect timed out"),
            }
        });
    }

    /// Accepts connections until the listener fails.
    pub async fn accept_loop(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    let from_ip = self.lock().keys().filter(|a| a.ip() == remote.ip()).count();
                    if from_ip >= self.inner.limits.per_ip {
                        tracing::info!(%remote, connections = from_ip, "tcp: too many connections from this address, refused");
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    match &self.inner.tls {
                        None => {
                            self.adopt(stream, remote);
                        }
                        Some(acceptor) => {
                            let (this, acceptor) = (self.clone(), acceptor.clone());
                            tokio::spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        this.adopt(tls, remote);
                                    }
                                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "tls: handshake failed"),
                                    Err(_) => tracing::info!(%remote, "tls: handshake not completed in time"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tcp: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Registers a connection and starts its reader and writer.
    fn adopt<S>(&self, stream: S, remote: SocketAddr) -> mpsc::UnboundedSender<Bytes>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        self.lock().insert(remote, tx.clone());
        let (mut reader, mut writer) = tokio::io::split(stream);
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                // A TLS writer buffers: each message goes out whole, at once.
                if let Err(e) = async {
                    writer.write_all(&data).await?;
                    writer.flush().await
                }
                .await
                {
                    tracing::info!(%remote, error = %e, "tcp: write failed");
                    break;
                }
            }
        });
        let this = self.clone();
        let own_tx = tx.clone();
        tokio::spawn(async move {
            this.read_loop(&mut reader, remote, &own_tx).await;
            let mut conns = this.lock();
            if conns.get(&remote).is_some_and(|t| t.same_channel(&own_tx)) {
                conns.remove(&remote);
            }
            tracing::debug!(%remote, "tcp: connection closed");
        });
        tx
    }

    async fn read_loop(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        remote: SocketAddr,
        tx: &mpsc::UnboundedSender<Bytes>,
    ) {
        let source = Peer {
            transport: self.kind(),
            addr: remote,
        };
        let limits = self.inner.limits;
        let mut framer = StreamFramer::new(limits.max_message_bytes);
        let mut buf = vec![0u8; 16384];
        // When the first byte of the message still incomplete arrived.
        let mut begun: Option<tokio::time::Instant> = None;
        loop {
            let wait = match begun {
                Some(t) => limits.idle.min(limits.message.saturating_sub(t.elapsed())),
                None => limits.idle,
            };
            let n = match tokio::time::timeout(wait, reader.read(&mut buf)).await {
                Err(_) if begun.is_some() => {
                    tracing::info!(%remote, limit = ?limits.message, "tcp: message not completed in time, closing");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "tcp: idle connection closed");
                    return;
                }
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "tcp: read failed");
                    return;
                }
            };
            framer.push(&buf[..n]);
            let mut completed = false;
            loop {
                match framer.next_item() {
                    Ok(None) => break,
                    Ok(Some(Framed::Ping)) => {
                        let _ = tx.send(Bytes::from_static(b"\r\n"));
                    }
                    Ok(Some(Framed::Message(data))) => {
                        completed = true;
                        tracing::debug!(%source, message = %String::from_utf8_lossy(&data), "tcp: received");
                        match parse_message(data, Framing::Stream) {
                            Ok(mut msg) => {
                                if let Message::Request(req) = &mut msg {
                                    stamp_received(req, source);
                                }
                                if self.inner.inbound.send(Inbound { message: msg, source }).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::info!(%source, reason = %e.reason, "tcp: malformed message");
                                if let Some(resp) = super::stateless_error(&e) {
                                    let _ = tx.send(Bytes::from(resp));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        // The stream can no longer be delimited: close it (RFC 3261 §18.3).
                        tracing::info!(%source, error = %e, "tcp: framing error, closing");
                        return;
                    }
                }
            }
            begun = match (framer.pending(), completed) {
                (false, _) => None,
                (true, true) => Some(tokio::time::Instant::now()),
                (true, false) => begun.or_else(|| Some(tokio::time::Instant::now())),
            };
        }
    }
}
