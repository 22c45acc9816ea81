//! The notifier: it turns what calls and the registrar report into notices and hands each to
//! the notification channels, in order. A missed message is announced once, when it is
//! complete, on the channels the target's profile chooses: the store's `notified` mark claims
//! the notice, and a second mark once every channel has it; a claim a crash left unfinished is
//! redone at the next start (SMS are queued under a dedupe key, so the text still goes once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::services::calls::Calls;
use crate::services::calls::events::CallEvent;
use crate::store::mailbox::{self, Profile, UnsentNotice};

/// The work a channel does for one notice.
pub type Job<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What channels are told.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A message to `target` was missed; announce it. `profile` is the target's when it is a
    /// subscriber (else a number behind a trunk).
    Missed {
        message_id: i64,
        target: String,
        profile: Option<Profile>,
    },
    /// A delivery to `target` was accepted (heard) or rejected.
    Settled {
        message_id: i64,
        target: String,
        accepted: bool,
    },
    /// `owner`'s mailbox changed.
    MailboxChanged { owner: String },
    /// `aor` registered (again).
    Registered { aor: String },
}

/// One way of telling someone: SMS, a caller-ID call, MWI, a message to the sender, a call
/// that plays what is pending. A new channel is one type implementing this and one entry in
/// [`crate::services::notification::channels`].
pub trait Channel: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;
    /// Whether this channel acts on `notice` (for a missed message: whether the target's
    /// profile chose it).
    fn wants(&self, notice: &Notice) -> bool;
    /// Acts on a notice it wants.
    fn notify<'a>(&'a self, calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a>;
}

/// The notice of a missed message, or `None` when it was announced before (or the store is
/// down, logged there). Waits until the message is complete, so that its length is known.
async fn missed(calls: &Calls, message_id: i64, target: String) -> Option<Notice> {
    while calls.live_stream(message_id).is_some() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t = target.clone();
    let first = calls
        .store
        .run(move |conn| mailbox::mark_notified(conn, message_id, &t))
        .await;
    if !matches!(first, Ok(true)) {
        return None;
    }
    let profile = calls.profile(&target).await;
    Some(Notice::Missed {
        message_id,
        target,
        profile,
    })
}

/// Hands one notice to every channel that wants it, in order; a missed message's notice is
/// then marked done.
async fn dispatch(calls: &Arc<Calls>, channels: &[Arc<dyn Channel>], notice: Notice) {
    let chosen: Vec<&Arc<dyn Channel>> = channels.iter().filter(|c| c.wants(&notice)).collect();
    if let Notice::Missed { message_id, target, .. } = &notice {
        let names: Vec<&str> = chosen.iter().map(|c| c.name()).collect();
        tracing::info!(message_id, target, channels = %names.join(","), "notifying a missed message");
    }
    for channel in chosen {
        channel.notify(calls, &notice).await;
    }
    if let Notice::Missed { message_id, target, .. } = notice {
        let t = target.clone();
        if let Err(e) = calls
            .store
            .run(move |conn| mailbox::mark_notice_done(conn, message_id, &t))
            .await
        {
            // Harmless but for a repeat after the next crash.
            tracing::warn!(message_id, target, error = %e, "could not mark the notice sent");
        }
    }
}

/// Sends the notices a crash kept from being sent: the unclaimed ones are claimed as usual,
/// the claimed ones go again to every channel.
async fn resume(calls: Arc<Calls>, channels: Arc<[Arc<dyn Channel>]>, unsent: Vec<UnsentNotice>) {
    if !unsent.is_empty() {
        tracing::info!(
            notices = unsent.len(),
            "sending the missed-message notices a crash left unsent"
        );
    }
    for n in unsent {
        let notice = if n.claimed {
            let profile = calls.profile(&n.target).await;
            Some(Notice::Missed {
                message_id: n.message_id,
                target: n.target,
                profile,
            })
        } else {
            missed(&calls, n.message_id, n.target).await
        };
        if let Some(notice) = notice {
            let (calls, channels) = (calls.clone(), channels.clone());
            tokio::spawn(async move { dispatch(&calls, &channels, notice).await });
        }
    }
}

/// Runs the notifier: the notices of `unsent` first, then call events and registrations in,
/// channels out; each notice is handled in its own task, so that a slow channel (a caller-ID
/// call rings for seconds) delays no other notice.
pub fn run(
    calls: Arc<Calls>,
    channels: Vec<Arc<dyn Channel>>,
    mut events: mpsc::UnboundedReceiver<CallEvent>,
    mut registered: mpsc::UnboundedReceiver<String>,
    unsent: Vec<UnsentNotice>,
) {
    let channels: Arc<[Arc<dyn Channel>]> = channels.into();
    tokio::spawn(resume(calls.clone(), channels.clone(), unsent));
    tokio::spawn(async move {
        loop {
            let (calls, channels) = (calls.clone(), channels.clone());
            tokio::select! {
                Some(event) = events.recv() => {
                    tokio::spawn(async move {
                        let notice = match event {
                            CallEvent::Missed { message_id, target } => match missed(&calls, message_id, target).await {
                                Some(n) => n,
                                None => return,
                            },
                            CallEvent::Settled { message_id, target, accepted } => {
                                Notice::Settled { message_id, target, accepted }
                            }
                            CallEvent::MailboxChanged { owner } => Notice::MailboxChanged { owner },
                        };
                        dispatch(&calls, &channels, notice).await;
                    });
                }
                Some(aor) = registered.recv() => {
                    tokio::spawn(async move { dispatch(&calls, &channels, Notice::Registered { aor }).await });
                }
                else => return,
            }
        }
    });
}

/// Whether a target looks like a phone number an SMS can reach.
pub fn is_phone_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    digits.len() >= 6 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())
}
