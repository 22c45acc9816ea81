//! Test audio: the committed G.711 files in `sipp-scenarios/audio/`, the
//! G.711 rules to compare what was sent with what came out (μ-law and A-law
//! decoding, A-law encoding), and a WAV reader for `messages export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::paths;

/// Bytes (= samples) per 20 ms G.711 frame.
pub const FRAME_BYTES: usize = 160;

/// `sipp-scenarios/audio/sweep-4s.ul`: 4 s of μ-law (32,000 bytes, 200
/// frames, each one different; see `make-audio.py`).
pub fn sweep_4s_path() -> PathBuf {
    paths::scenario_dir().join("audio").join("sweep-4s.ul")
}

/// The bytes of [`sweep_4s_path`].
pub fn sweep_4s() -> Vec<u8> {
    let path = sweep_4s_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(bytes.len(), 32_000, "{} should hold 4 s of 8 kHz μ-law", path.display());
    bytes
}

/// G.711 μ-law to 16-bit linear (ITU-T G.711 / G.191 expansion).
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    let v = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    i16::try_from(v).unwrap_or(if v < 0 { i16::MIN } else { i16::MAX })
}

/// G.711 A-law to 16-bit linear.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    i16::try_from(v).unwrap_or(if v < 0 { i16::MIN } else { i16::MAX })
}

/// 16-bit linear to G.711 A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = i32::from(pcm) >> 3;
    let mask: u8 = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|&end| v <= end) else {
        return 0x7f ^ mask;
    };
    let shift = if seg < 2 { 1 } else { seg };
    let aval = (u8::try_from(seg).unwrap_or(7) << 4) | u8::try_from((v >> shift) & 0x0f).unwrap_or(0);
    aval ^ mask
}

/// μ-law bytes decoded to linear samples.
pub fn decode_ulaw(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().copied().map(ulaw_to_linear).collect()
}

/// A-law bytes decoded to linear samples.
pub fn decode_alaw(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().copied().map(alaw_to_linear).collect()
}

/// Whether an A-law sample is the linear one converted (see [`g711_close`]):
/// tells a correct μ-law → A-law conversion from raw μ-law bytes labelled as
/// A-law.
pub fn alaw_close_to(alaw: u8, linear: i16) -> bool {
    g711_close(alaw_to_linear(alaw), linear)
}

/// Whether two linear samples are the same sound up to one G.711 quantisation
/// step (μ-law and A-law steps are about 1/16 of the magnitude, and 16 near 0):
/// tells a correct law conversion from wrong bytes.
pub fn g711_close(got: i16, want: i16) -> bool {
    let (got, want) = (i32::from(got), i32::from(want));
    (got - want).abs() <= 32 + want.abs() / 8
}

/// A 16-bit PCM WAV file.
#[derive(Debug)]
pub struct Wav {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    pub format: u16,
    pub samples: Vec<i16>,
}

/// Reads a RIFF/WAVE file with a PCM `fmt ` chunk and a `data` chunk.
pub fn read_wav(path: &Path) -> anyhow::Result<Wav> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("{} is not a RIFF/WAVE file ({} bytes)", path.display(), bytes.len());
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut pos = 12;
    let mut fmt = None;
    let mut data = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = usize::try_from(u32_at(pos + 4))?;
        let body = pos + 8;
        let end = body.checked_add(len).filter(|&e| e <= bytes.len());
        let Some(end) = end else {
            bail!(
                "{}: chunk {:?} runs past the end of the file",
                path.display(),
                String::from_utf8_lossy(id)
            );
        };
        match id {
            b"fmt " if len >= 16 => fmt = Some((u16_at(body), u16_at(body + 2), u32_at(body + 4), u16_at(body + 14))),
            b"data" => data = Some(&bytes[body..end]),
            _ => {}
        }
        pos = end + (len & 1);
    }
    let (format, channels, sample_rate, bits_per_sample) =
        fmt.with_context(|| format!("{}: no fmt chunk", path.display()))?;
    let data = data.with_context(|| format!("{}: no data chunk", path.display()))?;
    if bits_per_sample != 16 {
        bail!("{}: {bits_per_sample} bits per sample, expected 16", path.display());
    }
    let samples = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    Ok(Wav {
        channels,
        sample_rate,
        bits_per_sample,
        format,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_reference_points() {
        // ITU-T G.711 tables: 0xff/0x7f are ±0, 0x80 is the largest positive μ-law code.
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        // A-law round trip over all codes.
        for a in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(a)), a, "A-law code {a:#04x}");
        }
    }
}
