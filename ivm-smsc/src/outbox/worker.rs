//! The outbox thread: owns the [`Outbox`] connection and applies operations sent from async
//! code in batches, one transaction (one fsync) per batch — group commit. Replies and
//! [`SmsEvent`]s go out only after the batch is committed, so anything a caller has been told
//! is on disk. Operations are applied in the order they were sent.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Outbox, OutboxCounts, PendingSms, ReceiptMatch, SmsEvent, SmsRequest, SmsStatus};
use crate::error::SmsError;
use crate::receipt::ReceiptOutcome;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, SmsError>>;

enum Op {
    Enqueue(SmsRequest, Reply<i64>),
    Pending {
        after: i64,
        limit: usize,
        reply: Reply<Vec<PendingSms>>,
    },
    PartSubmitted {
        id: i64,
        part: u32,
        smsc_id: String,
    },
    Receipt {
        smsc_id: String,
        outcome: ReceiptOutcome,
        reply: Reply<ReceiptMatch>,
    },
    Retry {
        id: i64,
        error: String,
        delay: Duration,
    },
    Fail {
        id: i64,
        error: String,
    },
    Status(i64, Reply<SmsStatus>),
    Counts(Reply<OutboxCounts>),
    Flush(Reply<()>),
}

/// A reply held until the batch commits.
enum Done {
    Id(Reply<i64>, Result<i64, SmsError>),
    Pending(Reply<Vec<PendingSms>>, Result<Vec<PendingSms>, SmsError>),
    Receipt(Reply<ReceiptMatch>, Result<ReceiptMatch, SmsError>),
    Status(Reply<SmsStatus>, Result<SmsStatus, SmsError>),
    Counts(Reply<OutboxCounts>, Result<OutboxCounts, SmsError>),
    Unit(Reply<()>),
}

impl Done {
    fn send(self, commit_error: Option<&str>) {
        let fail = |e: &str| SmsError::Storage(format!("transaction failed: {e}"));
        match (self, commit_error) {
            (Done::Id(tx, r), None) => drop(tx.send(r)),
            (Done::Pending(tx, r), None) => drop(tx.send(r)),
            (Done::Receipt(tx, r), None) => drop(tx.send(r)),
            (Done::Status(tx, r), None) => drop(tx.send(r)),
            (Done::Counts(tx, r), None) => drop(tx.send(r)),
            (Done::Unit(tx), None) => drop(tx.send(Ok(()))),
            (Done::Id(tx, _), Some(e)) => drop(tx.send(Err(fail(e)))),
            (Done::Pending(tx, _), Some(e)) => drop(tx.send(Err(fail(e)))),
            (Done::Receipt(tx, _), Some(e)) => drop(tx.send(Err(fail(e)))),
            (Done::Status(tx, _), Some(e)) => drop(tx.send(Err(fail(e)))),
            (Done::Counts(tx, _), Some(e)) => drop(tx.send(Err(fail(e)))),
            (Done::Unit(tx), Some(e)) => drop(tx.send(Err(fail(e)))),
        }
    }
}

/// The async side of the outbox thread. Cloning shares the thread; it exits when every handle
/// is dropped, after applying what was sent.
#[derive(Clone, Debug)]
pub(crate) struct OutboxHandle {
    tx: mpsc::UnboundedSender<Op>,
}

impl OutboxHandle {
    /// Starts the thread on an opened outbox; events are broadcast on `events` after commit.
    pub(crate) fn spawn(outbox: Outbox, events: broadcast::Sender<SmsEvent>) -> Result<OutboxHandle, SmsError> {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("ivm-sms-outbox".into())
            .spawn(move || run(outbox, rx, events))
            .map_err(|e| SmsError::InvalidConfig(format!("cannot start the outbox thread: {e}")))?;
        Ok(OutboxHandle { tx })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, SmsError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| SmsError::Closed)?;
        rx.await.map_err(|_| SmsError::Closed)?
    }

    pub(crate) async fn enqueue(&self, req: SmsRequest) -> Result<i64, SmsError> {
        self.call(|r| Op::Enqueue(req, r)).await
    }

    pub(crate) async fn pending(&self, after: i64, limit: usize) -> Result<Vec<PendingSms>, SmsError> {
        self.call(|reply| Op::Pending { after, limit, reply }).await
    }

    /// Fire-and-forget: applied in order before any later operation.
    pub(crate) fn part_submitted(&self, id: i64, part: u32, smsc_id: String) {
        let _ = self.tx.send(Op::PartSubmitted { id, part, smsc_id });
    }

    /// Resolves once the receipt is committed (then it is safe to answer `deliver_sm_resp`).
    pub(crate) async fn receipt(&self, smsc_id: String, outcome: ReceiptOutcome) -> Result<ReceiptMatch, SmsError> {
        self.call(|reply| Op::Receipt {
            smsc_id,
            outcome,
            reply,
        })
        .await
    }

    pub(crate) fn retry(&self, id: i64, error: String, delay: Duration) {
        let _ = self.tx.send(Op::Retry { id, error, delay });
    }

    pub(crate) fn fail(&self, id: i64, error: String) {
        let _ = self.tx.send(Op::Fail { id, error });
    }

    pub(crate) async fn status(&self, id: i64) -> Result<SmsStatus, SmsError> {
        self.call(|r| Op::Status(id, r)).await
    }

    pub(crate) async fn counts(&self) -> Result<OutboxCounts, SmsError> {
        self.call(Op::Counts).await
    }

    /// Resolves when everything sent before it is committed.
    pub(crate) async fn flush(&self) -> Result<(), SmsError> {
        self.call(Op::Flush).await
    }
}

fn run(mut outbox: Outbox, mut rx: mpsc::UnboundedReceiver<Op>, events: broadcast::Sender<SmsEvent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut evs = Vec::new();
        let committed = match outbox.begin() {
            Ok(()) => {
                for op in batch.drain(..) {
                    apply(&mut outbox, op, &mut done, &mut evs);
                }
                outbox.commit()
            }
            Err(e) => {
                // Nothing applied: answer every request with the error; fire-and-forget
                // operations are lost, which leaves their rows queued (sent again later).
                for op in batch.drain(..) {
                    if let Some(d) = unapplied(op) {
                        done.push(d);
                    }
                }
                Err(e)
            }
        };
        match committed {
            Ok(()) => {
                for d in done {
                    d.send(None);
                }
                for e in evs {
                    tracing::debug!(id = e.id, status = ?e.status, "sms status");
                    let _ = events.send(e);
                }
            }
            Err(e) => {
                outbox.rollback();
                let msg = e.to_string();
                tracing::error!(error = %msg, db = %outbox.path().display(), "SMS outbox transaction failed");
                for d in done {
                    d.send(Some(&msg));
                }
            }
        }
    }
    tracing::debug!("SMS outbox thread stopped");
}

/// The pending reply of an operation that was not applied.
fn unapplied(op: Op) -> Option<Done> {
    // The result is replaced by the transaction error when the reply is sent.
    match op {
        Op::Enqueue(_, r) => Some(Done::Id(r, Err(SmsError::Closed))),
        Op::Pending { reply, .. } => Some(Done::Pending(reply, Err(SmsError::Closed))),
        Op::Receipt { reply, .. } => Some(Done::Receipt(reply, Err(SmsError::Closed))),
        Op::Status(_, r) => Some(Done::Status(r, Err(SmsError::Closed))),
        Op::Counts(r) => Some(Done::Counts(r, Err(SmsError::Closed))),
        Op::Flush(r) => Some(Done::Unit(r)),
        Op::PartSubmitted { .. } | Op::Retry { .. } | Op::Fail { .. } => None,
    }
}

fn apply(outbox: &mut Outbox, op: Op, done: &mut Vec<Done>, evs: &mut Vec<SmsEvent>) {
    let log = |what: &str, id: i64, e: &SmsError| tracing::error!(id, error = %e, "SMS outbox: {what} failed");
    match op {
        Op::Enqueue(req, reply) => {
            let r = outbox.enqueue(&req).map(|(id, _)| id);
            done.push(Done::Id(reply, r));
        }
        Op::Pending { after, limit, reply } => done.push(Done::Pending(reply, outbox.pending(after, limit))),
        Op::PartSubmitted { id, part, smsc_id } => match outbox.mark_part_submitted(id, part, &smsc_id) {
            Ok(e) => evs.extend(e),
            Err(e) => log("recording a submitted part", id, &e),
        },
        Op::Receipt {
            smsc_id,
            outcome,
            reply,
        } => {
            let r = outbox.record_receipt(&smsc_id, &outcome);
            if let Ok(ReceiptMatch::Matched { event: Some(e), .. }) = &r {
                evs.push(e.clone());
            }
            done.push(Done::Receipt(reply, r));
        }
        Op::Retry { id, error, delay } => match outbox.retry_later(id, &error, delay) {
            Ok(e) => evs.extend(e),
            Err(e) => log("scheduling a retry", id, &e),
        },
        Op::Fail { id, error } => match outbox.fail(id, &error) {
            Ok(e) => evs.extend(e),
            Err(e) => log("marking failed", id, &e),
        },
        Op::Status(id, reply) => done.push(Done::Status(reply, outbox.status(id))),
        Op::Counts(reply) => done.push(Done::Counts(reply, outbox.counts())),
        Op::Flush(reply) => done.push(Done::Unit(reply)),
    }
}
