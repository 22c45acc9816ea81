//! Fuzz target: any bytes as a received RTP packet, and its payload as an RFC 4733 event.
//! Nothing may panic; a packet that parses must be written and parsed back to the same fields.

#![no_main]

use ivm_media::{dtmf, rtp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::is_rtcp(data);
    if let Some(packet) = rtp::parse(data) {
        let written = rtp::write(&packet);
        let again = rtp::parse(&written);
        let same = again.is_some_and(|a| {
            (a.payload_type, a.marker, a.sequence, a.timestamp, a.ssrc, a.payload)
                == (
                    packet.payload_type & 0x7f,
                    packet.marker,
                    packet.sequence,
                    packet.timestamp,
                    packet.ssrc,
                    packet.payload,
                )
        });
        // A written packet whose payload type lands in the RTCP range is read as RTCP.
        assert!(
            same || rtp::is_rtcp(&written),
            "written packet reads back differently: {packet:?}"
        );
        let _ = dtmf::DtmfEvent::parse(packet.payload);
    }
    let _ = dtmf::DtmfEvent::parse(data);
});
