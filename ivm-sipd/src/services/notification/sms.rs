//! The SMS channel: the texts IVM sends (a missed message with its retrieval number, a status
//! to the sender) and their hand-over to the SMSC client's persistent outbox, keyed so that a
//! notification is queued once however often it is asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::services::calls::Calls;
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

impl SmsGateway for ivm_smsc::SmsClient {
    fn queue(
        &self,
        dedupe_key: String,
        to: String,
        text: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let reference = Some(dedupe_key.clone());
            self.enqueue(ivm_smsc::SmsRequest {
                dedupe_key,
                to,
                text,
                reference,
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }
}

/// Starts SMS as `[smsc]` says: the built-in SMSC (kept running for the process) and the
/// client with its outbox in the data directory's database; receipts of missed-message SMS are
/// written to their delivery.
pub async fn start(
    cfg: &crate::app::config::SmsConfig,
    db: std::path::PathBuf,
    store: crate::store::writer::StoreHandle,
) -> anyhow::Result<Option<ivm_smsc::SmsClient>> {
    use crate::app::config::SmsMode;
    use anyhow::Context;
    let address = match cfg.mode {
        SmsMode::Off => return Ok(None),
        SmsMode::External => cfg.address.clone(),
        SmsMode::Builtin => {
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("cannot start the built-in SMSC on {} (smsc.listen)", cfg.listen))?;
            // The SMSC keeps serving when its handle is dropped: it runs as long as the process.
            ivm_smsc::server::serve(listener, ivm_smsc::server::ServerConfig::default()).await?;
            tracing::info!(listen = %cfg.listen, "built-in SMSC listening");
            cfg.listen.to_string()
        }
    };
    let client_cfg = ivm_smsc::SmscConfig {
        address,
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        source_addr: cfg.source_addr.clone(),
        window: cfg.window,
        rate_per_sec: cfg.rate_per_sec,
        ..ivm_smsc::SmscConfig::default()
    };
    let client = ivm_smsc::SmsClient::start(client_cfg, db)
        .await
        .context("starting the SMPP client")?;
    let mut events = client.subscribe();
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "SMS events lagged");
                    continue;
                }
                Err(_) => return,
            };
            let state = match &ev.status {
                ivm_smsc::SmsStatus::Submitted { .. } => "submitted",
                ivm_smsc::SmsStatus::Delivered => "delivered",
                ivm_smsc::SmsStatus::Failed(_) => "failed",
                ivm_smsc::SmsStatus::Queued => continue,
            };
            tracing::info!(key = %ev.dedupe_key, state, "SMS status");
            if let Some((message_id, target)) = parse_missed_key(&ev.dedupe_key) {
                let target = target.to_owned();
                let _ = store
                    .run(move |conn| mailbox::set_sms_state(conn, message_id, &target, state))
                    .await;
            }
        }
    });
    Ok(Some(client))
}

/// `missed:<message id>:<target>` → its parts.
fn parse_missed_key(key: &str) -> Option<(i64, &str)> {
    let rest = key.strip_prefix("missed:")?;
    let (id, target) = rest.split_once(':')?;
    Some((id.parse().ok()?, target))
}

/// The text announcing a missed message.
pub fn missed_text(sender: &str, duration_ms: i64, retrieval_number: &str) -> String {
    let secs = (duration_ms + 999) / 1000;
    format!("Voice message from {sender} ({secs} s). Call {retrieval_number} to listen.")
}

/// Announces a missed message to `to` (an MSISDN).
pub async fn missed(calls: &Arc<Calls>, message_id: i64, target: &str, to: &str) {
    let Some(m) = calls.message(message_id).await else {
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
    fn missed_keys() {
        assert_eq!(
            parse_missed_key("missed:12:+4915112345678"),
            Some((12, "+4915112345678"))
        );
        assert_eq!(parse_missed_key("status:1:2:true"), None);
    }

    #[test]
    fn missed_text_names_sender_length_and_number() {
        assert_eq!(
            missed_text("2001", 12_340, "980000121"),
            "Voice message from 2001 (13 s). Call 980000121 to listen."
        );
    }
}
