//! One target's leg: the outbound INVITE (to the target's registered phone, a trunk, or an IP
//! address; with the auto-answer headers for push-to-talk), ringing until the ring timeout
//! (then CANCEL), the outcome as a delivery state — 486/600/603 `rejected`, 408/480/5xx, time-out
//! and the rest `unanswered` — and once answered, the message streamed from its first frame,
//! paced, with SSRC/sequence/timestamp rewritten so the target sees one continuous stream; DTMF
//! `1` joins the target to the sender; at the end of the message, BYE and `delivered`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::endpoint::{Inbound, RtpEndpoint};
use ivm_media::rtp::OutboundStream;
use ivm_media::sdp::{self, Direction, SessionVersion};
use tokio::sync::mpsc;

use super::events::CallEvent;
use super::media_session::MediaSession;
use super::playback::{Audio, Player};
use super::{CODECS, Calls, TELEPHONE_EVENT_PT};
use crate::services::dial_plan::Target;
use crate::services::trunk::Trunk;
use crate::stack::dialog::{Dialog, DialogEvent, contact_value};
use crate::stack::endpoint::ClientEvent;
use crate::stack::request;
use crate::stack::sip::{HeaderName, Host, Method, Request, SipUri, Uri};
use crate::stack::transport::{Peer, TransportKind};
use crate::store::cdrs::Cdr;
use crate::store::messages::{delivery, unix_now_ms};
use crate::store::subscribers;

/// How long to wait for the final response after a CANCEL.
const CANCEL_WAIT: Duration = Duration::from_secs(32);
/// Frames of lag at answer time above which a delivery counts as catching up.
const LIVE_LAG_FRAMES: u32 = 10;

/// What every target leg of one message shares.
#[derive(Debug)]
pub struct MessageInfo {
    pub id: i64,
    pub sender: String,
    pub ptt: bool,
}

/// Where a target is reached.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The target as dialed (the delivery row's key).
    pub label: String,
    kind: DestinationKind,
}

#[derive(Debug, Clone)]
enum DestinationKind {
    Subscriber,
    Trunk(Trunk),
    Ip(IpAddr),
}

impl Destination {
    pub fn subscriber(number: String) -> Destination {
        Destination {
            label: number,
            kind: DestinationKind::Subscriber,
        }
    }

    pub fn trunk(number: String, trunk: Trunk) -> Destination {
        Destination {
            label: number,
            kind: DestinationKind::Trunk(trunk),
        }
    }

    pub fn ip(ip: IpAddr) -> Destination {
        Destination {
            label: ip.to_string(),
            kind: DestinationKind::Ip(ip),
        }
    }
}

/// How the INVITE ended.
pub(crate) enum Ringing {
    Answered(crate::stack::sip::Response),
    Failed {
        state: &'static str,
        status: Option<u16>,
        outcome: &'static str,
    },
    /// The ring timeout passed before any provisional response, so no CANCEL may be sent; the
    /// INVITE may still be answered.
    GaveUp,
}

/// Audio the sender should hear (from a target that joined with DTMF 1), in the message codec.
pub type ToSender = tokio::sync::mpsc::Sender<Bytes>;

/// Where a dial plan target goes: a subscriber's registered phones, a trunk, or an IP address.
pub(crate) async fn resolve(calls: &Calls, t: &Target) -> Option<Destination> {
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

/// Runs one target leg to its end.
pub async fn run(calls: Arc<Calls>, info: Arc<MessageInfo>, audio: Audio, dest: Destination, to_sender: ToSender) {
    let started_at = unix_now_ms();
    let label = dest.label.clone();
    let leg_end = |call_id: &str, answered_at| LegEnd {
        calls: &calls,
        info: &info,
        label: &label,
        call_id: call_id.to_owned(),
        started_at,
        answered_at,
    };
    let mut candidates = routes(&calls, &dest).into_iter().peekable();
    if candidates.peek().is_none() {
        tracing::info!(message_id = info.id, target = %label, "target not registered");
        leg_end("", None)
            .record(delivery::UNANSWERED, "unanswered", Some(480))
            .await;
        return;
    }

    let endpoint = match calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) {
        Ok(Ok(ep)) => ep,
        _ => {
            tracing::error!(message_id = info.id, target = %label, "no RTP port for a target leg");
            calls
                .set_delivery(info.id, &label, delivery::UNANSWERED, Some(503))
                .await;
            return;
        }
    };
    let session = SessionVersion::new();
    let subject = format!("IVM message {} from {}", info.id, info.sender);
    // The target's bindings in order; a phone that answers that a contact does not exist
    // (404/410: it restarted and registered another one) loses that binding and the next is
    // tried.
    let (invite, peer, call_id, mut responses, ok) = loop {
        let Some((request_uri, peer, contact)) = candidates.next() else {
            return;
        };
        let from = Caller {
            user: &info.sender,
            display: &info.sender,
        };
        let invite = build_invite(
            &calls,
            from,
            &label,
            request_uri,
            peer,
            &endpoint,
            &session,
            &subject,
            info.ptt,
        );
        let call_id =
            String::from_utf8_lossy(crate::stack::sip::SipHeaders::call_id(&invite).unwrap_or_default()).into_owned();
        let end = leg_end(&call_id, None);
        let mut responses = calls.core.send_request(invite.clone(), peer);
        calls.set_delivery(info.id, &label, delivery::ALERTING, None).await;
        match ring(&calls, &invite, peer, &mut responses, calls.settings.ring_timeout).await {
            Ringing::Answered(ok) => break (invite, peer, call_id, responses, ok),
            Ringing::Failed { state, status, outcome } => {
                if let (Some(404 | 410), Some(contact)) = (status, contact) {
                    forget_binding(&calls, &label, &contact).await;
                    if candidates.peek().is_some() {
                        tracing::info!(message_id = info.id, target = %label, %contact, "no such contact: trying the next binding");
                        continue;
                    }
                }
                end.record(state, outcome, status).await;
                return;
            }
            Ringing::GaveUp => {
                hang_up_late_answer(calls.clone(), invite, peer, responses);
                end.record(delivery::UNANSWERED, "unanswered", Some(408)).await;
                return;
            }
        }
    };
    let end = |answered_at| leg_end(&call_id, answered_at);
    let answered_at = unix_now_ms();
    let Some(mut dialog) = Dialog::as_uac(&invite, &ok, peer, calls.sip_addr()) else {
        tracing::info!(message_id = info.id, target = %label, "2xx without a usable To tag");
        end(Some(answered_at))
            .record(delivery::UNANSWERED, "failed", Some(ok.status))
            .await;
        return;
    };
    let ack = Bytes::from(dialog.ack(1).to_bytes());
    calls.core.send_raw(peer, ack.clone()).await;
    let neg = match sdp::accept_answer(&ok.body, &CODECS, TELEPHONE_EVENT_PT) {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(message_id = info.id, target = %label, error = %e, "unusable SDP answer");
            calls.core.send_and_forget(dialog.request(Method::Bye), peer);
            end(Some(answered_at))
                .record(delivery::UNANSWERED, "failed", Some(488))
                .await;
            return;
        }
    };
    endpoint.set_remote(neg.remote);
    endpoint.set_telephone_event(neg.telephone_event);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    calls.dialogs.insert(dialog.id.clone(), events_tx);

    let behind = match &audio {
        Audio::Live(s) => s.frames(),
        Audio::Stored { frames, .. } => *frames,
    };
    let state = if !audio.is_live() || behind > LIVE_LAG_FRAMES {
        delivery::CATCHING_UP
    } else {
        delivery::LIVE
    };
    calls.set_delivery(info.id, &label, state, Some(ok.status)).await;

    // Stream the message from its first frame.
    let source_codec = audio.codec();
    let mut player = Player::new(audio, calls.fragments.clone(), calls.settings.catch_up_speed);
    let mut out = OutboundStream::new();
    let mut joined = false;
    let mut complete = false;
    let mut they_hung_up = false;
    // The target put the call on hold (RFC 3264 §6.1): the message waits where it is.
    let mut media = MediaSession::new(session, invite.body.clone());
    let mut was_held = false;
    loop {
        if std::mem::replace(&mut was_held, media.held()) && !media.held() {
            player.resume();
        }
        tokio::select! {
            frame = player.next(), if !media.held() => match frame {
                Some(f) => {
                    let payload = source_codec.convert_frame(neg.codec, &f);
                    let _ = endpoint.send(&out.next_audio(neg.payload_type, &payload)).await;
                }
                None => { complete = true; break; }
            },
            inbound = endpoint.recv() => match inbound {
                Ok(Inbound::Dtmf(d)) => on_digit(d, &mut joined, &mut player, &label, info.id),
                Ok(Inbound::Audio { codec_pt, payload, .. }) if joined && codec_pt == neg.payload_type => {
                    let audio = neg.codec.convert_frame(source_codec, &payload);
                    let _ = to_sender.try_send(audio);
                }
                _ => {}
            },
            event = events.recv() => match event {
                Some(DialogEvent::Request { key, request, source }) => match request.method {
                    Method::Bye => {
                        calls.answer(&key, &request, request.response(200, None, ""), source);
                        they_hung_up = true;
                        break;
                    }
                    Method::Info => {
                        if let Some(d) = super::uas_leg::info_digit(&request.body) {
                            on_digit(d, &mut joined, &mut player, &label, info.id);
                        }
                        calls.answer(&key, &request, request.response(200, None, ""), source);
                    }
                    Method::Invite | Method::Update => {
                        let resp = media.reinvite_ok(&calls, &request, source, &neg, endpoint.local_addr());
                        calls.answer(&key, &request, resp, source);
                    }
                    _ => calls.answer(&key, &request, request.response(200, None, ""), source),
                },
                Some(DialogEvent::Ack(_)) | Some(DialogEvent::Cancelled) | None => {}
            },
            resp = responses.recv() => {
                // A retransmitted 2xx: our ACK was lost.
                if let Some(ClientEvent::Response(r)) = resp && (200..300).contains(&r.status) {
                    calls.core.send_raw(peer, ack.clone()).await;
                }
            }
        }
    }
    calls.dialogs.remove(&dialog.id);
    if !they_hung_up {
        calls.core.send_and_forget(dialog.request(Method::Bye), peer);
    }
    let state = if complete {
        delivery::DELIVERED
    } else {
        delivery::UNANSWERED
    };
    tracing::info!(message_id = info.id, target = %label, frames = player.position(), state, "target leg ended");
    end(Some(answered_at)).record(state, "answered", Some(ok.status)).await;
}

/// After giving up on an INVITE that never rang: if it is answered after all, ACK and BYE it
/// so the target's phone does not stay in a silent call.
pub(crate) fn hang_up_late_answer(
    calls: Arc<Calls>,
    invite: Request,
    peer: Peer,
    mut responses: mpsc::UnboundedReceiver<ClientEvent>,
) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, responses.recv()).await {
            match ev {
                ClientEvent::Response(r) if (200..300).contains(&r.status) => {
                    if let Some(mut dialog) = Dialog::as_uac(&invite, &r, peer, calls.sip_addr()) {
                        calls.core.send_raw(peer, Bytes::from(dialog.ack(1).to_bytes())).await;
                        let mut rx = calls.core.send_request(dialog.request(Method::Bye), peer);
                        while rx.recv().await.is_some() {}
                    }
                    return;
                }
                ClientEvent::Response(r) if r.status < 200 => {}
                _ => return,
            }
        }
    });
}

/// DTMF during playback (SPEC §3): `1` joins the sender (live audio both ways).
fn on_digit(d: char, joined: &mut bool, player: &mut Player, label: &str, id: i64) {
    tracing::info!(message_id = id, target = %label, digit = %d, "DTMF from target");
    // From now on the target hears the sender as it speaks (while the sender is on the line).
    if d == '1' && !*joined && player.jump_to_live() {
        *joined = true;
    }
}

/// The Request-URI and next hop of a destination.
pub(crate) fn route(calls: &Calls, dest: &Destination) -> Option<(Uri, Peer)> {
    routes(calls, dest).into_iter().next().map(|(uri, peer, _)| (uri, peer))
}

/// Every way to reach `dest`, in the order to try them, each with the registered contact it
/// came from (for a subscriber).
fn routes(calls: &Calls, dest: &Destination) -> Vec<(Uri, Peer, Option<String>)> {
    match &dest.kind {
        DestinationKind::Subscriber => calls
            .location
            .lookup_ordered(&dest.label, crate::store::unix_now())
            .into_iter()
            .filter_map(|b| {
                let uri = Uri::parse(b.contact.as_bytes()).ok()?;
                let peer = Peer {
                    transport: b.transport,
                    addr: b.source,
                };
                Some((uri, peer, Some(b.contact)))
            })
            .collect(),
        DestinationKind::Trunk(t) => {
            let uri = Uri::Sip(SipUri::new(
                Some(&dest.label),
                Host::from_ip(t.address.ip()),
                Some(t.address.port()),
            ));
            let peer = Peer {
                transport: t.transport,
                addr: t.address,
            };
            vec![(uri, peer, None)]
        }
        DestinationKind::Ip(ip) => {
            let uri = Uri::Sip(SipUri::new(Some("ivm"), Host::from_ip(*ip), None));
            let peer = Peer {
                transport: TransportKind::Udp,
                addr: SocketAddr::new(*ip, 5060),
            };
            vec![(uri, peer, None)]
        }
    }
}

/// Drops a binding whose phone said the contact does not exist, in memory and in the store.
async fn forget_binding(calls: &Calls, aor: &str, contact: &str) {
    let Some(change) = calls.location.drop_contact(aor, contact) else {
        return;
    };
    tracing::info!(aor, contact, "binding dropped: the phone does not know this contact");
    let now = crate::store::unix_now();
    if let Err(e) = calls
        .store
        .run(move |conn| crate::store::registrations::apply(conn, &[change], now))
        .await
    {
        tracing::error!(aor, error = %e, "binding removal not saved");
    }
}

/// Who an outbound INVITE is from: the user part and display name of its From.
pub(crate) struct Caller<'a> {
    pub user: &'a str,
    pub display: &'a str,
}

/// An outbound INVITE with our SDP offer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_invite(
    calls: &Calls,
    from: Caller<'_>,
    label: &str,
    request_uri: Uri,
    peer: Peer,
    endpoint: &RtpEndpoint,
    session: &SessionVersion,
    subject: &str,
    ptt: bool,
) -> Request {
    let local = calls.sip_addr();
    let to_uri = match &request_uri {
        Uri::Sip(u) => format!("<sip:{label}@{}>", u.host),
        other => format!("<{other}>"),
    };
    let from = format!(
        "{} <sip:{}@{}>",
        crate::stack::sip::scan::quote(from.display),
        from.user,
        calls.settings.domain
    );
    let mut req = request::out_of_dialog(Method::Invite, request_uri, &from, &to_uri, peer, local);
    req.headers.push(HeaderName::Contact, contact_value("ivm", local, peer));
    req.headers.push(HeaderName::Allow, calls.core.allow().to_owned());
    req.headers.push(HeaderName::Subject, subject.to_owned());
    if ptt {
        // SPEC §4.7: the headers desk phones honour to answer on the speaker at once.
        req.headers.push(
            HeaderName::Other("Call-Info".into()),
            format!("<sip:{local}>;answer-after=0"),
        );
        req.headers.push(
            HeaderName::Other("Alert-Info".into()),
            format!("<sip:{local}>;info=alert-autoanswer"),
        );
        // RFC 5373, which baresip honours (it ignores the two above). Not `Require`d: a phone
        // without it still rings.
        req.headers.push(HeaderName::Other("Answer-Mode".into()), "Auto");
    }
    req.headers.push(HeaderName::ContentType, "application/sdp");
    req.body = Bytes::from(sdp::offer(
        endpoint.local_addr(),
        &CODECS,
        TELEPHONE_EVENT_PT,
        Direction::SendRecv,
        session,
    ));
    req
}

/// Waits for the INVITE's final response; CANCELs it at the ring timeout.
pub(crate) async fn ring(
    calls: &Calls,
    invite: &Request,
    peer: Peer,
    responses: &mut mpsc::UnboundedReceiver<ClientEvent>,
    ring_timeout: Duration,
) -> Ringing {
    let ring_deadline = tokio::time::Instant::now() + ring_timeout;
    let mut cancelled = false;
    let mut provisional = false;
    let mut cancel_rx: Option<mpsc::UnboundedReceiver<ClientEvent>> = None;
    let cancel_deadline = tokio::time::Instant::now() + ring_timeout + CANCEL_WAIT;
    loop {
        tokio::select! {
            ev = responses.recv() => match ev {
                Some(ClientEvent::Response(r)) if r.status < 200 => provisional = true,
                Some(ClientEvent::Response(r)) if r.status < 300 => return Ringing::Answered(r),
                Some(ClientEvent::Response(r)) => {
                    let (state, outcome) = match r.status {
                        487 if cancelled => (delivery::UNANSWERED, "unanswered"),
                        486 | 600 | 603 => (delivery::REJECTED, "rejected"),
                        _ => (delivery::UNANSWERED, "unanswered"),
                    };
                    return Ringing::Failed { state, status: Some(r.status), outcome };
                }
                Some(ClientEvent::Timeout) => {
                    return Ringing::Failed { state: delivery::UNANSWERED, status: Some(408), outcome: "unanswered" };
                }
                Some(ClientEvent::Failed(e)) => {
                    tracing::info!(error = %e, "target INVITE could not be sent");
                    return Ringing::Failed { state: delivery::UNANSWERED, status: None, outcome: "failed" };
                }
                None => return Ringing::Failed { state: delivery::UNANSWERED, status: None, outcome: "failed" },
            },
            _ = tokio::time::sleep_until(ring_deadline), if !cancelled => {
                cancelled = true;
                if provisional {
                    cancel_rx = Some(calls.core.send_request(cancel_of(invite), peer));
                } else {
                    // RFC 3261 §9.1: no provisional yet, so no CANCEL may be sent; the INVITE
                    // client transaction times out on its own (Timer B).
                    return Ringing::GaveUp;
                }
            }
            _ = tokio::time::sleep_until(cancel_deadline), if cancelled => {
                return Ringing::Failed { state: delivery::UNANSWERED, status: Some(408), outcome: "unanswered" };
            }
            Some(_) = async { match cancel_rx.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {}
        }
    }
}

/// The CANCEL of an INVITE we sent (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number, and the INVITE's top Via (same branch).
pub(crate) fn cancel_of(invite: &Request) -> Request {
    let mut req = Request::new(Method::Cancel, invite.uri.clone());
    for name in [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            req.headers.push(name, v.clone());
        }
    }
    let seq = crate::stack::sip::SipHeaders::cseq(invite).map_or(1, |c| c.seq);
    req.headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    req.headers.push(HeaderName::MaxForwards, request::MAX_FORWARDS);
    for r in invite.headers.get_all(&HeaderName::Route) {
        req.headers.push(HeaderName::Route, r.clone());
    }
    req
}

/// What a finished target leg leaves behind: its delivery state and its CDR.
struct LegEnd<'a> {
    calls: &'a Arc<Calls>,
    info: &'a MessageInfo,
    label: &'a str,
    call_id: String,
    started_at: i64,
    answered_at: Option<i64>,
}

impl LegEnd<'_> {
    async fn record(self, state: &'static str, outcome: &str, status: Option<u16>) {
        self.calls.set_delivery(self.info.id, self.label, state, status).await;
        match state {
            delivery::UNANSWERED => self.calls.emit(CallEvent::Missed {
                message_id: self.info.id,
                target: self.label.to_owned(),
            }),
            delivery::REJECTED | delivery::DELIVERED => self.calls.emit(CallEvent::Settled {
                message_id: self.info.id,
                target: self.label.to_owned(),
                accepted: state == delivery::DELIVERED,
            }),
            _ => {}
        }
        self.calls
            .write_cdr(Cdr {
                message_id: Some(self.info.id),
                leg: "target".into(),
                call_id: self.call_id,
                caller: self.info.sender.clone(),
                callee: self.label.to_owned(),
                started_at: self.started_at,
                answered_at: self.answered_at,
                ended_at: unix_now_ms(),
                outcome: outcome.into(),
                sip_status: status,
            })
            .await;
    }
}
