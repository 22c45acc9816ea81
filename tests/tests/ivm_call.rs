//! The IVM call end to end: a SIPp caller dials `555` + a target and speaks
//! a known 4 s μ-law file; SIPp targets behind trunks (or a registered
//! subscriber) answer at once, late, never, or busy; the test checks what a
//! user would observe: the RTP the target's phone received (byte for byte,
//! in sequence, one SSRC), the SIP exchanges (CANCEL at the ring timeout,
//! ACK for a 486, BYE at the end, push-to-talk headers), and what the admin
//! CLI reports afterwards (`messages list --json`, `messages export --wav`,
//! `cdr export`).
//!
//! Needs `sipp` on PATH and the release binary
//! (`cargo build --release -p ivm-sipd`). See `harness/ivm.rs` for the rig.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ivm_e2e::audio::{self, FRAME_BYTES};
use ivm_e2e::ivm::{
    CALLER_IP, CALLER_NUMBER, Delivery, Law, Message, Target, TargetResult, TargetTrunk, assert_no_plaintext_audio,
    caller, cdr_rows, export_wav, list_messages, start_ivm_server, subscriber_caller, wait_messages_settled,
};
use ivm_e2e::rtp::{StreamReport, first_difference};
use ivm_e2e::{Server, Sipp};

/// How long a target's SIPp waits for any one message (the BYE comes about
/// 4-8 s after the ACK).
const TARGET_RECV: Duration = Duration::from_secs(15);
/// How long the store may take to show the final states after the calls.
const SETTLE: Duration = Duration::from_secs(15);

/// The route of the default target trunk: four digits starting with 1.
const ROUTE_1XXX: &str = r"1\d{3}";

fn one_trunk() -> TargetTrunk {
    TargetTrunk::new("pstn", ROUTE_1XXX)
}

/// Asserts the target heard exactly the sent μ-law audio (converted to
/// A-law when it answered PCMA): every frame from the first, in sequence,
/// one SSRC, one payload type, from one source address; returns the report.
fn assert_heard_whole_message(t: &TargetResult, sent: &[u8], who: &str) -> StreamReport {
    let packets = t.sink.packets();
    let pt = t.law.payload_type();
    let report = StreamReport::of(&packets, pt);
    assert!(
        !packets.is_empty(),
        "{who}: no RTP arrived at the target's SDP address {}\n{}",
        t.sink.addr(),
        t.sipp.report()
    );
    assert_eq!(
        report.payload_types,
        vec![pt],
        "{who}: RTP payload types other than the answered {pt}: {}",
        report.summary()
    );
    assert_eq!(report.ssrcs.len(), 1, "{who}: one SSRC expected: {}", report.summary());
    assert!(
        report.seq_gaps.is_empty() && report.duplicates == 0,
        "{who}: sequence numbers not continuous: {}",
        report.summary()
    );
    assert!(
        report.ts_jumps.is_empty(),
        "{who}: RTP timestamps do not advance by 160 per 20 ms frame: {}",
        report.summary()
    );
    let sources: std::collections::HashSet<_> = packets.iter().map(|p| p.from).collect();
    assert_eq!(sources.len(), 1, "{who}: RTP from several addresses: {sources:?}");
    assert_eq!(t.sink.junk(), 0, "{who}: non-RTP datagrams arrived");
    match t.law {
        Law::Pcmu => {
            if let Some(diff) = first_difference(&report.payload, sent) {
                panic!(
                    "{who}: the RTP payload the target received (in sequence order) is not the audio the caller sent: \
                     {diff}\n{}",
                    report.summary()
                );
            }
        }
        Law::Pcma => {
            assert_eq!(
                report.payload.len(),
                sent.len(),
                "{who}: A-law payload length differs from the μ-law sent: {}",
                report.summary()
            );
            let linear = audio::decode_ulaw(sent);
            let bad: Vec<usize> = report
                .payload
                .iter()
                .zip(&linear)
                .enumerate()
                .filter(|(_, (a, l))| !audio::alaw_close_to(**a, **l))
                .map(|(i, _)| i)
                .collect();
            assert!(
                bad.is_empty(),
                "{who}: {} of {} A-law samples are not the μ-law audio converted (first at byte {:?}: got A-law {:#04x} \
                 = {}, sent μ-law {:#04x} = {})",
                bad.len(),
                sent.len(),
                bad.first(),
                report.payload[bad[0]],
                audio::alaw_to_linear(report.payload[bad[0]]),
                sent[bad[0]],
                linear[bad[0]]
            );
        }
    }
    report
}

/// The only message in the store, once settled, as `messages list --json`
/// shows it.
fn the_message(server: &Server) -> Message {
    wait_messages_settled(server, 1, SETTLE).expect("one complete message with final delivery states");
    let list = list_messages(server).expect("ivm-sipd messages list --json");
    assert_eq!(list.len(), 1, "one message expected: {list:#?}");
    list.into_iter().next().expect("one message")
}

/// Asserts the fields every recorded 4 s message has.
fn assert_complete_4s_message(m: &Message, sender: &str) {
    assert_eq!(m.sender, sender, "sender of {:#}", m.json);
    assert_eq!(m.state, "complete", "state of {:#}", m.json);
    assert_eq!(m.duration_ms, 4000, "duration_ms of a 200-frame message: {:#}", m.json);
    assert_eq!(
        m.retrieval_number,
        format!("98{:06}1", m.id),
        "retrieval number: 98 + 6-digit id + type 1 (SPEC §3): {:#}",
        m.json
    );
}

/// Asserts `messages export ID --wav` is 8 kHz 16-bit mono PCM equal to the
/// sent μ-law decoded.
fn assert_wav_is_sent_audio(server: &Server, id: i64, sent: &[u8]) {
    let wav = export_wav(server, id).expect("ivm-sipd messages export ID --wav FILE");
    assert_eq!(
        (wav.format, wav.channels, wav.sample_rate, wav.bits_per_sample),
        (1, 1, 8000, 16),
        "WAV format (format tag, channels, rate, bits)"
    );
    let want = audio::decode_ulaw(sent);
    if wav.samples != want {
        let first = wav.samples.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "exported WAV differs from the sent audio decoded: {} samples, sent {}; first differing sample {first:?} \
             (got {:?}, want {:?})",
            wav.samples.len(),
            want.len(),
            first.map(|i| wav.samples[i]),
            first.map(|i| want[i])
        );
    }
}

/// The CDR rows of message `id`, keyed by leg ("sender" / "target") and
/// callee.
fn cdrs_of(server: &Server, id: i64) -> Vec<HashMap<String, String>> {
    let rows = cdr_rows(server).expect("ivm-sipd cdr export");
    rows.into_iter().filter(|r| r["message_id"] == id.to_string()).collect()
}

fn cdr<'a>(rows: &'a [HashMap<String, String>], leg: &str, callee_contains: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["leg"] == leg && r["callee"].contains(callee_contains))
        .unwrap_or_else(|| panic!("no CDR row for the {leg} leg to {callee_contains}: {rows:#?}"))
}

fn assert_cdr(row: &HashMap<String, String>, outcome: &str, status: &str, answered: bool) {
    assert_eq!(row["outcome"], outcome, "CDR outcome: {row:#?}");
    assert_eq!(row["sip_status"], status, "CDR sip_status: {row:#?}");
    assert_eq!(!row["answered_at"].is_empty(), answered, "CDR answered_at: {row:#?}");
    for k in ["started_at", "ended_at", "duration_ms", "call_id", "caller"] {
        assert!(!row[k].is_empty(), "CDR {k} empty: {row:#?}");
    }
    let started: i64 = row["started_at"].parse().expect("started_at is an integer");
    let ended: i64 = row["ended_at"].parse().expect("ended_at is an integer");
    assert!(ended >= started, "CDR ends before it starts: {row:#?}");
}

/// The Call-ID of the first INVITE in a SIPp trace (sent or received).
fn invite_call_id(out: &ivm_e2e::SippOutcome) -> String {
    out.trace()
        .into_iter()
        .find(|e| e.first_line.starts_with("INVITE "))
        .and_then(|e| e.header("Call-ID"))
        .unwrap_or_else(|| panic!("no INVITE with a Call-ID in the trace\n{}", out.report()))
}

#[test]
fn target_answering_at_once_hears_the_whole_message_live() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();

    let sent = audio::sweep_4s();
    let report = assert_heard_whole_message(&t, &sent, "target 1234");
    // Live: paced at real time, 200 frames of 20 ms.
    assert!(
        report.span >= Duration::from_millis(3600) && report.span <= Duration::from_millis(5000),
        "200 frames should arrive paced over about 4 s: {}",
        report.summary()
    );

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    assert_eq!(
        m.deliveries,
        vec![Delivery {
            target: "1234".into(),
            state: "delivered".into(),
            sip_status: Some(200)
        }],
        "{:#}",
        m.json
    );
    assert_wav_is_sent_audio(&server, m.id, &sent);

    let rows = cdrs_of(&server, m.id);
    assert_eq!(rows.len(), 2, "one CDR per leg: {rows:#?}");
    let sender = cdr(&rows, "sender", "1234");
    assert_cdr(sender, "answered", "200", true);
    assert_eq!(sender["caller"], CALLER_NUMBER, "{sender:#?}");
    assert_eq!(
        sender["call_id"],
        invite_call_id(&call),
        "sender CDR Call-ID = the caller's"
    );
    let target = cdr(&rows, "target", "1234");
    assert_cdr(target, "answered", "200", true);
    assert_eq!(
        target["call_id"],
        invite_call_id(&t.sipp),
        "target CDR Call-ID = the target's INVITE"
    );
    let dur: i64 = target["duration_ms"].parse().expect("duration_ms");
    assert!(
        (3500..=6000).contains(&dur),
        "the target leg lasted the message (~4 s): {target:#?}"
    );
}

#[test]
fn target_answering_after_3s_catches_up_from_the_first_frame() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer_late.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let started = Instant::now();
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();

    let sent = audio::sweep_4s();
    let report = assert_heard_whole_message(&t, &sent, "late target 1234");
    let first = t.sink.packets()[0].arrival.saturating_duration_since(started);
    assert!(
        first >= Duration::from_millis(2900),
        "RTP reached the target {first:?} after the call started, before its 200 OK at 3 s"
    );
    assert!(report.span >= Duration::from_millis(3000), "{}", report.summary());

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let d = m.delivery("1234").expect("delivery to 1234");
    assert_eq!(
        (d.state.as_str(), d.sip_status),
        ("delivered", Some(200)),
        "{:#}",
        m.json
    );
    assert_wav_is_sent_audio(&server, m.id, &sent);
    let rows = cdrs_of(&server, m.id);
    assert_cdr(cdr(&rows, "target", "1234"), "answered", "200", true);
}

#[test]
fn unanswered_target_is_cancelled_at_the_ring_timeout() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "[calls]\nring_timeout_secs = 4\n", &[])
        .expect("start ivm-sipd");
    let target = Target::start("ivm_target_noanswer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    // INVITE -> 180, CANCEL -> 200 + 487 -> ACK, as the scenario expects.
    t.sipp.assert_success();
    let invite = t.sipp.received("INVITE ").expect("INVITE at the target");
    let cancel = t.sipp.received("CANCEL ").expect("CANCEL at the target");
    let ring = cancel.time - invite.time;
    assert!(
        (3.5..=6.0).contains(&ring),
        "CANCEL came {ring:.2} s after the INVITE; ring_timeout_secs = 4"
    );
    assert_eq!(
        cancel
            .header("Via")
            .map(|v| v.split(',').next().unwrap_or_default().to_string()),
        invite
            .header("Via")
            .map(|v| v.split(',').next().unwrap_or_default().to_string()),
        "CANCEL must carry the INVITE's top Via (RFC 3261 §9.1)"
    );
    assert!(
        t.sink.packets().is_empty(),
        "an unanswered target got RTP: {}",
        t.sink.packets().len()
    );

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let d = m.delivery("1234").expect("delivery to 1234");
    assert!(
        matches!(d.state.as_str(), "unanswered" | "notified"),
        "an unanswered delivery is `unanswered` (then `notified`): {:#}",
        m.json
    );
    assert!(
        matches!(d.sip_status, Some(408) | Some(487)),
        "unanswered after CANCEL: sip_status 487 (or 408): {:#}",
        m.json
    );
    // The message is kept for later retrieval.
    assert_wav_is_sent_audio(&server, m.id, &audio::sweep_4s());
    let rows = cdrs_of(&server, m.id);
    let row = cdr(&rows, "target", "1234");
    assert_eq!(row["outcome"], "unanswered", "{row:#?}");
    assert!(row["answered_at"].is_empty(), "{row:#?}");
}

#[test]
fn busy_target_is_rejected() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_busy.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success(); // INVITE -> 486 -> ACK, nothing more
    assert!(t.sink.packets().is_empty(), "a busy target got RTP");

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    assert_eq!(
        m.deliveries,
        vec![Delivery {
            target: "1234".into(),
            state: "rejected".into(),
            sip_status: Some(486)
        }],
        "{:#}",
        m.json
    );
    assert_wav_is_sent_audio(&server, m.id, &audio::sweep_4s());
    let rows = cdrs_of(&server, m.id);
    assert_cdr(cdr(&rows, "target", "1234"), "rejected", "486", false);
    assert_cdr(cdr(&rows, "sender", "1234"), "answered", "200", true);
}

#[test]
fn two_targets_each_hear_the_whole_message() {
    let pstn = one_trunk();
    // The second trunk is added with the admin CLI while the server runs.
    let mobile = TargetTrunk::new("mobile", r"2\d{3}");
    let server = start_ivm_server(std::slice::from_ref(&pstn), "", &[]).expect("start ivm-sipd");
    server
        .admin_ok(&[
            "trunk",
            "add",
            &mobile.name,
            "--address",
            &format!("127.0.0.1:{}", mobile.port),
            "--route",
            &mobile.route,
        ])
        .expect("ivm-sipd trunk add");
    // "changes apply to a running server within about a second"
    std::thread::sleep(Duration::from_millis(2000));
    let a = Target::start("ivm_target_answer.xml", pstn.port, Law::Pcmu, TARGET_RECV).expect("start target 1234");
    let b =
        Target::start("ivm_target_answer_late.xml", mobile.port, Law::Pcmu, TARGET_RECV).expect("start target 2345");
    let call = caller("555*1234*2345", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let a = a.finish().expect("target 1234");
    let b = b.finish().expect("target 2345");
    a.sipp.assert_success();
    b.sipp.assert_success();

    let sent = audio::sweep_4s();
    let ra = assert_heard_whole_message(&a, &sent, "target 1234 (answers at once)");
    let rb = assert_heard_whole_message(&b, &sent, "target 2345 (answers after 3 s)");
    assert_ne!(ra.ssrcs, rb.ssrcs, "each target leg has its own SSRC");

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let mut got = m.deliveries.clone();
    got.sort_by(|x, y| x.target.cmp(&y.target));
    let want: Vec<Delivery> = ["1234", "2345"]
        .iter()
        .map(|t| Delivery {
            target: (*t).into(),
            state: "delivered".into(),
            sip_status: Some(200),
        })
        .collect();
    assert_eq!(got, want, "{:#}", m.json);
    let rows = cdrs_of(&server, m.id);
    assert_eq!(rows.len(), 3, "a sender leg and two target legs: {rows:#?}");
    assert_cdr(cdr(&rows, "target", "1234"), "answered", "200", true);
    assert_cdr(cdr(&rows, "target", "2345"), "answered", "200", true);
}

#[test]
fn registered_subscriber_target_is_called_at_its_contact() {
    let subscriber = ("1001", "pw-1001");
    let server = start_ivm_server(&[], "", &[subscriber]).expect("start ivm-sipd");
    // The phone registers from port P, then answers calls on the same port
    // (the server reaches it via the flow it registered from).
    let phone_port = ivm_e2e::free_port();
    Sipp::new("register_auth.xml")
        .users(&[subscriber])
        .local_port(phone_port)
        .run(server.addr)
        .expect("run register")
        .assert_success();
    server.wait_registrations("1001", 1).expect("1001 registered");
    let target = Target::start("ivm_target_answer.xml", phone_port, Law::Pcmu, TARGET_RECV).expect("start phone");
    let call = caller("5551001", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("phone");
    t.sipp.assert_success();
    let invite = t.sipp.received("INVITE ").expect("INVITE at the phone");
    assert!(
        invite
            .first_line
            .starts_with(&format!("INVITE sip:1001@127.0.0.1:{phone_port}")),
        "the INVITE should go to the registered Contact: {}",
        invite.first_line
    );
    assert_heard_whole_message(&t, &audio::sweep_4s(), "subscriber 1001");
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let d = m.delivery("1001").expect("delivery to 1001");
    assert_eq!(
        (d.state.as_str(), d.sip_status),
        ("delivered", Some(200)),
        "{:#}",
        m.json
    );
}

#[test]
fn subscriber_caller_authenticates_with_digest() {
    let trunk = one_trunk();
    let subscriber = ("1002", "pw-1002");
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[subscriber]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    // From 127.0.0.1, which is not a trusted trunk: 401 first, then digest.
    let call = subscriber_caller("5551234", subscriber.0, subscriber.1)
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    assert_heard_whole_message(&t, &audio::sweep_4s(), "target 1234");
    let m = the_message(&server);
    assert_complete_4s_message(&m, "1002");
    let from = t
        .sipp
        .received("INVITE ")
        .and_then(|i| i.header("From"))
        .unwrap_or_default();
    assert!(
        from.contains("sip:1002@"),
        "the target's INVITE should come from the sender 1002: From: {from}"
    );
}

#[test]
fn untrusted_caller_without_credentials_is_challenged_not_connected() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[("1003", "pw-1003")]).expect("start ivm-sipd");
    // ivm_caller.xml from 127.0.0.1 (not trusted) never sends credentials:
    // it gets a 401 where it expects 200, so its call fails.
    let call = Sipp::new("ivm_caller.xml")
        .rows(&[["5551234", "1003"]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", "500"])
        .run(server.addr)
        .expect("run caller");
    call.assert_calls_failed();
    assert!(
        call.received("SIP/2.0 401").is_some(),
        "an untrusted INVITE without credentials should be challenged with 401\n{}",
        call.report()
    );
    assert!(
        list_messages(&server).expect("messages list").is_empty(),
        "no message for an unauthenticated call"
    );
}

#[test]
fn push_to_talk_invite_carries_auto_answer_headers() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_ptt.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5561234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success(); // the scenario checks the headers too
    let invite = t.sipp.received("INVITE ").expect("INVITE at the target");
    let call_info = invite.header("Call-Info").unwrap_or_default();
    let alert_info = invite.header("Alert-Info").unwrap_or_default();
    assert!(
        call_info.starts_with("<sip:") && call_info.contains(";answer-after=0"),
        "Call-Info: {call_info:?}\n{}",
        invite.text
    );
    assert!(
        alert_info.starts_with('<') && alert_info.contains(";info=alert-autoanswer"),
        "Alert-Info: {alert_info:?}\n{}",
        invite.text
    );
    assert_eq!(
        invite.header("Answer-Mode").as_deref().map(str::trim),
        Some("Auto"),
        "RFC 5373 Answer-Mode: Auto (baresip answers on it)\n{}",
        invite.text
    );
    assert_heard_whole_message(&t, &audio::sweep_4s(), "PTT target 1234");
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
}

#[test]
fn ivm_invite_without_push_to_talk_has_no_auto_answer_headers() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_busy.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", "1000"])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    let invite = t.sipp.received("INVITE ").expect("INVITE at the target");
    assert_eq!(invite.header("Call-Info"), None, "{}", invite.text);
    assert_eq!(invite.header("Alert-Info"), None, "{}", invite.text);
}

#[test]
fn pcma_target_hears_the_message_converted_to_a_law() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer.xml", trunk.port, Law::Pcma, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    let report = assert_heard_whole_message(&t, &audio::sweep_4s(), "PCMA target 1234");
    assert_eq!(report.payload.len(), 200 * FRAME_BYTES);
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
}

#[test]
fn offer_without_a_common_codec_gets_488() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let call = Sipp::new("ivm_caller_no_codec.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .run(server.addr)
        .expect("run caller");
    call.assert_success(); // INVITE (G.729 only) -> 488 -> ACK
    assert!(
        list_messages(&server).expect("messages list").is_empty(),
        "no message for a rejected call"
    );
}

#[test]
fn caller_hears_the_beep_right_after_the_answer() {
    let trunk = one_trunk();
    let server =
        start_ivm_server(std::slice::from_ref(&trunk), "[calls]\nbeep_ms = 200\n", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_busy.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let ear = ivm_e2e::rtp::RtpSink::bind().expect("caller's RTP sink");
    let call = Sipp::new("ivm_caller_silent.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("rtp_ip", "127.0.0.1")
        .key("rtp_port", ear.port())
        .args(&["-d", "1500"])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    target.finish().expect("target").sipp.assert_success();

    let invite_sent = call
        .trace()
        .into_iter()
        .find(|e| !e.received && e.first_line.starts_with("INVITE "))
        .expect("INVITE in the caller's trace");
    let ok = call.received("SIP/2.0 200").expect("200 OK at the caller");
    let answer_ms = (ok.time - invite_sent.time) * 1000.0;
    assert!(
        answer_ms < 300.0,
        "the IVM call should be answered at once: 200 OK after {answer_ms:.0} ms"
    );

    let packets = ear.settle(Duration::from_millis(300), Duration::from_secs(3));
    let report = StreamReport::of(&packets, 0);
    assert_eq!(
        report.packets,
        10,
        "a 200 ms beep is 10 frames of 20 ms: {}",
        report.summary()
    );
    assert_eq!(report.payload_types, vec![0], "{}", report.summary());
    assert_eq!(report.ssrcs.len(), 1, "{}", report.summary());
    assert!(report.seq_gaps.is_empty(), "{}", report.summary());
    let first = ivm_e2e::rtp::seconds_of_local_day(packets[0].wall);
    let beep_ms = (first - invite_sent.time) * 1000.0;
    assert!(
        (0.0..300.0).contains(&beep_ms),
        "SPEC §1: a beep within 300 ms; the first beep packet came {beep_ms:.0} ms after the INVITE"
    );
    // A tone, not silence: the decoded level is well above the noise floor.
    let samples = audio::decode_ulaw(&report.payload);
    let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 1000.0, "the beep is too quiet to hear (RMS {rms:.0} of 32767)");
}

#[test]
fn target_answering_after_the_caller_hung_up_gets_the_stored_message() {
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer_late.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    // The caller speaks about 1.5 s and hangs up before the target answers at 3 s.
    let call = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", "1500"])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success(); // answered, then the server's BYE after the last frame

    let m = the_message(&server);
    assert_eq!(m.state, "complete", "{:#}", m.json);
    assert!(
        (1200..=1800).contains(&m.duration_ms) && m.duration_ms % 20 == 0,
        "about 1.5 s recorded, in 20 ms frames: {:#}",
        m.json
    );
    let recorded = usize::try_from(m.duration_ms).expect("duration") / 20 * FRAME_BYTES;
    let sent = audio::sweep_4s();
    assert_heard_whole_message(&t, &sent[..recorded], "target answering after the hang-up");
    assert_wav_is_sent_audio(&server, m.id, &sent[..recorded]);
    let d = m.delivery("1234").expect("delivery");
    assert_eq!(d.state, "delivered", "{:#}", m.json);
}

#[test]
fn declining_and_unreachable_targets_get_their_delivery_states() {
    // One IVM to four targets: 603 Decline, 480 Temporarily Unavailable,
    // 503 Service Unavailable, and a subscriber with no registration.
    let trunks = [
        TargetTrunk::new("decline", r"1\d{3}"),
        TargetTrunk::new("away", r"2\d{3}"),
        TargetTrunk::new("broken", r"3\d{3}"),
    ];
    let server = start_ivm_server(&trunks, "", &[("4001", "pw-4001")]).expect("start ivm-sipd");
    let codes = ["603 Decline", "480 Temporarily Unavailable", "503 Service Unavailable"];
    let targets: Vec<Target> = trunks
        .iter()
        .zip(codes)
        .map(|(trunk, status)| {
            // SIPp reads a response's status code when it loads the scenario
            // (no -key there), so each code gets its copy of the busy target.
            let xml = std::fs::read_to_string(ivm_e2e::paths::scenario_dir().join("ivm_target_busy.xml"))
                .expect("read ivm_target_busy.xml");
            assert!(xml.contains("SIP/2.0 486 Busy Here"), "ivm_target_busy.xml changed");
            let path = server.dir().join(format!("ivm_target_{}.xml", &status[..3]));
            std::fs::write(
                &path,
                xml.replace("SIP/2.0 486 Busy Here", &format!("SIP/2.0 {status}")),
            )
            .expect("write scenario");
            Target::start(&path.to_string_lossy(), trunk.port, Law::Pcmu, TARGET_RECV).expect("start target")
        })
        .collect();
    let call = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[["555*1001*2001*3001*4001", CALLER_NUMBER]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", "1500"])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    for t in targets {
        let t = t.finish().expect("target");
        t.sipp.assert_success(); // INVITE -> 180 -> final -> ACK, nothing more
        assert!(t.sink.packets().is_empty(), "a target that declined got RTP");
    }
    let m = the_message(&server);
    let mut got = m.deliveries.clone();
    got.sort_by(|a, b| a.target.cmp(&b.target));
    // `notified` is `unanswered` after the target was told (SPEC §2).
    for d in &mut got {
        if d.state == "notified" {
            d.state = "unanswered".into();
        }
    }
    let want = vec![
        Delivery {
            target: "1001".into(),
            state: "rejected".into(),
            sip_status: Some(603),
        },
        Delivery {
            target: "2001".into(),
            state: "unanswered".into(),
            sip_status: Some(480),
        },
        Delivery {
            target: "3001".into(),
            state: "unanswered".into(),
            sip_status: Some(503),
        },
        Delivery {
            target: "4001".into(),
            state: "unanswered".into(),
            sip_status: Some(480),
        },
    ];
    assert_eq!(got, want, "{:#}", m.json);
    let rows = cdrs_of(&server, m.id);
    assert_cdr(cdr(&rows, "target", "1001"), "rejected", "603", false);
    assert_cdr(cdr(&rows, "target", "2001"), "unanswered", "480", false);
    assert_cdr(cdr(&rows, "target", "3001"), "unanswered", "503", false);
}

#[test]
fn late_target_reads_frames_that_left_the_memory_ring_from_the_store() {
    // ring_frames = 50 keeps only 1 s in memory: a target answering at 3 s
    // must get the first 2 s from the fragment store.
    let trunk = one_trunk();
    let server =
        start_ivm_server(std::slice::from_ref(&trunk), "[media]\nring_frames = 50\n", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer_late.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER).run(server.addr).expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    assert_heard_whole_message(&t, &audio::sweep_4s(), "late target with a 1 s ring");
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
}

#[test]
fn caller_over_tcp_and_target_behind_a_tcp_trunk() {
    let trunk = TargetTrunk::tcp("pstn-tcp", ROUTE_1XXX);
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start_tcp("ivm_target_answer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = caller("5551234", CALLER_NUMBER)
        .tcp()
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    let invite = t.sipp.received("INVITE ").expect("INVITE at the target");
    assert!(
        invite.header("Via").unwrap_or_default().starts_with("SIP/2.0/TCP"),
        "the INVITE to a TCP trunk should come over TCP: {}",
        invite.text
    );
    // The far end sends its in-dialog requests to the Contact: over TCP it must say so.
    assert!(
        invite.header("Contact").unwrap_or_default().contains(";transport=tcp"),
        "the INVITE's Contact should say transport=tcp: {}",
        invite.text
    );
    let ok = call.received("SIP/2.0 200").expect("200 OK at the caller");
    assert!(
        ok.header("Contact").unwrap_or_default().contains(";transport=tcp"),
        "the 200 OK to a TCP caller should have a Contact with transport=tcp: {}",
        ok.text
    );
    assert_heard_whole_message(&t, &audio::sweep_4s(), "target behind a TCP trunk");
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let d = m.delivery("1234").expect("delivery");
    assert_eq!(
        (d.state.as_str(), d.sip_status),
        ("delivered", Some(200)),
        "{:#}",
        m.json
    );
}

#[test]
fn caller_with_a_delayed_offer_is_recorded() {
    // RFC 3261 §13.2.1: an INVITE without SDP; the server offers in its 200
    // and the caller answers in the ACK.
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let target = Target::start("ivm_target_answer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = Sipp::new("ivm_caller_delayed_offer.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", &ivm_e2e::ivm::HOLD_MS.to_string()])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    assert_heard_whole_message(&t, &audio::sweep_4s(), "target of a delayed-offer caller");
    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
}

#[test]
fn ten_simultaneous_messages_each_reach_the_target_intact() {
    // Ten callers at once, each speaking its own audio (the sweep rotated by
    // a different number of frames), to one target that answers them all:
    // every stream the target gets must be exactly one caller's audio, so
    // frames of one message never leak into another.
    const N: usize = 10;
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let sweep = audio::sweep_4s();
    let files: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let cut = (i * 17 + 3) * FRAME_BYTES;
            sweep[cut..].iter().chain(&sweep[..cut]).copied().collect()
        })
        .collect();
    let target = Target::start_calls(
        "ivm_target_answer.xml",
        trunk.port,
        Law::Pcmu,
        TARGET_RECV,
        u32::try_from(N).unwrap_or(1),
    )
    .expect("start target");
    let runs: Vec<ivm_e2e::SippRun> = files
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = server.dir().join(format!("caller-{i}.ul"));
            std::fs::write(&path, bytes).expect("write audio");
            Sipp::new("ivm_caller.xml")
                .local_ip(CALLER_IP)
                .rows(&[["5551234".to_string(), format!("71{i:02}")]])
                .key("audio", format!("{},1,0", path.display()))
                .args(&["-d", &ivm_e2e::ivm::HOLD_MS.to_string()])
                .spawn(server.addr)
                .expect("start caller")
        })
        .collect();
    for run in runs {
        run.wait().expect("caller").assert_success();
    }
    let t = target.finish().expect("target");
    t.sipp.assert_success();
    assert_eq!(t.sipp.counter("SuccessfulCall"), Some(N as u64), "{}", t.sipp.report());

    let packets = t.sink.packets();
    let mut by_ssrc: HashMap<u32, Vec<ivm_e2e::rtp::RtpPacket>> = HashMap::new();
    for p in packets {
        by_ssrc.entry(p.ssrc).or_default().push(p);
    }
    assert_eq!(by_ssrc.len(), N, "one SSRC per target leg expected");
    let mut matched = [false; N];
    for (ssrc, stream) in &by_ssrc {
        let report = StreamReport::of(stream, 0);
        assert!(
            report.seq_gaps.is_empty() && report.duplicates == 0,
            "leg {ssrc:08x}: {}",
            report.summary()
        );
        match files.iter().position(|f| *f == report.payload) {
            Some(i) if !matched[i] => matched[i] = true,
            Some(i) => panic!("two legs carried caller {i}'s audio"),
            None => {
                let closest = files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (first_difference(&report.payload, f), i))
                    .min_by_key(|(d, _)| d.as_ref().map(String::len))
                    .map(|(d, i)| format!("caller {i}: {}", d.unwrap_or_default()));
                panic!("leg {ssrc:08x} is no caller's audio; {closest:?}\n{}", report.summary());
            }
        }
    }
    wait_messages_settled(&server, N, SETTLE).expect("ten complete messages");
    let list = list_messages(&server).expect("messages list");
    for m in &list {
        assert_complete_4s_message(m, &m.sender.clone());
        let i: usize = m.sender[2..].parse().expect("sender 71NN");
        let wav = export_wav(&server, m.id).expect("export");
        assert!(
            wav.samples == audio::decode_ulaw(&files[i]),
            "message {} of sender {} does not hold that caller's audio",
            m.id,
            m.sender
        );
        // Sealed at rest: the export opened it, the files alone do not.
        assert_no_plaintext_audio(&server, &files[i]);
        let d = m.delivery("1234").expect("delivery");
        assert_eq!(d.state, "delivered", "{:#}", m.json);
    }
}

#[test]
fn a_law_caller_is_recorded_as_a_law_and_converted_for_a_mu_law_target() {
    // The caller offers only PCMA and speaks A-law (the sweep converted);
    // the target answers PCMU.
    let trunk = one_trunk();
    let server = start_ivm_server(std::slice::from_ref(&trunk), "", &[]).expect("start ivm-sipd");
    let alaw: Vec<u8> = audio::decode_ulaw(&audio::sweep_4s())
        .into_iter()
        .map(audio::linear_to_alaw)
        .collect();
    let file = server.dir().join("sweep-4s.al");
    std::fs::write(&file, &alaw).expect("write A-law audio");
    let xml = std::fs::read_to_string(ivm_e2e::paths::scenario_dir().join("ivm_caller.xml")).expect("read caller");
    let offer = "m=audio [rtpstream_audio_port] RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000";
    assert!(xml.contains(offer), "ivm_caller.xml's SDP changed");
    let scenario = server.dir().join("ivm_caller_pcma.xml");
    std::fs::write(
        &scenario,
        xml.replace(
            offer,
            "m=audio [rtpstream_audio_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000",
        ),
    )
    .expect("write scenario");
    let target = Target::start("ivm_target_answer.xml", trunk.port, Law::Pcmu, TARGET_RECV).expect("start target");
    let call = Sipp::new(&scenario.to_string_lossy())
        .local_ip(CALLER_IP)
        .rows(&[["5551234", CALLER_NUMBER]])
        .key("audio", format!("{},1,8", file.display()))
        .args(&["-d", &ivm_e2e::ivm::HOLD_MS.to_string()])
        .run(server.addr)
        .expect("run caller");
    call.assert_success();
    let ok = call.received("SIP/2.0 200").expect("200 OK");
    assert!(
        ok.text.contains("RTP/AVP 8"),
        "the answer should choose PCMA:\n{}",
        ok.text
    );
    let t = target.finish().expect("target");
    t.sipp.assert_success();

    let report = StreamReport::of(&t.sink.packets(), 0);
    assert_eq!(report.payload_types, vec![0], "{}", report.summary());
    assert!(
        report.seq_gaps.is_empty() && report.ssrcs.len() == 1,
        "{}",
        report.summary()
    );
    assert_eq!(report.payload.len(), alaw.len(), "{}", report.summary());
    let heard = audio::decode_ulaw(&report.payload);
    let sent = audio::decode_alaw(&alaw);
    let bad = heard
        .iter()
        .zip(&sent)
        .filter(|(h, s)| !audio::g711_close(**h, **s))
        .count();
    assert_eq!(
        bad, 0,
        "{bad} μ-law samples at the target are not the caller's A-law audio converted"
    );

    let m = the_message(&server);
    assert_complete_4s_message(&m, CALLER_NUMBER);
    let wav = export_wav(&server, m.id).expect("export");
    assert!(
        wav.samples == sent,
        "the exported WAV should be the A-law message decoded"
    );
}
