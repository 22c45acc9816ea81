//! One leg's media socket pair: [`RtpEndpoint`] receives the far end's RTP and sends ours.
//!
//! It owns the leg's view of the network: where to send (the SDP address until the far end's
//! first valid RTP packet arrives, then that packet's source — symmetric RTP, which gets through
//! NATs), which packets to accept (valid RTP from the far end; junk is dropped and counted,
//! RTCP is read and dropped), and RFC 4733 DTMF, which it turns into one [`Inbound::Dtmf`] per
//! key press. Everything else (codec, jitter, timing) belongs to the caller.
//!
//! Latching rules: the first valid RTP packet latches its source. Afterwards packets from
//! another source are dropped, unless [`RELATCH_PACKETS`] of them arrive in a row from one new
//! source (the far end's NAT binding changed), which then becomes the latched source. A new
//! remote address from SDP ([`RtpEndpoint::set_remote`]) starts latching again.

use crate::dtmf::DtmfDetector;
use crate::port_pool::{BoundPair, PortLease};
use crate::rtp;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Receive buffer size: far above any G.711 packet (172 bytes) and the Ethernet MTU.
const MAX_PACKET: usize = 2048;

/// Consecutive valid packets from one new source that move the latch to it.
pub const RELATCH_PACKETS: u32 = 3;

/// What [`RtpEndpoint::recv`] got from the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// An RTP packet of any payload type other than telephone-event (the caller checks it is
    /// the negotiated codec; comfort noise, PT 13, arrives here too).
    Audio {
        codec_pt: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        ssrc: u32,
        payload: Bytes,
    },
    /// A key pressed (RFC 4733), reported once per press.
    Dtmf(char),
    /// A valid packet that carries nothing for the caller (a telephone-event update, RTCP
    /// multiplexed on the RTP port): the far end is alive.
    Other,
}

/// Packet counters of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Valid RTP packets accepted from the far end.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Datagrams on the RTP port that were not valid RTP or RTCP.
    pub malformed: u64,
    /// Valid RTP from a source other than the latched one, dropped.
    pub foreign: u64,
    /// RTCP packets read (on the RTCP port or multiplexed) and dropped.
    pub rtcp: u64,
}

#[derive(Debug, Default)]
struct Counters {
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    malformed: AtomicU64,
    foreign: AtomicU64,
    rtcp: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct State {
    /// The address the last SDP gave (None before any, or when it said 0.0.0.0 / port 0).
    sdp_remote: Option<SocketAddr>,
    /// False while the SDP says not to send (hold with 0.0.0.0, declined stream).
    may_send: bool,
    /// Where RTP goes now: the SDP address, then the latched source.
    remote: Option<SocketAddr>,
    /// Where RTCP would go: RTP port + 1 of the SDP address, then the latched RTCP source.
    remote_rtcp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    rtcp_latched: bool,
    /// A new source sending to us while we are latched, and how many packets in a row it sent.
    candidate: Option<(SocketAddr, u32)>,
    telephone_event: Option<u8>,
    detector: DtmfDetector,
    /// Keys detected and not yet returned by `recv`.
    keys: VecDeque<char>,
}

/// The media of one leg: an RTP and an RTCP socket from the port pool, with latching, packet
/// validation and DTMF detection. Share it between a receiving and a sending task with `Arc`.
#[derive(Debug)]
pub struct RtpEndpoint {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    local: SocketAddr,
    state: Mutex<State>,
    counters: Counters,
    /// Returns the ports to the pool when the endpoint is dropped (after the sockets).
    _lease: PortLease,
}

impl RtpEndpoint {
    /// An endpoint on a bound pair, with no remote yet and no telephone-event payload type.
    pub fn new(pair: BoundPair) -> io::Result<RtpEndpoint> {
        let local = pair.local_addr()?;
        let (rtp, rtcp, lease) = pair.into_parts();
        Ok(RtpEndpoint {
            rtp,
            rtcp,
            local,
            state: Mutex::new(State {
                sdp_remote: None,
                may_send: true,
                remote: None,
                remote_rtcp: None,
                latched: None,
                rtcp_latched: false,
                candidate: None,
                telephone_event: None,
                detector: DtmfDetector::new(),
                keys: VecDeque::new(),
            }),
            counters: Counters::default(),
            _lease: lease,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The local RTP address (the port to put in our SDP; the IP is the bound one, which may be
    /// the unspecified address).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The far end's address from its SDP. An address the SDP already gave keeps the current
    /// latch (a session refresh); a new one sends there and latches again. 0.0.0.0 or port 0
    /// (hold, declined) stops sending until a usable address is set.
    pub fn set_remote(&self, addr: SocketAddr) {
        let mut st = self.state();
        if addr.port() == 0 || addr.ip().is_unspecified() {
            st.sdp_remote = None;
            st.may_send = false;
            return;
        }
        st.may_send = true;
        if st.sdp_remote == Some(addr) {
            return;
        }
        st.sdp_remote = Some(addr);
        st.remote = Some(addr);
        st.remote_rtcp = addr.port().checked_add(1).map(|p| SocketAddr::new(addr.ip(), p));
        st.latched = None;
        st.rtcp_latched = false;
        st.candidate = None;
    }

    /// The RTP payload type of RFC 4733 telephone-events in this session (None: no DTMF in RTP;
    /// such packets then arrive as audio of that payload type).
    pub fn set_telephone_event(&self, payload_type: Option<u8>) {
        let mut st = self.state();
        st.telephone_event = payload_type;
        st.detector.reset();
    }

    /// Where RTP is sent now, if anywhere.
    pub fn remote(&self) -> Option<SocketAddr> {
        let st = self.state();
        st.remote.filter(|_| st.may_send)
    }

    /// Where the far end's RTCP comes from (or RTP port + 1 of its SDP address until then).
    pub fn remote_rtcp(&self) -> Option<SocketAddr> {
        self.state().remote_rtcp
    }

    /// Whether the far end's RTP source has been learnt.
    pub fn is_latched(&self) -> bool {
        self.state().latched.is_some()
    }

    pub fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        EndpointStats {
            packets_in: c.packets_in.load(Ordering::Relaxed),
            packets_out: c.packets_out.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            foreign: c.foreign.load(Ordering::Relaxed),
            rtcp: c.rtcp.load(Ordering::Relaxed),
        }
    }

    /// Sends an RTP packet to the current remote; does nothing while no remote is known or
    /// the SDP says not to send.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        let Some(to) = self.remote() else {
            return Ok(());
        };
        self.rtp.send_to(packet, to).await?;
        bump(&self.counters.packets_out);
        Ok(())
    }

    /// The next thing from the far end: audio, a DTMF key, or another valid packet. Junk and
    /// packets from foreign sources are dropped and counted; RTCP on the RTCP port is read and
    /// dropped meanwhile. Cancel-safe: dropping the future loses no key press (a packet being
    /// read is lost only if it had not been read yet). Errors are socket errors only.
    pub async fn recv(&self) -> io::Result<Inbound> {
        let mut buf = BytesMut::with_capacity(MAX_PACKET);
        let mut rtcp_buf = [0u8; MAX_PACKET];
        loop {
            let deadline = {
                let mut st = self.state();
                if let Some(key) = st.keys.pop_front() {
                    return Ok(Inbound::Dtmf(key));
                }
                st.detector.deadline()
            };
            // A far-away instant when no DTMF event is open (the branch is disabled then).
            let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            buf.clear();
            tokio::select! {
                received = self.rtp.recv_buf_from(&mut buf) => match received {
                    Ok((_, from)) => {
                        let packet = buf.split().freeze();
                        if let Some(inbound) = self.on_rtp_port(&packet, from) {
                            return Ok(inbound);
                        }
                        buf.reserve(MAX_PACKET);
                    }
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(e),
                },
                received = self.rtcp.recv_from(&mut rtcp_buf) => match received {
                    Ok((len, from)) => self.on_rtcp_port(rtcp_buf.get(..len).unwrap_or_default(), from),
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(e),
                },
                () = tokio::time::sleep_until(wake.into()), if deadline.is_some() => {
                    let mut st = self.state();
                    if let Some(key) = st.detector.expire(Instant::now()) {
                        st.keys.push_back(key);
                    }
                }
            }
        }
    }

    /// Handles one datagram on the RTP port; `Some` when it is for the caller.
    fn on_rtp_port(&self, datagram: &Bytes, from: SocketAddr) -> Option<Inbound> {
        if rtp::is_rtcp(datagram) {
            bump(&self.counters.rtcp);
            return Some(Inbound::Other);
        }
        let Some(packet) = rtp::parse(datagram) else {
            bump(&self.counters.malformed);
            tracing::trace!(%from, len = datagram.len(), "malformed RTP dropped");
            return None;
        };
        let mut st = self.state();
        if !self.accept_source(&mut st, from) {
            bump(&self.counters.foreign);
            return None;
        }
        bump(&self.counters.packets_in);
        if st.telephone_event == Some(packet.payload_type) {
            let keys = st.detector.feed(packet.timestamp, packet.payload, Instant::now());
            st.keys.extend(keys);
            return Some(st.keys.pop_front().map_or(Inbound::Other, Inbound::Dtmf));
        }
        Some(Inbound::Audio {
            codec_pt: packet.payload_type,
            seq: packet.sequence,
            ts: packet.timestamp,
            marker: packet.marker,
            ssrc: packet.ssrc,
            // A copy: a slice would pin the whole receive buffer for as long as the frame lives.
            payload: Bytes::copy_from_slice(packet.payload),
        })
    }

    /// Latching: whether a valid RTP packet from `from` is the far end's.
    fn accept_source(&self, st: &mut State, from: SocketAddr) -> bool {
        match st.latched {
            Some(latched) if latched == from => {
                st.candidate = None;
                return true;
            }
            Some(_) => {
                let count = match st.candidate {
                    Some((source, n)) if source == from => n + 1,
                    _ => 1,
                };
                st.candidate = Some((from, count));
                if count < RELATCH_PACKETS {
                    return false;
                }
                tracing::debug!(%from, "RTP source changed, latching to the new one");
                // A new stream: its DTMF timestamps have nothing to do with the old one's.
                st.detector.reset();
            }
            None => tracing::debug!(%from, sdp = ?st.sdp_remote, "latched to the far end's RTP source"),
        }
        st.latched = Some(from);
        st.remote = Some(from);
        st.candidate = None;
        true
    }

    fn on_rtcp_port(&self, datagram: &[u8], from: SocketAddr) {
        if !rtp::is_rtcp(datagram) {
            bump(&self.counters.malformed);
            return;
        }
        bump(&self.counters.rtcp);
        let mut st = self.state();
        if !st.rtcp_latched {
            st.rtcp_latched = true;
            st.remote_rtcp = Some(from);
        }
    }
}

/// Errors a UDP receive can report for an earlier datagram (an ICMP error on some systems);
/// the socket is still fine.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port_pool::PortPool;
    use crate::rtp::{OutboundStream, RtpPacket};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use tokio::time::timeout;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const WAIT: Duration = Duration::from_secs(3);

    async fn endpoint(first_port: u16) -> RtpEndpoint {
        let pool = PortPool::new(first_port, first_port + 19).expect("range");
        RtpEndpoint::new(pool.bind(LOCALHOST).await.expect("bind")).expect("endpoint")
    }

    async fn peer() -> UdpSocket {
        UdpSocket::bind((LOCALHOST, 0)).await.expect("peer socket")
    }

    fn audio(seq: u16, fill: u8) -> Vec<u8> {
        rtp::write(&RtpPacket {
            payload_type: 0,
            marker: false,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 77,
            payload: &[fill; 160],
        })
    }

    async fn recv(ep: &RtpEndpoint) -> Inbound {
        timeout(WAIT, ep.recv())
            .await
            .expect("no packet in time")
            .expect("socket error")
    }

    /// Receives on `sock` with a short timeout; `None` when nothing arrives.
    async fn try_recv(sock: &UdpSocket, wait_ms: u64) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        match timeout(Duration::from_millis(wait_ms), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn latches_to_the_real_source_and_relatches_after_a_run() {
        let ep = endpoint(31200).await;
        assert_eq!(ep.local_addr().ip(), LOCALHOST);
        let (sdp_addr, nat, intruder) = (peer().await, peer().await, peer().await);

        // Nothing known: send is a no-op.
        ep.send(&audio(1, 1)).await.expect("send");
        assert_eq!(ep.stats().packets_out, 0);

        // Before latching we send to the SDP address.
        ep.set_remote(sdp_addr.local_addr().expect("addr"));
        ep.send(&audio(1, 1)).await.expect("send");
        assert_eq!(try_recv(&sdp_addr, WAIT.as_millis() as u64).await, Some(audio(1, 1)));
        assert_eq!(
            ep.remote_rtcp().map(|a| a.port()),
            Some(sdp_addr.local_addr().expect("addr").port() + 1)
        );

        // The far end's RTP comes from another port (NAT): we latch to it.
        nat.send_to(&audio(10, 2), ep.local_addr()).await.expect("send");
        match recv(&ep).await {
            Inbound::Audio {
                codec_pt: 0,
                seq: 10,
                ts: 1600,
                ssrc: 77,
                marker: false,
                payload,
            } => {
                assert_eq!(payload, Bytes::from(vec![2u8; 160]));
            }
            other => panic!("{other:?}"),
        }
        assert!(ep.is_latched());
        assert_eq!(ep.remote(), Some(nat.local_addr().expect("addr")));
        ep.send(&audio(2, 3)).await.expect("send");
        assert_eq!(try_recv(&nat, WAIT.as_millis() as u64).await, Some(audio(2, 3)));
        assert_eq!(try_recv(&sdp_addr, 100).await, None);

        // Another source is dropped while the latched one keeps sending...
        for seq in 0..2 {
            intruder
                .send_to(&audio(100 + seq, 9), ep.local_addr())
                .await
                .expect("send");
        }
        nat.send_to(&audio(11, 2), ep.local_addr()).await.expect("send");
        assert!(matches!(recv(&ep).await, Inbound::Audio { seq: 11, .. }));
        assert_eq!(ep.stats().foreign, 2);
        // ...but a run of RELATCH_PACKETS from one new source moves the latch (NAT rebinding).
        for seq in 0..RELATCH_PACKETS as u16 {
            intruder
                .send_to(&audio(200 + seq, 9), ep.local_addr())
                .await
                .expect("send");
        }
        assert!(matches!(recv(&ep).await, Inbound::Audio { seq: 202, .. }));
        assert_eq!(ep.remote(), Some(intruder.local_addr().expect("addr")));

        // A new SDP address starts over; the same address again (refresh) keeps the latch.
        ep.set_remote(nat.local_addr().expect("addr"));
        assert!(!ep.is_latched());
        assert_eq!(ep.remote(), Some(nat.local_addr().expect("addr")));
        nat.send_to(&audio(12, 2), ep.local_addr()).await.expect("send");
        recv(&ep).await;
        ep.set_remote(nat.local_addr().expect("addr"));
        assert!(ep.is_latched());

        // Hold with 0.0.0.0: no sending until a usable address returns.
        ep.set_remote("0.0.0.0:4000".parse().expect("addr"));
        assert_eq!(ep.remote(), None);
        let sent = ep.stats().packets_out;
        ep.send(&audio(3, 3)).await.expect("send");
        assert_eq!(ep.stats().packets_out, sent);
        assert_eq!(ep.stats().packets_in, 4);
    }

    #[tokio::test]
    async fn junk_is_dropped_and_counted() {
        let ep = endpoint(31220).await;
        let far = peer().await;
        let mut v1 = audio(1, 1);
        v1[0] = 0x40;
        let mut bad_padding = audio(1, 1);
        bad_padding[0] |= 0x20;
        *bad_padding.last_mut().expect("bytes") = 0xff;
        for junk in [&b"hello"[..], &[0x80; 11][..], &v1, &bad_padding, &[][..]] {
            far.send_to(junk, ep.local_addr()).await.expect("send");
        }
        far.send_to(&audio(5, 5), ep.local_addr()).await.expect("send");
        assert!(matches!(recv(&ep).await, Inbound::Audio { seq: 5, .. }));
        let stats = ep.stats();
        assert_eq!((stats.malformed, stats.packets_in), (5, 1));
        // Junk never latches.
        assert_eq!(ep.remote(), Some(far.local_addr().expect("addr")));
    }

    #[tokio::test]
    async fn rfc4733_events_give_one_key_each() {
        let ep = Arc::new(endpoint(31240).await);
        ep.set_telephone_event(Some(101));
        let far = peer().await;
        let mut stream = OutboundStream::new();
        let mut packets = vec![stream.next_audio(0, &[0xff; 160])];
        packets.extend(stream.dtmf(101, 5, 120, 10));
        packets.push(stream.next_audio(0, &[0xff; 160]));
        packets.extend(stream.dtmf(101, 11, 60, 10));
        // The same key again is a new event (new timestamp).
        packets.extend(stream.dtmf(101, 11, 60, 10));
        packets.push(stream.next_audio(0, &[0x11; 160]));
        for p in &packets {
            far.send_to(p, ep.local_addr()).await.expect("send");
        }
        let mut keys = String::new();
        loop {
            match recv(&ep).await {
                Inbound::Dtmf(c) => keys.push(c),
                Inbound::Audio { payload, .. } if payload[0] == 0x11 => break,
                _ => {}
            }
        }
        assert_eq!(keys, "5##");
        assert_eq!(ep.stats().packets_in, packets.len() as u64);

        // An event whose end packets are lost is reported after the timeout.
        let lost_end = stream.dtmf(101, 1, 100, 10);
        for p in &lost_end[..lost_end.len() - 3] {
            far.send_to(p, ep.local_addr()).await.expect("send");
        }
        let mut got = None;
        while got.is_none() {
            if let Inbound::Dtmf(c) = recv(&ep).await {
                got = Some(c);
            }
        }
        assert_eq!(got, Some('1'));
    }

    #[tokio::test]
    async fn rtcp_is_read_and_ignored() {
        let ep = endpoint(31260).await;
        let far = peer().await;
        let far_rtcp = peer().await;
        let rtcp_port = SocketAddr::new(LOCALHOST, ep.local_addr().port() + 1);
        let sr = [
            0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        far_rtcp.send_to(&sr, rtcp_port).await.expect("send");
        far_rtcp.send_to(b"junk", rtcp_port).await.expect("send");
        // RTCP multiplexed on the RTP port (rtcp-mux).
        far.send_to(&rr, ep.local_addr()).await.expect("send");
        far.send_to(&audio(7, 7), ep.local_addr()).await.expect("send");
        let mut seen = Vec::new();
        loop {
            match recv(&ep).await {
                Inbound::Audio { seq, .. } => {
                    seen.push(seq);
                    break;
                }
                other => assert_eq!(other, Inbound::Other),
            }
        }
        assert_eq!(seen, [7]);
        // Give recv a moment to drain the RTCP port too.
        let _ = timeout(Duration::from_millis(200), ep.recv()).await;
        let stats = ep.stats();
        assert_eq!((stats.rtcp, stats.malformed, stats.packets_in), (2, 1, 1));
        assert_eq!(ep.remote_rtcp(), Some(far_rtcp.local_addr().expect("addr")));
        // RTCP never latches RTP.
        assert_eq!(ep.remote(), Some(far.local_addr().expect("addr")));
    }

    #[test]
    fn endpoint_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<RtpEndpoint>();
        shareable::<Inbound>();
    }

    #[tokio::test]
    async fn ports_return_to_the_pool_when_dropped() {
        let pool = PortPool::new(31280, 31283).expect("range");
        let ep = RtpEndpoint::new(pool.bind(LOCALHOST).await.expect("bind")).expect("endpoint");
        assert_eq!(pool.in_use(), 1);
        drop(ep);
        assert_eq!(pool.in_use(), 0);
    }
}
