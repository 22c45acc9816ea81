//! Generated audio: the beep that tells a caller to start speaking and runs of silence, as
//! ready-to-send G.711 frames of [`SAMPLES_PER_FRAME`] bytes (20 ms each).

use crate::codec::{Codec, SAMPLE_RATE, SAMPLES_PER_FRAME};
use bytes::Bytes;

/// Peak amplitude of a beep: about −10 dBFS, loud and clear without clipping the G.711 range.
const BEEP_AMPLITUDE: f64 = 10_000.0;

/// Length of the fade-in and fade-out of a beep, so that it starts and stops without a click.
const FADE_MS: u32 = 5;

/// Number of samples in `ms` milliseconds.
fn samples_for(ms: u32) -> usize {
    (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as usize
}

/// Cuts linear samples into frames of the codec, padding the last frame with silence.
fn frames(codec: Codec, samples: &[i16]) -> Vec<Bytes> {
    samples
        .chunks(SAMPLES_PER_FRAME)
        .map(|chunk| {
            let mut frame = codec.encode(chunk);
            frame.resize(SAMPLES_PER_FRAME, codec.silence());
            Bytes::from(frame)
        })
        .collect()
}

/// A sine tone of `hz` lasting `ms` milliseconds (rounded up to whole 20 ms frames, the rest
/// silent), with a 5 ms raised-cosine fade at each end. Frequencies at or above the Nyquist
/// limit (4 kHz) cannot be represented and give silence.
pub fn beep(codec: Codec, ms: u32, hz: u32) -> Vec<Bytes> {
    let n = samples_for(ms);
    if hz == 0 || hz >= SAMPLE_RATE / 2 {
        return silence(codec, ms);
    }
    let fade = samples_for(FADE_MS).min(n / 2).max(1);
    let step = std::f64::consts::TAU * f64::from(hz) / f64::from(SAMPLE_RATE);
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = if edge < fade {
                0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / fade as f64).cos()
            } else {
                1.0
            };
            (BEEP_AMPLITUDE * gain * (step * i as f64).sin()).round() as i16
        })
        .collect();
    frames(codec, &samples)
}

/// `ms` milliseconds of silence (rounded up to whole 20 ms frames).
pub fn silence(codec: Codec, ms: u32) -> Vec<Bytes> {
    let count = samples_for(ms).div_ceil(SAMPLES_PER_FRAME);
    let frame = Bytes::from(vec![codec.silence(); SAMPLES_PER_FRAME]);
    vec![frame; count]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn beep_frames_have_tone_and_fades() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let frames = beep(codec, 250, 1000);
            // 250 ms → 13 frames, the last half silent.
            assert_eq!(frames.len(), 13);
            assert!(frames.iter().all(|f| f.len() == SAMPLES_PER_FRAME));
            let pcm: Vec<i16> = frames.iter().flat_map(|f| codec.decode(f)).collect();
            // Starts and ends quietly (fade), loud in the middle, no clipping.
            assert!(pcm[0].abs() < 200, "{}", pcm[0]);
            assert!(pcm[1999].abs() < 400, "{}", pcm[1999]);
            let middle = rms(&pcm[400..1600]);
            assert!((6500.0..7600.0).contains(&middle), "rms {middle}");
            assert!(pcm.iter().all(|&s| s.abs() <= 10_500));
            // The padding after 250 ms is silence.
            assert!(pcm[2000..].iter().all(|&s| s.abs() < 16));
            // 1 kHz: 8 samples per period, so 2 zero crossings per 8 samples.
            let crossings = pcm[400..1600].windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
            assert!((290..=310).contains(&crossings), "{crossings}");
        }
    }

    #[test]
    fn silence_and_edge_cases() {
        let s = silence(Codec::Pcmu, 1000);
        assert_eq!(s.len(), 50);
        assert!(
            s.iter()
                .all(|f| f.len() == 160 && f.iter().all(|&b| b == Codec::Pcmu.silence()))
        );
        assert_eq!(silence(Codec::Pcma, 10).len(), 1);
        assert!(silence(Codec::Pcma, 0).is_empty());
        assert!(beep(Codec::Pcmu, 0, 440).is_empty());
        assert_eq!(beep(Codec::Pcma, 20, 5000), silence(Codec::Pcma, 20));
        // A 1 ms beep does not panic on the fade arithmetic.
        assert_eq!(beep(Codec::Pcmu, 1, 440).len(), 1);
    }
}
