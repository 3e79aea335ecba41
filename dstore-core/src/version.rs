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
///
/// A reading further ahead of this node's wall clock than `max_ahead` is refused, not
/// observed: one peer with a clock near `u64::MAX` (broken or hostile) would otherwise drag
/// every clock it reaches there, and stamp versions that nothing written later could beat.
#[derive(Debug)]
pub struct Clock {
    last: Mutex<u64>,
    /// Added to the wall clock, in milliseconds: lets tests run a node whose clock is off.
    offset_ms: i64,
    /// How far ahead of the wall clock a reading may be, in milliseconds.
    max_ahead_ms: u64,
}

/// The default of `Clock::max_ahead_ms` (and `Config::max_clock_drift`): an hour. A node
/// whose wall clock is behind the cluster's by more than this refuses its peers' readings,
/// so it must cover the skews the cluster promises to ride out (tests run nodes 5 and 10
/// minutes slow); anything near the end of time is far beyond it.
pub const MAX_CLOCK_DRIFT_MS: u64 = 3_600_000;

impl Default for Clock {
    fn default() -> Self {
        Self::new(0, MAX_CLOCK_DRIFT_MS)
    }
}

/// The HLC reading of a wall-clock time in milliseconds since the epoch.
pub fn hlc_of_ms(ms: u64) -> u64 {
    ms.saturating_mul(1 << 16)
}

impl Clock {
    pub fn with_offset(offset_ms: i64) -> Self {
        Self::new(offset_ms, MAX_CLOCK_DRIFT_MS)
    }

    pub fn new(offset_ms: i64, max_ahead_ms: u64) -> Self {
        Self {
            last: Mutex::default(),
            offset_ms,
            max_ahead_ms,
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
        *last = wall.max(last.saturating_add(1));
        *last
    }

    /// The latest reading this node accepts from elsewhere: its wall clock plus the drift
    /// allowed, to the end of that millisecond.
    pub fn horizon(&self) -> u64 {
        hlc_of_ms(self.wall_ms().saturating_add(self.max_ahead_ms)) | 0xFFFF
    }

    /// Whether `time` (a peer's reading, or a version) is within the drift allowed.
    pub fn plausible(&self, time: u64) -> bool {
        time <= self.horizon()
    }

    /// Moves the clock past a time seen elsewhere (a stored or received version, or a peer's
    /// reading carried by a message). A time beyond `horizon` is refused: the clock stays,
    /// and false says so (the caller logs it).
    pub fn observe(&self, time: u64) -> bool {
        if !self.plausible(time) {
            return false;
        }
        let mut last = self.lock();
        *last = (*last).max(time);
        true
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
        let soon = hlc_of_ms(c.wall_ms() + 30_000);
        assert!(c.observe(soon));
        assert!(c.now() > soon);
    }

    /// A reading from the far future (one Ping with `clock = u64::MAX` used to panic a node
    /// with "attempt to add with overflow") is refused, and the clock keeps working.
    #[test]
    fn a_reading_beyond_the_drift_is_refused_and_nothing_overflows() {
        let c = Clock::default();
        let before = c.now();
        for poison in [
            u64::MAX,
            u64::MAX - 1,
            hlc_of_ms(c.wall_ms() + MAX_CLOCK_DRIFT_MS + 1000),
        ] {
            assert!(!c.observe(poison), "{poison}");
            assert!(!c.plausible(poison));
        }
        let after = c.now();
        assert!(after > before && after < hlc_of_ms(c.wall_ms() + 1000));
        // Even a clock driven to the end saturates instead of panicking.
        let stuck = Clock::new(0, u64::MAX);
        assert!(stuck.observe(u64::MAX));
        assert_eq!(stuck.now(), u64::MAX);
        assert_eq!(stuck.now(), u64::MAX);
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
