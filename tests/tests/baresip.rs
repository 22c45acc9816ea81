//! Real phones: baresip (the Debian package, 1.0.0 on Debian 12) against the real server.
//! baresip gives up on a SHA-256 digest challenge ("Function not implemented") instead of
//! answering the MD5 one after it, so this is what the shipped default must let it do.
//! (`kamailio.rs` has baresip calling, being called and retrieving, behind Kamailio.)
//!
//! Needs `baresip` on PATH (`./test.sh` installs the package); skipped with a message where it
//! is not installed.

use std::time::Duration;

use ivm_e2e::baresip::{self, Baresip, PhoneConfig};
use ivm_e2e::{Server, wait_for};

#[test]
fn baresip_registers_with_the_default_digest_config() {
    if !baresip::available() {
        eprintln!("SKIPPED: baresip is not installed (./test.sh installs the Debian package `baresip`)");
        return;
    }
    let server = Server::start_with_subscribers("", &[("1001", "pw-1001")]).expect("start ivm-sipd");
    let phone = Baresip::start(&PhoneConfig {
        number: "1001",
        password: "pw-1001",
        outbound: server.addr,
        microphone: &[0; 8000],
        auto_answer: false,
    })
    .expect("start baresip");
    let rows = wait_for(Duration::from_secs(15), "baresip's registration", || {
        let rows = server.registrations("1001")?;
        Ok((!rows.is_empty()).then_some(rows))
    })
    .unwrap_or_else(|e| panic!("baresip did not register ({e:#}); it said:\n{}", phone.log()));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contact.starts_with("sip:1001"),
        "the binding is baresip's Contact: {rows:?}"
    );
}
