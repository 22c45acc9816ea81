//! A test-owned RTP receiver: what an IVM target's phone would hear.
//!
//! [`RtpSink::bind`] opens a UDP socket on a free loopback port and a
//! thread that records every datagram (arrival time, source, and the RTP
//! header fields and payload) until the sink is dropped. A target SIPp
//! scenario puts the sink's port in its SDP answer (`-key rtp_port N`), so
//! the server streams the message there and the test can compare, byte for
//! byte, what arrived with what the caller sent.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::ports::free_udp_port_block;

/// One received RTP packet (RFC 3550 §5.1 fixed header; CSRCs, extension
/// and padding removed from the payload).
#[derive(Clone, Debug)]
pub struct RtpPacket {
    pub arrival: Instant,
    /// The wall clock at arrival (to compare with SIPp's trace times).
    pub wall: SystemTime,
    pub from: SocketAddr,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl RtpPacket {
    /// Parses an RTP version 2 datagram; `None` for anything else.
    pub fn parse(data: &[u8], from: SocketAddr, arrival: Instant) -> Option<RtpPacket> {
        if data.len() < 12 || data[0] >> 6 != 2 {
            return None;
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let cc = usize::from(data[0] & 0x0f);
        let mut start = 12 + 4 * cc;
        if extension {
            let words = usize::from(u16::from_be_bytes([*data.get(start + 2)?, *data.get(start + 3)?]));
            start += 4 + 4 * words;
        }
        let mut end = data.len();
        if padding {
            end = end.checked_sub(usize::from(*data.last()?))?;
        }
        if start > end {
            return None;
        }
        Some(RtpPacket {
            arrival,
            wall: SystemTime::now(),
            from,
            marker: data[1] & 0x80 != 0,
            pt: data[1] & 0x7f,
            seq: u16::from_be_bytes([data[2], data[3]]),
            ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: data[start..end].to_vec(),
        })
    }
}

/// A UDP port that records the RTP sent to it.
pub struct RtpSink {
    addr: SocketAddr,
    /// A handle on the same socket, to send from the sink's address.
    socket: UdpSocket,
    packets: Arc<Mutex<Vec<RtpPacket>>>,
    /// Datagrams that were not RTP version 2.
    junk: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpSink {
    /// Binds a free even port on 127.0.0.1 (the odd one above is claimed too,
    /// as RTCP would go there) and starts recording.
    pub fn bind() -> anyhow::Result<RtpSink> {
        let base = free_udp_port_block(3);
        let port = if base.is_multiple_of(2) { base } else { base + 1 };
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("bind RTP sink on 127.0.0.1:{port}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let sender = socket.try_clone()?;
        let packets = Arc::new(Mutex::new(Vec::new()));
        let junk = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (packets, junk, stop) = (packets.clone(), junk.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) => match RtpPacket::parse(&buf[..n], from, Instant::now()) {
                            Some(p) => packets.lock().unwrap_or_else(|e| e.into_inner()).push(p),
                            None => *junk.lock().unwrap_or_else(|e| e.into_inner()) += 1,
                        },
                        Err(_) => continue,
                    }
                }
            })
        };
        Ok(RtpSink {
            addr,
            socket: sender,
            packets,
            junk,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sends one datagram from the sink's own address (so the sink is both
    /// ends of a phone's media: it hears and speaks on one port).
    pub fn send_to(&self, datagram: &[u8], to: SocketAddr) -> anyhow::Result<()> {
        self.socket.send_to(datagram, to).context("send RTP")?;
        Ok(())
    }

    /// Waits until a packet arrived (e.g. the server's beep) and returns it.
    pub fn first_packet(&self, limit: Duration) -> anyhow::Result<RtpPacket> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(p) = self.packets.lock().unwrap_or_else(|e| e.into_inner()).first() {
                return Ok(p.clone());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("no RTP arrived at {} within {limit:?}", self.addr);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything received so far, in arrival order.
    pub fn packets(&self) -> Vec<RtpPacket> {
        self.packets.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many datagrams were not RTP.
    pub fn junk(&self) -> usize {
        *self.junk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many packets arrive in `window` once what was in flight has
    /// landed (300 ms of quiet first): 0 for a peer that stopped sending.
    pub fn count_during(&self, window: Duration) -> usize {
        self.settle(Duration::from_millis(300), Duration::from_secs(2));
        let before = self.packets().len();
        std::thread::sleep(window);
        self.packets().len() - before
    }

    /// Waits until nothing new arrived for `quiet` (or `limit` passed) and
    /// returns what was received.
    pub fn settle(&self, quiet: Duration, limit: Duration) -> Vec<RtpPacket> {
        let deadline = Instant::now() + limit;
        let mut last_len = usize::MAX;
        let mut last_change = Instant::now();
        loop {
            let len = self.packets.lock().unwrap_or_else(|e| e.into_inner()).len();
            if len != last_len {
                last_len = len;
                last_change = Instant::now();
            }
            if last_change.elapsed() >= quiet || Instant::now() >= deadline {
                return self.packets();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An RTP version 2 packet (no CSRC, no extension, no padding).
pub fn build_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt & 0x7f | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// What a stream of received packets adds up to.
#[derive(Debug)]
pub struct StreamReport {
    pub packets: usize,
    pub ssrcs: Vec<u32>,
    pub payload_types: Vec<u8>,
    /// Payloads concatenated in sequence-number order (wrap-around aware).
    pub payload: Vec<u8>,
    /// Sequence numbers missing between the first and the last (extended).
    pub seq_gaps: Vec<(u64, u64)>,
    /// Packets whose sequence number came twice.
    pub duplicates: usize,
    /// Packets whose timestamp step from the previous one (in sequence
    /// order) differed from its payload length in samples (8 kHz G.711: one
    /// byte per sample).
    pub ts_jumps: Vec<(u64, u32, u32)>,
    /// First to last arrival.
    pub span: Duration,
}

impl StreamReport {
    /// Sorts `packets` of payload type `pt` by (extended) sequence number.
    pub fn of(packets: &[RtpPacket], pt: u8) -> StreamReport {
        let mut ssrcs: Vec<u32> = Vec::new();
        let mut payload_types: Vec<u8> = Vec::new();
        for p in packets {
            if !ssrcs.contains(&p.ssrc) {
                ssrcs.push(p.ssrc);
            }
            if !payload_types.contains(&p.pt) {
                payload_types.push(p.pt);
            }
        }
        let audio: Vec<&RtpPacket> = packets.iter().filter(|p| p.pt == pt).collect();
        // Extend sequence numbers in arrival order: each packet is placed
        // relative to the highest one so far (a signed 16-bit step), which
        // survives wrap-around and reordering.
        let mut ext: Vec<(u64, &RtpPacket)> = Vec::new();
        let mut highest: Option<(i64, u16)> = None;
        for p in &audio {
            let e = match highest {
                None => 1 << 20,
                Some((h, hs)) => h + i64::from(p.seq.wrapping_sub(hs) as i16),
            };
            if highest.is_none_or(|(h, _)| e > h) {
                highest = Some((e, p.seq));
            }
            ext.push((u64::try_from(e).unwrap_or(0), p));
        }
        ext.sort_by_key(|(e, _)| *e);
        let mut duplicates = 0;
        ext.dedup_by(|b, a| {
            let dup = a.0 == b.0;
            if dup {
                duplicates += 1;
            }
            dup
        });
        let mut seq_gaps = Vec::new();
        let mut ts_jumps = Vec::new();
        for w in ext.windows(2) {
            let (a, pa) = w[0];
            let (b, pb) = w[1];
            if b != a + 1 {
                seq_gaps.push((a, b));
            } else {
                let step = pb.ts.wrapping_sub(pa.ts);
                let expected = u32::try_from(pa.payload.len()).unwrap_or(u32::MAX);
                if step != expected {
                    ts_jumps.push((b, step, expected));
                }
            }
        }
        let payload: Vec<u8> = ext.iter().flat_map(|(_, p)| p.payload.iter().copied()).collect();
        let span = match (packets.first(), packets.last()) {
            (Some(a), Some(b)) => b.arrival.saturating_duration_since(a.arrival),
            _ => Duration::ZERO,
        };
        StreamReport {
            packets: audio.len(),
            ssrcs,
            payload_types,
            payload,
            seq_gaps,
            duplicates,
            ts_jumps,
            span,
        }
    }

    /// A one-paragraph description for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "{} audio packets, {} payload bytes, SSRCs {:08x?}, payload types {:?}, sequence gaps {:?}, \
             duplicates {}, timestamp jumps (ext seq, step, expected) {:?}, first to last arrival {:?}",
            self.packets,
            self.payload.len(),
            self.ssrcs,
            self.payload_types,
            &self.seq_gaps[..self.seq_gaps.len().min(10)],
            self.duplicates,
            &self.ts_jumps[..self.ts_jumps.len().min(10)],
            self.span
        )
    }
}

/// Where two byte strings first differ (for assertion messages): `None`
/// when equal.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let frame = i / 160;
    // Where the received bytes at `i` appear in what was sent, if anywhere:
    // tells a shift (lost/duplicated frames) from corruption.
    let probe = &got[i.min(got.len())..(i + 160).min(got.len())];
    let found = if probe.len() >= 16 {
        want.windows(probe.len()).position(|w| w == probe)
    } else {
        None
    };
    Some(format!(
        "got {} bytes, sent {}; first difference at byte {i} (20 ms frame {frame}); the received bytes from \
         there are found in the sent audio at byte {found:?}",
        got.len(),
        want.len()
    ))
}

/// Seconds since local midnight of `t`, the clock SIPp's `-trace_msg`
/// timestamps use (see [`crate::sipp::TraceEntry::time`]).
pub fn seconds_of_local_day(t: SystemTime) -> f64 {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(0);
    // SAFETY: localtime_r writes only into the `tm` we pass; both pointers
    // are valid for the call.
    let offset = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    };
    let local = since.as_secs_f64() + offset as f64;
    local.rem_euclid(86_400.0)
}
