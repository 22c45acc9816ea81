//! REGISTER end to end with SIPp: what a phone sees (status codes, Contact
//! bindings) and what ends up in the store.
//!
//! Needs `sipp` on PATH (these tests fail, not skip, without it) and the
//! release binary (`cargo build --release -p ivm-sipd`).

use std::time::Duration;

use ivm_e2e::{Server, Sipp, unix_now};

const USER: (&str, &str) = ("1001", "secret-1001");

fn server_with_user() -> Server {
    Server::start_with_subscribers("", &[USER]).expect("start ivm-sipd with subscriber 1001")
}

#[test]
fn options_answers_200_allowing_register() {
    let server = Server::start("").expect("start ivm-sipd");
    let out = Sipp::new("options.xml").run(server.addr).expect("run sipp");
    out.assert_success();
}

#[test]
fn register_with_digest_creates_one_binding() {
    let server = server_with_user();
    let out = Sipp::new("register_auth.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();

    let rows = server.wait_registrations("1001", 1).expect("one registration row");
    let row = &rows[0];
    assert!(
        row.contact.starts_with("sip:1001@127.0.0.1:"),
        "contact stored as {:?}, expected the Contact URI as registered (sip:1001@127.0.0.1:PORT;transport=UDP)",
        row.contact
    );
    assert!(!row.contact.contains('<'), "contact stored with <>: {:?}", row.contact);
    let now = unix_now();
    assert!(
        (now + 3500..=now + 3700).contains(&row.expires_at),
        "expires_at {} should be about now + 3600 (now = {now})",
        row.expires_at
    );
}

#[test]
fn register_over_tcp() {
    let server = server_with_user();
    let out = Sipp::new("register_auth.xml")
        .users(&[USER])
        .tcp()
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    let rows = server.wait_registrations("1001", 1).expect("one registration row");
    assert!(
        rows[0].contact.to_ascii_lowercase().contains("transport=tcp"),
        "contact registered over TCP stored as {:?}",
        rows[0].contact
    );
}

#[test]
fn wrong_password_gets_403_and_no_binding() {
    let server = server_with_user();
    let out = Sipp::new("register_wrong_password.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    assert!(server.registrations("1001").expect("read registrations").is_empty());
}

#[test]
fn unknown_user_gets_403() {
    let server = server_with_user();
    // register_wrong_password.xml expects 401 then 403, which is exactly
    // what an unknown user must get too (indistinguishable from a bad password).
    let out = Sipp::new("register_wrong_password.xml")
        .users(&[("4999", "whatever")])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    assert!(server.registrations("4999").expect("read registrations").is_empty());
}

#[test]
fn expires_zero_unregisters() {
    let server = server_with_user();
    let out = Sipp::new("unregister.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    server.wait_registrations("1001", 0).expect("no registration row left");
}

#[test]
fn contact_star_removes_every_binding() {
    let server = server_with_user();
    let out = Sipp::new("unregister_all.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    server.wait_registrations("1001", 0).expect("no registration row left");
}

#[test]
fn retransmitted_register_is_processed_once() {
    let server = server_with_user();
    // -nr: see the scenario's header (SIPp would answer the replayed 200
    // by re-sending, forever).
    let out = Sipp::new("register_retransmit.xml")
        .users(&[USER])
        .arg("-nr")
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    let rows = server
        .wait_registrations("1001", 1)
        .expect("exactly one registration row");
    assert!(
        !rows[0].contact.contains("-retx"),
        "the retransmitted copy was processed as a new request: {rows:#?}"
    );
    // Still one row a moment later (no late processing of the copy).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.registrations("1001").expect("read registrations").len(), 1);
}

#[test]
fn subscriber_added_while_running_can_register_at_once() {
    let server = Server::start("").expect("start ivm-sipd");
    let user = ("2002", "fresh-2002");

    let before = Sipp::new("register_auth.xml")
        .users(&[user])
        .run(server.addr)
        .expect("run sipp");
    before.assert_calls_failed();

    server
        .add_subscriber(user.0, user.1)
        .expect("subscriber add while the server runs");

    let after = Sipp::new("register_auth.xml")
        .users(&[user])
        .run(server.addr)
        .expect("run sipp");
    after.assert_success();
    server.wait_registrations("2002", 1).expect("one registration row");
}

#[test]
fn removed_subscriber_can_no_longer_register() {
    let server = server_with_user();
    Sipp::new("register_auth.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp")
        .assert_success();
    server
        .admin_ok(&["subscriber", "remove", USER.0])
        .expect("subscriber remove");
    let out = Sipp::new("register_wrong_password.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    out.assert_success(); // 401 then 403
    let again = Sipp::new("register_auth.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp");
    again.assert_calls_failed();
}

#[test]
fn registration_survives_restart() {
    let mut server = server_with_user();
    Sipp::new("register_auth.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp")
        .assert_success();
    let before = server.wait_registrations("1001", 1).expect("one registration row");

    let status = server.restart().expect("restart ivm-sipd (SIGTERM, start again)");
    assert!(status.success(), "ivm-sipd should exit with 0 on SIGTERM, got {status}");

    let after = server.registrations("1001").expect("read registrations after restart");
    assert_eq!(after, before, "registrations changed across the restart");
    let options = server.options().expect("OPTIONS after restart");
    assert_eq!(options.status, 200, "{}", options.text());
    // The restarted server still knows the subscriber, and keeps the old
    // binding beside the new one (this SIPp run has another local port, so
    // another Contact).
    Sipp::new("register_auth.xml")
        .users(&[USER])
        .run(server.addr)
        .expect("run sipp")
        .assert_success();
    let both = server.wait_registrations("1001", 2).expect("old and new binding");
    assert!(
        both.contains(&before[0]),
        "the binding from before the restart is gone: {both:#?}"
    );
}

#[test]
fn many_subscribers_register_concurrently() {
    // 400 REGISTERs from one address in a second: a load generator, exempt from the flood
    // limits as deployments exempt theirs (security.rs tests the limits).
    let server = Server::start("[security]\nexempt = [\"127.0.0.1\"]\n").expect("start ivm-sipd");
    let users: Vec<(String, String)> = (0..50).map(|i| (format!("30{i:02}"), format!("pw-30{i:02}"))).collect();
    let refs: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    server.import_subscribers(&refs).expect("subscriber import");

    let out = Sipp::new("register_auth.xml")
        .users(&refs)
        .calls(200)
        .rate(200)
        .trace_messages(false)
        .arg("-l")
        .arg("50")
        .run(server.addr)
        .expect("run sipp");
    out.assert_success();
    assert_eq!(out.counter("SuccessfulCall"), Some(200), "{}", out.report());

    let conn = server.db().expect("open db");
    let distinct: i64 = conn
        .query_row(
            "SELECT COUNT(DISTINCT aor) FROM registrations WHERE aor LIKE '30%'",
            [],
            |r| r.get(0),
        )
        .expect("count registrations");
    assert_eq!(distinct, 50, "every subscriber should have a binding");
}
