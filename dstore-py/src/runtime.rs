//! The tokio runtime behind every call, and `block_on`, the only way this module runs core
//! code: with the GIL released, panics caught, and a refusal (not a hang) in a forked child.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use once_cell::sync::Lazy;
use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::errors::{self, Error};

/// One multi-thread runtime for the whole process, made on first use. The core does its disk
/// work on the runtime's blocking pool, so one runtime serves every node and every thread.
static RUNTIME: Lazy<Result<Owned, String>> = Lazy::new(|| {
    init_logging();
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

/// With `DSTORE_LOG` set (e.g. `DSTORE_LOG=debug`), dstore's logs go to stderr. Without it
/// they go to Python's `logging` (see the module's init in lib.rs), which the application
/// configures.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("DSTORE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

struct Owned {
    runtime: Runtime,
    /// The process that made `runtime`. After `fork()` the child has a copy of this static but
    /// none of the runtime's threads, so `block_on` there would wait forever.
    pid: u32,
}

fn runtime() -> PyResult<&'static Runtime> {
    let owned = RUNTIME.as_ref().map_err(|e| Error::new_err(e.clone()))?;
    if owned.pid != std::process::id() {
        return Err(Error::new_err(
            "dstore was used in this process's parent before it forked, and its worker \
             threads do not survive fork(); use dstore only in the process that first used it, \
             or start child processes with multiprocessing's 'spawn' or 'forkserver' method",
        ));
    }
    Ok(&owned.runtime)
}

/// Runs `fut` to completion on the runtime with the GIL released, so other Python threads run
/// meanwhile. `fut` must own or borrow only Rust values (its inputs were copied out of Python
/// objects before this call); nothing in it touches Python.
pub(crate) fn block_on<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = dstore_core::Result<T>> + Send,
    T: Send,
{
    let runtime = runtime()?;
    if Handle::try_current().is_ok() {
        // tokio panics on a nested block_on; say so instead.
        return Err(Error::new_err(
            "dstore was called from inside a tokio runtime thread, where it cannot block",
        ));
    }
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(|| runtime.block_on(fut))));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(errors::to_py(py, e)),
        Err(panic) => Err(Error::new_err(format!(
            "internal error in dstore (a bug; please report it): {}",
            panic_message(panic.as_ref())
        ))),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "panic"
    }
}
