//! The IVM call rig: a server with trunks, SIPp targets that record what
//! they hear, SIPp callers that speak a known file, and readers for what
//! the admin CLI reports (`messages list --json`, `messages export`,
//! `cdr export`).
//!
//! Layout of a test: the callers' SIPp runs on [`CALLER_IP`] (127.0.0.2),
//! which the server trusts as the `callers` trunk (identified by the From
//! user, no digest), so a subscriber on 127.0.0.1 still has to
//! authenticate. Each target is a SIPp UAS on its own 127.0.0.1 port,
//! reached through a trunk whose route regex matches its number; its SDP
//! answer sends the message's RTP to an [`RtpSink`] the test owns.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::audio::{self, Wav};
use crate::ports::{free_port, free_udp_port_block};
use crate::rtp::RtpSink;
use crate::server::Server;
use crate::sipp::{Sipp, SippOutcome, SippRun};

/// The address the callers' SIPp sends from (a trusted trunk).
pub const CALLER_IP: &str = "127.0.0.2";
/// The From user of trusted callers unless a test says otherwise.
pub const CALLER_NUMBER: &str = "7001";
/// How long the caller stays on the line after the ACK: the 4 s file plus
/// half a second.
pub const HOLD_MS: u32 = 4_500;

/// A trunk towards one SIPp target: its name, route regex (the whole
/// dialed target must match) and the 127.0.0.1 port its SIPp listens on.
#[derive(Clone, Debug)]
pub struct TargetTrunk {
    pub name: String,
    pub route: String,
    pub port: u16,
    /// `transport = "tcp"` (else UDP).
    pub tcp: bool,
}

impl TargetTrunk {
    /// A UDP trunk with a fresh free port (free for UDP and TCP).
    pub fn new(name: &str, route: &str) -> TargetTrunk {
        TargetTrunk {
            name: name.to_string(),
            route: route.to_string(),
            port: free_port(),
            tcp: false,
        }
    }

    /// The same over TCP.
    pub fn tcp(name: &str, route: &str) -> TargetTrunk {
        TargetTrunk {
            tcp: true,
            ..TargetTrunk::new(name, route)
        }
    }
}

/// An even-aligned block of `pairs` RTP port pairs nobody else in this test
/// process gets, as the server's `rtp_ports` (so its RTP sockets never take
/// a port handed to SIPp or a sink).
pub fn rtp_port_range(pairs: u16) -> String {
    let base = free_udp_port_block(pairs * 2 + 1);
    let first = if base.is_multiple_of(2) { base } else { base + 1 };
    format!("{first}-{}", first + pairs * 2 - 1)
}

/// The config of an IVM test server: its own RTP range, the callers'
/// trusted trunk (a gateway that asserts its callers' identity, so a caller
/// presenting a subscriber's number is that subscriber), one trunk per
/// target, then `extra` merged over it.
pub fn ivm_config(targets: &[TargetTrunk], rtp_pairs: u16, extra: &str) -> anyhow::Result<String> {
    let mut toml = format!(
        "[media]\nrtp_ports = \"{}\"\n\n[[trunk]]\nname = \"callers\"\naddress = \"{CALLER_IP}:5060\"\ntrusted = [\"{CALLER_IP}/32\"]\nasserts_identity = true\n",
        rtp_port_range(rtp_pairs)
    );
    for t in targets {
        toml.push_str(&format!(
            "\n[[trunk]]\nname = \"{}\"\naddress = \"127.0.0.1:{}\"\ntransport = \"{}\"\nroutes = ['{}']\n",
            t.name,
            t.port,
            if t.tcp { "tcp" } else { "udp" },
            t.route
        ));
    }
    crate::server::merge_toml(&toml, extra)
}

/// Starts a server with [`ivm_config`] (and subscribers, number/password).
pub fn start_ivm_server(targets: &[TargetTrunk], extra: &str, subscribers: &[(&str, &str)]) -> anyhow::Result<Server> {
    let config = ivm_config(targets, 64, extra)?;
    Server::start_with_subscribers(&config, subscribers)
}

/// How a target answers the server's SDP offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    Pcmu,
    Pcma,
}

impl Law {
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }
}

/// A SIPp target running in the background and the RTP sink its SDP
/// answer points at.
pub struct Target {
    pub port: u16,
    pub sink: RtpSink,
    pub law: Law,
    run: SippRun,
}

/// What a target saw once its SIPp exited.
pub struct TargetResult {
    pub sipp: SippOutcome,
    pub sink: RtpSink,
    pub law: Law,
}

impl Target {
    /// Starts `scenario` (a UAS: `ivm_target_*.xml`) on 127.0.0.1:`port`,
    /// answering with `law`; SIPp gives up on a message it waits for after
    /// `recv_timeout` and exits after one call. Returns once SIPp holds
    /// its port.
    pub fn start(scenario: &str, port: u16, law: Law, recv_timeout: Duration) -> anyhow::Result<Target> {
        Target::start_calls(scenario, port, law, recv_timeout, 1)
    }

    /// Like [`Target::start`], listening on TCP (`-t t1`) for a TCP trunk.
    pub fn start_tcp(scenario: &str, port: u16, law: Law, recv_timeout: Duration) -> anyhow::Result<Target> {
        Target::start_with(scenario, port, law, recv_timeout, 1, &[], true)
    }

    /// Like [`Target::start`], for `calls` calls (all streaming to the one
    /// sink, told apart by SSRC).
    pub fn start_calls(
        scenario: &str,
        port: u16,
        law: Law,
        recv_timeout: Duration,
        calls: u32,
    ) -> anyhow::Result<Target> {
        Target::start_with(scenario, port, law, recv_timeout, calls, &[], false)
    }

    /// The general form: `calls` calls, extra `-key NAME VALUE`s, UDP or
    /// TCP.
    pub fn start_with(
        scenario: &str,
        port: u16,
        law: Law,
        recv_timeout: Duration,
        calls: u32,
        keys: &[(&str, &str)],
        tcp: bool,
    ) -> anyhow::Result<Target> {
        let sink = RtpSink::bind()?;
        let mut sipp = Sipp::new(scenario);
        for (k, v) in keys {
            sipp = sipp.key(k, v);
        }
        if tcp {
            sipp = sipp.tcp();
        }
        let run = sipp
            .calls(calls)
            .local_port(port)
            .key("rtp_port", sink.port())
            .key("rtp_ip", "127.0.0.1")
            .key("pt", law.payload_type())
            .key("codec", law.name())
            .args(&["-recv_timeout", &recv_timeout.as_millis().to_string()])
            .timeout(recv_timeout + Duration::from_secs(20))
            // A UAS needs no remote address; SIPp wants one anyway.
            .spawn(std::net::SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))?;
        let mut run = run;
        let deadline = Instant::now() + Duration::from_secs(5);
        let free = |port| {
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            if tcp {
                std::net::TcpListener::bind(addr).is_ok()
            } else {
                UdpSocket::bind(addr).is_ok()
            }
        };
        while free(port) {
            if !run.is_running() {
                bail!("SIPp {scenario} exited at start:\n{}", run.wait()?.report());
            }
            if Instant::now() >= deadline {
                bail!("SIPp {scenario} did not bind UDP 127.0.0.1:{port} within 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Target { port, sink, law, run })
    }

    /// Waits for the SIPp process (bounded by its own timeouts) and lets the
    /// sink settle (no packet for 300 ms).
    pub fn finish(self) -> anyhow::Result<TargetResult> {
        let sipp = self.run.wait()?;
        self.sink.settle(Duration::from_millis(300), Duration::from_secs(5));
        Ok(TargetResult {
            sipp,
            sink: self.sink,
            law: self.law,
        })
    }
}

/// Waits until something holds UDP 127.0.0.1:`port`.
pub fn wait_udp_bound(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
        if Instant::now() >= deadline {
            bail!("nothing bound UDP 127.0.0.1:{port} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A trusted caller (on [`CALLER_IP`]) dialing `dialed` as `from`, speaking
/// `sweep-4s.ul` once and hanging up [`HOLD_MS`] after the ACK.
pub fn caller(dialed: &str, from: &str) -> Sipp {
    Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&[[dialed, from]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", &HOLD_MS.to_string()])
}

/// A subscriber caller on 127.0.0.1 (digest auth), otherwise as [`caller`].
pub fn subscriber_caller(dialed: &str, number: &str, password: &str) -> Sipp {
    Sipp::new("ivm_caller_auth.xml")
        .rows(&[[dialed, number, password]])
        .key("audio", format!("{},1,0", audio::sweep_4s_path().display()))
        .args(&["-d", &HOLD_MS.to_string()])
}

/// One delivery of a message, as `messages list --json` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub target: String,
    pub state: String,
    pub sip_status: Option<u16>,
}

/// One message, as `messages list --json` reports it.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: i64,
    pub sender: String,
    pub state: String,
    pub duration_ms: i64,
    pub retrieval_number: String,
    pub deliveries: Vec<Delivery>,
    pub json: serde_json::Value,
}

impl Message {
    pub fn delivery(&self, target: &str) -> Option<&Delivery> {
        self.deliveries.iter().find(|d| d.target == target)
    }
}

fn parse_message(v: serde_json::Value) -> anyhow::Result<Message> {
    let str_field = |name: &str| -> anyhow::Result<String> {
        match &v[name] {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => bail!("field {name:?} is {other} in {v}"),
        }
    };
    let int_field = |name: &str| -> anyhow::Result<i64> {
        v[name]
            .as_i64()
            .with_context(|| format!("field {name:?} is not an integer in {v}"))
    };
    let deliveries = v["deliveries"]
        .as_array()
        .with_context(|| format!("no deliveries array in {v}"))?
        .iter()
        .map(|d| {
            Ok(Delivery {
                target: d["target"]
                    .as_str()
                    .with_context(|| format!("delivery without target: {d}"))?
                    .to_string(),
                state: d["state"]
                    .as_str()
                    .with_context(|| format!("delivery without state: {d}"))?
                    .to_string(),
                sip_status: d["sip_status"].as_u64().and_then(|s| u16::try_from(s).ok()),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Message {
        id: int_field("id")?,
        sender: str_field("sender")?,
        state: str_field("state")?,
        duration_ms: int_field("duration_ms")?,
        retrieval_number: str_field("retrieval_number")?,
        deliveries,
        json: v,
    })
}

/// `ivm-sipd messages list --json` (one JSON object per line), by id.
pub fn list_messages(server: &Server) -> anyhow::Result<Vec<Message>> {
    let out = server.admin_ok(&["messages", "list", "--json"])?;
    let mut messages = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("`messages list --json` printed a non-JSON line: {line}"))?;
        messages.push(parse_message(v)?);
    }
    messages.sort_by_key(|m| m.id);
    Ok(messages)
}

/// Delivery states that no longer change by themselves (SPEC §2: an
/// `unanswered` delivery becomes `notified` once the target was told).
pub const FINAL_DELIVERY_STATES: [&str; 5] = ["delivered", "rejected", "unanswered", "notified", "heard"];

/// Waits (polling the store read-only) until there are `n` messages, all
/// `complete`, with every delivery in a final state; the error shows the
/// tables as they were.
pub fn wait_messages_settled(server: &Server, n: usize, limit: Duration) -> anyhow::Result<()> {
    let mut last = String::new();
    let got = crate::wait_for(limit, "messages complete and deliveries final", || {
        let conn = server.db()?;
        let mut stmt = conn.prepare("SELECT id, state FROM messages ORDER BY id")?;
        let messages: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt =
            conn.prepare("SELECT message_id, target, state, sip_status FROM deliveries ORDER BY message_id")?;
        let deliveries: Vec<(i64, String, String, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        last = format!("messages {messages:?}\ndeliveries {deliveries:?}");
        let done = messages.len() == n
            && messages.iter().all(|(_, s)| s == "complete")
            && deliveries
                .iter()
                .all(|(_, _, s, _)| FINAL_DELIVERY_STATES.contains(&s.as_str()));
        Ok(done.then_some(()))
    });
    got.with_context(|| format!("the store holds:\n{last}"))
}

/// Asserts that no 20 ms frame of `audio` (G.711 bytes) is in the server's fragment files
/// in clear (they are sealed by default: encryption at rest). Frames of one repeated byte
/// (digital silence) are skipped: they say nothing of what was spoken.
pub fn assert_no_plaintext_audio(server: &Server, audio: &[u8]) {
    let dir = server.data_dir().join("fragments");
    let mut log = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        log.extend(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    assert!(!log.is_empty(), "no fragment files in {}", dir.display());
    for (i, frame) in audio.chunks_exact(160).enumerate() {
        let probe = &frame[40..72];
        if probe.iter().all(|b| *b == probe[0]) {
            continue;
        }
        assert!(
            !log.windows(probe.len()).any(|w| w == probe),
            "frame {i} of the caller's audio is in clear in {}",
            dir.display()
        );
    }
}

/// `ivm-sipd messages export ID --wav FILE` into the server's temp dir.
pub fn export_wav(server: &Server, id: i64) -> anyhow::Result<Wav> {
    let path: PathBuf = server
        .dir()
        .join(format!("message-{id}-{}.wav", crate::sip::unique("")));
    let file = path.to_string_lossy().into_owned();
    server.admin_ok(&["messages", "export", &id.to_string(), "--wav", &file])?;
    audio::read_wav(&path)
}

/// `ivm-sipd cdr export`: the CSV rows keyed by the header's column names.
pub fn cdr_rows(server: &Server) -> anyhow::Result<Vec<HashMap<String, String>>> {
    let out = server.admin_ok(&["cdr", "export"])?;
    let rows = parse_csv(&out);
    let Some((header, body)) = rows.split_first() else {
        bail!("`cdr export` printed nothing (expected at least the header)");
    };
    let expected = [
        "id",
        "message_id",
        "leg",
        "call_id",
        "caller",
        "callee",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_ms",
        "outcome",
        "sip_status",
    ];
    if header != &expected {
        bail!("`cdr export` header is {header:?}, expected {expected:?}\n{out}");
    }
    Ok(body
        .iter()
        .map(|r| header.iter().cloned().zip(r.iter().cloned()).collect())
        .collect())
}

/// RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_with_quotes() {
        let rows = super::parse_csv("a,b,c\n1,\"x,\"\"y\"\"\",\r\n");
        assert_eq!(rows, vec![vec!["a", "b", "c"], vec!["1", "x,\"y\"", ""]]);
    }
}
