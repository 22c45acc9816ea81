//! The command line (clap): `run` and the admin subcommands that work on the same data
//! directory as the running server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::PortRange;
use crate::services::trunk::TrunkTransport;

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
    /// Manage trunks (SIP peers for external numbers); changes apply to a running server
    /// within about a second.
    #[command(subcommand)]
    Trunk(TrunkCommand),
    /// Recorded voice messages.
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// Call detail records.
    #[command(subcommand)]
    Cdr(CdrCommand),
    /// Sources banned by the guard ([security]); an unban applies to a running server within
    /// about a second.
    #[command(subcommand)]
    Security(SecurityCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// List bans: in force, over and lifted (the latest first).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Lift the ban of a source address (and forgive its earlier bans).
    Unban { address: std::net::IpAddr },
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// List messages with their delivery states.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write a message's audio as a WAV file (8 kHz, 16-bit PCM).
    Export {
        id: i64,
        #[arg(long, value_name = "FILE")]
        wav: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CdrCommand {
    /// Write every CDR as CSV (to stdout, or to --output FILE).
    Export {
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// UDP and TCP listen address (overrides sip.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Dial plan file (overrides calls.dialplan; default: the embedded dialplans/default.toml).
    #[arg(long, value_name = "FILE")]
    pub dialplan: Option<PathBuf>,
    /// RTP port range, e.g. 20000-29999 (overrides media.rtp_ports).
    #[arg(long, value_name = "A-B")]
    pub rtp_ports: Option<PortRange>,
    /// Send SMS to this SMSC (HOST:PORT) instead of the built-in one (sets smsc.mode = external).
    #[arg(long, value_name = "HOST:PORT")]
    pub smsc: Option<String>,
    /// system_id for the SMSC bind (overrides smsc.system_id).
    #[arg(long)]
    pub smsc_system_id: Option<String>,
    /// Password for the SMSC bind (overrides smsc.password).
    #[arg(long)]
    pub smsc_password: Option<String>,
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
    /// Set how a subscriber learns about missed messages.
    Rules {
        number: String,
        /// Channels for a missed message: a comma list of sms, callerid, mwi (empty: none).
        #[arg(long, default_value = "sms,callerid,mwi")]
        notify: String,
        /// On registering again with pending messages: `call` (call and play them) or `notify`.
        #[arg(long, default_value = "call")]
        store_forward: String,
        /// Also send MWI NOTIFYs to its registered phones without a subscription.
        #[arg(long)]
        unsolicited_mwi: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrunkCommand {
    /// Add a trunk.
    Add {
        /// Letters, digits and . _ -
        name: String,
        /// IP:PORT, [IPv6]:PORT or host:port.
        #[arg(long)]
        address: String,
        #[arg(long, value_enum, default_value_t = TrunkTransport::Udp)]
        transport: TrunkTransport,
        /// A regular expression the whole dialed number must match (repeatable), e.g. '\+49\d+'.
        #[arg(long = "route", value_name = "REGEX")]
        routes: Vec<String>,
        /// A source network (CIDR or IP address) whose requests are accepted as this trunk (repeatable).
        #[arg(long = "trusted", value_name = "CIDR")]
        trusted: Vec<String>,
        /// The caller identity it presents (P-Asserted-Identity, else From) names a subscriber:
        /// its calls open that subscriber's messages without a PIN.
        #[arg(long)]
        asserts_identity: bool,
    },
    /// List trunks: those of the config file and the stored ones.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored trunk.
    Remove { name: String },
}
