//! Store and forward (SPEC §4.6, claims 000-6, 000-21): when a target with pending messages
//! registers, deliver them once by its rule — call it and play each message (a target leg over
//! the stored audio), or only notify (MWI, already re-sent on register).

use std::sync::Arc;

use ivm_media::codec::Codec;
use tokio::sync::mpsc;

use super::notifier::{Channel, Job, Notice};
use crate::services::calls::Calls;
use crate::services::calls::playback::Audio;
use crate::services::calls::target_leg::{self, Destination, MessageInfo};
use crate::store::mailbox;

/// Plays a target's pending messages to it when it registers again, if its rule says so.
pub struct StoreForwardChannel;

impl Channel for StoreForwardChannel {
    fn name(&self) -> &'static str {
        "store-and-forward"
    }

    fn wants(&self, notice: &Notice) -> bool {
        matches!(notice, Notice::Registered { .. })
    }

    fn notify<'a>(&'a self, calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a> {
        Box::pin(async move {
            if let Notice::Registered { aor } = notice {
                deliver(calls.clone(), aor.clone()).await;
            }
        })
    }
}

/// Delivers `aor`'s pending messages by its rule.
async fn deliver(calls: Arc<Calls>, aor: String) {
    let Some(profile) = calls.profile(&aor).await else {
        return;
    };
    if !profile.forward_by_call {
        return;
    }
    let presence = calls.presence.availability(&aor);
    if !presence.reachable() {
        // Not while busy or on do-not-disturb; the next registration tries again.
        return tracing::info!(
            aor,
            presence = presence.name(),
            "store and forward: target unavailable, not called"
        );
    }
    let a = aor.clone();
    let pending = match calls.store.run(move |conn| mailbox::take_pending(conn, &a)).await {
        Ok(p) => p,
        Err(e) => return tracing::error!(aor, error = %e, "store and forward: pending messages unavailable"),
    };
    for message_id in pending {
        let Some(m) = calls.message(message_id).await else {
            continue;
        };
        let audio = match calls.live_stream(message_id) {
            Some(stream) => Audio::Live(stream),
            None => {
                let codec = calls.fragments.codec(message_id).ok().flatten().unwrap_or(Codec::Pcmu);
                let frames = calls.fragments.committed_frames(message_id).unwrap_or(0);
                Audio::Stored {
                    message_id,
                    codec,
                    frames,
                }
            }
        };
        tracing::info!(message_id, aor, "store and forward: calling to play a pending message");
        let info = Arc::new(MessageInfo {
            id: message_id,
            sender: m.sender,
            ptt: false,
        });
        let (to_sender, _) = mpsc::channel(1);
        target_leg::run(
            calls.clone(),
            info,
            audio,
            Destination::subscriber(aor.clone()),
            to_sender,
        )
        .await;
    }
}
