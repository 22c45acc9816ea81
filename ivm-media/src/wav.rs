//! WAV files: exporting a stored message as 8 kHz, 16-bit, mono PCM (`messages export ID
//! --wav FILE`) and reading such files back (for tests and prompts), through `hound`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::codec::{Codec, SAMPLE_RATE};

/// WAV export and import failures.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("WAV file {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("WAV file {path}: {why}")]
    Unsupported { path: PathBuf, why: String },
}

/// Writes G.711 `frames` of `codec` to `path` as 8 kHz, 16-bit, mono PCM (replacing the file).
pub fn export(frames: &[Bytes], codec: Codec, path: &Path) -> Result<(), WavError> {
    let err = |source| WavError::Wav {
        path: path.to_owned(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(err)?;
    for frame in frames {
        for sample in codec.decode(frame) {
            writer.write_sample(sample).map_err(err)?;
        }
    }
    writer.finalize().map_err(err)
}

/// Reads a 16-bit integer PCM mono WAV file: its sample rate and samples.
pub fn read_pcm16(path: &Path) -> Result<(u32, Vec<i16>), WavError> {
    let err = |source| WavError::Wav {
        path: path.to_owned(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(err)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 || spec.channels != 1 {
        return Err(WavError::Unsupported {
            path: path.to_owned(),
            why: format!(
                "expected 16-bit integer mono PCM, found {} channel(s) of {}-bit {:?}",
                spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        });
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok((spec.sample_rate, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(codec: Codec) -> Vec<Bytes> {
        (0..7)
            .map(|k: i32| {
                let pcm: Vec<i16> = (0..160)
                    .map(|i| ((i * 409 + k * 1201) % 30000 - 15000) as i16)
                    .collect();
                Bytes::from(codec.encode(&pcm))
            })
            .collect()
    }

    #[test]
    fn export_then_read_gives_the_decoded_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let frames = frames(codec);
            let path = dir.path().join(format!("{}.wav", codec.name()));
            export(&frames, codec, &path).expect("export");
            let (rate, samples) = read_pcm16(&path).expect("read");
            assert_eq!(rate, 8000);
            let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            assert_eq!(samples, codec.decode(&all));
            assert_eq!(samples.len(), 7 * 160);
        }
    }

    #[test]
    fn empty_export_and_wrong_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.wav");
        export(&[], Codec::Pcmu, &path).expect("export");
        assert_eq!(read_pcm16(&path).expect("read"), (8000, Vec::new()));

        let stereo = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&stereo, spec).expect("create");
        w.write_sample(1i16).expect("sample");
        w.write_sample(2i16).expect("sample");
        w.finalize().expect("finalize");
        assert!(matches!(read_pcm16(&stereo), Err(WavError::Unsupported { .. })));

        let garbage = dir.path().join("garbage.wav");
        std::fs::write(&garbage, b"not a wav file").expect("write");
        assert!(matches!(read_pcm16(&garbage), Err(WavError::Wav { .. })));
        assert!(matches!(
            export(&[], Codec::Pcmu, &dir.path().join("no/such/dir.wav")),
            Err(WavError::Wav { .. })
        ));
    }
}
