//! RFC 4475 torture tests against the running server.
//!
//! Each of the 49 messages in `tests/testdata/rfc4475/` (bytes exactly as
//! in the RFC; see the README there) is sent as one UDP datagram from its
//! own socket; responses are collected for about a second. The server must
//! never crash (it is checked after every message, and restarted so one
//! crash does not hide the rest), and each message's outcome must match the
//! table below. A failure lists every mismatching message at once.
//!
//! Where the responses go: most of these messages have a Via without
//! `rport`, so RFC 3261 18.2.2 sends the response to the source IP and the
//! port in the Via sent-by (5060 by default), not to the source port. The
//! test therefore also listens, when it can, on 127.0.0.1:5060/5050/5070
//! (the sent-by ports used) and attributes what arrives there by Call-ID.
//! The table shows where each response arrived.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ivm_e2e::Server;
use ivm_e2e::paths::testdata_dir;
use ivm_e2e::sip::{SipResponse, TcpClient, canonical_header_name};

/// What the server must do with a message.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A final response whose status is one of these (the first final one
    /// counts), carrying the named header if one is given.
    Status(&'static [u16], Option<&'static str>),
    /// A 400 (or another error) or no response at all; never a 2xx.
    NoSuccess,
    /// No response at all (it is a response; the server is not a client).
    Silence,
    /// Exactly one response (`dblreq`: the trailing request in the same
    /// datagram must be ignored).
    ExactlyOne,
    /// Some final response: a valid request gets an answer.
    AnyFinal,
}

use Expect::*;

/// Every RFC 4475 message and what must happen to it.
const TABLE: &[(&str, Expect)] = &[
    // 3.1.1 valid messages
    ("wsinv", AnyFinal),
    ("intmeth", Status(&[501, 405], Some("Allow"))),
    ("esc01", AnyFinal),
    ("escnull", AnyFinal),
    ("esc02", Status(&[501, 405], None)),
    ("lwsdisp", AnyFinal),
    ("longreq", AnyFinal),
    ("dblreq", ExactlyOne),
    ("semiuri", AnyFinal),
    ("transports", AnyFinal),
    ("mpart01", AnyFinal),
    ("unreason", Silence),
    ("noreason", Silence),
    // 3.1.2 invalid messages
    ("badinv01", NoSuccess),
    ("clerr", NoSuccess),
    ("ncl", NoSuccess),
    ("scalar02", NoSuccess),
    ("scalarlg", Silence),
    ("quotbal", NoSuccess),
    ("ltgtruri", NoSuccess),
    ("lwsruri", NoSuccess),
    ("lwsstart", NoSuccess),
    ("trws", NoSuccess),
    ("escruri", NoSuccess),
    ("baddate", NoSuccess),
    ("regbadct", NoSuccess),
    ("badaspec", NoSuccess),
    ("baddn", NoSuccess),
    ("badvers", Status(&[505], None)),
    ("mismatch01", NoSuccess),
    ("mismatch02", NoSuccess),
    ("bigcode", Silence),
    // 3.2 transaction layer
    ("badbranch", AnyFinal),
    // 3.3 application layer
    ("insuf", NoSuccess),
    ("unkscm", Status(&[416], None)),
    ("novelsc", Status(&[416], None)),
    ("unksm2", Status(&[400], None)),
    ("bext01", Status(&[420], Some("Unsupported"))),
    ("invut", Status(&[415], None)),
    ("regaut01", Status(&[401], Some("WWW-Authenticate"))),
    ("multi01", NoSuccess),
    ("mcl01", NoSuccess),
    ("bcast", Silence),
    ("zeromf", Status(&[200], None)),
    ("cparam01", Status(&[401], Some("WWW-Authenticate"))),
    ("cparam02", Status(&[401], Some("WWW-Authenticate"))),
    ("regescrt", Status(&[401], Some("WWW-Authenticate"))),
    ("sdp01", Status(&[406, 400], None)),
    // 3.4 backward compatibility
    ("inv2543", AnyFinal),
];

/// How long to wait for responses to one message, and how long to keep
/// listening after the first final response (for duplicates).
const WAIT: Duration = Duration::from_millis(1000);
const LINGER: Duration = Duration::from_millis(300);

fn rfc4475_dir() -> PathBuf {
    testdata_dir().join("rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    let path = rfc4475_dir().join(format!("{name}.dat"));
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The Call-ID of the first message in a datagram (for attributing
/// responses that arrive on a shared catcher socket).
fn call_id(msg: &[u8]) -> Option<String> {
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..head_end]);
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| canonical_header_name(n) == "call-id")
        .map(|(_, v)| v.trim().to_string())
}

struct Got {
    /// (where it arrived, parsed response or the raw text if unparsable)
    responses: Vec<(String, Result<SipResponse, String>)>,
    crashed: Option<String>,
}

impl Got {
    fn statuses(&self) -> Vec<u16> {
        self.responses
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|r| r.status))
            .collect()
    }

    fn first_final(&self) -> Option<&SipResponse> {
        self.responses
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .find(|r| r.is_final())
    }

    fn summary(&self) -> String {
        if self.responses.is_empty() {
            return "no response".into();
        }
        let mut s = String::new();
        for (i, (from, r)) in self.responses.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            match r {
                Ok(r) => {
                    let _ = write!(s, "{} {} ({from})", r.status, r.reason);
                }
                Err(raw) => {
                    let _ = write!(s, "UNPARSABLE {:?} ({from})", raw.chars().take(60).collect::<String>());
                }
            }
        }
        s
    }
}

/// Checks `got` against `expect`; `Err(why)` on a mismatch.
fn judge(expect: Expect, got: &Got) -> Result<(), String> {
    if let Some(c) = &got.crashed {
        return Err(format!("SERVER CRASHED: {c}"));
    }
    if let Some((from, Err(raw))) = got.responses.iter().find(|(_, r)| r.is_err()) {
        return Err(format!("unparsable response from {from}: {raw:?}"));
    }
    let statuses = got.statuses();
    match expect {
        Status(codes, header) => {
            let Some(r) = got.first_final() else {
                return Err(format!("expected {codes:?}, got {}", got.summary()));
            };
            if !codes.contains(&r.status) {
                return Err(format!("expected {codes:?}, got {}", got.summary()));
            }
            if let Some(h) = header
                && r.header(h).is_none()
            {
                return Err(format!("{} without a {h} header:\n{}", r.status, r.text()));
            }
            Ok(())
        }
        NoSuccess => {
            if statuses.iter().any(|s| (200..300).contains(s)) {
                Err(format!("expected 400 or no response, got {}", got.summary()))
            } else {
                Ok(())
            }
        }
        Silence => {
            if got.responses.is_empty() {
                Ok(())
            } else {
                Err(format!("expected no response, got {}", got.summary()))
            }
        }
        ExactlyOne => {
            if got.responses.len() == 1 && got.first_final().is_some() {
                Ok(())
            } else {
                Err(format!("expected exactly one (final) response, got {}", got.summary()))
            }
        }
        AnyFinal => {
            if got.first_final().is_some() {
                Ok(())
            } else {
                Err(format!("expected a final response, got {}", got.summary()))
            }
        }
    }
}

/// Sockets on the Via sent-by ports the messages use, where RFC 3261
/// 18.2.2 sends responses of requests without rport.
fn catchers() -> Vec<(String, UdpSocket)> {
    let mut out = Vec::new();
    for port in [5060u16, 5050, 5070] {
        match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
            Ok(s) => {
                let _ = s.set_nonblocking(true);
                out.push((format!("via-port:{port}"), s));
            }
            Err(e) => eprintln!("note: cannot listen on 127.0.0.1:{port} ({e}); responses sent there are not seen"),
        }
    }
    out
}

fn drain(sock: &UdpSocket) {
    let mut buf = [0u8; 65_536];
    while sock.recv_from(&mut buf).is_ok() {}
}

fn send_udp(server: &mut Server, catchers: &[(String, UdpSocket)], msg: &[u8]) -> Got {
    for (_, c) in catchers {
        drain(c);
    }
    let own = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind client socket");
    own.set_nonblocking(true).expect("nonblocking");
    let cid = call_id(msg);
    let mut got = Got {
        responses: Vec::new(),
        crashed: None,
    };
    if let Err(e) = own.send_to(msg, server.addr) {
        got.crashed = Some(format!("cannot even send: {e}"));
        return got;
    }
    let mut deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65_536];
    let own_label = "source-port".to_string();
    while Instant::now() < deadline {
        let mut any = false;
        for (label, sock) in std::iter::once((&own_label, &own)).chain(catchers.iter().map(|(l, s)| (l, s))) {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    any = true;
                    let data = &buf[..n];
                    let is_own = std::ptr::eq(sock, &own);
                    if !is_own && cid.is_some() && call_id(data) != cid {
                        continue; // a late response to an earlier message
                    }
                    let parsed = SipResponse::parse(data).map_err(|_| String::from_utf8_lossy(data).into_owned());
                    if parsed.as_ref().is_ok_and(|r| r.is_final()) {
                        deadline = deadline.min(Instant::now() + LINGER);
                    }
                    got.responses.push((label.clone(), parsed));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    got.crashed = crash_check(server);
    got
}

/// The RFC 3261 17.2.3 server-transaction key of a message's top Via:
/// (branch, sent-by, CSeq method), when it can be read simply.
///
/// Several RFC 4475 messages share one: `cparam02` has `cparam01`'s,
/// `regescrt` has `escnull`'s, `novelsc` has `unkscm`'s. A transaction layer
/// rightly takes such a message for a retransmission of the earlier one and
/// replays that one's response (with the earlier Call-ID), so the test
/// sends it to a freshly restarted server instead.
fn transaction_key(msg: &[u8]) -> Option<(String, String, String)> {
    if msg.starts_with(b"SIP/") {
        return None; // a response: no server transaction
    }
    let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..head_end]);
    let mut via = None;
    let mut method = None;
    for (name, value) in head.split("\r\n").skip(1).filter_map(|l| l.split_once(':')) {
        match canonical_header_name(name).as_str() {
            "via" if via.is_none() => via = Some(value.trim().to_string()),
            "cseq" if method.is_none() => method = value.split_whitespace().nth(1).map(str::to_string),
            _ => {}
        }
    }
    let via = via?;
    let first = via.split(',').next()?;
    let mut parts = first.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?.to_ascii_lowercase();
    let branch = parts
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("branch"))
        .map(|(_, v)| v.trim().to_string())?;
    Some((branch, sent_by, method?))
}

/// `Some(description)` if the server died; it is started again then.
fn crash_check(server: &mut Server) -> Option<String> {
    if server.is_running() {
        return None;
    }
    let status = server
        .exit_status()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown status".into());
    let what = format!("ivm-sipd exited ({status}); log tail:\n{}", server.log_tail(30));
    server.start_again().expect("restart ivm-sipd after a crash");
    Some(what)
}

fn check_files_match_table() {
    let on_disk: BTreeSet<String> = fs::read_dir(rfc4475_dir())
        .expect("tests/testdata/rfc4475 exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".dat"))
                .map(str::to_string)
        })
        .collect();
    let in_table: BTreeSet<String> = TABLE.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(TABLE.len(), 49, "the table must list the 49 RFC 4475 messages");
    assert_eq!(
        on_disk, in_table,
        "tests/testdata/rfc4475/*.dat and the expectation table differ"
    );
}

#[test]
fn rfc4475_over_udp() {
    check_files_match_table();
    let mut server = Server::start("").expect("start ivm-sipd");
    let catchers = catchers();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut keys_seen = BTreeSet::new();
    for (name, expect) in TABLE {
        let msg = load(name);
        if let Some(key) = transaction_key(&msg)
            && !keys_seen.insert(key.clone())
        {
            // See transaction_key(): not a retransmission, a reused branch.
            let _ = writeln!(
                report,
                "({name} reuses an earlier message's transaction key {key:?}: fresh server)"
            );
            server.restart().expect("restart ivm-sipd");
        }
        let got = send_udp(&mut server, &catchers, &msg);
        let verdict = judge(*expect, &got);
        let _ = writeln!(
            report,
            "{:<11} {:<4} expect {:<38} got {}",
            name,
            if verdict.is_ok() { "ok" } else { "FAIL" },
            format!("{expect:?}"),
            got.summary()
        );
        if let Err(why) = verdict {
            failures.push(format!("{name}: {why}"));
        }
    }
    println!("RFC 4475 over UDP against ivm-sipd:\n{report}");

    // Still alive and well after all of it.
    assert!(server.is_running(), "ivm-sipd is not running after the torture tests");
    let options = server.options().expect("OPTIONS after the torture tests");
    assert_eq!(options.status, 200, "{}", options.text());

    let missing: Vec<&str> = ["5060", "5050", "5070"]
        .into_iter()
        .filter(|p| !catchers.iter().any(|(l, _)| l.ends_with(p)))
        .collect();
    let note = if missing.is_empty() {
        String::new()
    } else {
        format!(
            "\nNOTE: could not listen on 127.0.0.1 port(s) {missing:?} (in use?): responses the server sent \
             there (RFC 3261 18.2.2, Via without rport) were not seen.\n"
        )
    };
    assert!(
        failures.is_empty(),
        "{} of {} RFC 4475 messages were not handled as expected:\n  {}\n{note}\nfull table:\n{report}",
        failures.len(),
        TABLE.len(),
        failures.join("\n  ")
    );
}

/// The same 49 messages over TCP, one connection each: the server must
/// survive every one of them (responses are recorded, not judged: framing
/// errors such as `clerr`'s Content-Length may legitimately just close the
/// connection).
#[test]
fn rfc4475_over_tcp_does_not_crash() {
    check_files_match_table();
    let mut server = Server::start("").expect("start ivm-sipd");
    let mut report = String::new();
    let mut crashes = Vec::new();
    for (name, _) in TABLE {
        let msg = load(name);
        let mut summary = String::new();
        match TcpClient::connect(server.addr) {
            Ok(mut c) => {
                if let Err(e) = c.send(&msg) {
                    let _ = write!(summary, "write failed: {e:#}");
                }
                let deadline = Instant::now() + Duration::from_millis(600);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match c.read_response(left) {
                        Ok(Some(r)) => {
                            let _ = write!(summary, "{} {}; ", r.status, r.reason);
                            if r.is_final() {
                                break;
                            }
                        }
                        Ok(None) => {
                            summary.push_str("closed by server");
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(e) => summary = format!("connect failed: {e:#}"),
        }
        if summary.is_empty() {
            summary.push_str("no response");
        }
        if let Some(c) = crash_check(&mut server) {
            crashes.push(format!("{name}: {c}"));
            summary.push_str(" CRASH");
        }
        let _ = writeln!(report, "{name:<11} {summary}");
    }
    println!("RFC 4475 over TCP against ivm-sipd:\n{report}");
    assert!(
        crashes.is_empty(),
        "ivm-sipd crashed on:\n{}\n\ntable:\n{report}",
        crashes.join("\n")
    );
    let options = server.options().expect("OPTIONS after the TCP torture tests");
    assert_eq!(options.status, 200, "{}", options.text());
}
