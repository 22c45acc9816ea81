//! The guard, tried as an attacker would: sipvicious (`svcrack`, `svwar`, Debian package
//! `sipvicious`, which `test.sh` installs), a phone guessing passwords, an OPTIONS flood, and
//! more calls than the server takes. Each test asserts what the attacker sees (no password
//! found, no answer, `503` with Retry-After) and that the subscriber's own phone, from another
//! address, is not locked out.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use ivm_e2e::Server;
use ivm_e2e::ivm::{CALLER_IP, Law, start_ivm_server};
use ivm_e2e::phone::{Dialed, Phone};
use ivm_e2e::process::run_bounded;
use ivm_e2e::sip::{Request, SipResponse};

const USER: (&str, &str) = ("1001", "tangerine-77");

fn server(extra: &str) -> Server {
    Server::start_with_subscribers(extra, &[USER]).expect("start ivm-sipd with subscriber 1001")
}

/// The `security list --json` row of `address`, if any.
fn ban_of(server: &Server, address: &str) -> Option<serde_json::Value> {
    let out = server.admin_ok(&["security", "list", "--json"]).expect("security list");
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["address"] == address)
}

/// Whether a phone on `ip` registers 1001 with the right password (`false`: no answer).
fn registers(ip: &str, server: &Server) -> bool {
    let phone = Phone::new(ip, server.addr).expect("phone");
    match phone.register(USER.0, USER.1, 600) {
        Ok(resp) => {
            assert_eq!(resp.status(), Some(200), "{}", resp.text());
            true
        }
        Err(_) => false,
    }
}

/// A word list of 500 wrong passwords with the right one last.
fn word_list(dir: &std::path::Path) -> String {
    let words = dir.join("words.txt");
    let mut list: Vec<String> = (0..499).map(|i| format!("guess{i:03}")).collect();
    list.push(USER.1.to_owned());
    std::fs::write(&words, list.join("\n") + "\n").expect("word list");
    words.to_string_lossy().into_owned()
}

/// Runs a sipvicious tool against `server` and returns what it printed. The tools send from
/// 127.0.0.1 (sipvicious 0.3.3 ignores its `--bindingip`), which no phone of these tests uses.
fn sipvicious(tool: &str, args: &[&str], server: &Server) -> String {
    let port = server.addr.port().to_string();
    let out = run_bounded(
        Command::new(tool)
            .args(args)
            .args(["-p", &port, "--maximumtime=5", "127.0.0.1"]),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn svcrack_is_dropped_as_a_scanner_and_the_phone_still_registers() {
    let server = server("");
    let dir = tempfile::tempdir().expect("temp dir");
    let words = word_list(dir.path());
    let said = sipvicious("svcrack", &["-u", USER.0, "-d", &words], &server);
    assert!(!said.contains(USER.1), "svcrack found the password:\n{said}");
    let ban = ban_of(&server, "127.0.0.1").unwrap_or_else(|| panic!("svcrack's source not banned:\n{said}"));
    assert_eq!(ban["state"], "banned", "{ban}");
    assert_eq!(ban["reason"], "scanner", "{ban}");

    assert!(
        registers("127.0.0.61", &server),
        "the phone of 1001, elsewhere, registers"
    );
    assert!(
        !registers("127.0.0.1", &server),
        "the banned source gets no answer, not even with the right password"
    );
}

#[test]
fn svcrack_in_disguise_is_banned_for_guessing_and_svwar_finds_no_extension() {
    // A scanner that changed its User-Agent: only the failure count stops it. svwar with
    // --force goes on past the challenge for an unknown extension; every answer is the same 401.
    let server = server("[security]\nscanner_user_agents = []\n");
    let said = sipvicious("svwar", &["-e", "1000-1010", "--force"], &server);
    assert!(!said.contains("1001"), "svwar found the extension:\n{said}");

    let dir = tempfile::tempdir().expect("temp dir");
    let words = word_list(dir.path());
    let said = sipvicious("svcrack", &["-u", USER.0, "-d", &words], &server);
    assert!(!said.contains(USER.1), "svcrack found the password:\n{said}");
    let ban = ban_of(&server, "127.0.0.1").unwrap_or_else(|| panic!("svcrack's source not banned:\n{said}"));
    assert_eq!(ban["reason"], "auth failures", "{ban}");
    assert!(
        registers("127.0.0.61", &server),
        "the phone of 1001, elsewhere, registers"
    );
}

#[test]
fn a_guessing_source_is_banned_across_a_restart_until_unbanned_and_the_phone_goes_on() {
    let mut server = server("");
    let attacker = Phone::new("127.0.0.70", server.addr).expect("phone");
    for i in 0..10 {
        let resp = attacker
            .register(USER.0, &format!("wrong-{i}"), 600)
            .unwrap_or_else(|e| panic!("guess {i} unanswered: {e}"));
        assert_eq!(resp.status(), Some(403), "guess {i}: {}", resp.text());
    }
    assert!(
        attacker.register(USER.0, USER.1, 600).is_err(),
        "after 10 failures the right password from that source is not answered"
    );
    assert!(registers("127.0.0.71", &server), "1001's own phone still registers");
    let ban = ban_of(&server, "127.0.0.70").expect("ban listed");
    assert_eq!(
        (ban["state"].as_str(), ban["reason"].as_str()),
        (Some("banned"), Some("auth failures"))
    );
    let left = ban["until"].as_i64().unwrap_or(0) - ivm_e2e::unix_now();
    assert!(
        (590..=600).contains(&left),
        "the first ban lasts ban_secs (600): {left} s left"
    );

    server.restart().expect("restart");
    assert!(!registers("127.0.0.70", &server), "the ban holds after a restart");

    server.admin_ok(&["security", "unban", "127.0.0.70"]).expect("unban");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !registers("127.0.0.70", &server) {
        assert!(Instant::now() < deadline, "the unbanned source is still refused");
    }
    assert_eq!(ban_of(&server, "127.0.0.70").expect("row")["state"], "lifted");
}

#[test]
fn an_options_flood_gets_503_with_retry_after_and_other_sources_are_served() {
    let server = server("");
    let socket = UdpSocket::bind("127.0.0.80:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let local = socket.local_addr().expect("local");
    const SENT: usize = 60;
    for _ in 0..SENT {
        let req = Request::new("OPTIONS", &format!("sip:{}", server.addr), local, "UDP");
        socket.send_to(&req.to_bytes(), server.addr).expect("send");
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let resp = SipResponse::parse(&buf[..n]).expect("response");
        match resp.status {
            200 => ok += 1,
            503 => {
                refused += 1;
                let after: u32 = resp
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("503 without Retry-After:\n{}", resp.text()));
                assert!((1..=2).contains(&after), "Retry-After {after}");
            }
            other => panic!("unexpected {other}:\n{}", resp.text()),
        }
    }
    assert_eq!(ok + refused, SENT, "every OPTIONS answered");
    // options_per_sec = 10 with burst_secs = 2: 20 at once, and about 10 more per second.
    assert!((20..=25).contains(&ok), "{ok} answered 200, {refused} 503");

    let other = UdpSocket::bind("127.0.0.81:0").expect("bind");
    other.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let req = Request::new(
        "OPTIONS",
        &format!("sip:{}", server.addr),
        other.local_addr().expect("local"),
        "UDP",
    );
    other.send_to(&req.to_bytes(), server.addr).expect("send");
    let (n, _) = other.recv_from(&mut buf).expect("answer to another source");
    assert_eq!(SipResponse::parse(&buf[..n]).expect("response").status, 200);
}

#[test]
fn beyond_max_calls_a_new_call_gets_503_and_the_call_in_progress_goes_on() {
    let server = start_ivm_server(&[], "[calls]\nmax_calls = 1\n", &[USER]).expect("start ivm-sipd");
    let first = Phone::new(CALLER_IP, server.addr).expect("phone");
    let mut call = first
        .call("98", USER.0, None, Law::Pcmu, Duration::from_secs(5))
        .expect("the first call is taken");
    let second = Phone::new(CALLER_IP, server.addr).expect("phone");
    match second
        .try_call("98", USER.0, None, Law::Pcmu, Duration::from_secs(5))
        .expect("second call")
    {
        Dialed::Refused(resp) => {
            assert_eq!(resp.status(), Some(503), "{}", resp.text());
            assert!(resp.header("Retry-After").is_some(), "{}", resp.text());
        }
        Dialed::Answered(_) => panic!("a call beyond max_calls was answered"),
    }
    // The call in progress still hears its prompts.
    let before = first.sink.packets().len();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        first.sink.packets().len() >= before + 20,
        "the first call's RTP stopped"
    );
    call.bye().expect("BYE");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match second
            .try_call("98", USER.0, None, Law::Pcmu, Duration::from_secs(5))
            .expect("third call")
        {
            Dialed::Answered(mut c) => {
                c.bye().expect("BYE");
                break;
            }
            Dialed::Refused(resp) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after the first call ended: {}",
                    resp.text()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
