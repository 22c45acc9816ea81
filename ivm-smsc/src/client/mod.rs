//! The SMS client (an SMPP 3.4 ESME): [`SmsClient`] is the handle the application uses to
//! enqueue notifications and follow their status; a background task (`sender`) does the
//! sending over one [`session::Session`] and a thread owns the outbox.

mod kick;
pub(crate) mod pacing;
pub(crate) mod sender;
pub mod session;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::SmscConfig;
use crate::error::SmsError;
use crate::outbox::worker::OutboxHandle;
use crate::outbox::{Outbox, OutboxCounts, SmsEvent, SmsRequest, SmsStatus};

pub use pacing::{Backoff, RateLimiter};

/// Events buffered per subscriber before a slow one misses some (it can still ask
/// [`SmsClient::status`]).
const EVENT_BUFFER: usize = 4096;

/// Handle to the SMS client. Clones share one background task, one SMPP session and one outbox
/// connection; the task stops on [`SmsClient::shutdown`] or when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct SmsClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: OutboxHandle,
    events: broadcast::Sender<SmsEvent>,
    wake: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl SmsClient {
    /// Opens the outbox in `outbox_db` (creating its tables), then starts the background task
    /// that binds to `cfg.address` and sends whatever is queued, including rows left by an
    /// earlier run. It returns at once; an unreachable SMSC is retried with backoff.
    pub async fn start(cfg: SmscConfig, outbox_db: PathBuf) -> Result<SmsClient, SmsError> {
        cfg.validate()?;
        let outbox = tokio::task::spawn_blocking(move || Outbox::open(&outbox_db))
            .await
            .map_err(|e| SmsError::Storage(format!("outbox open task: {e}")))??;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let handle = OutboxHandle::spawn(outbox, events.clone())?;
        let wake = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(sender::run(cfg, handle.clone(), wake.clone(), shutdown_rx));
        Ok(SmsClient {
            inner: Arc::new(Inner {
                outbox: handle,
                events,
                wake,
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Writes `req` to the outbox (committed when this returns) and wakes the sender. Returns the
    /// row id; with a dedupe key already present, the existing row's id and nothing new is sent.
    pub async fn enqueue(&self, req: SmsRequest) -> Result<i64, SmsError> {
        let id = self.inner.outbox.enqueue(req).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Status changes (`Submitted`, `Delivered`, `Failed`) of every notification, after they
    /// are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<SmsEvent> {
        self.inner.events.subscribe()
    }

    /// The status of outbox row `id`.
    pub async fn status(&self, id: i64) -> Result<SmsStatus, SmsError> {
        self.inner.outbox.status(id).await
    }

    /// Rows per state in the outbox.
    pub async fn counts(&self) -> Result<OutboxCounts, SmsError> {
        self.inner.outbox.counts().await
    }

    /// Stops sending, waits (up to a few seconds) for submits in flight to be answered and
    /// recorded, unbinds, and returns. Rows not yet accepted stay queued for the next start.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(15), task).await.is_err()
        {
            tracing::warn!("SMS client did not stop in time");
        }
        let _ = self.inner.outbox.flush().await;
    }
}
