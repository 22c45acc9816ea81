//! Notifications of a missed IVM (SPEC §4 flows 2, 4, 6) as the phones see
//! them: the MWI subscription and its NOTIFYs (RFC 3842: 0/0, a missed
//! message 1/0, heard 0/1, deleted, again on REGISTER, refresh and
//! unsubscribe; unsolicited NOTIFYs; refusals), the smart caller-ID call
//! (From = the retrieval number, display name "IVM <sender>", CANCELled
//! after `callerid_ring_secs`, hung up at once if answered, to the MSISDN
//! through a trunk when not registered), a missed message announced once,
//! the status MESSAGE to the sender (rejected / heard live), and store and
//! forward (the target registers again and is called once per message;
//! `notify` only refreshes MWI).
//!
//! Needs `sipp` on PATH and the release binary (`cargo build --release -p
//! ivm-sipd`). Phones are SIPp scenarios (`mwi_subscriber.xml`,
//! `ivm_target_noanswer.xml`, `sender_status_message.xml`) or the
//! harness's scriptable [`Phone`].

use std::time::{Duration, Instant};

use ivm_e2e::ivm::{CALLER_NUMBER, Law, Target, TargetTrunk, caller, start_ivm_server, wait_messages_settled};
use ivm_e2e::notify::{
    NOTIFY_CONFIG, add_subscriber, clip, clip_caller, deliveries, delivery, log_lines, register_with_sipp,
    retrieval_number, set_rules, then_menu, wait_delivery, wait_heard, wait_log,
};
use ivm_e2e::phone::{Answer, Phone, display_name_of, uri_of, user_of, voice_message};
use ivm_e2e::sip::{DigestCredentials, Request};
use ivm_e2e::{Server, Sipp};

const TARGET: (&str, &str) = ("1001", "pw-1001");
const SETTLE: Duration = Duration::from_secs(15);

/// Starts a server with [`NOTIFY_CONFIG`] (+ `extra`), the callers' trunk,
/// `trunks`, and the target subscriber 1001.
fn server_with_target(trunks: &[TargetTrunk], extra: &str) -> Server {
    let config = ivm_e2e::server::merge_toml(NOTIFY_CONFIG, extra).expect("config");
    start_ivm_server(trunks, &config, &[TARGET]).expect("start ivm-sipd")
}

/// The one message once complete with final delivery states; its id.
fn settled_message(server: &Server) -> i64 {
    wait_messages_settled(server, 1, SETTLE).expect("one complete message");
    deliveries(server).expect("deliveries")[0].message_id
}

#[test]
fn mwi_subscriber_sees_a_missed_message_arrive_and_then_heard() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "mwi", "call", false).expect("subscriber rules");
    let mwi = Sipp::new("mwi_subscriber.xml")
        .users(&[TARGET])
        .timeout(Duration::from_secs(60))
        .spawn(server.addr)
        .expect("start SIPp MWI subscriber");
    // The initial NOTIFY (0/0) must go out before the message exists.
    if let Err(e) = wait_log(&server, &["mwi: NOTIFY", "aor=1001"], 1, Duration::from_secs(10)) {
        let out = mwi.wait().expect("SIPp");
        panic!("no initial NOTIFY: {e:#}\n{}", out.report());
    }

    // 1001 is not registered: the delivery is unanswered at once, then notified.
    clip_caller(&server, "5551001", CALLER_NUMBER, &clip(0))
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    let d = wait_delivery(&server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    assert!(d.notified_at.is_some(), "{d:#?}");

    // 1001 retrieves it (digest-authenticated) and presses # in the menu.
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let mut call = phone
        .call(
            &retrieval_number(id),
            "1001",
            Some(&DigestCredentials::new(TARGET.0, TARGET.1)),
            Law::Pcmu,
            Duration::from_secs(5),
        )
        .expect("retrieval call answered");
    wait_heard(&phone.sink, &then_menu(&clip(0)), Law::Pcmu, Duration::from_secs(20))
        .expect("message played, then the menu");
    call.info('#').expect("INFO #");
    call.wait_bye(Duration::from_secs(15))
        .expect("BYE after the last message");

    let out = mwi.wait().expect("SIPp MWI subscriber");
    let notifies: Vec<(String, String)> = out
        .trace()
        .into_iter()
        .filter(|e| e.received && e.first_line.starts_with("NOTIFY "))
        .map(|e| {
            let body = e
                .text
                .lines()
                .filter(|l| l.starts_with("Voice-Message") || l.starts_with("Message-Account"))
                .collect::<Vec<_>>()
                .join(" | ");
            (e.header("Subscription-State").unwrap_or_default(), body)
        })
        .collect();
    assert!(
        out.success(),
        "MWI NOTIFYs (Subscription-State, body) as received: {notifies:#?}\n{}",
        out.report()
    );
    assert_eq!(notifies.len(), 5, "{notifies:#?}");
    for (_, body) in &notifies {
        assert!(
            body.contains("Message-Account: sip:1001@ivm.local"),
            "Message-Account must be the subscriber's AOR: {notifies:#?}"
        );
    }
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!((d.state.as_str(), d.folder.as_str()), ("heard", "new"), "{d:#?}");
    assert!(d.heard_at.is_some(), "{d:#?}");
}

#[test]
fn subscribe_to_another_package_or_mailbox_is_refused() {
    let server = server_with_target(&[], "");
    add_subscriber(&server, "1002", "pw-1002", &[]).expect("add 1002");
    let client = server.udp_client().expect("udp client");
    let subscribe = |user: &str, event: &str| {
        let mut r = Request::new("SUBSCRIBE", &format!("sip:{user}@{}", server.addr), client.local, "UDP");
        r.set(
            "From",
            &format!("<sip:1002@ivm.local>;tag={}", ivm_e2e::sip::unique("t")),
        );
        r.set("To", &format!("<sip:{user}@ivm.local>"));
        r.set("Event", event);
        r.set("Expires", "600");
        r.set("Contact", &format!("<sip:1002@{}>", client.local));
        r
    };
    // An event package we do not serve: 489 Bad Event, with Allow-Events.
    let resp = client
        .transact(&subscribe("1002", "presence"), Duration::from_secs(3))
        .expect("answer to SUBSCRIBE presence");
    assert_eq!(resp.status, 489, "{}", resp.text());
    assert!(
        resp.header_elements("Allow-Events")
            .iter()
            .any(|e| e == "message-summary"),
        "489 should list Allow-Events: message-summary\n{}",
        resp.text()
    );
    // Someone else's mailbox with one's own (valid) credentials: 403.
    let mut other = subscribe("1001", "message-summary");
    let resp = client
        .send_authenticated(
            &mut other,
            &DigestCredentials::new("1002", "pw-1002"),
            Duration::from_secs(3),
        )
        .expect("answer to SUBSCRIBE for 1001 as 1002");
    assert_eq!(resp.status, 403, "{}", resp.text());
    // Without credentials: a challenge, never a subscription.
    let resp = client
        .transact(&subscribe("1001", "message-summary"), Duration::from_secs(3))
        .expect("answer to SUBSCRIBE without credentials");
    assert_eq!(resp.status, 401, "{}", resp.text());
}

#[test]
fn caller_id_call_shows_the_retrieval_number_and_sender_and_is_cancelled() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "callerid", "call", false).expect("rules");
    // 1001's phone registers from port P; a SIPp UAS on P rings and never
    // answers, for two calls: the IVM itself and then the caller-ID call.
    let phone_port = ivm_e2e::free_port();
    register_with_sipp(&server, TARGET.0, TARGET.1, phone_port).expect("register 1001");
    server.wait_registrations("1001", 1).expect("registered");
    let target = Target::start_calls("ivm_target_noanswer.xml", phone_port, Law::Pcmu, SETTLE, 2).expect("phone");
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let t = target.finish().expect("phone");
    let invites: Vec<_> = t
        .sipp
        .trace()
        .into_iter()
        .filter(|e| e.received && e.first_line.starts_with("INVITE "))
        .collect();
    let cancels: Vec<_> = t
        .sipp
        .trace()
        .into_iter()
        .filter(|e| e.received && e.first_line.starts_with("CANCEL "))
        .collect();
    assert!(
        t.sipp.success() && invites.len() == 2,
        "expected two INVITEs (the IVM, then the caller-ID call), both cancelled\n{}",
        t.sipp.report()
    );
    let id = settled_message(&server);
    let number = retrieval_number(id);

    let ivm_from = invites[0].header("From").unwrap_or_default();
    assert!(
        ivm_from.contains("sip:7001@"),
        "the IVM leg comes from the sender: {ivm_from}"
    );
    let cid = &invites[1];
    let from = cid.header("From").unwrap_or_default();
    assert_eq!(
        user_of(&uri_of(&from)).as_deref(),
        Some(number.as_str()),
        "caller-ID From user must be the retrieval number: {}",
        cid.text
    );
    assert_eq!(
        uri_of(&from),
        format!("sip:{number}@ivm.local"),
        "caller-ID From URI: {}",
        cid.text
    );
    let display = display_name_of(&from).unwrap_or_default();
    assert_eq!(
        display,
        format!("IVM {CALLER_NUMBER}"),
        "caller-ID display name must name the sender: {from:?}"
    );
    assert!(
        cid.first_line
            .starts_with(&format!("INVITE sip:1001@127.0.0.1:{phone_port}")),
        "the caller-ID call goes to the registered contact: {}",
        cid.first_line
    );
    let cid_call_id = cid.header("Call-ID").unwrap_or_default();
    let cancel = cancels
        .iter()
        .find(|c| c.header("Call-ID").as_deref() == Some(cid_call_id.as_str()))
        .unwrap_or_else(|| panic!("no CANCEL for the caller-ID call\n{}", t.sipp.report()));
    let rang = cancel.time - cid.time;
    assert!(
        (1.5..=3.5).contains(&rang),
        "the caller-ID call rang {rang:.2} s; callerid_ring_secs = 2"
    );
    let ivm_rang = cancels[0].time - invites[0].time;
    assert!(
        (1.5..=3.5).contains(&ivm_rang),
        "the IVM leg rang {ivm_rang:.2} s; ring_timeout_secs = 2"
    );

    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!(d.state, "notified", "{d:#?}");
    assert!(d.notified_at.is_some(), "{d:#?}");
    assert_eq!(
        log_lines(&server, &["caller-ID call", "message_id="]).len(),
        1,
        "exactly one caller-ID call"
    );
}

#[test]
fn answered_caller_id_call_is_hung_up_at_once() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "callerid", "call", false).expect("rules");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    // The IVM rings unanswered; the caller-ID call is picked up.
    phone.plan(&[Answer::Ring, Answer::Pickup]);
    phone.answer_with(Answer::Busy);
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    let invites = phone.requests("INVITE");
    assert_eq!(
        invites.len(),
        2,
        "the IVM and the caller-ID call: {:#?}",
        invites.iter().map(|i| i.text()).collect::<Vec<_>>()
    );
    let cid = &invites[1];
    assert_eq!(
        user_of(&uri_of(cid.header("From").unwrap_or_default())),
        Some(retrieval_number(id)),
        "{}",
        cid.text()
    );
    let call_id = cid.call_id();
    let ack = phone
        .wait_for(Duration::from_secs(3), "ACK of the caller-ID call", |m| {
            m.is_request() && m.method() == "ACK" && m.call_id() == call_id
        })
        .expect("ACK");
    let bye = phone
        .wait_for(Duration::from_secs(3), "BYE of the caller-ID call", |m| {
            m.is_request() && m.method() == "BYE" && m.call_id() == call_id
        })
        .expect("BYE");
    let held = bye.arrival.saturating_duration_since(cid.arrival);
    assert!(
        held < Duration::from_millis(1500),
        "an answered caller-ID call is hung up at once; BYE came {held:?} after the INVITE (ACK at {:?})",
        ack.arrival.saturating_duration_since(cid.arrival)
    );
}

#[test]
fn caller_id_call_reaches_an_unregistered_subscriber_at_its_msisdn_through_a_trunk() {
    let trunk = TargetTrunk::new("mobile", r"\+49\d+");
    let server = start_ivm_server(std::slice::from_ref(&trunk), NOTIFY_CONFIG, &[]).expect("start ivm-sipd");
    add_subscriber(&server, "1003", "pw-1003", &["--msisdn", "+4915112345678"]).expect("add 1003");
    set_rules(&server, "1003", "callerid", "call", false).expect("rules");
    let mobile = Target::start("ivm_target_noanswer.xml", trunk.port, Law::Pcmu, SETTLE).expect("trunk target");
    let started = Instant::now();
    caller("5551003", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let t = mobile.finish().expect("trunk target");
    t.sipp.assert_success();
    let id = settled_message(&server);
    let invite = t.sipp.received("INVITE ").expect("caller-ID INVITE at the trunk");
    assert!(
        invite.first_line.starts_with("INVITE sip:+4915112345678@"),
        "the caller-ID call to an unregistered subscriber goes to its MSISDN: {}",
        invite.first_line
    );
    let from = invite.header("From").unwrap_or_default();
    assert_eq!(user_of(&uri_of(&from)), Some(retrieval_number(id)), "{}", invite.text);
    assert!(display_name_of(&from).as_deref() == Some("IVM 7001"), "{from}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn store_and_forward_calls_the_target_once_per_message_when_it_registers_again() {
    let server = server_with_target(&[], "");
    add_subscriber(&server, "1004", "pw-1004", &[]).expect("add 1004");
    // 1001: store and forward by call (the default); 1004: notify only.
    set_rules(&server, "1004", "mwi", "notify", false).expect("rules 1004");
    // Two messages while nobody is registered.
    let (first, second) = (clip(0), clip(100));
    for audio in [&first, &second] {
        clip_caller(&server, "555*1001*1004", CALLER_NUMBER, audio)
            .run(server.addr)
            .expect("run caller")
            .assert_success();
    }
    wait_messages_settled(&server, 2, SETTLE).expect("two complete messages");
    for id in [1, 2] {
        for t in ["1001", "1004"] {
            let d = wait_delivery(&server, id, t, SETTLE, "notified", |d| d.state == "notified").expect("notified");
            assert_eq!(d.sip_status, Some(480), "no registration: {d:#?}");
            assert!(d.forwarded_at.is_none(), "{d:#?}");
        }
    }

    let phone = Phone::new("127.0.0.1", server.addr).expect("phone 1001");
    let other = Phone::new("127.0.0.1", server.addr).expect("phone 1004");
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER 1001");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let reg = other.register("1004", "pw-1004", 600).expect("REGISTER 1004");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());

    // One call per pending message, each from the sender, each playing it.
    for (n, audio) in [(1usize, &first), (2, &second)] {
        let invite = ivm_e2e::wait_for(Duration::from_secs(20), "a store-and-forward INVITE", || {
            Ok(phone.requests("INVITE").get(n - 1).cloned())
        })
        .unwrap_or_else(|e| panic!("call {n}: {e:#}"));
        let from = invite.header("From").unwrap_or_default();
        assert_eq!(
            user_of(&uri_of(from)).as_deref(),
            Some(CALLER_NUMBER),
            "the forwarded call comes from the sender: {}",
            invite.text()
        );
        wait_heard(&phone.sink, audio, Law::Pcmu, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("message {n} is played: {e:#}"));
        let call_id = invite.call_id();
        phone
            .wait_for(Duration::from_secs(5), "BYE after the message", |m| {
                m.is_request() && m.method() == "BYE" && m.call_id() == call_id
            })
            .expect("BYE");
        let d = wait_delivery(&server, n as i64, "1001", SETTLE, "forwarded", |d| {
            d.forwarded_at.is_some() && d.state != "notified"
        })
        .expect("delivery after forwarding");
        assert!(
            matches!(d.state.as_str(), "delivered" | "heard"),
            "a forwarded message that was played whole is delivered/heard: {d:#?}"
        );
    }

    // Registering again does not call again.
    let mark = phone.mark();
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("second REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    std::thread::sleep(Duration::from_secs(3));
    let again: Vec<String> = phone
        .received()
        .iter()
        .skip(mark)
        .filter(|m| m.is_request() && m.method() == "INVITE")
        .map(|m| m.text())
        .collect();
    assert!(again.is_empty(), "called again after a second REGISTER: {again:#?}");
    assert_eq!(phone.requests("INVITE").len(), 2);
    let heard = ivm_e2e::notify::heard(&phone.sink, 0);
    for (n, audio) in [(1, &first), (2, &second)] {
        assert_eq!(
            ivm_e2e::notify::count_runs(&heard, audio),
            1,
            "message {n} is played exactly once"
        );
    }

    // 1004's rule is notify: no call.
    assert!(
        other.requests("INVITE").is_empty(),
        "a `notify` subscriber must not be called: {:#?}",
        other.requests("INVITE").iter().map(|m| m.text()).collect::<Vec<_>>()
    );
    for id in [1, 2] {
        let d = delivery(&server, id, "1004").expect("db").expect("delivery 1004");
        assert_eq!(d.state, "notified", "{d:#?}");
    }
}

#[test]
fn subscription_is_never_granted_longer_than_asked() {
    // RFC 6665 §4.2.1.1: the Expires of the 200 may be shorter than the
    // request's, never longer (too short: 423 with Min-Expires).
    let server = server_with_target(&[], "");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let resp = phone
        .subscribe_mwi(TARGET.0, TARGET.1, 30)
        .expect("SUBSCRIBE Expires: 30");
    match resp.status() {
        Some(423) => assert!(resp.header("Min-Expires").is_some(), "{}", resp.text()),
        Some(200) => {
            let granted: u32 = resp
                .header("Expires")
                .and_then(|e| e.trim().parse().ok())
                .unwrap_or(u32::MAX);
            assert!(
                granted <= 30,
                "SUBSCRIBE asked Expires: 30 and was granted {granted} s (RFC 6665 §4.2.1.1: MUST NOT be longer)\n{}",
                resp.text()
            );
        }
        other => panic!("unexpected answer {other:?}:\n{}", resp.text()),
    }
}

/// The `Voice-Message` values of the MWI NOTIFYs the phone got, in order.
fn voice_messages(phone: &Phone) -> Vec<String> {
    phone
        .requests("NOTIFY")
        .iter()
        .map(|n| voice_message(n).unwrap_or_else(|| format!("(no Voice-Message in {:?})", n.body_text())))
        .collect()
}

/// Waits until the phone got `n` NOTIFYs; returns their Voice-Message values.
fn wait_notifies(phone: &Phone, n: usize, what: &str) -> Vec<String> {
    let got = ivm_e2e::wait_for(Duration::from_secs(10), what, || {
        Ok((phone.requests("NOTIFY").len() >= n).then_some(()))
    });
    let values = voice_messages(phone);
    got.unwrap_or_else(|e| panic!("{e:#}; NOTIFYs so far: {values:?}"));
    values
}

/// A phone that crashed and started again registers a new Contact from the same address; the
/// binding of its earlier run is still there (equal q). IVM must reach the phone at the Contact
/// it registered last: whichever it tries first, a `404` from the old Contact drops that
/// binding, and the message is delivered.
#[test]
fn a_phone_that_restarted_rings_at_the_contact_it_registered_last() {
    let server = server_with_target(&[], "");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let old = format!("sip:1001@{}", phone.addr);
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    // The restart: the old Contact is unknown to the new process, which registers its own.
    phone.forget_contact(&old);
    let new = format!("sip:1001-restarted@{}", phone.addr);
    let reg = phone
        .register_contact(TARGET.0, TARGET.1, 600, &new, &ivm_e2e::sip::unique("reg-after-crash-"))
        .expect("REGISTER after the restart");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    let invites: Vec<String> = phone
        .requests("INVITE")
        .iter()
        .filter_map(|i| i.request_uri())
        .collect();
    assert!(invites.contains(&new), "the phone rang at its new Contact: {invites:?}");
    wait_heard(
        &phone.sink,
        &ivm_e2e::audio::sweep_4s(),
        Law::Pcmu,
        Duration::from_secs(15),
    )
    .expect("the message, live, at the new Contact");
    let d = wait_delivery(&server, id, "1001", SETTLE, "delivered", |d| d.state == "delivered").expect("delivered");
    assert_eq!(d.sip_status, Some(200), "{d:#?}");
    if invites.contains(&old) {
        let rows = server.registrations("1001").expect("registrations");
        assert_eq!(rows.len(), 1, "the binding that answered 404 is gone: {rows:?}");
    }
}

/// A subscriber with two phones (a desk phone registered first that only rings, a mobile
/// registered last that picks up): both ring at once (RFC 3261 §16.7), the one that answers
/// hears the message and the other is CANCELled. One at a time, the desk phone would have rung
/// for the whole ring timeout (60 s here) and the mobile not at all.
#[test]
fn every_phone_of_a_subscriber_rings_at_once_and_the_others_are_cancelled() {
    let server = server_with_target(&[], "[calls]\nring_timeout_secs = 60\n");
    let mobile = Phone::new("127.0.0.1", server.addr).expect("mobile");
    let desk = Phone::new("127.0.0.1", server.addr).expect("desk phone");
    desk.answer_with(Answer::Ring);
    let reg = mobile.register(TARGET.0, TARGET.1, 600).expect("REGISTER mobile");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    std::thread::sleep(Duration::from_millis(1100));
    let reg = desk.register(TARGET.0, TARGET.1, 600).expect("REGISTER desk phone");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    wait_heard(
        &mobile.sink,
        &ivm_e2e::audio::sweep_4s(),
        Law::Pcmu,
        Duration::from_secs(15),
    )
    .expect("the mobile hears the message");
    let d = wait_delivery(&server, id, "1001", SETTLE, "delivered", |d| d.state == "delivered").expect("delivered");
    assert_eq!(d.sip_status, Some(200), "{d:#?}");
    // Long before the 60 s ring timeout.
    ivm_e2e::wait_for(Duration::from_secs(5), "the desk phone's CANCEL", || {
        Ok((!desk.requests("CANCEL").is_empty()).then_some(()))
    })
    .expect("the desk phone is CANCELled once the mobile answered");
    assert_eq!(desk.requests("INVITE").len(), 1, "the desk phone rang once");
}

/// A target that puts IVM's call on hold (re-INVITE `a=sendonly`, RFC 3264 §6.1) gets the
/// answer `a=recvonly` and no RTP while held; after the resume it hears the rest: the whole
/// message, once, in order.
#[test]
fn a_target_that_holds_the_call_hears_the_rest_after_resuming() {
    let server = server_with_target(&[], "");
    caller("5551001", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    wait_delivery(&server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    // Registering again, 1001 is called (store and forward by call) and picks up.
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let invite = ivm_e2e::wait_for(Duration::from_secs(20), "the store-and-forward INVITE", || {
        Ok(phone.requests("INVITE").first().cloned())
    })
    .expect("INVITE");
    phone
        .sink
        .first_packet(Duration::from_secs(5))
        .expect("the message begins");
    std::thread::sleep(Duration::from_millis(500));
    let hold = phone.reinvite_answered(&invite.call_id(), "sendonly").expect("hold");
    assert_eq!(hold.status(), Some(200), "{}", hold.text());
    assert!(
        hold.body_text().contains("a=recvonly\r\n"),
        "a sendonly offer is answered recvonly:\n{}",
        hold.text()
    );
    assert_eq!(
        phone.sink.count_during(Duration::from_millis(1500)),
        0,
        "no RTP to a target that holds the call"
    );
    let resume = phone.reinvite_answered(&invite.call_id(), "sendrecv").expect("resume");
    assert!(resume.body_text().contains("a=sendrecv\r\n"), "{}", resume.text());
    let sent = ivm_e2e::audio::sweep_4s();
    wait_heard(&phone.sink, &sent, Law::Pcmu, Duration::from_secs(15)).expect("the whole message after the resume");
    let call_id = invite.call_id();
    phone
        .wait_for(Duration::from_secs(5), "BYE after the message", |m| {
            m.is_request() && m.method() == "BYE" && m.call_id() == call_id
        })
        .expect("BYE");
    let report = ivm_e2e::rtp::StreamReport::of(&phone.sink.packets(), 0);
    assert!(
        report.seq_gaps.is_empty() && report.duplicates == 0,
        "{}",
        report.summary()
    );
    let at = ivm_e2e::notify::find_run(&report.payload, &sent);
    assert!(at.is_some(), "the message, contiguous and whole");
}

/// RFC 6665 §4.2.2: a NOTIFY answered `481` (the phone forgot the subscription, e.g. after a
/// reboot) ends the subscription: no NOTIFY is sent in it again.
#[test]
fn a_notify_answered_481_ends_the_subscription() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "mwi", "notify", false).expect("rules");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    phone.answer_notify_with(481);
    let ok = phone.subscribe_mwi(TARGET.0, TARGET.1, 600).expect("SUBSCRIBE");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_eq!(wait_notifies(&phone, 1, "the initial NOTIFY"), ["0/0"]);
    // A message for 1001 changes its mailbox: nothing more goes to the dead subscription.
    clip_caller(&server, "5551001", CALLER_NUMBER, &clip(0))
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    wait_delivery(&server, id, "1001", SETTLE, "notified", |d| d.state == "notified").expect("notified");
    std::thread::sleep(Duration::from_secs(2));
    let mut sent: Vec<(u32, Option<String>)> = phone
        .requests("NOTIFY")
        .iter()
        .map(|n| (n.cseq().0, voice_message(n)))
        .collect();
    sent.dedup(); // a UDP retransmission is the same NOTIFY
    assert_eq!(sent.len(), 1, "no NOTIFY after the 481: {sent:?}");
    wait_log(
        &server,
        &["mwi: subscription ended", "status=481"],
        1,
        Duration::from_secs(5),
    )
    .expect("the end of the subscription is logged");
}

#[test]
fn mwi_is_notified_again_on_register_and_after_a_delete() {
    let server = server_with_target(&[], "");
    // Store and forward `notify`: registering again only refreshes MWI.
    set_rules(&server, TARGET.0, "mwi", "notify", false).expect("rules");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    let ok = phone.subscribe_mwi(TARGET.0, TARGET.1, 600).expect("SUBSCRIBE");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_eq!(wait_notifies(&phone, 1, "the initial NOTIFY"), ["0/0"]);

    clip_caller(&server, "5551001", CALLER_NUMBER, &clip(0))
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    assert_eq!(
        wait_notifies(&phone, 2, "NOTIFY for the missed message"),
        ["0/0", "1/0"]
    );

    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    assert_eq!(
        wait_notifies(&phone, 3, "NOTIFY after REGISTER"),
        ["0/0", "1/0", "1/0"],
        "a REGISTER re-sends the state"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        phone.requests("INVITE").is_empty(),
        "store-forward `notify` must not call: {:?}",
        phone.requests("INVITE").iter().map(|m| m.text()).collect::<Vec<_>>()
    );

    // Listened to (0/1), then deleted (0/0).
    let ear = Phone::new(ivm_e2e::ivm::CALLER_IP, server.addr).expect("retrieving phone");
    let mut call = ear
        .call(&retrieval_number(id), "1001", None, Law::Pcmu, Duration::from_secs(5))
        .expect("retrieval answered");
    wait_heard(&ear.sink, &then_menu(&clip(0)), Law::Pcmu, Duration::from_secs(20)).expect("message heard");
    call.info('7').expect("INFO 7");
    call.wait_bye(Duration::from_secs(15)).expect("BYE");
    assert_eq!(
        wait_notifies(&phone, 5, "NOTIFYs for heard and deleted"),
        ["0/0", "1/0", "1/0", "0/1", "0/0"]
    );
    for n in phone.requests("NOTIFY") {
        assert_eq!(n.header("Event"), Some("message-summary"), "{}", n.text());
        assert!(
            n.header("Subscription-State").unwrap_or_default().starts_with("active"),
            "{}",
            n.text()
        );
    }
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert_eq!((d.state.as_str(), d.folder.as_str()), ("heard", "deleted"), "{d:#?}");
}

#[test]
fn unsolicited_mwi_reaches_a_registered_phone_that_did_not_subscribe() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "mwi", "notify", true).expect("rules");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    phone.answer_with(Answer::Ring);
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    // The IVM rings 2 s unanswered, then the phone's lamp must light.
    clip_caller(&server, "5551001", CALLER_NUMBER, &clip(0))
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    settled_message(&server);
    let lit = phone
        .wait_for(Duration::from_secs(10), "an unsolicited NOTIFY 1/0", |m| {
            m.is_request() && m.method() == "NOTIFY" && voice_message(m).as_deref() == Some("1/0")
        })
        .unwrap_or_else(|e| panic!("{e:#}; NOTIFYs: {:?}", voice_messages(&phone)));
    assert_eq!(lit.header("Event"), Some("message-summary"), "{}", lit.text());
    assert!(lit.body_text().contains("Messages-Waiting: yes"), "{}", lit.body_text());
    assert!(
        lit.request_uri()
            .is_some_and(|u| u.starts_with(&format!("sip:1001@{}", phone.addr))),
        "sent to the registered contact: {}",
        lit.start
    );
}

#[test]
fn a_missed_message_is_notified_once_even_when_store_and_forward_is_missed_too() {
    let server = server_with_target(&[], "");
    set_rules(&server, TARGET.0, "callerid", "call", false).expect("rules");
    let phone = Phone::new("127.0.0.1", server.addr).expect("phone");
    phone.answer_with(Answer::Ring);
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    clip_caller(&server, "5551001", CALLER_NUMBER, &clip(0))
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    // The IVM and the caller-ID call, both rung out and cancelled.
    ivm_e2e::wait_for(Duration::from_secs(10), "two CANCELs", || {
        Ok((phone.requests("CANCEL").len() >= 2).then_some(()))
    })
    .expect("the IVM and the caller-ID call cancelled");
    let invites = phone.requests("INVITE");
    assert_eq!(
        user_of(&uri_of(invites[1].header("From").unwrap_or_default())),
        Some(retrieval_number(id))
    );

    // Registering again: store and forward calls (rings out unanswered) --
    // and that second miss is not notified again.
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER again");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let forward = ivm_e2e::wait_for(Duration::from_secs(5), "the store-and-forward INVITE", || {
        Ok(phone.requests("INVITE").get(2).cloned())
    })
    .expect("store and forward call");
    assert_eq!(
        user_of(&uri_of(forward.header("From").unwrap_or_default())).as_deref(),
        Some(CALLER_NUMBER),
        "{}",
        forward.text()
    );
    std::thread::sleep(Duration::from_secs(4));
    let froms: Vec<String> = phone
        .requests("INVITE")
        .iter()
        .map(|i| i.header("From").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        froms.len(),
        3,
        "the IVM, one caller-ID call, one store-and-forward call -- nothing more: {froms:#?}"
    );
    let d = delivery(&server, id, "1001").expect("db").expect("delivery");
    assert!(d.notified_at.is_some() && d.forwarded_at.is_some(), "{d:#?}");
    assert_eq!(
        d.state, "notified",
        "the target was notified; a missed store-and-forward call should not turn the delivery back to \
         `unanswered`: {d:#?}"
    );
}

#[test]
fn sender_is_told_by_message_when_rejected_and_when_heard_live() {
    let busy = TargetTrunk::new("busy", r"1\d{3}");
    let answers = TargetTrunk::new("answers", r"2\d{3}");
    let sender = ("1002", "pw-1002");
    let server = start_ivm_server(&[busy.clone(), answers.clone()], NOTIFY_CONFIG, &[sender]).expect("start");
    let port = ivm_e2e::free_port();
    register_with_sipp(&server, sender.0, sender.1, port).expect("register 1002");
    server.wait_registrations("1002", 1).expect("registered");
    let status = Sipp::new("sender_status_message.xml")
        .local_port(port)
        .calls(2)
        .args(&["-recv_timeout", "30000"])
        .timeout(Duration::from_secs(40))
        .spawn(server.addr)
        .expect("sender's phone");
    ivm_e2e::ivm::wait_udp_bound(port, Duration::from_secs(5)).expect("bound");
    let t1 = Target::start("ivm_target_busy.xml", busy.port, Law::Pcmu, SETTLE).expect("busy target");
    let t2 = Target::start("ivm_target_answer.xml", answers.port, Law::Pcmu, SETTLE).expect("answering target");
    ivm_e2e::ivm::subscriber_caller("555*1234*2345", sender.0, sender.1)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    t1.finish().expect("busy").sipp.assert_success();
    t2.finish().expect("answer").sipp.assert_success();
    let out = status.wait().expect("sender's phone");
    let mut texts: Vec<String> = out
        .trace()
        .into_iter()
        .filter(|e| e.received && e.first_line.starts_with("MESSAGE "))
        .map(|e| e.text.lines().last().unwrap_or_default().trim().to_string())
        .collect();
    texts.sort();
    assert!(out.success(), "texts {texts:?}\n{}", out.report());
    assert_eq!(
        texts,
        [
            "Your voice message 1 to 1234 was rejected.",
            "Your voice message 1 to 2345 was heard.",
        ]
    );
}
