//! Background tasks with an owner: work that outlives the call that started it (the copies
//! of a write beyond its quorum, read repairs) is spawned here, so that `Node::close` has one
//! place to wait for it instead of dropping it half done.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Default)]
pub(crate) struct Tracker {
    set: Mutex<JoinSet<()>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.lock();
        // Reap what has finished, so the set holds only what runs.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// Waits until every task (including those spawned meanwhile) has finished, or until
    /// `deadline`. True if all finished; tasks still running at the deadline are aborted.
    pub async fn wait(&self, deadline: Instant) -> bool {
        loop {
            let mut set = std::mem::take(&mut *self.lock());
            if set.is_empty() {
                return true;
            }
            loop {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        set.abort_all();
                        self.lock().abort_all();
                        return false;
                    }
                }
            }
        }
    }
}
