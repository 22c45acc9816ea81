//! The way to the SMSC: the SMPP client with its persistent outbox (or none when `[smsc]` is
//! off), texts handed over under a dedupe key so that a notification is queued once however
//! often it is asked for, and delivery receipts written back to the missed message's delivery.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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

/// The file in the data directory that holds the built-in SMSC's generated bind password.
pub const PASSWORD_FILE: &str = "smsc-password";

/// The built-in SMSC's password: read from `path`, or made (8 random letters and digits, the
/// most SMPP 3.4 allows) and written there, readable by the owner only, at the first start.
fn builtin_password(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Ok(text) = std::fs::read_to_string(path) {
        let p = text.trim().to_owned();
        if !p.is_empty() {
            return Ok(p);
        }
    }
    // SMPP 3.4 passwords are at most 8 characters (§5.2.2, a C-Octet String of 9).
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut raw = [0u8; 8];
    rand::fill(&mut raw);
    let password: String = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    crate::store::secret_file::write(path, &format!("{password}\n"), true)
        .with_context(|| format!("cannot write the built-in SMSC password to {}", path.display()))?;
    tracing::info!(file = %path.display(), "built-in SMSC: bind password generated");
    Ok(password)
}

/// Starts SMS as `[smsc]` says: the built-in SMSC (kept running for the process) and the
/// client with its outbox in the data directory's database; receipts of missed-message SMS are
/// written to their delivery.
pub async fn start(
    cfg: &crate::config::SmsConfig,
    db: std::path::PathBuf,
    store: crate::store::writer::StoreHandle,
) -> anyhow::Result<Option<ivm_smsc::SmsClient>> {
    use crate::config::SmsMode;
    use anyhow::Context;
    let mut password = cfg.password.clone();
    let address = match cfg.mode {
        SmsMode::Off => return Ok(None),
        SmsMode::External => cfg.address.clone(),
        SmsMode::Builtin => {
            if password.is_empty() {
                let dir = db.parent().unwrap_or(std::path::Path::new("."));
                password = builtin_password(&dir.join(PASSWORD_FILE))?;
            }
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("cannot start the built-in SMSC on {} (smsc.listen)", cfg.listen))?;
            let server_cfg = ivm_smsc::server::ServerConfig {
                system_id: Some(cfg.system_id.clone()),
                password: Some(password.clone()),
                ..ivm_smsc::server::ServerConfig::default()
            };
            // The SMSC keeps serving when its handle is dropped: it runs as long as the process.
            ivm_smsc::server::serve(listener, server_cfg).await?;
            tracing::info!(listen = %cfg.listen, system_id = cfg.system_id, "built-in SMSC listening");
            cfg.listen.to_string()
        }
    };
    let client_cfg = ivm_smsc::SmscConfig {
        address,
        system_id: cfg.system_id.clone(),
        password,
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

/// The dedupe key of a missed-message SMS.
pub fn missed_key(message_id: i64, target: &str) -> String {
    format!("missed:{message_id}:{target}")
}

/// `missed:<message id>:<target>` → its parts.
fn parse_missed_key(key: &str) -> Option<(i64, &str)> {
    let rest = key.strip_prefix("missed:")?;
    let (id, target) = rest.split_once(':')?;
    Some((id.parse().ok()?, target))
}

/// Queues a text; logs when no SMSC is configured or the outbox refuses it.
pub async fn send(gateway: Option<&Arc<dyn SmsGateway>>, dedupe_key: &str, to: &str, text: &str) {
    let Some(gateway) = gateway else {
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
        assert_eq!(parse_missed_key(&missed_key(7, "1001")), Some((7, "1001")));
    }
}
