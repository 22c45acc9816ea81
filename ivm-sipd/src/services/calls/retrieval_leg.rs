//! Retrieval (SPEC §3, §4 flow 5; claims 003-27..32): a call to `98` + message id + type (or a
//! call back to the smart caller-ID number) plays that message to a caller who is one of its
//! targets — recognised by its number or MSISDN, or by the PIN it enters — and `98` alone opens
//! the caller's mailbox: unheard messages first, then saved ones. Each message is announced
//! ("message from …"), played (live, with catch-up, while it is still being recorded), and
//! followed by the menu: `2` replay, `3` reply with a voice message, `7` delete, `9` save,
//! `#` next. Hearing a message marks it heard, tells its sender and updates MWI.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::codec::Codec;
use ivm_media::endpoint::Inbound;
use ivm_media::prompt::{self, Prompt};
use ivm_media::rtp::OutboundStream;
use ivm_media::tone;
use tokio::sync::mpsc;

use super::Calls;
use super::events::CallEvent;
use super::playback::{Audio, Player};
use super::recorder::Recorder;
use super::target_leg::{self, MessageInfo};
use super::uas_leg::{self, Answered, InDialog};
use crate::services::dial_plan::{Service, Target};
use crate::stack::invite::SessionEvent;
use crate::stack::invite::server::ServerInvite;
use crate::store::mailbox::{self, Entry, folder};
use crate::store::messages::{self, NewMessage, delivery};
use crate::store::subscribers;

/// How long the menu waits for a key.
const MENU_WAIT: Duration = Duration::from_secs(8);
/// How long a PIN may take.
const PIN_WAIT: Duration = Duration::from_secs(15);
/// The longest reply.
const MAX_REPLY: Duration = Duration::from_secs(120);

/// Runs a retrieval or mailbox call. `caller` is the authenticated subscriber or the number a
/// trunk presented; `verified` says whether that number may stand for a subscriber (digest, or
/// a trunk that asserts identity) — if not, the owner proves itself with its PIN.
pub async fn run(calls: Arc<Calls>, invite: ServerInvite, caller: String, verified: bool, service: Service) {
    let reject = |status: u16, reason: &str| invite.refuse(status, reason);
    // Whose messages, and which.
    let (owner, candidates, single) = match service {
        Service::Retrieve { message_id, .. } => {
            let id = i64::from(message_id);
            let found = calls.message(id).await;
            if found.is_none() {
                return reject(404, &format!("Not Found (no message {message_id:06})"));
            }
            let targets = calls
                .store
                .run(move |conn| mailbox::targets(conn, id))
                .await
                .unwrap_or_default();
            let owner = match verified {
                true => owner_among(&calls, &caller, &targets).await,
                false => None,
            };
            (owner, targets, Some(id))
        }
        Service::Mailbox => {
            let c = caller.clone();
            match calls.store.run(move |conn| subscribers::owner_of(conn, &c)).await {
                Ok(Some(o)) if verified => (Some(o), Vec::new(), None),
                // The number a trunk presents names the mailbox; its PIN opens it.
                Ok(Some(o)) => (None, vec![o], None),
                _ => return reject(403, "Forbidden (no mailbox for this caller)"),
            }
        }
        Service::Ivm { .. } => return reject(404, "Not Found"),
    };
    let media = match uas_leg::prepare_media(&calls, invite.request()).await {
        Ok(m) => m,
        Err((status, reason)) => return reject(status, &reason),
    };
    let call = match uas_leg::answer(&invite, media) {
        Ok(call) => call,
        Err(e) => return tracing::info!(reason = %e, "retrieval call not answered"),
    };
    let codec = call.media.neg.codec;
    let mut ivr = Ivr {
        calls: calls.clone(),
        call,
        out: OutboundStream::new(),
        codec,
        digits: VecDeque::new(),
        gone: false,
        started: tokio::time::Instant::now(),
    };

    let owner = match owner {
        Some(o) => o,
        None => match ivr.ask_pin(&candidates).await {
            Some(o) => o,
            None => return ivr.finish(&[Prompt::WrongPin, Prompt::Goodbye]).await,
        },
    };
    tracing::info!(caller, owner, message = ?single, "retrieval call");
    let entries = match single {
        Some(id) => {
            let e = calls.message(id).await;
            e.into_iter().collect::<Vec<Entry>>()
        }
        None => {
            let o = owner.clone();
            let entries = calls
                .store
                .run(move |conn| mailbox::entries(conn, &o))
                .await
                .unwrap_or_default();
            let new = entries
                .iter()
                .filter(|e| e.folder == folder::NEW && e.state != mailbox::HEARD && e.state != delivery::DELIVERED)
                .count() as u32;
            let mut intro = vec![Prompt::Welcome];
            if entries.is_empty() {
                intro.push(Prompt::NoMessages);
            } else {
                intro.extend(prompt::digits(new));
                intro.push(Prompt::NewMessages);
            }
            if ivr.prompts(&intro).await.is_none() {
                return ivr.hang_up();
            }
            entries
        }
    };
    ivr.play_all(&owner, entries).await;
}

/// The target among `targets` that `caller` is: the number itself or a subscriber whose MSISDN
/// it is.
async fn owner_among(calls: &Calls, caller: &str, targets: &[String]) -> Option<String> {
    if let Some(t) = targets.iter().find(|t| *t == caller) {
        return Some(t.clone());
    }
    for t in targets {
        let t2 = t.clone();
        if let Ok(Some(p)) = calls.store.run(move |conn| mailbox::profile(conn, &t2)).await
            && p.msisdn.as_deref().is_some_and(|m| same_number(m, caller))
        {
            return Some(t.clone());
        }
    }
    None
}

/// Compares phone numbers ignoring a leading `+` or `00`.
fn same_number(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_start_matches('+').trim_start_matches("00").to_owned();
    norm(a) == norm(b)
}

/// What a playback ended with.
enum Played {
    Finished,
    Key(char),
}

/// The voice menu of one answered call.
struct Ivr {
    calls: Arc<Calls>,
    call: Answered,
    out: OutboundStream,
    codec: Codec,
    digits: VecDeque<char>,
    gone: bool,
    /// When the call was answered: the clock of [`OutboundStream::next_audio_at`].
    started: tokio::time::Instant,
}

impl Ivr {
    /// Handles one event of the call while something plays or waits.
    async fn event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Ack(_) => {}
            SessionEvent::Request { key, request, source } => {
                match self.call.on_request(&self.calls, key, &request, source) {
                    InDialog::Hangup => self.gone = true,
                    InDialog::Digit(d) => self.digits.push_back(d),
                    InDialog::Handled => {}
                }
            }
            SessionEvent::AckTimeout => {
                tracing::info!("retrieval: no ACK for our 200: ending the call");
                self.hang_up();
            }
            SessionEvent::Closed => self.gone = true,
        }
    }

    /// Sends one 20 ms frame. After a silent stretch (a wait for a key, a hold) the RTP
    /// timestamp moves on by the time that passed and the packet is marked (RFC 3551 §4.1),
    /// so the phone's jitter buffer sees the pause as a pause.
    async fn send_audio(&mut self, pt: u8, frame: &[u8]) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let packet = self.out.next_audio_at(pt, frame, now_ms);
        let _ = self.call.media.endpoint.send(&packet).await;
    }

    /// Sends frames (already in the call codec), paced, until done or a key is pressed.
    async fn send_frames(&mut self, frames: Vec<Bytes>) -> Option<Played> {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let pt = self.call.media.neg.payload_type;
        for f in frames {
            loop {
                if self.gone {
                    return None;
                }
                if let Some(d) = self.digits.pop_front() {
                    return Some(Played::Key(d));
                }
                tokio::select! {
                    // On hold: nothing is sent and nothing is skipped.
                    _ = tick.tick(), if !self.call.held() => break,
                    inbound = self.call.media.endpoint.recv() => if let Ok(Inbound::Dtmf(d)) = inbound { self.digits.push_back(d) },
                    ev = self.call.session.next() => self.event(ev).await,
                }
            }
            self.send_audio(pt, &f).await;
        }
        Some(Played::Finished)
    }

    async fn prompts(&mut self, parts: &[Prompt]) -> Option<Played> {
        self.send_frames(prompt::sequence(parts, self.codec)).await
    }

    /// Plays a message through a `Player`, converting to the call codec.
    async fn message(&mut self, audio: Audio) -> Option<Played> {
        let source_codec = audio.codec();
        let mut player = Player::new(audio, self.calls.fragments.clone(), self.calls.settings.catch_up_speed);
        let pt = self.call.media.neg.payload_type;
        let mut was_held = false;
        loop {
            if self.gone {
                return None;
            }
            if let Some(d) = self.digits.pop_front() {
                return Some(Played::Key(d));
            }
            if std::mem::replace(&mut was_held, self.call.held()) && !was_held {
                player.resume();
            }
            tokio::select! {
                // On hold the message waits where it is (the player is not asked for frames).
                frame = player.next(), if !self.call.held() => match frame {
                    Some(f) => {
                        let payload = source_codec.convert_frame(self.codec, &f);
                        self.send_audio(pt, &payload).await;
                    }
                    None => return Some(Played::Finished),
                },
                inbound = self.call.media.endpoint.recv() => if let Ok(Inbound::Dtmf(d)) = inbound { self.digits.push_back(d) },
                ev = self.call.session.next() => self.event(ev).await,
            }
        }
    }

    /// The next key within `wait`.
    async fn key(&mut self, wait: Duration) -> Option<char> {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            if self.gone {
                return None;
            }
            if let Some(d) = self.digits.pop_front() {
                return Some(d);
            }
            tokio::select! {
                _ = &mut deadline => return None,
                inbound = self.call.media.endpoint.recv() => if let Ok(Inbound::Dtmf(d)) = inbound { self.digits.push_back(d) },
                ev = self.call.session.next() => self.event(ev).await,
            }
        }
    }

    /// Asks for a PIN and returns the target whose PIN it is.
    async fn ask_pin(&mut self, candidates: &[String]) -> Option<String> {
        if let Some(Played::Key(d)) = self.prompts(&[Prompt::EnterPin]).await {
            self.digits.push_front(d);
        }
        let mut pin = String::new();
        let deadline = tokio::time::Instant::now() + PIN_WAIT;
        while pin.len() < 12 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.key(left).await {
                Some('#') | None => break,
                Some(d) if d.is_ascii_digit() => pin.push(d),
                Some(_) => {}
            }
        }
        for t in candidates {
            let (t2, pin2) = (t.clone(), pin.clone());
            let ok = self
                .calls
                .store
                .run(move |conn| {
                    Ok(mailbox::profile(conn, &t2)?
                        .and_then(|p| p.pin_hash)
                        .is_some_and(|h| h == subscribers::pin_hash(&t2, &pin2)))
                })
                .await
                .unwrap_or(false);
            if ok {
                return Some(t.clone());
            }
        }
        tracing::info!("retrieval: wrong PIN");
        None
    }

    /// Plays every entry with the menu after each.
    async fn play_all(&mut self, owner: &str, entries: Vec<Entry>) {
        let mut i = 0;
        while i < entries.len() {
            let e = &entries[i];
            let mut intro = vec![Prompt::MessageFrom];
            if !e.sender.is_empty() && e.sender.bytes().all(|b| b.is_ascii_digit()) {
                intro.extend(e.sender.bytes().map(|b| Prompt::Digit(b - b'0')));
            }
            let audio = match self.calls.live_stream(e.message_id) {
                Some(stream) => {
                    intro.push(Prompt::StillRecording);
                    Audio::Live(stream)
                }
                None => {
                    let id = e.message_id;
                    let codec = self.calls.fragments.codec(id).ok().flatten().unwrap_or(Codec::Pcmu);
                    let frames = self.calls.fragments.committed_frames(id).unwrap_or(0);
                    Audio::Stored {
                        message_id: id,
                        codec,
                        frames,
                    }
                }
            };
            let mut played = self.prompts(&intro).await;
            if matches!(played, Some(Played::Finished)) {
                played = self.message(audio).await;
            }
            let Some(played) = played else { return self.hang_up() };
            if matches!(played, Played::Finished) {
                self.heard(e.message_id, owner).await;
            }
            let choice = match played {
                Played::Key(d) => Some(d),
                Played::Finished => match self.prompts(&[Prompt::Menu]).await {
                    None => return self.hang_up(),
                    Some(Played::Key(d)) => Some(d),
                    Some(Played::Finished) => self.key(MENU_WAIT).await,
                },
            };
            if self.gone {
                return self.hang_up();
            }
            match choice {
                Some('2') => continue, // replay
                Some('3') => {
                    self.heard(e.message_id, owner).await;
                    self.reply(owner, &e.sender).await;
                }
                Some('7') => {
                    self.file(e.message_id, owner, folder::DELETED).await;
                    if self.prompts(&[Prompt::Deleted]).await.is_none() {
                        return self.hang_up();
                    }
                }
                Some('9') => {
                    self.heard(e.message_id, owner).await;
                    self.file(e.message_id, owner, folder::SAVED).await;
                    if self.prompts(&[Prompt::Saved]).await.is_none() {
                        return self.hang_up();
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.finish(&[Prompt::EndOfMessages, Prompt::Goodbye]).await;
    }

    /// Marks a message heard by `owner`; the first time, its sender is told and MWI updated.
    async fn heard(&self, message_id: i64, owner: &str) {
        let o = owner.to_owned();
        if let Ok(true) = self
            .calls
            .store
            .run(move |conn| mailbox::mark_heard(conn, message_id, &o))
            .await
        {
            self.calls.emit(CallEvent::Settled {
                message_id,
                target: owner.to_owned(),
                accepted: true,
            });
        }
    }

    async fn file(&self, message_id: i64, owner: &str, to: &'static str) {
        let o = owner.to_owned();
        if let Err(e) = self
            .calls
            .store
            .run(move |conn| mailbox::set_folder(conn, message_id, &o, to))
            .await
        {
            tracing::error!(message_id, error = %e, "mailbox folder not saved");
        }
        self.calls.emit(CallEvent::MailboxChanged {
            owner: owner.to_owned(),
        });
    }

    /// Records a reply and sends it to `to` as a new voice message.
    async fn reply(&mut self, owner: &str, to: &str) {
        if self.prompts(&[Prompt::RecordReply]).await.is_none() {
            return;
        }
        if self
            .send_frames(tone::beep(self.codec, self.calls.settings.beep_ms, 1000))
            .await
            .is_none()
        {
            return;
        }
        let Some(dest) = target_leg::resolve(&self.calls, &Target::Number(to.to_owned())).await else {
            tracing::info!(to, "reply: the sender cannot be reached");
            return;
        };
        let new = NewMessage {
            sender: owner.to_owned(),
            kind: "ivm".into(),
            codec: self.codec.name().into(),
            call_id: self.call.session.dialog.id.call_id.clone(),
            targets: vec![dest.label.clone()],
        };
        let Ok(message_id) = self.calls.store.run(move |conn| messages::create(conn, &new)).await else {
            return;
        };
        let mut recorder = Recorder::start(&self.calls, message_id, self.codec);
        let info = Arc::new(MessageInfo {
            id: message_id,
            sender: owner.to_owned(),
            ptt: false,
        });
        let (to_sender, _) = mpsc::channel(1);
        let (calls, audio) = (self.calls.clone(), Audio::Live(recorder.handle()));
        tokio::spawn(async move { target_leg::run(calls, info, audio, dest, to_sender).await });
        let pt = self.call.media.neg.payload_type;
        let deadline = tokio::time::sleep(MAX_REPLY);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                inbound = self.call.media.endpoint.recv() => match inbound {
                    Ok(Inbound::Audio { codec_pt, ssrc, ts, payload, .. }) if codec_pt == pt => recorder.on_audio(&self.calls, ssrc, ts, payload),
                    Ok(Inbound::Dtmf('#')) => break,
                    _ => {}
                },
                ev = self.call.session.next() => {
                    self.event(ev).await;
                    if self.gone || self.digits.contains(&'#') {
                        self.digits.clear();
                        break;
                    }
                }
                _ = &mut deadline => break,
            }
        }
        let duration_ms = recorder.finish(&self.calls);
        let _ = self
            .calls
            .store
            .run(move |conn| messages::complete(conn, message_id, duration_ms))
            .await;
        tracing::info!(message_id, from = owner, to, duration_ms, "reply recorded");
    }

    /// Plays the closing prompts and hangs up.
    async fn finish(&mut self, parts: &[Prompt]) {
        if self.prompts(parts).await.is_some() {
            self.hang_up();
        }
    }

    fn hang_up(&mut self) {
        if !self.gone {
            self.call.hang_up();
            self.gone = true;
        }
    }
}
