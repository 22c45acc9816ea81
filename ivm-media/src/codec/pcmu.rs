//! G.711 μ-law (PCMU, RTP payload type 0, RFC 3551), the arithmetic from
//! `audio-codec-algorithms` (it matches the ITU-T G.191 reference on every code).

use audio_codec_algorithms::{convert_ulaw_to_alaw, decode_ulaw, encode_ulaw};

use super::interface::{AudioCodec, Codec};

/// μ-law.
pub struct Pcmu;

impl AudioCodec for Pcmu {
    fn id(&self) -> Codec {
        Codec::Pcmu
    }

    fn name(&self) -> &'static str {
        "PCMU"
    }

    fn payload_type(&self) -> u8 {
        0
    }

    fn silence(&self) -> u8 {
        encode_ulaw(0)
    }

    fn decode(&self, data: &[u8]) -> Vec<i16> {
        data.iter().map(|&b| decode_ulaw(b)).collect()
    }

    fn encode(&self, samples: &[i16]) -> Vec<u8> {
        samples.iter().map(|&s| encode_ulaw(s)).collect()
    }

    fn convert(&self, to: Codec, data: &[u8]) -> Option<Vec<u8>> {
        // G.711's own law-conversion table (Appendix: it differs from decode + encode by at
        // most one step and keeps a byte-for-byte round trip where one exists).
        (to == Codec::Pcma).then(|| data.iter().map(|&b| convert_ulaw_to_alaw(b)).collect())
    }
}
