//! The parser against the 49 RFC 4475 torture messages (copied, bytes unchanged, into
//! `tests/testdata/rfc4475/`): valid ones parse and survive a write/parse round trip, invalid
//! ones are rejected with a reason.

use std::path::PathBuf;

use bytes::Bytes;

use super::*;

const VALID: &[&str] = &[
    // §3.1.1
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    // §3.2, §3.3, §3.4: well formed, tests for the layers above
    "badbranch",
    "insuf_is_checked_below",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01_is_checked_below",
    "mcl01_is_checked_below",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

/// §3.1.2, plus the §3.3 messages whose defect is a header rule the message layer enforces
/// (missing or repeated single-valued headers, two Content-Lengths): the RFC's expected answer
/// for those is 400 too.
const INVALID: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "insuf",
    "multi01",
    "mcl01",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/rfc4475")
}

fn load(name: &str) -> Bytes {
    let path = dir().join(format!("{name}.dat"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Headers other than Content-Length (which writing adds when absent).
fn comparable(m: &Message) -> (String, Vec<(HeaderName, Bytes)>, Bytes) {
    let (start, headers, body) = match m {
        Message::Request(r) => (format!("{} {}", r.method, r.uri), &r.headers, &r.body),
        Message::Response(r) => (
            format!("{} {}", r.status, String::from_utf8_lossy(&r.reason)),
            &r.headers,
            &r.body,
        ),
    };
    let hs = headers
        .iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    (start, hs, body.clone())
}

#[test]
fn all_49_messages_are_classified() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".dat").map(str::to_owned))
        .collect();
    files.sort();
    assert_eq!(files.len(), 49);
    for f in &files {
        let listed = VALID
            .iter()
            .any(|v| v == f || v.strip_suffix("_is_checked_below") == Some(f))
            || INVALID.contains(&f.as_str());
        assert!(listed, "{f} is not classified");
    }
}

#[test]
fn valid_messages_parse_and_round_trip() {
    let mut failures = Vec::new();
    for name in VALID.iter().filter(|n| !n.ends_with("_is_checked_below")) {
        let data = load(name);
        match parse_message(data.clone(), Framing::Datagram) {
            Ok(msg) => {
                let again = parse_message(Bytes::from(msg.to_bytes()), Framing::Datagram);
                match again {
                    Ok(m2) if comparable(&m2) == comparable(&msg) => {}
                    Ok(_) => failures.push(format!("{name}: round trip changed the message")),
                    Err(e) => failures.push(format!("{name}: written form does not parse: {e}")),
                }
            }
            Err(e) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn invalid_messages_are_rejected_with_a_reason() {
    let mut failures = Vec::new();
    for name in INVALID {
        match parse_message(load(name), Framing::Datagram) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if e.reason.is_empty() => failures.push(format!("{name}: no reason")),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn specific_readings() {
    let msg = |n| parse_message(load(n), Framing::Datagram).unwrap_or_else(|e| panic!("{n}: {e}"));
    // wsinv: folding, compact forms, odd spacing.
    let Message::Request(r) = msg("wsinv") else {
        panic!("wsinv is a request")
    };
    assert_eq!(
        r.cseq(),
        Some(CSeq {
            seq: 9,
            method: Method::Invite
        })
    );
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(r.vias().len(), 3);
    assert_eq!(r.header_to().and_then(|t| t.tag()).as_deref(), Some("1918181833n"));
    assert_eq!(r.body.len(), 150);
    assert!(
        r.headers
            .get(&HeaderName::Other("NewFangledHeader".into()))
            .is_some_and(|v| &v[..] == b"newfangled value continued newfangled value")
    );
    // esc01: escapes kept as received on the way out.
    let Message::Request(r) = msg("esc01") else { panic!() };
    assert!(String::from_utf8_lossy(&r.to_bytes()).contains("sip:sips%3Auser%40example.com@example.net"));
    // dblreq: only the first request, body empty.
    let Message::Request(r) = msg("dblreq") else { panic!() };
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    // inv2543: no Content-Length: the body is the rest of the datagram.
    let Message::Request(r) = msg("inv2543") else { panic!() };
    assert_eq!(r.body.len(), 105);
    // mpart01: the multipart body is passed through untouched.
    let data = load("mpart01");
    let Message::Request(r) = msg("mpart01") else { panic!() };
    assert_eq!(&r.body[..], &data[data.len() - 553..]);
    // esc02: an escaped header name is not Contact.
    assert_eq!(msg("esc02").contacts().len(), 2);
    // badvers: 505, answerable.
    let e = parse_message(load("badvers"), Framing::Datagram)
        .err()
        .unwrap_or_else(|| panic!("badvers accepted"));
    assert_eq!(e.kind, ErrorKind::VersionNotSupported);
    assert!(e.answerable.is_some());
    // Stream framing needs Content-Length.
    assert!(parse_message(load("inv2543"), Framing::Stream).is_err());
}
