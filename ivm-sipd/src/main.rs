//! `ivm-sipd`: parses the command line, loads the configuration and starts the server or runs
//! an admin command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use ivm_sipd::app::admin;
use ivm_sipd::app::cli::{Cli, Command};
use ivm_sipd::config::Config;
use ivm_sipd::services::dial_plan::DialPlan;

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
            if let Some(address) = args.smsc {
                config.smsc.mode = ivm_sipd::config::SmsMode::External;
                config.smsc.address = address;
            }
            if let Some(id) = args.smsc_system_id {
                config.smsc.system_id = id;
            }
            if let Some(pw) = args.smsc_password {
                config.smsc.password = pw;
            }
            // A bad dial plan file stops the start here, before anything binds.
            DialPlan::from_config(&config.calls)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(ivm_sipd::app::server::run(config))
        }
        Command::Subscriber(cmd) => admin::subscriber_command(&config, cmd),
        Command::Trunk(cmd) => admin::trunk_command(&config, cmd),
        Command::Messages(cmd) => admin::messages_command(&config, cmd),
        Command::Cdr(cmd) => admin::cdr_command(&config, cmd),
        Command::Security(cmd) => admin::security_command(&config, cmd),
    }
}
