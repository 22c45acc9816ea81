//! The sender's leg: who is calling (trusted trunk or digest-authenticated subscriber), what
//! was dialed (dial plan), the SDP answer (`488` when no codec is common), the message row,
//! `200 OK` at once (retransmitted until the ACK), the beep, then recording — every RTP frame
//! goes once into the fan-out stream and the fragment store — until the sender hangs up or the
//! maximum length is reached. Target legs are started as soon as the call is answered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::codec::SAMPLES_PER_FRAME;
use ivm_media::endpoint::{Inbound, RtpEndpoint};
use ivm_media::fanout::{self, StreamConfig};
use ivm_media::rtp::OutboundStream;
use ivm_media::sdp::{self, SessionVersion};
use ivm_media::tone;
use tokio::sync::mpsc;

use super::playback::Audio;
use super::target_leg::{self, Destination, MessageInfo};
use super::{CODECS, Calls, StoreFrames};
use crate::dial_plan::{Service, Target};
use crate::dialog::{Dialog, DialogEvent, new_tag};
use crate::registrar::auth::AuthOutcome;
use crate::sip::{HeaderName, Method, Request, SipHeaders};
use crate::store::cdrs::Cdr;
use crate::store::messages::{self, NewMessage, unix_now_ms};
use crate::store::subscribers;
use crate::transaction::TsxKey;
use crate::transport::Peer;

/// RTP silence after which the sender is considered gone.
const RTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Audio the sender should hear (from a target that joined with DTMF 1), in the message codec.
pub type ToSender = mpsc::Sender<Bytes>;

/// Runs the sender's leg from INVITE to hang-up.
pub async fn run(calls: Arc<Calls>, key: TsxKey, req: Request, source: Peer) {
    let started_at = unix_now_ms();
    let tag = new_tag();
    let reject = |status: u16, reason: &str| {
        calls.answer(&key, &req, req.response(status, Some(reason), &tag), source);
    };

    // Who is calling.
    let from_user = req
        .header_from()
        .and_then(|f| f.uri.as_sip().and_then(|u| u.user_unescaped()))
        .map(|u| String::from_utf8_lossy(&u).into_owned());
    let caller = if calls.trunks.trusted(source.addr.ip()).is_some() {
        match from_user.clone() {
            Some(u) => u,
            None => return reject(403, "Forbidden (trunk call without a From user)"),
        }
    } else {
        match calls.auth.check(&req, from_user.as_deref()).await {
            Ok(AuthOutcome::Ok(user)) => user,
            Ok(AuthOutcome::Challenge { stale }) => {
                let resp = calls.auth.challenge(&req, stale);
                return calls.answer(&key, &req, resp, source);
            }
            Ok(AuthOutcome::Forbidden) => return reject(403, "Forbidden"),
            Err(e) => {
                tracing::error!(error = %e, "call: store unavailable");
                return reject(500, "Server Internal Error (store unavailable)");
            }
        }
    };

    // What was dialed.
    let Some(dialed) = req.uri.as_sip().and_then(|u| u.user_unescaped()) else {
        return reject(404, "Not Found (no number in the Request-URI)");
    };
    let dialed = String::from_utf8_lossy(&dialed).into_owned();
    let (ptt, targets) = match calls.dial_plan.resolve(&dialed) {
        Ok(Service::Ivm { ptt, targets, .. }) => (ptt, targets),
        Ok(Service::Retrieve { .. } | Service::Mailbox) => {
            return reject(404, "Not Found (message retrieval is not available on this server yet)");
        }
        Err(e) => return reject(e.status(), &e.reason()),
    };
    let mut destinations = Vec::new();
    for t in &targets {
        match resolve_target(&calls, t).await {
            Some(d) => destinations.push(d),
            None => return reject(404, &format!("Not Found (unknown target {})", target_label(t))),
        }
    }

    // Media.
    let offer = match sdp::parse(&req.body) {
        Ok(o) => o,
        Err(e) => return reject(488, &format!("Not Acceptable Here ({e})")),
    };
    let neg = match sdp::negotiate(&offer, &CODECS) {
        Ok(n) => n,
        Err(e) => return reject(e.sip_status(), &format!("Not Acceptable Here ({e})")),
    };
    let endpoint = match calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) {
        Ok(Ok(ep)) => Arc::new(ep),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "call: RTP endpoint failed");
            return reject(503, "Service Unavailable (no RTP port)");
        }
        Err(e) => {
            tracing::error!(error = %e, "call: no RTP port");
            return reject(503, "Service Unavailable (no RTP port)");
        }
    };
    endpoint.set_remote(neg.remote);
    endpoint.set_telephone_event(neg.telephone_event);
    let codec = neg.codec;

    // The message.
    let call_id = String::from_utf8_lossy(req.call_id().unwrap_or_default()).into_owned();
    let new = NewMessage {
        sender: caller.clone(),
        kind: if ptt { "ptt".into() } else { "ivm".into() },
        codec: codec.name().into(),
        call_id: call_id.clone(),
        targets: destinations.iter().map(|d| d.label.clone()).collect(),
    };
    let message_id = match calls.store.run(move |conn| messages::create(conn, &new)).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "call: message not created");
            return reject(500, "Server Internal Error (store unavailable)");
        }
    };

    // Answer at once.
    let session = SessionVersion::new();
    let mut ok = req.response(200, None, &tag);
    ok.headers
        .push(HeaderName::Contact, format!("<sip:ivm@{}>", calls.sip_addr()));
    ok.headers.push(HeaderName::Allow, crate::uas_core::ALLOW);
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = Bytes::from(sdp::answer(endpoint.local_addr(), &neg, &session));
    let Some(mut dialog) = Dialog::as_uas(&req, &tag, source, calls.sip_addr()) else {
        return reject(400, "Bad Request (cannot form a dialog)");
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    calls.dialogs.insert(dialog.id.clone(), events_tx);
    calls.answer(&key, &req, ok.clone(), source);
    tracing::info!(message_id, sender = %caller, dialed = %dialed, targets = destinations.len(), codec = codec.name(), "IVM call answered");
    let answered_at = unix_now_ms();

    // The stream every listener reads, and the targets.
    let cfg = StreamConfig {
        ring_frames: calls.settings.ring_frames,
    };
    let (writer, handle) = fanout::stream(
        message_id,
        codec,
        cfg,
        Some(Arc::new(StoreFrames(calls.fragments.clone()))),
    );
    calls.set_live(message_id, Some(handle.clone()));
    let (to_sender_tx, mut to_sender) = mpsc::channel::<Bytes>(256);
    let info = Arc::new(MessageInfo {
        id: message_id,
        sender: caller.clone(),
        ptt,
    });
    for dest in destinations {
        let (calls, handle, info, to_sender) = (calls.clone(), handle.clone(), info.clone(), to_sender_tx.clone());
        tokio::spawn(async move { target_leg::run(calls, info, Audio::Live(handle), dest, to_sender).await });
    }
    drop(to_sender_tx);

    // Beep, then record.
    let mut out = OutboundStream::new();
    let beep = tone::beep(codec, calls.settings.beep_ms, 1000);
    let mut beep_frames = beep.into_iter();
    let mut beep_tick = tokio::time::interval(Duration::from_millis(20));
    let mut ack_received = false;
    let mut retransmit = calls.settings.t1;
    // Timers live outside the loop: the loop runs once per RTP packet and must not create
    // timers each time.
    let retransmit_timer = tokio::time::sleep(retransmit);
    tokio::pin!(retransmit_timer);
    let ack_deadline = tokio::time::Instant::now() + calls.settings.t1 * 64;
    let record_timer = tokio::time::sleep(calls.settings.max_message);
    tokio::pin!(record_timer);
    let mut liveness = tokio::time::interval(Duration::from_secs(1));
    let mut last_rtp = tokio::time::Instant::now();
    let mut first_ts: Option<u32> = None;
    let mut frames: u32 = 0;
    let mut hangup_by_us = false;
    loop {
        tokio::select! {
            _ = beep_tick.tick(), if beep_frames.len() > 0 => {
                if let Some(frame) = beep_frames.next() {
                    let _ = endpoint.send(&out.next_audio(neg.payload_type, &frame)).await;
                }
            }
            _ = &mut retransmit_timer, if !ack_received => {
                if tokio::time::Instant::now() >= ack_deadline {
                    tracing::info!(message_id, "no ACK for our 200: ending the call");
                    hangup_by_us = true;
                    break;
                }
                calls.core.send_raw(source, Bytes::from(ok.to_bytes())).await;
                retransmit = (retransmit * 2).min(calls.settings.t2);
                retransmit_timer.as_mut().reset(tokio::time::Instant::now() + retransmit);
            }
            inbound = endpoint.recv() => match inbound {
                Ok(Inbound::Audio { codec_pt, ts, payload, .. }) if codec_pt == neg.payload_type => {
                    last_rtp = tokio::time::Instant::now();
                    let base = *first_ts.get_or_insert(ts);
                    let index = ts.wrapping_sub(base) / SAMPLES_PER_FRAME as u32;
                    if index > frames.saturating_add(50 * 60) {
                        continue; // a timestamp jump of over a minute: not our stream
                    }
                    writer.push_at(index, payload.clone());
                    calls.fragments.append(message_id, codec, index, payload);
                    frames = frames.max(index + 1);
                }
                Ok(_) => last_rtp = tokio::time::Instant::now(),
                Err(e) => tracing::debug!(error = %e, "sender RTP receive error"),
            },
            Some(audio) = to_sender.recv() => {
                let _ = endpoint.send(&out.next_audio(neg.payload_type, &audio)).await;
            }
            event = events.recv() => match event {
                Some(DialogEvent::Ack(_)) => ack_received = true,
                Some(DialogEvent::Request { key, request, source }) => {
                    match request.method {
                        Method::Bye => {
                            calls.answer(&key, &request, request.response(200, None, ""), source);
                            break;
                        }
                        Method::Invite | Method::Update => {
                            // Hold, resume or session refresh: keep the media as it is.
                            let mut resp = request.response(200, None, "");
                            resp.headers.push(HeaderName::Contact, format!("<sip:ivm@{}>", calls.sip_addr()));
                            if request.method == Method::Invite || !request.body.is_empty() {
                                resp.headers.push(HeaderName::ContentType, "application/sdp");
                                resp.body = ok.body.clone();
                            }
                            calls.answer(&key, &request, resp, source);
                        }
                        _ => calls.answer(&key, &request, request.response(200, None, ""), source),
                    }
                }
                Some(DialogEvent::Cancelled) | None => {}
            },
            _ = &mut record_timer => {
                tracing::info!(message_id, "maximum message length reached");
                hangup_by_us = true;
                break;
            }
            _ = liveness.tick() => {
                if last_rtp.elapsed() >= RTP_TIMEOUT {
                    tracing::info!(message_id, "no RTP from the sender: ending the call");
                    hangup_by_us = true;
                    break;
                }
            }
        }
    }

    // The message is complete: listeners get the rest, the store flushes the tail.
    writer.finish();
    calls.fragments.finish(message_id);
    calls.set_live(message_id, None);
    calls.dialogs.remove(&dialog.id);
    let duration_ms = i64::from(frames) * i64::from(ivm_media::codec::FRAME_MS);
    if let Err(e) = calls
        .store
        .run(move |conn| messages::complete(conn, message_id, duration_ms))
        .await
    {
        tracing::error!(message_id, error = %e, "message state not saved");
    }
    tracing::info!(message_id, frames, duration_ms, "IVM message recorded");
    if hangup_by_us {
        let bye = dialog.request(Method::Bye);
        let mut rx = calls.core.send_request(bye, source);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
    }
    let callee = dialed;
    calls
        .write_cdr(Cdr {
            message_id: Some(message_id),
            leg: "sender".into(),
            call_id,
            caller,
            callee,
            started_at,
            answered_at: Some(answered_at),
            ended_at: unix_now_ms(),
            outcome: "answered".into(),
            sip_status: Some(200),
        })
        .await;
}

/// Where a dial plan target goes: a subscriber's registered phones, a trunk, or an IP address.
async fn resolve_target(calls: &Calls, t: &Target) -> Option<Destination> {
    let number = match t {
        Target::Ip(ip) => return Some(Destination::ip(*ip)),
        Target::Number(n) | Target::User(n) => n.clone(),
    };
    let lookup = number.clone();
    let is_subscriber = calls
        .store
        .run(move |conn| subscribers::digest_secrets(conn, &lookup))
        .await
        .ok()
        .flatten()
        .is_some();
    if is_subscriber {
        return Some(Destination::subscriber(number));
    }
    if let Target::Number(n) = t
        && let Some(trunk) = calls.trunks.route(n)
    {
        return Some(Destination::trunk(n.clone(), trunk));
    }
    None
}

fn target_label(t: &Target) -> String {
    match t {
        Target::Number(n) | Target::User(n) => n.clone(),
        Target::Ip(ip) => ip.to_string(),
    }
}
