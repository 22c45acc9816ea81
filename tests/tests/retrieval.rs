//! Retrieval (SPEC §3 `98…`, §4 flows 4 and 5) as a listener observes it:
//! a call to the retrieval number is answered, plays "message from" and
//! the sender's digits, then the message audio byte for byte (also while
//! the sender is still speaking, caught up from its first frame; also
//! converted for a PCMA listener), then the menu; keys arrive as SIP INFO
//! or RFC 4733; `2` replays, `9` saves, `7` deletes, `#` goes on; the first
//! listen sends the sender a SIP MESSAGE; the caller is recognised by its
//! digest identity, its number or MSISDN from a trusted trunk, or else must
//! give a target's PIN; `98` alone opens the mailbox (unheard first, saved
//! kept, deleted gone); unknown messages and strangers' mailboxes are
//! refused.
//!
//! The listener is the harness's scriptable [`Phone`] (it presses keys once
//! it has heard the message and the menu began); callers and the sender's
//! phone are SIPp or phones. Needs `sipp` on PATH and the release binary.

use std::time::Duration;

use ivm_e2e::audio::{self, FRAME_BYTES};
use ivm_e2e::ivm::{CALLER_IP, CALLER_NUMBER, Law, caller, start_ivm_server, wait_udp_bound};
use ivm_e2e::notify::{
    CLIP_HOLD_MS, NOTIFY_CONFIG, add_subscriber, clip, clip_caller, count_runs, delivery, find_run, heard, locate,
    log_lines, message_intro, messages, prompt, prompts, retrieval_number, then_menu, wait_delivery, wait_heard,
    wait_message_state,
};
use ivm_e2e::phone::{Call, Dialed, Phone};
use ivm_e2e::rtp::{RtpPacket, StreamReport, seconds_of_local_day};
use ivm_e2e::sip::DigestCredentials;
use ivm_e2e::{Server, Sipp};

const TARGET: (&str, &str) = ("1001", "pw-1001");
const SETTLE: Duration = Duration::from_secs(15);
/// Prompts (~6 s at most) + a message of at most 4 s + the menu's start,
/// with margin.
const HEAR: Duration = Duration::from_secs(25);
/// From the last key to the server's BYE: a confirmation, "no more
/// messages", "goodbye" (~4 s), with margin.
const BYE_WAIT: Duration = Duration::from_secs(12);

fn creds() -> DigestCredentials {
    DigestCredentials::new(TARGET.0, TARGET.1)
}

/// A server with the callers' trunk, the target subscriber 1001 (not
/// registered, so every IVM to it is missed at once) and `extra` config.
fn server(extra: &str) -> Server {
    let config = ivm_e2e::server::merge_toml(NOTIFY_CONFIG, extra).expect("config");
    start_ivm_server(&[], &config, &[TARGET]).expect("start ivm-sipd")
}

/// Records one 4 s IVM from 7001 to 1001 and waits until it is complete
/// and its delivery `notified`; returns the message id.
fn missed_message(server: &Server) -> i64 {
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = messages(server).expect("messages")[0].0;
    wait_message_state(server, id, "complete", SETTLE).expect("complete");
    wait_delivery(server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    id
}

/// Records `audio` (a short clip) as an IVM from 7001 to 1001, like
/// [`missed_message`]; returns the message id.
fn missed_clip(server: &Server, audio: &[u8]) -> i64 {
    let before = messages(server).expect("messages").len();
    clip_caller(server, "5551001", CALLER_NUMBER, audio)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = messages(server).expect("messages")[before].0;
    wait_message_state(server, id, "complete", SETTLE).expect("complete");
    wait_delivery(server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    id
}

/// 1001 (digest-authenticated) calls the retrieval number of message `id`, in PCMU.
fn retrieve(phone: &Phone, id: i64) -> Call<'_> {
    phone
        .call(
            &retrieval_number(id),
            "1001",
            Some(&creds()),
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("retrieval call answered")
}

/// Asserts the call's audio is one RTP stream: one SSRC, no sequence gaps
/// or duplicates; returns the PCMU payload in sequence order.
fn assert_one_stream(phone: &Phone, what: &str) -> Vec<u8> {
    let packets = phone.sink.packets();
    let report = StreamReport::of(&packets, 0);
    assert_eq!(report.ssrcs.len(), 1, "{what}: one SSRC expected: {}", report.summary());
    assert_eq!(report.payload_types, vec![0], "{what}: {}", report.summary());
    assert!(
        report.seq_gaps.is_empty() && report.duplicates == 0,
        "{what}: the retrieval stream has gaps: {}",
        report.summary()
    );
    report.payload
}

/// Asserts `payload` ends with the prompts `ids` (exactly, as whole frames).
fn assert_ends_with_prompts(payload: &[u8], ids: &[&str], what: &str) {
    let tail = prompts(ids);
    assert!(
        payload.ends_with(&tail),
        "{what}: the call should end with the prompts {ids:?} ({} bytes); they are found at {:?} of {} bytes",
        tail.len(),
        find_run(payload, &tail),
        payload.len()
    );
}

/// Waits for the server's BYE and for the last RTP to arrive.
fn wait_end(call: &Call<'_>, phone: &Phone, what: &str) {
    call.wait_bye(BYE_WAIT).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    phone.sink.settle(Duration::from_millis(300), Duration::from_secs(3));
}

/// The listener hangs up (BYE -> 200) once it has heard what it needs.
fn hang_up(call: &mut Call<'_>, phone: &Phone) {
    let ok = call.bye().expect("BYE");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    phone.sink.settle(Duration::from_millis(200), Duration::from_secs(2));
}

/// Behind a record-routing proxy (Kamailio's `record_route()`), the 200 OK must carry the
/// Record-Route so that the phone's ACK and BYE go through the proxy, and IVM's own BYE must
/// follow the route set. The "proxy" here is the phone's own address, so the phone sees
/// everything the proxy would.
#[test]
fn a_retrieval_behind_a_record_routing_proxy_keeps_the_proxy_in_the_path() {
    let server = server("");
    let id = missed_message(&server);
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let rr = vec![
        format!("<sip:{};lr;ftag=edge>", phone.addr),
        "<sip:192.0.2.10;lr>".to_string(),
    ];
    phone.record_route(&rr);
    let mut call = retrieve(&phone, id);
    assert_eq!(
        call.ok.headers_named("Record-Route"),
        rr.iter().map(String::as_str).collect::<Vec<_>>(),
        "the 200 OK copies the Record-Route values in order (RFC 3261 §12.1.1):\n{}",
        call.ok.text()
    );
    let sent = audio::sweep_4s();
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message, then the menu");
    call.info('#').expect("INFO #");
    let bye = call.wait_bye(BYE_WAIT).expect("the server's BYE");
    assert_eq!(
        bye.headers_named("Route"),
        rr.iter().map(String::as_str).collect::<Vec<_>>(),
        "the server's BYE follows the route set:\n{}",
        bye.text()
    );
    let payload = assert_one_stream(&phone, "retrieval behind a proxy");
    assert!(find_run(&payload, &sent).is_some(), "the whole message was heard");
}

/// Hold (RFC 3264 §6.1): a re-INVITE with `a=sendonly` is answered `a=recvonly` and IVM sends
/// nothing while the call is held; after the resume (`a=sendrecv`) playback goes on where it
/// stopped, so the listener hears the prompts and the whole message, in order, once.
#[test]
fn a_retrieval_on_hold_pauses_and_goes_on_where_it_stopped() {
    let server = server("");
    let id = missed_message(&server);
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let mut call = retrieve(&phone, id);
    phone
        .sink
        .first_packet(Duration::from_secs(3))
        .expect("the prompts begin");
    std::thread::sleep(Duration::from_millis(700));
    let hold = call.reinvite("sendonly").expect("re-INVITE to hold");
    assert_eq!(hold.status(), Some(200), "{}", hold.text());
    assert!(
        hold.body_text().contains("a=recvonly\r\n"),
        "a sendonly offer is answered recvonly:\n{}",
        hold.text()
    );
    assert_eq!(
        phone.sink.count_during(Duration::from_millis(1500)),
        0,
        "no RTP to a phone that holds the call"
    );
    let resume = call.reinvite("sendrecv").expect("re-INVITE to resume");
    assert_eq!(resume.status(), Some(200), "{}", resume.text());
    assert!(resume.body_text().contains("a=sendrecv\r\n"), "{}", resume.text());
    let sent = audio::sweep_4s();
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message, then the menu");
    call.info('#').expect("INFO #");
    wait_end(&call, &phone, "after # on the held and resumed message");
    let payload = assert_one_stream(&phone, "retrieval held and resumed");
    let intro = message_intro(CALLER_NUMBER, false);
    let at = find_run(&payload, &sent).expect("the message audio, contiguous");
    assert_eq!(
        at,
        intro.len(),
        "the prompts, then the message, nothing lost or repeated"
    );
    assert!(payload[..at] == intro[..], "the prompts before the message are whole");
}

/// While the menu waits for a key nothing is sent; the first packet after the wait carries a
/// timestamp that moved on with the time that passed (and the marker bit), as RFC 3550/3551
/// ask, so the phone's jitter buffer does not squeeze the pause out.
#[test]
fn rtp_timestamps_move_on_across_the_silent_wait_for_a_key() {
    let server = server("");
    let id = missed_message(&server);
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let mut call = retrieve(&phone, id);
    let sent = audio::sweep_4s();
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message, then the menu");
    // The whole menu plays, then the server waits for a key in silence.
    phone.sink.settle(Duration::from_millis(400), Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(1200));
    call.info('#').expect("INFO #");
    wait_end(&call, &phone, "after # following a silent wait");
    let packets = phone.sink.packets();
    let (i, gap) = packets
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i, w[1].arrival.duration_since(w[0].arrival)))
        .max_by_key(|(_, d)| *d)
        .expect("packets");
    assert!(gap >= Duration::from_millis(1500), "the silent wait: {gap:?}");
    let (before, after) = (&packets[i], &packets[i + 1]);
    let ts_ms = f64::from(after.ts.wrapping_sub(before.ts)) / 8.0;
    let wall_ms = gap.as_secs_f64() * 1000.0;
    assert!(
        (ts_ms - wall_ms).abs() <= 100.0,
        "the timestamp moved {ts_ms} ms over a {wall_ms:.0} ms pause"
    );
    assert!(after.marker, "the first packet after the pause is marked");
}

#[test]
fn retrieval_plays_the_prompts_then_the_whole_stored_message() {
    let server = server("");
    let id = missed_message(&server);
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    // A registered subscriber authenticates with digest.
    let mut call = retrieve(&phone, id);
    assert!(
        call.media.is_some_and(|m| m.pt == 0),
        "the 200 OK answers PCMU: {}",
        call.ok.text()
    );
    let sent = audio::sweep_4s();
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message, then the menu");
    call.info('#').expect("INFO #");
    wait_end(&call, &phone, "after # on the last message");

    let payload = assert_one_stream(&phone, "retrieval");
    let at = find_run(&payload, &sent).expect("the message audio, contiguous");
    let intro = message_intro(CALLER_NUMBER, false);
    assert_eq!(
        at,
        intro.len(),
        "the message should follow \"message from\" + \"7 0 0 1\" ({} bytes) directly",
        intro.len()
    );
    assert!(
        payload[..at] == intro[..],
        "the audio before the message is not the prompts \"message from\" 7 0 0 1 (first difference at byte {:?})",
        payload.iter().zip(&intro).position(|(a, b)| a != b)
    );
    assert_ends_with_prompts(&payload, &["end_of_messages", "goodbye"], "after the last message");
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!(d.state, "heard", "{d:#?}");
    assert!(d.heard_at.is_some(), "{d:#?}");
}

/// The concatenated PCMU payloads in arrival order, and for each byte the
/// packet it came in.
fn payload_by_arrival(packets: &[RtpPacket]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut owner = Vec::new();
    for (i, p) in packets.iter().enumerate().filter(|(_, p)| p.pt == 0) {
        bytes.extend_from_slice(&p.payload);
        owner.extend(std::iter::repeat_n(i, p.payload.len()));
    }
    (bytes, owner)
}

#[test]
fn retrieval_while_the_sender_is_still_speaking_catches_up_from_the_first_frame() {
    // catch_up_speed 3: the listener, ~6 s behind after the prompts, must
    // reach the live edge before the sender stops (12 s of speech).
    let server = server("[media]\ncatch_up_speed = 3.0\n");
    let sweep = audio::sweep_4s();
    let spoken: Vec<u8> = sweep.iter().chain(&sweep).chain(&sweep).copied().collect();
    let caller = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551001", CALLER_NUMBER]])
        .key("audio", format!("{},3,0", audio::sweep_4s_path().display()))
        .args(&["-d", "12500"])
        .timeout(Duration::from_secs(40))
        .spawn(server.addr)
        .expect("start caller");
    wait_message_state(&server, 1, "recording", Duration::from_secs(5)).expect("recording");
    // Missed at once (1001 is not registered); it is announced only once
    // complete, so do not wait for `notified` here.
    wait_delivery(&server, 1, "1001", SETTLE, "missed", |d| {
        matches!(d.state.as_str(), "unanswered" | "notified")
    })
    .expect("missed");
    std::thread::sleep(Duration::from_millis(500));

    // From the trusted trunk, identified by the From user = the target.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call(&retrieval_number(1), "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("retrieval call answered");
    let answered = seconds_of_local_day(call.ok.wall);
    wait_heard(&phone.sink, &then_menu(&spoken), Law::Pcmu, Duration::from_secs(40))
        .expect("the whole message, then the menu");
    call.info('#').expect("INFO #");
    wait_end(&call, &phone, "after #");
    let out = caller.wait().expect("caller");
    out.assert_success();
    let hung_up = out
        .trace()
        .into_iter()
        .find(|e| !e.received && e.first_line.starts_with("BYE "))
        .map(|e| e.time)
        .expect("the caller's BYE in its trace");
    assert!(
        answered < hung_up - 5.0,
        "the retrieval should start while the sender speaks: answered at {answered:.2}, sender hung up at {hung_up:.2}"
    );

    let payload = assert_one_stream(&phone, "live retrieval");
    let at = find_run(&payload, &spoken).unwrap_or_else(|| {
        panic!(
            "the 12 s message is not in the retrieval stream as one run: {}",
            ivm_e2e::rtp::first_difference(
                &payload[message_intro(CALLER_NUMBER, true).len().min(payload.len())..],
                &spoken
            )
            .unwrap_or_default()
        )
    });
    let intro = message_intro(CALLER_NUMBER, true);
    assert!(
        at == intro.len() && payload[..at] == intro[..],
        "before the message: \"message from\" 7 0 0 1 \"still being recorded\" ({} bytes), got {at} bytes",
        intro.len()
    );
    // When its first and last frames arrived, against the sender's hang-up.
    let packets = phone.sink.packets();
    let (by_arrival, owner) = payload_by_arrival(&packets);
    let start = find_run(&by_arrival, &spoken).expect("the message in arrival order");
    let first = seconds_of_local_day(packets[owner[start]].wall);
    let last = seconds_of_local_day(packets[owner[start + spoken.len() - 1]].wall);
    assert!(
        first < hung_up - 2.0,
        "the first frame should play while the sender still speaks: at {first:.2}, hang-up at {hung_up:.2}"
    );
    assert!(
        last <= hung_up + 2.0,
        "with catch_up_speed = 3 the listener reaches the live edge: the last frame came {:.2} s after the sender \
         hung up",
        last - hung_up
    );
    let d = delivery(&server, 1, "1001").expect("db").expect("delivery");
    assert_eq!(d.state, "heard", "{d:#?}");
}

#[test]
fn pcma_listener_hears_prompts_and_message_converted_to_a_law() {
    let server = server("");
    let sent = clip(50);
    let id = missed_clip(&server, &sent);
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call(&retrieval_number(id), "1001", None, Law::Pcma, Duration::from_secs(5))
        .expect("retrieval call answered");
    assert!(
        call.media.is_some_and(|m| m.pt == 8),
        "the 200 OK answers PCMA: {}",
        call.ok.text()
    );
    let at = wait_heard(&phone.sink, &then_menu(&sent), Law::Pcma, HEAR)
        .expect("the message and the menu, converted to A-law");
    hang_up(&mut call, &phone);
    let report = StreamReport::of(&phone.sink.packets(), 8);
    assert_eq!(report.payload_types, vec![8], "only PCMA: {}", report.summary());
    let intro = message_intro(CALLER_NUMBER, false);
    assert_eq!(at, intro.len(), "the message follows the intro prompts");
    assert!(
        locate(&report.payload[..at], &intro, Law::Pcma) == Some(0),
        "the intro prompts are converted to A-law too"
    );
}

#[test]
fn menu_keys_by_sip_info_save_and_delete_and_the_sender_is_told_once() {
    let sender = ("1002", "pw-1002");
    let server = server("");
    add_subscriber(&server, sender.0, sender.1, &[]).expect("add 1002");
    // The sender's phone registers from port P and takes MESSAGEs there.
    let port = ivm_e2e::free_port();
    ivm_e2e::notify::register_with_sipp(&server, sender.0, sender.1, port).expect("register 1002");
    server.wait_registrations("1002", 1).expect("1002 registered");
    let status = Sipp::new("sender_status_message.xml")
        .local_port(port)
        .args(&["-recv_timeout", "40000"])
        .timeout(Duration::from_secs(60))
        .spawn(server.addr)
        .expect("start the sender's phone");
    wait_udp_bound(port, Duration::from_secs(5)).expect("SIPp bound");
    let sent = clip(0);
    let path = server.dir().join("clip.ul");
    std::fs::write(&path, &sent).expect("write clip");
    Sipp::new("ivm_caller_auth.xml")
        .rows(&[["5551001", sender.0, sender.1]])
        .key("audio", format!("{},1,0", path.display()))
        .args(&["-d", &CLIP_HOLD_MS.to_string()])
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = messages(&server).expect("messages")[0].0;
    wait_delivery(&server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    wait_message_state(&server, id, "complete", SETTLE).expect("complete");

    // 1: from the trusted trunk as 1001; 9 saves.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call(&retrieval_number(id), "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("retrieval call answered");
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message, then the menu");
    let ok = call.info('9').expect("INFO 9");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    wait_end(&call, &phone, "after 9");
    let payload = assert_one_stream(&phone, "retrieval 1");
    assert!(find_run(&payload, &sent).is_some());
    assert_ends_with_prompts(&payload, &["saved", "end_of_messages", "goodbye"], "after 9");
    let d = wait_delivery(&server, id, "1001", SETTLE, "saved", |d| d.folder == "saved").expect("saved");
    assert_eq!(d.state, "heard", "{d:#?}");

    let out = status.wait().expect("the sender's phone");
    let message = out.received("MESSAGE ");
    assert!(
        out.success() && message.is_some(),
        "the sender should get a MESSAGE at its registered contact\n{}",
        out.report()
    );
    let message = message.expect("MESSAGE");
    let body = message.text.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(
        body,
        format!("Your voice message {id} to 1001 was heard."),
        "{}",
        message.text
    );

    // 2: digest-authenticated as 1001; 7 deletes.
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone 2");
    let mut call = phone
        .call(
            &retrieval_number(id),
            "1001",
            Some(&creds()),
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("second retrieval answered");
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the message again, then the menu");
    call.info('7').expect("INFO 7");
    wait_end(&call, &phone, "after 7");
    let payload = assert_one_stream(&phone, "retrieval 2");
    assert_ends_with_prompts(&payload, &["deleted", "end_of_messages", "goodbye"], "after 7");
    wait_delivery(&server, id, "1001", SETTLE, "deleted", |d| d.folder == "deleted").expect("deleted");
    std::thread::sleep(Duration::from_millis(500));
    let told = log_lines(&server, &["status to sender"]);
    assert_eq!(told.len(), 1, "the sender is told once, at the first listen: {told:#?}");
}

#[test]
fn a_caller_who_is_not_a_target_needs_the_pin() {
    let trunk_caller = "5555";
    let server = start_ivm_server(&[], NOTIFY_CONFIG, &[]).expect("start ivm-sipd");
    add_subscriber(&server, TARGET.0, TARGET.1, &["--pin", "4321"]).expect("add 1001 with a PIN");
    add_subscriber(&server, "1002", "pw-1002", &["--pin", "1111"]).expect("add 1002 with a PIN");
    let sent = clip(20);
    let id = missed_clip(&server, &sent);

    // A trunk caller that is not a target, with a wrong PIN (SIP INFO):
    // "That PIN is not correct", "Goodbye", BYE.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call(
            &retrieval_number(id),
            trunk_caller,
            None,
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("call answered");
    std::thread::sleep(Duration::from_millis(500));
    call.info_digits("1111#").expect("wrong PIN");
    wait_end(&call, &phone, "after a wrong PIN");
    let payload = assert_one_stream(&phone, "wrong PIN");
    assert!(
        find_run(&payload, &sent).is_none(),
        "a wrong PIN must not play the message"
    );
    assert!(
        payload.starts_with(&prompt("enter_pin")[..FRAME_BYTES * 10]),
        "the caller is asked for the PIN first"
    );
    assert_ends_with_prompts(&payload, &["wrong_pin", "goodbye"], "after a wrong PIN");

    // A subscriber that is not a target: its own PIN opens only its own
    // messages.
    let other = Phone::new("127.0.0.1", server.addr).expect("phone of 1002");
    let mut call = other
        .call(
            &retrieval_number(id),
            "1002",
            Some(&DigestCredentials::new("1002", "pw-1002")),
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("call answered");
    std::thread::sleep(Duration::from_millis(500));
    call.info_digits("1111#").expect("1002's own PIN");
    wait_end(&call, &other, "after another subscriber's PIN");
    let payload = heard(&other.sink, 0);
    assert!(
        find_run(&payload, &sent).is_none(),
        "1002 is not a target of the message; its own PIN must not play it"
    );
    assert_ends_with_prompts(&payload, &["wrong_pin", "goodbye"], "after another subscriber's PIN");
    assert_eq!(
        delivery(&server, id, "1001").expect("db").expect("delivery").state,
        "notified"
    );

    // The right PIN (RFC 4733 this time) plays it.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone 2");
    let mut call = phone
        .call(
            &retrieval_number(id),
            trunk_caller,
            None,
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("call answered");
    std::thread::sleep(Duration::from_millis(500));
    call.rfc4733("4321#").expect("PIN as RFC 4733");
    let at = wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("the right PIN plays the message");
    hang_up(&mut call, &phone);
    let payload = heard(&phone.sink, 0);
    let intro = message_intro(CALLER_NUMBER, false);
    assert!(
        at >= intro.len() && payload[at - intro.len()..at] == intro[..],
        "\"message from 7001\" comes right before the message"
    );
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!(d.state, "heard", "the PIN identified the target 1001: {d:#?}");
}

#[test]
fn unknown_message_and_a_strangers_mailbox_are_refused() {
    let server = server("");
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let refused = |dialed: &str, from: &str| match phone
        .try_call(dialed, from, None, Law::Pcmu, Duration::from_secs(5))
        .expect("an answer")
    {
        Dialed::Refused(resp) => resp,
        Dialed::Answered(_) => panic!("{dialed} from {from} was answered"),
    };
    let resp = refused(&retrieval_number(4242), "1001");
    assert_eq!(resp.status(), Some(404), "no such message: {}", resp.text());
    let resp = refused("98", "5555");
    assert_eq!(
        resp.status(),
        Some(403),
        "no mailbox for a trunk caller that is nobody's: {}",
        resp.text()
    );
}

#[test]
fn trunk_caller_is_recognised_by_the_targets_msisdn() {
    let server = start_ivm_server(&[], NOTIFY_CONFIG, &[]).expect("start ivm-sipd");
    add_subscriber(
        &server,
        TARGET.0,
        TARGET.1,
        &["--msisdn", "+4915112345678", "--pin", "4321"],
    )
    .expect("add 1001");
    let sent = clip(30);
    let id = missed_clip(&server, &sent);
    // The mobile network presents the MSISDN as the caller: no PIN asked.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call(
            &retrieval_number(id),
            "+4915112345678",
            None,
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("retrieval answered");
    let at = wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, HEAR).expect("played without a PIN");
    // 2 replays it (intro and message again), then # ends.
    call.info('2').expect("INFO 2");
    ivm_e2e::wait_for(HEAR, "the message replayed, then the menu", || {
        Ok((count_runs(&heard(&phone.sink, 0), &then_menu(&sent)) == 2).then_some(()))
    })
    .expect("replay");
    hang_up(&mut call, &phone);
    let payload = heard(&phone.sink, 0);
    assert_eq!(
        at,
        message_intro(CALLER_NUMBER, false).len(),
        "straight to \"message from\" (no PIN prompt)"
    );
    assert!(payload.starts_with(&prompt("message_from")));
    let mut replay = message_intro(CALLER_NUMBER, false);
    replay.extend_from_slice(&sent);
    assert_eq!(
        count_runs(&payload, &replay),
        2,
        "after 2: the intro and the message once more"
    );
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!(d.state, "heard", "{d:#?}");
}

#[test]
fn mailbox_plays_unheard_messages_first_and_keeps_saved_ones() {
    let server = server("");
    let first = clip(0);
    let second = clip(100);
    assert_eq!(missed_clip(&server, &first), 1);
    assert_eq!(missed_clip(&server, &second), 2);

    // `98` from 1001: "you have reached your voice mailbox", "two", "new
    // messages", message 1 -> 9 (save), message 2 -> 7 (delete).
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call("98", "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("mailbox call answered");
    let at1 = wait_heard(&phone.sink, &then_menu(&first), Law::Pcmu, Duration::from_secs(30)).expect("message 1");
    call.info('9').expect("INFO 9");
    let at2 = wait_heard(&phone.sink, &then_menu(&second), Law::Pcmu, Duration::from_secs(30)).expect("message 2");
    call.info('7').expect("INFO 7");
    wait_end(&call, &phone, "after the last message of the mailbox");
    let payload = assert_one_stream(&phone, "mailbox");
    let mut opening = prompts(&["welcome", "digit_2", "new_messages"]);
    opening.extend(message_intro(CALLER_NUMBER, false));
    assert_eq!(at1, opening.len(), "mailbox opening + intro, then message 1");
    assert!(
        payload.starts_with(&opening),
        "the mailbox opens with welcome, \"two\", \"new messages\""
    );
    assert!(at2 > at1, "message 1 (older) plays before message 2");
    let mut between = prompts(&["saved"]);
    between.extend(message_intro(CALLER_NUMBER, false));
    assert!(
        find_run(&payload[at1 + first.len()..at2], &between).is_some(),
        "after 9: \"message saved\", then the next message's intro"
    );
    assert_ends_with_prompts(&payload, &["deleted", "end_of_messages", "goodbye"], "after 7");
    let d1 = delivery(&server, 1, "1001").expect("db").expect("d1");
    let d2 = delivery(&server, 2, "1001").expect("db").expect("d2");
    assert_eq!((d1.state.as_str(), d1.folder.as_str()), ("heard", "saved"), "{d1:#?}");
    assert_eq!(d2.folder, "deleted", "{d2:#?}");

    // Again: no new message; the saved one is still there, the deleted one not.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone 2");
    let mut call = phone
        .call("98", "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("second mailbox call answered");
    wait_heard(&phone.sink, &then_menu(&first), Law::Pcmu, Duration::from_secs(30)).expect("the saved message");
    hang_up(&mut call, &phone);
    let payload = heard(&phone.sink, 0);
    assert!(
        find_run(&payload, &second).is_none(),
        "a deleted message is not played again"
    );
    assert!(
        payload.starts_with(&prompts(&["welcome", "digit_0", "new_messages"])),
        "no new messages left"
    );
}

#[test]
fn a_message_heard_live_is_not_new_in_the_mailbox_and_not_reported_twice() {
    let sender = ("1002", "pw-1002");
    let server = server("");
    add_subscriber(&server, sender.0, sender.1, &[]).expect("add 1002");
    // The sender's phone is registered: it gets the status MESSAGEs.
    let sender_phone = Phone::new("127.0.0.1", server.addr).expect("1002's phone");
    let reg = sender_phone.register(sender.0, sender.1, 600).expect("REGISTER 1002");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    // 1001's phone answers the IVM and hears it live: `delivered`.
    let live = Phone::new("127.0.0.1", server.addr).expect("1001's phone");
    let reg = live.register(TARGET.0, TARGET.1, 600).expect("REGISTER 1001");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let sent = clip(70);
    let path = server.dir().join("clip.ul");
    std::fs::write(&path, &sent).expect("write clip");
    Sipp::new("ivm_caller_auth.xml")
        .rows(&[["5551001", sender.0, sender.1]])
        .key("audio", format!("{},1,0", path.display()))
        .args(&["-d", &CLIP_HOLD_MS.to_string()])
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    wait_heard(&live.sink, &sent, Law::Pcmu, SETTLE).expect("heard live");
    wait_delivery(&server, 1, "1001", SETTLE, "delivered", |d| d.state == "delivered").expect("delivered");
    sender_phone
        .wait_for(Duration::from_secs(5), "the status MESSAGE", |m| {
            m.is_request() && m.method() == "MESSAGE"
        })
        .expect("the sender is told the message was heard");

    // The mailbox: nothing new ("zero new messages"), the message kept.
    let phone = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = phone
        .call("98", "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("mailbox answered");
    wait_heard(&phone.sink, &then_menu(&sent), Law::Pcmu, Duration::from_secs(20)).expect("the kept message");
    hang_up(&mut call, &phone);
    std::thread::sleep(Duration::from_millis(500));

    let mut problems = Vec::new();
    let payload = heard(&phone.sink, 0);
    if !payload.starts_with(&prompts(&["welcome", "digit_0", "new_messages"])) {
        let said = if payload.starts_with(&prompts(&["welcome", "digit_1", "new_messages"])) {
            "one new messages"
        } else {
            "something else"
        };
        problems.push(format!(
            "a message the target already heard live in full is announced as new: the mailbox says \"{said}\", \
             expected \"zero new messages\""
        ));
    }
    let texts: Vec<String> = sender_phone.requests("MESSAGE").iter().map(|m| m.body_text()).collect();
    if texts.len() != 1 {
        problems.push(format!(
            "the sender should be told once that message 1 was heard; it got {} MESSAGEs: {texts:?}",
            texts.len()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue 9: a trunk is trusted to place calls, not to be a subscriber. From a trunk that does
/// not assert identity, `From: 1001` dialing the retrieval number of 1001's message is asked
/// for 1001's PIN instead of hearing the message; with the PIN it hears it. (The callers'
/// trunk of the other tests asserts identity, `asserts_identity = true`.)
#[test]
fn a_trunk_that_does_not_assert_identity_cannot_claim_a_subscriber() {
    const GATEWAY_IP: &str = "127.0.0.3";
    let server = start_ivm_server(&[], NOTIFY_CONFIG, &[]).expect("start ivm-sipd");
    add_subscriber(&server, TARGET.0, TARGET.1, &["--pin", "4321"]).expect("add 1001 with a PIN");
    // Added while the server runs, without --asserts-identity (picked up within a second).
    let gateway = format!("{GATEWAY_IP}:5060");
    server
        .admin_ok(&[
            "trunk",
            "add",
            "gateway",
            "--address",
            &gateway,
            "--trusted",
            GATEWAY_IP,
        ])
        .expect("trunk add");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = clip(20);
    let id = missed_clip(&server, &sent);

    let phone = Phone::new(GATEWAY_IP, server.addr).expect("phone behind the gateway");
    let mut call = phone
        .call(&retrieval_number(id), TARGET.0, None, Law::Pcmu, Duration::from_secs(5))
        .expect("call answered");
    std::thread::sleep(Duration::from_millis(500));
    call.info_digits("4321#").expect("1001's PIN");
    let played = wait_heard(&phone.sink, &sent, Law::Pcmu, HEAR);
    hang_up(&mut call, &phone);
    let payload = heard(&phone.sink, 0);
    assert!(
        payload.starts_with(&prompt("enter_pin")[..FRAME_BYTES * 10]),
        "the trunk caller is asked for the PIN first"
    );
    played.expect("with the PIN, the message plays");
}
