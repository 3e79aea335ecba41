//! The member table: every storage node this node knows of, its address, zone and health.
//! Health comes from heartbeats: a member that answered within `suspect_after` is alive,
//! within `dead_after` suspect, else dead. Alive and suspect members own data; dead ones do
//! not, until they answer again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::placement::Candidate;
use crate::ids::NodeId;
use crate::net::message::MemberInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Alive,
    Suspect,
    Dead,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A member not heard from for this long is suspect (still an owner).
    pub suspect_after: Duration,
    /// A member not heard from for this long is dead (no longer an owner).
    pub dead_after: Duration,
    /// How long one request to a peer may take before that peer is skipped for it.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(10),
            call: Duration::from_secs(10),
        }
    }
}

struct Entry {
    info: MemberInfo,
    learned: Instant,
    last_ok: Option<Instant>,
    /// When to dial next, and the backoff to use after a failure.
    next_dial: Instant,
    backoff: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Members {
    table: HashMap<NodeId, Entry>,
}

impl Members {
    /// Adds a member learnt from a hello or a peer's list, or updates its address.
    pub fn learn(&mut self, info: MemberInfo) {
        match self.table.get_mut(&info.id) {
            Some(e) => e.info = info,
            None => {
                self.table.insert(
                    info.id,
                    Entry {
                        info,
                        learned: Instant::now(),
                        last_ok: None,
                        next_dial: Instant::now(),
                        backoff: BACKOFF_MIN,
                    },
                );
            }
        }
    }

    pub fn answered(&mut self, id: &NodeId) {
        if let Some(e) = self.table.get_mut(id) {
            e.last_ok = Some(Instant::now());
            e.backoff = BACKOFF_MIN;
        }
    }

    /// Records a failed dial or call: try again after a backoff that doubles up to a cap.
    pub fn failed(&mut self, id: &NodeId) {
        if let Some(e) = self.table.get_mut(id) {
            e.next_dial = Instant::now() + e.backoff;
            e.backoff = (e.backoff * 2).min(BACKOFF_MAX);
        }
    }

    pub fn may_dial(&self, id: &NodeId) -> bool {
        self.table
            .get(id)
            .is_some_and(|e| Instant::now() >= e.next_dial)
    }

    pub fn health(&self, id: &NodeId, t: &Timeouts) -> Health {
        self.health_at(id, t, Instant::now())
    }

    fn health_at(&self, id: &NodeId, t: &Timeouts, now: Instant) -> Health {
        match self.table.get(id).and_then(|e| e.last_ok) {
            Some(at) if now.duration_since(at) < t.suspect_after => Health::Alive,
            Some(at) if now.duration_since(at) < t.dead_after => Health::Suspect,
            _ => Health::Dead,
        }
    }

    pub fn get(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.table.get(id).map(|e| &e.info)
    }

    pub fn all(&self) -> Vec<MemberInfo> {
        self.table.values().map(|e| e.info.clone()).collect()
    }

    /// Whether a member that is dead now was alive (or learnt) less than `window` ago: one
    /// that may still come back with data nobody else has.
    pub fn missing_within(&self, t: &Timeouts, window: Duration) -> bool {
        let now = Instant::now();
        self.table.values().any(|e| {
            self.health(&e.info.id, t) == Health::Dead
                && now.duration_since(e.last_ok.unwrap_or(e.learned)) < window
        })
    }

    /// Members that are not dead: the ones that own data.
    pub fn live(&self, t: &Timeouts) -> Vec<MemberInfo> {
        self.table
            .values()
            .filter(|e| self.health(&e.info.id, t) != Health::Dead)
            .map(|e| e.info.clone())
            .collect()
    }
}

impl From<&MemberInfo> for Candidate {
    fn from(m: &MemberInfo) -> Self {
        Candidate {
            id: m.id,
            zone: m.zone.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(i: u8) -> MemberInfo {
        MemberInfo {
            id: NodeId([i; 32]),
            addr: format!("127.0.0.1:{i}"),
            zone: None,
        }
    }

    #[test]
    fn health_follows_answers_and_backoff_is_capped() {
        let t = Timeouts::default();
        let id = NodeId([1; 32]);
        let mut m = Members::default();
        m.learn(info(1));
        assert_eq!(m.health(&id, &t), Health::Dead, "never answered");
        m.answered(&id);
        let at = m.table[&id].last_ok.unwrap();
        assert_eq!(m.health_at(&id, &t, at), Health::Alive);
        assert_eq!(m.live(&t).len(), 1);
        assert_eq!(m.health_at(&id, &t, at + t.suspect_after), Health::Suspect);
        assert_eq!(m.health_at(&id, &t, at + t.dead_after), Health::Dead);

        for _ in 0..20 {
            m.failed(&NodeId([1; 32]));
        }
        let e = &m.table[&NodeId([1; 32])];
        assert_eq!(e.backoff, BACKOFF_MAX);
        assert!(!m.may_dial(&NodeId([1; 32])));
    }
}
