//! The guard (`[security]`): IVM's own defence against password guessing, scanners and
//! floods, so that a server on a public address needs no fail2ban in front of it.
//!
//! - **Bans.** A source address with `max_auth_failures` failed authentications within
//!   `failure_window_secs`, one that announces itself as a scanner (`User-Agent`), or one that
//!   keeps flooding after `503`s is banned: the stack drops whatever it sends before even a
//!   `100 Trying` (so the right password from it is not accepted either). A ban lasts
//!   `ban_secs`, doubling on each repeat up to `max_ban_secs`; bans are stored (`store::bans`)
//!   and survive a restart; `ivm-sipd security unban` lifts one within a second.
//! - **Accounts.** One account failing `max_account_failures` times within the window (guessed
//!   from many addresses) is protected for `account_protect_secs`: it authenticates only from
//!   addresses it authenticated from before. Its own phone keeps working; nobody is locked out
//!   by someone else's guessing.
//! - **Floods.** New out-of-dialog requests are rate-limited per source address and kind
//!   (REGISTER, INVITE, OPTIONS, other) with a token bucket; beyond it the request gets `503`
//!   with `Retry-After` (RFC 3261 §21.5.4) saying when a token is back.
//!
//! Exempt from all of it: `exempt` networks (a proxy in front, a load generator) and trusted
//! trunk networks. The guard is the stack's [`Gate`] and is told by digest authentication
//! (`registrar::auth`) of every failure and success.

mod limits;
mod persist;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::config::SecurityConfig;
use crate::services::trunk::TrunkTable;
use crate::stack::gate::Gate;
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders};
use crate::stack::transport::Peer;
use crate::store::StoreError;
use crate::store::bans::BanRow;
use crate::store::writer::StoreHandle;

use limits::{Bucket, Window};

/// Sources and accounts tracked at once; beyond, new ones are not counted until old ones
/// are forgotten (bounded memory under a spoofed-address flood).
const MAX_TRACKED: usize = 200_000;
/// Addresses remembered per account as having authenticated.
const MAX_GOOD_ADDRESSES: usize = 32;
/// How often idle counters are forgotten.
const PRUNE_EVERY_MS: u64 = 10_000;

/// Why a source was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    AuthFailures,
    Scanner,
    Flood,
}

impl BanReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::AuthFailures => "auth failures",
            BanReason::Scanner => "scanner",
            BanReason::Flood => "flood",
        }
    }
}

/// The kinds of request with a rate of their own.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Register = 0,
    Invite = 1,
    Options = 2,
    Other = 3,
}

/// What is counted of one source address.
struct Source {
    buckets: [Option<Bucket>; 4],
    failures: Window,
    refusals: Window,
    seen_ms: u64,
}

/// One source's ban, current or past (its strikes make the next one longer).
struct Ban {
    until_ms: u64,
    strikes: u32,
}

#[derive(Default)]
struct Account {
    failures: Window,
    protected_until_ms: u64,
    good: HashSet<IpAddr>,
}

#[derive(Default)]
struct State {
    sources: HashMap<IpAddr, Source>,
    bans: HashMap<IpAddr, Ban>,
    accounts: HashMap<String, Account>,
    pruned_ms: u64,
}

/// The guard; shared by the stack (as its gate) and digest authentication.
pub struct Guard {
    config: SecurityConfig,
    trunks: Option<TrunkTable>,
    state: Mutex<State>,
    /// New bans, for the task that stores them.
    stored: Option<mpsc::UnboundedSender<BanRow>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Guard {
    /// A guard that keeps its bans in memory only (tests, tools).
    pub fn in_memory(config: SecurityConfig, trunks: Option<TrunkTable>) -> Guard {
        Guard {
            config,
            trunks,
            state: Mutex::default(),
            stored: None,
        }
    }

    /// The server's guard: bans in force are read from the store, new ones written to it, and
    /// bans lifted by `ivm-sipd security unban` are lifted here within a second.
    pub async fn start(
        config: SecurityConfig,
        trunks: TrunkTable,
        store: StoreHandle,
    ) -> Result<Arc<Guard>, StoreError> {
        let rows = store.run(crate::store::bans::list).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let guard = Arc::new(Guard {
            config,
            trunks: Some(trunks),
            state: Mutex::default(),
            stored: Some(tx),
        });
        guard.restore(&rows);
        let weak = Arc::downgrade(&guard);
        tokio::spawn(persist::run(weak, store, rx));
        Ok(guard)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the stored bans in: those in force, and the strikes of past ones.
    fn restore(&self, rows: &[BanRow]) {
        let now = now_ms();
        let mut state = self.lock();
        let mut active = 0;
        for row in rows {
            let Ok(ip) = row.address.parse::<IpAddr>() else {
                continue;
            };
            let until_ms = if row.active((now / 1000) as i64) {
                active += 1;
                (row.until.max(0) as u64) * 1000
            } else {
                0
            };
            if row.strikes > 0 || until_ms > 0 {
                state.bans.insert(
                    ip,
                    Ban {
                        until_ms,
                        strikes: row.strikes,
                    },
                );
            }
        }
        if active > 0 {
            tracing::info!(bans = active, "bans in force restored");
        }
    }

    /// Lifts a ban in memory (after `ivm-sipd security unban` lifted it in the store).
    pub fn lift(&self, ip: IpAddr) {
        let mut state = self.lock();
        let was = state.bans.remove(&ip).is_some_and(|b| b.until_ms > now_ms());
        if let Some(s) = state.sources.get_mut(&ip) {
            s.failures.clear();
            s.refusals.clear();
        }
        if was {
            tracing::info!(source = %ip, "ban lifted");
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        !self.config.enabled
            || self.config.exempt.iter().any(|n| n.contains(&ip))
            || self.trunks.as_ref().is_some_and(|t| t.trusts(ip))
    }

    /// Whether `ip` is banned now.
    pub fn banned(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.exempt(ip) && self.lock().bans.get(&ip).is_some_and(|b| b.until_ms > now_ms())
    }

    /// Whether `account` may try to authenticate from `ip` (not while it is protected and
    /// `ip` is not one it authenticated from). The caller reports a refusal as a failure.
    pub fn may_authenticate(&self, ip: IpAddr, account: &str) -> bool {
        let ip = ip.to_canonical();
        if !self.config.enabled {
            return true;
        }
        let now = now_ms();
        let allowed = match self.lock().accounts.get(account) {
            Some(a) if a.protected_until_ms > now => a.good.contains(&ip),
            _ => true,
        };
        if !allowed {
            tracing::info!(source = %ip, account, "authentication refused: the account is protected against guessing");
        }
        allowed
    }

    /// A failed authentication of `account` from `ip`.
    pub fn auth_failed(&self, ip: IpAddr, account: &str) {
        let ip = ip.to_canonical();
        if !self.config.enabled {
            return;
        }
        let now = now_ms();
        let window = self.config.failure_window_secs * 1000;
        {
            let mut state = self.lock();
            if state.accounts.contains_key(account) || state.accounts.len() < MAX_TRACKED {
                let a = state.accounts.entry(account.to_owned()).or_default();
                let n = a.failures.record(now, window, self.config.max_account_failures);
                if n >= self.config.max_account_failures && a.protected_until_ms <= now {
                    a.protected_until_ms = now + self.config.account_protect_secs * 1000;
                    a.failures.clear();
                    tracing::warn!(
                        account,
                        failures = n,
                        protect_secs = self.config.account_protect_secs,
                        known_addresses = a.good.len(),
                        "account under a guessing attack: it authenticates only from known addresses for now"
                    );
                }
            }
        }
        self.count_source_failure(ip, now);
    }

    /// A successful authentication: `ip` is known for `account` from now on.
    pub fn auth_passed(&self, ip: IpAddr, account: &str) {
        let ip = ip.to_canonical();
        if !self.config.enabled {
            return;
        }
        let mut state = self.lock();
        if !state.accounts.contains_key(account) && state.accounts.len() >= MAX_TRACKED {
            return;
        }
        let a = state.accounts.entry(account.to_owned()).or_default();
        if a.good.len() >= MAX_GOOD_ADDRESSES
            && !a.good.contains(&ip)
            && let Some(old) = a.good.iter().next().copied()
        {
            a.good.remove(&old);
        }
        a.good.insert(ip);
    }

    fn count_source_failure(&self, ip: IpAddr, now: u64) {
        if self.exempt(ip) {
            return;
        }
        let window = self.config.failure_window_secs * 1000;
        let limit = self.config.max_auth_failures;
        let over = {
            let mut state = self.lock();
            match source(&mut state, ip, now) {
                Some(s) => s.failures.record(now, window, limit) >= limit,
                None => false,
            }
        };
        if over {
            self.ban(ip, BanReason::AuthFailures, now);
        }
    }

    /// Bans `ip` for its next ban period.
    fn ban(&self, ip: IpAddr, reason: BanReason, now: u64) {
        let (strikes, until_ms) = {
            let mut state = self.lock();
            if let Some(s) = state.sources.get_mut(&ip) {
                s.failures.clear();
                s.refusals.clear();
            }
            let ban = state.bans.entry(ip).or_insert(Ban {
                until_ms: 0,
                strikes: 0,
            });
            if ban.until_ms > now {
                return; // already banned
            }
            ban.strikes = ban.strikes.saturating_add(1);
            let secs = self
                .config
                .ban_secs
                .saturating_mul(1u64 << (ban.strikes - 1).min(32))
                .min(self.config.max_ban_secs);
            ban.until_ms = now + secs * 1000;
            (ban.strikes, ban.until_ms)
        };
        tracing::warn!(
            source = %ip,
            reason = reason.as_str(),
            strikes,
            secs = (until_ms - now) / 1000,
            "source banned"
        );
        if let Some(tx) = &self.stored {
            let _ = tx.send(BanRow {
                address: ip.to_string(),
                reason: reason.as_str().into(),
                strikes,
                banned_at: (now / 1000) as i64,
                until: until_ms.div_ceil(1000) as i64,
                lifted_at: None,
            });
        }
    }

    fn is_scanner(&self, req: &Request) -> bool {
        let Some(ua) = req.headers.get(&HeaderName::UserAgent) else {
            return false;
        };
        let ua = String::from_utf8_lossy(ua).to_ascii_lowercase();
        self.config
            .scanner_user_agents
            .iter()
            .any(|s| !s.is_empty() && ua.contains(&s.to_ascii_lowercase()))
    }

    fn rate(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Register => self.config.register_per_sec,
            Kind::Invite => self.config.invite_per_sec,
            Kind::Options => self.config.options_per_sec,
            Kind::Other => self.config.other_per_sec,
        }
    }

    /// Forgets counters that went idle, now and then.
    fn prune(&self, state: &mut State, now: u64) {
        if now < state.pruned_ms + PRUNE_EVERY_MS {
            return;
        }
        state.pruned_ms = now;
        let window = self.config.failure_window_secs * 1000;
        let idle = window.max(u64::from(self.config.burst_secs) * 1000);
        state.sources.retain(|_, s| now.saturating_sub(s.seen_ms) < idle);
        state.bans.retain(|_, b| b.until_ms > now || b.strikes > 0);
        state.accounts.retain(|_, a| {
            a.failures.forget_before(now.saturating_sub(window));
            !a.good.is_empty() || !a.failures.is_empty() || a.protected_until_ms > now
        });
    }
}

/// The counters of `ip`, created when there is room.
fn source(state: &mut State, ip: IpAddr, now: u64) -> Option<&mut Source> {
    if !state.sources.contains_key(&ip) && state.sources.len() >= MAX_TRACKED {
        return None;
    }
    let s = state.sources.entry(ip).or_insert_with(|| Source {
        buckets: [None, None, None, None],
        failures: Window::default(),
        refusals: Window::default(),
        seen_ms: now,
    });
    s.seen_ms = now;
    Some(s)
}

impl persist::Lift for Guard {
    fn lift(&self, ip: IpAddr) {
        Guard::lift(self, ip);
    }
}

impl Gate for Guard {
    fn screen(&self, request: &Request, source: &Peer) -> bool {
        let ip = source.addr.ip().to_canonical();
        if self.exempt(ip) {
            return true;
        }
        let now = now_ms();
        {
            // One lock per request: the pruning now and then, and the ban check.
            let mut state = self.lock();
            self.prune(&mut state, now);
            if state.bans.get(&ip).is_some_and(|b| b.until_ms > now) {
                return false;
            }
        }
        if self.is_scanner(request) {
            self.ban(ip, BanReason::Scanner, now);
            return false;
        }
        true
    }

    fn admit(&self, request: &Request, peer: &Peer) -> Option<Response> {
        let ip = peer.addr.ip().to_canonical();
        // Inside a dialog (a To tag): part of a call already admitted.
        if self.exempt(ip) || request.header_to().is_some_and(|t| t.tag().is_some()) {
            return None;
        }
        let kind = match request.method {
            Method::Register => Kind::Register,
            Method::Invite => Kind::Invite,
            Method::Options => Kind::Options,
            _ => Kind::Other,
        };
        let rate = self.rate(kind);
        if rate == 0 {
            return None;
        }
        let burst = rate.saturating_mul(self.config.burst_secs).max(1);
        let now = now_ms();
        let (wait_ms, refusals) = {
            let mut state = self.lock();
            let s = source(&mut state, ip, now)?;
            let bucket = s.buckets[kind as usize].get_or_insert_with(|| Bucket::full(burst, now));
            let Err(wait_ms) = bucket.take(rate, burst, now) else {
                return None;
            };
            let window = self.config.failure_window_secs * 1000;
            let limit = self.config.flood_ban_after.max(1);
            (wait_ms, s.refusals.record(now, window, limit))
        };
        if self.config.flood_ban_after > 0 && refusals >= self.config.flood_ban_after {
            self.ban(ip, BanReason::Flood, now);
        }
        tracing::debug!(source = %ip, method = %request.method, "request refused: over the flood limit");
        let mut resp = request.response(503, Some("Too Many Requests From This Address"), &random_token(8));
        resp.headers
            .push(HeaderName::RetryAfter, wait_ms.div_ceil(1000).max(1).to_string());
        Some(resp)
    }
}

#[cfg(test)]
mod tests;
