//! The running daemon: opens the store, binds the transports, and starts the SIP core loop
//! with the services above it (UAS core, registrar), until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::services::calls::events::CallEvents;
use crate::services::calls::{CallService, CallSettings, Calls};
use crate::services::dial_plan::DialPlan;
use crate::services::guard::Guard;
use crate::services::mwi::{Mwi, MwiService};
use crate::services::notification::sms_gateway::{self, SmsGateway};
use crate::services::presence::{Presence, PresenceService};
use crate::services::registrar::auth::DigestAuth;
use crate::services::registrar::{Registrar, RegistrarService};
use crate::services::trunk::TrunkTable;
use crate::stack::dialog::DialogTable;
use crate::stack::endpoint;
use crate::stack::router::Router;
use crate::stack::transaction::Timers;
use crate::stack::transport::tcp::{TcpConnections, TcpLimits};
use crate::stack::transport::{self, Inbound, Transmitter};
use crate::store::writer::StoreHandle;
use ivm_media::codec::FRAME_MS;
use ivm_media::fragment_store::{FragmentStore, FragmentStoreConfig};
use ivm_media::port_pool::PortPool;

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = StoreHandle::start(&config.storage.data_dir).context("opening the store")?;
    let trunks = TrunkTable::open(&config.trunks, &config.storage.data_dir)?;
    let guard = Guard::start(config.security.clone(), trunks.clone(), store.clone())
        .await
        .context("starting the guard")?;
    let auth =
        Arc::new(DigestAuth::new(&config.registrar, config.sip.realm.clone(), store.clone()).with_guard(guard.clone()));
    let registrar = Registrar::start(config.registrar.clone(), auth.clone(), store.clone())
        .await
        .context("starting the registrar")?;

    let (udp, listener) = transport::bind(config.sip.listen).await?;
    let local = udp.local_addr()?;
    let udp = Arc::new(udp);
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(16384);
    let limits = TcpLimits {
        max_message_bytes: config.sip.max_message_bytes,
        idle: Duration::from_secs(config.sip.tcp_idle_timeout_secs),
        message: Duration::from_secs(config.sip.tcp_message_timeout_secs),
        per_ip: config.sip.tcp_max_connections_per_ip,
    };
    let tcp = TcpConnections::new(inbound_tx.clone(), limits);
    let tls = match config.sip.tls_addr().context("[sip] tls_listen")? {
        Some(addr) => {
            let acceptor = super::tls::acceptor(&config)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (TLS)"))?;
            let at = listener.local_addr()?;
            let conns = TcpConnections::tls(inbound_tx.clone(), limits, acceptor);
            tokio::spawn(conns.clone().accept_loop(listener));
            Some((conns, at))
        }
        None => None,
    };
    let transmitter = Transmitter::sockets(udp.clone(), tcp.clone(), tls.as_ref().map(|(c, _)| c.clone()));
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
    let (core, core_loop) = endpoint::core(timers, transmitter, inbound_rx, local);
    let tls_at = tls.as_ref().map(|(_, at)| *at);
    let core = match tls_at {
        Some(at) => core.with_tls_local(at),
        None => core,
    };
    let dialogs = DialogTable::default();
    let registrar = Arc::new(registrar);
    let (events, call_events) = CallEvents::channel();
    let Started {
        calls,
        mwi,
        sms,
        unsent,
    } = start_calls(
        &config,
        Below {
            core: core.clone(),
            dialogs: dialogs.clone(),
            auth: auth.clone(),
            location: registrar.location().clone(),
            store: store.clone(),
            trunks,
        },
        events,
    )
    .await
    .context("starting the call layer")?;
    let (registered_tx, registered) = mpsc::unbounded_channel::<String>();
    registrar.set_listener(registered_tx);
    crate::services::notification::start(
        calls.clone(),
        mwi.clone(),
        sms,
        call_events,
        registered,
        unsent,
        config.calls.expiry_days,
    );
    // What phones PUBLISH is what target legs read.
    let presence = calls.presence.clone();
    // The order in which services are offered a new request.
    let router = Router::new(core.clone(), dialogs)
        .register(Arc::new(RegistrarService {
            registrar,
            core: core.clone(),
        }))
        .register(Arc::new(MwiService {
            mwi,
            auth: auth.clone(),
            core: core.clone(),
        }))
        .register(Arc::new(PresenceService {
            presence,
            auth,
            core: core.clone(),
        }))
        .register(Arc::new(CallService::new(calls)))
        .build();
    let tls_shown = tls_at.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(udp = %local, tcp = %local, tls = %tls_shown, data_dir = %config.storage.data_dir.display(), "ivm-sipd listening");
    core_loop.with_gate(guard).run(router, shutdown_signal()).await;
    tracing::info!("ivm-sipd stopping");
    Ok(())
}

/// The call layer and what the notifications need beside it.
struct Started {
    calls: Arc<Calls>,
    mwi: Mwi,
    sms: Option<Arc<dyn SmsGateway>>,
    /// Notices of missed messages that a crash kept from being sent.
    unsent: Vec<crate::store::mailbox::UnsentNotice>,
}

/// What the call layer is built on: the stack, authentication, the registrar's bindings, the
/// store and the trunks.
struct Below {
    core: endpoint::SipCore,
    dialogs: DialogTable,
    auth: Arc<DigestAuth>,
    location: Arc<crate::services::registrar::location::LocationService>,
    store: StoreHandle,
    trunks: TrunkTable,
}

/// Opens the fragment store (recovering its log), closes messages a crash left open, and
/// builds the call layer, the MWI service and the SMS client.
async fn start_calls(config: &Config, below: Below, events: CallEvents) -> anyhow::Result<Started> {
    let Below {
        core,
        dialogs,
        auth,
        location,
        store,
        trunks,
    } = below;
    let data_dir = &config.storage.data_dir;
    let mut fcfg = FragmentStoreConfig::new(data_dir.join("fragments"), crate::store::db_path(data_dir));
    fcfg.commit_interval = Duration::from_millis(config.media.commit_interval_ms);
    fcfg.frames_per_fragment = config.media.frames_per_fragment;
    fcfg.keys = super::master_key::for_server(&config.storage)?;
    let (fragments, recovery) = FragmentStore::open(fcfg).context("opening the fragment store")?;
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            bytes = recovery.truncated_bytes,
            "fragment log: torn tail cut off during recovery"
        );
    }
    let frames: std::collections::HashMap<i64, u32> =
        recovery.messages.iter().map(|m| (m.message_id, m.frames)).collect();
    // Closed before any call is taken, so that every notice listed here was lost by the crash
    // (none is being sent by this process yet).
    let (closed, unsent) = store
        .run(move |conn| {
            let closed =
                crate::store::messages::recover(conn, |id| frames.get(&id).copied().unwrap_or(0), i64::from(FRAME_MS))?;
            Ok((closed, crate::store::mailbox::unsent_notices(conn)?))
        })
        .await?;
    if closed > 0 {
        tracing::warn!(
            messages = closed,
            "messages left recording by a crash were closed with their stored audio"
        );
    }
    let dial_plan = DialPlan::from_config(&config.calls)?;
    let ports = PortPool::new(config.media.rtp_ports.first, config.media.rtp_ports.last)?;
    let media_ip = config.media.rtp_ip.unwrap_or(config.sip.listen.ip());
    let settings = CallSettings {
        ring_timeout: Duration::from_secs(config.calls.ring_timeout_secs),
        beep_ms: config.calls.beep_ms as u32,
        max_message: Duration::from_secs(config.calls.max_message_secs),
        ring_frames: config.media.ring_frames,
        catch_up_speed: config.media.catch_up_speed,
        domain: config.sip.realm.clone(),
        media_ip,
        callerid_ring: Duration::from_secs(config.calls.callerid_ring_secs),
        max_calls: config.calls.max_calls,
    };
    let mwi = Mwi::start(
        core.clone(),
        dialogs.clone(),
        store.clone(),
        location.clone(),
        config.sip.realm.clone(),
    );
    let sms = sms_gateway::start(&config.smsc, crate::store::db_path(data_dir), store.clone())
        .await?
        .map(|c| Arc::new(c) as Arc<dyn SmsGateway>);
    let calls = Arc::new(Calls {
        core,
        dialogs,
        auth,
        location,
        trunks,
        dial_plan,
        store,
        fragments,
        ports,
        settings,
        events,
        presence: Presence::default(),
        live: Default::default(),
    });
    Ok(Started {
        calls,
        mwi,
        sms,
        unsent,
    })
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
