//! The tokio runtime behind every call. The core is async; C callers are plain threads, so each
//! export blocks its calling thread on the runtime until its one core call is done. Two places
//! where blocking cannot work are refused with DSTORE_RUNTIME instead of a panic or a hang.

use std::future::Future;

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::status::{dstore_status, Failure, Result};

/// One multi-thread runtime for the whole process, made on first use and never dropped (its
/// threads end with the process). The core does its disk work on the runtime's blocking pool,
/// so one runtime serves every node and every calling thread: `block_on` may be called from
/// many threads at once.
static RUNTIME: Lazy<std::result::Result<Owned, String>> = Lazy::new(|| {
    Builder::new_multi_thread()
        .enable_all()
        .thread_name("dstore-worker")
        .build()
        .map(|runtime| Owned {
            runtime,
            pid: std::process::id(),
        })
        .map_err(|e| format!("could not start the dstore runtime: {e}"))
});

struct Owned {
    /// Multi-thread, so that calls from many C threads run at once.
    runtime: Runtime,
    /// The process that made `runtime`. A child made by fork() inherits this static but none of
    /// the runtime's threads, so `block_on` there would wait forever.
    pid: u32,
}

/// Runs one core call to completion and maps its error.
pub(crate) fn run<T>(call: impl Future<Output = dstore_core::Result<T>>) -> Result<T> {
    block_on(call)?.map_err(Failure::from)
}

/// Runs `fut` to completion on the shared runtime, blocking the calling thread.
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    if Handle::try_current().is_ok() {
        // tokio panics on a nested block_on; say what to do instead.
        return Err(Failure::new(
            dstore_status::DSTORE_RUNTIME,
            "called from inside a tokio runtime, where dstore cannot block; \
             call it from a plain thread (for example through tokio::task::spawn_blocking)",
        ));
    }
    let owned = RUNTIME
        .as_ref()
        .map_err(|e| Failure::new(dstore_status::DSTORE_RUNTIME, e.clone()))?;
    if owned.pid != std::process::id() {
        return Err(Failure::new(
            dstore_status::DSTORE_RUNTIME,
            format!(
                "runtime not usable after fork: process {} started dstore's worker threads, \
                 and a forked child does not have them; create nodes in the child only if the \
                 parent had not used dstore before fork(), or exec a new program",
                owned.pid
            ),
        ));
    }
    Ok(owned.runtime.block_on(fut))
}
