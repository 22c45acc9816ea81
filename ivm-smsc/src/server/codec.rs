//! PDU framing for the built-in SMSC: cuts the byte stream into whole PDUs by `command_length`
//! and decodes each one on its own with rusmpp, so that a malformed or unknown PDU becomes a
//! [`Frame::Invalid`] to answer with `generic_nack` instead of breaking the stream.

use bytes::{Buf, BufMut, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::{Encode, Length};
use rusmpp::{Command, CommandStatus};

/// SMPP header size.
pub const HEADER: usize = 16;

/// One PDU from the peer.
#[derive(Debug)]
pub enum Frame {
    /// A PDU rusmpp could decode.
    Command(Box<Command>),
    /// A PDU of a sane length that could not be decoded.
    Invalid {
        /// Its `command_id`.
        command_id: u32,
        /// Its `sequence_number` (for the `generic_nack`).
        sequence_number: u32,
        /// The status to answer with.
        status: CommandStatus,
    },
}

/// The stream cannot be re-synchronised (a `command_length` below 16 or above the limit).
#[derive(Debug)]
pub struct BadLength {
    pub length: u32,
    pub sequence_number: u32,
}

/// Takes the next whole PDU out of `buf`, if there is one.
pub fn next_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, BadLength> {
    if buf.len() < HEADER {
        // A length below 16 is refused as soon as its 4 octets are in.
        if buf.len() >= 4 {
            let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if (length as usize) < HEADER {
                return Err(BadLength {
                    length,
                    sequence_number: 0,
                });
            }
        }
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let command_id = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let sequence_number = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if (length as usize) < HEADER || length as usize > max_len {
        return Err(BadLength {
            length,
            sequence_number,
        });
    }
    if buf.len() < length as usize {
        buf.reserve(length as usize - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(length as usize);
    frame.advance(4);
    let body_len = frame.len();
    match Command::decode(&mut frame, body_len) {
        Ok((command, _)) => {
            let unknown = matches!(command.pdu(), Some(rusmpp::Pdu::Other { .. }));
            if unknown {
                return Ok(Some(Frame::Invalid {
                    command_id,
                    sequence_number,
                    status: CommandStatus::EsmeRinvcmdid,
                }));
            }
            Ok(Some(Frame::Command(Box::new(command))))
        }
        Err(e) => {
            tracing::debug!(command_id, sequence_number, error = %e, "undecodable PDU");
            Ok(Some(Frame::Invalid {
                command_id,
                sequence_number,
                status: CommandStatus::EsmeRinvcmdlen,
            }))
        }
    }
}

/// Appends `command` with its `command_length` to `out`.
pub fn encode(command: &Command, out: &mut BytesMut) {
    let len = command.length();
    out.reserve(4 + len);
    out.put_u32((4 + len) as u32);
    let start = out.len();
    out.resize(start + len, 0);
    command.encode(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use rusmpp::Pdu;

    use super::*;

    #[test]
    fn frames_round_trip_and_junk_is_invalid() {
        let mut buf = BytesMut::new();
        encode(&Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink), &mut buf);
        assert_eq!(buf.len(), 16);
        // Half a PDU: nothing yet.
        let mut half = BytesMut::from(&buf[..10]);
        assert!(matches!(next_frame(&mut half, 1024), Ok(None)));
        let f = next_frame(&mut buf, 1024).expect("frame").expect("some");
        assert!(matches!(f, Frame::Command(c) if c.sequence_number() == 7));
        assert!(buf.is_empty());

        // Unknown command id 0x0000_0F0F with a body: generic_nack material, stream intact.
        let mut junk = BytesMut::new();
        junk.put_u32(20);
        junk.put_u32(0x0000_0F0F);
        junk.put_u32(0);
        junk.put_u32(9);
        junk.put_u32(0xDEAD_BEEF);
        encode(&Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLink), &mut junk);
        let f = next_frame(&mut junk, 1024).expect("frame").expect("some");
        assert!(matches!(f, Frame::Invalid { sequence_number: 9, .. }), "{f:?}");
        let f = next_frame(&mut junk, 1024).expect("frame").expect("some");
        assert!(matches!(f, Frame::Command(c) if c.sequence_number() == 8));

        // A submit_sm cut short inside its body decodes as invalid, not a panic.
        let mut bad = BytesMut::new();
        bad.put_u32(19);
        bad.put_u32(0x0000_0004);
        bad.put_u32(0);
        bad.put_u32(3);
        bad.put_slice(b"ab\0");
        let f = next_frame(&mut bad, 1024).expect("frame").expect("some");
        assert!(matches!(f, Frame::Invalid { sequence_number: 3, .. }), "{f:?}");

        // Lengths that cannot be resynchronised.
        let mut tiny = BytesMut::from(&[0u8, 0, 0, 5][..]);
        assert!(next_frame(&mut tiny, 1024).is_err());
        let mut huge = BytesMut::new();
        huge.put_u32(1 << 20);
        huge.put_slice(&[0; 12]);
        assert!(next_frame(&mut huge, 1024).is_err());
    }
}
