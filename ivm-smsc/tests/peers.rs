//! Interop with third-party SMPP implementations over real TCP on 127.0.0.1:
//! - our client against a node-smpp SMSC (`tests/smsc/node_smsc.js`, npm `smpp`);
//! - smpplib (PyPI) bound to our built-in SMSC (`tests/peers/smpplib_peer.py`).
//!
//! Install the peers with `ivm-smsc/tests/install-peers.sh`. A missing peer fails the test
//! with that instruction; only when npm / pip themselves are missing is the test skipped, loudly.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ivm_smsc::SmsClient;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const LIMIT: Duration = Duration::from_secs(60);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn works(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `Some(reason)` when the test must be skipped; panics when the peer could be installed.
fn node_peer_missing() -> Option<String> {
    if !works("node", &["--version"]) || !works("npm", &["--version"]) {
        return Some("node/npm are not installed on this machine".into());
    }
    if !crate_dir().join("tests/smsc/node_modules/smpp/package.json").exists() {
        panic!("node-smpp is not installed: run ivm-smsc/tests/install-peers.sh");
    }
    None
}

fn smpplib_missing() -> Option<String> {
    if !works("python3", &["--version"]) || !works("python3", &["-m", "pip", "--version"]) {
        return Some("python3/pip are not installed on this machine".into());
    }
    if !works("python3", &["-c", "import smpplib"]) {
        panic!("smpplib is not installed: run ivm-smsc/tests/install-peers.sh");
    }
    None
}

fn skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<Value> {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .ok()?
            .ok()??;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            return Some(v);
        }
    }
}

fn spawn(mut cmd: Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn peer");
    let stdout = child.stdout.take().expect("stdout");
    (child, BufReader::new(stdout).lines())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_smsc_gets_our_submits_and_its_receipts_mark_delivered() {
    if let Some(why) = node_peer_missing() {
        return skip("node-smpp interop", &why);
    }
    tokio::time::timeout(LIMIT, async {
        let mut cmd = Command::new("node");
        cmd.arg("node_smsc.js")
            .arg("0")
            .current_dir(crate_dir().join("tests/smsc"));
        let (mut child, mut lines) = spawn(cmd);
        let first = next_json(&mut lines).await.expect("node SMSC did not start");
        let port = first["listening"].as_u64().expect("listening port") as u16;

        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let client = SmsClient::start(client_cfg(addr), db(dir.path())).await.expect("start");
        let short = "IVM: new voice message from 4930123, dial 981234561 [€]";
        let long: String = (0..200).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
        let a = client
            .enqueue(req("node:a", "+4915112345678", short))
            .await
            .expect("enqueue");
        let b = client
            .enqueue(req("node:b", "+4915112345679", &long))
            .await
            .expect("enqueue");
        // node-smpp gives hex ids and writes decimal ids in its receipts.
        wait_all(&client, &[a, b], Duration::from_secs(15), delivered).await;

        let mut submits = Vec::new();
        while submits.len() < 3 {
            let v = next_json(&mut lines).await.expect("node SMSC output");
            if v["event"] == "submit" {
                submits.push(v);
            }
        }
        let s = submits
            .iter()
            .find(|v| v["destination_addr"] == "4915112345678")
            .expect("short message");
        assert_eq!(s["text"], short);
        assert_eq!(s["dest_addr_ton"], 1);
        assert_eq!(s["dest_addr_npi"], 1);
        assert_eq!(s["source_addr"], "IVM");
        assert_eq!(s["source_addr_ton"], 5);
        assert_eq!(s["data_coding"], 0);
        assert_eq!(s["registered_delivery"], 1);
        let mut parts: Vec<&Value> = submits
            .iter()
            .filter(|v| v["destination_addr"] == "4915112345679")
            .collect();
        assert_eq!(parts.len(), 2);
        parts.sort_by_key(|v| v["udh"][0][4].as_u64());
        assert!(
            parts
                .iter()
                .all(|p| p["esm_class"].as_u64().is_some_and(|e| e & 0x40 != 0))
        );
        assert_eq!(
            parts[0]["udh"][0][3], parts[1]["udh"][0][3],
            "same concatenation reference"
        );
        let joined: String = parts.iter().map(|p| p["text"].as_str().unwrap_or_default()).collect();
        assert_eq!(joined, long);

        client.shutdown().await;
        let _ = child.kill().await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_binds_to_the_builtin_smsc_and_sees_our_messages() {
    if let Some(why) = smpplib_missing() {
        return skip("smpplib interop", &why);
    }
    tokio::time::timeout(LIMIT, async {
        let server = start_server(0, server_cfg()).await;
        let port = server.local_addr().port().to_string();
        let mut cmd = Command::new("python3");
        cmd.arg(crate_dir().join("tests/peers/smpplib_peer.py"))
            .args(["127.0.0.1", &port, "--expect", "3", "--timeout", "25"])
            .args(["--submit-to", "4915550001", "--submit-text", "hello from smpplib"]);
        let (mut child, mut lines) = spawn(cmd);
        let mut out = Vec::new();
        loop {
            let v = next_json(&mut lines).await.expect("smpplib peer did not get ready");
            let ready = v["kind"] == "ready";
            out.push(v);
            if ready {
                break;
            }
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let client = SmsClient::start(client_cfg(server.local_addr()), db(dir.path()))
            .await
            .expect("start");
        let gsm = "Voice message from 1001 {urgent} ~ dial 981234561";
        let ucs2 = "Голосовое сообщение 📞";
        let a = client.enqueue(req("py:a", "+4917000001", gsm)).await.expect("enqueue");
        let b = client.enqueue(req("py:b", "4917000002", ucs2)).await.expect("enqueue");
        wait_all(&client, &[a, b], Duration::from_secs(15), delivered).await;

        while let Some(v) = next_json(&mut lines).await {
            out.push(v);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("exit")
            .expect("wait");
        assert!(status.success(), "smpplib peer failed: {out:?}");

        let message = |to: &str| {
            out.iter()
                .find(|v| v["kind"] == "message" && v["destination"] == to)
                .cloned()
        };
        let m = message("4917000001").unwrap_or_else(|| panic!("GSM message not seen: {out:?}"));
        assert_eq!(
            (m["text"].as_str(), m["source"].as_str(), m["data_coding"].as_u64()),
            (Some(gsm), Some("IVM"), Some(0))
        );
        let m = message("4917000002").unwrap_or_else(|| panic!("UCS-2 message not seen: {out:?}"));
        assert_eq!((m["text"].as_str(), m["data_coding"].as_u64()), (Some(ucs2), Some(8)));

        // smpplib's own submit got an id and a receipt naming that id.
        let sent = out.iter().find(|v| v["kind"] == "submitted").expect("submit_sm_resp");
        let receipt = out.iter().find(|v| v["kind"] == "receipt").expect("receipt");
        assert_eq!(receipt["esm_class"], 4);
        assert_eq!(receipt["receipted_message_id"], sent["message_id"]);
        let text = receipt["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!("id:{} ", sent["message_id"].as_str().unwrap_or_default())),
            "{text}"
        );
        assert!(text.contains("stat:DELIVRD err:000"), "{text}");
        assert!(
            server
                .messages()
                .iter()
                .any(|m| m.system_id == "pyesme" && m.text == "hello from smpplib")
        );

        client.shutdown().await;
        server.shutdown().await;
    })
    .await
    .expect("test took too long");
}
