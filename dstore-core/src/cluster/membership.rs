//! The member table: every storage node this node knows of, its address, zone and health.
//! Health comes from heartbeats: a member that answered within `suspect_after` is alive,
//! within `dead_after` suspect, else dead. Alive and suspect members own data; dead ones do
//! not, until they answer again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::placement::Candidate;
use crate::ids::NodeId;
use crate::net::message::{Departure, MemberInfo};

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

impl Timeouts {
    /// The rules: no zero timeout, and a member is suspect before it is dead.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |why: String| Err(crate::Error::InvalidArgument(why));
        for (name, d) in [
            ("suspect_after", self.suspect_after),
            ("dead_after", self.dead_after),
            ("call_timeout", self.call),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be longer than 0 seconds"));
            }
        }
        if self.dead_after < self.suspect_after {
            return bad(format!(
                "dead_after ({} s) must not be shorter than suspect_after ({} s): a member is \
                 suspect before it is dead",
                self.dead_after.as_secs_f64(),
                self.suspect_after.as_secs_f64()
            ));
        }
        Ok(())
    }
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
    /// When it last went from dead (or unknown) to answering: a join or a return, after
    /// which it owns data that other members may still hold.
    live_since: Option<Instant>,
    /// The incarnation of its last hello (random per start of that node).
    incarnation: Option<u64>,
    /// Set when it said it departs (`Request::Depart`): it owns nothing from then on.
    departed: Option<Departed>,
    /// The incarnation another member reported departed (see `departed_elsewhere`).
    reported: Option<u64>,
    /// When to dial next, and the backoff to use after a failure.
    next_dial: Instant,
    backoff: Duration,
}

/// A member's announced departure.
#[derive(Clone, Copy, Debug)]
struct Departed {
    at: Instant,
    /// The incarnation that departed: only a hello from a later one brings the member back.
    incarnation: Option<u64>,
    /// Left for good (`Node::leave`): garbage collection stops waiting for it.
    permanent: bool,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// At most this many members new to this node are taken from one peer's list.
pub const MAX_LEARNT_PER_ANSWER: usize = 16;
/// At most this many members learnt from peers' lists may be waiting for a first answer:
/// names nobody answers to cannot pile up (a real member answers within a round trip).
pub const MAX_UNANSWERED: usize = 64;
/// At most this many forgotten members are remembered as such.
const MAX_FORGOTTEN: usize = 4096;

/// When an address may be dialled next, and the backoff after its next failure.
#[derive(Clone, Copy, Debug)]
struct Pace {
    next: Instant,
    backoff: Duration,
}

/// `d` times a random factor in [0.5, 1.5): members that fail together do not retry in step.
fn jitter(d: Duration) -> Duration {
    let r = u16::from_le_bytes(crate::crypto::random_bytes()) as f64 / 65536.0;
    d.mul_f64(0.5 + r)
}

pub struct Members {
    table: HashMap<NodeId, Entry>,
    /// Dial pacing per address, shared by every member said to be there: many names for
    /// one address (a peer's list full of fakes) still get one dial per backoff.
    addrs: HashMap<String, Pace>,
    /// Members forgotten for never answering: when they were forgotten (a peer's list does
    /// not bring them back for a while; their own hello does), and when they were learnt
    /// (garbage collection still waits for them as for any member that may hold data).
    forgotten: HashMap<NodeId, (Instant, Instant)>,
    /// When this table was made (the node started): members that answer within
    /// `START_GRACE` of it were there before this node, not joins.
    started: Instant,
}

impl Default for Members {
    fn default() -> Self {
        Self {
            table: HashMap::new(),
            addrs: HashMap::new(),
            forgotten: HashMap::new(),
            started: Instant::now(),
        }
    }
}

/// See `Members::started`.
const START_GRACE: Duration = Duration::from_secs(2);

impl Members {
    /// Adds a member from a peer's list (second-hand), if it is new and was not forgotten
    /// recently; returns whether it was added. A member this node has heard from is not
    /// changed by what others say of it: only its own hello moves it.
    pub fn learn_from_peer(&mut self, info: MemberInfo, forget_after: Duration) -> bool {
        if let Some(e) = self.table.get_mut(&info.id) {
            if e.last_ok.is_none() && e.incarnation.is_none() {
                e.info = info;
            }
            return false;
        }
        if self
            .forgotten
            .get(&info.id)
            .is_some_and(|(at, _)| at.elapsed() < forget_after * 4)
        {
            return false;
        }
        let unanswered = self
            .table
            .values()
            .filter(|e| e.last_ok.is_none() && e.incarnation.is_none())
            .count();
        if unanswered >= MAX_UNANSWERED {
            return false;
        }
        self.learn(info);
        true
    }

    /// Forgets members that have not answered since they were learnt `after` ago (names
    /// from a peer's list that nobody answers to), and the pacing of addresses no member
    /// has any more.
    pub fn forget_silent(&mut self, after: Duration) {
        let now = Instant::now();
        let silent: Vec<(NodeId, Instant)> = self
            .table
            .values()
            .filter(|e| {
                e.last_ok.is_none()
                    && e.incarnation.is_none()
                    && now.duration_since(e.learned) >= after
            })
            .map(|e| (e.info.id, e.learned))
            .collect();
        for (id, learned) in silent {
            self.table.remove(&id);
            self.forgotten.insert(id, (now, learned));
        }
        if self.forgotten.len() > MAX_FORGOTTEN {
            let mut by_age: Vec<(Instant, NodeId)> = self
                .forgotten
                .iter()
                .map(|(id, (at, _))| (*at, *id))
                .collect();
            by_age.sort();
            for (_, id) in &by_age[..by_age.len() - MAX_FORGOTTEN] {
                self.forgotten.remove(id);
            }
        }
        let table = &self.table;
        self.addrs
            .retain(|addr, _| table.values().any(|e| &e.info.addr == addr));
    }

    /// Adds a member learnt from its hello, or updates its address.
    pub fn learn(&mut self, info: MemberInfo) {
        self.forgotten.remove(&info.id);
        match self.table.get_mut(&info.id) {
            Some(e) => e.info = info,
            None => {
                self.table.insert(
                    info.id,
                    Entry {
                        info,
                        learned: Instant::now(),
                        last_ok: None,
                        live_since: None,
                        incarnation: None,
                        departed: None,
                        reported: None,
                        next_dial: Instant::now(),
                        backoff: BACKOFF_MIN,
                    },
                );
            }
        }
    }

    /// Records an answer from `id`. A departed member's answers (it still serves while it
    /// drains) do not make it live again; only a new incarnation's hello does.
    pub fn answered(&mut self, id: &NodeId, t: &Timeouts) {
        let now = Instant::now();
        let was_dead = self.health_at(id, t, now) == Health::Dead;
        if let Some(e) = self.table.get_mut(id) {
            if e.departed.is_some() {
                return;
            }
            if was_dead {
                e.live_since = Some(now);
            }
            e.last_ok = Some(now);
            e.backoff = BACKOFF_MIN;
            self.addrs.remove(&e.info.addr);
        }
    }

    /// Records a hello from `id` at `incarnation`: a departed member that comes back as a
    /// new incarnation is a member again.
    pub fn hello(&mut self, info: MemberInfo, incarnation: u64, t: &Timeouts) {
        let id = info.id;
        self.learn(info);
        if let Some(e) = self.table.get_mut(&id) {
            let returned = e
                .departed
                .is_some_and(|d| d.incarnation != Some(incarnation));
            if returned {
                e.departed = None;
                e.last_ok = None; // so that `answered` records a return
            }
            e.incarnation = Some(incarnation);
        }
        self.answered(&id, t);
    }

    /// Records that `id` departs: it owns nothing from now on, and is not dialled again
    /// until a new incarnation of it says hello.
    pub fn depart(&mut self, id: &NodeId, permanent: bool) {
        if let Some(e) = self.table.get_mut(id) {
            e.departed = Some(Departed {
                at: Instant::now(),
                incarnation: e.incarnation,
                permanent,
            });
        }
    }

    /// Records a departure another member told of (one cut off when it happened learns it
    /// this way). Second-hand, so it changes nothing about ownership, dialling or garbage
    /// collection, which a forged report could abuse: it only keeps a member that is dead
    /// now from counting as lost (`lost_within`) when the incarnation matches.
    pub fn departed_elsewhere(&mut self, d: Departure) {
        if let Some(e) = self.table.get_mut(&d.id) {
            e.reported = Some(d.incarnation);
        }
    }

    /// The most recent departures this node knows of (of members it knew the incarnation
    /// of), at most `max`, to pass on in answers to pings.
    pub fn departures(&self, max: usize) -> Vec<Departure> {
        let mut all: Vec<(Instant, Departure)> = self
            .table
            .values()
            .filter_map(|e| {
                let d = e.departed?;
                Some((
                    d.at,
                    Departure {
                        id: e.info.id,
                        incarnation: d.incarnation?,
                        permanent: d.permanent,
                    },
                ))
            })
            .collect();
        all.sort_by_key(|d| std::cmp::Reverse(d.0));
        all.into_iter().take(max).map(|(_, d)| d).collect()
    }

    /// Whether the owners of some objects changed within `window`: a member joined or came
    /// back (after this node's own start), died, or departed. During such a change, reads
    /// ask beyond the current owners (see `Remote::get_manifest`). Also returns how many
    /// members joined or came back within it: each can push an earlier owner one place down
    /// the rendezvous order.
    pub fn recent_change(&self, t: &Timeouts, window: Duration) -> (bool, usize) {
        let now = Instant::now();
        let within = |at: Instant| now.saturating_duration_since(at) < window;
        let mut changed = false;
        let mut joins = 0;
        for e in self.table.values() {
            if let Some(d) = e.departed {
                changed |= within(d.at);
                continue;
            }
            match self.health_at(&e.info.id, t, now) {
                // Died at last_ok + dead_after, if it ever answered.
                Health::Dead => changed |= e.last_ok.is_some_and(|at| within(at + t.dead_after)),
                _ => {
                    let joined = e
                        .live_since
                        .is_some_and(|at| within(at) && at > self.started + START_GRACE);
                    if joined {
                        joins += 1;
                        changed = true;
                    }
                }
            }
        }
        (changed, joins)
    }

    /// Records a failed dial or call: try again after a backoff that doubles up to a cap,
    /// for the member and for its address.
    pub fn failed(&mut self, id: &NodeId) {
        if let Some(e) = self.table.get_mut(id) {
            let now = Instant::now();
            e.next_dial = now + jitter(e.backoff);
            e.backoff = (e.backoff * 2).min(BACKOFF_MAX);
            if Self::verified(e) {
                return;
            }
            let pace = self.addrs.entry(e.info.addr.clone()).or_insert(Pace {
                next: now,
                backoff: BACKOFF_MIN,
            });
            pace.next = now + jitter(pace.backoff);
            pace.backoff = (pace.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Whether this node has heard from the member itself (a hello or an answer): then its
    /// address is its own, and others' names for that address do not pace its dials.
    fn verified(e: &Entry) -> bool {
        e.last_ok.is_some() || e.incarnation.is_some()
    }

    /// Whether `id` may be dialled now. For a member only heard of second-hand, its address
    /// is taken until the dial ends (`answered` or `failed`), so one address is dialled once
    /// at a time whatever the number of names said to be there.
    pub fn may_dial(&mut self, id: &NodeId) -> bool {
        let now = Instant::now();
        let Some(e) = self.table.get(id) else {
            return false;
        };
        if now < e.next_dial {
            return false;
        }
        if Self::verified(e) {
            return true;
        }
        let pace = self.addrs.entry(e.info.addr.clone()).or_insert(Pace {
            next: now,
            backoff: BACKOFF_MIN,
        });
        if now < pace.next {
            return false;
        }
        // Held for the dial's length at most; `failed` sets the real backoff.
        pace.next = now + super::DIAL_TIMEOUT + crate::net::handshake::HANDSHAKE_TIMEOUT;
        true
    }

    pub fn health(&self, id: &NodeId, t: &Timeouts) -> Health {
        self.health_at(id, t, Instant::now())
    }

    fn health_at(&self, id: &NodeId, t: &Timeouts, now: Instant) -> Health {
        let entry = self.table.get(id);
        if entry.is_some_and(|e| e.departed.is_some()) {
            return Health::Dead;
        }
        match entry.and_then(|e| e.last_ok) {
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

    /// Members to heartbeat: all but those that left for good. One that departed until it
    /// opens again is still dialled (with backoff), so that its next incarnation is found.
    pub fn present(&self) -> Vec<MemberInfo> {
        self.table
            .values()
            .filter(|e| !e.departed.is_some_and(|d| d.permanent))
            .map(|e| e.info.clone())
            .collect()
    }

    /// Whether a member that is dead now was alive (or learnt) less than `window` ago: one
    /// that may still come back with data nobody else has. One learnt from a peer that never
    /// answered counts too, forgotten or not: it may be a member this node cannot reach.
    pub fn missing_within(&self, t: &Timeouts, window: Duration) -> bool {
        let now = Instant::now();
        let forgotten = self
            .forgotten
            .values()
            .any(|(_, learned)| now.duration_since(*learned) < window);
        forgotten
            || self.table.values().any(|e| {
                !e.departed.is_some_and(|d| d.permanent)
                    && self.health(&e.info.id, t) == Health::Dead
                    && now.duration_since(e.last_ok.unwrap_or(e.learned)) < window
            })
    }

    /// Whether a member that did not depart has died less than `window` ago: one that may
    /// come back, as opposed to members that all left or closed (as they said, or as others
    /// reported of the incarnation this node knew).
    /// Members that answered once, are dead now, and did not depart: ones that may hold
    /// data no member that answers has.
    pub fn unreachable(&self, t: &Timeouts) -> usize {
        self.table
            .values()
            .filter(|e| {
                e.departed.is_none()
                    && e.last_ok.is_some()
                    && self.health(&e.info.id, t) == Health::Dead
            })
            .count()
    }

    pub fn lost_within(&self, t: &Timeouts, window: Duration) -> bool {
        let now = Instant::now();
        self.table.values().any(|e| {
            e.departed.is_none()
                && !(e.reported.is_some() && e.reported == e.incarnation)
                && self.health_at(&e.info.id, t, now) == Health::Dead
                && e.last_ok.is_some_and(|at| now.duration_since(at) < window)
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
        m.answered(&id, &t);
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

    /// A departure holds for the incarnation that departed: its own answers do not undo it,
    /// a new incarnation's hello does, and a report of an older incarnation changes nothing.
    #[test]
    fn departures_apply_to_one_incarnation_and_travel_between_members() {
        let t = Timeouts::default();
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let mut m = Members::default();
        m.hello(info(1), 10, &t);
        m.hello(info(2), 20, &t);
        assert_eq!(m.live(&t).len(), 2);
        m.depart(&a, false);
        m.answered(&a, &t); // it still serves while it drains
        assert_eq!(m.live(&t), vec![info(2)]);
        m.hello(info(1), 10, &t); // a connection it opens while draining
        assert_eq!(m.live(&t).len(), 1);
        let told = m.departures(8);
        assert_eq!(told.len(), 1);
        assert_eq!((told[0].id, told[0].incarnation), (a, 10));

        // Another member hears of it second-hand: that changes nothing while the member
        // answers; once it is dead, it is not counted as lost (it departed, by report).
        let quick = Timeouts {
            suspect_after: Duration::from_millis(1),
            dead_after: Duration::from_millis(2),
            call: Duration::from_secs(1),
        };
        let mut other = Members::default();
        other.hello(info(1), 10, &quick);
        other.departed_elsewhere(told[0]);
        assert_eq!(
            other.live(&t).len(),
            1,
            "a report alone does not remove a member"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !other.lost_within(&quick, Duration::from_secs(60)),
            "departed, not lost"
        );
        let mut forged = Members::default();
        forged.hello(info(1), 99, &quick);
        forged.departed_elsewhere(told[0]); // a report of another incarnation
        std::thread::sleep(Duration::from_millis(5));
        assert!(forged.lost_within(&quick, Duration::from_secs(60)));

        // It opens again: a new incarnation is a member again, and the old report is stale.
        m.hello(info(1), 11, &t);
        assert_eq!(m.live(&t).len(), 2);
        m.departed_elsewhere(told[0]);
        assert_eq!(
            m.live(&t).len(),
            2,
            "a report of the old incarnation changes nothing"
        );
        // Leaving for good: garbage collection stops waiting for it.
        m.depart(&b, true);
        assert!(!m.missing_within(&t, Duration::from_secs(3600)));
    }
}
