//! The client's background task: keeps one bound session (reconnecting with backoff), feeds it
//! queued outbox rows within the send window and the rate limit, records each accepted part and
//! each receipt in the outbox, and stops cleanly on shutdown.
//!
//! Exactly-once under normal operation comes from three rules: a part's id is recorded (fire and
//! forget, but ordered before any later read of the outbox) before its row leaves the in-flight
//! set; a row is sent only if it is `queued` in a read of the outbox and was not in flight when
//! that read was issued (a row finishing while the read is answered still looks queued in it);
//! a receipt is committed before its `deliver_sm_resp` is sent. A part whose response never came
//! (connection lost) stays unsent and goes again on the next session: at-least-once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::pacing::{Backoff, RateLimiter};
use super::session::{Session, SessionEvent, SessionEvents, SubmitPart};
use crate::config::SmscConfig;
use crate::error::SessionError;
use crate::outbox::PendingSms;
use crate::outbox::worker::OutboxHandle;

/// Rows read from the outbox per query.
const FETCH: usize = 256;
/// How often the outbox is re-read with nothing new (retries whose time has come).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long shutdown waits for submits in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// Pause after the SMSC says it is throttling or its queue is full.
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Rows with a part in flight, shared with the part tasks.
type InFlight = Arc<Mutex<HashSet<i64>>>;

/// Removes its row from the in-flight set when the last part task of the row finishes.
struct RowGuard {
    id: i64,
    inflight: InFlight,
}

impl Drop for RowGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.inflight.lock() {
            set.remove(&self.id);
        }
    }
}

/// Runs until `shutdown` turns true.
pub(crate) async fn run(cfg: SmscConfig, outbox: OutboxHandle, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.reconnect_min_ms),
        Duration::from_millis(cfg.reconnect_max_ms),
    );
    let mut rate = RateLimiter::new(cfg.rate_per_sec);
    let mut failures = 0u32;
    // Shared across sessions: a part still waiting on a dead session's response keeps its row
    // out of the next session until that task has finished.
    let inflight: InFlight = Arc::new(Mutex::new(HashSet::new()));
    while !*shutdown.borrow() {
        let connect = tokio::select! {
            r = Session::connect(&cfg) => r,
            _ = shutdown.changed() => break,
        };
        match connect {
            Ok((session, events)) => {
                tracing::info!(smsc = %cfg.address, system_id = %cfg.system_id, smsc_system_id = session.smsc_system_id(), "SMPP session bound");
                failures = 0;
                backoff.reset();
                let why = run_session(&session, events, &outbox, &wake, &mut rate, &inflight, &mut shutdown).await;
                match why {
                    End::Shutdown => {
                        drain(&session, cfg.window).await;
                        session.close().await;
                        break;
                    }
                    End::Lost(reason) => {
                        tracing::warn!(smsc = %cfg.address, %reason, "SMPP session lost; reconnecting")
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(smsc = %cfg.address, error = %e, attempts = failures, "SMSC not reachable; retrying with backoff");
                } else {
                    tracing::debug!(smsc = %cfg.address, error = %e, attempts = failures, "SMSC not reachable");
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Err(e) = outbox.flush().await {
        tracing::debug!(error = %e, "outbox flush at shutdown");
    }
}

enum End {
    Shutdown,
    Lost(String),
}

/// Waits until every window permit is back (all submits answered) or [`DRAIN`] passed.
async fn drain(session: &Session, window: usize) {
    let sem = session.window();
    let _ = tokio::time::timeout(DRAIN, sem.acquire_many(window as u32)).await;
}

async fn run_session(
    session: &Session,
    mut events: SessionEvents,
    outbox: &OutboxHandle,
    wake: &Notify,
    rate: &mut RateLimiter,
    inflight: &InFlight,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receipts = {
        let session = session.clone();
        let outbox = outbox.clone();
        let lost = lost_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                match ev {
                    SessionEvent::Receipt {
                        sequence,
                        smsc_id,
                        outcome,
                    } => {
                        let session = session.clone();
                        let outbox = outbox.clone();
                        tokio::spawn(async move {
                            match outbox.receipt(smsc_id.clone(), outcome).await {
                                Ok(m) => {
                                    tracing::debug!(%smsc_id, result = ?m, "delivery receipt");
                                    session.ack_deliver(sequence).await;
                                }
                                // Not acknowledged: the SMSC will send it again.
                                Err(e) => tracing::error!(%smsc_id, error = %e, "delivery receipt not recorded"),
                            }
                        });
                    }
                    SessionEvent::Message {
                        sequence,
                        from,
                        to,
                        text,
                    } => {
                        tracing::info!(%from, %to, %text, "message from the SMSC (not a receipt), ignored");
                        session.ack_deliver(sequence).await;
                    }
                    SessionEvent::Closed(reason) => {
                        let _ = lost.send(reason);
                        break;
                    }
                }
            }
        })
    };
    let paused_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let ctx = Dispatch {
        session,
        outbox,
        inflight: inflight.clone(),
        paused_until,
        lost: lost_tx,
    };
    let end = tokio::select! {
        reason = ctx.dispatch_forever(wake, rate) => End::Lost(reason),
        reason = lost_rx.recv() => End::Lost(reason.unwrap_or_else(|| "session ended".into())),
        _ = shutdown.changed() => End::Shutdown,
    };
    if matches!(end, End::Lost(_)) {
        receipts.abort();
    }
    end
}

struct Dispatch<'a> {
    session: &'a Session,
    outbox: &'a OutboxHandle,
    inflight: InFlight,
    paused_until: Arc<Mutex<Option<Instant>>>,
    lost: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Dispatch<'_> {
    /// Reads the outbox and submits until an error ends the session; returns why.
    async fn dispatch_forever(&self, wake: &Notify, rate: &mut RateLimiter) -> String {
        let mut cursor = 0i64;
        loop {
            // Rows in flight when the read is sent may finish before its answer comes back;
            // their "accepted" mark is queued after the read, so the read still shows them
            // queued. They are skipped by this snapshot, not by the live set.
            let busy = self.inflight_snapshot();
            let rows = match self.outbox.pending(cursor, FETCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the SMS outbox");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            tracing::trace!(cursor, rows = rows.len(), "outbox read");
            let at_end = rows.len() < FETCH;
            let mut dispatched = 0usize;
            for row in rows {
                cursor = row.id;
                if busy.contains(&row.id) || self.is_inflight(row.id) {
                    continue;
                }
                if let Err(reason) = self.send_row(row, rate).await {
                    return reason;
                }
                dispatched += 1;
            }
            if at_end {
                cursor = 0;
                if dispatched == 0 {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
            }
        }
    }

    fn inflight_snapshot(&self) -> HashSet<i64> {
        self.inflight.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn is_inflight(&self, id: i64) -> bool {
        self.inflight.lock().map(|s| s.contains(&id)).unwrap_or(false)
    }

    /// Submits the unsent parts of `row`, each in its own task holding a window permit.
    async fn send_row(&self, row: PendingSms, rate: &mut RateLimiter) -> Result<(), String> {
        let parts = match self.session.encode(&row.to, &row.text, row.concat_ref) {
            Ok(p) => p,
            Err(e) => {
                self.outbox.fail(row.id, e.to_string());
                return Ok(());
            }
        };
        if parts.len() as u32 != row.parts {
            tracing::warn!(
                id = row.id,
                expected = row.parts,
                got = parts.len(),
                "part count changed since enqueue"
            );
        }
        if let Ok(mut set) = self.inflight.lock() {
            set.insert(row.id);
        }
        let guard = Arc::new(RowGuard {
            id: row.id,
            inflight: self.inflight.clone(),
        });
        for (i, part) in parts.into_iter().enumerate() {
            let part_no = i as u32 + 1;
            if row.submitted_parts.contains(&part_no) {
                continue;
            }
            self.wait_unpaused().await;
            let permit = self
                .session
                .window()
                .acquire_owned()
                .await
                .map_err(|_| "window closed".to_string())?;
            if !self.session.is_active() {
                return Err("connection closed".into());
            }
            rate.acquire().await;
            self.spawn_part(row.id, part_no, part, permit, guard.clone());
        }
        Ok(())
    }

    async fn wait_unpaused(&self) {
        let until = self.paused_until.lock().ok().and_then(|p| *p);
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

    fn spawn_part(&self, id: i64, part_no: u32, part: SubmitPart, permit: OwnedSemaphorePermit, guard: Arc<RowGuard>) {
        let session = self.session.clone();
        let outbox = self.outbox.clone();
        let lost = self.lost.clone();
        let paused = self.paused_until.clone();
        tokio::spawn(async move {
            let result = session.submit(&part).await;
            drop(permit);
            match result {
                Ok(smsc_id) => {
                    tracing::debug!(id, part = part_no, %smsc_id, "submit_sm accepted");
                    outbox.part_submitted(id, part_no, smsc_id);
                }
                Err(SessionError::Connection(reason)) => {
                    // Unknown whether the SMSC got it: the row stays queued and is sent again
                    // on the next session.
                    let _ = lost.send(reason);
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(id, part = part_no, error = %e, "submit_sm refused for now; retrying later");
                    if let Ok(mut p) = paused.lock() {
                        *p = Some(Instant::now() + THROTTLE_PAUSE);
                    }
                    outbox.retry(id, e.to_string(), Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(id, part = part_no, error = %e, "submit_sm refused; notification failed");
                    outbox.fail(id, e.to_string());
                }
            }
            drop(guard);
        });
    }
}
