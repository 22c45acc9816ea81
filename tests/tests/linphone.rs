//! Real phones, the second kind: two linphonec 5.1 (Debian `linphone-cli`) register with the
//! shipped default digest config, 1001 sends a live IVM to 1002, which answers at once and
//! hears it; the message is stored. Audio is checked by correlation (the phones decode and
//! re-encode), frame by frame.
//!
//! linphonec offers the address of its default route in its SDP, so the test runs in a
//! network namespace of its own with only `lo` (root needed). Skipped with a message where
//! linphonec is not installed (`./test.sh` installs it) or the namespace cannot be made.

use std::time::Duration;

use ivm_e2e::audio::{decode_ulaw, sweep_4s};
use ivm_e2e::ivm::export_wav;
use ivm_e2e::linphone::{self, Linphone, LinphoneConfig};
use ivm_e2e::notify::{messages, wait_delivery};
use ivm_e2e::{Server, wait_for};

/// Normalised correlation of two equally long stretches.
fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let energy = |s: &[i16]| s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    let den = (energy(a) * energy(b)).sqrt();
    if den == 0.0 { 0.0 } else { dot / den }
}

/// How many 20 ms frames of `sent` are heard (correlation above 0.99) in `heard`, near where
/// they belong: the place of frame 50 is found first, each frame is then looked for within
/// 120 ms of its expected place (a phone's jitter buffer moves things a little).
fn frames_heard(heard: &[i16], sent: &[i16]) -> usize {
    const F: usize = 160;
    let probe = &sent[50 * F..51 * F];
    let Some(at) = (0..heard.len().saturating_sub(F))
        .max_by(|&x, &y| correlation(&heard[x..x + F], probe).total_cmp(&correlation(&heard[y..y + F], probe)))
    else {
        return 0;
    };
    let start = at as i64 - 50 * F as i64;
    sent.chunks_exact(F)
        .enumerate()
        .filter(|(k, frame)| {
            let expected = start + (*k * F) as i64;
            let from = (expected - 6 * F as i64).max(0) as usize;
            let to = ((expected + 6 * F as i64).max(0) as usize).min(heard.len().saturating_sub(F));
            (from..=to).any(|o| o + F <= heard.len() && correlation(&heard[o..o + F], frame) > 0.99)
        })
        .count()
}

#[test]
fn linphone_phones_register_and_one_hears_the_others_live_ivm() {
    if !linphone::available() {
        eprintln!("SKIPPED: linphonec is not installed (./test.sh installs the Debian package `linphone-cli`)");
        return;
    }
    if let Err(e) = linphone::own_network() {
        eprintln!("SKIPPED: no network namespace of its own for linphonec: {e:#}");
        return;
    }
    let server = Server::start_with_subscribers("", &[("1001", "pw-1001"), ("1002", "pw-1002")]).expect("server");
    let sweep = decode_ulaw(&sweep_4s());
    let bob = Linphone::start(&LinphoneConfig {
        number: "1002",
        password: "pw-1002",
        server: server.addr,
        microphone: &[0; 8000],
        auto_answer: true,
    })
    .expect("start 1002's linphonec");
    let mut alice = Linphone::start(&LinphoneConfig {
        number: "1001",
        password: "pw-1001",
        server: server.addr,
        microphone: &sweep,
        auto_answer: false,
    })
    .expect("start 1001's linphonec");
    for (number, phone) in [("1001", &alice), ("1002", &bob)] {
        wait_for(Duration::from_secs(15), "linphonec's registration", || {
            Ok((!server.registrations(number)?.is_empty()).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{number}'s linphonec did not register ({e:#}):\n{}", phone.log()));
    }

    alice.command("call sip:5551002@ivm.local").expect("dial");
    bob.wait_output("connected", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bob.log()));
    // The sweep (4 s) and a little more, then 1001 hangs up.
    std::thread::sleep(Duration::from_millis(5500));
    alice.command("terminate").expect("hang up");
    let id = wait_for(Duration::from_secs(5), "the message", || {
        Ok(messages(&server)?.first().map(|m| m.0))
    })
    .expect("a message");
    wait_delivery(&server, id, "1002", Duration::from_secs(15), "delivered", |d| {
        d.state == "delivered"
    })
    .expect("1002 heard it all");
    bob.wait_output("ended", Duration::from_secs(10))
        .expect("1002's call ends");

    let heard = bob.heard().expect("what 1002 heard");
    let got = frames_heard(&heard, &sweep);
    let stored = export_wav(&server, id).expect("export").samples;
    let kept = frames_heard(&stored, &sweep);
    eprintln!("1002 heard {got} of the 200 frames of the sweep; the store holds {kept}");
    // linphonec's adaptive jitter buffer drops or stretches a few frames, more under load
    // (196 heard on an idle machine, 189 in a full test run); playing every second frame, the
    // bug this guards against, would give about 100.
    assert!(got >= 170, "1002 heard {got} of the 200 frames of 1001's sweep");
    assert!(
        kept >= 195,
        "the stored message holds {kept} of the 200 frames 1001 sent"
    );
}
