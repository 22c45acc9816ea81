//! The on-disk record: one run of consecutive frames of one message (never crossing a fragment
//! boundary), self-describing and checksummed so that recovery can tell a whole record from a
//! torn or corrupt one without the index.
//!
//! Layout (little-endian), `HEADER_LEN + frame_count * frame_bytes + TRAILER_LEN` bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `IVMf` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | flags (bit 0: FINISHED, the message's last record) |
//! | 6 | 1 | codec: RTP payload type (0 PCMU, 8 PCMA) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | record length in bytes, header and CRC included |
//! | 12 | 8 | message id (i64) |
//! | 20 | 4 | index of the first frame |
//! | 24 | 4 | frame count (0 for a bare FINISHED marker) |
//! | 28 | 2 | bytes per frame (160) |
//! | 30 | 2 | reserved, 0 |
//! | 32 | n | the frames' G.711 bytes |
//! | 32+n | 4 | CRC-32 (IEEE, `crc32fast`) of every byte before it |
//!
//! A sealed record (format version 2, `seal`) holds instead of the frames' bytes the message's
//! wrapped data key, a nonce, the frames encrypted and the tag: `seal::SEAL_OVERHEAD` bytes
//! more. Its CRC covers the sealed bytes, so recovery tells whole records from torn ones
//! without any key.

use bytes::Bytes;

use super::seal::{self, DataKey, Keyring, SEAL_OVERHEAD, SealError};
use crate::codec::{Codec, SAMPLES_PER_FRAME};

/// Bytes of one 20 ms G.711 frame. The store keeps each message's frames at its codec's frame
/// length ([`crate::codec::AudioCodec::frame_bytes`]; shorter payloads are padded with silence,
/// longer ones cut, with a warning) and every record carries that length (bytes 28–29).
pub const FRAME_BYTES: usize = SAMPLES_PER_FRAME;

pub(super) const MAGIC: [u8; 4] = *b"IVMf";
pub(super) const VERSION: u8 = 1;
/// The format version of a sealed record.
pub(super) const VERSION_SEALED: u8 = 2;
pub(super) const HEADER_LEN: usize = 32;
pub(super) const TRAILER_LEN: usize = 4;
/// The record holds the message's last frame: the sender called `finish`.
pub(super) const FLAG_FINISHED: u8 = 0x01;
/// The most frames one record may hold (bounds what recovery trusts in a header).
pub(super) const MAX_FRAMES: u32 = 4096;
/// The most bytes one frame may have (120 ms of G.711).
pub(super) const MAX_FRAME_BYTES: u16 = 960;

/// A record header, as validated by [`parse_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub message_id: i64,
    pub first_frame: u32,
    pub frame_count: u32,
    pub frame_bytes: u16,
    pub codec: Codec,
    pub flags: u8,
    /// The whole record's length in bytes.
    pub len: u32,
    /// The frames are sealed (version 2).
    pub sealed: bool,
}

/// The length of a record with `frame_count` frames of `frame_bytes` bytes.
pub(super) fn encoded_len(frame_count: usize, frame_bytes: usize, sealed: bool) -> usize {
    let seal = if sealed { SEAL_OVERHEAD } else { 0 };
    HEADER_LEN + frame_count * frame_bytes + seal + TRAILER_LEN
}

/// Appends one record to `out` and returns its length; with `key`, its frames are sealed (on
/// a sealing error `out` is left as it was). Every frame must be `frame_bytes` long.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode(
    out: &mut Vec<u8>,
    message_id: i64,
    codec: Codec,
    first_frame: u32,
    flags: u8,
    frame_bytes: u16,
    frames: &[Bytes],
    key: Option<&DataKey>,
) -> Result<u32, SealError> {
    debug_assert!(frames.iter().all(|f| f.len() == usize::from(frame_bytes)));
    let start = out.len();
    let len = encoded_len(frames.len(), usize::from(frame_bytes), key.is_some());
    out.reserve(len);
    out.extend_from_slice(&MAGIC);
    let version = if key.is_some() { VERSION_SEALED } else { VERSION };
    out.extend_from_slice(&[version, flags, codec.payload_type(), 0]);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&message_id.to_le_bytes());
    out.extend_from_slice(&first_frame.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame_bytes.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    match key {
        Some(key) => {
            let plain: Vec<u8> = frames.concat();
            let header = out[start..start + HEADER_LEN].to_vec();
            if let Err(e) = key.seal(&header, &plain, out) {
                out.truncate(start);
                return Err(e);
            }
        }
        None => {
            for frame in frames {
                out.extend_from_slice(frame);
            }
        }
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, len);
    Ok(len as u32)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(v)
}

/// Validates the first `HEADER_LEN` bytes of a record (everything but the CRC).
pub(super) fn parse_header(b: &[u8]) -> Result<Header, &'static str> {
    if b.len() < HEADER_LEN {
        return Err("short header");
    }
    if b[0..4] != MAGIC {
        return Err("bad magic");
    }
    let sealed = match b[4] {
        VERSION => false,
        VERSION_SEALED => true,
        _ => return Err("unknown record version"),
    };
    let codec = Codec::from_payload_type(b[6]).ok_or("unknown codec")?;
    let header = Header {
        message_id: i64_at(b, 12),
        first_frame: u32_at(b, 20),
        frame_count: u32_at(b, 24),
        frame_bytes: u16_at(b, 28),
        codec,
        flags: b[5],
        len: u32_at(b, 8),
        sealed,
    };
    if header.frame_count > MAX_FRAMES {
        return Err("frame count out of range");
    }
    if header.frame_bytes == 0 || header.frame_bytes > MAX_FRAME_BYTES {
        return Err("frame size out of range");
    }
    if header.first_frame.checked_add(header.frame_count).is_none() {
        return Err("frame index out of range");
    }
    if header.len as usize != encoded_len(header.frame_count as usize, usize::from(header.frame_bytes), sealed) {
        return Err("record length does not match its frames");
    }
    Ok(header)
}

/// Validates a whole record: its header and its CRC.
pub(super) fn verify(record: &[u8]) -> Result<Header, &'static str> {
    let header = parse_header(record)?;
    if record.len() != header.len as usize {
        return Err("record length does not match its header");
    }
    let (body, crc) = record.split_at(record.len() - TRAILER_LEN);
    if crc32fast::hash(body) != u32_at(crc, 0) {
        return Err("CRC mismatch");
    }
    Ok(header)
}

/// The frames' bytes of a verified record, opened with `keys` when it is sealed.
pub(super) fn frames(record: Bytes, header: &Header, keys: Option<&Keyring>) -> Result<Bytes, &'static str> {
    let end = record.len() - TRAILER_LEN;
    if !header.sealed {
        return Ok(record.slice(HEADER_LEN..end));
    }
    let plain = seal::open(keys, header.message_id, &record[..HEADER_LEN], &record[HEADER_LEN..end])
        .map_err(SealError::reason)?;
    if plain.len() != header.frame_count as usize * usize::from(header.frame_bytes) {
        return Err("sealed record's frames do not match its header");
    }
    Ok(Bytes::from(plain))
}

/// The `k`-th frame of a record's [`frames`].
pub(super) fn frame(frames: &Bytes, header: &Header, k: u32) -> Bytes {
    let fb = usize::from(header.frame_bytes);
    let at = k as usize * fb;
    frames.slice(at..at + fb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_verify_and_reject_damage() {
        let audio: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 160])).collect();
        let mut out = Vec::new();
        let len = encode(&mut out, -7, Codec::Pcma, 42, FLAG_FINISHED, 160, &audio, None).expect("encoded");
        assert_eq!(len as usize, out.len());
        assert_eq!(out.len(), HEADER_LEN + 3 * 160 + TRAILER_LEN);
        let h = verify(&out).expect("valid");
        assert_eq!(
            (h.message_id, h.first_frame, h.frame_count, h.codec, h.flags, h.sealed),
            (-7, 42, 3, Codec::Pcma, FLAG_FINISHED, false)
        );
        let body = frames(Bytes::from(out.clone()), &h, None).expect("plain frames");
        assert_eq!(frame(&body, &h, 2), audio[2]);

        let mut flipped = out.clone();
        flipped[HEADER_LEN + 10] ^= 1;
        assert_eq!(verify(&flipped), Err("CRC mismatch"));
        assert!(verify(&out[..out.len() - 1]).is_err());
        let mut bad_len = out.clone();
        bad_len[8] ^= 1;
        assert!(parse_header(&bad_len).is_err());
    }

    #[test]
    fn a_sealed_record_verifies_without_keys_and_opens_only_with_them() {
        let keys = Keyring::new(seal::MasterKey::new(&[9; seal::KEY_BYTES]), Vec::new());
        let audio: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![0x40 | i; 160])).collect();
        let mut out = Vec::new();
        let len = encode(
            &mut out,
            11,
            Codec::Pcmu,
            50,
            0,
            160,
            &audio,
            Some(&keys.data_key(11).expect("data key")),
        )
        .expect("sealed");
        assert_eq!(len as usize, out.len());
        assert_eq!(out.len(), HEADER_LEN + 3 * 160 + SEAL_OVERHEAD + TRAILER_LEN);
        let h = verify(&out).expect("the CRC needs no key");
        assert!(h.sealed);
        assert!(
            !out.windows(160).any(|w| audio.iter().any(|a| &a[..] == w)),
            "plaintext frames in the record"
        );
        let body = frames(Bytes::from(out.clone()), &h, Some(&keys)).expect("opens");
        assert_eq!(frame(&body, &h, 1), audio[1]);
        assert!(frames(Bytes::from(out.clone()), &h, None).is_err(), "no keys, no audio");

        // A record copied into another message (header changed, CRC made right) does not open.
        let mut moved = out.clone();
        moved[12] ^= 1;
        let crc_at = moved.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&moved[..crc_at]);
        moved[crc_at..].copy_from_slice(&crc.to_le_bytes());
        let h = verify(&moved).expect("a valid record");
        assert!(frames(Bytes::from(moved), &h, Some(&keys)).is_err());
    }
}
