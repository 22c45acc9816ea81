//! Notifications driven by events: the real notifier and channels over a call layer with an
//! in-memory SIP wire and a recording SMS gateway.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::notifier::{self, Notice};
use super::sms_gateway::SmsGateway;
use crate::services::calls::events::CallEvent;
use crate::services::calls::testing::{self, TestCalls};
use crate::services::mwi::Mwi;
use crate::services::registrar::location::{ContactUpdate, RegisterOp};
use crate::stack::transport::TransportKind;
use crate::store::mailbox::{self, Profile};
use crate::store::messages::{self, NewMessage, delivery};
use crate::store::subscribers::{self, NewSubscriber};

/// Keeps every text it is asked to queue.
#[derive(Default)]
struct Outbox {
    queued: Mutex<Vec<(String, String, String)>>,
}

impl SmsGateway for Outbox {
    fn queue(
        &self,
        dedupe_key: String,
        to: String,
        text: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            if let Ok(mut q) = self.queued.lock() {
                q.push((dedupe_key, to, text));
            }
            Ok(())
        })
    }
}

impl Outbox {
    fn queued(&self) -> Vec<(String, String, String)> {
        self.queued.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

struct World {
    t: TestCalls,
    outbox: Arc<Outbox>,
    events: mpsc::UnboundedSender<CallEvent>,
    registered: mpsc::UnboundedSender<String>,
}

/// Subscribers 1001 (MSISDN +4915100001001, notified by SMS only, pending messages by
/// `store_forward`) and 7001 (MSISDN
/// +4915100007001), a complete 5 s message from 7001 to 1001, and the notifier listening.
async fn world(store_forward: &'static str) -> (World, i64) {
    world_after(store_forward, |_, _| Ok(())).await
}

/// [`world`], with `before` done to the store (and the notices it leaves unsent handed to the
/// notifier) before the notifier starts, as a crash leaves them for the next start.
async fn world_after(
    store_forward: &'static str,
    before: fn(&rusqlite::Connection, i64) -> Result<(), crate::store::StoreError>,
) -> (World, i64) {
    let t = testing::calls();
    let store = t.calls.store.clone();
    let id = store
        .run(move |conn| {
            for (number, msisdn) in [("1001", "+4915100001001"), ("7001", "+4915100007001")] {
                let s = NewSubscriber {
                    number: number.into(),
                    password: format!("pw-{number}"),
                    name: None,
                    msisdn: Some(msisdn.into()),
                    pin: None,
                };
                subscribers::add(conn, &s, "ivm.local")?;
            }
            mailbox::set_rules(conn, "1001", "sms", store_forward, false)?;
            let m = NewMessage {
                sender: "7001".into(),
                kind: "ivm".into(),
                codec: "PCMU".into(),
                call_id: "c1@test".into(),
                targets: vec!["1001".into()],
            };
            let id = messages::create(conn, &m)?;
            messages::complete(conn, id, 5_000)?;
            before(conn, id)?;
            Ok(id)
        })
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    let outbox = Arc::new(Outbox::default());
    let mwi = Mwi::start(
        t.calls.core.clone(),
        t.calls.dialogs.clone(),
        store,
        t.location.clone(),
        "ivm.local".into(),
    );
    let (events, events_rx) = mpsc::unbounded_channel();
    let (registered, registered_rx) = mpsc::unbounded_channel();
    let gateway: Arc<dyn SmsGateway> = outbox.clone();
    let unsent = t
        .calls
        .store
        .run(mailbox::unsent_notices)
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    notifier::run(
        t.calls.clone(),
        super::channels(mwi, Some(gateway)),
        events_rx,
        registered_rx,
        unsent,
    );
    (
        World {
            t,
            outbox,
            events,
            registered,
        },
        id,
    )
}

/// Polls `f` until it holds, for up to 3 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 3 s");
}

#[tokio::test]
async fn a_missed_message_is_announced_once_on_the_channels_the_target_chose() {
    let (w, id) = world("notify").await;
    w.t.calls
        .set_delivery(id, "1001", delivery::UNANSWERED, Some(480))
        .await;
    let missed = CallEvent::Missed {
        message_id: id,
        target: "1001".into(),
    };
    let _ = w.events.send(missed.clone());
    let _ = w.events.send(missed);
    eventually("the SMS", || !w.outbox.queued().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = w.outbox.queued();
    assert_eq!(queued.len(), 1, "announced once: {queued:?}");
    let (key, to, text) = &queued[0];
    assert_eq!(
        (key.as_str(), to.as_str()),
        (format!("missed:{id}:1001").as_str(), "+4915100001001")
    );
    let number = w.t.calls.retrieval_number(id).unwrap_or_default();
    assert_eq!(
        text,
        &format!("Voice message from 7001 (5 s). Call {number} to listen.")
    );
    let d = w.t.calls.store.run(messages::list).await.unwrap_or_default();
    let row = d
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.deliveries.clone())
        .unwrap_or_default();
    assert!(
        row.iter().any(|d| d.target == "1001" && d.state == "notified"),
        "{row:?}"
    );
}

#[tokio::test]
async fn notices_a_crash_kept_from_being_sent_are_sent_at_the_next_start_once() {
    for claimed in [false, true] {
        let (w, id) = if claimed {
            // Claimed, then the process died before the channels were done.
            world_after("notify", |conn, id| {
                messages::set_delivery(conn, id, "1001", delivery::UNANSWERED, Some(480))?;
                mailbox::mark_notified(conn, id, "1001").map(|_| ())
            })
            .await
        } else {
            // Missed, but the process died before the notice was claimed.
            world_after("notify", |conn, id| {
                messages::set_delivery(conn, id, "1001", delivery::UNANSWERED, Some(480))
            })
            .await
        };
        eventually("the SMS", || !w.outbox.queued().is_empty()).await;
        let queued = w.outbox.queued();
        assert_eq!(queued.len(), 1, "claimed before the crash: {claimed}: {queued:?}");
        assert_eq!(queued[0].0, format!("missed:{id}:1001"));
        // Done: the next start finds nothing to send.
        let mut left = vec![()];
        for _ in 0..100 {
            left =
                w.t.calls
                    .store
                    .run(mailbox::unsent_notices)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(|_| ())
                    .collect();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(left.is_empty(), "the notice is marked sent (claimed before: {claimed})");
    }
}

#[tokio::test]
async fn the_sender_learns_by_sms_that_its_message_was_heard() {
    let (w, id) = world("notify").await;
    let _ = w.events.send(CallEvent::Settled {
        message_id: id,
        target: "1001".into(),
        accepted: true,
    });
    eventually("the status SMS", || !w.outbox.queued().is_empty()).await;
    let queued = w.outbox.queued();
    assert_eq!(
        queued,
        vec![(
            format!("status:{id}:1001:true"),
            "+4915100007001".to_string(),
            format!("Your voice message {id} to 1001 was heard.")
        )]
    );
}

#[tokio::test]
async fn a_target_that_registers_again_is_called_once_to_hear_what_it_missed() {
    let (mut w, id) = world("call").await;
    w.t.calls
        .set_delivery(id, "1001", delivery::UNANSWERED, Some(480))
        .await;
    let phone: std::net::SocketAddr = "127.0.0.1:5999".parse().unwrap_or_else(|_| unreachable!());
    let op = RegisterOp::Update(vec![ContactUpdate {
        contact: format!("sip:1001@{phone}"),
        expires: 3600,
        q: None,
    }]);
    let now = crate::store::unix_now();
    let bound =
        w.t.location
            .register("1001", &op, "reg-1", 1, TransportKind::Udp, phone, "", now, |_| {});
    assert!(bound.is_ok(), "{bound:?}");
    let _ = w.registered.send("1001".into());
    let _ = w.registered.send("1001".into());
    let mut invites = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some((to, bytes))) = tokio::time::timeout_at(deadline, w.t.wire.recv()).await {
        if bytes.starts_with(b"INVITE ") {
            invites.push((to, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    // Timer A retransmits the INVITE over UDP: count calls, not datagrams.
    let call_id = |text: &str| text.lines().find(|l| l.starts_with("Call-ID:")).map(str::to_owned);
    let mut calls: Vec<Option<String>> = invites.iter().map(|(_, text)| call_id(text)).collect();
    calls.dedup();
    assert_eq!(calls.len(), 1, "one call for the one pending message: {invites:#?}");
    let (to, invite) = &invites[0];
    assert_eq!(to.addr, phone);
    assert!(
        invite.starts_with(&format!("INVITE sip:1001@{phone} SIP/2.0\r\n")),
        "{invite}"
    );
    assert!(invite.contains("m=audio "), "with an SDP offer: {invite}");
}

#[tokio::test]
async fn a_phone_registered_through_a_proxy_is_called_through_its_path() {
    let (mut w, id) = world("call").await;
    w.t.calls
        .set_delivery(id, "1001", delivery::UNANSWERED, Some(480))
        .await;
    // The REGISTER came from the proxy at :5999; its Path names the proxy's other address.
    let proxy: std::net::SocketAddr = "127.0.0.1:5999".parse().unwrap_or_else(|_| unreachable!());
    let path = "<sip:127.0.0.1:5888;lr;received=sip:127.0.0.1:40000>";
    let op = RegisterOp::Update(vec![ContactUpdate {
        contact: "sip:1001@127.0.0.1:40000".into(),
        expires: 3600,
        q: None,
    }]);
    let now = crate::store::unix_now();
    let bound =
        w.t.location
            .register("1001", &op, "reg-1", 1, TransportKind::Udp, proxy, path, now, |_| {});
    assert!(bound.is_ok(), "{bound:?}");
    let _ = w.registered.send("1001".into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let invite = loop {
        match tokio::time::timeout_at(deadline, w.t.wire.recv()).await {
            Ok(Some((to, bytes))) if bytes.starts_with(b"INVITE ") => {
                break (to, String::from_utf8_lossy(&bytes).into_owned());
            }
            Ok(Some(_)) => {}
            _ => panic!("no INVITE"),
        }
    };
    let (to, text) = invite;
    assert_eq!(
        to.addr.to_string(),
        "127.0.0.1:5888",
        "to the first Path hop (RFC 3327 §5.3)"
    );
    assert!(
        text.starts_with("INVITE sip:1001@127.0.0.1:40000 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\nRoute: {path}\r\n")),
        "the Path as Route: {text}"
    );
}

fn missed(profile: Option<Profile>) -> Notice {
    Notice::Missed {
        message_id: 1,
        target: "1001".into(),
        profile,
    }
}

fn profile(notify: &str) -> Profile {
    Profile {
        number: "1001".into(),
        msisdn: Some("+4915100001001".into()),
        pin_hash: None,
        notify_sms: notify.contains("sms"),
        notify_callerid: notify.contains("callerid"),
        notify_mwi: notify.contains("mwi"),
        forward_by_call: true,
        unsolicited_mwi: false,
    }
}

#[tokio::test]
async fn each_notice_visits_the_channels_that_want_it() {
    let (w, _) = world("notify").await;
    let mwi = Mwi::start(
        w.t.calls.core.clone(),
        w.t.calls.dialogs.clone(),
        w.t.calls.store.clone(),
        w.t.location.clone(),
        "ivm.local".into(),
    );
    let channels = super::channels(mwi, None);
    let chosen = |n: &Notice| -> Vec<&str> { channels.iter().filter(|c| c.wants(n)).map(|c| c.name()).collect() };
    assert_eq!(
        chosen(&missed(Some(profile("sms,callerid,mwi")))),
        ["mwi", "sms", "callerid"]
    );
    assert_eq!(chosen(&missed(Some(profile("mwi")))), ["mwi"]);
    assert_eq!(chosen(&missed(Some(profile("")))), Vec::<&str>::new());
    // A number behind a trunk: SMS to it and the caller-ID call, no lamp.
    let trunk_number = Notice::Missed {
        message_id: 1,
        target: "+4930123456".into(),
        profile: None,
    };
    assert_eq!(chosen(&trunk_number), ["sms", "callerid"]);
    let heard = Notice::Settled {
        message_id: 1,
        target: "1001".into(),
        accepted: true,
    };
    assert_eq!(chosen(&heard), ["mwi", "sender-status"]);
    assert_eq!(chosen(&Notice::MailboxChanged { owner: "1001".into() }), ["mwi"]);
    assert_eq!(
        chosen(&Notice::Registered { aor: "1001".into() }),
        ["mwi", "store-and-forward"]
    );
}
