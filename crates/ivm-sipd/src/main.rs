//! `ivm-sipd`: parses the command line, loads the configuration and starts the server or runs
//! an admin command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use ivm_sipd::cli::{Cli, Command, SubscriberCommand};
use ivm_sipd::config::Config;
use ivm_sipd::store::{self, subscribers};

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
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(ivm_sipd::server::run(config))
        }
        Command::Subscriber(cmd) => subscriber_command(&config, cmd),
    }
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
