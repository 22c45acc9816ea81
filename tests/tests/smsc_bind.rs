//! The built-in SMSC is not open to anyone on its port (issue 9): it takes binds only with the
//! configured `system_id` and a password — by default one generated at the first start and
//! kept in the data directory (`smsc-password`, owner-only). A wrong password gets
//! `ESME_RINVPASWD`, an unknown `system_id` `ESME_RBINDFAIL` (not "invalid system_id", which
//! would confirm the id to a guesser). The SMPP PDUs are written by hand here (SMPP 3.4 §4.1).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ivm_e2e::Server;

const BIND_TRANSCEIVER: u32 = 0x0000_0009;
const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
const ESME_ROK: u32 = 0x0000_0000;
const ESME_RINVPASWD: u32 = 0x0000_000E;
const ESME_RBINDFAIL: u32 = 0x0000_000D;

/// Binds as a transceiver; the command_status of the response.
fn bind(smsc: SocketAddr, system_id: &str, password: &str) -> u32 {
    let mut body = Vec::new();
    for field in [system_id, password, ""] {
        body.extend_from_slice(field.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&[0x34, 0, 0, 0]); // interface_version 3.4, addr_ton, addr_npi, address_range ""
    let mut pdu = Vec::new();
    pdu.extend_from_slice(&u32::try_from(16 + body.len()).unwrap_or(0).to_be_bytes());
    pdu.extend_from_slice(&BIND_TRANSCEIVER.to_be_bytes());
    pdu.extend_from_slice(&0u32.to_be_bytes());
    pdu.extend_from_slice(&7u32.to_be_bytes());
    pdu.extend_from_slice(&body);
    let mut s = TcpStream::connect(smsc).expect("connect to the built-in SMSC");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(&pdu).expect("send bind");
    let mut header = [0u8; 16];
    s.read_exact(&mut header).expect("bind response");
    let word = |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    assert_eq!(word(4), BIND_TRANSCEIVER_RESP, "a bind_transceiver_resp");
    assert_eq!(word(12), 7, "the same sequence number");
    word(8)
}

/// The built-in SMSC's address from the server's config.
fn smsc_addr(server: &Server) -> SocketAddr {
    let text = std::fs::read_to_string(server.config_path()).expect("config");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    value["smsc"]["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .expect("smsc.listen")
}

#[test]
fn the_builtin_smsc_takes_binds_only_with_its_generated_password() {
    let server = Server::start("").expect("start ivm-sipd");
    let file = server.data_dir().join("smsc-password");
    let password = std::fs::read_to_string(&file).expect("the generated password file");
    let password = password.trim();
    assert_eq!(password.len(), 8, "SMPP 3.4 allows 8 characters: {password:?}");
    let mode = std::fs::metadata(&file).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may read it");
    let smsc = smsc_addr(&server);
    assert_eq!(bind(smsc, "ivm", "ivm"), ESME_RINVPASWD, "the old well-known password");
    assert_eq!(bind(smsc, "ivm", "wrong"), ESME_RINVPASWD);
    assert_eq!(bind(smsc, "someone", password), ESME_RBINDFAIL);
    assert_eq!(bind(smsc, "ivm", password), ESME_ROK, "the right credentials");

    // The same password after a restart.
    let mut server = server;
    server.restart().expect("restart");
    let again = std::fs::read_to_string(&file).expect("password file");
    assert_eq!(again.trim(), password, "kept across restarts");
    assert_eq!(bind(smsc, "ivm", password), ESME_ROK);
}
