//! Helpers shared by the integration tests: a built-in SMSC on a free loopback port, a client
//! config with fast reconnects, and bounded waits on outbox statuses.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ivm_smsc::server::{self, ServerConfig, ServerHandle};
use ivm_smsc::{SmsClient, SmsRequest, SmsStatus, SmscConfig};
use tokio::net::TcpListener;

/// Starts a built-in SMSC on 127.0.0.1 (port 0 = any free port).
pub async fn start_server(port: u16, cfg: ServerConfig) -> ServerHandle {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind SMSC port");
    server::serve(listener, cfg).await.expect("serve")
}

/// Server settings for tests: short receipt delay, quiet.
pub fn server_cfg() -> ServerConfig {
    ServerConfig {
        receipt_delay: Duration::from_millis(20),
        log_messages: false,
        ..ServerConfig::default()
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Client settings for `addr` with quick reconnects.
pub fn client_cfg(addr: SocketAddr) -> SmscConfig {
    SmscConfig {
        address: addr.to_string(),
        system_id: "ivmtest".into(),
        password: "secret".into(),
        reconnect_min_ms: 50,
        reconnect_max_ms: 300,
        ..SmscConfig::default()
    }
}

/// A request with key `key`.
pub fn req(key: &str, to: &str, text: &str) -> SmsRequest {
    SmsRequest {
        dedupe_key: key.into(),
        to: to.into(),
        text: text.into(),
        reference: Some(format!("ref:{key}")),
    }
}

/// Polls until every id satisfies `done`, or panics after `timeout`.
pub async fn wait_all(client: &SmsClient, ids: &[i64], timeout: Duration, done: impl Fn(&SmsStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut statuses = Vec::new();
        for id in ids {
            statuses.push(client.status(*id).await.expect("status"));
        }
        if statuses.iter().all(&done) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; statuses: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn delivered(s: &SmsStatus) -> bool {
    *s == SmsStatus::Delivered
}

pub fn accepted(s: &SmsStatus) -> bool {
    matches!(s, SmsStatus::Submitted { .. } | SmsStatus::Delivered)
}

/// The outbox database path inside `dir`.
pub fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("ivm.db")
}

/// Counts how often each text reached the SMSC.
pub fn text_counts(server: &ServerHandle) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for (_, text) in server.texts() {
        *m.entry(text).or_default() += 1;
    }
    m
}
