//! What follows a delivery (SPEC §4 flows 2, 4, 6): a missed message is announced on every
//! channel the target's rules name — SMS, a smart caller-ID call, MWI — once; the sender hears
//! whether its message was accepted or rejected; a target that registers again gets its pending
//! messages by its rule. One file per channel.

pub mod caller_id;
pub mod mwi;
pub mod sender_status;
pub mod sms;
pub mod store_forward;

use std::sync::Arc;

use crate::services::calls::Calls;
use crate::store::mailbox;

/// A delivery to `target` ended unanswered: notify it, once.
pub fn missed(calls: &Arc<Calls>, message_id: i64, target: &str) {
    let (calls, target) = (calls.clone(), target.to_owned());
    tokio::spawn(async move {
        // Announce a message once it is complete, so the SMS can say how long it is.
        while calls.live_stream(message_id).is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let t = target.clone();
        let first = calls
            .store
            .run(move |conn| mailbox::mark_notified(conn, message_id, &t))
            .await;
        if !matches!(first, Ok(true)) {
            return; // already notified (or the store is down: logged there)
        }
        let profile = calls.profile(&target).await;
        let (sms_to, callerid, mwi) = match &profile {
            Some(p) => (
                p.msisdn.clone().filter(|_| p.notify_sms),
                p.notify_callerid,
                p.notify_mwi,
            ),
            // Not a subscriber (a number behind a trunk): every channel that applies to a number.
            None => (Some(target.clone()).filter(|t| is_phone_number(t)), true, false),
        };
        tracing::info!(
            message_id,
            target,
            sms = sms_to.is_some(),
            callerid,
            mwi,
            "notifying a missed message"
        );
        if mwi {
            calls.mwi.changed(&target);
        }
        if let Some(to) = sms_to {
            sms::missed(&calls, message_id, &target, &to).await;
        }
        if callerid {
            caller_id::call(calls.clone(), message_id, target.clone()).await;
        }
    });
}

/// A delivery ended accepted (heard live or retrieved) or rejected: tell the sender, update MWI.
pub fn outcome(calls: &Arc<Calls>, message_id: i64, target: &str, accepted: bool) {
    let (calls, target) = (calls.clone(), target.to_owned());
    tokio::spawn(async move {
        calls.mwi.changed(&target);
        sender_status::report(&calls, message_id, &target, accepted).await;
    });
}

/// `aor` registered: MWI state again, and its pending messages by its rule.
pub fn registered(calls: &Arc<Calls>, aor: &str) {
    calls.mwi.registered(aor);
    let (calls, aor) = (calls.clone(), aor.to_owned());
    tokio::spawn(async move { store_forward::deliver(calls, aor).await });
}

/// Whether a target looks like a phone number an SMS can reach.
pub fn is_phone_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    digits.len() >= 6 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Expires unsaved messages older than `days`, checking every hour; MWI follows.
pub fn start_expiry(calls: Arc<Calls>, days: u64) {
    let max_age_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            match calls.store.run(move |conn| mailbox::expire(conn, max_age_ms)).await {
                Ok(targets) => {
                    for t in targets {
                        tracing::info!(target = %t, "messages expired");
                        calls.mwi.changed(&t);
                    }
                }
                Err(e) => tracing::error!(error = %e, "expiry failed"),
            }
        }
    });
}
