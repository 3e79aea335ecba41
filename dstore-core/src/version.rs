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
/// anything it returned or observed before.
#[derive(Debug, Default)]
pub struct Clock {
    last: Mutex<u64>,
}

impl Clock {
    pub fn now(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            << 16;
        let mut last = self.last.lock().expect("clock lock");
        *last = wall.max(*last + 1);
        *last
    }

    /// Moves the clock past a time seen elsewhere (a stored or received version).
    pub fn observe(&self, time: u64) {
        let mut last = self.last.lock().expect("clock lock");
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
}
