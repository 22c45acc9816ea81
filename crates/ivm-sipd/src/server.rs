//! The running daemon: opens the store, binds the transports, and runs the SIP core loop
//! that feeds every message to the transaction layer and carries its actions out — bytes to
//! the transports, new requests to the UAS core (one task each), the UAS core's responses
//! back into their transactions, timers every 10 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::registrar::Registrar;
use crate::registrar::auth::DigestAuth;
use crate::sip::{Message, Request, Response, SipHeaders};
use crate::store::writer::StoreHandle;
use crate::transaction::{Action, Timers, TransactionLayer, TsxKey};
use crate::transport::tcp::TcpConnections;
use crate::transport::{self, Inbound, Peer, Transmitter};
use crate::uas_core::UasCore;

/// How often transaction timers are checked.
const TICK: Duration = Duration::from_millis(10);

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = StoreHandle::start(&config.storage.data_dir).context("opening the store")?;
    let auth = Arc::new(DigestAuth::new(&config.registrar, config.sip.realm.clone(), store.clone()));
    let registrar = Registrar::start(config.registrar.clone(), auth.clone(), store.clone())
        .await
        .context("starting the registrar")?;
    let core = Arc::new(UasCore::new(Arc::new(registrar)));

    let (udp, listener) = transport::bind(config.sip.listen).await?;
    let local = udp.local_addr()?;
    let udp = Arc::new(udp);
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<Inbound>(16384);
    let tcp = TcpConnections::new(
        inbound_tx.clone(),
        config.sip.max_message_bytes,
        Duration::from_secs(config.sip.tcp_idle_timeout_secs),
    );
    let transmitter = Transmitter {
        udp: udp.clone(),
        tcp: tcp.clone(),
    };
    tokio::spawn(transport::udp::receive_loop(
        udp,
        config.sip.max_message_bytes,
        inbound_tx,
    ));
    tokio::spawn(tcp.accept_loop(listener));
    tracing::info!(udp = %local, tcp = %local, data_dir = %config.storage.data_dir.display(), "ivm-sipd listening");

    let mut layer = TransactionLayer::new(Timers {
        t1: config.sip.t1_ms,
        t2: config.sip.t2_ms,
        t4: config.sip.t4_ms,
    });
    let (answer_tx, mut answer_rx) = mpsc::unbounded_channel::<(TsxKey, Response)>();
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut actions = Vec::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(Inbound { message, source }) = inbound_rx.recv() => match message {
                Message::Request(req) => layer.on_request(req, source, now(), &mut actions),
                Message::Response(resp) => layer.on_response(resp, source, now(), &mut actions),
            },
            Some((key, resp)) = answer_rx.recv() => {
                if let Err(e) = layer.respond(&key, resp, now(), &mut actions) {
                    tracing::debug!(error = %e, "response for a finished transaction dropped");
                }
            }
            _ = tick.tick() => layer.on_tick(now(), &mut actions),
            _ = &mut shutdown => {
                tracing::info!("ivm-sipd stopping");
                return Ok(());
            }
        }
        for action in actions.drain(..) {
            match action {
                Action::Send { to, data } => transmitter.send(to, data).await,
                Action::Request { key, request, source } => {
                    let core = core.clone();
                    let answer_tx = answer_tx.clone();
                    tokio::spawn(async move {
                        let resp = core.handle(&request, source).await;
                        log_transaction(&request, &resp, source);
                        let _ = answer_tx.send((key, resp));
                    });
                }
                Action::Ack { request, source } => {
                    tracing::debug!(%source, call_id = %String::from_utf8_lossy(request.call_id().unwrap_or_default()), "ACK outside a transaction");
                }
                Action::Cancelled { invite } => tracing::debug!(?invite, "INVITE cancelled"),
                Action::Response { key, response } => {
                    tracing::debug!(?key, status = response.status, "response to a client transaction")
                }
                Action::Timeout { key } => tracing::info!(?key, "transaction timed out"),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
}

fn log_transaction(req: &Request, resp: &Response, source: Peer) {
    tracing::info!(
        method = %req.method,
        status = resp.status,
        from = %source,
        call_id = %String::from_utf8_lossy(req.call_id().unwrap_or_default()),
        "{} {}", req.method, resp.status
    );
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
