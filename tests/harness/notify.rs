//! What the notification, retrieval and store-and-forward tests share:
//! subscriber rules and PINs through the admin CLI, the `deliveries` and
//! `messages` rows (read-only), the retrieval number, the voice prompts as
//! the server plays them (from `prompts/*.ul`), and finding the message
//! audio inside what a phone heard.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ivm::Law;
use crate::rtp::{RtpSink, StreamReport};
use crate::{Server, Sipp, SippOutcome, audio, paths};

/// `[calls]` for these tests: a 2 s ring timeout and a 2 s caller-ID call.
pub const NOTIFY_CONFIG: &str = "[calls]\nring_timeout_secs = 2\ncallerid_ring_secs = 2\n";

/// `ivm-sipd subscriber add NUMBER --password PW` plus `extra` flags
/// (`--pin 1234`, `--msisdn +49...`).
pub fn add_subscriber(server: &Server, number: &str, password: &str, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["subscriber", "add", number, "--password", password];
    args.extend_from_slice(extra);
    server.admin_ok(&args).map(|_| ())
}

/// `ivm-sipd subscriber rules NUMBER --notify N --store-forward S [--unsolicited-mwi]`.
pub fn set_rules(
    server: &Server,
    number: &str,
    notify: &str,
    store_forward: &str,
    unsolicited: bool,
) -> anyhow::Result<()> {
    let mut args = vec![
        "subscriber",
        "rules",
        number,
        "--notify",
        notify,
        "--store-forward",
        store_forward,
    ];
    if unsolicited {
        args.push("--unsolicited-mwi");
    }
    server.admin_ok(&args).map(|_| ())
}

/// `98` + 6-digit message id + type 1 (SPEC §3).
pub fn retrieval_number(message_id: i64) -> String {
    format!("98{:06}1", message_id.rem_euclid(1_000_000))
}

/// One row of `deliveries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub message_id: i64,
    pub target: String,
    pub state: String,
    pub folder: String,
    pub sip_status: Option<i64>,
    pub notified_at: Option<i64>,
    pub heard_at: Option<i64>,
    pub forwarded_at: Option<i64>,
}

/// Every delivery row, by message id and target.
pub fn deliveries(server: &Server) -> anyhow::Result<Vec<DeliveryRow>> {
    let conn = server.db()?;
    let mut stmt = conn.prepare(
        "SELECT message_id, target, state, folder, sip_status, notified_at, heard_at, forwarded_at
         FROM deliveries ORDER BY message_id, target",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(DeliveryRow {
                message_id: r.get(0)?,
                target: r.get(1)?,
                state: r.get(2)?,
                folder: r.get(3)?,
                sip_status: r.get(4)?,
                notified_at: r.get(5)?,
                heard_at: r.get(6)?,
                forwarded_at: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The delivery of message `id` to `target`.
pub fn delivery(server: &Server, id: i64, target: &str) -> anyhow::Result<Option<DeliveryRow>> {
    Ok(deliveries(server)?
        .into_iter()
        .find(|d| d.message_id == id && d.target == target))
}

/// Waits until the delivery of `id` to `target` satisfies `pred`; the error
/// shows the row as it last was.
pub fn wait_delivery(
    server: &Server,
    id: i64,
    target: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&DeliveryRow) -> bool,
) -> anyhow::Result<DeliveryRow> {
    let mut last = None;
    let got = crate::wait_for(limit, what, || {
        last = delivery(server, id, target)?;
        Ok(last.clone().filter(|d| pred(d)))
    });
    got.with_context(|| format!("delivery of message {id} to {target} is {last:#?}"))
}

/// `(id, sender, state, duration_ms)` of every message.
pub fn messages(server: &Server) -> anyhow::Result<Vec<(i64, String, String, i64)>> {
    let conn = server.db()?;
    let mut stmt = conn.prepare("SELECT id, sender, state, duration_ms FROM messages ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Waits until message `id` exists with `state` (`recording`, `complete`).
pub fn wait_message_state(server: &Server, id: i64, state: &str, limit: Duration) -> anyhow::Result<()> {
    let mut last = Vec::new();
    let got = crate::wait_for(limit, &format!("message {id} {state}"), || {
        last = messages(server)?;
        Ok(last.iter().any(|m| m.0 == id && m.2 == state).then_some(()))
    });
    got.with_context(|| format!("messages (id, sender, state, duration_ms): {last:?}"))
}

/// `prompts/<id>.ul` as the server plays it on a PCMU call: whole 20 ms
/// frames, the last padded with μ-law silence (0xFF).
pub fn prompt(id: &str) -> Vec<u8> {
    let path: PathBuf = paths::repo_root().join("prompts").join(format!("{id}.ul"));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let len = bytes.len().div_ceil(audio::FRAME_BYTES) * audio::FRAME_BYTES;
    bytes.resize(len, 0xFF);
    bytes
}

/// Several prompts one after the other (PCMU).
pub fn prompts(ids: &[&str]) -> Vec<u8> {
    ids.iter().flat_map(|id| prompt(id)).collect()
}

/// The prompt ids that speak `number` digit by digit.
pub fn digit_prompts(number: &str) -> Vec<String> {
    number
        .chars()
        .filter(char::is_ascii_digit)
        .map(|c| format!("digit_{c}"))
        .collect()
}

/// "Message from" + the sender's digits (+ "still being recorded"), PCMU.
pub fn message_intro(sender: &str, live: bool) -> Vec<u8> {
    let mut ids = vec!["message_from".to_string()];
    ids.extend(digit_prompts(sender));
    if live {
        ids.push("still_recording".into());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    prompts(&refs)
}

/// `message` followed by the first 200 ms of the menu prompt: what a
/// listener has heard once the message played to its end and the menu
/// began (the moment to press a menu key).
pub fn then_menu(message: &[u8]) -> Vec<u8> {
    let mut v = message.to_vec();
    v.extend_from_slice(&prompt("menu")[..10 * audio::FRAME_BYTES]);
    v
}

/// Where `needle` first occurs in `hay` as a contiguous run.
pub fn find_run(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many times `needle` occurs in `hay` (non-overlapping).
pub fn count_runs(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut from = 0;
    while let Some(i) = find_run(&hay[from..], needle) {
        n += 1;
        from += i + needle.len();
    }
    n
}

/// Where the μ-law `sent` audio begins in `heard` (payload in `law`): an
/// exact run for PCMU; for PCMA a frame-aligned position where every sample
/// is the μ-law sample converted (within A-law's precision).
pub fn locate(heard: &[u8], sent_ulaw: &[u8], law: Law) -> Option<usize> {
    match law {
        Law::Pcmu => find_run(heard, sent_ulaw),
        Law::Pcma => {
            if heard.len() < sent_ulaw.len() || sent_ulaw.is_empty() {
                return None;
            }
            let linear = audio::decode_ulaw(sent_ulaw);
            (0..heard.len().saturating_sub(sent_ulaw.len()) + 1)
                .step_by(audio::FRAME_BYTES)
                .find(|&at| {
                    heard[at..at + sent_ulaw.len()]
                        .iter()
                        .zip(&linear)
                        .all(|(a, l)| audio::alaw_close_to(*a, *l))
                })
        }
    }
}

/// The payload (in sequence order) of the audio packets of payload type
/// `pt` the sink received so far.
pub fn heard(sink: &RtpSink, pt: u8) -> Vec<u8> {
    StreamReport::of(&sink.packets(), pt).payload
}

/// Waits until the whole `sent` message was heard on `sink` (see
/// [`locate`]); returns where it begins in the payload.
pub fn wait_heard(sink: &RtpSink, sent: &[u8], law: Law, limit: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        let payload = heard(sink, law.payload_type());
        if let Some(at) = locate(&payload, sent, law) {
            return Ok(at);
        }
        if Instant::now() >= deadline {
            let report = StreamReport::of(&sink.packets(), law.payload_type());
            bail!(
                "the message audio ({} bytes) did not arrive whole within {limit:?}: {}",
                sent.len(),
                report.summary()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Registers `number` with SIPp (`register_auth.xml`) from 127.0.0.1:`port`
/// so the server calls that port.
pub fn register_with_sipp(server: &Server, number: &str, password: &str, port: u16) -> anyhow::Result<SippOutcome> {
    let out = Sipp::new("register_auth.xml")
        .users(&[(number, password)])
        .local_port(port)
        .run(server.addr)?;
    if !out.success() {
        bail!("REGISTER {number} failed:\n{}", out.report());
    }
    Ok(out)
}

/// The server log lines containing every one of `needles`.
pub fn log_lines(server: &Server, needles: &[&str]) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits until at least `n` log lines contain every one of `needles`.
pub fn wait_log(server: &Server, needles: &[&str], n: usize, limit: Duration) -> anyhow::Result<Vec<String>> {
    crate::wait_for(limit, &format!("{n} log line(s) with {needles:?}"), || {
        let lines = log_lines(server, needles);
        Ok((lines.len() >= n).then_some(lines))
    })
}

/// The test sweep rotated by `frames` 20 ms frames (a different message).
pub fn rotated_sweep(frames: usize) -> Vec<u8> {
    let sweep = audio::sweep_4s();
    let cut = (frames * audio::FRAME_BYTES) % sweep.len();
    sweep[cut..].iter().chain(&sweep[..cut]).copied().collect()
}

/// A trusted caller (127.0.0.2) dialing `dialed` as `from`, speaking the
/// μ-law file `audio_file` once, hanging up `hold_ms` after the ACK.
pub fn caller_speaking(dialed: &str, from: &str, audio_file: &std::path::Path, hold_ms: u32) -> Sipp {
    Sipp::new("ivm_caller.xml")
        .local_ip(crate::ivm::CALLER_IP)
        .rows(&[[dialed, from]])
        .key("audio", format!("{},1,0", audio_file.display()))
        .args(&["-d", &hold_ms.to_string()])
}

/// How long a caller speaking a [`clip`] stays on the line.
pub const CLIP_HOLD_MS: u32 = 1_700;

/// 60 frames (1.2 s) of the test audio from frame `from`: a short message
/// for tests that are about what happens around it.
pub fn clip(from: usize) -> Vec<u8> {
    rotated_sweep(from)[..60 * audio::FRAME_BYTES].to_vec()
}

/// A trusted caller (127.0.0.2) dialing `dialed` as `from` and speaking
/// `audio` (written into the server's directory), [`CLIP_HOLD_MS`] on the
/// line.
pub fn clip_caller(server: &Server, dialed: &str, from: &str, audio: &[u8]) -> Sipp {
    let path = server.dir().join(format!("clip-{}.ul", crate::sip::unique("")));
    std::fs::write(&path, audio).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    caller_speaking(dialed, from, &path, CLIP_HOLD_MS)
}
