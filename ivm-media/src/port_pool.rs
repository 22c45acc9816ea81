//! RTP port allocation: pairs of UDP ports (an even RTP port, RTP+1 for RTCP, RFC 3550 §11)
//! from the configured range (default 20000–29999). Allocation goes round the range so that a
//! port just released is not handed out again at once (late packets of the previous call would
//! land in the next one); ports other programs hold are skipped. A [`BoundPair`] gives its ports
//! back to the pool when dropped.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::UdpSocket;

/// Why a port range or an allocation failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("RTP port range {first}-{last} holds no even/odd pair of ports")]
    InvalidRange { first: u16, last: u16 },
    #[error("no free RTP port pair in {first}-{last} on {ip}")]
    Exhausted { ip: IpAddr, first: u16, last: u16 },
    #[error("cannot bind RTP port {port} on {ip}: {source}")]
    Bind {
        ip: IpAddr,
        port: u16,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug)]
struct State {
    /// The next RTP port to try.
    cursor: u16,
    /// RTP ports handed out and not yet released.
    in_use: HashSet<u16>,
}

#[derive(Debug)]
struct Inner {
    /// First even port of the range.
    first: u16,
    /// Last even port whose pair fits in the range.
    last: u16,
    /// The range as configured, for messages.
    range: (u16, u16),
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever a panicking holder did: every change is one insert
        // or remove.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release(&self, port: u16) {
        self.state().in_use.remove(&port);
    }

    fn pairs(&self) -> usize {
        usize::from((self.last - self.first) / 2) + 1
    }

    /// Reserves the next free even port at or after the cursor, wrapping around.
    fn reserve_next(&self, tried: &mut usize) -> Option<u16> {
        let mut state = self.state();
        while *tried < self.pairs() {
            *tried += 1;
            let port = state.cursor;
            state.cursor = if port >= self.last { self.first } else { port + 2 };
            if state.in_use.insert(port) {
                return Some(port);
            }
        }
        None
    }
}

/// A shared pool of RTP/RTCP port pairs (cheap to clone; all clones share the same ports).
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Inner>,
}

impl PortPool {
    /// A pool over `first..=last`. RTP ports are the even ports in the range whose odd neighbour
    /// is also in it.
    pub fn new(first: u16, last: u16) -> Result<PortPool, PortError> {
        let even_first = first.checked_add(first % 2).filter(|&p| p > 0);
        let pair_last = if last % 2 == 1 {
            last - 1
        } else {
            last.saturating_sub(2)
        };
        match even_first {
            Some(even_first) if even_first <= pair_last && first <= last => Ok(PortPool {
                inner: Arc::new(Inner {
                    first: even_first,
                    last: pair_last,
                    range: (first, last),
                    state: Mutex::new(State {
                        cursor: even_first,
                        in_use: HashSet::new(),
                    }),
                }),
            }),
            _ => Err(PortError::InvalidRange { first, last }),
        }
    }

    /// The number of RTP/RTCP pairs in the range.
    pub fn capacity(&self) -> usize {
        self.inner.pairs()
    }

    /// The number of pairs handed out and not yet dropped.
    pub fn in_use(&self) -> usize {
        self.inner.state().in_use.len()
    }

    /// Binds the next free pair on `ip`: ports in use by this pool are skipped, ports in use by
    /// other programs (`EADDRINUSE`) too; `Exhausted` when every pair of the range was tried.
    /// Any other bind error (an address not on this host, a permission) is returned at once.
    pub async fn bind(&self, ip: IpAddr) -> Result<BoundPair, PortError> {
        let mut tried = 0;
        while let Some(port) = self.inner.reserve_next(&mut tried) {
            let lease = PortLease {
                pool: Arc::clone(&self.inner),
                port,
            };
            match bind_pair(ip, port).await {
                Ok((rtp, rtcp)) => return Ok(BoundPair { rtp, rtcp, lease }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!(%ip, port, "RTP port pair busy, trying the next one");
                }
                Err(source) => return Err(PortError::Bind { ip, port, source }),
            }
        }
        let (first, last) = self.inner.range;
        Err(PortError::Exhausted { ip, first, last })
    }
}

async fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).await?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await?;
    Ok((rtp, rtcp))
}

/// The reservation of one port pair; releases it to the pool when dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<Inner>,
    port: u16,
}

impl PortLease {
    /// The RTP port (RTCP is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}

/// A bound RTP socket and its RTCP socket; the ports go back to the pool when this (or, after
/// [`into_parts`](Self::into_parts), the lease) is dropped.
#[derive(Debug)]
pub struct BoundPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    lease: PortLease,
}

impl BoundPair {
    /// The RTP port.
    pub fn port(&self) -> u16 {
        self.lease.port
    }

    /// The local address of the RTP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }

    /// The sockets and the lease, for an owner that keeps them apart (keep the lease as long as
    /// the sockets).
    pub fn into_parts(self) -> (UdpSocket, UdpSocket, PortLease) {
        (self.rtp, self.rtcp, self.lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn pool_is_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<PortPool>();
    }

    #[test]
    fn ranges() {
        assert_eq!(PortPool::new(20000, 29999).expect("range").capacity(), 5000);
        assert_eq!(PortPool::new(20001, 20004).expect("range").capacity(), 1); // 20002/20003
        assert_eq!(PortPool::new(20000, 20001).expect("range").capacity(), 1);
        assert_eq!(PortPool::new(65534, 65535).expect("range").capacity(), 1);
        for (first, last) in [(20000, 20000), (20001, 20002), (30000, 20000), (0, 1), (65535, 65535)] {
            assert!(
                matches!(PortPool::new(first, last), Err(PortError::InvalidRange { .. })),
                "{first}-{last}"
            );
        }
    }

    #[tokio::test]
    async fn binds_even_pairs_round_robin_and_releases_on_drop() {
        let pool = PortPool::new(31100, 31109).expect("range");
        let a = pool.bind(LOCALHOST).await.expect("bind a");
        let b = pool.bind(LOCALHOST).await.expect("bind b");
        assert_eq!(a.port() % 2, 0);
        assert_ne!(a.port(), b.port());
        assert_eq!(a.rtcp.local_addr().expect("addr").port(), a.port() + 1);
        assert_eq!(a.local_addr().expect("addr"), SocketAddr::new(LOCALHOST, a.port()));
        assert_eq!(pool.in_use(), 2);
        let a_port = a.port();
        drop(a);
        assert_eq!(pool.in_use(), 1);
        // Round robin: the released port is not the next one handed out.
        let c = pool.bind(LOCALHOST).await.expect("bind c");
        assert_ne!(c.port(), a_port);
        // Clones share the pool.
        let clone = pool.clone();
        let d = clone.bind(LOCALHOST).await.expect("bind d");
        assert_eq!(pool.in_use(), 3);
        drop((b, c, d));
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn skips_ports_held_elsewhere_and_reports_exhaustion() {
        // Two pairs; another socket holds the RTCP port of the first.
        let pool = PortPool::new(31120, 31123).expect("range");
        let squatter = std::net::UdpSocket::bind((LOCALHOST, 31121));
        let first = pool.bind(LOCALHOST).await.expect("bind");
        if squatter.is_ok() {
            assert_eq!(first.port(), 31122);
        }
        let mut held = vec![first];
        let err = loop {
            match pool.bind(LOCALHOST).await {
                Ok(pair) => held.push(pair),
                Err(e) => break e,
            }
        };
        assert!(held.len() <= 2);
        assert!(
            matches!(
                err,
                PortError::Exhausted {
                    first: 31120,
                    last: 31123,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("31120-31123"));
        // Dropping a pair makes the range usable again (wrapping around).
        let port = held.remove(0).port();
        assert_eq!(pool.bind(LOCALHOST).await.expect("bind again").port(), port);
    }

    #[tokio::test]
    async fn other_bind_errors_are_returned() {
        let pool = PortPool::new(31130, 31131).expect("range");
        // TEST-NET-1 is not an address of this host.
        let err = pool
            .bind(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
            .await
            .expect_err("not local");
        assert!(matches!(err, PortError::Bind { port: 31130, .. }), "{err}");
        assert_eq!(pool.in_use(), 0);
    }
}
