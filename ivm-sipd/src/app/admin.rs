//! The admin subcommands (`subscriber`, `trunk`, `messages`, `cdr`, `security`): each opens the data
//! directory's database directly, so they work while the server runs.

use std::io::Write;

use anyhow::Context;

use crate::app::cli::{CdrCommand, MessagesCommand, SecurityCommand, SubscriberCommand, TrunkCommand};
use crate::config::Config;
use crate::services::trunk::TrunkSpec;
use crate::store::{self, bans, cdrs, mailbox, messages, subscribers, trunks};

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

pub fn trunk_command(config: &Config, cmd: TrunkCommand) -> anyhow::Result<()> {
    let conn = store::open(&config.storage.data_dir)?;
    let in_config = |name: &str| config.trunks.iter().any(|t| t.name == name);
    match cmd {
        TrunkCommand::Add {
            name,
            address,
            transport,
            routes,
            trusted,
            asserts_identity,
        } => {
            trunks::add(
                &conn,
                &TrunkSpec {
                    name: name.clone(),
                    address,
                    transport,
                    routes,
                    trusted,
                    asserts_identity,
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
                        "{}\t{}\t{}\troutes={}\ttrusted={}\tasserts_identity={}\t{}{}",
                        row.spec.name,
                        row.spec.transport.as_str(),
                        row.spec.address,
                        list(&row.spec.routes),
                        list(&row.spec.trusted),
                        row.spec.asserts_identity,
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

pub fn subscriber_command(config: &Config, cmd: SubscriberCommand) -> anyhow::Result<()> {
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
        SubscriberCommand::Rules {
            number,
            notify,
            store_forward,
            unsolicited_mwi,
        } => {
            if !mailbox::set_rules(&conn, &number, &notify, &store_forward, unsolicited_mwi)? {
                anyhow::bail!("no subscriber {number}");
            }
            println!(
                "subscriber {number}: notify={notify} store_forward={store_forward} unsolicited_mwi={unsolicited_mwi}"
            );
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

pub fn messages_command(config: &Config, cmd: MessagesCommand) -> anyhow::Result<()> {
    let conn = store::open(&config.storage.data_dir)?;
    match cmd {
        MessagesCommand::List { json } => {
            let mut out = std::io::stdout().lock();
            for m in messages::list(&conn)? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&m)?)?;
                } else {
                    let deliveries: Vec<String> = m
                        .deliveries
                        .iter()
                        .map(|d| format!("{}:{}", d.target, d.state))
                        .collect();
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{} ms\t{}\t{}",
                        m.id,
                        m.sender,
                        m.state,
                        m.duration_ms,
                        m.retrieval_number,
                        deliveries.join(",")
                    )?;
                }
            }
        }
        MessagesCommand::Export { id, wav } => {
            let (codec, frames) = read_message_audio(&config.storage, id)?;
            ivm_media::wav::export(&frames, codec, &wav).with_context(|| format!("writing {}", wav.display()))?;
            println!(
                "exported message {id}: {} ms to {}",
                frames.len() as u64 * 20,
                wav.display()
            );
        }
    }
    Ok(())
}

/// The committed audio of one message, read without disturbing a running server.
fn read_message_audio(
    storage: &crate::config::StorageConfig,
    id: i64,
) -> anyhow::Result<(ivm_media::codec::Codec, Vec<bytes::Bytes>)> {
    let data_dir = &storage.data_dir;
    let dir = data_dir.join("fragments");
    let keys = super::master_key::for_reading(storage)?;
    let (codec, frames) = ivm_media::fragment_store::read_committed(&dir, &store::db_path(data_dir), keys.as_ref(), id)
        .with_context(|| format!("reading the audio of message {id}"))?
        .with_context(|| format!("message {id} has no stored audio"))?;
    Ok((codec, frames))
}

pub fn cdr_command(config: &Config, cmd: CdrCommand) -> anyhow::Result<()> {
    let conn = store::open(&config.storage.data_dir)?;
    match cmd {
        CdrCommand::Export { output } => match output {
            Some(path) => {
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                let n = cdrs::export_csv(&conn, file)?;
                eprintln!("exported {n} CDRs to {}", path.display());
            }
            None => {
                cdrs::export_csv(&conn, std::io::stdout().lock())?;
            }
        },
    }
    Ok(())
}

/// One line of `security list --json`.
#[derive(serde::Serialize)]
struct BanListing<'a> {
    address: &'a str,
    reason: &'a str,
    strikes: u32,
    banned_at: i64,
    until: i64,
    lifted_at: Option<i64>,
    /// `banned`, `over` or `lifted`.
    state: &'static str,
}

pub fn security_command(config: &Config, cmd: SecurityCommand) -> anyhow::Result<()> {
    let conn = store::open(&config.storage.data_dir)?;
    let now = store::unix_now();
    match cmd {
        SecurityCommand::List { json } => {
            for row in bans::list(&conn)? {
                let state = match (row.lifted_at, row.active(now)) {
                    (Some(_), _) => "lifted",
                    (None, true) => "banned",
                    (None, false) => "over",
                };
                if json {
                    let line = BanListing {
                        address: &row.address,
                        reason: &row.reason,
                        strikes: row.strikes,
                        banned_at: row.banned_at,
                        until: row.until,
                        lifted_at: row.lifted_at,
                        state,
                    };
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    let left = if state == "banned" {
                        format!(" ({} s left)", row.until - now)
                    } else {
                        String::new()
                    };
                    println!(
                        "{}\t{}{left}\treason={}\tstrikes={}\tbanned_at={}\tuntil={}",
                        row.address, state, row.reason, row.strikes, row.banned_at, row.until
                    );
                }
            }
        }
        SecurityCommand::Unban { address } => {
            let address = address.to_canonical().to_string();
            if !bans::lift(&conn, &address, now)? {
                anyhow::bail!("no ban for {address}");
            }
            println!("unbanned {address}");
        }
    }
    Ok(())
}
