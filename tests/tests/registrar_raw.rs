//! REGISTER details checked byte by byte with hand-made requests over UDP
//! (no SIPp): the challenge's form, Contact/expires handling, 423,
//! retransmissions that are byte-identical, RFC 3581 received/rport.

use std::time::Duration;

use ivm_e2e::sip::{DigestCredentials, SipResponse, digest_params, element_uri, header_params};
use ivm_e2e::{Server, unix_now};

const WAIT: Duration = Duration::from_secs(3);
const USER: (&str, &str) = ("1001", "secret-1001");

fn creds() -> DigestCredentials {
    DigestCredentials::new(USER.0, USER.1)
}

fn server() -> Server {
    Server::start_with_subscribers("", &[USER]).expect("start ivm-sipd with subscriber 1001")
}

#[test]
fn challenge_is_md5_digest_for_ivm_local_with_qop_auth() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let r = c
        .transact(&c.register_request("1001", &contact, Some(3600)), WAIT)
        .expect("REGISTER");
    assert_eq!(r.status, 401, "{}", r.text());
    let challenges = r.header_values("WWW-Authenticate");
    assert_eq!(
        challenges.len(),
        1,
        "MD5-only config should offer one challenge:\n{}",
        r.text()
    );
    let p = digest_params(challenges[0]).expect("Digest challenge");
    assert_eq!(p.get("realm").map(String::as_str), Some("ivm.local"), "{}", r.text());
    assert!(
        p.get("nonce").is_some_and(|n| n.len() >= 8),
        "nonce missing/short: {}",
        r.text()
    );
    assert!(
        p.get("algorithm").is_some_and(|a| a.eq_ignore_ascii_case("MD5")),
        "{}",
        r.text()
    );
    assert!(
        p.get("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth")),
        "{}",
        r.text()
    );
    assert!(
        r.header("To").is_some_and(|t| t.contains("tag=")),
        "401 To without tag: {}",
        r.text()
    );
}

/// The `algorithm` of each `WWW-Authenticate` challenge, in order (MD5 when absent).
fn challenge_algorithms(r: &SipResponse) -> Vec<String> {
    r.header_values("WWW-Authenticate")
        .iter()
        .map(|v| {
            digest_params(v)
                .expect("Digest")
                .get("algorithm")
                .cloned()
                .unwrap_or_else(|| "MD5".into())
                .to_ascii_uppercase()
        })
        .collect()
}

/// The shipped default offers one MD5 challenge: stock phones (baresip 1.0.0, SIPp) give up on
/// a SHA-256 challenge instead of answering the MD5 one after it.
#[test]
fn the_default_challenge_is_one_md5_digest() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let r = c
        .transact(&c.register_request("1001", &contact, Some(3600)), WAIT)
        .expect("REGISTER");
    assert_eq!(r.status, 401, "{}", r.text());
    let algs = challenge_algorithms(&r);
    assert_eq!(algs, ["MD5"], "{}", r.text());
}

#[test]
fn challenges_follow_configured_algorithm_order() {
    let server = Server::start_with_subscribers("[registrar]\nauth_algorithms = [\"SHA-256\", \"MD5\"]\n", &[USER])
        .expect("start ivm-sipd");
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let r = c
        .transact(&c.register_request("1001", &contact, Some(3600)), WAIT)
        .expect("REGISTER");
    assert_eq!(r.status, 401, "{}", r.text());
    let algs = challenge_algorithms(&r);
    assert_eq!(algs, ["SHA-256", "MD5"], "{}", r.text());
    // MD5 credentials still work when SHA-256 is offered first.
    let mut req = c.register_request("1001", &contact, Some(3600));
    let ok = c
        .send_authenticated(&mut req, &creds(), WAIT)
        .expect("authenticated REGISTER");
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn successful_register_echoes_every_binding_with_expires() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let first = format!("sip:1001@{};transport=udp", c.local);
    let second = "sip:1001@192.0.2.7:5062".to_string();

    let mut req = c.register_request("1001", &first, Some(600));
    let r = c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER 1");
    assert_eq!(r.status, 200, "{}", r.text());
    let contacts = r.header_elements("Contact");
    assert_eq!(contacts.len(), 1, "{}", r.text());
    assert_eq!(element_uri(&contacts[0]), first, "{}", r.text());
    let exp: i64 = header_params(&contacts[0])
        .get("expires")
        .and_then(|e| e.parse().ok())
        .expect("Contact ;expires=N");
    assert!((590..=600).contains(&exp), "expires={exp}, asked for 600: {}", r.text());

    let mut req2 = c.register_request("1001", &second, Some(1200));
    let r2 = c.send_authenticated(&mut req2, &creds(), WAIT).expect("REGISTER 2");
    assert_eq!(r2.status, 200, "{}", r2.text());
    let mut uris: Vec<String> = r2.header_elements("Contact").iter().map(|e| element_uri(e)).collect();
    uris.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(uris, want, "200 must list all current bindings:\n{}", r2.text());

    let rows = server.wait_registrations("1001", 2).expect("two rows");
    let now = unix_now();
    for row in rows {
        let want = if row.contact == first { 600 } else { 1200 };
        assert!(
            (now + want - 15..=now + want + 5).contains(&row.expires_at),
            "{row:?} (now {now})"
        );
    }
}

#[test]
fn expires_below_minimum_gets_423_with_min_expires() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let mut req = c.register_request("1001", &format!("sip:1001@{}", c.local), Some(10));
    let r = c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER");
    assert_eq!(r.status, 423, "{}", r.text());
    assert_eq!(r.header("Min-Expires").map(str::trim), Some("60"), "{}", r.text());
    assert!(server.registrations("1001").expect("rows").is_empty());
}

#[test]
fn expires_above_maximum_is_reduced() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let mut req = c.register_request("1001", &format!("sip:1001@{}", c.local), Some(100_000));
    let r = c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER");
    assert_eq!(r.status, 200, "{}", r.text());
    let contacts = r.header_elements("Contact");
    let exp: i64 = contacts
        .first()
        .and_then(|c| header_params(c).get("expires").and_then(|e| e.parse().ok()))
        .expect("expires");
    assert!(
        exp <= 7200 && exp > 0,
        "expires={exp}, max_expires is 7200: {}",
        r.text()
    );
}

#[test]
fn contact_expires_param_zero_unregisters() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let mut req = c.register_request("1001", &contact, Some(3600));
    assert_eq!(
        c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER").status,
        200
    );
    server.wait_registrations("1001", 1).expect("one row");

    let mut un = c.register_request("1001", &contact, None);
    un.set("Contact", &format!("<{contact}>;expires=0"));
    let r = c.send_authenticated(&mut un, &creds(), WAIT).expect("un-REGISTER");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header_elements("Contact").is_empty(),
        "no binding should be left:\n{}",
        r.text()
    );
    server.wait_registrations("1001", 0).expect("row removed");
}

#[test]
fn register_without_contact_lists_bindings() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let mut req = c.register_request("1001", &contact, Some(3600));
    assert_eq!(
        c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER").status,
        200
    );
    let mut query = c.register_request("1001", &contact, None);
    query.remove("Contact");
    let r = c
        .send_authenticated(&mut query, &creds(), WAIT)
        .expect("query REGISTER");
    assert_eq!(r.status, 200, "{}", r.text());
    let uris: Vec<String> = r.header_elements("Contact").iter().map(|e| element_uri(e)).collect();
    assert_eq!(uris, [contact], "{}", r.text());
}

#[test]
fn contact_star_with_nonzero_expires_is_400() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let mut req = c.register_request("1001", "sip:unused@127.0.0.1", Some(3600));
    req.set("Contact", "*");
    let r = c.send_authenticated(&mut req, &creds(), WAIT).expect("REGISTER");
    assert_eq!(
        r.status,
        400,
        "RFC 3261 10.3 step 6: '*' needs Expires: 0\n{}",
        r.text()
    );
}

#[test]
fn retransmissions_get_byte_identical_responses_and_are_processed_once() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let mut req = c.register_request("1001", &contact, Some(3600));

    // The unauthenticated request twice: the same 401 (same nonce) twice.
    let bytes = req.to_bytes();
    c.send(&bytes).expect("send");
    let a = c.final_response(WAIT).expect("401");
    c.send(&bytes).expect("resend");
    let b = c.final_response(WAIT).expect("401 again");
    assert_eq!(a.status, 401, "{}", a.text());
    assert_eq!(
        a.raw,
        b.raw,
        "retransmitted REGISTER got a different response:\n{}\n----\n{}",
        a.text(),
        b.text()
    );

    // The authenticated request twice, byte-identical.
    let challenge = a.header("WWW-Authenticate").expect("challenge").to_string();
    req.next_transaction(2);
    let auth = creds()
        .authorization(&challenge, "REGISTER", &req.uri.clone(), "retx-cnonce", 1)
        .expect("digest");
    req.set("Authorization", &auth);
    let bytes = req.to_bytes();
    c.send(&bytes).expect("send");
    let ok1 = c.final_response(WAIT).expect("200");
    assert_eq!(ok1.status, 200, "{}", ok1.text());
    c.send(&bytes).expect("resend");
    let ok2 = c.final_response(WAIT).expect("200 again");
    assert_eq!(
        ok1.raw,
        ok2.raw,
        "retransmission got a different response:\n{}\n----\n{}",
        ok1.text(),
        ok2.text()
    );
    // Nothing more arrives (no extra response per copy).
    let extra = c.collect(Duration::from_millis(300)).expect("collect");
    assert!(extra.is_empty(), "unexpected extra responses: {extra:#?}");
    server.wait_registrations("1001", 1).expect("exactly one row");
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_403() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let mut bad_pw = c.register_request("1001", &contact, Some(3600));
    let r1 = c
        .send_authenticated(&mut bad_pw, &DigestCredentials::new("1001", "nope"), WAIT)
        .expect("REGISTER");
    let mut unknown = c.register_request("4040", &contact.replace("1001", "4040"), Some(3600));
    let r2 = c
        .send_authenticated(&mut unknown, &DigestCredentials::new("4040", "nope"), WAIT)
        .expect("REGISTER");
    assert_eq!((r1.status, r2.status), (403, 403), "{}\n----\n{}", r1.text(), r2.text());
    assert_eq!(
        r1.reason, r2.reason,
        "403s must not tell unknown users from bad passwords"
    );
    assert!(server.registrations("1001").expect("rows").is_empty());
}

#[test]
fn responses_carry_received_and_rport() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let mut req = c.options();
    // A sent-by that is not where the request came from, with empty rport.
    req.set(
        "Via",
        "SIP/2.0/UDP client.invalid:5999;rport;branch=z9hG4bK-rport-check",
    );
    let r = c
        .transact(&req, WAIT)
        .expect("response must come back to the source address and port (rport)");
    let via = r.header("Via").expect("Via in response");
    let p = header_params(via);
    assert_eq!(p.get("received").map(String::as_str), Some("127.0.0.1"), "Via: {via}");
    assert_eq!(
        p.get("rport").map(String::as_str),
        Some(c.local.port().to_string().as_str()),
        "Via: {via}"
    );
    assert_eq!(
        p.get("branch").map(String::as_str),
        Some("z9hG4bK-rport-check"),
        "Via: {via}"
    );
}

/// RFC 3327: a REGISTER through a proxy that adds Path (and may require it) is answered with
/// the Path echoed, and the binding keeps it for the requests to the phone.
#[test]
fn a_register_with_path_gets_it_back_and_the_binding_keeps_it() {
    let server = server();
    let c = server.udp_client().expect("udp client");
    let contact = format!("sip:1001@{}", c.local);
    let path = "<sip:192.0.2.10:5060;lr;received=sip:198.51.100.7:40000>";
    let mut req = c.register_request("1001", &contact, Some(3600));
    req.set("Path", path);
    req.set("Require", "path");
    let ok = c
        .send_authenticated(&mut req, &creds(), WAIT)
        .expect("authenticated REGISTER");
    assert_eq!(ok.status, 200, "not refused with 420 for Require: path\n{}", ok.text());
    assert_eq!(ok.header_values("Path"), [path], "{}", ok.text());
    let conn = server.db().expect("db");
    let stored: String = conn
        .query_row("SELECT path FROM registrations WHERE aor = '1001'", [], |r| r.get(0))
        .expect("binding row");
    assert_eq!(stored, path);
}

/// Issue 9: a captured Authorization, sent again byte for byte on a new REGISTER (new
/// Call-ID, the attacker's Contact), gets a fresh challenge, not a binding; the phone's own
/// next request on the same nonce (nonce count 2) still passes.
#[test]
fn a_replayed_digest_answer_is_challenged_again_and_adds_no_binding() {
    let server = server();
    let phone = server.udp_client().expect("phone");
    let contact = format!("sip:1001@{}", phone.local);
    let mut req = phone.register_request("1001", &contact, Some(3600));
    let first = phone.transact(&req, WAIT).expect("REGISTER");
    assert_eq!(first.status, 401, "{}", first.text());
    let challenge = first.header_values("WWW-Authenticate")[0].to_string();
    let uri = req.uri.clone();
    let auth = creds()
        .authorization(&challenge, "REGISTER", &uri, "cn-replay", 1)
        .expect("digest");
    req.next_transaction(2);
    req.set("Authorization", &auth);
    let ok = phone.transact(&req, WAIT).expect("authenticated REGISTER");
    assert_eq!(ok.status, 200, "{}", ok.text());

    let attacker = server.udp_client().expect("attacker");
    let evil = format!("sip:1001@{}", attacker.local);
    let mut replay = attacker.register_request("1001", &evil, Some(3600));
    replay.set("Authorization", &auth);
    let r = attacker.transact(&replay, WAIT).expect("replayed REGISTER");
    assert_eq!(r.status, 401, "a replayed answer must not register:\n{}", r.text());
    let rows = server.registrations("1001").expect("registrations");
    assert!(
        rows.iter().all(|b| b.contact != evil),
        "the attacker's binding: {rows:?}"
    );

    let next = creds()
        .authorization(&challenge, "REGISTER", &uri, "cn-replay", 2)
        .expect("digest");
    req.next_transaction(3);
    req.set("Authorization", &next);
    let ok = phone.transact(&req, WAIT).expect("REGISTER with nc=2");
    assert_eq!(
        ok.status,
        200,
        "the next count on the same nonce passes:\n{}",
        ok.text()
    );
}
