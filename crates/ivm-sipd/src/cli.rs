//! The command line (clap): `run` and the admin subcommands that work on the same data
//! directory as the running server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ivm-sipd", version, about = "IVM instant voice messaging SIP server")]
pub struct Cli {
    /// Configuration file (TOML); the embedded defaults when absent.
    #[arg(long, global = true, env = "IVM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, global = true, env = "IVM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Run(RunArgs),
    /// Manage subscribers.
    #[command(subcommand)]
    Subscriber(SubscriberCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// UDP and TCP listen address (overrides sip.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum SubscriberCommand {
    /// Add a subscriber.
    Add {
        /// Extension, E.164 number (+…) or user name.
        number: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        msisdn: Option<String>,
        #[arg(long)]
        pin: Option<String>,
    },
    /// List subscribers.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a subscriber and its registrations.
    Remove { number: String },
    /// Import subscribers from CSV (header: number,password,name,msisdn,pin).
    Import { file: PathBuf },
}
