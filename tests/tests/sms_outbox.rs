//! SMS notifications through ivm-sipd end to end, with the SMSC as a separate process (the
//! `ivm-smsc serve` binary, our built-in SMSC run on its own as a carrier's would be): a missed
//! IVM to a subscriber with an MSISDN is queued as an SMS while the SMSC is down; ivm-sipd is
//! killed with SIGKILL and started again with the unsent outbox; when the SMSC comes up each
//! SMS arrives exactly once, with the sender, the length and the retrieval number, and its
//! delivery receipt is recorded on the delivery. Another restart sends nothing again.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ivm_e2e::ivm::{CALLER_NUMBER, caller, list_messages, start_ivm_server};
use ivm_e2e::{free_port, process, wait_for};

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
