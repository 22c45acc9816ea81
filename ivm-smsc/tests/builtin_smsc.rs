//! The SMS client against the built-in SMSC over real TCP on 127.0.0.1: receipts, the send
//! window, outages, restarts with an unsent outbox, dedupe, failures, junk PDUs.

mod common;

use std::time::Duration;

use common::*;
use ivm_smsc::server::{IdFormat, ReceiptIdFormat, ServerConfig};
use ivm_smsc::{Outbox, SmsClient, SmsStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_and_receipts_mark_delivered() {
    bounded(async {
        // Hex ids in submit_sm_resp, decimal ids in receipts: the client must still match them.
        let cfg = ServerConfig {
            message_id_format: IdFormat::Hex,
            receipt_id_format: ReceiptIdFormat::Decimal,
            ..server_cfg()
        };
        let server = start_server(0, cfg).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(server.local_addr()), db(dir.path()))
            .await
            .expect("start");
        let mut events = client.subscribe();
        let long: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let texts = [
            "New voice message from 1001: dial 981234561 [€5]".to_string(),
            long,
            "Новое сообщение 😀".repeat(6),
        ];
        let mut ids = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            ids.push(
                client
                    .enqueue(req(&format!("notify:{i}"), "+491701234567", t))
                    .await
                    .expect("enqueue"),
            );
        }
        wait_all(&client, &ids, Duration::from_secs(10), delivered).await;

        let got = server.texts();
        for t in &texts {
            assert!(
                got.iter().any(|(to, text)| to == "491701234567" && text == t),
                "{t:?} not in {got:?}"
            );
        }
        let msgs = server.messages();
        assert_eq!(msgs.len(), 1 + 2 + 2, "one GSM part, two GSM parts, two UCS-2 parts");
        assert!(
            msgs.iter()
                .all(|m| m.destination_ton == 1 && m.source == "IVM" && m.source_ton == 5)
        );
        assert_eq!(msgs.iter().filter(|m| m.data_coding == 8).count(), 2);
        assert!(
            msgs.iter()
                .filter(|m| m.concat.is_some())
                .all(|m| m.esm_class & 0x40 != 0)
        );

        // Events: Submitted then Delivered for each, with the caller's reference.
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("event")
                .expect("recv");
            seen.push(ev);
        }
        for (i, id) in ids.iter().enumerate() {
            let mine: Vec<_> = seen.iter().filter(|e| e.id == *id).collect();
            assert_eq!(mine.len(), 2, "{seen:?}");
            assert!(matches!(mine[0].status, SmsStatus::Submitted { .. }));
            assert_eq!(mine[1].status, SmsStatus::Delivered);
            assert_eq!(mine[1].reference.as_deref(), Some(format!("ref:notify:{i}").as_str()));
        }
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_window_unanswered() {
    bounded(async {
        let cfg = ServerConfig {
            submit_resp_delay: Duration::from_millis(40),
            ..server_cfg()
        };
        let server = start_server(0, cfg).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ccfg = ivm_smsc::SmscConfig {
            window: 3,
            ..client_cfg(server.local_addr())
        };
        let client = SmsClient::start(ccfg, db(dir.path())).await.expect("start");
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(
                client
                    .enqueue(req(&format!("w:{i}"), "5550100", &format!("window {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        wait_all(&client, &ids, Duration::from_secs(20), accepted).await;
        let stats = server.stats();
        assert_eq!(stats.submits, 30);
        assert_eq!(
            stats.max_outstanding_submits, 3,
            "the window is 3 and the client keeps it full: {stats:?}"
        );
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_sent_exactly_once() {
    const N: usize = 5000;
    bounded(async {
        let cfg = ServerConfig {
            receipt_delay: Duration::ZERO,
            ..server_cfg()
        };
        let server = start_server(0, cfg).await;
        let dir = tempfile::tempdir().expect("tempdir");
        // A keepalive far beyond the deadline: a stalled connection task (rusmppc's lost
        // wake-up, see client::kick) is not rescued by the next enquire_link, so the deadline
        // catches it.
        let ccfg = ivm_smsc::SmscConfig {
            enquire_link_secs: 600,
            ..client_cfg(server.local_addr())
        };
        let client = SmsClient::start(ccfg, db(dir.path())).await.expect("start");
        let mut joins = tokio::task::JoinSet::new();
        for i in 0..N {
            let c = client.clone();
            joins.spawn(async move {
                c.enqueue(req(&format!("burst:{i}"), "5550100", &format!("burst {i}")))
                    .await
            });
        }
        while let Some(r) = joins.join_next().await {
            r.expect("join").expect("enqueue");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
        loop {
            let c = client.counts().await.expect("counts");
            if c.delivered == N as u64 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not all delivered: {c:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(server.stats().submits, N as u64, "each exactly once");
        assert_eq!(text_counts(&server).len(), N);
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_submits() {
    bounded(async {
        let server = start_server(0, server_cfg()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ccfg = ivm_smsc::SmscConfig {
            rate_per_sec: 50,
            ..client_cfg(server.local_addr())
        };
        let client = SmsClient::start(ccfg, db(dir.path())).await.expect("start");
        // Let the session bind first so only sending is timed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = std::time::Instant::now();
        let mut ids = Vec::new();
        for i in 0..26 {
            ids.push(
                client
                    .enqueue(req(&format!("r:{i}"), "5550100", "rate"))
                    .await
                    .expect("enqueue"),
            );
        }
        wait_all(&client, &ids, Duration::from_secs(20), accepted).await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(480),
            "26 submits at 50/s need at least 0.5 s, took {took:?}"
        );
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_down_at_start_then_up_sends_the_queue() {
    bounded(async {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                client
                    .enqueue(req(&format!("d:{i}"), "5550100", &format!("queued {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        for id in &ids {
            assert_eq!(client.status(*id).await.expect("status"), SmsStatus::Queued);
        }
        let server = start_server(port, server_cfg()).await;
        wait_all(&client, &ids, Duration::from_secs(10), delivered).await;
        let counts = text_counts(&server);
        assert_eq!(counts.len(), 5);
        assert!(counts.values().all(|n| *n == 1), "each exactly once: {counts:?}");
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_outage_loses_no_notification() {
    // IVM_SMSC_OUTAGE_SECS=30 runs the full 30 s outage of the acceptance check.
    let outage = std::env::var("IVM_SMSC_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2u64);
    tokio::time::timeout(LIMIT + Duration::from_secs(outage), async {
        let first = start_server(0, server_cfg()).await;
        let port = first.local_addr().port();
        let dir = tempfile::tempdir().expect("tempdir");
        let ccfg = ivm_smsc::SmscConfig {
            reconnect_max_ms: 1000,
            ..client_cfg(first.local_addr())
        };
        let client = SmsClient::start(ccfg, db(dir.path())).await.expect("start");
        let mut before = Vec::new();
        for i in 0..10 {
            before.push(
                client
                    .enqueue(req(&format!("b:{i}"), "5550100", &format!("before {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        wait_all(&client, &before, Duration::from_secs(10), delivered).await;
        first.shutdown().await;

        // While the SMSC is down, notifications keep coming.
        let mut during = Vec::new();
        for i in 0..10 {
            during.push(
                client
                    .enqueue(req(&format!("o:{i}"), "5550100", &format!("during {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        tokio::time::sleep(Duration::from_secs(outage)).await;
        for id in &during {
            assert_eq!(client.status(*id).await.expect("status"), SmsStatus::Queued);
        }
        let second = start_server(port, server_cfg()).await;
        wait_all(&client, &during, Duration::from_secs(15), delivered).await;
        let counts = text_counts(&second);
        let expected: Vec<String> = (0..10).map(|i| format!("during {i}")).collect();
        assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), {
            let mut e = expected.clone();
            e.sort();
            e
        });
        assert!(
            counts.values().all(|n| *n == 1),
            "each exactly once after the outage: {counts:?}"
        );
        client.shutdown().await;
        second.shutdown().await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_sends_an_unsent_outbox_exactly_once() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        // First client: the SMSC is unreachable; it is shut down with everything queued, and a
        // second one is only dropped (no shutdown).
        let a = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(
                a.enqueue(req(&format!("u:{i}"), "5550100", &format!("unsent {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        a.shutdown().await;
        let b = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        for i in 20..25 {
            ids.push(
                b.enqueue(req(&format!("u:{i}"), "5550100", &format!("unsent {i}")))
                    .await
                    .expect("enqueue"),
            );
        }
        drop(b);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let server = start_server(port, server_cfg()).await;
        let c = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        // Re-enqueueing the same keys (an application retrying) sends nothing new.
        let again = c.enqueue(req("u:3", "5550100", "unsent 3")).await.expect("enqueue");
        assert_eq!(again, ids[3]);
        wait_all(&c, &ids, Duration::from_secs(10), delivered).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = text_counts(&server);
        assert_eq!(counts.len(), 25, "{counts:?}");
        assert!(counts.values().all(|n| *n == 1), "each exactly once: {counts:?}");
        assert_eq!(server.stats().submits, 25);
        c.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_process_resends_nothing_twice() {
    bounded(async {
        let bin = env!("CARGO_BIN_EXE_ivm-smsc");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db(dir.path());
        let port = free_port();
        let smsc = format!("127.0.0.1:{port}");
        // The sender enqueues 20 notifications while the SMSC is unreachable, then is killed.
        let mut child = tokio::process::Command::new(bin)
            .args([
                "send",
                "--smsc",
                &smsc,
                "--to",
                "+15550100",
                "--text",
                "kill test",
                "--count",
                "20",
            ])
            .args(["--key", "kill", "--outbox"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ivm-smsc send");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let queued = Outbox::open(&path)
                .ok()
                .and_then(|o| o.counts().ok())
                .map(|c| c.queued)
                .unwrap_or(0);
            if queued == 20 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sender never queued 20 (has {queued})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.start_kill().expect("kill");
        let _ = child.wait().await;

        let server = start_server(port, server_cfg()).await;
        let status = tokio::process::Command::new(bin)
            .args(["drain", "--smsc", &smsc, "--wait-receipt-secs", "5", "--outbox"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .expect("run ivm-smsc drain");
        assert!(
            status.status.success(),
            "drain failed: {}",
            String::from_utf8_lossy(&status.stdout)
        );
        let out = String::from_utf8_lossy(&status.stdout);
        assert!(out.contains("\"delivered\":20"), "{out}");
        assert_eq!(server.stats().submits, 20, "each notification exactly once");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_receipt_marks_failed_and_refusal_is_final() {
    bounded(async {
        let cfg = ServerConfig {
            undeliverable_prefix: Some("999".into()),
            ..server_cfg()
        };
        let server = start_server(0, cfg).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(server.local_addr()), db(dir.path()))
            .await
            .expect("start");
        let bad = client
            .enqueue(req("bad", "99912345", "nobody home"))
            .await
            .expect("enqueue");
        let good = client.enqueue(req("good", "12345", "hello")).await.expect("enqueue");
        wait_all(&client, &[bad, good], Duration::from_secs(10), |s| {
            !matches!(s, SmsStatus::Queued | SmsStatus::Submitted { .. })
        })
        .await;
        assert_eq!(
            client.status(bad).await.expect("status"),
            SmsStatus::Failed("UNDELIV err:001".into())
        );
        assert_eq!(client.status(good).await.expect("status"), SmsStatus::Delivered);
        assert!(matches!(
            client.enqueue(req("x", "not a number", "t")).await,
            Err(ivm_smsc::SmsError::InvalidRequest(_))
        ));
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_and_retried() {
    bounded(async {
        let cfg = ServerConfig {
            system_id: Some("ivmtest".into()),
            password: Some("right".into()),
            ..server_cfg()
        };
        let server = start_server(0, cfg).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(server.local_addr()), db(dir.path()))
            .await
            .expect("start");
        let id = client.enqueue(req("p", "12345", "hello")).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(client.status(id).await.expect("status"), SmsStatus::Queued);
        assert_eq!(server.stats().binds, 0);
        client.shutdown().await;
        let ccfg = ivm_smsc::SmscConfig {
            password: "right".into(),
            ..client_cfg(server.local_addr())
        };
        let client = SmsClient::start(ccfg, db(dir.path())).await.expect("start");
        wait_all(&client, &[id], Duration::from_secs(10), delivered).await;
        client.shutdown().await;
        server.shutdown().await;
    })
    .await;
}

/// Raw PDU helpers for the junk test.
fn pdu(id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(body);
    v
}

async fn read_pdu(s: &mut tokio::net::TcpStream) -> (u32, u32, u32, Vec<u8>) {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.expect("read header");
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0u8; len - 16];
    s.read_exact(&mut body).await.expect("read body");
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    (word(4), word(8), word(12), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_gets_generic_nack_and_the_session_survives() {
    bounded(async {
        let server = start_server(0, server_cfg()).await;
        let mut s = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        // submit_sm before bind: refused with ESME_RINVBNDSTS.
        let mut sm = Vec::new();
        // service_type, src ton/npi/addr, dst ton/npi/addr, esm, pid, priority, schedule,
        // validity, registered_delivery 1, replace, data_coding, default id, length 2, "hi".
        sm.extend_from_slice(b"\0\0\0IVM\0\0\0");
        sm.extend_from_slice(b"123\0\0\0\0\0\0\x01\0\0\0\x02hi");
        s.write_all(&pdu(0x0000_0004, 1, &sm)).await.expect("write");
        let (id, status, seq, _) = read_pdu(&mut s).await;
        assert_eq!((id, status, seq), (0x8000_0004, 0x04, 1));
        // Unknown command id: generic_nack ESME_RINVCMDID with the same sequence number.
        s.write_all(&pdu(0x0000_0F0F, 2, b"junk")).await.expect("write");
        let (id, status, seq, _) = read_pdu(&mut s).await;
        assert_eq!((id, status, seq), (0x8000_0000, 0x03, 2));
        // A bind whose strings are not NUL-terminated: generic_nack, not a crash.
        s.write_all(&pdu(0x0000_0009, 3, b"abc")).await.expect("write");
        let (id, _, seq, _) = read_pdu(&mut s).await;
        assert_eq!((id, seq), (0x8000_0000, 3));
        // The session still works: enquire_link is answered.
        s.write_all(&pdu(0x0000_0015, 4, b"")).await.expect("write");
        let (id, status, seq, _) = read_pdu(&mut s).await;
        assert_eq!((id, status, seq), (0x8000_0015, 0, 4));
        // A command_length of 8 cannot be resynchronised: generic_nack, then the SMSC closes.
        s.write_all(&[0, 0, 0, 8, 0, 0, 0, 0x15]).await.expect("write");
        let (id, status, _, _) = read_pdu(&mut s).await;
        assert_eq!((id, status), (0x8000_0000, 0x02));
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed");
        assert_eq!(n.expect("read"), 0);
        assert!(server.stats().generic_nacks >= 3);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_handle_leaves_the_smsc_running() {
    bounded(async {
        let server = start_server(0, server_cfg()).await;
        let addr = server.local_addr();
        drop(server);
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        let id = client
            .enqueue(req("kept", "12345", "still there"))
            .await
            .expect("enqueue");
        wait_all(&client, &[id], Duration::from_secs(10), delivered).await;
        client.shutdown().await;
    })
    .await;
}
