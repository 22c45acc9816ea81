//! RFC 5118 (SIP torture tests for IPv6) against a server listening on `[::1]`, and an IVM
//! call over IPv6 end to end.
//!
//! The twelve messages in `tests/testdata/rfc5118/` (bytes as in the RFC; see the README
//! there) are each sent on a TCP connection of their own from `[::1]`: their Vias name
//! documentation addresses (`2001:db8::…`) without `rport`, so over UDP RFC 3261 §18.2.2
//! would send the answers there; over TCP they come back on the connection. Each outcome must
//! match the table (the server must parse IPv6 references, `received=` with and without
//! brackets, mixed IPv4/IPv6 Via lists and IPv6 SDP).

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use ivm_e2e::paths::testdata_dir;
use ivm_e2e::process::run_bounded;
use ivm_e2e::sip::TcpClient;
use ivm_e2e::{Server, wait_for};

/// What each message must get: its final status (one of), or `None` for no answer.
const TABLE: &[(&str, Option<&[u16]>)] = &[
    // 4.1: valid; a REGISTER without credentials is challenged.
    ("ipv6-good", Some(&[401])),
    // 4.2: an IPv6 Request-URI host without brackets is invalid.
    ("ipv6-bad", Some(&[400])),
    // 4.3: host 2001:db8::10:5070 (no port); 4.4: [2001:db8::10]:5070.
    ("port-ambiguous", Some(&[401])),
    ("port-unambiguous", Some(&[401])),
    // 4.5: received=[…] and received=… both parse (a BYE outside a dialog, an OPTIONS).
    ("via-received-param-with-delim", Some(&[481])),
    ("via-received-param-no-delim", Some(&[200])),
    // 4.6: its Content-Length (the RFC's 268) is above its body (251 bytes): on a stream the
    // message never completes, so there is nothing to answer (UDP gets 400).
    ("ipv6-in-sdp", None),
    // 4.7: a Via list mixing IPv4 and IPv6 (a BYE outside a dialog).
    ("mult-ip-in-header", Some(&[481])),
    // 4.8, 4.9: IPv6 and IPv4-mapped addresses in SDP; an INVITE without credentials.
    ("mult-ip-in-sdp", Some(&[401, 407])),
    ("ipv4-mapped-ipv6", Some(&[401, 407])),
    // 4.10: three colons is not an IPv6 reference (RFC 4291); two is.
    ("ipv6-bug-abnf-3-colons", Some(&[400])),
    ("ipv6-correct-abnf-2-colons", Some(&[200])),
];

const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

#[test]
fn rfc5118_messages_over_ipv6_get_what_the_rfc_asks() {
    let mut server = Server::start_on(LOCALHOST6, "").expect("start ivm-sipd on [::1]");
    let dir = testdata_dir().join("rfc5118");
    let mut wrong = String::new();
    for (name, expect) in TABLE {
        let bytes = fs::read(dir.join(format!("{name}.dat"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut tcp = TcpClient::connect(server.addr).expect("connect over IPv6");
        tcp.send(&bytes).expect("send");
        let mut got = None;
        let wait = if expect.is_some() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(1)
        };
        while let Ok(Some(resp)) = tcp.read_response(wait) {
            if resp.status >= 200 {
                got = Some(resp.status);
                break;
            }
        }
        let ok = match (expect, got) {
            (Some(codes), Some(status)) => codes.contains(&status),
            (None, None) => true,
            _ => false,
        };
        if !ok {
            let _ = writeln!(wrong, "{name}: expected {expect:?}, got {got:?}");
        }
        assert!(server.is_running(), "the server died on {name}:\n{}", server.log());
    }
    assert!(wrong.is_empty(), "RFC 5118 mismatches:\n{wrong}");
}

/// SIPp's built-in UAC from `[::1]`, a trusted trunk, dials an IVM to 1001: the call is
/// answered with IPv6 media (`c=IN IP6 ::1`) and the message is recorded.
#[test]
fn an_ivm_call_over_ipv6_is_answered_with_ipv6_media() {
    let caller_port = ivm_e2e::ports::free_port();
    let extra = format!("[[trunk]]\nname = \"v6\"\naddress = \"[::1]:{caller_port}\"\ntrusted = [\"::1/128\"]\n");
    let server = Server::start_on(LOCALHOST6, &extra).expect("start ivm-sipd on [::1]");
    server.add_subscriber("1001", "pw-1001").expect("subscriber");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_bounded(
        Command::new(ivm_e2e::sipp::sipp_binary().expect("sipp"))
            .current_dir(dir.path())
            .arg(server.addr.to_string())
            .args([
                "-sn",
                "uac",
                "-s",
                "5551001",
                "-i",
                "::1",
                "-p",
                &caller_port.to_string(),
            ])
            .args(["-m", "1", "-d", "1000", "-nostdin", "-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log")),
        Duration::from_secs(30),
    )
    .expect("run sipp");
    let trace = fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "SIPp's call failed:\n{}{}\n{trace}",
        out.stdout,
        out.stderr
    );
    let answer = trace
        .split("\n\n")
        .find(|m| m.contains("SIP/2.0 200 OK") && m.contains("INVITE"))
        .unwrap_or_else(|| panic!("no 200 to the INVITE:\n{trace}"));
    assert!(answer.contains("c=IN IP6 ::1"), "IPv6 media in the answer:\n{answer}");
    wait_for(Duration::from_secs(5), "the message", || {
        Ok(ivm_e2e::notify::messages(&server)?
            .first()
            .map(|m| m.2.clone())
            .filter(|s| s == "complete"))
    })
    .expect("the message is recorded and complete");
}
