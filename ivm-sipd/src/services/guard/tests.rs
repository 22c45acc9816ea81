//! The guard's rules, one test each, on requests as they come off the wire.

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::stack::sip::{Framing, Message, parse_message};
use crate::stack::transport::TransportKind;

fn request(method: &str, user_agent: &str, to_tag: &str) -> Request {
    let text = format!(
        "{method} sip:ivm.local SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@ivm.local>;tag=a\r\nTo: <sip:1001@ivm.local>{to_tag}\r\n\
         Call-ID: {}@test\r\nCSeq: 1 {method}\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n",
        random_token(6),
        random_token(6)
    );
    match parse_message(bytes::Bytes::from(text), Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn peer(ip: &str) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: SocketAddr::new(ip.parse().unwrap_or_else(|e| panic!("{e}")), 5060),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn config() -> SecurityConfig {
    SecurityConfig {
        max_auth_failures: 3,
        max_account_failures: 5,
        ..SecurityConfig::default()
    }
}

#[test]
fn a_source_failing_too_often_is_dropped_even_with_the_right_password_while_others_go_on() {
    let guard = Guard::in_memory(config(), None);
    let phone = request("REGISTER", "baresip", "");
    for _ in 0..2 {
        guard.auth_failed(ip("192.0.2.66"), "1001");
        assert!(guard.screen(&phone, &peer("192.0.2.66")), "below the limit");
    }
    guard.auth_failed(ip("192.0.2.66"), "1001");
    assert!(guard.banned(ip("192.0.2.66")));
    assert!(
        !guard.screen(&phone, &peer("192.0.2.66")),
        "whatever it sends is dropped, the right password too"
    );
    assert!(
        guard.screen(&phone, &peer("198.51.100.5")),
        "another address is not touched"
    );
    assert!(guard.may_authenticate(ip("198.51.100.5"), "1001"), "nor is the account");
}

#[test]
fn bans_double_on_each_repeat_up_to_the_most_and_a_lift_forgives() {
    let guard = Guard::in_memory(
        SecurityConfig {
            ban_secs: 600,
            max_ban_secs: 2000,
            ..config()
        },
        None,
    );
    let src = ip("192.0.2.7");
    let until = |g: &Guard| g.lock().bans.get(&src).map(|b| (b.strikes, b.until_ms));
    guard.ban(src, BanReason::AuthFailures, 0);
    assert_eq!(until(&guard), Some((1, 600_000)));
    guard.ban(src, BanReason::AuthFailures, 1000);
    assert_eq!(until(&guard), Some((1, 600_000)), "already banned: unchanged");
    guard.ban(src, BanReason::AuthFailures, 700_000);
    assert_eq!(until(&guard), Some((2, 700_000 + 1_200_000)));
    guard.ban(src, BanReason::AuthFailures, 2_000_000);
    assert_eq!(
        until(&guard),
        Some((3, 2_000_000 + 2_000_000)),
        "capped at max_ban_secs"
    );
    guard.lift(src);
    assert_eq!(until(&guard), None);
    assert!(!guard.banned(src));
}

#[test]
fn an_account_guessed_from_many_addresses_still_authenticates_from_its_own_phone() {
    let guard = Guard::in_memory(
        SecurityConfig {
            max_auth_failures: 100,
            ..config()
        },
        None,
    );
    guard.auth_passed(ip("198.51.100.5"), "1001");
    for i in 1..=5 {
        assert!(guard.may_authenticate(ip(&format!("192.0.2.{i}")), "1001"));
        guard.auth_failed(ip(&format!("192.0.2.{i}")), "1001");
    }
    assert!(
        !guard.may_authenticate(ip("192.0.2.200"), "1001"),
        "a new address may not try the protected account"
    );
    assert!(
        guard.may_authenticate(ip("198.51.100.5"), "1001"),
        "its phone's address may"
    );
    assert!(
        guard.may_authenticate(ip("192.0.2.200"), "1002"),
        "other accounts are open"
    );
    assert!(!guard.banned(ip("192.0.2.1")), "one failure each bans nobody");
}

#[test]
fn a_scanner_is_dropped_and_stays_banned_under_another_name() {
    let guard = Guard::in_memory(config(), None);
    assert!(!guard.screen(&request("OPTIONS", "friendly-scanner", ""), &peer("192.0.2.9")));
    assert!(!guard.screen(&request("REGISTER", "Zoiper", ""), &peer("192.0.2.9")));
    assert!(!guard.screen(&request("OPTIONS", "SIPVicious 0.3.3", ""), &peer("192.0.2.10")));
    assert!(guard.screen(&request("OPTIONS", "baresip v1.0.0", ""), &peer("192.0.2.11")));
}

#[test]
fn a_flood_gets_503_with_retry_after_and_one_that_goes_on_is_banned() {
    let guard = Guard::in_memory(
        SecurityConfig {
            register_per_sec: 2,
            burst_secs: 1,
            flood_ban_after: 3,
            ..config()
        },
        None,
    );
    let src = peer("192.0.2.20");
    let register = || request("REGISTER", "baresip", "");
    assert!(guard.admit(&register(), &src).is_none());
    assert!(guard.admit(&register(), &src).is_none());
    let refused = guard.admit(&register(), &src).unwrap_or_else(|| panic!("not refused"));
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.headers.get(&HeaderName::RetryAfter).map(|v| v.as_ref()),
        Some(&b"1"[..])
    );
    assert!(
        guard.admit(&request("INVITE", "baresip", ""), &src).is_none(),
        "INVITEs have their own rate"
    );
    assert!(
        guard.admit(&request("BYE", "baresip", ";tag=b"), &src).is_none(),
        "requests inside a dialog are not limited"
    );
    assert!(guard.admit(&register(), &peer("192.0.2.21")).is_none(), "per source");
    assert!(guard.admit(&register(), &src).is_some());
    assert!(!guard.banned(ip("192.0.2.20")));
    assert!(guard.admit(&register(), &src).is_some());
    assert!(guard.banned(ip("192.0.2.20")), "the third refusal bans");
}

#[test]
fn exempt_sources_are_never_limited_nor_banned_and_a_disabled_guard_does_nothing() {
    let exempt = Guard::in_memory(
        SecurityConfig {
            register_per_sec: 1,
            burst_secs: 1,
            exempt: vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..config()
        },
        None,
    );
    let proxy = peer("10.1.2.3");
    for _ in 0..10 {
        exempt.auth_failed(ip("10.1.2.3"), "1001");
        assert!(exempt.admit(&request("REGISTER", "kamailio", ""), &proxy).is_none());
    }
    assert!(exempt.screen(&request("OPTIONS", "friendly-scanner", ""), &proxy));

    let off = Guard::in_memory(
        SecurityConfig {
            enabled: false,
            ..config()
        },
        None,
    );
    for _ in 0..10 {
        off.auth_failed(ip("192.0.2.30"), "1001");
    }
    assert!(off.screen(&request("OPTIONS", "friendly-scanner", ""), &peer("192.0.2.30")));
}
