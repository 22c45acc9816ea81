//! SMS notifications through ivm-sipd end to end, with the SMSC as a separate process (the
//! `ivm-smsc serve` binary, our built-in SMSC run on its own as a carrier's would be): a missed
//! IVM to a subscriber with an MSISDN is queued as an SMS while the SMSC is down; ivm-sipd is
//! killed with SIGKILL and started again with the unsent outbox; when the SMSC comes up each
//! SMS arrives exactly once, with the sender, the length and the retrieval number, and its
//! delivery receipt is recorded on the delivery. Another restart sends nothing again. And a
//! message that a crash cut off while its targets were missed or ringing is announced after
//! the restart, once (issue 9, item 8).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ivm_e2e::ivm::{CALLER_IP, CALLER_NUMBER, Law, Target, TargetTrunk, caller, list_messages, start_ivm_server};
use ivm_e2e::{Sipp, audio, free_port, process, wait_for};

/// The SMSC binary beside the server binary.
fn smsc_binary() -> PathBuf {
    let server = ivm_e2e::paths::require_server_binary().expect("ivm-sipd binary");
    server.with_file_name("ivm-smsc")
}

struct Smsc {
    child: Child,
    log: PathBuf,
}

impl Smsc {
    fn start(port: u16, dir: &std::path::Path) -> Smsc {
        let log = dir.join("smsc.log");
        let out = File::create(&log).expect("smsc log");
        let err = out.try_clone().expect("smsc log");
        let child = Command::new(smsc_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start ivm-smsc serve (built with ./test.sh)");
        Smsc { child, log }
    }

    /// The SMS the SMSC logged for `to` (one line each).
    fn messages_to(&self, to: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(&format!("to={to}")) && l.contains("text="))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn queued_sms_survive_an_smsc_outage_and_a_crash_and_arrive_exactly_once() {
    let smsc_port = free_port();
    let extra = format!(
        "[smsc]\nmode = \"external\"\naddress = \"127.0.0.1:{smsc_port}\"\n\n[calls]\nring_timeout_secs = 2\ncallerid_ring_secs = 1\n"
    );
    let mut server = start_ivm_server(&[], &extra, &[]).expect("start ivm-sipd");
    for (n, msisdn) in [("1234", "+4915112345678"), ("1235", "+4915112345679")] {
        server
            .admin_ok(&["subscriber", "add", n, "--password", "pw", "--msisdn", msisdn])
            .expect("subscriber add");
    }

    // Two missed messages (neither subscriber is registered) while the SMSC is down.
    for target in ["1234", "1235"] {
        caller(&format!("555{target}"), CALLER_NUMBER)
            .run(server.addr)
            .expect("run sipp")
            .assert_success();
    }
    wait_for(Duration::from_secs(20), "both deliveries notified", || {
        let msgs = list_messages(&server)?;
        let notified = msgs
            .iter()
            .flat_map(|m| m.deliveries.iter())
            .filter(|d| d.state == "notified")
            .count();
        Ok((notified == 2).then_some(()))
    })
    .expect("notified");
    let queued: i64 = server
        .db()
        .expect("db")
        .query_row("SELECT count(*) FROM sms_outbox", [], |r| r.get(0))
        .expect("sms_outbox rows");
    assert_eq!(queued, 2, "both SMS are in the outbox before any SMSC is up");

    // Crash with the outbox unsent; the SMSC comes up; ivm-sipd starts again.
    let pid = server.pid().expect("pid");
    assert!(process::signal(pid, libc::SIGKILL), "SIGKILL ivm-sipd");
    wait_for(Duration::from_secs(5), "ivm-sipd to die", || {
        Ok((!server.is_running()).then_some(()))
    })
    .expect("killed");
    let smsc = Smsc::start(smsc_port, server.dir());
    server.start_again().expect("restart ivm-sipd");

    for (msisdn, message) in [("4915112345678", 1), ("4915112345679", 2)] {
        let lines = wait_for(Duration::from_secs(30), "the SMS at the SMSC", || {
            let lines = smsc.messages_to(msisdn);
            Ok((!lines.is_empty()).then_some(lines))
        })
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.log_tail(60)));
        let expected = format!("Voice message from {CALLER_NUMBER} (");
        assert!(lines[0].contains(&expected), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!("Call 98{message:06}1 to listen.")),
            "{}",
            lines[0]
        );
    }
    wait_for(Duration::from_secs(20), "delivery receipts recorded", || {
        let msgs = list_messages(&server)?;
        // `sms_state` of every delivery, from the JSON listing.
        let states: Vec<Option<String>> = msgs
            .iter()
            .flat_map(|m| m.json["deliveries"].as_array().cloned().unwrap_or_default())
            .map(|d| d["sms_state"].as_str().map(str::to_owned))
            .collect();
        Ok((states.len() == 2 && states.iter().all(|s| s.as_deref() == Some("delivered"))).then_some(()))
    })
    .expect("sms_state delivered");

    // A clean restart must not send anything again.
    server.restart().expect("restart");
    std::thread::sleep(Duration::from_secs(3));
    for msisdn in ["4915112345678", "4915112345679"] {
        assert_eq!(smsc.messages_to(msisdn).len(), 1, "exactly one SMS to {msisdn}");
    }
}

/// SIGKILL while two messages record: one to a subscriber that is not registered (its
/// notice waits for the message to end), one to a PSTN number whose phone rings. After the
/// restart recovery closes both, and each target gets its SMS, once, also across a further
/// restart.
#[test]
fn a_message_cut_off_by_a_crash_is_announced_after_the_restart_once() {
    let smsc_port = free_port();
    let trunk = TargetTrunk::new("pstn", r"49\d{8}");
    let extra = format!(
        "[smsc]\nmode = \"external\"\naddress = \"127.0.0.1:{smsc_port}\"\n\n[calls]\nring_timeout_secs = 60\n"
    );
    let mut server = start_ivm_server(std::slice::from_ref(&trunk), &extra, &[]).expect("start ivm-sipd");
    server
        .admin_ok(&[
            "subscriber",
            "add",
            "1236",
            "--password",
            "pw",
            "--msisdn",
            "+4915112345670",
        ])
        .expect("subscriber add");
    let smsc = Smsc::start(smsc_port, server.dir());
    let ringing = Target::start(
        "ivm_target_noanswer.xml",
        trunk.port,
        Law::Pcmu,
        Duration::from_secs(70),
    )
    .expect("start the ringing PSTN phone");
    // Two callers speaking for 20 s, far longer than the test waits.
    let callers = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[["5551236", CALLER_NUMBER], ["5554930123456", CALLER_NUMBER]])
        .calls(2)
        .rate(10)
        .key("audio", format!("{},5,0", audio::sweep_4s_path().display()))
        .args(&["-l", "2", "-d", "20000"])
        .spawn(server.addr)
        .expect("start callers");
    wait_for(
        Duration::from_secs(15),
        "both recording, the PSTN phone ringing",
        || {
            let conn = server.db()?;
            let recording: i64 =
                conn.query_row("SELECT count(*) FROM messages WHERE state = 'recording'", [], |r| {
                    r.get(0)
                })?;
            let states: Vec<String> = conn
                .prepare("SELECT state FROM deliveries ORDER BY target")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok((recording == 2 && states == ["unanswered", "alerting"]).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.log_tail(60)));
    std::thread::sleep(Duration::from_secs(1));
    assert!(smsc.messages_to("4915112345670").is_empty(), "no SMS while recording");

    let pid = server.pid().expect("pid");
    assert!(process::signal(pid, libc::SIGKILL), "SIGKILL ivm-sipd");
    wait_for(Duration::from_secs(5), "ivm-sipd to die", || {
        Ok((!server.is_running()).then_some(()))
    })
    .expect("killed");
    drop(callers);
    drop(ringing);
    server.start_again().expect("restart ivm-sipd");

    let msgs = list_messages(&server).expect("messages list");
    for (to, target) in [("4915112345670", "1236"), ("4930123456", "4930123456")] {
        let number = msgs
            .iter()
            .find(|m| m.delivery(target).is_some())
            .map(|m| m.retrieval_number.clone())
            .unwrap_or_else(|| panic!("no message to {target}: {msgs:?}"));
        let lines = wait_for(Duration::from_secs(30), "the SMS at the SMSC", || {
            let lines = smsc.messages_to(to);
            Ok((!lines.is_empty()).then_some(lines))
        })
        .unwrap_or_else(|e| panic!("SMS to {to}: {e}\nserver log:\n{}", server.log_tail(60)));
        assert!(
            lines[0].contains(&format!("Voice message from {CALLER_NUMBER} (")),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains(&format!("Call {number} to listen.")), "{}", lines[0]);
    }
    let msgs = list_messages(&server).expect("messages list");
    for m in &msgs {
        assert_eq!(m.state, "complete", "message {} after recovery", m.id);
        for d in &m.deliveries {
            assert_eq!(d.state, "notified", "message {} delivery {}", m.id, d.target);
        }
    }

    // Neither a clean restart nor another crash sends anything again.
    server.restart().expect("restart");
    let pid = server.pid().expect("pid");
    assert!(process::signal(pid, libc::SIGKILL), "SIGKILL ivm-sipd");
    wait_for(Duration::from_secs(5), "ivm-sipd to die", || {
        Ok((!server.is_running()).then_some(()))
    })
    .expect("killed");
    server.start_again().expect("restart ivm-sipd");
    std::thread::sleep(Duration::from_secs(3));
    for to in ["4915112345670", "4930123456"] {
        assert_eq!(smsc.messages_to(to).len(), 1, "exactly one SMS to {to}");
    }
}
