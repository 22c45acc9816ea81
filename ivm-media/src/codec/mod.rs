//! The audio codecs IVM speaks, behind one trait ([`AudioCodec`]): G.711 μ-law (`pcmu.rs`,
//! PCMU, payload type 0) and A-law (`pcma.rs`, PCMA, 8) at 8 kHz in 20 ms frames. A message is
//! stored in its sender's codec; a listener on another codec gets each frame converted.

mod interface;
mod pcma;
mod pcmu;

pub use interface::{AudioCodec, Codec, FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME};

/// Every codec IVM speaks, in order of preference. A new codec is one file implementing
/// [`AudioCodec`], one variant of [`Codec`] and one entry here.
pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

impl Codec {
    /// The codec's implementation.
    pub fn implementation(self) -> &'static dyn AudioCodec {
        match self {
            Codec::Pcmu => &pcmu::Pcmu,
            Codec::Pcma => &pcma::Pcma,
        }
    }

    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        self.implementation().payload_type()
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        ALL.into_iter().find(|c| c.payload_type() == pt)
    }

    /// The encoding name of an `a=rtpmap` line.
    pub fn name(self) -> &'static str {
        self.implementation().name()
    }

    pub fn from_name(name: &str) -> Option<Codec> {
        ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        self.implementation().clock_rate()
    }

    /// Decodes this codec's bytes to 16-bit linear samples.
    pub fn decode(self, data: &[u8]) -> Vec<i16> {
        self.implementation().decode(data)
    }

    /// Encodes 16-bit linear samples to this codec's bytes.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        self.implementation().encode(samples)
    }

    /// Converts bytes of this codec to `to` (a copy when the codecs are the same).
    pub fn transcode(self, to: Codec, data: &[u8]) -> Vec<u8> {
        if self == to {
            return data.to_vec();
        }
        let from = self.implementation();
        from.convert(to, data).unwrap_or_else(|| to.encode(&from.decode(data)))
    }

    /// A frame in codec `to`: the same buffer when the codecs agree (no copy), converted
    /// otherwise.
    pub fn convert_frame(self, to: Codec, frame: &bytes::Bytes) -> bytes::Bytes {
        if self == to {
            frame.clone()
        } else {
            bytes::Bytes::from(self.transcode(to, frame))
        }
    }

    /// The byte that encodes silence (linear 0).
    pub fn silence(self) -> u8 {
        self.implementation().silence()
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
        assert_eq!(Codec::Pcma.transcode(Codec::Pcmu, &a).len(), u.len());
        assert_eq!(Codec::from_payload_type(9), None);
        assert_eq!(Codec::from_name("pcma"), Some(Codec::Pcma));
        for codec in ALL {
            let imp = codec.implementation();
            assert_eq!(
                (imp.id(), imp.clock_rate(), imp.frame_ms(), imp.frame_bytes()),
                (codec, 8000, 20, 160)
            );
            assert!(codec.decode(&[codec.silence()])[0].abs() <= 8, "{codec:?} silence");
        }
        // The G.711 law-conversion tables keep each value within one quantisation step.
        for (x, y) in Codec::Pcmu.decode(&u).iter().zip(Codec::Pcma.decode(&a)) {
            let (x, y) = (i32::from(*x), i32::from(y));
            assert!((x - y).abs() <= (x.abs() / 16).max(16), "{x} vs {y}");
        }
    }
}
