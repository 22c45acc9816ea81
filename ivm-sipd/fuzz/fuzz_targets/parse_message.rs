//! Fuzz target: any bytes, as a UDP datagram and as TCP stream chunks, through the SIP
//! message layer. Nothing may panic; whatever parses must be readable through every typed
//! accessor and must parse again after being written out.

#![no_main]

use bytes::Bytes;
use ivm_sipd::stack::sip::framing::{Framed, StreamFramer};
use ivm_sipd::stack::sip::{Framing, HeaderName, Message, SipHeaders, parse_message};
use libfuzzer_sys::fuzz_target;

fn exercise(msg: &Message) {
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.header_from(),
        msg.header_to(),
        msg.vias(),
        msg.top_via(),
    );
    let _ = (
        msg.contacts(),
        msg.expires(),
        msg.max_forwards(),
        msg.content_type(),
        msg.content_length(),
        msg.event(),
    );
    let _ = (msg.tokens(&HeaderName::Require), msg.auth(&HeaderName::Authorization));
    let written = Bytes::from(msg.to_bytes());
    if let Err(e) = parse_message(written.clone(), Framing::Datagram) {
        panic!(
            "written form does not parse again: {e}\n{}",
            String::from_utf8_lossy(&written)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = parse_message(Bytes::copy_from_slice(data), Framing::Datagram) {
        exercise(&msg);
    }
    let mut framer = StreamFramer::new(65536);
    for chunk in data.chunks(7) {
        framer.push(chunk);
        while let Ok(Some(item)) = framer.next_item() {
            if let Framed::Message(m) = item {
                if let Ok(msg) = parse_message(m, Framing::Stream) {
                    exercise(&msg);
                }
            }
        }
    }
});
