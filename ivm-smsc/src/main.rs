//! `ivm-smsc`: the built-in SMSC (`serve`), a one-off sender (`send`), an outbox drainer
//! (`drain`) and the submit benchmark (`bench`). This file only parses the command line and
//! starts things; the work is in the library.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ivm_smsc::client::session::{Session, SessionEvent};
use ivm_smsc::receipt::MessageIdKey;
use ivm_smsc::server::{self, IdFormat, ReceiptIdFormat, ServerConfig};
use ivm_smsc::{SmsClient, SmsRequest, SmsStatus, SmscConfig, bench};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "ivm-smsc",
    version,
    about = "IVM SMPP 3.4 tools: built-in SMSC, sender, outbox drainer, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in SMSC.
    Serve(ServeArgs),
    /// Send one text (directly, or through an outbox file) and print what happens as JSON lines.
    Send(SendArgs),
    /// Send everything queued in an outbox file, then exit.
    Drain(DrainArgs),
    /// Measure submit_sm per second with the send window on.
    Bench(BenchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2775")]
    listen: String,
    /// Delay between submit_sm_resp and the delivery receipt.
    #[arg(long, default_value_t = 100)]
    receipt_delay_ms: u64,
    /// Accept only this system_id (default: any).
    #[arg(long)]
    system_id: Option<String>,
    /// Accept only this password (default: any).
    #[arg(long)]
    password: Option<String>,
    /// Delay every submit_sm_resp (to watch a client's window).
    #[arg(long, default_value_t = 0)]
    submit_resp_delay_ms: u64,
    /// Message id format.
    #[arg(long, value_enum, default_value_t = IdArg::Decimal)]
    id_format: IdArg,
    /// Id format inside receipts: same, decimal, or pad:N (zero-padded to N).
    #[arg(long, default_value = "same")]
    receipt_id_format: String,
    /// Destinations with this prefix get an UNDELIV receipt.
    #[arg(long)]
    undeliverable_prefix: Option<String>,
    /// Do not log each message.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum IdArg {
    Decimal,
    Hex,
}

#[derive(Args, Clone)]
struct SmscArgs {
    /// SMSC address.
    #[arg(long, env = "IVM_SMSC", default_value = "127.0.0.1:2775")]
    smsc: String,
    /// Bind system_id.
    #[arg(long = "system-id", env = "IVM_SMSC_SYSTEM_ID", default_value = "ivm")]
    system_id: String,
    /// Bind password.
    #[arg(long, env = "IVM_SMSC_PASSWORD", default_value = "ivm")]
    password: String,
    /// Bind system_type.
    #[arg(long, default_value = "")]
    system_type: String,
    /// Sender: a name (at most 11 characters) or a number.
    #[arg(long = "from", default_value = "IVM")]
    from: String,
    /// Send window: most submit_sm without a response.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Most submit_sm per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Send GSM 7-bit packed 8-in-7.
    #[arg(long)]
    gsm_packed: bool,
}

impl SmscArgs {
    fn config(&self) -> SmscConfig {
        SmscConfig {
            address: self.smsc.clone(),
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            system_type: self.system_type.clone(),
            source_addr: self.from.clone(),
            window: self.window,
            rate_per_sec: self.rate,
            reconnect_min_ms: 200,
            reconnect_max_ms: 5_000,
            gsm_packed: self.gsm_packed,
            ..SmscConfig::default()
        }
    }
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    smsc: SmscArgs,
    /// Destination MSISDN.
    #[arg(long)]
    to: String,
    /// The text.
    #[arg(long)]
    text: String,
    /// Go through this outbox database (persistent, retried until accepted) instead of a
    /// direct session.
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// Send the text this many times (with --outbox: as separate notifications).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Dedupe key prefix for --outbox (default: unique per run); repeating a key sends nothing.
    #[arg(long)]
    key: Option<String>,
    /// Wait this long for delivery receipts (0: do not wait).
    #[arg(long, default_value_t = 10)]
    wait_receipt_secs: u64,
}

#[derive(Args)]
struct DrainArgs {
    #[command(flatten)]
    smsc: SmscArgs,
    /// The outbox database.
    #[arg(long)]
    outbox: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// After the queue is empty, wait this long for receipts.
    #[arg(long, default_value_t = 0)]
    wait_receipt_secs: u64,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    smsc: SmscArgs,
    /// Messages to submit.
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// Session: raw submit path; outbox: through the SQLite outbox and the full client.
    #[arg(long, value_enum, default_value_t = BenchMode::Session)]
    mode: BenchMode,
    /// Destination.
    #[arg(long, default_value = "+15550100")]
    to: String,
    /// Text of each message.
    #[arg(
        long,
        default_value = "You have a new voice message from 1001. Dial 981234561 to listen."
    )]
    text: String,
    /// Outbox file for --mode outbox (default: a fresh temporary file).
    #[arg(long)]
    outbox: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchMode {
    Session,
    Outbox,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(a).await,
            Command::Send(a) => send(a).await,
            Command::Drain(a) => drain(a).await,
            Command::Bench(a) => run_bench(a).await,
        }
    })
}

async fn serve(a: ServeArgs) -> Result<()> {
    let receipt_id_format = match a.receipt_id_format.as_str() {
        "same" => ReceiptIdFormat::AsSubmitted,
        "decimal" => ReceiptIdFormat::Decimal,
        other => match other.strip_prefix("pad:").and_then(|n| n.parse().ok()) {
            Some(n) => ReceiptIdFormat::ZeroPadded(n),
            None => bail!("--receipt-id-format: expected same, decimal or pad:N, got {other:?}"),
        },
    };
    let cfg = ServerConfig {
        system_id: a.system_id,
        password: a.password,
        receipt_delay: Duration::from_millis(a.receipt_delay_ms),
        submit_resp_delay: Duration::from_millis(a.submit_resp_delay_ms),
        message_id_format: match a.id_format {
            IdArg::Decimal => IdFormat::Decimal,
            IdArg::Hex => IdFormat::Hex,
        },
        receipt_id_format,
        undeliverable_prefix: a.undeliverable_prefix,
        log_messages: !a.quiet,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listen on {}", a.listen))?;
    let handle = server::serve(listener, cfg).await?;
    println!("{}", json!({ "listening": handle.local_addr().to_string() }));
    wait_for_signal().await;
    let stats = handle.stats();
    handle.shutdown().await;
    eprintln!("{stats:?}");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn send(a: SendArgs) -> Result<()> {
    match a.outbox.clone() {
        Some(db) => send_via_outbox(a, db).await,
        None => send_direct(a).await,
    }
}

async fn send_direct(a: SendArgs) -> Result<()> {
    let cfg = a.smsc.config();
    cfg.validate()?;
    let (session, mut events) = Session::connect(&cfg).await?;
    let mut ids = Vec::new();
    for _ in 0..a.count {
        let parts = session.encode(&a.to, &a.text, rand::random())?;
        let total = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let id = session.submit(part).await?;
            println!(
                "{}",
                json!({ "submitted": id, "part": i + 1, "parts": total, "data_coding": part.data_coding })
            );
            ids.push(id);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.wait_receipt_secs);
    let mut waiting: Vec<MessageIdKey> = ids.iter().map(|id| MessageIdKey::new(id)).collect();
    while !waiting.is_empty() && a.wait_receipt_secs > 0 {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(SessionEvent::Receipt {
                sequence,
                smsc_id,
                outcome,
            })) => {
                session.ack_deliver(sequence).await;
                // Receipts held by the SMSC for earlier sessions of this system_id are
                // acknowledged but not counted.
                let key = MessageIdKey::new(&smsc_id);
                if let Some(i) = waiting.iter().position(|w| key.matches(w)) {
                    waiting.swap_remove(i);
                    println!("{}", json!({ "receipt": smsc_id, "outcome": format!("{outcome:?}") }));
                }
            }
            Ok(Some(SessionEvent::Message { sequence, .. })) => session.ack_deliver(sequence).await,
            Ok(Some(SessionEvent::Closed(reason))) => bail!("session closed: {reason}"),
            Ok(None) => break,
            Err(_) => bail!("{} receipt(s) missing after {} s", waiting.len(), a.wait_receipt_secs),
        }
    }
    session.close().await;
    Ok(())
}

async fn send_via_outbox(a: SendArgs, db: PathBuf) -> Result<()> {
    let client = SmsClient::start(a.smsc.config(), db).await?;
    let mut events = client.subscribe();
    let prefix = a.key.clone().unwrap_or_else(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("cli:{}:{ms}", std::process::id())
    });
    let mut ids = Vec::new();
    for i in 0..a.count {
        let req = SmsRequest {
            dedupe_key: format!("{prefix}:{i}"),
            to: a.to.clone(),
            text: a.text.clone(),
            reference: Some(format!("{i}")),
        };
        let id = client.enqueue(req).await?;
        println!("{}", json!({ "enqueued": id, "key": format!("{prefix}:{i}") }));
        ids.push(id);
    }
    let want_delivery = a.wait_receipt_secs > 0;
    loop {
        let mut done = 0;
        for id in &ids {
            match client.status(*id).await? {
                SmsStatus::Queued => {}
                SmsStatus::Submitted { .. } if want_delivery => {}
                _ => done += 1,
            }
        }
        if done == ids.len() {
            break;
        }
        if let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
            println!("{}", json!({ "id": ev.id, "status": format!("{:?}", ev.status) }))
        }
    }
    for id in &ids {
        println!(
            "{}",
            json!({ "id": id, "final": format!("{:?}", client.status(*id).await?) })
        );
    }
    client.shutdown().await;
    Ok(())
}

async fn drain(a: DrainArgs) -> Result<()> {
    let client = SmsClient::start(a.smsc.config(), a.outbox.clone()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout_secs);
    loop {
        let c = client.counts().await?;
        if c.queued == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            client.shutdown().await;
            bail!("{} notification(s) still queued after {} s", c.queued, a.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let receipt_deadline = tokio::time::Instant::now() + Duration::from_secs(a.wait_receipt_secs);
    while tokio::time::Instant::now() < receipt_deadline && client.counts().await?.submitted > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = client.counts().await?;
    client.shutdown().await;
    println!(
        "{}",
        json!({ "queued": c.queued, "submitted": c.submitted, "delivered": c.delivered, "failed": c.failed })
    );
    Ok(())
}

async fn run_bench(a: BenchArgs) -> Result<()> {
    let cfg = a.smsc.config();
    cfg.validate()?;
    match a.mode {
        BenchMode::Session => {
            let r = bench::session(&cfg, a.count, &a.to, &a.text).await?;
            println!(
                "{}",
                json!({
                    "mode": "session", "count": r.count, "accepted": r.accepted, "window": r.window,
                    "seconds": r.elapsed.as_secs_f64(), "submit_sm_per_sec": r.per_sec().round(), "receipts": r.receipts,
                })
            );
        }
        BenchMode::Outbox => {
            let tmp;
            let db = match a.outbox {
                Some(p) => p,
                None => {
                    tmp = tempfile_path()?;
                    tmp.clone()
                }
            };
            let r = bench::outbox(cfg, db.clone(), a.count, &a.to, &a.text).await?;
            println!(
                "{}",
                json!({
                    "mode": "outbox", "count": r.count, "window": a.smsc.window,
                    "enqueue_per_sec": (r.count as f64 / r.enqueue.as_secs_f64().max(1e-9)).round(),
                    "seconds": r.submitted.as_secs_f64(), "submit_sm_per_sec": r.per_sec().round(), "delivered": r.delivered,
                })
            );
        }
    }
    Ok(())
}

/// A fresh database path under the system temp dir.
fn tempfile_path() -> Result<PathBuf> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("ivm-smsc-bench-{}-{ms}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir.join("outbox.db"))
}
