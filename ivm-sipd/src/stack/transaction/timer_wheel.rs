//! A hashed timer wheel: one wheel holds every transaction timer (A–M) of the process, so
//! 100,000 live transactions cost one `Vec` push per armed timer and no task or lock each.
//!
//! Time is whatever monotonic millisecond clock the caller passes in; the wheel never reads a
//! clock. Slots are `tick_ms` wide (10 ms by default) and there are `slots` of them (4096 by
//! default, one rotation = 40.96 s). An entry whose deadline lies more than one rotation ahead
//! sits in its slot until a pass over that slot finds it due, so far-future deadlines need no
//! second level. Cancellation is lazy: the entry stays in its slot and is dropped when reached.

use std::collections::HashSet;

/// Identifies one inserted timer, for [`TimerWheel::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    seq: u64,
    deadline: u64,
}

impl TimerId {
    /// When the timer fires (ms on the caller's clock).
    pub fn deadline(self) -> u64 {
        self.deadline
    }
}

struct Entry<T> {
    deadline: u64,
    seq: u64,
    payload: T,
}

/// A hashed timer wheel carrying a payload `T` per timer.
pub struct TimerWheel<T> {
    slots: Vec<Vec<Entry<T>>>,
    mask: u64,
    tick_ms: u64,
    /// The `now` of the last [`expire`](Self::expire): every entry still stored is later.
    now: u64,
    next_seq: u64,
    /// Entries stored, cancelled ones included.
    stored: usize,
    /// Sequence numbers of stored entries that were cancelled.
    cancelled: HashSet<u64>,
    /// Due entries of the current `expire`, sorted before they are handed out (kept to reuse
    /// its allocation).
    due: Vec<Entry<T>>,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel::new(10, 4096)
    }
}

impl<T> TimerWheel<T> {
    /// A wheel of `slots` slots (rounded up to a power of two) each `tick_ms` wide.
    pub fn new(tick_ms: u64, slots: usize) -> Self {
        let slots = slots.max(1).next_power_of_two();
        TimerWheel {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            mask: slots as u64 - 1,
            tick_ms: tick_ms.max(1),
            now: 0,
            next_seq: 0,
            stored: 0,
            cancelled: HashSet::new(),
            due: Vec::new(),
        }
    }

    /// Live (inserted, not yet fired, not cancelled) timers.
    pub fn len(&self) -> usize {
        self.stored - self.cancelled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `payload` for `deadline_ms`. A deadline not after the last `expire` time fires
    /// at the next `expire` whose `now` is later than that time. O(1).
    pub fn insert(&mut self, deadline_ms: u64, payload: T) -> TimerId {
        let deadline = deadline_ms.max(self.now + 1);
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = ((deadline / self.tick_ms) & self.mask) as usize;
        self.slots[slot].push(Entry { deadline, seq, payload });
        self.stored += 1;
        TimerId { seq, deadline }
    }

    /// Cancels a timer. Cancelling one that already fired or was already cancelled does
    /// nothing. O(1); the entry's memory is reclaimed when its slot is next passed.
    pub fn cancel(&mut self, id: TimerId) {
        // Every stored entry has a deadline after `self.now`; one at or before it has fired.
        if id.deadline > self.now {
            self.cancelled.insert(id.seq);
        }
    }

    /// Appends the payloads of every timer with a deadline at or before `now` to `out`, in
    /// deadline order (insertion order among equal deadlines). A `now` earlier than a
    /// previous one is treated as that one.
    pub fn expire(&mut self, now: u64, out: &mut Vec<T>) {
        let now = now.max(self.now);
        let first = self.now / self.tick_ms;
        let last = now / self.tick_ms;
        self.now = now;
        if self.stored == 0 {
            return;
        }
        // Past one rotation every slot is visited once; the `deadline <= now` test then also
        // catches entries of later rotations that have become due.
        let ticks = (last - first + 1).min(self.mask + 1);
        for tick in first..first + ticks {
            let slot = &mut self.slots[(tick & self.mask) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].deadline > now {
                    i += 1;
                    continue;
                }
                let entry = slot.swap_remove(i);
                self.stored -= 1;
                if self.cancelled.is_empty() || !self.cancelled.remove(&entry.seq) {
                    self.due.push(entry);
                }
            }
        }
        self.due.sort_unstable_by_key(|e| (e.deadline, e.seq));
        out.extend(self.due.drain(..).map(|e| e.payload));
    }

    /// The earliest deadline of a live timer, for a driver that sleeps until then. Scans at
    /// most one rotation of slots (plus, when every timer is further away, every entry).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let live = |e: &&Entry<T>| self.cancelled.is_empty() || !self.cancelled.contains(&e.seq);
        let first = self.now / self.tick_ms;
        for tick in first..=first + self.mask {
            let slot = &self.slots[(tick & self.mask) as usize];
            let this_rotation = slot.iter().filter(live).filter(|e| e.deadline / self.tick_ms == tick);
            if let Some(d) = this_rotation.map(|e| e.deadline).min() {
                return Some(d);
            }
        }
        self.slots.iter().flatten().filter(live).map(|e| e.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_deadline_in_order() {
        let mut w = TimerWheel::default();
        w.insert(30, "c");
        w.insert(15, "b");
        w.insert(5, "a");
        w.insert(15, "b2");
        let mut out = Vec::new();
        w.expire(4, &mut out);
        assert!(out.is_empty());
        w.expire(5, &mut out);
        assert_eq!(out, ["a"]);
        out.clear();
        w.expire(100, &mut out);
        assert_eq!(out, ["b", "b2", "c"]);
        assert!(w.is_empty());
    }

    #[test]
    fn exact_within_a_tick() {
        let mut w = TimerWheel::new(10, 8);
        w.insert(503, 1);
        w.insert(507, 2);
        let mut out = Vec::new();
        w.expire(505, &mut out);
        assert_eq!(out, [1]);
        w.expire(506, &mut out);
        assert_eq!(out, [1]);
        w.expire(507, &mut out);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn cancel_is_lazy_and_idempotent() {
        let mut w = TimerWheel::default();
        let a = w.insert(100, 'a');
        let b = w.insert(100, 'b');
        w.cancel(a);
        w.cancel(a);
        assert_eq!(w.len(), 1);
        let mut out = Vec::new();
        w.expire(100, &mut out);
        assert_eq!(out, ['b']);
        // Cancelling a fired timer leaves nothing behind.
        w.cancel(b);
        assert_eq!(w.len(), 0);
        assert!(w.cancelled.is_empty());
    }

    #[test]
    fn far_future_and_clock_jumps() {
        let mut w = TimerWheel::new(10, 16); // 160 ms per rotation
        w.insert(1_000, "far");
        w.insert(170, "next rotation");
        w.insert(50, "near");
        assert_eq!(w.next_deadline(), Some(50));
        let mut out = Vec::new();
        w.expire(60, &mut out);
        assert_eq!(out, ["near"]);
        assert_eq!(w.next_deadline(), Some(170));
        out.clear();
        w.expire(165, &mut out);
        assert!(out.is_empty(), "{out:?}");
        w.expire(999, &mut out);
        assert_eq!(out, ["next rotation"]);
        assert_eq!(w.next_deadline(), Some(1_000));
        out.clear();
        // A jump of many rotations at once.
        w.insert(5_000, "later");
        w.insert(5_001, "later still");
        w.expire(1_000_000, &mut out);
        assert_eq!(out, ["far", "later", "later still"]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn past_deadlines_fire_next() {
        let mut w = TimerWheel::default();
        let mut out = Vec::new();
        w.expire(1_000, &mut out);
        let id = w.insert(10, "late");
        assert!(id.deadline() > 1_000);
        w.expire(1_001, &mut out);
        assert_eq!(out, ["late"]);
    }

    #[test]
    fn hundred_thousand_timers() {
        let mut w = TimerWheel::default();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut ids = Vec::new();
        for i in 0..100_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let deadline = 1 + seed % 200_000; // up to 200 s: about five rotations
            ids.push((w.insert(deadline, (deadline, i)), i));
        }
        for (id, _) in ids.iter().filter(|(_, i)| i % 10 == 0) {
            w.cancel(*id);
        }
        assert_eq!(w.len(), 90_000);
        let mut out = Vec::new();
        let mut fired = 0;
        let mut last = 0;
        let mut now = 0;
        while now < 210_000 {
            now += 7;
            w.expire(now, &mut out);
            for (deadline, i) in out.drain(..) {
                assert!(i % 10 != 0, "cancelled timer fired");
                assert!(
                    deadline <= now && deadline > now - 7,
                    "deadline {deadline} fired at {now}"
                );
                assert!(deadline >= last);
                last = deadline;
                fired += 1;
            }
        }
        assert_eq!(fired, 90_000);
        assert!(w.is_empty());
        assert!(w.cancelled.is_empty());
    }
}
