//! The SIP core loop: the one task that owns the transaction layer. Messages from the
//! transports and commands from the layers above (respond, send a request) go in; the
//! transaction layer's actions come out — bytes to the transports, new requests, ACKs and
//! CANCELs to the dispatcher, responses and timeouts to the task that sent the request.
//! Timers are checked every 10 ms. A [`Gate`], when set, screens each request as it
//! arrives and may refuse each new server transaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::stack::gate::Gate;
use crate::stack::sip::{Message, Request, Response, SipHeaders};
use crate::stack::transaction::{Action, Timers, TransactionLayer, TsxKey};
use crate::stack::transport::{Inbound, Peer, Transmitter};

/// How often transaction timers are checked.
const TICK: Duration = Duration::from_millis(10);

/// What a client transaction reports to the task that started it.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Response(Response),
    /// Timer B/F: no final response.
    Timeout,
    /// The request could not be sent (bad request or duplicate transaction).
    Failed(String),
}

enum Command {
    Respond {
        key: TsxKey,
        response: Response,
    },
    Send {
        request: Request,
        dest: Peer,
        events: mpsc::UnboundedSender<ClientEvent>,
    },
}

/// The layer above the transactions: receives what the transaction layer delivers.
pub trait Dispatcher: Send + Sync + 'static {
    /// A new request in its own server transaction; answer it with [`SipCore::respond`].
    fn request(&self, key: TsxKey, request: Request, source: Peer);
    /// An ACK for a 2xx (or one matching no transaction).
    fn ack(&self, request: Request, source: Peer);
    /// A CANCEL matched this INVITE server transaction (already answered `200`).
    fn cancelled(&self, invite: TsxKey);
}

/// A handle to the SIP core for the layers above; cheap to clone.
#[derive(Clone)]
pub struct SipCore {
    commands: mpsc::UnboundedSender<Command>,
    transmitter: Transmitter,
    local: SocketAddr,
    /// Where TLS listens, when it does.
    tls_local: Option<SocketAddr>,
    /// The RFC 3261 timer values, for what the layers above retransmit themselves (a 2xx).
    timers: Timers,
    /// The `Allow` value of what the router serves, set once when the router is built.
    allow: Arc<OnceLock<String>>,
}

impl SipCore {
    /// Answers a server transaction.
    pub fn respond(&self, key: TsxKey, response: Response) {
        let _ = self.commands.send(Command::Respond { key, response });
    }

    /// Starts a client transaction; its responses and timeout arrive on the returned channel
    /// (dropping the receiver stops delivery).
    pub fn send_request(&self, request: Request, dest: Peer) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (events, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Send { request, dest, events });
        rx
    }

    /// Sends bytes outside any transaction (the ACK for a 2xx, a 2xx retransmitted by its
    /// dialog).
    pub async fn send_raw(&self, to: Peer, data: Bytes) {
        self.transmitter.send(to, data).await;
    }

    /// The address the UDP and TCP transports listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address `transport` is reached at, for Via and Contact: TLS has its own.
    pub fn local_addr_for(&self, transport: crate::stack::transport::TransportKind) -> SocketAddr {
        match (transport, self.tls_local) {
            (crate::stack::transport::TransportKind::Tls, Some(tls)) => tls,
            _ => self.local,
        }
    }

    /// Says where TLS listens (before the handle is cloned to the layers above).
    pub fn with_tls_local(mut self, addr: SocketAddr) -> SipCore {
        self.tls_local = Some(addr);
        self
    }

    /// The timer values (T1, T2, T4) the transactions run with.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Answers a server transaction and logs the transaction's line.
    pub fn reply(&self, key: TsxKey, request: &Request, response: Response, source: Peer) {
        log_transaction(request, &response, source);
        self.respond(key, response);
    }

    /// Sends a request in its own client transaction and drains its responses in the
    /// background (a BYE, a NOTIFY, a MESSAGE whose answer changes nothing here).
    pub fn send_and_forget(&self, request: Request, dest: Peer) {
        let method = request.method.clone();
        let mut rx = self.send_request(request, dest);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                match ev {
                    ClientEvent::Response(r) if r.status >= 300 => {
                        tracing::info!(%method, status = r.status, to = %dest, "request refused by the far end");
                        return;
                    }
                    ClientEvent::Response(r) if r.status >= 200 => return,
                    ClientEvent::Timeout => {
                        tracing::info!(%method, to = %dest, "request unanswered (timeout)");
                        return;
                    }
                    ClientEvent::Failed(e) => {
                        tracing::warn!(%method, to = %dest, error = %e, "request not sent");
                        return;
                    }
                    ClientEvent::Response(_) => {}
                }
            }
        });
    }

    /// The methods the router serves, as an `Allow` value (RFC 3261 §20.5).
    pub fn allow(&self) -> &str {
        self.allow.get().map(String::as_str).unwrap_or("ACK, CANCEL, OPTIONS")
    }

    /// Sets the `Allow` value; the router does this once, when it is built.
    pub(crate) fn set_allow(&self, allow: String) {
        let _ = self.allow.set(allow);
    }
}

/// One info line per answered transaction.
pub fn log_transaction(req: &Request, resp: &Response, source: Peer) {
    tracing::info!(
        method = %req.method,
        status = resp.status,
        from = %source,
        call_id = %String::from_utf8_lossy(req.call_id().unwrap_or_default()),
        "{} {}", req.method, resp.status
    );
}

/// The loop's inputs.
pub struct CoreLoop {
    commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::Receiver<Inbound>,
    transmitter: Transmitter,
    layer: TransactionLayer,
    gate: Option<Arc<dyn Gate>>,
}

/// Creates the core: the handle for the layers above and the loop to run.
pub fn core(
    timers: Timers,
    transmitter: Transmitter,
    inbound: mpsc::Receiver<Inbound>,
    local: SocketAddr,
) -> (SipCore, CoreLoop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = SipCore {
        commands: tx,
        transmitter: transmitter.clone(),
        local,
        tls_local: None,
        timers,
        allow: Arc::new(OnceLock::new()),
    };
    (
        handle,
        CoreLoop {
            commands: rx,
            inbound,
            transmitter,
            layer: TransactionLayer::new(timers),
            gate: None,
        },
    )
}

impl CoreLoop {
    /// Puts a gate in front of the transaction layer.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> CoreLoop {
        self.gate = Some(gate);
        self
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, dispatcher: Arc<dyn Dispatcher>, shutdown: impl std::future::Future<Output = ()>) {
        let start = Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut clients: HashMap<TsxKey, mpsc::UnboundedSender<ClientEvent>> = HashMap::new();
        let mut actions = Vec::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some(Inbound { message, source }) = self.inbound.recv() => match message {
                    Message::Request(req) if self.gate.as_ref().is_some_and(|g| !g.screen(&req, &source)) => {
                        tracing::debug!(%source, method = %req.method, "request dropped by the gate");
                    }
                    Message::Request(req) => self.layer.on_request(req, source, now(), &mut actions),
                    Message::Response(resp) => self.layer.on_response(resp, source, now(), &mut actions),
                },
                Some(cmd) = self.commands.recv() => match cmd {
                    Command::Respond { key, response } => {
                        if let Err(e) = self.layer.respond(&key, response, now(), &mut actions) {
                            tracing::debug!(error = %e, "response for a finished transaction dropped");
                        }
                    }
                    Command::Send { request, dest, events } => {
                        match self.layer.send_request(request, dest, now(), &mut actions) {
                            Ok(key) => { clients.insert(key, events); }
                            Err(e) => { let _ = events.send(ClientEvent::Failed(e.to_string())); }
                        }
                    }
                },
                _ = tick.tick() => {
                    self.layer.on_tick(now(), &mut actions);
                    clients.retain(|_, tx| !tx.is_closed());
                }
                _ = &mut shutdown => return,
            }
            // A refusal by the gate is answered through its transaction, which adds actions.
            let mut pending = std::mem::take(&mut actions);
            while !pending.is_empty() {
                for action in pending.drain(..) {
                    match action {
                        Action::Send { to, data } => self.transmitter.send(to, data).await,
                        Action::Request { key, request, source } => {
                            match self.gate.as_ref().and_then(|g| g.admit(&request, &source)) {
                                Some(response) => {
                                    log_transaction(&request, &response, source);
                                    if let Err(e) = self.layer.respond(&key, response, now(), &mut actions) {
                                        tracing::debug!(error = %e, "refusal for a finished transaction dropped");
                                    }
                                }
                                None => dispatcher.request(key, request, source),
                            }
                        }
                        Action::Ack { request, source } => dispatcher.ack(request, source),
                        Action::Cancelled { invite } => dispatcher.cancelled(invite),
                        Action::Response { key, response } => {
                            let final_non2xx = response.status >= 300;
                            if let Some(tx) = clients.get(&key) {
                                let _ = tx.send(ClientEvent::Response(response));
                            }
                            if final_non2xx {
                                clients.remove(&key);
                            }
                        }
                        Action::Timeout { key } => {
                            if let Some(tx) = clients.remove(&key) {
                                let _ = tx.send(ClientEvent::Timeout);
                            } else {
                                tracing::info!(%key, "server transaction timed out (no ACK)");
                            }
                        }
                    }
                }
                std::mem::swap(&mut pending, &mut actions);
            }
            actions = pending;
        }
    }
}
