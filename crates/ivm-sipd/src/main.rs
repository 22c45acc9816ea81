//! `ivm-sipd`: parses the command line, loads the configuration and starts the server or runs
//! an admin command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use ivm_sipd::cli::{Cli, Command, SubscriberCommand, TrunkCommand};
use ivm_sipd::config::Config;
use ivm_sipd::dial_plan::DialPlan;
use ivm_sipd::store::{self, subscribers, trunks};
use ivm_sipd::trunk::TrunkSpec;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.storage.data_dir = dir;
    }
    match cli.command {
        Command::Run(args) => {
            if let Some(listen) = args.listen {
                config.sip.listen = listen;
            }
            if let Some(path) = args.dialplan {
                config.calls.dialplan = Some(path);
            }
            if let Some(ports) = args.rtp_ports {
                config.media.rtp_ports = ports;
            }
            // A bad dial plan file stops the start here, before anything binds.
            DialPlan::from_config(&config.calls)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(ivm_sipd::server::run(config))
        }
        Command::Subscriber(cmd) => subscriber_command(&config, cmd),
        Command::Trunk(cmd) => trunk_command(&config, cmd),
    }
}

/// One line of `trunk list --json`.
#[derive(serde::Serialize)]
struct TrunkListing<'a> {
    #[serde(flatten)]
    spec: &'a TrunkSpec,
    /// `config` or `store`.
    source: &'static str,
    /// False for a stored trunk whose name the config file also defines (the config wins).
    active: bool,
}

fn trunk_command(config: &Config, cmd: TrunkCommand) -> anyhow::Result<()> {
    let conn = store::open(&config.storage.data_dir)?;
    let in_config = |name: &str| config.trunks.iter().any(|t| t.name == name);
    match cmd {
        TrunkCommand::Add {
            name,
            address,
            transport,
            routes,
            trusted,
        } => {
            trunks::add(
                &conn,
                &TrunkSpec {
                    name: name.clone(),
                    address,
                    transport,
                    routes,
                    trusted,
                },
            )?;
            println!("added trunk {name}");
            if in_config(&name) {
                eprintln!("note: the config file also defines trunk {name}; the config file's one is used");
            }
        }
        TrunkCommand::List { json } => {
            let stored = trunks::list(&conn)?;
            let rows = config
                .trunks
                .iter()
                .map(|spec| TrunkListing {
                    spec,
                    source: "config",
                    active: true,
                })
                .chain(stored.iter().map(|spec| TrunkListing {
                    spec,
                    source: "store",
                    active: !in_config(&spec.name),
                }));
            for row in rows {
                if json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(",") };
                    println!(
                        "{}\t{}\t{}\troutes={}\ttrusted={}\t{}{}",
                        row.spec.name,
                        row.spec.transport.as_str(),
                        row.spec.address,
                        list(&row.spec.routes),
                        list(&row.spec.trusted),
                        row.source,
                        if row.active {
                            ""
                        } else {
                            " (ignored: the config file defines this name)"
                        }
                    );
                }
            }
        }
        TrunkCommand::Remove { name } => {
            if !trunks::remove(&conn, &name)? {
                if in_config(&name) {
                    anyhow::bail!("trunk {name} is defined in the config file; remove it there");
                }
                anyhow::bail!("no stored trunk {name}");
            }
            println!("removed trunk {name}");
        }
    }
    Ok(())
}

fn subscriber_command(config: &Config, cmd: SubscriberCommand) -> anyhow::Result<()> {
    let mut conn = store::open(&config.storage.data_dir)?;
    let realm = &config.sip.realm;
    match cmd {
        SubscriberCommand::Add {
            number,
            password,
            name,
            msisdn,
            pin,
        } => {
            subscribers::add(
                &conn,
                &subscribers::NewSubscriber {
                    number: number.clone(),
                    password,
                    name,
                    msisdn,
                    pin,
                },
                realm,
            )?;
            println!("added subscriber {number}");
        }
        SubscriberCommand::List { json } => {
            for s in subscribers::list(&conn)? {
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}",
                        s.number,
                        s.name.as_deref().unwrap_or("-"),
                        s.msisdn.as_deref().unwrap_or("-"),
                        if s.has_pin { "pin" } else { "-" }
                    );
                }
            }
        }
        SubscriberCommand::Remove { number } => {
            if !subscribers::remove(&mut conn, &number)? {
                anyhow::bail!("no subscriber {number}");
            }
            println!("removed subscriber {number}");
        }
        SubscriberCommand::Import { file } => {
            let n = subscribers::import_csv(&mut conn, &file, realm)?;
            println!("imported {n} subscribers from {}", file.display());
        }
    }
    Ok(())
}
