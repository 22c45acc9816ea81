//! Presence-aware delivery: a subscriber's phone PUBLISHes its presence (RFC 3903, PIDF with
//! RPID activities); a target that is busy, on do-not-disturb or closed is not rung — its
//! message is stored and it is notified at once by its own rules — and the sender hears a
//! prompt saying so between two beeps. Publishing "open" again makes the next message ring.

use std::time::Duration;

use ivm_e2e::ivm::Law;
use ivm_e2e::notify::{find_run, heard, messages, prompt, wait_delivery};
use ivm_e2e::phone::{Phone, pidf};
use ivm_e2e::sip::DigestCredentials;
use ivm_e2e::{Server, wait_for};

const SENDER: (&str, &str) = ("1001", "pw-1001");
const TARGET: (&str, &str) = ("1002", "pw-1002");

fn server() -> Server {
    Server::start_with_subscribers("[calls]\nbeep_ms = 200\n", &[SENDER, TARGET]).expect("start ivm-sipd")
}

/// 1001 speaks a few seconds of (silent) message to 1002 from `phone`.
fn send_message(phone: &Phone, seconds: u64) {
    let creds = DigestCredentials::new(SENDER.0, SENDER.1);
    let mut call = phone
        .call("5551002", SENDER.0, Some(&creds), Law::Pcmu, Duration::from_secs(5))
        .expect("the IVM call is answered");
    std::thread::sleep(Duration::from_secs(seconds));
    call.bye().expect("BYE");
}

#[test]
fn a_busy_target_is_not_rung_its_message_waits_and_the_sender_is_told() {
    let server = server();
    let target = Phone::new("127.0.0.1", server.addr).expect("target phone");
    let reg = target.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let busy = pidf(TARGET.0, "open", Some("busy"), None);
    let ok = target
        .publish(TARGET.0, TARGET.1, Some(&busy), None, 600)
        .expect("PUBLISH busy");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_eq!(ok.header("Expires"), Some("600"), "{}", ok.text());
    let etag = ok.header("SIP-ETag").map(str::to_owned).expect("an entity tag");

    let sender = Phone::new("127.0.0.1", server.addr).expect("sender phone");
    send_message(&sender, 7);
    let id = wait_for(Duration::from_secs(5), "the message", || {
        Ok(messages(&server)?.first().map(|m| m.0))
    })
    .expect("message");
    let d = wait_delivery(&server, id, TARGET.0, Duration::from_secs(10), "stored", |d| {
        d.state == "unanswered" || d.state == "notified"
    })
    .expect("the delivery waits in the mailbox");
    assert_eq!(d.sip_status, Some(486), "busy: {d:#?}");
    assert!(target.requests("INVITE").is_empty(), "a busy target is not rung");
    // The sender heard why, between the beeps.
    let said = prompt("unavailable");
    let got = heard(&sender.sink, 0);
    assert!(
        find_run(&got, &said[1600..4800]).is_some(),
        "the sender did not hear the 'not available' prompt ({} bytes heard)",
        got.len()
    );

    // Available again: the publication is modified by its entity tag, and the next message rings.
    let open = pidf(TARGET.0, "open", None, None);
    let ok = target
        .publish(TARGET.0, TARGET.1, Some(&open), Some(&etag), 600)
        .expect("PUBLISH open");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_ne!(ok.header("SIP-ETag"), Some(etag.as_str()), "a new entity tag");
    let stale = target
        .publish(TARGET.0, TARGET.1, None, Some(&etag), 600)
        .expect("refresh with the old tag");
    assert_eq!(stale.status(), Some(412), "{}", stale.text());
    let before = messages(&server).expect("messages").len();
    send_message(&sender, 2);
    wait_for(Duration::from_secs(10), "the INVITE to the available target", || {
        Ok((!target.requests("INVITE").is_empty()).then_some(()))
    })
    .expect("an available target rings");
    assert_eq!(messages(&server).expect("messages").len(), before + 1);
}

#[test]
fn do_not_disturb_and_closed_are_not_rung_either_and_bad_publications_are_refused() {
    let server = server();
    let target = Phone::new("127.0.0.1", server.addr).expect("target phone");
    let reg = target.register(TARGET.0, TARGET.1, 600).expect("REGISTER");
    assert_eq!(reg.status(), Some(200), "{}", reg.text());
    let no_body = target.publish(TARGET.0, TARGET.1, None, None, 600).expect("PUBLISH");
    assert_eq!(
        no_body.status(),
        Some(400),
        "an initial PUBLISH needs a body: {}",
        no_body.text()
    );
    let doc = pidf(TARGET.0, "open", None, Some("Do Not Disturb"));
    let short = target
        .publish(TARGET.0, TARGET.1, Some(&doc), None, 10)
        .expect("PUBLISH");
    assert_eq!(short.status(), Some(423), "{}", short.text());
    assert_eq!(short.header("Min-Expires"), Some("60"));
    let unknown = target
        .publish(TARGET.0, TARGET.1, None, Some("no-such-tag"), 600)
        .expect("PUBLISH");
    assert_eq!(unknown.status(), Some(412), "{}", unknown.text());

    let sender = Phone::new("127.0.0.1", server.addr).expect("sender phone");
    for (n, doc) in [doc, pidf(TARGET.0, "closed", None, None)].iter().enumerate() {
        let ok = target
            .publish(TARGET.0, TARGET.1, Some(doc), None, 600)
            .expect("PUBLISH");
        assert_eq!(ok.status(), Some(200), "{}", ok.text());
        send_message(&sender, 1);
        let id = wait_for(Duration::from_secs(5), "the message", || {
            Ok(messages(&server)?.get(n).map(|m| m.0))
        })
        .expect("message");
        let d = wait_delivery(&server, id, TARGET.0, Duration::from_secs(10), "stored", |d| {
            d.state == "unanswered" || d.state == "notified"
        })
        .expect("stored");
        assert_eq!(d.sip_status, Some(480), "{d:#?}");
    }
    assert!(target.requests("INVITE").is_empty(), "not rung while DND or closed");
}
