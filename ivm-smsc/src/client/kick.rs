//! A TCP stream wrapper that keeps rusmppc's connection task moving.
//!
//! rusmppc 0.4.0's connection future handles at most 5 queued requests and 5 socket writes per
//! poll; when it stops on those limits and the socket has nothing to read, it returns `Pending`
//! without waking itself, so the rest of the queue waits for the next incoming PDU or the next
//! `enquire_link` tick (30 s by default). With a send window above 5 that stalls sending.
//!
//! The same limit means a request sent on its channel right after a poll that stopped on the
//! limit wakes nobody: the channel only registers a waker when it is polled empty.
//!
//! [`KickStream`] counts the PDUs the session hands to rusmppc ([`Backlog::hand`]) and the PDUs
//! that actually reach the socket (parsed from the written bytes, ignoring the `enquire_link`s
//! rusmppc sends and answers by itself), and remembers the connection task's waker. Handing a
//! PDU wakes that task; while PDUs are still queued, a read that would block wakes it again. So
//! the connection future is polled until its queue is empty — and never spins when it is, nor
//! while the socket cannot take more bytes (then the socket's own readiness wakes the task).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const ENQUIRE_LINK: u32 = 0x0000_0015;
const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;

/// PDUs handed to rusmppc versus PDUs written to the socket.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    handed: AtomicU64,
    written: AtomicU64,
    task: AtomicWaker,
}

impl Backlog {
    /// Call before each request or response given to the rusmppc client.
    pub(crate) fn hand(&self) {
        self.handed.fetch_add(1, Ordering::AcqRel);
        self.task.wake();
    }

    /// Call when a handed PDU will never be written (the call failed before queueing it).
    pub(crate) fn forget(&self) {
        self.written.fetch_add(1, Ordering::AcqRel);
    }

    fn queued(&self) -> bool {
        self.handed.load(Ordering::Acquire) > self.written.load(Ordering::Acquire)
    }
}

/// Finds PDU boundaries in the outgoing byte stream.
#[derive(Debug, Default)]
struct PduCounter {
    header: [u8; 8],
    have: usize,
    skip: usize,
}

impl PduCounter {
    /// Feeds written bytes; returns how many PDUs (other than enquire_link traffic) began.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut started = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (8 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 8 {
                let [l0, l1, l2, l3, i0, i1, i2, i3] = self.header;
                let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
                let id = u32::from_be_bytes([i0, i1, i2, i3]);
                if id != ENQUIRE_LINK && id != ENQUIRE_LINK_RESP {
                    started += 1;
                }
                self.skip = len.saturating_sub(8);
                self.have = 0;
            }
        }
        started
    }
}

/// The socket under rusmppc's connection.
#[derive(Debug)]
pub(crate) struct KickStream<S> {
    inner: S,
    backlog: Arc<Backlog>,
    counter: PduCounter,
    write_blocked: bool,
}

impl<S> KickStream<S> {
    pub(crate) fn new(inner: S, backlog: Arc<Backlog>) -> KickStream<S> {
        KickStream {
            inner,
            backlog,
            counter: PduCounter::default(),
            write_blocked: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for KickStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.backlog.task.register(cx.waker());
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_pending() && !self.write_blocked && self.backlog.queued() {
            cx.waker().wake_by_ref();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for KickStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_blocked = r.is_pending();
        if let Poll::Ready(Ok(n)) = r {
            let started = self.counter.feed(&buf[..n]);
            if started > 0 {
                self.backlog.written.fetch_add(started, Ordering::AcqRel);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(id: u32, body: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + body) as u32).to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend(std::iter::repeat_n(0xAB, body));
        v
    }

    /// Twelve `deliver_sm_resp`s handed at once, with nothing coming back from the peer: rusmppc
    /// alone writes five and stops; with the kick, all twelve reach the socket.
    #[tokio::test]
    async fn a_burst_is_written_without_incoming_traffic() {
        use bytes::BytesMut;
        use rusmpp::pdus::DeliverSmResp;
        use tokio::io::AsyncReadExt;

        let (client_io, mut peer) = tokio::io::duplex(1 << 16);
        let backlog = Arc::new(Backlog::default());
        let (client, _events) = rusmppc::ConnectionBuilder::new()
            .disable_interface_version_check()
            .no_enquire_link_interval()
            .connected(KickStream::new(client_io, backlog.clone()));
        let mut joins = tokio::task::JoinSet::new();
        for seq in 1..=12u32 {
            backlog.hand();
            let c = client.clone();
            joins.spawn(async move { c.deliver_sm_resp(seq, DeliverSmResp::default()).await });
        }
        let mut buf = BytesMut::new();
        let mut seen = 0;
        let read_all = async {
            while seen < 12 {
                if peer.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
                while let Ok(Some(_)) = crate::server::codec::next_frame(&mut buf, 1 << 16) {
                    seen += 1;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), read_all).await;
        assert_eq!(seen, 12, "requests left queued in rusmppc's connection task");
        while let Some(r) = joins.join_next().await {
            assert!(matches!(r, Ok(Ok(()))));
        }
    }

    #[test]
    fn counts_pdus_across_split_writes_and_skips_enquire_link() {
        let mut bytes = pdu(0x04, 30);
        bytes.extend(pdu(ENQUIRE_LINK, 0));
        bytes.extend(pdu(0x8000_0005, 1));
        bytes.extend(pdu(ENQUIRE_LINK_RESP, 0));
        bytes.extend(pdu(0x06, 0));
        let mut c = PduCounter::default();
        let total: u64 = bytes.chunks(3).map(|chunk| c.feed(chunk)).sum();
        assert_eq!(total, 3);
        let mut c = PduCounter::default();
        assert_eq!(c.feed(&bytes), 3);
    }
}
