//! The audio codecs IVM speaks: G.711 μ-law (PCMU, payload type 0) and A-law (PCMA, 8) at
//! 8 kHz in 20 ms frames, with the arithmetic delegated to `audio-codec-algorithms` (it matches
//! the ITU-T G.191 reference on every code). A message is stored in its sender's codec; a
//! listener on the other law gets each byte converted.

use audio_codec_algorithms::{
    convert_alaw_to_ulaw, convert_ulaw_to_alaw, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw,
};

/// Samples per second of G.711.
pub const SAMPLE_RATE: u32 = 8000;
/// Milliseconds of audio in one frame (one RTP packet).
pub const FRAME_MS: u32 = 20;
/// Samples (= bytes of G.711) in one frame.
pub const SAMPLES_PER_FRAME: usize = 160;

/// A G.711 codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name of an `a=rtpmap` line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Decodes G.711 bytes to 16-bit linear samples.
    pub fn decode(self, data: &[u8]) -> Vec<i16> {
        match self {
            Codec::Pcmu => data.iter().map(|&b| decode_ulaw(b)).collect(),
            Codec::Pcma => data.iter().map(|&b| decode_alaw(b)).collect(),
        }
    }

    /// Encodes 16-bit linear samples to G.711 bytes.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Codec::Pcmu => samples.iter().map(|&s| encode_ulaw(s)).collect(),
            Codec::Pcma => samples.iter().map(|&s| encode_alaw(s)).collect(),
        }
    }

    /// Converts G.711 bytes of this codec to `to` (a copy when the laws are the same).
    pub fn transcode(self, to: Codec, data: &[u8]) -> Vec<u8> {
        match (self, to) {
            (Codec::Pcmu, Codec::Pcma) => data.iter().map(|&b| convert_ulaw_to_alaw(b)).collect(),
            (Codec::Pcma, Codec::Pcmu) => data.iter().map(|&b| convert_alaw_to_ulaw(b)).collect(),
            _ => data.to_vec(),
        }
    }

    /// A frame in codec `to`: the same buffer when the laws agree (no copy), converted otherwise.
    pub fn convert_frame(self, to: Codec, frame: &bytes::Bytes) -> bytes::Bytes {
        if self == to {
            frame.clone()
        } else {
            bytes::Bytes::from(self.transcode(to, frame))
        }
    }

    /// The byte that encodes silence (linear 0).
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => encode_ulaw(0),
            Codec::Pcma => encode_alaw(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_law_conversion() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let all: Vec<u8> = (0..=255).collect();
            let again = codec.encode(&codec.decode(&all));
            // Every code decodes to a value that encodes back to an equivalent code.
            assert_eq!(codec.decode(&again), codec.decode(&all));
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
            assert_eq!(Codec::from_name(codec.name()), Some(codec));
        }
        let u = Codec::Pcmu.encode(&[0, 1000, -1000, 32000]);
        let a = Codec::Pcmu.transcode(Codec::Pcma, &u);
        // The G.711 law-conversion tables keep each value within one quantisation step.
        for (x, y) in Codec::Pcmu.decode(&u).iter().zip(Codec::Pcma.decode(&a)) {
            let (x, y) = (i32::from(*x), i32::from(y));
            assert!((x - y).abs() <= (x.abs() / 16).max(16), "{x} vs {y}");
        }
    }
}
