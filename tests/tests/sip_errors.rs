//! Request validation and transports: what a peer gets for requests the
//! server cannot or will not handle, OPTIONS capabilities, TCP framing.

use std::time::Duration;

use ivm_e2e::Server;
use ivm_e2e::sip::{Request, TcpClient, udp_exchange};

const WAIT: Duration = Duration::from_secs(3);

fn server() -> Server {
    Server::start("").expect("start ivm-sipd")
}

#[test]
fn options_lists_capabilities() {
    let server = server();
    let r = server.options().expect("OPTIONS");
    assert_eq!(r.status, 200, "{}", r.text());
    let allow: Vec<String> = r
        .header_elements("Allow")
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    for m in ["REGISTER", "OPTIONS"] {
        assert!(allow.iter().any(|a| a == m), "Allow lacks {m}: {}", r.text());
    }
    assert!(r.header("Accept").is_some(), "no Accept header: {}", r.text());
    assert!(r.header("Supported").is_some(), "no Supported header: {}", r.text());
}

#[test]
fn unknown_method_gets_501_with_allow() {
    let server = server();
    let c = server.udp_client().expect("client");
    let req = Request::new("FROBNICATE", &format!("sip:{}", server.addr), c.local, "UDP");
    let r = c.transact(&req, WAIT).expect("response");
    assert_eq!(r.status, 501, "{}", r.text());
    assert!(r.header("Allow").is_some(), "501 without Allow: {}", r.text());
}

#[test]
fn sip_version_7_gets_505() {
    let server = server();
    let c = server.udp_client().expect("client");
    let bytes = String::from_utf8(c.options().to_bytes())
        .expect("utf8")
        .replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    c.send(bytes.as_bytes()).expect("send");
    let r = c.final_response(WAIT).expect("response");
    assert_eq!(r.status, 505, "{}", r.text());
}

#[test]
fn unknown_uri_scheme_gets_416() {
    let server = server();
    let c = server.udp_client().expect("client");
    let req = Request::new("OPTIONS", "nosuchscheme:whatever", c.local, "UDP");
    let r = c.transact(&req, WAIT).expect("response");
    assert_eq!(r.status, 416, "{}", r.text());
}

#[test]
fn unknown_required_extension_gets_420_with_unsupported() {
    let server = server();
    let c = server.udp_client().expect("client");
    let mut req = c.options();
    req.set("Require", "e2e-no-such-extension");
    let r = c.transact(&req, WAIT).expect("response");
    assert_eq!(r.status, 420, "{}", r.text());
    assert_eq!(
        r.header("Unsupported").map(str::trim),
        Some("e2e-no-such-extension"),
        "{}",
        r.text()
    );
}

#[test]
fn missing_call_id_gets_400_with_a_reason_phrase() {
    let server = server();
    let c = server.udp_client().expect("client");
    let mut req = c.options();
    req.remove("Call-ID");
    let r = c.transact(&req, WAIT).expect("response");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.reason.trim().is_empty(), "400 without a reason phrase: {}", r.text());
}

#[test]
fn unauthenticated_invite_is_challenged() {
    let server = server();
    let c = server.udp_client().expect("client");
    let mut req = Request::new("INVITE", "sip:1001@ivm.local", c.local, "UDP");
    req.set("Contact", &format!("<sip:e2e@{}>", c.local));
    req.set("Content-Type", "application/sdp");
    req.body = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        c.local.port() + 2
    )
    .into_bytes();
    let r = c.transact(&req, WAIT).expect("final response to INVITE");
    // 127.0.0.1 is no trusted trunk here, so the caller must be a subscriber: challenge.
    assert_eq!(r.status, 401, "an unauthenticated INVITE is challenged: {}", r.text());
    assert!(
        r.header("WWW-Authenticate").is_some_and(|v| v.contains("Digest")),
        "{}",
        r.text()
    );
    // The non-2xx final response is retransmitted until ACKed (RFC 3261
    // 17.2.1); ACK it so the transaction ends cleanly.
    let mut ack = req.clone();
    ack.method = "ACK".into();
    ack.body.clear();
    ack.remove("Content-Type");
    ack.set("CSeq", "1 ACK");
    if let Some(to) = r.header("To") {
        ack.set("To", to);
    }
    c.send(&ack.to_bytes()).expect("send ACK");
}

#[test]
fn garbage_datagrams_do_not_hurt() {
    let server = server();
    let junk: [&[u8]; 6] = [
        b"",
        b"\r\n\r\n",
        b"hello",
        b"\x00\x01\x02\x03\xff\xfe",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ];
    for j in junk {
        let responses = udp_exchange(server.addr, j, Duration::from_millis(200)).unwrap_or_default();
        assert!(responses.iter().all(|r| r.status >= 400), "{j:?} got {responses:#?}");
    }
    let big = vec![b'A'; 60_000];
    let _ = udp_exchange(server.addr, &big, Duration::from_millis(200));
    assert_eq!(server.options().expect("still answers OPTIONS").status, 200);
}

#[test]
fn tcp_options_and_framing() {
    let server = server();
    let mut t = TcpClient::connect(server.addr).expect("connect");

    // One request.
    let req = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    t.send(&req.to_bytes()).expect("send");
    let r = t.final_response(WAIT).expect("200 over TCP");
    assert_eq!(r.status, 200, "{}", r.text());

    // Two requests in one write: two responses, in order.
    let a = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    let b = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    let mut both = a.to_bytes();
    both.extend_from_slice(&b.to_bytes());
    t.send(&both).expect("send two");
    let ra = t.final_response(WAIT).expect("first response");
    let rb = t.final_response(WAIT).expect("second response");
    assert_eq!(ra.header("Call-ID"), a.header("Call-ID"));
    assert_eq!(rb.header("Call-ID"), b.header("Call-ID"));

    // One request split over several writes (with a pause in the body).
    let mut c = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    c.set("Content-Type", "text/plain");
    c.body = b"split body".to_vec();
    let bytes = c.to_bytes();
    for chunk in bytes.chunks(17) {
        t.send(chunk).expect("send chunk");
        std::thread::sleep(Duration::from_millis(5));
    }
    let rc = t.final_response(WAIT).expect("response to split request");
    assert_eq!(rc.header("Call-ID"), c.header("Call-ID"), "{}", rc.text());

    // Keep-alive CRLFs between messages are fine.
    t.send(b"\r\n\r\n").expect("keep-alive");
    let d = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    t.send(&d.to_bytes()).expect("send after keep-alive");
    assert_eq!(t.final_response(WAIT).expect("response after keep-alive").status, 200);
}

/// Waits until the server closes `stream` (read returns 0 or fails); how long that took.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    let started = std::time::Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 512];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Issue 9: a client that sends a header a byte at a time (every 250 ms, so the idle timer
/// never fires) is closed when its message is not complete within
/// `tcp_message_timeout_secs`; and one address may hold only `tcp_max_connections_per_ip`.
#[test]
fn a_trickling_tcp_client_is_closed_and_connections_per_address_are_capped() {
    use std::io::Write;
    let server =
        Server::start("[sip]\ntcp_message_timeout_secs = 2\ntcp_max_connections_per_ip = 3\n").expect("start ivm-sipd");
    let mut slow = std::net::TcpStream::connect(server.addr).expect("connect");
    let trickle = {
        let mut w = slow.try_clone().expect("clone");
        std::thread::spawn(move || {
            for b in b"OPTIONS sip:ivm.local SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKslow\r\n".iter() {
                if w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let closed = closed_within(&mut slow, Duration::from_secs(8));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500) && t < Duration::from_secs(5)),
        "the trickling connection was closed after {closed:?} (limit 2 s)"
    );
    let _ = trickle.join();

    // Three connections from 127.0.0.1 are held; a fourth is refused at once.
    let mut held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fourth = std::net::TcpStream::connect(server.addr).expect("connect");
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).is_some(),
        "a fourth connection from the same address is closed"
    );
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_millis(300)).is_none(),
            "the first three stay open"
        );
    }
    // Once they are gone, a new connection is taken and answered.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let mut t = TcpClient::connect(server.addr).expect("connect");
    let req = Request::new("OPTIONS", &format!("sip:{}", server.addr), t.local, "TCP");
    t.send(&req.to_bytes()).expect("send");
    let r = t.final_response(WAIT).expect("200 over TCP");
    assert_eq!(r.status, 200, "{}", r.text());
}
