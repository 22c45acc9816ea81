//! What every transaction state machine has and may touch: its [`Core`] (key, serial, peer,
//! running timers), the [`Ctx`] of one event (clock, timer wheel, actions out) and whether it
//! lives on ([`Flow`]).

use bytes::Bytes;

use super::action::Action;
use super::key::TsxKey;
use super::timer_wheel::{TimerId, TimerWheel};
use super::timers::{TimerKind, TimerSlot, Timers};
use crate::stack::transport::Peer;

/// What a timer carries: whose it is and which one. `serial` tells a transaction from a
/// later one under the same key.
pub(super) struct Fire {
    pub(super) key: TsxKey,
    pub(super) serial: u64,
    pub(super) kind: TimerKind,
}

/// The running timers of one transaction, one per [`TimerSlot`].
#[derive(Default)]
pub(super) struct Armed {
    pub(super) retransmit: Option<TimerId>,
    pub(super) timeout: Option<TimerId>,
    pub(super) linger: Option<TimerId>,
}

impl Armed {
    pub(super) fn slot(&mut self, slot: TimerSlot) -> &mut Option<TimerId> {
        match slot {
            TimerSlot::Retransmit => &mut self.retransmit,
            TimerSlot::Timeout => &mut self.timeout,
            TimerSlot::Linger => &mut self.linger,
        }
    }
}

/// What every transaction has: its key, its serial, the peer it talks to (the request's
/// destination, or where responses go) and its running timers.
pub(super) struct Core {
    pub(super) key: TsxKey,
    pub(super) serial: u64,
    pub(super) peer: Peer,
    pub(super) armed: Armed,
}

impl Core {
    pub(super) fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// Whether a transaction lives on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Terminate,
}

/// What a state machine may touch while it handles one event.
pub(super) struct Ctx<'a> {
    pub(super) now: u64,
    pub(super) timers: &'a Timers,
    pub(super) wheel: &'a mut TimerWheel<Fire>,
    pub(super) out: &'a mut Vec<Action>,
}

impl Ctx<'_> {
    /// Starts `kind` to fire `after` ms from now, replacing the timer in its slot.
    pub(super) fn arm(&mut self, core: &mut Core, kind: TimerKind, after: u64) {
        let fire = Fire {
            key: core.key.clone(),
            serial: core.serial,
            kind,
        };
        let id = self.wheel.insert(self.now + after, fire);
        if let Some(old) = core.armed.slot(kind.slot()).replace(id) {
            self.wheel.cancel(old);
        }
    }

    pub(super) fn disarm(&mut self, core: &mut Core, slot: TimerSlot) {
        if let Some(id) = core.armed.slot(slot).take() {
            self.wheel.cancel(id);
        }
    }

    pub(super) fn send(&mut self, to: Peer, data: Bytes) {
        self.out.push(Action::Send { to, data });
    }
}
