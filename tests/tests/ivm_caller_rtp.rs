//! What the server records and streams when the caller's RTP is not a
//! perfect loopback stream: reordered and duplicated packets, RFC 4733
//! key presses between the audio, a new SSRC in the middle of the message.
//!
//! The caller's signalling is SIPp (`ivm_caller_silent.xml`, from the
//! trusted 127.0.0.2); its SDP points at a test-owned UDP port, which hears
//! the server's beep (and so learns the server's RTP address) and then
//! sends the 4 s test audio from that same port, packet by packet as each
//! test arranges it, paced at 20 ms. A SIPp target answers at once; the
//! test compares what the target heard and what `messages export` holds
//! with the audio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ivm_e2e::audio::{self, FRAME_BYTES};
use ivm_e2e::ivm::{
    CALLER_IP, CALLER_NUMBER, Law, Target, TargetTrunk, export_wav, list_messages, start_ivm_server,
    wait_messages_settled,
};
use ivm_e2e::rtp::{RtpSink, StreamReport, build_packet, first_difference};
use ivm_e2e::{Server, Sipp};

/// One datagram the "phone" sends, and how long after the previous one.
struct Send {
    packet: Vec<u8>,
    gap: Duration,
}

fn audio_packet(frame: usize, seq0: u16, ts0: u32, ssrc: u32, audio: &[u8]) -> Vec<u8> {
    let idx = u16::try_from(frame).unwrap_or(0);
    let ts = ts0.wrapping_add(u32::try_from(frame * FRAME_BYTES).unwrap_or(0));
    build_packet(
        0,
        frame == 0,
        seq0.wrapping_add(idx),
        ts,
        ssrc,
        &audio[frame * FRAME_BYTES..(frame + 1) * FRAME_BYTES],
    )
}

const FRAME: Duration = Duration::from_millis(20);

/// Places an IVM call whose audio is `plan`, to a target that answers at
/// once; returns the server (for the store) and what the target heard.
fn call_with(plan: Vec<Send>) -> (Server, ivm_e2e::ivm::TargetResult) {
    let trunk = TargetTrunk::new("pstn", r"1\d{3}");
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target =
        Target::start("ivm_target_answer.xml", trunk.port, Law::Pcmu, Duration::from_secs(15)).expect("start target");
    let phone = RtpSink::bind().expect("caller RTP port");
    let call = Sipp::new("ivm_caller_silent.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("rtp_ip", "127.0.0.1")
        .key("rtp_port", phone.port())
        .args(&["-d", "5500"])
        .spawn(server.addr)
        .expect("start caller");
    // The beep tells where the server's RTP socket for this call is.
    let beep = phone.first_packet(Duration::from_secs(5)).expect("the server's beep");
    let server_rtp: SocketAddr = beep.from;
    let mut at = Instant::now();
    for s in plan {
        at += s.gap;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        phone.send_to(&s.packet, server_rtp).expect("send RTP");
    }
    call.wait().expect("caller").assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    (server, t)
}

/// Asserts that both the target and the store hold exactly `audio`.
fn assert_message_is(server: &Server, t: &ivm_e2e::ivm::TargetResult, audio: &[u8], what: &str) {
    wait_messages_settled(server, 1, Duration::from_secs(15)).expect("message complete");
    let m = list_messages(server).expect("messages list").remove(0);
    let wav = export_wav(server, m.id).expect("messages export");
    let want = audio::decode_ulaw(audio);
    let stored = wav.samples == want;
    let report = StreamReport::of(&t.sink.packets(), 0);
    let heard = first_difference(&report.payload, audio);
    let mut problems = Vec::new();
    if !stored {
        let first = wav.samples.iter().zip(&want).position(|(a, b)| a != b);
        problems.push(format!(
            "the stored message ({} samples, listed duration_ms {}) is not the audio sent ({} samples); first \
             difference at sample {first:?} (frame {:?})",
            wav.samples.len(),
            m.duration_ms,
            want.len(),
            first.map(|i| i / FRAME_BYTES)
        ));
    }
    if let Some(d) = heard {
        problems.push(format!(
            "the target did not hear the audio sent: {d}\n  {}",
            report.summary()
        ));
    }
    if !report.seq_gaps.is_empty() || report.ssrcs.len() != 1 {
        problems.push(format!(
            "the target's stream is not one continuous stream: {}",
            report.summary()
        ));
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn reordered_and_duplicated_packets_are_recorded_in_order() {
    let audio = audio::sweep_4s();
    let frames = audio.len() / FRAME_BYTES;
    let (seq0, ts0, ssrc) = (40_000u16, 123_456u32, 0x1234_5678u32);
    let mut order: Vec<usize> = (0..frames).collect();
    // Every tenth pair swapped (k+1 arrives before k), starting at frame 15.
    for k in (15..frames - 1).step_by(10) {
        order.swap(k, k + 1);
    }
    let mut plan = Vec::new();
    for (i, &f) in order.iter().enumerate() {
        plan.push(Send {
            packet: audio_packet(f, seq0, ts0, ssrc, &audio),
            gap: if i == 0 { Duration::ZERO } else { FRAME },
        });
        if f == 50 || f == 120 {
            // A duplicate right after the original.
            plan.push(Send {
                packet: audio_packet(f, seq0, ts0, ssrc, &audio),
                gap: Duration::from_millis(2),
            });
        }
    }
    let (server, t) = call_with(plan);
    assert_message_is(
        &server,
        &t,
        &audio,
        "every 10th pair of packets swapped, two packets duplicated",
    );
}

#[test]
fn key_presses_between_the_audio_stay_out_of_the_message() {
    // RFC 4733: a caller pressing "5" sends telephone-event packets (PT 101)
    // between its audio packets; they are not audio.
    let audio = audio::sweep_4s();
    let frames = audio.len() / FRAME_BYTES;
    let (seq0, ts0, ssrc) = (1_000u16, 8_000u32, 0x0bad_cafeu32);
    let mut plan = Vec::new();
    let mut extra: u16 = 0;
    for f in 0..frames {
        let idx = u16::try_from(f).unwrap_or(0);
        let mut p = audio_packet(f, seq0, ts0, ssrc, &audio);
        // The audio packets after the key press take later sequence numbers.
        let seq = seq0.wrapping_add(idx).wrapping_add(extra);
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        plan.push(Send {
            packet: p,
            gap: if f == 0 { Duration::ZERO } else { FRAME },
        });
        if (60..66).contains(&f) {
            // Event 5, volume 10, growing duration; end bit on the last one.
            let event_ts = ts0.wrapping_add(60 * 160);
            let duration = u16::try_from((f - 59) * 160).unwrap_or(0);
            let end = if f == 65 { 0x80 } else { 0 };
            let mut payload = vec![5u8, end | 10];
            payload.extend_from_slice(&duration.to_be_bytes());
            extra += 1;
            let seq = seq0.wrapping_add(idx).wrapping_add(extra);
            plan.push(Send {
                packet: build_packet(101, f == 60, seq, event_ts, ssrc, &payload),
                gap: Duration::from_millis(5),
            });
        }
    }
    let (server, t) = call_with(plan);
    assert_message_is(&server, &t, &audio, "telephone-event packets between the audio");
}

#[test]
fn a_new_ssrc_in_the_middle_of_the_message_continues_the_recording() {
    // The caller's media source changes half way (a PBX re-anchoring media,
    // a transfer): new SSRC, new sequence and timestamp bases (RFC 3550
    // §8.2: a new source). The message must go on, not stop or jump.
    let audio = audio::sweep_4s();
    let frames = audio.len() / FRAME_BYTES;
    let mut plan = Vec::new();
    for f in 0..frames {
        let packet = if f < 100 {
            audio_packet(f, 7_000, 1_000_000, 0xaaaa_0001, &audio)
        } else {
            // Same frame, second source: its own bases, starting at frame 100.
            let mut p = audio_packet(
                f,
                50_000u16.wrapping_sub(100),
                3_000_000_000u32.wrapping_sub(100 * 160),
                0xbbbb_0002,
                &audio,
            );
            if f == 100 {
                p[1] |= 0x80;
            }
            p
        };
        plan.push(Send {
            packet,
            gap: if f == 0 { Duration::ZERO } else { FRAME },
        });
    }
    let (server, t) = call_with(plan);
    assert_message_is(
        &server,
        &t,
        &audio,
        "SSRC, sequence and timestamp bases change at frame 100",
    );
}
