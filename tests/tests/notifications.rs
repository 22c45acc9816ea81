//! Notifications of a missed IVM (SPEC §4 flows 2, 4, 6) as the target's
//! phone sees them: the MWI subscription and its NOTIFYs (RFC 3842), the
//! smart caller-ID call (From = the retrieval number, display name = the
//! sender, CANCELled after `callerid_ring_secs`), and store and forward
//! (the target registers again and is called with the message, once).
//!
//! Needs `sipp` on PATH and the release binary (`cargo build --release -p
//! ivm-sipd`). Phones are SIPp scenarios (`mwi_subscriber.xml`,
//! `ivm_target_noanswer.xml`) or the harness's scriptable [`Phone`].

use std::time::{Duration, Instant};

use ivm_e2e::audio;
use ivm_e2e::ivm::{CALLER_NUMBER, Law, Target, TargetTrunk, caller, start_ivm_server, wait_messages_settled};
use ivm_e2e::notify::{
    NOTIFY_CONFIG, add_subscriber, deliveries, delivery, log_lines, register_with_sipp, retrieval_number, set_rules,
    wait_delivery, wait_heard, wait_log,
};
use ivm_e2e::phone::{Answer, Phone, display_name_of, uri_of, user_of};
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
    caller("5551001", CALLER_NUMBER)
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
    wait_heard(&phone.sink, &audio::sweep_4s(), Law::Pcmu, Duration::from_secs(20)).expect("message played");
    call.info('#').expect("INFO #");
    call.wait_bye(Duration::from_secs(15)).expect("BYE after the last message");

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
        let mut r = Request::new(
            "SUBSCRIBE",
            &format!("sip:{user}@{}", server.addr),
            client.local,
            "UDP",
        );
        r.set("From", &format!("<sip:1002@ivm.local>;tag={}", ivm_e2e::sip::unique("t")));
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
        .send_authenticated(&mut other, &DigestCredentials::new("1002", "pw-1002"), Duration::from_secs(3))
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
    assert!(ivm_from.contains("sip:7001@"), "the IVM leg comes from the sender: {ivm_from}");
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
    assert!(
        display.contains(CALLER_NUMBER),
        "caller-ID display name must name the sender {CALLER_NUMBER}: {from:?}"
    );
    assert!(
        cid.first_line.starts_with(&format!("INVITE sip:1001@127.0.0.1:{phone_port}")),
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
    assert!(display_name_of(&from).unwrap_or_default().contains(CALLER_NUMBER), "{from}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn store_and_forward_calls_the_target_once_when_it_registers_again() {
    let server = server_with_target(&[], "");
    add_subscriber(&server, "1004", "pw-1004", &[]).expect("add 1004");
    // 1001: store and forward by call (the default); 1004: notify only.
    set_rules(&server, "1004", "mwi", "notify", false).expect("rules 1004");
    caller("555*1001*1004", CALLER_NUMBER)
        .run(server.addr)
        .expect("run caller")
        .assert_success();
    let id = settled_message(&server);
    for t in ["1001", "1004"] {
        let d = wait_delivery(&server, id, t, SETTLE, "notified", |d| d.state == "notified").expect("notified");
        assert_eq!(d.sip_status, Some(480), "no registration: {d:#?}");
        assert!(d.forwarded_at.is_none(), "{d:#?}");
    }

    let phone = Phone::new("127.0.0.1", server.addr).expect("phone 1001");
    let other = Phone::new("127.0.0.1", server.addr).expect("phone 1004");
    let reg = phone.register(TARGET.0, TARGET.1, 600).expect("REGISTER 1001");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let reg = other.register("1004", "pw-1004", 600).expect("REGISTER 1004");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());

    let invite = phone
        .wait_for(Duration::from_secs(5), "INVITE after registering", |m| {
            m.is_request() && m.method() == "INVITE"
        })
        .expect("store and forward INVITE");
    let from = invite.header("From").unwrap_or_default();
    assert_eq!(
        user_of(&uri_of(from)).as_deref(),
        Some(CALLER_NUMBER),
        "the forwarded call comes from the sender: {}",
        invite.text()
    );
    let sent = audio::sweep_4s();
    wait_heard(&phone.sink, &sent, Law::Pcmu, Duration::from_secs(15)).expect("the message is played");
    let call_id = invite.call_id();
    phone
        .wait_for(Duration::from_secs(5), "BYE after the message", |m| {
            m.is_request() && m.method() == "BYE" && m.call_id() == call_id
        })
        .expect("BYE");
    let d = wait_delivery(&server, id, "1001", SETTLE, "delivered by store and forward", |d| {
        d.forwarded_at.is_some() && d.state != "notified"
    })
    .expect("delivery after forwarding");
    assert!(
        matches!(d.state.as_str(), "delivered" | "heard"),
        "a forwarded message that was played whole is delivered/heard: {d:#?}"
    );

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
    assert_eq!(phone.requests("INVITE").len(), 1);
    let heard = ivm_e2e::notify::heard(&phone.sink, 0);
    assert_eq!(
        ivm_e2e::notify::count_runs(&heard, &sent),
        1,
        "the message is played exactly once"
    );

    // 1004's rule is notify: no call.
    assert!(
        other.requests("INVITE").is_empty(),
        "a `notify` subscriber must not be called: {:#?}",
        other.requests("INVITE").iter().map(|m| m.text()).collect::<Vec<_>>()
    );
    let d = delivery(&server, id, "1004").expect("db").expect("delivery 1004");
    assert_eq!(d.state, "notified", "{d:#?}");
}
