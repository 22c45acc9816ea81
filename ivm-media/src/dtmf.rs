//! RFC 4733 telephone-events (DTMF in RTP): the 4-byte event payload, the mapping between
//! event codes and keypad characters, and [`DtmfDetector`], which turns the stream of event
//! packets of one RTP source into each pressed key exactly once.
//!
//! The code is ours because no crate handles RFC 4733 (see `DEPENDENCIES.md`); the payload is
//! four bytes and the detection rules below are what the RFC asks of a receiver:
//!
//! - every packet of one event carries the same RTP timestamp (the event's start), with a growing
//!   duration; a new timestamp is a new event (§2.5.1.2);
//! - the last packet has the E bit and is sent three times (§2.5.1.4), so the digit is reported
//!   on the first end packet and its retransmissions are ignored;
//! - when the end packets are lost, the event is reported when a newer event starts or, if the
//!   caller asks, when no packet of it has arrived for a while ([`DtmfDetector::expire`]);
//! - packets of an older event arriving late (reordering) are ignored.

use std::time::{Duration, Instant};

/// Length of an RFC 4733 event payload.
pub const PAYLOAD_LEN: usize = 4;

/// The event code of a hook flash (RFC 4733 §3.2), which has no keypad character.
pub const EVENT_FLASH: u8 = 16;

/// The range of events IVM announces in `a=fmtp:<pt> 0-16` and understands.
pub const SUPPORTED_EVENTS: &str = "0-16";

/// How long an event may go without packets before [`DtmfDetector::expire`] reports it anyway.
/// Senders refresh an event every 50 ms or faster (RFC 4733 §2.5.1.2).
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a telephone-event payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload is {0} bytes, at least 4 are needed")]
    TooShort(usize),
}

/// One RFC 4733 event report (the payload of one telephone-event RTP packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash.
    pub event: u8,
    /// E bit: this is (a retransmission of) the event's final packet.
    pub end: bool,
    /// Power level of the tone in −dBm0, 0–63.
    pub volume: u8,
    /// Duration so far, in timestamp units (samples at 8 kHz) from the event's RTP timestamp.
    pub duration: u16,
}

impl DtmfEvent {
    /// Reads the 4-byte payload. Extra bytes (some senders pad) are ignored; the reserved bit is
    /// ignored as the RFC asks.
    pub fn parse(payload: &[u8]) -> Result<DtmfEvent, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::TooShort(payload.len()));
        };
        Ok(DtmfEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload (reserved bit zero, volume clamped to 6 bits).
    pub fn write(&self) -> [u8; PAYLOAD_LEN] {
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, flags, d0, d1]
    }

    /// The keypad character of this event, if it is one.
    pub fn char(&self) -> Option<char> {
        event_char(self.event)
    }
}

/// The keypad character of an event code: `0`–`9`, `*`, `#`, `A`–`D`.
pub fn event_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a keypad character (the inverse of [`event_char`]; `a`–`d` accepted too).
pub fn char_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// The event currently being received.
#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    /// Already reported (an end packet was seen, or it was flushed): later packets are ignored.
    reported: bool,
    last_seen: Instant,
}

/// Turns the telephone-event packets of one RTP stream into key presses, each exactly once.
///
/// Feed it the RTP timestamp and payload of every packet that carries the negotiated
/// telephone-event payload type; call [`expire`](Self::expire) now and then (or when
/// [`deadline`](Self::deadline) passes) to also report events whose end packets were all lost.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    current: Option<Current>,
    timeout: Duration,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        DtmfDetector::new()
    }
}

impl DtmfDetector {
    /// A detector with [`DEFAULT_EVENT_TIMEOUT`].
    pub fn new() -> DtmfDetector {
        DtmfDetector::with_timeout(DEFAULT_EVENT_TIMEOUT)
    }

    /// A detector that reports an event without end packets after `timeout` of silence.
    pub fn with_timeout(timeout: Duration) -> DtmfDetector {
        DtmfDetector { current: None, timeout }
    }

    /// Forgets the current event (a new source or a new SDP session).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Feeds one telephone-event packet received at `now`; returns the keys it completes, in
    /// order: usually none or one, two when it starts a new event while the previous one never
    /// ended and is itself an end packet. Malformed payloads and non-key events (flash) are
    /// ignored.
    pub fn feed(&mut self, timestamp: u32, payload: &[u8], now: Instant) -> Vec<char> {
        let Ok(ev) = DtmfEvent::parse(payload) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        match &mut self.current {
            Some(cur) if cur.timestamp == timestamp => {
                cur.last_seen = now;
                if ev.end && !cur.reported {
                    cur.reported = true;
                    keys.extend(event_char(cur.event));
                }
                return keys;
            }
            // A packet of an event older than the current one: late, ignore it.
            Some(cur) if (timestamp.wrapping_sub(cur.timestamp) as i32) < 0 => return keys,
            // A new event: the previous one is over even if we never saw its end.
            Some(cur) if !cur.reported => keys.extend(event_char(cur.event)),
            Some(_) | None => {}
        }
        if ev.end {
            keys.extend(event_char(ev.event));
        }
        self.current = Some(Current {
            timestamp,
            event: ev.event,
            reported: ev.end,
            last_seen: now,
        });
        keys
    }

    /// When [`expire`](Self::expire) will report the current event if no more packets arrive,
    /// or `None` when no event is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.current.filter(|c| !c.reported).map(|c| c.last_seen + self.timeout)
    }

    /// Reports the open event if its packets stopped without an end bit for the timeout.
    pub fn expire(&mut self, now: Instant) -> Option<char> {
        let cur = self.current.as_mut()?;
        if cur.reported || now < cur.last_seen + self.timeout {
            return None;
        }
        cur.reported = true;
        event_char(cur.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(event: u8, end: bool, duration: u16) -> [u8; 4] {
        DtmfEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .write()
    }

    #[test]
    fn payload_round_trip_and_layout() {
        let ev = DtmfEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        let bytes = ev.write();
        assert_eq!(bytes, [11, 0x8a, 0x06, 0x40]);
        assert_eq!(DtmfEvent::parse(&bytes), Ok(ev));
        // Reserved bit ignored, trailing bytes ignored.
        assert_eq!(
            DtmfEvent::parse(&[5, 0x4a, 0, 160, 0xff]).map(|e| (e.event, e.end, e.volume)),
            Ok((5, false, 10))
        );
        assert_eq!(DtmfEvent::parse(&[1, 2, 3]), Err(DtmfError::TooShort(3)));
        assert_eq!(DtmfEvent::parse(&[]), Err(DtmfError::TooShort(0)));
    }

    #[test]
    fn event_characters() {
        let all: String = (0..=15).filter_map(event_char).collect();
        assert_eq!(all, "0123456789*#ABCD");
        assert_eq!(event_char(EVENT_FLASH), None);
        assert_eq!(event_char(255), None);
        for (i, c) in all.chars().enumerate() {
            assert_eq!(char_event(c), Some(i as u8));
        }
        assert_eq!(char_event('b'), Some(13));
        assert_eq!(char_event('x'), None);
    }

    #[test]
    fn one_digit_per_event_with_retransmitted_ends() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        let mut keys = String::new();
        // '5' at ts 1000: three updates, three end packets.
        for dur in [160, 320, 480] {
            keys.extend(d.feed(1000, &pkt(5, false, dur), t0));
        }
        for _ in 0..3 {
            keys.extend(d.feed(1000, &pkt(5, true, 800), t0));
        }
        // '#' at ts 3000, then the same key again at ts 5000 (two presses of the same key).
        for ts in [3000, 5000] {
            keys.extend(d.feed(ts, &pkt(11, false, 160), t0));
            for _ in 0..3 {
                keys.extend(d.feed(ts, &pkt(11, true, 640), t0));
            }
        }
        assert_eq!(keys, "5##");
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn lost_end_packets_reported_on_next_event_or_timeout() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::with_timeout(Duration::from_millis(200));
        assert!(d.feed(100, &pkt(1, false, 160), t0).is_empty());
        // Next event starts with its end packet already (very short press): both reported in order.
        assert_eq!(d.feed(2000, &pkt(2, true, 160), t0), vec!['1', '2']);
        // Late packets of the first event and retransmissions of the second are ignored.
        assert!(d.feed(100, &pkt(1, true, 800), t0).is_empty());
        assert!(d.feed(2000, &pkt(2, true, 160), t0).is_empty());

        assert!(d.feed(4000, &pkt(12, false, 160), t0).is_empty());
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(200)));
        assert_eq!(d.expire(t0 + Duration::from_millis(100)), None);
        assert_eq!(d.expire(t0 + Duration::from_millis(200)), Some('A'));
        assert_eq!(d.expire(t0 + Duration::from_millis(900)), None);
        // The end packets arriving after the timeout do not report it again.
        assert!(d.feed(4000, &pkt(12, true, 1600), t0).is_empty());
    }

    #[test]
    fn timestamp_wraparound_and_junk() {
        let t0 = Instant::now();
        let mut d = DtmfDetector::new();
        assert_eq!(d.feed(u32::MAX - 10, &pkt(9, true, 160), t0), vec!['9']);
        // Across the wrap is newer, not older.
        assert_eq!(d.feed(50, &pkt(0, true, 160), t0), vec!['0']);
        assert!(d.feed(60, &[1, 2], t0).is_empty());
        // Flash has no character.
        assert!(d.feed(400, &pkt(EVENT_FLASH, true, 160), t0).is_empty());
        d.reset();
        assert_eq!(d.feed(10, &pkt(3, true, 160), t0), vec!['3']);
    }
}
