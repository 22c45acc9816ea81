//! Where the built-in SMSC's `deliver_sm`s go: the registry of bound sessions, the receipt
//! timer, receipts held for a `system_id` with no receiver bound, and copies of submitted
//! messages for sessions that watch them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusmpp::Command;
use rusmpp::pdus::DeliverSm;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the writer is asked to send.
#[derive(Debug)]
pub(crate) enum Out {
    /// A response or other PDU, now.
    Now(Command),
    /// A `submit_sm_resp`, at `at` (or now); counts down the outstanding submits when written.
    SubmitResp(Option<Instant>, Command),
    /// A `deliver_sm`; the writer numbers it and waits for its `deliver_sm_resp`.
    Deliver(DeliverSm),
    /// The `deliver_sm_resp` for this sequence number came.
    Acked(u32),
}

/// How a session is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    pub(crate) fn can_receive(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }

    pub(crate) fn can_submit(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }
}

#[derive(Debug)]
struct Entry {
    system_id: String,
    kind: BindKind,
    address_range: String,
    tx: mpsc::UnboundedSender<Out>,
}

impl Entry {
    /// Whether this session wants copies of messages to `destination`: receivers with an empty
    /// range take all; otherwise the range (a prefix, `^`/`$`/`*` ignored) must match.
    fn watches(&self, destination: &str) -> bool {
        if !self.kind.can_receive() {
            return false;
        }
        let range = self
            .address_range
            .trim_start_matches('^')
            .trim_end_matches('$')
            .trim_end_matches(".*");
        let range = range.trim_end_matches('*').trim_start_matches('+');
        if range.is_empty() {
            return self.kind == BindKind::Receiver;
        }
        destination.trim_start_matches('+').starts_with(range)
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<u64, Entry>,
    pending: HashMap<String, VecDeque<DeliverSm>>,
    pending_total: usize,
}

/// A receipt waiting for its time.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    origin: u64,
    system_id: String,
    dsm: DeliverSm,
}

/// Registry and routing; shared by all connections.
#[derive(Debug)]
pub(crate) struct Router {
    inner: Mutex<Inner>,
    watchers: AtomicUsize,
    timer: mpsc::UnboundedSender<Scheduled>,
    max_pending: usize,
}

impl Router {
    /// The router and its receipt timer task.
    pub(crate) fn start(max_pending: usize) -> (Arc<Router>, JoinHandle<()>) {
        let (timer, rx) = mpsc::unbounded_channel();
        let router = Arc::new(Router {
            inner: Mutex::new(Inner::default()),
            watchers: AtomicUsize::new(0),
            timer,
            max_pending,
        });
        let task = tokio::spawn(timer_loop(Arc::downgrade(&router), rx));
        (router, task)
    }

    /// Adds a bound session and hands it the receipts held for its `system_id`.
    pub(crate) fn register(
        &self,
        id: u64,
        system_id: &str,
        kind: BindKind,
        address_range: &str,
        tx: mpsc::UnboundedSender<Out>,
    ) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let entry = Entry {
            system_id: system_id.to_string(),
            kind,
            address_range: address_range.to_string(),
            tx,
        };
        if kind.can_receive()
            && let Some(held) = inner.pending.remove(system_id)
        {
            inner.pending_total -= held.len();
            tracing::info!(system_id, receipts = held.len(), "delivering held receipts");
            for dsm in held {
                let _ = entry.tx.send(Out::Deliver(dsm));
            }
        }
        if entry.watches_anything() {
            self.watchers.fetch_add(1, Ordering::Relaxed);
        }
        inner.sessions.insert(id, entry);
    }

    /// Removes a session.
    pub(crate) fn unregister(&self, id: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if let Some(e) = inner.sessions.remove(&id)
            && e.watches_anything()
        {
            self.watchers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends a receipt now, or after `at` when that is in the future.
    pub(crate) fn receipt(&self, at: Option<Instant>, origin: u64, system_id: &str, dsm: DeliverSm) {
        match at {
            Some(at) if at > Instant::now() => {
                let _ = self.timer.send(Scheduled {
                    at,
                    origin,
                    system_id: system_id.to_string(),
                    dsm,
                });
            }
            _ => self.route_receipt(origin, system_id, dsm),
        }
    }

    /// To the submitting session if it can receive, else another receiver of the same
    /// `system_id`, else held.
    fn route_receipt(&self, origin: u64, system_id: &str, dsm: DeliverSm) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let mut dsm = Some(dsm);
        if let Some(e) = inner.sessions.get(&origin).filter(|e| e.kind.can_receive())
            && let Some(d) = dsm.take()
            && let Err(mpsc::error::SendError(Out::Deliver(back))) = e.tx.send(Out::Deliver(d))
        {
            dsm = Some(back);
        }
        if dsm.is_some() {
            for e in inner
                .sessions
                .values()
                .filter(|e| e.kind.can_receive() && e.system_id == system_id)
            {
                if let Some(d) = dsm.take() {
                    match e.tx.send(Out::Deliver(d)) {
                        Ok(()) => break,
                        Err(mpsc::error::SendError(Out::Deliver(back))) => dsm = Some(back),
                        Err(_) => {}
                    }
                }
            }
        }
        if let Some(d) = dsm {
            hold(&mut inner, self.max_pending, system_id, std::iter::once(d));
        }
    }

    /// Keeps receipts a closed session had not acknowledged, for the next receiver of
    /// `system_id`.
    pub(crate) fn requeue(&self, system_id: &str, receipts: Vec<DeliverSm>) {
        if receipts.is_empty() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        // A receiver of the same system_id may be bound already.
        if let Some(e) = inner
            .sessions
            .values()
            .find(|e| e.kind.can_receive() && e.system_id == system_id)
        {
            let tx = e.tx.clone();
            let mut rest = Vec::new();
            for d in receipts {
                if let Err(mpsc::error::SendError(Out::Deliver(back))) = tx.send(Out::Deliver(d)) {
                    rest.push(back);
                }
            }
            hold(&mut inner, self.max_pending, system_id, rest);
            return;
        }
        hold(&mut inner, self.max_pending, system_id, receipts);
    }

    /// Sends `dsm` (a copy of a submitted message) to every watching session but `origin`.
    pub(crate) fn copy_to_watchers(&self, origin: u64, destination: &str, dsm: &DeliverSm) {
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(inner) = self.inner.lock() else { return };
        for (id, e) in inner.sessions.iter() {
            if *id != origin && e.watches(destination) {
                let _ = e.tx.send(Out::Deliver(dsm.clone()));
            }
        }
    }
}

impl Entry {
    fn watches_anything(&self) -> bool {
        self.kind == BindKind::Receiver || (self.kind == BindKind::Transceiver && !self.address_range.is_empty())
    }
}

fn hold(inner: &mut Inner, max: usize, system_id: &str, receipts: impl IntoIterator<Item = DeliverSm>) {
    for d in receipts {
        if inner.pending_total >= max {
            tracing::warn!(system_id, "receipt dropped: too many held for absent receivers");
            continue;
        }
        inner.pending.entry(system_id.to_string()).or_default().push_back(d);
        inner.pending_total += 1;
    }
}

/// Fires scheduled receipts in order (the delay is the same for all, so arrival order is due
/// order).
async fn timer_loop(router: std::sync::Weak<Router>, mut rx: mpsc::UnboundedReceiver<Scheduled>) {
    let mut queue: VecDeque<Scheduled> = VecDeque::new();
    loop {
        let next = queue.front().map(|s| s.at);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(s) => queue.push_back(s),
                None => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
        let now = Instant::now();
        let Some(router) = router.upgrade() else { return };
        while queue.front().is_some_and(|s| s.at <= now) {
            if let Some(s) = queue.pop_front() {
                router.route_receipt(s.origin, &s.system_id, s.dsm);
            }
        }
    }
}
