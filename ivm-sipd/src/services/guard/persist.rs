//! The guard's store task: writes each new ban to the `bans` table, checks every second for
//! bans lifted there by `ivm-sipd security unban` (another process) and lifts them in memory,
//! and forgets rows of bans long over. Ends when the guard is dropped.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::bans::{self, BanRow};
use crate::store::unix_now;
use crate::store::writer::StoreHandle;

/// How often lifted bans are looked for.
const LIFT_CHECK: Duration = Duration::from_secs(1);
/// Rows of bans over for this long are deleted (their strikes forgotten).
const FORGET_AFTER_SECS: i64 = 30 * 86_400;
/// How often old rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the task lifts bans in (the guard).
pub(super) trait Lift: Send + Sync + 'static {
    fn lift(&self, ip: IpAddr);
}

pub(super) async fn run(guard: Weak<dyn Lift>, store: StoreHandle, mut new_bans: mpsc::UnboundedReceiver<BanRow>) {
    let mut tick = tokio::time::interval(LIFT_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    // Lifts at or after this time are looked for; those already taken in are remembered so a
    // lift in the same second is neither missed nor taken twice.
    let mut since = unix_now();
    let mut taken: HashSet<(String, i64)> = HashSet::new();
    loop {
        tokio::select! {
            ban = new_bans.recv() => {
                let Some(ban) = ban else { return };
                let address = ban.address.clone();
                if let Err(e) = store.run(move |conn| bans::put(conn, &ban)).await {
                    tracing::error!(source = %address, error = %e, "ban not stored (it holds until a restart)");
                }
            }
            _ = tick.tick() => {
                if guard.strong_count() == 0 {
                    return;
                }
                let lifted = match store.run(move |conn| bans::lifted_since(conn, since)).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "lifted bans not read");
                        continue;
                    }
                };
                let Some(guard) = guard.upgrade() else { return };
                for (address, at) in lifted {
                    if !taken.insert((address.clone(), at)) {
                        continue;
                    }
                    since = since.max(at);
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        guard.lift(ip);
                    }
                }
                taken.retain(|(_, at)| *at >= since);
            }
            _ = prune.tick() => {
                let before = unix_now() - FORGET_AFTER_SECS;
                if let Err(e) = store.run(move |conn| bans::prune(conn, before)).await {
                    tracing::warn!(error = %e, "old bans not pruned");
                }
            }
        }
    }
}
