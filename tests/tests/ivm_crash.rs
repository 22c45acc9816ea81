//! Crash safety of recording (SPEC §5: "A crash loses at most the last
//! group-commit window of audio and never a committed message").
//!
//! 20 trusted callers record at once (SIPp `-l 20 -m 20`, a 12 s message
//! each) to a target that answers; about 3 s after the last call started the
//! server is killed with SIGKILL and started again on the same data
//! directory. Then every message must be listed, `complete`, with no
//! delivery left in progress, and its exported audio must be a prefix of what
//! the caller sent, holding at least every frame sent before the kill minus
//! the commit window (and a little slack for the call set-up).
//!
//! Needs `sipp` on PATH and the release binary.

use std::time::{Duration, Instant};

use ivm_e2e::audio::{self, FRAME_BYTES};
use ivm_e2e::ivm::{
    CALLER_IP, FINAL_DELIVERY_STATES, Law, Target, TargetTrunk, export_wav, list_messages, start_ivm_server,
    wait_messages_settled,
};
use ivm_e2e::{Sipp, process, wait_for};

const CALLS: usize = 20;
/// `[media] commit_interval_ms` of the server under test.
const COMMIT_MS: i64 = 200;
/// Time between the message row being created and the caller's first RTP
/// packet reaching the server (200 OK, ACK, SIPp starting its stream), and
/// packets in flight at the kill; counted against the server's favour.
const SLACK_MS: i64 = 300;

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[test]
fn sigkill_during_20_recordings_loses_at_most_the_commit_window() {
    let trunk = TargetTrunk::new("pstn", r"1\d{3}");
    let server = start_ivm_server(
        std::slice::from_ref(&trunk),
        &format!("[media]\ncommit_interval_ms = {COMMIT_MS}\n"),
        &[],
    )
    .expect("start ivm-sipd");
    let mut server = server;

    // 12 s of distinct audio: the 4 s sweep three times, so no frame repeats
    // within 4 s (the prefix check below compares bytes).
    let sweep = audio::sweep_4s();
    let sent: Vec<u8> = sweep.iter().chain(&sweep).chain(&sweep).copied().collect();
    let audio_path = server.dir().join("message-12s.ul");
    std::fs::write(&audio_path, &sent).expect("write 12 s audio");

    let target = Target::start_calls(
        "ivm_target_answer.xml",
        trunk.port,
        Law::Pcmu,
        Duration::from_secs(30),
        20,
    )
    .expect("start target");
    let rows: Vec<[String; 2]> = (0..CALLS)
        .map(|i| ["5551234".to_string(), format!("80{i:02}")])
        .collect();
    let callers = Sipp::new("ivm_caller.xml")
        .local_ip(CALLER_IP)
        .rows(&rows)
        .calls(u32::try_from(CALLS).expect("calls"))
        .rate(20)
        .args(&["-l", "20", "-d", "13000"])
        .key("audio", format!("{},1,0", audio_path.display()))
        .spawn(server.addr)
        .expect("start callers");

    // All 20 recording, then 3 s more.
    let started = Instant::now();
    wait_for(Duration::from_secs(10), "20 messages recording", || {
        let n: i64 = server
            .db()?
            .query_row("SELECT COUNT(*) FROM messages WHERE state = 'recording'", [], |r| {
                r.get(0)
            })?;
        Ok((n == i64::try_from(CALLS).unwrap_or(0)).then_some(()))
    })
    .expect("all callers connected");
    std::thread::sleep(Duration::from_secs(3));

    let pid = server.pid().expect("server pid");
    let killed_at_ms = unix_now_ms();
    assert!(process::signal(pid, libc::SIGKILL), "SIGKILL {pid}");
    wait_for(Duration::from_secs(5), "ivm-sipd to die", || {
        Ok((!server.is_running()).then_some(()))
    })
    .expect("server killed");
    eprintln!("killed ivm-sipd {:?} after the calls started", started.elapsed());
    drop(callers); // SIPp is killed: its calls cannot finish now
    drop(target);

    // Creation times, read from the store as the crash left it.
    let created: Vec<(i64, i64)> = {
        let conn = server.db().expect("db after the crash");
        let mut stmt = conn
            .prepare("SELECT id, created_at FROM messages ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        created.len(),
        CALLS,
        "messages in the store after the crash: {created:?}"
    );

    server
        .start_again()
        .expect("restart ivm-sipd on the same data directory");
    wait_messages_settled(&server, CALLS, Duration::from_secs(15))
        .expect("after recovery every message is complete and no delivery is left in progress");
    let messages = list_messages(&server).expect("messages list --json");
    assert_eq!(messages.len(), CALLS, "every message listed after the crash");

    let mut problems = Vec::new();
    let mut lengths = Vec::new();
    for m in &messages {
        if m.state != "complete" {
            problems.push(format!("message {} is {:?} after recovery", m.id, m.state));
        }
        for d in &m.deliveries {
            if !FINAL_DELIVERY_STATES.contains(&d.state.as_str()) {
                problems.push(format!("message {} delivery {:?} still {:?}", m.id, d.target, d.state));
            }
        }
        let created_at = created.iter().find(|(id, _)| *id == m.id).map(|(_, c)| *c).unwrap_or(0);
        let sent_before_kill = (killed_at_ms - created_at) / 20;
        let required = (killed_at_ms - created_at - COMMIT_MS - SLACK_MS).max(0) / 20;
        let wav = match export_wav(&server, m.id) {
            Ok(w) => w,
            Err(e) => {
                problems.push(format!("message {}: export failed: {e:#}", m.id));
                continue;
            }
        };
        let frames = wav.samples.len() / FRAME_BYTES;
        lengths.push((frames, sent_before_kill));
        let expected = audio::decode_ulaw(&sent[..wav.samples.len().min(sent.len())]);
        if wav.samples.len() > sent.len() || wav.samples != expected {
            let first = wav.samples.iter().zip(&expected).position(|(a, b)| a != b);
            problems.push(format!(
                "message {}: exported audio ({} samples) is not a prefix of the sent audio (first difference at \
                 sample {first:?}, frame {:?})",
                m.id,
                wav.samples.len(),
                first.map(|i| i / FRAME_BYTES)
            ));
        }
        if i64::try_from(frames).unwrap_or(0) < required {
            problems.push(format!(
                "message {} (sender {}): {frames} frames survived, but about {sent_before_kill} were sent before the \
                 kill: at least {required} (minus the {COMMIT_MS} ms commit window and {SLACK_MS} ms set-up slack) \
                 must survive",
                m.id, m.sender
            ));
        }
        if m.duration_ms != i64::try_from(frames * 20).unwrap_or(-1) {
            problems.push(format!(
                "message {}: listed duration_ms {} but the export holds {} ms",
                m.id,
                m.duration_ms,
                frames * 20
            ));
        }
    }
    eprintln!("(frames kept, frames sent before the kill) per message: {lengths:?}");
    assert!(
        problems.is_empty(),
        "{} problem(s) after SIGKILL and restart:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
