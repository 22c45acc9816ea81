//! RTP packets (RFC 3550): parsing with `rtp-rs` (zero-copy; it rejects versions other than 2,
//! truncated headers and bad padding), telling multiplexed RTCP apart (RFC 5761), writing
//! packets, and [`OutboundStream`] — the SSRC / sequence / timestamp numbering of one outbound
//! leg, so that a receiver sees one continuous stream whatever the audio comes from (live
//! frames, stored frames, a beep, DTMF).

use crate::codec::SAMPLES_PER_FRAME;
use crate::dtmf::DtmfEvent;
use rtp_rs::RtpReader;

/// Length of an RTP header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// Timestamp units between two RFC 4733 event updates (one 20 ms frame at 8 kHz).
const DTMF_UPDATE_SAMPLES: u32 = SAMPLES_PER_FRAME as u32;

/// How many times the final packet of an RFC 4733 event is sent (§2.5.1.4).
pub const DTMF_END_PACKETS: usize = 3;

/// One parsed RTP packet, borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload, after CSRCs and header extension, without padding.
    pub payload: &'a [u8],
}

impl RtpPacket<'_> {
    /// Appends the packet to `out` (12-byte header, no CSRC, no extension, no padding). The
    /// payload type is cut to its 7 bits.
    pub fn write_into(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.payload.len());
        out.push(0x80);
        out.push((self.payload_type & 0x7f) | if self.marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }

    /// The packet as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.write_into(&mut out);
        out
    }
}

/// Parses an RTP packet; `None` for anything that is not valid RTP version 2 (too short, wrong
/// version, truncated CSRC/extension, bad padding) and for RTCP multiplexed on the RTP port.
pub fn parse(buf: &[u8]) -> Option<RtpPacket<'_>> {
    if is_rtcp(buf) {
        return None;
    }
    let reader = RtpReader::new(buf).ok()?;
    Some(RtpPacket {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

/// Whether `buf` looks like RTCP rather than RTP: version 2 and a second byte in 192–223, the
/// range RFC 5761 §4 reserves for RTCP packet types (SR 200, RR 201, SDES 202, BYE 203, APP 204,
/// and the feedback and XR types around them).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf, [first, second, ..] if first >> 6 == 2 && (192..=223).contains(second))
}

/// Writes an RTP packet (see [`RtpPacket::write_into`]).
pub fn write(packet: &RtpPacket<'_>) -> Vec<u8> {
    packet.to_vec()
}

/// The numbering of one outbound RTP stream: a random SSRC, random initial sequence number and
/// timestamp, the sequence advancing by one per packet and the timestamp by the audio sent, and
/// the marker bit on the first packet and after each discontinuity.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    ssrc: u32,
    seq: u16,
    ts: u32,
    mark_next: bool,
    /// When the last audio packet of [`OutboundStream::next_audio_at`] was made (ms).
    last_sent_ms: Option<u64>,
}

impl Default for OutboundStream {
    fn default() -> Self {
        OutboundStream::new()
    }
}

impl OutboundStream {
    /// A stream with a random SSRC, sequence number and timestamp (RFC 3550 §5.1).
    pub fn new() -> OutboundStream {
        OutboundStream::with_start(rand::random(), rand::random(), rand::random())
    }

    /// A stream with the given starting values (tests, or continuing a known stream).
    pub fn with_start(ssrc: u32, seq: u16, ts: u32) -> OutboundStream {
        OutboundStream {
            ssrc,
            seq,
            ts,
            mark_next: true,
            last_sent_ms: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.seq
    }

    /// The timestamp the next audio packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.ts
    }

    /// Sets the marker bit on the next packet: the source changed or there was a gap.
    pub fn mark_discontinuity(&mut self) {
        self.mark_next = true;
    }

    /// Advances the timestamp over `samples` not sent (a pause), and marks the next packet.
    pub fn skip(&mut self, samples: u32) {
        self.ts = self.ts.wrapping_add(samples);
        self.mark_next = true;
    }

    /// The next audio packet of a G.711 payload (one sample per byte).
    pub fn next_audio(&mut self, payload_type: u8, payload: &[u8]) -> Vec<u8> {
        let samples = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.next_audio_samples(payload_type, payload, samples)
    }

    /// The next audio packet of a G.711 payload sent at `now_ms` (any monotonic clock, in ms).
    /// After a pause of 60 ms or more since the previous one (a hold, a wait for a key), the
    /// timestamp first moves on over the frames not sent and the packet is marked (RFC 3551
    /// §4.1), so the far end's jitter buffer sees a pause, not packets that arrive seconds late.
    pub fn next_audio_at(&mut self, payload_type: u8, payload: &[u8], now_ms: u64) -> Vec<u8> {
        if let Some(last) = self.last_sent_ms {
            let gap_ms = now_ms.saturating_sub(last);
            if gap_ms >= 60 {
                let frames = u32::try_from(gap_ms / 20 - 1).unwrap_or(u32::MAX);
                let per_frame = u32::try_from(payload.len()).unwrap_or(160);
                self.skip(frames.saturating_mul(per_frame));
            }
        }
        self.last_sent_ms = Some(now_ms);
        self.next_audio(payload_type, payload)
    }

    /// The next audio packet of a payload that lasts `samples` timestamp units.
    pub fn next_audio_samples(&mut self, payload_type: u8, payload: &[u8], samples: u32) -> Vec<u8> {
        let marker = std::mem::take(&mut self.mark_next);
        let packet = self.packet(payload_type, marker, self.ts, payload);
        self.ts = self.ts.wrapping_add(samples);
        packet
    }

    /// The packets of one RFC 4733 event of `duration_ms` (at least one 20 ms update): an update
    /// every 20 ms carrying the event's start timestamp and the duration so far (the first with
    /// the marker bit), then the final packet three times with the E bit. Send them in order,
    /// one per 20 ms, the three end packets back to back; the stream's timestamp then moves past
    /// the event so that audio continues after it. `event` is an RFC 4733 code
    /// (see [`crate::dtmf::char_event`]); `volume` is in −dBm0 (10 is typical).
    pub fn dtmf(&mut self, payload_type: u8, event: u8, duration_ms: u32, volume: u8) -> Vec<Vec<u8>> {
        let total = (u64::from(duration_ms) * 8).clamp(
            u64::from(DTMF_UPDATE_SAMPLES),
            u64::from(u16::MAX) - u64::from(u16::MAX) % 160,
        );
        let total = u32::try_from(total).unwrap_or(DTMF_UPDATE_SAMPLES);
        let start = self.ts;
        let updates = total.div_ceil(DTMF_UPDATE_SAMPLES);
        let mut packets = Vec::with_capacity(updates as usize + DTMF_END_PACKETS);
        let mut marker = true;
        for k in 1..updates {
            let duration = (k * DTMF_UPDATE_SAMPLES) as u16;
            let ev = DtmfEvent {
                event,
                end: false,
                volume,
                duration,
            };
            packets.push(self.packet(payload_type, marker, start, &ev.write()));
            marker = false;
        }
        let end = DtmfEvent {
            event,
            end: true,
            volume,
            duration: total as u16,
        };
        for _ in 0..DTMF_END_PACKETS {
            packets.push(self.packet(payload_type, marker, start, &end.write()));
            marker = false;
        }
        self.mark_next = false;
        self.ts = start.wrapping_add(total);
        packets
    }

    fn packet(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let packet = RtpPacket {
            payload_type,
            marker,
            sequence: self.seq,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        packet.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_moves_the_timestamp_on_and_marks_the_next_packet() {
        let mut out = OutboundStream::with_start(7, 100, 1_000);
        let frame = [0xffu8; 160];
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let marked = |p: &[u8]| p[1] & 0x80 != 0;
        let first = out.next_audio_at(0, &frame, 0);
        let second = out.next_audio_at(0, &frame, 20);
        let third = out.next_audio_at(0, &frame, 45);
        assert_eq!(
            (ts(&first), ts(&second), ts(&third)),
            (1_000, 1_160, 1_320),
            "paced: contiguous"
        );
        assert!(marked(&first) && !marked(&second) && !marked(&third));
        // Held for 4 s: 199 frames were not sent.
        let after = out.next_audio_at(0, &frame, 4_045);
        assert_eq!(ts(&after), 1_480 + 199 * 160);
        assert!(marked(&after), "the first packet after a pause is marked");
        assert_eq!(
            u16::from_be_bytes([after[2], after[3]]),
            103,
            "no sequence gap: nothing was lost"
        );
    }
    use crate::dtmf::DtmfDetector;
    use std::time::Instant;

    #[test]
    fn write_then_parse() {
        let payload = [0xffu8; 160];
        let p = RtpPacket {
            payload_type: 8,
            marker: true,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 7,
            payload: &payload,
        };
        let bytes = write(&p);
        assert_eq!(bytes.len(), 172);
        assert_eq!(&bytes[..4], &[0x80, 0x88, 0xff, 0xff]);
        assert_eq!(parse(&bytes), Some(p));
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, PT 0; one CSRC; extension of one word; payload "ab"; 2 padding bytes.
        let mut b = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0, 0, 0, 42]); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension header + 1 word
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&[0, 2]); // padding, last byte = count
        let p = parse(&b).expect("valid");
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.payload),
            (0, 1, 160, 9, &b"ab"[..])
        );
    }

    #[test]
    fn rejects_junk_and_recognises_rtcp() {
        let good = write(&RtpPacket {
            payload_type: 0,
            marker: false,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
            payload: b"x",
        });
        assert!(parse(&good).is_some());
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&good[..11]), None);
        let mut v1 = good.clone();
        v1[0] = 0x40; // version 1
        assert_eq!(parse(&v1), None);
        let mut bad_pad = good.clone();
        bad_pad[0] |= 0x20;
        *bad_pad.last_mut().expect("non-empty") = 200; // padding longer than the packet
        assert_eq!(parse(&bad_pad), None);
        let mut zero_pad = good.clone();
        zero_pad[0] |= 0x20;
        *zero_pad.last_mut().expect("non-empty") = 0;
        assert_eq!(parse(&zero_pad), None);
        let mut truncated_csrc = good.clone();
        truncated_csrc[0] |= 0x0f; // 15 CSRCs announced
        assert_eq!(parse(&truncated_csrc), None);

        // An RTCP receiver report (PT 201) and an SR (200) multiplexed on the RTP port.
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let sr = [
            0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(is_rtcp(&rr) && is_rtcp(&sr));
        assert_eq!(parse(&rr), None);
        assert!(!is_rtcp(&good));
        assert!(!is_rtcp(&[0x80]));
        // A marked PCMU packet has second byte 0x80 = 128: RTP.
        assert!(!is_rtcp(&[0x80, 0x80, 0, 0]));
    }

    #[test]
    fn parse_never_panics_on_random_input() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (seed >> (i % 8 * 8)) as u8 ^ i as u8;
            }
            buf[0] = (buf[0] & 0x3f) | 0x80;
            let _ = parse(&buf[..len]);
        }
    }

    #[test]
    fn outbound_stream_is_continuous_across_sources() {
        let mut s = OutboundStream::with_start(0x1234, 65534, u32::MAX - 159);
        let frame = [0xd5u8; 160];
        let a = s.next_audio(8, &frame); // live frame
        let b = s.next_audio(8, &frame); // stored frame
        s.mark_discontinuity();
        let c = s.next_audio(8, &frame); // beep
        let [a, b, c] = [&a, &b, &c].map(|p| parse(p).expect("valid"));
        assert_eq!((a.sequence, b.sequence, c.sequence), (65534, 65535, 0));
        assert_eq!((a.timestamp, b.timestamp, c.timestamp), (u32::MAX - 159, 0, 160));
        assert_eq!((a.marker, b.marker, c.marker), (true, false, true));
        assert!(
            [a, b, c]
                .iter()
                .all(|p| p.ssrc == 0x1234 && p.payload_type == 8 && p.payload == frame)
        );
        s.skip(1600);
        let d = s.next_audio(8, &frame);
        let d = parse(&d).expect("valid");
        assert_eq!((d.sequence, d.timestamp, d.marker), (1, 1920, true));

        let r1 = OutboundStream::new();
        let r2 = OutboundStream::new();
        assert_ne!(
            (r1.ssrc(), r1.next_sequence(), r1.next_timestamp()),
            (r2.ssrc(), r2.next_sequence(), r2.next_timestamp())
        );
    }

    #[test]
    fn dtmf_packets_follow_rfc4733_and_the_stream() {
        let mut s = OutboundStream::with_start(5, 100, 8000);
        s.next_audio(0, &[0xff; 160]);
        let packets = s.dtmf(101, 11, 100, 10);
        // 100 ms: updates at 160, 320, 480, 640, then 3 end packets with 800.
        assert_eq!(packets.len(), 4 + 3);
        let parsed: Vec<RtpPacket> = packets.iter().map(|p| parse(p).expect("valid")).collect();
        for (i, p) in parsed.iter().enumerate() {
            assert_eq!(p.payload_type, 101);
            assert_eq!(p.timestamp, 8160, "same timestamp for the whole event");
            assert_eq!(p.sequence, 101 + i as u16);
            assert_eq!(p.marker, i == 0);
            let ev = DtmfEvent::parse(p.payload).expect("event");
            assert_eq!((ev.event, ev.volume), (11, 10));
            assert_eq!(ev.end, i >= 4);
            assert_eq!(ev.duration, if i >= 4 { 800 } else { 160 * (i as u16 + 1) });
        }
        // A receiver's detector sees exactly one '#'.
        let mut d = DtmfDetector::new();
        let keys: String = parsed
            .iter()
            .flat_map(|p| d.feed(p.timestamp, p.payload, Instant::now()))
            .collect();
        assert_eq!(keys, "#");
        // Audio continues after the event, without a marker.
        let next = s.next_audio(0, &[0xff; 160]);
        let next = parse(&next).expect("valid");
        assert_eq!((next.sequence, next.timestamp, next.marker), (108, 8960, false));

        // Very short and very long events stay within the RFC's limits.
        let short = s.dtmf(101, 1, 0, 10);
        assert_eq!(short.len(), 3);
        let long = s.dtmf(101, 1, 60_000, 10);
        let last = DtmfEvent::parse(parse(long.last().expect("packets")).expect("valid").payload).expect("event");
        assert!(last.end && last.duration == 65440);
    }
}
