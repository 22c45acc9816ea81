//! The SMS channel: the texts IVM sends (a missed message with its retrieval number, a status
//! to the sender) and their hand-over to the SMSC client's persistent outbox, keyed so that a
//! notification is queued once however often it is asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::b2bua::Calls;
use crate::store::mailbox;

/// Queues one SMS durably (the SMSC client's outbox); a second request with the same dedupe key
/// is a no-op.
pub trait SmsGateway: Send + Sync + 'static {
    fn queue(
        &self,
        dedupe_key: String,
        to: String,
        text: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// The text announcing a missed message.
pub fn missed_text(sender: &str, duration_ms: i64, retrieval_number: &str) -> String {
    let secs = (duration_ms + 999) / 1000;
    format!("Voice message from {sender} ({secs} s). Call {retrieval_number} to listen.")
}

/// Announces a missed message to `to` (an MSISDN).
pub async fn missed(calls: &Arc<Calls>, message_id: i64, target: &str, to: &str) {
    let Some(m) = calls
        .store
        .run(move |conn| mailbox::message(conn, message_id))
        .await
        .ok()
        .flatten()
    else {
        return;
    };
    let Some(number) = calls.retrieval_number(message_id) else {
        return;
    };
    let text = missed_text(&m.sender, m.duration_ms, &number);
    send(calls, &format!("missed:{message_id}:{target}"), to, &text).await;
}

/// Queues a text; logs when no SMSC is configured or the outbox refuses it.
pub async fn send(calls: &Arc<Calls>, dedupe_key: &str, to: &str, text: &str) {
    let Some(gateway) = &calls.sms else {
        tracing::warn!(to, "SMS not sent: no SMSC configured");
        return;
    };
    match gateway
        .queue(dedupe_key.to_owned(), to.to_owned(), text.to_owned())
        .await
    {
        Ok(()) => tracing::info!(to, key = dedupe_key, "SMS queued"),
        Err(e) => tracing::error!(to, key = dedupe_key, error = %e, "SMS not queued"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_text_names_sender_length_and_number() {
        assert_eq!(
            missed_text("2001", 12_340, "980000121"),
            "Voice message from 2001 (13 s). Call 980000121 to listen."
        );
    }
}
