//! Fuzz target: any bytes as the stream an ESME sends the built-in SMSC, cut into PDUs the way
//! the server does, and any bytes as a short message body and a delivery receipt. Nothing may
//! panic; a PDU that decodes must encode again.

#![no_main]

use bytes::BytesMut;
use ivm_smsc::encoding::decode_short_message;
use ivm_smsc::receipt::parse_receipt_text;
use ivm_smsc::server::codec::{Frame, encode, next_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = next_frame(&mut buf, 64 * 1024) {
        if let Frame::Command(command) = frame {
            let mut out = BytesMut::new();
            encode(&command, &mut out);
            assert!(out.len() >= 16, "an encoded PDU has its header");
        }
    }
    if let [dc, esm, body @ ..] = data {
        let _ = decode_short_message(*dc, *esm, body);
    }
    let _ = parse_receipt_text(&String::from_utf8_lossy(data));
});
