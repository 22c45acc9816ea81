//! The sender's leg: who is calling (trusted trunk or digest-authenticated subscriber), what
//! was dialed (dial plan), the SDP answer (`488` when no codec is common), the message row,
//! `200 OK` at once (retransmitted until the ACK), the beep, then recording — every RTP frame
//! goes once into the fan-out stream and the fragment store — until the sender hangs up or the
//! maximum length is reached. Target legs are started as soon as the call is answered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::endpoint::Inbound;
use ivm_media::prompt::{self, Prompt};
use ivm_media::rtp::OutboundStream;
use ivm_media::tone;
use tokio::sync::mpsc;

use super::Calls;
use super::playback::Audio;
use super::recorder::Recorder;
use super::target_leg::{self, MessageInfo};
use super::uas_leg::{self, InDialog};
use crate::services::dial_plan::{Service, Target};
use crate::services::registrar::auth::AuthOutcome;
use crate::stack::invite::SessionEvent;
use crate::stack::invite::server::ServerInvite;
use crate::stack::sip::SipHeaders;
use crate::store::cdrs::Cdr;
use crate::store::messages::{self, NewMessage, unix_now_ms};

/// RTP silence after which the sender is considered gone.
const RTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the sender's leg from INVITE to hang-up.
pub async fn run(calls: Arc<Calls>, invite: ServerInvite) {
    let started_at = unix_now_ms();
    let req = invite.request().clone();
    let source = invite.source();
    let reject = |status: u16, reason: &str| invite.refuse(status, reason);

    // Who is calling.
    let from_user = req
        .header_from()
        .and_then(|f| f.uri.as_sip().and_then(|u| u.user_unescaped()))
        .map(|u| String::from_utf8_lossy(&u).into_owned());
    // A trunk is trusted to place calls; its caller is a subscriber only when the trunk
    // asserts identity (then P-Asserted-Identity, RFC 3325, names it when present).
    let (caller, verified) = if let Some(trunk) = calls.trunks.trusted(source.addr.ip()) {
        let asserted = trunk.asserts_identity.then(|| asserted_user(&req)).flatten();
        match asserted.or_else(|| from_user.clone()) {
            Some(u) => (u, trunk.asserts_identity),
            None => return reject(403, "Forbidden (trunk call without a From user)"),
        }
    } else {
        match calls.auth.check(&req, from_user.as_deref(), &source).await {
            Ok(AuthOutcome::Ok(user)) => (user, true),
            Ok(AuthOutcome::Challenge { stale }) => {
                return invite.respond(calls.auth.challenge(&req, stale));
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
        Ok(service @ (Service::Retrieve { .. } | Service::Mailbox)) => {
            return super::retrieval_leg::run(calls, invite, caller, verified, service).await;
        }
        Err(e) => return reject(e.status(), &e.reason()),
    };
    let mut destinations = Vec::new();
    for t in &targets {
        match target_leg::resolve(&calls, t).await {
            Some(d) => destinations.push(d),
            None => return reject(404, &format!("Not Found (unknown target {})", target_label(t))),
        }
    }

    // Answer at once (our offer in the 200 when the INVITE had none), then the message.
    let mut call = if req.body.is_empty() {
        match uas_leg::answer_delayed_offer(&calls, &invite).await {
            Ok(call) => call,
            Err((0, why)) => return tracing::info!(reason = %why, "delayed-offer call ended before media"),
            Err((status, reason)) => return reject(status, &reason),
        }
    } else {
        let media = match uas_leg::prepare_media(&calls, &req).await {
            Ok(m) => m,
            Err((status, reason)) => return reject(status, &reason),
        };
        match uas_leg::answer(&invite, media) {
            Ok(call) => call,
            Err(e) => return tracing::info!(reason = %e, "call not answered"),
        }
    };
    let codec = call.media.neg.codec;
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
            call.hang_up();
            return;
        }
    };
    tracing::info!(message_id, sender = %caller, dialed = %dialed, targets = destinations.len(), codec = codec.name(), "IVM call answered");
    let answered_at = unix_now_ms();

    // The stream every listener reads, and the targets.
    let mut recorder = Recorder::start(&calls, message_id, codec);
    let (to_sender_tx, mut to_sender) = mpsc::channel::<Bytes>(256);
    let info = Arc::new(MessageInfo {
        id: message_id,
        sender: caller.clone(),
        ptt,
    });
    // A target that will not be rung (busy, do not disturb, offline): the sender is told
    // after the beep, and a second beep says when to speak.
    let unavailable: Vec<String> = destinations
        .iter()
        .filter_map(|d| d.unavailable(&calls).map(|why| format!("{}={}", d.label, why.name())))
        .collect();
    if !unavailable.is_empty() {
        tracing::info!(message_id, targets = ?unavailable, "targets unavailable: the sender is told");
    }
    for dest in destinations {
        let (calls, audio, info, to_sender) = (
            calls.clone(),
            Audio::Live(recorder.handle()),
            info.clone(),
            to_sender_tx.clone(),
        );
        tokio::spawn(async move { target_leg::run(calls, info, audio, dest, to_sender).await });
    }
    drop(to_sender_tx);

    // Beep, then record until the sender hangs up.
    let endpoint = call.media.endpoint.clone();
    let pt = call.media.neg.payload_type;
    let mut out = OutboundStream::new();
    let mut greeting = tone::beep(codec, calls.settings.beep_ms, 1000);
    if !unavailable.is_empty() {
        greeting.extend(prompt::frames(Prompt::Unavailable, codec));
        greeting.extend(tone::beep(codec, calls.settings.beep_ms, 1000));
    }
    let mut beep = greeting.into_iter();
    let mut beep_tick = tokio::time::interval(Duration::from_millis(20));
    // Timers live outside the loop: it runs once per RTP packet.
    let record_timer = tokio::time::sleep(calls.settings.max_message);
    tokio::pin!(record_timer);
    let mut liveness = tokio::time::interval(Duration::from_secs(1));
    let mut last_rtp = tokio::time::Instant::now();
    let mut hangup_by_us = true;
    loop {
        tokio::select! {
            _ = beep_tick.tick(), if beep.len() > 0 => {
                if let Some(frame) = beep.next() {
                    let _ = endpoint.send(&out.next_audio(pt, &frame)).await;
                }
            }
            inbound = endpoint.recv() => match inbound {
                Ok(Inbound::Audio { codec_pt, ssrc, ts, payload, .. }) if codec_pt == pt => {
                    last_rtp = tokio::time::Instant::now();
                    recorder.on_audio(&calls, ssrc, ts, payload);
                }
                Ok(_) => last_rtp = tokio::time::Instant::now(),
                Err(e) => tracing::debug!(error = %e, "sender RTP receive error"),
            },
            Some(audio) = to_sender.recv() => {
                let _ = endpoint.send(&out.next_audio(pt, &audio)).await;
            }
            event = call.next() => match event {
                SessionEvent::Ack(_) => {}
                SessionEvent::Request { key, request, source } => {
                    if let InDialog::Hangup = call.on_request(&calls, key, &request, source) {
                        hangup_by_us = false;
                        break;
                    }
                }
                SessionEvent::AckTimeout => {
                    tracing::info!(message_id, "no ACK for our 200: ending the call");
                    break;
                }
                SessionEvent::Closed => {
                    hangup_by_us = false;
                    break;
                }
            },
            _ = &mut record_timer => {
                tracing::info!(message_id, "maximum message length reached");
                break;
            }
            _ = liveness.tick() => {
                if last_rtp.elapsed() >= RTP_TIMEOUT {
                    tracing::info!(message_id, "no RTP from the sender: ending the call");
                    break;
                }
            }
        }
    }

    // The message is complete: listeners get the rest, the store flushes the tail.
    let frames = recorder.frames();
    let duration_ms = recorder.finish(&calls);
    if let Err(e) = calls
        .store
        .run(move |conn| messages::complete(conn, message_id, duration_ms))
        .await
    {
        tracing::error!(message_id, error = %e, "message state not saved");
    }
    tracing::info!(message_id, frames, duration_ms, "IVM message recorded");
    if hangup_by_us {
        call.hang_up();
    }
    calls
        .write_cdr(Cdr {
            message_id: Some(message_id),
            leg: "sender".into(),
            call_id,
            caller,
            callee: dialed,
            started_at,
            answered_at: Some(answered_at),
            ended_at: unix_now_ms(),
            outcome: "answered".into(),
            sip_status: Some(200),
        })
        .await;
}

/// The user of the first P-Asserted-Identity (RFC 3325) `sip:`/`tel:` URI.
fn asserted_user(req: &crate::stack::sip::Request) -> Option<String> {
    let value = req
        .headers
        .get(&crate::stack::sip::HeaderName::Other("P-Asserted-Identity".into()))?;
    let first = String::from_utf8_lossy(value);
    let first = first.split(',').next()?.trim().to_owned();
    let addr = crate::stack::sip::NameAddr::parse(first.as_bytes()).ok()?;
    match &addr.uri {
        crate::stack::sip::Uri::Sip(u) => u.user_unescaped().map(|u| String::from_utf8_lossy(&u).into_owned()),
        other => {
            let text = other.to_string();
            text.strip_prefix("tel:")
                .map(|t| t.split(';').next().unwrap_or(t).to_owned())
        }
    }
}

fn target_label(t: &Target) -> String {
    match t {
        Target::Number(n) | Target::User(n) => n.clone(),
        Target::Ip(ip) => ip.to_string(),
    }
}
