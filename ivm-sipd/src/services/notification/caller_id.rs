//! The smart caller-ID call (claim 003-29): a short outbound call to the target whose From user
//! is the message's retrieval number and whose display name says who sent it, so the phone
//! shows a missed call that, called back, plays the message. It rings for
//! `[notify] callerid_ring_secs` and is then cancelled; if it is answered anyway, IVM hangs up.

use std::sync::Arc;

use ivm_media::endpoint::RtpEndpoint;
use ivm_media::sdp::SessionVersion;

use super::notifier::{Channel, Job, Notice};
use crate::services::calls::Calls;
use crate::services::calls::target_leg::{self, Caller, Destination};
use crate::stack::invite::client::{ClientInvite, RingOutcome};

/// Announces a missed message by the caller-ID call, when the target's profile chose it (a
/// number that is no subscriber always gets it).
pub struct CallerIdChannel;

impl Channel for CallerIdChannel {
    fn name(&self) -> &'static str {
        "callerid"
    }

    fn wants(&self, notice: &Notice) -> bool {
        match notice {
            Notice::Missed { profile, .. } => profile.as_ref().is_none_or(|p| p.notify_callerid),
            _ => false,
        }
    }

    fn notify<'a>(&'a self, calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a> {
        Box::pin(async move {
            if let Notice::Missed { message_id, target, .. } = notice {
                call(calls.clone(), *message_id, target.clone()).await;
            }
        })
    }
}

/// Places the caller-ID call for a missed message.
pub async fn call(calls: Arc<Calls>, message_id: i64, target: String) {
    let presence = calls.presence.availability(&target);
    if !presence.reachable() {
        // A busy or do-not-disturb target is not rung for a notification either.
        return tracing::info!(
            message_id,
            target,
            presence = presence.name(),
            "caller-ID call: target unavailable"
        );
    }
    let Some(dest) = destination(&calls, &target).await else {
        tracing::info!(message_id, target, "caller-ID call: no way to reach the target");
        return;
    };
    let Some(hop) = target_leg::route(&calls, &dest) else {
        tracing::info!(message_id, target, "caller-ID call: target not registered");
        return;
    };
    let m = calls.message(message_id).await;
    let sender = m.map(|m| m.sender).unwrap_or_default();
    let Some(number) = calls.retrieval_number(message_id) else {
        return;
    };
    let Ok(Ok(endpoint)) = calls.ports.bind(calls.settings.media_ip).await.map(RtpEndpoint::new) else {
        return;
    };
    let display = format!("IVM {sender}");
    let invite = target_leg::build_invite(
        &calls,
        Caller {
            user: &number,
            display: &display,
        },
        &dest.label,
        &hop,
        &endpoint,
        &SessionVersion::new(),
        &format!("Voice message from {sender}: call {number}"),
        false,
    );
    tracing::info!(message_id, target, from = %number, "caller-ID call");
    let ringing = ClientInvite::send(&calls.core, &calls.dialogs, invite, hop.peer);
    if let RingOutcome::Answered(mut call) = ringing.ring(calls.settings.callerid_ring).await {
        // Answered: this call only carries the number; hang up.
        call.hang_up();
    }
}

/// The target itself when it is a registered subscriber, else its MSISDN (or the number
/// itself) through a trunk.
async fn destination(calls: &Calls, target: &str) -> Option<Destination> {
    let profile = calls.profile(target).await;
    if profile.is_some() && !calls.location.lookup(target, crate::store::unix_now()).is_empty() {
        return Some(Destination::subscriber(target.to_owned()));
    }
    let number = profile.and_then(|p| p.msisdn).unwrap_or_else(|| target.to_owned());
    calls
        .trunks
        .route(&number)
        .map(|trunk| Destination::trunk(number, trunk))
}
