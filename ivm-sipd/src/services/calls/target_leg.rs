//! One target's leg: the outbound INVITE (to the target's registered phone, a trunk, or an IP
//! address; with the auto-answer headers for push-to-talk), ringing until the ring timeout
//! (the stack's [`crate::stack::invite::client`] CANCELs, ACKs, hangs up a late 2xx), the outcome as a delivery state — 486/600/603 `rejected`, 408/480/5xx, time-out
//! and the rest `unanswered` — and once answered, the message streamed from its first frame,
//! paced, with SSRC/sequence/timestamp rewritten so the target sees one continuous stream; DTMF
//! `1` joins the target to the sender; at the end of the message, BYE and `delivered`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use ivm_media::endpoint::{Inbound, RtpEndpoint};
use ivm_media::rtp::OutboundStream;
use ivm_media::sdp::{self, Direction, SessionVersion};

use super::events::CallEvent;
use super::media_session::MediaSession;
use super::playback::{Audio, Player};
use super::{CODECS, Calls, TELEPHONE_EVENT_PT};
use crate::services::dial_plan::Target;
use crate::services::presence::Availability;
use crate::services::trunk::Trunk;
use crate::stack::dialog::contact_value;
use crate::stack::invite::SessionEvent;
use crate::stack::invite::client::{ClientInvite, RingOutcome};
use crate::stack::request;
use crate::stack::sip::{HeaderName, Host, Method, Request, SipUri, Uri};
use crate::stack::transport::{Peer, TransportKind};
use crate::store::cdrs::Cdr;
use crate::store::mailbox;
use crate::store::messages::{delivery, unix_now_ms};
use crate::store::subscribers;

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
    /// Why a call to this destination is not placed: a subscriber that published busy,
    /// do-not-disturb or closed presence, or that has no registered phone. Trunks and IP
    /// addresses are always tried.
    pub(crate) fn unavailable(&self, calls: &Calls) -> Option<Availability> {
        if !matches!(self.kind, DestinationKind::Subscriber) {
            return None;
        }
        let published = calls.presence.availability(&self.label);
        if !published.reachable() {
            return Some(published);
        }
        let registered = !calls.location.lookup(&self.label, crate::store::unix_now()).is_empty();
        (!registered).then_some(Availability::Offline)
    }

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
    let published = calls.presence.availability(&label);
    if matches!(dest.kind, DestinationKind::Subscriber) && !published.reachable() {
        let why = published;
        // SPEC: not called, stored, and notified at once by its own rules.
        tracing::info!(message_id = info.id, target = %label, presence = why.name(), "target unavailable: not called");
        leg_end("", None)
            .record(delivery::UNANSWERED, "unavailable", Some(why.status()))
            .await;
        return;
    }
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
    // Every binding of the target rings at once (RFC 3261 §16.7 semantics): the first 2xx
    // wins and the other branches are CANCELled; a contact that answers that it does not
    // exist (404/410: the phone restarted with another one) loses its binding.
    let hops: Vec<Hop> = candidates.collect();
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut branches = tokio::task::JoinSet::new();
    let mut first_call_id = String::new();
    for hop in hops {
        let from = Caller {
            user: &info.sender,
            display: &info.sender,
        };
        let invite = build_invite(&calls, from, &label, &hop, &endpoint, &session, &subject, info.ptt);
        let offer = invite.body.clone();
        let ringing = ClientInvite::send(&calls.core, &calls.dialogs, invite, hop.peer);
        let call_id = ringing.call_id();
        if first_call_id.is_empty() {
            first_call_id = call_id.clone();
        }
        let (mut stopped, ring_timeout) = (stop.subscribe(), calls.settings.ring_timeout);
        branches.spawn(async move {
            let given_up = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let outcome = ringing.ring_until(ring_timeout, given_up).await;
            (hop, call_id, offer, outcome)
        });
    }
    calls.set_delivery(info.id, &label, delivery::ALERTING, None).await;
    let mut lost = Lost::Failed;
    let mut winner = None;
    while let Some(joined) = branches.join_next().await {
        let Ok((hop, call_id, offer, outcome)) = joined else {
            continue;
        };
        match outcome {
            RingOutcome::Answered(call) => {
                let _ = stop.send(true);
                winner = Some((call, call_id, offer));
                break;
            }
            RingOutcome::Refused { status, cancelled } => {
                if let (404 | 410, Some(contact)) = (status, &hop.contact) {
                    tracing::info!(message_id = info.id, target = %label, %contact, "no such contact: binding dropped");
                    forget_binding(&calls, &label, contact).await;
                }
                if matches!(status, 600 | 603) {
                    // A global refusal ends every branch (RFC 3261 §16.7 step 5).
                    let _ = stop.send(true);
                }
                lost = lost.worse(Lost::Refused { status, cancelled });
            }
            RingOutcome::NoAnswer => lost = lost.worse(Lost::NoAnswer),
            RingOutcome::Failed(e) => {
                tracing::info!(message_id = info.id, target = %label, error = %e, "target INVITE failed");
            }
        }
    }
    // The branches still ringing finish on their own (CANCELled; a late 2xx is hung up; a
    // contact that does not exist loses its binding all the same).
    let (drain_calls, drain_label) = (calls.clone(), label.clone());
    tokio::spawn(async move {
        while let Some(joined) = branches.join_next().await {
            match joined {
                Ok((_, _, _, RingOutcome::Answered(mut late))) => late.hang_up(),
                Ok((hop, _, _, RingOutcome::Refused { status: 404 | 410, .. })) => {
                    if let Some(contact) = &hop.contact {
                        forget_binding(&drain_calls, &drain_label, contact).await;
                    }
                }
                _ => {}
            }
        }
    });
    let Some((mut call, call_id, offer)) = winner else {
        let end = leg_end(&first_call_id, None);
        match lost {
            Lost::Refused { status, cancelled } => {
                let (state, outcome) = refusal(status, cancelled);
                end.record(state, outcome, Some(status)).await;
            }
            Lost::NoAnswer => end.record(delivery::UNANSWERED, "unanswered", Some(408)).await,
            Lost::Failed => end.record(delivery::UNANSWERED, "failed", None).await,
        }
        return;
    };
    let end = |answered_at| leg_end(&call_id, answered_at);
    let answered_at = unix_now_ms();
    let ok_status = call.response.status;
    let neg = match sdp::accept_answer(&call.response.body, &CODECS, TELEPHONE_EVENT_PT) {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(message_id = info.id, target = %label, error = %e, "unusable SDP answer");
            call.hang_up();
            end(Some(answered_at))
                .record(delivery::UNANSWERED, "failed", Some(488))
                .await;
            return;
        }
    };
    endpoint.set_remote(neg.remote);
    endpoint.set_telephone_event(neg.telephone_event);

    let behind = match &audio {
        Audio::Live(s) => s.frames(),
        Audio::Stored { frames, .. } => *frames,
    };
    let state = if !audio.is_live() || behind > LIVE_LAG_FRAMES {
        delivery::CATCHING_UP
    } else {
        delivery::LIVE
    };
    calls.set_delivery(info.id, &label, state, Some(ok_status)).await;

    // Stream the message from its first frame.
    let source_codec = audio.codec();
    let mut player = Player::new(audio, calls.fragments.clone(), calls.settings.catch_up_speed);
    let mut out = OutboundStream::new();
    let mut joined = false;
    let mut complete = false;
    let mut they_hung_up = false;
    // The target put the call on hold (RFC 3264 §6.1): the message waits where it is.
    let mut media = MediaSession::new(session, offer);
    let mut was_held = false;
    let mut held_since: Option<tokio::time::Instant> = None;
    loop {
        if std::mem::replace(&mut was_held, media.held()) && !media.held() {
            player.resume();
            // The timestamp moves on over the hold (and the next packet is marked), so the
            // phone's jitter buffer sees a pause. Only a hold does this: a catch-up that is
            // slow to read the store is still one continuous stream.
            if let Some(since) = held_since.take() {
                let per_frame = ivm_media::codec::SAMPLES_PER_FRAME as u32;
                let frames = u32::try_from(since.elapsed().as_millis() / 20).unwrap_or(u32::MAX / per_frame);
                out.skip(frames.saturating_mul(per_frame));
            }
        }
        if media.held() && held_since.is_none() {
            held_since = Some(tokio::time::Instant::now());
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
            event = call.next() => match event {
                SessionEvent::Request { key, request, source } => match request.method {
                    Method::Bye => {
                        call.reply(key, &request, request.response(200, None, ""), source);
                        call.close();
                        they_hung_up = true;
                        break;
                    }
                    Method::Info => {
                        if let Some(d) = super::uas_leg::info_digit(&request.body) {
                            on_digit(d, &mut joined, &mut player, &label, info.id);
                        }
                        call.reply(key, &request, request.response(200, None, ""), source);
                    }
                    Method::Invite | Method::Update => {
                        let resp = media.reinvite_ok(&calls, &request, source, &neg, endpoint.local_addr());
                        call.reply(key, &request, resp, source);
                    }
                    _ => call.reply(key, &request, request.response(200, None, ""), source),
                },
                SessionEvent::Closed => {
                    they_hung_up = true;
                    break;
                }
                SessionEvent::Ack(_) | SessionEvent::AckTimeout => {}
            },
        }
    }
    if !they_hung_up {
        call.hang_up();
    }
    let state = match (complete, player.skipped()) {
        (true, 0) => delivery::DELIVERED,
        // DTMF 1 joined the sender and passed over the backlog: what was skipped was never
        // heard, so the message stays new in the mailbox (and on the lamp), without another
        // notification — the target was on the call.
        (true, skipped) => {
            tracing::info!(message_id = info.id, target = %label, skipped, "joined live: the message stays new");
            mailbox::NOTIFIED
        }
        (false, _) => delivery::UNANSWERED,
    };
    tracing::info!(message_id = info.id, target = %label, frames = player.position(), state, "target leg ended");
    end(Some(answered_at)).record(state, "answered", Some(ok_status)).await;
}

/// DTMF during playback (SPEC §3): `1` joins the sender (live audio both ways).
fn on_digit(d: char, joined: &mut bool, player: &mut Player, label: &str, id: i64) {
    tracing::info!(message_id = id, target = %label, digit = %d, "DTMF from target");
    // From now on the target hears the sender as it speaks (while the sender is on the line).
    if d == '1' && !*joined && player.jump_to_live() {
        *joined = true;
    }
}

/// One way to reach a destination: the Request-URI, where the request goes first, the
/// registered contact it came from (for a subscriber), and the Route to put on it (a
/// registration's Path, RFC 3327).
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub uri: Uri,
    pub peer: Peer,
    pub contact: Option<String>,
    pub route: Option<String>,
}

/// The first way to reach `dest`.
pub(crate) fn route(calls: &Calls, dest: &Destination) -> Option<Hop> {
    routes(calls, dest).into_iter().next()
}

/// Every way to reach `dest`, in the order to try them.
fn routes(calls: &Calls, dest: &Destination) -> Vec<Hop> {
    match &dest.kind {
        DestinationKind::Subscriber => calls
            .location
            .lookup_ordered(&dest.label, crate::store::unix_now())
            .into_iter()
            .filter_map(|b| {
                let uri = Uri::parse(b.contact.as_bytes()).ok()?;
                let flow = Peer {
                    transport: b.transport,
                    addr: b.source,
                };
                // Registered through proxies: the request goes to the first of them, with
                // the Path as its Route (RFC 3327 §5.3).
                let (peer, route) = match b.path.is_empty() {
                    true => (flow, None),
                    false => (first_hop(&b.path).unwrap_or(flow), Some(b.path.clone())),
                };
                Some(Hop {
                    uri,
                    peer,
                    contact: Some(b.contact),
                    route,
                })
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
            vec![Hop {
                uri,
                peer,
                contact: None,
                route: None,
            }]
        }
        DestinationKind::Ip(ip) => {
            let uri = Uri::Sip(SipUri::new(Some("ivm"), Host::from_ip(*ip), None));
            let peer = Peer {
                transport: TransportKind::Udp,
                addr: SocketAddr::new(*ip, 5060),
            };
            vec![Hop {
                uri,
                peer,
                contact: None,
                route: None,
            }]
        }
    }
}

/// The address of the first URI of a Path value, when it is an IP address (a name would
/// need DNS; the registration's source address is used then).
fn first_hop(path: &str) -> Option<Peer> {
    let first = path.split(',').next()?.trim();
    let addr = crate::stack::sip::NameAddr::parse(first.as_bytes()).ok()?;
    let sip = addr.uri.as_sip()?;
    let ip = sip.host.ip()?;
    let transport = match sip.transport().as_deref() {
        Some(t) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => TransportKind::Tls,
        _ if sip.secure => TransportKind::Tls,
        _ => TransportKind::Udp,
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, sip.port.unwrap_or(5060)),
    })
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
    hop: &Hop,
    endpoint: &RtpEndpoint,
    session: &SessionVersion,
    subject: &str,
    ptt: bool,
) -> Request {
    let (request_uri, peer) = (hop.uri.clone(), hop.peer);
    let local = calls.sip_addr(peer.transport);
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
    if let Some(route) = &hop.route {
        req.headers.push(HeaderName::Route, route.clone());
    }
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

/// How a target was not reached, over all the branches of its fork.
#[derive(Debug, Clone, Copy)]
enum Lost {
    Refused { status: u16, cancelled: bool },
    NoAnswer,
    Failed,
}

impl Lost {
    /// The one to report (RFC 3261 §16.7 step 6, simplified): a busy or declining phone
    /// over a timeout, a timeout over another refusal, any answer over a failure to send.
    fn worse(self, other: Lost) -> Lost {
        let rank = |l: &Lost| match l {
            Lost::Refused {
                status: 486 | 600 | 603,
                ..
            } => 3,
            Lost::NoAnswer => 2,
            Lost::Refused { .. } => 1,
            Lost::Failed => 0,
        };
        if rank(&other) > rank(&self) { other } else { self }
    }
}

/// The delivery state and CDR outcome of a refused INVITE: busy and declined are
/// `rejected`; our own CANCEL's `487` and every other refusal `unanswered`.
pub(crate) fn refusal(status: u16, cancelled: bool) -> (&'static str, &'static str) {
    match status {
        487 if cancelled => (delivery::UNANSWERED, "unanswered"),
        486 | 600 | 603 => (delivery::REJECTED, "rejected"),
        _ => (delivery::UNANSWERED, "unanswered"),
    }
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
        if state == mailbox::NOTIFIED {
            let (id, target) = (self.info.id, self.label.to_owned());
            if let Err(e) = self
                .calls
                .store
                .run(move |conn| mailbox::mark_partly_heard(conn, id, &target))
                .await
            {
                tracing::error!(message_id = id, target = self.label, error = %e, "delivery state not saved");
            }
        } else {
            self.calls.set_delivery(self.info.id, self.label, state, status).await;
        }
        match state {
            mailbox::NOTIFIED => self.calls.emit(CallEvent::MailboxChanged {
                owner: self.label.to_owned(),
            }),
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
