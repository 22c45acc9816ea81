//! The load generator behind `ivm-smsc bench`: `submit_sm` per second to an SMSC with the send
//! window on, either on one raw session (the client's submit path: window semaphore, rate limit,
//! rusmppc) or through the whole [`SmsClient`] (outbox enqueue, group commit, submit, receipts).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::session::{Session, SessionEvent};
use crate::client::{RateLimiter, SmsClient};
use crate::config::SmscConfig;
use crate::error::{SessionError, SmsError};
use crate::outbox::SmsRequest;

/// Result of a session benchmark.
#[derive(Debug, Clone, Copy)]
pub struct SessionReport {
    /// `submit_sm` sent.
    pub count: usize,
    /// Accepted by the SMSC.
    pub accepted: usize,
    /// The window used.
    pub window: usize,
    /// From the first submit to the last response.
    pub elapsed: Duration,
    /// Delivery receipts received by the end.
    pub receipts: usize,
}

impl SessionReport {
    /// Accepted submits per second.
    pub fn per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `count` one-part messages on one bound session, at most `cfg.window` unanswered and at
/// most `cfg.rate_per_sec`, and times it.
pub async fn session(cfg: &SmscConfig, count: usize, to: &str, text: &str) -> Result<SessionReport, SessionError> {
    let (session, mut events) = Session::connect(cfg).await?;
    let receipts = Arc::new(AtomicUsize::new(0));
    let acks = {
        let session = session.clone();
        let receipts = receipts.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                match ev {
                    SessionEvent::Receipt { sequence, .. } => {
                        receipts.fetch_add(1, Ordering::Relaxed);
                        session.ack_deliver(sequence).await;
                    }
                    SessionEvent::Message { sequence, .. } => session.ack_deliver(sequence).await,
                    SessionEvent::Closed(_) => break,
                }
            }
        })
    };
    let parts = session.encode(to, text, 0)?;
    let Some(part) = parts.into_iter().next() else {
        return Err(SessionError::Pdu("empty text".into()));
    };
    let part = Arc::new(part);
    let accepted = Arc::new(AtomicUsize::new(0));
    let window = session.window();
    let mut rate = RateLimiter::new(cfg.rate_per_sec);
    let start = Instant::now();
    for _ in 0..count {
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SessionError::Connection("window closed".into()))?;
        rate.acquire().await;
        let (session, part, accepted) = (session.clone(), part.clone(), accepted.clone());
        tokio::spawn(async move {
            if session.submit(&part).await.is_ok() {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    let _ = window.acquire_many(cfg.window as u32).await;
    let elapsed = start.elapsed();
    // Give the last receipts a moment (they trail the responses by the SMSC's receipt delay).
    let deadline = Instant::now() + Duration::from_secs(2);
    while receipts.load(Ordering::Relaxed) < accepted.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    session.close().await;
    acks.abort();
    Ok(SessionReport {
        count,
        accepted: accepted.load(Ordering::Relaxed),
        window: cfg.window,
        elapsed,
        receipts: receipts.load(Ordering::Relaxed),
    })
}

/// Result of an outbox benchmark.
#[derive(Debug, Clone, Copy)]
pub struct OutboxReport {
    /// Notifications enqueued.
    pub count: usize,
    /// Time to enqueue (commit) them all.
    pub enqueue: Duration,
    /// From the first enqueue until every one was accepted by the SMSC.
    pub submitted: Duration,
    /// Delivered (receipt recorded) by the end.
    pub delivered: usize,
}

impl OutboxReport {
    /// Notifications accepted by the SMSC per second, end to end.
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.submitted.as_secs_f64().max(1e-9)
    }
}

/// Enqueues `count` notifications into a fresh outbox at `db` (many enqueues in flight, as a
/// busy application would) and times until the SMSC accepted all of them.
pub async fn outbox(
    cfg: SmscConfig,
    db: PathBuf,
    count: usize,
    to: &str,
    text: &str,
) -> Result<OutboxReport, SmsError> {
    let client = SmsClient::start(cfg, db).await?;
    let run = format!("bench:{}", std::process::id());
    let start = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..count {
        let c = client.clone();
        let req = SmsRequest {
            dedupe_key: format!("{run}:{i}"),
            to: to.to_string(),
            text: text.to_string(),
            reference: None,
        };
        joins.spawn(async move { c.enqueue(req).await });
        if joins.len() >= 512
            && let Some(r) = joins.join_next().await
        {
            r.map_err(|e| SmsError::Storage(e.to_string()))??;
        }
    }
    while let Some(r) = joins.join_next().await {
        r.map_err(|e| SmsError::Storage(e.to_string()))??;
    }
    let enqueue = start.elapsed();
    // Poll the outbox (the event stream would drop events for a reader this far behind).
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64 / 100);
    let mut submitted_at = None;
    let c = loop {
        let c = client.counts().await?;
        let accepted = (c.submitted + c.delivered + c.failed) as usize;
        if accepted >= count && submitted_at.is_none() {
            submitted_at = Some(start.elapsed());
        }
        if (c.delivered + c.failed) as usize >= count || Instant::now() >= deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    client.shutdown().await;
    let Some(submitted) = submitted_at else {
        return Err(SmsError::Storage(format!(
            "only {} of {count} accepted before the deadline",
            c.submitted + c.delivered + c.failed
        )));
    };
    Ok(OutboxReport {
        count,
        enqueue,
        submitted,
        delivered: c.delivered as usize,
    })
}
