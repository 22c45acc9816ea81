//! The RFC 3261 §17 timer values (T1, T2, T4) and the names of the transaction
//! timers A–M (L and M from RFC 6026).

/// Timer base values in milliseconds (RFC 3261 Table 4). Timers B, D (UDP), F, H, J (UDP),
/// L and M are all 64·T1: 32 s with the default T1, and shorter when a test shrinks T1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: the first retransmission interval (500 ms).
    pub t1: u64,
    /// The longest retransmission interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: u64,
    /// How long a message may stay in the network: Timers I and K on UDP (5 s).
    pub t4: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4_000,
            t4: 5_000,
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, D (UDP), F, H, J (UDP), L and M.
    pub fn timeout(&self) -> u64 {
        64 * self.t1
    }
}

/// A transaction timer. Each occupies one of three slots of a transaction (see
/// [`TimerSlot`]), so arming one replaces the previous timer of its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// INVITE client: retransmit the request (UDP).
    A,
    /// INVITE client: no response in Calling.
    B,
    /// INVITE client: stop absorbing retransmitted non-2xx finals.
    D,
    /// Non-INVITE client: retransmit the request (UDP).
    E,
    /// Non-INVITE client: no final response.
    F,
    /// INVITE server: retransmit the non-2xx final (UDP).
    G,
    /// INVITE server: no ACK for the non-2xx final.
    H,
    /// INVITE server: stop absorbing ACK retransmissions.
    I,
    /// Non-INVITE server: stop answering request retransmissions.
    J,
    /// Non-INVITE client: stop absorbing retransmitted finals.
    K,
    /// INVITE server (RFC 6026 Accepted): stop absorbing INVITE retransmissions.
    L,
    /// INVITE client (RFC 6026 Accepted): stop passing retransmitted 2xx to the TU.
    M,
}

/// The three kinds of timer a transaction can have running at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerSlot {
    Retransmit,
    Timeout,
    Linger,
}

impl TimerKind {
    pub(crate) fn slot(self) -> TimerSlot {
        match self {
            TimerKind::A | TimerKind::E | TimerKind::G => TimerSlot::Retransmit,
            TimerKind::B | TimerKind::F | TimerKind::H => TimerSlot::Timeout,
            TimerKind::D | TimerKind::I | TimerKind::J | TimerKind::K | TimerKind::L | TimerKind::M => {
                TimerSlot::Linger
            }
        }
    }
}
