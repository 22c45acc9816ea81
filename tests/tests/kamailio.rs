//! Kamailio in front, real phones behind it: the shipped `deploy/kamailio/ivm.cfg` run by the
//! Debian Kamailio (5.6) before a real ivm-sipd, and two baresip phones (1.0.0) that use it as
//! their outbound proxy. They REGISTER through it (IVM keeps Kamailio's Path), 1001 speaks a
//! 4 s message to 1002 live (IVM's INVITE reaches 1002 through Kamailio, record-routed), and
//! 1002 then retrieves it through Kamailio while its phone sends RTP the whole call. What 1002
//! hears is compared sample by sample with what 1001's microphone said: G.711 in, G.711 out,
//! no transcoding, so the path is bit-exact.
//!
//! Needs `kamailio` and `baresip` (`./test.sh` installs both); skipped with a message where
//! they are not installed.

use std::time::Duration;

use ivm_e2e::audio::{decode_ulaw, sweep_4s};
use ivm_e2e::baresip::{self, Baresip, PhoneConfig};
use ivm_e2e::kamailio::{self, Kamailio};
use ivm_e2e::notify::{messages, retrieval_number, wait_delivery};
use ivm_e2e::{Server, wait_for};

/// Where `sent` starts in `heard` (found by one 20 ms frame from 1 s into `sent`), and how
/// many samples of `sent` are heard exactly, at that alignment.
fn exact_samples(heard: &[i16], sent: &[i16]) -> (Option<usize>, usize) {
    let probe = &sent[8000..8160];
    let Some(at) = heard.windows(probe.len()).position(|w| w == probe) else {
        return (None, 0);
    };
    let Some(start) = at.checked_sub(8000) else {
        return (None, 0);
    };
    let same = sent
        .iter()
        .enumerate()
        .filter(|(i, s)| heard.get(start + i) == Some(s))
        .count();
    (Some(start), same)
}

/// The binding of `aor`: its source address and Path.
fn binding(server: &Server, aor: &str) -> anyhow::Result<Option<(String, String)>> {
    let conn = server.db()?;
    let mut stmt = conn.prepare("SELECT source, path FROM registrations WHERE aor = ?1")?;
    let mut rows = stmt.query_map([aor], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.next().transpose()?)
}

#[test]
fn behind_kamailio_baresip_phones_register_send_live_and_retrieve_bit_exact() {
    if !kamailio::available() || !baresip::available() {
        eprintln!("SKIPPED: kamailio or baresip is not installed (./test.sh installs the Debian packages)");
        return;
    }
    let server =
        Server::start_with_subscribers("", &[("1001", "pw-1001"), ("1002", "pw-1002")]).expect("start ivm-sipd");
    let kamailio = Kamailio::start(&[server.addr]).expect("start kamailio");
    let sweep = decode_ulaw(&sweep_4s());
    let silence = vec![0i16; 8000 * 60];
    let mut alice = Baresip::start(&PhoneConfig {
        number: "1001",
        password: "pw-1001",
        outbound: kamailio.addr,
        microphone: &sweep,
        auto_answer: false,
        tls: false,
    })
    .expect("start baresip 1001");
    let mut bob = Baresip::start(&PhoneConfig {
        number: "1002",
        password: "pw-1002",
        outbound: kamailio.addr,
        microphone: &silence,
        auto_answer: true,
        tls: false,
    })
    .expect("start baresip 1002");

    // REGISTER through Kamailio: the binding's flow is Kamailio and it keeps Kamailio's Path
    // with the phone's address as `received`.
    for aor in ["1001", "1002"] {
        let (source, path) = wait_for(Duration::from_secs(15), "a registration through kamailio", || {
            binding(&server, aor)
        })
        .unwrap_or_else(|e| panic!("{aor} did not register: {e:#}\n{}", server.log_tail(30)));
        assert_eq!(source, kamailio.addr.to_string(), "{aor} registered through kamailio");
        assert!(
            path.starts_with(&format!("<sip:{};lr;received=sip:127.0.0.1:", kamailio.addr)),
            "{aor}'s Path: {path:?}"
        );
    }

    // 1001 speaks its 4 s file to 1002 (its phone hangs up at the end of the file).
    alice.command("dial", "sip:5551002@ivm.local").expect("dial");
    alice
        .wait_event("CALL_CLOSED", 0, Duration::from_secs(20))
        .expect("1001's call ends at the end of its message");
    let id = wait_for(Duration::from_secs(5), "the message row", || {
        Ok(messages(&server)?.into_iter().find(|m| m.1 == "1001").map(|m| m.0))
    })
    .expect("message");
    wait_delivery(&server, id, "1002", Duration::from_secs(15), "delivered", |d| {
        d.state == "delivered"
    })
    .expect("the live delivery to 1002");
    let invite_from_ivm = bob
        .log()
        .split("\n\n")
        .any(|m| m.contains("INVITE sip:1002") && m.contains(&format!("Record-Route: <sip:{};lr", kamailio.addr)));
    assert!(
        invite_from_ivm,
        "IVM's INVITE reached 1002 through kamailio:\n{}",
        bob.log()
    );
    let heard = bob.heard().expect("1002's recordings");
    let live = heard.last().expect("1002 heard a call");
    let (start, same) = exact_samples(live, &sweep);
    assert!(
        start.is_some(),
        "the message is not in what 1002 heard live ({} samples)",
        live.len()
    );
    assert!(
        same >= 30_000,
        "1002 heard {same} of {} samples of the message exactly, live",
        sweep.len()
    );

    // 1002 retrieves it through Kamailio, sending (silent) RTP all the while, and hears it
    // again, whole: intro, then the message.
    let seen = bob.events_seen().expect("events");
    bob.command("dial", &format!("sip:{}@ivm.local", retrieval_number(id)))
        .expect("dial the retrieval number");
    bob.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10))
        .expect("the retrieval call is answered");
    wait_delivery(&server, id, "1002", Duration::from_secs(20), "heard", |d| {
        d.heard_at.is_some()
    })
    .expect("the retrieval marks the message heard");
    // The intro and the message have played; hang up in the menu.
    std::thread::sleep(Duration::from_secs(1));
    bob.command("hangup", "").expect("hang up");
    bob.wait_event("CALL_CLOSED", seen, Duration::from_secs(10))
        .expect("the retrieval call ends");
    let heard = bob.heard().expect("1002's recordings");
    assert_eq!(heard.len(), 2, "two calls heard by 1002");
    let (start, same) = exact_samples(&heard[1], &sweep);
    assert!(
        start.is_some_and(|s| s > 0),
        "the message is not in the retrieval ({} samples)",
        heard[1].len()
    );
    assert!(
        same >= 31_000,
        "retrieval: 1002 heard {same} of {} samples of the message exactly",
        sweep.len()
    );
}
