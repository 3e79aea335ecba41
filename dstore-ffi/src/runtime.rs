//! The tokio runtimes behind every call. The core is async; C callers are plain threads, so each
//! export blocks its calling thread on a runtime until its one core call is done. Two places
//! where blocking cannot work are refused with DSTORE_RUNTIME instead of a panic or a hang.
//!
//! Standalone nodes share one runtime. A cluster node (a member or a client) gets a runtime of
//! its own. `Node::close` already stops the listener and heartbeats and closes connections;
//! dropping the node's runtime in dstore_free also ends what may outlive that (copies beyond
//! the quorum still being sent, connection tasks still draining), so that when dstore_free
//! returns no task of the node runs and none of its sockets is open.

use std::future::Future;

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Handle};

use crate::status::{dstore_status, Failure, Result};

/// Runs one core call on `own` (a cluster node's runtime), or on the shared one.
pub(crate) fn run_on<T>(
    own: Option<&Runtime>,
    call: impl Future<Output = dstore_core::Result<T>>,
) -> Result<T> {
    match own {
        Some(own) => own.run(call),
        None => shared()?.run(call),
    }
}

/// A tokio runtime, and the process that made it.
pub(crate) struct Runtime {
    /// Multi-thread, so that calls from many C threads run at once. `None` only inside `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    /// The process that made `runtime`. A child made by fork() inherits it but none of its
    /// threads, so `block_on` there would wait forever (and so would dropping it).
    pid: u32,
}

/// The runtime of standalone nodes, made on first use and never dropped (its threads end with
/// the process). The core does its disk work on the runtime's blocking pool, so one runtime
/// serves every standalone node and every calling thread: `block_on` may be called from many
/// threads at once.
static SHARED: Lazy<std::result::Result<Runtime, String>> =
    Lazy::new(|| Runtime::new("dstore-worker"));

impl Runtime {
    fn new(thread_name: &str) -> std::result::Result<Self, String> {
        Builder::new_multi_thread()
            .enable_all()
            .thread_name(thread_name)
            .build()
            .map(|runtime| Runtime {
                runtime: Some(runtime),
                pid: std::process::id(),
            })
            .map_err(|e| format!("could not start the dstore runtime: {e}"))
    }

    /// A new runtime for one cluster node, stopped when it is dropped.
    pub(crate) fn for_cluster_node() -> Result<Self> {
        Self::new("dstore-node").map_err(|e| Failure::new(dstore_status::DSTORE_RUNTIME, e))
    }

    /// Runs one core call to completion and maps its error.
    pub(crate) fn run<T>(&self, call: impl Future<Output = dstore_core::Result<T>>) -> Result<T> {
        self.block_on(call)?.map_err(Failure::from)
    }

    /// Runs `fut` to completion on this runtime, blocking the calling thread.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> Result<F::Output> {
        if Handle::try_current().is_ok() {
            // tokio panics on a nested block_on; say what to do instead.
            return Err(Failure::new(
                dstore_status::DSTORE_RUNTIME,
                "called from inside a tokio runtime, where dstore cannot block; \
                 call it from a plain thread (for example through tokio::task::spawn_blocking)",
            ));
        }
        if self.pid != std::process::id() {
            return Err(Failure::new(
                dstore_status::DSTORE_RUNTIME,
                format!(
                    "runtime not usable after fork: process {} started dstore's worker threads, \
                     and a forked child does not have them; create nodes in the child only if \
                     the parent had not used dstore before fork(), or exec a new program",
                    self.pid
                ),
            ));
        }
        let runtime = self.runtime.as_ref().expect("present until dropped");
        Ok(runtime.block_on(fut))
    }
}

impl Drop for Runtime {
    /// Stops the runtime: every task is dropped at its next await, which closes its sockets,
    /// and this waits for the worker threads and for blocking tasks (disk work, which ends on
    /// its own) to finish. Where waiting is impossible it does not: in a forked child the
    /// threads do not exist (the runtime is leaked), and on a tokio thread blocking would
    /// panic (the runtime stops in the background).
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if self.pid != std::process::id() {
            std::mem::forget(runtime);
        } else if Handle::try_current().is_ok() {
            runtime.shutdown_background();
        } else {
            drop(runtime);
        }
    }
}

/// The shared runtime of standalone nodes.
pub(crate) fn shared() -> Result<&'static Runtime> {
    SHARED
        .as_ref()
        .map_err(|e| Failure::new(dstore_status::DSTORE_RUNTIME, e.clone()))
}
