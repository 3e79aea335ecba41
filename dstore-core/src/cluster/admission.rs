//! Who may hold one of a member's sockets. Anyone can connect to a member's port, so
//! accepted sockets are bounded: in total, by what the process may open less a reserve kept
//! for the store's files (an outsider's idle sockets must never make reads fail with "too
//! many open files"); and per source address.
//!
//! Sockets that have not finished the handshake (an outsider's, until it proves the secret)
//! have a small pool of their own. A listener accepts a socket only when that pool has room,
//! counting evicted sockets until they are closed (so the descriptors in use never pass the
//! budget, however fast outsiders connect). When it is full, the oldest is evicted (of the
//! same address first), and among those a silent one (that has sent no byte) before one that has
//! spoken: idle sockets cannot keep a late honest peer out, because the honest one speaks at
//! once, is the newest, and finishes its handshake in a round trip. Silent first matters when
//! the kernel hands over a burst of idle sockets late (their handshake's last packet was
//! dropped on a full accept queue and resent), after an honest peer's socket. Established sessions have two
//! pools, one for members and one for clients (with a share per address), so that clients,
//! however many, can never keep members from reaching each other; past its pool's size a new
//! session is refused. One admission serves every listener of the process (several embedded
//! members share one limit on open files).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Bounds on accepted sockets.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Established sessions of members, and of clients.
    pub members: usize,
    pub clients: usize,
    /// Client sessions from one address.
    pub clients_per_addr: usize,
    /// Sockets still in the handshake, in all, and from one address.
    pub pending: usize,
    pub pending_per_addr: usize,
}

impl Limits {
    /// From the process's limit on open files, keeping a quarter of it (at least 64) for
    /// the store, the journal, outgoing connections and the application.
    pub fn from_open_files() -> Limits {
        Self::for_open_files(open_files_limit())
    }

    pub fn for_open_files(open_files: u64) -> Limits {
        let reserve = (open_files / 4).max(64);
        let budget = open_files.saturating_sub(reserve).clamp(8, 1 << 16) as usize;
        let pending = (budget / 4).clamp(2, 128);
        let sessions = budget - pending;
        let members = sessions / 2;
        let clients = sessions - members;
        Limits {
            members,
            clients,
            // Loopback clusters (tests, one host) have every client at one address.
            clients_per_addr: (clients / 2).max(2),
            pending,
            pending_per_addr: (pending / 4).max(2),
        }
    }
}

fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok && limit.rlim_cur != libc::RLIM_INFINITY {
        limit.rlim_cur
    } else {
        1024
    }
}

struct Waiting {
    id: u64,
    addr: IpAddr,
    /// Whether the socket has sent a byte yet.
    heard: bool,
    /// Fires the eviction; `None` once evicted (the socket is closing).
    evict: Option<oneshot::Sender<()>>,
}

impl Waiting {
    fn live(&self) -> bool {
        self.evict.is_some()
    }
}

#[derive(Default)]
struct State {
    members: usize,
    clients: usize,
    clients_by_addr: HashMap<IpAddr, usize>,
    /// Sockets in the handshake, oldest first, including evicted ones not yet closed.
    pending: VecDeque<Waiting>,
    next: u64,
}

pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
    /// Signalled when a socket in the handshake closes.
    closed: tokio::sync::Notify,
}

/// Held while a socket is in the handshake; dropping it frees its place.
pub struct Pending {
    admission: Arc<Admission>,
    id: u64,
}

/// Held while an accepted session is open; dropping it frees its place.
pub struct Session {
    admission: Arc<Admission>,
    /// `None` for a member's session.
    client_at: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::default(),
            closed: tokio::sync::Notify::new(),
        })
    }

    /// The process's admission, for every listener in it.
    pub fn shared() -> Arc<Admission> {
        static SHARED: std::sync::OnceLock<Arc<Admission>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| Admission::new(Limits::from_open_files()))
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once a listener may accept a socket: fewer sockets in the handshake than the
    /// pool holds, counting evicted ones until they close. While full, evicts one (see
    /// `victim`) and waits for a socket to close; sockets in the handshake close within its
    /// timeout, so this waits no longer than that.
    pub async fn room(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.pending.len() < self.limits.pending {
                    return;
                }
                if let Some(at) = Self::victim(&state.pending, |_| true) {
                    Self::evict(&mut state.pending[at]);
                }
            }
            closed.await;
        }
    }

    /// A place for a new socket from `addr` in the handshake. If `addr` has its share
    /// already, one of its sockets is evicted (see `victim`); so is one of all if the pool is
    /// full (listeners wait for `room` first, so only when two raced). The receiver fires when
    /// this one is evicted in turn.
    pub fn pending(self: &Arc<Self>, addr: IpAddr) -> (Pending, oneshot::Receiver<()>) {
        let mut state = self.lock();
        let live = state.pending.iter().filter(|w| w.live()).count();
        let from_addr = state
            .pending
            .iter()
            .filter(|w| w.live() && w.addr == addr)
            .count();
        let victim = if from_addr >= self.limits.pending_per_addr {
            Self::victim(&state.pending, |w| w.addr == addr)
        } else if live >= self.limits.pending {
            Self::victim(&state.pending, |_| true)
        } else {
            None
        };
        if let Some(at) = victim {
            Self::evict(&mut state.pending[at]);
        }
        let id = state.next;
        state.next += 1;
        let (evict, evicted) = oneshot::channel();
        state.pending.push_back(Waiting {
            id,
            addr,
            heard: false,
            evict: Some(evict),
        });
        let guard = Pending {
            admission: self.clone(),
            id,
        };
        (guard, evicted)
    }

    /// Where in `pending` the socket to evict among the live ones `candidate` takes is: the
    /// oldest silent one, else the oldest.
    fn victim(pending: &VecDeque<Waiting>, candidate: impl Fn(&Waiting) -> bool) -> Option<usize> {
        let live = |w: &Waiting| w.live() && candidate(w);
        pending
            .iter()
            .position(|w| live(w) && !w.heard)
            .or_else(|| pending.iter().position(live))
    }

    fn evict(w: &mut Waiting) {
        if let Some(evict) = w.evict.take() {
            let _ = evict.send(());
        }
    }

    /// A place for an established session (of a member, or of a client at `addr`), or
    /// `None` if its pool is full.
    pub fn session(self: &Arc<Self>, addr: IpAddr, member: bool) -> Option<Session> {
        let mut state = self.lock();
        if member {
            if state.members >= self.limits.members {
                return None;
            }
            state.members += 1;
            return Some(Session {
                admission: self.clone(),
                client_at: None,
            });
        }
        let from_addr = state.clients_by_addr.get(&addr).copied().unwrap_or(0);
        if state.clients >= self.limits.clients || from_addr >= self.limits.clients_per_addr {
            return None;
        }
        state.clients += 1;
        *state.clients_by_addr.entry(addr).or_insert(0) += 1;
        Some(Session {
            admission: self.clone(),
            client_at: Some(addr),
        })
    }

    /// (sessions, sockets in the handshake not evicted) held now.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let state = self.lock();
        let live = state.pending.iter().filter(|w| w.live()).count();
        (state.members + state.clients, live)
    }
}

impl Pending {
    /// The socket has sent its first byte: it is evicted after the silent ones.
    pub fn heard(&self) {
        let mut state = self.admission.lock();
        if let Some(w) = state.pending.iter_mut().find(|w| w.id == self.id) {
            w.heard = true;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.pending.retain(|w| w.id != self.id);
        drop(state);
        self.admission.closed.notify_waiters();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        let Some(addr) = self.client_at else {
            state.members -= 1;
            return;
        };
        state.clients -= 1;
        if let Some(n) = state.clients_by_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                state.clients_by_addr.remove(&addr);
            }
        }
    }
}

/// A warning that repeats (a refused socket, a failed accept) logged at most once per
/// `every`, saying how many were not logged since: an attacker must not fill the log.
pub struct Quiet {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Quiet {
    pub const fn new(every: Duration) -> Quiet {
        Quiet {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `log` with the number suppressed since the last call, if one is due.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        log(self.suppressed.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn limits_keep_a_reserve_of_descriptors() {
        let l = Limits::for_open_files(128);
        assert_eq!(l.members + l.clients + l.pending, 64);
        let l = Limits::for_open_files(1024);
        assert_eq!(l.members + l.clients + l.pending, 768);
        assert!(l.pending <= 128);
    }

    #[test]
    fn the_oldest_pending_socket_is_evicted_first_and_from_a_greedy_address() {
        let adm = Admission::new(Limits {
            members: 2,
            clients: 2,
            clients_per_addr: 1,
            pending: 3,
            pending_per_addr: 2,
        });
        let (a1, mut e_a1) = adm.pending(A);
        let (_a2, mut e_a2) = adm.pending(A);
        let (_a3, _) = adm.pending(A); // A has its share: its oldest goes
        assert!(e_a1.try_recv().is_ok());
        assert!(e_a2.try_recv().is_err());
        drop(a1); // already evicted: nothing else moves
        let (_b1, mut e_b1) = adm.pending(B);
        let (_b2, _) = adm.pending(B); // full: the oldest of all goes
        assert!(e_a2.try_recv().is_ok());
        assert!(e_b1.try_recv().is_err());
        assert_eq!(adm.held().1, 3);
    }

    /// An honest peer speaks at once; a burst of idle sockets after it evicts idle ones.
    #[test]
    fn silent_sockets_are_evicted_before_one_that_has_spoken() {
        let adm = Admission::new(Limits {
            members: 2,
            clients: 2,
            clients_per_addr: 1,
            pending: 4,
            pending_per_addr: 3,
        });
        let (_idle1, mut e_idle1) = adm.pending(A);
        let (honest, mut e_honest) = adm.pending(A);
        honest.heard();
        let (_idle2, mut e_idle2) = adm.pending(A);
        let (_idle3, mut e_idle3) = adm.pending(A); // A has its share: its oldest silent goes
        assert!(e_idle1.try_recv().is_ok());
        let (_idle4, mut e_idle4) = adm.pending(A);
        assert!(e_idle2.try_recv().is_ok());
        let (_b1, _) = adm.pending(B);
        let (_b2, _) = adm.pending(B); // full: the oldest silent of all goes
        assert!(e_idle3.try_recv().is_ok());
        let (talker, _) = adm.pending(A);
        talker.heard();
        assert!(e_idle4.try_recv().is_ok());
        assert!(e_honest.try_recv().is_err());
        let (late, _) = adm.pending(A); // full: B's silent one goes
        late.heard();
        // A at its share with none silent: the oldest of A goes.
        let (_later, _) = adm.pending(A);
        assert!(e_honest.try_recv().is_ok());
    }

    /// A listener accepts only with room in the pool, and an evicted socket keeps its place
    /// until it is closed, so sockets in use never pass the budget.
    #[tokio::test]
    async fn a_listener_waits_for_an_evicted_socket_to_close() {
        let adm = Admission::new(Limits {
            members: 2,
            clients: 2,
            clients_per_addr: 1,
            pending: 2,
            pending_per_addr: 2,
        });
        let (spoke, mut e_spoke) = adm.pending(A);
        spoke.heard();
        let (silent, mut e_silent) = adm.pending(B);
        let room = adm.room();
        tokio::pin!(room);
        let short = Duration::from_millis(50);
        assert!(tokio::time::timeout(short, room.as_mut()).await.is_err());
        assert!(e_silent.try_recv().is_ok());
        assert!(e_spoke.try_recv().is_err());
        // Evicted, not yet closed: still no room.
        assert!(tokio::time::timeout(short, room.as_mut()).await.is_err());
        drop(silent);
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .unwrap();
        drop(spoke);
    }

    /// Clients are capped in all and per address, and however many there are, members
    /// still find places of their own.
    #[test]
    fn client_sessions_are_capped_and_never_take_members_places() {
        let adm = Admission::new(Limits {
            members: 1,
            clients: 2,
            clients_per_addr: 1,
            pending: 2,
            pending_per_addr: 2,
        });
        let a = adm.session(A, false).unwrap();
        assert!(adm.session(A, false).is_none());
        let _b = adm.session(B, false).unwrap();
        assert!(adm.session(B, false).is_none());
        let member = adm.session(A, true).unwrap();
        assert!(adm.session(B, true).is_none());
        drop(a);
        assert!(adm.session(A, false).is_some());
        drop(member);
        assert!(adm.session(B, true).is_some());
    }
}
