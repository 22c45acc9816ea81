//! The interface every codec implements ([`AudioCodec`]), the id that names one ([`Codec`]),
//! and the framing all of today's codecs share.

/// Samples per second of G.711.
pub const SAMPLE_RATE: u32 = 8000;
/// Milliseconds of audio in one frame (one RTP packet).
pub const FRAME_MS: u32 = 20;
/// Samples (= bytes of G.711) in one frame.
pub const SAMPLES_PER_FRAME: usize = 160;

/// What a codec is and does: its RTP identity, its framing, and the way to and from 16-bit
/// linear samples.
pub trait AudioCodec: Send + Sync + 'static {
    /// Its id.
    fn id(&self) -> Codec;
    /// The encoding name of an `a=rtpmap` line.
    fn name(&self) -> &'static str;
    /// The RTP clock rate.
    fn clock_rate(&self) -> u32 {
        SAMPLE_RATE
    }
    /// The static RTP payload type (RFC 3551).
    fn payload_type(&self) -> u8;
    /// Milliseconds of audio in one frame (one RTP packet).
    fn frame_ms(&self) -> u32 {
        FRAME_MS
    }
    /// Bytes of one frame.
    fn frame_bytes(&self) -> usize {
        SAMPLES_PER_FRAME
    }
    /// The byte that encodes silence (linear 0).
    fn silence(&self) -> u8;
    /// Its bytes as 16-bit linear samples.
    fn decode(&self, data: &[u8]) -> Vec<i16>;
    /// 16-bit linear samples as its bytes.
    fn encode(&self, samples: &[i16]) -> Vec<u8>;
    /// A direct conversion into codec `to`, when one exists that is better than decoding and
    /// encoding (the G.711 law tables); `None` otherwise.
    fn convert(&self, _to: Codec, _data: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// A codec's id: what SDP negotiates, records carry and legs pass around (`Copy`); the
/// implementation is [`Codec::implementation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}
