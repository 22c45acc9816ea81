//! The INVITE session end to end: a caller whose ACK never arrives (a proxy in front that
//! loses it, as issue 8 saw behind Kamailio) gets the 200 retransmitted at T1, 2·T1, 4·T1 …
//! and, after 64·T1 without an ACK, a BYE along the route set the proxy recorded (RFC 3261
//! §13.3.1.4). T1 is shrunk to 50 ms, so 64·T1 is 3.2 s.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ivm_e2e::ivm::Law;
use ivm_e2e::ivm::{CALLER_IP, start_ivm_server};
use ivm_e2e::phone::{SipMsg, response_to, sdp};

#[test]
fn an_unacknowledged_200_is_retransmitted_and_the_call_ends_with_a_bye_after_64_t1() {
    let server = start_ivm_server(&[], "[sip]\nt1_ms = 50\n", &[("1001", "pw-1001")]).expect("start ivm-sipd");
    let socket = UdpSocket::bind((CALLER_IP, 0)).expect("caller socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let me = socket.local_addr().expect("address");
    let rtp = UdpSocket::bind((CALLER_IP, 0)).expect("rtp socket");
    let body = sdp(rtp.local_addr().expect("rtp").port(), Law::Pcmu).replace("127.0.0.1", CALLER_IP);
    let invite = format!(
        "INVITE sip:5551001@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-noack-1\r\n\
         Record-Route: <sip:192.0.2.99;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:7001@ivm.local>;tag=noack\r\n\
         To: <sip:5551001@ivm.local>\r\nCall-ID: noack-1@caller\r\nCSeq: 1 INVITE\r\nContact: <sip:7001@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        server = server.addr
    );
    socket.send_to(invite.as_bytes(), server.addr).expect("send INVITE");
    let started = Instant::now();
    let mut oks = Vec::new();
    let bye = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no BYE within 10 s; {} 200s\n{}",
            oks.len(),
            server.log_tail(20)
        );
        let mut buf = [0u8; 65_536];
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(msg) = SipMsg::parse(&buf[..n], from) else {
            continue;
        };
        if msg.status() == Some(200) && msg.method() == "INVITE" {
            oks.push(started.elapsed());
        } else if msg.is_request() && msg.method() == "BYE" {
            let ok = response_to(&msg, 200, "OK", "", &[], "");
            socket.send_to(&ok, from).expect("answer BYE");
            break (started.elapsed(), msg);
        }
    };
    let (at, bye) = bye;
    // 0, then about 50, 150, 350, 750, 1550, 3150 ms.
    assert!(
        oks.len() >= 6,
        "the 200 was sent {} times before the BYE: {oks:?}",
        oks.len()
    );
    let gaps: Vec<u128> = oks.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert!(
        gaps.windows(2).take(3).all(|g| g[1] >= g[0]),
        "the retransmission interval grows: {gaps:?}"
    );
    let first = oks[0];
    assert!(
        at - first >= Duration::from_millis(64 * 50 - 100),
        "the BYE came {:?} after the first 200, before 64·T1",
        at - first
    );
    assert!(
        at - first < Duration::from_secs(6),
        "the BYE came late: {:?}",
        at - first
    );
    assert_eq!(
        bye.header("Route"),
        Some("<sip:192.0.2.99;lr>"),
        "the BYE follows the recorded route:\n{}",
        bye.text()
    );
    assert_eq!(bye.request_uri().as_deref(), Some(format!("sip:7001@{me}").as_str()));
}

/// Offers IVM cannot take are refused at once with a reason (issue 9, bounds): an SDP with
/// more media lines than an answer can carry, and an IPv6 media address while IVM's media is
/// IPv4 (it would answer, then never reach the phone).
#[test]
fn offers_too_big_or_on_the_wrong_ip_version_get_488_with_a_reason() {
    let server = start_ivm_server(&[], "", &[("1001", "pw-1001")]).expect("start ivm-sipd");
    let socket = UdpSocket::bind((CALLER_IP, 0)).expect("caller socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let me = socket.local_addr().expect("address");
    let ipv4 = format!("v=0\r\no=- 1 1 IN IP4 {CALLER_IP}\r\ns=-\r\nc=IN IP4 {CALLER_IP}\r\nt=0 0\r\n");
    let mut many = ipv4.clone();
    for i in 0..40 {
        many.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 30_000 + 2 * i));
    }
    let ipv6 = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n".to_string();
    for (n, (body, reason)) in [(many, "media lines"), (ipv6, "IPv6")].into_iter().enumerate() {
        let invite = format!(
            "INVITE sip:5551001@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bounds-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:7001@ivm.local>;tag=b{n}\r\nTo: <sip:5551001@ivm.local>\r\n\
             Call-ID: bounds-{n}@caller\r\nCSeq: 1 INVITE\r\nContact: <sip:7001@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            server = server.addr
        );
        socket.send_to(invite.as_bytes(), server.addr).expect("send INVITE");
        let started = Instant::now();
        let final_response = loop {
            assert!(started.elapsed() < Duration::from_secs(5), "no final response");
            let mut buf = [0u8; 65_536];
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(m) = SipMsg::parse(&buf[..len], from)
                && m.status().is_some_and(|s| s >= 200)
            {
                break m;
            }
        };
        assert_eq!(final_response.status(), Some(488), "{}", final_response.text());
        assert!(
            final_response.start.contains(reason),
            "the reason says why: {}",
            final_response.start
        );
    }
    let rows = ivm_e2e::notify::messages(&server).expect("messages");
    assert!(rows.is_empty(), "no message for a refused offer: {rows:?}");
}
