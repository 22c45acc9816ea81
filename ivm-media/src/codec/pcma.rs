//! G.711 A-law (PCMA, RTP payload type 8, RFC 3551), the arithmetic from
//! `audio-codec-algorithms` (it matches the ITU-T G.191 reference on every code).

use audio_codec_algorithms::{convert_alaw_to_ulaw, decode_alaw, encode_alaw};

use super::interface::{AudioCodec, Codec};

/// A-law.
pub struct Pcma;

impl AudioCodec for Pcma {
    fn id(&self) -> Codec {
        Codec::Pcma
    }

    fn name(&self) -> &'static str {
        "PCMA"
    }

    fn payload_type(&self) -> u8 {
        8
    }

    fn silence(&self) -> u8 {
        encode_alaw(0)
    }

    fn decode(&self, data: &[u8]) -> Vec<i16> {
        data.iter().map(|&b| decode_alaw(b)).collect()
    }

    fn encode(&self, samples: &[i16]) -> Vec<u8> {
        samples.iter().map(|&s| encode_alaw(s)).collect()
    }

    fn convert(&self, to: Codec, data: &[u8]) -> Option<Vec<u8>> {
        (to == Codec::Pcmu).then(|| data.iter().map(|&b| convert_alaw_to_ulaw(b)).collect())
    }
}
