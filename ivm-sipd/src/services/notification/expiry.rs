//! Mailbox expiry: unsaved messages older than `[calls] expiry_days` are removed every hour,
//! and the lamp of each mailbox that changed follows.

use std::sync::Arc;
use std::time::Duration;

use crate::services::calls::Calls;
use crate::services::mwi::Mwi;
use crate::store::mailbox;

/// Expires unsaved messages older than `days`, checking every hour; MWI follows.
pub fn start(calls: Arc<Calls>, mwi: Mwi, days: u64) {
    let max_age_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            match calls.store.run(move |conn| mailbox::expire(conn, max_age_ms)).await {
                Ok(targets) => {
                    for t in targets {
                        tracing::info!(target = %t, "messages expired");
                        mwi.changed(&t);
                    }
                }
                Err(e) => tracing::error!(error = %e, "expiry failed"),
            }
        }
    });
}
