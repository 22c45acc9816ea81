//! End-to-end test harness for `ivm-sipd`.
//!
//! The integration tests in `tests/tests/*.rs` start the real release binary
//! (`target/release/ivm-sipd`, or `$IVM_SIPD_BIN`) on a free loopback port
//! with a throw-away config and data directory, and talk to it the way a
//! user would: raw SIP over UDP/TCP, SIPp scenarios from `sipp-scenarios/`,
//! the admin CLI, and the SQLite store (read-only).
//!
//! * [`paths`]: where the server binary, the scenarios and the test data are.
//! * [`ports`]: free loopback ports (UDP and TCP at once).
//! * [`server`]: [`Server`] starts, restarts and stops an `ivm-sipd`, runs its
//!   admin subcommands and reads its database.
//! * [`sip`]: building requests, raw UDP/TCP exchanges, parsing responses,
//!   Digest computation.
//! * [`sipp`]: running a SIPp scenario and collecting its verdict.
//! * [`process`]: running a child process with a time limit.
//! * [`rtp`]: a UDP port that records the RTP sent to it (a target's ear).
//! * [`audio`]: the test audio files, G.711, WAV reading.
//! * [`ivm`]: the IVM call rig (trunks, SIPp targets and callers, the
//!   `messages`/`cdr` admin commands).
//! * [`baresip`]: a real phone (baresip) driven over its control socket.
//! * [`kamailio`]: a real Kamailio running `deploy/kamailio/ivm.cfg` in front of the server.
//! * [`linphone`]: a second real phone (linphonec) driven at its prompt, in a network
//!   namespace of its own.
//! * [`phone`]: a scriptable SIP phone over UDP (register, call, INFO and
//!   RFC 4733 keys, answers INVITEs by plan, records what it receives).
//! * [`notify`]: delivery rows, subscriber rules, prompts and locating the
//!   message audio in what a phone heard (notification/retrieval tests).
//!
//! Nothing here builds the server: run `cargo build --release -p ivm-sipd`
//! first (`./test.sh` does).

#[path = "harness/audio.rs"]
pub mod audio;
#[path = "harness/baresip.rs"]
pub mod baresip;
#[path = "harness/ivm.rs"]
pub mod ivm;
#[path = "harness/kamailio.rs"]
pub mod kamailio;
#[path = "harness/linphone.rs"]
pub mod linphone;
#[path = "harness/notify.rs"]
pub mod notify;
#[path = "harness/paths.rs"]
pub mod paths;
#[path = "harness/phone.rs"]
pub mod phone;
#[path = "harness/ports.rs"]
pub mod ports;
#[path = "harness/process.rs"]
pub mod process;
#[path = "harness/rtp.rs"]
pub mod rtp;
#[path = "harness/server.rs"]
pub mod server;
#[path = "harness/sip.rs"]
pub mod sip;
#[path = "harness/sipp.rs"]
pub mod sipp;

pub use ports::{free_port, free_udp_port_block};
pub use server::{Registration, Server};
pub use sip::{SipResponse, UdpClient};
pub use sipp::{Sipp, SippOutcome, SippRun, sipp};

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Ok(Some(v))` or `timeout`
/// elapses; returns the last `Ok(None)`/error as an error on timeout.
///
/// For facts the server may make true a little after it answered (e.g. a
/// database row written right after the 200 OK went out).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = check();
        match last {
            Ok(Some(v)) => return Ok(v),
            Ok(None) if Instant::now() >= deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}")
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("timed out after {timeout:?} waiting for {what}")));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Seconds since the Unix epoch, as the server stores `expires_at`.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
