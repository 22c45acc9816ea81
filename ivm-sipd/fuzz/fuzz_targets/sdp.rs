//! Fuzz target: any bytes as an SDP offer and as an SDP answer. Nothing may panic; an offer
//! that parses and negotiates must give an answer that parses again with the codec chosen.

#![no_main]

use ivm_media::codec::Codec;
use ivm_media::sdp::{self, SessionVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let supported = [Codec::Pcmu, Codec::Pcma];
    if let Ok(offer) = sdp::parse(data) {
        let _ = (
            offer.on_hold(),
            offer.formats.iter().map(|pt| offer.codec_for(*pt)).count(),
        );
        for line in &offer.media_lines {
            let _ = (line.media_type(), line.port(), line.proto(), line.formats());
        }
        if let Ok(neg) = sdp::negotiate(&offer, &supported) {
            let local = "127.0.0.1:20000".parse().unwrap_or_else(|_| unreachable!());
            let answer = sdp::answer(local, &neg, &SessionVersion::new());
            if let Err(e) = sdp::parse(answer.as_bytes()) {
                panic!("our answer does not parse: {e}\n{answer}");
            }
        }
    }
    let _ = sdp::accept_answer(data, &supported, 101);
});
