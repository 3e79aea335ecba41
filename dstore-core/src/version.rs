//! Versions of a key: a hybrid logical clock reading plus the writer's node id, compared in
//! that order, so every two versions are ordered and "last writer wins" is well defined.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Milliseconds since the Unix epoch in the high 48 bits, a logical counter in the low
    /// 16: it never goes backwards on one node, even if the wall clock does.
    pub time: u64,
    /// Breaks ties between writers that read the same clock.
    pub node: NodeId,
}

/// A hybrid logical clock: `now()` is at least the wall clock, and always greater than
/// anything it returned or observed before. Every message between nodes carries the sender's
/// reading and the receiver observes it, so a node whose wall clock is behind still stamps
/// its writes after everything it has heard of: it cannot make an old write win over a newer
/// one it has seen.
#[derive(Debug, Default)]
pub struct Clock {
    last: Mutex<u64>,
    /// Added to the wall clock, in milliseconds: lets tests run a node whose clock is off.
    offset_ms: i64,
}

/// The HLC reading of a wall-clock time in milliseconds since the epoch.
pub fn hlc_of_ms(ms: u64) -> u64 {
    ms.saturating_mul(1 << 16)
}

impl Clock {
    pub fn with_offset(offset_ms: i64) -> Self {
        Self {
            last: Mutex::default(),
            offset_ms,
        }
    }

    /// Wall-clock milliseconds since the epoch, with the offset.
    pub fn wall_ms(&self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ms.saturating_add_signed(self.offset_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> u64 {
        let wall = hlc_of_ms(self.wall_ms());
        let mut last = self.lock();
        *last = wall.max(*last + 1);
        *last
    }

    /// Moves the clock past a time seen elsewhere (a stored or received version, or a peer's
    /// reading carried by a message).
    pub fn observe(&self, time: u64) {
        let mut last = self.lock();
        *last = (*last).max(time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_strictly_monotonic_and_follows_observations() {
        let c = Clock::default();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        c.observe(u64::MAX - 10);
        assert!(c.now() > u64::MAX - 10);
    }

    /// A node whose clock is 10 minutes behind, once it has heard of a newer time, stamps
    /// later than it.
    #[test]
    fn a_slow_clock_stamps_after_what_it_observed() {
        let (good, slow) = (Clock::default(), Clock::with_offset(-600_000));
        let seen = good.now();
        assert!(slow.now() < seen, "the offset applies");
        slow.observe(seen);
        assert!(slow.now() > seen);
    }
}
