//! The voice prompts the server plays: real English speech synthesised by espeak-ng and
//! converted by sox to 8 kHz headerless G.711 μ-law (`prompts/generate.sh` at the repo root
//! makes them; `prompts/README.md` says how and which versions). Each file is embedded in the
//! binary with `include_bytes!`, so playing a prompt needs no file system.
//!
//! [`frames`] cuts a prompt into 20 ms frames (160 bytes) ready for RTP in either law — PCMU
//! straight from the embedded bytes, PCMA converted with the G.711 law-conversion tables — the
//! last frame padded with the codec's silence. [`sequence`] plays prompts one after the other
//! and [`number`] speaks a count digit by digit ("four two" for 42). Every prompt ends with
//! 0.15 s of silence, so prompts in a row don't run into each other.

use bytes::Bytes;

use crate::codec::{Codec, SAMPLES_PER_FRAME};

/// A recorded voice prompt (one file in `prompts/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "You have reached your voice mailbox."
    Welcome,
    /// "new messages"
    NewMessages,
    /// "saved messages"
    SavedMessages,
    /// "You have no messages."
    NoMessages,
    /// "Message from"
    MessageFrom,
    /// "This message is still being recorded."
    StillRecording,
    /// "Press 1 to join the sender, 2 to replay, 3 to reply, 7 to delete, 9 to save, or pound
    /// for the next message."
    Menu,
    /// "Message deleted."
    Deleted,
    /// "Message saved."
    Saved,
    /// "Please enter your PIN, followed by pound."
    EnterPin,
    /// "That PIN is not correct."
    WrongPin,
    /// "This message is not for you."
    NotAllowed,
    /// "This message does not exist."
    NotFound,
    /// "Goodbye."
    Goodbye,
    /// "Record your reply after the tone."
    RecordReply,
    /// "No more messages."
    EndOfMessages,
    /// "The person you are calling is not available. Your message will be delivered."
    Unavailable,
    /// "zero" … "nine". A value above 9 has no recording and plays nothing.
    Digit(u8),
}

macro_rules! ul {
    ($id:literal) => {
        include_bytes!(concat!("../../prompts/", $id, ".ul"))
    };
}

/// The digit recordings, "zero" to "nine".
static DIGITS: [&[u8]; 10] = [
    ul!("digit_0"),
    ul!("digit_1"),
    ul!("digit_2"),
    ul!("digit_3"),
    ul!("digit_4"),
    ul!("digit_5"),
    ul!("digit_6"),
    ul!("digit_7"),
    ul!("digit_8"),
    ul!("digit_9"),
];

impl Prompt {
    /// Every prompt, each digit included once.
    pub const ALL: [Prompt; 27] = [
        Prompt::Welcome,
        Prompt::NewMessages,
        Prompt::SavedMessages,
        Prompt::NoMessages,
        Prompt::MessageFrom,
        Prompt::StillRecording,
        Prompt::Menu,
        Prompt::Deleted,
        Prompt::Saved,
        Prompt::EnterPin,
        Prompt::WrongPin,
        Prompt::NotAllowed,
        Prompt::NotFound,
        Prompt::Goodbye,
        Prompt::RecordReply,
        Prompt::EndOfMessages,
        Prompt::Unavailable,
        Prompt::Digit(0),
        Prompt::Digit(1),
        Prompt::Digit(2),
        Prompt::Digit(3),
        Prompt::Digit(4),
        Prompt::Digit(5),
        Prompt::Digit(6),
        Prompt::Digit(7),
        Prompt::Digit(8),
        Prompt::Digit(9),
    ];

    /// The file name without `.ul` (the id in `prompts/generate.sh`); `None` for a digit above 9.
    pub fn id(self) -> Option<&'static str> {
        const DIGIT_IDS: [&str; 10] = [
            "digit_0", "digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "digit_6", "digit_7", "digit_8",
            "digit_9",
        ];
        Some(match self {
            Prompt::Welcome => "welcome",
            Prompt::NewMessages => "new_messages",
            Prompt::SavedMessages => "saved_messages",
            Prompt::NoMessages => "no_messages",
            Prompt::MessageFrom => "message_from",
            Prompt::StillRecording => "still_recording",
            Prompt::Menu => "menu",
            Prompt::Deleted => "deleted",
            Prompt::Saved => "saved",
            Prompt::EnterPin => "enter_pin",
            Prompt::WrongPin => "wrong_pin",
            Prompt::NotAllowed => "not_allowed",
            Prompt::NotFound => "not_found",
            Prompt::Goodbye => "goodbye",
            Prompt::RecordReply => "record_reply",
            Prompt::EndOfMessages => "end_of_messages",
            Prompt::Unavailable => "unavailable",
            Prompt::Digit(d) => DIGIT_IDS.get(usize::from(d))?,
        })
    }

    /// The recording: 8 kHz G.711 μ-law, one byte per sample (empty for a digit above 9).
    pub fn pcmu(self) -> &'static [u8] {
        match self {
            Prompt::Welcome => ul!("welcome"),
            Prompt::NewMessages => ul!("new_messages"),
            Prompt::SavedMessages => ul!("saved_messages"),
            Prompt::NoMessages => ul!("no_messages"),
            Prompt::MessageFrom => ul!("message_from"),
            Prompt::StillRecording => ul!("still_recording"),
            Prompt::Menu => ul!("menu"),
            Prompt::Deleted => ul!("deleted"),
            Prompt::Saved => ul!("saved"),
            Prompt::EnterPin => ul!("enter_pin"),
            Prompt::WrongPin => ul!("wrong_pin"),
            Prompt::NotAllowed => ul!("not_allowed"),
            Prompt::NotFound => ul!("not_found"),
            Prompt::Goodbye => ul!("goodbye"),
            Prompt::RecordReply => ul!("record_reply"),
            Prompt::EndOfMessages => ul!("end_of_messages"),
            Prompt::Unavailable => ul!("unavailable"),
            Prompt::Digit(d) => DIGITS.get(usize::from(d)).copied().unwrap_or(&[]),
        }
    }
}

/// The prompt as 20 ms frames of `codec` (160 bytes each, the last padded with silence).
pub fn frames(p: Prompt, codec: Codec) -> Vec<Bytes> {
    let audio = p.pcmu();
    let mut out = Vec::with_capacity(audio.len().div_ceil(SAMPLES_PER_FRAME));
    for chunk in audio.chunks(SAMPLES_PER_FRAME) {
        if codec == Codec::Pcmu && chunk.len() == SAMPLES_PER_FRAME {
            // Straight from the binary: no copy.
            out.push(Bytes::from_static(chunk));
            continue;
        }
        let mut frame = Codec::Pcmu.transcode(codec, chunk);
        frame.resize(SAMPLES_PER_FRAME, codec.silence());
        out.push(Bytes::from(frame));
    }
    out
}

/// The prompts one after the other, as 20 ms frames of `codec`.
pub fn sequence(parts: &[Prompt], codec: Codec) -> Vec<Bytes> {
    parts.iter().flat_map(|&p| frames(p, codec)).collect()
}

/// The digits of `n` spoken one by one ("four two" for 42, "zero" for 0).
pub fn digits(n: u32) -> Vec<Prompt> {
    n.to_string().bytes().map(|b| Prompt::Digit(b - b'0')).collect()
}

/// `n` spoken digit by digit, as 20 ms frames of `codec`.
pub fn number(n: u32, codec: Codec) -> Vec<Bytes> {
    sequence(&digits(n), codec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::SAMPLE_RATE;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn every_prompt_has_audio_in_whole_frames() {
        for p in Prompt::ALL {
            assert!(!p.pcmu().is_empty(), "{p:?}");
            assert!(p.id().is_some(), "{p:?}");
            for codec in [Codec::Pcmu, Codec::Pcma] {
                let f = frames(p, codec);
                assert_eq!(f.len(), p.pcmu().len().div_ceil(SAMPLES_PER_FRAME), "{p:?}");
                assert!(
                    f.iter().all(|frame| frame.len() == SAMPLES_PER_FRAME),
                    "{p:?} {codec:?}"
                );
            }
        }
        let ids: std::collections::HashSet<_> = Prompt::ALL.iter().map(|p| p.id()).collect();
        assert_eq!(ids.len(), Prompt::ALL.len());
        assert_eq!(Prompt::Digit(10).id(), None);
        assert!(frames(Prompt::Digit(10), Codec::Pcmu).is_empty());
    }

    #[test]
    fn pcmu_frames_are_the_file_and_the_tail_is_padded_with_silence() {
        let audio = Prompt::Welcome.pcmu();
        let f = frames(Prompt::Welcome, Codec::Pcmu);
        let joined: Vec<u8> = f.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(&joined[..audio.len()], audio);
        assert!(joined[audio.len()..].iter().all(|&b| b == Codec::Pcmu.silence()));
    }

    #[test]
    fn pcma_frames_are_the_law_conversion() {
        let p = Prompt::Menu;
        let u = frames(p, Codec::Pcmu);
        let a = frames(p, Codec::Pcma);
        assert_eq!(u.len(), a.len());
        let audio = p.pcmu();
        let joined: Vec<u8> = a.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(&joined[..audio.len()], Codec::Pcmu.transcode(Codec::Pcma, audio));
        assert!(joined[audio.len()..].iter().all(|&b| b == Codec::Pcma.silence()));
        assert_ne!(u, a);
        // The same sound: per frame, the decoded energies agree within a few percent.
        for (fu, fa) in u.iter().zip(&a) {
            let (eu, ea) = (rms(&Codec::Pcmu.decode(fu)), rms(&Codec::Pcma.decode(fa)));
            assert!((eu - ea).abs() <= eu * 0.05 + 16.0, "{eu} vs {ea}");
        }
    }

    #[test]
    fn numbers_are_spoken_digit_by_digit() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut expected = frames(Prompt::Digit(4), codec);
            expected.extend(frames(Prompt::Digit(2), codec));
            assert_eq!(number(42, codec), expected);
            assert_eq!(number(0, codec), frames(Prompt::Digit(0), codec));
        }
        assert_eq!(digits(1_000_907).len(), 7);
        assert_eq!(digits(u32::MAX).first(), Some(&Prompt::Digit(4)));
        assert_eq!(
            sequence(&[Prompt::NoMessages, Prompt::Goodbye], Codec::Pcma).len(),
            frames(Prompt::NoMessages, Codec::Pcma).len() + frames(Prompt::Goodbye, Codec::Pcma).len()
        );
    }

    /// Why `samples` (8 kHz) don't sound like a trimmed prompt, or `None` when they do.
    fn not_speech(samples: &[i16]) -> Option<String> {
        let rate = SAMPLE_RATE as usize;
        let seconds = samples.len() as f64 / rate as f64;
        if !(0.3..=10.0).contains(&seconds) {
            return Some(format!("{seconds} s long"));
        }
        // Loud enough overall: normalised to -3 dBFS peak, the prompts measure ~2300-4500 RMS.
        let energy = rms(samples);
        if energy <= 1000.0 {
            return Some(format!("RMS {energy}"));
        }
        // Trimmed at the start (the first 100 ms carries sound), padded at the end (the last
        // 100 ms is silent).
        let (head, tail) = (rms(&samples[..rate / 10]), rms(&samples[samples.len() - rate / 10..]));
        if head <= 300.0 || tail >= 50.0 {
            return Some(format!("head RMS {head}, tail RMS {tail}"));
        }
        // Speech, not a steady tone or noise: over the spoken part (before the 0.15 s pad) the
        // level moves a lot from frame to frame (syllables, stops), many frames are loud, and
        // the zero-crossing rate swings between voiced sounds and fricatives.
        let body = &samples[..samples.len() - rate * 3 / 20];
        let frames: Vec<&[i16]> = body.chunks_exact(SAMPLES_PER_FRAME).collect();
        let level: Vec<f64> = frames.iter().map(|f| rms(f)).collect();
        let mean = level.iter().sum::<f64>() / level.len() as f64;
        let sd = (level.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / level.len() as f64).sqrt();
        let loud = level.iter().filter(|&&e| e > 1000.0).count();
        let crossings: Vec<usize> = frames
            .iter()
            .map(|f| f.windows(2).filter(|w| (w[0] >= 0) != (w[1] >= 0)).count())
            .collect();
        let zc_spread = crossings.iter().max().unwrap_or(&0) - crossings.iter().min().unwrap_or(&0);
        if sd / mean < 0.25 || loud * 4 < level.len() || zc_spread < 15 {
            return Some(format!(
                "level CV {:.2}, {loud} of {} frames loud, zero-crossing spread {zc_spread}",
                sd / mean,
                level.len()
            ));
        }
        None
    }

    #[test]
    fn every_file_is_speech_like() {
        for p in Prompt::ALL {
            if let Some(why) = not_speech(&Codec::Pcmu.decode(p.pcmu())) {
                panic!("{p:?} ({}.ul): {why}", p.id().unwrap_or("?"));
            }
        }
        // The check tells speech from a steady tone, noise-free silence, or a click.
        let tone = |len: usize, amp: f64| -> Vec<i16> {
            (0..len)
                .map(|i| (amp * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16)
                .chain(std::iter::repeat_n(0, 1200))
                .collect()
        };
        assert!(not_speech(&tone(16000, 8000.0)).is_some());
        assert!(not_speech(&tone(16000, 300.0)).is_some());
        assert!(not_speech(&vec![0; 16000]).is_some());
        assert!(not_speech(&tone(800, 8000.0)).is_some());
    }
}
