//! The running daemon: opens the store, binds the transports, and starts the SIP core loop
//! with the services above it (UAS core, registrar), until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::dialog::DialogTable;
use crate::registrar::Registrar;
use crate::registrar::auth::DigestAuth;
use crate::sip_core;
use crate::store::writer::StoreHandle;
use crate::transaction::Timers;
use crate::transport::tcp::TcpConnections;
use crate::transport::{self, Inbound, Transmitter};
use crate::uas_core::UasCore;

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = StoreHandle::start(&config.storage.data_dir).context("opening the store")?;
    let auth = Arc::new(DigestAuth::new(
        &config.registrar,
        config.sip.realm.clone(),
        store.clone(),
    ));
    let registrar = Registrar::start(config.registrar.clone(), auth.clone(), store.clone())
        .await
        .context("starting the registrar")?;

    let (udp, listener) = transport::bind(config.sip.listen).await?;
    let local = udp.local_addr()?;
    let udp = Arc::new(udp);
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(16384);
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

    let timers = Timers {
        t1: config.sip.t1_ms,
        t2: config.sip.t2_ms,
        t4: config.sip.t4_ms,
    };
    let (core, core_loop) = sip_core::core(timers, transmitter, inbound_rx, local);
    let dialogs = DialogTable::default();
    let uas = Arc::new(UasCore::new(core, Arc::new(registrar), dialogs));
    tracing::info!(udp = %local, tcp = %local, data_dir = %config.storage.data_dir.display(), "ivm-sipd listening");
    core_loop.run(Arc::new(uas), shutdown_signal()).await;
    tracing::info!("ivm-sipd stopping");
    Ok(())
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
